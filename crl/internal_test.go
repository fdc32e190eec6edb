package crl

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
)

// fakeStore is an in-memory fake of the narrow interfaces this package
// declares (Store, CRLGetter, CertificateGetter, Notifier, Locker), with
// hooks to block and fail.
type fakeStore struct {
	mu       sync.Mutex
	numbers  map[int]int64
	crls     map[int]*certdb.CRL
	certs    map[string]*certdb.Certificate
	lists    map[int]int // ListRevokedShard calls per shard
	gets     int         // GetCertificate calls
	crlGets  int         // GetCRL calls
	block    chan struct{}
	started  chan int
	listErrs map[int]int // fail this many more lists of the shard
	getCRL   func(shard int) (*certdb.CRL, error)
	getErr   error
	lockFree bool
	tryLocks int
	lost     chan struct{}
	sub      chan *big.Int
}

func newFakeStore() *fakeStore {
	return &fakeStore{
		numbers: map[int]int64{}, crls: map[int]*certdb.CRL{}, certs: map[string]*certdb.Certificate{},
		lists: map[int]int{}, listErrs: map[int]int{}, sub: make(chan *big.Int),
	}
}

func (f *fakeStore) NextCRLNumber(ctx context.Context, key []byte, shard int) (*big.Int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.numbers[shard]++
	return big.NewInt(f.numbers[shard]), nil
}

func (f *fakeStore) ListRevokedShard(ctx context.Context, key []byte, shard int, now time.Time, fn func(*certdb.Certificate) error) error {
	f.mu.Lock()
	f.lists[shard]++
	block, started := f.block, f.started
	fail := f.listErrs[shard] > 0
	if fail {
		f.listErrs[shard]--
	}
	var out []*certdb.Certificate
	for _, c := range f.certs {
		if string(c.IssuerKeyID) == string(key) && c.Shard == shard && c.Status == certdb.StatusRevoked && c.NotAfter.After(now) {
			out = append(out, c)
		}
	}
	f.mu.Unlock()
	if started != nil {
		started <- shard
	}
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail {
		return errors.New("fake: database on fire")
	}
	slices.SortFunc(out, func(a, b *certdb.Certificate) int { return bytes.Compare(a.Serial.Bytes(), b.Serial.Bytes()) })
	for _, c := range out {
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeStore) PutCRL(ctx context.Context, c *certdb.CRL) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if old := f.crls[c.Shard]; old == nil || old.Number.Cmp(c.Number) <= 0 {
		f.crls[c.Shard] = c
	}
	return nil
}

func (f *fakeStore) GetCRL(ctx context.Context, key []byte, shard int) (*certdb.CRL, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.crlGets++
	if f.getCRL != nil {
		return f.getCRL(shard)
	}
	if c := f.crls[shard]; c != nil {
		return c, nil
	}
	return nil, certdb.ErrNotFound
}

func (f *fakeStore) GetCertificate(ctx context.Context, serial *big.Int) (*certdb.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	if f.getErr != nil {
		return nil, f.getErr
	}
	if c := f.certs[serial.String()]; c != nil {
		return c, nil
	}
	return nil, certdb.ErrNotFound
}

