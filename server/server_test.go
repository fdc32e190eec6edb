package server_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/certdb/sqlite"
	"github.com/certctl/certctl/internal/catest"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
	"github.com/certctl/certctl/server"
	"github.com/certctl/certctl/server/cfsslapi"
)

// env is a real CA over a real SQLite store behind an httptest TLS server
// that asks for (but does not require) client certificates.
type env struct {
	t        testing.TB
	ca       *ca.CA
	store    envStore
	profiles map[string]*issuance.Profile
	root     *x509.Certificate
	inter    *x509.Certificate
	srv      *httptest.Server
	server   *server.Server
	now      atomic.Pointer[time.Time]
}

type envOpts struct {
	rate   float64
	burst  int
	admins []string
	store  func(t testing.TB) envStore // default: SQLite in t.TempDir()
	cfssl  *cfsslapi.Options
}

// envStore is a whole certdb store.
type envStore interface {
	certdb.Store
	certdb.TokenStore
	certdb.AuditStore
	Migrate(ctx context.Context) error
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	e := &env{t: t}
	ctx := context.Background()
	var st envStore
	if o.store != nil {
		st = o.store(t)
	} else {
		s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ca.db"))
		if err != nil {
			t.Fatal(err)
		}
		st = s
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	e.store = st
	h := catest.NewHierarchy(t, catest.Options{Store: st, RecordRoot: true, RootRequester: "test"})
	root := h.Root
	iss := h.Issuer(t, issuance.IssuerConfig{OCSPServers: []string{"http://127.0.0.1:8080/ocsp"}})
	profiles := catest.Profiles(t)
	var err error
	e.ca, err = ca.New(iss, h.Chain(), profiles, st)
	if err != nil {
		t.Fatal(err)
	}
	e.root, e.inter, e.profiles = root, h.Intermediate, profiles
	now := time.Now()
	e.now.Store(&now)
	e.server, err = server.New(e.ca, st, server.Config{
		Chain: h.Chain(), Roots: []*x509.Certificate{root},
		AdminIdentities: o.admins, RatePerSecond: o.rate, RateBurst: o.burst, MaxBodyBytes: 16 << 10,
		CFSSL: o.cfssl, Profiles: issuance.DefaultProfiles(),
		Now: func() time.Time { return *e.now.Load() },
	})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewUnstartedServer(e.server.Handler())
	pool := x509.NewCertPool()
	pool.AddCert(root)
	e.srv.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool, MinVersion: tls.VersionTLS12}
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	return e
}

func mustKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// token creates a token directly in the store.
func (e *env) token(mod func(*certdb.Token)) string {
	e.t.Helper()
	text, rec := server.NewToken()
	rec.Profiles = []string{"server"}
	rec.Names = []string{"*.svc.internal"}
	rec.ExpiresAt = time.Now().Add(time.Hour)
	if mod != nil {
		mod(rec)
	}
	if err := e.store.CreateToken(context.Background(), rec); err != nil {
		e.t.Fatal(err)
	}
	return text
}

func csrPEM(t testing.TB, key crypto.Signer, cn string, names ...string) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: names}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

type resp struct {
	status int
	body   []byte
}

func (r resp) code() string {
	var b struct {
		Error struct{ Code, Message string }
	}
	json.Unmarshal(r.body, &b)
	return b.Error.Code
}

func (e *env) do(t testing.TB, client *http.Client, method, path, token string, body any) resp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if client == nil {
		client = e.srv.Client()
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 400 && !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("%s %s: error %d is not JSON: %s", method, path, res.StatusCode, b)
	}
	return resp{res.StatusCode, b}
}

