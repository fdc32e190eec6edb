// Package postgres is certctl's production [certdb.Store]: PostgreSQL through
// pgx/v5 and a connection pool (pgxpool).
//
// Open connects (and fails fast with a clear error when the server cannot be
// reached), [Store.Migrate] brings the schema up to date (`certctl db
// migrate`), and [Store.CheckSchema] checks it at start-up:
//
//	s, err := postgres.Open(ctx, "postgres://certctl@db.internal:5432/certctl?sslmode=verify-full")
//	if err != nil { … }
//	defer s.Close()
//	if err := s.CheckSchema(ctx); err != nil { … } // errors.Is(err, certdb.ErrSchema)
//
// # Concurrency
//
// A Store is safe for concurrent use, and any number of certctl processes may
// share one database: state changes are single statements whose WHERE clause
// checks the current state (a serial moves only reserved -> valid -> revoked),
// and Migrate serialises concurrent migrators with an advisory lock.
//
// # Revocation
//
// Revoke announces each revocation on the LISTEN/NOTIFY channel
// certctl_revoked (payload: the serial in lower-case hex) in the same
// statement, so the announcement is sent exactly when the revocation commits,
// whichever process (server, CLI) revoked. [Store.SubscribeRevocations]
// listens on a dedicated connection and [Store.TryLock] holds a session
// advisory lock on one: each counts against the server's max_connections in
// addition to the pool. CRL numbers are numeric (up to RFC 5280's 20 octets);
// [Store.ListRevokedShard] streams rows from a covering partial index.
//
// # Errors
//
// Driver errors are translated at this boundary: a duplicate serial is
// [certdb.ErrDuplicate], a missing one [certdb.ErrNotFound], a row the schema
// rejects [certdb.ErrInvalid]; context cancellation and deadlines still match
// errors.Is(err, context.Canceled / context.DeadlineExceeded). Other driver
// errors are described in the message but not wrapped: pgx types are not part
// of this package's API. Errors and logs never contain the DSN's password.
//
// # Times
//
// Times are stored as timestamptz and returned in UTC at microsecond
// precision (finer input is truncated).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/certctl/certctl/certdb"
)

// defaultConnectTimeout bounds a connection attempt when the DSN has no
// connect_timeout, so that an unreachable server fails Open instead of
// hanging on a black-holed address.
const defaultConnectTimeout = 10 * time.Second

// The SQL below and the schema's CHECK constraints spell Status values as
// literals (a literal lets the planner match the partial index on status = 3).
// These constants fail to compile if certdb renumbers them.
const (
	_ = uint(certdb.StatusReserved-1) + uint(1-certdb.StatusReserved)
	_ = uint(certdb.StatusValid-2) + uint(2-certdb.StatusValid)
	_ = uint(certdb.StatusRevoked-3) + uint(3-certdb.StatusRevoked)
)

// Store is a certdb.Store backed by a PostgreSQL database. It is safe for
// concurrent use. The caller of Open calls Close.
type Store struct {
	pool   *pgxpool.Pool
	log    *slog.Logger
	target string // host:port/database, for messages; never the password

	// Background goroutines (revocation subscriptions, lock holders) each
	// hold a dedicated connection; Close cancels bgCtx and waits for them.
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup
	mu       sync.Mutex // guards closed and bg.Add
	closed   bool
}

var _ certdb.Store = (*Store)(nil)

// Option configures Open.
type Option func(*config)

