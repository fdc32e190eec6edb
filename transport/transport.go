package transport

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certctl/certctl/keys"
	"github.com/certctl/certctl/keys/pkcs11"
)

// Errors returned (wrapped) by New and the renewal loop.
var (
	// ErrNoAuthorizer: New was called without WithAuthorizer. There is no
	// nil-means-allow; pass AuthorizeAnyTrusted() explicitly if any
	// certificate of the trust bundle may connect.
	ErrNoAuthorizer = errors.New("transport: an authorizer is required: pass WithAuthorizer(...) (AuthorizeAnyTrusted() accepts any certificate of the trust bundle)")
	// ErrNoToken: there is no usable certificate and no bootstrap token.
	ErrNoToken = errors.New("transport: no certificate yet and no bootstrap token: set token or token_file (create one with `certctl token create --single-use`)")
	// ErrEnrollTimeout: New did not obtain a certificate within the
	// identity's EnrollTimeout.
	ErrEnrollTimeout = errors.New("transport: no certificate before enroll_timeout")
	// ErrNotAuthorized is wrapped by the errors of the Authorize* helpers.
	ErrNotAuthorized = errors.New("transport: peer not authorized")
	// ErrNoServerName: a client handshake had no server name to verify the
	// server's certificate for (see ClientTLSConfig).
	ErrNoServerName = errors.New("transport: no server name to verify the server certificate for: set ServerName on the configuration from ClientTLSConfig before using or cloning it, or use Dial")
	// ErrClosed: the Transport was closed.
	ErrClosed = errors.New("transport: closed")
)

// Authorizer decides whether a verified peer may talk to us. peer is the
// peer's leaf certificate; verifiedChains are the chains (leaf first, root
// last) that verified it against the current trust bundle. It runs in
// tls.Config.VerifyConnection, on every handshake, resumed ones included,
// and must be safe for concurrent use.
type Authorizer func(peer *x509.Certificate, verifiedChains [][]*x509.Certificate) error

// RevocationChecker checks a verified peer chain for revocation. chain[0] is
// the leaf, chain[1] its issuer. It runs after the Authorizer on every
// handshake and must be safe for concurrent use (and cache its answers).
type RevocationChecker interface {
	Check(ctx context.Context, chain []*x509.Certificate) error
}

// ContextDialer dials the raw connection under TLS (a proxy dialer, say).
type ContextDialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Option configures New.
type Option func(*options)

type options struct {
	authz             Authorizer
	revocation        RevocationChecker
	revocationTimeout time.Duration
	dialer            ContextDialer
	onRotate          func(Snapshot)
	log               *slog.Logger
	reg               prometheus.Registerer
	now               func() time.Time
	bundleRefresh     time.Duration
	pkcs11            []pkcs11.Option
	noHostname        bool
}

// WithAuthorizer sets who may connect (servers) or be connected to
// (clients). Required: New fails with ErrNoAuthorizer without it.
func WithAuthorizer(a Authorizer) Option { return func(o *options) { o.authz = a } }

// WithRevocationChecker checks every peer chain for revocation, after the
// Authorizer. Checks get a context with a 10-second timeout.
func WithRevocationChecker(c RevocationChecker) Option {
	return func(o *options) { o.revocation = c }
}

// WithDialer sets how raw connections are dialed, by Dial, HTTPClient and
// the CA client (default: a net.Dialer).
func WithDialer(d ContextDialer) Option { return func(o *options) { o.dialer = d } }

// WithOnRotate calls f after each new certificate (the first included) and
// after each change of the trust bundle. f runs on the renewal goroutine (on
// New's for the first certificate): it should return quickly and must not
// call Close or Renew (they wait for it).
func WithOnRotate(f func(Snapshot)) Option { return func(o *options) { o.onRotate = f } }

// WithLogger sets the logger (default: discard). Keys and tokens are never logged.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithRegisterer registers the Transport's metrics (default: not
// registered). They carry the constant labels identity (the first name)
// and profile; Close unregisters them.
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.reg = r } }

// WithoutHostnameCheck turns off the client-side check that the server's
// certificate names the host dialed (Dial, ClientTLSConfig, HTTPClient), for
// workloads identified by the Authorizer alone, such as SPIFFE IDs without
// DNS names. The Authorizer must then pin the peer's identity: with
// AuthorizeAnyTrusted any workload of the CA could pose as any server.
func WithoutHostnameCheck() Option { return func(o *options) { o.noHostname = true } }