func TestIssueAuthorization(t *testing.T) {
	e := newEnv(t, envOpts{})
	key := mustKey(t)
	good := csrPEM(t, key, "a.svc.internal", "a.svc.internal")
	valid := e.token(nil)
	admin := e.token(func(tk *certdb.Token) { tk.Admin = true; tk.Profiles = nil; tk.Names = nil })
	expired := e.token(func(tk *certdb.Token) { tk.ExpiresAt = time.Now().Add(-time.Minute) })
	revoked := e.token(nil)
	rid, _, _ := server.ParseToken(revoked)
	if err := e.store.RevokeToken(context.Background(), rid, time.Now()); err != nil {
		t.Fatal(err)
	}
	_, wrongSecretRec := server.NewToken()
	wrongSecret := "certctl_" + wrongSecretRec.ID + "_" + strings.Repeat("A", 43)

	tests := []struct {
		name   string
		token  string
		body   any
		status int
		code   string
	}{
		{"ok", valid, server.IssueRequest{CSR: good, Profile: "server"}, 201, ""},
		{"unauthenticated", "", server.IssueRequest{CSR: good, Profile: "server"}, 401, server.CodeUnauthenticated},
		{"malformed token", "nonsense", server.IssueRequest{CSR: good, Profile: "server"}, 401, server.CodeUnauthenticated},
		{"unknown token id", wrongSecret, server.IssueRequest{CSR: good, Profile: "server"}, 401, server.CodeUnauthenticated},
		{"wrong secret", valid[:len(valid)-4] + "AAAA", server.IssueRequest{CSR: good, Profile: "server"}, 401, server.CodeUnauthenticated},
		{"expired token", expired, server.IssueRequest{CSR: good, Profile: "server"}, 401, server.CodeUnauthenticated},
		{"revoked token", revoked, server.IssueRequest{CSR: good, Profile: "server"}, 401, server.CodeUnauthenticated},
		{"wrong profile", valid, server.IssueRequest{CSR: good, Profile: "client"}, 403, server.CodeForbidden},
		{"name outside token scope", valid, server.IssueRequest{CSR: good, Profile: "server", Names: []string{"db.prod.internal"}}, 403, server.CodeForbidden},
		{"cn outside token scope", valid, server.IssueRequest{CSR: csrPEM(t, key, "postgres"), Profile: "server", Names: []string{"a.svc.internal"}}, 403, server.CodeForbidden},
		{"out of profile policy", admin, server.IssueRequest{CSR: csrPEM(t, key, "www.example.com", "www.example.com"), Profile: "server"}, 400, server.CodePolicy},
		{"unknown profile", admin, server.IssueRequest{CSR: good, Profile: "nope"}, 400, server.CodeUnknownProfile},
		{"bad csr", valid, server.IssueRequest{CSR: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", Profile: "server"}, 400, server.CodeBadCSR},
		{"missing csr", valid, server.IssueRequest{Profile: "server"}, 400, server.CodeBadRequest},
		{"unknown field", valid, `{"csr":"x","profile":"server","extra":1}`, 400, server.CodeBadRequest},
		{"not json", valid, `{{{`, 400, server.CodeBadRequest},
		{"empty body", valid, ``, 400, server.CodeBadRequest},
		{"too large", valid, `{"csr":"` + strings.Repeat("A", 20<<10) + `"}`, 413, server.CodeTooLarge},
		{"admin token any profile", admin, server.IssueRequest{CSR: csrPEM(t, key, "app"), Profile: "client"}, 201, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, nil, "POST", "/v1/certificates", tt.token, tt.body)
			if r.status != tt.status || (tt.code != "" && r.code() != tt.code) {
				t.Fatalf("status %d code %q, want %d %q: %s", r.status, r.code(), tt.status, tt.code, r.body)
			}
			if r.status == 201 {
				var out server.CertificateResponse
				if err := json.Unmarshal(r.body, &out); err != nil {
					t.Fatal(err)
				}
				serial, err := certdb.ParseSerial(out.Serial)
				if err != nil {
					t.Fatal(err)
				}
				rec, err := e.store.GetCertificate(context.Background(), serial)
				if err != nil || rec.Status != certdb.StatusValid {
					t.Fatalf("issued certificate not in certdb: %v", err)
				}
				blk, _ := pem.Decode([]byte(out.CertificatePEM))
				if blk == nil || !bytes.Equal(blk.Bytes, rec.DER) {
					t.Fatal("returned certificate differs from the stored one")
				}
				if !strings.HasPrefix(rec.Requester, "token:") {
					t.Fatalf("requester %q", rec.Requester)
				}
			}
		})
	}
	// Every issuance and refusal is audited.
	evs, err := e.store.ListAudit(context.Background(), certdb.AuditQuery{Action: "issue", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var ok, denied int
	for _, ev := range evs {
		switch ev.Outcome {
		case "ok":
			ok++
		case "denied":
			denied++
		}
	}
	if ok != 2 || denied != 3 {
		t.Fatalf("audit: %d ok, %d denied issue events; want 2 and 3", ok, denied)
	}
}

func TestSingleUseTokenRace(t *testing.T) {
	e := newEnv(t, envOpts{})
	tok := e.token(func(tk *certdb.Token) { tk.SingleUse = true })
	body := server.IssueRequest{CSR: csrPEM(t, mustKey(t), "a.svc.internal", "a.svc.internal"), Profile: "server"}
	var wg sync.WaitGroup
	var success, refused atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.do(t, nil, "POST", "/v1/certificates", tok, body)
			switch r.status {
			case 201:
				success.Add(1)
			case 401:
				refused.Add(1)
			default:
				t.Errorf("status %d: %s", r.status, r.body)
			}
		}()
	}
	wg.Wait()
	if success.Load() != 1 || refused.Load() != 7 {
		t.Fatalf("%d successes, %d refusals; want exactly one success", success.Load(), refused.Load())
	}
}

