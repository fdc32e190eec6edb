package ocsp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/issuance"
)

// Responder limits and defaults.
const (
	// MaxRequestSize bounds POST bodies and decoded GET requests. An
	// unsigned request for one certificate is about 80 bytes (120 with a
	// nonce); 10000 leaves room for odd clients, as Boulder does.
	MaxRequestSize = 10000
	// DefaultTimeout bounds the work for one request.
	DefaultTimeout = 5 * time.Second
)

// Responder is an OCSP responder (RFC 6960, RFC 5019 profile) for one
// issuer, answering from pre-signed responses in a Source. It holds no key.
//
//   - GET {prefix}/{base64 OCSPRequest}: the base64 may contain '/' and
//     '+', may be URL-escaped (%2F, %2B, %3D), and may lack its '=' padding;
//     a doubled leading slash is tolerated. The raw path is decoded by the
//     Responder itself, so mount it without http.ServeMux, which would clean
//     "//" in the base64 and redirect: dispatch on the path prefix before
//     the mux (see Responder.Wrap).
//   - POST {prefix} with an application/ocsp-request body (at most
//     MaxRequestSize bytes).
//
// Requests with SHA-1 or SHA-256 CertIDs are answered; the CertID's issuer
// name and key hashes must be this issuer's, else, like for serials it has
// no response for, the answer is "unauthorized" (RFC 5019 §2.2.3). A
// request that does not parse gets "malformedRequest". Successful answers
// carry RFC 5019 §6 caching headers.
//
// A Responder is safe for concurrent use and never changes after
// NewResponder.
type Responder struct {
	src    Source
	h1     *issuance.IssuerHash
	h256   *issuance.IssuerHash
	prefix string
	cfg    responderConfig
}

type responderConfig struct {
	timeout time.Duration
	now     func() time.Time
	log     *slog.Logger
}

// ResponderOption configures NewResponder.
type ResponderOption func(*responderConfig)

// WithTimeout bounds the time spent on one request (default 5s).
func WithTimeout(d time.Duration) ResponderOption { return func(c *responderConfig) { c.timeout = d } }

// WithResponderClock sets the clock (default time.Now).
func WithResponderClock(now func() time.Time) ResponderOption {
	return func(c *responderConfig) { c.now = now }
}

// WithResponderLogger sets the logger (default: discard).
func WithResponderLogger(l *slog.Logger) ResponderOption {
	return func(c *responderConfig) { c.log = l }
}

var _ http.Handler = (*Responder)(nil)

// NewResponder returns a Responder for issuer's certificates mounted at
// prefix ("" or a path such as "/ocsp", without a trailing slash), reading
// responses from src.
func NewResponder(issuer *x509.Certificate, src Source, prefix string, opts ...ResponderOption) (*Responder, error) {
	if issuer == nil || src == nil {
		return nil, errors.New("ocsp: new responder: nil issuer or source")
	}
	if prefix != "" && (!strings.HasPrefix(prefix, "/") || strings.HasSuffix(prefix, "/")) {
		return nil, fmt.Errorf("ocsp: new responder: prefix %q must start with '/' and not end with one", prefix)
	}
	h1, h256 := issuance.IssuerHashes(issuer)
	if h1 == nil {
		return nil, fmt.Errorf("ocsp: new responder: cannot hash the public key of %q", issuer.Subject)
	}
	cfg := responderConfig{timeout: DefaultTimeout, now: time.Now, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	return &Responder{src: src, h1: h1, h256: h256, prefix: prefix, cfg: cfg}, nil
}

// Wrap returns a handler that sends requests under the Responder's prefix
// (the prefix itself, or prefix + "/…") to the Responder and everything
// else to next. Use it instead of registering the Responder on an
// http.ServeMux, which cleans paths ("//" in base64 becomes "/").
func (rs *Responder) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if rs.prefix == "" || p == rs.prefix || strings.HasPrefix(p, rs.prefix+"/") {
			rs.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ServeHTTP answers one OCSP request.
func (rs *Responder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Until a response is found, tell caches not to keep what we send.
	w.Header().Set("Cache-Control", "max-age=0, no-cache")
	var der []byte
	switch r.Method {
	case http.MethodGet:
		p := r.URL.EscapedPath()
		rest, ok := strings.CutPrefix(p, rs.prefix)
		if !ok || (rest != "" && rest[0] != '/') {
			http.NotFound(w, r)
			return
		}
		var err error
		der, err = DecodeGETPath(rest)
		if err != nil {
			rs.malformed(w)
			return
		}
	case http.MethodPost:
		if r.URL.Path != rs.prefix && r.URL.Path != rs.prefix+"/" {
			http.NotFound(w, r)
			return
		}
		var err error
		der, err = io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestSize))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				w.Header().Set("Content-Type", "application/ocsp-response")
				w.WriteHeader(http.StatusRequestEntityTooLarge)
				w.Write(xocsp.MalformedRequestErrorResponse)
				return
			}
			rs.malformed(w)
			return
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}

	req, err := ParseRequest(der)
	if err != nil {
		rs.malformed(w)
		return
	}
	if !rs.forUs(req) {
		rs.unauthorized(w)
		return
	}
	// Like Boulder's responder: the client cannot cancel our store query
	// half-way (pgx would cancel it on the server); our own timeout bounds it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), rs.cfg.timeout)
	defer cancel()
	resp, err := rs.src.Response(ctx, req.SerialNumber)
	switch {
	case err == nil:
	case errors.Is(err, certdb.ErrNotFound):
		rs.unauthorized(w)
		return
	default:
		rs.cfg.log.ErrorContext(ctx, "OCSP response unavailable", "serial", certdb.SerialHex(req.SerialNumber), "err", err)
		rs.tryLater(w)
		return
	}
	now := rs.cfg.now()
	if !now.Before(resp.NextUpdate) {
		// RFC 5019 §4: never serve a response past its nextUpdate.
		rs.cfg.log.ErrorContext(ctx, "OCSP response is stale", "serial", certdb.SerialHex(req.SerialNumber), "next_update", resp.NextUpdate)
		rs.tryLater(w)
		return
	}
	sum := sha256.Sum256(resp.DER)
	etag := `"` + hex.EncodeToString(sum[:]) + `"`
	h := w.Header()
	h.Set("Content-Type", "application/ocsp-response")
	h.Set("Last-Modified", resp.ThisUpdate.UTC().Format(http.TimeFormat))
	h.Set("Expires", resp.NextUpdate.UTC().Format(http.TimeFormat))
	h.Set("ETag", etag)
	// RFC 5019 §6.2: max-age no later than nextUpdate.
	maxAge := int64(resp.NextUpdate.Sub(now) / time.Second)
	h.Set("Cache-Control", "max-age="+strconv.FormatInt(maxAge, 10)+", public, no-transform, must-revalidate")
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatch(inm, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(resp.DER)))
	w.WriteHeader(http.StatusOK)
	w.Write(resp.DER)
}

