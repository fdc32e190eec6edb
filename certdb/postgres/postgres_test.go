package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/certdb/certdbtest"
	"github.com/certctl/certctl/internal/pkitest"
)

var pg *pkitest.Postgres

func TestMain(m *testing.M) { pkitest.MainWithPostgres(m, &pg) }

// open opens a store on dsn and closes it when t ends.
func open(t *testing.T, dsn string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(t.Context(), dsn, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openMigrated returns a migrated store on a fresh database.
func openMigrated(t *testing.T) *Store {
	t.Helper()
	s := open(t, pg.NewDatabase(t))
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	certdbtest.Run(t, func(t *testing.T) certdb.Store { return openMigrated(t) })
}

func migrationCount(t *testing.T) int {
	t.Helper()
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	return len(ms)
}

func checkMigrated(t *testing.T, s *Store) {
	t.Helper()
	var n, top int
	if err := s.pool.QueryRow(t.Context(), `SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &top); err != nil {
		t.Fatal(err)
	}
	if want := migrationCount(t); n != want || top != want {
		t.Fatalf("schema_migrations has %d rows up to version %d, want %d", n, top, want)
	}
	if err := s.CheckSchema(t.Context()); err != nil {
		t.Fatalf("CheckSchema after Migrate: %v", err)
	}
}

func TestMigrateIdempotent(t *testing.T) {
	s := open(t, pg.NewDatabase(t))
	for i := range 3 {
		if err := s.Migrate(t.Context()); err != nil {
			t.Fatalf("Migrate #%d: %v", i+1, err)
		}
	}
	checkMigrated(t, s)
}

// Several certctl processes migrating one database at once: each has its own
// pool; the advisory lock serialises them.
func TestMigrateConcurrent(t *testing.T) {
	dsn := pg.NewDatabase(t)
	const n = 4
	stores := make([]*Store, n)
	for i := range stores {
		stores[i] = open(t, dsn, WithMaxConns(2))
	}
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			<-start
			errs[i] = s.Migrate(t.Context())
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate in process %d: %v", i, err)
		}
	}
	checkMigrated(t, stores[0])
}

func TestCheckSchema(t *testing.T) {
	ctx := t.Context()
	s := open(t, pg.NewDatabase(t))
	want := migrationCount(t)

	err := s.CheckSchema(ctx)
	if !errors.Is(err, certdb.ErrSchema) {
		t.Fatalf("CheckSchema before Migrate = %v, want ErrSchema", err)
	}
	for _, part := range []string{"postgres: 127.0.0.1:", "schema version 0", fmt.Sprintf("needs %d", want), "run `certctl db migrate`"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("CheckSchema error %q does not contain %q", err, part)
		}
	}
	if _, err := s.GetCertificate(ctx, certdbtest.RandomSerial()); !errors.Is(err, certdb.ErrSchema) {
		t.Errorf("GetCertificate before Migrate = %v, want ErrSchema", err)
	}

	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema after Migrate: %v", err)
	}

	// A newer certctl migrated the database.
	if _, err := s.pool.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, 'from the future')`, want+1); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(context.Context) error{"CheckSchema": s.CheckSchema, "Migrate": s.Migrate} {
		err := f(ctx)
		if !errors.Is(err, certdb.ErrSchema) || !strings.Contains(err.Error(), "newer than this certctl") || !strings.Contains(err.Error(), "upgrade certctl") {
			t.Errorf("%s on a newer schema = %v, want ErrSchema saying to upgrade certctl", name, err)
		}
	}
	cur, wanted, err := s.SchemaVersion(ctx)
	if err != nil || cur != want+1 || wanted != want {
		t.Errorf("SchemaVersion() = %d, %d, %v; want %d, %d", cur, wanted, err, want+1, want)
	}
}

// The embedded migrations parse (the parser's rules are tested in
// certdb/internal/migrations).
func TestParseMigrations(t *testing.T) {
	if _, err := migrations(); err != nil {
		t.Fatalf("embedded migrations: %v", err)
	}
}

// closedPort returns a port of 127.0.0.1 that nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	return port
}

func TestOpenErrors(t *testing.T) {
	const pw = "s3cret-PW"
	closed := closedPort(t)
	live, err := pgx.ParseConfig(pg.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	livePort := strconv.Itoa(int(live.Port))
	// A server that accepts connections and never answers: only
	// connect_timeout ends the attempt.
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held sync.WaitGroup
	defer held.Wait() // runs after hung.Close (defers run last-in first-out)
	defer hung.Close()
	held.Go(func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	})
	hungPort := strconv.Itoa(hung.Addr().(*net.TCPAddr).Port)

	tests := []struct {
		name string
		dsn  string
		want []string // substrings of the error
	}{
		{"server never answers", "postgres://certctl:" + pw + "@127.0.0.1:" + hungPort + "/certdb?sslmode=disable&connect_timeout=1",
			[]string{"postgres: connect to 127.0.0.1:" + hungPort + "/certdb: ", "timeout"}},
		{"closed port", "postgres://certctl:" + pw + "@127.0.0.1:" + closed + "/certdb?sslmode=disable&connect_timeout=5",
			[]string{"postgres: connect to 127.0.0.1:" + closed + "/certdb: ", "connection refused"}},
		{"closed port keyword form", "host=127.0.0.1 port=" + closed + " user=certctl password='" + pw + " x' dbname=certdb sslmode=disable",
			[]string{"postgres: connect to 127.0.0.1:" + closed + "/certdb: "}},
		{"unknown database", "postgres://postgres:" + pw + "@" + live.Host + ":" + livePort + "/no_such_db?sslmode=disable",
			[]string{"postgres: connect to 127.0.0.1:" + livePort + "/no_such_db: ", `database "no_such_db" does not exist`}},
		// TEST-NET-1 (RFC 5737) is never routed: without connect_timeout the
		// attempt could hang, with it Open must give up.
		{"unroutable", "postgres://certctl:" + pw + "@192.0.2.1:5432/certdb?connect_timeout=1",
			[]string{"postgres: connect to 192.0.2.1:5432/certdb: "}},
		{"invalid URL", "postgres://certctl:" + pw + "@db.example:notaport/certdb",
			[]string{"postgres: invalid database URL"}},
		{"invalid URL query password", "postgres://certctl@db.example/certdb?password=" + pw + "&connect_timeout=soon",
			[]string{"postgres: invalid database URL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			s, err := Open(ctx, tt.dsn)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if ctx.Err() != nil {
				t.Fatalf("Open returned only when the test's deadline expired: %v", err)
			}
			t.Logf("Open error: %v", err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), pw) {
				t.Errorf("error %q contains the password", err)
			}
		})
	}

	t.Run("canceled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := Open(ctx, pg.AdminDSN())
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Open(canceled ctx) error = %v, want context.Canceled", err)
		}
	})
	for _, n := range []int32{0, -1} {
		t.Run(fmt.Sprintf("WithMaxConns(%d)", n), func(t *testing.T) {
			_, err := Open(t.Context(), pg.AdminDSN(), WithMaxConns(n))
			if !errors.Is(err, certdb.ErrInvalid) {
				t.Fatalf("Open(WithMaxConns(%d)) error = %v, want ErrInvalid", n, err)
			}
		})
	}
}

