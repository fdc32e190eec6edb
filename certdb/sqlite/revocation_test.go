package sqlite

import (
	"context"
	"math/big"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/certdb/certdbtest"
)

// insertCertificates inserts n issued certificates with random serials (20
// octets, minimal encoding) in one statement that SQLite runs without a
// round trip per row.
func insertCertificates(t *testing.T, s *Store, n int, issuer []byte, shard int, status certdb.Status, notAfter time.Time) {
	t.Helper()
	now := time.Now()
	var revokedAt, reason any
	if status == certdb.StatusRevoked {
		revokedAt, reason = micros(now), int(certdb.ReasonKeyCompromise)
	}
	res, err := s.w.ExecContext(t.Context(), `WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?1)
		INSERT INTO certificates
			(serial, issuer_key_id, subject, sans, not_before, not_after, status, der, profile, requester, created_at, revoked_at, reason, shard)
		SELECT unhex('01' || hex(randomblob(19))), ?2, 'CN=bulk', '[]', ?3, ?4, ?5, randomblob(200), '', '', ?3, ?6, ?7, ?8 FROM seq`,
		n, issuer, micros(now.Add(-time.Hour)), micros(notAfter), int(status), revokedAt, reason, shard)
	if err != nil {
		t.Fatalf("insert %d certificates: %v", n, err)
	}
	if got, err := res.RowsAffected(); err != nil || got != int64(n) {
		t.Fatalf("inserted %d certificates, %v; want %d", got, err, n)
	}
}

