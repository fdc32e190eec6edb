package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/certctl/certctl/internal/pkitest"
)

// fixture is a CA, n leaves, and an OCSP responder (signed by the CA
// itself) that answers from a map of pre-signed responses.
type fixture struct {
	dir       string
	certs     []*x509.Certificate
	revoked   map[string]bool
	responses map[string][]byte // serial hex -> DER
	gets      atomic.Int64
	posts     atomic.Int64
}

func newFixture(t *testing.T, n int, revokeEvery int) *fixture {
	t.Helper()
	now := time.Now()
	pki := pkitest.NewCA(t, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature})
	ca, key := pki.Cert, pki.Key
	f := &fixture{dir: t.TempDir(), revoked: map[string]bool{}, responses: map[string][]byte{}}
	var certsPEM, revokedTxt bytes.Buffer
	for i := range n {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(1000 + i)), Subject: pkix.Name{CommonName: "leaf"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
		c := pki.Issue(t, tmpl, key.Public())
		f.certs = append(f.certs, c)
		pem.Encode(&certsPEM, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		tpl := ocsp.Response{Status: ocsp.Good, SerialNumber: c.SerialNumber, ThisUpdate: now, NextUpdate: now.Add(time.Hour)}
		if revokeEvery > 0 && i%revokeEvery == 0 {
			tpl.Status, tpl.RevokedAt, tpl.RevocationReason = ocsp.Revoked, now, ocsp.KeyCompromise
			f.revoked[c.SerialNumber.Text(16)] = true
			revokedTxt.WriteString(c.SerialNumber.Text(16) + "\n")
		}
		resp, err := ocsp.CreateResponse(ca, ca, tpl, key)
		if err != nil {
			t.Fatal(err)
		}
		f.responses[c.SerialNumber.Text(16)] = resp
	}
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(f.dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("certs.pem", certsPEM.Bytes())
	write("ca.pem", pki.PEM())
	write("revoked.txt", revokedTxt.Bytes())
	return f
}

func (f *fixture) path(name string) string { return filepath.Join(f.dir, name) }

// ServeHTTP answers GET /ocsp/{base64} and POST /ocsp.
func (f *fixture) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var der []byte
	switch r.Method {
	case http.MethodGet:
		f.gets.Add(1)
		raw := strings.TrimPrefix(r.URL.EscapedPath(), "/ocsp/")
		s, err := url.PathUnescape(raw)
		if err == nil {
			der, err = base64.StdEncoding.DecodeString(s)
		}
		if err != nil {
			http.Error(w, "bad GET path", http.StatusBadRequest)
			return
		}
	case http.MethodPost:
		f.posts.Add(1)
		der, _ = io.ReadAll(r.Body)
	}
	req, err := ocsp.ParseRequest(der)
	if err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	resp, ok := f.responses[req.SerialNumber.Text(16)]
	if !ok {
		w.Write(ocsp.UnauthorizedErrorResponse)
		return
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Write(resp)
}

func TestBenchmarkChecksEveryStatus(t *testing.T) {
	f := newFixture(t, 20, 4)
	srv := httptest.NewServer(f)
	defer srv.Close()
	for _, method := range []string{"GET", "POST"} {
		t.Run(method, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), []string{"--certs", f.path("certs.pem"), "--issuer", f.path("ca.pem"),
				"--revoked", f.path("revoked.txt"), "--url", srv.URL + "/ocsp", "--method", method,
				"--concurrency", "3", "--count", "50"}, &out, &errOut)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, errOut.String())
			}
			if !strings.Contains(out.String(), `"revoked": 5`) || !strings.Contains(out.String(), `"requests": 50`) ||
				!strings.Contains(out.String(), `"errors": 0`) {
				t.Errorf("summary does not show 5 revoked, 50 requests, 0 errors:\n%s", out.String())
			}
		})
	}
	if f.gets.Load() != 70 || f.posts.Load() != 70 {
		t.Errorf("server saw %d GETs and %d POSTs, want 70 each (20 warm-up + 50 measured)", f.gets.Load(), f.posts.Load())
	}
}

func TestBenchmarkRejectsWrongStatus(t *testing.T) {
	f := newFixture(t, 8, 2)
	srv := httptest.NewServer(f)
	defer srv.Close()
	// Claim that a certificate the server calls good is revoked.
	var good string
	for _, c := range f.certs {
		if !f.revoked[c.SerialNumber.Text(16)] {
			good = c.SerialNumber.Text(16)
		}
	}
	b, _ := os.ReadFile(f.path("revoked.txt"))
	if err := os.WriteFile(f.path("revoked.txt"), append(b, []byte(good+"\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"--certs", f.path("certs.pem"), "--issuer", f.path("ca.pem"),
		"--revoked", f.path("revoked.txt"), "--url", srv.URL + "/ocsp", "--count", "10"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "status") {
		t.Fatalf("run() error = %v, want a status mismatch", err)
	}
}

func TestBenchmarkLeavesOutRefusedRequests(t *testing.T) {
	f := newFixture(t, 40, 0)
	refuse := f.certs[3].SerialNumber
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if req, err := ocsp.ParseRequest(body); err == nil && req.SerialNumber.Cmp(refuse) == 0 {
			http.Error(w, "no", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		f.ServeHTTP(w, r)
	}))
	defer srv.Close()
	var out bytes.Buffer
	err := run(context.Background(), []string{"--certs", f.path("certs.pem"), "--issuer", f.path("ca.pem"),
		"--url", srv.URL + "/ocsp", "--count", "39"}, &out, io.Discard)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(out.String(), `"excluded": 1`) || !strings.Contains(out.String(), `"certificates": 39`) {
		t.Errorf("summary does not report 1 excluded of 40:\n%s", out.String())
	}
}

func TestCheckLoopback(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8080/ocsp", true},
		{"http://localhost:8080/", true},
		{"http://[::1]:80/ocsp", true},
		{"https://127.0.0.1:8443/ocsp", false},
		{"http://example.com/ocsp", false},
		{"http://10.0.0.1:80/", false},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			if _, err := checkLoopback(tt.url); (err == nil) != tt.ok {
				t.Errorf("checkLoopback(%q) error = %v, want ok=%t", tt.url, err, tt.ok)
			}
		})
	}
}
