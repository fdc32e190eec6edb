package pgtls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/internal/catest"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/server"
	"github.com/certctl/certctl/transport"
	"github.com/certctl/certctl/transport/pgtls"
)

var _ pgtls.Identity = (*transport.Transport)(nil)

// startCAServer runs certctl's CA (ca + server packages, SQLite store)
// issuing from pki's root over HTTPS on 127.0.0.1, with a "client" profile
// of the given validity. It returns the API URL and a bootstrap token for
// one client certificate.
func startCAServer(t *testing.T, validity time.Duration) (url, token string) {
	t.Helper()
	ctx := context.Background()
	st := catest.SQLiteStore(t)
	cfg := issuance.DefaultProfiles()["client"]
	cfg.Validity, cfg.Backdate = issuance.Duration(validity), 0
	client, err := issuance.NewProfile("client", cfg)
	if err != nil {
		t.Fatal(err)
	}
	authority, err := ca.New(pki.iss, nil, map[string]*issuance.Profile{"client": client}, st)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(authority, st, server.Config{Chain: [][]byte{pki.root.Raw}, Roots: []*x509.Certificate{pki.root}})
	if err != nil {
		t.Fatal(err)
	}
	text, rec := server.NewToken()
	rec.Profiles, rec.Names, rec.SingleUse, rec.ExpiresAt = []string{"client"}, []string{"app", "**.internal"}, true, time.Now().Add(time.Hour)
	if err := st.CreateToken(ctx, rec); err != nil {
		t.Fatal(err)
	}
	serverCert := pki.mustIssue(t, "server", "", "localhost", "127.0.0.1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{
		Handler: srv.Handler(),
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{*serverCert},
			ClientAuth:   tls.VerifyClientCertIfGiven, // renewals authenticate with the current certificate
			ClientCAs:    pki.roots,
		},
		ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go hs.ServeTLS(ln, "", "")
	t.Cleanup(func() { hs.Close() })
	return "https://" + ln.Addr().String(), text
}

// A real *transport.Transport as the Identity: enrolled at certctl's CA,
// renewed in the background; pool connections made after a renewal present
// the new certificate, the connection made before keeps working.
func TestTransportIdentity(t *testing.T) {
	ctx := testCtx(t)
	url, token := startCAServer(t, 6*time.Second)
	roots := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(roots, pki.rootPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	rotated := make(chan transport.Snapshot, 8)
	tr, err := transport.New(ctx, transport.Identity{
		CAURL: url, CARoots: roots, Profile: "client", CommonName: "app", Names: []string{"app.internal"}, Token: token,
		RetryMin: 100 * time.Millisecond, RetryMax: time.Second, EnrollTimeout: 20 * time.Second,
	},
		transport.WithAuthorizer(transport.AuthorizeDNS("localhost")),
		transport.WithOnRotate(func(s transport.Snapshot) {
			select {
			case rotated <- s:
			default:
			}
		}),
	)
	if err != nil {
		t.Fatalf("transport.New: %v", err)
	}
	defer tr.Close()
	first := tr.Current().Leaf

	cfg, err := pgtls.PoolConfig(dsn("pool_max_conns=4"), tr)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	c1, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	defer c1.Release()
	if user, s := sslInfo(t, ctx, c1); user != "app" || s != serialOf(first) {
		t.Fatalf("server saw user %q serial %s, want app %s", user, s, serialOf(first))
	}

	// Renewal at two thirds of the 6 s lifetime (plus jitter).
	var next transport.Snapshot
	for next.Leaf == nil || next.Leaf.SerialNumber.Cmp(first.SerialNumber) == 0 {
		select {
		case next = <-rotated:
		case <-ctx.Done():
			t.Fatalf("no renewal: %v (status %+v)", ctx.Err(), tr.Status())
		}
	}
	c2, err := pool.Acquire(ctx) // c1 is held: a new connection
	if err != nil {
		t.Fatalf("acquire after renewal: %v", err)
	}
	defer c2.Release()
	if _, s := sslInfo(t, ctx, c2); s != serialOf(next.Leaf) {
		t.Fatalf("after renewal: serial %s, want %s", s, serialOf(next.Leaf))
	}
	if _, s := sslInfo(t, ctx, c1); s != serialOf(first) {
		t.Fatalf("old connection after renewal: serial %s, want %s", s, serialOf(first))
	}
}
