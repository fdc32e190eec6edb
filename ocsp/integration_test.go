package ocsp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
	xocsp "golang.org/x/crypto/ocsp"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/internal/catest"
	"github.com/certctl/certctl/internal/pkitest"
)

var pg *pkitest.Postgres

func TestMain(m *testing.M) { pkitest.MainWithPostgres(m, &pg) }

type storeCase struct {
	name string
	open func(t *testing.T) (caStore, func() error)
}

func storeCases() []storeCase {
	return []storeCase{
		{"sqlite", func(t *testing.T) (caStore, func() error) {
			st := catest.SQLiteStore(t)
			return st, st.Close
		}},
		{"postgres", func(t *testing.T) (caStore, func() error) {
			st := catest.PostgresStore(t, pg.NewDatabase(t))
			return st, st.Close
		}},
	}
}

const opensslPath = "/usr/bin/openssl"

// opensslOCSP runs `openssl ocsp` against url and returns its combined
// output. openssl is required: a missing binary fails the test.
func opensslOCSP(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := os.Stat(opensslPath); err != nil {
		t.Fatalf("openssl is required for OCSP interop tests: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, opensslPath, append([]string{"ocsp"}, args...)...).CombinedOutput()
	return string(out)
}

// The whole service on real stores, checked with OpenSSL: good, then
// revoked through the revocation announcement (no SignOne call from the
// test), unauthorized for a foreign certificate, SHA-1 and SHA-256
// CertIDs, GET paths with '/' and '+', zlint, and answers from cache while
// the database is down until nextUpdate.
func TestIntegration(t *testing.T) {
	for _, sc := range storeCases() {
		t.Run(sc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			st, closeStore := sc.open(t)
			if _, ok := st.(certdb.RevocationNotifier); !ok {
				t.Fatal("store does not announce revocations")
			}
			if _, ok := st.(certdb.Locker); !ok {
				t.Fatal("store has no leader lock")
			}
			pki := newPKI(t, st, realClock())
			_, pre := pki.service(t, Config{})
			src := NewStoreSource(st)
			rs, err := NewResponder(pki.inter, src, "/ocsp")
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(rs.Wrap(http.NotFoundHandler()))
			defer srv.Close()
			runDone := make(chan struct{}, 2)
			go func() { pre.Run(ctx); runDone <- struct{}{} }()
			go func() { src.Run(ctx); runDone <- struct{}{} }()

			// A new certificate has a response at issuance.
			leaf := pki.leaf(t, "interop.test.internal")
			if err := pre.SignOne(ctx, leaf.Serial); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			issuerPEM := pkitest.WriteCertsPEM(t, dir, "issuer.pem", pki.inter)
			rootPEM := pkitest.WriteCertsPEM(t, dir, "root.pem", pki.root)
			leafPEM := pkitest.WriteCertsPEM(t, dir, "leaf.pem", leaf.Certificate)
			url := srv.URL + "/ocsp"
			query := func(extra ...string) string {
				// Options such as -sha256 must come before -cert.
				return opensslOCSP(t, append(extra, "-issuer", issuerPEM, "-cert", leafPEM, "-url", url, "-CAfile", rootPEM, "-resp_text")...)
			}
			for _, h := range [][]string{nil, {"-sha256"}} {
				out := query(h...)
				if !strings.Contains(out, "Response verify OK") || !strings.Contains(out, leafPEM+": good") {
					t.Fatalf("openssl ocsp %v: want verified good:\n%s", h, out)
				}
				// byKey prints as 40 hex digits (a SHA-1 key hash); byName as a DN.
				if !regexp.MustCompile(`Responder Id: [0-9A-F]{40}\n`).MatchString(out) || !strings.Contains(out, "OCSP No Check") {
					t.Errorf("openssl ocsp %v: want a ResponderID by key and the nocheck responder certificate:\n%s", h, out)
				}
			}
			// Both CertIDs are in the response.
			out := query()
			if !strings.Contains(out, "Hash Algorithm: sha1") || !strings.Contains(out, "Hash Algorithm: sha256") {
				t.Errorf("want SHA-1 and SHA-256 CertIDs:\n%s", out)
			}

			// zlint on what is served.
			resp := httpOCSP(t, http.MethodPost, url, request(t, leaf.Certificate, pki.inter, crypto.SHA1))
			for name, r := range zlint.LintOcspResponse(parse(t, resp, leaf.Certificate, pki.inter)).Results {
				if r.Status >= lint.Warn {
					t.Errorf("zlint %s: %s %s", name, r.Status, r.Details)
				}
			}

			// GET with '/' and '+' in the path.
			var getDER []byte
			slashy := pki.leafWith(t, func(c *x509.Certificate) bool {
				getDER = request(t, c, pki.inter, crypto.SHA1)
				b := base64.StdEncoding.EncodeToString(getDER)
				return strings.Contains(b, "/") && strings.Contains(b, "+")
			})
			if err := pre.SignOne(ctx, slashy.Serial); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{base64.StdEncoding.EncodeToString(getDER), strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D").Replace(base64.StdEncoding.EncodeToString(getDER))} {
				body := httpOCSP(t, http.MethodGet, url+"/"+p, nil)
				if r := parse(t, body, slashy.Certificate, pki.inter); r.Status != xocsp.Good {
					t.Errorf("GET %s: %s", p, statusName(r.Status))
				}
			}

			// A foreign certificate (another CA): unauthorized.
			other := newPKI(t, newFakeStore(), realClock())
			foreign := other.leaf(t, "foreign.test.internal")
			out = opensslOCSP(t, "-issuer", pkitest.WriteCertsPEM(t, dir, "other.pem", other.inter), "-cert", pkitest.WriteCertsPEM(t, dir, "foreign.pem", foreign.Certificate), "-url", url, "-resp_text")
			if !strings.Contains(out, "Responder Error: unauthorized (6)") {
				t.Errorf("foreign certificate: want unauthorized:\n%s", out)
			}
			// One of ours that has no response (never signed): unauthorized too.
			unsigned := pki.leaf(t, "unsigned.test.internal")
			if body := httpOCSP(t, http.MethodPost, url, request(t, unsigned.Certificate, pki.inter, crypto.SHA256)); !bytes.Equal(body, xocsp.UnauthorizedErrorResponse) {
				t.Errorf("unsigned certificate: %x", body)
			}

			// Revoke through the CA: the store announces it, the Presigner
			// re-signs, the responder's cache drops it. Poll with a deadline.
			if err := pki.ca.Revoke(ctx, leaf.Serial, certdb.ReasonKeyCompromise); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "openssl to report revoked", func() bool {
				return strings.Contains(query(), leafPEM+": revoked")
			})
			for _, h := range [][]string{nil, {"-sha256"}} {
				out := query(h...)
				if !strings.Contains(out, "Response verify OK") || !strings.Contains(out, leafPEM+": revoked") ||
					!regexp.MustCompile(`Reason: keyCompromise`).MatchString(out) {
					t.Fatalf("openssl ocsp %v after revoke:\n%s", h, out)
				}
			}

			// Database down: the cache answers until nextUpdate, then not.
			cancel()
			<-runDone
			<-runDone
			clock := newClock(time.Now())
			src2 := NewStoreSource(st, WithSourceClock(clock.Now))
			rs2, err := NewResponder(pki.inter, src2, "", WithResponderClock(clock.Now))
			if err != nil {
				t.Fatal(err)
			}
			der := request(t, slashy.Certificate, pki.inter, crypto.SHA1)
			ask := func() *httptest.ResponseRecorder {
				w := httptest.NewRecorder()
				rs2.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(der)))
				return w
			}
			if w := ask(); w.Code != 200 { // warms the cache
				t.Fatalf("HTTP %d", w.Code)
			}
			next := parse(t, ask().Body.Bytes(), slashy.Certificate, pki.inter).NextUpdate
			if err := closeStore(); err != nil {
				t.Fatal(err)
			}
			clock.Set(next.Add(-time.Second)) // past the cache TTL: the store is asked, and fails
			if w := ask(); w.Code != 200 || parse(t, w.Body.Bytes(), slashy.Certificate, pki.inter).Status != xocsp.Good {
				t.Fatalf("store closed, before nextUpdate: HTTP %d", w.Code)
			}
			clock.Set(next)
			if w := ask(); w.Code != http.StatusServiceUnavailable || !bytes.Equal(w.Body.Bytes(), xocsp.TryLaterErrorResponse) {
				t.Fatalf("store closed, at nextUpdate: HTTP %d %x", w.Code, w.Body.Bytes())
			}
		})
	}
}

func httpOCSP(t *testing.T, method, url string, body []byte) []byte {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/ocsp-request")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s: HTTP %d %x", method, url, resp.StatusCode, b)
	}
	return b
}
