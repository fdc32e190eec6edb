package certdb

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"time"
)

// ScanResult is one stored TLS scan of one endpoint (issue 7). The scanner's
// own result type is not known here (certdb does not import scan): the store
// keeps it as JSON, plus the few fields it must query or join on.
type ScanResult struct {
	ID int64 // assigned by the store; positive and increasing
	// Target names the endpoint in the scanner's canonical spelling:
	// "host:port", or with a STARTTLS protocol "postgres://host:port".
	// History is kept per Target string, so callers spell one endpoint one
	// way.
	Target    string
	Grade     string    // "A+" … "F", "T", "M"; "" when the scan failed
	ScannedAt time.Time // when the scan started
	// NotAfter, Serial and IssuerKeyID describe the leaf certificate the
	// endpoint served (nil when the scan saw none). IssuerKeyID is the leaf's
	// AuthorityKeyId: with Serial it finds the certificate in this database,
	// to detect endpoints that still serve a revoked certificate.
	NotAfter    *time.Time
	Serial      *big.Int
	IssuerKeyID []byte
	// Result is the scanner's full result as JSON (a scan.Result). Stores
	// return the bytes they were given.
	Result []byte
}

// ScanSchedule is a recurring scan of a list of targets.
type ScanSchedule struct {
	ID        int64         // assigned by the store
	Targets   []string      // what `certctl scan` accepts: host, host:port, IP, CIDR; at least one
	Interval  time.Duration // positive; stored at microsecond precision
	Options   []byte        // scan options as a JSON object, opaque to the store; nil for none
	NextRun   time.Time     // when the schedule is next due; zero in AddScanSchedule means CreatedAt (due at once)
	LastRun   time.Time     // when it was last claimed; zero until then (set by the store)
	CreatedAt time.Time     // set by the store when zero
}

// ScanStore keeps scan results and scan schedules. Implementations are safe
// for concurrent use, and ClaimDueSchedules is safe across processes sharing
// one database.
type ScanStore interface {
	// AddScanResult stores r and sets r.ID. ErrInvalid for a nil result,
	// an empty Target, a zero ScannedAt, a Serial that is not positive, or
	// a Result that is not valid JSON.
	AddScanResult(ctx context.Context, r *ScanResult) error
	// ScanHistory returns up to limit results of target, newest (ScannedAt,
	// then ID) first; none is not an error. limit ≤ 0 means DefaultLimit,
	// more than MaxLimit means MaxLimit.
	ScanHistory(ctx context.Context, target string, limit int) ([]*ScanResult, error)
	// LatestScanResults returns the newest result of every target, ordered
	// by Target.
	LatestScanResults(ctx context.Context) ([]*ScanResult, error)
	// PruneScanResults deletes the results scanned before before, except
	// the newest result of each target (LatestScanResults and the next
	// scan's diff keep their base), and returns how many it deleted.
	PruneScanResults(ctx context.Context, before time.Time) (int64, error)
	// AddScanSchedule stores s and sets s.ID, and s.CreatedAt and s.NextRun
	// when they are zero (NextRun defaults to CreatedAt: due at once).
	// ErrInvalid for a nil schedule, no targets or an empty one, a
	// non-positive Interval, or Options that are not a JSON object.
	AddScanSchedule(ctx context.Context, s *ScanSchedule) error
	// ListScanSchedules returns every schedule, ordered by ID.
	ListScanSchedules(ctx context.Context) ([]*ScanSchedule, error)
	// RemoveScanSchedule deletes a schedule. ErrNotFound if there is none
	// with that ID.
	RemoveScanSchedule(ctx context.Context, id int64) error
	// ClaimDueSchedules atomically claims every schedule whose NextRun is at
	// or before now: for each it sets LastRun to now and NextRun to now +
	// max(Interval, lease), and returns the updated
	// schedules, ordered by ID. Of concurrent claimers (in any process) exactly one gets a
	// given due schedule. lease is a floor on the time until the schedule
	// is due again (the time the claimer expects its run to take), so that
	// a run longer than a short interval is not claimed again while it
	// runs. NextRun counts from now, not from the old NextRun, so
	// a runner that was down does not replay the missed runs. ErrInvalid for
	// a zero now or a negative lease.
	ClaimDueSchedules(ctx context.Context, now time.Time, lease time.Duration) ([]*ScanSchedule, error)
}

// Validate checks r before a store writes it. Errors wrap ErrInvalid.
func (r *ScanResult) Validate() error {
	switch {
	case r == nil:
		return fmt.Errorf("%w: nil scan result", ErrInvalid)
	case r.Target == "":
		return fmt.Errorf("%w: scan result without a target", ErrInvalid)
	case r.ScannedAt.IsZero():
		return fmt.Errorf("%w: scan result of %s: no scan time", ErrInvalid, r.Target)
	case r.Serial != nil && r.Serial.Sign() <= 0:
		return fmt.Errorf("%w: scan result of %s: serial %s is not positive", ErrInvalid, r.Target, r.Serial)
	case !json.Valid(r.Result):
		return fmt.Errorf("%w: scan result of %s: result is not valid JSON", ErrInvalid, r.Target)
	}
	return nil
}

// Validate checks s before a store writes it. Errors wrap ErrInvalid.
func (s *ScanSchedule) Validate() error {
	if s == nil {
		return fmt.Errorf("%w: nil scan schedule", ErrInvalid)
	}
	if len(s.Targets) == 0 {
		return fmt.Errorf("%w: scan schedule without targets", ErrInvalid)
	}
	for _, t := range s.Targets {
		if t == "" {
			return fmt.Errorf("%w: scan schedule with an empty target", ErrInvalid)
		}
	}
	if s.Interval.Truncate(time.Microsecond) <= 0 {
		return fmt.Errorf("%w: scan schedule interval %v: must be positive", ErrInvalid, s.Interval)
	}
	if s.Options != nil {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(s.Options, &obj); err != nil || obj == nil {
			return fmt.Errorf("%w: scan schedule options are not a JSON object", ErrInvalid)
		}
	}
	return nil
}
