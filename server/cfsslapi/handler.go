package cfsslapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"net/http"
	"slices"
	"strings"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/issuance"
)

// PathPrefix is where CFSSL clients expect the API (api/client getURL).
const PathPrefix = "/api/v1/cfssl/"

// DefaultMaxBodyBytes is the request size limit when Options.MaxBodyBytes
// is 0. A PEM CSR is a few KiB; an authsign request base64-encodes it once
// more.
const DefaultMaxBodyBytes = 1 << 20

// minAuthKeyBytes: HMAC keys shorter than 128 bits can be brute-forced
// offline from one captured authsign request. CFSSL's documented keys are
// 16 bytes (32 hex digits).
const minAuthKeyBytes = 16

// Sentinel errors a Backend wraps (errors.Is) so that the handler picks the
// HTTP status and CFSSL error code. The message of a 4xx error is sent to
// the client, so it must not carry secrets; any error that wraps none of
// these (nor one of the certctl errors listed on Backend) becomes a 500 with
// a generic message, and its details are only logged.
var (
	// ErrUnauthenticated: the caller did not prove who it is (401).
	ErrUnauthenticated = errors.New("cfsslapi: authentication required")
	// ErrForbidden: the caller is known but may not do this (403).
	ErrForbidden = errors.New("cfsslapi: forbidden")
	// ErrBadRequest: the request is malformed or not allowed by policy (400).
	ErrBadRequest = errors.New("cfsslapi: bad request")
	// ErrNotFound: no such certificate or profile (404).
	ErrNotFound = errors.New("cfsslapi: not found")
	// ErrRateLimited: the caller sent too many requests (429).
	ErrRateLimited = errors.New("cfsslapi: rate limit exceeded")
)

// Caller says how a request was authenticated by cfsslapi itself.
type Caller struct {
	// HMACKey is the name of the auth key whose HMAC verified an authsign
	// request; "" for every other endpoint.
	HMACKey string
	// Request is the original HTTP request (its body already consumed):
	// the Backend authenticates bearer tokens or client certificates from
	// it. Never nil.
	Request *http.Request
}

// Info is what the info endpoint reports about a profile.
type Info struct {
	// Issuer is the certificate that signs under the profile.
	Issuer *x509.Certificate
	// Profile is the profile's configuration (issuance.Profile.Config); its
	// usages and validity are translated into CFSSL's terms.
	Profile issuance.ProfileConfig
}

// RevokeRequest is a decoded revoke request.
type RevokeRequest struct {
	Serial *big.Int
	// AuthorityKeyID is the issuer's key identifier as sent by the client;
	// empty when the client sent none. The Backend must answer ErrNotFound
	// when it is set and differs from the certificate's.
	AuthorityKeyID []byte
	Reason         certdb.Reason
}

// Backend carries out requests once cfsslapi has decoded them. Every method
// receives the Caller and must authenticate and authorize it: the handler
// only verifies authsign's HMAC, and leaves it to the Backend to decide what
// a verified key may do.
//
// Errors should wrap ErrUnauthenticated, ErrForbidden, ErrBadRequest,
// ErrNotFound or ErrRateLimited. The handler also recognizes, without wrapping,
// issuance.ErrBadCSR, issuance.ErrInvalidName, *issuance.PolicyError,
// ca.ErrUnknownProfile and certdb.ErrInvalid (400), certdb.ErrNotFound and
// certdb.ErrNotIssued (404) and certdb.ErrAlreadyRevoked (409).
//
// Implementations must be safe for concurrent use.
type Backend interface {
	// Sign issues a certificate for r (sign and authsign). r.Profile is
	// already resolved (never ""). Build the issuance request with
	// r.IssuanceRequest. Returns the leaf, already stored.
	Sign(ctx context.Context, c Caller, r *SignRequest) (*x509.Certificate, error)
	// Info describes a profile (never ""). CFSSL serves it to anyone.
	Info(ctx context.Context, c Caller, profile string) (*Info, error)
	// Revoke revokes a certificate.
	Revoke(ctx context.Context, c Caller, r *RevokeRequest) error
	// CertInfo returns the certificate with that serial (and authority key
	// identifier, when not empty), or an error wrapping ErrNotFound.
	CertInfo(ctx context.Context, c Caller, serial *big.Int, authorityKeyID []byte) (*x509.Certificate, error)
}

// Options configures NewHandler. The zero value serves sign, info, revoke
// and certinfo and refuses every authsign request.
type Options struct {
	// AuthKeys maps auth key names (the "auth_keys" of ca-config.json) to
	// HMAC-SHA-256 keys of at least 16 bytes.
	AuthKeys map[string][]byte
	// ProfileAuthKeys maps a profile name to the names of the keys that may
	// authsign under it, in the order tried: CFSSL's auth_key, then
	// prev_auth_key. A profile with no keys refuses authsign.
	ProfileAuthKeys map[string][]string
	// DefaultProfile is used when a request names no profile; "" means such
	// requests are refused.
	DefaultProfile string
	// MaxBodyBytes bounds request bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Logger receives refusals (info) and internal errors (error); nil
	// discards.
	Logger *slog.Logger
}

