package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/certctl/certctl/transport"
)

const agentDoc = `Keep a certificate and its key renewed on disk, for services not written
in Go (nginx, HAProxy, PostgreSQL, ...).

The agent enrolls with the identity file's single-use bootstrap token (see
'certctl token create --single-use'), then renews the certificate before it
expires (at renew_at of its lifetime, over mutual TLS with the current
certificate), exactly like a Go service using the transport package.

After each new certificate (and each change of the trusted roots) it
replaces, atomically (a temporary file in the same directory, then rename):
  --cert       the certificate chain: leaf then intermediates (PEM, mode 0644)
  --key        the private key (PKCS#8 PEM, mode 0600)
  --ca-bundle  the trusted root certificates (PEM, mode 0644), if given
then runs --exec with 'sh -c' (bounded by --exec-timeout; a failure is
logged and does not stop the agent). The hook's environment has
CERTCTL_CERT, CERTCTL_KEY, CERTCTL_CA_BUNDLE, CERTCTL_SERIAL and
CERTCTL_NOT_AFTER (RFC 3339). The key is written before the certificate.

With --metrics-addr, Prometheus metrics are served on http://ADDRESS/metrics:
the certificate's expiry (certctl_transport_certificate_expiry_timestamp_seconds),
renewal outcomes, and the agent's file updates and --exec runs.

If the certificate expires without being renewed (the CA was unreachable
for the whole renewal window), the agent exits with status 1 and says so.
SIGTERM or Ctrl-C stops it with status 0, leaving the files in place.
The identity's key must be "memory" or a file: a pkcs11: key cannot be
written out. To restart without a new token, give the identity a key file
and a cert_file: a still-valid certificate is then reused. Logs go to stderr.

Example:
  certctl agent --identity /etc/certctl/nginx.yaml \
    --cert /etc/nginx/tls/cert.pem --key /etc/nginx/tls/key.pem \
    --ca-bundle /etc/nginx/tls/ca.pem --exec 'systemctl reload nginx'`

// defaultHookTimeout bounds --exec.
const defaultHookTimeout = 30 * time.Second

// agentOptions are the agent's flags.
type agentOptions struct {
	identity, cert, key, bundle string
	hook                        string
	hookTimeout                 time.Duration
	once                        bool
}

