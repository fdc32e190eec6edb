package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

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

// encodeStrings stores a string list as a JSON array ("[]" when empty).
func encodeStrings(field string, l []string) (string, error) {
	if len(l) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(l)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", certdb.ErrInvalid, field, err)
	}
	return string(b), nil
}

// decodeStrings reads a JSON array column; an empty array is nil.
func decodeStrings(field, col string) ([]string, error) {
	var l []string
	if err := json.Unmarshal([]byte(col), &l); err != nil {
		return nil, fmt.Errorf("bad %s column: %v", field, err)
	}
	if len(l) == 0 {
		return nil, nil
	}
	return l, nil
}

// nullMicros stores an optional time: NULL when zero.
func nullMicros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return micros(t)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// CreateToken stores t. ErrInvalid for a nil token, an empty ID, a hash that
// is not 32 bytes or a zero ExpiresAt; ErrDuplicate if the ID exists. A zero
// CreatedAt is set from the store's clock, in the database and in t. UsedAt
// and RevokedAt are stored as given.
func (s *Store) CreateToken(ctx context.Context, t *certdb.Token) error {
	if err := checkToken(t); err != nil {
		return fmt.Errorf("sqlite: create token: %w", err)
	}
	profiles, err := encodeStrings("profiles", t.Profiles)
	if err != nil {
		return fmt.Errorf("sqlite: create token %q: %w", t.ID, err)
	}
	names, err := encodeStrings("names", t.Names)
	if err != nil {
		return fmt.Errorf("sqlite: create token %q: %w", t.ID, err)
	}
	created := t.CreatedAt
	if created.IsZero() {
		created = s.now()
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO tokens
		(id, hash, profiles, names, single_use, admin, description, created_by, created_at, expires_at, used_at, revoked_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.Hash, profiles, names, boolInt(t.SingleUse), boolInt(t.Admin), t.Description, t.CreatedBy,
		micros(created), micros(t.ExpiresAt), nullMicros(t.UsedAt), nullMicros(t.RevokedAt))
	if isUniqueViolation(err) {
		return fmt.Errorf("sqlite: create token %q: %w", t.ID, certdb.ErrDuplicate)
	}
	if err != nil {
		return fmt.Errorf("sqlite: create token %q: %v", t.ID, err)
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = fromMicros(micros(created))
	}
	return nil
}

const selectToken = `SELECT id, hash, profiles, names, single_use, admin, description, created_by,
	created_at, expires_at, used_at, revoked_at FROM tokens`

// scanToken reads one row selected with selectToken.
func scanToken(row interface{ Scan(...any) error }) (*certdb.Token, error) {
	var (
		t                 certdb.Token
		profiles, names   string
		singleUse, admin  int
		created, expires  int64
		usedAt, revokedAt sql.NullInt64
	)
	err := row.Scan(&t.ID, &t.Hash, &profiles, &names, &singleUse, &admin, &t.Description, &t.CreatedBy,
		&created, &expires, &usedAt, &revokedAt)
	if err != nil {
		return nil, err
	}
	if t.Profiles, err = decodeStrings("profiles", profiles); err != nil {
		return nil, fmt.Errorf("token %q: %v", t.ID, err)
	}
	if t.Names, err = decodeStrings("names", names); err != nil {
		return nil, fmt.Errorf("token %q: %v", t.ID, err)
	}
	t.SingleUse, t.Admin = singleUse != 0, admin != 0
	t.CreatedAt, t.ExpiresAt = fromMicros(created), fromMicros(expires)
	if usedAt.Valid {
		t.UsedAt = fromMicros(usedAt.Int64)
	}
	if revokedAt.Valid {
		t.RevokedAt = fromMicros(revokedAt.Int64)
	}
	return &t, nil
}

// GetToken returns the token with id, or ErrNotFound.
func (s *Store) GetToken(ctx context.Context, id string) (*certdb.Token, error) {
	t, err := scanToken(s.r.QueryRowContext(ctx, selectToken+` WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: get token %q: %w", id, certdb.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: get token %q: %v", id, err)
	}
	return t, nil
}

// ListTokens returns every token, newest (CreatedAt) first; tokens created at
// the same time are ordered by ID.
func (s *Store) ListTokens(ctx context.Context) ([]*certdb.Token, error) {
	rows, err := s.r.QueryContext(ctx, selectToken+` ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list tokens: %v", err)
	}
	defer rows.Close()
	var out []*certdb.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list tokens: %v", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list tokens: %v", err)
	}
	return out, nil
}

