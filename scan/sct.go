package scan

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// oidSCTList is the X.509 extension that embeds SCTs (RFC 6962 §3.3).
var oidSCTList = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}

// countEmbeddedSCTs returns the number of SCTs embedded in c.
func countEmbeddedSCTs(c *x509.Certificate) (int, error) {
	for _, e := range c.Extensions {
		if e.Id.Equal(oidSCTList) {
			scts, err := parseSCTList(e.Value)
			return len(scts), err
		}
	}
	return 0, nil
}

// parseSCTList parses the value of the embedded-SCT extension: a DER OCTET
// STRING holding a TLS SignedCertificateTimestampList (RFC 6962 §3.3):
//
//	opaque SerializedSCT<1..2^16-1>;
//	struct { SerializedSCT sct_list<1..2^16-1>; } SignedCertificateTimestampList;
//
// It returns each SerializedSCT, unparsed.
func parseSCTList(ext []byte) ([][]byte, error) {
	var list []byte
	rest, err := asn1.Unmarshal(ext, &list)
	if err != nil {
		return nil, fmt.Errorf("scan: SCT list: %v", err)
	}
	if len(rest) > 0 {
		return nil, errors.New("scan: SCT list: trailing data after the OCTET STRING")
	}
	in := cryptobyte.String(list)
	var scts cryptobyte.String
	if !in.ReadUint16LengthPrefixed(&scts) || !in.Empty() || scts.Empty() {
		return nil, errors.New("scan: SCT list: bad list length")
	}
	var out [][]byte
	for !scts.Empty() {
		var sct cryptobyte.String
		if !scts.ReadUint16LengthPrefixed(&sct) || sct.Empty() {
			return nil, errors.New("scan: SCT list: bad SCT length")
		}
		out = append(out, []byte(sct))
	}
	return out, nil
}

// marshalSCTList is the inverse of parseSCTList.
func marshalSCTList(scts [][]byte) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, s := range scts {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s) })
		}
	})
	list, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("scan: SCT list: %v", err)
	}
	return asn1.Marshal(list)
}
