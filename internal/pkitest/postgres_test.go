package pkitest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var pg *Postgres

// crashHelperEnv makes the test binary start a cluster and exit without
// stopping it, as a crashed test run would (see TestCrashedRunIsCleanedUp).
const crashHelperEnv = "PKITEST_CRASH_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(crashHelperEnv) == "1" {
		crashHelper()
	}
	MainWithPostgres(m, &pg)
}

func crashHelper() {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	p, err := StartPostgres(ctx)
	if err != nil {
		os.Stdout.WriteString("error=" + strings.ReplaceAll(err.Error(), "\n", " ") + "\n")
		os.Exit(2)
	}
	os.Stdout.WriteString("root=" + p.root + "\nadmin=" + p.AdminDSN() + "\n")
	os.Exit(3) // no Stop: the watchdog must clean up
}

// ownCluster fails unless the tests run on a cluster StartPostgres made: the
// life-cycle tests cannot stop a server from CERTCTL_TEST_DATABASE_URL.
func ownCluster(t *testing.T) {
	t.Helper()
	if pg.External() {
		t.Skipf("server from %s: life-cycle test needs a throwaway cluster", EnvDatabaseURL)
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func connect(t *testing.T, ctx context.Context, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestRestartKeepsData(t *testing.T) {
	ownCluster(t)
	ctx := testCtx(t)
	dsn := pg.NewDatabase(t)
	if !strings.Contains(dsn, "sslmode=disable") || !strings.HasPrefix(dsn, "postgres://postgres@127.0.0.1:") {
		t.Errorf("NewDatabase() = %q, want postgres://postgres@127.0.0.1:PORT/NAME?sslmode=disable", dsn)
	}
	conn := connect(t, ctx, dsn)
	if _, err := conn.Exec(ctx, "CREATE TABLE kv (k text PRIMARY KEY, v text)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO kv VALUES ('a', 'before restart')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	if err := pg.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	var v string
	if err := connect(t, ctx, dsn).QueryRow(ctx, "SELECT v FROM kv WHERE k = 'a'").Scan(&v); err != nil {
		t.Fatalf("after Restart: %v", err)
	}
	if v != "before restart" {
		t.Fatalf("after Restart: v = %q", v)
	}
}

func TestOutage(t *testing.T) {
	ownCluster(t)
	ctx := testCtx(t)
	dsn := pg.NewDatabase(t)
	conn := connect(t, ctx, dsn)
	if _, err := conn.Exec(ctx, "CREATE TABLE t AS SELECT 42 AS n"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	for _, tt := range []struct {
		name string
		stop func(context.Context) error
	}{
		{"StopServer", pg.StopServer},
		{"KillServer", pg.KillServer},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.stop(ctx); err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if c, err := pgx.Connect(cctx, dsn); err == nil {
				c.Close(ctx)
				t.Fatalf("connected while the server is down")
			}
			if err := pg.StartServer(ctx); err != nil {
				t.Fatalf("StartServer: %v", err)
			}
			var n int
			if err := connect(t, ctx, dsn).QueryRow(ctx, "SELECT n FROM t").Scan(&n); err != nil || n != 42 {
				t.Fatalf("after StartServer: n = %d, err = %v", n, err)
			}
		})
	}
}

func TestNewDatabaseIsDroppedAfterTest(t *testing.T) {
	ctx := testCtx(t)
	var name string
	var held *pgx.Conn
	t.Run("inner", func(t *testing.T) {
		dsn := pg.NewDatabase(t)
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		name = cfg.Database
		// An open connection must not keep the database from being dropped.
		held, err = pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		if other := pg.NewDatabase(t); other == dsn {
			t.Fatalf("NewDatabase returned %q twice", dsn)
		}
	})
	defer held.Close(ctx)
	var exists bool
	err := connect(t, ctx, pg.AdminDSN()).QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists)
	if err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatalf("database %s still exists after its test ended", name)
	}
}

func TestStopIsIdempotentAndRemovesCluster(t *testing.T) {
	ownCluster(t)
	ctx := testCtx(t)
	p, err := StartPostgres(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if p.AdminDSN() == pg.AdminDSN() {
		t.Fatalf("second cluster has the first one's DSN %s", p.AdminDSN())
	}
	connect(t, ctx, p.AdminDSN()).Close(ctx)
	if _, err := os.Stat(filepath.Join(p.data, "PG_VERSION")); err != nil {
		t.Fatalf("data directory: %v", err)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := os.Stat(p.root); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s after Stop: %v, want it removed", p.root, err)
	}
	if c, err := pgx.Connect(ctx, p.AdminDSN()); err == nil {
		c.Close(ctx)
		t.Fatal("connected after Stop")
	}
	if err := p.StartServer(ctx); err == nil {
		t.Fatal("StartServer after Stop succeeded")
	}
}

// A test binary that dies without Stop must not leave its cluster running.
func TestCrashedRunIsCleanedUp(t *testing.T) {
	ownCluster(t)
	ctx := testCtx(t)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashHelperEnv+"=1", EnvDatabaseURL+"=")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("helper: %v, want exit status 3; output:\n%s", err, out)
	}
	vals := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vals[k] = v
		}
	}
	root, admin := vals["root"], vals["admin"]
	if root == "" || admin == "" {
		t.Fatalf("helper output:\n%s", out)
	}
	// The watchdog works asynchronously: wait for it, bounded by ctx.
	for {
		_, statErr := os.Stat(root)
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, connErr := pgx.Connect(cctx, admin)
		cancel()
		if connErr == nil {
			c.Close(ctx)
		}
		if errors.Is(statErr, os.ErrNotExist) && connErr != nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("cluster of the crashed run still there: stat %s: %v; connect: %v", root, statErr, connErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestFindBinDir(t *testing.T) {
	lib := t.TempDir()
	mkBin := func(version string, names ...string) string {
		dir := filepath.Join(lib, version, "bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	noPath := func(string) (string, error) { return "", exec.ErrNotFound }

	if _, err := findBinDir(noPath, lib); err == nil || !strings.Contains(err.Error(), "PostgreSQL server binaries not found") ||
		!strings.Contains(err.Error(), EnvDatabaseURL) || !strings.Contains(err.Error(), "apt-get install postgresql") {
		t.Fatalf("findBinDir(empty) error = %v, want the install hint", err)
	}

	mkBin("9.6", "initdb", "pg_ctl", "postgres")
	want := mkBin("15", "initdb", "pg_ctl", "postgres")
	mkBin("16", "initdb", "pg_ctl") // client-only: no server binary
	got, err := findBinDir(noPath, lib)
	if err != nil || got != want {
		t.Fatalf("findBinDir() = %q, %v; want %q (newest complete version)", got, err, want)
	}

	// initdb on PATH (through a symlink) is the last resort.
	other := t.TempDir()
	for _, n := range []string{"initdb", "pg_ctl", "postgres"} {
		if err := os.WriteFile(filepath.Join(other, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(t.TempDir(), "initdb")
	if err := os.Symlink(filepath.Join(other, "initdb"), link); err != nil {
		t.Fatal(err)
	}
	onPath := func(name string) (string, error) {
		if name == "initdb" {
			return link, nil
		}
		return "", exec.ErrNotFound
	}
	if got, err := findBinDir(onPath, filepath.Join(lib, "missing")); err != nil || got != other {
		t.Fatalf("findBinDir(initdb on PATH) = %q, %v; want %q", got, err, other)
	}
}

func TestDatabaseDSN(t *testing.T) {
	tests := []struct{ admin, want string }{
		{"postgres://u:pw@db.example:5433/postgres?sslmode=require", "postgres://u:pw@db.example:5433/t_x?sslmode=require"},
		{"postgresql://u@h/postgres?dbname=other&sslmode=disable", "postgresql://u@h/t_x?sslmode=disable"},
		{"postgres://u@h", "postgres://u@h/t_x"},
		{"host=h user=u dbname=postgres", "host=h user=u dbname=postgres dbname=t_x"},
	}
	for _, tt := range tests {
		t.Run(tt.admin, func(t *testing.T) {
			got, err := databaseDSN(tt.admin, "t_x")
			if err != nil || got != tt.want {
				t.Fatalf("databaseDSN() = %q, %v; want %q", got, err, tt.want)
			}
			cfg, err := pgx.ParseConfig(got)
			if err != nil || cfg.Database != "t_x" {
				t.Fatalf("ParseConfig(%q): database %q, %v", got, cfg.Database, err)
			}
		})
	}
}

func TestNewDatabaseName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	p := &Postgres{}
	seen := map[string]bool{}
	for _, name := range []string{"TestX", "TestX", "Test/sub case#01", strings.Repeat("Ünïcode/", 40), ""} {
		got := p.newDatabaseName(name)
		if !valid.MatchString(got) {
			t.Errorf("newDatabaseName(%q) = %q: not a plain identifier of at most 63 bytes", name, got)
		}
		if seen[got] {
			t.Errorf("newDatabaseName(%q) = %q twice", name, got)
		}
		seen[got] = true
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		sign int
	}{
		{"9.6", "15", -1},
		{"16", "15", 1},
		{"15", "15", 0},
		{"10", "9.6", 1},
	}
	for _, tt := range tests {
		got := compareVersions(tt.a, tt.b)
		if (got < 0 && tt.sign >= 0) || (got > 0 && tt.sign <= 0) || (got == 0 && tt.sign != 0) {
			t.Errorf("compareVersions(%q, %q) = %d, want sign %d", tt.a, tt.b, got, tt.sign)
		}
	}
}
