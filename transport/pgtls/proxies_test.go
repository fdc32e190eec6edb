package pgtls_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/certctl/certctl/internal/pkitest"
	"github.com/certctl/certctl/transport/pgtls"
	"github.com/certctl/certctl/transport/proxy"
)

// Real PgBouncer and HAProxy (Debian packages pgbouncer, haproxy; `make test`
// installs them) in front of the test cluster. Setups follow
// ../shared/recipes/pgbouncer-haproxy.md.

// lookBinary finds a proxy binary on PATH or in /usr/sbin (Debian puts both
// there, which is not on every user's PATH).
func lookBinary(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := filepath.Join("/usr/sbin", name); isExecutable(p) {
		return p
	}
	t.Fatalf("%s not found: run `make test` (scripts/install-test-deps.sh installs it) or `apt-get install %s`", name, name)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// proxyDir makes a work directory owned by the postgres user when we run as
// root (PgBouncer refuses to run as root, so it runs as postgres); files are
// written 0600.
type proxyDir struct {
	path     string
	uid, gid int // -1: no chown
}

func newProxyDir(t *testing.T, prefix string) *proxyDir {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &proxyDir{path: dir, uid: -1, gid: -1}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs the postgres user to run PgBouncer: %v", err)
		}
		d.uid, _ = strconv.Atoi(u.Uid)
		d.gid, _ = strconv.Atoi(u.Gid)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(dir, d.uid, d.gid); err != nil {
		t.Fatal(err)
	}
	return d
}

// credential runs a child as the directory's owner (nil: as ourselves).
func (d *proxyDir) credential() *syscall.Credential {
	if d.uid < 0 {
		return nil
	}
	return &syscall.Credential{Uid: uint32(d.uid), Gid: uint32(d.gid)}
}

func (d *proxyDir) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(d.path, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(p, d.uid, d.gid); err != nil {
		t.Fatal(err)
	}
	return p
}

// startProxy runs argv in the foreground until the test ends and waits
// until every address in addrs accepts connections. The child gets SIGKILL
// if the test process dies.
func startProxy(t *testing.T, addrs []string, cred *syscall.Credential, argv ...string) {
	t.Helper()
	var out pkitest.SyncBuffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", argv[0], err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, addr := range addrs {
		waitListening(t, ctx, addr, argv[0], exited, &out)
	}
}

