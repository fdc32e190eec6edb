package crl

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/certctl/certctl/certdb"
)

// CertificateGetter finds a revoked certificate's shard (certdb.Store).
type CertificateGetter interface {
	GetCertificate(ctx context.Context, serial *big.Int) (*certdb.Certificate, error)
}

// Notifier delivers revocations (certdb.RevocationNotifier). A nil serial
// means "some may have been missed": rebuild every shard.
type Notifier interface {
	SubscribeRevocations(ctx context.Context) (<-chan *big.Int, error)
}

// Locker elects the process that runs the scheduled rebuilds (certdb.Locker).
type Locker interface {
	TryLock(ctx context.Context, name string) (acquired bool, release func(), lost <-chan struct{}, err error)
}

// WithPeriod sets how often the Updater rebuilds every shard (default
// DefaultPeriod; each wait is shortened by up to 10% at random so that
// processes drift apart).
func WithPeriod(d time.Duration) Option { return func(c *config) { c.period = d } }

// WithNotifier makes the Updater rebuild a certificate's shard as soon as
// its revocation is announced.
func WithNotifier(n Notifier) Option { return func(c *config) { c.notifier = n } }

// WithLocker makes the Updater run scheduled rebuilds only while it holds
// the lock "certctl-crl-<issuer key id>". Without one, every Updater runs
// them (right for a single process).
func WithLocker(l Locker) Option { return func(c *config) { c.locker = l } }

// Retry delays for failed builds and for revocations newer than a CRL.
const (
	retryMin       = time.Second
	retryMax       = time.Minute
	resubscribeMax = 30 * time.Second
)

// Updater keeps an issuer's CRLs fresh: every period it rebuilds every shard
// (only while leader, if it has a Locker), and when a revocation is
// announced it rebuilds that certificate's shard at once.
//
// Any process may rebuild a shard after a revocation, leader or not: CRL
// numbers are allocated atomically by the store and PutCRL never replaces a
// CRL with a lower-numbered one (see Builder.Build), so concurrent builds
// cannot store a CRL that lacks the revocation over one that has it, and
// the revocation is visible as soon as the first process hearing of it has
// built the shard, without waiting for the leader (which may be busy with a
// long scheduled pass). The scheduled pass is what the lock is for: it is
// the bulk of the work and one process suffices.
//
// Revocations are coalesced: a shard is queued once however many of its
// certificates are revoked before its build starts, and revoked shards go
// ahead of the scheduled pass. Failed builds are retried with backoff.
//
// Run it once; it is not safe to call Run concurrently.
type Updater struct {
	b     *Builder
	certs CertificateGetter
	cfg   config

	mu      sync.Mutex
	urgent  map[int]bool      // shards to rebuild now (revocations)
	bulk    map[int]bool      // shards left in the scheduled pass
	retry   map[int]time.Time // shards to rebuild at a time (failures, deferred entries)
	fails   map[int]int       // consecutive failures per shard
	wake    chan struct{}     // cap 1: work was queued
	running bool
}

// NewUpdater returns an Updater over b. certs finds the shard of a revoked
// serial. Options: WithPeriod, WithNotifier, WithLocker, WithLogger.
func NewUpdater(b *Builder, certs CertificateGetter, opts ...Option) (*Updater, error) {
	if b == nil || certs == nil {
		return nil, errors.New("crl: NewUpdater needs a builder and a certificate getter")
	}
	cfg := newConfig(opts)
	if cfg.period <= 0 {
		return nil, fmt.Errorf("crl: period %s must be positive", cfg.period)
	}
	if cfg.period >= b.cfg.validity {
		return nil, fmt.Errorf("crl: period %s must be shorter than the CRL validity %s, or CRLs expire between rebuilds", cfg.period, b.cfg.validity)
	}
	return &Updater{
		b: b, certs: certs, cfg: cfg,
		urgent: map[int]bool{}, bulk: map[int]bool{}, retry: map[int]time.Time{}, fails: map[int]int{},
		wake: make(chan struct{}, 1),
	}, nil
}

// Run rebuilds CRLs until ctx is done, then returns ctx.Err(). It returns
// another error only if the first subscription to revocations fails.
// Failures after that are logged and retried.
func (u *Updater) Run(ctx context.Context) error {
	u.mu.Lock()
	if u.running {
		u.mu.Unlock()
		return errors.New("crl: Updater.Run called twice")
	}
	u.running = true
	u.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var sub <-chan *big.Int
	if u.cfg.notifier != nil {
		var err error
		if sub, err = u.cfg.notifier.SubscribeRevocations(ctx); err != nil {
			return fmt.Errorf("crl: subscribe to revocations: %w", err)
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { u.work(ctx) })
	if sub != nil {
		wg.Go(func() { u.listen(ctx, sub) })
	}

	// The schedule: a short random first wait (so restarted processes do
	// not line up), then every period less up to 10%.
	first := min(u.cfg.period/10, 5*time.Second)
	t := time.NewTimer(jitter(first, 0))
	defer t.Stop()
	var (
		release func()
		lost    <-chan struct{}
		leader  = u.cfg.locker == nil
	)
	defer func() {
		if release != nil {
			release()
		}
	}()
	lockName := fmt.Sprintf("certctl-crl-%x", u.b.keyID)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-lost:
			u.cfg.log.WarnContext(ctx, "lost CRL leadership", "lock", lockName)
			leader, lost, release = false, nil, nil
			continue
		case <-t.C:
		}
		if !leader {
			ok, rel, l, err := u.cfg.locker.TryLock(ctx, lockName)
			switch {
			case err != nil:
				u.cfg.log.ErrorContext(ctx, "CRL leadership: lock failed", "lock", lockName, "err", err)
			case ok:
				u.cfg.log.InfoContext(ctx, "CRL leadership acquired", "lock", lockName)
				leader, release, lost = true, rel, l
			}
		}
		if leader {
			u.queueAll(false)
		}
		t.Reset(jitter(u.cfg.period, 0.9))
	}
}