// queryPlan returns SQLite's EXPLAIN QUERY PLAN for query.
func queryPlan(t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
	rows, err := s.r.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// A large CRL streams from the covering index: the live heap does not grow
// with the number of rows.
func TestListRevokedShardLarge(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	issuer := certdbtest.DefaultIssuerKeyID()
	now := time.Now().UTC().Truncate(time.Microsecond)
	// 50,000 rather than PostgreSQL's 200,000: SQLite under the race
	// detector inserts a few hundred rows a second.
	const n = 50_000
	if _, err := s.w.ExecContext(ctx, `PRAGMA cache_size = -131072`); err != nil { // 128 MiB: the bulk insert's random keys
		t.Fatal(err)
	}
	insertCertificates(t, s, n, issuer, 1, certdb.StatusRevoked, now.Add(90*24*time.Hour))
	insertCertificates(t, s, 1000, issuer, 1, certdb.StatusRevoked, now.Add(-time.Hour))
	insertCertificates(t, s, 1000, issuer, 2, certdb.StatusRevoked, now.Add(time.Hour))
	insertCertificates(t, s, 1000, []byte("other"), 1, certdb.StatusRevoked, now.Add(time.Hour))
	insertCertificates(t, s, 1000, issuer, 1, certdb.StatusValid, now.Add(time.Hour))
	if _, err := s.w.ExecContext(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	plan := queryPlan(t, s, listRevokedShard, issuer, 1, micros(now))
	if !strings.Contains(plan, "USING COVERING INDEX certificates_revoked_issuer_shard_serial") || strings.Contains(plan, "TEMP B-TREE") {
		t.Errorf("ListRevokedShard plan does not read certificates_revoked_issuer_shard_serial in order:\n%s", plan)
	}

	// Collecting 50,000 records would hold about 17 MB.
	certdbtest.CheckShardStreams(t, s, issuer, 1, now, certdbtest.StreamCheck{Want: n, SampleEvery: 5_000, HeapLimit: 8 << 20})
}

func TestListOCSPStalePlan(t *testing.T) {
	s := openTest(t)
	issuer := certdbtest.DefaultIssuerKeyID()
	now := time.Now()
	insertCertificates(t, s, 2000, issuer, 0, certdb.StatusValid, now.Add(time.Hour))
	if _, err := s.w.ExecContext(t.Context(), `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	plan := queryPlan(t, s, listOCSPStale, issuer, micros(now), []byte{}, micros(now), 100)
	for _, want := range []string{"certificates_issued_issuer_serial", "ocsp_responses"} {
		if !strings.Contains(plan, want) {
			t.Errorf("ListOCSPStale plan does not use %s:\n%s", want, plan)
		}
	}
	if strings.Contains(plan, "TEMP B-TREE") || strings.Contains(plan, "SCAN o") {
		t.Errorf("ListOCSPStale plan sorts or scans responses:\n%s", plan)
	}
}

// Two stores on one file stand in for two processes: CRL numbers are never
// handed out twice, and each caller sees its numbers increase.
func TestCRLNumbersTwoStoresOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "certctl.db")
	a, b := openPath(t, path), openPath(t, path)
	if err := a.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	const goroutines, each = 8, 5
	issuer := certdbtest.DefaultIssuerKeyID()
	var (
		mu   sync.Mutex
		seen = map[int64]bool{}
		wg   sync.WaitGroup
	)
	for i := range goroutines {
		s := []*Store{a, b}[i%2]
		wg.Go(func() {
			var last int64
			for range each {
				n, err := s.NextCRLNumber(t.Context(), issuer, 0)
				if err != nil {
					t.Errorf("NextCRLNumber: %v", err)
					return
				}
				if n.Int64() <= last {
					t.Errorf("%v after %v", n, last)
				}
				last = n.Int64()
				mu.Lock()
				if seen[last] {
					t.Errorf("number %d handed out twice", last)
				}
				seen[last] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != goroutines*each || !seen[goroutines*each] {
		t.Fatalf("%d distinct numbers, want 1..%d", len(seen), goroutines*each)
	}
}

// CRL numbers are 64-bit INTEGERs here: the sequence ends below 2^62
// instead of overflowing, and larger numbers are refused.
func TestCRLNumberLimit(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	issuer := []byte("limit")
	if _, err := s.w.ExecContext(ctx, `INSERT INTO crl_numbers (issuer_key_id, shard, last_number) VALUES (?, 0, ?)`, issuer, int64(maxCRLNumber-1)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.NextCRLNumber(ctx, issuer, 0); err != nil || n.Cmp(big.NewInt(maxCRLNumber)) != 0 {
		t.Fatalf("NextCRLNumber() = %v, %v; want 2^62-1", n, err)
	}
	if n, err := s.NextCRLNumber(ctx, issuer, 0); err == nil {
		t.Fatalf("NextCRLNumber() past 2^62-1 = %v, want an error", n)
	}
	now := time.Now()
	c := &certdb.CRL{IssuerKeyID: issuer, Number: big.NewInt(maxCRLNumber), ThisUpdate: now, NextUpdate: now.Add(time.Hour), DER: []byte{0x30}}
	if err := s.PutCRL(ctx, c); err != nil {
		t.Fatalf("PutCRL(2^62-1) = %v", err)
	}
	c.Number = new(big.Int).Lsh(big.NewInt(1), 62)
	if err := s.PutCRL(ctx, c); err == nil || !strings.Contains(err.Error(), certdb.ErrInvalid.Error()) {
		t.Fatalf("PutCRL(2^62) = %v, want ErrInvalid", err)
	}
}

// Announcing never waits for a receiver: a subscriber that does not read
// loses serials beyond its buffer and gets a nil (rescan) marker instead.
func TestSubscriberOverflow(t *testing.T) {
	s := openTest(t)
	ch, err := s.SubscribeRevocations(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	const n = 3 * subscriberBuffer
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if err := s.NotifyRevoked(t.Context(), big.NewInt(int64(i+1))); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(certdbtest.NotifyTimeout):
		t.Fatal("NotifyRevoked blocked on a subscriber that does not read")
	}
	// The marker arrives after the buffered serials, so the buffer is empty
	// then: a serial announced after it is delivered.
	serials := 0
	timeout := time.After(certdbtest.NotifyTimeout)
	for marker := false; !marker; {
		select {
		case sn := <-ch:
			if sn == nil {
				marker = true
			} else {
				serials++
			}
		case <-timeout:
			t.Fatalf("no rescan marker after %d announcements to a subscriber that did not read (%d serials received)", n, serials)
		}
	}
	const later = 1_000_000
	if err := s.NotifyRevoked(t.Context(), big.NewInt(later)); err != nil {
		t.Fatal(err)
	}
	timeout = time.After(certdbtest.NotifyTimeout)
	for got := false; !got; {
		select {
		case sn := <-ch:
			switch {
			case sn == nil:
			case sn.Int64() == later:
				got = true
			default:
				serials++
			}
		case <-timeout:
			t.Fatal("a serial announced after the overflow did not arrive")
		}
	}
	if serials > subscriberBuffer+1 {
		t.Fatalf("received %d of %d serials; a subscriber buffers at most %d (+1 in flight)", serials, n, subscriberBuffer)
	}
}

// Announcements stay within a Store.
func TestNotifyPerStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "certctl.db")
	a, b := openPath(t, path), openPath(t, path)
	if err := a.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	chB, err := b.SubscribeRevocations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.NotifyRevoked(t.Context(), big.NewInt(7)); err != nil {
		t.Fatal(err)
	}
	if err := b.NotifyRevoked(t.Context(), big.NewInt(8)); err != nil {
		t.Fatal(err)
	}
	var got *big.Int
	select {
	case got = <-chB:
	case <-time.After(certdbtest.NotifyTimeout):
		t.Fatal("store B's own announcement did not arrive")
	}
	if got == nil || got.Int64() != 8 {
		t.Fatalf("store B's subscriber received %v first, want 8 (B's own announcement; A's stay in A)", got)
	}
	cancel()
	certdbtest.WaitForClose(t, chB)
}
