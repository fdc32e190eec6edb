// Package crl builds, keeps fresh and serves certctl's certificate
// revocation lists (RFC 5280 §5).
//
// An issuer's certificates are spread over one or more shards at issuance
// (issuance.ShardOf; each certificate's CRL distribution point names its
// shard) and every shard has its own CRL, numbered from certdb so that
// numbers increase across processes.
//
//   - [Builder] builds and stores the CRL of one shard: a new number from
//     the store, the shard's revoked certificates streamed from the store
//     into issuance.Issuer.SignCRL, then PutCRL.
//   - [Updater] runs a Builder on schedule for every shard (while it is the
//     leader, when several processes share a database) and within about a
//     second of a revocation for that certificate's shard (in every
//     process that hears of it).
//   - [Handler] serves the stored CRLs over HTTP, as DER with caching headers.
//
// The three take the same [Option]s; each ignores those that do not concern
// it. All are safe for concurrent use and do not change after construction.
package crl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"time"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/issuance"
)

// Store is what a Builder needs from certdb (a certdb.CRLStore).
type Store interface {
	NextCRLNumber(ctx context.Context, issuerKeyID []byte, shard int) (*big.Int, error)
	ListRevokedShard(ctx context.Context, issuerKeyID []byte, shard int, now time.Time, fn func(*certdb.Certificate) error) error
	PutCRL(ctx context.Context, c *certdb.CRL) error
}

// Defaults.
const (
	// DefaultValidity is nextUpdate − thisUpdate.
	DefaultValidity = 24 * time.Hour
	// DefaultPeriod is how often the Updater rebuilds every shard.
	DefaultPeriod = time.Hour
	// DefaultCacheTTL is how long the Handler serves a CRL from memory
	// before asking the store for a newer one.
	DefaultCacheTTL = 500 * time.Millisecond
)

type config struct {
	now         func() time.Time
	log         *slog.Logger
	validity    time.Duration
	retention   time.Duration
	retentionOK bool
	period      time.Duration
	notifier    Notifier
	locker      Locker
	cacheTTL    time.Duration
}

// Option configures NewBuilder, NewUpdater and NewHandler.
type Option func(*config)

// WithClock sets the clock (default time.Now). Builder: thisUpdate;
// Handler: max-age and staleness.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithValidity sets how long a CRL is valid: nextUpdate = thisUpdate + d
// (Builder; default DefaultValidity). It must be longer than the Updater's
// period, or relying parties see expired CRLs between rebuilds.
func WithValidity(d time.Duration) Option { return func(c *config) { c.validity = d } }

// WithExpiredRetention sets how long a revoked certificate stays on the CRL
// after it expires (Builder; default: the CRL validity). RFC 5280 §3.3: an
// entry "MUST NOT be removed from the CRL until it appears on one regularly
// scheduled CRL issued beyond the revoked certificate's validity period";
// with the default, every CRL built within one validity after the expiry
// still lists it, so as long as the Updater's period is shorter than the
// validity, the first scheduled CRL after the expiry does. 0 drops entries
// the moment they expire.
func WithExpiredRetention(d time.Duration) Option {
	return func(c *config) { c.retention, c.retentionOK = d, true }
}

func newConfig(opts []Option) config {
	c := config{
		now:      time.Now,
		log:      slog.New(slog.DiscardHandler),
		validity: DefaultValidity,
		period:   DefaultPeriod,
		cacheTTL: DefaultCacheTTL,
	}
	for _, o := range opts {
		o(&c)
	}
	if !c.retentionOK {
		c.retention = c.validity
	}
	return c
}

// Builder builds, signs and stores the CRL of one shard of one issuer. It is
// safe for concurrent use, also by several processes on one database: see
// Build.
type Builder struct {
	iss   *issuance.Issuer
	st    Store
	keyID []byte
	cfg   config
}

// NewBuilder returns a Builder for iss's CRLs over st. Options: WithClock,
// WithLogger, WithValidity, WithExpiredRetention.
func NewBuilder(iss *issuance.Issuer, st Store, opts ...Option) (*Builder, error) {
	if iss == nil || st == nil {
		return nil, errors.New("crl: NewBuilder needs an issuer and a store")
	}
	cfg := newConfig(opts)
	switch {
	case cfg.validity < time.Minute || cfg.validity%time.Second != 0:
		return nil, fmt.Errorf("crl: validity %s must be a whole number of seconds, at least 1m", cfg.validity)
	case cfg.retention < 0:
		return nil, fmt.Errorf("crl: expired retention %s must not be negative", cfg.retention)
	}
	return &Builder{iss: iss, st: st, keyID: iss.KeyID(), cfg: cfg}, nil
}

