// Package sqlite is certctl's embedded default [certdb.Store]: one SQLite
// file, pure Go (modernc.org/sqlite, no cgo).
//
// Open the file with [Open], bring its schema up to date with
// [Store.Migrate] (`certctl db migrate`), and check it at start-up with
// [Store.CheckSchema]:
//
//	s, err := sqlite.Open(ctx, "/var/lib/certctl/certctl.db")
//	if err != nil { … }
//	defer s.Close()
//	if err := s.CheckSchema(ctx); err != nil { … } // errors.Is(err, certdb.ErrSchema)
//
// # Durability and concurrency
//
// The database runs in WAL mode with synchronous=FULL: once a write method
// returns nil, the record survives a power loss. Writes go through a single
// connection with BEGIN IMMEDIATE transactions, so goroutines of one process
// queue for it instead of failing with SQLITE_BUSY; other processes wait up
// to the busy timeout (10s). Reads use a separate pool of read-only
// connections and do not wait for writers.
//
// # Revocation
//
// Revocation announcements ([Store.SubscribeRevocations]) and locks
// ([Store.TryLock]) live in the Store: other processes, and other Stores on
// the same file, neither see the announcements nor share the locks, so a
// deployment with several certctl processes needs PostgreSQL. CRL numbers are
// 64-bit integers and end below 2^62.
//
// # Files
//
// Open creates a missing database file itself, with mode 0600 whatever the
// umask, and SQLite never creates it (mode=rw). SQLite gives the -wal and
// -shm files the database file's mode, so they are 0600 too. An existing
// database file that other users can access is left as the operator set it:
// Open logs a warning and removes group and other access from the -wal and
// -shm files present. The directory must exist.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/certctl/certctl/certdb"
)

// busyTimeout is how long a statement waits for another process's write
// lock before failing.
const busyTimeout = 10 * time.Second

// maxReaders bounds the read connection pool.
const maxReaders = 4

// Store is a certdb.Store backed by one SQLite file. It is safe for
// concurrent use by multiple goroutines, and several processes may open the
// same file. The caller of Open calls Close.
type Store struct {
	path string
	w    *sql.DB // exactly one connection: every write, serialized
	r    *sql.DB // read-only connections
	log  *slog.Logger
	now  func() time.Time

	closeOnce sync.Once
	closeErr  error

	// In-process revocation announcements and locks (revocation.go).
	mu      sync.Mutex
	closed  bool
	stopped chan struct{} // closed by Close: ends the subscriptions
	subs    map[*subscriber]struct{}
	locks   map[string]*heldLock
	bg      sync.WaitGroup // subscription goroutines; Close waits for them
	polling bool           // the revocation_events poller runs
}

var _ certdb.Store = (*Store)(nil)

// Option configures Open.
type Option func(*config)

type config struct {
	log *slog.Logger
	now func() time.Time
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithClock sets the clock used for CreatedAt (default: time.Now).
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// Open opens the SQLite database at path, creating the file with mode 0600
// if it does not exist. The directory must exist. Open does not migrate:
// call Migrate or CheckSchema next.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	cfg := config{log: slog.New(slog.DiscardHandler), now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if path == "" {
		return nil, errors.New("sqlite: open: empty database path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := createFile(abs, cfg.log); err != nil {
		return nil, err
	}

	s := &Store{path: abs, log: cfg.log, now: cfg.now, stopped: make(chan struct{}),
		subs: map[*subscriber]struct{}{}, locks: map[string]*heldLock{}}
	s.w, err = sql.Open("sqlite", dsn(abs, false))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	// One writer connection: in-process writers queue in database/sql
	// (honouring ctx) rather than racing for SQLite's lock.
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)
	s.r, err = sql.Open("sqlite", dsn(abs, true))
	if err != nil {
		s.w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	s.r.SetMaxOpenConns(maxReaders)
	s.r.SetMaxIdleConns(maxReaders)

	// Connect the writer first: it switches the file to WAL mode, which is
	// persistent, before any reader opens it.
	var mode string
	if err := s.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: open %s: %v", abs, err)
	}
	if !strings.EqualFold(mode, "wal") {
		s.Close()
		return nil, fmt.Errorf("sqlite: open %s: journal mode is %q, want wal", abs, mode)
	}
	if err := s.r.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: open %s: %v", abs, err)
	}
	tightenSidecars(abs, s.log)
	return s, nil
}

