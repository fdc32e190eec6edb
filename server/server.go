// Package server is certctl's HTTP API: it authenticates callers, decodes
// requests, authorizes them, calls the CA and maps errors to status codes.
//
// Handler serves the HTTPS API (native /v1 endpoints, /metrics, /healthz,
// /readyz, and the CFSSL-compatible endpoints when configured);
// PublicHandler serves what relying parties fetch over plain HTTP (CA
// certificates, and the OCSP and CRL handlers when configured).
//
// A Server is safe for concurrent use and never changes after New. Several
// processes may serve one PostgreSQL database: nothing here assumes it is
// the only one (rate limits are per process).
package server

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/server/cfsslapi"
)

// Authority is what the server needs from the CA.
type Authority interface {
	Issue(ctx context.Context, req ca.Request) (*ca.Issued, error)
	Revoke(ctx context.Context, serial *big.Int, reason certdb.Reason) error
}

// Store is what the server needs from certdb.
type Store interface {
	GetCertificate(ctx context.Context, serial *big.Int) (*certdb.Certificate, error)
	ListCertificates(ctx context.Context, q certdb.Query) ([]*certdb.Certificate, error)
	GetToken(ctx context.Context, id string) (*certdb.Token, error)
	UseToken(ctx context.Context, id string, at time.Time) error
	AppendAudit(ctx context.Context, e *certdb.AuditEvent) error
	Ping(ctx context.Context) error
}

// Config configures New. Do not modify after New.
type Config struct {
	// Chain is the DER of the issuing CA certificates (intermediate first);
	// Roots the trusted roots. Both are published by GET /v1/ca.
	Chain [][]byte
	Roots []*x509.Certificate
	// URLs are the AIA/CDP URLs the CA writes into certificates.
	URLs issuance.IssuerConfig
	// AdminIdentities are client-certificate SANs ("uri:spiffe://…",
	// "dns:admin.internal", "email:…") whose holders may call everything.
	AdminIdentities []string
	// MaxBodyBytes limits request bodies (default 64 KiB).
	MaxBodyBytes int64
	// RatePerSecond and RateBurst limit each caller (token or client
	// certificate). Zero rate disables limiting.
	RatePerSecond float64
	RateBurst     int
	// CFSSL, when set, serves the CFSSL-compatible API at /api/v1/cfssl/
	// with these options (auth keys for authsign, default profile).
	CFSSL *cfsslapi.Options
	// Profiles are the signing profiles' configurations, for CFSSL's info.
	Profiles map[string]issuance.ProfileConfig
	// OCSP and CRL, when set, are mounted on the public handler at /ocsp/
	// and /crl/.
	OCSP, CRL http.Handler
	Logger    *slog.Logger
	Registry  *prometheus.Registry // default: a new registry
	Now       func() time.Time
}

// Server is the API server.
type Server struct {
	auth    Authority
	store   Store
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	limit   *limiter
	metrics *metrics
	reg     *prometheus.Registry
	cfssl   http.Handler
	// tokenUses: token ID -> time.Time of the last used_at write.
	tokenUses sync.Map
}