// forUs reports whether req's CertID names this responder's issuer.
func (rs *Responder) forUs(req *xocsp.Request) bool {
	var h *issuance.IssuerHash
	switch req.HashAlgorithm {
	case crypto.SHA1:
		h = rs.h1
	case crypto.SHA256:
		h = rs.h256
	default:
		// Pre-signed responses carry SHA-1 and SHA-256 CertIDs only.
		return false
	}
	return bytes.Equal(req.IssuerKeyHash, h.KeyHash) && bytes.Equal(req.IssuerNameHash, h.NameHash)
}

func etagMatch(header, etag string) bool {
	for t := range strings.SplitSeq(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

// RFC 6960 §2.3 error responses (unsigned). Unauthorized is a 200: it is a
// well-formed OCSP answer, and OpenSSL only parses 200 responses.
func (rs *Responder) malformed(w http.ResponseWriter) {
	writeError(w, http.StatusBadRequest, xocsp.MalformedRequestErrorResponse)
}

func (rs *Responder) unauthorized(w http.ResponseWriter) {
	writeError(w, http.StatusOK, xocsp.UnauthorizedErrorResponse)
}

func (rs *Responder) tryLater(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "5")
	writeError(w, http.StatusServiceUnavailable, xocsp.TryLaterErrorResponse)
}

func writeError(w http.ResponseWriter, code int, body []byte) {
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.WriteHeader(code)
	w.Write(body)
}

// ParseRequest parses a DER OCSP request (RFC 6960 §4.1.1). Only the first
// CertID is used (RFC 5019 §2.1.1: clients send one); signed requests are
// refused. The serial must be positive.
func ParseRequest(der []byte) (*xocsp.Request, error) {
	if len(der) > MaxRequestSize {
		return nil, fmt.Errorf("ocsp: request of %d bytes is too large", len(der))
	}
	req, err := xocsp.ParseRequest(der)
	if err != nil {
		return nil, fmt.Errorf("ocsp: parse request: %w", err)
	}
	if req.SerialNumber == nil || req.SerialNumber.Sign() <= 0 {
		return nil, errors.New("ocsp: parse request: serial number is not positive")
	}
	return req, nil
}

// DecodeGETPath decodes the path of an RFC 6960 Appendix A.1 GET request
// (what follows the responder's prefix): URL-unescape once (a '+' stays a
// '+'; a ' ' is taken for a '+' that something decoded as a form value),
// drop leading slashes in front of an 'M' (an OCSP request is a DER
// SEQUENCE, tag 0x30, whose base64 starts with 'M'; naive clients join the
// URL with an extra '/'), then decode standard base64 with or without '='
// padding. The URL-safe alphabet ('-', '_') is accepted too.
func DecodeGETPath(p string) ([]byte, error) {
	s, err := url.PathUnescape(p)
	if err != nil {
		return nil, fmt.Errorf("ocsp: GET path: %w", err)
	}
	if t := strings.TrimLeft(s, "/"); t != s && strings.HasPrefix(t, "M") {
		s = t // "//MEow…": a doubled slash before a DER SEQUENCE (0x30 encodes as 'M')
	}
	s = strings.ReplaceAll(s, " ", "+")
	s = strings.TrimRight(s, "=")
	if s == "" {
		return nil, errors.New("ocsp: GET path: empty request")
	}
	if base64.RawStdEncoding.DecodedLen(len(s)) > MaxRequestSize {
		return nil, errors.New("ocsp: GET path: request too large")
	}
	enc := base64.RawStdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	der, err := enc.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("ocsp: GET path: %w", err)
	}
	return der, nil
}
