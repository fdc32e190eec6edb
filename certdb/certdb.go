// Package certdb defines the records certctl keeps about every certificate it
// issues, and the Store contract that the concrete stores implement.
//
// The package holds types, the Status and Reason enums and sentinel errors
// only: no SQL and no driver. Implementations live in certdb/postgres
// (production, PostgreSQL through pgx) and certdb/sqlite (embedded default).
// Both must pass the conformance suite in certdb/certdbtest.
//
// # Life of a record
//
// The CA first calls [Store.ReserveSerial] with the serial it drew and what it
// is about to sign (a row in state [StatusReserved]); only then does it sign,
// and it hands the certificate out only after [Store.AddCertificate] has
// stored the DER (state [StatusValid]). A reservation that never completes
// (crash, signing failure) stays visible as an orphaned intent: a serial is
// never reused.
//
// # Times
//
// Stores keep times in UTC with microsecond precision; callers should not
// expect finer resolution back.
package certdb

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Sentinel errors. Stores translate driver errors into these at their boundary;
// callers branch on them with errors.Is.
var (
	// ErrNotFound: no record with that serial (or no reservation to complete).
	ErrNotFound = errors.New("certdb: not found")
	// ErrDuplicate: the serial is already reserved or stored.
	ErrDuplicate = errors.New("certdb: duplicate serial")
	// ErrAlreadyRevoked: Revoke on a certificate that is already revoked.
	ErrAlreadyRevoked = errors.New("certdb: already revoked")
	// ErrNotIssued: the operation needs an issued certificate but the serial
	// is only reserved (signing never completed).
	ErrNotIssued = errors.New("certdb: certificate not issued")
	// ErrSchema: the database schema is missing or older than this binary
	// needs; run `certctl db migrate`.
	ErrSchema = errors.New("certdb: database schema is not up to date")
	// ErrInvalid: the record or query given to the store is malformed.
	ErrInvalid = errors.New("certdb: invalid argument")
)

// Status is the stored state of a serial. Expiry is not a status: it is
// derived from NotAfter at query time (see Query.Expiry).
type Status int

// Status values. The zero value means "any issued status" in a Query.
const (
	StatusAny      Status = 0
	StatusReserved Status = 1 // serial and intent recorded; certificate not (yet) signed
	StatusValid    Status = 2 // issued and not revoked
	StatusRevoked  Status = 3 // issued and revoked
)

var statusNames = map[Status]string{
	StatusAny:      "any",
	StatusReserved: "reserved",
	StatusValid:    "valid",
	StatusRevoked:  "revoked",
}

func (s Status) String() string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// ParseStatus parses the names that String returns.
func ParseStatus(s string) (Status, error) {
	for st, n := range statusNames {
		if strings.EqualFold(n, s) {
			return st, nil
		}
	}
	return StatusAny, fmt.Errorf("%w: unknown status %q (want reserved, valid or revoked)", ErrInvalid, s)
}

// Reason is an RFC 5280 §5.3.1 CRLReason code.
type Reason int

// RFC 5280 §5.3.1 reason codes (7 is not used).
const (
	ReasonUnspecified          Reason = 0
	ReasonKeyCompromise        Reason = 1
	ReasonCACompromise         Reason = 2
	ReasonAffiliationChanged   Reason = 3
	ReasonSuperseded           Reason = 4
	ReasonCessationOfOperation Reason = 5
	ReasonCertificateHold      Reason = 6
	ReasonRemoveFromCRL        Reason = 8
	ReasonPrivilegeWithdrawn   Reason = 9
	ReasonAACompromise         Reason = 10
)

var reasonNames = []struct {
	r    Reason
	name string
}{
	{ReasonUnspecified, "unspecified"},
	{ReasonKeyCompromise, "keyCompromise"},
	{ReasonCACompromise, "cACompromise"},
	{ReasonAffiliationChanged, "affiliationChanged"},
	{ReasonSuperseded, "superseded"},
	{ReasonCessationOfOperation, "cessationOfOperation"},
	{ReasonCertificateHold, "certificateHold"},
	{ReasonRemoveFromCRL, "removeFromCRL"},
	{ReasonPrivilegeWithdrawn, "privilegeWithdrawn"},
	{ReasonAACompromise, "aACompromise"},
}