// A single-use token is consumed only by a request the profile accepts: a
// refused request (here a name the token allows but the server profile does
// not) leaves it usable, and it then works exactly once.
func TestSingleUseTokenSurvivesRefusedRequest(t *testing.T) {
	e := newEnv(t, envOpts{})
	tok := e.token(func(tk *certdb.Token) {
		tk.SingleUse = true
		tk.Names = []string{"*.svc.internal", "*.example.com"}
	})
	refused := server.IssueRequest{CSR: csrPEM(t, mustKey(t), "www.example.com", "www.example.com"), Profile: "server"}
	if r := e.do(t, nil, "POST", "/v1/certificates", tok, refused); r.status != 400 || !strings.Contains(string(r.body), server.CodePolicy) {
		t.Fatalf("request outside the profile: %d %s, want 400 %s", r.status, r.body, server.CodePolicy)
	}
	good := server.IssueRequest{CSR: csrPEM(t, mustKey(t), "a.svc.internal", "a.svc.internal"), Profile: "server"}
	if r := e.do(t, nil, "POST", "/v1/certificates", tok, good); r.status != 201 {
		t.Fatalf("the refused request used up the token: %d %s", r.status, r.body)
	}
	if r := e.do(t, nil, "POST", "/v1/certificates", tok, good); r.status != 401 {
		t.Fatalf("second use of a single-use token: %d %s, want 401", r.status, r.body)
	}
}