// New builds a Server.
func New(auth Authority, st Store, cfg Config) (*Server, error) {
	if auth == nil || st == nil {
		return nil, errors.New("server: New needs an authority and a store")
	}
	if len(cfg.Chain) == 0 || len(cfg.Roots) == 0 {
		return nil, errors.New("server: New needs the CA chain and roots")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.RateBurst <= 0 {
		cfg.RateBurst = max(1, int(cfg.RatePerSecond*2))
	}
	s := &Server{auth: auth, store: st, cfg: cfg, log: cfg.Logger, now: cfg.Now, reg: cfg.Registry}
	s.limit = newLimiter(cfg.RatePerSecond, cfg.RateBurst, cfg.Now)
	s.metrics = newMetrics(cfg.Registry, st)
	if cfg.CFSSL != nil {
		opts := *cfg.CFSSL
		if opts.Logger == nil {
			opts.Logger = cfg.Logger
		}
		h, err := cfsslapi.NewHandler(&cfsslBackend{s}, opts)
		if err != nil {
			return nil, fmt.Errorf("server: CFSSL API: %w", err)
		}
		s.cfssl = h
	}
	return s, nil
}

// Handler returns the HTTPS API handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.route(mux, "POST /v1/certificates", s.handleIssue)
	s.route(mux, "GET /v1/certificates", s.handleList)
	s.route(mux, "GET /v1/certificates/{serial}", s.handleGet)
	s.route(mux, "POST /v1/certificates/{serial}/revoke", s.handleRevoke)
	s.route(mux, "POST /v1/renew", s.handleRenew)
	s.route(mux, "GET /v1/ca", s.handleCA)
	s.route(mux, "GET /healthz", func(w http.ResponseWriter, r *http.Request) error {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return nil
	})
	s.route(mux, "GET /readyz", s.handleReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	if s.cfssl != nil {
		mux.Handle("/api/v1/cfssl/", s.cfssl)
	}
	s.route(mux, "/", func(w http.ResponseWriter, r *http.Request) error {
		return newError(http.StatusNotFound, CodeNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return s.accessLog(mux)
}

// PublicHandler returns the plain-HTTP handler for relying parties: the CA
// certificates (DER, as AIA caIssuers wants), and OCSP and CRL when set.
func (s *Server) PublicHandler() http.Handler {
	mux := http.NewServeMux()
	issuer := s.cfg.Chain[0]
	root := s.cfg.Roots[0].Raw
	mux.HandleFunc("GET /ca.crt", derHandler(issuer))
	mux.HandleFunc("GET /root.crt", derHandler(root))
	if s.cfg.OCSP != nil {
		mux.Handle("/ocsp/", s.cfg.OCSP)
		mux.Handle("/ocsp", s.cfg.OCSP)
	}
	if s.cfg.CRL != nil {
		mux.Handle("/crl/", s.cfg.CRL)
		mux.Handle("/crl", s.cfg.CRL)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	return s.accessLog(mux)
}

func derHandler(der []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/pkix-cert")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Write(der)
	}
}

// route registers h with metrics and JSON error handling.
func (s *Server) route(mux *http.ServeMux, pattern string, h func(http.ResponseWriter, *http.Request) error) {
	name := pattern
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		if err := h(rw, r); err != nil {
			s.writeError(rw, r, err)
		}
		s.metrics.requests.WithLabelValues(name, strconv.Itoa(rw.status)).Inc()
		s.metrics.reqTime.WithLabelValues(name).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

type actorKey struct{}

// accessLog logs every request as one structured line.
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		actor := new(string)
		next.ServeHTTP(rw, r.WithContext(context.WithValue(r.Context(), actorKey{}, actor)))
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "http request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", rw.status),
			slog.Duration("duration", time.Since(start)), slog.String("remote", r.RemoteAddr), slog.String("actor", *actor))
	})
}

// setActor records the authenticated caller for the access log.
func setActor(r *http.Request, actor string) {
	if p, ok := r.Context().Value(actorKey{}).(*string); ok {
		*p = actor
	}
}

// authn authenticates and rate-limits the caller.
func (s *Server) authn(w http.ResponseWriter, r *http.Request) (*principal, error) {
	p, err := s.authenticate(r)
	if err != nil {
		return nil, err
	}
	setActor(r, p.actor)
	if ok, wait := s.limit.allow(p.actor); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		return nil, newError(http.StatusTooManyRequests, CodeRateLimited, "rate limit exceeded for "+p.actor+"; retry after "+wait.Round(time.Millisecond).String())
	}
	return p, nil
}

// decode reads a JSON body strictly, within the size limit.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return newError(http.StatusUnsupportedMediaType, CodeBadRequest, "Content-Type must be application/json")
	}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return newError(http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("request body larger than %d bytes", s.cfg.MaxBodyBytes))
		}
		if errors.Is(err, io.EOF) {
			return newError(http.StatusBadRequest, CodeBadRequest, "empty request body: send a JSON object")
		}
		return newError(http.StatusBadRequest, CodeBadRequest, "invalid JSON: "+err.Error())
	}
	if dec.More() {
		return newError(http.StatusBadRequest, CodeBadRequest, "invalid JSON: trailing data after the object")
	}
	return nil
}

// IssueRequest is the body of POST /v1/certificates.
type IssueRequest struct {
	CSR     string   `json:"csr"`
	Profile string   `json:"profile"`
	Names   []string `json:"names,omitempty"`
}

// CertificateResponse is returned by issuance and renewal.
type CertificateResponse struct {
	Serial         string    `json:"serial"`
	Profile        string    `json:"profile"`
	NotBefore      time.Time `json:"not_before"`
	NotAfter       time.Time `json:"not_after"`
	CertificatePEM string    `json:"certificate_pem"`
	ChainPEM       string    `json:"chain_pem"`
}

