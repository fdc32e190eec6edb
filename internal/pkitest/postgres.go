package pkitest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDatabaseURL names the environment variable that points the tests at an
// existing PostgreSQL server instead of a throwaway cluster. Its user must be
// allowed to CREATE DATABASE; the server is never stopped or restarted.
const EnvDatabaseURL = "CERTCTL_TEST_DATABASE_URL"

// ErrExternalServer is returned by the server life-cycle methods (Restart,
// StopServer, KillServer, StartServer) when the server came from
// EnvDatabaseURL: it is not ours to stop.
var ErrExternalServer = errors.New("pkitest: the PostgreSQL server from " + EnvDatabaseURL + " cannot be stopped or restarted by tests")

// errNoBinaries is the message when no PostgreSQL server installation is found.
var errNoBinaries = errors.New("pkitest: PostgreSQL server binaries not found: run `make test` (installs postgresql) or `apt-get install postgresql`; or set " + EnvDatabaseURL)

const (
	// startTimeout bounds StartPostgres in MainWithPostgres: initdb takes 1–3 s
	// on an idle machine, much longer on a loaded CI runner.
	startTimeout = 3 * time.Minute
	// pgCtlWait is pg_ctl's own -t: how long start/stop/restart may wait.
	pgCtlWait = "120"
	// adminTimeout bounds CREATE/DROP DATABASE and Stop.
	adminTimeout = 2 * time.Minute
	// serverUser is the OS account that runs the server when tests run as
	// root (initdb and postgres refuse to run as root).
	serverUser = "postgres"
	// superuser is the PostgreSQL role created by initdb.
	superuser = "postgres"
	dirPrefix = "certctl-pg-"
)

// Postgres is a PostgreSQL server for tests: a throwaway cluster that
// StartPostgres made (initdb, trust authentication on 127.0.0.1 only, fsync
// off), or the server named by EnvDatabaseURL.
//
// Tests get their own database from NewDatabase. A Postgres is safe for
// concurrent use; the life-cycle methods (Restart, StopServer, KillServer,
// StartServer, Stop) are serialised. Whoever called StartPostgres calls Stop
// (MainWithPostgres does).
//
// If the test process dies without calling Stop (a panic in a test, the -timeout
// alarm, ^C, SIGKILL), a watchdog process started with the cluster notices that
// the process is gone, shuts the cluster down and deletes its directory. Only
// if the watchdog is killed as well can a cluster outlive its tests; its
// directory (certctl-pg-* in os.TempDir) is never reused by later runs.
type Postgres struct {
	admin    string // DSN of the maintenance database, for CREATE/DROP DATABASE
	external bool
	seq      atomic.Uint64

	// Own cluster only; fixed after StartPostgres.
	bin    string // directory holding initdb, pg_ctl, postgres
	opts   PostgresOptions
	asUser []string // command prefix that runs a server binary as serverUser ("runuser -u postgres --"), or nil
	root   string   // temp directory: data/, server.log
	data   string
	port   int

	mu       sync.Mutex // serialises life-cycle changes
	running  bool
	stopped  bool
	stopErr  error
	watchdog *exec.Cmd
	alive    *os.File // write end of the watchdog's stdin; closing it without "ok" makes the watchdog clean up
}

// StartPostgres returns a server for tests. If EnvDatabaseURL is set it uses
// that server; otherwise it creates a cluster in a new temporary directory and
// starts it on a free port of 127.0.0.1. As root it runs the server binaries as
// the "postgres" user. It fails (it never skips) when no PostgreSQL server
// installation is found.
func StartPostgres(ctx context.Context) (*Postgres, error) {
	return StartPostgresWith(ctx, PostgresOptions{})
}

// StartPostgresWith is StartPostgres with options (see PostgresOptions). With
// the zero PostgresOptions it behaves exactly like StartPostgres; with TLS or
// HBA set it always makes its own cluster and ignores EnvDatabaseURL.
func StartPostgresWith(ctx context.Context, opts PostgresOptions) (*Postgres, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if dsn := os.Getenv(EnvDatabaseURL); dsn != "" && opts.isZero() {
		return startExternal(ctx, dsn)
	}
	bin, err := findBinDir(exec.LookPath, "/usr/lib/postgresql")
	if err != nil {
		return nil, err
	}
	p := &Postgres{bin: bin, opts: opts}
	if os.Geteuid() == 0 {
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			return nil, fmt.Errorf("pkitest: running as root needs runuser to start PostgreSQL as user %s: %v", serverUser, err)
		}
		p.asUser = []string{runuser, "-u", serverUser, "--"}
	}
	if err := p.create(ctx); err != nil {
		p.abandon()
		return nil, err
	}
	return p, nil
}

