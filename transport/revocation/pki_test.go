package revocation

import (
	"context"
	"crypto"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/certdb/sqlite"
	"github.com/certctl/certctl/crl"
	"github.com/certctl/certctl/internal/catest"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
	"github.com/certctl/certctl/ocsp"
)

// testPKI is a root, an intermediate issuing into a real (SQLite) store,
// and certctl's own OCSP service (Signer, Presigner, StoreSource,
// Responder) and CRL service (Builder, Handler) for the intermediate,
// served by one httptest server at /ocsp and /crl. Its certificates point
// at that server.
type testPKI struct {
	root, inter *x509.Certificate
	interKey    crypto.Signer
	iss         *issuance.Issuer
	ca          *ca.CA
	st          *sqlite.Store
	signer      *ocsp.Signer
	pre         *ocsp.Presigner
	crlb        *crl.Builder
	rootCA      *ca.CA
	rootCRL     *crl.Builder // with pkiOptions.rootCRL
	srv         *httptest.Server

	ocspReqs, crlReqs atomic.Int64
	handler           atomic.Pointer[http.Handler] // the real services
	// intercept, when set, sees every request first; it returns true if
	// it answered.
	intercept atomic.Pointer[func(w http.ResponseWriter, r *http.Request) bool]
}

type pkiOptions struct {
	shards int  // CRL shards (0: one)
	noURLs bool // issue certificates without AIA/CDP
	// rootCRL: the root publishes a CRL at /root/crl, named in the
	// intermediate's CDP.
	rootCRL bool
}

var keyCache sync.Map

func cachedKey(t testing.TB, name string) crypto.Signer {
	if k, ok := keyCache.Load(name); ok {
		return k.(crypto.Signer)
	}
	k, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := keyCache.LoadOrStore(name, k)
	return v.(crypto.Signer)
}

func newPKI(t testing.TB, o pkiOptions) *testPKI {
	t.Helper()
	ctx := context.Background()
	p := &testPKI{}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)

	st := catest.SQLiteStore(t)
	p.st = st

	var rootCfg issuance.IssuerConfig
	if o.rootCRL {
		rootCfg.CRLDistributionPoints = []string{p.srv.URL + "/root/crl"}
	}
	hier := catest.NewHierarchy(t, catest.Options{Name: "Revocation Test", Now: time.Now().Add(-time.Hour), Store: st, Requester: "test", RootIssuer: rootCfg})
	p.root, p.rootCA, p.inter, p.interKey = hier.Root, hier.RootCA, hier.Intermediate, hier.IntermediateKey
	rootIss := hier.RootIssuer
	cfg := issuance.IssuerConfig{CRLShards: o.shards}
	if !o.noURLs {
		cfg.OCSPServers = []string{p.srv.URL + "/ocsp"}
		cfg.CRLDistributionPoints = []string{p.srv.URL + "/crl"}
		if o.shards > 1 {
			cfg.CRLDistributionPoints = []string{p.srv.URL + "/crl/" + issuance.ShardPlaceholder}
		}
	}
	p.iss = hier.Issuer(t, cfg)
	var err error
	p.ca, err = ca.New(p.iss, hier.Chain(), catest.Profiles(t, "server", "ocsp"), st)
	if err != nil {
		t.Fatal(err)
	}

	// OCSP: certctl's pre-signer and responder.
	p.signer, err = ocsp.NewSigner(ctx, p.inter, func(ctx context.Context, pub crypto.PublicKey) (*x509.Certificate, error) {
		r := &issuance.Request{PublicKey: pub}
		r.Subject.CommonName = "Revocation Test OCSP Responder"
		got, err := p.ca.Issue(ctx, ca.Request{Profile: "ocsp", Request: r, Requester: "ocsp"})
		if err != nil {
			return nil, err
		}
		return got.Certificate, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p.pre, err = ocsp.NewPresigner(p.inter, st, p.signer, ocsp.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ocsp.NewResponder(p.inter, ocsp.NewStoreSource(st), "/ocsp")
	if err != nil {
		t.Fatal(err)
	}
	// CRL: certctl's builder and handler (no handler cache: each request
	// reads the latest CRL).
	p.crlb, err = crl.NewBuilder(p.iss, st)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := crl.NewHandler(st, p.iss.KeyID(), p.iss.CRLShards(), crl.WithCacheTTL(0))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/crl", ch)
	mux.Handle("/crl/", ch)
	if o.rootCRL {
		p.rootCRL, err = crl.NewBuilder(rootIss, st)
		if err != nil {
			t.Fatal(err)
		}
		rh, err := crl.NewHandler(st, rootIss.KeyID(), 1, crl.WithCacheTTL(0))
		if err != nil {
			t.Fatal(err)
		}
		mux.Handle("/root/crl", http.StripPrefix("/root", rh))
		if _, err := p.rootCRL.Build(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}
	h := rs.Wrap(mux)
	p.handler.Store(&h)
	for s := range p.iss.CRLShards() {
		p.buildCRL(t, s)
	}
	return p
}

func (p *testPKI) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.URL.Path, "/ocsp"):
		p.ocspReqs.Add(1)
	case strings.HasPrefix(r.URL.Path, "/crl"), strings.HasPrefix(r.URL.Path, "/root/crl"):
		p.crlReqs.Add(1)
	}
	if f := p.intercept.Load(); f != nil && (*f)(w, r) {
		return
	}
	(*p.handler.Load()).ServeHTTP(w, r)
}

func (p *testPKI) setIntercept(f func(w http.ResponseWriter, r *http.Request) bool) {
	if f == nil {
		p.intercept.Store(nil)
		return
	}
	p.intercept.Store(&f)
}

// issue issues a server certificate and signs its first OCSP response, as
// certctl's server does at issuance.
func (p *testPKI) issue(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	return p.issueProfile(t, name, "server", true)
}

func (p *testPKI) issueProfile(t testing.TB, name, profile string, presign bool) *x509.Certificate {
	t.Helper()
	req := &issuance.Request{PublicKey: cachedKey(t, "leaf").Public()}
	if profile == "server" {
		if err := req.AddNames(name); err != nil {
			t.Fatal(err)
		}
	} else {
		req.Subject.CommonName = name
	}
	got, err := p.ca.Issue(context.Background(), ca.Request{Profile: profile, Request: req, Requester: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if presign {
		if err := p.pre.SignOne(context.Background(), got.Serial); err != nil {
			t.Fatal(err)
		}
	}
	return got.Certificate
}

// revoke revokes c through the CA, re-signs its OCSP response and rebuilds
// its CRL shard.
func (p *testPKI) revoke(t testing.TB, c *x509.Certificate, reason certdb.Reason) {
	t.Helper()
	ctx := context.Background()
	if err := p.ca.Revoke(ctx, c.SerialNumber, reason); err != nil {
		t.Fatal(err)
	}
	if err := p.pre.SignOne(ctx, c.SerialNumber); err != nil {
		t.Fatal(err)
	}
	p.buildCRL(t, issuance.ShardOf(c.SerialNumber, p.iss.CRLShards()))
}

func (p *testPKI) buildCRL(t testing.TB, shard int) {
	t.Helper()
	if _, err := p.crlb.Build(context.Background(), shard); err != nil {
		t.Fatal(err)
	}
}

func (p *testPKI) chain(leaf *x509.Certificate) []*x509.Certificate {
	return []*x509.Certificate{leaf, p.inter}
}

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func newClock(t time.Time) *fakeClock { c := &fakeClock{}; c.ns.Store(t.UnixNano()); return c }
func (c *fakeClock) Now() time.Time   { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) {
	c.ns.Add(int64(d))
}
