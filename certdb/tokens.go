package certdb

import (
	"context"
	"errors"
	"time"
)

// Token and audit sentinels.
var (
	// ErrTokenUsed: a single-use token was already consumed.
	ErrTokenUsed = errors.New("certdb: token already used")
	// ErrTokenRevoked: the token was revoked.
	ErrTokenRevoked = errors.New("certdb: token revoked")
)

// Token is an API token record. The secret itself is never stored: only
// its SHA-256 (tokens carry 256 random bits, so a fast hash is enough, as
// for GitHub's and Vault's service tokens).
type Token struct {
	ID          string    // public identifier, unique; appears in the token text and in logs
	Hash        []byte    // SHA-256 of the secret part
	Profiles    []string  // profiles the token may issue under
	Names       []string  // name patterns (issuance name-pattern syntax) the token may request
	SingleUse   bool      // consumed by its first issuance
	Admin       bool      // may call everything (revoke any certificate, list, …)
	Description string    // operator's note
	CreatedBy   string    // who created it
	CreatedAt   time.Time // set by the store when zero
	ExpiresAt   time.Time // required
	UsedAt      time.Time // zero until a single-use token is consumed (or last use of any token)
	RevokedAt   time.Time // zero unless revoked
}

// TokenStore keeps API tokens. Safe for concurrent use across processes.
type TokenStore interface {
	// CreateToken stores t. ErrDuplicate if the ID exists; ErrInvalid if the
	// ID, hash (32 bytes) or expiry is missing. A zero CreatedAt is set by
	// the store (in t too).
	CreateToken(ctx context.Context, t *Token) error
	// GetToken returns the token with id, or ErrNotFound.
	GetToken(ctx context.Context, id string) (*Token, error)
	// ListTokens returns every token, newest first.
	ListTokens(ctx context.Context) ([]*Token, error)
	// RevokeToken marks the token revoked at the given time. ErrNotFound;
	// ErrTokenRevoked if it already was.
	RevokeToken(ctx context.Context, id string, at time.Time) error
	// UseToken records a use at the given time. For a single-use token it
	// atomically consumes it: of concurrent callers (in any process) exactly
	// one succeeds and the others get ErrTokenUsed. ErrNotFound;
	// ErrTokenRevoked for a revoked token (also when it was used before).
	// For other tokens UsedAt becomes the latest use.
	//
	// The store does not look at ExpiresAt: the caller compares it with its
	// own clock before calling UseToken.
	UseToken(ctx context.Context, id string, at time.Time) error
}

// AuditEvent is one audited action: who did what, to what, when, and how it
// ended.
type AuditEvent struct {
	ID      int64     // assigned by the store, increasing
	Time    time.Time // when it happened
	Actor   string    // "token:ID", "mtls:SERIAL", "hmac:KEY", "cli:USER", …
	Action  string    // "issue", "revoke", "renew", "token.create", "token.use", "token.revoke", …
	Target  string    // serial (hex), token id, …
	Outcome string    // "ok", "denied", "refused", "error"
	Detail  string    // short human text (profile, names, error message)
}

// AuditQuery selects audit events, newest first.
type AuditQuery struct {
	Actor  string    // when set, only this actor
	Action string    // when set, only this action
	Since  time.Time // when set, only events at or after it
	Before int64     // pagination cursor: only events with ID < Before (0 = no bound)
	Limit  int       // 0 means DefaultLimit; at most MaxLimit
}

// EffectiveLimit returns the page size a store must use for q: the same
// rules as Query.EffectiveLimit.
func (q AuditQuery) EffectiveLimit() int { return Query{Limit: q.Limit}.EffectiveLimit() }

// AuditStore appends and reads the audit trail. Appends from many processes
// are safe.
type AuditStore interface {
	// AppendAudit stores e and sets e.ID. A zero e.Time is set by the store
	// (in e too). ErrInvalid for a nil event or an empty Action.
	AppendAudit(ctx context.Context, e *AuditEvent) error
	// ListAudit returns one page of the events matching q, newest (highest
	// ID) first. ErrInvalid for a negative Before.
	ListAudit(ctx context.Context, q AuditQuery) ([]*AuditEvent, error)
}

// PoolStats describes a store's connection pool, for metrics. Stores with
// a pool implement `PoolStats() PoolStats`.
type PoolStats struct {
	Acquired, Idle, Total, Max      int32
	AcquireCount, EmptyAcquireCount int64
}