func waitListening(t *testing.T, ctx context.Context, addr, name string, exited <-chan error, out *pkitest.SyncBuffer) {
	t.Helper()
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-exited:
			t.Fatalf("%s exited: %v\n%s", name, err, out.String())
		case <-ctx.Done():
			t.Fatalf("%s does not listen on %s: %v\n%s", name, addr, err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestPgBouncer: client TLS verify-full with auth_type=cert in front, and
// PgBouncer itself connecting to PostgreSQL with server TLS verify-full and
// its own client certificate (CN app).
func TestPgBouncer(t *testing.T) {
	bin := lookBinary(t, "pgbouncer")
	d := newProxyDir(t, "pgtls-pgbouncer-")
	_, listenCert, listenKey, err := pki.issue("server", "", "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	bouncerID, bouncerCert, bouncerKey, err := pki.issue("client", "app")
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	ini := fmt.Sprintf(`[databases]
appdb = host=localhost port=%d dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
logfile = %s
pool_mode = session
auth_type = cert
auth_file = %s
client_tls_sslmode = verify-full
client_tls_ca_file = %s
client_tls_cert_file = %s
client_tls_key_file = %s
server_tls_sslmode = verify-full
server_tls_ca_file = %s
server_tls_cert_file = %s
server_tls_key_file = %s
`, pg.Port(), port, filepath.Join(d.path, "pgbouncer.log"),
		d.write(t, "userlist.txt", []byte(`"app" ""`+"\n")),
		d.write(t, "ca.crt", pki.rootPEM), d.write(t, "listen.crt", listenCert), d.write(t, "listen.key", listenKey),
		d.write(t, "ca2.crt", pki.rootPEM), d.write(t, "client.crt", bouncerCert), d.write(t, "client.key", bouncerKey))
	cfg := d.write(t, "pgbouncer.ini", []byte(ini))
	startProxy(t, []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}, d.credential(), bin, cfg)

	bouncerDSN := fmt.Sprintf("host=localhost port=%d user=app dbname=appdb connect_timeout=10", port)
	t.Run("connect", func(t *testing.T) {
		ctx := testCtx(t)
		old := pki.mustIssue(t, "client", "app")
		id := newIdentity(pki.roots, old)
		cfg, err := pgtls.PoolConfig(bouncerDSN, id)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
		if err != nil {
			t.Fatalf("connect through PgBouncer: %v", err)
		}
		defer conn.Close(ctx)
		user, s := sslInfo(t, ctx, conn)
		// PostgreSQL sees PgBouncer's TLS session and certificate.
		if user != "app" || s != serial(&bouncerID) {
			t.Fatalf("backend: user %q client serial %s, want app %s (PgBouncer's certificate)", user, s, serial(&bouncerID))
		}
		if got, ok := pgtls.PresentedCertificate(conn.PgConn()); !ok || serialOf(got) != serial(old) {
			t.Fatalf("PresentedCertificate() = %v, %v", got, ok)
		}
		next := pki.mustIssue(t, "client", "app")
		id.rotate(next)
		conn2, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
		if err != nil {
			t.Fatalf("connect after rotation: %v", err)
		}
		defer conn2.Close(ctx)
		if got, ok := pgtls.PresentedCertificate(conn2.PgConn()); !ok || serialOf(got) != serial(next) {
			t.Fatalf("after rotation: PresentedCertificate() = %v, %v", got, ok)
		}
		if err := conn.Ping(ctx); err != nil {
			t.Fatalf("old connection after rotation: %v", err)
		}
	})

	refused := []struct {
		name string
		id   pgtls.Identity
		want string
	}{
		{"CN is not the role", newIdentity(pki.roots, pki.mustIssue(t, "client", "mallory")), "certificate authentication failed"},
		{"client certificate from another CA", newIdentity(pki.roots, otherPKI.mustIssue(t, "client", "app")), rejectedClientCert},
		{"PgBouncer certificate from another CA", newIdentity(otherPKI.roots, pki.mustIssue(t, "client", "app")), "certificate signed by unknown authority"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			cc, err := pgtls.ConnConfig(bouncerDSN, tt.id)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := pgx.ConnectConfig(ctx, cc)
			if err == nil {
				conn.Close(ctx)
				t.Fatal("connected")
			}
			t.Logf("refused: %v", err)
			if !containsAny(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// TestHAProxyDirectTLS: HAProxy terminates mutual TLS (direct TLS, ALPN
// postgresql) and forwards to PostgreSQL's Unix socket.
func TestHAProxyDirectTLS(t *testing.T) {
	bin := lookBinary(t, "haproxy")
	d := newProxyDir(t, "pgtls-haproxy-")
	_, certPEM, keyPEM, err := pki.issue("server", "", "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	crt := d.write(t, "server.pem", append(certPEM, keyPEM...))
	ca := d.write(t, "ca.crt", pki.rootPEM)
	alpnPort, noALPNPort := freePort(t), freePort(t)
	sock := filepath.Join(pg.SocketDir(), fmt.Sprintf(".s.PGSQL.%d", pg.Port()))
	conf := fmt.Sprintf(`global
    log stderr format short local0 warning
defaults
    mode tcp
    log global
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend pg_mtls
    bind 127.0.0.1:%d ssl crt %s ca-file %s verify required alpn postgresql
    default_backend pg
frontend pg_mtls_no_alpn
    bind 127.0.0.1:%d ssl crt %s ca-file %s verify required
    default_backend pg
backend pg
    server pg1 unix@%s
`, alpnPort, crt, ca, noALPNPort, crt, ca, sock)
	cfg := d.write(t, "haproxy.cfg", []byte(conf))
	if out, err := exec.Command(bin, "-c", "-q", "-f", cfg).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	startProxy(t, []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(alpnPort)), net.JoinHostPort("127.0.0.1", strconv.Itoa(noALPNPort))},
		nil, bin, "-db", "-f", cfg)

	client := pki.mustIssue(t, "client", "app")
	hapDSN := func(port int, extra string) string {
		return fmt.Sprintf("host=localhost port=%d user=app dbname=postgres connect_timeout=10 %s", port, extra)
	}
	ok := []struct {
		name string
		dsn  string
		opts []pgtls.Option
	}{
		{"sslnegotiation=direct", hapDSN(alpnPort, "sslnegotiation=direct"), nil},
		{"WithDirectTLS", hapDSN(alpnPort, ""), []pgtls.Option{pgtls.WithDirectTLS()}},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			cc, err := pgtls.ConnConfig(tt.dsn, newIdentity(pki.roots, client), tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := pgx.ConnectConfig(ctx, cc)
			if err != nil {
				t.Fatalf("connect through HAProxy: %v", err)
			}
			defer conn.Close(ctx)
			var user string
			var backendTLS bool
			if err := conn.QueryRow(ctx, "SELECT current_user, coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)").Scan(&user, &backendTLS); err != nil {
				t.Fatal(err)
			}
			// The HAProxy -> PostgreSQL leg is the Unix socket.
			if user != "app" || backendTLS {
				t.Fatalf("user %q, backend leg TLS %v; want app over the socket", user, backendTLS)
			}
			if got, ok := pgtls.PresentedCertificate(conn.PgConn()); !ok || serialOf(got) != serial(client) {
				t.Fatalf("PresentedCertificate() = %v, %v", got, ok)
			}
		})
	}

	refused := []struct {
		name string
		dsn  string
		id   pgtls.Identity
		want string
	}{
		{"SSLRequest negotiation", hapDSN(alpnPort, ""), newIdentity(pki.roots, client), "tls error"},
		{"server without ALPN postgresql", hapDSN(noALPNPort, "sslnegotiation=direct"), newIdentity(pki.roots, client), `did not select ALPN "postgresql"`},
		{"client certificate from another CA", hapDSN(alpnPort, "sslnegotiation=direct"), newIdentity(pki.roots, otherPKI.mustIssue(t, "client", "app")), rejectedClientCert},
		{"HAProxy certificate from another CA", hapDSN(alpnPort, "sslnegotiation=direct"), newIdentity(otherPKI.roots, client), "certificate signed by unknown authority"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			cc, err := pgtls.ConnConfig(tt.dsn, tt.id)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := pgx.ConnectConfig(ctx, cc)
			if err == nil {
				conn.Close(ctx)
				t.Fatal("connected")
			}
			t.Logf("refused: %v", err)
			if errors.Is(err, context.DeadlineExceeded) || !containsAny(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// connectProxy is a minimal HTTP CONNECT proxy on 127.0.0.1 that records
// the targets asked for and resolves them itself.
type connectProxy struct {
	ln      net.Listener
	mu      sync.Mutex
	targets []string
}

func startConnectProxy(t *testing.T) *connectProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.serve(c)
			}()
		}
	}()
	return p
}

func (p *connectProxy) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\n\r\n")
		return
	}
	p.mu.Lock()
	p.targets = append(p.targets, req.Host)
	p.mu.Unlock()
	up, err := net.DialTimeout("tcp", req.Host, 10*time.Second)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
		return
	}
	defer up.Close()
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{})
	go func() {
		io.Copy(up, br)
		up.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.Copy(c, up)
	<-done
}

func (p *connectProxy) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.targets...)
}

