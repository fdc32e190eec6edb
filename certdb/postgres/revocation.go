package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/certctl/certctl/certdb"
)

var (
	_ certdb.OCSPStore          = (*Store)(nil)
	_ certdb.CRLStore           = (*Store)(nil)
	_ certdb.RevocationNotifier = (*Store)(nil)
	_ certdb.Locker             = (*Store)(nil)
)

// revokedChannel is the LISTEN/NOTIFY channel on which revocations are
// announced. The payload is the serial as certdb.SerialHex prints it.
const revokedChannel = "certctl_revoked"

const (
	// listenBackoffMin and listenBackoffMax bound the wait between attempts
	// to re-establish a lost LISTEN connection.
	listenBackoffMin = 100 * time.Millisecond
	listenBackoffMax = 5 * time.Second
	// lockPingInterval is how often a lock holder checks its connection;
	// lockPingTimeout bounds one check (a black-holed server does not answer).
	lockPingInterval = 2 * time.Second
	lockPingTimeout  = 5 * time.Second
	// closeTimeout bounds closing a dedicated connection.
	closeTimeout = 5 * time.Second
)

// ocspColumns are the columns scanOCSP reads, in order.
const ocspColumns = `serial, issuer_key_id, der, status, this_update, next_update`

// putOCSP stores a response for an issued certificate ($1) in one statement.
// The certificate row supplies the issuer when $2 is empty and filters out
// unknown, reserved and other-issuer serials (0 rows: putOCSPResponse finds
// out which). The upsert's WHERE makes a response with an earlier
// this_update a no-op (0 rows too), even against a concurrent put: the
// conflicting row is locked and re-checked.
const putOCSP = `INSERT INTO ocsp_responses AS cur (` + ocspColumns + `)
	SELECT c.serial, c.issuer_key_id, $3, $4, $5, $6 FROM certificates c
	WHERE c.serial = $1 AND c.status IN (2, 3) AND (octet_length($2::bytea) = 0 OR c.issuer_key_id = $2)
	ON CONFLICT (serial) DO UPDATE SET
		issuer_key_id = excluded.issuer_key_id, der = excluded.der, status = excluded.status,
		this_update = excluded.this_update, next_update = excluded.next_update
	WHERE excluded.this_update >= cur.this_update`

// PutOCSPResponse stores r as the response for its serial unless the stored
// one has a later ThisUpdate (then it is a no-op returning nil).
// ErrNotFound for an unknown serial, ErrNotIssued for a reserved one,
// ErrInvalid for a malformed response (see certdb.OCSPStore).
func (s *Store) PutOCSPResponse(ctx context.Context, r *certdb.OCSPResponse) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("postgres: put OCSP response: %w", err)
	}
	key, err := serialKey(r.Serial)
	if err != nil {
		return fmt.Errorf("postgres: put OCSP response: %w", err)
	}
	op := fmt.Sprintf("put OCSP response %x", key)
	args := []any{key, nonNil(r.IssuerKeyID), r.DER, int16(r.Status), utc(r.ThisUpdate), utc(r.NextUpdate)}
	for attempt := 0; ; attempt++ {
		tag, err := s.pool.Exec(ctx, putOCSP, args...)
		if err != nil {
			return s.dbError(op, err)
		}
		if tag.RowsAffected() == 1 {
			return nil
		}
		// Nothing stored: the certificate is missing, reserved or of another
		// issuer, or a response at least as new is stored.
		var (
			status int16
			issuer []byte
			stored *time.Time
		)
		err = s.pool.QueryRow(ctx, `SELECT c.status, c.issuer_key_id, o.this_update
			FROM certificates c LEFT JOIN ocsp_responses o ON o.serial = c.serial WHERE c.serial = $1`, key).
			Scan(&status, &issuer, &stored)
		switch {
		case err != nil:
			return s.dbError(op, err)
		case certdb.Status(status) == certdb.StatusReserved:
			return fmt.Errorf("postgres: %s: %w", op, certdb.ErrNotIssued)
		case len(r.IssuerKeyID) > 0 && string(issuer) != string(r.IssuerKeyID):
			return fmt.Errorf("postgres: %s: %w: issuer %x, the certificate's is %x", op, certdb.ErrInvalid, r.IssuerKeyID, issuer)
		case stored != nil && stored.After(utc(r.ThisUpdate)):
			return nil // a newer response is stored: the put is a no-op
		case attempt > 0:
			return fmt.Errorf("postgres: %s: not stored", op)
		}
		// The certificate was issued, or its response removed, between the
		// two statements: try once more. A status only moves forward, so it
		// stays issued.
	}
}

