package cfsslapi_test

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/cfssl/api/client"
	"github.com/cloudflare/cfssl/auth"
	"github.com/cloudflare/cfssl/info"
	"github.com/cloudflare/cfssl/signer"

	"github.com/certctl/certctl/certdb"
)

// signJSON is what CFSSL's remote signer sends: a marshaled
// signer.SignRequest.
func signJSON(t *testing.T, csr []byte, profile string, hosts ...string) []byte {
	t.Helper()
	b, err := json.Marshal(signer.SignRequest{Hosts: hosts, Request: string(csr), Profile: profile})
	mustNoErr(t, err)
	return b
}

func TestCFSSLClientSign(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	t.Run("bearer token", func(t *testing.T) {
		srv := client.NewServerTLS(e.ts.URL, e.clientTLS(nil))
		srv.SetReqModifier(func(r *http.Request, _ []byte) { r.Header.Set("Authorization", "Bearer "+testToken) })
		certPEM, err := srv.Sign(signJSON(t, newCSR(t, "api.internal", "api.internal"), "server"))
		if err != nil {
			t.Fatalf("Sign() error = %v", err)
		}
		cert := e.verifyIssued(t, certPEM, "server", "token:test", x509.ExtKeyUsageServerAuth)
		if !slices.Equal(cert.DNSNames, []string{"api.internal"}) {
			t.Errorf("DNSNames = %v, want [api.internal]", cert.DNSNames)
		}
	})

	t.Run("hosts override the CSR names", func(t *testing.T) {
		srv := client.NewServerTLS(e.ts.URL, e.clientTLS(nil))
		srv.SetReqModifier(func(r *http.Request, _ []byte) { r.Header.Set("Authorization", "Bearer "+testToken) })
		certPEM, err := srv.Sign(signJSON(t, newCSR(t, "", "csr-name.internal"), "server", "db.internal", "127.0.0.1"))
		if err != nil {
			t.Fatalf("Sign() error = %v", err)
		}
		cert := e.verifyIssued(t, certPEM, "server", "token:test", x509.ExtKeyUsageServerAuth)
		if !slices.Equal(cert.DNSNames, []string{"db.internal"}) || len(cert.IPAddresses) != 1 || cert.IPAddresses[0].String() != "127.0.0.1" {
			t.Errorf("names = %v %v, want [db.internal] [127.0.0.1]", cert.DNSNames, cert.IPAddresses)
		}
	})

	t.Run("default profile", func(t *testing.T) {
		srv := client.NewServerTLS(e.ts.URL, e.clientTLS(nil))
		srv.SetReqModifier(func(r *http.Request, _ []byte) { r.Header.Set("Authorization", "Bearer "+testToken) })
		certPEM, err := srv.Sign(signJSON(t, newCSR(t, "web.internal", "web.internal"), ""))
		if err != nil {
			t.Fatalf("Sign() error = %v", err)
		}
		e.verifyIssued(t, certPEM, "default", "token:test", x509.ExtKeyUsageServerAuth)
	})

	t.Run("client certificate", func(t *testing.T) {
		cert, _ := e.clientCert(t, "deployer")
		srv := client.NewServerTLS(e.ts.URL, e.clientTLS(cert))
		certPEM, err := srv.Sign(signJSON(t, newCSR(t, "mtls.internal", "mtls.internal"), "client"))
		if err != nil {
			t.Fatalf("Sign() error = %v", err)
		}
		e.verifyIssued(t, certPEM, "client", "mtls:deployer", x509.ExtKeyUsageClientAuth)
	})
}

func TestCFSSLClientSignRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name    string
		token   string // "" sends no Authorization header
		req     func(t *testing.T) []byte
		wantMsg string
	}{
		{"no authentication", "", func(t *testing.T) []byte { return signJSON(t, newCSR(t, "a.internal", "a.internal"), "server") },
			"authentication required"},
		{"wrong bearer token", "nope", func(t *testing.T) []byte { return signJSON(t, newCSR(t, "a.internal", "a.internal"), "server") },
			"invalid bearer token"},
		{"name outside the profile", testToken, func(t *testing.T) []byte {
			return signJSON(t, newCSR(t, "www.example.com", "www.example.com"), "server")
		}, "www.example.com"},
		{"unknown profile", testToken, func(t *testing.T) []byte { return signJSON(t, newCSR(t, "a.internal", "a.internal"), "nosuch") },
			"unknown profile"},
		{"bad CSR", testToken, func(t *testing.T) []byte {
			return signJSON(t, []byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"), "server")
		},
			"bad certificate request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.countIssued(t)
			srv := client.NewServerTLS(e.ts.URL, e.clientTLS(nil))
			if tt.token != "" {
				srv.SetReqModifier(func(r *http.Request, _ []byte) { r.Header.Set("Authorization", "Bearer "+tt.token) })
			}
			cert, err := srv.Sign(tt.req(t))
			if err == nil {
				t.Fatalf("Sign() = %s, want an error", cert)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Sign() error = %v, want it to mention %q", err, tt.wantMsg)
			}
			if n := e.countIssued(t); n != before {
				t.Errorf("store holds %d certificates after a refusal, want %d", n, before)
			}
		})
	}
}

func mustAuth(t *testing.T, keyHex string) *auth.Standard {
	t.Helper()
	p, err := auth.New(keyHex, nil)
	mustNoErr(t, err)
	return p
}

func TestCFSSLClientAuthSign(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tt := range []struct{ name, key, keyName string }{
		{"current key", peerKeyHex, "peer-key"},
		{"previous key", peerOldKeyHex, "peer-key-old"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := client.NewAuthServer(e.ts.URL, e.clientTLS(nil), mustAuth(t, tt.key))
			certPEM, err := srv.Sign(signJSON(t, newCSR(t, "peer.internal", "peer.internal"), "peer"))
			if err != nil {
				t.Fatalf("AuthSign() error = %v", err)
			}
			cert := e.verifyIssued(t, certPEM, "peer", "hmac:"+tt.keyName, x509.ExtKeyUsageClientAuth)
			// peer: 2160h from issuance, backdated by up to 10m (less when
			// the fresh test intermediate is younger than that).
			if got := cert.NotAfter.Sub(cert.NotBefore); got <= 2160*time.Hour || got > 2160*time.Hour+10*time.Minute {
				t.Errorf("NotAfter-NotBefore = %v, want 2160h plus a backdate of at most 10m", got)
			}
		})
	}
}

func TestCFSSLClientAuthSignRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	wrongKey := strings.Repeat("ab", 16)
	tests := []struct {
		name, key, profile, wantMsg string
	}{
		{"wrong key", wrongKey, "peer", "invalid token"},
		{"another profile's key", peerKeyHex, "server", "does not accept authsign"},
		{"default profile has no key", peerKeyHex, "", "does not accept authsign"},
		{"unknown profile", peerKeyHex, "nosuch", "does not accept authsign"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.countIssued(t)
			srv := client.NewAuthServer(e.ts.URL, e.clientTLS(nil), mustAuth(t, tt.key))
			cert, err := srv.Sign(signJSON(t, newCSR(t, "peer.internal", "peer.internal"), tt.profile))
			if err == nil {
				t.Fatalf("AuthSign() = %s, want an error", cert)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("AuthSign() error = %v, want it to mention %q", err, tt.wantMsg)
			}
			if n := e.countIssued(t); n != before {
				t.Errorf("store holds %d certificates after a refusal, want %d", n, before)
			}
		})
	}

	t.Run("tampered request", func(t *testing.T) {
		// A valid MAC over one request does not authorize another.
		p := mustAuth(t, peerKeyHex)
		good := signJSON(t, newCSR(t, "peer.internal", "peer.internal"), "peer")
		tok, err := p.Token(good)
		mustNoErr(t, err)
		evil := signJSON(t, newCSR(t, "evil.internal", "evil.internal"), "peer")
		status, env := e.post(t, http.MethodPost, "authsign", jsonBody(t, auth.AuthenticatedRequest{Token: tok, Request: evil}), nil)
		if status != http.StatusUnauthorized || !strings.Contains(env.Errors[0].Message, "invalid token") {
			t.Fatalf("tampered authsign: status %d, errors %+v; want 401 invalid token", status, env.Errors)
		}
	})
}

func TestCFSSLClientInfo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	interPEM := strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.inter.Raw})))
	tests := []struct {
		profile    string
		wantUsages []string
		wantExpiry string
	}{
		{"server", []string{"digital signature", "key encipherment", "server auth"}, "8760h"},
		{"", []string{"digital signature", "key encipherment", "server auth"}, "168h"},
		{"peer", []string{"digital signature", "key encipherment", "client auth", "server auth"}, "2160h"},
		{"ocsp", []string{"digital signature", "ocsp signing"}, "168h"},
	}
	for _, tt := range tests {
		t.Run("profile "+tt.profile, func(t *testing.T) {
			req, err := json.Marshal(info.Req{Profile: tt.profile})
			mustNoErr(t, err)
			resp, err := client.NewServerTLS(e.ts.URL, e.clientTLS(nil)).Info(req)
			if err != nil {
				t.Fatalf("Info() error = %v", err)
			}
			if resp.Certificate != interPEM {
				t.Errorf("Info().Certificate is not the issuing intermediate:\n%s", resp.Certificate)
			}
			if !slices.Equal(resp.Usage, tt.wantUsages) || resp.ExpiryString != tt.wantExpiry {
				t.Errorf("Info() usages %q expiry %q, want %q %q", resp.Usage, resp.ExpiryString, tt.wantUsages, tt.wantExpiry)
			}
		})
	}
	t.Run("unknown profile", func(t *testing.T) {
		req, err := json.Marshal(info.Req{Profile: "nosuch"})
		mustNoErr(t, err)
		if _, err := client.NewServerTLS(e.ts.URL, e.clientTLS(nil)).Info(req); err == nil || !strings.Contains(err.Error(), "unknown profile") {
			t.Fatalf("Info(nosuch) error = %v, want unknown profile", err)
		}
	})
}

// issueViaAPI issues a server certificate through the sign endpoint.
func (e *env) issueViaAPI(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	srv := client.NewServerTLS(e.ts.URL, e.clientTLS(nil))
	srv.SetReqModifier(func(r *http.Request, _ []byte) { r.Header.Set("Authorization", "Bearer "+testToken) })
	certPEM, err := srv.Sign(signJSON(t, newCSR(t, name, name), "server"))
	mustNoErr(t, err)
	return e.verifyIssued(t, certPEM, "server", "token:test", x509.ExtKeyUsageServerAuth)
}

