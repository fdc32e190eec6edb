package transport_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/internal/pkitest"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
	"github.com/certctl/certctl/keys/pkcs11"
	"github.com/certctl/certctl/transport"
)

func TestEnroll(t *testing.T) {
	t.Parallel()
	c := newTestCA(t, time.Hour, time.Minute)
	tests := []struct {
		name  string
		names []string
		key   func(dir string) string
	}{
		{"memory key", []string{"a.internal", "127.0.0.1", "spiffe://example.internal/a"}, func(string) string { return "" }},
		{"file key", []string{"b.internal"}, func(dir string) string { return filepath.Join(dir, "b.key") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			id := c.identity(tt.names...)
			id.Key = tt.key(dir)
			if id.Key != "" { // and the token from a file
				id.TokenFile = filepath.Join(dir, "token")
				if err := os.WriteFile(id.TokenFile, []byte(id.Token+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				id.Token = ""
			}
			id.CertFile = filepath.Join(dir, "b.crt")
			var rotations atomic.Int32
			tr := newTransport(t, id, transport.WithAuthorizer(transport.AuthorizeAnyTrusted()),
				transport.WithOnRotate(func(transport.Snapshot) { rotations.Add(1) }))
			s := tr.Current()
			if s.Leaf == nil || s.Certificate == nil || len(s.Chain) != 2 || len(s.Roots) != 1 {
				t.Fatalf("Current() = %+v", s)
			}
			if !s.Roots[0].Equal(c.root) || !s.Chain[1].Equal(c.inter) {
				t.Errorf("chain/roots are not the CA's")
			}
			if s.Leaf.Subject.CommonName != tt.names[0] {
				t.Errorf("CN = %q, want %q", s.Leaf.Subject.CommonName, tt.names[0])
			}
			if got := len(s.Leaf.DNSNames) + len(s.Leaf.IPAddresses) + len(s.Leaf.URIs); got != len(tt.names) {
				t.Errorf("leaf has %d names, want %v", got, tt.names)
			}
			// Renew now: a new certificate; a new key unless the key is a file.
			if err := tr.Renew(context.Background()); err != nil {
				t.Fatal(err)
			}
			s2 := tr.Current()
			if s2.Leaf.SerialNumber.Cmp(s.Leaf.SerialNumber) == 0 {
				t.Fatal("Renew did not change the certificate")
			}
			samePub := s2.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(s.Leaf.PublicKey)
			if samePub != (id.Key != "") {
				t.Errorf("after Renew, same key = %v with key %q", samePub, id.Key)
			}
			st := tr.Status()
			if st.State != transport.StateValid || st.Serial == "" || st.LastError != nil || st.LastRenewal.IsZero() || !st.NotAfter.Equal(tr.NotAfter()) {
				t.Errorf("Status() = %+v", st)
			}
			if rotations.Load() != 2 {
				t.Errorf("OnRotate called %d times, want 2 (enrollment, Renew)", rotations.Load())
			}
			fi, err := os.Stat(id.CertFile)
			if err != nil || fi.Mode().Perm() != 0o644 {
				t.Fatalf("cert file: %v %v", fi, err)
			}
			if id.Key != "" {
				fi, err := os.Stat(id.Key)
				if err != nil || fi.Mode().Perm() != 0o600 {
					t.Fatalf("key file: %v %v", fi, err)
				}
				// A restart reuses the certificate: no token needed (it is used up anyway).
				tr.Close()
				tr2 := newTransport(t, id, transport.WithAuthorizer(transport.AuthorizeAnyTrusted()))
				if got := tr2.Status().Serial; got != st.Serial {
					t.Errorf("after restart serial = %s, want reused %s", got, st.Serial)
				}
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	c := newTestCA(t, time.Hour, time.Minute)
	used := c.identity("used.internal")
	newTransport(t, used, transport.WithAuthorizer(transport.AuthorizeAnyTrusted()))

	tests := []struct {
		name   string
		id     func() transport.Identity
		opts   []transport.Option
		status int   // expected APIError status, or
		is     error // expected sentinel
	}{
		{"no authorizer", func() transport.Identity { return c.identity("x.internal") }, nil, 0, transport.ErrNoAuthorizer},
		{"nil authorizer", func() transport.Identity { return c.identity("x.internal") }, []transport.Option{transport.WithAuthorizer(nil)}, 0, transport.ErrNoAuthorizer},
		{"bad token", func() transport.Identity {
			id := c.identity("x.internal")
			id.Token = "certctl_0123456789abcdef_" + strings.Repeat("A", 43)
			return id
		}, nil, http.StatusUnauthorized, nil},
		{"used token", func() transport.Identity { return used }, nil, http.StatusUnauthorized, nil},
		{"name outside token", func() transport.Identity { return c.identity("x.example.com") }, nil, http.StatusForbidden, nil},
		{"no token", func() transport.Identity {
			id := c.identity("x.internal")
			id.Token = ""
			return id
		}, nil, 0, transport.ErrNoToken},
		{"invalid identity", func() transport.Identity {
			id := c.identity("x.internal")
			id.CAURL = "http://insecure"
			return id
		}, nil, 0, transport.ErrInvalidIdentity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			if opts == nil && tt.is != transport.ErrNoAuthorizer {
				opts = []transport.Option{transport.WithAuthorizer(transport.AuthorizeAnyTrusted())}
			}
			tr, err := transport.New(context.Background(), tt.id(), opts...)
			if err == nil {
				tr.Close()
				t.Fatal("New succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("New() error = %v, want %v", err, tt.is)
			}
			if tt.status != 0 {
				var ae *transport.APIError
				if !errors.As(err, &ae) || ae.Status != tt.status {
					t.Fatalf("New() error = %v, want APIError %d", err, tt.status)
				}
			}
		})
	}
}

// TestNewTimeout: with the CA unreachable New gives up after EnrollTimeout
// with ErrEnrollTimeout and the last error, instead of hanging.
func TestNewTimeout(t *testing.T) {
	t.Parallel()
	c := newTestCA(t, time.Hour, time.Minute)
	c.down.Store(true)
	id := c.identity("x.internal")
	id.EnrollTimeout = time.Second
	_, err := transport.New(context.Background(), id, transport.WithAuthorizer(transport.AuthorizeAnyTrusted()))
	if !errors.Is(err, transport.ErrEnrollTimeout) {
		t.Fatalf("New() error = %v, want ErrEnrollTimeout", err)
	}
	if !strings.Contains(err.Error(), "last error") {
		t.Errorf("error does not say why: %v", err)
	}
	// The caller's context bounds New too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := transport.New(ctx, c.identity("y.internal"), transport.WithAuthorizer(transport.AuthorizeAnyTrusted())); !errors.Is(err, context.Canceled) {
		t.Fatalf("New(canceled ctx) error = %v", err)
	}
}

// TestRotation: certificates rotate in the background; an open connection
// survives rotation on both sides, and new connections present new serials.
func TestRotation(t *testing.T) {
	t.Parallel()
	c := newTestCA(t, 8*time.Second, 2*time.Second) // 10 s lifetime: renewal after ~6.7 s
	reg := prometheus.NewRegistry()
	srv := newTransport(t, c.identity("srv.internal"), transport.WithAuthorizer(transport.AuthorizeDNS("cli.internal", "cli2.internal")), transport.WithRegisterer(reg))
	cli := newTransport(t, c.identity("cli.internal"), transport.WithAuthorizer(transport.AuthorizeDNS("srv.internal")))
	es, ipAddr := listenEcho(t, srv)
	ctx := context.Background()
	addr := strings.Replace(ipAddr, "127.0.0.1", "srv.internal", 1)
	dialer := &staticResolver{addr: ipAddr}
	cliD := newTransport(t, c.identity("cli2.internal"), transport.WithAuthorizer(transport.AuthorizeDNS("srv.internal")), transport.WithDialer(dialer))

	conn, err := cli.Dial(ctx, "tcp", ipAddr)
	if err == nil {
		conn.Close()
		t.Fatal("Dial to 127.0.0.1 succeeded, but the server certificate does not name it")
	}
	conn, err = cliD.Dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := echo(conn, "before"); err != nil {
		t.Fatal(err)
	}
	srvSerial, cliSerial := srv.Status().Serial, cliD.Status().Serial
	if es.lastSerial() != cliSerial {
		t.Fatalf("server saw %s, want %s", es.lastSerial(), cliSerial)
	}
	waitFor(t, 30*time.Second, "both certificates renewed", func() bool {
		return srv.Status().Serial != srvSerial && cliD.Status().Serial != cliSerial
	})
	if err := echo(conn, "after rotation"); err != nil {
		t.Fatalf("open connection broke on rotation: %v", err)
	}
	conn2, err := cliD.Dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	if err := echo(conn2, "new"); err != nil {
		t.Fatal(err)
	}
	if got := conn2.(*tls.Conn).ConnectionState().PeerCertificates[0]; got.SerialNumber.Cmp(srv.Current().Leaf.SerialNumber) != 0 {
		t.Errorf("new connection got server serial %x, want current %s", got.SerialNumber, srv.Status().Serial)
	}
	if es.lastSerial() == cliSerial {
		t.Errorf("new connection presented the old client certificate")
	}
	if got := metricValue(t, reg, "certctl_transport_renewals_total", "outcome", "ok"); got < 2 {
		t.Errorf("renewals ok = %v, want >= 2", got)
	}
	if got := metricValue(t, reg, "certctl_transport_state", "state", "valid"); got != 1 {
		t.Errorf("state valid gauge != 1")
	}
	if got := metricValue(t, reg, "certctl_transport_certificate_expiry_timestamp_seconds", "", ""); got < float64(time.Now().Unix()) {
		t.Errorf("expiry gauge %v is in the past", got)
	}
}

// metricValue returns the value of the gathered metric name{label=value}.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			for _, lp := range m.Label {
				if label == "" || (lp.GetName() == label && lp.GetValue() == value) {
					if m.Counter != nil {
						return m.Counter.GetValue()
					}
					return m.Gauge.GetValue()
				}
			}
		}
	}
	t.Fatalf("metric %s{%s=%q} not found", name, label, value)
	return 0
}

// staticResolver dials addr for "srv.internal:*": it lets a test dial by
// host name, for host name verification.
type staticResolver struct{ addr string }

func (s *staticResolver) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if strings.HasPrefix(addr, "srv.internal:") {
		addr = s.addr
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// TestAuthorizer: the server refuses peers its authorizer rejects, also on
// resumed sessions (VerifyConnection runs on resumption).
func TestAuthorizer(t *testing.T) {
	t.Parallel()
	c := newTestCA(t, time.Hour, time.Minute)
	var allow atomic.Bool
	allow.Store(true)
	gate := func(peer *x509.Certificate, chains [][]*x509.Certificate) error {
		if !allow.Load() {
			return transport.ErrNotAuthorized
		}
		return transport.AuthorizeSPIFFEID("spiffe://example.internal/good")(peer, chains)
	}
	srv := newTransport(t, c.identity("srv.internal", "127.0.0.1"), transport.WithAuthorizer(gate))
	good := newTransport(t, c.identity("spiffe://example.internal/good"), transport.WithAuthorizer(transport.AuthorizeDNS("srv.internal")))
	bad := newTransport(t, c.identity("spiffe://example.internal/bad"), transport.WithAuthorizer(transport.AuthorizeDNS("srv.internal")))
	_, addr := listenEcho(t, srv)
	ctx := context.Background()

	if conn, err := bad.Dial(ctx, "tcp", addr); err == nil {
		// TLS 1.3: the client finishes first; the refusal arrives on read.
		if err := echo(conn, "x"); err == nil {
			t.Fatal("unauthorized peer could exchange data")
		}
		conn.Close()
	}
	// The client side authorizes the server too.
	wrongSrv := newTransport(t, c.identity("other.internal"), transport.WithAuthorizer(transport.AuthorizeDNS("nobody.internal")))
	if conn, err := wrongSrv.Dial(ctx, "tcp", addr); err == nil {
		conn.Close()
		t.Fatal("client accepted a server its authorizer rejects")
	} else if !errors.Is(err, transport.ErrNotAuthorized) {
		t.Fatalf("Dial error = %v, want ErrNotAuthorized", err)
	}

	// ClientTLSConfig verifies the host name or IP address in ServerName
	// (as pgx's verify-full needs), even though TLS sends no SNI for IPs.
	wrongIP := good.ClientTLSConfig()
	wrongIP.ServerName = "127.0.0.2"
	if conn, err := tls.Dial("tcp", addr, wrongIP); err == nil {
		conn.Close()
		t.Fatal("ClientTLSConfig accepted a server certificate without the ServerName IP")
	}

	// A revocation checker sees the verified chain (leaf, issuer) and its
	// refusal fails the handshake.
	var checked atomic.Int32
	revoked := newTransport(t, c.identity("rev.internal"), transport.WithAuthorizer(transport.AuthorizeAnyTrusted()),
		transport.WithRevocationChecker(checkerFunc(func(ctx context.Context, chain []*x509.Certificate) error {
			checked.Add(1)
			if len(chain) < 2 || !chain[1].Equal(c.inter) {
				t.Errorf("revocation checker got a chain of %d without the issuer", len(chain))
			}
			return errors.New("revoked")
		})))
	if conn, err := revoked.Dial(ctx, "tcp", addr); err == nil {
		conn.Close()
		t.Fatal("client accepted a server its revocation checker refuses")
	}
	if checked.Load() == 0 {
		t.Error("revocation checker not called")
	}

	// Resumption: a client with a session cache resumes; once the
	// authorizer says no, the resumed handshake is refused too.
	cfg := good.ClientTLSConfig()
	cfg.ServerName = "127.0.0.1"
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	dial := func() (*tls.Conn, error) {
		conn, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			return nil, err
		}
		if err := echo(conn, "ping"); err != nil { // reads the session ticket (or the refusal)
			conn.Close()
			return nil, err
		}
		return conn, nil
	}
	for i := range 2 {
		conn, err := dial()
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		if i == 1 && !conn.ConnectionState().DidResume {
			t.Fatal("second connection did not resume: the test would prove nothing")
		}
		conn.Close()
	}
	allow.Store(false)
	if conn, err := dial(); err == nil {
		conn.Close()
		t.Fatal("resumed session was not re-authorized")
	}
}

type checkerFunc func(ctx context.Context, chain []*x509.Certificate) error

func (f checkerFunc) Check(ctx context.Context, chain []*x509.Certificate) error {
	return f(ctx, chain)
}

// TestCAOutage: while the CA is down, renewal fails, the current
// certificate keeps serving and Status/metrics say so; when the CA is back
// renewal succeeds; an outage longer than the lifetime ends in "expired".
func TestCAOutage(t *testing.T) {
	t.Parallel()
	c := newTestCA(t, 5*time.Second, time.Second) // 6 s lifetime
	reg := prometheus.NewRegistry()
	srv := newTransport(t, c.identity("srv.internal", "127.0.0.1"), transport.WithAuthorizer(transport.AuthorizeAnyTrusted()), transport.WithRegisterer(reg))
	cli := newTransport(t, c.identity("cli.internal"), transport.WithAuthorizer(transport.AuthorizeAnyTrusted()))
	_, addr := listenEcho(t, srv)
	ctx := context.Background()
	check := func(msg string) {
		t.Helper()
		conn, err := cli.Dial(ctx, "tcp", addr)
		if err != nil {
			t.Fatalf("%s: %v", msg, err)
		}
		defer conn.Close()
		if err := echo(conn, msg); err != nil {
			t.Fatalf("%s: %v", msg, err)
		}
	}
	serial := srv.Status().Serial
	c.down.Store(true)
	waitFor(t, 15*time.Second, "renewal failing", func() bool { return srv.Status().State == transport.StateRenewing })
	if v := metricValue(t, reg, "certctl_transport_state", "state", "renewing"); v != 1 {
		t.Errorf("state renewing gauge = %v, want 1", v)
	}
	if v := metricValue(t, reg, "certctl_transport_renewals_total", "outcome", "error"); v < 1 {
		t.Errorf("renewals error = %v, want >= 1", v)
	}
	if st := srv.Status(); st.LastError == nil || st.Serial != serial {
		t.Fatalf("Status() = %+v", st)
	}
	check("during outage")
	c.down.Store(false)
	waitFor(t, 15*time.Second, "renewal after outage", func() bool {
		st := srv.Status()
		return st.State == transport.StateValid && st.Serial != serial
	})
	check("after outage")

	c.down.Store(true)
	waitFor(t, 20*time.Second, "expiry", func() bool { return srv.Status().State == transport.StateExpired })
	if conn, err := cli.Dial(ctx, "tcp", addr); err == nil {
		if echo(conn, "x") == nil {
			t.Error("expired certificate accepted")
		}
		conn.Close()
	}
}

// TestRootRollover: the CA publishes old+new roots and issues from the new
// one; peers refresh their bundle, renew into the new hierarchy and keep
// talking; once the old root is withdrawn it is no longer trusted.
func TestRootRollover(t *testing.T) {
	t.Parallel()
	c := newTestCA(t, 8*time.Second, 2*time.Second)
	opts := func(names ...string) []transport.Option {
		return []transport.Option{transport.WithAuthorizer(transport.AuthorizeDNS(names...)), transport.WithBundleRefresh(500 * time.Millisecond)}
	}
	srv := newTransport(t, c.identity("srv.internal", "127.0.0.1"), opts("cli.internal", "old.internal")...)
	cli := newTransport(t, c.identity("cli.internal"), opts("srv.internal")...)
	_, addr := listenEcho(t, srv)
	ctx := context.Background()
	talk := func(tr *transport.Transport) error {
		conn, err := tr.Dial(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		return echo(conn, "hello")
	}
	if err := talk(cli); err != nil {
		t.Fatal(err)
	}

	g2 := c.newGeneration("2")
	c.publish(g2, c.root, g2.root) // overlap: both roots
	issuedBy := func(tr *transport.Transport, inter *x509.Certificate) bool {
		s := tr.Current()
		return s.Chain[len(s.Chain)-1].Equal(inter) && len(s.Roots) == 2
	}
	waitFor(t, 30*time.Second, "both peers renewed under the new root", func() bool {
		return issuedBy(srv, g2.inter) && issuedBy(cli, g2.inter)
	})
	if err := talk(cli); err != nil {
		t.Fatalf("after rollover: %v", err)
	}

	// End of overlap: only the new root; the API's own certificate moves too.
	c.serveCert(g2)
	c.publish(g2, g2.root)
	waitFor(t, 10*time.Second, "old root withdrawn", func() bool {
		return len(srv.Current().Roots) == 1 && srv.Current().Roots[0].Equal(g2.root) && len(cli.Current().Roots) == 1
	})
	if err := talk(cli); err != nil {
		t.Fatalf("after withdrawal: %v", err)
	}
	// A peer still holding a certificate of the old hierarchy is refused.
	oldCfg := &tls.Config{
		MinVersion: tls.VersionTLS12, InsecureSkipVerify: true,
		Certificates: []tls.Certificate{*oldCert(t, c)},
	}
	conn, err := tls.Dial("tcp", addr, oldCfg)
	if err == nil {
		err = echo(conn, "x")
		conn.Close()
	}
	if err == nil {
		t.Fatal("a certificate from the withdrawn root was accepted")
	}
}

// oldCert issues a certificate from the first hierarchy, directly.
func oldCert(t *testing.T, c *testCA) *tls.Certificate {
	t.Helper()
	key := mustKey(t)
	req := &issuance.Request{PublicKey: key.Public()}
	if err := req.AddNames("old.internal"); err != nil {
		t.Fatal(err)
	}
	is, err := c.gen1.ca.Issue(context.Background(), ca.Request{Profile: "peer", Request: req, Requester: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: is.Chain, PrivateKey: key, Leaf: is.Certificate}
}

// TestHSMKey: a pkcs11: key in SoftHSM is used for enrollment, renewal (the
// same key) and handshakes.
func TestHSMKey(t *testing.T) {
	h := pkitest.NewSoftHSM(t) // sets SOFTHSM2_CONF: not parallel
	ctx := context.Background()
	uri := h.KeyURI("svc")
	s, err := pkcs11.GenerateKey(ctx, uri, keys.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	pub := s.Public()
	s.Close()

	c := newTestCA(t, time.Hour, time.Minute)
	id := c.identity("hsm.internal", "127.0.0.1")
	id.Key = uri
	id.CertFile = filepath.Join(t.TempDir(), "hsm.crt")
	srv := newTransport(t, id, transport.WithAuthorizer(transport.AuthorizeDNS("cli.internal")))
	if !srv.Current().Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
		t.Fatal("certificate is not for the HSM key")
	}
	if err := srv.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	if !srv.Current().Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
		t.Fatal("renewed certificate is not for the HSM key")
	}
	cli := newTransport(t, c.identity("cli.internal"), transport.WithAuthorizer(transport.AuthorizeDNS("hsm.internal")))
	_, addr := listenEcho(t, srv)
	conn, err := cli.Dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := echo(conn, "signed in the HSM"); err != nil {
		t.Fatal(err)
	}
}

// TestHostnameCheck: client configurations verify the server for the name
// they dial, fail closed when they cannot know it, and skip the check only
// with WithoutHostnameCheck (SPIFFE-style identities without DNS names).
func TestHostnameCheck(t *testing.T) {
	t.Parallel()
	c := newTestCA(t, time.Hour, time.Minute)
	srv := newTransport(t, c.identity("spiffe://example.internal/srv"), transport.WithAuthorizer(transport.AuthorizeSPIFFEID("spiffe://example.internal/cli")))
	_, addr := listenEcho(t, srv)
	ctx := context.Background()
	authz := transport.WithAuthorizer(transport.AuthorizeSPIFFEID("spiffe://example.internal/srv"))

	strict := newTransport(t, c.identity("spiffe://example.internal/cli"), authz)
	if conn, err := strict.Dial(ctx, "tcp", addr); err == nil {
		conn.Close()
		t.Fatal("Dial accepted a server certificate without the dialed IP")
	}
	// tls.Dial sets ServerName on a clone: the IP is not sent as SNI, so
	// the check cannot be done and the handshake fails closed.
	if conn, err := tls.Dial("tcp", addr, strict.ClientTLSConfig()); err == nil {
		conn.Close()
		t.Fatal("ClientTLSConfig without ServerName accepted the server")
	} else if !errors.Is(err, transport.ErrNoServerName) {
		t.Fatalf("tls.Dial error = %v, want ErrNoServerName", err)
	}

	loose := newTransport(t, c.identity("spiffe://example.internal/cli"), authz, transport.WithoutHostnameCheck())
	conn, err := loose.Dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := echo(conn, "spiffe"); err != nil {
		t.Fatal(err)
	}
	// The authorizer still decides.
	wrong := newTransport(t, c.identity("spiffe://example.internal/cli"), transport.WithoutHostnameCheck(),
		transport.WithAuthorizer(transport.AuthorizeSPIFFEID("spiffe://example.internal/other")))
	if conn, err := wrong.Dial(ctx, "tcp", addr); err == nil {
		conn.Close()
		t.Fatal("WithoutHostnameCheck accepted a server the authorizer rejects")
	}
}
