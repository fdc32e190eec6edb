package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/certctl/certctl/certdb"
)

var _ certdb.SCTStore = (*Store)(nil)

// AddPrecertificate records the precertificate of a serial (see
// certdb.SCTStore).
func (s *Store) AddPrecertificate(ctx context.Context, serial *big.Int, der []byte) error {
	key, err := serialKey(serial)
	if err != nil {
		return fmt.Errorf("sqlite: add precertificate: %w", err)
	}
	op := fmt.Sprintf("add precertificate %x", key)
	if len(der) == 0 {
		return fmt.Errorf("sqlite: %s: %w: no DER", op, certdb.ErrInvalid)
	}
	res, err := s.w.ExecContext(ctx, `UPDATE certificates SET precert_der = ? WHERE serial = ? AND precert_der IS NULL`, der, key)
	if err != nil {
		return fail(ctx, op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fail(ctx, op, err)
	}
	if n == 1 {
		return nil
	}
	var one int
	err = s.w.QueryRowContext(ctx, `SELECT 1 FROM certificates WHERE serial = ?`, key).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("sqlite: %s: %w", op, certdb.ErrNotFound)
	case err != nil:
		return fail(ctx, op, err)
	}
	return fmt.Errorf("sqlite: %s: %w: a precertificate is already recorded", op, certdb.ErrDuplicate)
}

// GetPrecertificate returns the recorded precertificate of a serial.
func (s *Store) GetPrecertificate(ctx context.Context, serial *big.Int) ([]byte, error) {
	key, err := serialKey(serial)
	if err != nil {
		return nil, fmt.Errorf("sqlite: get precertificate: %w", err)
	}
	var der []byte
	err = s.r.QueryRowContext(ctx, `SELECT precert_der FROM certificates WHERE serial = ? AND precert_der IS NOT NULL`, key).Scan(&der)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: get precertificate %x: %w", key, certdb.ErrNotFound)
	}
	if err != nil {
		return nil, fail(ctx, fmt.Sprintf("get precertificate %x", key), err)
	}
	return der, nil
}

// AddSCTs stores the SCTs of one certificate in one transaction.
func (s *Store) AddSCTs(ctx context.Context, scts []*certdb.SCT) (err error) {
	if len(scts) == 0 {
		return nil
	}
	for _, x := range scts {
		if err := x.Validate(); err != nil {
			return fmt.Errorf("sqlite: add SCTs: %w", err)
		}
		if x.Serial.Cmp(scts[0].Serial) != 0 {
			return fmt.Errorf("sqlite: add SCTs: %w: SCTs of different serials", certdb.ErrInvalid)
		}
	}
	key, err := serialKey(scts[0].Serial)
	if err != nil {
		return fmt.Errorf("sqlite: add SCTs: %w", err)
	}
	op := fmt.Sprintf("add SCTs %x", key)
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fail(ctx, op, err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	var one int
	err = tx.QueryRowContext(ctx, `SELECT 1 FROM certificates WHERE serial = ?`, key).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: %s: %w", op, certdb.ErrNotFound)
	}
	if err != nil {
		return fail(ctx, op, err)
	}
	for _, x := range scts {
		_, err = tx.ExecContext(ctx, `INSERT INTO scts (serial, log_id, embedded, log_url, operator, version, timestamp, extensions, signature)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			key, x.LogID, boolInt(x.Embedded), x.LogURL, x.Operator, x.Version, x.Timestamp.UnixMilli(), nonNil(x.Extensions), x.Signature)
		if isUniqueViolation(err) {
			return fmt.Errorf("sqlite: %s: %w: SCT of log %x already stored", op, certdb.ErrDuplicate, x.LogID)
		}
		if err != nil {
			return fail(ctx, op, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fail(ctx, op+": commit", err)
	}
	return nil
}

// ListSCTs returns the SCTs of a certificate.
func (s *Store) ListSCTs(ctx context.Context, serial *big.Int) ([]*certdb.SCT, error) {
	key, err := serialKey(serial)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list SCTs: %w", err)
	}
	op := fmt.Sprintf("list SCTs %x", key)
	rows, err := s.r.QueryContext(ctx, `SELECT log_id, embedded, log_url, operator, version, timestamp, extensions, signature
		FROM scts WHERE serial = ? ORDER BY embedded DESC, timestamp, log_id`, key)
	if err != nil {
		return nil, fail(ctx, op, err)
	}
	defer rows.Close()
	var out []*certdb.SCT
	for rows.Next() {
		x := &certdb.SCT{Serial: new(big.Int).SetBytes(key)}
		var emb int
		var ts int64
		if err := rows.Scan(&x.LogID, &emb, &x.LogURL, &x.Operator, &x.Version, &ts, &x.Extensions, &x.Signature); err != nil {
			return nil, fail(ctx, op, err)
		}
		x.Embedded = emb == 1
		x.Timestamp = time.UnixMilli(ts).UTC()
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(ctx, op, err)
	}
	return out, nil
}
