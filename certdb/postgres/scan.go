package postgres

import (
	"cmp"
	"context"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certctl/certctl/certdb"
)

var _ certdb.ScanStore = (*Store)(nil)

// PruneScanResults deletes results older than before, keeping each
// target's newest (see certdb.ScanStore).
func (s *Store) PruneScanResults(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM scan_results r
		WHERE r.scanned_at < $1
		AND r.id <> (SELECT l.id FROM scan_results l WHERE l.target = r.target ORDER BY l.scanned_at DESC, l.id DESC LIMIT 1)`, before)
	if err != nil {
		return 0, fmt.Errorf("postgres: prune scan results before %s: %w", before.UTC().Format(time.RFC3339), err)
	}
	return tag.RowsAffected(), nil
}

// AddScanResult stores r and sets r.ID (from a sequence: increasing, with
// possible gaps). ErrInvalid as certdb.ScanResult.Validate says.
func (s *Store) AddScanResult(ctx context.Context, r *certdb.ScanResult) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("postgres: add scan result: %w", err)
	}
	var (
		notAfter *time.Time
		serial   []byte
	)
	if r.NotAfter != nil {
		notAfter = nullTime(*r.NotAfter)
	}
	if r.Serial != nil {
		serial = r.Serial.Bytes()
	}
	err := s.pool.QueryRow(ctx, `INSERT INTO scan_results (target, grade, scanned_at, not_after, serial, issuer_key_id, result)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
		r.Target, r.Grade, utc(r.ScannedAt), notAfter, serial, nonNil(r.IssuerKeyID), string(r.Result)).Scan(&r.ID)
	if err != nil {
		return s.dbError(fmt.Sprintf("add scan result of %s", r.Target), err)
	}
	return nil
}

const scanResultColumns = `id, target, grade, scanned_at, not_after, serial, issuer_key_id, result::text`

func scanScanResult(row pgx.Row) (*certdb.ScanResult, error) {
	var (
		r        certdb.ScanResult
		notAfter *time.Time
		serial   []byte
		result   string
	)
	if err := row.Scan(&r.ID, &r.Target, &r.Grade, &r.ScannedAt, &notAfter, &serial, &r.IssuerKeyID, &result); err != nil {
		return nil, err
	}
	r.ScannedAt = r.ScannedAt.UTC()
	if notAfter != nil {
		t := notAfter.UTC()
		r.NotAfter = &t
	}
	if len(serial) > 0 {
		r.Serial = new(big.Int).SetBytes(serial)
	}
	if len(r.IssuerKeyID) == 0 {
		r.IssuerKeyID = nil
	}
	r.Result = []byte(result)
	return &r, nil
}

func (s *Store) queryScanResults(ctx context.Context, op, sql string, args ...any) ([]*certdb.ScanResult, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, s.dbError(op, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*certdb.ScanResult, error) { return scanScanResult(row) })
	if err != nil {
		return nil, s.dbError(op, err)
	}
	return out, nil
}

// ScanHistory returns up to limit results of target, newest first.
func (s *Store) ScanHistory(ctx context.Context, target string, limit int) ([]*certdb.ScanResult, error) {
	return s.queryScanResults(ctx, "scan history of "+target,
		`SELECT `+scanResultColumns+` FROM scan_results WHERE target = $1
		ORDER BY scanned_at DESC, id DESC LIMIT $2`, target, certdb.Query{Limit: limit}.EffectiveLimit())
}

// LatestScanResults returns the newest result of every target, ordered by
// target.
func (s *Store) LatestScanResults(ctx context.Context) ([]*certdb.ScanResult, error) {
	return s.queryScanResults(ctx, "latest scan results",
		`SELECT DISTINCT ON (target) `+scanResultColumns+` FROM scan_results
		ORDER BY target, scanned_at DESC, id DESC`)
}

// AddScanSchedule stores sc and sets its ID, and CreatedAt (now()) and
// NextRun (CreatedAt) when zero.
func (s *Store) AddScanSchedule(ctx context.Context, sc *certdb.ScanSchedule) error {
	if err := sc.Validate(); err != nil {
		return fmt.Errorf("postgres: add scan schedule: %w", err)
	}
	var options *string
	if sc.Options != nil {
		o := string(sc.Options)
		options = &o
	}
	var created, next time.Time
	err := s.pool.QueryRow(ctx, `INSERT INTO scan_schedules (targets, interval_us, options, next_run, last_run, created_at)
		VALUES ($1, $2, $3, coalesce($4, coalesce($6, now())), $5, coalesce($6, now()))
		RETURNING id, created_at, next_run`,
		sc.Targets, sc.Interval.Microseconds(), options, nullTime(sc.NextRun), nullTime(sc.LastRun), nullTime(sc.CreatedAt)).
		Scan(&sc.ID, &created, &next)
	if err != nil {
		return s.dbError(fmt.Sprintf("add scan schedule of %v", sc.Targets), err)
	}
	if sc.CreatedAt.IsZero() {
		sc.CreatedAt = created.UTC()
	}
	if sc.NextRun.IsZero() {
		sc.NextRun = next.UTC()
	}
	return nil
}

