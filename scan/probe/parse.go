package probe

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
)

// Handshake message types (RFC 8446 §4, RFC 5246 §7.4).
const (
	typeClientHello        uint8 = 1
	typeServerHello        uint8 = 2
	typeCertificate        uint8 = 11
	typeServerKeyExchange  uint8 = 12
	typeCertificateRequest uint8 = 13
	typeServerHelloDone    uint8 = 14
)

// Extension code points.
const (
	extServerName           uint16 = 0
	extStatusRequest        uint16 = 5
	extSupportedGroups      uint16 = 10
	extECPointFormats       uint16 = 11
	extSignatureAlgorithms  uint16 = 13
	extALPN                 uint16 = 16
	extExtendedMasterSecret uint16 = 23
	extSessionTicket        uint16 = 35
	extSupportedVersions    uint16 = 43
	extPSKKeyExchangeModes  uint16 = 45
	extKeyShare             uint16 = 51
	extRenegotiationInfo    uint16 = 0xff01
)

// helloRetryRequestRandom is SHA-256("HelloRetryRequest"), the Random of a
// HelloRetryRequest (RFC 8446 §4.1.3).
var helloRetryRequestRandom = [32]byte{
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
	0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
}

// errMalformed is wrapped by every parse error.
var errMalformed = errors.New("probe: malformed message")

func malformed(what string) error { return fmt.Errorf("%w: %s", errMalformed, what) }

// Extension is one extension as received.
type Extension struct {
	Type uint16
	Data []byte
}

// ServerHello is a parsed ServerHello or HelloRetryRequest. The decoded
// fields are derived from Extensions; Marshal re-encodes exactly what was
// parsed. It is plain data: safe for concurrent reads, not for writes.
type ServerHello struct {
	Version           uint16 // legacy_version (the version for TLS <= 1.2)
	Random            []byte // 32 bytes
	SessionID         []byte
	CipherSuite       uint16
	CompressionMethod uint8
	// Extensions in the order received; nil when the message had no
	// extensions block (allowed before TLS 1.2: SSL 3.0 servers).
	Extensions []Extension

	// HelloRetryRequest is true when Random is the HRR value.
	HelloRetryRequest bool
	// SupportedVersion is the supported_versions value (0 if absent).
	SupportedVersion uint16
	// KeyShareGroup is the group of key_share: the selected_group of a
	// HelloRetryRequest, or the group of the server's share.
	KeyShareGroup uint16
	// KeyShare is the server's key_exchange (nil for a HelloRetryRequest).
	KeyShare []byte
	// SecureRenegotiation is true when renegotiation_info was present.
	SecureRenegotiation bool
	// ALPNProtocol is the protocol the server selected ("" if none).
	ALPNProtocol string

	hasExtensions bool
}

// NegotiatedVersion is SupportedVersion if set, else Version.
func (h *ServerHello) NegotiatedVersion() uint16 {
	if h.SupportedVersion != 0 {
		return h.SupportedVersion
	}
	return h.Version
}

// ParseServerHello parses the body of a ServerHello handshake message (after
// the 4-byte handshake header). It checks the encoding of the extensions it
// interprets (supported_versions, key_share, renegotiation_info, ALPN) and
// rejects duplicate extensions and trailing bytes.
func ParseServerHello(b []byte) (*ServerHello, error) {
	s := cryptobyte.String(b)
	h := &ServerHello{}
	var random, sid []byte
	if !s.ReadUint16(&h.Version) || !s.ReadBytes(&random, 32) ||
		!s.ReadUint8LengthPrefixed((*cryptobyte.String)(&sid)) ||
		!s.ReadUint16(&h.CipherSuite) || !s.ReadUint8(&h.CompressionMethod) {
		return nil, malformed("ServerHello: short")
	}
	if len(sid) > 32 {
		return nil, malformed("ServerHello: session_id longer than 32 bytes")
	}
	h.Random = bytes.Clone(random)
	h.SessionID = bytes.Clone(sid)
	h.HelloRetryRequest = bytes.Equal(random, helloRetryRequestRandom[:])
	if s.Empty() {
		return h, nil
	}
	var exts cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return nil, malformed("ServerHello: bad extensions block")
	}
	h.hasExtensions = true
	h.Extensions = []Extension{}
	seen := map[uint16]bool{}
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return nil, malformed("ServerHello: bad extension")
		}
		if seen[typ] {
			return nil, malformed(fmt.Sprintf("ServerHello: duplicate extension %d", typ))
		}
		seen[typ] = true
		h.Extensions = append(h.Extensions, Extension{Type: typ, Data: bytes.Clone(data)})
		if err := h.decodeExtension(typ, data); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func (h *ServerHello) decodeExtension(typ uint16, d cryptobyte.String) error {
	switch typ {
	case extSupportedVersions:
		if !d.ReadUint16(&h.SupportedVersion) || !d.Empty() {
			return malformed("ServerHello: bad supported_versions")
		}
	case extKeyShare:
		if !d.ReadUint16(&h.KeyShareGroup) {
			return malformed("ServerHello: bad key_share")
		}
		if h.HelloRetryRequest {
			if !d.Empty() {
				return malformed("HelloRetryRequest: bad key_share")
			}
			break
		}
		var ke []byte
		if !d.ReadUint16LengthPrefixed((*cryptobyte.String)(&ke)) || len(ke) == 0 || !d.Empty() {
			return malformed("ServerHello: bad key_share")
		}
		h.KeyShare = bytes.Clone(ke)
	case extRenegotiationInfo:
		var ri []byte
		if !d.ReadUint8LengthPrefixed((*cryptobyte.String)(&ri)) || !d.Empty() {
			return malformed("ServerHello: bad renegotiation_info")
		}
		h.SecureRenegotiation = true
	case extALPN:
		var list, proto cryptobyte.String
		if !d.ReadUint16LengthPrefixed(&list) || !d.Empty() ||
			!list.ReadUint8LengthPrefixed(&proto) || len(proto) == 0 || !list.Empty() {
			return malformed("ServerHello: bad ALPN")
		}
		h.ALPNProtocol = string(proto)
	}
	return nil
}