func cmdAgent(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "agent", "", agentDoc)
	var o agentOptions
	fs.StringVar(&o.identity, "identity", "", "identity `FILE` (YAML or JSON, as for the transport package): CA URL, roots, profile, names, token")
	fs.StringVar(&o.cert, "cert", "", "`FILE` to write the certificate chain to (leaf, then intermediates)")
	fs.StringVar(&o.key, "key", "", "`FILE` to write the private key to (mode 0600)")
	fs.StringVar(&o.bundle, "ca-bundle", "", "`FILE` to write the trusted root certificates to (optional)")
	fs.StringVar(&o.hook, "exec", "", "shell `COMMAND` run after each change of the files, e.g. 'systemctl reload nginx'")
	fs.DurationVar(&o.hookTimeout, "exec-timeout", defaultHookTimeout, "time limit for --exec")
	fs.BoolVar(&o.once, "once", false, "write the files (enrolling if needed), run --exec, and exit")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus metrics on http://`ADDRESS`/metrics, e.g. 127.0.0.1:9101 (default: off)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageError("agent takes no arguments")
	case o.identity == "":
		return usageError("agent needs --identity FILE")
	case o.cert == "" || o.key == "":
		return usageError("agent needs --cert FILE and --key FILE")
	case o.hookTimeout <= 0:
		return usageError("--exec-timeout must be positive")
	}
	for _, p := range []string{o.cert, o.key, o.bundle} {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(filepath.Dir(p)); err != nil || !fi.IsDir() {
			return fmt.Errorf("agent: directory of %s does not exist: create it first", p)
		}
	}
	if o.cert == o.key || (o.bundle != "" && (o.bundle == o.cert || o.bundle == o.key)) {
		return usageError("--cert, --key and --ca-bundle must be different files")
	}
	log, err := serverLogger(e, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	id, err := transport.LoadIdentity(o.identity)
	if err != nil {
		return err
	}
	if strings.HasPrefix(strings.ToLower(id.Key), "pkcs11:") {
		return fmt.Errorf("agent: %s: key is a pkcs11: URI, which cannot be written to %s: use key: memory (a new key per certificate) or a file path", o.identity, o.key)
	}
	a := newAgent(o, log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(a.hooks, a.writes)
	if *metricsAddr != "" {
		ln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			return fmt.Errorf("agent: --metrics-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout, WriteTimeout: writeTimeout}
		go srv.Serve(ln)
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
		}()
		log.Info("serving metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	}
	t, err := transport.New(ctx, id,
		// The agent makes no TLS connection of its own but to the CA; the
		// services that use the files authorize their own peers.
		transport.WithAuthorizer(transport.AuthorizeAnyTrusted()),
		transport.WithOnRotate(a.onRotate),
		transport.WithRegisterer(reg),
		transport.WithLogger(log))
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer t.Close()
	return a.run(ctx, t)
}

func newAgent(o agentOptions, log *slog.Logger) *agent {
	return &agent{
		o: o, log: log, changed: make(chan struct{}, 1),
		hooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certctl_agent_exec_runs_total",
			Help: "Runs of the agent's --exec hook by outcome (ok, error, timeout).",
		}, []string{"outcome"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certctl_agent_file_updates_total",
			Help: "Updates of the agent's files (certificate, key, CA bundle together) by outcome (ok, error).",
		}, []string{"outcome"}),
	}
}

// agent writes each snapshot of a transport identity to files.
type agent struct {
	o       agentOptions
	log     *slog.Logger
	latest  atomic.Pointer[transport.Snapshot]
	changed chan struct{} // cap 1: latest was updated
	hooks   *prometheus.CounterVec
	writes  *prometheus.CounterVec
}

// onRotate runs on the transport's goroutine: only record and signal.
func (a *agent) onRotate(s transport.Snapshot) {
	a.latest.Store(&s)
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

// status is what run needs of the transport.
type agentStatus interface{ Status() transport.Status }

// run writes the files whenever the identity changes, until ctx is done
// (nil) or the certificate expires without renewal (an error).
func (a *agent) run(ctx context.Context, t agentStatus) error {
	expiry := time.NewTimer(time.Hour)
	defer expiry.Stop()
	for {
		select {
		case <-ctx.Done():
			a.log.Info("agent stopping; files left in place", "cert", a.o.cert)
			return nil
		case <-a.changed:
			s := a.latest.Load()
			wrote, err := a.write(s)
			if err != nil {
				a.writes.WithLabelValues("error").Inc()
				return err
			}
			if wrote {
				a.writes.WithLabelValues("ok").Inc()
				a.log.Info("wrote certificate", "serial", serialOf(s.Leaf), "not_after", s.Leaf.NotAfter, "cert", a.o.cert, "key", a.o.key, "ca_bundle", a.o.bundle)
				a.runHook(ctx, s)
			}
			if a.o.once {
				return nil
			}
			expiry.Reset(time.Until(s.Leaf.NotAfter))
		case <-expiry.C:
			s := a.latest.Load()
			if time.Now().Before(s.Leaf.NotAfter) {
				expiry.Reset(time.Until(s.Leaf.NotAfter))
				continue
			}
			st := t.Status()
			return fmt.Errorf("agent: certificate %s expired at %s without renewal (last renewal error: %v); %s now holds an expired certificate: check that the CA is reachable, then restart the agent (a new enrollment needs a new bootstrap token)",
				serialOf(s.Leaf), s.Leaf.NotAfter.UTC().Format(time.RFC3339), st.LastError, a.o.cert)
		}
	}
}

// write replaces the files that differ from s; wrote reports whether any did.
func (a *agent) write(s *transport.Snapshot) (wrote bool, _ error) {
	var chain bytes.Buffer
	for _, c := range s.Chain {
		pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(s.Certificate.PrivateKey)
	if err != nil {
		return false, fmt.Errorf("agent: the identity's key cannot be written to a file: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{{a.o.key, keyPEM, 0o600}, {a.o.cert, chain.Bytes(), 0o644}}
	if a.o.bundle != "" {
		var roots bytes.Buffer
		for _, c := range s.Roots {
			pem.Encode(&roots, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
		files = append(files, struct {
			path string
			data []byte
			mode os.FileMode
		}{a.o.bundle, roots.Bytes(), 0o644})
	}
	for _, f := range files {
		if old, err := os.ReadFile(f.path); err == nil && bytes.Equal(old, f.data) {
			if fi, err := os.Stat(f.path); err == nil && fi.Mode().Perm() == f.mode {
				continue
			}
		}
		if err := writeFileAtomic(f.path, f.data, f.mode); err != nil {
			return wrote, fmt.Errorf("agent: %w", err)
		}
		wrote = true
	}
	return wrote, nil
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory (created 0600, set to mode before any byte is written), synced,
// renamed over path, then the directory synced. Readers see the old file
// or the new one, never a mix.
func writeFileAtomic(path string, data []byte, mode os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // make the rename durable; not all file systems support it
		d.Close()
	}
	return nil
}

// maxHookOutput bounds the hook output kept for the log.
const maxHookOutput = 4 << 10

// runHook runs --exec; failures are logged, never returned.
func (a *agent) runHook(ctx context.Context, s *transport.Snapshot) {
	if a.o.hook == "" {
		return
	}
	hctx, cancel := context.WithTimeout(ctx, a.o.hookTimeout)
	defer cancel()
	cmd := exec.CommandContext(hctx, "sh", "-c", a.o.hook)
	cmd.Env = append(os.Environ(),
		"CERTCTL_CERT="+a.o.cert, "CERTCTL_KEY="+a.o.key, "CERTCTL_CA_BUNDLE="+a.o.bundle,
		"CERTCTL_SERIAL="+serialOf(s.Leaf), "CERTCTL_NOT_AFTER="+s.Leaf.NotAfter.UTC().Format(time.RFC3339))
	out := &cappedBuffer{max: maxHookOutput}
	cmd.Stdout, cmd.Stderr = out, out
	// A child that keeps the output pipe open (a daemon started by the
	// hook) must not hold the agent: stop waiting for it shortly after.
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start).Round(time.Millisecond)
	switch {
	case hctx.Err() == context.DeadlineExceeded:
		a.hooks.WithLabelValues("timeout").Inc()
		a.log.Error("--exec timed out; the agent keeps running", "exec", a.o.hook, "timeout", a.o.hookTimeout, "output", out.String())
	case err != nil:
		a.hooks.WithLabelValues("error").Inc()
		a.log.Error("--exec failed; the agent keeps running", "exec", a.o.hook, "err", err, "took", took, "output", out.String())
	default:
		a.hooks.WithLabelValues("ok").Inc()
		a.log.Info("--exec ran", "exec", a.o.hook, "took", took, "output", out.String())
	}
}

// cappedBuffer keeps the first max bytes written to it; safe for
// concurrent writers (stdout and stderr).
type cappedBuffer struct {
	mu  sync.Mutex
	b   bytes.Buffer
	max int
	cut bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.b.Len(); room < len(p) {
		c.b.Write(p[:max(room, 0)])
		c.cut = true
	} else {
		c.b.Write(p)
	}
	return len(p), nil
}

func (c *cappedBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := strings.TrimSpace(c.b.String())
	if c.cut {
		s += " …(truncated)"
	}
	return s
}

func serialOf(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }
