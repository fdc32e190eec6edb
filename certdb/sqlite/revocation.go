package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"time"

	"github.com/certctl/certctl/certdb"
)

var (
	_ certdb.OCSPStore          = (*Store)(nil)
	_ certdb.CRLStore           = (*Store)(nil)
	_ certdb.RevocationNotifier = (*Store)(nil)
	_ certdb.Locker             = (*Store)(nil)
)

// maxCRLNumber is the largest CRL number this store keeps: numbers are
// 64-bit INTEGERs, capped below 2^62 by the schema.
const maxCRLNumber = 1<<62 - 1

// subscriberBuffer is how many announcements a subscription queues for a
// slow receiver before it drops them for a rescan marker.
const subscriberBuffer = 64

// PutOCSPResponse stores r as the response for its serial unless the stored
// one has a later ThisUpdate (then it is a no-op returning nil).
// ErrNotFound for an unknown serial, ErrNotIssued for a reserved one,
// ErrInvalid for a malformed response (see certdb.OCSPStore).
func (s *Store) PutOCSPResponse(ctx context.Context, r *certdb.OCSPResponse) (err error) {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("sqlite: put OCSP response: %w", err)
	}
	key, err := serialKey(r.Serial)
	if err != nil {
		return fmt.Errorf("sqlite: put OCSP response: %w", err)
	}
	op := fmt.Sprintf("put OCSP response %x", key)
	tx, err := s.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE (see dsn)
	if err != nil {
		return fail(ctx, op, err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	// One statement: the certificate row supplies the issuer and filters out
	// unknown, reserved and other-issuer serials; the upsert's WHERE makes
	// an older response a no-op.
	res, err := tx.ExecContext(ctx, `INSERT INTO ocsp_responses (serial, issuer_key_id, der, status, this_update, next_update)
		SELECT c.serial, c.issuer_key_id, ?3, ?4, ?5, ?6 FROM certificates c
		WHERE c.serial = ?1 AND c.status IN (2, 3) AND (length(?2) = 0 OR c.issuer_key_id = ?2)
		ON CONFLICT (serial) DO UPDATE SET
			issuer_key_id = excluded.issuer_key_id, der = excluded.der, status = excluded.status,
			this_update = excluded.this_update, next_update = excluded.next_update
		WHERE excluded.this_update >= ocsp_responses.this_update`,
		key, nonNil(r.IssuerKeyID), r.DER, int(r.Status), micros(r.ThisUpdate), micros(r.NextUpdate))
	if err != nil {
		return fail(ctx, op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fail(ctx, op, err)
	}
	if n == 0 { // missing, reserved, other issuer, or a newer response is stored
		var (
			st     int
			issuer []byte
		)
		err = tx.QueryRowContext(ctx, `SELECT status, issuer_key_id FROM certificates WHERE serial = ?`, key).Scan(&st, &issuer)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("sqlite: %s: %w", op, certdb.ErrNotFound)
		case err != nil:
			return fail(ctx, op, err)
		case certdb.Status(st) == certdb.StatusReserved:
			return fmt.Errorf("sqlite: %s: %w", op, certdb.ErrNotIssued)
		case len(r.IssuerKeyID) > 0 && !bytes.Equal(issuer, r.IssuerKeyID):
			return fmt.Errorf("sqlite: %s: %w: issuer %x, the certificate's is %x", op, certdb.ErrInvalid, r.IssuerKeyID, issuer)
		}
	}
	if err := tx.Commit(); err != nil {
		return fail(ctx, op+": commit", err)
	}
	return nil
}

// GetOCSPResponse returns the stored response for serial, or ErrNotFound.
func (s *Store) GetOCSPResponse(ctx context.Context, serial *big.Int) (*certdb.OCSPResponse, error) {
	key, err := serialKey(serial)
	if err != nil {
		return nil, fmt.Errorf("sqlite: get OCSP response: %w", err)
	}
	var (
		r                   certdb.OCSPResponse
		sn                  []byte
		status              int
		thisUpdate, nextUpd int64
	)
	err = s.r.QueryRowContext(ctx, `SELECT serial, issuer_key_id, der, status, this_update, next_update
		FROM ocsp_responses WHERE serial = ?`, key).Scan(&sn, &r.IssuerKeyID, &r.DER, &status, &thisUpdate, &nextUpd)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: get OCSP response %x: %w", key, certdb.ErrNotFound)
	}
	if err != nil {
		return nil, fail(ctx, fmt.Sprintf("get OCSP response %x", key), err)
	}
	r.Serial = new(big.Int).SetBytes(sn)
	r.Status = certdb.Status(status)
	r.ThisUpdate, r.NextUpdate = fromMicros(thisUpdate), fromMicros(nextUpd)
	return &r, nil
}

