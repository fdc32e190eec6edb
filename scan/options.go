package scan

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"net/netip"
	"time"
)

// Option configures one Scan.
type Option func(*config)

// Resolver looks up a host's addresses; *net.Resolver satisfies it.
// network is "ip".
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

type config struct {
	roots       *x509.CertPool
	clientCert  *tls.Certificate
	clientCA    *x509.Certificate
	clientCAKey crypto.Signer
	expectMTLS  bool
	timeout     time.Duration
	resolver    Resolver
	expiryWarn  time.Duration
	httpClient  *http.Client
	log         *slog.Logger
	now         func() time.Time
	skipProbe   bool
}

// Defaults.
const (
	// DefaultTimeout bounds a whole Scan when WithTimeout is not given.
	DefaultTimeout = 30 * time.Second
	// DefaultExpiryWarningDays: a leaf expiring within this many days is a
	// warning.
	DefaultExpiryWarningDays = 30
)

func newConfig(opts []Option) *config {
	c := &config{
		timeout:    DefaultTimeout,
		expiryWarn: DefaultExpiryWarningDays * 24 * time.Hour,
		now:        time.Now,
	}
	for _, o := range opts {
		o(c)
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.httpClient == nil {
		c.httpClient = &http.Client{Timeout: 10 * time.Second}
	}
	return c
}

// WithRoots sets the trust anchors (the organisation's CA bundle). Without
// it, the system pool is used.
func WithRoots(roots *x509.CertPool) Option { return func(c *config) { c.roots = roots } }

// WithClientCertificate supplies the client identity for endpoints that
// require one: the scan then connects with it, and the "supplied" mTLS probe
// checks that it is accepted. The certificate is never modified.
func WithClientCertificate(cert tls.Certificate) Option {
	return func(c *config) { c.clientCert = &cert }
}

// WithClientIssuer gives the scan the CA that the server trusts for client
// certificates, so that it can sign throwaway client certificates that are
// expired or lack the clientAuth EKU and check the server rejects them.
// Without it those two probes are not run (a Finding says so).
func WithClientIssuer(ca *x509.Certificate, key crypto.Signer) Option {
	return func(c *config) { c.clientCA, c.clientCAKey = ca, key }
}

// WithExpectClientAuth declares that the endpoint must require a client
// certificate: one that completes without a certificate grades F.
func WithExpectClientAuth() Option { return func(c *config) { c.expectMTLS = true } }

// WithTimeout bounds the whole Scan (default DefaultTimeout); the caller's
// ctx bounds it too.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithResolver sets the DNS resolver (default net.DefaultResolver).
func WithResolver(r Resolver) Option { return func(c *config) { c.resolver = r } }

// WithExpiryWarning sets how many days before NotAfter a leaf's expiry is a
// warning (default DefaultExpiryWarningDays).
func WithExpiryWarning(days int) Option {
	return func(c *config) { c.expiryWarn = time.Duration(days) * 24 * time.Hour }
}

// WithHTTPClient sets the client for OCSP, CRL and AIA fetches (default:
// 10 s timeout). Every request also carries the Scan's ctx.
func WithHTTPClient(hc *http.Client) Option { return func(c *config) { c.httpClient = hc } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithClock sets the clock used for expiry checks (default time.Now).
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithoutEnumeration skips the protocol/cipher/group enumeration (package
// scan/probe); the grade then rests on what crypto/tls negotiated only. For
// quick certificate-only checks.
func WithoutEnumeration() Option { return func(c *config) { c.skipProbe = true } }
