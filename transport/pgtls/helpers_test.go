package pgtls_test

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
)

// testPKI is a root CA from the project's issuance package, with the
// default server and client profiles and a client profile of one hour.
type testPKI struct {
	root     *x509.Certificate
	rootKey  crypto.Signer
	iss      *issuance.Issuer
	rootPEM  []byte
	roots    *x509.CertPool
	profiles map[string]*issuance.Profile
}

func newPKI(cn string) (*testPKI, error) {
	now := time.Now()
	rootKey, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		return nil, err
	}
	sn, err := issuance.NewSerial(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := issuance.SelfSignRoot(rootKey, issuance.RootConfig{CommonName: cn, Validity: 365 * 24 * time.Hour}, sn, now)
	if err != nil {
		return nil, err
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	iss, err := issuance.NewIssuer(root, rootKey, issuance.IssuerConfig{})
	if err != nil {
		return nil, err
	}
	p := &testPKI{root: root, rootKey: rootKey, iss: iss, rootPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		roots: x509.NewCertPool(), profiles: map[string]*issuance.Profile{}}
	p.roots.AddCert(root)
	defaults := issuance.DefaultProfiles()
	short := defaults["client"]
	short.Validity = issuance.Duration(time.Hour)
	for name, cfg := range map[string]issuance.ProfileConfig{"server": defaults["server"], "client": defaults["client"], "client-1h": short} {
		if p.profiles[name], err = issuance.NewProfile(name, cfg); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// issue returns a certificate of profile with subject CN cn and SANs names,
// as a tls.Certificate (Leaf set) and PEM.
func (p *testPKI) issue(profile, cn string, names ...string) (cert tls.Certificate, certPEM, keyPEM []byte, err error) {
	key, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		return cert, nil, nil, err
	}
	req := &issuance.Request{PublicKey: key.Public(), Subject: pkix.Name{CommonName: cn}}
	if err := req.AddNames(names...); err != nil {
		return cert, nil, nil, err
	}
	sn, err := issuance.NewSerial(rand.Reader)
	if err != nil {
		return cert, nil, nil, err
	}
	_, tok, err := p.iss.Prepare(p.profiles[profile], req, sn, time.Now())
	if err != nil {
		return cert, nil, nil, fmt.Errorf("prepare %s %q: %w", profile, cn, err)
	}
	der, err := p.iss.Issue(tok)
	if err != nil {
		return cert, nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if keyPEM, err = keys.MarshalPEM(key); err != nil {
		return cert, nil, nil, err
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	return cert, certPEM, keyPEM, err
}

func (p *testPKI) mustIssue(t testing.TB, profile, cn string, names ...string) *tls.Certificate {
	t.Helper()
	c, _, _, err := p.issue(profile, cn, names...)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// testIdentity is a pgtls.Identity whose certificate the test rotates, like
// transport's: GetClientCertificate serves the current one, RootCAs pins.
type testIdentity struct {
	roots *x509.CertPool
	cur   atomic.Pointer[tls.Certificate]
	calls atomic.Int64 // GetClientCertificate calls
}

func newIdentity(roots *x509.CertPool, c *tls.Certificate) *testIdentity {
	id := &testIdentity{roots: roots}
	id.cur.Store(c)
	return id
}

func (id *testIdentity) rotate(c *tls.Certificate) { id.cur.Store(c) }

func (id *testIdentity) ClientTLSConfig() *tls.Config {
	return &tls.Config{
		RootCAs:    id.roots,
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			id.calls.Add(1)
			return id.cur.Load(), nil
		},
	}
}

func (id *testIdentity) NotAfter() time.Time { return id.cur.Load().Leaf.NotAfter }

// configIdentity returns a fixed configuration (for the refusal tests).
type configIdentity struct {
	cfg      *tls.Config
	notAfter time.Time
}

func (c configIdentity) ClientTLSConfig() *tls.Config { return c.cfg }
func (c configIdentity) NotAfter() time.Time          { return c.notAfter }

// fakeClock is a settable clock.
type fakeClock struct{ t atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.t.Store(time.Now().UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.t.Add(int64(d)) }
func serial(c *tls.Certificate) string       { return c.Leaf.SerialNumber.String() }
func serialOf(c *x509.Certificate) string    { return c.SerialNumber.String() }
