package pgtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync"
	"time"
	"weak"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// Identity is the client identity: what pgtls uses of a *transport.Transport.
// Both methods must be safe for concurrent use.
type Identity interface {
	// ClientTLSConfig returns a client configuration that presents the
	// current certificate (GetClientCertificate or Certificates) and
	// verifies servers against the identity's pinned roots: RootCAs, or
	// VerifyConnection / VerifyPeerCertificate with InsecureSkipVerify.
	// It must return a new configuration on every call: pgtls sets its
	// ServerName to the host being dialed, then clones it.
	ClientTLSConfig() *tls.Config
	// NotAfter is the expiry of the current certificate.
	NotAfter() time.Time
}

var (
	// ErrPlaintext: the DSN allows an unencrypted connection
	// (sslmode=disable or allow).
	ErrPlaintext = errors.New("pgtls: the DSN allows plaintext (sslmode=disable or allow): remove sslmode or set sslmode=verify-full")
	// ErrUnixSocket: the DSN names a Unix-domain socket, where PostgreSQL
	// does not speak TLS.
	ErrUnixSocket = errors.New("pgtls: Unix-domain sockets cannot use TLS: connect to a TCP host name")
	// ErrExpired: the identity's certificate has expired.
	ErrExpired = errors.New("pgtls: the identity's certificate has expired")
	// ErrNoServerVerification: the identity's TLS configuration would not
	// verify the server against pinned roots.
	ErrNoServerVerification = errors.New("pgtls: the identity's TLS configuration does not verify servers against pinned roots")
)

// alpn is PostgreSQL's ALPN protocol name (PostgreSQL 17 protocol docs,
// "direct SSL"); libpq 17 sends it in every TLS handshake.
const alpn = "postgresql"

// defaultMargin is how long before its certificate expires a connection is
// retired, at most a tenth of the certificate's lifetime.
const defaultMargin = time.Minute

// Option changes how ConnConfig, PoolConfig and OpenDB build settings.
type Option func(*options)

type options struct {
	dial       pgconn.DialFunc
	serverName string
	direct     bool
	margin     time.Duration
	now        func() time.Time
}

// WithDialFunc makes connections through d, such as an HTTP CONNECT proxy's
// DialContext. TLS to PostgreSQL runs over the connection d returns, so d
// must not do TLS to PostgreSQL itself. Host names reach d unresolved (the
// proxy resolves them).
func WithDialFunc(d pgconn.DialFunc) Option { return func(o *options) { o.dial = d } }

// WithServerName verifies the server certificate for name instead of the
// DSN's host (e.g. when the DSN names an IP address or a proxy).
func WithServerName(name string) Option { return func(o *options) { o.serverName = name } }

// WithDirectTLS starts TLS without PostgreSQL's SSLRequest, like
// sslnegotiation=direct in the DSN (needs PostgreSQL 17 or a TLS proxy).
func WithDirectTLS() Option { return func(o *options) { o.direct = true } }

// WithExpiryMargin retires connections once their client certificate expires
// within d (default one minute), but never earlier than nine tenths of the
// certificate's lifetime.
func WithExpiryMargin(d time.Duration) Option { return func(o *options) { o.margin = d } }

// WithClock sets the clock used to decide expiry (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// ConnConfig parses dsn (a URL or keyword/value string, as pgx.ParseConfig)
// and returns settings for mutual TLS with id (see the package
// documentation). Each pgx.ConnectConfig with them presents id's certificate
// of that moment; pgx.Conn has no pool, so the caller decides how long a
// connection lives ([PresentedCertificate] tells which certificate it used).
// The trust settings of id are read now: call ConnConfig again to pick up a
// new trust bundle.
func ConnConfig(dsn string, id Identity, opts ...Option) (*pgx.ConnConfig, error) {
	_, cc, err := connConfig(dsn, id, opts)
	return cc, err
}

// connConfig parses dsn and secures it with a new securer for id.
func connConfig(dsn string, id Identity, opts []Option) (*securer, *pgx.ConnConfig, error) {
	s, err := newSecurer(id, opts)
	if err != nil {
		return nil, nil, err
	}
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("pgtls: parse DSN: %w", err)
	}
	if err := s.secure(&cc.Config); err != nil {
		return nil, nil, err
	}
	return s, cc, nil
}

