package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/certctl/certctl/internal/pkitest"
)

// fakeCA issues certificates over a certctl-like API and answers OCSP and
// CRL requests from its state. With hideFromCRL, revocations never reach
// the CRL.
type fakeCA struct {
	key         crypto.Signer
	cert        *x509.Certificate
	hideFromCRL bool

	mu      sync.Mutex
	next    int64
	revoked map[string]time.Time
}

func newFakeCA(t *testing.T) *fakeCA {
	t.Helper()
	ca := pkitest.NewCA(t, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature})
	return &fakeCA{key: ca.Key, cert: ca.Cert, next: 100, revoked: map[string]time.Time{}}
}

func (f *fakeCA) api() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/certificates", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			CSR string `json:"csr"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		blk, _ := pem.Decode([]byte(in.CSR))
		csr, err := x509.ParseCertificateRequest(blk.Bytes)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.next++
		serial := big.NewInt(f.next)
		f.mu.Unlock()
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: serial, Subject: csr.Subject,
			DNSNames: csr.DNSNames, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)},
			f.cert, csr.PublicKey, f.key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]string{"certificate_pem": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))})
	})
	mux.HandleFunc("POST /v1/certificates/{serial}/revoke", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer T" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		f.mu.Lock()
		f.revoked[r.PathValue("serial")] = time.Now()
		f.mu.Unlock()
		w.Write([]byte(`{"status":"revoked"}`))
	})
	return mux
}

func (f *fakeCA) public() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /ocsp", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		req, err := ocsp.ParseRequest(b)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		at, revoked := f.revoked[req.SerialNumber.Text(16)]
		f.mu.Unlock()
		tpl := ocsp.Response{Status: ocsp.Good, SerialNumber: req.SerialNumber, ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}
		if revoked {
			tpl.Status, tpl.RevokedAt = ocsp.Revoked, at
		}
		resp, err := ocsp.CreateResponse(f.cert, f.cert, tpl, f.key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Write(resp)
	})
	mux.HandleFunc("GET /crl", func(w http.ResponseWriter, r *http.Request) {
		var entries []x509.RevocationListEntry
		f.mu.Lock()
		if !f.hideFromCRL {
			for s, at := range f.revoked {
				n, _ := new(big.Int).SetString(s, 16)
				entries = append(entries, x509.RevocationListEntry{SerialNumber: n, RevocationTime: at})
			}
		}
		f.mu.Unlock()
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(time.Now().UnixNano()),
			ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour), RevokedCertificateEntries: entries}, f.cert, f.key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Write(der)
	})
	return mux
}

func TestMeasure(t *testing.T) {
	tests := []struct {
		name         string
		hideFromCRL  bool
		wantTimeouts int
	}{
		{"every target shows every revocation", false, 0},
		{"a CRL that never shows them counts timeouts", true, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeCA(t)
			f.hideFromCRL = tt.hideFromCRL
			api := httptest.NewTLSServer(f.api())
			defer api.Close()
			pub := httptest.NewServer(f.public())
			defer pub.Close()
			dir := t.TempDir()
			cacert := filepath.Join(dir, "api.pem")
			issuer := filepath.Join(dir, "ca.pem")
			os.WriteFile(cacert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}), 0o644)
			os.WriteFile(issuer, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.cert.Raw}), 0o644)
			var out bytes.Buffer
			err := run(context.Background(), []string{"--api", api.URL, "--token", "T", "--cacert", cacert, "--issuer", issuer,
				"--ocsp", "a=" + pub.URL + "/ocsp", "--crl", pub.URL + "/crl", "--count", "3", "--poll", "2ms", "--timeout", "200ms"},
				&out, io.Discard)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			js, _, _ := strings.Cut(out.String(), "\nrevoke call")
			var rep Report
			if err := json.Unmarshal([]byte(js), &rep); err != nil {
				t.Fatalf("summary is not JSON: %v\n%s", err, out.String())
			}
			if len(rep.Targets) != 2 || rep.RevokeCallMs.N != 3 {
				t.Fatalf("report has %d targets and %d revoke calls, want 2 and 3", len(rep.Targets), rep.RevokeCallMs.N)
			}
			if got := rep.Targets[0]; got.Name != "OCSP a" || got.N != 3 || got.Timeouts != 0 {
				t.Errorf("OCSP target = %+v, want 3 seen, 0 timeouts", got)
			}
			if got := rep.Targets[1]; got.Name != "CRL" || got.Timeouts != tt.wantTimeouts || got.N != 3-tt.wantTimeouts {
				t.Errorf("CRL target = %+v, want %d timeouts", got, tt.wantTimeouts)
			}
		})
	}
}

func TestMeasureRefusesNonLoopback(t *testing.T) {
	err := run(context.Background(), []string{"--api", "https://example.com", "--ocsp", "a=http://127.0.0.1:1/ocsp"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("run() error = %v, want a loopback refusal", err)
	}
}

func TestSummarize(t *testing.T) {
	d := []time.Duration{4 * time.Millisecond, 1 * time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond}
	r := summarize("x", "u", d, 1)
	if r.N != 4 || r.Timeouts != 1 || r.MedianMs != 2.5 || r.MaxMs != 4 || r.P90Ms != 4 {
		t.Errorf("summarize() = %+v, want n 4, timeouts 1, median 2.5, p90 4, max 4", r)
	}
	if d[0] != 4*time.Millisecond {
		t.Error("summarize sorted its input")
	}
}
