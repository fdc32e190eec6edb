package issuance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestDefaultProfiles(t *testing.T) {
	t.Parallel()
	d := DefaultProfiles()
	for _, name := range []string{"server", "client", "peer", "ocsp", "intermediate"} {
		c, ok := d[name]
		if !ok {
			t.Fatalf("no default profile %q", name)
		}
		p, err := NewProfile(name, c)
		if err != nil {
			t.Fatalf("NewProfile(%q): %v", name, err)
		}
		if p.Name() != name || p.IsCA() != (name == "intermediate") {
			t.Errorf("%s: Name %q IsCA %v", name, p.Name(), p.IsCA())
		}
		if p.Validity() > 30*day && !p.IsCA() {
			t.Errorf("%s: leaf validity %v is longer than 30 days", name, p.Validity())
		}
		if c.Names.AllowWildcardNames {
			t.Errorf("%s allows wildcard names", name)
		}
	}
	if len(d) != 5 {
		t.Errorf("DefaultProfiles has %d profiles, want 5", len(d))
	}
	// Each call returns a fresh map: changing one does not change the next.
	d["server"].Names.DNS[0] = "changed"
	if DefaultProfiles()["server"].Names.DNS[0] == "changed" {
		t.Error("DefaultProfiles shares state between calls")
	}
}

// TestProfileConfigYAML decodes profiles as cmd/certctl does (yaml.v3 with
// KnownFields) and checks the tags and Duration round trip.
func TestProfileConfigYAML(t *testing.T) {
	t.Parallel()
	out, err := yaml.Marshal(DefaultProfiles())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"validity: 30d", "backdate: 1m0s", "ext_key_usage:", "max_path_len: 0", "ocsp_no_check: true", "common_name:"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("YAML lacks %q:\n%s", want, out)
		}
	}
	var back map[string]ProfileConfig
	dec := yaml.NewDecoder(bytes.NewReader(out))
	dec.KnownFields(true)
	if err := dec.Decode(&back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, DefaultProfiles()) {
		t.Fatalf("YAML round trip changed the profiles:\n%s", out)
	}

	const doc = `
db:
  validity: 14d
  backdate: 30s
  ext_key_usage: [server_auth]
  names:
    dns: ["*.db.internal"]
    ip: [10.0.0.0/8]
    allow_wildcard_names: true
  key_types: [ecdsa-p256, ed25519]
sub:
  validity: 8760h
  ca: true
  max_path_len: 0
  name_constraints:
    critical: true
    permitted_dns: [.internal]
    excluded_ip: [0.0.0.0/0]
`
	var got map[string]ProfileConfig
	dec = yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	db, err := NewProfile("db", got["db"])
	if err != nil {
		t.Fatal(err)
	}
	if db.Validity() != 14*day || db.Backdate() != 30*time.Second || !db.allowWildcard {
		t.Errorf("db: validity %v backdate %v", db.Validity(), db.Backdate())
	}
	if _, err := NewProfile("sub", got["sub"]); err != nil {
		t.Fatal(err)
	}

	// Unknown keys are refused by KnownFields (catches tag typos).
	dec = yaml.NewDecoder(strings.NewReader("x:\n  validity: 1d\n  validty: 2d\n"))
	dec.KnownFields(true)
	if err := dec.Decode(&got); err == nil {
		t.Fatal("unknown field accepted")
	}
	// Bad durations are refused at decode time.
	dec = yaml.NewDecoder(strings.NewReader("x:\n  validity: -1d\n"))
	if err := dec.Decode(&got); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Fatalf("negative duration: %v", err)
	}

	// JSON uses the same names.
	j, err := json.Marshal(DefaultProfiles()["client"])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(j), `"validity":"30d"`) || !strings.Contains(string(j), `"common_name":["*"]`) {
		t.Errorf("JSON = %s", j)
	}
	var cj ProfileConfig
	if err := json.Unmarshal(j, &cj); err != nil || !reflect.DeepEqual(cj, DefaultProfiles()["client"]) {
		t.Errorf("JSON round trip: %v", err)
	}
}

func TestDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want time.Duration
		text string
		err  string
	}{
		{in: "30d", want: 30 * day, text: "30d"},
		{in: "720h", want: 30 * day, text: "30d"},
		{in: "15m", want: 15 * time.Minute, text: "15m0s"},
		{in: "1h30m", want: 90 * time.Minute, text: "1h30m0s"},
		{in: "0d", want: 0, text: "0s"},
		{in: " 7d ", want: 7 * day, text: "7d"},
		{in: "", err: "empty"},
		{in: "-1h", err: "negative"},
		{in: "-3d", err: "negative"},
		{in: "1.5d", err: "whole number"},
		{in: "+3d", err: "whole number"},
		{in: "d", err: "whole number"},
		{in: "30", err: "Go duration"},
		{in: "abc", err: "Go duration"},
		{in: "999999999999d", err: "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var d Duration
			err := d.UnmarshalText([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("UnmarshalText(%q) = %v, %v; want error mentioning %q", tt.in, time.Duration(d), err, tt.err)
				}
				return
			}
			if err != nil || time.Duration(d) != tt.want {
				t.Fatalf("UnmarshalText(%q) = %v, %v; want %v", tt.in, time.Duration(d), err, tt.want)
			}
			text, err := d.MarshalText()
			if err != nil || string(text) != tt.text {
				t.Fatalf("MarshalText = %q, %v; want %q", text, err, tt.text)
			}
			var back Duration
			if err := back.UnmarshalText(text); err != nil || back != d {
				t.Fatalf("round trip %q -> %v, %v", text, back, err)
			}
		})
	}
}

