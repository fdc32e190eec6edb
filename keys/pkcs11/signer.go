package pkcs11

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"sync"
	"sync/atomic"
	"time"

	p11 "github.com/miekg/pkcs11"
)

// Signer is a crypto.Signer whose private key stays on a PKCS#11 token.
//
// It is safe for concurrent use: each signature takes a session of its own
// from a pool of at most WithMaxSessions sessions, waiting (bounded) when all
// are busy; no lock is held during a PKCS#11 call. If the token loses the
// session or the login (a token reset, another process calling
// C_CloseAllSessions), the signature is retried once on a new session after
// logging in again.
//
// Whoever opened the Signer calls Close. A Signer never changes after it is
// opened.
type Signer struct {
	m         *Module
	ownModule bool // Open made the module: Close closes it too
	uri       *URI // without pin-value
	tok       token
	login     login
	obj       string // key selector for messages
	pub       crypto.PublicKey
	wait      time.Duration
	log       *slog.Logger

	priv atomic.Uint64 // p11.ObjectHandle of the private key; re-found after a recovery
	pool *pool

	closeOnce sync.Once
}

var (
	_ crypto.Signer = (*Signer)(nil)
	_ io.Closer     = (*Signer)(nil)
)

// Open parses uri, loads its module (module-path, else WithModulePath),
// logs in and returns a Signer for the key. Close on the Signer also closes
// the module, so a process that needs two keys behind the same library must
// use OpenModule and Module.OpenSigner instead (PKCS#11 allows one
// initialisation per process). Options: all.
func Open(ctx context.Context, uri string, opts ...Option) (*Signer, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	cfg := newConfig(opts)
	path := u.ModulePath
	if path == "" {
		path = cfg.modulePath
	}
	m, err := OpenModule(path, opts...)
	if err != nil {
		return nil, err
	}
	s, err := m.OpenSigner(ctx, u, opts...)
	if err != nil {
		m.Close()
		return nil, err
	}
	s.ownModule = true
	return s, nil
}

// OpenSigner finds the token and the private key that u names, logs in (with
// the PIN from u's pin-value or pin-source, else WithPIN) and returns a
// Signer. With WithPublicKey, a key whose public half differs fails with an
// error wrapping ErrKeyMismatch. Options: WithPIN, WithMaxSessions,
// WithWaitTimeout, WithPublicKey, WithLogger.
func (m *Module) OpenSigner(ctx context.Context, u *URI, opts ...Option) (*Signer, error) {
	cfg := newConfig(opts)
	if err := m.checkOpen(); err != nil {
		return nil, err
	}
	if err := ctxErr(ctx, "open signer"); err != nil {
		return nil, err
	}
	t, err := m.findToken(u)
	if err != nil {
		return nil, err
	}
	l, err := resolveLogin(t, u, cfg)
	if err != nil {
		return nil, err
	}
	sh, err := m.openSession(t, false, l)
	if err != nil {
		return nil, err
	}
	fk, err := m.findKey(sh, t, u)
	if err != nil {
		m.closeSession(sh)
		if errors.Is(err, ErrKeyNotFound) && !l.hasPIN {
			return nil, fmt.Errorf("%w (no PIN was given: private keys are only visible after a login)", err)
		}
		return nil, err
	}
	obj := keySelector(u)
	if cfg.expect != nil {
		if eq, ok := fk.pub.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(cfg.expect) {
			m.closeSession(sh)
			return nil, fmt.Errorf("%w: token %q key %s (wrong key, or wrong certificate for it)", ErrKeyMismatch, t.label, obj)
		}
	}
	su := u.WithoutPIN()
	if su.Object == "" && fk.label != "" {
		su.Object = fk.label
	}
	if len(su.ID) == 0 && len(fk.id) > 0 {
		su.ID = bytes.Clone(fk.id)
	}
	s := &Signer{
		m: m, uri: su, tok: t, login: l, obj: obj, pub: fk.pub, wait: cfg.wait, log: cfg.log,
	}
	s.priv.Store(uint64(fk.priv))
	s.pool = newPool(cfg.maxSessions,
		func() (p11.SessionHandle, error) { return m.openSession(t, false, l) },
		m.closeSession)
	s.pool.add(sh) // keeps the login alive and saves the first signature an OpenSession
	if err := m.register(s); err != nil {
		s.pool.shutdown(context.Background())
		return nil, err
	}
	cfg.log.Debug("pkcs11: key opened", "token", t.label, "key", obj, "max_sessions", cfg.maxSessions)
	return s, nil
}