// Handler serves the CFSSL API. It is safe for concurrent use and does not
// change after NewHandler.
type Handler struct {
	b              Backend
	keys           map[string][]byte
	profileKeys    map[string][]string
	defaultProfile string
	maxBody        int64
	log            *slog.Logger
}

var _ http.Handler = (*Handler)(nil)

// NewHandler checks opts and returns the handler to mount at PathPrefix. It
// copies the keys: later changes to opts have no effect.
func NewHandler(b Backend, opts Options) (*Handler, error) {
	if b == nil {
		return nil, errors.New("cfsslapi: NewHandler needs a backend")
	}
	h := &Handler{
		b:              b,
		keys:           make(map[string][]byte, len(opts.AuthKeys)),
		profileKeys:    make(map[string][]string, len(opts.ProfileAuthKeys)),
		defaultProfile: opts.DefaultProfile,
		maxBody:        opts.MaxBodyBytes,
		log:            opts.Logger,
	}
	if h.maxBody < 0 {
		return nil, fmt.Errorf("cfsslapi: MaxBodyBytes %d must not be negative", h.maxBody)
	}
	if h.maxBody == 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	for name, k := range opts.AuthKeys {
		if len(k) < minAuthKeyBytes {
			return nil, fmt.Errorf("cfsslapi: auth key %q is %d bytes; at least %d are needed", name, len(k), minAuthKeyBytes)
		}
		h.keys[name] = slices.Clone(k)
	}
	for _, profile := range slices.Sorted(maps.Keys(opts.ProfileAuthKeys)) {
		for _, name := range opts.ProfileAuthKeys[profile] {
			if _, ok := h.keys[name]; !ok {
				return nil, fmt.Errorf("cfsslapi: profile %q names auth key %q, which is not in AuthKeys", profile, name)
			}
		}
		h.profileKeys[profile] = slices.Clone(opts.ProfileAuthKeys[profile])
	}
	return h, nil
}

// apiError is a refusal decided by the handler: status, CFSSL code and the
// message sent to the client. err, if set, is logged and never sent.
type apiError struct {
	status int
	code   int
	msg    string
	err    error
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// CFSSL error codes (cfssl/errors: category*1000 + reason) used besides
// the HTTP status, which CFSSL sends as the code of its HTTPError.
const (
	codeInvalidPolicy  = 5200 // PolicyError + InvalidPolicy
	codeInvalidRequest = 5300 // PolicyError + InvalidRequest
	codeUnknownProfile = 5400 // PolicyError + UnknownProfile
	codeCSRParseFailed = 9003 // CSRError + ParseFailed
)

// classify maps a Backend (or certctl) error to status, code and message.
func classify(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var pe *issuance.PolicyError
	e := &apiError{msg: err.Error()}
	switch {
	case errors.Is(err, ErrUnauthenticated):
		e.status, e.code = http.StatusUnauthorized, http.StatusUnauthorized
	case errors.Is(err, ErrForbidden):
		e.status, e.code = http.StatusForbidden, http.StatusForbidden
	case errors.Is(err, ErrRateLimited):
		e.status, e.code = http.StatusTooManyRequests, http.StatusTooManyRequests
	case errors.Is(err, ErrNotFound), errors.Is(err, certdb.ErrNotFound), errors.Is(err, certdb.ErrNotIssued):
		e.status, e.code = http.StatusNotFound, http.StatusNotFound
	case errors.Is(err, certdb.ErrAlreadyRevoked):
		e.status, e.code = http.StatusConflict, http.StatusConflict
	case errors.Is(err, issuance.ErrBadCSR):
		e.status, e.code = http.StatusBadRequest, codeCSRParseFailed
	case errors.Is(err, ca.ErrUnknownProfile):
		e.status, e.code = http.StatusBadRequest, codeUnknownProfile
	case errors.As(err, &pe), errors.Is(err, issuance.ErrInvalidName):
		e.status, e.code = http.StatusBadRequest, codeInvalidRequest
	case errors.Is(err, ErrBadRequest), errors.Is(err, certdb.ErrInvalid):
		e.status, e.code = http.StatusBadRequest, http.StatusBadRequest
	default:
		return &apiError{status: http.StatusInternalServerError, code: http.StatusInternalServerError,
			msg: "internal error; the server log has details", err: err}
	}
	return e
}

// responseMessage and response are CFSSL's api.ResponseMessage and
// api.Response, field for field.
type responseMessage struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type response struct {
	Success  bool              `json:"success"`
	Result   any               `json:"result"`
	Errors   []responseMessage `json:"errors"`
	Messages []responseMessage `json:"messages"`
}

func writeJSON(w http.ResponseWriter, status int, r response) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	// An encoding error here means the client went away: nothing to do.
	_ = json.NewEncoder(w).Encode(r)
}

