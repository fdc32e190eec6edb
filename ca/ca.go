// Package ca is the issuance workflow: profile lookup, serial, pre-issuance
// lint, recording the intent, signing and storing, in that order.
//
// The invariant it exists for: no certificate leaves this package unless its
// DER is already in certdb. The serial and intent (with the lint certificate)
// are recorded before the real signature; the DER is stored before Issue
// returns; if the store fails, the caller gets an error and no certificate.
// Under a profile with Certificate Transparency (see ct.go), the
// precertificate is recorded before any log sees it, and the SCTs are stored
// with the certificate.
//
// A CA is safe for concurrent use and never changes after New.
package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/ct"
	"github.com/certctl/certctl/issuance"
)

// Store is what the CA needs from certdb: record the intent, then the
// certificate. Declared here, where it is used (STYLE.md §2).
type Store interface {
	ReserveSerial(ctx context.Context, r *certdb.Reservation) error
	AddCertificate(ctx context.Context, c *certdb.Certificate) error
}

// Revoker is the optional store capability Revoke needs.
type Revoker interface {
	Revoke(ctx context.Context, serial *big.Int, reason certdb.Reason, at time.Time) error
}

// Sentinel errors.
var (
	// ErrUnknownProfile: the request names a profile the CA does not have.
	ErrUnknownProfile = errors.New("ca: unknown profile")
	// ErrStore: the certificate database failed; nothing was handed out.
	ErrStore = errors.New("ca: certificate database unavailable")
	// ErrNoRevoker: the store given to New cannot revoke.
	ErrNoRevoker = errors.New("ca: store does not support revocation")
	// ErrCT: Certificate Transparency failed under a profile whose policy
	// is to fail (the error also wraps the *ct.QuorumError).
	ErrCT = errors.New("ca: certificate transparency")
)

// storeWriteTimeout bounds the final write of a signed certificate. It runs
// detached from the caller's context: once a certificate is signed we want it
// recorded even if the caller went away.
const storeWriteTimeout = 30 * time.Second

// maxSerialAttempts: a duplicate of a 159-bit random serial means a broken
// random source rather than bad luck, so retry only a little.
const maxSerialAttempts = 3

type config struct {
	now  func() time.Time
	rand io.Reader
	log  *slog.Logger
	ctOp []ct.Option
}

