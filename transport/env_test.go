package transport_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb/sqlite"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
	"github.com/certctl/certctl/server"
	"github.com/certctl/certctl/transport"
)

// testCA is a real certctl CA: SQLite store, root and intermediate, the
// server package's HTTPS API on 127.0.0.1. Its published bundle and issuing
// CA can be switched (root rollover) and its listener taken down (outage).
type testCA struct {
	t        testing.TB
	store    *sqlite.Store
	profiles map[string]*issuance.Profile
	url      string
	rootFile string

	handler   atomic.Pointer[http.Handler]
	tlsCert   atomic.Pointer[tls.Certificate]
	clientCAs atomic.Pointer[x509.CertPool]
	down      atomic.Bool

	root, inter *x509.Certificate // first generation
	gen1        generation

	issuerCfg issuance.IssuerConfig // of the intermediates: CDP/AIA URLs
}

// generation is one root + intermediate and the CA issuing with it.
type generation struct {
	root, inter *x509.Certificate
	iss         *issuance.Issuer // the intermediate's
	ca          *ca.CA
}

// newTestCA starts a CA whose "peer" profile issues certificates valid for
// validity (with backdate, the lifetime is validity+backdate). opts run
// before the first generation is made.
func newTestCA(t testing.TB, validity, backdate time.Duration, opts ...func(*testCA)) *testCA {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ca.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	c := &testCA{t: t, store: st, profiles: map[string]*issuance.Profile{}}
	for name, pc := range issuance.DefaultProfiles() {
		if name == "peer" {
			pc.Validity, pc.Backdate = issuance.Duration(validity), issuance.Duration(backdate)
			pc.Names.URI = []string{"spiffe://example.internal/**"}
		}
		p, err := issuance.NewProfile(name, pc)
		if err != nil {
			t.Fatal(err)
		}
		c.profiles[name] = p
	}
	for _, o := range opts {
		o(c)
	}
	g := c.newGeneration("1")
	c.root, c.inter, c.gen1 = g.root, g.inter, g
	c.publish(g, g.root)
	c.serveCert(g)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.url = "https://" + ln.Addr().String()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*c.handler.Load()).ServeHTTP(w, r) }),
		TLSConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				return &tls.Config{
					MinVersion:   tls.VersionTLS12,
					Certificates: []tls.Certificate{*c.tlsCert.Load()},
					ClientAuth:   tls.VerifyClientCertIfGiven,
					ClientCAs:    c.clientCAs.Load(),
				}, nil
			},
		},
		ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelError), // TLS errors of refused handshakes are expected
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.ServeTLS(&downListener{Listener: ln, down: &c.down}, "", "")
	t.Cleanup(func() { srv.Close() })

	c.rootFile = filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(c.rootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: g.root.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

func mustKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newGeneration creates a root and intermediate (recorded in the store)
// and a CA issuing leaves with them.
func (c *testCA) newGeneration(name string) generation {
	t := c.t
	t.Helper()
	ctx := context.Background()
	rootKey := mustKey(t)
	root, err := ca.CreateRoot(ctx, c.store, rootKey, issuance.RootConfig{CommonName: "Test Root " + name, Validity: 10 * 365 * 24 * time.Hour, MaxPathLen: 1}, "test", time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	rootIss, err := issuance.NewIssuer(root, rootKey, issuance.IssuerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	rootCA, err := ca.New(rootIss, nil, map[string]*issuance.Profile{"intermediate": c.profiles["intermediate"]}, c.store)
	if err != nil {
		t.Fatal(err)
	}
	interKey := mustKey(t)
	ireq := &issuance.Request{PublicKey: interKey.Public()}
	ireq.Subject.CommonName = "Test Intermediate " + name
	inter, err := rootCA.Issue(ctx, ca.Request{Profile: "intermediate", Request: ireq})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issuance.NewIssuer(inter.Certificate, interKey, c.issuerCfg)
	if err != nil {
		t.Fatal(err)
	}
	leafCA, err := ca.New(iss, [][]byte{inter.DER}, c.profiles, c.store)
	if err != nil {
		t.Fatal(err)
	}
	return generation{root: root, inter: inter.Certificate, iss: iss, ca: leafCA}
}

// publish serves the API issuing with g and publishing roots.
func (c *testCA) publish(g generation, roots ...*x509.Certificate) {
	c.t.Helper()
	srv, err := server.New(g.ca, c.store, server.Config{Chain: [][]byte{g.inter.Raw}, Roots: roots})
	if err != nil {
		c.t.Fatal(err)
	}
	h := srv.Handler()
	c.handler.Store(&h)
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	c.clientCAs.Store(pool)
}

// serveCert gives the API server a TLS certificate from g.
func (c *testCA) serveCert(g generation) {
	c.t.Helper()
	key := mustKey(c.t)
	req := &issuance.Request{PublicKey: key.Public()}
	if err := req.AddNames("localhost", "127.0.0.1"); err != nil {
		c.t.Fatal(err)
	}
	is, err := g.ca.Issue(context.Background(), ca.Request{Profile: "server", Request: req, Requester: "test"})
	if err != nil {
		c.t.Fatal(err)
	}
	c.tlsCert.Store(&tls.Certificate{Certificate: is.Chain, PrivateKey: key, Leaf: is.Certificate})
}

// token creates a single-use bootstrap token for the peer profile.
func (c *testCA) token() string {
	c.t.Helper()
	text, rec := server.NewToken()
	rec.Profiles = []string{"peer"}
	rec.Names = []string{"**.internal", "127.0.0.1", "spiffe://example.internal/**"}
	rec.SingleUse = true
	rec.ExpiresAt = time.Now().Add(time.Hour)
	if err := c.store.CreateToken(context.Background(), rec); err != nil {
		c.t.Fatal(err)
	}
	return text
}

// identity is an in-memory-key identity with a fresh token.
func (c *testCA) identity(names ...string) transport.Identity {
	return transport.Identity{
		CAURL: c.url, CARoots: c.rootFile, Profile: "peer", Names: names, Token: c.token(),
		RetryMin: 100 * time.Millisecond, RetryMax: time.Second, EnrollTimeout: 20 * time.Second,
	}
}

// downListener drops every connection while down is set: the CA host is
// unreachable (connections reset), as when its process is stopped.
type downListener struct {
	net.Listener
	down *atomic.Bool
}

func (l *downListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || !l.down.Load() {
			return c, err
		}
		c.Close()
	}
}

// newTransport calls transport.New and closes it at cleanup.
func newTransport(t testing.TB, id transport.Identity, opts ...transport.Option) *transport.Transport {
	t.Helper()
	opts = append([]transport.Option{transport.WithLogger(testLogger(t))}, opts...)
	tr, err := transport.New(context.Background(), id, opts...)
	if err != nil {
		t.Fatalf("transport.New(%v): %v", id.Names, err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// testLogger logs at warning level and above to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(&tlogWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tlogWriter struct {
	mu sync.Mutex
	t  testing.TB
}

func (w *tlogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// echoServer accepts on ln and echoes lines; it records each connection's
// peer serial.
type echoServer struct {
	mu      sync.Mutex
	serials []string
}

func (e *echoServer) serve(t testing.TB, ln net.Listener) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				if err := tc.Handshake(); err != nil {
					return
				}
				e.mu.Lock()
				e.serials = append(e.serials, hex.EncodeToString(tc.ConnectionState().PeerCertificates[0].SerialNumber.Bytes()))
				e.mu.Unlock()
				io.Copy(c, c)
			}()
		}
	}()
}

// listenEcho runs an echoServer on tr.Listen (127.0.0.1) and returns it and
// its address.
func listenEcho(t testing.TB, tr *transport.Transport) (*echoServer, string) {
	t.Helper()
	ln, err := tr.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	es := &echoServer{}
	es.serve(t, ln)
	return es, ln.Addr().String()
}

func (e *echoServer) lastSerial() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.serials) == 0 {
		return ""
	}
	return e.serials[len(e.serials)-1]
}

// echo writes msg and reads it back.
func echo(c net.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return errors.New("echo mismatch")
	}
	return nil
}
