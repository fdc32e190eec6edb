package pkcs11

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	p11 "github.com/miekg/pkcs11"
)

// cryptoki is the part of *github.com/miekg/pkcs11.Ctx this package calls,
// and nothing more, so that unit tests can use a hand-written fake.
//
// Implementations must be safe for concurrent use as long as no session is
// used by two goroutines at once (miekg/pkcs11 initialises the library with
// CKF_OS_LOCKING_OK).
type cryptoki interface {
	Finalize() error
	Destroy()
	GetSlotList(tokenPresent bool) ([]uint, error)
	GetSlotInfo(slotID uint) (p11.SlotInfo, error)
	GetTokenInfo(slotID uint) (p11.TokenInfo, error)
	GetMechanismList(slotID uint) ([]*p11.Mechanism, error)
	OpenSession(slotID uint, flags uint) (p11.SessionHandle, error)
	CloseSession(sh p11.SessionHandle) error
	GetSessionInfo(sh p11.SessionHandle) (p11.SessionInfo, error)
	Login(sh p11.SessionHandle, userType uint, pin string) error
	FindObjectsInit(sh p11.SessionHandle, temp []*p11.Attribute) error
	FindObjects(sh p11.SessionHandle, max int) ([]p11.ObjectHandle, bool, error)
	FindObjectsFinal(sh p11.SessionHandle) error
	GetAttributeValue(sh p11.SessionHandle, o p11.ObjectHandle, a []*p11.Attribute) ([]*p11.Attribute, error)
	GenerateKeyPair(sh p11.SessionHandle, m []*p11.Mechanism, public, private []*p11.Attribute) (p11.ObjectHandle, p11.ObjectHandle, error)
	SignInit(sh p11.SessionHandle, m []*p11.Mechanism, o p11.ObjectHandle) error
	Sign(sh p11.SessionHandle, message []byte) ([]byte, error)
}

var _ cryptoki = (*p11.Ctx)(nil)

// PKCS#11 3.0 constants that github.com/miekg/pkcs11 v1.1.2 does not define.
const (
	ckkECEdwards            = 0x40   // CKK_EC_EDWARDS
	ckmECEdwardsKeyPairGen  = 0x1055 // CKM_EC_EDWARDS_KEY_PAIR_GEN
	ckmEdDSA                = 0x1057 // CKM_EDDSA
	defaultMaxSessions      = 4
	defaultWaitTimeout      = 30 * time.Second
	defaultCloseWaitTimeout = 10 * time.Second
)

// Option configures OpenModule, Open, Module.OpenSigner, GenerateKey and
// Module.Keys. Each says where it applies.
type Option func(*config)

type config struct {
	log         *slog.Logger
	pin         string
	maxSessions int
	wait        time.Duration
	expect      crypto.PublicKey
	modulePath  string
}

func newConfig(opts []Option) *config {
	c := &config{
		log:         slog.New(slog.DiscardHandler),
		maxSessions: defaultMaxSessions,
		wait:        defaultWaitTimeout,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// WithLogger sets the logger (default: discard). It logs session recovery at
// Warn and pool events at Debug, never the PIN.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.log = l
		}
	}
}

// WithPIN gives the user PIN to use when the URI carries neither pin-value
// nor pin-source (for example a PIN the caller read from its environment).
func WithPIN(pin string) Option { return func(c *config) { c.pin = pin } }

// WithMaxSessions caps the sessions a Signer opens, so the number of
// signatures in flight at once (default 4). Real HSMs limit sessions (a
// YubiHSM 2 has 16 for all its clients).
func WithMaxSessions(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxSessions = n
		}
	}
}

// WithWaitTimeout bounds how long Signer.Sign waits for a free session when
// all are busy (default 30s). SignContext is bounded by its context instead.
func WithWaitTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.wait = d
		}
	}
}

// WithPublicKey makes loading fail with ErrKeyMismatch unless the key on the
// token has this public key (pass the issuer certificate's PublicKey).
func WithPublicKey(pub crypto.PublicKey) Option { return func(c *config) { c.expect = pub } }

// WithModulePath names the PKCS#11 library for Open and GenerateKey when the
// URI has no module-path.
func WithModulePath(path string) Option { return func(c *config) { c.modulePath = path } }

