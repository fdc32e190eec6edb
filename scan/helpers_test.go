package scan

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
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/pkitest"
)

// testCA is a CA made by the tests with crypto/x509.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

var serialCounter atomic.Int64

func nextSerial() *big.Int { return big.NewInt(1000 + serialCounter.Add(1)) }

func ecKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaKey(t testing.TB, bits int) crypto.Signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newRootCA(t testing.TB, cn string) *testCA {
	t.Helper()
	ca := pkitest.NewCA(t, &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-365 * 24 * time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	})
	return &testCA{cert: ca.Cert, key: ca.Key}
}

func (ca *testCA) intermediate(t testing.TB, cn string) *testCA {
	return ca.intermediateValid(t, cn, time.Now().Add(-60*24*time.Hour), time.Now().Add(180*24*time.Hour))
}

func (ca *testCA) intermediateValid(t testing.TB, cn string, notBefore, notAfter time.Time) *testCA {
	t.Helper()
	inter := (&pkitest.CA{Cert: ca.cert, Key: ca.key}).NewIntermediate(t, &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	})
	return &testCA{cert: inter.Cert, key: inter.Key}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// leafSpec describes a leaf the tests issue.
type leafSpec struct {
	cn        string
	dns       []string
	ips       []net.IP
	key       crypto.Signer // default ECDSA P-256
	notBefore time.Time
	notAfter  time.Time
	eku       []x509.ExtKeyUsage // default serverAuth
	aia, ocsp []string
	crl       []string
	extra     []pkix.Extension
}

func (ca *testCA) issue(t testing.TB, s leafSpec) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	if s.key == nil {
		s.key = ecKey(t)
	}
	if s.notBefore.IsZero() {
		s.notBefore = time.Now().Add(-time.Hour)
	}
	if s.notAfter.IsZero() {
		s.notAfter = time.Now().Add(90 * 24 * time.Hour)
	}
	if s.eku == nil {
		s.eku = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	if s.cn == "" {
		s.cn = "leaf"
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: s.cn},
		DNSNames:              s.dns,
		IPAddresses:           s.ips,
		NotBefore:             s.notBefore,
		NotAfter:              s.notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           s.eku,
		IssuingCertificateURL: s.aia,
		OCSPServer:            s.ocsp,
		CRLDistributionPoints: s.crl,
		ExtraExtensions:       s.extra,
	}
	parent, parentKey := ca.cert, ca.key
	if ca.cert == nil { // self-signed
		parent, parentKey = tmpl, s.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, s.key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, s.key
}

func keyPEM(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func tlsCert(chain []*x509.Certificate, key crypto.Signer) tls.Certificate {
	var c tls.Certificate
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	c.PrivateKey = key
	c.Leaf = chain[0]
	return c
}

// startOpenSSL runs `openssl s_server -www` on 127.0.0.1 with the served
// chain (leaf first) and key, plus extra arguments, and returns its port.
// The server is killed when the test ends.
func startOpenSSL(t *testing.T, chain []*x509.Certificate, key crypto.Signer, extra ...string) int {
	t.Helper()
	dir := t.TempDir()
	args := []string{"s_server", "-accept", "127.0.0.1:0", "-www",
		"-cert", writeFile(t, dir, "cert.pem", pkitest.CertsPEM(chain[0])),
		"-key", writeFile(t, dir, "key.pem", keyPEM(t, key))}
	if len(chain) > 1 {
		args = append(args, "-cert_chain", writeFile(t, dir, "chain.pem", pkitest.CertsPEM(chain[1:]...)))
	}
	return startOpenSSLArgs(t, append(args, extra...)...)
}

func startOpenSSLArgs(t *testing.T, args ...string) int {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start openssl s_server (apt-get install openssl): %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "ACCEPT ") {
				lines <- sc.Text()
			}
		}
		close(lines)
		// keep draining so s_server never blocks on a full pipe
	}()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatalf("openssl %s: exited: %s", strings.Join(args, " "), stderr.String())
		}
		_, port, _ := net.SplitHostPort(strings.TrimPrefix(l, "ACCEPT "))
		p, err := strconv.Atoi(port)
		if err != nil {
			t.Fatalf("openssl s_server: bad ACCEPT line %q", l)
		}
		return p
	case <-time.After(20 * time.Second):
		t.Fatalf("openssl s_server did not start: %s", stderr.String())
	}
	return 0
}

// startGoTLS runs an HTTPS server with cfg on 127.0.0.1 (HTTP/2 enabled)
// whose handler sets hsts (if non-empty) and answers "ok".
func startGoTLS(t *testing.T, cfg *tls.Config, hsts string) int {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hsts != "" {
			w.Header().Set("Strict-Transport-Security", hsts)
		}
		w.Write([]byte("ok\n"))
	}))
	srv.EnableHTTP2 = true
	srv.TLS = cfg
	srv.Config.ErrorLog = quietLog()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().(*net.TCPAddr).Port
}

// checks returns the Check names of the findings, sorted.
func checks(fs []Finding) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.Check)
	}
	slices.Sort(out)
	return out
}

func scanCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func localTarget(port int) Target {
	return Target{Host: "127.0.0.1", Port: port, ServerName: "localhost"}
}

// quietLog silences http.Server's handshake errors: the prober's hellos fail
// on purpose.
func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }
