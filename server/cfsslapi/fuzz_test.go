package cfsslapi_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
	"github.com/certctl/certctl/server/cfsslapi"
)

// fuzzBackend accepts every caller and parses what it is given the way a
// real backend must (IssuanceRequest), returning a fixed certificate. It
// records the last sign request for round-trip checks.
type fuzzBackend struct {
	cert *x509.Certificate
	mu   sync.Mutex
	last *cfsslapi.SignRequest
}

func (b *fuzzBackend) Sign(_ context.Context, _ cfsslapi.Caller, r *cfsslapi.SignRequest) (*x509.Certificate, error) {
	if _, err := r.IssuanceRequest(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.last = r
	b.mu.Unlock()
	return b.cert, nil
}

func (b *fuzzBackend) Info(context.Context, cfsslapi.Caller, string) (*cfsslapi.Info, error) {
	return &cfsslapi.Info{Issuer: b.cert, Profile: issuance.DefaultProfiles()["server"]}, nil
}

func (b *fuzzBackend) Revoke(context.Context, cfsslapi.Caller, *cfsslapi.RevokeRequest) error {
	return nil
}

func (b *fuzzBackend) CertInfo(context.Context, cfsslapi.Caller, *big.Int, []byte) (*x509.Certificate, error) {
	return b.cert, nil
}

var fuzzKey = bytes.Repeat([]byte{0x42}, 32)

func newFuzzHandler(f *testing.F) (*cfsslapi.Handler, *fuzzBackend) {
	f.Helper()
	k, err := keys.Generate(keys.ECDSAP256)
	mustNoErr(f, err)
	serial, err := issuance.NewSerial(rand.Reader)
	mustNoErr(f, err)
	der, err := issuance.SelfSignRoot(k, issuance.RootConfig{CommonName: "Fuzz Root", Validity: 24 * time.Hour}, serial, time.Now())
	mustNoErr(f, err)
	cert, err := x509.ParseCertificate(der)
	mustNoErr(f, err)
	b := &fuzzBackend{cert: cert}
	h, err := cfsslapi.NewHandler(b, cfsslapi.Options{
		AuthKeys:        map[string][]byte{"k": fuzzKey},
		ProfileAuthKeys: map[string][]string{"server": {"k"}},
		DefaultProfile:  "server",
		MaxBodyBytes:    16 << 10,
	})
	mustNoErr(f, err)
	return h, b
}

// serve runs one request and checks the invariants every response keeps:
// no 500 for client input, and a CFSSL envelope.
func serve(t *testing.T, h http.Handler, endpoint string, body []byte) (int, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, cfsslapi.PathPrefix+endpoint, bytes.NewReader(body)))
	if rec.Code >= 500 {
		t.Fatalf("status %d for client input %q: %s", rec.Code, body, rec.Body.Bytes())
	}
	var env struct {
		Success *bool              `json:"success"`
		Errors  []json.RawMessage  `json:"errors"`
		Result  json.RawMessage    `json:"result"`
		Msgs    *[]json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || env.Success == nil || env.Msgs == nil ||
		*env.Success != (rec.Code == http.StatusOK) || (!*env.Success && len(env.Errors) != 1) {
		t.Fatalf("status %d with a malformed envelope %s (err %v)", rec.Code, rec.Body.Bytes(), err)
	}
	return rec.Code, rec.Body.Bytes()
}

func fuzzCSR(f *testing.F) string {
	return string(newCSR(f, "a.internal", "a.internal"))
}

