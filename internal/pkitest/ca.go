package pkitest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority for tests built with crypto/x509 alone
// (no certctl package), for tests that need arbitrary certificates (odd
// extensions, expired or future validity, fake servers) rather than what
// certctl's profiles allow; internal/catest builds hierarchies the way
// certctl does. A CA does not change after it is made and is safe for
// concurrent use.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewCA makes a self-signed CA certificate from tmpl with a new ECDSA P-256
// key. IsCA and BasicConstraintsValid are set; an unset SerialNumber is
// random, unset NotBefore and NotAfter are an hour ago and an hour from
// now, and an unset KeyUsage is CertSign|CRLSign. tmpl is not modified.
func NewCA(t testing.TB, tmpl *x509.Certificate) *CA {
	t.Helper()
	key := NewKey(t)
	c := caTemplate(tmpl)
	return &CA{Cert: create(t, c, c, key.Public(), key), Key: key}
}

// NewIntermediate makes a CA certificate from tmpl, as NewCA does, issued
// by ca.
func (ca *CA) NewIntermediate(t testing.TB, tmpl *x509.Certificate) *CA {
	t.Helper()
	key := NewKey(t)
	return &CA{Cert: create(t, caTemplate(tmpl), ca.Cert, key.Public(), ca.Key), Key: key}
}

// Issue signs a certificate from tmpl for pub. An unset SerialNumber is
// random, unset NotBefore and NotAfter are an hour ago and an hour from
// now; tmpl is not modified. The DER is in the result's Raw.
func (ca *CA) Issue(t testing.TB, tmpl *x509.Certificate, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	c := *tmpl
	fillValidity(&c)
	return create(t, &c, ca.Cert, pub, ca.Key)
}

// Pool returns a new pool holding ca's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// PEM returns ca's certificate in PEM.
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// NewKey generates an ECDSA P-256 key.
func NewKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("pkitest: generate key: %v", err)
	}
	return k
}

func caTemplate(tmpl *x509.Certificate) *x509.Certificate {
	c := *tmpl
	c.IsCA, c.BasicConstraintsValid = true, true
	if c.KeyUsage == 0 {
		c.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}
	fillValidity(&c)
	return &c
}

func fillValidity(c *x509.Certificate) {
	if c.SerialNumber == nil {
		c.SerialNumber, _ = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)) // crypto/rand: cannot fail
	}
	now := time.Now()
	if c.NotBefore.IsZero() {
		c.NotBefore = now.Add(-time.Hour)
	}
	if c.NotAfter.IsZero() {
		c.NotAfter = now.Add(time.Hour)
	}
}

func create(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, priv crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
	if err != nil {
		t.Fatalf("pkitest: create certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("pkitest: parse certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	return c
}

// CertsPEM returns certs in PEM, one block each, in order.
func CertsPEM(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

// WriteCertsPEM writes certs in PEM (CertsPEM) to the file name in dir,
// mode 0600, and returns its path.
func WriteCertsPEM(t testing.TB, dir, name string, certs ...*x509.Certificate) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, CertsPEM(certs...), 0o600); err != nil {
		t.Fatalf("pkitest: %v", err)
	}
	return p
}
