package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/pkitest"
)

func TestPercentile(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		out := make([]time.Duration, len(n))
		for i, v := range n {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      int
		want   time.Duration
	}{
		{"one value", ms(7), 99, 7 * time.Millisecond},
		{"p50 of 1..100", ms(hundred...), 50, 50 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 99, 99 * time.Millisecond},
		{"p100 is the max", ms(hundred...), 100, 100 * time.Millisecond},
		{"p50 of four rounds up", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of four is the max", ms(1, 2, 3, 4), 99, 4 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(p%d) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func TestCheckLoopback(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://127.0.0.1:8443", true},
		{"http://localhost:8888/", true},
		{"http://[::1]:80", true},
		{"http://127.1.2.3:80", true},
		{"https://example.com:443", false},
		{"http://10.0.0.1:80", false},
		{"ftp://127.0.0.1", false},
		{"127.0.0.1:8443", false},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			_, err := checkLoopback(tt.url)
			if (err == nil) != tt.ok {
				t.Errorf("checkLoopback(%q) error = %v, want ok=%t", tt.url, err, tt.ok)
			}
		})
	}
}

func TestCSRFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "csrs.pem")
	var stderr bytes.Buffer
	if err := run(t.Context(), []string{"--gen", "--csrs", "5", "--csr-file", path}, &stderr, &stderr); err != nil {
		t.Fatalf("--gen: %v", err)
	}
	csrs, err := readCSRs(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(csrs) != 5 {
		t.Fatalf("read %d CSRs, want 5", len(csrs))
	}
	keys := map[string]bool{}
	for i, c := range csrs {
		blk, _ := pem.Decode([]byte(c.pem))
		r, err := x509.ParseCertificateRequest(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.CheckSignature(); err != nil {
			t.Errorf("CSR %d: %v", i, err)
		}
		pub, ok := r.PublicKey.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			t.Errorf("CSR %d: key %T, want ECDSA P-256", i, r.PublicKey)
		}
		if want := "svc-" + string(rune('0'+i)) + ".bench.internal"; c.name != want || r.Subject.CommonName != want {
			t.Errorf("CSR %d: name %q, CN %q, want %q", i, c.name, r.Subject.CommonName, want)
		}
		der, _ := x509.MarshalPKIXPublicKey(pub)
		if keys[string(der)] {
			t.Errorf("CSR %d reuses a key", i)
		}
		keys[string(der)] = true
	}
}

// fakeCA signs CSRs the way the real servers answer, and records the names
// requested.
type fakeCA struct {
	t     *testing.T
	key   crypto.Signer
	cert  *x509.Certificate
	mu    sync.Mutex
	names []string
}

