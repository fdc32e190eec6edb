package schedule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/big"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/scan"
	"github.com/certctl/certctl/scan/targets"
)

// Store is what the Runner needs from certdb.
type Store interface {
	ClaimDueSchedules(ctx context.Context, now time.Time, lease time.Duration) ([]*certdb.ScanSchedule, error)
	AddScanResult(ctx context.Context, r *certdb.ScanResult) error
	ScanHistory(ctx context.Context, target string, limit int) ([]*certdb.ScanResult, error)
	// GetCertificate finds a served certificate in this CA's records, to
	// tell whether it was revoked.
	GetCertificate(ctx context.Context, serial *big.Int) (*certdb.Certificate, error)
	PruneScanResults(ctx context.Context, before time.Time) (int64, error)
}

// Option configures NewRunner.
type Option func(*runnerConfig)

type runnerConfig struct {
	scan        ScanFunc
	dialer      targets.Dialer
	hooks       []Hook
	poll        time.Duration
	lease       time.Duration
	concurrency int
	expiry      time.Duration
	retention   time.Duration
	log         *slog.Logger
	now         func() time.Time
	reg         prometheus.Registerer
}

// WithScanFunc replaces scan.Scan (tests use fakes).
func WithScanFunc(f ScanFunc) Option { return func(c *runnerConfig) { c.scan = f } }

// WithDialer sets the dialer of the liveness probe of CIDR ranges.
func WithDialer(d targets.Dialer) Option { return func(c *runnerConfig) { c.dialer = d } }

// WithHook adds a hook (repeatable).
func WithHook(h Hook) Option { return func(c *runnerConfig) { c.hooks = append(c.hooks, h) } }

// WithPoll sets how often Run claims due schedules (default DefaultPoll).
func WithPoll(d time.Duration) Option { return func(c *runnerConfig) { c.poll = d } }

// WithLease sets the claim lease (default DefaultLease): see
// certdb.ScanStore.ClaimDueSchedules.
func WithLease(d time.Duration) Option { return func(c *runnerConfig) { c.lease = d } }

// WithConcurrency bounds the endpoints scanned at once (default
// DefaultConcurrency).
func WithConcurrency(n int) Option { return func(c *runnerConfig) { c.concurrency = n } }

// WithExpiryWarning sets the window of the "expiring" event (default
// DefaultExpiryWarning).
func WithExpiryWarning(d time.Duration) Option { return func(c *runnerConfig) { c.expiry = d } }

// WithRetention sets how long stored results are kept (default
// DefaultRetention); each target's newest result is kept however old.
func WithRetention(d time.Duration) Option { return func(c *runnerConfig) { c.retention = d } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *runnerConfig) { c.log = l } }

// WithClock sets the clock (default time.Now).
func WithClock(now func() time.Time) Option { return func(c *runnerConfig) { c.now = now } }

// WithRegisterer registers the runner's metrics (default: none):
// certctl_scans_total{outcome="ok|failed"}, certctl_scan_schedule_runs_total,
// certctl_scan_events_total{kind} and certctl_scan_hook_failures_total.
func WithRegisterer(r prometheus.Registerer) Option { return func(c *runnerConfig) { c.reg = r } }

// Runner runs due scan schedules: it claims them from the store, scans
// their endpoints, stores each result and fires the hooks on events (see
// the package doc). Create it with NewRunner and drive it with Run (or
// RunDue). Safe for concurrent use; any number of Runners, in any number of
// processes, may share one store.
type Runner struct {
	st      Store
	cfg     runnerConfig
	batch   *Batch
	metrics *metrics
}

type metrics struct {
	scans        *prometheus.CounterVec
	runs         prometheus.Counter
	events       *prometheus.CounterVec
	hookFailures prometheus.Counter
}

// NewRunner returns a Runner over st. It fails if the metrics cannot be
// registered (a second Runner on one registry).
func NewRunner(st Store, opts ...Option) (*Runner, error) {
	cfg := runnerConfig{scan: scan.Scan, poll: DefaultPoll, lease: DefaultLease, concurrency: DefaultConcurrency,
		expiry: DefaultExpiryWarning, retention: DefaultRetention, now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.log == nil {
		cfg.log = slog.New(slog.DiscardHandler)
	}
	if st == nil || cfg.scan == nil || cfg.poll <= 0 || cfg.lease < 0 || cfg.concurrency < 1 || cfg.expiry < 0 || cfg.retention <= 0 {
		return nil, fmt.Errorf("%w: runner needs a store, a scan function, a positive poll interval, concurrency and retention", ErrInvalid)
	}
	m := &metrics{
		scans: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "certctl_scans_total",
			Help: "Scheduled endpoint scans, by outcome (ok: graded; failed: no TLS handshake or error)."}, []string{"outcome"}),
		runs: prometheus.NewCounter(prometheus.CounterOpts{Name: "certctl_scan_schedule_runs_total",
			Help: "Scan schedules claimed and run by this process."}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "certctl_scan_events_total",
			Help: "Scan events (grade_dropped, expiring, revoked) found."}, []string{"kind"}),
		hookFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "certctl_scan_hook_failures_total",
			Help: "Hook calls that failed."}),
	}
	if cfg.reg != nil {
		for _, c := range []prometheus.Collector{m.scans, m.runs, m.events, m.hookFailures} {
			if err := cfg.reg.Register(c); err != nil {
				return nil, fmt.Errorf("schedule: register metrics: %w", err)
			}
		}
	}
	return &Runner{st: st, cfg: cfg, metrics: m,
		batch: &Batch{Scan: cfg.scan, Dialer: cfg.dialer, Concurrency: cfg.concurrency, Now: cfg.now}}, nil
}

