package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb/sqlite"
	"github.com/certctl/certctl/internal/catest"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
	"github.com/certctl/certctl/server"
	"github.com/certctl/certctl/transport"
)

// trCA is a certctl CA API server on 127.0.0.1 over SQLite, for the
// transport benchmarks.
type trCA struct {
	url, rootFile string
	store         *sqlite.Store
	root          *x509.Certificate
}

func newTrCA(b *testing.B) *trCA {
	b.Helper()
	ctx := context.Background()
	st := catest.SQLiteStore(b)
	h := catest.NewHierarchy(b, catest.Options{Name: "Bench", Store: st, RecordRoot: true, RootRequester: "bench"})
	root := h.Root
	iss := h.Issuer(b, issuance.IssuerConfig{})
	leafCA, err := ca.New(iss, h.Chain(), catest.Profiles(b), st)
	must(b, err)
	srv, err := server.New(leafCA, st, server.Config{Chain: h.Chain(), Roots: []*x509.Certificate{root}})
	must(b, err)

	tlsKey := catest.Key(b, keys.ECDSAP256)
	treq := &issuance.Request{PublicKey: tlsKey.Public()}
	must(b, treq.AddNames("127.0.0.1"))
	tlsCert, err := leafCA.Issue(ctx, ca.Request{Profile: "server", Request: treq, Requester: "bench"})
	must(b, err)
	pool := x509.NewCertPool()
	pool.AddCert(root)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(b, err)
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, TLSConfig: &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: tlsCert.Chain, PrivateKey: tlsKey}},
		ClientAuth:   tls.VerifyClientCertIfGiven, ClientCAs: pool,
	}, ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
	go hs.ServeTLS(ln, "", "")
	b.Cleanup(func() { hs.Close() })
	c := &trCA{url: "https://" + ln.Addr().String(), store: st, root: root, rootFile: filepath.Join(b.TempDir(), "root.pem")}
	must(b, os.WriteFile(c.rootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}), 0o644))
	return c
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// identity returns an identity with a fresh single-use token.
func (c *trCA) identity(b *testing.B, name string) transport.Identity {
	text, rec := server.NewToken()
	rec.Profiles, rec.Names, rec.SingleUse, rec.ExpiresAt = []string{"peer"}, []string{"**.internal", "127.0.0.1"}, true, time.Now().Add(time.Hour)
	must(b, c.store.CreateToken(context.Background(), rec))
	return transport.Identity{CAURL: c.url, CARoots: c.rootFile, Profile: "peer", Names: []string{name, "127.0.0.1"}, Token: text}
}

func (c *trCA) transport(b *testing.B, name string) *transport.Transport {
	tr, err := transport.New(context.Background(), c.identity(b, name), transport.WithAuthorizer(transport.AuthorizeAnyTrusted()))
	must(b, err)
	b.Cleanup(func() { tr.Close() })
	return tr
}

// mtlsPair is a server and client configuration pair: either the
// Transport's, or plain crypto/tls configurations with the very same
// certificates, keys and roots (ClientCAs/RootCAs, RequireAndVerifyClientCert).
type mtlsPair struct{ server, client *tls.Config }

func pairs(b *testing.B) map[string]mtlsPair {
	c := newTrCA(b)
	srv, cli := c.transport(b, "srv.internal"), c.transport(b, "cli.internal")
	pool := x509.NewCertPool()
	pool.AddCert(c.root)
	std := mtlsPair{
		server: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*srv.Current().Certificate},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool},
		client: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cli.Current().Certificate},
			RootCAs: pool, ServerName: "127.0.0.1"},
	}
	trc := cli.ClientTLSConfig()
	trc.ServerName = "127.0.0.1"
	return map[string]mtlsPair{"stdlib": std, "transport": {server: srv.ServerTLSConfig(), client: trc}}
}

// BenchmarkMTLSHandshake: full mutual TLS 1.3 handshakes (no resumption)
// over loopback, client and server in this process, one at a time.
func BenchmarkMTLSHandshake(b *testing.B) {
	for _, name := range []string{"stdlib", "transport"} {
		b.Run(name, func(b *testing.B) {
			p := pairs(b)[name]
			addr := handshakeServer(b, p.server)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				handshake(b, addr, p.client)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "handshakes/s")
		})
	}
}

// handshakeServer accepts on a new listener with cfg, completes each
// handshake and writes one byte, so that the client knows the server's
// verification is done.
func handshakeServer(b *testing.B, cfg *tls.Config) string {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	must(b, err)
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.(*tls.Conn).Handshake()
				c.Write([]byte{1})
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

func handshake(b *testing.B, addr string, cfg *tls.Config) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	var buf [1]byte
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		b.Fatal(err)
	}
	c.Close()
}

