package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certctl/certctl/certdb"
)

var (
	_ certdb.TokenStore = (*Store)(nil)
	_ certdb.AuditStore = (*Store)(nil)
)

// tokenHashSize is the size of a SHA-256 digest, the only hash stored.
const tokenHashSize = 32

// checkToken validates a token before it is stored.
func checkToken(t *certdb.Token) error {
	switch {
	case t == nil:
		return fmt.Errorf("%w: nil token", certdb.ErrInvalid)
	case t.ID == "":
		return fmt.Errorf("%w: token without an ID", certdb.ErrInvalid)
	case len(t.Hash) != tokenHashSize:
		return fmt.Errorf("%w: token %q: hash is %d bytes, want %d (SHA-256)", certdb.ErrInvalid, t.ID, len(t.Hash), tokenHashSize)
	case t.ExpiresAt.IsZero():
		return fmt.Errorf("%w: token %q: no expiry", certdb.ErrInvalid, t.ID)
	}
	return nil
}

// nullTime sends a zero time as NULL.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := utc(t)
	return &u
}

// CreateToken stores t. ErrInvalid for a nil token, an empty ID, a hash that
// is not 32 bytes or a zero ExpiresAt; ErrDuplicate if the ID exists. A zero
// CreatedAt is set by the database (now()), and in t. UsedAt and RevokedAt
// are stored as given.
func (s *Store) CreateToken(ctx context.Context, t *certdb.Token) error {
	if err := checkToken(t); err != nil {
		return fmt.Errorf("postgres: create token: %w", err)
	}
	var created time.Time
	err := s.pool.QueryRow(ctx, `INSERT INTO tokens
		(id, hash, profiles, names, single_use, admin, description, created_by, created_at, expires_at, used_at, revoked_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, coalesce($9, now()), $10, $11, $12)
		RETURNING created_at`,
		t.ID, t.Hash, nonNilSANs(t.Profiles), nonNilSANs(t.Names), t.SingleUse, t.Admin, t.Description, t.CreatedBy,
		nullTime(t.CreatedAt), utc(t.ExpiresAt), nullTime(t.UsedAt), nullTime(t.RevokedAt)).Scan(&created)
	if err != nil {
		return s.dbError(fmt.Sprintf("create token %q", t.ID), err)
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = created.UTC()
	}
	return nil
}

// tokenColumns are the columns scanToken reads, in order.
const tokenColumns = `id, hash, profiles, names, single_use, admin, description, created_by, created_at, expires_at, used_at, revoked_at`

func scanToken(row pgx.Row) (*certdb.Token, error) {
	var (
		t                 certdb.Token
		usedAt, revokedAt *time.Time
	)
	if err := row.Scan(&t.ID, &t.Hash, &t.Profiles, &t.Names, &t.SingleUse, &t.Admin, &t.Description, &t.CreatedBy,
		&t.CreatedAt, &t.ExpiresAt, &usedAt, &revokedAt); err != nil {
		return nil, err
	}
	if len(t.Profiles) == 0 {
		t.Profiles = nil
	}
	if len(t.Names) == 0 {
		t.Names = nil
	}
	t.CreatedAt, t.ExpiresAt = t.CreatedAt.UTC(), t.ExpiresAt.UTC()
	if usedAt != nil {
		t.UsedAt = usedAt.UTC()
	}
	if revokedAt != nil {
		t.RevokedAt = revokedAt.UTC()
	}
	return &t, nil
}

