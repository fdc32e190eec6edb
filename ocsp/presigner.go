package ocsp

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/issuance"
)

// PresignStore is what the Presigner needs from certdb. Optional
// capabilities, found by type assertion: certdb.Locker (leader election for
// the bulk refresh; without it every Presigner refreshes) and
// certdb.RevocationNotifier (re-sign on revocation in every process).
type PresignStore interface {
	GetCertificate(ctx context.Context, serial *big.Int) (*certdb.Certificate, error)
	GetOCSPResponse(ctx context.Context, serial *big.Int) (*certdb.OCSPResponse, error)
	PutOCSPResponse(ctx context.Context, r *certdb.OCSPResponse) error
	ListOCSPStale(ctx context.Context, issuerKeyID []byte, signedBefore, now time.Time, after *big.Int, limit int) ([]*certdb.Certificate, error)
}

// Config tunes the pre-signer. The zero value means every default.
type Config struct {
	// Validity is NextUpdate - ThisUpdate of every response. Default 24h;
	// 1 minute to 7 days. Responses are re-signed when half of it has
	// passed ("refresh at half"), so a database or signer outage of up to
	// Validity/2 is invisible to relying parties, and a responder that
	// loses its database keeps serving cached responses for at least that
	// long. 24h keeps the bulk refresh cheap (each certificate is signed
	// twice a day) and stays well inside the CA/B BR §4.9.10 window (8h to
	// 10 days) that many relying parties assume. Revocation does not wait for
	// it: a revocation is re-signed at once. What Validity bounds is how long
	// a client or HTTP cache that kept a "good" response may keep trusting
	// it after a revocation (max-age runs to NextUpdate, RFC 5019 §6.2).
	Validity issuance.Duration `yaml:"validity,omitempty" json:"validity,omitempty"`
	// Backdate moves ThisUpdate into the past to absorb clock skew between
	// the signer and relying parties. Default 1 minute; at most 1 hour and
	// less than Validity/2.
	Backdate issuance.Duration `yaml:"backdate,omitempty" json:"backdate,omitempty"`
	// Interval is the time between two bulk refresh passes of the leader.
	// Default Validity/8 (3h for 24h), at most Validity/4 so that a missed
	// pass never lets a response go stale.
	Interval issuance.Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	// Workers signs this many responses concurrently. Default 8.
	Workers int `yaml:"workers,omitempty" json:"workers,omitempty"`
	// BatchSize is the page size of the stale-response scan. Default 1000.
	BatchSize int `yaml:"batch_size,omitempty" json:"batch_size,omitempty"`
}

// Defaults and limits for Config.
const (
	DefaultValidity  = 24 * time.Hour
	DefaultBackdate  = time.Minute
	DefaultWorkers   = 8
	DefaultBatchSize = 1000
	minValidity      = time.Minute
	maxValidity      = 7 * 24 * time.Hour
	maxBackdate      = time.Hour
)

// withDefaults validates c and fills in the defaults.
func (c Config) withDefaults() (Config, error) {
	if c.Validity == 0 {
		c.Validity = issuance.Duration(DefaultValidity)
	}
	if c.Backdate == 0 {
		c.Backdate = issuance.Duration(DefaultBackdate)
	}
	if c.Interval == 0 {
		c.Interval = c.Validity / 8
	}
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	v := time.Duration(c.Validity)
	switch {
	case v < minValidity || v > maxValidity:
		return c, fmt.Errorf("ocsp: config: validity %s must be between %s and %s", v, minValidity, maxValidity)
	case c.Backdate < 0 || time.Duration(c.Backdate) > maxBackdate || c.Backdate >= c.Validity/2:
		return c, fmt.Errorf("ocsp: config: backdate %s must be between 0 and %s and less than half the validity", time.Duration(c.Backdate), maxBackdate)
	case c.Interval < 0 || c.Interval > c.Validity/4:
		return c, fmt.Errorf("ocsp: config: interval %s must be positive and at most a quarter of the validity", time.Duration(c.Interval))
	case c.Workers < 1 || c.Workers > 256:
		return c, fmt.Errorf("ocsp: config: workers %d must be between 1 and 256", c.Workers)
	case c.BatchSize < 1 || c.BatchSize > certdb.MaxOCSPStaleLimit:
		return c, fmt.Errorf("ocsp: config: batch_size %d must be between 1 and %d", c.BatchSize, certdb.MaxOCSPStaleLimit)
	}
	return c, nil
}

