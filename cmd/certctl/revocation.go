package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"time"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/crl"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
	"github.com/certctl/certctl/ocsp"
)

// Files of the delegated OCSP responder in DIR. The responder key signs
// only OCSP responses; the CA rotates its certificate automatically.
const (
	ocspCertFile = "ocsp-responder.crt"
	ocspKeyFile  = "ocsp-responder.key"
)

// CRLConfig is the crl: section of certctl.yaml.
type CRLConfig struct {
	// Validity is nextUpdate - thisUpdate (default 24h).
	Validity issuance.Duration `yaml:"validity,omitempty"`
	// Period is the time between scheduled regenerations (default 1h).
	Period issuance.Duration `yaml:"period,omitempty"`
}

// revocationStore is what OCSP pre-signing and CRLs need from certdb.
type revocationStore interface {
	ocsp.PresignStore
	crl.Store
	crl.CRLGetter
	certdb.RevocationNotifier
	certdb.Locker
}

// revocation is the OCSP pre-signer and CRL builder of a loaded CA.
type revocation struct {
	store     revocationStore
	signer    *ocsp.Signer
	presigner *ocsp.Presigner
	builder   *crl.Builder
}

// newRevocation sets up OCSP signing (with the delegated responder kept in
// DIR and rotated by the CA) and CRL building for l.
func newRevocation(ctx context.Context, c *common, l *loadedCA, log *slog.Logger) (*revocation, error) {
	st, ok := l.store.(revocationStore)
	if !ok {
		return nil, errors.New("this certificate database cannot hold OCSP responses and CRLs")
	}
	issue := func(ctx context.Context, pub crypto.PublicKey) (*x509.Certificate, error) {
		req := &issuance.Request{PublicKey: pub}
		req.Subject.CommonName = l.cfg.CA.Name + " OCSP Responder"
		is, err := l.ca.Issue(ctx, ca.Request{Profile: "ocsp", Request: req, Requester: "certctl:ocsp"})
		if err != nil {
			return nil, err
		}
		return is.Certificate, nil
	}
	opts := []ocsp.SignerOption{ocsp.WithSignerLogger(log), ocsp.WithOnRotate(func(_ context.Context, cert *x509.Certificate, key crypto.Signer) error {
		return saveResponder(c, cert, key)
	})}
	if cert, key, err := loadResponder(c); err == nil {
		opts = append(opts, ocsp.WithInitial(cert, key))
	} else if !errors.Is(err, os.ErrNotExist) {
		log.Warn("OCSP responder in the CA directory is unusable; issuing a new one", "err", err)
	}
	signer, err := ocsp.NewSigner(ctx, l.inter, issue, opts...)
	if err != nil {
		return nil, fmt.Errorf("OCSP responder: %w", err)
	}
	presigner, err := ocsp.NewPresigner(l.inter, st, signer, l.cfg.OCSP, ocsp.WithPresignerLogger(log))
	if err != nil {
		return nil, fmt.Errorf("OCSP pre-signer: %w (check ocsp: in %s)", err, configFile)
	}
	var crlOpts []crl.Option
	crlOpts = append(crlOpts, crl.WithLogger(log))
	if v := time.Duration(l.cfg.CRL.Validity); v > 0 {
		crlOpts = append(crlOpts, crl.WithValidity(v))
	}
	builder, err := crl.NewBuilder(l.ca.Issuer(), st, crlOpts...)
	if err != nil {
		return nil, fmt.Errorf("CRL builder: %w (check crl: in %s)", err, configFile)
	}
	return &revocation{store: st, signer: signer, presigner: presigner, builder: builder}, nil
}

func loadResponder(c *common) (*x509.Certificate, crypto.Signer, error) {
	cert, err := readCert(c.path(ocspCertFile))
	if err != nil {
		if _, serr := os.Stat(c.path(ocspCertFile)); errors.Is(serr, os.ErrNotExist) {
			return nil, nil, os.ErrNotExist
		}
		return nil, nil, err
	}
	key, err := keys.LoadFile(c.path(ocspKeyFile))
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// saveResponder replaces the responder files atomically (key 0600).
func saveResponder(c *common, cert *x509.Certificate, key crypto.Signer) error {
	tmpKey := c.path(ocspKeyFile + ".new")
	os.Remove(tmpKey)
	if err := keys.WriteFile(tmpKey, key); err != nil {
		return err
	}
	tmpCert := c.path(ocspCertFile + ".new")
	if err := os.WriteFile(tmpCert, pemCert(cert.Raw), 0o644); err != nil {
		os.Remove(tmpKey)
		return fmt.Errorf("write OCSP responder certificate: %w", err)
	}
	if err := os.Rename(tmpKey, c.path(ocspKeyFile)); err != nil {
		return fmt.Errorf("install OCSP responder key: %w", err)
	}
	if err := os.Rename(tmpCert, c.path(ocspCertFile)); err != nil {
		return fmt.Errorf("install OCSP responder certificate: %w", err)
	}
	return nil
}

// presigningCA signs a certificate's OCSP response right after it is
// issued or revoked. A signing failure is logged, not returned: the
// certificate is already stored, and the pre-signer's next pass (or the
// revocation notification every responder receives) signs it.
type presigningCA struct {
	*ca.CA
	rev *revocation
	log *slog.Logger
}

func (a *presigningCA) Issue(ctx context.Context, req ca.Request) (*ca.Issued, error) {
	is, err := a.CA.Issue(ctx, req)
	if err != nil {
		return nil, err
	}
	a.signOne(ctx, is.Serial)
	return is, nil
}

func (a *presigningCA) Revoke(ctx context.Context, serial *big.Int, reason certdb.Reason) error {
	if err := a.CA.Revoke(ctx, serial, reason); err != nil {
		return err
	}
	a.signOne(ctx, serial)
	return nil
}

func (a *presigningCA) signOne(ctx context.Context, serial *big.Int) {
	if a.rev == nil {
		return
	}
	if err := a.rev.presigner.SignOne(ctx, serial); err != nil {
		a.log.WarnContext(ctx, "OCSP response not signed yet; the pre-signer will retry", "serial", certdb.SerialHex(serial), "err", err)
	}
}

// authority returns l's CA with OCSP pre-signing, for the CLI. If the
// revocation machinery cannot be set up, issuing still works: the warning
// says what is missing, and `certctl ocsp refresh` or serve catches up.
func (l *loadedCA) authority(ctx context.Context, c *common, e *env, log *slog.Logger) *presigningCA {
	rev, err := newRevocation(ctx, c, l, log)
	if err != nil {
		fmt.Fprintf(e.stderr, "certctl: warning: OCSP responses will not be signed now: %v\n", err)
		return &presigningCA{CA: l.ca, log: log}
	}
	return &presigningCA{CA: l.ca, rev: rev, log: log}
}