// GetOCSPResponse returns the stored response for serial, or ErrNotFound.
func (s *Store) GetOCSPResponse(ctx context.Context, serial *big.Int) (*certdb.OCSPResponse, error) {
	key, err := serialKey(serial)
	if err != nil {
		return nil, fmt.Errorf("postgres: get OCSP response: %w", err)
	}
	var (
		r       certdb.OCSPResponse
		sn      []byte
		status  int16
		thisUpd time.Time
		nextUpd time.Time
	)
	err = s.pool.QueryRow(ctx, `SELECT `+ocspColumns+` FROM ocsp_responses WHERE serial = $1`, key).
		Scan(&sn, &r.IssuerKeyID, &r.DER, &status, &thisUpd, &nextUpd)
	if err != nil {
		return nil, s.dbError(fmt.Sprintf("get OCSP response %x", key), err)
	}
	r.Serial = new(big.Int).SetBytes(sn)
	r.Status = certdb.Status(status)
	r.ThisUpdate, r.NextUpdate = thisUpd.UTC(), nextUpd.UTC()
	return &r, nil
}

// listOCSPStale walks the issuer's issued certificates in serial order
// (certificates_issued_issuer_serial; the literal status IN (2, 3) matches
// its predicate in a generic plan too) and keeps those without a fresh
// response: a certificate has at most one response (serial is the primary
// key), so "missing, older than $2 or of another status" is "no response
// with this_update >= $2 and the same status". Spelled as an anti-join the
// planner estimates it well; as LEFT JOIN … WHERE o.serial IS NULL OR … it
// estimates one row and hashes and sorts the whole table for every page.
const listOCSPStale = `SELECT ` + certColumnsC + ` FROM certificates c
	WHERE c.issuer_key_id = $1 AND c.status IN (2, 3) AND c.not_after > $3 AND c.serial > $4
		AND NOT EXISTS (SELECT 1 FROM ocsp_responses o
			WHERE o.serial = c.serial AND o.this_update >= $2 AND o.status = c.status)
	ORDER BY c.serial LIMIT $5`

// ListOCSPStale returns up to limit issued, unexpired certificates of
// issuerKeyID whose response is missing, older than signedBefore or asserts
// another status, in serial order after the cursor. limit ≤ 0 means
// certdb.DefaultLimit; it is capped at certdb.MaxOCSPStaleLimit.
func (s *Store) ListOCSPStale(ctx context.Context, issuerKeyID []byte, signedBefore, now time.Time, after *big.Int, limit int) ([]*certdb.Certificate, error) {
	cursor, err := cursorKey(after)
	if err != nil {
		return nil, fmt.Errorf("postgres: list stale OCSP responses: %w", err)
	}
	out, err := s.query(ctx, listOCSPStale, nonNil(issuerKeyID), utc(signedBefore), utc(now), cursor, staleLimit(limit))
	if err != nil {
		return nil, s.dbError(fmt.Sprintf("list stale OCSP responses of issuer %x", issuerKeyID), err)
	}
	return out, nil
}

// staleLimit applies ListOCSPStale's page size rules.
func staleLimit(limit int) int {
	switch {
	case limit <= 0:
		return certdb.DefaultLimit
	case limit > certdb.MaxOCSPStaleLimit:
		return certdb.MaxOCSPStaleLimit
	}
	return limit
}

