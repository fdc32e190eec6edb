package transport

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const validYAML = `ca_url: https://ca.internal:8443
ca_roots: /etc/certctl/roots.pem
profile: peer
names: [api.internal, 10.0.0.1, "spiffe://example.internal/api"]
common_name: api
key_type: ecdsa-p384
key: /var/lib/api/key.pem
cert_file: /var/lib/api/cert.pem
token_file: /run/secrets/token
renew_at: 0.5
jitter: 30s
retry_min: 2s
retry_max: 5m
enroll_timeout: 1m
`

const validJSON = `{"ca_url": "https://ca.internal:8443", "ca_roots": "/etc/certctl/roots.pem", "profile": "peer",
 "names": ["api.internal", "10.0.0.1", "spiffe://example.internal/api"], "common_name": "api", "key_type": "ecdsa-p384",
 "key": "/var/lib/api/key.pem", "cert_file": "/var/lib/api/cert.pem", "token_file": "/run/secrets/token",
 "renew_at": 0.5, "jitter": "30s", "retry_min": "2s", "retry_max": "5m", "enroll_timeout": "1m"}`

var wantIdentity = Identity{
	CAURL: "https://ca.internal:8443", CARoots: "/etc/certctl/roots.pem", Profile: "peer",
	Names: []string{"api.internal", "10.0.0.1", "spiffe://example.internal/api"}, CommonName: "api", KeyType: "ecdsa-p384",
	Key: "/var/lib/api/key.pem", CertFile: "/var/lib/api/cert.pem", TokenFile: "/run/secrets/token",
	RenewAt: 0.5, Jitter: 30 * time.Second, RetryMin: 2 * time.Second, RetryMax: 5 * time.Minute, EnrollTimeout: time.Minute,
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadIdentity(t *testing.T) {
	for _, tt := range []struct{ name, file, content string }{
		{"yaml", "id.yaml", validYAML},
		{"yml", "id.yml", validYAML},
		{"json", "id.json", validJSON},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadIdentity(writeFile(t, tt.file, tt.content))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, wantIdentity) {
				t.Fatalf("LoadIdentity() =\n%+v\nwant\n%+v", got, wantIdentity)
			}
		})
	}
}

func TestLoadIdentityErrors(t *testing.T) {
	base := strings.Replace(validYAML, "token_file: /run/secrets/token\n", "", 1)
	tests := []struct {
		name, file, content string
		want                []string // substrings of the error
	}{
		{"unknown yaml field", "id.yaml", base + "renew_after: 0.5\n", []string{"line 14", "renew_after"}},
		{"unknown json field", "id.json", `{"ca_url": "https://x", "bogus": 1}`, []string{`"bogus"`}},
		{"bad duration", "id.yaml", strings.Replace(base, "jitter: 30s", "jitter: soon", 1), []string{"line 10", "soon"}},
		{"json duration as number", "id.json", strings.Replace(validJSON, `"30s"`, `30`, 1), []string{"jitter"}},
		{"http url", "id.yaml", strings.Replace(base, "https://", "http://", 1), []string{"ca_url", "https"}},
		{"no roots", "id.yaml", strings.Replace(base, "ca_roots: /etc/certctl/roots.pem\n", "", 1), []string{"ca_roots"}},
		{"no names", "id.yaml", strings.Replace(base, `names: [api.internal, 10.0.0.1, "spiffe://example.internal/api"]`, "names: []", 1), []string{"names"}},
		{"no profile", "id.yaml", strings.Replace(base, "profile: peer\n", "", 1), []string{"profile"}},
		{"bad key type", "id.yaml", strings.Replace(base, "ecdsa-p384", "dsa-1024", 1), []string{"key_type"}},
		{"renew_at too big", "id.yaml", strings.Replace(base, "renew_at: 0.5", "renew_at: 1.5", 1), []string{"renew_at"}},
		{"negative retry", "id.yaml", strings.Replace(base, "retry_min: 2s", "retry_min: -2s", 1), []string{"retry_min"}},
		{"retry_max < retry_min", "id.yaml", strings.Replace(base, "retry_max: 5m", "retry_max: 1s", 1), []string{"retry_max"}},
		{"token and token_file", "id.yaml", validYAML + "token: abc\n", []string{"token"}},
		{"empty", "id.yaml", "", []string{"empty"}},
		{"trailing json", "id.json", validJSON + "{}", []string{"trailing"}},
		{"extension", "id.toml", base, []string{".toml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadIdentity(writeFile(t, tt.file, tt.content))
			if err == nil {
				t.Fatal("LoadIdentity succeeded")
			}
			if !errors.Is(err, ErrInvalidIdentity) {
				t.Errorf("error %v does not wrap ErrInvalidIdentity", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := LoadIdentity(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestIdentityFileFields: every Identity field is readable from files under
// its tag.
func TestIdentityFileFields(t *testing.T) {
	it, ft := reflect.TypeFor[Identity](), reflect.TypeFor[identityFile]()
	if it.NumField() != ft.NumField() {
		t.Fatalf("Identity has %d fields, identityFile %d", it.NumField(), ft.NumField())
	}
	for i := range it.NumField() {
		tag := strings.Split(it.Field(i).Tag.Get("json"), ",")[0]
		if got := ft.Field(i).Tag.Get("json"); got != tag || ft.Field(i).Name != it.Field(i).Name {
			t.Errorf("field %s: json tag %q, identityFile has %s %q", it.Field(i).Name, tag, ft.Field(i).Name, got)
		}
	}
}

func TestWithDefaults(t *testing.T) {
	id := Identity{Names: []string{"10.0.0.1", "spiffe://x/y", "db.internal"}}.withDefaults()
	if id.CommonName != "db.internal" || id.RenewAt != DefaultRenewAt || id.RetryMin != DefaultRetryMin ||
		id.RetryMax != DefaultRetryMax || id.EnrollTimeout != DefaultEnrollTimeout {
		t.Fatalf("withDefaults() = %+v", id)
	}
	if id := (Identity{Names: []string{"10.0.0.1"}, RetryMin: 2 * time.Minute}).withDefaults(); id.CommonName != "" || id.RetryMax != 2*time.Minute {
		t.Fatalf("withDefaults() = %+v", id)
	}
}

// FuzzParseIdentity: identity files are parsed without panics, and what
// parses as YAML re-parses to the same Identity when written back as JSON.
func FuzzParseIdentity(f *testing.F) {
	f.Add([]byte(validYAML), false)
	f.Add([]byte(validJSON), true)
	f.Add([]byte("names: [a]\nrenew_at: .nan\n"), false)
	f.Add([]byte(`{"jitter": "-1h"}`), true)
	f.Fuzz(func(t *testing.T, data []byte, isJSON bool) {
		var id Identity
		var err error
		if isJSON {
			id, err = parseIdentityJSON(data)
		} else {
			id, err = parseIdentityYAML(data)
		}
		if err != nil {
			return
		}
		_ = id.check()
		_ = id.withDefaults()
	})
}