type config struct {
	log         *slog.Logger
	maxConns    int32
	maxConnsSet bool
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithMaxConns sets the maximum size of the connection pool (at least 1).
// Without it the DSN's pool_max_conns applies, else pgxpool's default (the
// larger of 4 and the number of CPUs).
func WithMaxConns(n int32) Option {
	return func(c *config) { c.maxConns, c.maxConnsSet = n, true }
}

// Open connects to the database named by dsn (a postgres:// URL or a
// keyword/value string, as pgx accepts) and checks that the server answers.
// Unless the DSN sets connect_timeout, a connection attempt is bounded by 10s;
// ctx bounds the whole call. Open does not migrate: call Migrate or
// CheckSchema next.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	cfg := config{}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.log == nil {
		cfg.log = slog.New(slog.DiscardHandler)
	}
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: invalid database URL: %s", redact(err.Error(), dsn))
	}
	if cfg.maxConnsSet {
		if cfg.maxConns < 1 {
			return nil, fmt.Errorf("postgres: %w: max connections %d, want at least 1", certdb.ErrInvalid, cfg.maxConns)
		}
		pcfg.MaxConns = cfg.maxConns
		pcfg.MinConns = min(pcfg.MinConns, pcfg.MaxConns)
	}
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		pcfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	cc := pcfg.ConnConfig
	s := &Store{
		log:    cfg.log,
		target: net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))) + "/" + cc.Database,
	}
	s.bgCtx, s.bgCancel = context.WithCancel(context.Background())
	s.pool, err = pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		s.bgCancel()
		return nil, fmt.Errorf("postgres: connect to %s: %s", s.target, redact(err.Error(), dsn))
	}
	if err := s.pool.Ping(ctx); err != nil {
		s.Close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("postgres: connect to %s: %w", s.target, cerr)
		}
		return nil, fmt.Errorf("postgres: connect to %s: %s", s.target, redact(err.Error(), dsn))
	}
	s.log.DebugContext(ctx, "connected to PostgreSQL", "database", s.target, "user", cc.User, "max_conns", pcfg.MaxConns)
	return s, nil
}

// Close ends the store's revocation subscriptions (closing their channels)
// and gives up the locks it holds (closing their lost channels), then closes
// every connection of the pool; it waits for connections in use to be
// released. It is idempotent and always returns nil.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.bgCancel()
	s.bg.Wait()
	s.pool.Close()
	return nil
}

// goBackground runs fn in a goroutine that Close waits for. It returns
// false, without running fn, once the store is closed.
func (s *Store) goBackground(fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		fn()
	}()
	return true
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return s.dbError("ping "+s.target, err)
	}
	return nil
}

// Stat returns the connection pool's statistics (for metrics).
func (s *Store) Stat() *pgxpool.Stat { return s.pool.Stat() }