func TestWithMaxConns(t *testing.T) {
	dsn := pg.NewDatabase(t)
	if got := open(t, dsn, WithMaxConns(3)).Stat().MaxConns(); got != 3 {
		t.Errorf("WithMaxConns(3): MaxConns = %d", got)
	}
	withParam := dsn + " pool_max_conns=5" // keyword/value form (CERTCTL_TEST_DATABASE_URL may be one)
	if strings.HasPrefix(dsn, "postgres") {
		withParam = dsn + map[bool]string{true: "&", false: "?"}[strings.Contains(dsn, "?")] + "pool_max_conns=5"
	}
	if got := open(t, withParam).Stat().MaxConns(); got != 5 {
		t.Errorf("pool_max_conns=5: MaxConns = %d", got)
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ dsn, msg string }{
		{"postgres://u:hunter2@h/db", `parse "postgres://u:hunter2@h/db": invalid port`},
		{"postgresql://u:hunter2@h/db", "x hunter2 y"},
		{"postgres://u:hun%40ter2@h/db", "decoded hun@ter2 and raw hun%40ter2"},
		{"postgres://u:hunter2@h/db?application_name=a@b", "hunter2"},
		{"postgres://u:hu/nt@er2@h/db", "hu/nt@er2"},
		{"postgres://u@h/db?sslpassword=hunter2&x=1", "hunter2"},
		{"host=h password=hunter2 user=u", "hunter2"},
		{"host=h password='hunter 2' user=u", "'hunter 2' and hunter 2"},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			got := redact(tt.msg, tt.dsn)
			for _, secret := range []string{"hunter2", "hunter 2", "hun@ter2", "hun%40ter2", "nt@er2"} {
				if strings.Contains(got, secret) {
					t.Errorf("redact(%q) = %q: still contains %q", tt.msg, got, secret)
				}
			}
			if !strings.Contains(got, "xxxxx") {
				t.Errorf("redact(%q) = %q: nothing masked", tt.msg, got)
			}
		})
	}
}

