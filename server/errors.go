package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/issuance"
)

// Error codes: stable, machine-readable, part of the API contract.
const (
	CodeBadRequest      = "bad_request"
	CodeBadCSR          = "bad_csr"
	CodeUnauthenticated = "unauthenticated"
	CodeForbidden       = "forbidden"
	CodeNotFound        = "not_found"
	CodePolicy          = "policy_violation"
	CodeLint            = "lint_failed"
	CodeUnknownProfile  = "unknown_profile"
	CodeConflict        = "conflict"
	CodeTooLarge        = "request_too_large"
	CodeRateLimited     = "rate_limited"
	CodeUnavailable     = "unavailable"
	CodeInternal        = "internal_error"
)

// apiError is an error with its HTTP status and code. Message is sent to
// the client; it never carries internal details.
type apiError struct {
	Status  int
	Code    string
	Message string
	cause   error // logged, not sent
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }
func (e *apiError) Unwrap() error { return e.cause }

func newError(status int, code, msg string) *apiError {
	return &apiError{Status: status, Code: code, Message: msg}
}

// errorBody is the JSON error envelope.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// classify maps any error to an apiError. Only here do errors become status
// codes (STYLE.md §3), through errors.Is/As.
func classify(err error) *apiError {
	var ae *apiError
	var pe *issuance.PolicyError
	var le *issuance.LintError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &pe):
		return &apiError{Status: http.StatusBadRequest, Code: CodePolicy, Message: pe.Error(), cause: err}
	case errors.As(err, &le):
		return &apiError{Status: http.StatusUnprocessableEntity, Code: CodeLint, Message: le.Error(), cause: err}
	case errors.Is(err, ca.ErrUnknownProfile):
		return &apiError{Status: http.StatusBadRequest, Code: CodeUnknownProfile, Message: trimPrefix(err.Error()), cause: err}
	case errors.Is(err, issuance.ErrBadCSR):
		return &apiError{Status: http.StatusBadRequest, Code: CodeBadCSR, Message: err.Error(), cause: err}
	case errors.Is(err, issuance.ErrInvalidName):
		return &apiError{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: err.Error(), cause: err}
	case errors.Is(err, certdb.ErrNotFound):
		return &apiError{Status: http.StatusNotFound, Code: CodeNotFound, Message: "no such certificate", cause: err}
	case errors.Is(err, certdb.ErrAlreadyRevoked):
		return &apiError{Status: http.StatusConflict, Code: CodeConflict, Message: "certificate is already revoked", cause: err}
	case errors.Is(err, certdb.ErrNotIssued):
		return &apiError{Status: http.StatusConflict, Code: CodeConflict, Message: "serial was reserved but never issued", cause: err}
	case errors.Is(err, certdb.ErrInvalid):
		return &apiError{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: err.Error(), cause: err}
	case errors.Is(err, ca.ErrCT):
		return &apiError{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "Certificate Transparency logs did not return the SCTs the profile requires; no certificate was issued; retry later", cause: err}
	case errors.Is(err, ca.ErrStore), errors.Is(err, context.DeadlineExceeded):
		return &apiError{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "the certificate database is unavailable; no certificate was issued; retry later", cause: err}
	}
	return &apiError{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error; see the server log", cause: err}
}

func trimPrefix(s string) string {
	if len(s) > 4 && s[:4] == "ca: " {
		return s[4:]
	}
	return s
}

// writeError sends err as JSON and logs what the client does not see.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := classify(err)
	if ae.Status >= 500 {
		s.log.ErrorContext(r.Context(), "request failed", "path", r.URL.Path, "code", ae.Code, "err", err)
	} else if ae.cause != nil {
		s.log.DebugContext(r.Context(), "request refused", "path", r.URL.Path, "code", ae.Code, "err", ae.cause)
	}
	var body errorBody
	body.Error.Code, body.Error.Message = ae.Code, ae.Message
	if ae.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="certctl"`)
	}
	writeJSON(w, ae.Status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client may have gone; nothing useful to do

}