// Public returns the public key read from the token.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// URI returns the key's URI without the PIN, completed with the object label
// and id found on the token.
func (s *Signer) URI() *URI { return s.uri.clone() }

// String describes the key for logs (no PIN).
func (s *Signer) String() string { return "pkcs11 key " + s.uri.String() }

// Sign signs digest (for Ed25519: the message) with the key on the token,
// waiting at most WithWaitTimeout for a free session. See SignContext.
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.wait)
	defer cancel()
	return s.SignContext(ctx, digest, opts)
}

// SignContext is Sign with the wait for a free session bounded by ctx (the
// PKCS#11 call itself cannot be interrupted). It supports:
//
//   - ECDSA (P-256, P-384): CKM_ECDSA over the digest; the token's raw r||s is
//     returned as the ASN.1 DER signature crypto/x509 and crypto/tls expect.
//   - RSA PKCS#1 v1.5 (SHA-256/384/512): CKM_RSA_PKCS over DigestInfo||digest.
//   - RSA-PSS (opts is *rsa.PSSOptions): CKM_RSA_PKCS_PSS, MGF1 with the same
//     hash; PSSSaltLengthEqualsHash and PSSSaltLengthAuto use the hash length.
//   - Ed25519 (opts.HashFunc() == 0): CKM_EDDSA over the message (pure
//     Ed25519, no context), where the token supports it.
func (s *Signer) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	mech, input, err := s.mechanism(digest, opts)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: sign with token %q key %s: %w", s.tok.label, s.obj, err)
	}
	sig, err := s.signRaw(ctx, mech, input)
	if err != nil {
		return nil, err
	}
	if _, ok := s.pub.(*ecdsa.PublicKey); ok {
		der, err := ecdsaDER(sig)
		if err != nil {
			return nil, fmt.Errorf("pkcs11: sign with token %q key %s: %w", s.tok.label, s.obj, err)
		}
		return der, nil
	}
	return sig, nil
}

// signRaw runs C_SignInit + C_Sign on a pooled session, and once more on a
// fresh, logged-in session when the first try failed because the session or
// login was lost.
func (s *Signer) signRaw(ctx context.Context, mech *p11.Mechanism, input []byte) ([]byte, error) {
	mechs := []*p11.Mechanism{mech}
	for attempt := 0; ; attempt++ {
		l, err := s.pool.get(ctx)
		if err != nil {
			return nil, s.wrap("sign", err)
		}
		sig, err := s.signOnce(l.sh, mechs, input)
		if err == nil {
			s.pool.put(l, false)
			return sig, nil
		}
		// Any failure ends the signing operation (PKCS#11 §5.2) and may
		// leave the session in a state we cannot see: never reuse it.
		s.pool.put(l, true)
		if attempt > 0 || !recoverable(err) {
			return nil, newError("sign", s.tok.label, s.obj, err)
		}
		s.log.Warn("pkcs11: session or login lost; reopening and retrying once",
			"token", s.tok.label, "key", s.obj, "code", ckrName(code(err)))
		s.pool.drain()
		if rerr := s.refind(ctx); rerr != nil {
			return nil, fmt.Errorf("pkcs11: sign with token %q key %s: recovering from %s: %w", s.tok.label, s.obj, ckrName(code(err)), rerr)
		}
	}
}

func (s *Signer) signOnce(sh p11.SessionHandle, mechs []*p11.Mechanism, input []byte) ([]byte, error) {
	priv := p11.ObjectHandle(s.priv.Load())
	if err := s.m.c.SignInit(sh, mechs, priv); err != nil {
		return nil, err
	}
	return s.m.c.Sign(sh, input)
}

// refind looks the key up again on a fresh session (its handle may have died
// with the sessions) and checks it is still the same key.
func (s *Signer) refind(ctx context.Context) error {
	l, err := s.pool.get(ctx)
	if err != nil {
		return err
	}
	fk, err := s.m.findKey(l.sh, s.tok, s.uri)
	if err != nil {
		s.pool.put(l, true)
		return err
	}
	s.pool.put(l, false)
	if eq, ok := fk.pub.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(s.pub) {
		return fmt.Errorf("%w: the key on token %q changed", ErrKeyMismatch, s.tok.label)
	}
	s.priv.Store(uint64(fk.priv))
	return nil
}

func (s *Signer) wrap(op string, err error) error {
	var pe *Error
	if errors.As(err, &pe) {
		return err
	}
	return fmt.Errorf("pkcs11: %s with token %q key %s: %w", op, s.tok.label, s.obj, err)
}

