package revocation

import (
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrRevoked: a verified OCSP response or CRL says the certificate is
	// revoked. The error is a *RevokedError.
	ErrRevoked = errors.New("revocation: certificate is revoked")
	// ErrUnavailable: in hard-fail mode, no source gave a verified answer.
	// The error is an *UnavailableError listing each attempt.
	ErrUnavailable = errors.New("revocation: revocation status unavailable")
	// ErrInvalidResponse: an OCSP response or CRL was fetched but cannot be
	// trusted (bad signature, wrong signer, malformed, expired, not yet
	// valid, out of scope). One attempt's error wraps it.
	ErrInvalidResponse = errors.New("revocation: invalid OCSP response or CRL")
	// ErrUnknown: the OCSP responder answered "unknown" (or "unauthorized")
	// for the certificate. One attempt's error wraps it.
	ErrUnknown = errors.New("revocation: responder does not know the certificate")
	// ErrTooLarge: a response or CRL exceeded its size limit.
	ErrTooLarge = errors.New("revocation: response too large")
	// ErrNoIssuer: Check was given a chain without the leaf's issuer.
	ErrNoIssuer = errors.New("revocation: chain has no issuer certificate (want chain[0] leaf, chain[1] issuer)")
	// ErrNoRevocationInfo: the certificate names no OCSP responder and no
	// CRL distribution point over http(s); only returned in hard-fail mode
	// with WithRequireInfo.
	ErrNoRevocationInfo = errors.New("revocation: certificate has no http OCSP responder or CRL distribution point")
)

// RevokedError says which source reported the revocation. It matches
// ErrRevoked with errors.Is.
type RevokedError struct {
	Serial    *big.Int
	Subject   string
	RevokedAt time.Time
	Reason    int // RFC 5280 §5.3.1 CRLReason code
	Method    Method
	URL       string
}

func (e *RevokedError) Error() string {
	return fmt.Sprintf("revocation: certificate %x (%s) was revoked at %s (reason %s), according to %s %s",
		e.Serial, e.Subject, e.RevokedAt.UTC().Format(time.RFC3339), reasonName(e.Reason), e.Method, e.URL)
}

// Is makes errors.Is(err, ErrRevoked) true.
func (e *RevokedError) Is(target error) bool { return target == ErrRevoked }

// UnavailableError is returned in hard-fail mode when no source gave a
// verified answer. Errs has one error per attempt, each naming its method
// and URL; errors.Is looks through them (e.g. for ErrInvalidResponse or
// context.DeadlineExceeded). It matches ErrUnavailable.
type UnavailableError struct {
	Serial  *big.Int
	Subject string
	Errs    []error
}

func (e *UnavailableError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "revocation: status of certificate %x (%s) unavailable (hard-fail: refusing the peer; make the OCSP responder or CRL reachable, or use soft-fail)", e.Serial, e.Subject)
	for _, err := range e.Errs {
		b.WriteString("; ")
		b.WriteString(err.Error())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrUnavailable) true.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// Unwrap returns the error of each attempt.
func (e *UnavailableError) Unwrap() []error { return e.Errs }

func reasonName(r int) string {
	names := []string{"unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
		"cessationOfOperation", "certificateHold", "", "removeFromCRL", "privilegeWithdrawn", "aACompromise"}
	if r >= 0 && r < len(names) && names[r] != "" {
		return names[r]
	}
	return fmt.Sprintf("%d", r)
}