// WithClock sets the clock used for certificate validity, verification and
// renewal decisions (default time.Now). Waits still use real timers.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithBundleRefresh sets how often the trust bundle is fetched from the CA
// (default: a quarter of the certificate lifetime, at most one hour). The
// bundle is also fetched before each renewal and, at most once per
// RetryMin, when a peer's chain ends at an unknown root.
func WithBundleRefresh(d time.Duration) Option { return func(o *options) { o.bundleRefresh = d } }

// WithPKCS11Options passes options (PIN, module path, logger) to
// pkcs11.Open for a pkcs11: Key.
func WithPKCS11Options(opts ...pkcs11.Option) Option {
	return func(o *options) { o.pkcs11 = append(o.pkcs11, opts...) }
}

// Snapshot is the identity at one moment. It is shared: do not modify it.
type Snapshot struct {
	Certificate *tls.Certificate    // leaf and intermediates, with the private key
	Leaf        *x509.Certificate   // == Certificate.Leaf
	Chain       []*x509.Certificate // leaf first, then intermediates (no root)
	Roots       []*x509.Certificate // the current trust bundle
}

// State is the renewal state of a Transport.
type State int

// States.
const (
	StateValid    State = iota + 1 // holding a valid certificate, renewal not failing
	StateRenewing                  // renewal due and failing: retrying with the current certificate
	StateExpired                   // the certificate expired without renewal
	StateClosed                    // Close was called
)

var stateNames = map[State]string{StateValid: "valid", StateRenewing: "renewing", StateExpired: "expired", StateClosed: "closed"}

func (s State) String() string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Status reports the renewal state for health checks and status pages.
type Status struct {
	State       State
	Serial      string // hex serial of the current certificate
	NotAfter    time.Time
	LastError   error     // the last renewal failure; nil after a success
	LastRenewal time.Time // when the current certificate was obtained (zero if loaded from CertFile)
	NextRenewal time.Time // when renewal is (next) attempted
}

// certState is the current certificate; never modified once stored.
type certState struct {
	cert    *tls.Certificate
	leaf    *x509.Certificate
	chain   []*x509.Certificate
	renewAt time.Time
}

// bundle is the current trust bundle; never modified once stored.
type bundle struct {
	roots []*x509.Certificate
	pool  *x509.CertPool
}

func newBundle(roots []*x509.Certificate) *bundle {
	p := x509.NewCertPool()
	for _, r := range roots {
		p.AddCert(r)
	}
	return &bundle{roots: roots, pool: p}
}