// Shards returns the issuer's number of CRL shards.
func (b *Builder) Shards() int { return b.iss.CRLShards() }

// IssuerKeyID returns (a copy of) the key identifier the CRLs are stored under.
func (b *Builder) IssuerKeyID() []byte { return append([]byte(nil), b.keyID...) }

// Build builds the CRL of shard, stores it and returns it.
//
// It first allocates the CRL number, then reads the clock and lists the
// shard's revoked certificates. That order is what makes concurrent builders
// (other goroutines, other processes) safe: a build whose number was
// allocated after a revocation committed also lists after it, so it includes
// that certificate, and PutCRL keeps the CRL with the highest number (it
// refuses to roll back). Whichever of several builders stores last, the
// stored CRL is at least as recent as any stored before. Numbers may skip
// (a build that fails, or loses that race, uses one up): RFC 5280 §5.2.3
// asks only that they increase.
//
// Certificates revoked after thisUpdate (a revocation racing the build, or
// clock skew between processes) are left for the next CRL, since a CRL
// cannot list a revocation later than its own thisUpdate (§5.1.2.6); the
// Updater rebuilds such a shard a second later. Entries with reason
// removeFromCRL, which belongs in delta CRLs only (§5.3.1), are left out.
// Expired certificates drop off after the expired retention.
func (b *Builder) Build(ctx context.Context, shard int) (*certdb.CRL, error) {
	c, _, err := b.build(ctx, shard)
	return c, err
}

// build is Build, also returning how many entries were left for later.
func (b *Builder) build(ctx context.Context, shard int) (_ *certdb.CRL, deferred int, _ error) {
	if shard < 0 || shard >= b.Shards() {
		return nil, 0, fmt.Errorf("crl: build shard %d: out of range [0, %d)", shard, b.Shards())
	}
	start := time.Now()
	number, err := b.st.NextCRLNumber(ctx, b.keyID, shard)
	if err != nil {
		return nil, 0, fmt.Errorf("crl: build shard %d: allocate number: %w", shard, err)
	}
	thisUpdate := b.cfg.now().UTC().Truncate(time.Second)
	nextUpdate := thisUpdate.Add(b.cfg.validity)
	if na := b.iss.Cert().NotAfter.UTC(); nextUpdate.After(na) {
		// Near the end of the issuer's life: no CRL outlives its issuer.
		nextUpdate = na
	}
	var entries, skipped int
	list := func(emit func(issuance.RevokedCert) error) error {
		return b.st.ListRevokedShard(ctx, b.keyID, shard, thisUpdate.Add(-b.cfg.retention), func(c *certdb.Certificate) error {
			switch {
			case c.RevokedAt.Truncate(time.Second).After(thisUpdate):
				deferred++
				return nil
			case c.Reason == certdb.ReasonRemoveFromCRL:
				skipped++
				return nil
			}
			entries++
			return emit(issuance.RevokedCert{Serial: c.Serial, RevokedAt: c.RevokedAt, Reason: int(c.Reason)})
		})
	}
	der, err := b.iss.SignCRL(issuance.CRLRequest{
		Number: number, ThisUpdate: thisUpdate, NextUpdate: nextUpdate, Shard: shard, Entries: list,
	})
	if err != nil {
		return nil, 0, fmt.Errorf("crl: build shard %d number %d: %w", shard, number, err)
	}
	c := &certdb.CRL{
		IssuerKeyID: b.IssuerKeyID(), Shard: shard, Number: number,
		ThisUpdate: thisUpdate, NextUpdate: nextUpdate, DER: der,
	}
	if err := b.st.PutCRL(ctx, c); err != nil {
		return nil, 0, fmt.Errorf("crl: store shard %d number %d: %w", shard, number, err)
	}
	b.cfg.log.InfoContext(ctx, "built CRL", "issuer", fmt.Sprintf("%x", b.keyID), "shard", shard, "number", number.String(),
		"entries", entries, "deferred", deferred, "skipped_remove_from_crl", skipped, "bytes", len(der),
		"next_update", nextUpdate, "took", time.Since(start))
	return c, deferred, nil
}
