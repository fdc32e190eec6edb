package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/certdb/certdbtest"
)

// openPath opens the store at path and closes it at the end of the test.
func openPath(t *testing.T, path string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(t.Context(), path, opts...)
	if err != nil {
		t.Fatalf("Open(%s) error = %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() error = %v", err)
		}
	})
	return s
}

// openTest opens a fresh, migrated store in t.TempDir().
func openTest(t *testing.T, opts ...Option) *Store {
	t.Helper()
	s := openPath(t, filepath.Join(t.TempDir(), "certctl.db"), opts...)
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate() error = %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	certdbtest.Run(t, func(t *testing.T) certdb.Store { return openTest(t) })
}

func TestFileModes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "certctl.db")
	s := openPath(t, path)
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := s.AddCertificate(t.Context(), certdbtest.NewCertificate(t, certdbtest.RandomSerial(), now, now.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	// The WAL and shared-memory files exist while the store is open.
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("stat %s: %v", filepath.Base(p), err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s mode = %v, want -rw-------", filepath.Base(p), got)
		}
	}
}

func TestFileModeSidecarsTightened(t *testing.T) {
	// A database file made by another tool with a loose mode: Open keeps the
	// file's mode (it is the operator's) but -wal and -shm never end up
	// readable by others once Open returns.
	path := filepath.Join(t.TempDir(), "certctl.db")
	s := openPath(t, path)
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	s2 := openPath(t, path)
	if err := s2.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("stat %s: %v", filepath.Base(p), err)
		}
		if got := fi.Mode().Perm(); got&0o077 != 0 {
			t.Errorf("%s mode = %v, want no group/other access", filepath.Base(p), got)
		}
	}
}

func TestOpenMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "does-not-exist")
	path := filepath.Join(dir, "certctl.db")
	s, err := Open(t.Context(), path)
	if err == nil {
		s.Close()
		t.Fatal("Open() in a missing directory succeeded")
	}
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open() error = %v, want fs.ErrNotExist naming %s", err, path)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open() created %s (stat error %v)", dir, err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
	}{
		{"empty path", ""},
		{"path is a directory", dir},
		{"parent is a file", filepath.Join(dir, "file", "certctl.db")},
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(t.Context(), tt.path)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded", tt.path)
			}
			if !strings.HasPrefix(err.Error(), "sqlite: ") {
				t.Errorf("Open() error = %q, want the package prefix", err)
			}
		})
	}
}

func TestOpenOddPath(t *testing.T) {
	// Characters that mean something in a URI must reach SQLite as a path.
	path := filepath.Join(t.TempDir(), "a dir?x=1#frag%20", "cert ctl.db")
	if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	s := openPath(t, path)
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at %q: %v", path, err)
	}
}

