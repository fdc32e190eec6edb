package pkcs11

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/asn1"
	"encoding/binary"
	"fmt"
	"math/big"

	p11 "github.com/miekg/pkcs11"

	"github.com/certctl/certctl/keys"
)

// Named curves as DER OBJECT IDENTIFIERs, the form of CKA_EC_PARAMS.
var (
	oidP256    = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7} // RFC 5480 secp256r1
	oidP384    = asn1.ObjectIdentifier{1, 3, 132, 0, 34}          // RFC 5480 secp384r1
	oidEd25519 = asn1.ObjectIdentifier{1, 3, 101, 112}            // RFC 8410 id-Ed25519
)

// ulong decodes a CK_ULONG attribute: host byte order, the C type's size.
func ulong(b []byte) (uint, error) {
	switch len(b) {
	case 8:
		return uint(binary.NativeEndian.Uint64(b)), nil
	case 4:
		return uint(binary.NativeEndian.Uint32(b)), nil
	}
	return 0, fmt.Errorf("%w (%d bytes)", errNotULong, len(b))
}

// readPublic reads the public key of object o (a public key, or an RSA
// private key) of key type kt, and refuses key types certctl does not accept
// (keys.TypeOf: no RSA below 2048 bits, no other curves).
func (m *Module) readPublic(sh p11.SessionHandle, o p11.ObjectHandle, kt uint) (crypto.PublicKey, error) {
	var pub crypto.PublicKey
	switch kt {
	case p11.CKK_EC, ckkECEdwards:
		a, err := m.c.GetAttributeValue(sh, o, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_EC_PARAMS, nil),
			p11.NewAttribute(p11.CKA_EC_POINT, nil),
		})
		if err != nil {
			return nil, err
		}
		if kt == ckkECEdwards {
			pub, err = parseEdPoint(a[0].Value, a[1].Value)
		} else {
			pub, err = parseECPoint(a[0].Value, a[1].Value)
		}
		if err != nil {
			return nil, err
		}
	case p11.CKK_RSA:
		a, err := m.c.GetAttributeValue(sh, o, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_MODULUS, nil),
			p11.NewAttribute(p11.CKA_PUBLIC_EXPONENT, nil),
		})
		if err != nil {
			return nil, err
		}
		e := new(big.Int).SetBytes(a[1].Value)
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
			return nil, fmt.Errorf("%w: RSA public exponent out of range", ErrUnsupported)
		}
		pub = &rsa.PublicKey{N: new(big.Int).SetBytes(a[0].Value), E: int(e.Int64())}
	default:
		return nil, fmt.Errorf("%w: key type 0x%X (supported: EC, RSA, EC_EDWARDS)", ErrUnsupported, kt)
	}
	if _, err := keys.TypeOf(pub); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return pub, nil
}

func parseECPoint(params, point []byte) (*ecdsa.PublicKey, error) {
	var oid asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(params, &oid); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: CKA_EC_PARAMS is not a named curve OID", ErrUnsupported)
	}
	var curve elliptic.Curve
	switch {
	case oid.Equal(oidP256):
		curve = elliptic.P256()
	case oid.Equal(oidP384):
		curve = elliptic.P384()
	default:
		return nil, fmt.Errorf("%w: curve %s (supported: P-256, P-384)", ErrUnsupported, oid)
	}
	raw := unwrapOctetString(point, 1+2*(curve.Params().BitSize+7)/8)
	k, err := ecdsa.ParseUncompressedPublicKey(curve, raw)
	if err != nil {
		return nil, fmt.Errorf("CKA_EC_POINT: %v", err)
	}
	return k, nil
}

func parseEdPoint(params, point []byte) (ed25519.PublicKey, error) {
	// PKCS#11 3.0 §2.3.10: CKA_EC_PARAMS is the curve OID or the
	// PrintableString "edwards25519" (what SoftHSM and pkcs11-tool use).
	var oid asn1.ObjectIdentifier
	var name string
	if _, err := asn1.Unmarshal(params, &oid); err == nil {
		if !oid.Equal(oidEd25519) {
			return nil, fmt.Errorf("%w: Edwards curve %s (supported: Ed25519)", ErrUnsupported, oid)
		}
	} else if _, err := asn1.UnmarshalWithParams(params, &name, "printable"); err != nil || name != "edwards25519" {
		return nil, fmt.Errorf("%w: Edwards curve parameters %x (supported: Ed25519)", ErrUnsupported, params)
	}
	raw := unwrapOctetString(point, ed25519.PublicKeySize)
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("CKA_EC_POINT: %d bytes, want %d", len(raw), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// unwrapOctetString removes the DER OCTET STRING that PKCS#11 puts around
// CKA_EC_POINT; some tokens return the bare point (rawLen bytes), which is
// kept as is. The length decides, not a parse attempt: a bare point can look
// like DER.
func unwrapOctetString(b []byte, rawLen int) []byte {
	if len(b) == rawLen {
		return b
	}
	var inner []byte
	if rest, err := asn1.Unmarshal(b, &inner); err == nil && len(rest) == 0 {
		return inner
	}
	return nil
}

// ecParams returns CKA_EC_PARAMS for generating a key of type kt.
func ecParams(kt keys.KeyType) ([]byte, error) {
	switch kt {
	case keys.ECDSAP256:
		return asn1.Marshal(oidP256)
	case keys.ECDSAP384:
		return asn1.Marshal(oidP384)
	case keys.Ed25519:
		return asn1.Marshal(oidEd25519)
	}
	return nil, fmt.Errorf("%w: %s is not an elliptic curve key type", ErrUnsupported, kt)
}
