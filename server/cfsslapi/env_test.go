package cfsslapi_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/certdb/sqlite"
	"github.com/certctl/certctl/internal/catest"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
	"github.com/certctl/certctl/server/cfsslapi"
)

// Keys of testdata/ca-config.json.
const (
	peerKeyHex    = "0123456789abcdef0123456789abcdef"
	peerOldKeyHex = "fedcba9876543210fedcba9876543210"
	testToken     = "test-token-0123456789"
)

// backend is a cfsslapi.Backend over a real ca.CA and SQLite store. It
// authenticates like certctl's server does, in miniature: a verified HMAC
// key, a bearer token, or a client certificate chaining to the root.
type backend struct {
	ca       *ca.CA
	store    *sqlite.Store
	profiles map[string]*issuance.Profile
}

var _ cfsslapi.Backend = (*backend)(nil)

func (b *backend) authenticate(c cfsslapi.Caller) (string, error) {
	if c.HMACKey != "" {
		return "hmac:" + c.HMACKey, nil
	}
	if h := c.Request.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(testToken)) != 1 {
			return "", fmt.Errorf("%w: invalid bearer token", cfsslapi.ErrUnauthenticated)
		}
		return "token:test", nil
	}
	if cs := c.Request.TLS; cs != nil && len(cs.VerifiedChains) > 0 {
		return "mtls:" + cs.VerifiedChains[0][0].Subject.CommonName, nil
	}
	return "", fmt.Errorf("%w: send a bearer token or a client certificate", cfsslapi.ErrUnauthenticated)
}

func (b *backend) Sign(ctx context.Context, c cfsslapi.Caller, r *cfsslapi.SignRequest) (*x509.Certificate, error) {
	who, err := b.authenticate(c)
	if err != nil {
		return nil, err
	}
	req, err := r.IssuanceRequest()
	if err != nil {
		return nil, err
	}
	issued, err := b.ca.Issue(ctx, ca.Request{Profile: r.Profile, Request: req, Requester: who})
	if err != nil {
		return nil, err
	}
	return issued.Certificate, nil
}

func (b *backend) Info(ctx context.Context, c cfsslapi.Caller, profile string) (*cfsslapi.Info, error) {
	p, ok := b.profiles[profile]
	if !ok {
		return nil, fmt.Errorf("%w %q", ca.ErrUnknownProfile, profile)
	}
	return &cfsslapi.Info{Issuer: b.ca.Issuer().Cert(), Profile: p.Config()}, nil
}

func (b *backend) lookup(ctx context.Context, serial *big.Int, aki []byte) (*certdb.Certificate, error) {
	rec, err := b.store.GetCertificate(ctx, serial)
	if err != nil {
		return nil, err
	}
	if rec.Status == certdb.StatusReserved || (len(aki) > 0 && !bytes.Equal(aki, rec.IssuerKeyID)) {
		return nil, fmt.Errorf("%w: no certificate %s from that issuer", cfsslapi.ErrNotFound, serial)
	}
	return rec, nil
}

func (b *backend) Revoke(ctx context.Context, c cfsslapi.Caller, r *cfsslapi.RevokeRequest) error {
	if _, err := b.authenticate(c); err != nil {
		return err
	}
	if _, err := b.lookup(ctx, r.Serial, r.AuthorityKeyID); err != nil {
		return err
	}
	return b.ca.Revoke(ctx, r.Serial, r.Reason)
}

func (b *backend) CertInfo(ctx context.Context, c cfsslapi.Caller, serial *big.Int, aki []byte) (*x509.Certificate, error) {
	rec, err := b.lookup(ctx, serial, aki)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(rec.DER)
}

// env is a running CFSSL API over a real CA.
type env struct {
	ts       *httptest.Server
	root     *x509.Certificate
	inter    *x509.Certificate
	ca       *ca.CA
	store    *sqlite.Store
	cfg      *cfsslapi.CFSSLConfig
	serverCA []byte // PEM of the httptest server's certificate (trust anchor for clients)
}

func mustNoErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newEnv builds a root, an intermediate and a CA whose profiles come from
// testdata/ca-config.json, and serves the API over TLS; client
// certificates chaining to the root are verified when sent.
func newEnv(t *testing.T) *env {
	t.Helper()
	store := catest.SQLiteStore(t)

	hier := catest.NewHierarchy(t, catest.Options{Name: "CFSSL API Test", Store: store, RecordRoot: true, RootRequester: "test", Requester: "test"})
	root := hier.Root
	iss := hier.Issuer(t, issuance.IssuerConfig{})

	data, err := os.ReadFile(filepath.Join("testdata", "ca-config.json"))
	mustNoErr(t, err)
	cfg, err := cfsslapi.ProfilesFromCFSSLConfig(data, cfsslapi.ImportOptions{Names: issuance.DefaultProfiles()["server"].Names})
	mustNoErr(t, err)
	profiles := map[string]*issuance.Profile{}
	for name, pc := range cfg.Profiles {
		p, err := issuance.NewProfile(name, pc)
		mustNoErr(t, err)
		profiles[name] = p
	}
	// A client profile with a role-like CN, for the mTLS client certificate.
	clientProfile, err := issuance.NewProfile("mtls-client", issuance.DefaultProfiles()["client"])
	mustNoErr(t, err)
	profiles["mtls-client"] = clientProfile
	c, err := ca.New(iss, hier.Chain(), profiles, store)
	mustNoErr(t, err)

	opts := cfg.Options()
	opts.MaxBodyBytes = 64 << 10
	h, err := cfsslapi.NewHandler(&backend{ca: c, store: store, profiles: profiles}, opts)
	mustNoErr(t, err)
	mux := http.NewServeMux()
	mux.Handle(cfsslapi.PathPrefix, h)
	ts := httptest.NewUnstartedServer(mux)
	roots := x509.NewCertPool()
	roots.AddCert(root)
	ts.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: roots}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return &env{
		ts: ts, root: root, inter: hier.Intermediate, ca: c, store: store, cfg: cfg,
		serverCA: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}),
	}
}