func (s *Server) handleIssue(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authn(w, r)
	if err != nil {
		return err
	}
	var in IssueRequest
	if err := s.decode(w, r, &in); err != nil {
		return err
	}
	if in.CSR == "" {
		return newError(http.StatusBadRequest, CodeBadRequest, `"csr" is required: a PEM certificate signing request`)
	}
	if in.Profile == "" {
		return newError(http.StatusBadRequest, CodeBadRequest, `"profile" is required`)
	}
	csr, err := issuance.ParseCSR([]byte(in.CSR))
	if err != nil {
		return err
	}
	req := issuance.RequestFromCSR(csr)
	if in.Names != nil {
		// Explicit names replace the CSR's, as cfssl's "hosts" do.
		req.DNSNames, req.IPAddresses, req.URIs, req.EmailAddresses = nil, nil, nil, nil
		if err := req.AddNames(in.Names...); err != nil {
			return err
		}
	}
	if err := p.authorizeIssue(in.Profile, req); err != nil {
		s.audit(r.Context(), p.actor, "issue", "", "denied", err.Error())
		return err
	}
	issued, err := s.issue(r.Context(), p, in.Profile, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, certResponse(issued))
	return nil
}

// useToken records a token's use. A single-use token is consumed after the
// request passed the profile's policy and lint (a refused request leaves it
// usable) and before signing, so that two concurrent requests (in any
// process) cannot both use it; that consumption is audited. A multi-use token's last-use time is
// written at most once per tokenUseInterval: every use is already in the
// audit trail (the issuance event's actor is the token), and a write per
// request would serialise all of a token's requests on one row.
func (s *Server) useToken(ctx context.Context, p *principal, profile string) error {
	if p.token == nil {
		return nil
	}
	now := s.now()
	if !p.token.SingleUse {
		if last, ok := s.tokenUses.Load(p.token.ID); ok && now.Sub(last.(time.Time)) < tokenUseInterval {
			return nil
		}
		s.tokenUses.Store(p.token.ID, now)
	}
	if err := s.store.UseToken(ctx, p.token.ID, now); err != nil {
		if errors.Is(err, certdb.ErrTokenUsed) || errors.Is(err, certdb.ErrTokenRevoked) {
			return newError(http.StatusUnauthorized, CodeUnauthenticated, "API token "+p.token.ID+" is no longer usable: "+err.Error())
		}
		return fmt.Errorf("%w: use token: %w", ca.ErrStore, err)
	}
	if p.token.SingleUse {
		s.audit(ctx, p.actor, "token.use", p.token.ID, "ok", "single-use token consumed for "+profile)
	}
	return nil
}

// tokenUseInterval bounds how often a multi-use token's last use is written.
const tokenUseInterval = time.Minute

// issue runs the CA with metrics and audit. The caller's token is used
// (a single-use one consumed) once the request has passed the profile's policy
// and lint, through ca.Request.Approve.
func (s *Server) issue(ctx context.Context, p *principal, profile string, req *issuance.Request) (*ca.Issued, error) {
	start := time.Now()
	issued, err := s.auth.Issue(ctx, ca.Request{Profile: profile, Request: req, Requester: p.actor,
		Approve: func(ctx context.Context) error { return s.useToken(ctx, p, profile) }})
	outcome := "ok"
	if err != nil {
		outcome = classify(err).Code
	}
	s.metrics.issued.WithLabelValues(profile, outcome).Inc()
	s.metrics.latency.WithLabelValues(profile, outcome).Observe(time.Since(start).Seconds())
	if err != nil {
		s.audit(ctx, p.actor, "issue", "", outcome, profile+": "+err.Error())
		return nil, err
	}
	s.audit(ctx, p.actor, "issue", certdb.SerialHex(issued.Serial), "ok", profile+" "+strings.Join(ca.SANs(issued.Certificate), ","))
	return issued, nil
}

func certResponse(is *ca.Issued) CertificateResponse {
	var chain strings.Builder
	for _, d := range is.Chain {
		chain.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d}))
	}
	return CertificateResponse{
		Serial:         certdb.SerialHex(is.Serial),
		Profile:        is.Profile,
		NotBefore:      is.Certificate.NotBefore.UTC(),
		NotAfter:       is.Certificate.NotAfter.UTC(),
		CertificatePEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.DER})),
		ChainPEM:       chain.String(),
	}
}

