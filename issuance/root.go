package issuance

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/certctl/certctl/keys"
)

// RootConfig describes a self-signed root CA certificate.
type RootConfig struct {
	CommonName   string
	Organization []string
	// Validity from now; at most 25 years.
	Validity time.Duration
	// MaxPathLen is the pathLenConstraint: 0 lets the root sign leaves and
	// no intermediates, 1 one level of intermediates, -1 means unlimited.
	MaxPathLen int
}

const (
	// maxRootValidity: 25 years (with leap days). Long-lived roots are
	// normal, but beyond this the key algorithm itself becomes the risk.
	maxRootValidity = 9131 * day
	// rootBackdate absorbs clock skew between this machine and relying parties.
	rootBackdate = time.Minute
)

// SelfSignRoot creates a self-signed root CA certificate for signer and
// returns its DER. The certificate has key usage keyCertSign, cRLSign and
// digitalSignature, a subject key identifier (RFC 7093 §2 method 1) and
// basic constraints cA with cfg.MaxPathLen.
//
// The certificate is linted like everything else; since a root's TBS
// includes its own key, it is linted after signing and discarded (returning
// a *LintError) if zlint reports a warning or an error.
func SelfSignRoot(signer crypto.Signer, cfg RootConfig, serial *big.Int, now time.Time) (der []byte, err error) {
	if signer == nil {
		return nil, errors.New("issuance: self-sign root: nil signer")
	}
	if cfg.CommonName == "" {
		return nil, errors.New("issuance: self-sign root: common name is required")
	}
	if err := checkText(cfg.CommonName, 64); err != nil {
		return nil, fmt.Errorf("issuance: self-sign root: common name %q %v", cfg.CommonName, err)
	}
	for j, o := range cfg.Organization {
		if o == "" {
			return nil, fmt.Errorf("issuance: self-sign root: organization[%d] is empty", j)
		}
		if err := checkText(o, 64); err != nil {
			return nil, fmt.Errorf("issuance: self-sign root: organization[%d] %q %v", j, o, err)
		}
	}
	switch {
	case cfg.Validity <= 0:
		return nil, errors.New("issuance: self-sign root: validity must be > 0")
	case cfg.Validity > maxRootValidity:
		return nil, fmt.Errorf("issuance: self-sign root: validity %s exceeds the limit of %s", Duration(cfg.Validity), Duration(maxRootValidity))
	case cfg.Validity%time.Second != 0:
		return nil, errors.New("issuance: self-sign root: validity must be a whole number of seconds")
	}
	if cfg.MaxPathLen < -1 {
		return nil, fmt.Errorf("issuance: self-sign root: max path length %d must be >= -1", cfg.MaxPathLen)
	}
	if serial == nil || serial.Sign() <= 0 || serial.BitLen() > 159 {
		return nil, fmt.Errorf("issuance: self-sign root: serial %v must be positive and at most 20 octets when encoded", serial)
	}
	pub := signer.Public()
	if _, err := keys.TypeOf(pub); err != nil {
		return nil, fmt.Errorf("issuance: self-sign root: %w", err)
	}
	sigAlg, err := signatureAlgorithm(pub)
	if err != nil {
		return nil, fmt.Errorf("issuance: self-sign root: %w", err)
	}
	ski, err := subjectKeyID(pub)
	if err != nil {
		return nil, fmt.Errorf("issuance: self-sign root: %v", err)
	}
	now = now.UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SignatureAlgorithm: sigAlg,
		SerialNumber:       new(big.Int).Set(serial),
		Subject: pkix.Name{
			CommonName:   cfg.CommonName,
			Organization: slices.Clone(cfg.Organization),
		},
		NotBefore:             now.Add(-rootBackdate),
		NotAfter:              now.Add(cfg.Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            cfg.MaxPathLen,
		MaxPathLenZero:        cfg.MaxPathLen == 0,
		SubjectKeyId:          ski,
	}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("issuance: self-sign root: %w", err)
	}
	reg, err := privateRegistry()
	if err != nil {
		return nil, err
	}
	if err := lintCertificate(reg, der); err != nil {
		return nil, err
	}
	return der, nil
}