// PoolConfig is ConnConfig for pgxpool (pool_* settings in dsn apply).
// Every new connection reads id's TLS configuration again, so pools follow
// trust bundle changes. MaxConnLifetime (plus its jitter) is cut to less than
// id's remaining life at the time of the call; a connection whose own
// certificate comes within the expiry margin is closed when it would next be
// acquired or is released.
func PoolConfig(dsn string, id Identity, opts ...Option) (*pgxpool.Config, error) {
	s, err := newSecurer(id, opts)
	if err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgtls: parse DSN: %w", err)
	}
	if err := s.secure(&pc.ConnConfig.Config); err != nil {
		return nil, err
	}
	life, err := s.maxLifetime()
	if err != nil {
		return nil, err
	}
	if pc.MaxConnLifetime+pc.MaxConnLifetimeJitter > life {
		pc.MaxConnLifetime = life * 9 / 10
		pc.MaxConnLifetimeJitter = life - pc.MaxConnLifetime
	}
	pc.BeforeConnect = func(_ context.Context, cc *pgx.ConnConfig) error {
		return s.apply(&cc.Config)
	}
	pc.PrepareConn = func(_ context.Context, c *pgx.Conn) (bool, error) {
		return !s.retired(c.PgConn()), nil
	}
	pc.AfterRelease = func(c *pgx.Conn) bool { return !s.retired(c.PgConn()) }
	return pc, nil
}

// OpenDB is ConnConfig for database/sql, through pgx's stdlib driver. As with
// PoolConfig, new connections read id's TLS configuration again,
// ConnMaxLifetime is less than id's remaining life, and a connection whose
// certificate comes within the expiry margin is discarded before reuse. The
// caller closes the *sql.DB.
func OpenDB(dsn string, id Identity, opts ...Option) (*sql.DB, error) {
	s, cc, err := connConfig(dsn, id, opts)
	if err != nil {
		return nil, err
	}
	life, err := s.maxLifetime()
	if err != nil {
		return nil, err
	}
	db := stdlib.OpenDB(*cc,
		stdlib.OptionBeforeConnect(func(_ context.Context, cc *pgx.ConnConfig) error {
			return s.apply(&cc.Config)
		}),
		stdlib.OptionResetSession(func(_ context.Context, c *pgx.Conn) error {
			if s.retired(c.PgConn()) {
				return driver.ErrBadConn // database/sql discards it and opens another
			}
			return nil
		}),
	)
	db.SetConnMaxLifetime(life)
	return db, nil
}

// PresentedCertificate returns the client certificate that c presented in
// its TLS handshake, if c was made with settings from this package.
func PresentedCertificate(c *pgconn.PgConn) (*x509.Certificate, bool) {
	info, ok := c.CustomData()[customDataKey].(*connCert)
	if !ok || info.leaf == nil {
		return nil, false
	}
	return info.leaf, true
}

// customDataKey holds a *connCert in pgconn.PgConn.CustomData.
const customDataKey = "github.com/certctl/certctl/transport/pgtls"

// connCert is what a connection presented and when to retire it.
type connCert struct {
	leaf     *x509.Certificate // nil if the certificate could not be parsed
	retireAt time.Time
}

// securer builds and enforces the settings of one ConnConfig, PoolConfig
// or OpenDB call. It is safe for concurrent use.
type securer struct {
	id     Identity
	opts   options
	direct bool // set by secure before any connection
	// presented maps a handshaken TLS connection to its connCert between
	// AfterNetConnect and AfterConnect (which moves it into CustomData). A
	// connection that fails in between drops its entry when collected.
	presented sync.Map // weak.Pointer[tls.Conn] -> *connCert
}

func newSecurer(id Identity, opts []Option) (*securer, error) {
	if id == nil {
		return nil, errors.New("pgtls: nil Identity")
	}
	s := &securer{id: id, opts: options{margin: defaultMargin, now: time.Now}}
	for _, o := range opts {
		o(&s.opts)
	}
	if s.opts.margin < 0 {
		return nil, fmt.Errorf("pgtls: expiry margin %v is negative", s.opts.margin)
	}
	return s, nil
}