// Progress counts the responses of a refresh.
type Progress struct {
	Signed int // responses signed and stored
	Failed int // certificates whose response could not be signed or stored
}

// Presigner signs OCSP responses for every unexpired certificate of one
// issuer and stores them, so that responders can answer without a key:
//
//   - SignOne signs one certificate's response now (at issuance, and on
//     revocation);
//   - Run keeps every response fresh: the elected leader re-signs responses
//     older than half their validity, in batches with a worker pool, and
//     every process re-signs a certificate as soon as its revocation is
//     announced;
//   - RefreshAll is one refresh pass (`certctl ocsp refresh`).
//
// A Presigner is safe for concurrent use; it never changes after
// NewPresigner.
type Presigner struct {
	issuer   *x509.Certificate
	keyID    []byte
	store    PresignStore
	signers  SignerProvider
	cfg      Config
	now      func() time.Time
	log      *slog.Logger
	locker   certdb.Locker
	notifier certdb.RevocationNotifier
	lockName string
	rescan   chan struct{} // cap 1: a stale pass was asked for
}

// PresignerOption configures NewPresigner.
type PresignerOption func(*Presigner)

// WithPresignerClock sets the clock (default time.Now).
func WithPresignerClock(now func() time.Time) PresignerOption {
	return func(p *Presigner) { p.now = now }
}

// WithPresignerLogger sets the logger (default: discard).
func WithPresignerLogger(l *slog.Logger) PresignerOption { return func(p *Presigner) { p.log = l } }

// WithLocker sets the leader election (default: the store's, if it is a
// certdb.Locker; otherwise this process always leads).
func WithLocker(l certdb.Locker) PresignerOption { return func(p *Presigner) { p.locker = l } }

// WithNotifier sets where revocations are announced (default: the store,
// if it is a certdb.RevocationNotifier).
func WithNotifier(n certdb.RevocationNotifier) PresignerOption {
	return func(p *Presigner) { p.notifier = n }
}