func TestNewProfileRejects(t *testing.T) {
	t.Parallel()
	leaf := func(edit func(*ProfileConfig)) ProfileConfig {
		c := DefaultProfiles()["server"]
		edit(&c)
		return c
	}
	ca := func(edit func(*ProfileConfig)) ProfileConfig {
		c := DefaultProfiles()["intermediate"]
		edit(&c)
		return c
	}
	one, minus := 1, -1
	tests := []struct {
		name, field, reason string
		cfg                 ProfileConfig
	}{
		{"zero validity", "validity", "must be > 0", leaf(func(c *ProfileConfig) { c.Validity = 0 })},
		{"leaf validity too long", "validity", "exceeds the leaf limit of 398d", leaf(func(c *ProfileConfig) { c.Validity = Duration(399 * day) })},
		{"ca validity too long", "validity", "exceeds the CA limit", ca(func(c *ProfileConfig) { c.Validity = Duration(21 * 365 * day) })},
		{"sub-second validity", "validity", "whole number of seconds", leaf(func(c *ProfileConfig) { c.Validity = Duration(time.Hour + time.Millisecond) })},
		{"negative backdate", "backdate", "must not be negative", leaf(func(c *ProfileConfig) { c.Backdate = Duration(-time.Minute) })},
		{"backdate too long", "backdate", "exceeds the limit of 1h", leaf(func(c *ProfileConfig) { c.Backdate = Duration(2 * time.Hour) })},
		{"backdate not shorter than validity", "backdate", "shorter than validity", leaf(func(c *ProfileConfig) {
			c.Validity, c.Backdate = Duration(time.Hour), Duration(time.Hour)
		})},
		{"unknown key usage", "key_usage[1]", `unknown key usage "signing"`, leaf(func(c *ProfileConfig) { c.KeyUsage = []string{"digital_signature", "signing"} })},
		{"cert_sign on leaf", "key_usage[0]", "only allowed on CA profiles", leaf(func(c *ProfileConfig) { c.KeyUsage = []string{"cert_sign"} })},
		{"crl_sign on leaf", "key_usage[0]", "only allowed on CA profiles", leaf(func(c *ProfileConfig) { c.KeyUsage = []string{"crl_sign"} })},
		{"ca without cert_sign", "key_usage", "must include cert_sign", ca(func(c *ProfileConfig) { c.KeyUsage = []string{"crl_sign"} })},
		{"unknown eku", "ext_key_usage[0]", `unknown extended key usage "any"`, leaf(func(c *ProfileConfig) { c.ExtKeyUsage = []string{"any"} })},
		{"duplicate eku", "ext_key_usage[1]", "listed twice", leaf(func(c *ProfileConfig) { c.ExtKeyUsage = []string{"server_auth", "server_auth"} })},
		{"leaf without eku", "ext_key_usage", "at least one", leaf(func(c *ProfileConfig) { c.ExtKeyUsage = nil })},
		{"ocsp_signing on ca", "ext_key_usage[0]", "not allowed on CA", ca(func(c *ProfileConfig) { c.ExtKeyUsage = []string{"ocsp_signing"} })},
		{"ocsp_no_check without ocsp_signing", "ocsp_no_check", "requires ext_key_usage ocsp_signing", leaf(func(c *ProfileConfig) { c.OCSPNoCheck = true })},
		{"ocsp_no_check on ca", "ocsp_no_check", "only for OCSP responder", ca(func(c *ProfileConfig) { c.OCSPNoCheck = true })},
		{"max_path_len on leaf", "max_path_len", "only allowed on CA", leaf(func(c *ProfileConfig) { c.MaxPathLen = &one })},
		{"negative max_path_len", "max_path_len", ">= 0", ca(func(c *ProfileConfig) { c.MaxPathLen = &minus })},
		{"name constraints on leaf", "name_constraints", "only allowed on CA", leaf(func(c *ProfileConfig) {
			c.NameConstraints = &NameConstraintsConfig{Critical: true, PermittedDNS: []string{"internal"}}
		})},
		{"name constraints not critical", "name_constraints.critical", "must be true", ca(func(c *ProfileConfig) {
			c.NameConstraints = &NameConstraintsConfig{PermittedDNS: []string{"internal"}}
		})},
		{"empty name constraints", "name_constraints", "lists no constraint", ca(func(c *ProfileConfig) {
			c.NameConstraints = &NameConstraintsConfig{Critical: true}
		})},
		{"bad constraint cidr", "name_constraints.permitted_ip[0]", "not a CIDR", ca(func(c *ProfileConfig) {
			c.NameConstraints = &NameConstraintsConfig{Critical: true, PermittedIP: []string{"10.0.0.1"}}
		})},
		{"bad constraint domain", "name_constraints.excluded_dns[0]", "not a domain", ca(func(c *ProfileConfig) {
			c.NameConstraints = &NameConstraintsConfig{Critical: true, ExcludedDNS: []string{"*.internal"}}
		})},
		{"bad constraint email", "name_constraints.permitted_email[0]", "not a mailbox or domain", ca(func(c *ProfileConfig) {
			c.NameConstraints = &NameConstraintsConfig{Critical: true, PermittedEmail: []string{"a@@b"}}
		})},
		{"dns pattern with inner **", "names.dns[1]", "leftmost", leaf(func(c *ProfileConfig) { c.Names.DNS = []string{"a.internal", "db.**.internal"} })},
		{"dns pattern partial wildcard", "names.dns[0]", "whole segments", leaf(func(c *ProfileConfig) { c.Names.DNS = []string{"web-*.internal"} })},
		{"dns pattern bad label", "names.dns[0]", "'_'", leaf(func(c *ProfileConfig) { c.Names.DNS = []string{"a_b.internal"} })},
		{"dns pattern two **", "names.dns[0]", "at most one", leaf(func(c *ProfileConfig) { c.Names.DNS = []string{"**.**"} })},
		{"bad ip pattern", "names.ip[0]", "not a CIDR or an IP address", leaf(func(c *ProfileConfig) { c.Names.IP = []string{"localhost"} })},
		{"bad cidr pattern", "names.ip[0]", "invalid CIDR", leaf(func(c *ProfileConfig) { c.Names.IP = []string{"10.0.0.0/33"} })},
		{"uri pattern without scheme", "names.uri[0]", "scheme://", leaf(func(c *ProfileConfig) { c.Names.URI = []string{"example.internal/**"} })},
		{"email pattern without @", "names.email[0]", "must look like", leaf(func(c *ProfileConfig) { c.Names.Email = []string{"example.internal"} })},
		{"cn pattern partial wildcard", "names.common_name[0]", "whole segments", leaf(func(c *ProfileConfig) { c.Names.CommonName = []string{"app-*"} })},
		{"ca with dns names", "names.dns", "no subject alternative names", ca(func(c *ProfileConfig) { c.Names.DNS = []string{"**.internal"} })},
		{"ca with wildcard names", "names.allow_wildcard_names", "meaningless", ca(func(c *ProfileConfig) { c.Names.AllowWildcardNames = true })},
		{"unknown key type", "key_types[1]", `unknown key type "rsa-1024"`, leaf(func(c *ProfileConfig) { c.KeyTypes = []string{"ed25519", "rsa-1024"} })},
		{"empty key type", "key_types[0]", "empty key type", leaf(func(c *ProfileConfig) { c.KeyTypes = []string{""} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewProfile("test", tt.cfg)
			var ce *ConfigError
			if !errors.As(err, &ce) || p != nil {
				t.Fatalf("NewProfile() = %v, %v; want *ConfigError", p, err)
			}
			if ce.Field != tt.field || ce.Profile != "test" || !strings.Contains(ce.Reason, tt.reason) {
				t.Fatalf("ConfigError = %+v, want field %q, reason containing %q", ce, tt.field, tt.reason)
			}
			if want := fmt.Sprintf("issuance: profile %q: %s: %s", "test", tt.field, ce.Reason); err.Error() != want {
				t.Errorf("Error() = %q, want %q", err, want)
			}
		})
	}
	if _, err := NewProfile("", DefaultProfiles()["server"]); err == nil {
		t.Error("NewProfile with an empty name succeeded")
	}
}

func TestConfigErrorMessage(t *testing.T) {
	t.Parallel()
	_, err := NewProfile("server", ProfileConfig{})
	if err == nil || err.Error() != `issuance: profile "server": validity: must be > 0` {
		t.Fatalf("error = %v", err)
	}
}

func TestProfileConfigIsCopied(t *testing.T) {
	t.Parallel()
	c := DefaultProfiles()["server"]
	p := mustProfile(t, "server", c)
	c.Names.DNS[0] = "changed"
	got := p.Config()
	if got.Names.DNS[0] != "localhost" {
		t.Fatal("Profile shares the caller's slices")
	}
	got.Names.DNS[0] = "changed"
	if p.Config().Names.DNS[0] != "localhost" {
		t.Fatal("Config() shares the profile's slices")
	}
	// Defaults are filled in.
	ca := mustProfile(t, "ca", ProfileConfig{Validity: Duration(day), CA: true}).Config()
	if ca.MaxPathLen == nil || *ca.MaxPathLen != 0 || len(ca.KeyUsage) != 3 || len(ca.KeyTypes) != 6 {
		t.Errorf("CA defaults: %+v", ca)
	}
}