func TestRevokeListGet(t *testing.T) {
	e := newEnv(t, envOpts{})
	admin := e.token(func(tk *certdb.Token) { tk.Admin = true })
	user := e.token(nil)
	var serials []string
	for i := range 5 {
		name := fmt.Sprintf("s%d.svc.internal", i)
		r := e.do(t, nil, "POST", "/v1/certificates", user, server.IssueRequest{CSR: csrPEM(t, mustKey(t), name, name), Profile: "server"})
		if r.status != 201 {
			t.Fatalf("issue: %d %s", r.status, r.body)
		}
		var out server.CertificateResponse
		json.Unmarshal(r.body, &out)
		serials = append(serials, out.Serial)
	}
	if r := e.do(t, nil, "POST", "/v1/certificates/"+serials[0]+"/revoke", user, server.RevokeRequest{Reason: "keyCompromise"}); r.status != 403 {
		t.Fatalf("non-admin revoke: %d %s", r.status, r.body)
	}
	if r := e.do(t, nil, "POST", "/v1/certificates/"+serials[0]+"/revoke", admin, server.RevokeRequest{Reason: "keyCompromise"}); r.status != 200 {
		t.Fatalf("admin revoke: %d %s", r.status, r.body)
	}
	if r := e.do(t, nil, "POST", "/v1/certificates/"+serials[0]+"/revoke", admin, nil); r.status != 409 || r.code() != server.CodeConflict {
		t.Fatalf("second revoke: %d %s", r.status, r.body)
	}
	if r := e.do(t, nil, "POST", "/v1/certificates/0102030405/revoke", admin, nil); r.status != 404 {
		t.Fatalf("revoke unknown: %d %s", r.status, r.body)
	}
	if r := e.do(t, nil, "POST", "/v1/certificates/"+serials[1]+"/revoke", admin, server.RevokeRequest{Reason: "bogus"}); r.status != 400 {
		t.Fatalf("bad reason: %d %s", r.status, r.body)
	}
	if r := e.do(t, nil, "GET", "/v1/certificates/zz", admin, nil); r.status != 400 {
		t.Fatalf("bad serial: %d %s", r.status, r.body)
	}
	r := e.do(t, nil, "GET", "/v1/certificates/"+serials[0], user, nil)
	var got server.CertificateJSON
	json.Unmarshal(r.body, &got)
	if r.status != 200 || got.Status != "revoked" || got.Reason != "keyCompromise" {
		t.Fatalf("get: %d %s", r.status, r.body)
	}
	if r := e.do(t, nil, "GET", "/v1/certificates", user, nil); r.status != 403 {
		t.Fatalf("non-admin list: %d", r.status)
	}
	// Page through everything (root, intermediate, 5 leaves) two at a time.
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		r := e.do(t, nil, "GET", "/v1/certificates?limit=2&cursor="+cursor, admin, nil)
		var page server.ListResponse
		if err := json.Unmarshal(r.body, &page); err != nil || r.status != 200 {
			t.Fatalf("list: %d %s", r.status, r.body)
		}
		for _, c := range page.Certificates {
			if seen[c.Serial] {
				t.Fatalf("serial %s on two pages", c.Serial)
			}
			seen[c.Serial] = true
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if len(seen) != 7 {
		t.Fatalf("listed %d certificates, want 7", len(seen))
	}
	r = e.do(t, nil, "GET", "/v1/certificates?status=revoked", admin, nil)
	var rev server.ListResponse
	json.Unmarshal(r.body, &rev)
	if len(rev.Certificates) != 1 || rev.Certificates[0].Serial != serials[0] {
		t.Fatalf("revoked list: %s", r.body)
	}
	for _, q := range []string{"status=bogus", "limit=0", "limit=x", "expiring_before=tomorrow", "cursor=zz"} {
		if r := e.do(t, nil, "GET", "/v1/certificates?"+q, admin, nil); r.status != 400 {
			t.Fatalf("list ?%s: %d", q, r.status)
		}
	}
}

// mtlsClient returns a client presenting a certificate issued for names
// under profile.
func (e *env) mtlsClient(profile, cn string, names ...string) (*http.Client, *ca.Issued) {
	e.t.Helper()
	key := mustKey(e.t)
	req := &issuance.Request{PublicKey: key.Public()}
	req.Subject.CommonName = cn
	if err := req.AddNames(names...); err != nil {
		e.t.Fatal(err)
	}
	issued, err := e.ca.Issue(context.Background(), ca.Request{Profile: profile, Request: req, Requester: "test"})
	if err != nil {
		e.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(e.root)
	tr := e.srv.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{
		RootCAs:      e.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs,
		Certificates: []tls.Certificate{{Certificate: issued.Chain, PrivateKey: key}},
	}
	return &http.Client{Transport: tr}, issued
}

func TestRenewOverMTLS(t *testing.T) {
	e := newEnv(t, envOpts{admins: []string{"dns:admin.internal"}})
	client, issued := e.mtlsClient("peer", "node1.internal", "node1.internal", "127.0.0.1")
	newKey := mustKey(t)
	r := e.do(t, client, "POST", "/v1/renew", "", server.RenewRequest{CSR: csrPEM(t, newKey, "ignored.example.com", "evil.example.com")})
	if r.status != 201 {
		t.Fatalf("renew: %d %s", r.status, r.body)
	}
	var out server.CertificateResponse
	json.Unmarshal(r.body, &out)
	blk, _ := pem.Decode([]byte(out.CertificatePEM))
	renewed, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if out.Profile != "peer" || renewed.Subject.CommonName != "node1.internal" || len(renewed.DNSNames) != 1 || renewed.DNSNames[0] != "node1.internal" || len(renewed.IPAddresses) != 1 {
		t.Fatalf("renewed certificate does not keep names/profile: %s %v %v", out.Profile, renewed.DNSNames, renewed.IPAddresses)
	}
	if !renewed.PublicKey.(*ecdsa.PublicKey).Equal(newKey.Public()) {
		t.Fatal("renewed certificate is not for the CSR's key")
	}
	// A service certificate may only renew itself.
	if r := e.do(t, client, "POST", "/v1/certificates", "", server.IssueRequest{CSR: csrPEM(t, newKey, "node1.internal", "node1.internal"), Profile: "peer"}); r.status != 403 {
		t.Fatalf("service cert issuing: %d %s", r.status, r.body)
	}
	if r := e.do(t, client, "GET", "/v1/certificates", "", nil); r.status != 403 {
		t.Fatalf("service cert listing: %d", r.status)
	}
	// Renewal needs a client certificate, not a token.
	tok := e.token(nil)
	if r := e.do(t, nil, "POST", "/v1/renew", tok, server.RenewRequest{CSR: csrPEM(t, newKey, "x")}); r.status != 401 {
		t.Fatalf("renew with token: %d %s", r.status, r.body)
	}
	// Once revoked, the old certificate authenticates nothing.
	if err := e.ca.Revoke(context.Background(), issued.Serial, certdb.ReasonSuperseded); err != nil {
		t.Fatal(err)
	}
	client2, _ := e.mtlsClientSameCert(issued, client)
	if r := e.do(t, client2, "POST", "/v1/renew", "", server.RenewRequest{CSR: csrPEM(t, newKey, "x")}); r.status != 401 {
		t.Fatalf("renew with revoked cert: %d %s", r.status, r.body)
	}
	// An admin identity may do everything.
	adminClient, _ := e.mtlsClient("client", "admin", "admin.internal")
	if r := e.do(t, adminClient, "GET", "/v1/certificates", "", nil); r.status != 200 {
		t.Fatalf("admin cert listing: %d %s", r.status, r.body)
	}
	// A client certificate from another CA is refused by the TLS layer or
	// authenticates nothing.
	foreignKey := mustKey(t)
	tmpl := &x509.Certificate{SerialNumber: issued.Serial, Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, foreignKey.Public(), foreignKey)
	tr := e.srv.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: foreignKey}}
	if res, err := (&http.Client{Transport: tr}).Post(e.srv.URL+"/v1/renew", "application/json", strings.NewReader("{}")); err == nil {
		res.Body.Close()
		if res.StatusCode != 401 {
			t.Fatalf("foreign client certificate: status %d", res.StatusCode)
		}
	}
}

