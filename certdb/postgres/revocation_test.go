package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/certdb/certdbtest"
	"github.com/certctl/certctl/internal/pkitest"
)

// lostTimeout bounds how long a lock holder may take to notice that its
// connection is gone (a ping every lockPingInterval, each bounded by
// lockPingTimeout), with a wide margin for a loaded machine.
const lostTimeout = 10 * (lockPingInterval + lockPingTimeout)

// twoProcesses returns two stores (two pools, standing in for two certctl
// processes) on one fresh, migrated database.
func twoProcesses(t *testing.T) (a, b *Store) {
	t.Helper()
	dsn := pg.NewDatabase(t)
	a, b = open(t, dsn), open(t, dsn)
	if err := a.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return a, b
}

func issueCert(t *testing.T, s *Store) *certdb.Certificate {
	t.Helper()
	now := time.Now()
	c := certdbtest.NewCertificate(t, certdbtest.RandomSerial(), now.Add(-time.Hour), now.Add(24*time.Hour))
	if err := s.AddCertificate(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	return c
}

func revokeCert(t *testing.T, s *Store, c *certdb.Certificate) {
	t.Helper()
	if err := s.Revoke(t.Context(), c.Serial, certdb.ReasonKeyCompromise, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func TestNotifyAcrossProcesses(t *testing.T) {
	a, b := twoProcesses(t)
	chA, err := a.SubscribeRevocations(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	chB, err := b.SubscribeRevocations(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// A revocation in one process reaches the subscribers of both.
	c := issueCert(t, b)
	revokeCert(t, b, c)
	certdbtest.WaitForSerial(t, chA, c.Serial)
	certdbtest.WaitForSerial(t, chB, c.Serial)

	c = issueCert(t, a)
	revokeCert(t, a, c)
	certdbtest.WaitForSerial(t, chB, c.Serial)
	certdbtest.WaitForSerial(t, chA, c.Serial)

	sn := certdbtest.RandomSerial()
	if err := b.NotifyRevoked(t.Context(), sn); err != nil {
		t.Fatal(err)
	}
	certdbtest.WaitForSerial(t, chA, sn)

	// Revoke announces from inside its transaction: a rolled-back
	// revocation announces nothing (pg_notify is transactional); the next
	// serial to arrive is the committed one.
	rolledBack := issueCert(t, a)
	tx, err := a.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), revoke, rolledBack.Serial.Bytes(), time.Now(), int16(1)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	committed := issueCert(t, a)
	revokeCert(t, a, committed)
	for got := range chB {
		if got != nil && got.Cmp(rolledBack.Serial) == 0 {
			t.Fatalf("a rolled-back revocation was announced")
		}
		if got != nil && got.Cmp(committed.Serial) == 0 {
			break
		}
	}
}

// A subscription survives a server restart: after it reconnects it sends
// the nil rescan marker, then delivers later revocations again.
func TestSubscriptionSurvivesRestart(t *testing.T) {
	if pg.External() {
		t.Skipf("server from %s cannot be restarted", pkitest.EnvDatabaseURL)
	}
	a, b := twoProcesses(t)
	ch, err := a.SubscribeRevocations(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	before := issueCert(t, b)
	revokeCert(t, b, before)
	certdbtest.WaitForSerial(t, ch, before.Serial)

	if err := pg.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(time.Minute) // reconnecting backs off up to listenBackoffMax
	for rescan := false; !rescan; {
		select {
		case got, ok := <-ch:
			if !ok {
				t.Fatal("subscription closed by a server restart")
			}
			rescan = got == nil
		case <-timeout:
			t.Fatal("no rescan marker after the server restarted")
		}
	}
	pingUntilUp(t, b)
	after := issueCert(t, b)
	revokeCert(t, b, after)
	certdbtest.WaitForSerial(t, ch, after.Serial)
}

func tryLock(t *testing.T, s *Store, name string) (bool, func(), <-chan struct{}) {
	t.Helper()
	ok, release, lost, err := s.TryLock(t.Context(), name)
	if err != nil {
		t.Fatalf("TryLock(%q): %v", name, err)
	}
	return ok, release, lost
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(lostTimeout):
		t.Fatalf("%s: lost not closed within %v", what, lostTimeout)
	}
}

func TestLockAcrossProcesses(t *testing.T) {
	a, b := twoProcesses(t)
	ok, release, lost := tryLock(t, a, "leader")
	if !ok {
		t.Fatal("process A: TryLock did not acquire a free lock")
	}
	if ok, _, _ := tryLock(t, b, "leader"); ok {
		t.Fatal("process B acquired the lock A holds")
	}
	release()
	waitClosed(t, lost, "after release")
	okB, releaseB, lostB := tryLock(t, b, "leader")
	if !okB {
		t.Fatal("process B: TryLock after A released did not acquire")
	}
	if ok, _, _ := tryLock(t, a, "leader"); ok {
		t.Fatal("process A acquired the lock B holds")
	}

	// Closing the store gives its locks up (and reports them lost).
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, lostB, "after Close")
	releaseB() // after Close: a no-op
	if ok, release, _ := tryLock(t, a, "leader"); !ok {
		t.Fatal("process A: TryLock after B closed did not acquire")
	} else {
		release()
	}
	if _, _, _, err := b.TryLock(t.Context(), "leader"); err == nil {
		t.Fatal("TryLock on a closed store succeeded")
	}
}

// The lock lives in its holder's session: when the server restarts the
// session is gone, the holder learns it through lost, and another process can
// lead.
func TestLockLostOnRestart(t *testing.T) {
	if pg.External() {
		t.Skipf("server from %s cannot be restarted", pkitest.EnvDatabaseURL)
	}
	a, b := twoProcesses(t)
	ok, release, lost := tryLock(t, a, "leader")
	if !ok {
		t.Fatal("TryLock did not acquire a free lock")
	}
	defer release()
	if err := pg.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, lost, "after a server restart")
	pingUntilUp(t, b)
	if ok, release, _ := tryLock(t, b, "leader"); !ok {
		t.Fatal("process B: TryLock after the holder's session died did not acquire")
	} else {
		release()
	}
}

// Several processes allocate CRL numbers for one shard at once: every number
// is handed out once, and each caller sees its own numbers increase.
func TestCRLNumbersAcrossProcesses(t *testing.T) {
	dsn := pg.NewDatabase(t)
	const processes, goroutines, each = 4, 4, 5
	stores := make([]*Store, processes)
	for i := range stores {
		stores[i] = open(t, dsn, WithMaxConns(2))
	}
	if err := stores[0].Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	issuer := certdbtest.DefaultIssuerKeyID()
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
		wg   sync.WaitGroup
	)
	start := make(chan struct{})
	for p := range processes {
		for range goroutines {
			wg.Go(func() {
				<-start
				var last *big.Int
				for range each {
					n, err := stores[p].NextCRLNumber(t.Context(), issuer, 0)
					if err != nil {
						t.Errorf("NextCRLNumber: %v", err)
						return
					}
					if last != nil && n.Cmp(last) <= 0 {
						t.Errorf("process %d: %v after %v", p, n, last)
					}
					last = n
					mu.Lock()
					if seen[n.String()] {
						t.Errorf("number %v handed out twice", n)
					}
					seen[n.String()] = true
					mu.Unlock()
				}
			})
		}
	}
	close(start)
	wg.Wait()
	if total := processes * goroutines * each; len(seen) != total || !seen[fmt.Sprint(total)] {
		t.Fatalf("%d distinct numbers, want 1..%d", len(seen), total)
	}
}

// PostgreSQL keeps CRL numbers up to RFC 5280's 20 octets.
func TestCRLNumbersBig(t *testing.T) {
	ctx := t.Context()
	s := openMigrated(t)
	issuer := []byte("big")
	big100 := new(big.Int).Lsh(big.NewInt(1), 100)
	if _, err := s.pool.Exec(ctx, `INSERT INTO crl_numbers (issuer_key_id, shard, last_number) VALUES ($1, 0, $2::numeric)`, issuer, big100.String()); err != nil {
		t.Fatal(err)
	}
	n, err := s.NextCRLNumber(ctx, issuer, 0)
	if want := new(big.Int).Add(big100, big.NewInt(1)); err != nil || n.Cmp(want) != 0 {
		t.Fatalf("NextCRLNumber() = %v, %v; want %v", n, err, want)
	}

	largest := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 159), big.NewInt(1)) // 20 octets, positive
	now := time.Now().UTC().Truncate(time.Microsecond)
	c := &certdb.CRL{IssuerKeyID: issuer, Shard: 1, Number: largest, ThisUpdate: now, NextUpdate: now.Add(time.Hour), DER: []byte{0x30}}
	if err := s.PutCRL(ctx, c); err != nil {
		t.Fatal(err)
	}
	lower := *c
	lower.Number, lower.DER = big100, []byte{0x31}
	if err := s.PutCRL(ctx, &lower); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetCRL(ctx, issuer, 1)
	if err != nil || got.Number.Cmp(largest) != 0 || !bytes.Equal(got.DER, c.DER) {
		t.Fatalf("GetCRL() = %+v, %v; want number %v (a lower number must not replace it)", got, err, largest)
	}

	// The sequence ends at 20 octets rather than producing a number RFC 5280
	// forbids.
	if _, err := s.pool.Exec(ctx, `UPDATE crl_numbers SET last_number = $2::numeric WHERE issuer_key_id = $1`, issuer, largest.String()); err != nil {
		t.Fatal(err)
	}
	if n, err := s.NextCRLNumber(ctx, issuer, 0); !errors.Is(err, certdb.ErrInvalid) {
		t.Fatalf("NextCRLNumber() past 20 octets = %v, %v; want ErrInvalid", n, err)
	}
}