// Run claims and runs due schedules every poll interval (the first pass
// after a random part of it, so that restarted processes do not line up)
// until ctx ends; it returns ctx's error. It also prunes stored results
// (Prune) once an hour. Failures are logged and retried at the next pass.
func (r *Runner) Run(ctx context.Context) error {
	t := time.NewTimer(time.Duration(rand.Int64N(int64(r.cfg.poll)) + 1))
	defer t.Stop()
	var lastPrune time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if _, err := r.RunDue(ctx); err != nil && ctx.Err() == nil {
			r.cfg.log.ErrorContext(ctx, "scheduled scans failed", "err", err)
		}
		if now := r.cfg.now(); now.Sub(lastPrune) >= pruneInterval {
			lastPrune = now
			if _, err := r.Prune(ctx); err != nil && ctx.Err() == nil {
				r.cfg.log.WarnContext(ctx, "pruning old scan results failed; retrying in an hour", "err", err)
			}
		}
		t.Reset(r.cfg.poll)
	}
}

// pruneInterval is how often Run prunes old results. Several processes may
// prune at once: deleting is idempotent.
const pruneInterval = time.Hour

// Prune deletes the stored results older than the retention (WithRetention),
// keeping each target's newest, and returns how many it deleted.
func (r *Runner) Prune(ctx context.Context) (int64, error) {
	cutoff := r.cfg.now().Add(-r.cfg.retention)
	n, err := r.st.PruneScanResults(ctx, cutoff)
	if err != nil {
		return 0, fmt.Errorf("schedule: prune scan results: %w", err)
	}
	if n > 0 {
		r.cfg.log.InfoContext(ctx, "pruned old scan results", "deleted", n, "before", cutoff.UTC().Format(time.RFC3339))
	}
	return n, nil
}

// RunDue claims the schedules due now and runs them, one after the other
// (each with concurrent endpoint scans); it returns how many it ran. An
// error in one schedule (unreadable options, a store failure) is logged
// and joined into the returned error; the others still run.
func (r *Runner) RunDue(ctx context.Context) (int, error) {
	due, err := r.st.ClaimDueSchedules(ctx, r.cfg.now(), r.cfg.lease)
	if err != nil {
		return 0, fmt.Errorf("schedule: claim due schedules: %w", err)
	}
	var errs []error
	for _, sc := range due {
		r.metrics.runs.Inc()
		if err := r.runSchedule(ctx, sc); err != nil {
			r.cfg.log.ErrorContext(ctx, "scan schedule failed", "schedule", sc.ID, "err", err)
			errs = append(errs, fmt.Errorf("schedule %d: %w", sc.ID, err))
		}
	}
	return len(due), errors.Join(errs...)
}