// Close waits (up to 10s) for signatures in flight, closes the Signer's
// sessions and, if Open made the module, closes the module. Later calls to
// Sign fail with ErrClosed. Close is idempotent and always returns nil or
// the module's Finalize error.
func (s *Signer) Close() error {
	s.close()
	if s.ownModule {
		return s.m.Close()
	}
	return nil
}

func (s *Signer) close() {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), defaultCloseWaitTimeout)
		defer cancel()
		if !s.pool.shutdown(ctx) {
			s.log.Warn("pkcs11: closing while signatures are still in flight", "token", s.tok.label, "key", s.obj)
		}
		s.m.unregister(s)
	})
}

// DigestInfo prefixes (RFC 8017 §9.2, note 1): CKM_RSA_PKCS pads its input
// as given, so the DER DigestInfo must be prepended to the digest.
var digestInfoPrefix = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// PSS hash and MGF1 mechanisms (PKCS#11 2.40 §2.1.11).
var pssParams = map[crypto.Hash]struct{ hash, mgf uint }{
	crypto.SHA256: {p11.CKM_SHA256, p11.CKG_MGF1_SHA256},
	crypto.SHA384: {p11.CKM_SHA384, p11.CKG_MGF1_SHA384},
	crypto.SHA512: {p11.CKM_SHA512, p11.CKG_MGF1_SHA512},
}

// mechanism picks the PKCS#11 mechanism and its input for a signature.
func (s *Signer) mechanism(digest []byte, opts crypto.SignerOpts) (*p11.Mechanism, []byte, error) {
	if opts == nil {
		return nil, nil, errors.New("nil SignerOpts")
	}
	h := opts.HashFunc()
	switch s.pub.(type) {
	case *ecdsa.PublicKey:
		if h == 0 || !h.Available() || len(digest) != h.Size() {
			return nil, nil, fmt.Errorf("ECDSA needs a digest of a known hash (got %v, %d bytes)", h, len(digest))
		}
		return p11.NewMechanism(p11.CKM_ECDSA, nil), digest, nil
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			pp, ok := pssParams[h]
			if !ok || len(digest) != h.Size() {
				return nil, nil, fmt.Errorf("%w: RSA-PSS with hash %v (supported: SHA-256, SHA-384, SHA-512)", ErrUnsupported, h)
			}
			salt := pss.SaltLength
			switch {
			case salt == rsa.PSSSaltLengthEqualsHash || salt == rsa.PSSSaltLengthAuto:
				salt = h.Size()
			case salt < 0:
				return nil, nil, fmt.Errorf("%w: RSA-PSS salt length %d", ErrUnsupported, salt)
			}
			return p11.NewMechanism(p11.CKM_RSA_PKCS_PSS, p11.NewPSSParams(pp.hash, pp.mgf, uint(salt))), digest, nil
		}
		prefix, ok := digestInfoPrefix[h]
		if !ok || len(digest) != h.Size() {
			return nil, nil, fmt.Errorf("%w: RSA PKCS#1 v1.5 with hash %v (supported: SHA-256, SHA-384, SHA-512)", ErrUnsupported, h)
		}
		input := make([]byte, 0, len(prefix)+len(digest))
		return p11.NewMechanism(p11.CKM_RSA_PKCS, nil), append(append(input, prefix...), digest...), nil
	case ed25519.PublicKey:
		if h != 0 {
			return nil, nil, fmt.Errorf("%w: Ed25519ph (pre-hashed Ed25519)", ErrUnsupported)
		}
		if o, ok := opts.(*ed25519.Options); ok && o.Context != "" {
			return nil, nil, fmt.Errorf("%w: Ed25519ctx (Ed25519 with a context string)", ErrUnsupported)
		}
		return p11.NewMechanism(ckmEdDSA, nil), digest, nil
	}
	return nil, nil, fmt.Errorf("%w: public key type %T", ErrUnsupported, s.pub)
}

// ecdsaDER converts CKM_ECDSA's output, r||s with each half the size of the
// curve order (PKCS#11 2.40 §2.3.1), to the DER ECDSA-Sig-Value of RFC 5480
// §2.2.3.
func ecdsaDER(raw []byte) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 {
		return nil, fmt.Errorf("token returned a %d-byte ECDSA signature (want r||s)", len(raw))
	}
	half := len(raw) / 2
	return asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(raw[:half]),
		new(big.Int).SetBytes(raw[half:]),
	})
}
