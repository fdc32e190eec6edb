package pgtls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/certctl/certctl/internal/pkitest"
	"github.com/certctl/certctl/transport/pgtls"
)

// Fixtures made by TestMain: a PostgreSQL cluster with ssl=on and
// "hostssl all all 127.0.0.1/32 cert clientcert=verify-full", whose server
// certificate (localhost, 127.0.0.1) comes from pki; role "app" exists.
var (
	pg       *pkitest.Postgres
	pki      *testPKI // the CA of the server and the clients
	otherPKI *testPKI // an unrelated CA
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtls tests:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	var err error
	if pki, err = newPKI("pgtls test root"); err != nil {
		return 0, err
	}
	if otherPKI, err = newPKI("pgtls other root"); err != nil {
		return 0, err
	}
	_, certPEM, keyPEM, err := pki.issue("server", "", "localhost", "127.0.0.1")
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if pg, err = pkitest.StartPostgresTLS(ctx, certPEM, keyPEM, pki.rootPEM, pkitest.DefaultTLSHBA); err != nil {
		return 0, err
	}
	defer pg.Stop()
	if err := pg.CreateRole(ctx, "app"); err != nil {
		return 0, err
	}
	code := m.Run()
	if err := pg.Stop(); err != nil {
		return 0, err
	}
	return code, nil
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dsn(extra string) string {
	return fmt.Sprintf("host=localhost port=%d user=app dbname=postgres connect_timeout=10 %s", pg.Port(), extra)
}

type queryer interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}

// sslInfo returns the role and the client certificate serial the server saw.
func sslInfo(t *testing.T, ctx context.Context, q queryer) (user, serial string) {
	t.Helper()
	var ssl bool
	err := q.QueryRow(ctx, "SELECT current_user, ssl, coalesce(client_serial::text, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&user, &ssl, &serial)
	if err != nil {
		t.Fatalf("query pg_stat_ssl: %v", err)
	}
	if !ssl {
		t.Fatal("pg_stat_ssl.ssl = false")
	}
	return user, serial
}

func TestConfigRefuses(t *testing.T) {
	client := pki.mustIssue(t, "client", "app")
	good := newIdentity(pki.roots, client)
	tests := []struct {
		name string
		dsn  string
		id   pgtls.Identity
		want error  // errors.Is, or nil to match wantMsg
		msg  string // substring of the error
	}{
		{"sslmode=disable", dsn("sslmode=disable"), good, pgtls.ErrPlaintext, ""},
		{"sslmode=allow", dsn("sslmode=allow"), good, pgtls.ErrPlaintext, ""},
		{"unix socket", "host=/tmp port=5432 user=app", good, pgtls.ErrUnixSocket, ""},
		{"unix socket fallback", "host=localhost,/tmp port=5432 user=app", good, pgtls.ErrUnixSocket, ""},
		{"sslcertmode=disable", dsn("sslcertmode=disable"), good, nil, "sslcertmode=disable"},
		{"bad DSN", "host=localhost port=notaport", good, nil, "pgtls: parse DSN"},
		{"nil identity", dsn(""), nil, nil, "nil Identity"},
		{"no verification", dsn(""), configIdentity{cfg: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{*client}}}, pgtls.ErrNoServerVerification, ""},
		{"system roots", dsn(""), configIdentity{cfg: &tls.Config{Certificates: []tls.Certificate{*client}}}, pgtls.ErrNoServerVerification, ""},
		{"no client certificate", dsn(""), configIdentity{cfg: &tls.Config{RootCAs: pki.roots}}, nil, "no client certificate"},
		{"no TLS config", dsn(""), configIdentity{}, nil, "no TLS configuration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for fn, build := range map[string]func() error{
				"ConnConfig": func() error { _, err := pgtls.ConnConfig(tt.dsn, tt.id); return err },
				"PoolConfig": func() error { _, err := pgtls.PoolConfig(tt.dsn, tt.id); return err },
				"OpenDB": func() error {
					db, err := pgtls.OpenDB(tt.dsn, tt.id)
					if err == nil {
						db.Close()
					}
					return err
				},
			} {
				err := build()
				if err == nil {
					t.Fatalf("%s: no error", fn)
				}
				if tt.want != nil && !errors.Is(err, tt.want) {
					t.Errorf("%s: error %v, want %v", fn, err, tt.want)
				}
				if !strings.Contains(err.Error(), tt.msg) || !strings.HasPrefix(err.Error(), "pgtls: ") {
					t.Errorf("%s: error %q, want it to contain %q", fn, err, tt.msg)
				}
			}
		})
	}
}