func (f *fakeStore) SubscribeRevocations(ctx context.Context) (<-chan *big.Int, error) {
	out := make(chan *big.Int)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-f.sub:
				select {
				case out <- s:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

func (f *fakeStore) TryLock(ctx context.Context, name string) (bool, func(), <-chan struct{}, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tryLocks++
	if !f.lockFree {
		return false, func() {}, nil, nil
	}
	f.lockFree = false
	f.lost = make(chan struct{})
	lost := f.lost
	var once sync.Once
	return true, func() { once.Do(func() { f.mu.Lock(); f.lockFree = true; f.mu.Unlock() }) }, lost, nil
}

func (f *fakeStore) read(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func testIssuer(t *testing.T, shards int) *issuance.Issuer {
	t.Helper()
	key, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := issuance.NewSerial(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := issuance.SelfSignRoot(key, issuance.RootConfig{CommonName: "Fake Root", Validity: 365 * 24 * time.Hour}, serial, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issuance.NewIssuer(cert, key, issuance.IssuerConfig{CRLShards: shards, CRLDistributionPoints: []string{"http://127.0.0.1/crl/{shard}"}})
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

// revokedIn adds a revoked certificate in shard to the fake.
func (f *fakeStore) revokedIn(iss *issuance.Issuer, serial int64, shard int) *big.Int {
	s := big.NewInt(serial)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.certs[s.String()] = &certdb.Certificate{
		Serial: s, IssuerKeyID: iss.KeyID(), Shard: shard, Status: certdb.StatusRevoked,
		RevokedAt: time.Now().Add(-time.Minute), Reason: certdb.ReasonKeyCompromise, NotAfter: time.Now().Add(time.Hour),
	}
	return s
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runUpdater starts u.Run and stops it at the end of the test.
func runUpdater(t *testing.T, u *Updater) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	})
}

func newTestUpdater(t *testing.T, f *fakeStore, shards int, opts ...Option) (*Updater, *issuance.Issuer) {
	t.Helper()
	iss := testIssuer(t, shards)
	b, err := NewBuilder(iss, f)
	if err != nil {
		t.Fatal(err)
	}
	u, err := NewUpdater(b, f, append([]Option{WithNotifier(f), WithLocker(f)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return u, iss
}

// TestUpdaterCoalescesBursts: revocations arriving while a shard is being
// built cost one more build of that shard, not one each.
func TestUpdaterCoalescesBursts(t *testing.T) {
	f := newFakeStore()
	f.block, f.started = make(chan struct{}), make(chan int, 100)
	u, iss := newTestUpdater(t, f, 3) // the lock is never free: no scheduled pass
	runUpdater(t, u)
	first := f.revokedIn(iss, 100, 1)
	f.sub <- first
	if s := <-f.started; s != 1 {
		t.Fatalf("first build is of shard %d, want 1", s)
	}
	// While shard 1 is being built: ten more in shard 1, one in shard 2.
	for i := range 10 {
		f.sub <- f.revokedIn(iss, int64(200+i), 1)
	}
	f.sub <- f.revokedIn(iss, 300, 2)
	waitUntil(t, "the lookups", func() (ok bool) { f.read(func() { ok = f.gets == 12 }); return })
	close(f.block)
	waitUntil(t, "the coalesced builds", func() (ok bool) {
		f.read(func() {
			ok = f.lists[1] == 2 && f.lists[2] == 1 && f.crls[1] != nil && f.crls[1].Number.Int64() == 2 && f.crls[2] != nil
		})
		return
	})
	u.mu.Lock()
	queued := len(u.urgent) + len(u.bulk) + len(u.retry)
	u.mu.Unlock()
	f.read(func() {
		if queued != 0 || f.lists[0] != 0 || f.lists[1] != 2 || f.lists[2] != 1 {
			t.Errorf("builds per shard %v, %d still queued; want shard 1 twice, shard 2 once", f.lists, queued)
		}
	})
}

func TestUpdaterRevocationLookups(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(f *fakeStore, iss *issuance.Issuer) *big.Int
		wantLists map[int]int
	}{
		{"rescan (nil)", func(*fakeStore, *issuance.Issuer) *big.Int { return nil }, map[int]int{0: 1, 1: 1, 2: 1}},
		{"lookup fails: rebuild all", func(f *fakeStore, _ *issuance.Issuer) *big.Int {
			f.getErr = errors.New("fake: timeout")
			return big.NewInt(5)
		}, map[int]int{0: 1, 1: 1, 2: 1}},
		{"one shard", func(f *fakeStore, iss *issuance.Issuer) *big.Int { return f.revokedIn(iss, 5, 2) }, map[int]int{2: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeStore()
			u, iss := newTestUpdater(t, f, 3)
			runUpdater(t, u)
			// Serials that must cause nothing: unknown, another issuer's.
			f.sub <- big.NewInt(999)
			other := f.revokedIn(iss, 77, 0)
			f.mu.Lock()
			f.certs[other.String()].IssuerKeyID = []byte("someone else")
			f.mu.Unlock()
			f.sub <- other
			waitUntil(t, "two lookups", func() (ok bool) { f.read(func() { ok = f.gets == 2 }); return })
			f.sub <- tt.setup(f, iss)
			waitUntil(t, "the builds", func() (ok bool) {
				f.read(func() {
					ok = true
					for s, n := range tt.wantLists {
						ok = ok && f.lists[s] == n && f.crls[s] != nil
					}
				})
				return
			})
			f.read(func() {
				for s := range 3 {
					if f.lists[s] != tt.wantLists[s] {
						t.Errorf("shard %d built %d times, want %d", s, f.lists[s], tt.wantLists[s])
					}
				}
			})
		})
	}
}

func TestUpdaterRetriesFailedBuilds(t *testing.T) {
	f := newFakeStore()
	f.listErrs[0] = 2
	u, iss := newTestUpdater(t, f, 1)
	runUpdater(t, u)
	f.sub <- f.revokedIn(iss, 5, 0)
	waitUntil(t, "a CRL after two failures", func() (ok bool) { f.read(func() { ok = f.crls[0] != nil }); return })
	f.read(func() {
		if f.lists[0] != 3 {
			t.Errorf("%d attempts, want 3", f.lists[0])
		}
	})
}

func TestUpdaterLeadership(t *testing.T) {
	f := newFakeStore()
	u, _ := newTestUpdater(t, f, 2, WithPeriod(10*time.Millisecond))
	runUpdater(t, u)
	// Not the leader: ticks try the lock and build nothing.
	waitUntil(t, "five lock attempts", func() (ok bool) { f.read(func() { ok = f.tryLocks >= 5 }); return })
	f.read(func() {
		if len(f.lists) != 0 {
			t.Errorf("built %v without leadership", f.lists)
		}
	})
	// The lock frees: the scheduled passes run.
	f.read(func() { f.lockFree = true })
	waitUntil(t, "two scheduled passes", func() (ok bool) { f.read(func() { ok = f.lists[0] >= 2 && f.lists[1] >= 2 }); return })
	// Leadership lost: it tries to take the lock again.
	var before int
	f.read(func() { before = f.tryLocks; close(f.lost) })
	waitUntil(t, "a new lock attempt", func() (ok bool) { f.read(func() { ok = f.tryLocks > before }); return })
}

func TestUpdaterWithoutLockerOrNotifier(t *testing.T) {
	f := newFakeStore()
	iss := testIssuer(t, 2)
	b, err := NewBuilder(iss, f)
	if err != nil {
		t.Fatal(err)
	}
	u, err := NewUpdater(b, f, WithPeriod(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	runUpdater(t, u)
	waitUntil(t, "scheduled builds", func() (ok bool) { f.read(func() { ok = f.crls[0] != nil && f.crls[1] != nil }); return })
}

func TestConstructorsReject(t *testing.T) {
	f := newFakeStore()
	iss := testIssuer(t, 1)
	b, err := NewBuilder(iss, f)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  func() error
	}{
		{"builder nil issuer", func() error { _, err := NewBuilder(nil, f); return err }},
		{"builder nil store", func() error { _, err := NewBuilder(iss, nil); return err }},
		{"builder validity 30s", func() error { _, err := NewBuilder(iss, f, WithValidity(30*time.Second)); return err }},
		{"builder fractional validity", func() error { _, err := NewBuilder(iss, f, WithValidity(time.Hour+time.Millisecond)); return err }},
		{"builder negative retention", func() error { _, err := NewBuilder(iss, f, WithExpiredRetention(-time.Second)); return err }},
		{"updater nil builder", func() error { _, err := NewUpdater(nil, f); return err }},
		{"updater nil getter", func() error { _, err := NewUpdater(b, nil); return err }},
		{"updater zero period", func() error { _, err := NewUpdater(b, f, WithPeriod(0)); return err }},
		{"updater period ≥ validity", func() error { _, err := NewUpdater(b, f, WithPeriod(DefaultValidity)); return err }},
		{"handler nil store", func() error { _, err := NewHandler(nil, iss.KeyID(), 1); return err }},
		{"handler no key id", func() error { _, err := NewHandler(f, nil, 1); return err }},
		{"handler no shards", func() error { _, err := NewHandler(f, iss.KeyID(), 0); return err }},
		{"handler negative ttl", func() error { _, err := NewHandler(f, iss.KeyID(), 1, WithCacheTTL(-1)); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.err(); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestUpdaterRunTwice(t *testing.T) {
	f := newFakeStore()
	u, _ := newTestUpdater(t, f, 1)
	runUpdater(t, u)
	waitUntil(t, "Run to start", func() bool { u.mu.Lock(); defer u.mu.Unlock(); return u.running })
	if err := u.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("second Run = %v", err)
	}
}

func TestHandlerCache(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	mk := func(n int64) *certdb.CRL {
		return &certdb.CRL{Number: big.NewInt(n), ThisUpdate: now, NextUpdate: now.Add(time.Hour), DER: []byte{byte(n)}}
	}
	serve := func(h *Handler) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/crl", nil))
		return rec
	}
	t.Run("replica lag never rolls back", func(t *testing.T) {
		f := newFakeStore()
		seq := []*certdb.CRL{mk(5), mk(4), mk(6)}
		f.getCRL = func(int) (*certdb.CRL, error) { c := seq[0]; seq = seq[1:]; return c, nil }
		h, _ := NewHandler(f, []byte{1}, 1, WithCacheTTL(0), WithClock(func() time.Time { return now }))
		for i, want := range []byte{5, 5, 6} {
			if rec := serve(h); rec.Code != 200 || rec.Body.Bytes()[0] != want {
				t.Errorf("request %d: status %d body %x, want CRL %d", i, rec.Code, rec.Body.Bytes(), want)
			}
		}
	})
	t.Run("store down: serve cached until nextUpdate", func(t *testing.T) {
		f := newFakeStore()
		down := false
		f.getCRL = func(int) (*certdb.CRL, error) {
			if down {
				return nil, errors.New("fake: connection refused")
			}
			return mk(3), nil
		}
		clock := now
		h, _ := NewHandler(f, []byte{1}, 1, WithCacheTTL(0), WithClock(func() time.Time { return clock }))
		if rec := serve(h); rec.Code != 200 {
			t.Fatalf("status %d", rec.Code)
		}
		f.read(func() { down = true })
		if rec := serve(h); rec.Code != 200 || rec.Body.Bytes()[0] != 3 {
			t.Errorf("store down: status %d, want the cached CRL", rec.Code)
		}
		clock = now.Add(time.Hour)
		if rec := serve(h); rec.Code != http.StatusServiceUnavailable {
			t.Errorf("past nextUpdate: status %d, want 503", rec.Code)
		}
	})
	t.Run("store down, nothing cached", func(t *testing.T) {
		f := newFakeStore()
		f.getCRL = func(int) (*certdb.CRL, error) { return nil, errors.New("fake: down") }
		h, _ := NewHandler(f, []byte{1}, 1)
		if rec := serve(h); rec.Code != http.StatusServiceUnavailable {
			t.Errorf("status %d, want 503", rec.Code)
		}
	})
	t.Run("within the TTL the store is not asked", func(t *testing.T) {
		f := newFakeStore()
		f.getCRL = func(int) (*certdb.CRL, error) { return mk(1), nil }
		clock := now
		h, _ := NewHandler(f, []byte{1}, 1, WithCacheTTL(time.Minute), WithClock(func() time.Time { return clock }))
		for range 3 {
			serve(h)
		}
		clock = now.Add(2 * time.Minute)
		serve(h)
		f.read(func() {
			if f.crlGets != 2 {
				t.Errorf("%d store reads, want 2 (one per TTL)", f.crlGets)
			}
		})
	})
}