// audit appends to the audit trail. A failure is logged: the certificate
// record itself already names its requester.
func (s *Server) audit(ctx context.Context, actor, action, target, outcome, detail string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if len(detail) > 1024 {
		detail = detail[:1024]
	}
	e := &certdb.AuditEvent{Time: s.now(), Actor: actor, Action: action, Target: target, Outcome: outcome, Detail: detail}
	if err := s.store.AppendAudit(ctx, e); err != nil {
		s.log.ErrorContext(ctx, "audit append failed", "actor", actor, "action", action, "target", target, "outcome", outcome, "err", err)
		return
	}
	s.log.InfoContext(ctx, "audit", "actor", actor, "action", action, "target", target, "outcome", outcome, "detail", detail)
}

// RenewRequest is the body of POST /v1/renew.
type RenewRequest struct {
	CSR string `json:"csr"`
}

// handleRenew re-issues the caller's own certificate (same names, same
// profile) for the key in the CSR. The caller authenticates with its
// current certificate over mTLS; it must be in certdb and not revoked.
func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authn(w, r)
	if err != nil {
		return err
	}
	if p.cert == nil {
		return newError(http.StatusUnauthorized, CodeUnauthenticated, "renewal is authenticated by the current client certificate over mutual TLS, not by a token")
	}
	var in RenewRequest
	if err := s.decode(w, r, &in); err != nil {
		return err
	}
	csr, err := issuance.ParseCSR([]byte(in.CSR))
	if err != nil {
		return err
	}
	old, err := x509.ParseCertificate(p.certRec.DER)
	if err != nil {
		return fmt.Errorf("server: parse stored certificate %s: %w", certdb.SerialHex(p.cert.SerialNumber), err)
	}
	req := &issuance.Request{
		PublicKey:      csr.PublicKey,
		Subject:        old.Subject,
		DNSNames:       old.DNSNames,
		IPAddresses:    old.IPAddresses,
		URIs:           old.URIs,
		EmailAddresses: old.EmailAddresses,
	}
	issued, err := s.issue(r.Context(), p, p.certRec.Profile, req)
	if err != nil {
		return err
	}
	s.audit(r.Context(), p.actor, "renew", certdb.SerialHex(issued.Serial), "ok", "renewed "+certdb.SerialHex(p.cert.SerialNumber))
	writeJSON(w, http.StatusCreated, certResponse(issued))
	return nil
}

// CertificateJSON is a certificate record in API responses.
type CertificateJSON struct {
	Serial         string     `json:"serial"`
	Status         string     `json:"status"`
	Profile        string     `json:"profile"`
	Subject        string     `json:"subject"`
	SANs           []string   `json:"sans"`
	IssuerKeyID    string     `json:"issuer_key_id"`
	NotBefore      time.Time  `json:"not_before"`
	NotAfter       time.Time  `json:"not_after"`
	RevokedAt      *time.Time `json:"revoked_at,omitempty"`
	Reason         string     `json:"revocation_reason,omitempty"`
	Requester      string     `json:"requester"`
	CreatedAt      time.Time  `json:"created_at"`
	CertificatePEM string     `json:"certificate_pem,omitempty"`
}

func recordJSON(r *certdb.Certificate, now time.Time) CertificateJSON {
	j := CertificateJSON{
		Serial: certdb.SerialHex(r.Serial), Status: r.State(now), Profile: r.Profile, Subject: r.Subject,
		SANs: r.SANs, IssuerKeyID: fmt.Sprintf("%x", r.IssuerKeyID), NotBefore: r.NotBefore.UTC(), NotAfter: r.NotAfter.UTC(),
		Requester: r.Requester, CreatedAt: r.CreatedAt.UTC(),
	}
	if j.SANs == nil {
		j.SANs = []string{}
	}
	if r.Status == certdb.StatusRevoked {
		t := r.RevokedAt.UTC()
		j.RevokedAt, j.Reason = &t, r.Reason.String()
	}
	if r.DER != nil {
		j.CertificatePEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.DER}))
	}
	return j
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.authn(w, r); err != nil {
		return err
	}
	serial, err := certdb.ParseSerial(r.PathValue("serial"))
	if err != nil {
		return err
	}
	rec, err := s.store.GetCertificate(r.Context(), serial)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, recordJSON(rec, s.now()))
	return nil
}