// addRevoked stores a certificate and revokes it.
func addRevoked(t *testing.T, s *Store, now time.Time) *certdb.Certificate {
	t.Helper()
	c := certdbtest.NewCertificate(t, certdbtest.RandomSerial(), now.Add(-time.Hour), now.Add(24*time.Hour))
	if err := s.ReserveSerial(t.Context(), certdbtest.ReservationOf(c)); err != nil {
		t.Fatal(err)
	}
	if err := s.AddCertificate(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(t.Context(), c.Serial, certdb.ReasonKeyCompromise, now); err != nil {
		t.Fatal(err)
	}
	return c
}

// pingUntilUp pings s until it answers: after the server went away the pool
// may hand out each dead connection once.
func pingUntilUp(t *testing.T, s *Store) {
	t.Helper()
	var err error
	for range s.Stat().MaxConns() + 1 {
		if err = s.Ping(t.Context()); err == nil {
			return
		}
	}
	t.Fatalf("store does not recover after the server came back: %v", err)
}

func TestRestartLosesNothing(t *testing.T) {
	if pg.External() {
		t.Skipf("server from %s cannot be restarted", pkitest.EnvDatabaseURL)
	}
	ctx := t.Context()
	dsn := pg.NewDatabase(t)
	s := open(t, dsn)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	c := addRevoked(t, s, now)
	reserved := certdbtest.ReservationOf(certdbtest.NewCertificate(t, certdbtest.RandomSerial(), now, now.Add(time.Hour)))
	if err := s.ReserveSerial(ctx, reserved); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name  string
		cycle func(context.Context) error
	}{
		{"Restart", pg.Restart},
		{"crash and start", func(ctx context.Context) error {
			if err := pg.KillServer(ctx); err != nil {
				return err
			}
			return pg.StartServer(ctx)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cycle(ctx); err != nil {
				t.Fatal(err)
			}
			fresh := open(t, dsn)
			if err := fresh.CheckSchema(ctx); err != nil {
				t.Fatal(err)
			}
			got, err := fresh.GetCertificate(ctx, c.Serial)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != certdb.StatusRevoked || !got.RevokedAt.Equal(now) || got.Reason != certdb.ReasonKeyCompromise || string(got.DER) != string(c.DER) {
				t.Fatalf("after %s: %+v", tt.name, got)
			}
			if got, err := fresh.GetCertificate(ctx, reserved.Serial); err != nil || got.Status != certdb.StatusReserved {
				t.Fatalf("reservation after %s: %+v, %v", tt.name, got, err)
			}
			pingUntilUp(t, s) // the old pool recovers too
			if _, err := s.GetCertificate(ctx, c.Serial); err != nil {
				t.Fatalf("old store after %s: %v", tt.name, err)
			}
		})
	}
}