func newFakeCA(t *testing.T) *fakeCA {
	ca := pkitest.NewCA(t, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake"}, NotBefore: time.Now(),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign})
	return &fakeCA{t: t, key: ca.Key, cert: ca.Cert}
}

// sign issues a certificate for csrPEM naming names (or wrongName instead).
func (f *fakeCA) sign(csrPEM string, names []string) string {
	blk, _ := pem.Decode([]byte(csrPEM))
	r, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		f.t.Error(err)
		return ""
	}
	f.mu.Lock()
	f.names = append(f.names, names...)
	serial := big.NewInt(int64(len(f.names) + 1))
	f.mu.Unlock()
	tmpl := &x509.Certificate{SerialNumber: serial, DNSNames: names, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.cert, r.PublicKey, f.key)
	if err != nil {
		f.t.Error(err)
		return ""
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestBenchmarkAgainstFakeServers(t *testing.T) {
	tests := []struct {
		name      string
		target    string
		tls       bool
		handler   func(f *fakeCA) http.HandlerFunc
		wantError string // substring of the first error; "" for a clean run
	}{
		{
			name: "certctl", target: "certctl", tls: true,
			handler: func(f *fakeCA) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path != "/v1/certificates" || r.Header.Get("Authorization") != "Bearer tok" {
						http.Error(w, "bad path or token", http.StatusUnauthorized)
						return
					}
					var in struct {
						CSR, Profile string
						Names        []string
					}
					if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Profile != "server" {
						http.Error(w, "bad body", http.StatusBadRequest)
						return
					}
					c := f.sign(in.CSR, in.Names)
					w.WriteHeader(http.StatusCreated)
					json.NewEncoder(w).Encode(map[string]string{"serial": "01", "certificate_pem": c, "chain_pem": c})
				}
			},
		},
		{
			name: "cfssl", target: "cfssl",
			handler: func(f *fakeCA) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					var in struct {
						CertificateRequest string   `json:"certificate_request"`
						Hosts              []string `json:"hosts"`
					}
					if r.URL.Path != "/api/v1/cfssl/sign" || json.NewDecoder(r.Body).Decode(&in) != nil {
						http.Error(w, "bad request", http.StatusBadRequest)
						return
					}
					json.NewEncoder(w).Encode(map[string]any{"success": true, "result": map[string]string{"certificate": f.sign(in.CertificateRequest, in.Hosts)}})
				}
			},
		},
		{
			name: "cfssl failure", target: "cfssl", wantError: "success=false",
			handler: func(f *fakeCA) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					w.Write([]byte(`{"success":false,"errors":[{"code":1000,"message":"no"}]}`))
				}
			},
		},
		{
			name: "certctl wrong name", target: "certctl", tls: true, wantError: "want svc-",
			handler: func(f *fakeCA) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					var in struct{ CSR string }
					json.NewDecoder(r.Body).Decode(&in)
					c := f.sign(in.CSR, []string{"other.internal"})
					w.WriteHeader(http.StatusCreated)
					json.NewEncoder(w).Encode(map[string]string{"serial": "01", "certificate_pem": c, "chain_pem": c})
				}
			},
		},
	}
	dir := t.TempDir()
	csrFile := filepath.Join(dir, "csrs.pem")
	csrs, err := makeCSRs(t.Context(), 12, "bench.internal")
	if err != nil {
		t.Fatal(err)
	}
	if err := writeCSRs(csrFile, csrs); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeCA(t)
			var srv *httptest.Server
			args := []string{"--target", tt.target, "--csr-file", csrFile, "--concurrency", "3", "--warmup", "2", "--count", "10",
				"--json", filepath.Join(t.TempDir(), "out.json")}
			if tt.tls {
				srv = httptest.NewTLSServer(tt.handler(f))
				ca := filepath.Join(t.TempDir(), "ca.pem")
				os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
				args = append(args, "--url", srv.URL, "--cacert", ca, "--token", "tok")
			} else {
				srv = httptest.NewServer(tt.handler(f))
				args = append(args, "--url", srv.URL)
			}
			defer srv.Close()
			if tt.wantError != "" {
				args = append(args, "--warmup", "0")
			}
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), args, &stdout, &stderr)
			if tt.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantError) {
					t.Fatalf("run() error = %v, want one containing %q", err, tt.wantError)
				}
				return
			}
			if err != nil {
				t.Fatalf("run() error = %v\nstderr: %s", err, stderr.String())
			}
			var rep Report
			if err := json.NewDecoder(&stdout).Decode(&rep); err != nil {
				t.Fatalf("decode JSON summary: %v", err)
			}
			if rep.Requests != 10 || rep.Errors != 0 || rep.CertsPerSec <= 0 || rep.P99Ms < rep.P50Ms || rep.MaxMs < rep.P99Ms {
				t.Errorf("summary = %+v, want 10 requests, no errors, ordered percentiles", rep)
			}
			// Each CSR is sent once: warm-up and measured requests together
			// cover the first 12 names exactly.
			seen := map[string]int{}
			for _, n := range f.names {
				seen[n]++
			}
			for _, c := range csrs {
				if seen[c.name] != 1 {
					t.Errorf("%s requested %d times, want 1", c.name, seen[c.name])
				}
			}
		})
	}
}
