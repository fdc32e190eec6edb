package certdbtest

import (
	"bytes"
	"context"
	"fmt"
	"math/big"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/certdb"
)

// TokenAuditStore is what RaceTokens needs of each store.
type TokenAuditStore interface {
	certdb.TokenStore
	certdb.AuditStore
}

// RaceOptions sizes RaceTokens. Each count is a number of goroutines; the
// i-th goroutine uses stores[i%len(stores)].
type RaceOptions struct {
	UseRacers    int // race UseToken on one single-use token
	RevokeRacers int // then race RevokeToken on it
	AuditWriters int // append AuditEach events each, all at once
	AuditEach    int
}

// RaceTokens checks what the stores promise across processes: stores are
// several handles on one migrated database (each standing in for a
// process). In five rounds, of the goroutines racing to consume a
// single-use token exactly one succeeds (the others get ErrTokenUsed), and
// of those racing to revoke it exactly one succeeds (ErrTokenRevoked).
// Then concurrent AppendAudit calls from every handle are all kept, each
// with its own ID.
func RaceTokens(t *testing.T, stores []TokenAuditStore, o RaceOptions) {
	t.Helper()
	ctx := t.Context()
	now := time.Now()

	race := func(n int, op func(s TokenAuditStore) error) []error {
		return Race(n, func(i int) error { return op(stores[i%len(stores)]) })
	}

	for round := range 5 {
		tok := NewToken(fmt.Sprintf("tok-%d", round))
		tok.SingleUse = true
		if err := stores[0].CreateToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		OneWinner(t, "UseToken", race(o.UseRacers, func(s TokenAuditStore) error { return s.UseToken(ctx, tok.ID, now) }), certdb.ErrTokenUsed)
		OneWinner(t, "RevokeToken", race(o.RevokeRacers, func(s TokenAuditStore) error { return s.RevokeToken(ctx, tok.ID, now) }), certdb.ErrTokenRevoked)
	}

	errs := Race(o.AuditWriters, func(i int) error {
		s := stores[i%len(stores)]
		for j := range o.AuditEach {
			if err := s.AppendAudit(ctx, &certdb.AuditEvent{Actor: fmt.Sprintf("w%d", i), Action: "issue", Detail: fmt.Sprint(j)}); err != nil {
				return err
			}
		}
		return nil
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	got, err := stores[len(stores)-1].ListAudit(ctx, certdb.AuditQuery{Limit: certdb.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for _, e := range got {
		if seen[e.ID] {
			t.Fatalf("ID %d listed twice", e.ID)
		}
		seen[e.ID] = true
	}
	if want := o.AuditWriters * o.AuditEach; len(got) != want {
		t.Fatalf("ListAudit() = %d events, want %d", len(got), want)
	}
}

// UpgradedStore is what CheckUpgradedFromVersion1 needs of a store.
type UpgradedStore interface {
	GetCertificate(ctx context.Context, serial *big.Int) (*certdb.Certificate, error)
	ListRevokedShard(ctx context.Context, issuerKeyID []byte, shard int, now time.Time, fn func(*certdb.Certificate) error) error
	CreateToken(ctx context.Context, t *certdb.Token) error
	AppendAudit(ctx context.Context, e *certdb.AuditEvent) error
}

// CheckUpgradedFromVersion1 checks a store just migrated from schema
// version 1, where c (revoked at now) was written with version 1's
// columns: c is unchanged and in CRL shard 0, and the tables that came
// later (tokens, audit) work. The store must not hold a token "tok" yet.
func CheckUpgradedFromVersion1(t *testing.T, s UpgradedStore, c *certdb.Certificate, now time.Time) {
	t.Helper()
	ctx := t.Context()
	if got, err := s.GetCertificate(ctx, c.Serial); err != nil || string(got.DER) != string(c.DER) || got.Shard != 0 ||
		got.Status != certdb.StatusRevoked || !got.RevokedAt.Equal(now) {
		t.Fatalf("certificate after the upgrade: %+v, %v", got, err)
	}
	var entries int
	if err := s.ListRevokedShard(ctx, c.IssuerKeyID, 0, now, func(e *certdb.Certificate) error {
		entries++
		if e.Serial.Cmp(c.Serial) != 0 {
			t.Errorf("ListRevokedShard() after the upgrade lists %x", e.Serial)
		}
		return nil
	}); err != nil || entries != 1 {
		t.Fatalf("ListRevokedShard() after the upgrade: %d entries, %v; want 1", entries, err)
	}
	if err := s.CreateToken(ctx, NewToken("tok")); err != nil {
		t.Fatalf("CreateToken() after the upgrade: %v", err)
	}
	if err := s.AppendAudit(ctx, &certdb.AuditEvent{Action: "issue"}); err != nil {
		t.Fatalf("AppendAudit() after the upgrade: %v", err)
	}
}

// ShardLister is what CheckShardStreams needs of a store.
type ShardLister interface {
	ListRevokedShard(ctx context.Context, issuerKeyID []byte, shard int, now time.Time, fn func(*certdb.Certificate) error) error
}

// StreamCheck sizes CheckShardStreams.
type StreamCheck struct {
	Want        int   // entries the shard must list
	SampleEvery int   // measure the live heap every SampleEvery entries
	HeapLimit   int64 // bytes the live heap may grow by while streaming
	// Entry, if set, checks each entry; an error stops the listing and
	// fails the test.
	Entry func(*certdb.Certificate) error
}

// CheckShardStreams lists shard of issuer at now and checks that it lists
// c.Want entries in serial order and that the live heap grows by less than
// c.HeapLimit meanwhile: the store streams rows instead of collecting them.
func CheckShardStreams(t *testing.T, s ShardLister, issuer []byte, shard int, now time.Time, c StreamCheck) {
	t.Helper()
	base := heapInUse()
	var (
		count     int
		prev      []byte
		maxGrowth int64
	)
	err := s.ListRevokedShard(t.Context(), issuer, shard, now, func(e *certdb.Certificate) error {
		count++
		sn := e.Serial.Bytes()
		if prev != nil && bytes.Compare(prev, sn) >= 0 {
			return fmt.Errorf("entry %d: serial %x after %x: not in serial order", count, sn, prev)
		}
		prev = sn
		if c.Entry != nil {
			if err := c.Entry(e); err != nil {
				return fmt.Errorf("entry %d: %w", count, err)
			}
		}
		if count%c.SampleEvery == 0 {
			maxGrowth = max(maxGrowth, int64(heapInUse())-int64(base))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if count != c.Want {
		t.Fatalf("ListRevokedShard() listed %d entries, want %d", count, c.Want)
	}
	t.Logf("live heap growth while streaming %d entries: %d KiB", c.Want, maxGrowth>>10)
	if maxGrowth > c.HeapLimit {
		t.Errorf("live heap grew by %d MiB while streaming %d entries; want < %d MiB (rows must not be collected)", maxGrowth>>20, c.Want, c.HeapLimit>>20)
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// ScheduleStore is what AddDueSchedules and CheckClaimedOnce need of a
// store.
type ScheduleStore interface {
	AddScanSchedule(ctx context.Context, s *certdb.ScanSchedule) error
	ClaimDueSchedules(ctx context.Context, now time.Time, lease time.Duration) ([]*certdb.ScanSchedule, error)
}

// AddDueSchedules adds n hourly schedules of one target, due at due, to s.
func AddDueSchedules(t *testing.T, s ScheduleStore, n int, due time.Time) {
	t.Helper()
	for range n {
		if err := s.AddScanSchedule(t.Context(), &certdb.ScanSchedule{Targets: []string{"svc.example.test"}, Interval: time.Hour, NextRun: due}); err != nil {
			t.Fatal(err)
		}
	}
}

// CheckClaimedOnce has one goroutine per element of claimers (several
// handles on one database, standing in for processes; a handle may appear
// more than once) call ClaimDueSchedules(now, one-minute lease) at the same
// time, and checks that each of the want due schedules went to exactly one
// of them. what, if not empty, prefixes the error messages.
func CheckClaimedOnce(t *testing.T, claimers []ScheduleStore, now time.Time, want int, what string) {
	t.Helper()
	if what != "" {
		what += ": "
	}
	var (
		mu    sync.Mutex
		count = map[int64]int{}
		wg    sync.WaitGroup
	)
	for _, s := range claimers {
		wg.Go(func() {
			got, err := s.ClaimDueSchedules(t.Context(), now, time.Minute)
			if err != nil {
				t.Errorf("ClaimDueSchedules = %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, sc := range got {
				count[sc.ID]++
			}
		})
	}
	wg.Wait()
	if len(count) != want {
		t.Errorf("%s%d schedules claimed, want %d", what, len(count), want)
	}
	for id, n := range count {
		if n != 1 {
			t.Errorf("%sschedule %d claimed %d times, want once", what, id, n)
		}
	}
}
