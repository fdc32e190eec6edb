package certdb

import (
	"context"
	"fmt"
	"math/big"
	"time"
)

// Certificate Transparency records (RFC 6962).
//
// A CA that uses CT signs a precertificate after ReserveSerial and records
// it with AddPrecertificate before it submits it to any log: no
// precertificate is ever seen by a log without being in certdb. The SCTs the
// logs return are stored with AddSCTs once the certificate is issued.

// SCT is a Signed Certificate Timestamp a log issued for a certificate.
type SCT struct {
	Serial    *big.Int  // the certificate's serial
	LogID     []byte    // RFC 6962 §3.2 log ID: SHA-256 of the log's public key (32 bytes)
	LogURL    string    // submission prefix of the log
	Operator  string    // who runs the log (from the profile)
	Version   int       // SCT version (0 = v1)
	Timestamp time.Time // SCT timestamp, millisecond precision, UTC
	// Extensions are the SCT's extensions (CtExtensions, opaque; static-ct
	// logs put the leaf index there).
	Extensions []byte
	// Signature is the TLS-encoded DigitallySigned struct.
	Signature []byte
	// Embedded: the SCT is in the certificate (it covers the
	// precertificate); false for an SCT for the final certificate (add-chain).
	Embedded bool
}

// Validate checks an SCT record before a store writes it.
func (s *SCT) Validate() error {
	switch {
	case s == nil:
		return fmt.Errorf("%w: nil SCT", ErrInvalid)
	case s.Serial == nil || s.Serial.Sign() <= 0 || len(s.Serial.Bytes()) > 20:
		return fmt.Errorf("%w: SCT serial must be positive and at most 20 octets", ErrInvalid)
	case len(s.LogID) != 32:
		return fmt.Errorf("%w: SCT log ID must be 32 bytes, not %d", ErrInvalid, len(s.LogID))
	case len(s.Signature) == 0:
		return fmt.Errorf("%w: SCT without signature", ErrInvalid)
	case s.Version < 0 || s.Version > 255:
		return fmt.Errorf("%w: SCT version %d", ErrInvalid, s.Version)
	case s.Timestamp.IsZero():
		return fmt.Errorf("%w: SCT without timestamp", ErrInvalid)
	}
	return nil
}

// SCTStore records precertificates and SCTs. Implementations are safe for
// concurrent use, from several processes too.
type SCTStore interface {
	// AddPrecertificate records the DER of the precertificate signed for a
	// reserved serial. ErrNotFound if the serial is unknown, ErrDuplicate if
	// a precertificate is already recorded, ErrInvalid for empty DER.
	// Allowed in any state (a CA records it while the serial is reserved).
	AddPrecertificate(ctx context.Context, serial *big.Int, der []byte) error
	// GetPrecertificate returns the recorded precertificate, or ErrNotFound
	// (unknown serial or none recorded).
	GetPrecertificate(ctx context.Context, serial *big.Int) ([]byte, error)
	// AddSCTs stores SCTs of one certificate, all with the same Serial,
	// atomically. ErrNotFound if the serial is unknown, ErrDuplicate if an
	// SCT with the same (log ID, Embedded) is stored for it, ErrInvalid for
	// an invalid record or mixed serials.
	AddSCTs(ctx context.Context, scts []*SCT) error
	// ListSCTs returns the SCTs of a certificate, ordered by Embedded
	// (embedded first), then timestamp, then log ID. Empty for a serial
	// without SCTs (whether or not it exists).
	ListSCTs(ctx context.Context, serial *big.Int) ([]*SCT, error)
}
