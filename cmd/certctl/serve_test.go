package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/pkitest"
)

// TestServeFreshDirectory is the README's first command: serve on an empty
// directory initialises a CA, prints where it listens, the root path and a
// one-time admin token that works; it stops cleanly on cancellation.
func TestServeFreshDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr pkitest.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--dir", dir, "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, &stdout, &stderr)
	}()
	apiRe := regexp.MustCompile(`API on https://(127\.0\.0\.1:\d+), CA certificates/OCSP/CRL on http://(127\.0\.0\.1:\d+)`)
	var m []string
	deadline := time.Now().Add(60 * time.Second)
	for m == nil || !strings.Contains(stdout.String(), "certctl_") {
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\nstdout: %s\nstderr: %s", stdout.String(), stderr.String())
		}
		select {
		case err := <-done:
			t.Fatalf("serve exited: %v\nstderr: %s", err, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		m = apiRe.FindStringSubmatch(stdout.String())
	}
	out := stdout.String()
	if !strings.Contains(out, "root certificate: "+filepath.Join(dir, "root.crt")) {
		t.Fatalf("root path not printed: %s", out)
	}
	var token string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "certctl_") {
			token = sc.Text()
		}
	}
	rootPEM, err := os.ReadFile(filepath.Join(dir, "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}

	// The API's own certificate chains to the CA's root; TLS 1.3 is used.
	res, err := client.Get("https://" + m[1] + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.TLS.Version != tls.VersionTLS13 {
		t.Fatalf("readyz: %d, TLS version %x", res.StatusCode, res.TLS.Version)
	}

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "web.internal"}, DNSNames: []string{"web.internal"}}, key)
	body, _ := json.Marshal(map[string]any{"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})), "profile": "server"})
	req, _ := http.NewRequest("POST", "https://"+m[1]+"/v1/certificates", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 201 {
		t.Fatalf("issue with the admin token: %d %s", res.StatusCode, b)
	}
	// OCSP on the plain-HTTP side says good, then revoked soon after an API
	// revocation; the CRL lists it.
	var issued struct {
		Serial         string `json:"serial"`
		CertificatePEM string `json:"certificate_pem"`
	}
	if err := json.Unmarshal(b, &issued); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	leafFile := filepath.Join(work, "leaf.pem")
	os.WriteFile(leafFile, []byte(issued.CertificatePEM), 0o644)
	ocspStatus := func() string {
		out, err := exec.Command("openssl", "ocsp", "-issuer", filepath.Join(dir, "intermediate.crt"), "-cert", leafFile,
			"-url", "http://"+m[2]+"/ocsp", "-CAfile", filepath.Join(dir, "root.crt")).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl ocsp: %v\n%s", err, out)
		}
		return string(out)
	}
	if st := ocspStatus(); !strings.Contains(st, leafFile+": good") || !strings.Contains(st, "Response verify OK") {
		t.Fatalf("OCSP before revocation: %s", st)
	}
	req, _ = http.NewRequest("POST", "https://"+m[1]+"/v1/certificates/"+issued.Serial+"/revoke", strings.NewReader(`{"reason":"keyCompromise"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	res, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("revoke: %d", res.StatusCode)
	}
	for st := ""; !strings.Contains(st, "Reason: keyCompromise"); st = ocspStatus() {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("OCSP still says: %s", st)
		}
	}
	t.Logf("revoke -> openssl ocsp shows revoked: %v", time.Since(start))
	for {
		res, err = http.Get("http://" + m[2] + "/crl")
		if err != nil {
			t.Fatal(err)
		}
		der, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if l, err := x509.ParseRevocationList(der); err == nil && len(l.RevokedCertificateEntries) == 1 && fmt.Sprintf("%x", l.RevokedCertificateEntries[0].SerialNumber) == strings.TrimLeft(issued.Serial, "0") {
			t.Logf("revoke -> CRL lists it: %v", time.Since(start))
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("CRL does not list the revoked certificate (status %d)", res.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The plain-HTTP side serves the issuing CA certificate (AIA).
	res, err = http.Get("http://" + m[2] + "/ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/pkix-cert" {
		t.Fatalf("/ca.crt: %d", res.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("serve did not shut down")
	}
	if !strings.Contains(stderr.String(), "stopped") {
		t.Fatalf("no shutdown log: %s", stderr.String())
	}

	// A second start on the same directory reuses the CA and prints no token.
	ctx2, cancel2 := context.WithCancel(context.Background())
	var out2, err2 pkitest.SyncBuffer
	done2 := make(chan error, 1)
	go func() {
		done2 <- run(ctx2, []string{"serve", "--dir", dir, "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, &out2, &err2)
	}()
	for !strings.Contains(out2.String(), "API on") {
		select {
		case err := <-done2:
			t.Fatalf("second serve exited: %v %s", err, err2.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel2()
	<-done2
	if strings.Contains(out2.String(), "certctl_") || strings.Contains(out2.String(), "Created CA") {
		t.Fatalf("second start re-initialised or printed a token: %s", out2.String())
	}
}
