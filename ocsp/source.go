package ocsp

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"time"

	"github.com/certctl/certctl/certdb"
)

// Source finds the pre-signed response for a serial of the responder's
// issuer. It returns certdb.ErrNotFound (wrapped or not) when it has none,
// and must not return a response past its NextUpdate.
type Source interface {
	Response(ctx context.Context, serial *big.Int) (*certdb.OCSPResponse, error)
}

// ResponseStore is what StoreSource needs from certdb. If it is also a
// certdb.RevocationNotifier, StoreSource.Run uses it to drop revoked
// certificates from the cache.
type ResponseStore interface {
	GetOCSPResponse(ctx context.Context, serial *big.Int) (*certdb.OCSPResponse, error)
}

// ErrStale: the only response available is past its NextUpdate (RFC 5019
// §4: a responder must not serve it).
var ErrStale = errors.New("ocsp: response is past its nextUpdate")

// Cache defaults.
const (
	DefaultCacheSize = 65536
	DefaultCacheTTL  = time.Minute
	// pendingTTL: after a revocation announcement, how long the cache is
	// bypassed for that serial while the store still has a "good" response
	// (the pre-signer may not have stored the revoked one yet).
	pendingTTL = time.Minute
	cacheShard = 16
)

// StoreSource answers from certdb with a bounded in-memory LRU cache in
// front. A cached response is reused for up to the cache TTL; when the
// store fails, it keeps being served until its NextUpdate, so responders
// ride out database outages. Revocation announcements (Run) drop the serial
// from every responder's cache at once, and the cache is bypassed for it
// until the store has the revoked response.
//
// A StoreSource is safe for concurrent use.
type StoreSource struct {
	store ResponseStore
	cfg   sourceConfig
	notif certdb.RevocationNotifier
	shard [cacheShard]lru
}

type sourceConfig struct {
	size int
	ttl  time.Duration
	now  func() time.Time
	log  *slog.Logger
}

// SourceOption configures NewStoreSource.
type SourceOption func(*sourceConfig)

// WithCacheSize bounds the cache to n responses (default 65536, about
// 1 KiB each); 0 disables caching, and with it the outage tolerance.
func WithCacheSize(n int) SourceOption { return func(c *sourceConfig) { c.size = n } }

// WithCacheTTL sets how long a cached response is served before the store
// is asked again (default 1 minute). It bounds staleness when a revocation
// announcement is missed (e.g. on a read replica, which cannot LISTEN).
func WithCacheTTL(d time.Duration) SourceOption { return func(c *sourceConfig) { c.ttl = d } }

// WithSourceClock sets the clock (default time.Now).
func WithSourceClock(now func() time.Time) SourceOption { return func(c *sourceConfig) { c.now = now } }

// WithSourceLogger sets the logger (default: discard).
func WithSourceLogger(l *slog.Logger) SourceOption { return func(c *sourceConfig) { c.log = l } }