// Through an HTTP CONNECT proxy (transport/proxy): the proxy gets the DSN's
// host name, and the mutual TLS with PostgreSQL runs inside the tunnel.
func TestThroughHTTPConnectProxy(t *testing.T) {
	ctx := testCtx(t)
	p := startConnectProxy(t)
	dialer := &proxy.HTTPConnect{URL: &url.URL{Scheme: "http", Host: p.ln.Addr().String()}}
	client := pki.mustIssue(t, "client", "app")
	cfg, err := pgtls.PoolConfig(dsn(""), newIdentity(pki.roots, client), pgtls.WithDialFunc(dialer.DialContext))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	c, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	defer c.Release()
	if user, s := sslInfo(t, ctx, c); user != "app" || s != serial(client) {
		t.Fatalf("server saw user %q serial %s", user, s)
	}
	want := fmt.Sprintf("localhost:%d", pg.Port())
	if got := p.seen(); len(got) != 1 || got[0] != want {
		t.Fatalf("proxy saw CONNECT %q, want [%q]", got, want)
	}
}

// rejectedClientCert lists how a refused client certificate shows up: with
// TLS 1.3 the client's handshake completes before the server checks the
// certificate, so the client sees either the server's alert or, if its
// first write races the server closing, a reset.
const rejectedClientCert = "remote error: tls: unknown certificate authority|connection reset by peer|broken pipe"

// containsAny reports whether s contains one of the "|"-separated wants.
func containsAny(s, wants string) bool {
	for _, w := range strings.Split(wants, "|") {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}