func FuzzSignRequest(f *testing.F) {
	h, b := newFuzzHandler(f)
	csr := fuzzCSR(f)
	for _, s := range []any{
		map[string]any{"certificate_request": csr, "profile": "server"},
		map[string]any{"certificate_request": csr, "hosts": []string{"b.internal", "127.0.0.1", "spiffe://x.internal/a", "a@b.internal"}},
		map[string]any{"certificate_request": csr, "hostname": "a.internal,b.internal", "subject": map[string]any{"CN": "x", "names": []any{map[string]string{"O": "o", "OU": "u"}}}},
		map[string]any{"certificate_request": csr, "serial": 1, "NotBefore": "0001-01-01T00:00:00Z", "bundle": true},
	} {
		f.Add(mustJSON(f, s))
	}
	f.Add([]byte(`{"certificate_request": "-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		status, _ := serve(t, h, "sign", body)
		if status != http.StatusOK {
			return
		}
		// Round trip: the backend saw the CSR as sent and a resolved profile.
		var w struct {
			CSR string `json:"certificate_request"`
		}
		if err := json.Unmarshal(body, &w); err != nil {
			t.Fatalf("accepted a body encoding/json rejects: %v", err)
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.last == nil || string(b.last.CSR) != w.CSR || b.last.Profile == "" {
			t.Fatalf("backend saw %+v for %q", b.last, body)
		}
	})
}

func FuzzAuthSignRequest(f *testing.F) {
	h, _ := newFuzzHandler(f)
	csr := fuzzCSR(f)
	for _, inner := range []string{
		string(mustJSON(f, map[string]any{"certificate_request": csr, "profile": "server"})),
		string(mustJSON(f, map[string]any{"certificate_request": csr})),
		`{"certificate_request": 1}`,
		`not json`,
	} {
		mac := hmac.New(sha256.New, fuzzKey)
		mac.Write([]byte(inner))
		f.Add([]byte(inner), mac.Sum(nil), int64(1700000000))
		f.Add([]byte(inner), []byte("short"), int64(0))
	}
	f.Fuzz(func(t *testing.T, inner, token []byte, ts int64) {
		body := mustJSON(t, map[string]any{"timestamp": ts, "token": token, "request": inner})
		status, resp := serve(t, h, "authsign", body)
		mac := hmac.New(sha256.New, fuzzKey)
		mac.Write(inner)
		if status == http.StatusOK && !hmac.Equal(mac.Sum(nil), token) {
			t.Fatalf("authsign accepted a request without a valid MAC: %s", resp)
		}
		// And the raw body itself, unwrapped.
		serve(t, h, "authsign", inner)
	})
}

func FuzzRevokeRequest(f *testing.F) {
	h, _ := newFuzzHandler(f)
	f.Add([]byte(`{"serial":"123","authority_key_id":"0a:0B","reason":"keyCompromise"}`))
	f.Add([]byte(`{"serial":"-1","reason":"7"}`))
	f.Add([]byte(`{"serial":"99999999999999999999999999999999999999999999999999"}`))
	f.Add([]byte(`{"serial":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		serve(t, h, "revoke", body)
	})
}

func FuzzCertInfoRequest(f *testing.F) {
	h, b := newFuzzHandler(f)
	f.Add(mustJSON(f, map[string]string{"certificate": string(pemCert(b.cert))}))
	f.Add([]byte(`{"serial":"1","authority_key_id":"zz"}`))
	f.Add([]byte(`{"domain":"127.0.0.1:1"}`))
	f.Add([]byte(`{"certificate":{}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		serve(t, h, "certinfo", body)
	})
}

func FuzzInfoRequest(f *testing.F) {
	h, _ := newFuzzHandler(f)
	f.Add([]byte(`{"label":"","profile":"server"}`))
	f.Add([]byte(``))
	f.Add([]byte(`{"profile":5}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		serve(t, h, "info", body)
	})
}

func FuzzProfilesFromCFSSLConfig(f *testing.F) {
	f.Add(readTestConfigF(f))
	f.Add([]byte(profileJSON(`{"expiry":"24h","usages":["cert sign"],"ca_constraint":{"is_ca":true,"max_path_len":3}}`)))
	f.Add([]byte(`{"signing":{"default":{"expiry":"1h","usages":["signing"],"allowed_extensions":["1.2.3"]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := cfsslapi.ProfilesFromCFSSLConfig(data, cfsslapi.ImportOptions{Names: issuance.DefaultProfiles()["server"].Names})
		if err != nil {
			return
		}
		// Everything returned is usable as is.
		for name, pc := range cfg.Profiles {
			if _, err := issuance.NewProfile(name, pc); err != nil {
				t.Fatalf("returned profile %q does not validate: %v", name, err)
			}
		}
		if _, err := cfsslapi.NewHandler(&fuzzBackend{}, cfg.Options()); err != nil {
			t.Fatalf("returned options are refused: %v", err)
		}
	})
}

func readTestConfigF(f *testing.F) []byte {
	f.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "ca-config.json"))
	mustNoErr(f, err)
	return data
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
