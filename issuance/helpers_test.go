package issuance

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/pkitest"
	"github.com/certctl/certctl/keys"
)

var allKeyTypes = []keys.KeyType{keys.ECDSAP256, keys.ECDSAP384, keys.RSA2048, keys.RSA3072, keys.RSA4096, keys.Ed25519}

// keyPool hands out pre-generated keys so RSA-4096 is generated a few times
// per test binary rather than in every case. Keys handed out for different
// indexes are distinct. Indexes below chainKeys are for subjects, the others
// for CAs (newChain), so a subject key never equals its issuer's.
var keyPool = struct {
	sync.Mutex
	m map[keys.KeyType]map[int]crypto.Signer
}{m: map[keys.KeyType]map[int]crypto.Signer{}}

const chainKeys = 100

// testKey returns test key number idx of type kt.
func testKey(t testing.TB, kt keys.KeyType, idx int) crypto.Signer {
	t.Helper()
	keyPool.Lock()
	defer keyPool.Unlock()
	if keyPool.m[kt] == nil {
		keyPool.m[kt] = map[int]crypto.Signer{}
	}
	if s, ok := keyPool.m[kt][idx]; ok {
		return s
	}
	s, err := keys.Generate(kt)
	if err != nil {
		t.Fatal(err)
	}
	keyPool.m[kt][idx] = s
	return s
}

var testIssuerConfig = IssuerConfig{
	OCSPServers:           []string{"http://ocsp.pki.internal"},
	IssuingCertificateURL: []string{"http://pki.internal/ca.crt"},
	CRLDistributionPoints: []string{"http://pki.internal/ca.crl"},
}

// testChain is a root, an intermediate (max_path_len 0) and issuers for both.
type testChain struct {
	now          time.Time
	root, inter  *x509.Certificate
	rootIssuer   *Issuer
	interIssuer  *Issuer
	rootKey      crypto.Signer
	intermediate crypto.Signer
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	s, err := NewSerial(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustProfile(t testing.TB, name string, c ProfileConfig) *Profile {
	t.Helper()
	p, err := NewProfile(name, c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func defaultProfile(t testing.TB, name string) *Profile {
	t.Helper()
	c, ok := DefaultProfiles()[name]
	if !ok {
		t.Fatalf("no default profile %q", name)
	}
	return mustProfile(t, name, c)
}

func parseCert(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// issue runs Prepare and Issue and returns the parsed certificate.
func issue(t testing.TB, iss *Issuer, p *Profile, req *Request, now time.Time) *x509.Certificate {
	t.Helper()
	_, tok, err := iss.Prepare(p, req, serial(t), now)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	der, err := iss.Issue(tok)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return parseCert(t, der)
}

// newChain builds root -> intermediate with keys of the given types.
func newChain(t testing.TB, rootType, interType keys.KeyType, keyIdx int) *testChain {
	t.Helper()
	now := time.Now()
	c := &testChain{now: now, rootKey: testKey(t, rootType, chainKeys+2*keyIdx), intermediate: testKey(t, interType, chainKeys+2*keyIdx+1)}
	der, err := SelfSignRoot(c.rootKey, RootConfig{
		CommonName:   "certctl Test Root " + string(rootType),
		Organization: []string{"certctl test"},
		Validity:     10 * 365 * day,
		MaxPathLen:   1,
	}, serial(t), now)
	if err != nil {
		t.Fatalf("SelfSignRoot: %v", err)
	}
	c.root = parseCert(t, der)
	if c.rootIssuer, err = NewIssuer(c.root, c.rootKey, testIssuerConfig); err != nil {
		t.Fatalf("NewIssuer(root): %v", err)
	}
	c.inter = issue(t, c.rootIssuer, defaultProfile(t, "intermediate"), &Request{
		PublicKey: c.intermediate.Public(),
		Subject:   pkixName("certctl Test Intermediate "+string(interType), "certctl test"),
	}, now)
	if c.interIssuer, err = NewIssuer(c.inter, c.intermediate, testIssuerConfig); err != nil {
		t.Fatalf("NewIssuer(intermediate): %v", err)
	}
	return c
}

const opensslPath = "/usr/bin/openssl"

// opensslVerify runs `openssl verify -x509_strict` on leaf with the given
// roots and untrusted intermediates. openssl is required: a missing binary
// fails the test.
func opensslVerify(t testing.TB, roots, intermediates []*x509.Certificate, leaf *x509.Certificate, purpose string) error {
	t.Helper()
	if _, err := os.Stat(opensslPath); err != nil {
		t.Fatalf("openssl is required for interop tests: %v", err)
	}
	dir := t.TempDir()
	args := []string{"verify", "-x509_strict", "-CAfile", pkitest.WriteCertsPEM(t, dir, "roots.pem", roots...)}
	if len(intermediates) > 0 {
		args = append(args, "-untrusted", pkitest.WriteCertsPEM(t, dir, "inter.pem", intermediates...))
	}
	if purpose != "" {
		args = append(args, "-purpose", purpose)
	}
	args = append(args, pkitest.WriteCertsPEM(t, dir, "leaf.pem", leaf))
	out, err := exec.Command(opensslPath, args...).CombinedOutput()
	if err != nil {
		return errors.New(strings.TrimSpace(string(out)))
	}
	if !strings.Contains(string(out), ": OK") {
		return errors.New("openssl verify did not say OK: " + string(out))
	}
	return nil
}

func pkixName(cn string, org ...string) pkix.Name {
	return pkix.Name{CommonName: cn, Organization: org}
}