// NewPresigner returns a Presigner for the certificates issued by issuer.
func NewPresigner(issuer *x509.Certificate, st PresignStore, signers SignerProvider, cfg Config, opts ...PresignerOption) (*Presigner, error) {
	if issuer == nil || st == nil || signers == nil {
		return nil, errors.New("ocsp: new presigner: nil issuer, store or signer")
	}
	if len(issuer.SubjectKeyId) == 0 {
		return nil, errors.New("ocsp: new presigner: issuer has no subject key identifier")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	p := &Presigner{
		issuer:  issuer,
		keyID:   slices.Clone(issuer.SubjectKeyId),
		store:   st,
		signers: signers,
		cfg:     cfg,
		now:     time.Now,
		log:     slog.New(slog.DiscardHandler),
		rescan:  make(chan struct{}, 1),
	}
	if l, ok := st.(certdb.Locker); ok {
		p.locker = l
	}
	if n, ok := st.(certdb.RevocationNotifier); ok {
		p.notifier = n
	}
	for _, o := range opts {
		o(p)
	}
	p.lockName = "certctl-ocsp-presign-" + hex.EncodeToString(p.keyID)
	return p, nil
}

// Validity returns the NextUpdate - ThisUpdate of the responses it signs.
func (p *Presigner) Validity() time.Duration { return time.Duration(p.cfg.Validity) }

// SignOne signs and stores the response for serial with the certificate's
// current status. It is meant for issuance and revocation; for a revoked
// certificate it checks that the stored response says revoked afterwards
// (a concurrent refresh with the same ThisUpdate second may have replaced
// it) and signs again if not. Expired certificates are skipped (nil error).
// Errors: certdb.ErrNotFound, certdb.ErrNotIssued, store and signing
// failures.
func (p *Presigner) SignOne(ctx context.Context, serial *big.Int) error {
	for attempt := 1; ; attempt++ {
		// Read the time before the status: a response's ThisUpdate must not
		// be later than the status it asserts was read, else a slow "good"
		// could outrank a concurrent "revoked" (PutOCSPResponse keeps the
		// later ThisUpdate).
		now := p.now()
		c, err := p.store.GetCertificate(ctx, serial)
		if err != nil {
			return fmt.Errorf("ocsp: sign %s: %w", certdb.SerialHex(serial), err)
		}
		if c.Status == certdb.StatusReserved {
			return fmt.Errorf("ocsp: sign %s: %w", certdb.SerialHex(serial), certdb.ErrNotIssued)
		}
		if c.Expired(now) {
			return nil
		}
		if !slices.Equal(c.IssuerKeyID, p.keyID) {
			return fmt.Errorf("ocsp: sign %s: %w: issued by another CA (key id %x)", certdb.SerialHex(serial), certdb.ErrInvalid, c.IssuerKeyID)
		}
		if err := p.signAndPut(ctx, c, now); err != nil {
			return err
		}
		if c.Status != certdb.StatusRevoked {
			return nil
		}
		got, err := p.store.GetOCSPResponse(ctx, serial)
		if err != nil {
			return fmt.Errorf("ocsp: sign %s: check stored response: %w", certdb.SerialHex(serial), err)
		}
		if got.Status == certdb.StatusRevoked || attempt == 3 {
			if got.Status != certdb.StatusRevoked {
				return fmt.Errorf("ocsp: sign %s: stored response still says %s", certdb.SerialHex(serial), got.Status)
			}
			return nil
		}
		// Responses have one-second resolution: wait for the next second so
		// the new ThisUpdate is later than the one that replaced ours.
		wait := time.Second - time.Duration(p.now().Nanosecond())
		if err := sleepCtx(ctx, wait); err != nil {
			return err
		}
	}
}

// signAndPut signs c's response and stores it. readAt is a time no later
// than when c's status was read: ThisUpdate derives from it.
func (p *Presigner) signAndPut(ctx context.Context, c *certdb.Certificate, readAt time.Time) error {
	thisUpdate := readAt.Add(-time.Duration(p.cfg.Backdate)).UTC().Truncate(time.Second)
	nextUpdate := thisUpdate.Add(time.Duration(p.cfg.Validity))
	s, err := p.signers.OCSPSigner(ctx, nextUpdate)
	if err != nil {
		return fmt.Errorf("ocsp: sign %s: %w", certdb.SerialHex(c.Serial), err)
	}
	t := issuance.OCSPTemplate{
		Serial:     c.Serial,
		ThisUpdate: thisUpdate,
		NextUpdate: nextUpdate,
		ProducedAt: p.now(),
	}
	status := certdb.StatusValid
	if c.Status == certdb.StatusRevoked {
		status = certdb.StatusRevoked
		t.Revoked, t.RevokedAt, t.Reason = true, c.RevokedAt, int(c.Reason)
	}
	der, err := s.Sign(t)
	if err != nil {
		return fmt.Errorf("ocsp: sign %s: %w", certdb.SerialHex(c.Serial), err)
	}
	err = p.store.PutOCSPResponse(ctx, &certdb.OCSPResponse{
		Serial:      c.Serial,
		IssuerKeyID: p.keyID,
		DER:         der,
		Status:      status,
		ThisUpdate:  thisUpdate,
		NextUpdate:  nextUpdate,
	})
	if err != nil {
		return fmt.Errorf("ocsp: store response for %s: %w", certdb.SerialHex(c.Serial), err)
	}
	return nil
}

// RefreshAll runs one refresh pass: it signs every unexpired certificate
// whose response is missing, has the wrong status, or was signed more than
// half its validity ago (with force, every response signed before now).
// progress, if not nil, is called after each batch with the running totals.
// It does not take the leader lock. It returns the totals and an error if
// listing failed or any certificate failed.
func (p *Presigner) RefreshAll(ctx context.Context, force bool, progress func(Progress)) (Progress, error) {
	now := p.now()
	signedBefore := now.Add(-time.Duration(p.cfg.Validity) / 2)
	if force {
		signedBefore = now.Add(time.Second) // responses have one-second resolution
	}
	total, err := p.pass(ctx, now, signedBefore, progress)
	if err == nil && total.Failed > 0 {
		err = fmt.Errorf("ocsp: refresh: %d of %d responses failed (see the log)", total.Failed, total.Signed+total.Failed)
	}
	return total, err
}

// pass pages through the stale certificates and signs them with a worker
// pool. Failures of single certificates are logged and counted; the next
// pass retries them.
func (p *Presigner) pass(ctx context.Context, now, signedBefore time.Time, progress func(Progress)) (Progress, error) {
	var total Progress
	var after *big.Int
	for {
		batch, err := p.store.ListOCSPStale(ctx, p.keyID, signedBefore, now, after, p.cfg.BatchSize)
		if err != nil {
			return total, fmt.Errorf("ocsp: list stale responses: %w", err)
		}
		if len(batch) == 0 {
			return total, nil
		}
		signed, failed := p.signBatch(ctx, batch, now)
		total.Signed += signed
		total.Failed += failed
		if progress != nil {
			progress(total)
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
		after = batch[len(batch)-1].Serial
		if len(batch) < p.cfg.BatchSize {
			return total, nil
		}
	}
}

func (p *Presigner) signBatch(ctx context.Context, batch []*certdb.Certificate, now time.Time) (signed, failed int) {
	work := make(chan *certdb.Certificate)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range min(p.cfg.Workers, len(batch)) {
		wg.Go(func() {
			for c := range work {
				err := p.signAndPut(ctx, c, now)
				mu.Lock()
				if err != nil {
					failed++
				} else {
					signed++
				}
				mu.Unlock()
				if err != nil && ctx.Err() == nil {
					p.log.ErrorContext(ctx, "OCSP pre-signing failed", "serial", certdb.SerialHex(c.Serial), "err", err)
				}
			}
		})
	}
	for _, c := range batch {
		if ctx.Err() != nil {
			break
		}
		work <- c
	}
	close(work)
	wg.Wait()
	return signed, failed
}

// Run keeps the responses fresh until ctx is done, then returns ctx's
// error. Every process listens for revocations and re-signs the announced
// certificate at once (a nil announcement, "you may have missed some",
// triggers a stale pass). The bulk refresh runs only in the process holding
// the leader lock, every Interval (with jitter), and immediately on taking
// the lead. Store errors are logged and retried.
func (p *Presigner) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if p.notifier != nil {
		wg.Go(func() { p.listen(ctx) })
	}
	p.lead(ctx)
	cancel()
	wg.Wait()
	return ctx.Err()
}

// retryLock is how often a follower tries to take the lead.
const retryLock = 30 * time.Second

// lead loops: take the lock, refresh while holding it, retry when lost.
func (p *Presigner) lead(ctx context.Context) {
	for ctx.Err() == nil {
		if p.locker == nil {
			p.refreshLoop(ctx, nil)
			return
		}
		acquired, release, lost, err := p.locker.TryLock(ctx, p.lockName)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				p.log.ErrorContext(ctx, "OCSP pre-signer: leader lock failed", "err", err)
			}
		case acquired:
			p.log.InfoContext(ctx, "OCSP pre-signer: leading the bulk refresh")
			p.refreshLoop(ctx, lost)
			release()
			if ctx.Err() == nil {
				p.log.WarnContext(ctx, "OCSP pre-signer: lost the lead")
			}
			continue // try to take it back at once
		}
		// Follower: run only the passes asked for by rescans.
		t := time.NewTimer(jitter(retryLock))
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-p.rescan:
			p.runPass(ctx)
		}
		t.Stop()
	}
}