func TestOutage(t *testing.T) {
	if pg.External() {
		t.Skipf("server from %s cannot be stopped", pkitest.EnvDatabaseURL)
	}
	ctx := t.Context()
	s := openMigrated(t)
	if err := pg.StopServer(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			pg.StartServer(context.WithoutCancel(ctx))
		}
	}()
	err := s.Ping(ctx)
	if err == nil || !strings.HasPrefix(err.Error(), "postgres: ping 127.0.0.1:") {
		t.Fatalf("Ping while the server is down = %v, want an error naming the database", err)
	}
	if _, err := s.GetCertificate(ctx, certdbtest.RandomSerial()); err == nil || errors.Is(err, certdb.ErrNotFound) {
		t.Fatalf("GetCertificate while the server is down = %v, want a failure that is not ErrNotFound", err)
	}
	if err := pg.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	pingUntilUp(t, s)
}

func TestContextErrors(t *testing.T) {
	s := openMigrated(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.GetCertificate(ctx, certdbtest.RandomSerial()); !errors.Is(err, context.Canceled) {
		t.Errorf("GetCertificate(canceled) = %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), -time.Second)
	defer cancel()
	if err := s.Ping(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ping(expired) = %v, want context.DeadlineExceeded", err)
	}
}

// Several processes (one pool each) revoke the same certificate; several
// complete the same reservation.
func TestConcurrentStateChanges(t *testing.T) {
	dsn := pg.NewDatabase(t)
	const n = 6
	stores := make([]*Store, n)
	for i := range stores {
		stores[i] = open(t, dsn, WithMaxConns(2))
	}
	if err := stores[0].Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := certdbtest.NewCertificate(t, certdbtest.RandomSerial(), now, now.Add(time.Hour))
	if err := stores[0].ReserveSerial(t.Context(), certdbtest.ReservationOf(c)); err != nil {
		t.Fatal(err)
	}

	// race has every process (store) call op once, all at the same time.
	race := func(name string, op func(s *Store) error, loser error) {
		certdbtest.OneWinner(t, name, certdbtest.Race(n, func(i int) error { return op(stores[i]) }), loser)
	}
	race("AddCertificate", func(s *Store) error { return s.AddCertificate(t.Context(), c) }, certdb.ErrDuplicate)
	race("Revoke", func(s *Store) error {
		return s.Revoke(t.Context(), c.Serial, certdb.ReasonSuperseded, now)
	}, certdb.ErrAlreadyRevoked)
}

func TestSchema(t *testing.T) {
	ctx := t.Context()
	s := openMigrated(t)

	rows, err := s.pool.Query(ctx, `SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'certificates'`)
	if err != nil {
		t.Fatal(err)
	}
	defs := map[string]string{}
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			t.Fatal(err)
		}
		defs[name] = def
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	t.Run("indexes", func(t *testing.T) {
		want := map[string]string{
			"certificates_pkey":                        "USING btree (serial)",
			"certificates_revoked_issuer_not_after":    "USING btree (issuer_key_id, not_after) WHERE (status = 3)",
			"certificates_not_after":                   "USING btree (not_after)",
			"certificates_status_serial":               "USING btree (status, serial)",
			"certificates_revoked_issuer_shard_serial": "USING btree (issuer_key_id, shard, serial) INCLUDE (not_after, revoked_at, reason) WHERE (status = 3)",
			"certificates_issued_issuer_serial":        "USING btree (issuer_key_id, serial) INCLUDE (not_after, status) WHERE (status = ANY (ARRAY[2, 3]))",
		}
		for name, suffix := range want {
			if !strings.HasSuffix(defs[name], suffix) {
				t.Errorf("index %s = %q, want it to end with %q", name, defs[name], suffix)
			}
		}
	})

	// Each index must be usable by the query it is for, with a generic plan
	// (the partial index needs the literal status = 3). The table is too
	// small for the planner to prefer an index on its own, so each check
	// drops the other indexes and disables sequential scans, inside a
	// transaction that is rolled back.
	t.Run("plans", func(t *testing.T) {
		plans := []struct{ index, prepare, args string }{
			{"certificates_revoked_issuer_not_after", listRevoked, `('\x01', now())`},
			{"certificates_not_after", `SELECT serial FROM certificates WHERE status IN (2, 3) AND not_after < $1 ORDER BY serial LIMIT 100`, `(now())`},
			{"certificates_status_serial", `SELECT serial FROM certificates WHERE status = $1 ORDER BY serial LIMIT 100`, `(1)`},
			{"certificates_revoked_issuer_shard_serial", listRevokedShard, `('\x01', 0, now())`},
			{"certificates_issued_issuer_serial", listOCSPStale, `('\x01', now(), now(), '\x', 1000)`},
		}
		for i, p := range plans {
			t.Run(p.index, func(t *testing.T) {
				stmt := fmt.Sprintf("plan_%d", i) // PREPARE outlives a rolled-back transaction
				conn, err := s.pool.Acquire(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Release()
				tx, err := conn.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Rollback(ctx)
				for name := range defs {
					switch name {
					case p.index:
					case "certificates_pkey":
						_, err = tx.Exec(ctx, `ALTER TABLE certificates DROP CONSTRAINT certificates_pkey CASCADE`) // and ocsp_responses' foreign key
					default:
						_, err = tx.Exec(ctx, `DROP INDEX `+name)
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				for _, sql := range []string{
					`SET LOCAL enable_seqscan = off`,
					`SET LOCAL plan_cache_mode = force_generic_plan`, // as pgx's cached statements may be planned
					`PREPARE ` + stmt + ` AS ` + p.prepare} {
					if _, err := tx.Exec(ctx, sql); err != nil {
						t.Fatalf("%s: %v", sql, err)
					}
				}
				defer conn.Exec(ctx, `DEALLOCATE `+stmt)
				rows, err := tx.Query(ctx, "EXPLAIN EXECUTE "+stmt+p.args)
				if err != nil {
					t.Fatal(err)
				}
				lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					t.Fatal(err)
				}
				// "Index [Only] Scan using NAME" or "Bitmap Index Scan on NAME"
				if plan := strings.Join(lines, "\n"); !strings.Contains(plan, " using "+p.index) && !strings.Contains(plan, " on "+p.index) {
					t.Errorf("plan of %s does not use %s:\n%s", p.prepare, p.index, plan)
				}
			})
		}
	})

	t.Run("constraints", func(t *testing.T) {
		const cols = `(serial, issuer_key_id, subject, not_before, not_after, status, der, revoked_at, reason)`
		tests := []struct {
			name, values string
		}{
			{"empty serial", `('\x', '\x01', 'CN=x', now(), now(), 2, '\x30', NULL, NULL)`},
			{"leading zero serial", `('\x0001', '\x01', 'CN=x', now(), now(), 2, '\x30', NULL, NULL)`},
			{"21 octet serial", `('\x010000000000000000000000000000000000000000', '\x01', 'CN=x', now(), now(), 2, '\x30', NULL, NULL)`},
			{"unknown status", `('\x01', '\x01', 'CN=x', now(), now(), 4, '\x30', NULL, NULL)`},
			{"reason 7", `('\x01', '\x01', 'CN=x', now(), now(), 3, '\x30', now(), 7)`},
			{"revoked without reason", `('\x01', '\x01', 'CN=x', now(), now(), 3, '\x30', now(), NULL)`},
			{"valid with revocation", `('\x01', '\x01', 'CN=x', now(), now(), 2, '\x30', now(), 1)`},
			{"valid without DER", `('\x01', '\x01', 'CN=x', now(), now(), 2, NULL, NULL, NULL)`},
			{"reserved with DER", `('\x01', '\x01', 'CN=x', now(), now(), 1, '\x30', NULL, NULL)`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := s.pool.Exec(ctx, `INSERT INTO certificates `+cols+` VALUES `+tt.values)
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
					t.Fatalf("INSERT error = %v, want check_violation (23514)", err)
				}
			})
		}
		// The same row with good values is accepted, so the cases above
		// fail for the reason they name.
		if _, err := s.pool.Exec(ctx, `INSERT INTO certificates `+cols+` VALUES ('\x01', '\x01', 'CN=x', now(), now(), 3, '\x30', now(), 10)`); err != nil {
			t.Fatalf("valid row: %v", err)
		}
	})
}
