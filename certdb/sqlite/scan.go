package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/certctl/certctl/certdb"
)

var _ certdb.ScanStore = (*Store)(nil)

// PruneScanResults deletes results older than before, keeping each
// target's newest (see certdb.ScanStore).
func (s *Store) PruneScanResults(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM scan_results AS r
		WHERE r.scanned_at < ?
		AND r.id <> (SELECT l.id FROM scan_results AS l WHERE l.target = r.target ORDER BY l.scanned_at DESC, l.id DESC LIMIT 1)`, micros(before))
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune scan results before %s: %w", before.UTC().Format(time.RFC3339), err)
	}
	return res.RowsAffected()
}

// AddScanResult stores r and sets r.ID (increasing, never reused).
// ErrInvalid as certdb.ScanResult.Validate says.
func (s *Store) AddScanResult(ctx context.Context, r *certdb.ScanResult) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("sqlite: add scan result: %w", err)
	}
	var notAfter, serial any
	if r.NotAfter != nil {
		notAfter = micros(*r.NotAfter)
	}
	if r.Serial != nil {
		serial = r.Serial.Bytes()
	}
	err := s.w.QueryRowContext(ctx, `INSERT INTO scan_results (target, grade, scanned_at, not_after, serial, issuer_key_id, result)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		r.Target, r.Grade, micros(r.ScannedAt), notAfter, serial, nonNil(r.IssuerKeyID), string(r.Result)).Scan(&r.ID)
	if err != nil {
		return fail(ctx, "add scan result of "+r.Target, err)
	}
	return nil
}

const selectScanResult = `SELECT id, target, grade, scanned_at, not_after, serial, issuer_key_id, result FROM scan_results`

