package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
	"github.com/certctl/certctl/server"
)

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
	l, err := loadCA(ctx, &c, log)
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

	// The server's own certificate, renewed in the background.
	names := serverNames(*addr, tlsNames)
	ident := &selfCert{ca: l.ca, names: names, log: log}
	if err := ident.renew(ctx); err != nil {
		return fmt.Errorf("issue the server's own certificate for %v: %w (check that profile \"server\" in %s allows these names, or pass --tls-name)", names, err, configFile)
	}

	srv, err := server.New(l.ca, st, server.Config{
		Chain:           [][]byte{l.inter.Raw},
		Roots:           []*x509.Certificate{l.root},
		URLs:            l.cfg.URLs,
		AdminIdentities: admins,
		RatePerSecond:   *rate,
		RateBurst:       *burst,
		Logger:          log,
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
	public := &http.Server{Handler: srv.PublicHandler(), ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
		WriteTimeout: writeTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: 64 << 10, ErrorLog: errLog}

	fmt.Fprintf(e.stdout, "certctl serve: API on https://%s, CA certificates/OCSP/CRL on http://%s\n", apiLn.Addr(), httpLn.Addr())
	fmt.Fprintf(e.stdout, "root certificate: %s\n", c.path(rootCertFile))
	if adminToken != "" {
		fmt.Fprintf(e.stdout, "admin API token (shown once, valid %s; create more with `certctl token create`):\n%s\n", adminTokenTTL, adminToken)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	go func() { errc <- serveErr(api.ServeTLS(apiLn, "", "")) }()
	go func() { errc <- serveErr(public.Serve(httpLn)) }()
	go func() { ident.run(ctx); errc <- nil }()

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
	ca    *ca.CA
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