func startExternal(ctx context.Context, dsn string) (*Postgres, error) {
	p := &Postgres{admin: dsn, external: true, running: true}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("pkitest: connect to %s: %v", EnvDatabaseURL, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var can bool
	if err := conn.QueryRow(ctx, "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&can); err != nil {
		return nil, fmt.Errorf("pkitest: %s: check CREATEDB privilege: %v", EnvDatabaseURL, err)
	}
	if !can {
		return nil, fmt.Errorf("pkitest: %s: the user may not CREATE DATABASE (grant CREATEDB)", EnvDatabaseURL)
	}
	return p, nil
}

// create makes the temp directory, the watchdog and the cluster, and starts it.
func (p *Postgres) create(ctx context.Context) error {
	root, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return fmt.Errorf("pkitest: %v", err)
	}
	p.root, p.data = root, filepath.Join(root, "data")
	// The server user must traverse every parent of the data directory;
	// MkdirTemp makes 0700 directories.
	if err := os.Chmod(root, 0o755); err != nil {
		return fmt.Errorf("pkitest: %v", err)
	}
	if p.asUser != nil {
		if err := chownToServerUser(root); err != nil {
			return err
		}
		// Fail with a clear message rather than initdb's "Permission denied".
		if err := p.run(ctx, "test", "-w", root); err != nil {
			return fmt.Errorf("pkitest: user %s cannot write %s: every parent directory must be traversable (chmod o+x) or set TMPDIR: %v", serverUser, root, err)
		}
	}
	if err := p.startWatchdog(); err != nil {
		return err
	}
	if err := p.run(ctx, filepath.Join(p.bin, "initdb"), "-D", p.data, "-U", superuser,
		"--auth-local=trust", "--auth-host=trust", "--no-sync", "--no-instructions", "-E", "UTF8", "--no-locale"); err != nil {
		return err
	}
	if err := p.writeDataFile("pg_hba.conf", p.hbaConf()); err != nil {
		return err
	}
	if err := p.writeOptionFiles(); err != nil {
		return err
	}
	if err := appendFile(filepath.Join(p.data, "postgresql.conf"), "\ninclude 'certctl-test.conf'\n"); err != nil {
		return err
	}
	// Another process may take the free port before the server binds it: retry.
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		p.port = port
		if err := p.writeServerConf(); err != nil {
			return err
		}
		err = p.pgCtl(ctx, "start", "-l", p.logFile())
		if err == nil {
			break
		}
		if attempt < 3 && strings.Contains(p.logTail(), "could not bind") {
			continue
		}
		return fmt.Errorf("%w\nserver log %s:\n%s", err, p.logFile(), p.logTail())
	}
	p.running = true
	p.admin = p.adminDSN()
	return nil
}

// defaultHBAConf trusts local-socket and 127.0.0.1 connections. Clusters with
// PostgresOptions use hbaConf (postgres_tls.go) instead.
func defaultHBAConf() string {
	return "# written by certctl internal/pkitest\n" +
		"local all all              trust\n" +
		"host  all all 127.0.0.1/32 trust\n"
}

// writeServerConf writes the settings included from postgresql.conf.
func (p *Postgres) writeServerConf() error {
	conf := fmt.Sprintf(`# written by certctl internal/pkitest
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
max_connections = 300
shared_buffers = 32MB
# Throwaway cluster: surviving an OS crash is not wanted, speed is. Commits
# still reach the kernel before they return (synchronous_commit stays on), so
# Restart and KillServer+StartServer lose nothing committed.
fsync = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
checkpoint_timeout = 30min
logging_collector = off
jit = off
log_min_messages = warning
`, p.port, p.socketDir()) + p.tlsServerConf()
	return p.writeDataFile("certctl-test.conf", conf)
}

// writeDataFile writes a file the server reads into the data directory.
func (p *Postgres) writeDataFile(name, content string) error {
	path := filepath.Join(p.data, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("pkitest: %v", err)
	}
	if p.asUser != nil {
		return chownToServerUser(path)
	}
	return nil
}

// startWatchdog starts a shell that blocks reading a pipe whose write end
// only this process holds. When this process exits for any reason the kernel
// closes the pipe, the read fails, and the shell stops the cluster and removes
// its directory. Stop writes "ok" first, which makes the shell exit quietly.
// The shell gets its own session so that ^C on `go test` does not kill it.
func (p *Postgres) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("pkitest: watchdog: %v", err)
	}
	defer r.Close()
	const script = `root=$1; data=$2; shift 2
if read -r _; then exit 0; fi
"$@" -D "$data" -m immediate -w -t 60 stop >/dev/null 2>&1
rm -rf "$root"`
	args := append([]string{"-c", script, "certctl-pg-watchdog", p.root, p.data}, p.command(filepath.Join(p.bin, "pg_ctl"))...)
	cmd := exec.Command("/bin/sh", args...)
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("pkitest: watchdog: %v", err)
	}
	p.watchdog, p.alive = cmd, w
	return nil
}

