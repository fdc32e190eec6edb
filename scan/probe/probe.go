package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Protocol versions, as on the wire.
const (
	VersionSSL30 uint16 = 0x0300
	VersionTLS10 uint16 = 0x0301
	VersionTLS11 uint16 = 0x0302
	VersionTLS12 uint16 = 0x0303
	VersionTLS13 uint16 = 0x0304
)

// Named groups (IANA "TLS Supported Groups") that the prober offers.
const (
	GroupSecp256r1          uint16 = 0x0017
	GroupSecp384r1          uint16 = 0x0018
	GroupSecp521r1          uint16 = 0x0019
	GroupX25519             uint16 = 0x001d
	GroupX448               uint16 = 0x001e
	GroupBrainpoolP256r1TLS uint16 = 0x001f
	GroupBrainpoolP384r1TLS uint16 = 0x0020
	GroupBrainpoolP512r1TLS uint16 = 0x0021
	GroupFFDHE2048          uint16 = 0x0100
	GroupFFDHE3072          uint16 = 0x0101
	GroupFFDHE4096          uint16 = 0x0102
	GroupFFDHE6144          uint16 = 0x0103
	GroupFFDHE8192          uint16 = 0x0104
	GroupMLKEM512           uint16 = 0x0200
	GroupMLKEM768           uint16 = 0x0201
	GroupMLKEM1024          uint16 = 0x0202
	GroupSecP256r1MLKEM768  uint16 = 0x11eb
	GroupX25519MLKEM768     uint16 = 0x11ec
	GroupSecP384r1MLKEM1024 uint16 = 0x11ed
	// Legacy curves, only offered for TLS 1.2 and older.
	GroupBrainpoolP256r1 uint16 = 0x001a
	GroupBrainpoolP384r1 uint16 = 0x001b
	GroupBrainpoolP512r1 uint16 = 0x001c
	GroupSecp224r1       uint16 = 0x0015
	GroupSecp256k1       uint16 = 0x0016
)

// tls13Groups is the order in which groups are offered in TLS 1.3 probes.
func tls13Groups() []uint16 {
	return []uint16{
		GroupX25519MLKEM768, GroupSecP256r1MLKEM768, GroupSecP384r1MLKEM1024,
		GroupMLKEM512, GroupMLKEM768, GroupMLKEM1024,
		GroupX25519, GroupSecp256r1, GroupX448, GroupSecp384r1, GroupSecp521r1,
		GroupBrainpoolP256r1TLS, GroupBrainpoolP384r1TLS, GroupBrainpoolP512r1TLS,
		GroupFFDHE2048, GroupFFDHE3072, GroupFFDHE4096, GroupFFDHE6144, GroupFFDHE8192,
	}
}

// legacyCurves is the order in which curves are offered for ECDHE in TLS 1.2
// and older.
func legacyCurves() []uint16 {
	return []uint16{
		GroupX25519, GroupSecp256r1, GroupX448, GroupSecp384r1, GroupSecp521r1,
		GroupBrainpoolP256r1, GroupBrainpoolP384r1, GroupBrainpoolP512r1,
		GroupSecp224r1, GroupSecp256k1,
	}
}

// allVersions is the default Config.Versions.
func allVersions() []uint16 {
	return []uint16{VersionSSL30, VersionTLS10, VersionTLS11, VersionTLS12, VersionTLS13}
}

// DialFunc opens a new connection to the endpoint on which the next bytes
// written are the ClientHello: any STARTTLS exchange has been done. Enumerate
// calls it concurrently, once per probe, and closes each connection.
type DialFunc func(ctx context.Context) (net.Conn, error)

// Config controls Enumerate. The zero value works. Enumerate does not modify
// it.
type Config struct {
	// ServerName is sent as SNI (omitted when empty or an IP address).
	ServerName string
	// Timeout bounds each probe (dial + hello + reading the answer).
	// Default 5 s.
	Timeout time.Duration
	// Concurrency is the maximum number of connections open at once.
	// Default 8.
	Concurrency int
	// Versions to probe. Default SSL 3.0 through TLS 1.3.
	Versions []uint16
	// ALPN protocols to probe. Default h2, http/1.1.
	ALPN []string
}