// refreshLoop runs a pass now and then every Interval until ctx is done or
// lost is closed.
func (p *Presigner) refreshLoop(ctx context.Context, lost <-chan struct{}) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-lost:
			return
		case <-t.C:
		case <-p.rescan:
		}
		p.runPass(ctx)
		t.Reset(jitter(time.Duration(p.cfg.Interval)))
	}
}

func (p *Presigner) runPass(ctx context.Context) {
	now := p.now()
	start := time.Now()
	n, err := p.pass(ctx, now, now.Add(-time.Duration(p.cfg.Validity)/2), nil)
	if err != nil && ctx.Err() == nil {
		p.log.ErrorContext(ctx, "OCSP refresh pass failed; retrying on the next tick", "err", err, "signed", n.Signed, "failed", n.Failed)
		return
	}
	if n.Signed+n.Failed > 0 {
		p.log.InfoContext(ctx, "OCSP refresh pass", "signed", n.Signed, "failed", n.Failed, "took", time.Since(start))
	}
}

// listen re-signs announced revocations until ctx is done, resubscribing
// with backoff when the subscription fails or ends.
func (p *Presigner) listen(ctx context.Context) {
	backoff := newBackoff()
	for ctx.Err() == nil {
		ch, err := p.notifier.SubscribeRevocations(ctx)
		if err != nil {
			p.log.ErrorContext(ctx, "OCSP pre-signer: subscribe to revocations failed", "err", err)
			_ = sleepCtx(ctx, backoff())
			continue
		}
		backoff = newBackoff()
		for serial := range ch {
			if serial == nil {
				p.requestRescan()
				continue
			}
			p.signRevoked(ctx, serial)
		}
		if ctx.Err() == nil {
			// The subscription ended without our asking: anything may have
			// been missed meanwhile.
			p.requestRescan()
			_ = sleepCtx(ctx, backoff())
		}
	}
}

