package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/pkitest"
)

// testCA issues certificates for the tests' TLS servers and clients.
type testCA struct {
	*pkitest.CA
	pool *x509.CertPool
}

func newCA(t testing.TB) *testCA {
	t.Helper()
	ca := pkitest.NewCA(t, &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "proxy test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign,
	})
	return &testCA{CA: ca, pool: ca.Pool()}
}

// issue returns a leaf for 127.0.0.1 / localhost (server and client auth).
func (ca *testCA) issue(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	key := pkitest.NewKey(t)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	leaf := ca.Issue(t, &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}, key.Public())
	return tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key}
}

// connectProxy is a CONNECT proxy built on net/http: it checks the
// Proxy-Authorization header if auth is set, dials the target and splices.
type connectProxy struct {
	auth string // required Proxy-Authorization value ("" = none)
	mu   sync.Mutex
	seen []*http.Request
	peer []string // client certificate CNs seen (mTLS)
}

func (p *connectProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.seen = append(p.seen, r)
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		p.peer = append(p.peer, r.TLS.PeerCertificates[0].Subject.CommonName)
	}
	p.mu.Unlock()
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	if p.auth != "" && r.Header.Get("Proxy-Authorization") != p.auth {
		w.Header().Set("Proxy-Authenticate", `Basic realm="test"`)
		http.Error(w, "who are you?", http.StatusProxyAuthRequired)
		return
	}
	target, err := net.Dial("tcp", r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer target.Close()
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer client.Close()
	go func() {
		if n := brw.Reader.Buffered(); n > 0 {
			b, _ := brw.Reader.Peek(n)
			target.Write(b)
		}
		io.Copy(target, client)
		target.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(client, target)
}

// target is an HTTPS server (the far end of the tunnel).
func newTarget(t *testing.T, ca *testCA) *httptest.Server {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "target")}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// getThrough GETs url through d, with end-to-end TLS to the target.
func getThrough(t *testing.T, d ContextDialer, ca *testCA, url string) (string, error) {
	t.Helper()
	tr := &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{RootCAs: ca.pool}, Proxy: nil}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func mustURL(t testing.TB, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// Through a plain and an mTLS proxy, with and without authentication.
func TestTunnel(t *testing.T) {
	ca := newCA(t)
	target := newTarget(t, ca)

	t.Run("plain", func(t *testing.T) {
		cp := &connectProxy{auth: "Basic dTpwdw=="} // u:pw
		srv := httptest.NewServer(cp)
		defer srv.Close()
		d := &HTTPConnect{URL: mustURL(t, strings.Replace(srv.URL, "http://", "http://u:pw@", 1))}
		body, err := getThrough(t, d, ca, target.URL+"/plain")
		if err != nil || body != "hello /plain" {
			t.Fatalf("GET through proxy: %q, %v", body, err)
		}
		cp.mu.Lock()
		r := cp.seen[0]
		cp.mu.Unlock()
		if r.Host != strings.TrimPrefix(target.URL, "https://") {
			t.Errorf("CONNECT Host = %q", r.Host)
		}
		// Header wins over the URL's user info.
		d = &HTTPConnect{URL: mustURL(t, srv.URL), Header: http.Header{"Proxy-Authorization": {"Basic dTpwdw=="}, "X-Trace": {"1"}}}
		if body, err := getThrough(t, d, ca, target.URL+"/hdr"); err != nil || body != "hello /hdr" {
			t.Fatalf("with Header: %q, %v", body, err)
		}
		// No credentials: 407 with a hint.
		d = &HTTPConnect{URL: mustURL(t, srv.URL)}
		_, err = d.DialContext(t.Context(), "tcp", strings.TrimPrefix(target.URL, "https://"))
		var se *StatusError
		if !errors.Is(err, ErrProxyRefused) || !errors.As(err, &se) || se.StatusCode != 407 ||
			!strings.Contains(err.Error(), "407 Proxy Authentication Required") || !strings.Contains(err.Error(), "Proxy-Authorization") {
			t.Fatalf("no credentials: got %v", err)
		}
	})

	t.Run("chain of two proxies", func(t *testing.T) {
		first, second := &connectProxy{}, &connectProxy{}
		s1, s2 := httptest.NewServer(first), httptest.NewServer(second)
		defer s1.Close()
		defer s2.Close()
		// We reach the second proxy through a tunnel opened by the first.
		d := &HTTPConnect{URL: mustURL(t, s2.URL), Forward: &HTTPConnect{URL: mustURL(t, s1.URL)}}
		if body, err := getThrough(t, d, ca, target.URL+"/chain"); err != nil || body != "hello /chain" {
			t.Fatalf("GET through two proxies: %q, %v", body, err)
		}
		first.mu.Lock()
		second.mu.Lock()
		defer first.mu.Unlock()
		defer second.mu.Unlock()
		if len(first.seen) != 1 || first.seen[0].Host != strings.TrimPrefix(s2.URL, "http://") ||
			len(second.seen) != 1 || second.seen[0].Host != strings.TrimPrefix(target.URL, "https://") {
			t.Fatal("the proxies did not see the expected CONNECTs")
		}
	})

	t.Run("mTLS", func(t *testing.T) {
		proxyCA := newCA(t)
		cp := &connectProxy{}
		srv := httptest.NewUnstartedServer(cp)
		srv.TLS = &tls.Config{
			Certificates: []tls.Certificate{proxyCA.issue(t, "proxy")},
			ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: proxyCA.pool, MinVersion: tls.VersionTLS12,
		}
		srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes below
		srv.StartTLS()
		defer srv.Close()
		clientCert := proxyCA.issue(t, "client-svc")
		cfg := &tls.Config{RootCAs: proxyCA.pool, Certificates: []tls.Certificate{clientCert}}
		d := &HTTPConnect{URL: mustURL(t, srv.URL), TLSConfig: cfg}
		body, err := getThrough(t, d, ca, target.URL+"/mtls")
		if err != nil || body != "hello /mtls" {
			t.Fatalf("GET through mTLS proxy: %q, %v", body, err)
		}
		cp.mu.Lock()
		peers := cp.peer
		cp.mu.Unlock()
		if len(peers) == 0 || peers[0] != "client-svc" {
			t.Errorf("proxy saw client certificates %q", peers)
		}
		if cfg.ServerName != "" || cfg.MinVersion != 0 {
			t.Error("DialContext modified the caller's TLSConfig")
		}
		// Without a client certificate the proxy refuses the handshake.
		d = &HTTPConnect{URL: mustURL(t, srv.URL), TLSConfig: &tls.Config{RootCAs: proxyCA.pool}}
		if _, err := d.DialContext(t.Context(), "tcp", "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "proxy:") {
			t.Fatalf("no client certificate: got %v", err)
		}
		// A proxy certificate from an unknown CA is refused.
		d = &HTTPConnect{URL: mustURL(t, srv.URL), TLSConfig: &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{clientCert}}}
		_, err = d.DialContext(t.Context(), "tcp", "127.0.0.1:1")
		var uae x509.UnknownAuthorityError
		if !errors.As(err, &uae) || !strings.Contains(err.Error(), "TLS handshake with proxy") {
			t.Fatalf("untrusted proxy: got %v", err)
		}
	})
}

