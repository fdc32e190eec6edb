package cfsslapi_test

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/cfssl/config"

	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/server/cfsslapi"
)

func readTestConfig(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "ca-config.json"))
	mustNoErr(t, err)
	return data
}

// The fixture is a configuration CFSSL itself accepts.
func TestTestdataIsValidCFSSLConfig(t *testing.T) {
	t.Parallel()
	cfg, err := config.LoadConfig(readTestConfig(t))
	if err != nil {
		t.Fatalf("cfssl config.LoadConfig(testdata/ca-config.json) error = %v", err)
	}
	if cfg.Signing.Profiles["peer"].Provider == nil {
		t.Fatal("cfssl did not attach an auth provider to the peer profile")
	}
}

func TestProfilesFromCFSSLConfig(t *testing.T) {
	t.Parallel()
	names := issuance.DefaultProfiles()["server"].Names
	got, err := cfsslapi.ProfilesFromCFSSLConfig(readTestConfig(t), cfsslapi.ImportOptions{Names: names})
	if err != nil {
		t.Fatalf("ProfilesFromCFSSLConfig() error = %v", err)
	}
	d := func(s string) issuance.Duration {
		v, err := time.ParseDuration(s)
		mustNoErr(t, err)
		return issuance.Duration(v)
	}
	zero := 0
	want := map[string]issuance.ProfileConfig{
		"default": {Validity: d("168h"), Backdate: d("5m"), KeyUsage: []string{"digital_signature", "key_encipherment"},
			ExtKeyUsage: []string{"server_auth"}, Names: names},
		"server": {Validity: d("8760h"), Backdate: d("5m"), KeyUsage: []string{"digital_signature", "key_encipherment"},
			ExtKeyUsage: []string{"server_auth"}, Names: names},
		"client": {Validity: d("8760h"), Backdate: d("5m"), KeyUsage: []string{"digital_signature", "key_encipherment"},
			ExtKeyUsage: []string{"client_auth"}, Names: names},
		"peer": {Validity: d("2160h"), Backdate: d("10m"), KeyUsage: []string{"digital_signature", "key_encipherment"},
			ExtKeyUsage: []string{"client_auth", "server_auth"}, Names: names},
		"ocsp": {Validity: d("168h"), Backdate: d("5m"), KeyUsage: []string{"digital_signature"},
			ExtKeyUsage: []string{"ocsp_signing"}, OCSPNoCheck: true, Names: names},
		"intermediate": {Validity: d("43800h"), Backdate: d("5m"), KeyUsage: []string{"digital_signature", "cert_sign", "crl_sign"},
			CA: true, MaxPathLen: &zero},
	}
	if !reflect.DeepEqual(got.Profiles, want) {
		t.Errorf("Profiles =\n%+v\nwant\n%+v", got.Profiles, want)
	}
	if got.DefaultProfile != "default" {
		t.Errorf("DefaultProfile = %q", got.DefaultProfile)
	}
	wantKeys := map[string][]byte{}
	for n, h := range map[string]string{"peer-key": peerKeyHex, "peer-key-old": peerOldKeyHex} {
		k, err := hex.DecodeString(h)
		mustNoErr(t, err)
		wantKeys[n] = k
	}
	if !reflect.DeepEqual(got.AuthKeys, wantKeys) {
		t.Errorf("AuthKeys = %x, want %x (unused keys left out)", got.AuthKeys, wantKeys)
	}
	if !reflect.DeepEqual(got.ProfileAuthKeys, map[string][]string{"peer": {"peer-key", "peer-key-old"}}) {
		t.Errorf("ProfileAuthKeys = %v", got.ProfileAuthKeys)
	}
	for _, w := range []string{"signing.default.issuer_urls/ocsp_url/crl_url", "auth_keys.unused-key"} {
		if !slices.ContainsFunc(got.Warnings, func(s string) bool { return strings.Contains(s, w) }) {
			t.Errorf("Warnings %q lack %q", got.Warnings, w)
		}
	}
	if _, err := cfsslapi.NewHandler(&backend{}, got.Options()); err != nil {
		t.Errorf("NewHandler(converted options) error = %v", err)
	}
}

// profileJSON wraps one profile body as signing.profiles.p.
func profileJSON(body string) string {
	return fmt.Sprintf(`{"signing":{"default":{"expiry":"24h","usages":["signing","server auth"]},"profiles":{"p":%s}},
		"auth_keys":{"k":{"type":"standard","key":%q},"short":{"type":"standard","key":"00ff"},
		"nothex":{"type":"standard","key":"zz0123456789abcdef0123456789abcd"},"env":{"type":"standard","key":"env:CFSSL_KEY"},
		"odd":{"type":"nacl","key":%q}}}`, body, peerKeyHex, peerKeyHex)
}

func TestProfilesFromCFSSLConfigRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, json, path, reason string
	}{
		{"not JSON", `{`, "(file)", "not valid JSON"},
		{"no signing", `{"auth_keys":{}}`, "signing", "missing"},
		{"name whitelist", profileJSON(`{"expiry":"24h","usages":["server auth"],"name_whitelist":"^.*\\.example\\.com$"}`),
			"signing.profiles.p.name_whitelist", "regular expression"},
		{"unlimited CA path", profileJSON(`{"expiry":"24h","usages":["cert sign"],"ca_constraint":{"is_ca":true}}`),
			"signing.profiles.p.ca_constraint", "unlimited"},
		{"unknown usage", profileJSON(`{"expiry":"24h","usages":["server auth","frobnicate"]}`), "signing.profiles.p.usages[1]", "frobnicate"},
		{"any usage", profileJSON(`{"expiry":"24h","usages":["any"]}`), "signing.profiles.p.usages[0]", "not supported"},
		{"no usages", profileJSON(`{"expiry":"24h"}`), "signing.profiles.p.usages", "missing"},
		{"no expiry", profileJSON(`{"usages":["server auth"]}`), "signing.profiles.p.expiry", "missing"},
		{"bad expiry", profileJSON(`{"expiry":"1 year","usages":["server auth"]}`), "signing.profiles.p.expiry", "Go duration"},
		{"negative backdate", profileJSON(`{"expiry":"24h","backdate":"-1h","usages":["server auth"]}`), "signing.profiles.p.backdate", "non-negative"},
		{"unknown key name", profileJSON(`{"expiry":"24h","usages":["server auth"],"auth_key":"nosuch"}`), "signing.profiles.p", `"nosuch" is not defined`},
		{"unknown prev key name", profileJSON(`{"expiry":"24h","usages":["server auth"],"auth_key":"k","prev_auth_key":"gone"}`), "signing.profiles.p", `"gone" is not defined`},
		{"short key", profileJSON(`{"expiry":"24h","usages":["server auth"],"auth_key":"short"}`), "auth_keys.short.key", "at least 16"},
		{"key not hex", profileJSON(`{"expiry":"24h","usages":["server auth"],"auth_key":"nothex"}`), "auth_keys.nothex.key", "not a hex"},
		{"env key without resolver", profileJSON(`{"expiry":"24h","usages":["server auth"],"auth_key":"env"}`), "auth_keys.env.key", "env: reference"},
		{"key type", profileJSON(`{"expiry":"24h","usages":["server auth"],"auth_key":"odd"}`), "auth_keys.odd.type", "only \"standard\""},
		{"remote", `{"signing":{"default":{"remote":"x","expiry":"24h","usages":["server auth"]}},"remotes":{"x":"127.0.0.1:8888"}}`,
			"signing.default.remote", "forwards"},
		{"fixed dates", profileJSON(`{"expiry":"24h","usages":["server auth"],"not_after":"2030-01-01T00:00:00Z"}`), "signing.profiles.p.not_before", "fixed validity"},
		{"default clash", `{"signing":{"profiles":{"default":{"expiry":"24h","usages":["server auth"]}}}}`, "signing.profiles.default", "rename"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cfsslapi.ProfilesFromCFSSLConfig([]byte(tt.json), cfsslapi.ImportOptions{})
			var ce *cfsslapi.CFSSLConfigError
			if !errors.As(err, &ce) || ce.Path != tt.path || !strings.Contains(ce.Reason, tt.reason) {
				t.Fatalf("error = %v, want CFSSLConfigError at %s mentioning %q", err, tt.path, tt.reason)
			}
			if strings.Contains(err.Error(), peerKeyHex) {
				t.Errorf("error reveals a key: %v", err)
			}
		})
	}

	t.Run("profile limits of issuance apply", func(t *testing.T) {
		// CFSSL's example configs use 87600h (10 years) for leaves.
		_, err := cfsslapi.ProfilesFromCFSSLConfig([]byte(profileJSON(`{"expiry":"87600h","usages":["server auth"]}`)), cfsslapi.ImportOptions{})
		var ce *issuance.ConfigError
		if !errors.As(err, &ce) || ce.Field != "validity" || !strings.Contains(err.Error(), "signing.profiles.p") {
			t.Fatalf("error = %v, want an issuance.ConfigError on validity naming the profile", err)
		}
	})
}

func TestProfilesFromCFSSLConfigResolveKey(t *testing.T) {
	t.Parallel()
	data := []byte(profileJSON(`{"expiry":"24h","usages":["server auth"],"auth_key":"env"}`))
	var asked []string
	got, err := cfsslapi.ProfilesFromCFSSLConfig(data, cfsslapi.ImportOptions{ResolveKey: func(ref string) (string, error) {
		asked = append(asked, ref)
		return "  " + peerOldKeyHex + "\n", nil
	}})
	mustNoErr(t, err)
	want, _ := hex.DecodeString(peerOldKeyHex)
	if !slices.Equal(asked, []string{"env:CFSSL_KEY"}) || !slices.Equal(got.AuthKeys["env"], want) {
		t.Fatalf("asked %q, key %x; want [env:CFSSL_KEY], %x", asked, got.AuthKeys["env"], want)
	}

	_, err = cfsslapi.ProfilesFromCFSSLConfig(data, cfsslapi.ImportOptions{ResolveKey: func(string) (string, error) {
		return "", errors.New("CFSSL_KEY is not set")
	}})
	var ce *cfsslapi.CFSSLConfigError
	if !errors.As(err, &ce) || !strings.Contains(ce.Reason, "CFSSL_KEY is not set") {
		t.Fatalf("error = %v, want the resolver's error", err)
	}
}

func TestNewHandlerRejects(t *testing.T) {
	t.Parallel()
	key := make([]byte, 16)
	tests := []struct {
		name string
		b    cfsslapi.Backend
		opts cfsslapi.Options
		want string
	}{
		{"nil backend", nil, cfsslapi.Options{}, "needs a backend"},
		{"short key", &backend{}, cfsslapi.Options{AuthKeys: map[string][]byte{"k": key[:15]}}, "at least 16"},
		{"unknown key name", &backend{}, cfsslapi.Options{AuthKeys: map[string][]byte{"k": key},
			ProfileAuthKeys: map[string][]string{"peer": {"k", "nosuch"}}}, `"nosuch"`},
		{"negative body limit", &backend{}, cfsslapi.Options{MaxBodyBytes: -1}, "MaxBodyBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := cfsslapi.NewHandler(tt.b, tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewHandler() error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}