func TestMigrateIdempotent(t *testing.T) {
	s := openTest(t) // migrated once
	now := time.Now()
	c := certdbtest.NewCertificate(t, certdbtest.RandomSerial(), now, now.Add(time.Hour))
	if err := s.AddCertificate(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := s.Migrate(t.Context()); err != nil {
			t.Fatalf("Migrate() #%d error = %v", i+2, err)
		}
	}
	if err := s.CheckSchema(t.Context()); err != nil {
		t.Fatalf("CheckSchema() error = %v", err)
	}
	var n int
	if err := s.r.QueryRowContext(t.Context(), `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if n != len(ms) {
		t.Fatalf("schema_migrations has %d rows, want %d", n, len(ms))
	}
	if _, err := s.GetCertificate(t.Context(), c.Serial); err != nil {
		t.Fatalf("record lost by Migrate: %v", err)
	}
}

func TestMigrateConcurrent(t *testing.T) {
	// Two stores on one file stand in for two processes running
	// `certctl db migrate` at once.
	path := filepath.Join(t.TempDir(), "certctl.db")
	stores := []*Store{openPath(t, path), openPath(t, path)}
	errs := make([]error, len(stores))
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() { errs[i] = s.Migrate(t.Context()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate() #%d error = %v", i, err)
		}
	}
	if err := stores[0].CheckSchema(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestCheckSchema(t *testing.T) {
	ctx := t.Context()
	s := openPath(t, filepath.Join(t.TempDir(), "certctl.db"))

	err := s.CheckSchema(ctx)
	if !errors.Is(err, certdb.ErrSchema) {
		t.Fatalf("CheckSchema() on a new database error = %v, want ErrSchema", err)
	}
	ms, err2 := migrations()
	if err2 != nil {
		t.Fatal(err2)
	}
	for _, want := range []string{"version 0", fmt.Sprintf("needs %d", len(ms)), "run `certctl db migrate`"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("CheckSchema() error = %q, want it to contain %q", err, want)
		}
	}
	if cur, want, err := s.SchemaVersion(ctx); err != nil || cur != 0 || want != len(ms) {
		t.Fatalf("SchemaVersion() = %d, %d, %v; want 0, %d, nil", cur, want, err, len(ms))
	}

	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema() after Migrate error = %v", err)
	}

	// A newer certctl migrated this database.
	if _, err := s.w.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, '0099_future.sql', 0)`); err != nil {
		t.Fatal(err)
	}
	err = s.CheckSchema(ctx)
	if !errors.Is(err, certdb.ErrSchema) || !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), "99") {
		t.Fatalf("CheckSchema() on a newer database error = %v, want ErrSchema saying it is newer", err)
	}
	if err := s.Migrate(ctx); !errors.Is(err, certdb.ErrSchema) {
		t.Fatalf("Migrate() on a newer database error = %v, want ErrSchema", err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "certctl.db")
	created := time.Date(2030, 5, 6, 7, 8, 9, 123456000, time.UTC)
	s, err := Open(ctx, path, WithClock(func() time.Time { return created }))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	valid := certdbtest.NewCertificate(t, certdbtest.RandomSerial(), now, now.Add(time.Hour))
	revoked := certdbtest.NewCertificate(t, certdbtest.RandomSerial(), now, now.Add(time.Hour))
	reserved := certdbtest.NewCertificate(t, certdbtest.RandomSerial(), now, now.Add(time.Hour))
	for _, c := range []*certdb.Certificate{valid, revoked} {
		if err := s.AddCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Revoke(ctx, revoked.Serial, certdb.ReasonKeyCompromise, now); err != nil {
		t.Fatal(err)
	}
	if err := s.ReserveSerial(ctx, certdbtest.ReservationOf(reserved)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := openPath(t, path)
	if err := s2.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema() after reopen error = %v", err)
	}
	tests := []struct {
		name   string
		c      *certdb.Certificate
		status certdb.Status
	}{
		{"valid", valid, certdb.StatusValid},
		{"revoked", revoked, certdb.StatusRevoked},
		{"reserved", reserved, certdb.StatusReserved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s2.GetCertificate(ctx, tt.c.Serial)
			if err != nil {
				t.Fatalf("GetCertificate() after reopen error = %v", err)
			}
			if got.Status != tt.status || !got.NotAfter.Equal(tt.c.NotAfter) || !got.CreatedAt.Equal(created) {
				t.Fatalf("after reopen: Status %v, NotAfter %v, CreatedAt %v; want %v, %v, %v",
					got.Status, got.NotAfter, got.CreatedAt, tt.status, tt.c.NotAfter, created)
			}
			if tt.status != certdb.StatusReserved && string(got.DER) != string(tt.c.DER) {
				t.Fatalf("DER changed across reopen")
			}
		})
	}
	// The reservation's lint certificate was stored with it.
	var lint []byte
	if err := s2.r.QueryRowContext(ctx, `SELECT lint_der FROM certificates WHERE serial = ?`, reserved.Serial.Bytes()).Scan(&lint); err != nil {
		t.Fatal(err)
	}
	if want := certdbtest.ReservationOf(reserved).LintDER; string(lint) != string(want) {
		t.Fatalf("lint_der = %q, want %q", lint, want)
	}
}