func writeResult(w http.ResponseWriter, result any, messages ...responseMessage) {
	if messages == nil {
		messages = []responseMessage{}
	}
	writeJSON(w, http.StatusOK, response{Success: true, Result: result, Errors: []responseMessage{}, Messages: messages})
}

func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, endpoint string, err error) {
	e := classify(err)
	if e.status >= 500 {
		h.log.ErrorContext(r.Context(), "cfssl api request failed", "endpoint", endpoint, "remote", r.RemoteAddr, "err", e.err)
	} else {
		h.log.InfoContext(r.Context(), "cfssl api request refused", "endpoint", endpoint, "remote", r.RemoteAddr,
			"status", e.status, "msg", e.msg)
	}
	if e.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	writeJSON(w, e.status, response{Result: nil, Errors: []responseMessage{{Code: e.code, Message: e.msg}}, Messages: []responseMessage{}})
}

// ServeHTTP dispatches on the path below PathPrefix. Every endpoint takes
// POST only, as in CFSSL.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	endpoint, ok := strings.CutPrefix(r.URL.Path, PathPrefix)
	var serve func(http.ResponseWriter, *http.Request, []byte) error
	switch {
	case !ok:
	case endpoint == "sign":
		serve = h.serveSign
	case endpoint == "authsign":
		serve = h.serveAuthSign
	case endpoint == "info":
		serve = h.serveInfo
	case endpoint == "revoke":
		serve = h.serveRevoke
	case endpoint == "certinfo":
		serve = h.serveCertInfo
	case endpoint == "newkey", endpoint == "newcert", endpoint == "init_ca":
		serve = func(http.ResponseWriter, *http.Request, []byte) error {
			return &apiError{status: http.StatusForbidden, code: codeInvalidPolicy,
				msg: "certctl never generates private keys on the server: generate the key and CSR locally (cfssl genkey) and send the CSR to sign or authsign"}
		}
	}
	if serve == nil {
		h.writeError(w, r, endpoint, &apiError{status: http.StatusNotFound, code: http.StatusNotFound,
			msg: fmt.Sprintf("no CFSSL endpoint %q (certctl serves sign, authsign, info, revoke, certinfo)", endpoint)})
		return
	}
	if r.Method != http.MethodPost {
		h.writeError(w, r, endpoint, &apiError{status: http.StatusMethodNotAllowed, code: http.StatusMethodNotAllowed,
			msg: fmt.Sprintf("method %s is not allowed: use POST", r.Method)})
		return
	}
	body, err := h.readBody(w, r)
	if err == nil {
		err = serve(w, r, body)
	}
	if err != nil {
		h.writeError(w, r, endpoint, err)
	}
}

func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	tooLarge := &apiError{status: http.StatusRequestEntityTooLarge, code: http.StatusRequestEntityTooLarge,
		msg: fmt.Sprintf("request body is larger than the limit of %d bytes", h.maxBody)}
	if r.ContentLength > h.maxBody {
		return nil, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, tooLarge
	case err != nil:
		return nil, badRequest("cannot read the request body: %v", err)
	}
	return body, nil
}

// resolveProfile applies the default profile.
func (h *Handler) resolveProfile(p string) (string, error) {
	if p != "" {
		return p, nil
	}
	if h.defaultProfile == "" {
		return "", &apiError{status: http.StatusBadRequest, code: codeUnknownProfile,
			msg: `the request names no "profile" and the server has no default profile`}
	}
	return h.defaultProfile, nil
}

// verifyHMAC checks token against the keys of profile the way CFSSL's
// auth.Standard does with no additional data: HMAC-SHA-256(key, request),
// compared in constant time. It returns the name of the key that verified.
func (h *Handler) verifyHMAC(profile string, request, token []byte) (string, error) {
	names := h.profileKeys[profile]
	if len(names) == 0 {
		return "", &apiError{status: http.StatusForbidden, code: http.StatusForbidden,
			msg: fmt.Sprintf("profile %q does not accept authsign requests (it has no auth key)", profile)}
	}
	for _, name := range names {
		mac := hmac.New(sha256.New, h.keys[name])
		mac.Write(request)
		if hmac.Equal(mac.Sum(nil), token) {
			return name, nil
		}
	}
	return "", &apiError{status: http.StatusUnauthorized, code: http.StatusUnauthorized,
		msg: fmt.Sprintf("invalid token: the request's HMAC does not verify with the auth key of profile %q", profile)}
}