// cursorKey returns the stored form of a pagination cursor (nil: before
// every serial).
func cursorKey(after *big.Int) ([]byte, error) {
	if after == nil {
		return []byte{}, nil
	}
	if after.Sign() < 0 {
		return nil, fmt.Errorf("%w: negative cursor", certdb.ErrInvalid)
	}
	return nonNil(after.Bytes()), nil
}

// NextCRLNumber allocates the next CRL number of (issuerKeyID, shard),
// starting at 1, in one statement: concurrent callers in any number of
// processes serialise on the row and each gets a distinct number.
func (s *Store) NextCRLNumber(ctx context.Context, issuerKeyID []byte, shard int) (*big.Int, error) {
	op := fmt.Sprintf("next CRL number of issuer %x shard %d", issuerKeyID, shard)
	if shard < 0 {
		return nil, fmt.Errorf("postgres: %s: %w: negative shard", op, certdb.ErrInvalid)
	}
	var text string
	err := s.pool.QueryRow(ctx, `INSERT INTO crl_numbers AS cur (issuer_key_id, shard, last_number) VALUES ($1, $2, 1)
		ON CONFLICT (issuer_key_id, shard) DO UPDATE SET last_number = cur.last_number + 1
		RETURNING last_number::text`, nonNil(issuerKeyID), shard).Scan(&text)
	if err != nil {
		return nil, s.dbError(op, err)
	}
	n, ok := new(big.Int).SetString(text, 10)
	if !ok {
		return nil, fmt.Errorf("postgres: %s: bad stored number %q", op, text)
	}
	return n, nil
}

// crlNumber validates a CRL number (RFC 5280 §5.2.3: a non-negative
// integer of at most 20 octets) and returns its decimal text, which
// PostgreSQL converts to numeric.
func crlNumber(n *big.Int) (string, error) {
	switch {
	case n == nil:
		return "", fmt.Errorf("%w: no CRL number", certdb.ErrInvalid)
	case n.Sign() < 0:
		return "", fmt.Errorf("%w: negative CRL number %s", certdb.ErrInvalid, n)
	case n.BitLen() > 159:
		return "", fmt.Errorf("%w: CRL number %s is longer than 20 octets (RFC 5280 §5.2.3)", certdb.ErrInvalid, n)
	}
	return n.String(), nil
}

// PutCRL stores c as the latest CRL of its shard unless one with a higher
// number is stored (then it is a no-op returning nil). ErrInvalid for a
// malformed CRL record (see certdb.CRLStore).
func (s *Store) PutCRL(ctx context.Context, c *certdb.CRL) error {
	if c == nil {
		return fmt.Errorf("postgres: put CRL: %w", c.Validate())
	}
	op := fmt.Sprintf("put CRL %s of issuer %x shard %d", c.Number, c.IssuerKeyID, c.Shard)
	if err := c.Validate(); err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	num, err := crlNumber(c.Number) // PostgreSQL's own limit: 20 octets
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	// The DER of a large CRL is tens of MB. pgx's Exec would copy it twice
	// (argument encoding, then the Bind message); ExecParams on the raw
	// connection takes the parameters as they are and copies once.
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return s.dbError(op, err)
	}
	defer conn.Release()
	const fmtText, fmtBinary = 0, 1
	params := [][]byte{
		nonNil(c.IssuerKeyID),
		[]byte(strconv.Itoa(c.Shard)),
		[]byte(num),
		[]byte(utc(c.ThisUpdate).Format(pgTimestampFormat)),
		[]byte(utc(c.NextUpdate).Format(pgTimestampFormat)),
		c.DER,
	}
	oids := []uint32{pgtype.ByteaOID, pgtype.Int4OID, pgtype.NumericOID, pgtype.TimestamptzOID, pgtype.TimestamptzOID, pgtype.ByteaOID}
	formats := []int16{fmtBinary, fmtText, fmtText, fmtText, fmtText, fmtBinary}
	res := conn.Conn().PgConn().ExecParams(ctx, `INSERT INTO crls AS cur (issuer_key_id, shard, number, this_update, next_update, der)
		VALUES ($1, $2, $3::numeric, $4, $5, $6)
		ON CONFLICT (issuer_key_id, shard) DO UPDATE SET
			number = excluded.number, this_update = excluded.this_update,
			next_update = excluded.next_update, der = excluded.der
		WHERE excluded.number >= cur.number`, params, oids, formats, nil).Read()
	if res.Err != nil {
		return s.dbError(op, res.Err)
	}
	return nil
}

