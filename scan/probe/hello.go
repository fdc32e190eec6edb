package probe

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/rand"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// Signalling cipher suite values.
const (
	scsvRenegotiation uint16 = 0x00ff // TLS_EMPTY_RENEGOTIATION_INFO_SCSV, RFC 5746 §3.3
	scsvFallback      uint16 = 0x5600 // TLS_FALLBACK_SCSV, RFC 7507
)

// Record content types.
const (
	recordChangeCipherSpec uint8 = 20
	recordAlert            uint8 = 21
	recordHandshake        uint8 = 22
	recordApplicationData  uint8 = 23
)

// keyShare is one KeyShareEntry of a TLS 1.3 ClientHello.
type keyShare struct {
	group uint16
	data  []byte
}

// helloSpec describes one ClientHello.
type helloSpec struct {
	version     uint16 // highest version offered
	suites      []uint16
	groups      []uint16 // supported_groups
	keyShares   []keyShare
	compression bool // offer DEFLATE before null
	alpn        []string
	serverName  string
	fallback    bool // add TLS_FALLBACK_SCSV
}

// marshal returns the ClientHello as one TLS record.
func (h *helloSpec) marshal() ([]byte, error) {
	legacy := h.version
	if legacy > VersionTLS12 {
		legacy = VersionTLS12
	}
	recordVersion := VersionTLS10 // what most clients send; some old servers choke on higher
	if h.version == VersionSSL30 {
		recordVersion = VersionSSL30
	}
	random := make([]byte, 32)
	rand.Read(random)
	var sessionID []byte
	if h.version >= VersionTLS13 {
		sessionID = make([]byte, 32) // middlebox compatibility mode, RFC 8446 §D.4
		rand.Read(sessionID)
	}

	var b cryptobyte.Builder
	b.AddUint8(recordHandshake)
	b.AddUint16(recordVersion)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint8(typeClientHello)
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint16(legacy)
			b.AddBytes(random)
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(sessionID) })
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, s := range h.suites {
					b.AddUint16(s)
				}
				if h.version == VersionSSL30 {
					b.AddUint16(scsvRenegotiation)
				}
				if h.fallback {
					b.AddUint16(scsvFallback)
				}
			})
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {
				if h.compression {
					b.AddUint8(1) // DEFLATE
				}
				b.AddUint8(0)
			})
			if h.version == VersionSSL30 {
				return // SSL 3.0 servers need not understand extensions
			}
			b.AddUint16LengthPrefixed(h.addExtensions)
		})
	})
	return b.Bytes()
}

func (h *helloSpec) addExtensions(b *cryptobyte.Builder) {
	// signatureSchemes are offered in signature_algorithms (TLS 1.2 and 1.3):
	// everything a server might hold a key for, including SHA-1 and DSA, so that
	// the hello never fails for lack of a signature scheme.
	signatureSchemes := [...]uint16{
		0x0403, 0x0503, 0x0603, // ecdsa_secp{256,384,521}r1_sha{256,384,512}
		0x0807, 0x0808, // ed25519, ed448
		0x0804, 0x0805, 0x0806, // rsa_pss_rsae_sha{256,384,512}
		0x0809, 0x080a, 0x080b, // rsa_pss_pss_sha{256,384,512}
		0x081a, 0x081b, 0x081c, // ecdsa_brainpool*tls13
		0x0401, 0x0501, 0x0601, // rsa_pkcs1_sha{256,384,512}
		0x0303, 0x0301, 0x0302, // sha224 ecdsa, rsa, dsa
		0x0203, 0x0201, 0x0202, // sha1 ecdsa, rsa, dsa
		0x0402, 0x0502, 0x0602, // dsa sha256/384/512
	}

	ext := func(typ uint16, body func(*cryptobyte.Builder)) {
		b.AddUint16(typ)
		b.AddUint16LengthPrefixed(body)
	}
	if h.serverName != "" {
		ext(extServerName, func(b *cryptobyte.Builder) {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				b.AddUint8(0) // host_name
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(h.serverName)) })
			})
		})
	}
	if len(h.groups) > 0 {
		ext(extSupportedGroups, func(b *cryptobyte.Builder) {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, g := range h.groups {
					b.AddUint16(g)
				}
			})
		})
	}
	if h.version <= VersionTLS12 {
		ext(extECPointFormats, func(b *cryptobyte.Builder) {
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) }) // uncompressed
		})
		ext(extRenegotiationInfo, func(b *cryptobyte.Builder) { b.AddUint8(0) })
		ext(extSessionTicket, func(*cryptobyte.Builder) {})
		ext(extExtendedMasterSecret, func(*cryptobyte.Builder) {})
	}
	if h.version >= VersionTLS12 {
		ext(extSignatureAlgorithms, func(b *cryptobyte.Builder) {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, s := range signatureSchemes {
					b.AddUint16(s)
				}
			})
		})
	}
	if len(h.alpn) > 0 {
		ext(extALPN, func(b *cryptobyte.Builder) {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, p := range h.alpn {
					b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(p)) })
				}
			})
		})
	}
	if h.version >= VersionTLS13 {
		ext(extSupportedVersions, func(b *cryptobyte.Builder) {
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(VersionTLS13) })
		})
		ext(extPSKKeyExchangeModes, func(b *cryptobyte.Builder) {
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(1) }) // psk_dhe_ke
		})
		ext(extKeyShare, func(b *cryptobyte.Builder) {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, ks := range h.keyShares {
					b.AddUint16(ks.group)
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(ks.data) })
				}
			})
		})
	}
}