// mtlsClientSameCert returns a fresh client (no TLS session reuse) with the
// same certificate.
func (e *env) mtlsClientSameCert(_ *ca.Issued, c *http.Client) (*http.Client, struct{}) {
	tr := c.Transport.(*http.Transport).Clone()
	return &http.Client{Transport: tr}, struct{}{}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, envOpts{rate: 0.001, burst: 2})
	tok := e.token(nil)
	codes := []int{}
	for range 3 {
		codes = append(codes, e.do(t, nil, "GET", "/v1/certificates/01", tok, nil).status)
	}
	if codes[0] == 429 || codes[1] == 429 || codes[2] != 429 {
		t.Fatalf("statuses %v; want the third limited", codes)
	}
	// Another caller has its own bucket.
	if r := e.do(t, nil, "GET", "/v1/certificates/01", e.token(nil), nil); r.status == 429 {
		t.Fatal("rate limit shared between callers")
	}
}

func TestCAHealthMetrics(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.do(t, nil, "GET", "/v1/ca", "", nil)
	var info server.CAResponse
	if err := json.Unmarshal(r.body, &info); err != nil || r.status != 200 {
		t.Fatalf("/v1/ca: %d %s", r.status, r.body)
	}
	if !strings.Contains(info.ChainPEM, "BEGIN CERTIFICATE") || !strings.Contains(info.RootsPEM, "BEGIN CERTIFICATE") || len(info.OCSPURLs) != 0 {
		t.Fatalf("/v1/ca: %+v", info)
	}
	if r := e.do(t, nil, "GET", "/healthz", "", nil); r.status != 200 {
		t.Fatal("healthz")
	}
	if r := e.do(t, nil, "GET", "/readyz", "", nil); r.status != 200 {
		t.Fatalf("readyz: %d", r.status)
	}
	tok := e.token(nil)
	e.do(t, nil, "POST", "/v1/certificates", tok, server.IssueRequest{CSR: csrPEM(t, mustKey(t), "m.svc.internal", "m.svc.internal"), Profile: "server"})
	r = e.do(t, nil, "GET", "/metrics", "", nil)
	for _, want := range []string{`certctl_issuance_total{outcome="ok",profile="server"} 1`, "certctl_issuance_duration_seconds_bucket", `certctl_http_requests_total{code="201",route="POST /v1/certificates"} 1`} {
		if !strings.Contains(string(r.body), want) {
			t.Fatalf("metrics lack %q", want)
		}
	}
	if r := e.do(t, nil, "GET", "/nope", "", nil); r.status != 404 || r.code() != server.CodeNotFound {
		t.Fatalf("unknown path: %d %s", r.status, r.body)
	}
	// A closed database: not ready, and issuance is 503, never a certificate.
	e.store.Close()
	if r := e.do(t, nil, "GET", "/readyz", "", nil); r.status != 503 {
		t.Fatalf("readyz with closed store: %d", r.status)
	}
	if r := e.do(t, nil, "POST", "/v1/certificates", tok, server.IssueRequest{CSR: csrPEM(t, mustKey(t), "m.svc.internal", "m.svc.internal"), Profile: "server"}); r.status != 503 {
		t.Fatalf("issue with closed store: %d %s", r.status, r.body)
	}
}