func (r *Runner) runSchedule(ctx context.Context, sc *certdb.ScanSchedule) error {
	o, err := ParseOptions(sc.Options)
	if err != nil {
		return err
	}
	eps, err := o.Endpoints(sc.Targets)
	if err != nil {
		return err
	}
	opts, err := o.ScanOptions()
	if err != nil {
		return err
	}
	start := r.cfg.now()
	br, err := r.batch.Run(ctx, eps, opts)
	if err != nil {
		return err
	}
	r.cfg.log.InfoContext(ctx, "scan schedule ran", "schedule", sc.ID, "endpoints", len(br.Results),
		"probed", br.Probed, "live", br.Live, "duration", r.cfg.now().Sub(start))
	var errs []error
	for _, res := range br.Results {
		if err := r.store(ctx, sc, res); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// store saves one result, compares it with the previous one and fires the
// events.
func (r *Runner) store(ctx context.Context, sc *certdb.ScanSchedule, res *scan.Result) error {
	outcome := "ok"
	if res.Grade == "" {
		outcome = "failed"
	}
	r.metrics.scans.WithLabelValues(outcome).Inc()
	rec, err := Record(res, r.cfg.now())
	if err != nil {
		return err
	}
	hist, err := r.st.ScanHistory(ctx, rec.Target, 1)
	if err != nil {
		return fmt.Errorf("schedule: previous scan of %s: %w", rec.Target, err)
	}
	var prev *scan.Result
	var prevRec *certdb.ScanResult
	if len(hist) > 0 {
		prevRec = hist[0]
		if prev, err = Decode(prevRec); err != nil {
			r.cfg.log.WarnContext(ctx, "previous scan result unreadable; comparing with nothing", "target", rec.Target, "err", err)
			prev, prevRec = nil, nil
		}
	}
	if err := r.st.AddScanResult(ctx, rec); err != nil {
		return fmt.Errorf("schedule: store scan result of %s: %w", rec.Target, err)
	}
	events, err := r.events(ctx, sc, rec, res, prevRec, prev)
	for _, ev := range events {
		r.metrics.events.WithLabelValues(ev.Kind).Inc()
		r.cfg.log.WarnContext(ctx, "scan event", "kind", ev.Kind, "target", ev.Target, "message", ev.Message)
		r.fire(ctx, ev)
	}
	return err
}

// events computes what got worse between prev and res (see the package
// doc). The revocation lookup may fail; the other events are still returned.
func (r *Runner) events(ctx context.Context, sc *certdb.ScanSchedule, rec *certdb.ScanResult, res *scan.Result,
	prevRec *certdb.ScanResult, prev *scan.Result) ([]*Event, error) {
	diff := Compare(prev, res)
	base := Event{Target: rec.Target, ScheduleID: sc.ID, ResultID: rec.ID, ScannedAt: rec.ScannedAt, Grade: res.Grade, Diff: diff}
	if prev != nil {
		base.PreviousGrade = prev.Grade
	}
	if c := res.Certificate; c != nil {
		base.Serial = c.Serial
		na := c.NotAfter
		base.NotAfter = &na
	}
	var out []*Event
	if diff.GradeDropped {
		ev := base
		ev.Kind = EventGradeDropped
		ev.Message = fmt.Sprintf("%s: grade dropped from %s to %s", rec.Target, gradeText(prev.Grade), gradeText(res.Grade))
		if res.Error != "" {
			ev.Message += ": " + res.Error
		}
		out = append(out, &ev)
	}
	if c := res.Certificate; c != nil && c.NotAfter.Sub(rec.ScannedAt) < r.cfg.expiry {
		sameBefore := prev != nil && prev.Certificate != nil && prev.Certificate.SHA256 == c.SHA256 &&
			prevRec != nil && c.NotAfter.Sub(prevRec.ScannedAt) < r.cfg.expiry
		if !sameBefore {
			ev := base
			ev.Kind = EventExpiring
			days := int(math.Floor(c.NotAfter.Sub(rec.ScannedAt).Hours() / 24))
			ev.DaysLeft = &days
			if days < 0 {
				ev.Message = fmt.Sprintf("%s: certificate %s expired on %s", rec.Target, c.Serial, c.NotAfter.UTC().Format(time.DateOnly))
			} else {
				ev.Message = fmt.Sprintf("%s: certificate %s expires in %d days (%s)", rec.Target, c.Serial, days, c.NotAfter.UTC().Format(time.DateOnly))
			}
			out = append(out, &ev)
		}
	}
	if rec.Serial == nil {
		return out, nil
	}
	cert, err := r.st.GetCertificate(ctx, rec.Serial)
	switch {
	case errors.Is(err, certdb.ErrNotFound), errors.Is(err, certdb.ErrInvalid):
		return out, nil // not one of ours
	case err != nil:
		return out, fmt.Errorf("schedule: look up served certificate %s of %s: %w", base.Serial, rec.Target, err)
	}
	if cert.Status != certdb.StatusRevoked || !sameCert(cert, res.Certificate) {
		return out, nil
	}
	newly := prev == nil || prev.Certificate == nil || prev.Certificate.SHA256 != res.Certificate.SHA256 ||
		prevRec == nil || !prevRec.ScannedAt.After(cert.RevokedAt)
	if newly {
		ev := base
		ev.Kind = EventRevoked
		at := cert.RevokedAt
		ev.RevokedAt = &at
		ev.Reason = cert.Reason.String()
		ev.Message = fmt.Sprintf("%s: serves certificate %s, revoked on %s (%s)", rec.Target, base.Serial, at.UTC().Format(time.DateOnly), cert.Reason)
		out = append(out, &ev)
	}
	return out, nil
}

// sameCert: the stored record is the certificate served (serials are only
// unique per CA).
func sameCert(c *certdb.Certificate, served *scan.CertSummary) bool {
	if len(c.DER) == 0 || served == nil {
		return false
	}
	sum := sha256.Sum256(c.DER)
	return strings.EqualFold(hex.EncodeToString(sum[:]), strings.ReplaceAll(served.SHA256, ":", ""))
}

func gradeText(g string) string {
	if g == "" {
		return "(no grade: scan failed)"
	}
	return g
}

// fire calls every hook at once and waits for them; each is bounded by its
// own timeout (the hooks apply it) and by ctx. Failures are logged and
// counted.
func (r *Runner) fire(ctx context.Context, ev *Event) {
	var wg sync.WaitGroup
	for _, h := range r.cfg.hooks {
		wg.Go(func() {
			if err := h.Fire(ctx, ev); err != nil {
				r.metrics.hookFailures.Inc()
				r.cfg.log.ErrorContext(ctx, "scan hook failed", "hook", h.String(), "kind", ev.Kind, "target", ev.Target, "err", err)
			}
		})
	}
	wg.Wait()
}