// Module is a loaded and initialised PKCS#11 library. PKCS#11 allows one
// initialisation of a library per process: open each library once and share
// the Module between all the keys that live behind it.
//
// A Module is safe for concurrent use. Its owner calls Close, which also
// closes the Signers still open on it.
type Module struct {
	path string
	c    cryptoki
	log  *slog.Logger

	loginMu sync.Mutex // serialises C_Login so a wrong PIN is tried once, not once per goroutine

	mu      sync.Mutex
	closed  bool
	signers map[*Signer]struct{}
}

// OpenModule loads the PKCS#11 library at path and initialises it. Options:
// WithLogger.
func OpenModule(path string, opts ...Option) (*Module, error) {
	cfg := newConfig(opts)
	if path == "" {
		return nil, fmt.Errorf("%w: no module path: add module-path=/path/to/library.so to the URI", ErrModule)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v (is the PKCS#11 library installed? for SoftHSM2 it is /usr/lib/softhsm/libsofthsm2.so)", ErrModule, path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w %s: not a regular file", ErrModule, path)
	}
	c := p11.New(path)
	if c == nil {
		// miekg/pkcs11 gives no reason: dlopen or C_GetFunctionList failed.
		return nil, fmt.Errorf("%w %s: dlopen failed or it is not a PKCS#11 library (no C_GetFunctionList)", ErrModule, path)
	}
	if err := c.Initialize(); err != nil {
		c.Destroy()
		if code(err) == p11.CKR_CRYPTOKI_ALREADY_INITIALIZED {
			return nil, fmt.Errorf("%w %s: already initialised in this process: open it once and share the *pkcs11.Module", ErrModule, path)
		}
		return nil, fmt.Errorf("%w %s: C_Initialize: %s (0x%X)", ErrModule, path, ckrName(code(err)), code(err))
	}
	return newModule(path, c, cfg), nil
}

func newModule(path string, c cryptoki, cfg *config) *Module {
	return &Module{path: path, c: c, log: cfg.log, signers: map[*Signer]struct{}{}}
}

// Path returns the library path.
func (m *Module) Path() string { return m.path }

// Close closes every Signer still open on the module, then finalises and
// unloads the library. It is idempotent.
func (m *Module) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	signers := make([]*Signer, 0, len(m.signers))
	for s := range m.signers {
		signers = append(signers, s)
	}
	m.mu.Unlock()
	for _, s := range signers {
		s.close()
	}
	err := m.c.Finalize()
	m.c.Destroy()
	if err != nil {
		return fmt.Errorf("pkcs11: finalize %s: %w", m.path, err)
	}
	return nil
}

func (m *Module) register(s *Signer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.signers[s] = struct{}{}
	return nil
}

func (m *Module) unregister(s *Signer) {
	m.mu.Lock()
	delete(m.signers, s)
	m.mu.Unlock()
}

func (m *Module) checkOpen() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("%w: module %s", ErrClosed, m.path)
	}
	return nil
}

// token is a token found by findToken.
type token struct {
	slot  uint
	label string
	info  p11.TokenInfo
}

func (t token) loginRequired() bool { return t.info.Flags&p11.CKF_LOGIN_REQUIRED != 0 }

// findToken returns the one initialised token matching u's token attributes.
func (m *Module) findToken(u *URI) (token, error) {
	slots, err := m.c.GetSlotList(true)
	if err != nil {
		return token{}, newError("list slots", "", "", err)
	}
	var found []token
	var seen []string
	for _, slot := range slots {
		ti, err := m.c.GetTokenInfo(slot)
		if err != nil {
			continue // a token removed between the two calls
		}
		if ti.Flags&p11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		seen = append(seen, fmt.Sprintf("%q", ti.Label))
		if (u.Token != "" && ti.Label != u.Token) ||
			(u.Manufacturer != "" && ti.ManufacturerID != u.Manufacturer) ||
			(u.Serial != "" && ti.SerialNumber != u.Serial) ||
			(u.Model != "" && ti.Model != u.Model) ||
			(u.SlotID != nil && *u.SlotID != slot) {
			continue
		}
		found = append(found, token{slot: slot, label: ti.Label, info: ti})
	}
	want := tokenSelector(u)
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		have := "none"
		if len(seen) > 0 {
			have = strings.Join(seen, ", ")
		}
		return token{}, fmt.Errorf("%w: no initialised token matches %s in module %s (tokens present: %s): check token= in the URI, or run `certctl hsm list`", ErrTokenNotFound, want, m.path, have)
	default:
		return token{}, fmt.Errorf("%w token: %d tokens match %s: add token=, serial= or slot-id= to the URI", ErrAmbiguous, len(found), want)
	}
}

