package server

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net/http"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/server/cfsslapi"
)

// cfsslBackend carries out CFSSL-compatible requests with the same
// authentication, authorization, audit and metrics as the native API.
// authsign callers are authenticated by cfsslapi's HMAC check (the handler
// only lets a key sign under the profiles it is configured for); every
// other issuing or revoking call must carry a bearer token or a client
// certificate, exactly as on /v1.
type cfsslBackend struct{ s *Server }

var _ cfsslapi.Backend = (*cfsslBackend)(nil)

// toCFSSL rewraps our errors into the sentinels cfsslapi maps to statuses.
func toCFSSL(err error) error {
	var ae *apiError
	if !errors.As(err, &ae) {
		return err
	}
	switch ae.Status {
	case http.StatusUnauthorized:
		return fmt.Errorf("%w: %s", cfsslapi.ErrUnauthenticated, ae.Message)
	case http.StatusForbidden:
		return fmt.Errorf("%w: %s", cfsslapi.ErrForbidden, ae.Message)
	case http.StatusNotFound:
		return fmt.Errorf("%w: %s", cfsslapi.ErrNotFound, ae.Message)
	case http.StatusTooManyRequests:
		return fmt.Errorf("%w: %s", cfsslapi.ErrRateLimited, ae.Message)
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return fmt.Errorf("%w: %s", cfsslapi.ErrBadRequest, ae.Message)
	}
	return err
}

// caller authenticates a plain (non-HMAC) CFSSL request.
func (b *cfsslBackend) caller(c cfsslapi.Caller) (*principal, error) {
	if c.HMACKey != "" {
		return &principal{kind: kindHMAC, actor: "hmac:" + c.HMACKey}, nil
	}
	p, err := b.s.authenticate(c.Request)
	if err != nil {
		return nil, toCFSSL(err)
	}
	setActor(c.Request, p.actor)
	if ok, _ := b.s.limit.allow(p.actor); !ok {
		return nil, fmt.Errorf("%w: rate limit exceeded for %s", cfsslapi.ErrRateLimited, p.actor)
	}
	return p, nil
}

func (b *cfsslBackend) Sign(ctx context.Context, c cfsslapi.Caller, r *cfsslapi.SignRequest) (*x509.Certificate, error) {
	p, err := b.caller(c)
	if err != nil {
		return nil, err
	}
	req, err := r.IssuanceRequest()
	if err != nil {
		return nil, err
	}
	if p.kind != kindHMAC {
		if err := p.authorizeIssue(r.Profile, req); err != nil {
			b.s.audit(ctx, p.actor, "issue", "", "denied", err.Error())
			return nil, toCFSSL(err)
		}
	}
	issued, err := b.s.issue(ctx, p, r.Profile, req)
	if err != nil {
		return nil, toCFSSL(err)
	}
	return issued.Certificate, nil
}

func (b *cfsslBackend) Info(ctx context.Context, c cfsslapi.Caller, profile string) (*cfsslapi.Info, error) {
	pc, ok := b.s.cfg.Profiles[profile]
	if !ok {
		return nil, fmt.Errorf("%w: unknown profile %q", cfsslapi.ErrNotFound, profile)
	}
	issuer, err := x509.ParseCertificate(b.s.cfg.Chain[0])
	if err != nil {
		return nil, fmt.Errorf("server: parse issuer: %w", err)
	}
	return &cfsslapi.Info{Issuer: issuer, Profile: pc}, nil
}

func (b *cfsslBackend) Revoke(ctx context.Context, c cfsslapi.Caller, r *cfsslapi.RevokeRequest) error {
	p, err := b.caller(c)
	if err != nil {
		return err
	}
	target := certdb.SerialHex(r.Serial)
	if err := p.requireAdmin("revocation"); err != nil {
		b.s.audit(ctx, p.actor, "revoke", target, "denied", "not an admin")
		return toCFSSL(err)
	}
	if len(r.AuthorityKeyID) > 0 {
		rec, err := b.s.store.GetCertificate(ctx, r.Serial)
		if err != nil {
			return err
		}
		if !bytes.Equal(rec.IssuerKeyID, r.AuthorityKeyID) {
			return fmt.Errorf("%w: no certificate %s from authority key %x", cfsslapi.ErrNotFound, target, r.AuthorityKeyID)
		}
	}
	if err := b.s.auth.Revoke(ctx, r.Serial, r.Reason); err != nil {
		b.s.metrics.revoked.WithLabelValues(classify(err).Code).Inc()
		b.s.audit(ctx, p.actor, "revoke", target, classify(err).Code, err.Error())
		return err
	}
	b.s.metrics.revoked.WithLabelValues("ok").Inc()
	b.s.audit(ctx, p.actor, "revoke", target, "ok", r.Reason.String())
	return nil
}

// CertInfo is public, as in CFSSL: certificates are public documents, and
// the caller must already know the exact serial.
func (b *cfsslBackend) CertInfo(ctx context.Context, c cfsslapi.Caller, serial *big.Int, aki []byte) (*x509.Certificate, error) {
	rec, err := b.s.store.GetCertificate(ctx, serial)
	if err != nil {
		return nil, err
	}
	if rec.DER == nil || (len(aki) > 0 && !bytes.Equal(rec.IssuerKeyID, aki)) {
		return nil, fmt.Errorf("%w: no certificate %s", cfsslapi.ErrNotFound, certdb.SerialHex(serial))
	}
	return x509.ParseCertificate(rec.DER)
}
