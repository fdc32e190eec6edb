package cfsslapi_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/internal/pkitest"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/server/cfsslapi"
)

// errBackend fails every call with err.
type errBackend struct{ err error }

func (b errBackend) Sign(context.Context, cfsslapi.Caller, *cfsslapi.SignRequest) (*x509.Certificate, error) {
	return nil, b.err
}

func (b errBackend) Info(context.Context, cfsslapi.Caller, string) (*cfsslapi.Info, error) {
	return nil, b.err
}

func (b errBackend) Revoke(context.Context, cfsslapi.Caller, *cfsslapi.RevokeRequest) error {
	return b.err
}

func (b errBackend) CertInfo(context.Context, cfsslapi.Caller, *big.Int, []byte) (*x509.Certificate, error) {
	return nil, b.err
}

func TestBackendErrorMapping(t *testing.T) {
	t.Parallel()
	secret := "dial tcp 10.1.2.3:5432: password authentication failed for user certctl"
	tests := []struct {
		name         string
		err          error
		status, code int
		wantMsg      string
	}{
		{"unauthenticated", fmt.Errorf("%w: no token", cfsslapi.ErrUnauthenticated), 401, 401, "no token"},
		{"forbidden", fmt.Errorf("%w: token not valid for profile server", cfsslapi.ErrForbidden), 403, 403, "profile server"},
		{"not found", fmt.Errorf("%w: serial 12", cfsslapi.ErrNotFound), 404, 404, "serial 12"},
		{"rate limited", fmt.Errorf("%w for token:ab", cfsslapi.ErrRateLimited), 429, 429, "rate limit"},
		{"bad request", fmt.Errorf("%w: nope", cfsslapi.ErrBadRequest), 400, 400, "nope"},
		{"certdb not found", fmt.Errorf("server: get: %w", certdb.ErrNotFound), 404, 404, "not found"},
		{"certdb not issued", certdb.ErrNotIssued, 404, 404, "not issued"},
		{"already revoked", fmt.Errorf("ca: revoke 0a: %w", certdb.ErrAlreadyRevoked), 409, 409, "already revoked"},
		{"policy", &issuance.PolicyError{Profile: "server", Field: "dns_names[0]", Reason: "not allowed"}, 400, 5300, "dns_names[0]"},
		{"invalid name", fmt.Errorf("cfsslapi: hosts: %w: empty name", issuance.ErrInvalidName), 400, 5300, "empty name"},
		{"unknown profile", fmt.Errorf("%w %q", ca.ErrUnknownProfile, "x"), 400, 5400, "unknown profile"},
		{"bad CSR", fmt.Errorf("%w: empty", issuance.ErrBadCSR), 400, 9003, "bad certificate request"},
		{"internal", fmt.Errorf("%w: %s", ca.ErrStore, secret), 500, 500, "internal error"},
	}
	csr := string(newCSR(t, "a.internal", "a.internal"))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs pkitest.SyncBuffer
			h, err := cfsslapi.NewHandler(errBackend{tt.err}, cfsslapi.Options{
				DefaultProfile: "server", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			mustNoErr(t, err)
			for _, req := range []struct{ endpoint, body string }{
				{"sign", string(mustJSON(t, map[string]string{"certificate_request": csr}))},
				{"info", `{}`},
				{"revoke", `{"serial":"10"}`},
				{"certinfo", `{"serial":"10","authority_key_id":"0a"}`},
			} {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, cfsslapi.PathPrefix+req.endpoint, strings.NewReader(req.body)))
				body := rec.Body.String()
				if rec.Code != tt.status || !strings.Contains(body, fmt.Sprintf(`"code":%d`, tt.code)) || !strings.Contains(body, tt.wantMsg) {
					t.Errorf("%s: status %d body %s; want %d, code %d, message with %q", req.endpoint, rec.Code, body, tt.status, tt.code, tt.wantMsg)
				}
				if strings.Contains(body, "10.1.2.3") {
					t.Errorf("%s: internal details sent to the client: %s", req.endpoint, body)
				}
			}
			if tt.status == 500 && !strings.Contains(logs.String(), "10.1.2.3") {
				t.Errorf("internal error not logged; log:\n%s", logs.String())
			}
		})
	}
	// A Backend that returns neither a certificate nor an error is a bug:
	// 500, not a panic.
	t.Run("nil certificate", func(t *testing.T) {
		h, err := cfsslapi.NewHandler(errBackend{nil}, cfsslapi.Options{DefaultProfile: "server"})
		mustNoErr(t, err)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, cfsslapi.PathPrefix+"sign",
			bytes.NewReader(mustJSON(t, map[string]string{"certificate_request": csr}))))
		if rec.Code != 500 {
			t.Fatalf("status %d, want 500", rec.Code)
		}
	})
}

func TestNoDefaultProfile(t *testing.T) {
	t.Parallel()
	h, err := cfsslapi.NewHandler(errBackend{errors.New("unreachable")}, cfsslapi.Options{})
	mustNoErr(t, err)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, cfsslapi.PathPrefix+"info", strings.NewReader(`{"label":"x"}`)))
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "no default profile") {
		t.Fatalf("status %d body %s, want 400 no default profile", rec.Code, rec.Body.String())
	}
}