// Transport is a renewing mTLS identity. Handshakes read the current
// certificate and trust bundle without locks; a background goroutine renews
// the certificate and refreshes the bundle until Close. All methods are safe
// for concurrent use. The caller of New calls Close.
type Transport struct {
	id      Identity
	o       options
	log     *slog.Logger
	now     func() time.Time
	keyType keys.KeyType
	key     crypto.Signer // file or HSM key; nil: a fresh in-memory key per certificate
	closer  io.Closer     // the HSM signer
	ca      *caClient
	m       *metrics

	cur   atomic.Pointer[certState]
	roots atomic.Pointer[bundle]

	serverCfg, clientCfg *tls.Config // never modified after New

	obtainMu sync.Mutex // one enrollment/renewal at a time
	mu       sync.Mutex // guards status
	status   Status

	kick      chan struct{} // cap 1: a peer chain ended at an unknown root
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// New loads or enrolls the identity and returns once it holds a valid
// certificate, or fails after id.EnrollTimeout (ErrEnrollTimeout), on a
// refusal by the CA (*APIError: a bad or used token, a policy violation),
// or when ctx is done. ctx bounds only New: the background renewal runs
// until Close.
func New(ctx context.Context, id Identity, opts ...Option) (*Transport, error) {
	o := options{log: slog.New(slog.DiscardHandler), now: time.Now, revocationTimeout: 10 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if o.authz == nil {
		return nil, ErrNoAuthorizer
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.now == nil {
		o.now = time.Now
	}
	if err := id.check(); err != nil {
		return nil, err
	}
	id = id.withDefaults()
	kt, _ := keys.ParseKeyType(id.KeyType) // checked above
	rootsPEM, err := os.ReadFile(id.CARoots)
	if err != nil {
		return nil, fmt.Errorf("transport: ca_roots: %w", err)
	}
	roots, err := parseCertsPEM(rootsPEM)
	if err != nil || len(roots) == 0 {
		return nil, fmt.Errorf("%w: ca_roots: %s holds no PEM certificate (%v)", ErrInvalidIdentity, id.CARoots, err)
	}
	t := &Transport{
		id: id, o: o, log: o.log.With("identity", id.Names[0]), now: o.now, keyType: kt,
		kick: make(chan struct{}, 1), done: make(chan struct{}),
	}
	t.roots.Store(newBundle(roots))
	t.serverCfg, t.clientCfg = t.buildConfigs()
	t.ca = newCAClient(id.CAURL, t, t.dialRaw)

	t.m, err = newMetrics(o.reg, id)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			t.m.unregister()
			t.ca.close()
			if t.closer != nil {
				t.closer.Close()
			}
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, id.EnrollTimeout)
	defer cancel()
	if err := t.loadKey(ctx); err != nil {
		return nil, err
	}
	if err := t.bootstrap(ctx); err != nil {
		return nil, err
	}
	ok = true
	loopCtx, loopCancel := context.WithCancel(context.WithoutCancel(ctx))
	t.cancel = loopCancel
	go t.run(loopCtx)
	return t, nil
}

// loadKey opens a file or HSM key; memory keys are drawn per certificate.
func (t *Transport) loadKey(ctx context.Context) error {
	switch {
	case t.id.memoryKey():
		return nil
	case t.id.pkcs11Key():
		s, err := pkcs11.Open(ctx, t.id.Key, append([]pkcs11.Option{pkcs11.WithLogger(t.log)}, t.o.pkcs11...)...)
		if err != nil {
			return fmt.Errorf("transport: key: %w", err)
		}
		t.key, t.closer = s, s
		return nil
	}
	k, err := keys.LoadFile(t.id.Key)
	if errors.Is(err, fs.ErrNotExist) {
		if k, err = keys.Generate(t.keyType); err != nil {
			return fmt.Errorf("transport: key: %w", err)
		}
		if err := keys.WriteFile(t.id.Key, k); err != nil {
			return fmt.Errorf("transport: key: %w", err)
		}
		t.log.Info("private key created", "path", t.id.Key, "key_type", t.keyType.String())
	} else if err != nil {
		return fmt.Errorf("transport: key: %w", err)
	}
	if fi, err := os.Stat(t.id.Key); err == nil && !keys.IsPrivate(fi.Mode()) {
		t.log.Warn("private key file is readable by other users: run chmod 600", "path", t.id.Key, "mode", fi.Mode().Perm().String())
	}
	t.key = k
	return nil
}

// bootstrap installs the first certificate: a still-valid one from CertFile
// (persistent keys only), else one enrolled with the bootstrap token,
// retrying temporary failures until ctx is done.
func (t *Transport) bootstrap(ctx context.Context) error {
	if t.key != nil && t.id.CertFile != "" {
		chain, err := t.loadCertFile()
		if err != nil {
			t.log.Warn("not reusing the certificate file", "path", t.id.CertFile, "err", err)
		} else if chain != nil {
			t.install(chain, t.key, false)
			t.log.Info("reusing certificate from file", "path", t.id.CertFile, "serial", serialHex(chain[0]), "not_after", chain[0].NotAfter)
			return nil
		}
	}
	token := t.id.Token
	if t.id.TokenFile != "" {
		b, err := os.ReadFile(t.id.TokenFile)
		if err != nil {
			return fmt.Errorf("transport: token_file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return ErrNoToken
	}
	backoff := t.id.RetryMin
	var last error
	for {
		// Best effort: the pinned roots may be older than the CA's bundle.
		if err := t.refreshBundle(ctx); err != nil {
			t.log.Debug("trust bundle fetch failed before enrollment", "err", err)
		}
		err := t.obtain(ctx, token)
		if err == nil {
			return nil
		}
		if permanent(err) {
			return fmt.Errorf("transport: enrollment refused (a single-use token works once; create a new one with `certctl token create --single-use`): %w", err)
		}
		if ctx.Err() == nil || last == nil {
			last = err
		}
		t.log.Warn("enrollment failed; retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%w (%s): last error: %v", ErrEnrollTimeout, t.id.EnrollTimeout, last)
			}
			return fmt.Errorf("transport: enrollment: %w (last error: %v)", ctx.Err(), last)
		case <-time.After(jittered(backoff)):
		}
		backoff = min(2*backoff, t.id.RetryMax)
	}
}

// obtain gets a certificate: enrollment with token, or renewal over mTLS
// when token is "". It installs the certificate only once it verifies
// against the trust bundle and matches the key.
func (t *Transport) obtain(ctx context.Context, token string) error {
	t.obtainMu.Lock()
	defer t.obtainMu.Unlock()
	key := t.key
	if key == nil {
		var err error
		if key, err = keys.Generate(t.keyType); err != nil {
			return fmt.Errorf("transport: %w", err)
		}
	}
	csr, err := t.csr(key)
	if err != nil {
		return err
	}
	var chain []*x509.Certificate
	if token != "" {
		chain, err = t.ca.enroll(ctx, token, issueRequest{CSR: csr, Profile: t.id.Profile, Names: t.id.Names})
	} else {
		chain, err = t.ca.renew(ctx, csr)
	}
	if err != nil {
		return err
	}
	if err := t.checkChain(chain, key); err != nil {
		// A new issuing root (rollover): fetch the bundle and check again.
		var ua x509.UnknownAuthorityError
		if !errors.As(err, &ua) || t.refreshBundle(ctx) != nil {
			return err
		}
		if err := t.checkChain(chain, key); err != nil {
			return err
		}
	}
	t.install(chain, key, true)
	return nil
}

// checkChain checks an issued or loaded chain: our key, currently valid,
// chains to the bundle.
func (t *Transport) checkChain(chain []*x509.Certificate, key crypto.Signer) error {
	leaf := chain[0]
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return errors.New("transport: the certificate's public key is not our key")
	}
	if _, err := t.verifyChain(chain, x509.ExtKeyUsageAny, ""); err != nil {
		return fmt.Errorf("transport: issued certificate: %w", err)
	}
	return nil
}

func (t *Transport) csr(key crypto.Signer) (string, error) {
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: t.id.CommonName}}
	for _, n := range t.id.Names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if strings.Contains(n, "://") {
			if u, err := url.Parse(n); err == nil {
				tmpl.URIs = append(tmpl.URIs, u)
			}
		} else if strings.Contains(n, "@") {
			tmpl.EmailAddresses = append(tmpl.EmailAddresses, n)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return "", fmt.Errorf("transport: create CSR: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

// install makes chain the current certificate.
func (t *Transport) install(chain []*x509.Certificate, key crypto.Signer, fresh bool) {
	leaf := chain[0]
	ders := make([][]byte, len(chain))
	for i, c := range chain {
		ders[i] = c.Raw
	}
	cs := &certState{
		cert:    &tls.Certificate{Certificate: ders, PrivateKey: key, Leaf: leaf},
		leaf:    leaf,
		chain:   chain,
		renewAt: t.renewTime(leaf),
	}
	t.cur.Store(cs)
	now := t.now()
	t.mu.Lock()
	t.status.State, t.status.Serial, t.status.NotAfter, t.status.LastError, t.status.NextRenewal =
		StateValid, serialHex(leaf), leaf.NotAfter, nil, cs.renewAt
	if fresh {
		t.status.LastRenewal = now
	}
	t.mu.Unlock()
	t.m.setState(StateValid)
	t.m.expiry.Set(float64(leaf.NotAfter.Unix()))
	if fresh {
		t.m.renewals.WithLabelValues("ok").Inc()
		t.log.Info("certificate obtained", "serial", serialHex(leaf), "not_before", leaf.NotBefore, "not_after", leaf.NotAfter,
			"issuer", leaf.Issuer.String(), "renew_at", cs.renewAt)
		if t.id.CertFile != "" {
			if err := writeCertFile(t.id.CertFile, chain); err != nil {
				t.log.Error("writing the certificate file failed", "path", t.id.CertFile, "err", err)
			}
		}
	}
	t.rotated()
}

// renewTime is NotBefore + RenewAt of the lifetime + random jitter, and
// never later than halfway through what remains after the renewal point.
func (t *Transport) renewTime(leaf *x509.Certificate) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	base := leaf.NotBefore.Add(time.Duration(float64(life) * t.id.RenewAt))
	j := t.id.Jitter
	if j == 0 {
		j = min(life/10, time.Hour)
	}
	j = min(j, leaf.NotAfter.Sub(base)/2)
	if j > 0 {
		base = base.Add(time.Duration(mrand.Int64N(int64(j))))
	}
	return base
}

func (t *Transport) rotated() {
	if t.o.onRotate != nil && t.cur.Load() != nil {
		t.o.onRotate(t.Current())
	}
}

// refreshBundle fetches the CA's roots and installs them if they changed.
func (t *Transport) refreshBundle(ctx context.Context) error {
	roots, err := t.ca.bundle(ctx)
	if err != nil {
		t.m.bundle.WithLabelValues("error").Inc()
		return err
	}
	t.m.bundle.WithLabelValues("ok").Inc()
	old := t.roots.Load()
	if slices.EqualFunc(old.roots, roots, func(a, b *x509.Certificate) bool { return a.Equal(b) }) {
		return nil
	}
	t.roots.Store(newBundle(roots))
	subjects := make([]string, len(roots))
	for i, r := range roots {
		subjects[i] = r.Subject.String()
	}
	t.log.Info("trust bundle updated", "roots", subjects)
	t.rotated()
	return nil
}

// requestRefresh asks the loop for a bundle refresh; it never blocks.
func (t *Transport) requestRefresh() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// run renews the certificate and refreshes the bundle until ctx is done.
func (t *Transport) run(ctx context.Context) {
	defer close(t.done)
	backoff := t.id.RetryMin
	var retryAt time.Time // non-zero while renewal is failing
	nextBundle := t.now().Add(t.bundleInterval())
	var lastKick time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		cs := t.cur.Load()
		due := cs.renewAt
		if !retryAt.IsZero() {
			due = retryAt
		}
		wake := earliest(due, nextBundle)
		if exp := cs.leaf.NotAfter.Add(time.Second); t.now().Before(exp) {
			wake = earliest(wake, exp) // to report expiry on time
		}
		timer.Reset(max(wake.Sub(t.now()), 0))
		select {
		case <-ctx.Done():
			return
		case <-t.kick:
			if t.now().Sub(lastKick) < t.id.RetryMin {
				continue
			}
			lastKick = t.now()
			if err := t.refreshBundle(ctx); err != nil && ctx.Err() == nil {
				t.log.Warn("trust bundle refresh failed", "err", err)
			}
			continue
		case <-timer.C:
		}
		now := t.now()
		if c := t.cur.Load(); c != cs {
			// Renewed meanwhile (Renew): schedule from the new certificate.
			cs, due, backoff, retryAt = c, c.renewAt, t.id.RetryMin, time.Time{}
		}
		if !now.Before(nextBundle) {
			if err := t.refreshBundle(ctx); err != nil && ctx.Err() == nil {
				t.log.Warn("trust bundle refresh failed", "err", err)
			}
			nextBundle = now.Add(t.bundleInterval())
		}
		if now.Before(due) {
			if !now.Before(cs.leaf.NotAfter) {
				t.setExpired()
			}
			continue
		}
		// Renewal: fetch the bundle first, so a new root is known before
		// the new certificate is checked against it.
		if err := t.refreshBundle(ctx); err != nil && ctx.Err() == nil {
			t.log.Warn("trust bundle refresh failed", "err", err)
		}
		err := t.obtain(ctx, "")
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff, retryAt = t.id.RetryMin, time.Time{}
			nextBundle = t.now().Add(t.bundleInterval())
			continue
		}
		wait := min(backoff, t.id.RetryMax)
		if remaining := cs.leaf.NotAfter.Sub(t.now()); remaining > 0 {
			wait = min(wait, max(remaining/10, t.id.RetryMin)) // several tries before expiry
		}
		wait = jittered(wait)
		backoff = min(2*backoff, t.id.RetryMax)
		retryAt = t.now().Add(wait)
		t.renewFailed(cs, err, retryAt)
	}
}