// The Go client has no revoke or certinfo call; these speak the wire format
// of CFSSL's revoke and certinfo handlers.
func TestRevoke(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cert := e.issueViaAPI(t, "revoke-me.internal")
	aki := hex.EncodeToString(cert.AuthorityKeyId)
	revoke := func(serial, akiHex, reason string, h http.Header) (int, *envelope) {
		return e.post(t, http.MethodPost, "revoke", jsonBody(t, map[string]string{"serial": serial, "authority_key_id": akiHex, "reason": reason}), h)
	}

	if status, env := revoke(cert.SerialNumber.String(), aki, "keyCompromise", nil); status != http.StatusUnauthorized {
		t.Fatalf("unauthenticated revoke: status %d %+v, want 401", status, env.Errors)
	}
	if status, _ := revoke(cert.SerialNumber.String(), strings.Repeat("00", 20), "keycompromise", bearer()); status != http.StatusNotFound {
		t.Fatalf("revoke with another issuer's key id: status %d, want 404", status)
	}
	if status, _ := revoke("12345", aki, "", bearer()); status != http.StatusNotFound {
		t.Fatalf("revoke of an unknown serial: status %d, want 404", status)
	}
	if status, env := revoke(cert.SerialNumber.String(), aki, "bogus", bearer()); status != http.StatusBadRequest || !strings.Contains(env.Errors[0].Message, "invalid reason") {
		t.Fatalf("revoke with a bad reason: status %d %+v, want 400", status, env.Errors)
	}
	rec, err := e.store.GetCertificate(t.Context(), cert.SerialNumber)
	mustNoErr(t, err)
	if rec.Status != certdb.StatusValid {
		t.Fatalf("refused revocations changed the status to %v", rec.Status)
	}

	status, env := revoke(cert.SerialNumber.String(), strings.ToUpper(aki), "keycompromise", bearer())
	if status != http.StatusOK || string(env.Result) != "{}" {
		t.Fatalf("revoke: status %d result %s errors %+v, want 200 {}", status, env.Result, env.Errors)
	}
	rec, err = e.store.GetCertificate(t.Context(), cert.SerialNumber)
	mustNoErr(t, err)
	if rec.Status != certdb.StatusRevoked || rec.Reason != certdb.ReasonKeyCompromise {
		t.Fatalf("after revoke: status %v reason %v, want revoked keyCompromise", rec.Status, rec.Reason)
	}
	if status, _ := revoke(cert.SerialNumber.String(), aki, "", bearer()); status != http.StatusConflict {
		t.Fatalf("second revoke: status %d, want 409", status)
	}
}

func TestCertInfo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cert := e.issueViaAPI(t, "info.internal")
	certPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	type certInfo struct {
		Subject struct {
			CommonName string `json:"common_name"`
		} `json:"subject"`
		SerialNumber string   `json:"serial_number"`
		SANs         []string `json:"sans"`
		AKI          string   `json:"authority_key_id"`
		SigAlg       string   `json:"sigalg"`
		PEM          string   `json:"pem"`
	}
	check := func(t *testing.T, env *envelope) {
		t.Helper()
		var ci certInfo
		mustNoErr(t, json.Unmarshal(env.Result, &ci))
		if ci.SerialNumber != cert.SerialNumber.String() || ci.Subject.CommonName != "info.internal" || ci.PEM != certPEM ||
			!slices.Equal(ci.SANs, []string{"info.internal"}) || ci.SigAlg != "ECDSAWithSHA256" ||
			!strings.EqualFold(strings.ReplaceAll(ci.AKI, ":", ""), hex.EncodeToString(cert.AuthorityKeyId)) {
			t.Errorf("certinfo = %+v", ci)
		}
	}
	t.Run("by serial", func(t *testing.T) {
		status, env := e.post(t, http.MethodPost, "certinfo", jsonBody(t, map[string]string{
			"serial": cert.SerialNumber.String(), "authority_key_id": hex.EncodeToString(cert.AuthorityKeyId)}), nil)
		if status != http.StatusOK {
			t.Fatalf("status %d %+v", status, env.Errors)
		}
		check(t, env)
	})
	t.Run("by certificate", func(t *testing.T) {
		status, env := e.post(t, http.MethodPost, "certinfo", jsonBody(t, map[string]string{"certificate": certPEM}), nil)
		if status != http.StatusOK {
			t.Fatalf("status %d %+v", status, env.Errors)
		}
		check(t, env)
	})
	for _, tt := range []struct {
		name   string
		body   map[string]string
		status int
	}{
		{"unknown serial", map[string]string{"serial": "4242", "authority_key_id": ""}, http.StatusNotFound},
		{"domain is refused", map[string]string{"domain": "example.com"}, http.StatusBadRequest},
		{"no parameters", map[string]string{"serial": "1"}, http.StatusBadRequest},
		{"garbage certificate", map[string]string{"certificate": "nope"}, http.StatusBadRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if status, env := e.post(t, http.MethodPost, "certinfo", jsonBody(t, tt.body), nil); status != tt.status {
				t.Fatalf("status %d %+v, want %d", status, env.Errors, tt.status)
			}
		})
	}
}

