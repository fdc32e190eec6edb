package probe

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCert is a self-signed certificate written to disk for openssl.
type testCert struct {
	certFile, keyFile string
	der               []byte
	tls               tls.Certificate
}

// newTestCert makes a self-signed certificate for "localhost" with an RSA
// 2048 ("rsa") or ECDSA P-256 ("ecdsa") key.
func newTestCert(t testing.TB, kind string) *testCert {
	t.Helper()
	var key crypto.Signer
	var err error
	switch kind {
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ecdsa":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		t.Fatalf("newTestCert: unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := &testCert{certFile: filepath.Join(dir, kind+".crt"), keyFile: filepath.Join(dir, kind+".key"), der: der}
	if err := os.WriteFile(c.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		t.Fatal(err)
	}
	c.tls = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return c
}

// startOpenSSL runs `openssl s_server -www` on 127.0.0.1 with cert and the
// extra args, and returns its address. The server is killed when the test
// ends.
func startOpenSSL(t testing.TB, cert *testCert, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("openssl not found: run `make test` (scripts/install-test-deps.sh installs it): %v", err)
	}
	all := append([]string{"s_server", "-accept", "127.0.0.1:0", "-cert", cert.certFile, "-key", cert.keyFile, "-www"}, args...)
	cmd := exec.Command("openssl", all...)
	stdin, err := cmd.StdinPipe() // s_server reads commands from stdin: keep it open
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		stdin.Close()
		cmd.Wait()
	})
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ACCEPT "); ok {
				addrc <- a
				break
			}
		}
		close(addrc)
		for sc.Scan() { // drain
		}
	}()
	select {
	case a, ok := <-addrc:
		if !ok {
			cmd.Process.Kill()
			t.Fatalf("openssl %s: exited before ACCEPT: %s", strings.Join(all, " "), stderr.String())
		}
		return a
	case <-time.After(10 * time.Second):
		t.Fatalf("openssl %s: no ACCEPT line within 10s: %s", strings.Join(all, " "), stderr.String())
	}
	return ""
}

// startGoTLS runs a crypto/tls server on 127.0.0.1 that completes handshakes
// and closes; it returns its address.
func startGoTLS(t testing.TB, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				c.(*tls.Conn).Handshake()
			}()
		}
	}()
	return ln.Addr().String()
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func tcpDial(addr string) DialFunc { return Dialer("tcp", addr, "") }