// signRevoked re-signs one announced serial, retrying store errors a few
// times; the leader's next pass catches anything left (the stored status
// then differs from the certificate's).
func (p *Presigner) signRevoked(ctx context.Context, serial *big.Int) {
	backoff := newBackoff()
	for attempt := 1; ; attempt++ {
		err := p.SignOne(ctx, serial)
		switch {
		case err == nil:
			return
		case errors.Is(err, certdb.ErrNotFound), errors.Is(err, certdb.ErrNotIssued), errors.Is(err, certdb.ErrInvalid):
			// Not ours (another issuer sharing the database) or not a
			// certificate: nothing to sign.
			p.log.DebugContext(ctx, "OCSP pre-signer: ignoring announced revocation", "serial", certdb.SerialHex(serial), "err", err)
			return
		case ctx.Err() != nil:
			return
		}
		p.log.ErrorContext(ctx, "OCSP pre-signer: re-signing a revoked certificate failed", "serial", certdb.SerialHex(serial), "attempt", attempt, "err", err)
		if attempt == 5 {
			p.requestRescan()
			return
		}
		_ = sleepCtx(ctx, backoff())
	}
}

func (p *Presigner) requestRescan() {
	select {
	case p.rescan <- struct{}{}:
	default:
	}
}

// newBackoff returns a capped exponential backoff: 100ms, 200ms, … 10s,
// each with up to 10% jitter.
func newBackoff() func() time.Duration {
	d := 100 * time.Millisecond
	return func() time.Duration {
		cur := d
		d = min(2*d, 10*time.Second)
		return jitter(cur)
	}
}

// jitter adds up to 10% to d, so that processes restarted together do not
// run in lockstep.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d + rand.N(d/10+1)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