// createFile makes sure the database file exists, creating it with mode 0600
// so SQLite never creates it under the process umask.
func createFile(abs string, log *slog.Logger) error {
	dir := filepath.Dir(abs)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("sqlite: open %s: database directory: %w", abs, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("sqlite: open %s: %s is not a directory", abs, dir)
	}
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		defer f.Close()
		// The umask may have cleared bits of 0600; it cannot have added any,
		// but set the mode explicitly so the result does not depend on it.
		if err := f.Chmod(0o600); err != nil {
			return fmt.Errorf("sqlite: open %s: %w", abs, err)
		}
		return f.Close()
	case errors.Is(err, fs.ErrExist):
		fi, err := os.Stat(abs)
		if err != nil {
			return fmt.Errorf("sqlite: open %s: %w", abs, err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("sqlite: open %s: not a regular file", abs)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			log.Warn("sqlite database file is accessible to other users", "path", abs, "mode", fi.Mode().Perm().String())
		}
		return nil
	default:
		return fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
}

// tightenSidecars removes group and other permissions from the -wal and
// -shm files that exist. It matters only when the database file itself is
// more permissive than 0600 (SQLite gives them the database file's mode).
func tightenSidecars(abs string, log *slog.Logger) {
	for _, suffix := range []string{"-wal", "-shm"} {
		p := abs + suffix
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o077 == 0 {
			continue
		}
		if err := os.Chmod(p, fi.Mode().Perm()&0o700); err != nil {
			log.Warn("cannot restrict sqlite file permissions", "path", p, "err", err)
		}
	}
}

// dsn builds a modernc.org/sqlite DSN for the file at abs. mode=rw: the
// file was created by createFile, SQLite must never create it.
func dsn(abs string, readOnly bool) string {
	q := url.Values{}
	q.Set("mode", "rw")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(FULL)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		// Take the write lock at BEGIN: a deferred transaction that reads
		// first and then writes can fail with SQLITE_BUSY without waiting.
		q.Set("_txlock", "immediate")
	}
	// SQLite decodes %XX in URI filenames; EscapedPath escapes '?' and '#'.
	return "file:" + (&url.URL{Path: filepath.ToSlash(abs)}).EscapedPath() + "?" + q.Encode()
}

// Close ends the store's revocation subscriptions (closing their channels)
// and closes the database. It is idempotent; later calls return the result
// of the first.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closeSubscriptions()
		s.closeErr = errors.Join(s.r.Close(), s.w.Close())
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("sqlite: close %s: %w", s.path, s.closeErr)
		}
	})
	return s.closeErr
}

// Ping checks that the database file can be read.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.r.QueryRowContext(ctx, "SELECT 1 FROM sqlite_schema LIMIT 1").Scan(&one); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: ping %s: %v", s.path, err)
	}
	return nil
}

// serialKey validates a serial and returns its stored form, the minimal
// big-endian encoding.
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

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func encodeSANs(sans []string) (string, error) {
	if len(sans) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(sans)
	if err != nil {
		return "", fmt.Errorf("%w: SANs: %v", certdb.ErrInvalid, err)
	}
	return string(b), nil
}

