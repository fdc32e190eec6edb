package scan

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// The JSON encoding of every type in this file is stored and diffed by
// certctl (scan history): field names are snake_case and stable. New fields may
// be added; existing ones are never renamed or given a new meaning.

// ErrInvalidTarget is returned (wrapped) by ParseTarget and Scan for a target
// that cannot be scanned: empty host, bad port, unknown STARTTLS protocol.
var ErrInvalidTarget = errors.New("scan: invalid target")

// STARTTLS protocols understood by Target.StartTLS.
const (
	StartTLSPostgres = "postgres"
	StartTLSSMTP     = "smtp"
)

// Target is one endpoint to scan.
type Target struct {
	// Host is a DNS name or an IP address (IPv6 without brackets).
	Host string `json:"host"`
	// Port is the TCP port, 1–65535.
	Port int `json:"port"`
	// StartTLS is "" (TLS from the first byte), "postgres" (SSLRequest
	// first) or "smtp" (EHLO/STARTTLS first).
	StartTLS string `json:"starttls,omitempty"`
	// ServerName is the SNI and the name the certificate must match. Empty
	// means Host when Host is a DNS name; for an IP address, empty means no
	// SNI and the certificate must carry the IP in its SANs.
	ServerName string `json:"server_name,omitempty"`
}

// ParseTarget parses "host", "host:port", "[v6addr]:port", a bare IPv6
// address, or a URL-like form "scheme://host[:port]" where scheme is
// https (443), postgres/postgresql (5432, STARTTLS postgres) or smtp (25,
// STARTTLS smtp); a port in the string overrides the scheme's. Without a port,
// defaultPort is used (443 when defaultPort is 0). Errors wrap
// ErrInvalidTarget.
func ParseTarget(s string, defaultPort int) (Target, error) {
	orig := s
	s = strings.TrimSpace(s)
	if defaultPort == 0 {
		defaultPort = 443
	}
	var t Target
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		switch strings.ToLower(scheme) {
		case "https", "tls":
			defaultPort = 443
		case "postgres", "postgresql":
			defaultPort, t.StartTLS = 5432, StartTLSPostgres
		case "smtp":
			defaultPort, t.StartTLS = 25, StartTLSSMTP
		default:
			return Target{}, fmt.Errorf("%w %q: unknown scheme %q (use https, postgres or smtp)", ErrInvalidTarget, orig, scheme)
		}
		s = rest
		if i := strings.IndexAny(s, "/?#"); i >= 0 {
			s = s[:i]
		}
		if i := strings.LastIndex(s, "@"); i >= 0 { // userinfo in a postgres URL
			s = s[i+1:]
		}
	}
	if s == "" {
		return Target{}, fmt.Errorf("%w %q: empty host", ErrInvalidTarget, orig)
	}
	host, portStr := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			if !strings.HasSuffix(s, "]") {
				return Target{}, fmt.Errorf("%w %q: %v", ErrInvalidTarget, orig, err)
			}
			h = s[1 : len(s)-1]
		}
		if a, err := netip.ParseAddr(h); err != nil || !a.Is6() {
			return Target{}, fmt.Errorf("%w %q: only IPv6 addresses go in brackets", ErrInvalidTarget, orig)
		}
		host, portStr = h, p
	case strings.Count(s, ":") == 1:
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			return Target{}, fmt.Errorf("%w %q: %v", ErrInvalidTarget, orig, err)
		}
		host, portStr = h, p
	case strings.Count(s, ":") > 1: // bare IPv6 address
		if _, err := netip.ParseAddr(s); err != nil {
			return Target{}, fmt.Errorf("%w %q: not an IPv6 address (write [addr]:port)", ErrInvalidTarget, orig)
		}
	}
	t.Host = strings.TrimRight(host, ".") // FQDN dot(s): "example.com." is example.com
	t.Port = defaultPort
	if portStr != "" {
		p, err := strconv.Atoi(portStr)
		if err != nil {
			return Target{}, fmt.Errorf("%w %q: port %q is not a number", ErrInvalidTarget, orig, portStr)
		}
		t.Port = p
	}
	if err := t.Validate(); err != nil {
		return Target{}, err
	}
	return t, nil
}