func TestTwoStoresOneFile(t *testing.T) {
	// Two stores on one file stand in for two processes: the unique
	// constraint, not the in-process write connection, must decide the race.
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "certctl.db")
	a := openPath(t, path)
	if err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	b := openPath(t, path)
	now := time.Now()
	const rounds = 20
	for round := range rounds {
		c := certdbtest.NewCertificate(t, certdbtest.RandomSerial(), now, now.Add(time.Hour))
		errs := make([]error, 4)
		var wg sync.WaitGroup
		for i := range errs {
			s := []*Store{a, b}[i%2]
			wg.Go(func() { errs[i] = s.AddCertificate(ctx, c) })
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, certdb.ErrDuplicate):
				t.Fatalf("round %d: AddCertificate() error = %v, want nil or ErrDuplicate", round, err)
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d AddCertificate calls succeeded, want 1", round, ok)
		}
	}
	list, err := b.ListCertificates(ctx, certdb.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != rounds {
		t.Fatalf("listed %d certificates, want %d", len(list), rounds)
	}
}

func TestStoreSpecificInvalid(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	now := time.Now()
	newCert := func() *certdb.Certificate {
		return certdbtest.NewCertificate(t, certdbtest.RandomSerial(), now, now.Add(time.Hour))
	}
	issued := newCert()
	if err := s.AddCertificate(ctx, issued); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		fn   func() error
	}{
		{"AddCertificate without DER", func() error { c := newCert(); c.DER = nil; return s.AddCertificate(ctx, c) }},
		{"AddCertificate revoked status", func() error { c := newCert(); c.Status = certdb.StatusRevoked; return s.AddCertificate(ctx, c) }},
		{"AddCertificate reserved status", func() error { c := newCert(); c.Status = certdb.StatusReserved; return s.AddCertificate(ctx, c) }},
		{"Revoke zero time", func() error { return s.Revoke(ctx, issued.Serial, certdb.ReasonKeyCompromise, time.Time{}) }},
		{"ListCertificates negative cursor", func() error {
			_, err := s.ListCertificates(ctx, certdb.Query{After: big.NewInt(-1)})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.fn(); !errors.Is(err, certdb.ErrInvalid) {
				t.Fatalf("error = %v, want ErrInvalid", err)
			}
		})
	}
	if got, err := s.GetCertificate(ctx, issued.Serial); err != nil || got.Status != certdb.StatusValid {
		t.Fatalf("after invalid calls: %v, %v; want a valid record", got, err)
	}
}

func TestWithClock(t *testing.T) {
	at := time.Date(2029, 1, 2, 3, 4, 5, 678901234, time.FixedZone("x", 3600))
	s := openTest(t, WithClock(func() time.Time { return at }))
	c := certdbtest.NewCertificate(t, certdbtest.RandomSerial(), at, at.Add(time.Hour))
	if err := s.ReserveSerial(t.Context(), certdbtest.ReservationOf(c)); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetCertificate(t.Context(), c.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if want := at.Truncate(time.Microsecond).UTC(); !got.CreatedAt.Equal(want) || got.CreatedAt.Location() != time.UTC {
		t.Fatalf("CreatedAt = %v, want %v in UTC", got.CreatedAt, want)
	}
}

func TestClosedStore(t *testing.T) {
	s := openTest(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(t.Context()); err == nil {
		t.Fatal("Ping() on a closed store succeeded")
	}
	if err := s.ReserveSerial(t.Context(), &certdb.Reservation{Serial: big.NewInt(1)}); err == nil {
		t.Fatal("ReserveSerial() on a closed store succeeded")
	}
}

func TestParseMigrations(t *testing.T) {
	ms, err := migrations()
	if err != nil {
		t.Fatalf("embedded migrations: %v", err)
	}
	names := []string{"0001_init.sql", "0002_tokens_audit.sql", "0003_revocation.sql", "0004_revocation_events.sql", "0005_ct.sql", "0006_scan.sql"}
	if len(ms) != len(names) {
		t.Fatalf("embedded migrations: %d, want %v", len(ms), names)
	}
	for i, m := range ms {
		if m.Version != i+1 || m.Name != names[i] {
			t.Fatalf("embedded migration #%d = %d %s, want %d %s", i, m.Version, m.Name, i+1, names[i])
		}
	}
}

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "certctl-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	s, err := Open(ctx, filepath.Join(dir, "certctl.db"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	if err := s.CheckSchema(ctx); errors.Is(err, certdb.ErrSchema) {
		fmt.Println("schema is behind; migrating")
		if err := s.Migrate(ctx); err != nil {
			fmt.Println(err)
			return
		}
	}
	fmt.Println("check:", s.CheckSchema(ctx))
	// Output:
	// schema is behind; migrating
	// check: <nil>
}