// Option configures New.
type Option func(*config)

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithRand sets the randomness source for serials (default crypto/rand).
func WithRand(r io.Reader) Option { return func(c *config) { c.rand = r } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithCTOptions passes options to the CT submitters of profiles with a ct:
// section (e.g. ct.WithHTTPClient).
func WithCTOptions(opts ...ct.Option) Option {
	return func(c *config) { c.ctOp = append(c.ctOp, opts...) }
}

// CA issues certificates from one issuer under a set of profiles.
type CA struct {
	issuer   *issuance.Issuer
	chain    [][]byte // DER of the issuer and any intermediates above it, not the root
	profiles map[string]*issuance.Profile
	store    Store
	cfg      config
	ct       map[string]*ct.Submitter // profiles with Certificate Transparency (ct.go)
}

// New builds a CA. chain is the DER of certificates to append after each leaf
// (normally the issuer certificate itself). profiles maps names to profiles.
func New(issuer *issuance.Issuer, chain [][]byte, profiles map[string]*issuance.Profile, st Store, opts ...Option) (*CA, error) {
	if issuer == nil || st == nil {
		return nil, errors.New("ca: New needs an issuer and a store")
	}
	if len(profiles) == 0 {
		return nil, errors.New("ca: New needs at least one profile")
	}
	cfg := config{now: time.Now, rand: rand.Reader, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	ps := make(map[string]*issuance.Profile, len(profiles))
	for n, p := range profiles {
		if p == nil {
			return nil, fmt.Errorf("ca: profile %q is nil", n)
		}
		ps[n] = p
	}
	c := &CA{issuer: issuer, chain: slices.Clone(chain), profiles: ps, store: st, cfg: cfg}
	if err := c.setupCT(); err != nil {
		return nil, err
	}
	return c, nil
}

// Issuer returns the CA's issuer.
func (c *CA) Issuer() *issuance.Issuer { return c.issuer }

// Chain returns the DER certificates that follow a leaf in a chain.
func (c *CA) Chain() [][]byte { return slices.Clone(c.chain) }

// Profiles returns the sorted profile names.
func (c *CA) Profiles() []string {
	names := make([]string, 0, len(c.profiles))
	for n := range c.profiles {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Request asks for one certificate.
type Request struct {
	Profile   string
	Request   *issuance.Request
	Requester string // recorded in certdb and the audit log: who asked
	// Approve, if set, is called once the request has passed the
	// profile's policy and the lint, before anything is recorded or
	// signed; an error from it ends the issuance and is returned as is.
	// The API server consumes single-use tokens here, so that a request the
	// profile refuses does not use up the caller's token.
	Approve func(ctx context.Context) error
}

// Issued is a certificate that is already stored in certdb.
type Issued struct {
	Certificate *x509.Certificate
	DER         []byte
	Chain       [][]byte // leaf first, then the CA chain (no root)
	Serial      *big.Int
	Profile     string
	// SCTs are the SCTs embedded in the certificate (profiles with CT; nil
	// when issued without SCTs).
	SCTs []*certdb.SCT
}

// Issue runs the whole workflow. Errors: ErrUnknownProfile,
// *issuance.PolicyError, *issuance.LintError, ErrStore (wrapping the store's
// error), or a signing failure. On any error no certificate is returned.
func (c *CA) Issue(ctx context.Context, req Request) (*Issued, error) {
	// 1. Policy: which profile.
	p, ok := c.profiles[req.Profile]
	if !ok {
		return nil, fmt.Errorf("%w %q (available: %s)", ErrUnknownProfile, req.Profile, strings.Join(c.Profiles(), ", "))
	}
	if req.Request == nil {
		return nil, errors.New("ca: empty request")
	}
	now := c.cfg.now()
	var (
		tok     *issuance.Token
		lintDER []byte
		err     error
	)
	approved := req.Approve == nil
	for attempt := 1; ; attempt++ {
		// 2. Serial.
		serial, err := issuance.NewSerial(c.cfg.rand)
		if err != nil {
			return nil, fmt.Errorf("ca: draw serial: %w", err)
		}
		// 3. Policy check, build the TBS, lint a throwaway-signed copy.
		lintDER, tok, err = c.issuer.Prepare(p, req.Request, serial, now)
		if err != nil {
			return nil, err
		}
		if !approved {
			if err := req.Approve(ctx); err != nil {
				return nil, err
			}
			approved = true
		}
		// 4. Record the intent before the real signature.
		err = c.store.ReserveSerial(ctx, &certdb.Reservation{
			Serial:      serial,
			IssuerKeyID: c.issuer.KeyID(),
			Profile:     req.Profile,
			Requester:   req.Requester,
			Subject:     tok.Subject(),
			SANs:        tok.SANs(),
			NotBefore:   tok.NotBefore(),
			NotAfter:    tok.NotAfter(),
			Shard:       tok.Shard(),
			LintDER:     lintDER,
		})
		if err == nil {
			break
		}
		if errors.Is(err, certdb.ErrDuplicate) && attempt < maxSerialAttempts {
			c.cfg.log.WarnContext(ctx, "serial collision, drawing another", "serial", certdb.SerialHex(serial))
			continue
		}
		return nil, fmt.Errorf("%w: reserve serial %s: %w", ErrStore, certdb.SerialHex(serial), err)
	}
	serial := tok.Serial()
	// 5. Sign exactly the TBS that was linted. With CT (ct.go): sign and
	// record the precertificate, collect SCTs, sign the final certificate.
	var (
		der  []byte
		scts []*certdb.SCT
	)
	if tok.CT() {
		der, scts, err = c.issueCT(ctx, req, tok)
		if err != nil {
			return nil, err
		}
	} else {
		der, err = c.issuer.Issue(tok)
		if err != nil {
			return nil, fmt.Errorf("ca: sign serial %s: %w", certdb.SerialHex(serial), err)
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse issued certificate %s: %w", certdb.SerialHex(serial), err)
	}
	// 6. Store the DER before anyone sees it. Detached from the caller's
	// context so that a signed certificate is recorded even if the caller
	// went away; bounded so a hung database cannot hold us forever.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeWriteTimeout)
	defer cancel()
	rec := Record(cert, req.Profile, req.Requester)
	rec.Shard = tok.Shard() // the CRL shard its CDP names (issuance.ShardOf)
	if err := c.store.AddCertificate(wctx, rec); err != nil {
		c.cfg.log.ErrorContext(ctx, "signed certificate could not be stored; not handed out",
			"serial", certdb.SerialHex(serial), "profile", req.Profile, "err", err)
		return nil, fmt.Errorf("%w: store certificate %s: %w", ErrStore, certdb.SerialHex(serial), err)
	}
	if len(scts) > 0 {
		if err := c.store.(certdb.SCTStore).AddSCTs(wctx, scts); err != nil { // setupCT checked the store
			c.cfg.log.ErrorContext(ctx, "SCTs of a signed certificate could not be stored; not handed out",
				"serial", certdb.SerialHex(serial), "profile", req.Profile, "err", err)
			return nil, fmt.Errorf("%w: store SCTs of %s: %w", ErrStore, certdb.SerialHex(serial), err)
		}
	}
	if tok.CT() {
		c.submitFinal(ctx, req.Profile, serial, der)
	}
	c.cfg.log.InfoContext(ctx, "issued certificate",
		"serial", certdb.SerialHex(serial), "profile", req.Profile, "requester", req.Requester,
		"subject", rec.Subject, "sans", rec.SANs, "not_after", rec.NotAfter)
	chain := append([][]byte{der}, c.chain...)
	return &Issued{Certificate: cert, DER: der, Chain: chain, Serial: serial, Profile: req.Profile, SCTs: scts}, nil
}

// Revoke marks a certificate revoked now. The store must implement Revoker.
func (c *CA) Revoke(ctx context.Context, serial *big.Int, reason certdb.Reason) error {
	r, ok := c.store.(Revoker)
	if !ok {
		return ErrNoRevoker
	}
	if !reason.Valid() {
		return fmt.Errorf("ca: revoke %s: %w: reason %d", certdb.SerialHex(serial), certdb.ErrInvalid, int(reason))
	}
	if err := r.Revoke(ctx, serial, reason, c.cfg.now()); err != nil {
		return fmt.Errorf("ca: revoke %s: %w", certdb.SerialHex(serial), err)
	}
	c.cfg.log.InfoContext(ctx, "revoked certificate", "serial", certdb.SerialHex(serial), "reason", reason.String())
	return nil
}

// Record builds the certdb record for an issued certificate. Its Shard is 0;
// Issue sets it from the token (a root is in shard 0 of no CRL).
func Record(cert *x509.Certificate, profile, requester string) *certdb.Certificate {
	issuerKeyID := cert.AuthorityKeyId
	if len(issuerKeyID) == 0 && bytes.Equal(cert.RawIssuer, cert.RawSubject) {
		// Self-signed roots carry no AKI (RFC 5280 §4.2.1.1 allows it): the
		// issuer key is the certificate's own.
		issuerKeyID = cert.SubjectKeyId
	}
	return &certdb.Certificate{
		Serial:      new(big.Int).Set(cert.SerialNumber),
		IssuerKeyID: slices.Clone(issuerKeyID),
		Subject:     cert.Subject.String(),
		SANs:        SANs(cert),
		NotBefore:   cert.NotBefore.UTC(),
		NotAfter:    cert.NotAfter.UTC(),
		Status:      certdb.StatusValid,
		DER:         slices.Clone(cert.Raw),
		Profile:     profile,
		Requester:   requester,
	}
}

// SANs lists a certificate's subject alternative names in certdb's
// "type:value" form.
func SANs(cert *x509.Certificate) []string {
	var out []string
	for _, n := range cert.DNSNames {
		out = append(out, "dns:"+n)
	}
	for _, ip := range cert.IPAddresses {
		out = append(out, "ip:"+ip.String())
	}
	for _, u := range cert.URIs {
		out = append(out, "uri:"+u.String())
	}
	for _, e := range cert.EmailAddresses {
		out = append(out, "email:"+e)
	}
	return out
}

// CreateRoot self-signs a root CA certificate with signer and records it in
// st, reserving the serial first like any other issuance. The certificate is
// returned only once stored.
func CreateRoot(ctx context.Context, st Store, signer crypto.Signer, cfg issuance.RootConfig, requester string, now time.Time, rnd io.Reader) (*x509.Certificate, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	serial, err := issuance.NewSerial(rnd)
	if err != nil {
		return nil, fmt.Errorf("ca: draw root serial: %w", err)
	}
	der, err := issuance.SelfSignRoot(signer, cfg, serial, now)
	if err != nil {
		return nil, fmt.Errorf("ca: create root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse root: %w", err)
	}
	rec := Record(cert, RootProfile, requester)
	if err := st.ReserveSerial(ctx, &certdb.Reservation{
		Serial: serial, IssuerKeyID: rec.IssuerKeyID, Profile: RootProfile, Requester: requester,
		Subject: rec.Subject, NotBefore: rec.NotBefore, NotAfter: rec.NotAfter,
	}); err != nil {
		return nil, fmt.Errorf("%w: reserve root serial %s: %w", ErrStore, certdb.SerialHex(serial), err)
	}
	if err := st.AddCertificate(ctx, rec); err != nil {
		return nil, fmt.Errorf("%w: store root %s: %w", ErrStore, certdb.SerialHex(serial), err)
	}
	return cert, nil
}

// RootProfile is the profile name recorded for self-signed roots.
const RootProfile = "root"