// Marshal encodes h as a ServerHello body (the inverse of ParseServerHello:
// it uses Version, Random, SessionID, CipherSuite, CompressionMethod and
// Extensions, not the decoded fields).
func (h *ServerHello) Marshal() ([]byte, error) {
	var b cryptobyte.Builder
	b.AddUint16(h.Version)
	b.AddBytes(h.Random)
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(h.SessionID) })
	b.AddUint16(h.CipherSuite)
	b.AddUint8(h.CompressionMethod)
	if h.hasExtensions || len(h.Extensions) > 0 {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, e := range h.Extensions {
				b.AddUint16(e.Type)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.Data) })
			}
		})
	}
	return b.Bytes()
}

// maxCertificateMessage bounds the certificate_list (and any handshake
// message we accept).
const maxHandshakeMessage = 256 << 10

// ParseCertificateMessage parses the body of a TLS 1.2 (or older)
// Certificate handshake message: certificate_list<0..2^24-1> of
// ASN.1Cert<1..2^24-1> (RFC 5246 §7.4.2). It returns the DER certificates in
// the order sent, without parsing them.
func ParseCertificateMessage(b []byte) ([][]byte, error) {
	s := cryptobyte.String(b)
	var list cryptobyte.String
	if !s.ReadUint24LengthPrefixed(&list) || !s.Empty() {
		return nil, malformed("Certificate: bad certificate_list")
	}
	var certs [][]byte
	for !list.Empty() {
		var c []byte
		if !list.ReadUint24LengthPrefixed((*cryptobyte.String)(&c)) || len(c) == 0 {
			return nil, malformed("Certificate: bad certificate entry")
		}
		certs = append(certs, bytes.Clone(c))
	}
	return certs, nil
}

// MarshalCertificateMessage is the inverse of ParseCertificateMessage.
func MarshalCertificateMessage(certs [][]byte) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, c := range certs {
			b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(c) })
		}
	})
	return b.Bytes()
}

// serverKeyExchange is what we read from a ServerKeyExchange.
type serverKeyExchange struct {
	curve       uint16 // ECDHE named curve
	dhPrimeBits int    // DHE prime size
}

// parseServerKeyExchange reads the parameters at the start of a
// ServerKeyExchange body (RFC 4492 §5.4, RFC 5246 §7.4.3); the signature
// that follows is not checked.
func parseServerKeyExchange(kx string, b []byte) (serverKeyExchange, error) {
	s := cryptobyte.String(b)
	var ske serverKeyExchange
	switch {
	case len(kx) >= 5 && kx[:5] == "ECDHE", kx == "ECDH_anon":
		var curveType uint8
		var point cryptobyte.String
		if !s.ReadUint8(&curveType) {
			return ske, malformed("ServerKeyExchange: short")
		}
		if curveType != 3 { // named_curve; explicit curves are not supported by anyone sane
			return ske, malformed(fmt.Sprintf("ServerKeyExchange: curve type %d", curveType))
		}
		var curve uint16
		if !s.ReadUint16(&curve) || !s.ReadUint8LengthPrefixed(&point) || len(point) == 0 {
			return ske, malformed("ServerKeyExchange: bad ECDH parameters")
		}
		ske.curve = curve
	case len(kx) >= 3 && (kx[:3] == "DHE" || kx[:3] == "DH_"):
		var p, g, y cryptobyte.String
		if !s.ReadUint16LengthPrefixed(&p) || !s.ReadUint16LengthPrefixed(&g) ||
			!s.ReadUint16LengthPrefixed(&y) || len(p) == 0 || len(g) == 0 || len(y) == 0 {
			return ske, malformed("ServerKeyExchange: bad DH parameters")
		}
		ske.dhPrimeBits = new(big.Int).SetBytes(p).BitLen()
	default:
		return ske, malformed("ServerKeyExchange: unexpected for key exchange " + kx)
	}
	return ske, nil
}