// Validate reports whether t can be scanned; the error wraps ErrInvalidTarget.
func (t Target) Validate() error {
	if t.Host == "" {
		return fmt.Errorf("%w: empty host", ErrInvalidTarget)
	}
	if strings.ContainsAny(t.Host, " /[]@?#") {
		return fmt.Errorf("%w %q: bad character in host", ErrInvalidTarget, t.Host)
	}
	if t.Port < 1 || t.Port > 65535 {
		return fmt.Errorf("%w %s: port %d out of range 1-65535", ErrInvalidTarget, t.Host, t.Port)
	}
	switch t.StartTLS {
	case "", StartTLSPostgres, StartTLSSMTP:
	default:
		return fmt.Errorf("%w %s: unknown STARTTLS protocol %q (use postgres or smtp)", ErrInvalidTarget, t.Host, t.StartTLS)
	}
	return nil
}

// Addr is "host:port" (IPv6 in brackets).
func (t Target) Addr() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// String is Addr, prefixed by "postgres://" or "smtp://" for STARTTLS
// targets, so that ParseTarget(t.String(), 0) returns t (ServerName aside).
func (t Target) String() string {
	if t.StartTLS != "" {
		return t.StartTLS + "://" + t.Addr()
	}
	return t.Addr()
}

// SNI is the server name sent and verified: ServerName, else Host unless
// Host is an IP address.
func (t Target) SNI() string {
	if t.ServerName != "" {
		return t.ServerName
	}
	if _, err := netip.ParseAddr(t.Host); err == nil {
		return ""
	}
	return t.Host
}

// Grades, best first. A Result's Grade is one of these, or "" when the scan
// could not reach a TLS handshake (see Result.Error).
const (
	GradeAPlus  = "A+"
	GradeA      = "A"
	GradeAMinus = "A-"
	GradeB      = "B"
	GradeC      = "C"
	GradeD      = "D"
	GradeE      = "E"
	GradeF      = "F"
	GradeT      = "T" // trust: untrusted chain, self-signed, expired, SHA-1 signature (see doc.go)
	GradeM      = "M" // certificate name mismatch
)

// GradeRank orders grades for comparisons ("did the grade drop?"): A+ is 9,
// A 8, A- 7, B 6, C 5, D 4, E 3, and F, T and M are 0 (all failing). An
// unknown or empty grade is -1.
func GradeRank(g string) int {
	switch g {
	case GradeAPlus:
		return 9
	case GradeA:
		return 8
	case GradeAMinus:
		return 7
	case GradeB:
		return 6
	case GradeC:
		return 5
	case GradeD:
		return 4
	case GradeE:
		return 3
	case GradeF, GradeT, GradeM:
		return 0
	}
	return -1
}

// Finding severities.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// Result is the outcome of one Scan. A Result is a plain value: safe to read
// concurrently, not to modify concurrently.
type Result struct {
	Target Target `json:"target"`
	// Addresses has one entry per address the host resolved to.
	Addresses []AddressResult `json:"addresses"`

	// Grade is A+ … F, T or M (see doc.go); "" when no TLS handshake
	// succeeded on any address.
	Grade string `json:"grade"`
	// Score is the SSL Labs numeric score 0–100: 0.3*protocol +
	// 0.3*key exchange + 0.4*cipher strength.
	Score            int `json:"score"`
	ProtocolScore    int `json:"protocol_score"`
	KeyExchangeScore int `json:"key_exchange_score"`
	CipherScore      int `json:"cipher_score"`
	// Findings lists every check's outcome that is worth reporting,
	// sorted by severity (critical first), then Check.
	Findings []Finding `json:"findings"`

	// Certificate is the leaf served on the first address that completed a
	// handshake; Chain is every certificate served, in the order served
	// (Chain[0] is the leaf).
	Certificate *CertSummary  `json:"certificate,omitempty"`
	Chain       []CertSummary `json:"chain,omitempty"`
	// Trusted: the chain verifies against the roots (WithRoots or the
	// system pool), possibly after fetching missing intermediates over AIA.
	Trusted bool `json:"trusted"`
	// NameMatch: the leaf is valid for Target.SNI() (or its IP address).
	NameMatch bool `json:"name_match"`
	// Revocation is the leaf's status from OCSP and CRL.
	Revocation *Revocation `json:"revocation,omitempty"`

	Protocols    []Protocol    `json:"protocols"`
	CipherSuites []CipherSuite `json:"cipher_suites"`
	Groups       []Group       `json:"groups"`
	Features     Features      `json:"features"`
	HSTS         *HSTS         `json:"hsts,omitempty"`

	// MTLS is set when the server sent a CertificateRequest, or when a
	// client certificate was supplied.
	MTLS *MTLSResult `json:"mtls,omitempty"`

	StartedAt time.Time `json:"started_at"`
	// Duration is the wall time of the scan in nanoseconds.
	Duration time.Duration `json:"duration_ns"`
	// Error is set when the scan could not be completed (DNS failure, no
	// address reachable, no TLS handshake). Grade is "" then.
	Error string `json:"error,omitempty"`
}