// releaseWatchdog ends the watchdog: quietly if clean, otherwise letting it
// try an immediate shutdown and delete the directory.
func (p *Postgres) releaseWatchdog(clean bool) {
	if p.watchdog == nil {
		return
	}
	if clean {
		p.alive.WriteString("ok\n")
	}
	p.alive.Close()
	p.watchdog.Wait()
	p.watchdog = nil
}

// abandon cleans up after a failed StartPostgres.
func (p *Postgres) abandon() {
	if p.root == "" {
		return
	}
	if p.watchdog != nil {
		p.releaseWatchdog(false) // it stops a half-started server and removes root
		return
	}
	os.RemoveAll(p.root)
}

// command returns argv that runs path (with args) as the server user.
func (p *Postgres) command(path string, args ...string) []string {
	return append(append(slices.Clone(p.asUser), path), args...)
}

// run runs a command as the server user in the temp root.
func (p *Postgres) run(ctx context.Context, path string, args ...string) error {
	argv := p.command(path, args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = p.root // the server user may not be able to read the caller's cwd
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pkitest: %s %s: %v\n%s", filepath.Base(path), strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// pgCtl runs pg_ctl ACTION -D data -w with extra args.
func (p *Postgres) pgCtl(ctx context.Context, action string, args ...string) error {
	return p.run(ctx, filepath.Join(p.bin, "pg_ctl"), append([]string{action, "-D", p.data, "-w", "-t", pgCtlWait}, args...)...)
}

func (p *Postgres) logFile() string { return filepath.Join(p.root, "server.log") }

// logTail returns the end of the server log, for error messages.
func (p *Postgres) logTail() string {
	b, err := os.ReadFile(p.logFile())
	if err != nil {
		return "(no server log: " + err.Error() + ")"
	}
	const tail = 4 << 10
	if len(b) > tail {
		b = b[len(b)-tail:]
	}
	return string(bytes.TrimSpace(b))
}

// dsn returns the URL of database name on the cluster we started.
func (p *Postgres) dsn(name string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)),
		Path:     "/" + name,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// AdminDSN returns a superuser DSN for the server's maintenance database
// ("postgres" on our own cluster; the EnvDatabaseURL value as given otherwise).
func (p *Postgres) AdminDSN() string { return p.admin }

// External reports whether the server came from EnvDatabaseURL, in which case
// the life-cycle methods return ErrExternalServer.
func (p *Postgres) External() bool { return p.external }

// NewDatabase creates an empty database with a name unique to this call and
// returns a DSN for it. The database is dropped (WITH (FORCE), so open
// connections do not block it) when t and its subtests finish; a failure to
// drop it fails t. Call it from the test's goroutine.
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	name := p.newDatabaseName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	if err := p.adminExec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pkitest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		defer cancel()
		if err := p.adminExec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pkitest: drop database %s: %v", name, err)
		}
	})
	dsn, err := databaseDSN(p.admin, name)
	if err != nil {
		t.Fatalf("pkitest: %v", err)
	}
	return dsn
}

// newDatabaseName derives a valid, unique PostgreSQL identifier (at most 63
// bytes) from a test name. The random part keeps concurrent test binaries
// sharing an external server apart.
func (p *Postgres) newDatabaseName(testName string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 32 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else if s := b.String(); s != "" && !strings.HasSuffix(s, "_") {
			b.WriteByte('_')
		}
	}
	rnd := make([]byte, 4)
	rand.Read(rnd) // crypto/rand: never fails
	return fmt.Sprintf("t_%s_%s_%d", strings.TrimSuffix(b.String(), "_"), hex.EncodeToString(rnd), p.seq.Add(1))
}

