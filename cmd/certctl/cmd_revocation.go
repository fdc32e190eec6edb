package main

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/certctl/certctl/ocsp"
)

const ocspDoc = `OCSP responder tools.

  certctl ocsp serve [--db URL] [--addr 127.0.0.1:8080] [--issuer FILE]
        answer OCSP requests from the pre-signed responses in the certificate
        database, without any CA key (it may read a PostgreSQL replica)
  certctl ocsp refresh [--force]
        sign OCSP responses for every unexpired certificate that needs one
        (certctl serve also does this continuously)`

func cmdOCSP(ctx context.Context, e *env, args []string) error {
	return dispatch(ctx, e, "ocsp", "ocsp serve|refresh [flags]", ocspDoc, []subcommand{
		{"serve", cmdOCSPServe}, {"refresh", cmdOCSPRefresh},
	}, args)
}

func cmdOCSPServe(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "ocsp serve", "", "Serve OCSP from pre-signed responses in the certificate database. Needs no CA key.")
	var c common
	c.register(fs, e)
	addr := fs.String("addr", "127.0.0.1:8080", "listen `ADDRESS`")
	issuerFile := fs.String("issuer", "", "issuing CA certificate `FILE` (default DIR/intermediate.crt)")
	prefix := fs.String("path", "/ocsp", "URL path the responder answers under")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	log, err := serverLogger(e, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	if *issuerFile == "" {
		*issuerFile = c.path(intermediateCertFile)
	}
	issuer, err := readCert(*issuerFile)
	if err != nil {
		return fmt.Errorf("issuer certificate: %w (pass --issuer)", err)
	}
	var cfg *Config
	if c.db == "" {
		if cfg, err = c.loadConfig(); err != nil {
			return fmt.Errorf("%w (or pass --db)", err)
		}
	}
	st, err := openStore(ctx, c.dbURL(cfg), false, log)
	if err != nil {
		return err
	}
	defer st.Close()
	rs, ok := st.(ocsp.ResponseStore)
	if !ok {
		return errors.New("this certificate database holds no OCSP responses")
	}
	src := ocsp.NewStoreSource(rs, ocsp.WithSourceLogger(log))
	resp, err := ocsp.NewResponder(issuer, src, strings.TrimSuffix(*prefix, "/"), ocsp.WithResponderLogger(log))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (choose --addr)", *addr, err)
	}
	notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	srv := &http.Server{Handler: resp.Wrap(notFound), ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
		WriteTimeout: writeTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: 16 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	fmt.Fprintf(e.stdout, "certctl ocsp serve: OCSP for %q on http://%s%s\n", issuer.Subject.CommonName, ln.Addr(), *prefix)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go src.Run(ctx)
	errc := make(chan error, 1)
	go func() { errc <- serveErr(srv.Serve(ln)) }()
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer scancel()
	if e2 := srv.Shutdown(sctx); e2 != nil && err == nil {
		err = e2
	}
	return err
}

func cmdOCSPRefresh(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "ocsp refresh", "", "Sign OCSP responses for every unexpired certificate whose response is missing, stale or out of date.")
	var c common
	c.register(fs, e)
	force := fs.Bool("force", false, "re-sign every response, not only stale ones")
	verbose := fs.Bool("verbose", false, "log to stderr")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	log := newLogger(e, *verbose)
	l, err := loadCA(ctx, &c, log)
	if err != nil {
		return err
	}
	defer l.Close()
	rev, err := newRevocation(ctx, &c, l, log)
	if err != nil {
		return err
	}
	last := time.Now()
	p, err := rev.presigner.RefreshAll(ctx, *force, func(p ocsp.Progress) {
		if time.Since(last) > time.Second {
			fmt.Fprintf(e.stderr, "signed %d responses (%d failed)\n", p.Signed, p.Failed)
			last = time.Now()
		}
	})
	fmt.Fprintf(e.stdout, "signed %d OCSP responses, %d failed\n", p.Signed, p.Failed)
	if err != nil {
		return fmt.Errorf("OCSP refresh: %w", err)
	}
	return nil
}

const crlDoc = `Build, sign and store the CRL of one shard and write it to FILE (DER, or
PEM when FILE ends in .pem). 'certctl serve' also regenerates CRLs on
schedule and within a second of a revocation.`

func cmdCRL(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "crl", "", crlDoc)
	var c common
	c.register(fs, e)
	shard := fs.Int("shard", 0, "CRL shard `N` (0 when CRLs are not sharded)")
	out := fs.String("out", "", "output `FILE` (required)")
	verbose := fs.Bool("verbose", false, "log to stderr")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usageError("crl needs --out FILE")
	}
	log := newLogger(e, *verbose)
	l, err := loadCA(ctx, &c, log)
	if err != nil {
		return err
	}
	defer l.Close()
	rev, err := newRevocation(ctx, &c, l, log)
	if err != nil {
		return err
	}
	if *shard < 0 || *shard >= rev.builder.Shards() {
		return usageError("--shard %d: this CA has %d shard(s): 0..%d", *shard, rev.builder.Shards(), rev.builder.Shards()-1)
	}
	list, err := rev.builder.Build(ctx, *shard)
	if err != nil {
		return fmt.Errorf("build CRL: %w", err)
	}
	data := list.DER
	if strings.HasSuffix(*out, ".pem") {
		data = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: list.DER})
	}
	if err := os.WriteFile(*out, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	fmt.Fprintf(e.stdout, "CRL shard %d number %s (%d bytes), next update %s, written to %s\n",
		*shard, list.Number, len(list.DER), list.NextUpdate.UTC().Format(time.RFC3339), *out)
	return nil
}