// Renew obtains a new certificate now, over mutual TLS with the current
// one, whatever the schedule (after a suspected key compromise, say). It
// blocks until done or ctx ends; on failure the current certificate stays.
// Background renewal then continues from the new certificate.
func (t *Transport) Renew(ctx context.Context) error {
	t.mu.Lock()
	closed := t.status.State == StateClosed
	t.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if err := t.obtain(ctx, ""); err != nil {
		t.m.renewals.WithLabelValues("error").Inc()
		return err
	}
	return nil
}

func (t *Transport) bundleInterval() time.Duration {
	if t.o.bundleRefresh > 0 {
		return t.o.bundleRefresh
	}
	cs := t.cur.Load()
	return max(min(cs.leaf.NotAfter.Sub(cs.leaf.NotBefore)/4, time.Hour), time.Second)
}

func (t *Transport) renewFailed(cs *certState, err error, retryAt time.Time) {
	t.m.renewals.WithLabelValues("error").Inc()
	state := StateRenewing
	if !t.now().Before(cs.leaf.NotAfter) {
		state = StateExpired
	}
	t.mu.Lock()
	if t.status.State != StateClosed {
		t.status.State, t.status.LastError, t.status.NextRenewal = state, err, retryAt
	}
	t.mu.Unlock()
	t.m.setState(state)
	if state == StateExpired {
		t.log.Error("certificate expired and renewal keeps failing: peers will refuse it; re-enroll with a new bootstrap token if the CA does not come back",
			"serial", serialHex(cs.leaf), "not_after", cs.leaf.NotAfter, "err", err, "retry_at", retryAt)
		return
	}
	t.log.Warn("certificate renewal failed; still serving the current certificate", "serial", serialHex(cs.leaf),
		"not_after", cs.leaf.NotAfter, "remaining", cs.leaf.NotAfter.Sub(t.now()).Round(time.Second), "retry_at", retryAt, "err", err)
}