// pgTimestampFormat is a timestamptz literal PostgreSQL parses exactly
// (microseconds, explicit offset).
const pgTimestampFormat = "2006-01-02 15:04:05.999999Z07:00"

// GetCRL returns the latest CRL of the shard, or ErrNotFound.
func (s *Store) GetCRL(ctx context.Context, issuerKeyID []byte, shard int) (*certdb.CRL, error) {
	op := fmt.Sprintf("get CRL of issuer %x shard %d", issuerKeyID, shard)
	if shard < 0 {
		return nil, fmt.Errorf("postgres: %s: %w: negative shard", op, certdb.ErrInvalid)
	}
	var (
		c       = certdb.CRL{IssuerKeyID: nonNil(issuerKeyID), Shard: shard}
		num     string
		thisUpd time.Time
		nextUpd time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT number::text, this_update, next_update, der FROM crls
		WHERE issuer_key_id = $1 AND shard = $2`, nonNil(issuerKeyID), shard).Scan(&num, &thisUpd, &nextUpd, &c.DER)
	if err != nil {
		return nil, s.dbError(op, err)
	}
	n, ok := new(big.Int).SetString(num, 10)
	if !ok {
		return nil, fmt.Errorf("postgres: %s: bad stored number %q", op, num)
	}
	c.Number = n
	c.ThisUpdate, c.NextUpdate = thisUpd.UTC(), nextUpd.UTC()
	return &c, nil
}

// listRevokedShard selects a shard's CRL entries. status = 3 is a literal so
// that a generic plan can use the partial covering index
// certificates_revoked_issuer_shard_serial (an index-only scan, in serial
// order, no sort).
const listRevokedShard = `SELECT serial, revoked_at, reason, not_after FROM certificates
	WHERE status = 3 AND issuer_key_id = $1 AND shard = $2 AND not_after > $3 ORDER BY serial`

// ListRevokedShard calls fn for each revoked, unexpired certificate of
// issuerKeyID in shard, in serial order, as the rows arrive from the server:
// memory stays flat however many there are. The certificates have no DER
// (see certdb.CRLStore). An error from fn stops the iteration and is
// returned wrapped.
func (s *Store) ListRevokedShard(ctx context.Context, issuerKeyID []byte, shard int, now time.Time, fn func(*certdb.Certificate) error) error {
	op := fmt.Sprintf("list revoked of issuer %x shard %d", issuerKeyID, shard)
	if shard < 0 {
		return fmt.Errorf("postgres: %s: %w: negative shard", op, certdb.ErrInvalid)
	}
	if fn == nil {
		return fmt.Errorf("postgres: %s: %w: nil callback", op, certdb.ErrInvalid)
	}
	issuer := nonNil(issuerKeyID)
	rows, err := s.pool.Query(ctx, listRevokedShard, issuer, shard, utc(now))
	if err != nil {
		return s.dbError(op, err)
	}
	defer rows.Close()
	var (
		serial    []byte
		revokedAt time.Time
		reason    int16
		notAfter  time.Time
	)
	for rows.Next() {
		if err := rows.Scan(&serial, &revokedAt, &reason, &notAfter); err != nil {
			return s.dbError(op, err)
		}
		c := &certdb.Certificate{
			Serial:      new(big.Int).SetBytes(serial),
			IssuerKeyID: slices.Clone(issuer),
			NotAfter:    notAfter.UTC(),
			Status:      certdb.StatusRevoked,
			RevokedAt:   revokedAt.UTC(),
			Reason:      certdb.Reason(reason),
			Shard:       shard,
		}
		if err := fn(c); err != nil {
			return fmt.Errorf("postgres: %s: %w", op, err)
		}
	}
	if err := rows.Err(); err != nil {
		return s.dbError(op, err)
	}
	return nil
}

// NotifyRevoked announces serial's revocation on the database's
// certctl_revoked channel; every subscription of every process receives it.
// Revoke already announces each revocation: this is for re-announcing.
func (s *Store) NotifyRevoked(ctx context.Context, serial *big.Int) error {
	key, err := serialKey(serial)
	if err != nil {
		return fmt.Errorf("postgres: notify revoked: %w", err)
	}
	if _, err := s.pool.Exec(ctx, `SELECT pg_notify('`+revokedChannel+`', $1)`, certdb.SerialHex(serial)); err != nil {
		return s.dbError(fmt.Sprintf("notify revoked %x", key), err)
	}
	return nil
}

// SubscribeRevocations delivers the serials announced on the database by
// Revoke and NotifyRevoked, from any process, until ctx is done or the store
// is closed; then it closes the channel. It holds a dedicated connection
// (not one of the pool's) that LISTENs; the subscription is active when
// SubscribeRevocations returns. When that connection fails, it reconnects
// with backoff and then sends nil ("you may have missed some: rescan").
// Delivery waits for the receiver, so a receiver must keep reading;
// notifications meanwhile queue in the server.
func (s *Store) SubscribeRevocations(ctx context.Context) (<-chan *big.Int, error) {
	if s.bgCtx.Err() != nil {
		return nil, fmt.Errorf("postgres: subscribe to revocations: store closed")
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.bgCtx, cancel) // Close ends the subscription
	conn, err := s.listen(ctx)
	if err != nil {
		stop()
		cancel()
		return nil, err
	}
	out := make(chan *big.Int, 16)
	ok := s.goBackground(func() {
		defer cancel()
		defer stop()
		defer close(out)
		s.forward(ctx, conn, out)
	})
	if !ok {
		stop()
		cancel()
		closeConn(conn)
		return nil, fmt.Errorf("postgres: subscribe to revocations: store closed")
	}
	return out, nil
}

// connect opens a dedicated connection with the pool's settings.
func (s *Store) connect(ctx context.Context) (*pgx.Conn, error) {
	return pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig)
}

// listen opens a dedicated connection that LISTENs on revokedChannel.
func (s *Store) listen(ctx context.Context) (*pgx.Conn, error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return nil, s.dbError("subscribe to revocations on "+s.target, err)
	}
	if _, err := conn.Exec(ctx, `LISTEN `+revokedChannel); err != nil {
		closeConn(conn)
		return nil, s.dbError("subscribe to revocations on "+s.target, err)
	}
	return conn, nil
}

// forward copies notifications to out, reconnecting after a failure, until
// ctx is done.
func (s *Store) forward(ctx context.Context, conn *pgx.Conn, out chan<- *big.Int) {
	defer func() {
		if conn != nil {
			closeConn(conn)
		}
	}()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			closeConn(conn)
			conn = nil
			if ctx.Err() != nil {
				return
			}
			s.log.WarnContext(ctx, "revocation subscription lost its connection; reconnecting", "database", s.target, "err", err)
			if conn = s.relisten(ctx); conn == nil {
				return
			}
			if !send(ctx, out, nil) { // LISTEN is back: a rescan now sees everything missed
				return
			}
			continue
		}
		serial, err := certdb.ParseSerial(n.Payload)
		if err != nil {
			s.log.WarnContext(ctx, "ignoring a malformed revocation notification", "channel", n.Channel, "payload", n.Payload, "err", err)
			continue
		}
		if !send(ctx, out, serial) {
			return
		}
	}
}

// relisten re-establishes the LISTEN connection, with capped exponential
// backoff, until it succeeds (it returns the connection) or ctx is done
// (nil).
func (s *Store) relisten(ctx context.Context) *pgx.Conn {
	wait := listenBackoffMin
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		conn, err := s.listen(ctx)
		if err == nil {
			s.log.InfoContext(ctx, "revocation subscription reconnected", "database", s.target)
			return conn
		}
		if ctx.Err() != nil {
			return nil
		}
		s.log.WarnContext(ctx, "revocation subscription: reconnect failed", "database", s.target, "err", err, "retry_in", wait)
		wait = min(2*wait, listenBackoffMax)
	}
}

func send(ctx context.Context, out chan<- *big.Int, serial *big.Int) bool {
	select {
	case out <- serial:
		return true
	case <-ctx.Done():
		return false
	}
}

// closeConn closes a dedicated connection, bounded by closeTimeout.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	conn.Close(ctx)
}

// lockKey maps a lock name to a pg_advisory_lock key: the first 8 octets of
// a SHA-256 over a certctl-specific prefix, so names do not collide in
// practice with each other, with the migration lock or with other
// applications' keys.
func lockKey(name string) int64 {
	h := sha256.Sum256([]byte("certctl lock\x00" + name))
	return int64(binary.BigEndian.Uint64(h[:8]))
}

// TryLock takes the session advisory lock named name if no session of the
// database holds it, on a dedicated connection (not one of the pool's) that
// it keeps while the lock is held. A lock held by another Store, in this
// process or another, is not free; neither is one this Store already holds.
//
// When acquired, the connection is pinged every few seconds; if it fails
// (server restart, network loss) the session and its lock are gone, so lost
// is closed. release unlocks, closes the connection and closes lost; it is
// idempotent and waits for that to finish. Close releases every lock the
// store holds. When not acquired, release is a no-op and lost is nil.
func (s *Store) TryLock(ctx context.Context, name string) (acquired bool, release func(), lost <-chan struct{}, err error) {
	if name == "" {
		return false, nil, nil, fmt.Errorf("postgres: try lock: %w: empty name", certdb.ErrInvalid)
	}
	op := fmt.Sprintf("try lock %q", name)
	if s.bgCtx.Err() != nil {
		return false, nil, nil, fmt.Errorf("postgres: %s: store closed", op)
	}
	key := lockKey(name)
	conn, err := s.connect(ctx)
	if err != nil {
		return false, nil, nil, s.dbError(op, err)
	}
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&acquired); err != nil {
		closeConn(conn)
		return false, nil, nil, s.dbError(op, err)
	}
	if !acquired {
		closeConn(conn)
		return false, func() {}, nil, nil
	}
	l := &heldLock{lost: make(chan struct{}), released: make(chan struct{}), done: make(chan struct{})}
	if !s.goBackground(func() { s.hold(conn, name, key, l) }) {
		closeConn(conn) // ends the session: the lock goes with it
		return false, nil, nil, fmt.Errorf("postgres: %s: store closed", op)
	}
	return true, l.release, l.lost, nil
}

// heldLock is the state of one acquired lock.
type heldLock struct {
	lost     chan struct{} // closed when the lock is gone (released or connection lost)
	released chan struct{} // closed by release
	once     sync.Once
	done     chan struct{} // closed when hold has returned
}

func (l *heldLock) release() {
	l.once.Do(func() { close(l.released) })
	<-l.done
}

// hold keeps the lock's connection and watches it until release, Close or
// a failed ping.
func (s *Store) hold(conn *pgx.Conn, name string, key int64, l *heldLock) {
	defer close(l.done)
	defer close(l.lost)
	defer closeConn(conn)
	t := time.NewTicker(lockPingInterval)
	defer t.Stop()
	for {
		select {
		case <-l.released:
		case <-s.bgCtx.Done():
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), lockPingTimeout)
			err := conn.Ping(ctx)
			cancel()
			if err != nil {
				s.log.Warn("lost the lock: its connection failed", "lock", name, "database", s.target, "err", err)
				return
			}
			continue
		}
		// Released, or the store is closing. Closing the session releases
		// the lock too, but only once the server has noticed the session
		// ended; unlocking first frees it before Close or release returns
		// (another process may TryLock right after).
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
			s.log.Warn("unlocking failed; closing the session releases the lock", "lock", name, "database", s.target, "err", err)
		}
		cancel()
		return
	}
}