func TestPublicHandler(t *testing.T) {
	e := newEnv(t, envOpts{})
	srv := httptest.NewServer(e.server.PublicHandler())
	defer srv.Close()
	for path, want := range map[string]*x509.Certificate{"/ca.crt": e.inter, "/root.crt": e.root} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.Header.Get("Content-Type") != "application/pkix-cert" || !bytes.Equal(b, want.Raw) {
			t.Fatalf("%s: wrong body or type %q", path, res.Header.Get("Content-Type"))
		}
	}
}

// FuzzIssueRequest: whatever body arrives, the server answers with a JSON
// status below 500 (bad input is the caller's mistake), or issues. One CA
// serves every input: building one per input would make fuzzing useless.
func FuzzIssueRequest(f *testing.F) {
	e := newEnv(f, envOpts{})
	tok := e.token(func(tk *certdb.Token) { tk.Admin = true })
	f.Add(`{"csr":"","profile":"server"}`)
	f.Add(`{"csr":"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----","profile":"server","names":["a.svc.internal"]}`)
	f.Add(`{"profile":"server","names":["*.*", "1.2.3.4/5", "a@b", "x://"]}`)
	f.Add(`{"csr":` + strconvQuote(csrPEM(f, mustKey(f), "a.internal", "a.internal")) + `,"profile":"server","names":["b.internal","10.0.0.1","spiffe://x/y"]}`)
	f.Add(`[]`)
	f.Add(`{"csr":1}`)
	f.Add("\x00\xff")
	f.Fuzz(func(t *testing.T, body string) {
		r := e.do(t, nil, "POST", "/v1/certificates", tok, body)
		if r.status >= 500 {
			t.Fatalf("status %d for %q: %s", r.status, body, r.body)
		}
	})
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
