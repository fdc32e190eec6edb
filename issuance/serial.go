package issuance

import (
	"errors"
	"fmt"
	"io"
	"math/big"
)

// NewSerial draws a certificate serial number from r (crypto/rand.Reader in
// production): 20 random bytes with the top bit cleared, so the number is
// positive and at most 20 octets when DER-encoded (RFC 5280 §4.1.2.2), with
// 159 random bits (the CA/B Forum BRs §7.1 ask for at least 64). A zero draw
// is replaced.
func NewSerial(r io.Reader) (*big.Int, error) {
	if r == nil {
		return nil, errors.New("issuance: new serial: nil random source")
	}
	b := make([]byte, 20)
	for range 8 {
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("issuance: new serial: %w", err)
		}
		b[0] &= 0x7f
		if n := new(big.Int).SetBytes(b); n.Sign() > 0 {
			return n, nil
		}
	}
	// 8 zero draws in a row (p = 2^-1272) means the source is broken.
	return nil, errors.New("issuance: new serial: random source returns only zeros")
}