// secure checks a freshly parsed configuration and rewrites it for mutual
// TLS with verify-full and no plaintext attempt.
func (s *securer) secure(pc *pgconn.Config) error {
	for _, fb := range targets(pc) {
		if network, _ := pgconn.NetworkAddress(fb.Host, fb.Port); network == "unix" {
			return fmt.Errorf("%w (host %s)", ErrUnixSocket, fb.Host)
		}
	}
	// pgx puts a nil TLSConfig first for sslmode=disable and allow, and a
	// plaintext attempt after the TLS one for prefer (dropped by apply).
	if pc.TLSConfig == nil {
		return ErrPlaintext
	}
	if pc.SSLCertMode == "disable" {
		return errors.New("pgtls: sslcertmode=disable would not send the identity's certificate: remove it")
	}
	if s.opts.direct {
		pc.SSLNegotiation = "direct"
	}
	s.direct = pc.SSLNegotiation == "direct"
	if s.opts.dial != nil {
		pc.DialFunc = s.opts.dial
		// Let the dialer (a proxy) resolve names.
		pc.LookupFunc = func(_ context.Context, host string) ([]string, error) { return []string{host}, nil }
	}
	if err := s.apply(pc); err != nil {
		return err
	}
	pc.AfterNetConnect = s.afterNetConnect
	pc.AfterConnect = s.afterConnect
	return nil
}

// targets returns the primary host and the fallbacks of pc.
func targets(pc *pgconn.Config) []*pgconn.FallbackConfig {
	return append([]*pgconn.FallbackConfig{{Host: pc.Host, Port: pc.Port, TLSConfig: pc.TLSConfig}}, pc.Fallbacks...)
}

// apply sets fresh TLS configurations from the identity on the primary host
// and the fallbacks, dropping plaintext attempts. It replaces pc.Fallbacks
// instead of modifying it: pc may be a shallow copy (database/sql).
func (s *securer) apply(pc *pgconn.Config) error {
	var out []*pgconn.FallbackConfig
	seen := make(map[string]bool)
	for _, fb := range targets(pc) {
		key := net.JoinHostPort(fb.Host, strconv.Itoa(int(fb.Port)))
		if fb.TLSConfig == nil || seen[key] {
			continue
		}
		seen[key] = true
		tc, err := s.tlsConfig(fb.Host)
		if err != nil {
			return err
		}
		out = append(out, &pgconn.FallbackConfig{Host: fb.Host, Port: fb.Port, TLSConfig: tc})
	}
	if len(out) == 0 {
		return ErrPlaintext
	}
	pc.Host, pc.Port, pc.TLSConfig = out[0].Host, out[0].Port, out[0].TLSConfig
	pc.Fallbacks = out[1:]
	return nil
}

// tlsConfig returns the TLS configuration for connections to host.
func (s *securer) tlsConfig(host string) (*tls.Config, error) {
	base := s.id.ClientTLSConfig()
	if base == nil {
		return nil, errors.New("pgtls: the identity returned no TLS configuration")
	}
	if base.InsecureSkipVerify && base.VerifyConnection == nil && base.VerifyPeerCertificate == nil {
		return nil, fmt.Errorf("%w: InsecureSkipVerify without VerifyConnection", ErrNoServerVerification)
	}
	if !base.InsecureSkipVerify && base.RootCAs == nil {
		return nil, fmt.Errorf("%w: RootCAs is nil (the system roots)", ErrNoServerVerification)
	}
	if base.GetClientCertificate == nil && len(base.Certificates) == 0 {
		return nil, errors.New("pgtls: the identity's TLS configuration has no client certificate")
	}
	name := s.opts.serverName
	if name == "" {
		name = host
	}
	// ServerName goes on base before cloning: a verifier that reads the
	// configuration it returned (transport's does, since no SNI is sent for
	// an IP address) then checks this name too.
	base.ServerName = name
	c := base.Clone()
	c.MinVersion = max(c.MinVersion, tls.VersionTLS12)
	c.NextProtos = []string{alpn}
	// A resumed session presents no certificate: every connection does a
	// full handshake with the current one.
	c.ClientSessionCache = nil
	c.Certificates = nil
	get := base.GetClientCertificate
	c.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		cert, err := s.clientCertificate(get, cri)
		if err != nil {
			return nil, err
		}
		if rec, ok := cri.Context().Value(recorderKey{}).(*recorder); ok {
			rec.cert = cert
		}
		return cert, nil
	}
	verify := base.VerifyConnection
	direct := s.direct
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if verify != nil {
			if err := verify(cs); err != nil {
				return err
			}
		}
		// verify-full whatever the identity's configuration checks.
		if len(cs.PeerCertificates) == 0 {
			return errors.New("pgtls: server sent no certificate")
		}
		if err := cs.PeerCertificates[0].VerifyHostname(name); err != nil {
			return fmt.Errorf("pgtls: server certificate: %w", err)
		}
		// Direct TLS: a server that did not pick ALPN "postgresql" may be
		// another protocol's endpoint (cross-protocol attacks; libpq 17
		// checks this too).
		if direct && cs.NegotiatedProtocol != alpn {
			return fmt.Errorf("pgtls: direct TLS: server did not select ALPN %q", alpn)
		}
		return nil
	}
	return c, nil
}

