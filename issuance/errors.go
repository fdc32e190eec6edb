package issuance

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors; callers branch on them with errors.Is.
var (
	// ErrBadCSR: the certificate request could not be parsed or its
	// signature does not verify. ParseCSR wraps it with the reason.
	ErrBadCSR = errors.New("issuance: bad certificate request")
	// ErrLint: the certificate that Prepare built failed pre-issuance
	// linting. The error is a *LintError with the findings.
	ErrLint = errors.New("issuance: pre-issuance lint failed")
	// ErrTokenUsed: Issue was called twice with the same Token.
	ErrTokenUsed = errors.New("issuance: token already used")
	// ErrWrongIssuer: a Token was redeemed by an Issuer that did not prepare it.
	ErrWrongIssuer = errors.New("issuance: token was prepared by a different issuer")
	// ErrKeyMismatch: the signer given to NewIssuer does not hold the private
	// key of the issuer certificate.
	ErrKeyMismatch = errors.New("issuance: signer does not match issuer certificate")
	// ErrInvalidName: Request.AddNames was given a name it cannot classify
	// or that is not well formed.
	ErrInvalidName = errors.New("issuance: invalid name")
)

// ConfigError reports an invalid ProfileConfig. Field is the YAML name of the
// offending setting (e.g. "validity", "names.dns[2]").
type ConfigError struct {
	Profile, Field, Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("issuance: profile %q: %s: %s", e.Profile, e.Field, e.Reason)
}

// PolicyError reports a request that the profile does not allow. Field names
// the offending part of the request ("dns_names[1]", "common_name",
// "ip_addresses[0]", "public_key", "validity", ...) and Reason the rule it
// breaks. The message is meant to be shown to the requester.
type PolicyError struct {
	Profile, Field, Reason string
}

func (e *PolicyError) Error() string {
	return fmt.Sprintf("issuance: profile %q: %s: %s", e.Profile, e.Field, e.Reason)
}

// LintFinding is one lint that did not pass: Status is zlint's status name
// ("warn", "error", "fatal"), Source the document the lint comes from
// ("RFC5280", "Community", ...).
type LintFinding struct {
	Name, Status, Details, Source string
}

// LintError is returned by Prepare (and SelfSignRoot) when zlint reports a
// warning, error or fatal result. It unwraps to ErrLint.
type LintError struct {
	Findings []LintFinding
}

func (e *LintError) Error() string {
	var b strings.Builder
	b.WriteString(ErrLint.Error())
	for i, f := range e.Findings {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s (%s, %s)", f.Name, f.Status, f.Source)
		if f.Details != "" {
			b.WriteString(": ")
			b.WriteString(f.Details)
		}
	}
	return b.String()
}

// Unwrap returns ErrLint.
func (e *LintError) Unwrap() error { return ErrLint }