// ReserveSerial records the intent to sign r.Serial (state reserved).
// ErrDuplicate if the serial exists in any state; ErrInvalid for a nil
// reservation, an invalid serial or a negative shard.
func (s *Store) ReserveSerial(ctx context.Context, r *certdb.Reservation) error {
	if r == nil {
		return fmt.Errorf("postgres: reserve serial: %w: nil reservation", certdb.ErrInvalid)
	}
	key, err := serialKey(r.Serial)
	if err != nil {
		return fmt.Errorf("postgres: reserve serial: %w", err)
	}
	if r.Shard < 0 {
		return fmt.Errorf("postgres: reserve serial %x: %w: negative shard %d", key, certdb.ErrInvalid, r.Shard)
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO certificates
		(serial, issuer_key_id, subject, sans, not_before, not_after, status, lint_der, profile, requester, shard)
		VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9, $10)`,
		key, nonNil(r.IssuerKeyID), r.Subject, nonNilSANs(r.SANs), utc(r.NotBefore), utc(r.NotAfter),
		nullable(r.LintDER), r.Profile, r.Requester, r.Shard)
	if err != nil {
		return s.dbError(fmt.Sprintf("reserve serial %x", key), err)
	}
	return nil
}

// addCertificate inserts an issued certificate, or completes its
// reservation: the fields of the certificate that are set replace the
// reservation's, CreatedAt and LintDER are kept. The WHERE clause makes it a
// no-op (0 rows) when the serial is already issued, even against a
// concurrent AddCertificate or Revoke.
const addCertificate = `INSERT INTO certificates AS cur
	(serial, issuer_key_id, subject, sans, not_before, not_after, status, der, profile, requester, shard)
	VALUES ($1, $2, $3, $4, $5, $6, 2, $7, $8, $9, $12)
	ON CONFLICT (serial) DO UPDATE SET
		issuer_key_id = CASE WHEN octet_length(excluded.issuer_key_id) > 0 THEN excluded.issuer_key_id ELSE cur.issuer_key_id END,
		subject       = CASE WHEN excluded.subject <> '' THEN excluded.subject ELSE cur.subject END,
		sans          = CASE WHEN cardinality(excluded.sans) > 0 THEN excluded.sans ELSE cur.sans END,
		not_before    = CASE WHEN $10::boolean THEN excluded.not_before ELSE cur.not_before END,
		not_after     = CASE WHEN $11::boolean THEN excluded.not_after ELSE cur.not_after END,
		status        = 2,
		der           = excluded.der,
		profile       = CASE WHEN excluded.profile <> '' THEN excluded.profile ELSE cur.profile END,
		requester     = CASE WHEN excluded.requester <> '' THEN excluded.requester ELSE cur.requester END,
		shard         = CASE WHEN excluded.shard <> 0 THEN excluded.shard ELSE cur.shard END
	WHERE cur.status = 1`

// AddCertificate stores an issued certificate, completing its reservation if
// there is one (fields of c that are set override the reservation's; a zero
// Shard keeps the reservation's). c.DER is required, c.Shard must not be
// negative and c.Status must be StatusAny or StatusValid (ErrInvalid
// otherwise). ErrDuplicate if the serial is already issued.
func (s *Store) AddCertificate(ctx context.Context, c *certdb.Certificate) error {
	if c == nil {
		return fmt.Errorf("postgres: add certificate: %w: nil certificate", certdb.ErrInvalid)
	}
	key, err := serialKey(c.Serial)
	if err != nil {
		return fmt.Errorf("postgres: add certificate: %w", err)
	}
	if len(c.DER) == 0 {
		return fmt.Errorf("postgres: add certificate %x: %w: no DER", key, certdb.ErrInvalid)
	}
	if c.Status != certdb.StatusAny && c.Status != certdb.StatusValid {
		return fmt.Errorf("postgres: add certificate %x: %w: status %v (add stores issued, unrevoked certificates)", key, certdb.ErrInvalid, c.Status)
	}
	if c.Shard < 0 {
		return fmt.Errorf("postgres: add certificate %x: %w: negative shard %d", key, certdb.ErrInvalid, c.Shard)
	}
	tag, err := s.pool.Exec(ctx, addCertificate,
		key, nonNil(c.IssuerKeyID), c.Subject, nonNilSANs(c.SANs), utc(c.NotBefore), utc(c.NotAfter),
		c.DER, c.Profile, c.Requester, !c.NotBefore.IsZero(), !c.NotAfter.IsZero(), c.Shard)
	if err != nil {
		return s.dbError(fmt.Sprintf("add certificate %x", key), err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: add certificate %x: %w (already issued)", key, certdb.ErrDuplicate)
	}
	return nil
}

// certColumns are the columns scanCert reads, in order.
const certColumns = `serial, issuer_key_id, subject, sans, not_before, not_after, status, revoked_at, reason, der, profile, requester, created_at, shard`

// certColumnsC is certColumns qualified with the table alias c.
const certColumnsC = `c.serial, c.issuer_key_id, c.subject, c.sans, c.not_before, c.not_after, c.status, c.revoked_at, c.reason, c.der, c.profile, c.requester, c.created_at, c.shard`

func scanCert(row pgx.Row) (*certdb.Certificate, error) {
	var (
		c         certdb.Certificate
		serial    []byte
		status    int16
		revokedAt *time.Time
		reason    *int16
		shard     int32
	)
	if err := row.Scan(&serial, &c.IssuerKeyID, &c.Subject, &c.SANs, &c.NotBefore, &c.NotAfter,
		&status, &revokedAt, &reason, &c.DER, &c.Profile, &c.Requester, &c.CreatedAt, &shard); err != nil {
		return nil, err
	}
	c.Serial = new(big.Int).SetBytes(serial)
	c.Status = certdb.Status(status)
	c.Shard = int(shard)
	c.NotBefore, c.NotAfter, c.CreatedAt = c.NotBefore.UTC(), c.NotAfter.UTC(), c.CreatedAt.UTC()
	if revokedAt != nil {
		c.RevokedAt = revokedAt.UTC()
	}
	if reason != nil {
		c.Reason = certdb.Reason(*reason)
	}
	return &c, nil
}

// GetCertificate returns the record for serial in any state, or ErrNotFound.
func (s *Store) GetCertificate(ctx context.Context, serial *big.Int) (*certdb.Certificate, error) {
	key, err := serialKey(serial)
	if err != nil {
		return nil, fmt.Errorf("postgres: get certificate: %w", err)
	}
	c, err := scanCert(s.pool.QueryRow(ctx, `SELECT `+certColumns+` FROM certificates WHERE serial = $1`, key))
	if err != nil {
		return nil, s.dbError(fmt.Sprintf("get certificate %x", key), err)
	}
	return c, nil
}

// ListCertificates returns one page of the records matching q, ordered by
// serial (byte-wise on the big-endian encoding).
func (s *Store) ListCertificates(ctx context.Context, q certdb.Query) ([]*certdb.Certificate, error) {
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("postgres: list certificates: %w", err)
	}
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if q.Status == certdb.StatusAny {
		where = append(where, "status IN (2, 3)")
	} else {
		where = append(where, "status = "+arg(int16(q.Status)))
	}
	switch q.Expiry {
	case certdb.ExpiryUnexpired:
		where = append(where, "not_after > "+arg(utc(q.Now)))
	case certdb.ExpiryExpired:
		where = append(where, "not_after <= "+arg(utc(q.Now)))
	}
	if !q.ExpiringBefore.IsZero() {
		where = append(where, "not_after < "+arg(utc(q.ExpiringBefore)))
	}
	if len(q.IssuerKeyID) > 0 {
		where = append(where, "issuer_key_id = "+arg(q.IssuerKeyID))
	}
	if q.Profile != "" {
		where = append(where, "profile = "+arg(q.Profile))
	}
	if q.After != nil {
		if q.After.Sign() < 0 {
			return nil, fmt.Errorf("postgres: list certificates: %w: negative cursor", certdb.ErrInvalid)
		}
		where = append(where, "serial > "+arg(nonNil(q.After.Bytes())))
	}
	sql := `SELECT ` + certColumns + ` FROM certificates WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY serial LIMIT ` + arg(q.EffectiveLimit())
	out, err := s.query(ctx, sql, args...)
	if err != nil {
		return nil, s.dbError("list certificates", err)
	}
	return out, nil
}

// listRevoked selects what a CRL lists. status = 3 is a literal so that the
// planner can use the partial index certificates_revoked_issuer_not_after
// with a generic plan too.
const listRevoked = `SELECT ` + certColumns + ` FROM certificates
	WHERE status = 3 AND issuer_key_id = $1 AND not_after > $2 ORDER BY serial`

// ListRevoked returns every revoked certificate of issuerKeyID whose NotAfter
// is after now, ordered by serial.
func (s *Store) ListRevoked(ctx context.Context, issuerKeyID []byte, now time.Time) ([]*certdb.Certificate, error) {
	out, err := s.query(ctx, listRevoked, nonNil(issuerKeyID), utc(now))
	if err != nil {
		return nil, s.dbError(fmt.Sprintf("list revoked of issuer %x", issuerKeyID), err)
	}
	return out, nil
}

func (s *Store) query(ctx context.Context, sql string, args ...any) ([]*certdb.Certificate, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (*certdb.Certificate, error) { return scanCert(row) })
}

// revoke marks the certificate revoked and, in the same statement (so in the
// same transaction), announces it on revokedChannel: the notification is
// delivered exactly when the revocation commits.
const revoke = `WITH r AS (
		UPDATE certificates SET status = 3, revoked_at = $2, reason = $3
		WHERE serial = $1 AND status = 2 RETURNING serial)
	SELECT pg_notify('` + revokedChannel + `', encode(serial, 'hex')) FROM r`

// Revoke marks an issued certificate revoked at the given time and announces
// it to every subscriber (see SubscribeRevocations), in every process,
// when it commits. ErrNotFound, ErrNotIssued (reserved only),
// ErrAlreadyRevoked; ErrInvalid for a reason RFC 5280 does not define or a
// zero time. Of concurrent Revoke calls on one serial, from any number of
// processes, exactly one succeeds.
func (s *Store) Revoke(ctx context.Context, serial *big.Int, reason certdb.Reason, at time.Time) error {
	key, err := serialKey(serial)
	if err != nil {
		return fmt.Errorf("postgres: revoke: %w", err)
	}
	op := fmt.Sprintf("revoke %x", key)
	if !reason.Valid() {
		return fmt.Errorf("postgres: %s: %w: reason %v is not an RFC 5280 CRLReason", op, certdb.ErrInvalid, reason)
	}
	if at.IsZero() {
		return fmt.Errorf("postgres: %s: %w: no revocation time", op, certdb.ErrInvalid)
	}
	tag, err := s.pool.Exec(ctx, revoke, key, utc(at), int16(reason))
	if err != nil {
		return s.dbError(op, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	// Nothing changed: find out why. A serial's status only moves forward
	// (reserved -> valid -> revoked), so what we read now explains the miss.
	var status int16
	if err := s.pool.QueryRow(ctx, `SELECT status FROM certificates WHERE serial = $1`, key).Scan(&status); err != nil {
		return s.dbError(op, err)
	}
	switch certdb.Status(status) {
	case certdb.StatusReserved:
		return fmt.Errorf("postgres: %s: %w", op, certdb.ErrNotIssued)
	case certdb.StatusRevoked:
		return fmt.Errorf("postgres: %s: %w", op, certdb.ErrAlreadyRevoked)
	}
	return fmt.Errorf("postgres: %s: not updated, status %v", op, certdb.Status(status))
}

// dbError translates a driver error at the package boundary (see the package
// doc); op names the operation and its key.
func (s *Store) dbError(op string, err error) error {
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("postgres: %s: %w", op, certdb.ErrNotFound)
	case errors.As(err, &pgErr) && pgErr.Code == "23505": // unique_violation
		return fmt.Errorf("postgres: %s: %w", op, certdb.ErrDuplicate)
	case errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || // data_exception
		pgErr.Code == "23502" || pgErr.Code == "23514"): // not_null_violation, check_violation
		return fmt.Errorf("postgres: %s: %w: %s", op, certdb.ErrInvalid, pgErr.Message)
	case errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "42703"): // undefined_table, undefined_column
		return fmt.Errorf("postgres: %s: %w: %s; run `certctl db migrate`", op, certdb.ErrSchema, pgErr.Message)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("postgres: %s: %w", op, context.Canceled)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("postgres: %s: %w", op, context.DeadlineExceeded)
	}
	return fmt.Errorf("postgres: %s: %v", op, err)
}

// serialKey returns the stored form of a serial: its minimal big-endian
// encoding. RFC 5280 §4.1.2.2: positive, at most 20 octets.
func serialKey(serial *big.Int) ([]byte, error) {
	switch {
	case serial == nil:
		return nil, fmt.Errorf("%w: no serial", certdb.ErrInvalid)
	case serial.Sign() <= 0:
		return nil, fmt.Errorf("%w: serial %s is not positive (RFC 5280 §4.1.2.2)", certdb.ErrInvalid, serial)
	}
	b := serial.Bytes()
	if len(b) > 20 {
		return nil, fmt.Errorf("%w: serial %x is %d octets, at most 20 allowed (RFC 5280 §4.1.2.2)", certdb.ErrInvalid, b, len(b))
	}
	return b, nil
}

// utc converts t to what the database stores: UTC, microseconds.
func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// nonNil turns nil into an empty value: pgx sends a nil slice as NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func nonNilSANs(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// nullable stores an empty optional blob as NULL.
func nullable(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// kvPassword finds password values in keyword/value strings and URL queries.
var kvPassword = regexp.MustCompile(`(?i)password=('(?:[^'\\]|\\.)*'|[^\s&]+)`)