// RevokeToken marks the token revoked at the given time. ErrNotFound;
// ErrTokenRevoked if it already was; ErrInvalid for a zero time. Of
// concurrent calls on one token, from any number of processes, exactly one
// succeeds.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) error {
	if at.IsZero() {
		return fmt.Errorf("sqlite: revoke token %q: %w: no revocation time", id, certdb.ErrInvalid)
	}
	res, err := s.w.ExecContext(ctx, `UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, micros(at), id)
	if err != nil {
		return fmt.Errorf("sqlite: revoke token %q: %v", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: revoke token %q: %v", id, err)
	} else if n == 1 {
		return nil
	}
	return s.tokenMiss(ctx, "revoke token", id)
}

// useToken records a use. The WHERE clause is the whole decision: a revoked
// token never matches, a single-use token matches only while unused. So of
// concurrent calls on a single-use token exactly one updates a row, whichever
// connection or process it comes from (SQLite serializes writers). For other
// tokens used_at only moves forward.
const useToken = `UPDATE tokens
	SET used_at = CASE WHEN used_at IS NULL OR used_at < ?1 THEN ?1 ELSE used_at END
	WHERE id = ?2 AND revoked_at IS NULL AND (single_use = 0 OR used_at IS NULL)`

// UseToken records a use of the token at the given time. A single-use token
// is consumed: of concurrent callers (in any process) exactly one succeeds,
// the others get ErrTokenUsed. For other tokens UsedAt becomes the latest use.
// ErrNotFound; ErrTokenRevoked for a revoked token (even a used one);
// ErrInvalid for a zero time. UseToken does not look at ExpiresAt: the
// caller checks it with its own clock.
func (s *Store) UseToken(ctx context.Context, id string, at time.Time) error {
	if at.IsZero() {
		return fmt.Errorf("sqlite: use token %q: %w: no time of use", id, certdb.ErrInvalid)
	}
	res, err := s.w.ExecContext(ctx, useToken, micros(at), id)
	if err != nil {
		return fmt.Errorf("sqlite: use token %q: %v", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: use token %q: %v", id, err)
	} else if n == 1 {
		return nil
	}
	return s.tokenMiss(ctx, "use token", id)
}

// tokenMiss explains why an update of token id matched no row. A token's
// state only moves forward (unused -> used, unrevoked -> revoked) and tokens
// are never deleted, so what is read now explains the miss.
func (s *Store) tokenMiss(ctx context.Context, op, id string) error {
	var singleUse, used, revoked bool
	err := s.r.QueryRowContext(ctx, `SELECT single_use, used_at IS NOT NULL, revoked_at IS NOT NULL FROM tokens WHERE id = ?`, id).
		Scan(&singleUse, &used, &revoked)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("sqlite: %s %q: %w", op, id, certdb.ErrNotFound)
	case err != nil:
		return fmt.Errorf("sqlite: %s %q: %v", op, id, err)
	case revoked:
		return fmt.Errorf("sqlite: %s %q: %w", op, id, certdb.ErrTokenRevoked)
	case singleUse && used:
		return fmt.Errorf("sqlite: %s %q: %w", op, id, certdb.ErrTokenUsed)
	}
	return fmt.Errorf("sqlite: %s %q: not updated (single use %t, used %t, revoked %t)", op, id, singleUse, used, revoked)
}

// AppendAudit stores e and sets e.ID; IDs increase and are never reused. A
// zero e.Time is set from the store's clock, in the database and in e.
// ErrInvalid for a nil event or an empty Action.
func (s *Store) AppendAudit(ctx context.Context, e *certdb.AuditEvent) error {
	switch {
	case e == nil:
		return fmt.Errorf("sqlite: append audit event: %w: nil event", certdb.ErrInvalid)
	case e.Action == "":
		return fmt.Errorf("sqlite: append audit event: %w: no action", certdb.ErrInvalid)
	}
	at := e.Time
	if at.IsZero() {
		at = s.now()
	}
	var id int64
	err := s.w.QueryRowContext(ctx, `INSERT INTO audit (time, actor, action, target, outcome, detail)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
		micros(at), e.Actor, e.Action, e.Target, e.Outcome, e.Detail).Scan(&id)
	if err != nil {
		return fmt.Errorf("sqlite: append audit event %s by %q: %v", e.Action, e.Actor, err)
	}
	e.ID = id
	if e.Time.IsZero() {
		e.Time = fromMicros(micros(at))
	}
	return nil
}

// ListAudit returns one page of the events matching q, newest (highest ID)
// first. ErrInvalid for a negative Before.
func (s *Store) ListAudit(ctx context.Context, q certdb.AuditQuery) ([]*certdb.AuditEvent, error) {
	if q.Before < 0 {
		return nil, fmt.Errorf("sqlite: list audit: %w: negative cursor %d", certdb.ErrInvalid, q.Before)
	}
	var (
		where = []string{"1"}
		args  []any
	)
	if q.Actor != "" {
		where = append(where, "actor = ?")
		args = append(args, q.Actor)
	}
	if q.Action != "" {
		where = append(where, "action = ?")
		args = append(args, q.Action)
	}
	if !q.Since.IsZero() {
		where = append(where, "time >= ?")
		args = append(args, micros(q.Since))
	}
	if q.Before > 0 {
		where = append(where, "id < ?")
		args = append(args, q.Before)
	}
	args = append(args, q.EffectiveLimit())
	rows, err := s.r.QueryContext(ctx, `SELECT id, time, actor, action, target, outcome, detail FROM audit
		WHERE `+strings.Join(where, " AND ")+` ORDER BY id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list audit: %v", err)
	}
	defer rows.Close()
	var out []*certdb.AuditEvent
	for rows.Next() {
		var (
			e  certdb.AuditEvent
			at int64
		)
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Target, &e.Outcome, &e.Detail); err != nil {
			return nil, fmt.Errorf("sqlite: list audit: %v", err)
		}
		e.Time = fromMicros(at)
		out = append(out, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list audit: %v", err)
	}
	return out, nil
}
