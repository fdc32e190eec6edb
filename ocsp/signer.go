package ocsp

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
)

// IssueFunc issues a delegated OCSP responder certificate for pub. It
// should go through the CA (ca.CA.Issue with the "ocsp" profile), so that
// the certificate is recorded in certdb like any other:
//
//	issue := func(ctx context.Context, pub crypto.PublicKey) (*x509.Certificate, error) {
//		req := &issuance.Request{PublicKey: pub}
//		req.Subject.CommonName = "certctl OCSP responder"
//		iss, err := c.Issue(ctx, ca.Request{Profile: "ocsp", Request: req, Requester: "ocsp"})
//		if err != nil {
//			return nil, err
//		}
//		return iss.Certificate, nil
//	}
type IssueFunc func(ctx context.Context, pub crypto.PublicKey) (*x509.Certificate, error)

// SignerProvider hands out the delegated responder to sign with: one whose
// certificate is valid at least until validUntil (the NextUpdate of the
// responses about to be signed).
type SignerProvider interface {
	OCSPSigner(ctx context.Context, validUntil time.Time) (*issuance.OCSPSigner, error)
}

var _ SignerProvider = (*Signer)(nil)

// rotateRetry is how long Signer waits after a failed rotation before it
// tries again, as long as the current responder can still be used.
const rotateRetry = time.Minute

// Signer keeps a delegated OCSP responder certificate and key for one
// issuer and rotates them: a new key and certificate once two thirds of the
// certificate's life has passed, or earlier when it would expire before a
// response's NextUpdate. The key lives in memory; WithInitial and
// WithOnRotate let a caller persist it (the one-shot `certctl ocsp
// refresh`).
//
// A Signer is safe for concurrent use. Rotation happens lazily inside
// OCSPSigner, at most one at a time; callers meanwhile keep using the
// current responder while it is usable.
type Signer struct {
	issuer *x509.Certificate
	issue  IssueFunc
	cfg    signerConfig

	cur      atomic.Pointer[issuance.OCSPSigner]
	mu       sync.Mutex // serializes rotations; guards lastFail
	lastFail time.Time
}

type signerConfig struct {
	now      func() time.Time
	log      *slog.Logger
	keyType  keys.KeyType
	initCert *x509.Certificate
	initKey  crypto.Signer
	onRotate func(ctx context.Context, cert *x509.Certificate, key crypto.Signer) error
}

// SignerOption configures NewSigner.
type SignerOption func(*signerConfig)

// WithSignerClock sets the clock (default time.Now).
func WithSignerClock(now func() time.Time) SignerOption {
	return func(c *signerConfig) { c.now = now }
}

// WithSignerLogger sets the logger (default: discard).
func WithSignerLogger(l *slog.Logger) SignerOption { return func(c *signerConfig) { c.log = l } }

// WithKeyType sets the responder key type (default ECDSA P-256: small,
// fast responses). Ed25519 is refused: x/crypto/ocsp cannot verify it.
func WithKeyType(kt keys.KeyType) SignerOption { return func(c *signerConfig) { c.keyType = kt } }

// WithInitial starts from an existing responder certificate and key (for
// example loaded from the CA directory). It is used while it needs no
// rotation; one that is unusable (wrong issuer, expired) is replaced.
func WithInitial(cert *x509.Certificate, key crypto.Signer) SignerOption {
	return func(c *signerConfig) { c.initCert, c.initKey = cert, key }
}

// WithOnRotate calls fn with every newly issued responder certificate and
// key before they are used, so the caller can persist them. An error from
// fn is logged; the new responder is used anyway.
func WithOnRotate(fn func(ctx context.Context, cert *x509.Certificate, key crypto.Signer) error) SignerOption {
	return func(c *signerConfig) { c.onRotate = fn }
}

