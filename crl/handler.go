package crl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/certctl/certctl/certdb"
)

// CRLGetter is what the Handler needs from certdb (a certdb.CRLStore).
type CRLGetter interface {
	GetCRL(ctx context.Context, issuerKeyID []byte, shard int) (*certdb.CRL, error)
}

// WithCacheTTL sets how long the Handler serves a CRL from memory before
// asking the store whether there is a newer one (default DefaultCacheTTL).
// It adds to the delay between a revocation and its CRL being served.
func WithCacheTTL(d time.Duration) Option { return func(c *config) { c.cacheTTL = d } }

// fetchTimeout bounds one store read, detached from the request (one read
// serves every waiting request).
const fetchTimeout = 10 * time.Second

// Handler serves an issuer's CRLs as DER (application/pkix-crl):
//
//	GET /crl/{shard}   the CRL of shard (a decimal number below the shard count)
//	GET /crl           shard 0, when there is only one shard
//
// Mount it at both "/crl" and "/crl/". Responses carry Cache-Control
// (public, max-age until nextUpdate), ETag (the CRL number), Last-Modified
// (thisUpdate) and Expires (nextUpdate), and conditional requests get 304.
//
// Each shard's latest CRL is kept in memory and re-read from the store at
// most once per cache TTL; a CRL read from the store replaces the cached one
// only if its number is higher (so a lagging read replica cannot roll it
// back). When the store fails, the cached CRL is served until its
// nextUpdate. A CRL past its nextUpdate is never served (503): relying
// parties would reject it anyway.
//
// A Handler is safe for concurrent use.
type Handler struct {
	st     CRLGetter
	keyID  []byte
	shards int
	cfg    config
	cache  []shardCache
}

type shardCache struct {
	mu      sync.Mutex // held while fetching: one store read per shard at a time
	crl     *certdb.CRL
	etag    string
	fetched time.Time
}

var _ http.Handler = (*Handler)(nil)

// NewHandler serves the CRLs of the issuer with key identifier issuerKeyID
// from st. Options: WithCacheTTL, WithClock, WithLogger.
func NewHandler(st CRLGetter, issuerKeyID []byte, shards int, opts ...Option) (*Handler, error) {
	if st == nil || len(issuerKeyID) == 0 {
		return nil, errors.New("crl: NewHandler needs a store and an issuer key id")
	}
	if shards < 1 {
		return nil, fmt.Errorf("crl: NewHandler: %d shards", shards)
	}
	cfg := newConfig(opts)
	if cfg.cacheTTL < 0 {
		return nil, fmt.Errorf("crl: cache TTL %s must not be negative", cfg.cacheTTL)
	}
	return &Handler{st: st, keyID: append([]byte(nil), issuerKeyID...), shards: shards, cfg: cfg, cache: make([]shardCache, shards)}, nil
}

// maxShardDigits: issuance.MaxCRLShards is 1024.
const maxShardDigits = 4

// ParseShardPath returns the shard a request path names: "/crl" is shard 0
// when shards is 1; "/crl/N" is shard N for a canonical decimal N (no sign,
// no leading zeros) below shards. ok is false for anything else.
func ParseShardPath(path string, shards int) (shard int, ok bool) {
	if path == "/crl" {
		return 0, shards == 1
	}
	rest, found := strings.CutPrefix(path, "/crl/")
	if !found || len(rest) == 0 || len(rest) > maxShardDigits || (len(rest) > 1 && rest[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(rest); i++ {
		if rest[i] < '0' || rest[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n >= shards {
		return 0, false
	}
	return n, true
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	shard, ok := ParseShardPath(r.URL.Path, h.shards)
	if !ok {
		http.NotFound(w, r)
		return
	}
	c, etag, err := h.get(r.Context(), shard)
	now := h.cfg.now()
	switch {
	case errors.Is(err, certdb.ErrNotFound):
		http.Error(w, "no CRL has been built for this shard yet", http.StatusNotFound)
		return
	case err != nil:
		h.cfg.log.ErrorContext(r.Context(), "serve CRL", "shard", shard, "err", err)
		http.Error(w, "CRL temporarily unavailable", http.StatusServiceUnavailable)
		return
	case !now.Before(c.NextUpdate):
		h.cfg.log.ErrorContext(r.Context(), "latest CRL is past its nextUpdate; not serving it", "shard", shard,
			"number", c.Number.String(), "next_update", c.NextUpdate)
		w.Header().Set("Retry-After", "10")
		http.Error(w, "CRL is stale", http.StatusServiceUnavailable)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/pkix-crl")
	hd.Set("ETag", etag)
	hd.Set("Expires", c.NextUpdate.UTC().Format(http.TimeFormat))
	hd.Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int64(c.NextUpdate.Sub(now)/time.Second)))
	// ServeContent sets Last-Modified and Content-Length and answers
	// If-None-Match (with our ETag), If-Modified-Since, HEAD and ranges.
	http.ServeContent(w, r, "", c.ThisUpdate, bytes.NewReader(c.DER))
}

// get returns the latest CRL of shard, from memory when it was checked
// within the cache TTL.
func (h *Handler) get(ctx context.Context, shard int) (*certdb.CRL, string, error) {
	sc := &h.cache[shard]
	sc.mu.Lock()
	defer sc.mu.Unlock()
	now := h.cfg.now()
	if sc.crl != nil && now.Sub(sc.fetched) < h.cfg.cacheTTL {
		return sc.crl, sc.etag, nil
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	c, err := h.st.GetCRL(fctx, h.keyID, shard)
	switch {
	case err != nil && sc.crl != nil && !errors.Is(err, certdb.ErrNotFound):
		// Keep answering from memory; ServeHTTP stops at nextUpdate.
		h.cfg.log.WarnContext(ctx, "CRL store unavailable; serving cached CRL", "shard", shard, "number", sc.crl.Number.String(), "err", err)
		sc.fetched = now
		return sc.crl, sc.etag, nil
	case err != nil:
		return nil, "", fmt.Errorf("crl: get shard %d: %w", shard, err)
	case c.Number == nil:
		return nil, "", fmt.Errorf("crl: get shard %d: stored CRL has no number", shard)
	}
	if sc.crl == nil || c.Number.Cmp(sc.crl.Number) > 0 {
		sc.crl, sc.etag = c, `"`+c.Number.Text(16)+`"`
	}
	sc.fetched = now
	return sc.crl, sc.etag, nil
}
