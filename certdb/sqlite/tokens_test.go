package sqlite

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/certdb/certdbtest"
)

// A database migrated by an old certctl (schema version 1, with
// certificates) is brought up to date without losing anything; its
// certificates land in CRL shard 0.
func TestMigrateFromVersion1(t *testing.T) {
	ctx := t.Context()
	s := openPath(t, filepath.Join(t.TempDir(), "certctl.db"))
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{createMigrationsTable, ms[0].SQL,
		`INSERT INTO schema_migrations (version, name, applied_at) VALUES (1, '0001_init.sql', 0)`} {
		if _, err := s.w.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	c := certdbtest.NewCertificate(t, certdbtest.RandomSerial(), now, now.Add(time.Hour))
	// The columns of version 1: what the old certctl wrote.
	if _, err := s.w.ExecContext(ctx, `INSERT INTO certificates
		(serial, issuer_key_id, subject, sans, not_before, not_after, status, der, profile, requester, created_at, revoked_at, reason)
		VALUES (?, ?, ?, '[]', ?, ?, 3, ?, '', '', ?, ?, 1)`,
		c.Serial.Bytes(), c.IssuerKeyID, c.Subject, micros(c.NotBefore), micros(c.NotAfter), c.DER, micros(now), micros(now)); err != nil {
		t.Fatal(err)
	}
	err = s.CheckSchema(ctx)
	if !errors.Is(err, certdb.ErrSchema) || !strings.Contains(err.Error(), fmt.Sprintf("version 1, this certctl needs %d", len(ms))) {
		t.Fatalf("CheckSchema() at version 1 = %v, want ErrSchema naming versions 1 and %d", err, len(ms))
	}
	if err := s.CreateToken(ctx, certdbtest.NewToken("tok")); err == nil {
		t.Fatal("CreateToken() before the tokens table exists succeeded")
	}

	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema() after Migrate = %v", err)
	}
	certdbtest.CheckUpgradedFromVersion1(t, s, c, now)
}

// Two stores on one file stand in for two processes: the UPDATE's WHERE
// clause, not the in-process write connection, must decide who consumes a
// single-use token; appends from both must all be kept.
func TestTokensTwoStoresOneFile(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "certctl.db")
	a := openPath(t, path)
	if err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	b := openPath(t, path)
	certdbtest.RaceTokens(t, []certdbtest.TokenAuditStore{a, b}, certdbtest.RaceOptions{UseRacers: 16, RevokeRacers: 8, AuditWriters: 4, AuditEach: 25})
}

func TestTokenAuditWithClock(t *testing.T) {
	at := time.Date(2029, 1, 2, 3, 4, 5, 678901234, time.FixedZone("x", 3600))
	want := at.Truncate(time.Microsecond).UTC()
	s := openTest(t, WithClock(func() time.Time { return at }))
	tok := certdbtest.NewToken("tok")
	if err := s.CreateToken(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetToken(t.Context(), tok.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.CreatedAt.Equal(want) || !tok.CreatedAt.Equal(want) || tok.CreatedAt.Location() != time.UTC {
		t.Fatalf("CreatedAt = %v stored, %v in the caller's token; want %v in UTC", got.CreatedAt, tok.CreatedAt, want)
	}
	e := &certdb.AuditEvent{Action: "issue"}
	if err := s.AppendAudit(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	if !e.Time.Equal(want) || e.Time.Location() != time.UTC {
		t.Fatalf("audit Time = %v, want %v in UTC", e.Time, want)
	}
}

// The schema itself refuses rows the store would never write.
func TestTokenAuditConstraints(t *testing.T) {
	s := openTest(t)
	const cols = `(id, hash, profiles, names, single_use, admin, description, created_by, created_at, expires_at)`
	tests := []struct{ name, sql string }{
		{"empty token id", `INSERT INTO tokens ` + cols + ` VALUES ('', zeroblob(32), '[]', '[]', 0, 0, '', '', 0, 1)`},
		{"short hash", `INSERT INTO tokens ` + cols + ` VALUES ('a', zeroblob(31), '[]', '[]', 0, 0, '', '', 0, 1)`},
		{"hash as text", `INSERT INTO tokens ` + cols + ` VALUES ('a', printf('%032d', 0), '[]', '[]', 0, 0, '', '', 0, 1)`},
		{"profiles not an array", `INSERT INTO tokens ` + cols + ` VALUES ('a', zeroblob(32), '"server"', '[]', 0, 0, '', '', 0, 1)`},
		{"single_use 2", `INSERT INTO tokens ` + cols + ` VALUES ('a', zeroblob(32), '[]', '[]', 2, 0, '', '', 0, 1)`},
		{"no expiry", `INSERT INTO tokens ` + cols + ` VALUES ('a', zeroblob(32), '[]', '[]', 0, 0, '', '', 0, NULL)`},
		{"audit without action", `INSERT INTO audit (time, actor, action, target, outcome, detail) VALUES (0, '', '', '', '', '')`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.w.ExecContext(t.Context(), tt.sql); err == nil {
				t.Fatal("INSERT succeeded")
			}
		})
	}
	if _, err := s.w.ExecContext(t.Context(), `INSERT INTO tokens `+cols+` VALUES ('a', zeroblob(32), '[]', '[]', 0, 0, '', '', 0, 1)`); err != nil {
		t.Fatalf("valid row: %v", err)
	}
}