func tokenSelector(u *URI) string {
	var parts []string
	if u.Token != "" {
		parts = append(parts, fmt.Sprintf("token=%q", u.Token))
	}
	if u.Manufacturer != "" {
		parts = append(parts, fmt.Sprintf("manufacturer=%q", u.Manufacturer))
	}
	if u.Serial != "" {
		parts = append(parts, fmt.Sprintf("serial=%q", u.Serial))
	}
	if u.Model != "" {
		parts = append(parts, fmt.Sprintf("model=%q", u.Model))
	}
	if u.SlotID != nil {
		parts = append(parts, fmt.Sprintf("slot-id=%d", *u.SlotID))
	}
	if len(parts) == 0 {
		return "(any token)"
	}
	return strings.Join(parts, " ")
}

// login holds what a session needs to log in: the PIN stays here and in no
// error or log line.
type login struct {
	pin      string
	hasPIN   bool
	required bool
}

// openSession opens a session on t and makes sure the user is logged in
// (login state belongs to the application and token, not the session: after
// the first C_Login every new session is logged in, until the last session
// closes or the token resets).
func (m *Module) openSession(t token, rw bool, l login) (p11.SessionHandle, error) {
	flags := uint(p11.CKF_SERIAL_SESSION)
	if rw {
		flags |= p11.CKF_RW_SESSION
	}
	sh, err := m.c.OpenSession(t.slot, flags)
	if err != nil {
		return 0, newError("open session", t.label, "", err)
	}
	if !l.required {
		return sh, nil
	}
	if err := m.ensureLogin(sh, t, l); err != nil {
		m.c.CloseSession(sh)
		return 0, err
	}
	return sh, nil
}

func (m *Module) ensureLogin(sh p11.SessionHandle, t token, l login) error {
	loggedIn := func() (bool, error) {
		si, err := m.c.GetSessionInfo(sh)
		if err != nil {
			return false, newError("get session info", t.label, "", err)
		}
		return si.State == p11.CKS_RO_USER_FUNCTIONS || si.State == p11.CKS_RW_USER_FUNCTIONS, nil
	}
	if ok, err := loggedIn(); err != nil || ok {
		return err
	}
	if !l.hasPIN {
		return fmt.Errorf("%w for token %q: it requires a login: add pin-source=file:PATH to the URI or give the PIN another way", ErrNoPIN, t.label)
	}
	m.loginMu.Lock()
	defer m.loginMu.Unlock()
	if ok, err := loggedIn(); err != nil || ok { // another goroutine logged in meanwhile
		return err
	}
	if err := m.c.Login(sh, p11.CKU_USER, l.pin); err != nil && code(err) != p11.CKR_USER_ALREADY_LOGGED_IN {
		return newError("login", t.label, "", err)
	}
	m.log.Debug("pkcs11: logged in", "token", t.label)
	return nil
}

// findObjects returns up to max handles matching tmpl.
func (m *Module) findObjects(sh p11.SessionHandle, tmpl []*p11.Attribute, max int) ([]p11.ObjectHandle, error) {
	if err := m.c.FindObjectsInit(sh, tmpl); err != nil {
		return nil, err
	}
	var out []p11.ObjectHandle
	var err error
	for len(out) < max {
		var objs []p11.ObjectHandle
		objs, _, err = m.c.FindObjects(sh, min(max-len(out), 100))
		if err != nil || len(objs) == 0 {
			break
		}
		out = append(out, objs...)
	}
	if ferr := m.c.FindObjectsFinal(sh); err == nil {
		err = ferr
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// keySelector describes the object part of a URI for messages.
func keySelector(u *URI) string {
	var parts []string
	if u.Object != "" {
		parts = append(parts, fmt.Sprintf("%q", u.Object))
	}
	if len(u.ID) > 0 {
		parts = append(parts, fmt.Sprintf("id=%X", u.ID))
	}
	if len(parts) == 0 {
		return "(no object= or id=)"
	}
	return strings.Join(parts, " ")
}

// keyTemplate selects objects of class by u's object and id.
func keyTemplate(class uint, u *URI) []*p11.Attribute {
	t := []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, class)}
	if u.Object != "" {
		t = append(t, p11.NewAttribute(p11.CKA_LABEL, u.Object))
	}
	if len(u.ID) > 0 {
		t = append(t, p11.NewAttribute(p11.CKA_ID, u.ID))
	}
	return t
}

