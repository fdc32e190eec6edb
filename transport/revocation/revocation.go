package revocation

import (
	"container/list"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Mode says what Check does when no source gives a verified answer.
type Mode int

const (
	// SoftFail lets the peer through (and logs a warning) when revocation
	// status is unavailable. A revoked certificate is always refused.
	SoftFail Mode = iota
	// HardFail refuses the peer when revocation status is unavailable.
	HardFail
)

func (m Mode) String() string {
	if m == HardFail {
		return "hard-fail"
	}
	return "soft-fail"
}

// Method is a source of revocation information.
type Method int

const (
	// OCSP queries the responders in the certificate's AIA extension.
	OCSP Method = iota + 1
	// CRL downloads the CRLs in the certificate's CDP extension.
	CRL
)

func (m Method) String() string {
	switch m {
	case OCSP:
		return "OCSP"
	case CRL:
		return "CRL"
	}
	return fmt.Sprintf("Method(%d)", int(m))
}

// Defaults and limits.
const (
	DefaultFetchTimeout    = 10 * time.Second
	DefaultMaxResponseSize = 64 << 10 // an OCSP response with a responder certificate is 1–3 KB
	DefaultMaxCRLSize      = 10 << 20 // ~300k entries
	DefaultOCSPCacheSize   = 4096     // responses (about 2 KB each)
	DefaultCRLCacheSize    = 16       // CRLs (up to DefaultMaxCRLSize each, parsed)
	DefaultFailureTTL      = 30 * time.Second
	DefaultClockSkew       = 5 * time.Minute
	// maxGETURL: RFC 5019 §5: use GET when the encoded request fits 255 bytes.
	maxGETURL = 255
)

// Event describes one consultation of a source, for metrics and tracing.
type Event struct {
	Method   Method
	URL      string
	Cached   bool          // answered from the cache (no network)
	Duration time.Duration // time the caller waited
	Revoked  bool
	Err      error // nil when the source gave a verified answer
}

type config struct {
	mode          Mode
	client        *http.Client
	methods       []Method
	now           func() time.Time
	log           *slog.Logger
	timeout       time.Duration
	maxResp       int64
	maxCRL        int64
	ocspEntries   int
	crlEntries    int
	failureTTL    time.Duration
	skew          time.Duration
	requireInfo   bool
	intermediates bool
	observe       func(Event)
}

// Option configures New.
type Option func(*config)

// WithMode sets SoftFail (default) or HardFail.
func WithMode(m Mode) Option { return func(c *config) { c.mode = m } }

// WithHTTPClient sets the client for OCSP and CRL requests (default: a
// client on http.DefaultTransport). Its own Timeout, if any, applies too.
func WithHTTPClient(hc *http.Client) Option { return func(c *config) { c.client = hc } }

// WithMethods sets the sources and their order (default OCSP, CRL).
// Unknown methods are ignored; an empty list keeps the default.
func WithMethods(m ...Method) Option { return func(c *config) { c.methods = m } }

// WithPreferCRL tries CRLs before OCSP.
func WithPreferCRL() Option { return WithMethods(CRL, OCSP) }

// WithRequireInfo, in hard-fail mode, refuses certificates that name no
// OCSP responder and no CRL distribution point (default: they pass, as
// short-lived certificates often carry neither).
func WithRequireInfo() Option { return func(c *config) { c.requireInfo = true } }

// WithIntermediates also checks every intermediate CA certificate of the
// chain against its own issuer (every certificate but the last, the root).
func WithIntermediates() Option { return func(c *config) { c.intermediates = true } }

// WithFetchTimeout bounds each OCSP request and CRL download (default
// DefaultFetchTimeout), whatever the callers' contexts allow.
func WithFetchTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithMaxResponseSize bounds OCSP response bodies (default DefaultMaxResponseSize).
func WithMaxResponseSize(n int64) Option { return func(c *config) { c.maxResp = n } }

// WithMaxCRLSize bounds CRL bodies (default DefaultMaxCRLSize).
func WithMaxCRLSize(n int64) Option { return func(c *config) { c.maxCRL = n } }

// WithCacheSize bounds the caches: OCSP responses and CRLs (defaults
// DefaultOCSPCacheSize, DefaultCRLCacheSize).
func WithCacheSize(ocspResponses, crls int) Option {
	return func(c *config) { c.ocspEntries, c.crlEntries = ocspResponses, crls }
}

// WithFailureTTL sets how long a failed fetch is remembered before the
// source is asked again (default DefaultFailureTTL; 0 disables it).
func WithFailureTTL(d time.Duration) Option { return func(c *config) { c.failureTTL = d } }

// WithClockSkew sets the allowance for clock differences when checking
// thisUpdate/nextUpdate and responder certificate validity (default
// DefaultClockSkew).
func WithClockSkew(d time.Duration) Option { return func(c *config) { c.skew = d } }

// WithClock sets the clock (default time.Now).
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithObserver calls fn after each source is consulted (for metrics). fn
// runs on the checking goroutine: it must be fast and safe for concurrent use.
func WithObserver(fn func(Event)) Option { return func(c *config) { c.observe = fn } }

// Checker checks certificates against OCSP and CRLs, with caches. It is
// safe for concurrent use and does not change after New. It holds no
// goroutines between calls and needs no Close.
type Checker struct {
	cfg   config
	ocsp  *lru[*answer]
	crls  *lru[*crlData]
	group singleflight.Group
}

// New returns a Checker. Out-of-range option values fall back to the
// defaults.
func New(opts ...Option) *Checker {
	cfg := config{
		mode:        SoftFail,
		methods:     []Method{OCSP, CRL},
		now:         time.Now,
		log:         slog.New(slog.DiscardHandler),
		timeout:     DefaultFetchTimeout,
		maxResp:     DefaultMaxResponseSize,
		maxCRL:      DefaultMaxCRLSize,
		ocspEntries: DefaultOCSPCacheSize,
		crlEntries:  DefaultCRLCacheSize,
		failureTTL:  DefaultFailureTTL,
		skew:        DefaultClockSkew,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.client == nil {
		cfg.client = &http.Client{}
	}
	var methods []Method
	for _, m := range cfg.methods {
		if m == OCSP || m == CRL {
			methods = append(methods, m)
		}
	}
	if len(methods) == 0 {
		methods = []Method{OCSP, CRL}
	}
	cfg.methods = methods
	if cfg.timeout <= 0 {
		cfg.timeout = DefaultFetchTimeout
	}
	if cfg.maxResp <= 0 {
		cfg.maxResp = DefaultMaxResponseSize
	}
	if cfg.maxCRL <= 0 {
		cfg.maxCRL = DefaultMaxCRLSize
	}
	if cfg.ocspEntries <= 0 {
		cfg.ocspEntries = DefaultOCSPCacheSize
	}
	if cfg.crlEntries <= 0 {
		cfg.crlEntries = DefaultCRLCacheSize
	}
	if cfg.failureTTL < 0 {
		cfg.failureTTL = 0
	}
	if cfg.skew < 0 {
		cfg.skew = 0
	}
	if cfg.log == nil {
		cfg.log = slog.New(slog.DiscardHandler)
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	return &Checker{cfg: cfg, ocsp: newLRU[*answer](cfg.ocspEntries), crls: newLRU[*crlData](cfg.crlEntries)}
}

// Check returns nil if chain[0] (the leaf, issued by chain[1]) is not
// revoked according to the first source that gives a verified answer. It
// returns a *RevokedError (ErrRevoked) if the certificate is revoked, and,
// in hard-fail mode, an *UnavailableError (ErrUnavailable) if no source
// answers. Only chain[0] is checked, unless WithIntermediates was given;
// chain[1] is its issuer. chain is what crypto/x509 verification returns
// (tls.ConnectionState.VerifiedChains[0]). ctx bounds the wait: Check
// returns when ctx is done, leaving any fetch it started to finish (within
// the fetch timeout) for later callers.
func (c *Checker) Check(ctx context.Context, chain []*x509.Certificate) error {
	if len(chain) < 2 || slices.Contains(chain, nil) {
		return ErrNoIssuer
	}
	n := 1
	if c.cfg.intermediates {
		n = len(chain) - 1 // every certificate but the root (the last)
	}
	for i := range n {
		if err := c.checkOne(ctx, chain[i], chain[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// checkOne checks cert, issued by issuer.
func (c *Checker) checkOne(ctx context.Context, leaf, issuer *x509.Certificate) error {
	var errs []error
	tried := false
	fresh := false // some failure is new (not a remembered one)
loop:
	for _, m := range c.cfg.methods {
		urls := leaf.OCSPServer
		if m == CRL {
			urls = leaf.CRLDistributionPoints
		}
		for _, u := range urls {
			if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
				continue // e.g. ldap://: not supported, and not an attempt
			}
			tried = true
			start := c.cfg.now()
			var (
				ans    *answer
				cached bool
				err    error
			)
			if m == OCSP {
				ans, cached, err = c.checkOCSP(ctx, u, leaf, issuer)
			} else {
				ans, cached, err = c.checkCRL(ctx, u, leaf, issuer)
			}
			if c.cfg.observe != nil {
				c.cfg.observe(Event{Method: m, URL: u, Cached: cached, Duration: c.cfg.now().Sub(start), Revoked: ans != nil && ans.revoked, Err: err})
			}
			if err != nil {
				fresh = fresh || !cached
				errs = append(errs, fmt.Errorf("%s %s: %w", m, u, err))
				if ctx.Err() != nil {
					break loop
				}
				continue
			}
			if ans.revoked {
				return &RevokedError{Serial: leaf.SerialNumber, Subject: leaf.Subject.String(), RevokedAt: ans.revokedAt, Reason: ans.reason, Method: m, URL: u}
			}
			return nil
		}
	}
	if !tried {
		if c.cfg.requireInfo && c.cfg.mode == HardFail {
			return fmt.Errorf("%w (certificate %x, %q)", ErrNoRevocationInfo, leaf.SerialNumber, leaf.Subject.String())
		}
		return nil
	}
	if c.cfg.mode == SoftFail {
		// Warn once per failed fetch, not on every handshake that reuses
		// the remembered failure.
		level := slog.LevelDebug
		if fresh {
			level = slog.LevelWarn
		}
		c.cfg.log.Log(ctx, level, "revocation status unavailable; soft-fail lets the peer through",
			"serial", fmt.Sprintf("%x", leaf.SerialNumber), "subject", leaf.Subject.String(), "err", errors.Join(errs...))
		return nil
	}
	return &UnavailableError{Serial: leaf.SerialNumber, Subject: leaf.Subject.String(), Errs: errs}
}

// answer is a verified status.
type answer struct {
	revoked   bool
	revokedAt time.Time
	reason    int
}

// entry is a cached result: a value until expires, or an error (a failure
// remembered for the failure TTL).
type entry[V any] struct {
	val     V
	err     error
	expires time.Time
}

// fetch returns the cached result for key, or runs fn once for all
// concurrent callers (detached from their contexts, bounded by the fetch
// timeout), caches its result and returns it. fn returns the value, its
// expiry (zero: do not cache) and an error. Each caller waits at most until
// its own ctx is done.
func fetch[V any](ctx context.Context, c *Checker, cache *lru[V], key string, fn func(ctx context.Context) (V, time.Time, error)) (v V, cached bool, err error) {
	if e, ok := cache.get(key, c.cfg.now()); ok {
		return e.val, true, e.err
	}
	ch := c.group.DoChan(key, func() (any, error) {
		// Another caller may have filled the cache since our lookup.
		if e, ok := cache.get(key, c.cfg.now()); ok {
			return e, nil
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.timeout)
		defer cancel()
		val, expires, err := fn(fctx)
		e := &entry[V]{val: val, err: err, expires: expires}
		if err != nil {
			e.expires = c.cfg.now().Add(c.cfg.failureTTL)
		}
		if e.expires.After(c.cfg.now()) {
			cache.put(key, e)
		}
		return e, nil
	})
	select {
	case <-ctx.Done():
		var zero V
		return zero, false, fmt.Errorf("gave up waiting for the fetch: %w", context.Cause(ctx))
	case r := <-ch:
		e := r.Val.(*entry[V])
		return e.val, false, e.err
	}
}

// issuerID identifies an issuer (name and key) in cache keys.
func issuerID(issuer *x509.Certificate) string {
	h := sha256.New()
	h.Write(issuer.RawSubject)
	h.Write(issuer.RawSubjectPublicKeyInfo)
	return fmt.Sprintf("%x", h.Sum(nil)[:16])
}

// lru is a bounded least-recently-used map, safe for concurrent use.
type lru[V any] struct {
	mu    sync.Mutex
	max   int
	ll    *list.List // of *lruItem[V], most recent first
	items map[string]*list.Element
}

type lruItem[V any] struct {
	key string
	e   *entry[V]
}

func newLRU[V any](max int) *lru[V] {
	return &lru[V]{max: max, ll: list.New(), items: map[string]*list.Element{}}
}

// get returns the unexpired entry for key.
func (l *lru[V]) get(key string, now time.Time) (*entry[V], bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.items[key]
	if !ok {
		return nil, false
	}
	it := el.Value.(*lruItem[V])
	if !now.Before(it.e.expires) {
		l.ll.Remove(el)
		delete(l.items, key)
		return nil, false
	}
	l.ll.MoveToFront(el)
	return it.e, true
}

func (l *lru[V]) put(key string, e *entry[V]) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.items[key]; ok {
		el.Value.(*lruItem[V]).e = e
		l.ll.MoveToFront(el)
		return
	}
	l.items[key] = l.ll.PushFront(&lruItem[V]{key: key, e: e})
	for l.ll.Len() > l.max {
		old := l.ll.Back()
		l.ll.Remove(old)
		delete(l.items, old.Value.(*lruItem[V]).key)
	}
}

func (l *lru[V]) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ll.Len()
}

// do performs an HTTP request and returns the body (200 only), at most max bytes.
func (c *Checker) do(req *http.Request, max int64, accept string) ([]byte, error) {
	req.Header.Set("Accept", accept)
	resp, err := c.cfg.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	if resp.ContentLength > max {
		return nil, fmt.Errorf("%w: Content-Length %d > %d bytes", ErrTooLarge, resp.ContentLength, max)
	}
	body, err := readLimited(resp.Body, max)
	if err != nil {
		return nil, err
	}
	return body, nil
}
