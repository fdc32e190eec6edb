package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/certctl/certctl/certdb"
)

var _ certdb.SCTStore = (*Store)(nil)

// AddPrecertificate records the precertificate of a serial (see
// certdb.SCTStore). One statement: the row lock makes concurrent calls for
// one serial see each other.
func (s *Store) AddPrecertificate(ctx context.Context, serial *big.Int, der []byte) error {
	key, err := serialKey(serial)
	if err != nil {
		return fmt.Errorf("postgres: add precertificate: %w", err)
	}
	op := fmt.Sprintf("add precertificate %x", key)
	if len(der) == 0 {
		return fmt.Errorf("postgres: %s: %w: no DER", op, certdb.ErrInvalid)
	}
	var updated bool
	err = s.pool.QueryRow(ctx, `WITH u AS (
			UPDATE certificates SET precert_der = $2 WHERE serial = $1 AND precert_der IS NULL RETURNING 1
		)
		SELECT EXISTS (SELECT 1 FROM u) FROM certificates WHERE serial = $1`, key, der).Scan(&updated)
	if err != nil {
		return s.dbError(op, err) // no row: ErrNotFound
	}
	if !updated {
		return fmt.Errorf("postgres: %s: %w: a precertificate is already recorded", op, certdb.ErrDuplicate)
	}
	return nil
}

// GetPrecertificate returns the recorded precertificate of a serial.
func (s *Store) GetPrecertificate(ctx context.Context, serial *big.Int) ([]byte, error) {
	key, err := serialKey(serial)
	if err != nil {
		return nil, fmt.Errorf("postgres: get precertificate: %w", err)
	}
	var der []byte
	err = s.pool.QueryRow(ctx, `SELECT precert_der FROM certificates WHERE serial = $1 AND precert_der IS NOT NULL`, key).Scan(&der)
	if err != nil {
		return nil, s.dbError(fmt.Sprintf("get precertificate %x", key), err)
	}
	return der, nil
}

// AddSCTs stores the SCTs of one certificate in one transaction.
func (s *Store) AddSCTs(ctx context.Context, scts []*certdb.SCT) error {
	if len(scts) == 0 {
		return nil
	}
	for _, x := range scts {
		if err := x.Validate(); err != nil {
			return fmt.Errorf("postgres: add SCTs: %w", err)
		}
		if x.Serial.Cmp(scts[0].Serial) != 0 {
			return fmt.Errorf("postgres: add SCTs: %w: SCTs of different serials", certdb.ErrInvalid)
		}
	}
	key, err := serialKey(scts[0].Serial)
	if err != nil {
		return fmt.Errorf("postgres: add SCTs: %w", err)
	}
	op := fmt.Sprintf("add SCTs %x", key)
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, x := range scts {
			if _, err := tx.Exec(ctx, `INSERT INTO scts (serial, log_id, embedded, log_url, operator, version, ts, extensions, signature)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
				key, x.LogID, x.Embedded, x.LogURL, x.Operator, int16(x.Version), x.Timestamp.UnixMilli(), nonNil(x.Extensions), x.Signature); err != nil {
				return err
			}
		}
		return nil
	})
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "23503" { // foreign_key_violation: unknown serial
		return fmt.Errorf("postgres: %s: %w", op, certdb.ErrNotFound)
	}
	if err != nil {
		return s.dbError(op, err)
	}
	return nil
}

// ListSCTs returns the SCTs of a certificate.
func (s *Store) ListSCTs(ctx context.Context, serial *big.Int) ([]*certdb.SCT, error) {
	key, err := serialKey(serial)
	if err != nil {
		return nil, fmt.Errorf("postgres: list SCTs: %w", err)
	}
	op := fmt.Sprintf("list SCTs %x", key)
	rows, err := s.pool.Query(ctx, `SELECT log_id, embedded, log_url, operator, version, ts, extensions, signature
		FROM scts WHERE serial = $1 ORDER BY embedded DESC, ts, log_id`, key)
	if err != nil {
		return nil, s.dbError(op, err)
	}
	defer rows.Close()
	var out []*certdb.SCT
	for rows.Next() {
		x := &certdb.SCT{Serial: new(big.Int).SetBytes(key)}
		var (
			ver int16
			ts  int64
		)
		if err := rows.Scan(&x.LogID, &x.Embedded, &x.LogURL, &x.Operator, &ver, &ts, &x.Extensions, &x.Signature); err != nil {
			return nil, s.dbError(op, err)
		}
		x.Version = int(ver)
		x.Timestamp = time.UnixMilli(ts).UTC()
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, s.dbError(op, err)
	}
	return out, nil
}