// nonNil stores a missing key identifier as an empty BLOB, not NULL, so that
// equality filters keep working.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// nullable stores an empty optional BLOB as NULL.
func nullable(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// isConstraint reports whether err is a uniqueness violation of the primary
// key (another writer, possibly in another process, stored the serial first).
func isUniqueViolation(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	return se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}

// ReserveSerial records r in state StatusReserved. ErrDuplicate if the
// serial exists in any state; ErrInvalid for a negative shard.
func (s *Store) ReserveSerial(ctx context.Context, r *certdb.Reservation) error {
	if r == nil {
		return fmt.Errorf("sqlite: reserve serial: %w: nil reservation", certdb.ErrInvalid)
	}
	key, err := serialKey(r.Serial)
	if err != nil {
		return fmt.Errorf("sqlite: reserve serial: %w", err)
	}
	sans, err := encodeSANs(r.SANs)
	if err != nil {
		return fmt.Errorf("sqlite: reserve serial %x: %w", key, err)
	}
	if r.Shard < 0 {
		return fmt.Errorf("sqlite: reserve serial %x: %w: negative shard %d", key, certdb.ErrInvalid, r.Shard)
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO certificates
		(serial, issuer_key_id, subject, sans, not_before, not_after, status, lint_der, profile, requester, created_at, shard)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		key, nonNil(r.IssuerKeyID), r.Subject, sans, micros(r.NotBefore), micros(r.NotAfter),
		int(certdb.StatusReserved), nullable(r.LintDER), r.Profile, r.Requester, micros(s.now()), r.Shard)
	if isUniqueViolation(err) {
		return fmt.Errorf("sqlite: reserve serial %x: %w", key, certdb.ErrDuplicate)
	}
	if err != nil {
		return fmt.Errorf("sqlite: reserve serial %x: %v", key, err)
	}
	return nil
}

// AddCertificate stores an issued certificate (StatusValid). If the serial
// is reserved, the reservation is completed: CreatedAt and LintDER are kept,
// and every field of c that is set (non-empty, non-zero) replaces the
// reserved one (a zero Shard keeps the reservation's). If the serial is
// unknown, c is inserted. ErrDuplicate if the serial is already issued. c.DER
// is required; c.Status must be StatusAny or StatusValid; c.Shard must not be
// negative.
func (s *Store) AddCertificate(ctx context.Context, c *certdb.Certificate) (err error) {
	if c == nil {
		return fmt.Errorf("sqlite: add certificate: %w: nil certificate", certdb.ErrInvalid)
	}
	key, err := serialKey(c.Serial)
	if err != nil {
		return fmt.Errorf("sqlite: add certificate: %w", err)
	}
	if len(c.DER) == 0 {
		return fmt.Errorf("sqlite: add certificate %x: %w: no DER", key, certdb.ErrInvalid)
	}
	if c.Status != certdb.StatusAny && c.Status != certdb.StatusValid {
		return fmt.Errorf("sqlite: add certificate %x: %w: status %v (add stores issued, unrevoked certificates)", key, certdb.ErrInvalid, c.Status)
	}
	if _, err := encodeSANs(c.SANs); err != nil {
		return fmt.Errorf("sqlite: add certificate %x: %w", key, err)
	}
	if c.Shard < 0 {
		return fmt.Errorf("sqlite: add certificate %x: %w: negative shard %d", key, certdb.ErrInvalid, c.Shard)
	}

	tx, err := s.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE (see dsn)
	if err != nil {
		return fmt.Errorf("sqlite: add certificate %x: %v", key, err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	cur, err := scanCert(tx.QueryRowContext(ctx, selectCert+` WHERE serial = ?`, key))
	var rec certdb.Certificate
	switch {
	case errors.Is(err, sql.ErrNoRows):
		rec = *c
		rec.CreatedAt = s.now()
	case err != nil:
		return fmt.Errorf("sqlite: add certificate %x: %v", key, err)
	case cur.Status != certdb.StatusReserved:
		return fmt.Errorf("sqlite: add certificate %x: %w (status %v)", key, certdb.ErrDuplicate, cur.Status)
	default:
		rec = *cur
		merge(&rec, c)
	}
	rec.Status = certdb.StatusValid
	sans, err := encodeSANs(rec.SANs)
	if err != nil {
		return fmt.Errorf("sqlite: add certificate %x: %w", key, err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO certificates
		(serial, issuer_key_id, subject, sans, not_before, not_after, status, der, profile, requester, created_at, shard)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (serial) DO UPDATE SET
			issuer_key_id = excluded.issuer_key_id, subject = excluded.subject, sans = excluded.sans,
			not_before = excluded.not_before, not_after = excluded.not_after, status = excluded.status,
			der = excluded.der, profile = excluded.profile, requester = excluded.requester, shard = excluded.shard
		WHERE certificates.status = ?`,
		key, nonNil(rec.IssuerKeyID), rec.Subject, sans, micros(rec.NotBefore), micros(rec.NotAfter),
		int(certdb.StatusValid), c.DER, rec.Profile, rec.Requester, micros(rec.CreatedAt), rec.Shard,
		int(certdb.StatusReserved))
	if isUniqueViolation(err) {
		return fmt.Errorf("sqlite: add certificate %x: %w", key, certdb.ErrDuplicate)
	}
	if err != nil {
		return fmt.Errorf("sqlite: add certificate %x: %v", key, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: add certificate %x: commit: %v", key, err)
	}
	return nil
}

// merge copies the fields of c that are set onto the reserved record rec.
func merge(rec *certdb.Certificate, c *certdb.Certificate) {
	if len(c.IssuerKeyID) > 0 {
		rec.IssuerKeyID = c.IssuerKeyID
	}
	if c.Subject != "" {
		rec.Subject = c.Subject
	}
	if len(c.SANs) > 0 {
		rec.SANs = c.SANs
	}
	if !c.NotBefore.IsZero() {
		rec.NotBefore = c.NotBefore
	}
	if !c.NotAfter.IsZero() {
		rec.NotAfter = c.NotAfter
	}
	if c.Profile != "" {
		rec.Profile = c.Profile
	}
	if c.Requester != "" {
		rec.Requester = c.Requester
	}
	if c.Shard != 0 {
		rec.Shard = c.Shard
	}
}

// Revoke marks an issued certificate revoked at the given time and, once
// committed, announces it to the store's subscribers (see
// SubscribeRevocations). ErrNotFound, ErrNotIssued (reserved only),
// ErrAlreadyRevoked; ErrInvalid for a reason RFC 5280 does not define or a
// zero time.
func (s *Store) Revoke(ctx context.Context, serial *big.Int, reason certdb.Reason, at time.Time) (err error) {
	key, err := serialKey(serial)
	if err != nil {
		return fmt.Errorf("sqlite: revoke: %w", err)
	}
	if !reason.Valid() {
		return fmt.Errorf("sqlite: revoke %x: %w: reason %v is not an RFC 5280 CRLReason", key, certdb.ErrInvalid, reason)
	}
	if at.IsZero() {
		return fmt.Errorf("sqlite: revoke %x: %w: no revocation time", key, certdb.ErrInvalid)
	}
	tx, err := s.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE (see dsn)
	if err != nil {
		return fmt.Errorf("sqlite: revoke %x: %v", key, err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	var st int
	err = tx.QueryRowContext(ctx, `SELECT status FROM certificates WHERE serial = ?`, key).Scan(&st)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("sqlite: revoke %x: %w", key, certdb.ErrNotFound)
	case err != nil:
		return fmt.Errorf("sqlite: revoke %x: %v", key, err)
	case certdb.Status(st) == certdb.StatusReserved:
		return fmt.Errorf("sqlite: revoke %x: %w", key, certdb.ErrNotIssued)
	case certdb.Status(st) == certdb.StatusRevoked:
		return fmt.Errorf("sqlite: revoke %x: %w", key, certdb.ErrAlreadyRevoked)
	}
	_, err = tx.ExecContext(ctx, `UPDATE certificates SET status = ?, revoked_at = ?, reason = ? WHERE serial = ?`,
		int(certdb.StatusRevoked), micros(at), int(reason), key)
	if err != nil {
		return fmt.Errorf("sqlite: revoke %x: %v", key, err)
	}
	// Announced to other processes in the same transaction (revocation_events.go).
	if _, err = tx.ExecContext(ctx, `INSERT INTO revocation_events (serial, at) VALUES (?, ?)`, key, micros(s.now())); err != nil {
		return fmt.Errorf("sqlite: revoke %x: record event: %v", key, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: revoke %x: commit: %v", key, err)
	}
	s.publish(new(big.Int).SetBytes(key))
	return nil
}

const selectCert = `SELECT serial, issuer_key_id, subject, sans, not_before, not_after, status,
	revoked_at, reason, der, profile, requester, created_at, shard FROM certificates`

// scanCert reads one row selected with selectCert.
func scanCert(row interface{ Scan(...any) error }) (*certdb.Certificate, error) {
	var (
		c                         certdb.Certificate
		serial                    []byte
		sans                      string
		notBefore, notAfter, crAt int64
		status                    int
		revokedAt, reason         sql.NullInt64
	)
	err := row.Scan(&serial, &c.IssuerKeyID, &c.Subject, &sans, &notBefore, &notAfter, &status,
		&revokedAt, &reason, &c.DER, &c.Profile, &c.Requester, &crAt, &c.Shard)
	if err != nil {
		return nil, err
	}
	c.Serial = new(big.Int).SetBytes(serial)
	if err := json.Unmarshal([]byte(sans), &c.SANs); err != nil {
		return nil, fmt.Errorf("serial %x: bad SANs column: %v", serial, err)
	}
	if len(c.SANs) == 0 {
		c.SANs = nil
	}
	c.NotBefore, c.NotAfter, c.CreatedAt = fromMicros(notBefore), fromMicros(notAfter), fromMicros(crAt)
	c.Status = certdb.Status(status)
	if revokedAt.Valid {
		c.RevokedAt = fromMicros(revokedAt.Int64)
	}
	if reason.Valid {
		c.Reason = certdb.Reason(reason.Int64)
	}
	return &c, nil
}

// GetCertificate returns the record for serial in any state, or ErrNotFound.
func (s *Store) GetCertificate(ctx context.Context, serial *big.Int) (*certdb.Certificate, error) {
	key, err := serialKey(serial)
	if err != nil {
		return nil, fmt.Errorf("sqlite: get certificate: %w", err)
	}
	c, err := scanCert(s.r.QueryRowContext(ctx, selectCert+` WHERE serial = ?`, key))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: get certificate %x: %w", key, certdb.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: get certificate %x: %v", key, err)
	}
	return c, nil
}

// ListCertificates returns one page of records matching q, ordered by serial
// (byte-wise on the big-endian encoding).
func (s *Store) ListCertificates(ctx context.Context, q certdb.Query) ([]*certdb.Certificate, error) {
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("sqlite: list certificates: %w", err)
	}
	var (
		where []string
		args  []any
	)
	if q.Status == certdb.StatusAny {
		where = append(where, "status IN (?, ?)")
		args = append(args, int(certdb.StatusValid), int(certdb.StatusRevoked))
	} else {
		where = append(where, "status = ?")
		args = append(args, int(q.Status))
	}
	switch q.Expiry {
	case certdb.ExpiryUnexpired:
		where = append(where, "not_after > ?")
		args = append(args, micros(q.Now))
	case certdb.ExpiryExpired:
		where = append(where, "not_after <= ?")
		args = append(args, micros(q.Now))
	}
	if !q.ExpiringBefore.IsZero() {
		where = append(where, "not_after < ?")
		args = append(args, micros(q.ExpiringBefore))
	}
	if len(q.IssuerKeyID) > 0 {
		where = append(where, "issuer_key_id = ?")
		args = append(args, q.IssuerKeyID)
	}
	if q.Profile != "" {
		where = append(where, "profile = ?")
		args = append(args, q.Profile)
	}
	if q.After != nil {
		if q.After.Sign() < 0 {
			return nil, fmt.Errorf("sqlite: list certificates: %w: negative cursor", certdb.ErrInvalid)
		}
		where = append(where, "serial > ?")
		args = append(args, nonNil(q.After.Bytes()))
	}
	args = append(args, q.EffectiveLimit())
	query := selectCert + " WHERE " + strings.Join(where, " AND ") + " ORDER BY serial LIMIT ?"
	out, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list certificates: %v", err)
	}
	return out, nil
}

// ListRevoked returns every revoked certificate of issuerKeyID whose
// NotAfter is after now, ordered by serial.
func (s *Store) ListRevoked(ctx context.Context, issuerKeyID []byte, now time.Time) ([]*certdb.Certificate, error) {
	out, err := s.query(ctx, selectCert+` WHERE issuer_key_id = ? AND status = ? AND not_after > ? ORDER BY serial`,
		nonNil(issuerKeyID), int(certdb.StatusRevoked), micros(now))
	if err != nil {
		return nil, fmt.Errorf("sqlite: list revoked of issuer %x: %v", issuerKeyID, err)
	}
	return out, nil
}

func (s *Store) query(ctx context.Context, query string, args ...any) ([]*certdb.Certificate, error) {
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*certdb.Certificate
	for rows.Next() {
		c, err := scanCert(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