// foundKey is a private key located on a token with its public key.
type foundKey struct {
	priv  p11.ObjectHandle
	pub   crypto.PublicKey
	label string
	id    []byte
}

// findKey locates the one private key matching u on the session's token and
// reads its public key (from the public key object with the same CKA_ID,
// else the same label; RSA private keys carry their public part too).
func (m *Module) findKey(sh p11.SessionHandle, t token, u *URI) (*foundKey, error) {
	obj := keySelector(u)
	if u.Object == "" && len(u.ID) == 0 {
		return nil, fmt.Errorf("%w: URI %s names no key: add object=LABEL or id=%%XX", ErrURI, u)
	}
	if u.Type != "" && u.Type != "private" {
		return nil, fmt.Errorf("%w: type=%s: a signing key is type=private", ErrURI, u.Type)
	}
	privs, err := m.findObjects(sh, keyTemplate(p11.CKO_PRIVATE_KEY, u), 2)
	if err != nil {
		return nil, newError("find key", t.label, obj, err)
	}
	switch len(privs) {
	case 0:
		return nil, fmt.Errorf("%w: token %q has no private key %s: check object=/id= (run `certctl hsm list`)", ErrKeyNotFound, t.label, obj)
	case 1:
	default:
		return nil, fmt.Errorf("%w key: token %q has several private keys %s: add id= to the URI", ErrAmbiguous, t.label, obj)
	}
	attrs, err := m.c.GetAttributeValue(sh, privs[0], []*p11.Attribute{
		p11.NewAttribute(p11.CKA_KEY_TYPE, nil),
		p11.NewAttribute(p11.CKA_LABEL, nil),
		p11.NewAttribute(p11.CKA_ID, nil),
	})
	if err != nil {
		return nil, newError("read key attributes", t.label, obj, err)
	}
	kt, err := ulong(attrs[0].Value)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: token %q key %s: CKA_KEY_TYPE: %v", t.label, obj, err)
	}
	fk := &foundKey{priv: privs[0], label: string(attrs[1].Value), id: attrs[2].Value}

	// The public half: same CKA_ID is the PKCS#11 convention for a pair.
	pubTmpl := []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY)}
	switch {
	case len(fk.id) > 0:
		pubTmpl = append(pubTmpl, p11.NewAttribute(p11.CKA_ID, fk.id))
	case fk.label != "":
		pubTmpl = append(pubTmpl, p11.NewAttribute(p11.CKA_LABEL, fk.label))
	}
	pubs, err := m.findObjects(sh, pubTmpl, 2)
	if err != nil {
		return nil, newError("find public key", t.label, obj, err)
	}
	switch {
	case len(pubs) == 1:
		fk.pub, err = m.readPublic(sh, pubs[0], kt)
	case kt == p11.CKK_RSA:
		fk.pub, err = m.readPublic(sh, privs[0], kt) // CKA_MODULUS and CKA_PUBLIC_EXPONENT are public attributes of RSA private keys
	default:
		err = fmt.Errorf("%w: no unique public key object with the private key's id", ErrKeyNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("pkcs11: token %q key %s: public key: %w", t.label, obj, err)
	}
	if kt == ckkECEdwards {
		if err := m.requireMechanism(t, ckmEdDSA, "CKM_EDDSA (Ed25519 signatures)"); err != nil {
			return nil, err
		}
	}
	return fk, nil
}

func (m *Module) requireMechanism(t token, mech uint, name string) error {
	ms, err := m.c.GetMechanismList(t.slot)
	if err != nil {
		return newError("list mechanisms", t.label, "", err)
	}
	for _, mm := range ms {
		if mm.Mechanism == mech {
			return nil
		}
	}
	return fmt.Errorf("%w: token %q does not support %s", ErrUnsupported, t.label, name)
}

// Close-time helper: errors from C_CloseSession are uninteresting (the
// session may already be gone: that may be why we close it).
func (m *Module) closeSession(sh p11.SessionHandle) { _ = m.c.CloseSession(sh) }

// resolveLogin works out the PIN for t from u and cfg.
func resolveLogin(t token, u *URI, cfg *config) (login, error) {
	pin, ok, err := u.pin(cfg.pin)
	if err != nil {
		return login{}, err
	}
	return login{pin: pin, hasPIN: ok, required: t.loginRequired()}, nil
}

// ctxErr turns a done context into an error naming what was waited for.
func ctxErr(ctx context.Context, what string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pkcs11: %s: %w", what, err)
	}
	return nil
}

var errNotULong = errors.New("not a CK_ULONG")
