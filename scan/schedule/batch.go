package schedule

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/certctl/certctl/scan"
	"github.com/certctl/certctl/scan/targets"
)

// ScanFunc scans one endpoint; scan.Scan is one. Tests pass fakes.
type ScanFunc func(ctx context.Context, t scan.Target, opts ...scan.Option) (*scan.Result, error)

// Batch defaults.
const (
	DefaultConcurrency      = 8
	DefaultProbeTimeout     = time.Second
	DefaultProbeConcurrency = 256
)

// Batch scans many endpoints with bounded concurrency. Endpoints from CIDR
// ranges are first probed with a TCP connection (many at once, with a short
// timeout) and only the live ones are scanned, so that a /24 with a few
// servers takes seconds, not 254 full scans. The zero Batch works; a Batch
// may be reused and used concurrently, but not modified after first use.
type Batch struct {
	Scan             ScanFunc       // default scan.Scan
	Dialer           targets.Dialer // for the liveness probe; default *net.Dialer
	Concurrency      int            // full scans at once; default DefaultConcurrency
	ProbeTimeout     time.Duration  // default DefaultProbeTimeout
	ProbeConcurrency int            // probes at once; default DefaultProbeConcurrency
	// Progress, when set, is called as work completes: phase "probe" for
	// the liveness probe, "scan" for full scans. Calls do not overlap.
	Progress func(phase string, done, total int)
	Now      func() time.Time // default time.Now; for the results of failed scans
}

// BatchResult is what Run returns.
type BatchResult struct {
	// Results has one result per scanned endpoint, in the order of the
	// endpoints. A scan that returned an error has a Result with Error
	// set (with only Target and StartedAt when the scan returned none).
	Results []*scan.Result
	// Probed is how many range addresses were probed; Live how many of them
	// answered.
	Probed, Live int
}

// Run probes the range endpoints of eps, scans the live ones and the
// others with opts, and returns the results. It returns ctx's error if ctx
// ends first (with the results so far dropped).
func (b *Batch) Run(ctx context.Context, eps []targets.Endpoint, opts []scan.Option) (*BatchResult, error) {
	scanFn := b.Scan
	if scanFn == nil {
		scanFn = scan.Scan
	}
	var d targets.Dialer = b.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	now := b.Now
	if now == nil {
		now = time.Now
	}
	var mu sync.Mutex // serialises Progress
	progress := func(phase string, done, total int) {
		if b.Progress != nil {
			mu.Lock()
			b.Progress(phase, done, total)
			mu.Unlock()
		}
	}
	out := &BatchResult{}
	for _, e := range eps {
		if e.FromRange {
			out.Probed++
		}
	}
	live := eps
	if out.Probed > 0 {
		var err error
		live, err = targets.Live(ctx, d, eps, cmpOr(b.ProbeTimeout, DefaultProbeTimeout), cmpOr(b.ProbeConcurrency, DefaultProbeConcurrency),
			func(done, total int) { progress("probe", done, total) })
		if err != nil {
			return nil, err
		}
		out.Live = out.Probed - (len(eps) - len(live))
	}
	out.Results = make([]*scan.Result, len(live))
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, cmpOr(b.Concurrency, DefaultConcurrency))
		done int
		dmu  sync.Mutex
	)
	progress("scan", 0, len(live))
loop:
	for i, e := range live {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		wg.Go(func() {
			defer func() { <-sem }()
			start := now()
			res, err := scanFn(ctx, e.Target, opts...)
			switch {
			case res == nil:
				msg := "scan returned no result"
				if err != nil {
					msg = err.Error()
				}
				res = &scan.Result{Target: e.Target, StartedAt: start.UTC(), Error: msg}
			case err != nil && res.Error == "":
				res.Error = err.Error()
			}
			out.Results[i] = res
			dmu.Lock()
			defer dmu.Unlock()
			done++
			progress("scan", done, len(live))
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func cmpOr[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