// AddressResult is the connectivity of one resolved address.
type AddressResult struct {
	// Address is "ip:port".
	Address string `json:"address"`
	// Family is "ipv4" or "ipv6".
	Family string `json:"family"`
	// TCP: the TCP connection succeeded (a STARTTLS failure shows in Error).
	TCP bool `json:"tcp"`
	// TLS: the server answered the TLS handshake with its certificate.
	// The handshake may still have failed after that (a TLS 1.2 server that
	// requires a client certificate): Error then says why.
	TLS bool `json:"tls"`
	// Version and CipherSuite are what crypto/tls negotiated, e.g.
	// "TLS 1.3", "TLS_AES_128_GCM_SHA256".
	Version     string `json:"version,omitempty"`
	CipherSuite string `json:"cipher_suite,omitempty"`
	// CertificateSHA256 is the hex SHA-256 of the leaf's DER.
	CertificateSHA256 string `json:"certificate_sha256,omitempty"`
	// HandshakeMS is the time for TCP connect + STARTTLS + TLS handshake.
	HandshakeMS int64  `json:"handshake_ms,omitempty"`
	Error       string `json:"error,omitempty"`
}

// Finding is one check's outcome.
type Finding struct {
	// Check is a stable dotted identifier, e.g. "certificate.expired",
	// "protocol.tls10", "mtls.accepts_other_ca"; doc.go lists them all.
	Check    string `json:"check"`
	Severity string `json:"severity"`
	// GradeCap is the best grade the endpoint can get because of this
	// finding ("" if none).
	GradeCap string `json:"grade_cap,omitempty"`
	// Message is a human sentence; Evidence is what was observed (the
	// alert, the date, the header …).
	Message  string `json:"message"`
	Evidence string `json:"evidence,omitempty"`
}

// CertSummary describes one certificate.
type CertSummary struct {
	// Serial is lower-case hex without separators.
	Serial  string   `json:"serial"`
	Subject string   `json:"subject"`
	Issuer  string   `json:"issuer"`
	SANs    []string `json:"sans,omitempty"`
	// NotBefore/NotAfter in UTC.
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// KeyType is "RSA", "ECDSA", "Ed25519" or "unknown"; KeyBits the RSA
	// modulus or curve size.
	KeyType            string `json:"key_type"`
	KeyBits            int    `json:"key_bits"`
	SignatureAlgorithm string `json:"signature_algorithm"`
	IsCA               bool   `json:"is_ca"`
	// SHA256 is the hex SHA-256 fingerprint of the DER.
	SHA256 string `json:"sha256"`
}