// BenchmarkMTLSHandshakePaired alternates a stdlib and a transport
// handshake in each iteration and times each, so that load from other
// processes hits both alike. It reports both rates and their ratio.
func BenchmarkMTLSHandshakePaired(b *testing.B) {
	ps := pairs(b)
	std, tr := ps["stdlib"], ps["transport"]
	stdAddr, trAddr := handshakeServer(b, std.server), handshakeServer(b, tr.server)
	var stdTime, trTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		handshake(b, stdAddr, std.client)
		t1 := time.Now()
		handshake(b, trAddr, tr.client)
		t2 := time.Now()
		stdTime += t1.Sub(t0)
		trTime += t2.Sub(t1)
	}
	b.ReportMetric(float64(b.N)/stdTime.Seconds(), "stdlib-handshakes/s")
	b.ReportMetric(float64(b.N)/trTime.Seconds(), "transport-handshakes/s")
	b.ReportMetric(100*stdTime.Seconds()/trTime.Seconds(), "transport-%-of-stdlib")
}

// BenchmarkMTLSRequests: HTTP/1.1 GETs over kept-alive mutual TLS
// connections, 8 concurrent clients.
func BenchmarkMTLSRequests(b *testing.B) {
	for _, name := range []string{"stdlib", "transport"} {
		b.Run(name, func(b *testing.B) {
			p := pairs(b)[name]
			ln, err := tls.Listen("tcp", "127.0.0.1:0", p.server)
			must(b, err)
			hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }),
				ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
			go hs.Serve(ln)
			defer hs.Close()
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: p.client, MaxIdleConnsPerHost: 64}}
			defer client.CloseIdleConnections()
			url := "https://" + ln.Addr().String() + "/"
			b.SetParallelism(4) // 4 x GOMAXPROCS goroutines
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		})
	}
}

// BenchmarkMTLSRequestsPaired alternates a GET through the stdlib pair and
// one through the transport pair (kept-alive connections), timing each.
func BenchmarkMTLSRequestsPaired(b *testing.B) {
	ps := pairs(b)
	urls, clients := map[string]string{}, map[string]*http.Client{}
	for name, p := range ps {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", p.server)
		must(b, err)
		hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }),
			ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
		go hs.Serve(ln)
		b.Cleanup(func() { hs.Close() })
		urls[name] = "https://" + ln.Addr().String() + "/"
		clients[name] = &http.Client{Transport: &http.Transport{TLSClientConfig: p.client}}
		b.Cleanup(clients[name].CloseIdleConnections)
	}
	get := func(name string) {
		resp, err := clients[name].Get(urls[name])
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	get("stdlib")
	get("transport")
	var stdTime, trTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		get("stdlib")
		t1 := time.Now()
		get("transport")
		t2 := time.Now()
		stdTime += t1.Sub(t0)
		trTime += t2.Sub(t1)
	}
	b.ReportMetric(float64(b.N)/stdTime.Seconds(), "stdlib-req/s")
	b.ReportMetric(float64(b.N)/trTime.Seconds(), "transport-req/s")
	b.ReportMetric(100*stdTime.Seconds()/trTime.Seconds(), "transport-%-of-stdlib")
}

// BenchmarkRenewal: one renewal end to end: a fresh ECDSA P-256 key and CSR,
// a mutual TLS handshake with the CA, POST /v1/renew (the CA lints, signs
// and stores in SQLite), verification and installation.
func BenchmarkRenewal(b *testing.B) {
	c := newTrCA(b)
	tr := c.transport(b, "renew.internal")
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := tr.Renew(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIdentityMemory: live heap per Transport (certificate, key, trust
// bundle, TLS configurations, CA client, renewal goroutine), measured after
// GC over b.N identities; run with -benchtime 200x or so.
func BenchmarkIdentityMemory(b *testing.B) {
	c := newTrCA(b)
	ids := make([]transport.Identity, b.N)
	for i := range ids {
		ids[i] = c.identity(b, "m.internal")
	}
	var trs []*transport.Transport
	var mu sync.Mutex
	defer func() {
		for _, t := range trs {
			t.Close()
		}
	}()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tr, err := transport.New(context.Background(), ids[i], transport.WithAuthorizer(transport.AuthorizeAnyTrusted()))
		must(b, err)
		mu.Lock()
		trs = append(trs, tr)
		mu.Unlock()
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(b.N), "heap-B/identity")
	b.ReportMetric(float64(runtime.NumGoroutine()-goroutines)/float64(b.N), "goroutines/identity")
}