// clientCertificate asks the identity for its current certificate: its
// GetClientCertificate if it has one, else the Certificates of a fresh
// ClientTLSConfig.
func (s *securer) clientCertificate(get func(*tls.CertificateRequestInfo) (*tls.Certificate, error), cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if get != nil {
		cert, err := get(cri)
		if err != nil {
			return nil, fmt.Errorf("pgtls: client certificate: %w", err)
		}
		if cert == nil || len(cert.Certificate) == 0 {
			return nil, errors.New("pgtls: the identity has no client certificate")
		}
		return cert, nil
	}
	cur := s.id.ClientTLSConfig()
	if cur == nil || len(cur.Certificates) == 0 {
		return nil, errors.New("pgtls: the identity has no client certificate")
	}
	for i := range cur.Certificates {
		if cri.SupportsCertificate(&cur.Certificates[i]) == nil {
			return &cur.Certificates[i], nil
		}
	}
	return &cur.Certificates[0], nil
}

type recorderKey struct{}

// recorder receives the certificate GetClientCertificate returned during
// one handshake.
type recorder struct{ cert *tls.Certificate }

// afterNetConnect refuses anything but TLS, runs the handshake under ctx
// (so ctx bounds it) and records the certificate presented.
func (s *securer) afterNetConnect(ctx context.Context, _ *pgconn.Config, conn net.Conn) (net.Conn, error) {
	// On error, return conn too: pgconn closes what it gets back.
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return conn, errors.New("pgtls: refusing a connection without TLS")
	}
	rec := new(recorder)
	if err := tc.HandshakeContext(context.WithValue(ctx, recorderKey{}, rec)); err != nil {
		return conn, fmt.Errorf("pgtls: TLS handshake: %w", err)
	}
	key := weak.Make(tc)
	s.presented.Store(key, s.connCert(rec.cert))
	runtime.AddCleanup(tc, func(k weak.Pointer[tls.Conn]) { s.presented.Delete(k) }, key)
	return conn, nil
}

// afterConnect moves the record of the certificate into the connection.
func (s *securer) afterConnect(_ context.Context, c *pgconn.PgConn) error {
	tc, ok := c.Conn().(*tls.Conn)
	if !ok {
		return errors.New("pgtls: refusing a connection without TLS")
	}
	if v, ok := s.presented.LoadAndDelete(weak.Make(tc)); ok {
		c.CustomData()[customDataKey] = v
	}
	return nil
}

// connCert describes cert (nil when the server asked for none: the
// identity's current expiry then bounds the connection).
func (s *securer) connCert(cert *tls.Certificate) *connCert {
	var leaf *x509.Certificate
	if cert != nil {
		leaf = cert.Leaf
		if leaf == nil && len(cert.Certificate) > 0 {
			leaf, _ = x509.ParseCertificate(cert.Certificate[0])
		}
	}
	if leaf == nil {
		na := s.id.NotAfter()
		return &connCert{retireAt: na.Add(-s.opts.margin)}
	}
	margin := min(s.opts.margin, leaf.NotAfter.Sub(leaf.NotBefore)/10)
	return &connCert{leaf: leaf, retireAt: leaf.NotAfter.Add(-margin)}
}

// retired reports whether c's certificate is within the expiry margin.
func (s *securer) retired(c *pgconn.PgConn) bool {
	info, ok := c.CustomData()[customDataKey].(*connCert)
	return ok && !s.opts.now().Before(info.retireAt)
}

// maxLifetime is the longest a new connection may live: the identity's
// remaining life less the expiry margin (at most a tenth of it).
func (s *securer) maxLifetime() (time.Duration, error) {
	na := s.id.NotAfter()
	remaining := na.Sub(s.opts.now())
	if remaining <= 0 {
		return 0, fmt.Errorf("%w (not after %s): renew it before connecting", ErrExpired, na.UTC().Format(time.RFC3339))
	}
	return remaining - min(s.opts.margin, remaining/10), nil
}