// GetToken returns the token with id, or ErrNotFound.
func (s *Store) GetToken(ctx context.Context, id string) (*certdb.Token, error) {
	t, err := scanToken(s.pool.QueryRow(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id = $1`, id))
	if err != nil {
		return nil, s.dbError(fmt.Sprintf("get token %q", id), err)
	}
	return t, nil
}

// ListTokens returns every token, newest (CreatedAt) first; tokens created at
// the same time are ordered by ID.
func (s *Store) ListTokens(ctx context.Context) ([]*certdb.Token, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+tokenColumns+` FROM tokens ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, s.dbError("list tokens", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*certdb.Token, error) { return scanToken(row) })
	if err != nil {
		return nil, s.dbError("list tokens", err)
	}
	return out, nil
}

// RevokeToken marks the token revoked at the given time. ErrNotFound;
// ErrTokenRevoked if it already was; ErrInvalid for a zero time. Of
// concurrent calls on one token, from any number of processes, exactly one
// succeeds.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) error {
	op := fmt.Sprintf("revoke token %q", id)
	if at.IsZero() {
		return fmt.Errorf("postgres: %s: %w: no revocation time", op, certdb.ErrInvalid)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL`, id, utc(at))
	if err != nil {
		return s.dbError(op, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	return s.tokenMiss(ctx, op, id)
}

// useToken records a use. The WHERE clause is the whole decision: a revoked
// token never matches, a single-use token matches only while unused. Under
// READ COMMITTED, a concurrent UPDATE of the same row waits for the first to
// commit and re-checks the WHERE clause on the new row version, so of
// concurrent calls on a single-use token exactly one updates a row, whichever
// process it comes from. For other tokens used_at only moves forward
// (greatest ignores NULL).
const useToken = `UPDATE tokens SET used_at = greatest(used_at, $2)
	WHERE id = $1 AND revoked_at IS NULL AND (NOT single_use OR used_at IS NULL)`

// UseToken records a use of the token at the given time. A single-use token
// is consumed: of concurrent callers (in any process) exactly one succeeds,
// the others get ErrTokenUsed. For other tokens UsedAt becomes the latest use.
// ErrNotFound; ErrTokenRevoked for a revoked token (even a used one);
// ErrInvalid for a zero time. UseToken does not look at ExpiresAt: the
// caller checks it with its own clock.
func (s *Store) UseToken(ctx context.Context, id string, at time.Time) error {
	op := fmt.Sprintf("use token %q", id)
	if at.IsZero() {
		return fmt.Errorf("postgres: %s: %w: no time of use", op, certdb.ErrInvalid)
	}
	tag, err := s.pool.Exec(ctx, useToken, id, utc(at))
	if err != nil {
		return s.dbError(op, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	return s.tokenMiss(ctx, op, id)
}

// tokenMiss explains why an update of token id matched no row. A token's
// state only moves forward (unused -> used, unrevoked -> revoked) and tokens
// are never deleted, so what is read now explains the miss.
func (s *Store) tokenMiss(ctx context.Context, op, id string) error {
	var singleUse, used, revoked bool
	err := s.pool.QueryRow(ctx, `SELECT single_use, used_at IS NOT NULL, revoked_at IS NOT NULL FROM tokens WHERE id = $1`, id).
		Scan(&singleUse, &used, &revoked)
	switch {
	case err != nil:
		return s.dbError(op, err) // pgx.ErrNoRows: ErrNotFound
	case revoked:
		return fmt.Errorf("postgres: %s: %w", op, certdb.ErrTokenRevoked)
	case singleUse && used:
		return fmt.Errorf("postgres: %s: %w", op, certdb.ErrTokenUsed)
	}
	return fmt.Errorf("postgres: %s: not updated (single use %t, used %t, revoked %t)", op, singleUse, used, revoked)
}

// AppendAudit stores e and sets e.ID. IDs come from a sequence: they
// increase, may have gaps, and concurrent appends may become visible out of
// ID order. A zero e.Time is set by the database (now()), and in e.
// ErrInvalid for a nil event or an empty Action.
func (s *Store) AppendAudit(ctx context.Context, e *certdb.AuditEvent) error {
	switch {
	case e == nil:
		return fmt.Errorf("postgres: append audit event: %w: nil event", certdb.ErrInvalid)
	case e.Action == "":
		return fmt.Errorf("postgres: append audit event: %w: no action", certdb.ErrInvalid)
	}
	var (
		id int64
		at time.Time
	)
	err := s.pool.QueryRow(ctx, `INSERT INTO audit (time, actor, action, target, outcome, detail)
		VALUES (coalesce($1, now()), $2, $3, $4, $5, $6) RETURNING id, time`,
		nullTime(e.Time), e.Actor, e.Action, e.Target, e.Outcome, e.Detail).Scan(&id, &at)
	if err != nil {
		return s.dbError(fmt.Sprintf("append audit event %s by %q", e.Action, e.Actor), err)
	}
	e.ID = id
	if e.Time.IsZero() {
		e.Time = at.UTC()
	}
	return nil
}

// ListAudit returns one page of the events matching q, newest (highest ID)
// first. ErrInvalid for a negative Before.
func (s *Store) ListAudit(ctx context.Context, q certdb.AuditQuery) ([]*certdb.AuditEvent, error) {
	if q.Before < 0 {
		return nil, fmt.Errorf("postgres: list audit: %w: negative cursor %d", certdb.ErrInvalid, q.Before)
	}
	var (
		where = []string{"true"}
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if q.Actor != "" {
		where = append(where, "actor = "+arg(q.Actor))
	}
	if q.Action != "" {
		where = append(where, "action = "+arg(q.Action))
	}
	if !q.Since.IsZero() {
		where = append(where, "time >= "+arg(utc(q.Since)))
	}
	if q.Before > 0 {
		where = append(where, "id < "+arg(q.Before))
	}
	sql := `SELECT id, time, actor, action, target, outcome, detail FROM audit WHERE ` +
		strings.Join(where, " AND ") + ` ORDER BY id DESC LIMIT ` + arg(q.EffectiveLimit())
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, s.dbError("list audit", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*certdb.AuditEvent, error) {
		var e certdb.AuditEvent
		if err := row.Scan(&e.ID, &e.Time, &e.Actor, &e.Action, &e.Target, &e.Outcome, &e.Detail); err != nil {
			return nil, err
		}
		e.Time = e.Time.UTC()
		return &e, nil
	})
	if err != nil {
		return nil, s.dbError("list audit", err)
	}
	return out, nil
}
