package ocsp

import (
	"context"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/certctl/certctl/certdb"
)

func TestStoreSourceCache(t *testing.T) {
	ctx := context.Background()
	clock := newClock(time.Now())
	st := newFakeStore()
	pki := newPKI(t, st, clock)
	_, pre := pki.service(t, Config{})
	leaf := pki.leaf(t, "cache.test.internal")
	if err := pre.SignOne(ctx, leaf.Serial); err != nil {
		t.Fatal(err)
	}
	stored := st.response(t, leaf.Serial)
	src := NewStoreSource(st, WithSourceClock(clock.Now), WithCacheTTL(time.Minute))

	get := func() (*certdb.OCSPResponse, error) { return src.Response(ctx, leaf.Serial) }
	t.Run("hit within TTL", func(t *testing.T) {
		before := st.gets.Load()
		for range 3 {
			if _, err := get(); err != nil {
				t.Fatal(err)
			}
		}
		if n := st.gets.Load() - before; n != 1 {
			t.Fatalf("%d store reads for 3 lookups, want 1", n)
		}
	})
	t.Run("refetch after TTL", func(t *testing.T) {
		before := st.gets.Load()
		clock.Advance(time.Minute)
		if _, err := get(); err != nil {
			t.Fatal(err)
		}
		if n := st.gets.Load() - before; n != 1 {
			t.Fatalf("%d store reads, want 1", n)
		}
	})
	t.Run("store down: cached until nextUpdate", func(t *testing.T) {
		st.fail.Store(true)
		defer st.fail.Store(false)
		clock.Set(stored.NextUpdate.Add(-time.Second))
		r, err := get()
		if err != nil || r.Status != certdb.StatusValid {
			t.Fatalf("store down before nextUpdate: %v, %v", r, err)
		}
		clock.Set(stored.NextUpdate)
		if r, err := get(); !errors.Is(err, errDown) {
			t.Fatalf("store down at nextUpdate: %v, %v; want the store's error", r, err)
		}
	})
	t.Run("stale in store", func(t *testing.T) {
		clock.Set(stored.NextUpdate.Add(time.Second))
		if _, err := get(); !errors.Is(err, ErrStale) {
			t.Fatalf("err %v, want ErrStale", err)
		}
	})
	t.Run("not found", func(t *testing.T) {
		if _, err := src.Response(ctx, big.NewInt(99)); !errors.Is(err, certdb.ErrNotFound) {
			t.Fatalf("err %v, want ErrNotFound", err)
		}
	})
}

// After a revocation announcement the cache is bypassed until the store has
// the revoked response: a "good" read in between is not cached again.
func TestStoreSourceInvalidatePending(t *testing.T) {
	ctx := context.Background()
	clock := newClock(time.Now())
	st := newFakeStore()
	pki := newPKI(t, st, clock)
	_, pre := pki.service(t, Config{})
	leaf := pki.leaf(t, "pending.test.internal")
	if err := pre.SignOne(ctx, leaf.Serial); err != nil {
		t.Fatal(err)
	}
	src := NewStoreSource(st, WithSourceClock(clock.Now), WithCacheTTL(time.Hour))
	if r, _ := src.Response(ctx, leaf.Serial); r == nil || r.Status != certdb.StatusValid {
		t.Fatal("want good first")
	}
	if err := st.Revoke(ctx, leaf.Serial, certdb.ReasonSuperseded, clock.Now()); err != nil {
		t.Fatal(err)
	}
	src.Invalidate(leaf.Serial)
	before := st.gets.Load()
	for range 2 { // the store still says good: served, not cached
		if r, err := src.Response(ctx, leaf.Serial); err != nil || r.Status != certdb.StatusValid {
			t.Fatalf("%v %v", r, err)
		}
	}
	if n := st.gets.Load() - before; n != 2 {
		t.Fatalf("%d store reads while pending, want 2", n)
	}
	clock.Advance(time.Second)
	if err := pre.SignOne(ctx, leaf.Serial); err != nil {
		t.Fatal(err)
	}
	before = st.gets.Load()
	for range 2 {
		if r, err := src.Response(ctx, leaf.Serial); err != nil || r.Status != certdb.StatusRevoked {
			t.Fatalf("%v %v, want revoked", r, err)
		}
	}
	if n := st.gets.Load() - before; n != 1 {
		t.Fatalf("%d store reads, want 3 (revoked response cached)", n)
	}
	// While pending and the store is down, the old "good" is not served.
	src.Invalidate(leaf.Serial)
	st.fail.Store(true)
	if _, err := src.Response(ctx, leaf.Serial); !errors.Is(err, errDown) {
		t.Fatalf("err %v, want the store's error", err)
	}
}

func TestStoreSourceBounded(t *testing.T) {
	ctx := context.Background()
	clock := newClock(time.Now())
	st := newFakeStore()
	for i := 1; i <= 200; i++ {
		s := big.NewInt(int64(i))
		st.certs[key(s)] = &certdb.Certificate{Serial: s, Status: certdb.StatusValid, NotAfter: clock.Now().Add(time.Hour)}
		st.resp[key(s)] = &certdb.OCSPResponse{Serial: s, DER: []byte{1}, Status: certdb.StatusValid, ThisUpdate: clock.Now(), NextUpdate: clock.Now().Add(time.Hour)}
	}
	for _, size := range []int{0, 32, 1000} {
		src := NewStoreSource(st, WithSourceClock(clock.Now), WithCacheSize(size))
		for i := 1; i <= 200; i++ {
			if _, err := src.Response(ctx, big.NewInt(int64(i))); err != nil {
				t.Fatal(err)
			}
		}
		n := 0
		for i := range src.shard {
			n += src.shard[i].ll.Len()
			if len(src.shard[i].m) != src.shard[i].ll.Len() {
				t.Fatal("map and list disagree")
			}
		}
		want := min(size, 200)
		if size == 32 {
			want = 32 // 2 per shard; 200 serials spread over every shard
		}
		if n != want {
			t.Errorf("size %d: %d cached, want %d", size, n, want)
		}
	}
}

// Run drops announced serials from the cache.
func TestStoreSourceRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	clock := newClock(time.Now())
	st := newFakeStore()
	pki := newPKI(t, st, clock)
	_, pre := pki.service(t, Config{})
	leaf := pki.leaf(t, "run.test.internal")
	if err := pre.SignOne(ctx, leaf.Serial); err != nil {
		t.Fatal(err)
	}
	src := NewStoreSource(st, WithSourceClock(clock.Now), WithCacheTTL(time.Hour))
	done := make(chan error)
	go func() { done <- src.Run(ctx) }()
	waitFor(t, "subscription", func() bool { return st.subscribers() == 1 })
	if r, _ := src.Response(ctx, leaf.Serial); r.Status != certdb.StatusValid {
		t.Fatal("want good")
	}
	// Revoke and re-sign behind the source's back; only the announcement
	// can make it look again.
	clock.Advance(time.Second)
	if err := st.Revoke(ctx, leaf.Serial, certdb.ReasonKeyCompromise, clock.Now()); err != nil {
		t.Fatal(err)
	}
	if err := pre.SignOne(ctx, leaf.Serial); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "revoked through the cache", func() bool {
		r, err := src.Response(ctx, leaf.Serial)
		return err == nil && r.Status == certdb.StatusRevoked
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
}