// databaseDSN returns admin with its database replaced by name. admin is a URL
// or a keyword/value connection string.
func databaseDSN(admin, name string) (string, error) {
	if strings.HasPrefix(admin, "postgres://") || strings.HasPrefix(admin, "postgresql://") {
		u, err := url.Parse(admin)
		if err != nil {
			return "", fmt.Errorf("parse %s: invalid URL", EnvDatabaseURL) // the error would echo the password
		}
		u.Path, u.RawPath = "/"+name, ""
		q := u.Query()
		q.Del("dbname")
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	// Keyword/value form: a later keyword overrides an earlier one.
	return admin + " dbname=" + name, nil
}

// adminExec runs one statement on the maintenance database.
func (p *Postgres) adminExec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, p.admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// Restart restarts the server (pg_ctl restart -m fast: open connections are
// closed) on the same port, for tests that check nothing committed is lost.
func (p *Postgres) Restart(ctx context.Context) error {
	return p.lifecycle(ctx, func() error {
		if err := p.pgCtl(ctx, "restart", "-m", "fast", "-l", p.logFile()); err != nil {
			return err
		}
		p.running = true
		return nil
	})
}

// StopServer shuts the server down (pg_ctl stop -m fast) without deleting
// anything, to simulate an outage; StartServer brings it back.
func (p *Postgres) StopServer(ctx context.Context) error {
	return p.lifecycle(ctx, func() error {
		if err := p.pgCtl(ctx, "stop", "-m", "fast"); err != nil {
			return err
		}
		p.running = false
		return nil
	})
}

// KillServer stops the server the way a crash would (pg_ctl stop -m
// immediate: no shutdown checkpoint); StartServer then runs crash recovery.
func (p *Postgres) KillServer(ctx context.Context) error {
	return p.lifecycle(ctx, func() error {
		if err := p.pgCtl(ctx, "stop", "-m", "immediate"); err != nil {
			return err
		}
		p.running = false
		return nil
	})
}

// StartServer starts a server stopped by StopServer or KillServer, on the
// same port.
func (p *Postgres) StartServer(ctx context.Context) error {
	return p.lifecycle(ctx, func() error {
		if err := p.pgCtl(ctx, "start", "-l", p.logFile()); err != nil {
			return fmt.Errorf("%w\nserver log:\n%s", err, p.logTail())
		}
		p.running = true
		return nil
	})
}

func (p *Postgres) lifecycle(ctx context.Context, f func() error) error {
	if p.external {
		return ErrExternalServer
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return errors.New("pkitest: PostgreSQL cluster already removed by Stop")
	}
	return f()
}

// Stop shuts the cluster down and deletes its directory. It is idempotent
// and does nothing to a server from EnvDatabaseURL.
func (p *Postgres) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return p.stopErr
	}
	p.stopped = true
	if p.external {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	var errs []error
	if p.running {
		if err := p.pgCtl(ctx, "stop", "-m", "fast"); err != nil {
			errs = append(errs, err)
		}
		p.running = false
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(p.root); err != nil {
			errs = append(errs, fmt.Errorf("pkitest: %v", err))
		}
	}
	// After a failure the watchdog tries an immediate shutdown and removes root.
	p.releaseWatchdog(len(errs) == 0)
	p.stopErr = errors.Join(errs...)
	return p.stopErr
}

// MainWithPostgres is TestMain for packages that need PostgreSQL: it starts a
// server into *pg, runs the tests, stops the server and exits with the tests'
// code. If the server cannot be started it prints why and exits 1: tests that
// need PostgreSQL fail rather than skip.
//
//	var pg *pkitest.Postgres
//	func TestMain(m *testing.M) { pkitest.MainWithPostgres(m, &pg) }
//
// A panicking test or the -timeout alarm ends the process without returning
// here; the cluster's watchdog (see Postgres) then removes it.
func MainWithPostgres(m *testing.M, pg **Postgres) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	p, err := StartPostgres(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*pg = p
	code := m.Run()
	if err := p.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// findBinDir locates the directory with initdb, pg_ctl and postgres: the one
// pg_config names, else the newest /usr/lib/postgresql/*/bin (Debian layout),
// else the directory of initdb on PATH.
func findBinDir(lookPath func(string) (string, error), libDir string) (string, error) {
	var candidates []string
	if pgConfig, err := lookPath("pg_config"); err == nil {
		if out, err := exec.Command(pgConfig, "--bindir").Output(); err == nil {
			candidates = append(candidates, strings.TrimSpace(string(out)))
		}
	}
	versions, _ := filepath.Glob(filepath.Join(libDir, "*", "bin"))
	slices.SortFunc(versions, func(a, b string) int { // newest first
		return compareVersions(filepath.Base(filepath.Dir(b)), filepath.Base(filepath.Dir(a)))
	})
	candidates = append(candidates, versions...)
	if initdb, err := lookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(initdb); err == nil {
			initdb = real
		}
		candidates = append(candidates, filepath.Dir(initdb))
	}
	for _, dir := range candidates {
		if isServerBinDir(dir) {
			return dir, nil
		}
	}
	return "", errNoBinaries
}

func isServerBinDir(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// compareVersions compares dotted numeric versions ("9.6" < "15" < "16").
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x - y
		}
	}
	return strings.Compare(a, b)
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pkitest: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func chownToServerUser(path string) error {
	u, err := user.Lookup(serverUser)
	if err != nil {
		return fmt.Errorf("pkitest: running as root needs the %q user to run PostgreSQL: %v", serverUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		return fmt.Errorf("pkitest: %v", err)
	}
	return nil
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("pkitest: %v", err)
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return fmt.Errorf("pkitest: %v", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pkitest: %v", err)
	}
	return nil
}