const scheduleColumns = `id, targets, interval_us, options::text, next_run, last_run, created_at`

func scanSchedule(row pgx.Row) (*certdb.ScanSchedule, error) {
	var (
		sc       certdb.ScanSchedule
		us       int64
		options  *string
		lastRun  *time.Time
		nextRun  time.Time
		creation time.Time
	)
	if err := row.Scan(&sc.ID, &sc.Targets, &us, &options, &nextRun, &lastRun, &creation); err != nil {
		return nil, err
	}
	sc.Interval = time.Duration(us) * time.Microsecond
	if options != nil {
		sc.Options = []byte(*options)
	}
	sc.NextRun, sc.CreatedAt = nextRun.UTC(), creation.UTC()
	if lastRun != nil {
		sc.LastRun = lastRun.UTC()
	}
	return &sc, nil
}

func (s *Store) querySchedules(ctx context.Context, op, sql string, args ...any) ([]*certdb.ScanSchedule, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, s.dbError(op, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*certdb.ScanSchedule, error) { return scanSchedule(row) })
	if err != nil {
		return nil, s.dbError(op, err)
	}
	return out, nil
}

// ListScanSchedules returns every schedule, ordered by ID.
func (s *Store) ListScanSchedules(ctx context.Context) ([]*certdb.ScanSchedule, error) {
	return s.querySchedules(ctx, "list scan schedules", `SELECT `+scheduleColumns+` FROM scan_schedules ORDER BY id`)
}

// RemoveScanSchedule deletes a schedule; ErrNotFound if there is none.
func (s *Store) RemoveScanSchedule(ctx context.Context, id int64) error {
	op := fmt.Sprintf("remove scan schedule %d", id)
	tag, err := s.pool.Exec(ctx, `DELETE FROM scan_schedules WHERE id = $1`, id)
	if err != nil {
		return s.dbError(op, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: %s: %w", op, certdb.ErrNotFound)
	}
	return nil
}

// claimDue locks the due rows, skipping rows another claimer holds (it is
// moving their next_run past now, so they are not due for us either), and
// moves them forward in the same statement. Under READ COMMITTED a row
// updated and committed by another claimer after this statement's snapshot
// is re-checked against next_run <= $1 on its new version before it is
// locked, so a schedule is claimed once per due time, by one process.
const claimDue = `UPDATE scan_schedules s
	SET last_run = $1, next_run = $1 + greatest(s.interval_us, $2) * interval '1 microsecond'
	FROM (SELECT id FROM scan_schedules WHERE next_run <= $1 ORDER BY next_run, id FOR UPDATE SKIP LOCKED) due
	WHERE s.id = due.id
	RETURNING s.id, s.targets, s.interval_us, s.options::text, s.next_run, s.last_run, s.created_at`

// ClaimDueSchedules claims the schedules due at now (see
// certdb.ScanStore). Safe across processes: rows are locked with FOR UPDATE
// SKIP LOCKED and updated in one statement.
func (s *Store) ClaimDueSchedules(ctx context.Context, now time.Time, lease time.Duration) ([]*certdb.ScanSchedule, error) {
	switch {
	case now.IsZero():
		return nil, fmt.Errorf("postgres: claim due scan schedules: %w: zero time", certdb.ErrInvalid)
	case lease < 0:
		return nil, fmt.Errorf("postgres: claim due scan schedules: %w: negative lease %v", certdb.ErrInvalid, lease)
	}
	out, err := s.querySchedules(ctx, "claim due scan schedules", claimDue, utc(now), lease.Microseconds())
	if err != nil {
		return nil, err
	}
	sortSchedules(out) // RETURNING has no order
	return out, nil
}

func sortSchedules(l []*certdb.ScanSchedule) {
	slices.SortFunc(l, func(a, b *certdb.ScanSchedule) int { return cmp.Compare(a.ID, b.ID) })
}