// TestProtocolRefusals: malformed or unacceptable requests get a 4xx with
// a CFSSL envelope and a clear message, never a 500.
func TestProtocolRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	csr := string(newCSR(t, "x.internal", "x.internal"))
	big := bytes.Repeat([]byte(" "), 65<<10)
	tests := []struct {
		name, method, endpoint string
		body                   []byte
		chunked                bool
		status, code           int
		wantMsg                string
	}{
		{"malformed JSON", "POST", "sign", []byte(`{"certificate_request":`), false, 400, 400, "invalid JSON"},
		{"wrong JSON type", "POST", "sign", []byte(`{"certificate_request": 5}`), false, 400, 400, "certificate_request"},
		{"missing CSR", "POST", "sign", []byte(`{"profile":"server"}`), false, 400, 400, "certificate_request"},
		{"bad CSR", "POST", "sign", mustJSON(t, map[string]any{"certificate_request": "not a csr"}), false, 400, 9003, "bad certificate request"},
		{"client serial", "POST", "sign", mustJSON(t, map[string]any{"certificate_request": csr, "serial": 12}), false, 400, 400, "serial"},
		{"extensions", "POST", "sign", mustJSON(t, map[string]any{"certificate_request": csr, "extensions": []any{map[string]any{"id": "1.2.3", "value": "00"}}}), false, 400, 400, "extensions"},
		{"fixed NotAfter", "POST", "sign", mustJSON(t, map[string]any{"certificate_request": csr, "NotAfter": "2099-01-01T00:00:00Z"}), false, 400, 400, "validity"},
		{"oversize body", "POST", "sign", big, false, 413, 413, "larger than the limit"},
		{"oversize chunked body", "POST", "authsign", big, true, 413, 413, "larger than the limit"},
		{"GET", "GET", "sign", nil, false, 405, 405, "use POST"},
		{"unknown endpoint", "POST", "bundle", []byte(`{}`), false, 404, 404, "no CFSSL endpoint"},
		{"newkey", "POST", "newkey", []byte(`{"CN":"x","hosts":["x.internal"]}`), false, 403, 5200, "never generates private keys"},
		{"newcert", "POST", "newcert", []byte(`{"request":{"CN":"x"}}`), false, 403, 5200, "never generates private keys"},
		{"authsign not JSON", "POST", "authsign", []byte(`token=abc`), false, 400, 400, "invalid JSON"},
		{"authsign no token", "POST", "authsign", mustJSON(t, map[string]any{"request": []byte(`{}`)}), false, 401, 401, "token"},
		{"authsign bad base64", "POST", "authsign", []byte(`{"token":"!!","request":"e30="}`), false, 400, 400, "authenticated request"},
		{"revoke decimal serial only", "POST", "revoke", []byte(`{"serial":"0xff"}`), false, 400, 400, "decimal"},
		{"revoke huge serial", "POST", "revoke", mustJSON(t, map[string]string{"serial": strings.Repeat("9", 5000)}), false, 400, 400, "too long"},
		{"info bad JSON", "POST", "info", []byte(`[`), false, 400, 400, "info request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body *bytes.Reader
			if tt.body != nil {
				body = bytes.NewReader(tt.body)
			}
			var status int
			var env *envelope
			if tt.chunked {
				// An io.Reader that is not a *bytes.Reader: no Content-Length.
				status, env = e.post(t, tt.method, tt.endpoint, struct{ *bytes.Reader }{body}, bearer())
			} else if body == nil {
				status, env = e.post(t, tt.method, tt.endpoint, http.NoBody, bearer())
			} else {
				status, env = e.post(t, tt.method, tt.endpoint, body, bearer())
			}
			if status != tt.status || env.Errors[0].Code != tt.code || !strings.Contains(env.Errors[0].Message, tt.wantMsg) {
				t.Fatalf("status %d errors %+v; want %d, code %d, message containing %q", status, env.Errors, tt.status, tt.code, tt.wantMsg)
			}
		})
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	mustNoErr(t, err)
	return b
}