// redact removes every password that dsn contains from msg. pgx already masks
// passwords in its messages; this also covers errors it wraps (such as
// net/url's, which quote the whole URL) and unusual spellings.
func redact(msg, dsn string) string {
	var secrets []string
	if rest, ok := strings.CutPrefix(dsn, "postgres://"); ok || strings.HasPrefix(dsn, "postgresql://") {
		if !ok {
			rest = strings.TrimPrefix(dsn, "postgresql://")
		}
		// The userinfo ends at an '@'; in a malformed URL it is not clear
		// which one, so every '@' yields a candidate.
		for i, c := range rest {
			if c != '@' {
				continue
			}
			if _, pw, ok := strings.Cut(rest[:i], ":"); ok {
				secrets = append(secrets, pw)
				if dec, err := url.PathUnescape(pw); err == nil {
					secrets = append(secrets, dec)
				}
			}
		}
	}
	for _, m := range kvPassword.FindAllStringSubmatch(dsn, -1) {
		pw := m[1]
		secrets = append(secrets, pw, strings.Trim(pw, "'"))
		if dec, err := url.QueryUnescape(pw); err == nil {
			secrets = append(secrets, dec)
		}
	}
	// Longest first, so that a password containing another is masked whole.
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, pw := range secrets {
		if pw != "" && pw != "''" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	return msg
}