// newKeyShare makes a well-formed key share for group g. The private keys
// are thrown away: the prober stops at the ServerHello. ML-KEM encapsulation
// keys must be real (the server decodes them, FIPS 203 §7.2 modulus check),
// and so are the EC points (the server checks they are on the curve).
func newKeyShare(g uint16) (keyShare, error) {
	ec := func(c ecdh.Curve) []byte {
		k, err := c.GenerateKey(rand.Reader)
		if err != nil {
			panic(err) // crypto/rand cannot fail since Go 1.24
		}
		return k.PublicKey().Bytes()
	}
	mlkem768 := func() []byte {
		k, err := mlkem.GenerateKey768()
		if err != nil {
			panic(err)
		}
		return k.EncapsulationKey().Bytes()
	}
	mlkem1024 := func() []byte {
		k, err := mlkem.GenerateKey1024()
		if err != nil {
			panic(err)
		}
		return k.EncapsulationKey().Bytes()
	}
	var data []byte
	switch g {
	case GroupX25519:
		data = ec(ecdh.X25519())
	case GroupSecp256r1:
		data = ec(ecdh.P256())
	case GroupSecp384r1:
		data = ec(ecdh.P384())
	case GroupSecp521r1:
		data = ec(ecdh.P521())
	case GroupX448:
		data = make([]byte, 56) // any 56 bytes are a valid X448 public key (RFC 7748 §5)
		rand.Read(data)
	case GroupX25519MLKEM768: // draft-ietf-tls-ecdhe-mlkem: ML-KEM first, then X25519
		data = append(mlkem768(), ec(ecdh.X25519())...)
	case GroupSecP256r1MLKEM768: // P-256 first, then ML-KEM
		data = append(ec(ecdh.P256()), mlkem768()...)
	case GroupSecP384r1MLKEM1024:
		data = append(ec(ecdh.P384()), mlkem1024()...)
	case GroupMLKEM768:
		data = mlkem768()
	case GroupMLKEM1024:
		data = mlkem1024()
	case GroupFFDHE2048, GroupFFDHE3072, GroupFFDHE4096, GroupFFDHE6144, GroupFFDHE8192:
		// RFC 7919 primes start with 64 one bits, so any value with a
		// smaller first byte and > 1 is in range (1 < Y < p-1).
		size := map[uint16]int{GroupFFDHE2048: 256, GroupFFDHE3072: 384, GroupFFDHE4096: 512,
			GroupFFDHE6144: 768, GroupFFDHE8192: 1024}[g]
		data = make([]byte, size)
		rand.Read(data)
		data[0] = 0x40 | data[0]&0x3f
	default:
		return keyShare{}, fmt.Errorf("probe: no key share for group %s", GroupName(g))
	}
	return keyShare{group: g, data: data}, nil
}