// copyCertificates inserts n issued certificates with COPY (fast enough for
// hundreds of thousands of rows) and returns their serials in insertion
// order when keep is set.
func copyCertificates(t *testing.T, s *Store, n int, issuer []byte, shard int, status certdb.Status, notAfter time.Time, keep bool) [][]byte {
	t.Helper()
	der := make([]byte, 200) // a certificate's worth of bytes, so rows are not unrealistically small
	rand.Read(der)
	now := time.Now()
	var serials [][]byte
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i == n {
			return nil, nil
		}
		i++
		sn := certdbtest.RandomSerial().Bytes()
		if keep {
			serials = append(serials, sn)
		}
		var revokedAt, reason any
		if status == certdb.StatusRevoked {
			revokedAt, reason = now, int16(certdb.ReasonKeyCompromise)
		}
		return []any{sn, issuer, "CN=bulk", now.Add(-time.Hour), notAfter, int16(status), der, revokedAt, reason, int32(shard)}, nil
	})
	cols := []string{"serial", "issuer_key_id", "subject", "not_before", "not_after", "status", "der", "revoked_at", "reason", "shard"}
	got, err := s.pool.CopyFrom(t.Context(), pgx.Identifier{"certificates"}, cols, src)
	if err != nil {
		t.Fatalf("COPY %d certificates: %v", n, err)
	}
	if got != int64(n) {
		t.Fatalf("COPY stored %d certificates, want %d", got, n)
	}
	return serials
}