func scanScanResult(row interface{ Scan(...any) error }) (*certdb.ScanResult, error) {
	var (
		r         certdb.ScanResult
		scannedAt int64
		notAfter  sql.NullInt64
		serial    []byte
		result    string
	)
	if err := row.Scan(&r.ID, &r.Target, &r.Grade, &scannedAt, &notAfter, &serial, &r.IssuerKeyID, &result); err != nil {
		return nil, err
	}
	r.ScannedAt = fromMicros(scannedAt)
	if notAfter.Valid {
		t := fromMicros(notAfter.Int64)
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

func (s *Store) queryScanResults(ctx context.Context, op, query string, args ...any) ([]*certdb.ScanResult, error) {
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fail(ctx, op, err)
	}
	defer rows.Close()
	var out []*certdb.ScanResult
	for rows.Next() {
		r, err := scanScanResult(rows)
		if err != nil {
			return nil, fail(ctx, op, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(ctx, op, err)
	}
	return out, nil
}

// ScanHistory returns up to limit results of target, newest first.
func (s *Store) ScanHistory(ctx context.Context, target string, limit int) ([]*certdb.ScanResult, error) {
	return s.queryScanResults(ctx, "scan history of "+target,
		selectScanResult+` WHERE target = ? ORDER BY scanned_at DESC, id DESC LIMIT ?`,
		target, certdb.Query{Limit: limit}.EffectiveLimit())
}

// LatestScanResults returns the newest result of every target, ordered by
// target.
func (s *Store) LatestScanResults(ctx context.Context) ([]*certdb.ScanResult, error) {
	return s.queryScanResults(ctx, "latest scan results",
		`SELECT id, target, grade, scanned_at, not_after, serial, issuer_key_id, result FROM (
			SELECT *, row_number() OVER (PARTITION BY target ORDER BY scanned_at DESC, id DESC) AS n FROM scan_results
		) WHERE n = 1 ORDER BY target`)
}

// AddScanSchedule stores sc and sets its ID, and CreatedAt (the store's
// clock) and NextRun (CreatedAt) when zero.
func (s *Store) AddScanSchedule(ctx context.Context, sc *certdb.ScanSchedule) error {
	if err := sc.Validate(); err != nil {
		return fmt.Errorf("sqlite: add scan schedule: %w", err)
	}
	targets, err := encodeStrings("targets", sc.Targets)
	if err != nil {
		return fmt.Errorf("sqlite: add scan schedule: %w", err)
	}
	var options any
	if sc.Options != nil {
		options = string(sc.Options)
	}
	created := sc.CreatedAt
	if created.IsZero() {
		created = s.now()
	}
	next := sc.NextRun
	if next.IsZero() {
		next = created
	}
	err = s.w.QueryRowContext(ctx, `INSERT INTO scan_schedules (targets, interval_us, options, next_run, last_run, created_at)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
		targets, sc.Interval.Microseconds(), options, micros(next), nullMicros(sc.LastRun), micros(created)).Scan(&sc.ID)
	if err != nil {
		return fail(ctx, fmt.Sprintf("add scan schedule of %v", sc.Targets), err)
	}
	if sc.CreatedAt.IsZero() {
		sc.CreatedAt = fromMicros(micros(created))
	}
	if sc.NextRun.IsZero() {
		sc.NextRun = fromMicros(micros(next))
	}
	return nil
}

const scheduleColumns = `id, targets, interval_us, options, next_run, last_run, created_at`

func scanSchedule(row interface{ Scan(...any) error }) (*certdb.ScanSchedule, error) {
	var (
		sc               certdb.ScanSchedule
		targets          string
		us, next, create int64
		options          sql.NullString
		last             sql.NullInt64
	)
	if err := row.Scan(&sc.ID, &targets, &us, &options, &next, &last, &create); err != nil {
		return nil, err
	}
	var err error
	if sc.Targets, err = decodeStrings("targets", targets); err != nil {
		return nil, fmt.Errorf("scan schedule %d: %v", sc.ID, err)
	}
	sc.Interval = time.Duration(us) * time.Microsecond
	if options.Valid {
		sc.Options = []byte(options.String)
	}
	sc.NextRun, sc.CreatedAt = fromMicros(next), fromMicros(create)
	if last.Valid {
		sc.LastRun = fromMicros(last.Int64)
	}
	return &sc, nil
}

func collectSchedules(ctx context.Context, op string, rows *sql.Rows, err error) ([]*certdb.ScanSchedule, error) {
	if err != nil {
		return nil, fail(ctx, op, err)
	}
	defer rows.Close()
	var out []*certdb.ScanSchedule
	for rows.Next() {
		sc, err := scanSchedule(rows)
		if err != nil {
			return nil, fail(ctx, op, err)
		}
		out = append(out, sc)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(ctx, op, err)
	}
	return out, nil
}

// ListScanSchedules returns every schedule, ordered by ID.
func (s *Store) ListScanSchedules(ctx context.Context) ([]*certdb.ScanSchedule, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+scheduleColumns+` FROM scan_schedules ORDER BY id`)
	return collectSchedules(ctx, "list scan schedules", rows, err)
}

// RemoveScanSchedule deletes a schedule; ErrNotFound if there is none.
func (s *Store) RemoveScanSchedule(ctx context.Context, id int64) error {
	op := fmt.Sprintf("remove scan schedule %d", id)
	res, err := s.w.ExecContext(ctx, `DELETE FROM scan_schedules WHERE id = ?`, id)
	if err != nil {
		return fail(ctx, op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fail(ctx, op, err)
	}
	if n == 0 {
		return fmt.Errorf("sqlite: %s: %w", op, certdb.ErrNotFound)
	}
	return nil
}

// ClaimDueSchedules claims the schedules due at now (see
// certdb.ScanStore). One UPDATE … RETURNING: SQLite's single writer makes
// it atomic for every connection and process using the file.
func (s *Store) ClaimDueSchedules(ctx context.Context, now time.Time, lease time.Duration) ([]*certdb.ScanSchedule, error) {
	const op = "claim due scan schedules"
	switch {
	case now.IsZero():
		return nil, fmt.Errorf("sqlite: %s: %w: zero time", op, certdb.ErrInvalid)
	case lease < 0:
		return nil, fmt.Errorf("sqlite: %s: %w: negative lease %v", op, certdb.ErrInvalid, lease)
	}
	rows, err := s.w.QueryContext(ctx, `UPDATE scan_schedules
		SET last_run = ?1, next_run = ?1 + max(interval_us, ?2)
		WHERE next_run <= ?1
		RETURNING `+scheduleColumns, micros(now), lease.Microseconds())
	out, err := collectSchedules(ctx, op, rows, err)
	if err != nil {
		return nil, err
	}
	sortSchedules(out) // RETURNING has no order
	return out, nil
}

func sortSchedules(l []*certdb.ScanSchedule) {
	slices.SortFunc(l, func(a, b *certdb.ScanSchedule) int { return cmp.Compare(a.ID, b.ID) })
}