// NewStoreSource returns a Source over st. Call Run to follow revocations.
func NewStoreSource(st ResponseStore, opts ...SourceOption) *StoreSource {
	cfg := sourceConfig{size: DefaultCacheSize, ttl: DefaultCacheTTL, now: time.Now, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	s := &StoreSource{store: st, cfg: cfg}
	if n, ok := st.(certdb.RevocationNotifier); ok {
		s.notif = n
	}
	per := 0
	if cfg.size > 0 {
		per = max(1, cfg.size/cacheShard)
	}
	for i := range s.shard {
		s.shard[i].init(per)
	}
	return s
}

var _ Source = (*StoreSource)(nil)

func (s *StoreSource) shardFor(key string) *lru {
	if key == "" {
		return &s.shard[0]
	}
	return &s.shard[key[len(key)-1]%cacheShard] // serials are random: the last byte spreads evenly
}

// Response returns the response for serial: from the cache if fresh
// enough, else from the store; if the store fails, a cached response that
// is still before its NextUpdate. Errors: certdb.ErrNotFound, ErrStale, or
// the store's error.
func (s *StoreSource) Response(ctx context.Context, serial *big.Int) (*certdb.OCSPResponse, error) {
	now := s.cfg.now()
	key := string(serial.Bytes())
	sh := s.shardFor(key)
	cached, fetched, pending := sh.get(key, now)
	if cached != nil && !pending && now.Sub(fetched) < s.cfg.ttl && now.Before(cached.NextUpdate) {
		return cached, nil
	}
	r, err := s.store.GetOCSPResponse(ctx, serial)
	switch {
	case err == nil:
		if !now.Before(r.NextUpdate) {
			sh.remove(key)
			return nil, fmt.Errorf("%w: serial %s, nextUpdate %s", ErrStale, certdb.SerialHex(serial), r.NextUpdate.UTC().Format(time.RFC3339))
		}
		// While a revocation is pending, a "good" answer from the store is
		// served but not cached: the revoked one is about to arrive.
		if !pending || r.Status == certdb.StatusRevoked {
			sh.put(key, r, now)
		}
		return r, nil
	case errors.Is(err, certdb.ErrNotFound):
		sh.remove(key)
		return nil, err
	}
	if cached != nil && now.Before(cached.NextUpdate) {
		s.cfg.log.WarnContext(ctx, "OCSP store unavailable; serving cached response", "serial", certdb.SerialHex(serial), "err", err)
		return cached, nil
	}
	return nil, fmt.Errorf("ocsp: get response for %s: %w", certdb.SerialHex(serial), err)
}

// Invalidate drops serial from the cache and bypasses the cache for it
// until the store returns a revoked response (or a minute has passed).
func (s *StoreSource) Invalidate(serial *big.Int) {
	key := string(serial.Bytes())
	now := s.cfg.now()
	s.shardFor(key).markPending(key, now, now.Add(pendingTTL))
}

// InvalidateAll empties the cache.
func (s *StoreSource) InvalidateAll() {
	for i := range s.shard {
		s.shard[i].clear()
	}
}

// Run follows revocation announcements until ctx is done, then returns
// ctx's error: each announced serial is invalidated, and a nil
// announcement (missed some) or a lost subscription empties the cache.
// When the store announces nothing (not a certdb.RevocationNotifier), Run
// only waits for ctx; the cache TTL then bounds staleness.
func (s *StoreSource) Run(ctx context.Context) error {
	if s.notif == nil {
		s.cfg.log.WarnContext(ctx, "OCSP store does not announce revocations; cached responses may be up to the cache TTL old")
		<-ctx.Done()
		return ctx.Err()
	}
	backoff := newBackoff()
	for ctx.Err() == nil {
		ch, err := s.notif.SubscribeRevocations(ctx)
		if err != nil {
			s.cfg.log.ErrorContext(ctx, "OCSP responder: subscribe to revocations failed", "err", err)
			s.InvalidateAll()
			_ = sleepCtx(ctx, backoff())
			continue
		}
		backoff = newBackoff()
		for serial := range ch {
			if serial == nil {
				s.InvalidateAll()
				continue
			}
			s.Invalidate(serial)
		}
		if ctx.Err() == nil {
			s.InvalidateAll()
			_ = sleepCtx(ctx, backoff())
		}
	}
	return ctx.Err()
}

// lru is one shard of the cache. cap 0 caches nothing (but still tracks
// pending revocations).
type lru struct {
	mu      sync.Mutex
	cap     int
	ll      *list.List // front = most recently used; values are *cacheEntry
	m       map[string]*list.Element
	pending map[string]time.Time // serial -> bypass the cache until
}

type cacheEntry struct {
	key     string
	resp    *certdb.OCSPResponse
	fetched time.Time
}

func (c *lru) init(capacity int) {
	c.cap = capacity
	c.ll = list.New()
	c.m = make(map[string]*list.Element)
	c.pending = make(map[string]time.Time)
}

// get returns the cached entry (nil if none) and whether a revocation of
// key is pending.
func (c *lru) get(key string, now time.Time) (*certdb.OCSPResponse, time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pending := false
	if until, ok := c.pending[key]; ok {
		if now.Before(until) {
			pending = true
		} else {
			delete(c.pending, key)
		}
	}
	el, ok := c.m[key]
	if !ok {
		return nil, time.Time{}, pending
	}
	c.ll.MoveToFront(el)
	e := el.Value.(*cacheEntry)
	return e.resp, e.fetched, pending
}

func (c *lru) put(key string, r *certdb.OCSPResponse, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Status == certdb.StatusRevoked {
		delete(c.pending, key)
	}
	if c.cap == 0 {
		return
	}
	if el, ok := c.m[key]; ok {
		e := el.Value.(*cacheEntry)
		// Never replace a response with an older one (a slow fetch that
		// started before a newer one was cached).
		if r.ThisUpdate.Before(e.resp.ThisUpdate) {
			return
		}
		e.resp, e.fetched = r, now
		c.ll.MoveToFront(el)
		return
	}
	c.m[key] = c.ll.PushFront(&cacheEntry{key: key, resp: r, fetched: now})
	for c.ll.Len() > c.cap {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.m, old.Value.(*cacheEntry).key)
	}
}

func (c *lru) remove(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		c.ll.Remove(el)
		delete(c.m, key)
	}
}

func (c *lru) markPending(key string, now, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) >= 1024 { // keep the map bounded: drop expired marks
		for k, u := range c.pending {
			if !now.Before(u) {
				delete(c.pending, k)
			}
		}
	}
	if el, ok := c.m[key]; ok {
		c.ll.Remove(el)
		delete(c.m, key)
	}
	c.pending[key] = until
}

func (c *lru) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ll.Init()
	clear(c.m)
}
