package issuance

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/keys"
)

func logKeyPEM(t testing.TB, kt keys.KeyType, idx int) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(testKey(t, kt, idx).Public())
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func ctConfig(t testing.TB) *CTConfig {
	return &CTConfig{
		Logs: []CTLogConfig{
			{URL: "https://ct1.example.test/log", PublicKey: logKeyPEM(t, keys.ECDSAP256, 50), Operator: "A"},
			{URL: "http://127.0.0.1:6962/test-log/", PublicKey: logKeyPEM(t, keys.RSA2048, 51), Operator: "B"},
		},
		Require: 2,
	}
}

func TestNewProfileCT(t *testing.T) {
	pc := DefaultProfiles()["server"]
	pc.CT = ctConfig(t)
	p, err := NewProfile("server", pc)
	if err != nil {
		t.Fatal(err)
	}
	pol := p.CT()
	if pol == nil || len(pol.Logs) != 2 || pol.Timeout != defaultCTTimeout || pol.IssueWithoutSCTs || pol.Require != 2 {
		t.Fatalf("CT() = %+v", pol)
	}
	if pol.Logs[1].URL != "http://127.0.0.1:6962/test-log" {
		t.Errorf("log URL %q: trailing slash not removed", pol.Logs[1].URL)
	}
	if got := p.Config().CT; got.OnFailure != CTOnFailureFail || time.Duration(got.Timeout) != defaultCTTimeout {
		t.Errorf("Config().CT defaults = %q, %v", got.OnFailure, got.Timeout)
	}
	if DefaultProfiles()["server"].CT != nil {
		t.Error("default profiles use CT")
	}
}

func TestNewProfileCTRejects(t *testing.T) {
	p256 := logKeyPEM(t, keys.ECDSAP256, 50)
	tests := []struct {
		name, field string
		mod         func(c *CTConfig)
	}{
		{"no logs", "ct.logs", func(c *CTConfig) { c.Logs = nil }},
		{"relative URL", "ct.logs[0].url", func(c *CTConfig) { c.Logs[0].URL = "ct.example.test/log" }},
		{"ftp URL", "ct.logs[0].url", func(c *CTConfig) { c.Logs[0].URL = "ftp://ct.example.test/log" }},
		{"URL with query", "ct.logs[0].url", func(c *CTConfig) { c.Logs[0].URL = "https://ct.example.test/log?x=1" }},
		{"no operator", "ct.logs[1].operator", func(c *CTConfig) { c.Logs[1].Operator = " " }},
		{"key not PEM", "ct.logs[0].public_key", func(c *CTConfig) { c.Logs[0].PublicKey = "/etc/ct/log.pem" }},
		{"key is a certificate block", "ct.logs[0].public_key", func(c *CTConfig) {
			c.Logs[0].PublicKey = strings.Replace(p256, "PUBLIC KEY", "CERTIFICATE", 2)
		}},
		{"P-384 key", "ct.logs[0].public_key", func(c *CTConfig) { c.Logs[0].PublicKey = logKeyPEM(t, keys.ECDSAP384, 52) }},
		{"Ed25519 key", "ct.logs[0].public_key", func(c *CTConfig) { c.Logs[0].PublicKey = logKeyPEM(t, keys.Ed25519, 53) }},
		{"same key twice", "ct.logs[1].public_key", func(c *CTConfig) { c.Logs[1].PublicKey = p256 }},
		{"require 0", "ct.require", func(c *CTConfig) { c.Require = 0 }},
		{"require more than logs", "ct.require", func(c *CTConfig) { c.Require = 3 }},
		{"distinct operators impossible", "ct.require_distinct_operators", func(c *CTConfig) {
			c.Logs[1].Operator = "A"
			c.RequireDistinctOperators = true
		}},
		{"unknown on_failure", "ct.on_failure", func(c *CTConfig) { c.OnFailure = "ignore" }},
		{"timeout too long", "ct.timeout", func(c *CTConfig) { c.Timeout = Duration(time.Hour) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc := DefaultProfiles()["server"]
			pc.CT = ctConfig(t)
			tt.mod(pc.CT)
			_, err := NewProfile("server", pc)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field {
				t.Fatalf("NewProfile() error = %v, want ConfigError on %q", err, tt.field)
			}
		})
	}
}