func (c Config) withDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if len(c.Versions) == 0 {
		c.Versions = allVersions()
	}
	if len(c.ALPN) == 0 {
		c.ALPN = []string{"h2", "http/1.1"}
	}
	if net.ParseIP(c.ServerName) != nil {
		c.ServerName = "" // RFC 6066 §3: literal IP addresses are not permitted in SNI
	}
	return c
}

// VersionResult is what one protocol version gave.
type VersionResult struct {
	Version   uint16
	Supported bool
	// CipherSuites in server preference order if ServerPreference, else in
	// the order we offered them (ascending code point).
	CipherSuites []uint16
	// ServerPreference is true when the server chose by its own order. It is
	// false when fewer than two suites are supported (nothing to compare).
	ServerPreference bool
}

// Report is the result of Enumerate. Lists are nil when empty.
type Report struct {
	// Versions has one entry per probed version, in Config.Versions order
	// (default SSL 3.0 .. TLS 1.3).
	Versions []VersionResult
	// Groups are the key-exchange groups the server accepts: TLS 1.3 groups
	// when it speaks TLS 1.3, else the ECDHE curves of TLS 1.2 and older. In
	// server preference order when it has one (PreferredGroup first).
	Groups []uint16
	// PreferredGroup is the group the server chose when offered all of them
	// (0 when none). For TLS 1.3 it was confirmed with a real key share.
	PreferredGroup uint16
	// Compression is true when the server accepted DEFLATE (TLS <= 1.2).
	Compression bool
	// SecureRenegotiation is true when a TLS <= 1.2 ServerHello carried
	// renegotiation_info (RFC 5746).
	SecureRenegotiation bool
	// FallbackSCSV is nil when fewer than two versions are supported, else
	// whether the server rejected a downgraded hello carrying
	// TLS_FALLBACK_SCSV (RFC 7507).
	FallbackSCSV *bool
	// ALPN lists the protocols the server selected, in the order it chose
	// them from Config.ALPN.
	ALPN []string
	// Certificates is the chain of a TLS <= 1.2 Certificate message, as sent
	// (DER, leaf first). Empty when the server speaks only TLS 1.3.
	Certificates [][]byte
	// DHPrimeBits is the size of the DH prime of a DHE ServerKeyExchange (0
	// when no DHE suite was negotiated).
	DHPrimeBits int
	// ClientCertRequested is true when a TLS <= 1.2 server sent a
	// CertificateRequest.
	ClientCertRequested bool
	// Errors lists probe-level problems (timeouts, unexpected answers).
	Errors []string
	// Probes is the number of connections made; Duration the wall time.
	Probes   int
	Duration time.Duration
}

// Supported returns the supported versions, oldest first.
func (r *Report) Supported() []uint16 {
	var vs []uint16
	for _, v := range r.Versions {
		if v.Supported {
			vs = append(vs, v.Version)
		}
	}
	return vs
}

// Version returns the result for version v, or nil if it was not probed.
func (r *Report) Version(v uint16) *VersionResult {
	for i := range r.Versions {
		if r.Versions[i].Version == v {
			return &r.Versions[i]
		}
	}
	return nil
}

// ErrNotTLS is returned (wrapped) when the peer answers with bytes that are
// not a TLS record, e.g. a plaintext HTTP or PostgreSQL server.
var ErrNotTLS = errors.New("probe: peer did not answer with TLS (plaintext service, or STARTTLS needed?)")

// ErrStartTLS is wrapped by StartTLS errors: the peer refused or does not
// support the STARTTLS exchange.
var ErrStartTLS = errors.New("probe: STARTTLS failed")

// AlertError is a TLS alert received in answer to a probe.
type AlertError struct {
	Level, Description uint8
}