// selectCertC is selectCert for the certificates table aliased c.
const selectCertC = `SELECT c.serial, c.issuer_key_id, c.subject, c.sans, c.not_before, c.not_after, c.status,
	c.revoked_at, c.reason, c.der, c.profile, c.requester, c.created_at, c.shard FROM certificates c`

// listOCSPStale selects a page of certificates whose response is stale.
// status IN (2, 3) is literal: SQLite uses the partial index
// certificates_issued_issuer_serial only then. A certificate has at most one
// response, so "missing, older than signedBefore or of another status" is
// "no response with this_update >= signedBefore and the same status": a
// primary-key probe per certificate.
const listOCSPStale = selectCertC + `
	WHERE c.issuer_key_id = ? AND c.status IN (2, 3) AND c.not_after > ? AND c.serial > ?
		AND NOT EXISTS (SELECT 1 FROM ocsp_responses o
			WHERE o.serial = c.serial AND o.this_update >= ? AND o.status = c.status)
	ORDER BY c.serial LIMIT ?`

// ListOCSPStale returns up to limit issued, unexpired certificates of
// issuerKeyID whose response is missing, older than signedBefore or asserts
// another status, in serial order after the cursor. limit ≤ 0 means
// certdb.DefaultLimit; it is capped at certdb.MaxOCSPStaleLimit.
func (s *Store) ListOCSPStale(ctx context.Context, issuerKeyID []byte, signedBefore, now time.Time, after *big.Int, limit int) ([]*certdb.Certificate, error) {
	cursor := []byte{}
	if after != nil {
		if after.Sign() < 0 {
			return nil, fmt.Errorf("sqlite: list stale OCSP responses: %w: negative cursor", certdb.ErrInvalid)
		}
		cursor = nonNil(after.Bytes())
	}
	switch {
	case limit <= 0:
		limit = certdb.DefaultLimit
	case limit > certdb.MaxOCSPStaleLimit:
		limit = certdb.MaxOCSPStaleLimit
	}
	out, err := s.query(ctx, listOCSPStale,
		nonNil(issuerKeyID), micros(now), cursor, micros(signedBefore), limit)
	if err != nil {
		return nil, fail(ctx, fmt.Sprintf("list stale OCSP responses of issuer %x", issuerKeyID), err)
	}
	return out, nil
}

