package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/crl"
	"github.com/certctl/certctl/ct"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
	"github.com/certctl/certctl/ocsp"
	"github.com/certctl/certctl/server"
	"github.com/certctl/certctl/server/cfsslapi"
)

// ocspPath is the URL path of the configured OCSP URL ("/ocsp" by default).
func ocspPath(cfg *Config) string {
	for _, raw := range cfg.URLs.OCSPServers {
		if u, err := url.Parse(raw); err == nil && u.Path != "" && u.Path != "/" {
			return strings.TrimSuffix(u.Path, "/")
		}
	}
	return "/ocsp"
}

// cfsslOptions builds the CFSSL-compatible API's options from the cfssl:
// section.
func cfsslOptions(c *common, cfg *Config) (*cfsslapi.Options, error) {
	cc := cfg.CFSSL
	opts := &cfsslapi.Options{DefaultProfile: cc.DefaultProfile, ProfileAuthKeys: cc.ProfileAuthKeys, AuthKeys: map[string][]byte{}}
	for name, ref := range cc.AuthKeys {
		text := ref
		switch {
		case strings.HasPrefix(ref, "env:"):
			text = c.getenv(strings.TrimPrefix(ref, "env:"))
			if text == "" {
				return nil, fmt.Errorf("%s: cfssl.auth_keys.%s: environment variable %s is empty", configFile, name, strings.TrimPrefix(ref, "env:"))
			}
		case strings.HasPrefix(ref, "file:"):
			p := strings.TrimPrefix(ref, "file:")
			if !filepath.IsAbs(p) {
				p = c.path(p)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("%s: cfssl.auth_keys.%s: %w", configFile, name, err)
			}
			text = strings.TrimSpace(string(b))
		}
		key, err := hex.DecodeString(text)
		if err != nil {
			return nil, fmt.Errorf("%s: cfssl.auth_keys.%s: not hex: %v", configFile, name, err)
		}
		opts.AuthKeys[name] = key
	}
	return opts, nil
}

const serveDoc = `Run the CA's HTTP API server.

The API listens on HTTPS (--addr) with a server certificate from this CA,
which the server renews itself. CA certificates, OCSP and CRLs, which
clients fetch over plain HTTP, are served on --http-addr.

On a directory without a CA, serve first runs 'certctl init' (embedded
SQLite store) and prints a one-time admin API token. Stop with SIGTERM or
Ctrl-C: in-flight requests complete first.`

// Server timeouts: generous for slow clients, bounded against slowloris.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 120 * time.Second
	shutdownTimeout   = 30 * time.Second
	adminTokenTTL     = 24 * time.Hour
)