func (e *AlertError) Error() string {
	return fmt.Sprintf("probe: received alert %s (%d)", AlertName(e.Description), e.Description)
}

// Alert descriptions used by the prober (RFC 8446 §6).
const (
	AlertHandshakeFailure      uint8 = 40
	AlertIllegalParameter      uint8 = 47
	AlertDecodeError           uint8 = 50
	AlertProtocolVersion       uint8 = 70
	AlertInsufficientSecurity  uint8 = 71
	AlertInappropriateFallback uint8 = 86
)

// AlertName names an alert description.
func AlertName(d uint8) string {
	switch d {
	case 0:
		return "close_notify"
	case 10:
		return "unexpected_message"
	case 20:
		return "bad_record_mac"
	case 22:
		return "record_overflow"
	case 40:
		return "handshake_failure"
	case 42:
		return "bad_certificate"
	case 47:
		return "illegal_parameter"
	case 50:
		return "decode_error"
	case 51:
		return "decrypt_error"
	case 70:
		return "protocol_version"
	case 71:
		return "insufficient_security"
	case 80:
		return "internal_error"
	case 86:
		return "inappropriate_fallback"
	case 90:
		return "user_canceled"
	case 109:
		return "missing_extension"
	case 110:
		return "unsupported_extension"
	case 112:
		return "unrecognized_name"
	case 120:
		return "no_application_protocol"
	}
	return fmt.Sprintf("alert(%d)", d)
}