// jitter returns a random duration in [d*lo, d].
func jitter(d time.Duration, lo float64) time.Duration {
	return time.Duration(float64(d) * (lo + (1-lo)*rand.Float64()))
}

// listen turns announced revocations into urgent shards, resubscribing
// (with a rescan) if the subscription ends before ctx.
func (u *Updater) listen(ctx context.Context, sub <-chan *big.Int) {
	backoff := retryMin
	for {
		for serial := range sub {
			backoff = retryMin
			if serial == nil {
				u.cfg.log.InfoContext(ctx, "revocation feed asks for a rescan: rebuilding every shard")
				u.queueAll(true)
				continue
			}
			u.revoked(ctx, serial)
		}
		// Closed: the store was closed or lost its connection for good.
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			var err error
			if sub, err = u.cfg.notifier.SubscribeRevocations(ctx); err == nil {
				break
			}
			u.cfg.log.ErrorContext(ctx, "resubscribe to revocations failed", "err", err)
			backoff = min(2*backoff, resubscribeMax)
		}
		u.queueAll(true) // anything may have been missed meanwhile
	}
}

// revoked queues the shard of a revoked serial.
func (u *Updater) revoked(ctx context.Context, serial *big.Int) {
	c, err := u.certs.GetCertificate(ctx, serial)
	switch {
	case errors.Is(err, certdb.ErrNotFound):
		u.cfg.log.DebugContext(ctx, "revocation of an unknown serial ignored", "serial", certdb.SerialHex(serial))
		return
	case err != nil:
		// Cannot tell the shard: rebuild them all rather than miss it.
		u.cfg.log.ErrorContext(ctx, "look up revoked certificate; rebuilding every shard", "serial", certdb.SerialHex(serial), "err", err)
		u.queueAll(true)
		return
	case string(c.IssuerKeyID) != string(u.b.keyID):
		return // another issuer's certificate
	case c.Shard < 0 || c.Shard >= u.b.Shards():
		u.cfg.log.ErrorContext(ctx, "revoked certificate is in a shard the issuer no longer has (was crl_shards lowered?)",
			"serial", certdb.SerialHex(serial), "shard", c.Shard, "shards", u.b.Shards())
		return
	}
	u.mu.Lock()
	u.urgent[c.Shard] = true
	u.mu.Unlock()
	u.signal()
}

// queueAll queues every shard: urgently (a rescan) or as the scheduled pass.
func (u *Updater) queueAll(urgent bool) {
	u.mu.Lock()
	for s := range u.b.Shards() {
		if urgent {
			u.urgent[s] = true
		} else {
			u.bulk[s] = true
		}
	}
	u.mu.Unlock()
	u.signal()
}

func (u *Updater) signal() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// next picks the next shard to build: urgent ones first (lowest number),
// then due retries, then the scheduled pass. It returns the wait until the
// earliest retry when there is nothing to do now.
func (u *Updater) next(now time.Time) (shard int, ok bool, wait time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	pick := func(m map[int]bool) (int, bool) {
		best, found := 0, false
		for s := range m {
			if !found || s < best {
				best, found = s, true
			}
		}
		return best, found
	}
	if s, found := pick(u.urgent); found {
		delete(u.urgent, s)
		delete(u.bulk, s) // this build serves both
		delete(u.retry, s)
		return s, true, 0
	}
	wait = -1
	for s, at := range u.retry {
		if !at.After(now) {
			delete(u.retry, s)
			delete(u.bulk, s)
			return s, true, 0
		}
		if d := at.Sub(now); wait < 0 || d < wait {
			wait = d
		}
	}
	if s, found := pick(u.bulk); found {
		delete(u.bulk, s)
		return s, true, 0
	}
	return 0, false, wait
}

// work builds queued shards one at a time until ctx is done.
func (u *Updater) work(ctx context.Context) {
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		s, ok, wait := u.next(time.Now())
		if !ok {
			var due <-chan time.Time
			if wait >= 0 {
				if t == nil {
					t = time.NewTimer(wait)
				} else {
					t.Reset(wait)
				}
				due = t.C
			}
			select {
			case <-ctx.Done():
				return
			case <-u.wake:
			case <-due:
			}
			continue
		}
		_, deferred, err := u.b.build(ctx, s)
		if ctx.Err() != nil {
			return
		}
		u.mu.Lock()
		switch {
		case err != nil:
			u.fails[s]++
			d := min(retryMin<<min(u.fails[s]-1, 6), retryMax)
			u.retry[s] = time.Now().Add(d)
			u.mu.Unlock()
			u.cfg.log.ErrorContext(ctx, "CRL build failed", "shard", s, "retry_in", d, "err", err)
			continue
		case deferred > 0:
			// Revocations newer than this CRL's thisUpdate: once the clock
			// has passed them they can be listed.
			u.retry[s] = time.Now().Add(retryMin)
		}
		delete(u.fails, s)
		u.mu.Unlock()
	}
}