// NewSigner returns a Signer for responses about the certificates of
// issuer. It blocks until it has a usable responder: the initial one, or a
// newly issued one (through issue), so that a Signer it returns can sign.
func NewSigner(ctx context.Context, issuer *x509.Certificate, issue IssueFunc, opts ...SignerOption) (*Signer, error) {
	if issuer == nil || issue == nil {
		return nil, errors.New("ocsp: new signer: nil issuer or issue function")
	}
	cfg := signerConfig{now: time.Now, log: slog.New(slog.DiscardHandler), keyType: keys.ECDSAP256}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.keyType == keys.Ed25519 {
		return nil, errors.New("ocsp: new signer: Ed25519 responder keys are not supported (x/crypto/ocsp cannot verify them)")
	}
	s := &Signer{issuer: issuer, issue: issue, cfg: cfg}
	if cfg.initCert != nil && cfg.initKey != nil {
		is, err := issuance.NewOCSPSigner(issuer, cfg.initCert, cfg.initKey)
		switch {
		case err != nil:
			cfg.log.WarnContext(ctx, "initial OCSP responder unusable; issuing a new one", "err", err)
		case !s.needsRotation(is, cfg.now()):
			s.cur.Store(is)
			return s, nil
		default:
			s.cur.Store(is) // still usable while the rotation below fails
		}
	}
	if _, err := s.rotate(ctx); err != nil {
		if s.cur.Load() != nil && s.cfg.now().Before(s.cur.Load().Cert().NotAfter) {
			cfg.log.WarnContext(ctx, "OCSP responder rotation failed; using the current one", "err", err)
			return s, nil
		}
		return nil, err
	}
	return s, nil
}

// Current returns the responder in use. Never nil.
func (s *Signer) Current() *issuance.OCSPSigner { return s.cur.Load() }

// OCSPSigner returns a responder whose certificate is valid until at least
// validUntil, rotating first if two thirds of the current certificate's life
// has passed or it expires before validUntil. A failed rotation is logged
// and retried after a minute as long as the current responder can still
// cover validUntil; otherwise the error is returned.
func (s *Signer) OCSPSigner(ctx context.Context, validUntil time.Time) (*issuance.OCSPSigner, error) {
	cur := s.cur.Load()
	now := s.cfg.now()
	if !s.needsRotation(cur, now) && !cur.Cert().NotAfter.Before(validUntil) {
		return cur, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur = s.cur.Load() // another caller may have rotated meanwhile
	covers := !now.Before(cur.Cert().NotBefore) && !cur.Cert().NotAfter.Before(validUntil)
	if !s.needsRotation(cur, now) && covers {
		return cur, nil
	}
	if covers && !s.lastFail.IsZero() && now.Sub(s.lastFail) < rotateRetry {
		return cur, nil
	}
	next, err := s.rotateLocked(ctx)
	if err != nil {
		s.lastFail = now
		if covers {
			s.cfg.log.WarnContext(ctx, "OCSP responder rotation failed; using the current one", "err", err,
				"not_after", cur.Cert().NotAfter)
			return cur, nil
		}
		return nil, err
	}
	s.lastFail = time.Time{}
	return next, nil
}

// needsRotation: RFC 6960 §4.2.2.2.1 asks for short-lived responder
// certificates with id-pkix-ocsp-nocheck; renew at two thirds of the life,
// like every other certificate certctl keeps (STYLE.md §6).
func (s *Signer) needsRotation(is *issuance.OCSPSigner, now time.Time) bool {
	if is == nil {
		return true
	}
	c := is.Cert()
	renewAt := c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
	return !now.Before(renewAt)
}

func (s *Signer) rotate(ctx context.Context) (*issuance.OCSPSigner, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rotateLocked(ctx)
}

func (s *Signer) rotateLocked(ctx context.Context) (*issuance.OCSPSigner, error) {
	key, err := keys.Generate(s.cfg.keyType)
	if err != nil {
		return nil, fmt.Errorf("ocsp: rotate responder: generate %s key: %w", s.cfg.keyType, err)
	}
	cert, err := s.issue(ctx, key.Public())
	if err != nil {
		return nil, fmt.Errorf("ocsp: rotate responder: issue certificate: %w", err)
	}
	is, err := issuance.NewOCSPSigner(s.issuer, cert, key)
	if err != nil {
		return nil, fmt.Errorf("ocsp: rotate responder: %w", err)
	}
	if s.cfg.onRotate != nil {
		if err := s.cfg.onRotate(ctx, cert, key); err != nil {
			s.cfg.log.ErrorContext(ctx, "could not persist the new OCSP responder", "err", err)
		}
	}
	s.cur.Store(is)
	s.cfg.log.InfoContext(ctx, "new OCSP responder certificate", "serial", fmt.Sprintf("%x", cert.SerialNumber),
		"not_after", cert.NotAfter)
	return is, nil
}