func TestPrecertAndFinal(t *testing.T) {
	c := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 0)
	pc := DefaultProfiles()["server"]
	pc.CT = ctConfig(t)
	p := mustProfile(t, "server", pc)
	newToken := func(t *testing.T) *Token {
		req := &Request{PublicKey: testKey(t, keys.ECDSAP256, 1).Public(), DNSNames: []string{"ct.pki.internal"}}
		lintDER, tok, err := c.interIssuer.Prepare(p, req, serial(t), c.now)
		if err != nil {
			t.Fatal(err)
		}
		if !tok.CT() || !hasExtension(parseCert(t, lintDER), oidCTPoison) {
			t.Fatal("CT token: lint certificate has no poison")
		}
		return tok
	}
	// A well-formed SCT list with one v1 SCT (RFC 6962 §3.2): zlint parses
	// it; its signature is junk (package ct submits and verifies real ones).
	sct := []byte{0}                                      // version v1
	sct = append(sct, bytes.Repeat([]byte{7}, 32)...)     // log ID
	sct = append(sct, 0, 0, 1, 0x90, 0, 0, 0, 0)          // timestamp
	sct = append(sct, 0, 0)                               // no extensions
	sct = append(sct, 4, 3, 0, 4, 0xde, 0xad, 0xbe, 0xef) // SHA-256/ECDSA, 4-byte signature
	sctList := append([]byte{0, byte(len(sct) + 2), 0, byte(len(sct))}, sct...)

	t.Run("with SCTs", func(t *testing.T) {
		tok := newToken(t)
		if _, err := c.interIssuer.Issue(tok); err == nil {
			t.Fatal("Issue accepted a CT token")
		}
		if _, err := c.interIssuer.IssueFinal(tok, sctList); err == nil {
			t.Fatal("IssueFinal before IssuePrecert succeeded")
		}
		preDER, err := c.interIssuer.IssuePrecert(tok)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.interIssuer.IssuePrecert(tok); !errors.Is(err, ErrTokenUsed) {
			t.Fatalf("second IssuePrecert = %v, want ErrTokenUsed", err)
		}
		pre := parseCert(t, preDER)
		var poison *struct {
			critical bool
			value    []byte
		}
		for _, e := range pre.Extensions {
			if e.Id.Equal(oidCTPoison) {
				poison = &struct {
					critical bool
					value    []byte
				}{e.Critical, e.Value}
			}
		}
		if poison == nil || !poison.critical || !bytes.Equal(poison.value, []byte{0x05, 0x00}) {
			t.Fatalf("poison extension = %+v, want critical with value NULL (05 00)", poison)
		}
		der, err := c.interIssuer.IssueFinal(tok, sctList)
		if err != nil {
			t.Fatal(err)
		}
		final := parseCert(t, der)
		if err := SamePrecertTBS(pre, final); err != nil {
			t.Fatal(err)
		}
		// Same position: the SCT list sits where the poison was.
		pi := extIndex(pre, oidCTPoison)
		if fi := extIndex(final, oidCTSCTList); fi != pi || pi < 0 {
			t.Fatalf("SCT list at extension %d, poison was at %d", fi, pi)
		}
		var inner []byte
		if _, err := asn1.Unmarshal(final.Extensions[pi].Value, &inner); err != nil || !bytes.Equal(inner, sctList) {
			t.Fatalf("SCT list extension value = %x, want OCTET STRING of %x", final.Extensions[pi].Value, sctList)
		}
		if _, err := c.interIssuer.IssueFinal(tok, sctList); !errors.Is(err, ErrTokenUsed) {
			t.Fatalf("second IssueFinal = %v, want ErrTokenUsed", err)
		}
	})
	t.Run("without SCTs", func(t *testing.T) {
		tok := newToken(t)
		preDER, err := c.interIssuer.IssuePrecert(tok)
		if err != nil {
			t.Fatal(err)
		}
		der, err := c.interIssuer.IssueFinal(tok, nil)
		if err != nil {
			t.Fatal(err)
		}
		final := parseCert(t, der)
		if hasExtension(final, oidCTPoison) || hasExtension(final, oidCTSCTList) {
			t.Fatal("certificate without SCTs carries CT extensions")
		}
		if err := SamePrecertTBS(parseCert(t, preDER), final); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("empty SCT list is refused by zlint", func(t *testing.T) {
		tok := newToken(t)
		if _, err := c.interIssuer.IssuePrecert(tok); err != nil {
			t.Fatal(err)
		}
		_, err := c.interIssuer.IssueFinal(tok, []byte{0, 0})
		var le *LintError
		if !errors.As(err, &le) || !strings.Contains(le.Error(), "e_empty_sct_list") {
			t.Fatalf("IssueFinal(empty list) = %v, want a LintError from e_empty_sct_list", err)
		}
	})
	t.Run("other issuer", func(t *testing.T) {
		tok := newToken(t)
		other := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 1)
		if _, err := other.interIssuer.IssuePrecert(tok); !errors.Is(err, ErrWrongIssuer) {
			t.Fatalf("IssuePrecert by another issuer = %v, want ErrWrongIssuer", err)
		}
	})
}

func TestSamePrecertTBSRejects(t *testing.T) {
	c := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 0)
	pc := DefaultProfiles()["server"]
	pc.CT = ctConfig(t)
	p := mustProfile(t, "server", pc)
	req := &Request{PublicKey: testKey(t, keys.ECDSAP256, 1).Public(), DNSNames: []string{"ct.pki.internal"}}
	_, tok, err := c.interIssuer.Prepare(p, req, serial(t), c.now)
	if err != nil {
		t.Fatal(err)
	}
	preDER, err := c.interIssuer.IssuePrecert(tok)
	if err != nil {
		t.Fatal(err)
	}
	pre := parseCert(t, preDER)
	plain := issue(t, c.interIssuer, defaultProfile(t, "server"), req, c.now) // another serial, no CT
	if err := SamePrecertTBS(pre, plain); err == nil {
		t.Fatal("SamePrecertTBS accepted a different certificate")
	}
	if err := SamePrecertTBS(pre, pre); err == nil {
		t.Fatal("SamePrecertTBS accepted the precertificate as final")
	}
}

func hasExtension(c *x509.Certificate, oid asn1.ObjectIdentifier) bool { return extIndex(c, oid) >= 0 }

func extIndex(c *x509.Certificate, oid asn1.ObjectIdentifier) int {
	for j, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return j
		}
	}
	return -1
}

func TestCTLintsInRegistry(t *testing.T) {
	reg, err := privateRegistry()
	if err != nil {
		t.Fatal(err)
	}
	names := reg.Names()
	for _, want := range []string{"e_precert_with_sct_list", "e_empty_sct_list"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("lint %s is not in the pre-issuance registry", want)
		}
	}
}