// clientTLS trusts the test server; with a client certificate when given.
func (e *env) clientTLS(cert *tls.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(e.ts.Certificate())
	c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

// clientCert issues a client certificate from the CA (outside the API).
func (e *env) clientCert(t *testing.T, cn string) (*tls.Certificate, crypto.Signer) {
	t.Helper()
	k, err := keys.Generate(keys.ECDSAP256)
	mustNoErr(t, err)
	req := &issuance.Request{PublicKey: k.Public()}
	req.Subject.CommonName = cn
	issued, err := e.ca.Issue(t.Context(), ca.Request{Profile: "mtls-client", Request: req, Requester: "test"})
	mustNoErr(t, err)
	return &tls.Certificate{Certificate: issued.Chain, PrivateKey: k, Leaf: issued.Certificate}, k
}

// newCSR returns a PEM CSR for a fresh key.
func newCSR(t testing.TB, cn string, dnsNames ...string) []byte {
	t.Helper()
	k, err := keys.Generate(keys.ECDSAP256)
	mustNoErr(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn}, DNSNames: dnsNames,
	}, k)
	mustNoErr(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// verifyIssued parses certPEM (exactly one certificate), checks that it
// chains to the root through the intermediate for usage, and that the
// store holds it as valid with the expected profile and requester.
func (e *env) verifyIssued(t *testing.T, certPEM []byte, profile, requester string, usage x509.ExtKeyUsage) *x509.Certificate {
	t.Helper()
	block, rest := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("certificate is not exactly one PEM CERTIFICATE block:\n%s", certPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	mustNoErr(t, err)
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(e.root)
	inters.AddCert(e.inter)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		t.Fatalf("issued certificate does not chain to the test root: %v", err)
	}
	rec, err := e.store.GetCertificate(t.Context(), cert.SerialNumber)
	if err != nil {
		t.Fatalf("issued certificate %s is not in the store: %v", cert.SerialNumber, err)
	}
	if rec.Status != certdb.StatusValid || !bytes.Equal(rec.DER, cert.Raw) || rec.Profile != profile || rec.Requester != requester {
		t.Fatalf("store record = {status %v, profile %q, requester %q, same DER %v}, want {valid, %q, %q, true}",
			rec.Status, rec.Profile, rec.Requester, bytes.Equal(rec.DER, cert.Raw), profile, requester)
	}
	return cert
}

// countIssued counts issued certificates in the store.
func (e *env) countIssued(t *testing.T) int {
	t.Helper()
	recs, err := e.store.ListCertificates(t.Context(), certdb.Query{Limit: certdb.MaxLimit})
	mustNoErr(t, err)
	return len(recs)
}

// envelope is CFSSL's api.Response as it arrives.
type envelope struct {
	Success bool            `json:"success"`
	Result  json.RawMessage `json:"result"`
	Errors  []struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
	Messages []struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"messages"`
}

// post sends body to endpoint with optional headers and decodes the
// envelope, checking its shape.
func (e *env) post(t *testing.T, method, endpoint string, body io.Reader, header http.Header) (int, *envelope) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, e.ts.URL+cfsslapi.PathPrefix+endpoint, body)
	mustNoErr(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.ts.Client().Do(req)
	mustNoErr(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	mustNoErr(t, err)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("response is not a CFSSL envelope: %v\n%s", err, raw)
	}
	var shape map[string]json.RawMessage
	mustNoErr(t, json.Unmarshal(raw, &shape))
	for _, k := range []string{"success", "result", "errors", "messages"} {
		if _, ok := shape[k]; !ok {
			t.Errorf("envelope lacks %q: %s", k, raw)
		}
	}
	if env.Success != (resp.StatusCode == http.StatusOK) || (!env.Success && (len(env.Errors) != 1 || string(env.Result) != "null")) {
		t.Errorf("status %d with envelope %s", resp.StatusCode, raw)
	}
	return resp.StatusCode, &env
}

func jsonBody(t testing.TB, v any) io.Reader {
	t.Helper()
	b, err := json.Marshal(v)
	mustNoErr(t, err)
	return bytes.NewReader(b)
}

func bearer() http.Header { return http.Header{"Authorization": {"Bearer " + testToken}} }