func explain(t *testing.T, s *Store, sql string, args ...any) string {
	t.Helper()
	rows, err := s.pool.Query(t.Context(), "EXPLAIN "+sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// explainGeneric returns the generic plan of sql (the one PostgreSQL may
// settle on for a statement pgx has prepared) for the given arguments.
func explainGeneric(t *testing.T, s *Store, sql, args string) string {
	t.Helper()
	ctx := t.Context()
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
	defer conn.Exec(context.WithoutCancel(ctx), `DEALLOCATE generic_plan`) // PREPARE outlives the transaction
	for _, q := range []string{`SET LOCAL plan_cache_mode = force_generic_plan`, `PREPARE generic_plan AS ` + sql} {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	rows, err := tx.Query(ctx, `EXPLAIN EXECUTE generic_plan`+args)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// A CRL of 200,000 entries streams: the live heap does not grow with the
// number of rows, and the query is an index scan in serial order.
func TestListRevokedShardLarge(t *testing.T) {
	ctx := t.Context()
	s := openMigrated(t)
	issuer, other := certdbtest.DefaultIssuerKeyID(), []byte("other issuer")
	now := time.Now().UTC().Truncate(time.Microsecond)
	const n = 200_000
	copyCertificates(t, s, n, issuer, 1, certdb.StatusRevoked, now.Add(90*24*time.Hour), false)
	// Rows the query must skip: expired, another shard, another issuer, not revoked.
	copyCertificates(t, s, 1000, issuer, 1, certdb.StatusRevoked, now.Add(-time.Hour), false)
	copyCertificates(t, s, 2000, issuer, 2, certdb.StatusRevoked, now.Add(time.Hour), false)
	copyCertificates(t, s, 2000, other, 1, certdb.StatusRevoked, now.Add(time.Hour), false)
	copyCertificates(t, s, 2000, issuer, 1, certdb.StatusValid, now.Add(time.Hour), false)
	if _, err := s.pool.Exec(ctx, `VACUUM ANALYZE certificates`); err != nil {
		t.Fatal(err)
	}

	for _, plan := range []string{
		explain(t, s, listRevokedShard, issuer, 1, now),
		explainGeneric(t, s, listRevokedShard, fmt.Sprintf(`('\x%x', 1, now())`, issuer)),
	} {
		if !strings.Contains(plan, "certificates_revoked_issuer_shard_serial") || strings.Contains(plan, "Sort") {
			t.Errorf("ListRevokedShard plan does not read certificates_revoked_issuer_shard_serial in order:\n%s", plan)
		}
	}

	// Collecting 200,000 records would hold well over 50 MB; streaming holds
	// one row and the driver's buffers.
	certdbtest.CheckShardStreams(t, s, issuer, 1, now, certdbtest.StreamCheck{Want: n, SampleEvery: 20_000, HeapLimit: 25 << 20,
		Entry: func(c *certdb.Certificate) error {
			if c.DER != nil || c.Shard != 1 || c.Status != certdb.StatusRevoked || !c.NotAfter.After(now) || c.RevokedAt.IsZero() {
				return fmt.Errorf("%+v", c)
			}
			return nil
		}})
}

// ListOCSPStale on 100,000 certificates walks the issuer's index in serial
// order and probes responses by primary key, stopping at the limit: no
// sequential scan of the table and no sort of it.
func TestListOCSPStalePlan(t *testing.T) {
	ctx := t.Context()
	s := openMigrated(t)
	issuer := certdbtest.DefaultIssuerKeyID()
	now := time.Now().UTC().Truncate(time.Microsecond)
	serials := copyCertificates(t, s, 100_000, issuer, 0, certdb.StatusValid, now.Add(90*24*time.Hour), true)
	copyCertificates(t, s, 20_000, []byte("other issuer"), 0, certdb.StatusValid, now.Add(90*24*time.Hour), false)
	// Half the certificates have a fresh response.
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i >= len(serials)/2 {
			return nil, nil
		}
		i++
		return []any{serials[i-1], issuer, []byte{0x30, 0x03}, int16(2), now, now.Add(96 * time.Hour)}, nil
	})
	if _, err := s.pool.CopyFrom(ctx, pgx.Identifier{"ocsp_responses"}, []string{"serial", "issuer_key_id", "der", "status", "this_update", "next_update"}, src); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `VACUUM ANALYZE certificates, ocsp_responses`); err != nil {
		t.Fatal(err)
	}
	for _, plan := range []string{
		explain(t, s, listOCSPStale, issuer, now.Add(-time.Hour), now, []byte{}, certdb.MaxOCSPStaleLimit),
		explainGeneric(t, s, listOCSPStale, fmt.Sprintf(`('\x%x', now() - interval '1 hour', now(), '\x', %d)`, issuer, certdb.MaxOCSPStaleLimit)),
	} {
		if strings.Contains(plan, "Seq Scan on certificates") || strings.Contains(plan, "Sort") {
			t.Errorf("ListOCSPStale plan scans or sorts certificates:\n%s", plan)
		}
		if !strings.Contains(plan, "certificates_issued_issuer_serial") {
			t.Errorf("ListOCSPStale plan does not use certificates_issued_issuer_serial:\n%s", plan)
		}
		t.Logf("ListOCSPStale plan:\n%s", plan)
	}

	// The pre-signer's pass: every stale certificate exactly once, in pages.
	var (
		total int
		after *big.Int
	)
	for {
		page, err := s.ListOCSPStale(ctx, issuer, now.Add(-time.Hour), now, after, certdb.MaxOCSPStaleLimit)
		if err != nil {
			t.Fatal(err)
		}
		total += len(page)
		if len(page) < certdb.MaxOCSPStaleLimit {
			break
		}
		after = page[len(page)-1].Serial
	}
	if want := len(serials) - len(serials)/2; total != want {
		t.Fatalf("paging through ListOCSPStale found %d stale certificates, want %d", total, want)
	}
}

func TestRevocationSchema(t *testing.T) {
	ctx := t.Context()
	s := openMigrated(t)
	c := issueCert(t, s)
	now := time.Now()
	tests := []struct{ name, sql, code string }{
		{"negative shard", `UPDATE certificates SET shard = -1`, "23514"},
		{"response for an unknown serial", `INSERT INTO ocsp_responses (serial, issuer_key_id, der, status, this_update, next_update) VALUES ('\x01', '\x01', '\x30', 2, now(), now())`, "23503"},
		{"response with status reserved", `INSERT INTO ocsp_responses (serial, issuer_key_id, der, status, this_update, next_update) VALUES ($1, '\x01', '\x30', 1, now(), now())`, "23514"},
		{"response without DER", `INSERT INTO ocsp_responses (serial, issuer_key_id, der, status, this_update, next_update) VALUES ($1, '\x01', '\x', 2, now(), now())`, "23514"},
		{"CRL number 0 allocated", `INSERT INTO crl_numbers (issuer_key_id, shard, last_number) VALUES ('\x01', 0, 0)`, "23514"},
		{"fractional CRL number", `INSERT INTO crl_numbers (issuer_key_id, shard, last_number) VALUES ('\x01', 0, 1.5)`, "23514"},
		{"CRL number of 21 octets", `INSERT INTO crls (issuer_key_id, shard, number, this_update, next_update, der) VALUES ('\x01', 0, 730750818665451459101842416358141509827966271488, now(), now(), '\x30')`, "23514"},
		{"CRL of a negative shard", `INSERT INTO crls (issuer_key_id, shard, number, this_update, next_update, der) VALUES ('\x01', -1, 1, now(), now(), '\x30')`, "23514"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var args []any
			if strings.Contains(tt.sql, "$1") {
				args = append(args, c.Serial.Bytes())
			}
			_, err := s.pool.Exec(ctx, tt.sql, args...)
			if err == nil || !strings.Contains(err.Error(), tt.code) {
				t.Fatalf("error = %v, want SQLSTATE %s", err, tt.code)
			}
		})
	}
	// The response goes with its certificate.
	if err := s.PutOCSPResponse(ctx, &certdb.OCSPResponse{Serial: c.Serial, DER: []byte{0x30}, Status: certdb.StatusValid, ThisUpdate: now, NextUpdate: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM certificates WHERE serial = $1`, c.Serial.Bytes()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetOCSPResponse(ctx, c.Serial); !errors.Is(err, certdb.ErrNotFound) {
		t.Fatalf("GetOCSPResponse() after its certificate was deleted = %v, want ErrNotFound", err)
	}
}

func TestSubscribeClosedStore(t *testing.T) {
	s := openMigrated(t)
	s.Close()
	if _, err := s.SubscribeRevocations(context.Background()); err == nil {
		t.Fatal("SubscribeRevocations on a closed store succeeded")
	}
}