func TestExpiredIdentityRefused(t *testing.T) {
	id := newIdentity(pki.roots, pki.mustIssue(t, "client-1h", "app"))
	clock := newFakeClock()
	clock.Advance(2 * time.Hour)
	if _, err := pgtls.PoolConfig(dsn(""), id, pgtls.WithClock(clock.Now)); !errors.Is(err, pgtls.ErrExpired) {
		t.Errorf("PoolConfig() error = %v, want ErrExpired", err)
	}
	if _, err := pgtls.OpenDB(dsn(""), id, pgtls.WithClock(clock.Now)); !errors.Is(err, pgtls.ErrExpired) {
		t.Errorf("OpenDB() error = %v, want ErrExpired", err)
	}
	if _, err := pgtls.PoolConfig(dsn(""), id, pgtls.WithExpiryMargin(-time.Second)); err == nil {
		t.Error("negative margin accepted")
	}
}

// Every sslmode that asks for TLS becomes verify-full with the identity's
// configuration, and no plaintext fallback is left.
func TestConfigUpgradesToVerifyFull(t *testing.T) {
	id := newIdentity(pki.roots, pki.mustIssue(t, "client", "app"))
	tests := []struct {
		name, dsn   string
		opts        []pgtls.Option
		hosts       []string
		serverNames []string
		direct      bool
	}{
		{"no sslmode", "host=db.internal user=app", nil, []string{"db.internal"}, []string{"db.internal"}, false},
		{"prefer", "host=db.internal user=app sslmode=prefer", nil, []string{"db.internal"}, []string{"db.internal"}, false},
		{"require", "host=db.internal user=app sslmode=require", nil, []string{"db.internal"}, []string{"db.internal"}, false},
		{"verify-ca", "postgres://app@db.internal/app?sslmode=verify-ca", nil, []string{"db.internal"}, []string{"db.internal"}, false},
		{"verify-full", "host=db.internal user=app sslmode=verify-full", nil, []string{"db.internal"}, []string{"db.internal"}, false},
		{"IP address", "host=127.0.0.1 user=app", nil, []string{"127.0.0.1"}, []string{"127.0.0.1"}, false},
		{"two hosts, prefer", "host=a.internal,b.internal port=5432,5433 user=app", nil, []string{"a.internal", "b.internal"}, []string{"a.internal", "b.internal"}, false},
		{"WithServerName", "host=10.0.0.7 user=app", []pgtls.Option{pgtls.WithServerName("db.internal")}, []string{"10.0.0.7"}, []string{"db.internal"}, false},
		{"sslnegotiation=direct", "host=db.internal user=app sslnegotiation=direct", nil, []string{"db.internal"}, []string{"db.internal"}, true},
		{"WithDirectTLS", "host=db.internal user=app", []pgtls.Option{pgtls.WithDirectTLS()}, []string{"db.internal"}, []string{"db.internal"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc, err := pgtls.ConnConfig(tt.dsn, id, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			all := append([]*pgconn.FallbackConfig{{Host: cc.Host, Port: cc.Port, TLSConfig: cc.TLSConfig}}, cc.Fallbacks...)
			if len(all) != len(tt.hosts) {
				t.Fatalf("%d connection targets, want %d (%v)", len(all), len(tt.hosts), tt.hosts)
			}
			for i, fb := range all {
				tc := fb.TLSConfig
				switch {
				case fb.Host != tt.hosts[i]:
					t.Errorf("target %d: host %q, want %q", i, fb.Host, tt.hosts[i])
				case tc == nil:
					t.Fatalf("target %d (%s): plaintext", i, fb.Host)
				case tc.InsecureSkipVerify || tc.VerifyPeerCertificate != nil || tc.RootCAs != pki.roots:
					t.Errorf("target %d: not the identity's verification (InsecureSkipVerify=%v)", i, tc.InsecureSkipVerify)
				case tc.ServerName != tt.serverNames[i]:
					t.Errorf("target %d: ServerName %q, want %q", i, tc.ServerName, tt.serverNames[i])
				case tc.MinVersion < tls.VersionTLS12 || len(tc.NextProtos) != 1 || tc.NextProtos[0] != "postgresql":
					t.Errorf("target %d: MinVersion %x NextProtos %q", i, tc.MinVersion, tc.NextProtos)
				case tc.ClientSessionCache != nil || len(tc.Certificates) != 0 || tc.GetClientCertificate == nil:
					t.Errorf("target %d: client certificate not from GetClientCertificate per handshake", i)
				}
			}
			if got := cc.SSLNegotiation == "direct"; got != tt.direct {
				t.Errorf("SSLNegotiation = %q, want direct=%v", cc.SSLNegotiation, tt.direct)
			}
			if cc.AfterNetConnect == nil || cc.AfterConnect == nil {
				t.Error("hooks not set")
			}
		})
	}
}

// A server that refuses TLS (answers 'N' to SSLRequest, as a server with
// ssl=off does, or a man in the middle) never gets a plaintext startup
// message, although the DSN says sslmode=prefer.
func TestNoPlaintextFallback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var (
		mu        sync.Mutex
		conns     int
		plaintext []string
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			var hdr [8]byte
			_, err = io.ReadFull(c, hdr[:])
			mu.Lock()
			conns++
			if err == nil && binary.BigEndian.Uint32(hdr[4:]) != 80877103 { // not SSLRequest
				plaintext = append(plaintext, fmt.Sprintf("% x", hdr))
			}
			mu.Unlock()
			c.Write([]byte{'N'})
			io.Copy(io.Discard, c) // a plaintext retry would arrive on a new connection
			c.Close()
		}
	}()
	id := newIdentity(pki.roots, pki.mustIssue(t, "client", "app"))
	port := ln.Addr().(*net.TCPAddr).Port
	cc, err := pgtls.ConnConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=app sslmode=prefer connect_timeout=5", port), id)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a server that refused TLS")
	}
	if !strings.Contains(err.Error(), "server refused TLS") {
		t.Errorf("error %v, want server refused TLS", err)
	}
	ln.Close()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if conns != 1 || len(plaintext) != 0 {
		t.Fatalf("%d connections, plaintext startup messages %q; want 1 connection with SSLRequest only", conns, plaintext)
	}
}