// rawProxy accepts one connection, reads the request head and runs fn.
func rawProxy(t *testing.T, fn func(c net.Conn, req *http.Request)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				fn(c, req)
			})
		}
	}()
	return "http://" + ln.Addr().String()
}

// Bytes the proxy sends right after its answer (here, in the same write)
// are the first bytes of the tunnel.
func TestBufferedBytesKept(t *testing.T) {
	u := rawProxy(t, func(c net.Conn, req *http.Request) {
		io.WriteString(c, "HTTP/1.0 200 Connection established\r\nProxy-Agent: test\r\n\r\nEARLY")
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err == nil {
			io.WriteString(c, "echo:"+string(b))
		}
	})
	conn, err := (&HTTPConnect{URL: mustURL(t, u)}).DialContext(t.Context(), "tcp", "example.test:443")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "ping")
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "EARLYecho:ping" {
		t.Fatalf("tunnel read %q, %v; want the early bytes first", got, err)
	}
}

func TestErrors(t *testing.T) {
	hang := rawProxy(t, func(c net.Conn, req *http.Request) {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c) // never answers; returns when the client closes
	})
	tests := []struct {
		name, network, addr string
		proxy               func(c net.Conn, req *http.Request) // nil: proxyURL below
		proxyURL            string
		timeout             time.Duration
		want                []string
		wantErr             error
	}{
		{name: "forbidden", proxy: func(c net.Conn, _ *http.Request) {
			io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 25\r\n\r\nport 5432 is not allowed\n")
		}, want: []string{`"403 Forbidden"`, "does not allow", "port 5432 is not allowed"}, wantErr: ErrProxyRefused},
		{name: "bad gateway", proxy: func(c net.Conn, _ *http.Request) {
			io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
		}, want: []string{"502 Bad Gateway", "db.internal:5432"}, wantErr: ErrProxyRefused},
		{name: "closed without answer", proxy: func(c net.Conn, _ *http.Request) {}, want: []string{"read proxy response", "EOF"}},
		{name: "not HTTP", proxy: func(c net.Conn, _ *http.Request) { io.WriteString(c, "SSH-2.0-OpenSSH\r\n\r\n") }, want: []string{"malformed HTTP"}},
		{name: "headers too large", proxy: func(c net.Conn, _ *http.Request) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Junk: "+strings.Repeat("a", 2*MaxResponseHeader)+"\r\n\r\n")
		}, want: []string{"exceed"}},
		{name: "hanging proxy", proxyURL: hang, timeout: 300 * time.Millisecond, want: []string{"context deadline exceeded"}, wantErr: context.DeadlineExceeded},
		{name: "udp", network: "udp", proxyURL: hang, want: []string{"only tcp"}},
		{name: "no port", addr: "db.internal", proxyURL: hang, want: []string{"want host:port"}},
		{name: "injection", addr: "db.internal:5432 HTTP/1.1\r\nX: y", proxyURL: hang, want: []string{"want host:port"}},
		{name: "socks scheme", proxyURL: "socks5://127.0.0.1:1080", want: []string{`scheme "socks5"`}},
		{name: "proxy down", proxyURL: "http://127.0.0.1:1", want: []string{"dial proxy 127.0.0.1:1", "refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := tt.proxyURL
			if tt.proxy != nil {
				u = rawProxy(t, tt.proxy)
			}
			network, addr := cmp(tt.network, "tcp"), cmp(tt.addr, "db.internal:5432")
			ctx := t.Context()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			c, err := (&HTTPConnect{URL: mustURL(t, u)}).DialContext(ctx, network, addr)
			if err == nil {
				c.Close()
				t.Fatal("DialContext succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v is not %v", err, tt.wantErr)
			}
		})
	}
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// A real third-party proxy: tinyproxy (Debian package tinyproxy-bin,
// installed by scripts/install-test-deps.sh), with Basic authentication.
func TestTinyproxy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts tinyproxy")
	}
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		t.Fatalf("tinyproxy is required (apt-get install tinyproxy-bin, or scripts/install-test-deps.sh): %v", err)
	}
	ca := newCA(t)
	target := newTarget(t, ca)
	_, targetPort, _ := net.SplitHostPort(strings.TrimPrefix(target.URL, "https://"))
	dir := t.TempDir()
	port := freePort(t)
	conf := fmt.Sprintf(`Port %d
Listen 127.0.0.1
Timeout 30
MaxClients 10
Allow 127.0.0.1
ConnectPort %s
BasicAuth svc s3cret
LogLevel Info
PidFile "%s/tinyproxy.pid"
`, port, targetPort, dir)
	if os.Geteuid() == 0 {
		conf += "User nobody\nGroup nogroup\n"
	}
	confPath := filepath.Join(dir, "tinyproxy.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	cmd := exec.Command(bin, "-d", "-c", confPath)
	var out pkitest.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tinyproxy did not start: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	d := &HTTPConnect{URL: mustURL(t, "http://svc:s3cret@"+addr)}
	for i := range 3 {
		body, err := getThrough(t, d, ca, fmt.Sprintf("%s/tiny/%d", target.URL, i))
		if err != nil || body != fmt.Sprintf("hello /tiny/%d", i) {
			t.Fatalf("GET through tinyproxy: %q, %v\n%s", body, err, out.String())
		}
	}
	// Wrong password: tinyproxy 1.11 answers 401 (not 407) to CONNECT.
	_, err = (&HTTPConnect{URL: mustURL(t, "http://svc:wrong@"+addr)}).DialContext(t.Context(), "tcp", "127.0.0.1:"+targetPort)
	var se *StatusError
	if !errors.As(err, &se) || (se.StatusCode != http.StatusProxyAuthRequired && se.StatusCode != http.StatusUnauthorized) ||
		!strings.Contains(err.Error(), "Proxy-Authorization") {
		t.Fatalf("wrong password: got %v", err)
	}
	// A port tinyproxy does not allow: 403.
	_, err = d.DialContext(t.Context(), "tcp", "127.0.0.1:1")
	if !errors.As(err, &se) || se.StatusCode != http.StatusForbidden {
		t.Fatalf("disallowed port: got %v", err)
	}
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
