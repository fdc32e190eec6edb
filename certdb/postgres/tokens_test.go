package postgres

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/certdb/certdbtest"
)

// Several processes (one pool each) race to consume one single-use token,
// to revoke one token, and append audit events.
func TestTokensConcurrentProcesses(t *testing.T) {
	ctx := t.Context()
	dsn := pg.NewDatabase(t)
	const n = 6
	first := open(t, dsn, WithMaxConns(3))
	if err := first.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	stores := []certdbtest.TokenAuditStore{first}
	for len(stores) < n {
		stores = append(stores, open(t, dsn, WithMaxConns(3)))
	}
	// Three goroutines per process in every race.
	certdbtest.RaceTokens(t, stores, certdbtest.RaceOptions{UseRacers: 3 * n, RevokeRacers: 3 * n, AuditWriters: 3 * n, AuditEach: 20})
}

// A database migrated by an old certctl (schema version 1, with
// certificates) is brought up to date without losing anything; its
// certificates land in CRL shard 0.
func TestMigrateFromVersion1(t *testing.T) {
	ctx := t.Context()
	s := open(t, pg.NewDatabase(t))
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 3 || ms[1].Name != "0002_tokens_audit.sql" || ms[2].Name != "0003_revocation.sql" {
		t.Fatalf("embedded migrations: %d, want 0001, 0002_tokens_audit.sql, 0003_revocation.sql, …", len(ms))
	}
	for _, q := range []string{createMigrationsTable, ms[0].SQL, `INSERT INTO schema_migrations (version, name) VALUES (1, 'v1')`} {
		if _, err := s.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	c := certdbtest.NewCertificate(t, certdbtest.RandomSerial(), now, now.Add(time.Hour))
	// The columns of version 1: what the old certctl wrote.
	if _, err := s.pool.Exec(ctx, `INSERT INTO certificates
		(serial, issuer_key_id, subject, not_before, not_after, status, der, revoked_at, reason)
		VALUES ($1, $2, $3, $4, $5, 3, $6, $7, 1)`,
		c.Serial.Bytes(), c.IssuerKeyID, c.Subject, c.NotBefore, c.NotAfter, c.DER, now); err != nil {
		t.Fatal(err)
	}
	err = s.CheckSchema(ctx)
	if !errors.Is(err, certdb.ErrSchema) || !strings.Contains(err.Error(), fmt.Sprintf("schema version 1, this certctl needs %d", len(ms))) {
		t.Fatalf("CheckSchema() at version 1 = %v, want ErrSchema naming versions 1 and %d", err, len(ms))
	}
	if err := s.CreateToken(ctx, certdbtest.NewToken("tok")); !errors.Is(err, certdb.ErrSchema) {
		t.Fatalf("CreateToken() before the tokens table exists = %v, want ErrSchema", err)
	}
	if _, err := s.GetCertificate(ctx, c.Serial); !errors.Is(err, certdb.ErrSchema) {
		t.Fatalf("GetCertificate() before the shard column exists = %v, want ErrSchema", err)
	}

	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	checkMigrated(t, s)
	certdbtest.CheckUpgradedFromVersion1(t, s, c, now)
}

// PostgreSQL text cannot hold NUL: the store reports ErrInvalid, not an
// opaque driver error.
func TestTokenAuditNUL(t *testing.T) {
	s := openMigrated(t)
	tok := certdbtest.NewToken("tok")
	tok.Description = "a\x00b"
	if err := s.CreateToken(t.Context(), tok); !errors.Is(err, certdb.ErrInvalid) {
		t.Errorf("CreateToken(NUL in Description) = %v, want ErrInvalid", err)
	}
	if err := s.AppendAudit(t.Context(), &certdb.AuditEvent{Action: "issue", Detail: "a\x00b"}); !errors.Is(err, certdb.ErrInvalid) {
		t.Errorf("AppendAudit(NUL in Detail) = %v, want ErrInvalid", err)
	}
}

func TestTokenAuditSchema(t *testing.T) {
	ctx := t.Context()
	s := openMigrated(t)

	t.Run("indexes", func(t *testing.T) {
		want := map[string]string{
			"tokens_pkey":     "ON public.tokens USING btree (id)",
			"audit_pkey":      "ON public.audit USING btree (id)",
			"audit_actor_id":  "ON public.audit USING btree (actor, id)",
			"audit_action_id": "ON public.audit USING btree (action, id)",
			"audit_time":      `ON public.audit USING btree ("time")`,
		}
		for name, suffix := range want {
			var def string
			if err := s.pool.QueryRow(ctx, `SELECT indexdef FROM pg_indexes WHERE indexname = $1`, name).Scan(&def); err != nil {
				t.Errorf("index %s: %v", name, err)
				continue
			}
			if !strings.HasSuffix(def, suffix) {
				t.Errorf("index %s = %q, want it to end with %q", name, def, suffix)
			}
		}
	})

	t.Run("constraints", func(t *testing.T) {
		const cols = `(id, hash, expires_at)`
		tests := []struct{ name, sql, code string }{
			{"empty id", `INSERT INTO tokens ` + cols + ` VALUES ('', '\x` + strings.Repeat("00", 32) + `', now())`, "23514"},
			{"short hash", `INSERT INTO tokens ` + cols + ` VALUES ('a', '\x` + strings.Repeat("00", 31) + `', now())`, "23514"},
			{"no hash", `INSERT INTO tokens ` + cols + ` VALUES ('a', NULL, now())`, "23502"},
			{"no expiry", `INSERT INTO tokens ` + cols + ` VALUES ('a', '\x` + strings.Repeat("00", 32) + `', NULL)`, "23502"},
			{"audit without action", `INSERT INTO audit (action) VALUES ('')`, "23514"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := s.pool.Exec(ctx, tt.sql)
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != tt.code {
					t.Fatalf("INSERT error = %v, want SQLSTATE %s", err, tt.code)
				}
			})
		}
		if _, err := s.pool.Exec(ctx, `INSERT INTO tokens `+cols+` VALUES ('a', '\x`+strings.Repeat("00", 32)+`', now())`); err != nil {
			t.Fatalf("valid row: %v", err)
		}
	})
}