// ListResponse is one page of GET /v1/certificates.
type ListResponse struct {
	Certificates []CertificateJSON `json:"certificates"`
	NextCursor   string            `json:"next_cursor,omitempty"`
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authn(w, r)
	if err != nil {
		return err
	}
	if err := p.requireAdmin("listing certificates"); err != nil {
		return err
	}
	v := r.URL.Query()
	now := s.now()
	q, err := certdb.StateQuery(v.Get("status"), now)
	if err != nil {
		return newError(http.StatusBadRequest, CodeBadRequest, "status must be valid, expired, revoked or reserved")
	}
	if eb := v.Get("expiring_before"); eb != "" {
		t, err := time.Parse(time.RFC3339, eb)
		if err != nil {
			return newError(http.StatusBadRequest, CodeBadRequest, "expiring_before must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z")
		}
		q.ExpiringBefore = t
	}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > certdb.MaxLimit {
			return newError(http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("limit must be 1..%d", certdb.MaxLimit))
		}
		q.Limit = n
	}
	if c := v.Get("cursor"); c != "" {
		after, err := certdb.ParseSerial(c)
		if err != nil {
			return newError(http.StatusBadRequest, CodeBadRequest, "cursor must be the next_cursor of a previous page")
		}
		q.After = after
	}
	recs, err := s.store.ListCertificates(r.Context(), q)
	if err != nil {
		return err
	}
	out := ListResponse{Certificates: make([]CertificateJSON, 0, len(recs))}
	for _, rec := range recs {
		j := recordJSON(rec, now)
		j.CertificatePEM = "" // keep pages small; GET /v1/certificates/{serial} has it
		out.Certificates = append(out.Certificates, j)
	}
	if len(recs) == q.EffectiveLimit() {
		out.NextCursor = certdb.SerialHex(recs[len(recs)-1].Serial)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// RevokeRequest is the body of POST /v1/certificates/{serial}/revoke.
type RevokeRequest struct {
	Reason string `json:"reason,omitempty"`
}

func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authn(w, r)
	if err != nil {
		return err
	}
	serial, err := certdb.ParseSerial(r.PathValue("serial"))
	if err != nil {
		return err
	}
	if err := p.requireAdmin("revocation"); err != nil {
		s.audit(r.Context(), p.actor, "revoke", certdb.SerialHex(serial), "denied", "not an admin")
		return err
	}
	var in RevokeRequest
	if r.ContentLength != 0 {
		if err := s.decode(w, r, &in); err != nil {
			return err
		}
	}
	reason := certdb.ReasonUnspecified
	if in.Reason != "" {
		if reason, err = certdb.ParseReason(in.Reason); err != nil {
			return err
		}
	}
	if err := s.auth.Revoke(r.Context(), serial, reason); err != nil {
		outcome := classify(err).Code
		s.metrics.revoked.WithLabelValues(outcome).Inc()
		s.audit(r.Context(), p.actor, "revoke", certdb.SerialHex(serial), outcome, err.Error())
		return err
	}
	s.metrics.revoked.WithLabelValues("ok").Inc()
	s.audit(r.Context(), p.actor, "revoke", certdb.SerialHex(serial), "ok", reason.String())
	writeJSON(w, http.StatusOK, map[string]string{"serial": certdb.SerialHex(serial), "status": "revoked", "reason": reason.String()})
	return nil
}

// CAResponse is GET /v1/ca.
type CAResponse struct {
	ChainPEM               string   `json:"chain_pem"`
	RootsPEM               string   `json:"roots_pem"`
	OCSPURLs               []string `json:"ocsp_urls"`
	CRLURLs                []string `json:"crl_urls"`
	IssuingCertificateURLs []string `json:"issuing_certificate_urls"`
}

func (s *Server) handleCA(w http.ResponseWriter, r *http.Request) error {
	var out CAResponse
	var b strings.Builder
	for _, d := range s.cfg.Chain {
		b.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d}))
	}
	out.ChainPEM = b.String()
	b.Reset()
	for _, c := range s.cfg.Roots {
		b.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	out.RootsPEM = b.String()
	out.OCSPURLs = nonNil(s.cfg.URLs.OCSPServers)
	out.CRLURLs = nonNil(s.cfg.URLs.CRLDistributionPoints)
	out.IssuingCertificateURLs = nonNil(s.cfg.URLs.IssuingCertificateURL)
	writeJSON(w, http.StatusOK, out)
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.WarnContext(ctx, "not ready: database unreachable", "err", err)
		return newError(http.StatusServiceUnavailable, CodeUnavailable, "certificate database unreachable")
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}