// NextCRLNumber allocates the next CRL number of (issuerKeyID, shard),
// starting at 1. The write lock serialises callers of every process sharing
// the file, so each gets a distinct number. Numbers end below 2^62.
func (s *Store) NextCRLNumber(ctx context.Context, issuerKeyID []byte, shard int) (n *big.Int, err error) {
	op := fmt.Sprintf("next CRL number of issuer %x shard %d", issuerKeyID, shard)
	if shard < 0 {
		return nil, fmt.Errorf("sqlite: %s: %w: negative shard", op, certdb.ErrInvalid)
	}
	tx, err := s.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE (see dsn)
	if err != nil {
		return nil, fail(ctx, op, err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	var num int64
	err = tx.QueryRowContext(ctx, `INSERT INTO crl_numbers (issuer_key_id, shard, last_number) VALUES (?, ?, 1)
		ON CONFLICT (issuer_key_id, shard) DO UPDATE SET last_number = last_number + 1
		RETURNING last_number`, nonNil(issuerKeyID), shard).Scan(&num)
	if err != nil {
		return nil, fail(ctx, op, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fail(ctx, op+": commit", err)
	}
	return big.NewInt(num), nil
}

// PutCRL stores c as the latest CRL of its shard unless one with a higher
// number is stored (then it is a no-op returning nil). ErrInvalid for a
// malformed CRL record (see certdb.CRLStore) and for a number of 2^62 or
// more, which this store cannot keep.
func (s *Store) PutCRL(ctx context.Context, c *certdb.CRL) error {
	if c == nil {
		return fmt.Errorf("sqlite: put CRL: %w", c.Validate())
	}
	op := fmt.Sprintf("put CRL %s of issuer %x shard %d", c.Number, c.IssuerKeyID, c.Shard)
	if err := c.Validate(); err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	if c.Number.Cmp(big.NewInt(maxCRLNumber)) > 0 {
		return fmt.Errorf("sqlite: %s: %w: numbers above 2^62-1 need the PostgreSQL store", op, certdb.ErrInvalid)
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO crls (issuer_key_id, shard, number, this_update, next_update, der)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (issuer_key_id, shard) DO UPDATE SET
			number = excluded.number, this_update = excluded.this_update,
			next_update = excluded.next_update, der = excluded.der
		WHERE excluded.number >= crls.number`,
		nonNil(c.IssuerKeyID), c.Shard, c.Number.Int64(), micros(c.ThisUpdate), micros(c.NextUpdate), c.DER)
	if err != nil {
		return fail(ctx, op, err)
	}
	return nil
}

// GetCRL returns the latest CRL of the shard, or ErrNotFound.
func (s *Store) GetCRL(ctx context.Context, issuerKeyID []byte, shard int) (*certdb.CRL, error) {
	op := fmt.Sprintf("get CRL of issuer %x shard %d", issuerKeyID, shard)
	if shard < 0 {
		return nil, fmt.Errorf("sqlite: %s: %w: negative shard", op, certdb.ErrInvalid)
	}
	var (
		c                   = certdb.CRL{IssuerKeyID: nonNil(issuerKeyID), Shard: shard}
		num                 int64
		thisUpdate, nextUpd int64
	)
	err := s.r.QueryRowContext(ctx, `SELECT number, this_update, next_update, der FROM crls
		WHERE issuer_key_id = ? AND shard = ?`, nonNil(issuerKeyID), shard).Scan(&num, &thisUpdate, &nextUpd, &c.DER)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: %s: %w", op, certdb.ErrNotFound)
	}
	if err != nil {
		return nil, fail(ctx, op, err)
	}
	c.Number = big.NewInt(num)
	c.ThisUpdate, c.NextUpdate = fromMicros(thisUpdate), fromMicros(nextUpd)
	return &c, nil
}

// listRevokedShard selects a shard's CRL entries.
const listRevokedShard = `SELECT serial, revoked_at, reason, not_after FROM certificates
	WHERE status = 3 AND issuer_key_id = ? AND shard = ? AND not_after > ? ORDER BY serial`

// ListRevokedShard calls fn for each revoked, unexpired certificate of
// issuerKeyID in shard, in serial order, row by row: memory stays flat
// however many there are. It reads the covering partial index
// certificates_revoked_issuer_shard_serial (status = 3 is spelled as a
// literal for that). The certificates have no DER (see certdb.CRLStore). An
// error from fn stops the iteration and is returned wrapped.
func (s *Store) ListRevokedShard(ctx context.Context, issuerKeyID []byte, shard int, now time.Time, fn func(*certdb.Certificate) error) error {
	op := fmt.Sprintf("list revoked of issuer %x shard %d", issuerKeyID, shard)
	if shard < 0 {
		return fmt.Errorf("sqlite: %s: %w: negative shard", op, certdb.ErrInvalid)
	}
	if fn == nil {
		return fmt.Errorf("sqlite: %s: %w: nil callback", op, certdb.ErrInvalid)
	}
	issuer := nonNil(issuerKeyID)
	rows, err := s.r.QueryContext(ctx, listRevokedShard, issuer, shard, micros(now))
	if err != nil {
		return fail(ctx, op, err)
	}
	defer rows.Close()
	var (
		serial                      []byte
		revokedAt, reason, notAfter int64
	)
	for rows.Next() {
		if err := rows.Scan(&serial, &revokedAt, &reason, &notAfter); err != nil {
			return fail(ctx, op, err)
		}
		c := &certdb.Certificate{
			Serial:      new(big.Int).SetBytes(serial),
			IssuerKeyID: slices.Clone(issuer),
			NotAfter:    fromMicros(notAfter),
			Status:      certdb.StatusRevoked,
			RevokedAt:   fromMicros(revokedAt),
			Reason:      certdb.Reason(reason),
			Shard:       shard,
		}
		if err := fn(c); err != nil {
			return fmt.Errorf("sqlite: %s: %w", op, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fail(ctx, op, err)
	}
	return nil
}

// fail describes a driver error. When ctx is done the error wraps ctx.Err(),
// so that callers can tell cancellation from failure with errors.Is.
func fail(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("sqlite: %s: %w", op, cerr)
	}
	return fmt.Errorf("sqlite: %s: %v", op, err)
}

// subscriber is one SubscribeRevocations call. publish never blocks on it:
// when in is full it flags overflow, and the subscription then delivers a
// nil (rescan) marker.
type subscriber struct {
	in       chan *big.Int
	overflow chan struct{} // capacity 1
}

// publish announces serial to every subscription of this store.
func (s *Store) publish(serial *big.Int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sub := range s.subs {
		select {
		case sub.in <- new(big.Int).Set(serial): // each receiver gets its own copy
		default:
			select {
			case sub.overflow <- struct{}{}:
			default:
			}
		}
	}
}

// NotifyRevoked announces serial's revocation to this store's
// subscriptions at once, and to other processes' through the event log.
// Revoke already announces each revocation: this is for re-announcing.
func (s *Store) NotifyRevoked(ctx context.Context, serial *big.Int) error {
	key, err := serialKey(serial)
	if err != nil {
		return fmt.Errorf("sqlite: notify revoked: %w", err)
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO revocation_events (serial, at) VALUES (?, ?)`, key, micros(s.now())); err != nil {
		return fmt.Errorf("sqlite: notify revoked %x: %v", key, err)
	}
	s.publish(serial)
	return nil
}

// SubscribeRevocations delivers the serials that this Store's Revoke and
// NotifyRevoked announce, until ctx is done or the store is closed; then it
// closes the channel. This Store's own announcements arrive at once; those
// of other processes, and other Stores on the same file, within about
// 200 ms through the revocation_events log (duplicates possible). Announcing never
// waits for a receiver: a receiver that falls more than 64 announcements
// behind gets a nil ("rescan"), after the queued ones, instead of the ones
// that did not fit.
func (s *Store) SubscribeRevocations(ctx context.Context) (<-chan *big.Int, error) {
	sub := &subscriber{in: make(chan *big.Int, subscriberBuffer), overflow: make(chan struct{}, 1)}
	// The event log position is read before returning, so every event
	// appended after SubscribeRevocations returns is delivered (reading it
	// in the poller goroutine raced with the caller's first revocation).
	var start int64
	if err := s.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM revocation_events`).Scan(&start); err != nil {
		return nil, fmt.Errorf("sqlite: subscribe to revocations: %s: read the event log: %w", s.path, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("sqlite: subscribe to revocations: %s: store closed", s.path)
	}
	s.subs[sub] = struct{}{}
	if !s.polling {
		// Other processes' announcements arrive through the event log.
		s.polling = true
		s.bg.Add(1)
		go s.pollEvents(start)
	}
	s.bg.Add(1)
	stopped := s.stopped
	s.mu.Unlock()

	out := make(chan *big.Int)
	go func() {
		defer s.bg.Done()
		defer close(out)
		defer func() {
			s.mu.Lock()
			delete(s.subs, sub)
			s.mu.Unlock()
		}()
		for {
			// Queued serials first: the rescan marker follows everything
			// that was queued before the overflow.
			var serial *big.Int
			select {
			case serial = <-sub.in:
			default:
				select {
				case <-ctx.Done():
					return
				case <-stopped:
					return
				case serial = <-sub.in:
				case <-sub.overflow:
				}
			}
			select {
			case out <- serial:
			case <-ctx.Done():
				return
			case <-stopped:
				return
			}
		}
	}()
	return out, nil
}

// closeSubscriptions ends every subscription and refuses new ones and new
// locks; it waits until the subscriptions' channels are closed.
func (s *Store) closeSubscriptions() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.stopped)
	}
	s.mu.Unlock()
	s.bg.Wait()
}

// heldLock is one acquired lock.
type heldLock struct {
	lost chan struct{}
	once sync.Once
}

// TryLock takes the named lock if it is free in this Store: locks are
// in-process (a process that shares the file with others elects no leader
// among them). A lock this Store already holds is not free. lost is closed
// only by release, which is idempotent. When not acquired, release is a
// no-op and lost is nil.
func (s *Store) TryLock(ctx context.Context, name string) (acquired bool, release func(), lost <-chan struct{}, err error) {
	if name == "" {
		return false, nil, nil, fmt.Errorf("sqlite: try lock: %w: empty name", certdb.ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return false, nil, nil, fmt.Errorf("sqlite: try lock %q: %w", name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, nil, nil, fmt.Errorf("sqlite: try lock %q: %s: store closed", name, s.path)
	}
	if _, held := s.locks[name]; held {
		return false, func() {}, nil, nil
	}
	l := &heldLock{lost: make(chan struct{})}
	s.locks[name] = l
	release = func() {
		l.once.Do(func() {
			s.mu.Lock()
			delete(s.locks, name)
			s.mu.Unlock()
			close(l.lost)
		})
	}
	return true, release, l.lost, nil
}
