package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/issuance"
)

// Token text: "certctl_" + 16 hex chars of public id + "_" + 43 base64url
// chars of secret (256 random bits). Only SHA-256(secret) is stored.
const (
	tokenPrefix    = "certctl_"
	tokenIDBytes   = 8
	tokenSecretLen = 32
)

// NewToken draws a fresh API token. text is what the holder presents; the
// record (without profiles, names and expiry, which the caller fills in)
// carries only the hash.
func NewToken() (text string, rec *certdb.Token) {
	id := make([]byte, tokenIDBytes)
	secret := make([]byte, tokenSecretLen)
	rand.Read(id) // crypto/rand.Read never fails (Go 1.24+)
	rand.Read(secret)
	idHex := hex.EncodeToString(id)
	secretText := base64.RawURLEncoding.EncodeToString(secret)
	h := sha256.Sum256([]byte(secretText))
	return tokenPrefix + idHex + "_" + secretText, &certdb.Token{ID: idHex, Hash: h[:]}
}

// ErrMalformedToken: the presented text is not a certctl token.
var ErrMalformedToken = errors.New("server: malformed API token")

// ParseToken splits token text into id and secret.
func ParseToken(text string) (id, secret string, err error) {
	rest, ok := strings.CutPrefix(text, tokenPrefix)
	if !ok {
		return "", "", ErrMalformedToken
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok || len(id) != 2*tokenIDBytes || len(secret) != base64.RawURLEncoding.EncodedLen(tokenSecretLen) {
		return "", "", ErrMalformedToken
	}
	if _, err := hex.DecodeString(id); err != nil {
		return "", "", ErrMalformedToken
	}
	if _, err := base64.RawURLEncoding.DecodeString(secret); err != nil {
		return "", "", ErrMalformedToken
	}
	return id, secret, nil
}

// principalKind says how a caller authenticated.
type principalKind int

const (
	kindToken principalKind = iota + 1
	kindAdminCert
	kindServiceCert
	kindHMAC // CFSSL authsign: verified by cfsslapi, scoped by its profile keys
)

// principal is an authenticated caller.
type principal struct {
	kind    principalKind
	actor   string // for audit and rate limits: "token:ID", "mtls:SERIAL"
	admin   bool
	token   *certdb.Token
	scope   *issuance.NameScope // token name scope
	cert    *x509.Certificate   // mTLS leaf
	certRec *certdb.Certificate // its certdb record
}

// authenticate identifies the caller: a bearer token, else a verified
// client certificate from this CA that certdb knows and that is not revoked.
func (s *Server) authenticate(r *http.Request) (*principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, text, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return nil, newError(http.StatusUnauthorized, CodeUnauthenticated, "Authorization header must be \"Bearer <token>\"")
		}
		return s.authenticateToken(r.Context(), strings.TrimSpace(text))
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		return s.authenticateCert(r.Context(), r.TLS.VerifiedChains[0][0])
	}
	return nil, newError(http.StatusUnauthorized, CodeUnauthenticated,
		"authentication required: send \"Authorization: Bearer <token>\" (create one with `certctl token create`) or a client certificate from this CA")
}

func (s *Server) authenticateToken(ctx context.Context, text string) (*principal, error) {
	bad := newError(http.StatusUnauthorized, CodeUnauthenticated, "invalid API token")
	id, secret, err := ParseToken(text)
	if err != nil {
		return nil, bad
	}
	t, err := s.store.GetToken(ctx, id)
	if errors.Is(err, certdb.ErrNotFound) {
		return nil, bad
	}
	if err != nil {
		return nil, fmt.Errorf("%w: look up token: %w", ca.ErrStore, err)
	}
	h := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(h[:], t.Hash) != 1 {
		return nil, bad
	}
	now := s.now()
	switch {
	case !t.RevokedAt.IsZero():
		return nil, newError(http.StatusUnauthorized, CodeUnauthenticated, "API token "+id+" was revoked")
	case !now.Before(t.ExpiresAt):
		return nil, newError(http.StatusUnauthorized, CodeUnauthenticated, "API token "+id+" expired at "+t.ExpiresAt.UTC().Format(time.RFC3339)+"; create a new one with `certctl token create`")
	case t.SingleUse && !t.UsedAt.IsZero():
		return nil, newError(http.StatusUnauthorized, CodeUnauthenticated, "single-use API token "+id+" was already used")
	}
	scope, err := issuance.NewNameScope(t.Names)
	if err != nil {
		return nil, fmt.Errorf("server: token %s has invalid name patterns: %w", id, err)
	}
	return &principal{kind: kindToken, actor: "token:" + id, admin: t.Admin, token: t, scope: scope}, nil
}

func (s *Server) authenticateCert(ctx context.Context, leaf *x509.Certificate) (*principal, error) {
	rec, err := s.store.GetCertificate(ctx, leaf.SerialNumber)
	if errors.Is(err, certdb.ErrNotFound) {
		return nil, newError(http.StatusUnauthorized, CodeUnauthenticated, "client certificate is not in this CA's database")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: look up client certificate: %w", ca.ErrStore, err)
	}
	if rec.Status != certdb.StatusValid {
		return nil, newError(http.StatusUnauthorized, CodeUnauthenticated, "client certificate "+certdb.SerialHex(leaf.SerialNumber)+" is "+rec.Status.String())
	}
	p := &principal{kind: kindServiceCert, actor: "mtls:" + certdb.SerialHex(leaf.SerialNumber), cert: leaf, certRec: rec}
	for _, san := range ca.SANs(leaf) {
		if slices.Contains(s.cfg.AdminIdentities, san) {
			p.kind, p.admin = kindAdminCert, true
			break
		}
	}
	return p, nil
}

// authorizeIssue checks that p may issue req under profile.
func (p *principal) authorizeIssue(profile string, req *issuance.Request) error {
	if p.admin {
		return nil
	}
	if p.kind != kindToken {
		return newError(http.StatusForbidden, CodeForbidden, "a service certificate may only renew itself (POST /v1/renew)")
	}
	if !slices.Contains(p.token.Profiles, profile) {
		return newError(http.StatusForbidden, CodeForbidden, fmt.Sprintf("token %s may not issue under profile %q (allowed: %s)", p.token.ID, profile, strings.Join(p.token.Profiles, ", ")))
	}
	if err := p.scope.Check(profile, req); err != nil {
		return &apiError{Status: http.StatusForbidden, Code: CodeForbidden, Message: fmt.Sprintf("token %s: %v", p.token.ID, err), cause: err}
	}
	return nil
}

func (p *principal) requireAdmin(what string) error {
	if p.admin {
		return nil
	}
	return newError(http.StatusForbidden, CodeForbidden, what+" needs an admin token or an admin client certificate")
}