func (r Reason) String() string {
	for _, n := range reasonNames {
		if n.r == r {
			return n.name
		}
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// Valid reports whether r is a code defined by RFC 5280.
func (r Reason) Valid() bool {
	for _, n := range reasonNames {
		if n.r == r {
			return true
		}
	}
	return false
}

// ReasonNames lists the accepted reason names, for usage texts.
func ReasonNames() []string {
	out := make([]string, len(reasonNames))
	for i, n := range reasonNames {
		out[i] = n.name
	}
	return out
}

// ParseReason accepts an RFC 5280 reason name (case-insensitive) or its code.
func ParseReason(s string) (Reason, error) {
	for _, n := range reasonNames {
		if strings.EqualFold(n.name, s) || fmt.Sprint(int(n.r)) == s {
			return n.r, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown revocation reason %q (want one of %s)", ErrInvalid, s, strings.Join(ReasonNames(), ", "))
}

// Reservation is the intent recorded before a certificate is signed.
type Reservation struct {
	Serial      *big.Int  // positive, at most 20 octets
	IssuerKeyID []byte    // SubjectKeyId of the issuing CA certificate
	Profile     string    // signing profile name
	Requester   string    // who asked (token id, client identity, "cli:root", …)
	Subject     string    // subject DN in RFC 2253 form
	SANs        []string  // subject alternative names, as "dns:…", "ip:…", "uri:…", "email:…"
	NotBefore   time.Time // validity the certificate will carry
	NotAfter    time.Time
	// Shard is the CRL shard the certificate is assigned to (0 when CRLs
	// are not sharded); its CDP names that shard's CRL.
	Shard int
	// LintDER is the lint certificate (same TBS, signed by a throwaway key)
	// whose TBS the CA is about to sign for real. Optional.
	LintDER []byte
}

// Certificate is a stored certificate record.
type Certificate struct {
	Serial      *big.Int
	IssuerKeyID []byte
	Subject     string
	SANs        []string
	NotBefore   time.Time
	NotAfter    time.Time
	Status      Status
	RevokedAt   time.Time // zero unless Status == StatusRevoked
	Reason      Reason    // meaningful only when Status == StatusRevoked
	DER         []byte    // nil while Status == StatusReserved
	Profile     string
	Requester   string
	CreatedAt   time.Time // when the serial was reserved (set by the store)
	Shard       int       // CRL shard (see Reservation.Shard)
}

// Expired reports whether the certificate is past its NotAfter at now.
func (c *Certificate) Expired(now time.Time) bool { return !now.Before(c.NotAfter) }

// SerialHex formats a serial the way certctl prints and parses it:
// lower-case hex, no separators, even length.
func SerialHex(s *big.Int) string {
	if s == nil {
		return ""
	}
	return hex.EncodeToString(s.Bytes())
}

// ParseSerial parses a hex serial as printed by SerialHex. Colons (as
// printed by openssl) and a leading "0x" are accepted.
func ParseSerial(s string) (*big.Int, error) {
	h := strings.TrimPrefix(strings.TrimPrefix(strings.ReplaceAll(strings.TrimSpace(s), ":", ""), "0x"), "0X")
	if h == "" {
		return nil, fmt.Errorf("%w: empty serial", ErrInvalid)
	}
	n, ok := new(big.Int).SetString(h, 16)
	if !ok {
		return nil, fmt.Errorf("%w: serial %q is not hexadecimal", ErrInvalid, s)
	}
	if n.Sign() <= 0 || len(n.Bytes()) > 20 {
		return nil, fmt.Errorf("%w: serial %q must be positive and at most 20 octets (RFC 5280 §4.1.2.2)", ErrInvalid, s)
	}
	return n, nil
}

// Expiry filters on NotAfter relative to Query.Now.
type Expiry int

// Expiry filter values.
const (
	ExpiryAny       Expiry = iota
	ExpiryUnexpired        // NotAfter > Now
	ExpiryExpired          // NotAfter <= Now
)

// Query selects certificate records. The zero Query lists every issued
// (not merely reserved) certificate, in serial order.
type Query struct {
	Status Status // StatusAny = valid or revoked; StatusReserved lists orphaned/in-flight intents
	Expiry Expiry
	Now    time.Time // reference time for Expiry; required when Expiry != ExpiryAny
	// ExpiringBefore, when set, keeps certificates with NotAfter < ExpiringBefore.
	ExpiringBefore time.Time
	IssuerKeyID    []byte // when set, only certificates from this issuer
	Profile        string // when set, only this profile
	// After is the pagination cursor: only serials ordered after it are
	// returned. Pass the Serial of the last record of the previous page.
	After *big.Int
	Limit int // 0 means DefaultLimit; at most MaxLimit
}

// Pagination limits.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// EffectiveLimit returns the page size a store must use for q.
func (q Query) EffectiveLimit() int {
	switch {
	case q.Limit <= 0:
		return DefaultLimit
	case q.Limit > MaxLimit:
		return MaxLimit
	}
	return q.Limit
}

// Validate checks a query before a store runs it.
func (q Query) Validate() error {
	if q.Expiry != ExpiryAny && q.Now.IsZero() {
		return fmt.Errorf("%w: query with an expiry filter needs Now", ErrInvalid)
	}
	if q.Expiry < ExpiryAny || q.Expiry > ExpiryExpired {
		return fmt.Errorf("%w: unknown expiry filter %d", ErrInvalid, q.Expiry)
	}
	if q.Status < StatusAny || q.Status > StatusRevoked {
		return fmt.Errorf("%w: unknown status %d", ErrInvalid, q.Status)
	}
	return nil
}

// Store is the full certdb contract. Consumers should declare the smaller
// interface they actually use (STYLE.md §2); this one exists so that the
// conformance suite and the command wiring have a name for "a whole store".
//
// Implementations are safe for concurrent use, and several processes may use
// one database at once.
type Store interface {
	// ReserveSerial records a serial and the intent to sign it, in state
	// StatusReserved. ErrDuplicate if the serial exists in any state.
	ReserveSerial(ctx context.Context, r *Reservation) error
	// AddCertificate stores an issued certificate. If the serial is reserved
	// the reservation is completed (Requester and Profile from c override it
	// when set); if it is unknown a new record is inserted (CA certificates
	// created by `certctl init`). ErrDuplicate if the serial is already issued.
	AddCertificate(ctx context.Context, c *Certificate) error
	// GetCertificate returns the record for serial in any state, or ErrNotFound.
	GetCertificate(ctx context.Context, serial *big.Int) (*Certificate, error)
	// ListCertificates returns one page of records matching q, ordered by
	// serial (byte-wise on the big-endian encoding).
	ListCertificates(ctx context.Context, q Query) ([]*Certificate, error)
	// Revoke marks an issued certificate revoked at the given time with a
	// reason. ErrNotFound, ErrNotIssued (reserved only), ErrAlreadyRevoked.
	Revoke(ctx context.Context, serial *big.Int, reason Reason, at time.Time) error
	// ListRevoked returns every revoked certificate of issuerKeyID whose
	// NotAfter is after now (what a CRL must list), ordered by serial.
	ListRevoked(ctx context.Context, issuerKeyID []byte, now time.Time) ([]*Certificate, error)
	// Ping checks that the database is reachable.
	Ping(ctx context.Context) error
	// Close releases the store's resources. Idempotent.
	Close() error
}

// State is the status a user sees: "valid", "expired" (valid but past
// NotAfter at now), "revoked" or "reserved".
func (c *Certificate) State(now time.Time) string {
	if c.Status == StatusValid && c.Expired(now) {
		return "expired"
	}
	return c.Status.String()
}

// StateQuery returns the query that selects a user-facing state (see
// Certificate.State); "" selects every issued certificate.
func StateQuery(state string, now time.Time) (Query, error) {
	q := Query{Now: now}
	switch state {
	case "":
	case "valid":
		q.Status, q.Expiry = StatusValid, ExpiryUnexpired
	case "expired":
		q.Status, q.Expiry = StatusValid, ExpiryExpired
	case "revoked":
		q.Status = StatusRevoked
	case "reserved":
		q.Status = StatusReserved
	default:
		return Query{}, fmt.Errorf("%w: status %q: want valid, expired, revoked or reserved", ErrInvalid, state)
	}
	return q, nil
}

// CheckSchemaVersion compares a database's schema version with the one this
// binary needs. The error wraps ErrSchema and says what to do: migrate an
// older database, upgrade certctl for a newer one.
func CheckSchemaVersion(current, wanted int) error {
	switch {
	case current < wanted:
		return fmt.Errorf("%w: schema version %d, this certctl needs %d; run `certctl db migrate`", ErrSchema, current, wanted)
	case current > wanted:
		return fmt.Errorf("%w: schema version %d is newer than this certctl (version %d); upgrade certctl", ErrSchema, current, wanted)
	}
	return nil
}