// VersionName names a protocol version ("TLS 1.2").
func VersionName(v uint16) string {
	switch v {
	case VersionSSL30:
		return "SSL 3.0"
	case VersionTLS10:
		return "TLS 1.0"
	case VersionTLS11:
		return "TLS 1.1"
	case VersionTLS12:
		return "TLS 1.2"
	case VersionTLS13:
		return "TLS 1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

// GroupName names a key-exchange group ("X25519MLKEM768").
func GroupName(g uint16) string {
	switch g {
	case GroupSecp224r1:
		return "secp224r1"
	case GroupSecp256k1:
		return "secp256k1"
	case GroupSecp256r1:
		return "secp256r1"
	case GroupSecp384r1:
		return "secp384r1"
	case GroupSecp521r1:
		return "secp521r1"
	case GroupBrainpoolP256r1:
		return "brainpoolP256r1"
	case GroupBrainpoolP384r1:
		return "brainpoolP384r1"
	case GroupBrainpoolP512r1:
		return "brainpoolP512r1"
	case GroupX25519:
		return "x25519"
	case GroupX448:
		return "x448"
	case GroupBrainpoolP256r1TLS:
		return "brainpoolP256r1tls13"
	case GroupBrainpoolP384r1TLS:
		return "brainpoolP384r1tls13"
	case GroupBrainpoolP512r1TLS:
		return "brainpoolP512r1tls13"
	case GroupFFDHE2048:
		return "ffdhe2048"
	case GroupFFDHE3072:
		return "ffdhe3072"
	case GroupFFDHE4096:
		return "ffdhe4096"
	case GroupFFDHE6144:
		return "ffdhe6144"
	case GroupFFDHE8192:
		return "ffdhe8192"
	case GroupMLKEM512:
		return "MLKEM512"
	case GroupMLKEM768:
		return "MLKEM768"
	case GroupMLKEM1024:
		return "MLKEM1024"
	case GroupSecP256r1MLKEM768:
		return "SecP256r1MLKEM768"
	case GroupX25519MLKEM768:
		return "X25519MLKEM768"
	case GroupSecP384r1MLKEM1024:
		return "SecP384r1MLKEM1024"
	}
	return fmt.Sprintf("0x%04x", g)
}

// IsPostQuantumGroup reports whether g includes ML-KEM.
func IsPostQuantumGroup(g uint16) bool {
	switch g {
	case GroupMLKEM512, GroupMLKEM768, GroupMLKEM1024,
		GroupSecP256r1MLKEM768, GroupX25519MLKEM768, GroupSecP384r1MLKEM1024:
		return true
	}
	return false
}

// CipherSuiteName returns the IANA name of a suite ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
// or "0x%04x" for one the prober does not know.
func CipherSuiteName(id uint16) string {
	if s, ok := LookupCipherSuite(id); ok {
		return s.Name
	}
	return fmt.Sprintf("0x%04x", id)
}

// CipherSuite describes a cipher suite, derived from its IANA name.
type CipherSuite struct {
	ID   uint16
	Name string
	// KeyExchange is the part before _WITH_ ("ECDHE_RSA", "RSA",
	// "DH_anon", "RSA_EXPORT"); empty for TLS 1.3 suites.
	KeyExchange string
	// Cipher is the bulk cipher ("AES_128_GCM", "3DES_EDE_CBC", "RC4_128",
	// "NULL", "CHACHA20_POLY1305").
	Cipher string
	// MAC is the hash ("SHA256", "SHA", "MD5", "" for CCM suites).
	MAC string
	// Bits is the effective key strength of the cipher (3DES: 112, NULL: 0).
	Bits int
	// ForwardSecret: ephemeral (EC)DH key exchange, or any TLS 1.3 suite.
	ForwardSecret bool
	// AEAD: GCM, CCM or ChaCha20-Poly1305.
	AEAD bool
	// Export: an export-grade suite (40/56-bit or 512/1024-bit key exchange).
	Export bool
	// Anonymous: no server authentication.
	Anonymous bool
	// TLS13: a TLS 1.3 suite.
	TLS13 bool
}

// LookupCipherSuite describes the suite id, if the prober knows it.
func LookupCipherSuite(id uint16) (CipherSuite, bool) {
	for _, s := range suiteNames {
		if s.id == id {
			return describeSuite(s.id, s.name), true
		}
	}
	return CipherSuite{}, false
}

// describeSuite derives the properties of a suite from its IANA name.
func describeSuite(id uint16, name string) CipherSuite {
	s := CipherSuite{ID: id, Name: name}
	rest := strings.TrimPrefix(name, "TLS_")
	if kx, c, ok := strings.Cut(rest, "_WITH_"); ok {
		s.KeyExchange, rest = kx, c
	} else {
		s.TLS13, s.ForwardSecret = true, true
	}
	for _, mac := range []string{"_SHA384", "_SHA256", "_SHA", "_MD5"} {
		if strings.HasSuffix(rest, mac) {
			s.MAC, rest = mac[1:], strings.TrimSuffix(rest, mac)
			break
		}
	}
	s.Cipher = rest
	kx := s.KeyExchange
	s.ForwardSecret = s.ForwardSecret || strings.HasPrefix(kx, "DHE_") || strings.HasPrefix(kx, "ECDHE_") ||
		strings.HasPrefix(kx, "DH_anon") || strings.HasPrefix(kx, "ECDH_anon")
	s.Anonymous = strings.Contains(kx, "anon")
	s.Export = strings.Contains(kx, "EXPORT") || strings.Contains(rest, "_40") || strings.HasPrefix(rest, "DES40")
	s.AEAD = strings.Contains(rest, "GCM") || strings.Contains(rest, "CCM") || strings.Contains(rest, "POLY1305")
	switch {
	case rest == "NULL":
		s.Bits = 0
	case strings.Contains(rest, "_40") || strings.HasPrefix(rest, "DES40"):
		s.Bits = 40
	case strings.Contains(rest, "_56"), strings.HasPrefix(rest, "DES_CBC"):
		s.Bits = 56
	case strings.HasPrefix(rest, "3DES"):
		s.Bits = 112 // meet-in-the-middle: 168-bit key, 112-bit strength
	case strings.Contains(rest, "_256") || strings.HasPrefix(rest, "CHACHA20"):
		s.Bits = 256
	case strings.Contains(rest, "_128") || strings.HasPrefix(rest, "IDEA") || strings.HasPrefix(rest, "SEED"):
		s.Bits = 128
	}
	return s
}