func cmdServe(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "serve", "", serveDoc)
	var c common
	c.register(fs, e)
	addr := fs.String("addr", "127.0.0.1:8443", "HTTPS API listen `ADDRESS`")
	httpAddr := fs.String("http-addr", "127.0.0.1:8080", "plain-HTTP `ADDRESS` for CA certificates, OCSP and CRLs")
	var admins multiFlag
	fs.Var(&admins, "admin-identity", "client-certificate SAN with admin rights, e.g. uri:spiffe://corp.internal/admin or dns:admin.internal (repeatable)")
	var tlsNames multiFlag
	fs.Var(&tlsNames, "tls-name", "extra `NAME` for the server's own certificate (repeatable; default: the --addr host, and localhost for loopback)")
	rate := fs.Float64("rate", 20, "requests per second allowed per caller (token or client certificate); 0 disables")
	burst := fs.Int("burst", 40, "burst size for --rate")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("serve takes no arguments")
	}
	log, err := serverLogger(e, *logFormat, *logLevel)
	if err != nil {
		return err
	}

	fresh := false
	if _, err := os.Stat(c.path(intermediateCertFile)); errors.Is(err, os.ErrNotExist) {
		initArgs := []string{"--dir", c.dir}
		if c.db != "" {
			initArgs = append(initArgs, "--db", c.db)
		}
		if err := cmdInit(ctx, e, initArgs); err != nil {
			return fmt.Errorf("initialise a CA in %s: %w", c.dir, err)
		}
		fresh = true
	}
	reg := prometheus.NewRegistry() // /metrics: the server's, the CT submitters' and the scan runner's
	ctMetrics, err := ct.NewMetrics(reg)
	if err != nil {
		return err
	}
	l, err := loadCA(ctx, &c, log, ca.WithCTOptions(ct.WithMetrics(ctMetrics)))
	if err != nil {
		return err
	}
	defer l.Close()
	st, ok := l.store.(serverStore)
	if !ok {
		return fmt.Errorf("database %s cannot hold API tokens and audit events", redact(c.dbURL(l.cfg)))
	}

	var adminToken string
	if fresh {
		text, rec := server.NewToken()
		rec.Admin = true
		rec.Description = "initial admin token printed by certctl serve"
		rec.CreatedBy = "serve"
		rec.ExpiresAt = time.Now().Add(adminTokenTTL)
		if err := st.CreateToken(ctx, rec); err != nil {
			return fmt.Errorf("create the initial admin token: %w", err)
		}
		adminToken = text
	}

	// Revocation: OCSP pre-signing (a response at issuance, re-signed at
	// once on revocation, refreshed in bulk by one leader) and CRLs.
	rev, err := newRevocation(ctx, &c, l, log)
	if err != nil {
		return err
	}
	authority := &presigningCA{CA: l.ca, rev: rev, log: log}
	ocspSource := ocsp.NewStoreSource(rev.store, ocsp.WithSourceLogger(log))
	ocspResponder, err := ocsp.NewResponder(l.inter, ocspSource, ocspPath(l.cfg), ocsp.WithResponderLogger(log))
	if err != nil {
		return err
	}
	crlOpts := []crl.Option{crl.WithLogger(log), crl.WithNotifier(rev.store), crl.WithLocker(rev.store)}
	if p := time.Duration(l.cfg.CRL.Period); p > 0 {
		crlOpts = append(crlOpts, crl.WithPeriod(p))
	}
	crlUpdater, err := crl.NewUpdater(rev.builder, rev.store, crlOpts...)
	if err != nil {
		return fmt.Errorf("CRL updater: %w (check crl: in %s)", err, configFile)
	}
	crlHandler, err := crl.NewHandler(rev.store, rev.builder.IssuerKeyID(), rev.builder.Shards(), crl.WithLogger(log))
	if err != nil {
		return err
	}
	cfsslOpts, err := cfsslOptions(&c, l.cfg)
	if err != nil {
		return err
	}

	// The server's own certificate, renewed in the background.
	names := serverNames(*addr, tlsNames)
	ident := &selfCert{ca: authority, names: names, log: log}
	if err := ident.renew(ctx); err != nil {
		return fmt.Errorf("issue the server's own certificate for %v: %w (check that profile \"server\" in %s allows these names, or pass --tls-name)", names, err, configFile)
	}

	scanRunner, err := newScanRunner(&c, l, log, reg)
	if err != nil {
		return err
	}
	srv, err := server.New(authority, st, server.Config{
		Chain:           [][]byte{l.inter.Raw},
		Roots:           []*x509.Certificate{l.root},
		URLs:            l.cfg.URLs,
		AdminIdentities: admins,
		RatePerSecond:   *rate,
		RateBurst:       *burst,
		CFSSL:           cfsslOpts,
		Profiles:        l.cfg.Profiles,
		CRL:             crlHandler,
		Logger:          log,
		Registry:        reg,
	})
	if err != nil {
		return err
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(l.root)
	tlsCfg := &tls.Config{
		MinVersion:     tls.VersionTLS12, // 1.3 is preferred by Go's defaults when both sides have it
		GetCertificate: ident.getCertificate,
		ClientAuth:     tls.VerifyClientCertIfGiven, // tokens or mTLS; /v1/renew needs the certificate
		ClientCAs:      clientCAs,
	}
	apiLn, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another certctl serve running? choose --addr)", *addr, err)
	}
	httpLn, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		apiLn.Close()
		return fmt.Errorf("listen on %s: %w (choose --http-addr)", *httpAddr, err)
	}
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	api := &http.Server{Handler: srv.Handler(), TLSConfig: tlsCfg, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
		WriteTimeout: writeTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: 64 << 10, ErrorLog: errLog}
	public := &http.Server{Handler: ocspResponder.Wrap(srv.PublicHandler()), ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
		WriteTimeout: writeTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: 64 << 10, ErrorLog: errLog}

	fmt.Fprintf(e.stdout, "certctl serve: API on https://%s, CA certificates/OCSP/CRL on http://%s\n", apiLn.Addr(), httpLn.Addr())
	fmt.Fprintf(e.stdout, "root certificate: %s\n", c.path(rootCertFile))
	if adminToken != "" {
		fmt.Fprintf(e.stdout, "admin API token (shown once, valid %s; create more with `certctl token create`):\n%s\n", adminTokenTTL, adminToken)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 8)
	go func() { errc <- serveErr(api.ServeTLS(apiLn, "", "")) }()
	go func() { errc <- serveErr(public.Serve(httpLn)) }()
	var bg sync.WaitGroup
	background := func(name string, run func(context.Context) error) {
		bg.Go(func() {
			if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error(name+" stopped", "err", err)
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}
	background("certificate renewal", func(ctx context.Context) error { ident.run(ctx); return nil })
	background("OCSP pre-signer", rev.presigner.Run)
	background("OCSP cache", ocspSource.Run)
	background("CRL updater", crlUpdater.Run)
	background("scan runner", scanRunner.Run)

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	log.Info("shutting down: waiting for in-flight requests", "timeout", shutdownTimeout)
	cancel()
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer scancel()
	if e1 := api.Shutdown(sctx); e1 != nil && err == nil {
		err = e1
	}
	if e2 := public.Shutdown(sctx); e2 != nil && err == nil {
		err = e2
	}
	bg.Wait()
	log.Info("stopped")
	return err
}

// serverStore is what serve needs from the certificate database.
type serverStore interface {
	server.Store
	CreateToken(ctx context.Context, t *certdb.Token) error
}

func serveErr(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func serverLogger(e *env, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(e.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(e.stderr, opts)), nil
	}
	return nil, usageError("--log-format %q: want text or json", format)
}

// serverNames: the names of the server's own certificate.
func serverNames(addr string, extra []string) []string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	var names []string
	switch ip := net.ParseIP(host); {
	case host == "" || (ip != nil && ip.IsUnspecified()):
		names = append(names, "localhost", "127.0.0.1")
	case ip != nil && ip.IsLoopback():
		names = append(names, "localhost", ip.String())
	default:
		names = append(names, host)
	}
	for _, n := range extra {
		if !contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// selfCert is the server's own TLS identity: issued by its own CA (and so
// recorded in certdb like any other), kept in memory, renewed at two thirds
// of its lifetime. Handshakes read it without locks.
type selfCert struct {
	ca interface {
		Issue(context.Context, ca.Request) (*ca.Issued, error)
	}
	names []string
	log   *slog.Logger
	cur   atomic.Pointer[tls.Certificate]
}

func (s *selfCert) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cur.Load(), nil
}

func (s *selfCert) renew(ctx context.Context) error {
	key, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		return err
	}
	req := &issuance.Request{PublicKey: key.Public()}
	req.Subject.CommonName = s.names[0]
	if err := req.AddNames(s.names...); err != nil {
		return err
	}
	issued, err := s.ca.Issue(ctx, ca.Request{Profile: "server", Request: req, Requester: "serve"})
	if err != nil {
		return err
	}
	s.cur.Store(&tls.Certificate{Certificate: issued.Chain, PrivateKey: key, Leaf: issued.Certificate})
	s.log.Info("server certificate issued", "serial", certdb.SerialHex(issued.Serial), "names", s.names, "not_after", issued.Certificate.NotAfter)
	return nil
}

// run renews until ctx is done; failures are retried with capped backoff
// while the current certificate stays in use.
func (s *selfCert) run(ctx context.Context) {
	backoff := time.Second
	for {
		leaf := s.cur.Load().Leaf
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		at := leaf.NotBefore.Add(life * 2 / 3)
		jitter := time.Duration(rand.Int64N(int64(min(life/10, time.Hour)) + 1))
		wait := time.Until(at) + jitter
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		for {
			if err := s.renew(ctx); err == nil {
				backoff = time.Second
				break
			} else {
				s.log.Error("server certificate renewal failed; retrying", "err", err, "retry_in", backoff)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Minute)
		}
	}
}