func TestConnect(t *testing.T) {
	client := pki.mustIssue(t, "client", "app")
	id := newIdentity(pki.roots, client)
	for _, host := range []string{"localhost", "127.0.0.1"} {
		t.Run(host, func(t *testing.T) {
			ctx := testCtx(t)
			cc, err := pgtls.ConnConfig(fmt.Sprintf("postgres://app@%s:%d/postgres?sslmode=verify-full", host, pg.Port()), id)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := pgx.ConnectConfig(ctx, cc)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			defer conn.Close(ctx)
			user, s := sslInfo(t, ctx, conn)
			if user != "app" || s != serial(client) {
				t.Fatalf("server saw user %q serial %s, want app %s", user, s, serial(client))
			}
			got, ok := pgtls.PresentedCertificate(conn.PgConn())
			if !ok || serialOf(got) != serial(client) {
				t.Fatalf("PresentedCertificate() = %v, %v", got, ok)
			}
		})
	}
}

func TestConnectRefused(t *testing.T) {
	tests := []struct {
		name string
		id   pgtls.Identity
		opts []pgtls.Option
		want func(error) bool
	}{
		{"server from another CA", newIdentity(otherPKI.roots, pki.mustIssue(t, "client", "app")), nil,
			func(err error) bool { var e x509.UnknownAuthorityError; return errors.As(err, &e) }},
		{"server name mismatch", newIdentity(pki.roots, pki.mustIssue(t, "client", "app")), []pgtls.Option{pgtls.WithServerName("db.wrong.internal")},
			func(err error) bool { var e x509.HostnameError; return errors.As(err, &e) }},
		{"client certificate from another CA", newIdentity(pki.roots, otherPKI.mustIssue(t, "client", "app")), nil,
			func(err error) bool {
				return containsAny(err.Error(), rejectedClientCert)
			}},
		{"CN is not the role", newIdentity(pki.roots, pki.mustIssue(t, "client", "mallory")), nil,
			func(err error) bool { return strings.Contains(err.Error(), "certificate authentication failed") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			cc, err := pgtls.ConnConfig(dsn(""), tt.id, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := pgx.ConnectConfig(ctx, cc)
			if err == nil {
				conn.Close(ctx)
				t.Fatal("connected")
			}
			t.Logf("refused: %v", err)
			if !tt.want(err) {
				t.Fatalf("unexpected error: %v", err)
			}
		})
	}
}

// The pool presents the rotated certificate on new connections, keeps old
// connections working, and retires a connection when its certificate nears
// expiry.
func TestPoolRotation(t *testing.T) {
	ctx := testCtx(t)
	old := pki.mustIssue(t, "client-1h", "app")
	next := pki.mustIssue(t, "client", "app")
	id := newIdentity(pki.roots, old)
	clock := newFakeClock()
	cfg, err := pgtls.PoolConfig(dsn("pool_max_conns=4"), id, pgtls.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	if life := cfg.MaxConnLifetime + cfg.MaxConnLifetimeJitter; life <= 0 || life >= time.Until(old.Leaf.NotAfter) {
		t.Fatalf("MaxConnLifetime %v + jitter %v: not below the certificate's remaining %v", cfg.MaxConnLifetime, cfg.MaxConnLifetimeJitter, time.Until(old.Leaf.NotAfter))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	c1, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, s := sslInfo(t, ctx, c1); s != serial(old) {
		t.Fatalf("first connection: serial %s, want %s", s, serial(old))
	}
	id.rotate(next)
	c2, err := pool.Acquire(ctx) // c1 is held: a new connection
	if err != nil {
		t.Fatal(err)
	}
	if _, s := sslInfo(t, ctx, c2); s != serial(next) {
		t.Fatalf("after rotation: serial %s, want %s", s, serial(next))
	}
	if _, s := sslInfo(t, ctx, c1); s != serial(old) {
		t.Fatalf("old connection after rotation: serial %s, want %s", s, serial(old))
	}
	if got, ok := pgtls.PresentedCertificate(c1.Conn().PgConn()); !ok || serialOf(got) != serial(old) {
		t.Fatalf("PresentedCertificate(old connection) = %v, %v", got, ok)
	}
	c1.Release()
	c2.Release()
	// AfterRelease runs in a goroutine: wait until both are back in the pool.
	for pool.Stat().IdleConns() != 2 {
		if ctx.Err() != nil {
			t.Fatalf("connections not back in the pool: %+v", pool.Stat())
		}
		time.Sleep(5 * time.Millisecond)
	}

	// The old certificate is now within a minute of expiry: its connection
	// must not be handed out again.
	clock.Advance(time.Until(old.Leaf.NotAfter) - 30*time.Second)
	a, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	b, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	for _, c := range []*pgxpool.Conn{a, b} {
		if _, s := sslInfo(t, ctx, c); s != serial(next) {
			t.Fatalf("after the old certificate's expiry margin: serial %s, want %s", s, serial(next))
		}
	}
}

func TestOpenDB(t *testing.T) {
	ctx := testCtx(t)
	old := pki.mustIssue(t, "client-1h", "app")
	next := pki.mustIssue(t, "client", "app")
	id := newIdentity(pki.roots, old)
	clock := newFakeClock()
	db, err := pgtls.OpenDB(dsn(""), id, pgtls.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if life := db.Stats(); life.OpenConnections != 0 {
		t.Fatalf("OpenDB connected eagerly: %+v", life)
	}
	sqlSerial := func(c *sql.Conn) string {
		t.Helper()
		var user, s string
		if err := c.QueryRowContext(ctx, "SELECT current_user, client_serial::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&user, &s); err != nil {
			t.Fatal(err)
		}
		if user != "app" {
			t.Fatalf("user %q", user)
		}
		return s
	}
	c1, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := sqlSerial(c1); s != serial(old) {
		t.Fatalf("serial %s, want %s", s, serial(old))
	}
	id.rotate(next)
	c2, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := sqlSerial(c2); s != serial(next) {
		t.Fatalf("after rotation: serial %s, want %s", s, serial(next))
	}
	if s := sqlSerial(c1); s != serial(old) {
		t.Fatalf("old connection after rotation: serial %s, want %s", s, serial(old))
	}
	c1.Close()
	c2.Close()
	clock.Advance(time.Until(old.Leaf.NotAfter) - 30*time.Second)
	var conns []*sql.Conn
	for range 2 {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	for _, c := range conns {
		if s := sqlSerial(c); s != serial(next) {
			t.Fatalf("after the old certificate's expiry margin: serial %s, want %s", s, serial(next))
		}
	}
}

// WithDialFunc: the dialer gets the DSN's host name unresolved, and TLS to
// PostgreSQL runs over its connection.
func TestWithDialFunc(t *testing.T) {
	ctx := testCtx(t)
	var (
		mu    sync.Mutex
		addrs []string
	)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		addrs = append(addrs, network+" "+addr)
		mu.Unlock()
		// Resolve "localhost" the way a proxy would, on its side.
		_, port, _ := net.SplitHostPort(addr)
		var d net.Dialer
		return d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", port))
	}
	client := pki.mustIssue(t, "client", "app")
	cc, err := pgtls.ConnConfig(dsn(""), newIdentity(pki.roots, client), pgtls.WithDialFunc(dial))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, s := sslInfo(t, ctx, conn); s != serial(client) {
		t.Fatalf("serial %s", s)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := fmt.Sprintf("tcp localhost:%d", pg.Port()); len(addrs) != 1 || addrs[0] != want {
		t.Fatalf("dialed %q, want [%q]", addrs, want)
	}
}