// Revocation is the leaf's revocation status. Each status is "good",
// "revoked", "unknown" (responder/CRL does not cover it), "error" (could not
// fetch or verify; see the errors) or "" (no OCSP URL / CDP in the
// certificate).
type Revocation struct {
	OCSP      string    `json:"ocsp,omitempty"`
	OCSPURL   string    `json:"ocsp_url,omitempty"`
	OCSPError string    `json:"ocsp_error,omitempty"`
	CRL       string    `json:"crl,omitempty"`
	CRLURL    string    `json:"crl_url,omitempty"`
	CRLError  string    `json:"crl_error,omitempty"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Protocol is one protocol version and whether the server accepts it.
type Protocol struct {
	// Name is "SSL 3.0", "TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3".
	Name    string `json:"name"`
	Version uint16 `json:"version"`
	// Supported: the server negotiated this version.
	Supported bool `json:"supported"`
	// ServerPreference: for this version, the server picks the suite by
	// its own order rather than the client's.
	ServerPreference bool `json:"server_preference,omitempty"`
}

// CipherSuite is one suite the server accepts with one protocol version.
type CipherSuite struct {
	Protocol string `json:"protocol"`
	ID       uint16 `json:"id"`
	// Name is the IANA name (TLS_…), or "0x…" when unknown.
	Name string `json:"name"`
	// Bits is the symmetric key strength (3DES counts as 112).
	Bits int `json:"bits"`
	// ForwardSecrecy: (EC)DHE key exchange, or TLS 1.3.
	ForwardSecrecy bool `json:"forward_secrecy"`
	// Weak: RC4, 3DES/64-bit block, export, NULL, anonymous, or CBC with
	// SHA-1 MAC in TLS 1.2 (informational).
	Weak bool `json:"weak,omitempty"`
	// Order is the server's preference rank (1 = most preferred) when the
	// server enforces an order, else 0.
	Order int `json:"order,omitempty"`
}

// Group is one key-exchange group the server accepts.
type Group struct {
	ID   uint16 `json:"id"`
	Name string `json:"name"`
	// Bits is the equivalent classical strength (X25519 = 128, P-384 =
	// 192, ffdhe2048 = 112 …).
	Bits int `json:"bits,omitempty"`
	// PostQuantum: a hybrid or pure post-quantum KEM (X25519MLKEM768 …).
	PostQuantum bool `json:"post_quantum,omitempty"`
}

// Features are the protocol features observed. A feature that could not be
// tested is false; a Finding then says why.
type Features struct {
	Compression         bool     `json:"compression"`
	SecureRenegotiation bool     `json:"secure_renegotiation"`
	FallbackSCSV        bool     `json:"fallback_scsv"`
	ALPN                []string `json:"alpn,omitempty"`
	HTTP2               bool     `json:"http2"`
	OCSPStapling        bool     `json:"ocsp_stapling"`
	// SCTs counts signed certificate timestamps: embedded in the
	// certificate, in the TLS extension, and in the stapled OCSP response.
	SCTs              int  `json:"scts"`
	SessionTickets    bool `json:"session_tickets"`    // TLS 1.2 ticket resumption worked
	SessionResumption bool `json:"session_resumption"` // TLS 1.3 PSK resumption worked
}

// HSTS is the Strict-Transport-Security header of GET / over HTTPS.
type HSTS struct {
	Header            string `json:"header"`
	MaxAge            int64  `json:"max_age"`
	IncludeSubDomains bool   `json:"include_subdomains"`
	Preload           bool   `json:"preload"`
	// StatusCode is the HTTP status of GET /.
	StatusCode int `json:"status_code"`
}

// MTLSResult describes the server's handling of client certificates.
type MTLSResult struct {
	// Requested: the server sent a CertificateRequest.
	Requested bool `json:"requested"`
	// Required: a connection without a client certificate fails (at the
	// handshake, or for TLS 1.3 at the first read).
	Required bool `json:"required"`
	// AcceptableCAs are the distinguished names the server advertised in
	// its CertificateRequest (empty: any).
	AcceptableCAs []string `json:"acceptable_cas,omitempty"`
	// Probes are the connections made with throwaway client certificates
	// (and with the supplied one).
	Probes []MTLSProbe `json:"probes,omitempty"`
}

// MTLSProbe is one connection attempt with a given client certificate.
type MTLSProbe struct {
	// Name is "no_certificate", "other_ca" (self-made CA the server does
	// not know), "expired" (same other CA, expired), "no_client_auth_eku"
	// (serverAuth only), or "supplied" (WithClientCertificate).
	Name string `json:"name"`
	// Accepted: the handshake and a read/write round completed without an
	// alert from the server.
	Accepted bool `json:"accepted"`
	// Evidence is the alert or error seen, or how acceptance was observed.
	Evidence string `json:"evidence,omitempty"`
}