func (t *Transport) setExpired() {
	t.mu.Lock()
	changed := t.status.State == StateValid || t.status.State == StateRenewing
	if changed {
		t.status.State = StateExpired
	}
	t.mu.Unlock()
	if changed {
		t.m.setState(StateExpired)
	}
}

// Current returns the current certificate and trust bundle.
func (t *Transport) Current() Snapshot {
	cs := t.cur.Load()
	return Snapshot{Certificate: cs.cert, Leaf: cs.leaf, Chain: cs.chain, Roots: t.roots.Load().roots}
}

// NotAfter returns when the current certificate expires.
func (t *Transport) NotAfter() time.Time { return t.cur.Load().leaf.NotAfter }

// Status returns the renewal state.
func (t *Transport) Status() Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status
}

// Close stops renewal, waits for it, and releases the key (an HSM session)
// and metrics. Existing connections are not closed; new handshakes with an
// HSM key fail after Close. Close is idempotent.
func (t *Transport) Close() error {
	var err error
	t.closeOnce.Do(func() {
		t.cancel()
		<-t.done
		t.ca.close()
		t.m.unregister()
		t.mu.Lock()
		t.status.State = StateClosed
		t.mu.Unlock()
		if t.closer != nil {
			err = t.closer.Close()
		}
	})
	return err
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func serialHex(c *x509.Certificate) string { return hex.EncodeToString(c.SerialNumber.Bytes()) }

// jittered returns d minus up to 20%, so that retries spread out.
func jittered(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d - time.Duration(mrand.Int64N(int64(d)/5+1))
}

// loadCertFile returns the chain from CertFile if it is for our key, valid
// now and trusted; nil, nil if there is no file.
func (t *Transport) loadCertFile() ([]*x509.Certificate, error) {
	data, err := os.ReadFile(t.id.CertFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	chain, err := parseCertsPEM(data)
	if err != nil {
		return nil, err
	}
	if len(chain) == 0 {
		return nil, errors.New("no certificate in file")
	}
	if err := t.checkChain(chain, t.key); err != nil {
		return nil, err
	}
	return chain, nil
}

// writeCertFile replaces path atomically with the PEM chain (mode 0644: a
// certificate is public).
func writeCertFile(path string, chain []*x509.Certificate) error {
	var b bytes.Buffer
	for _, c := range chain {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b.Bytes()); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
