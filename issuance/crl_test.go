package issuance

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/certctl/certctl/keys"
)

// entries returns a RevokedCerts over a slice (sorted as certdb sorts).
func entries(es ...RevokedCert) RevokedCerts {
	slices.SortFunc(es, func(a, b RevokedCert) int { return bytes.Compare(a.Serial.Bytes(), b.Serial.Bytes()) })
	return func(emit func(RevokedCert) error) error {
		for _, e := range es {
			if err := emit(e); err != nil {
				return err
			}
		}
		return nil
	}
}

// idp is the decoded IssuingDistributionPoint, as far as we use it.
type idp struct {
	DistributionPoint     asn1.RawValue `asn1:"optional,tag:0"`
	OnlyContainsUserCerts bool          `asn1:"optional,tag:1"`
}

// idpOf returns the IDP extension of crl and its decoded URLs.
func idpOf(t *testing.T, crl *x509.RevocationList) (ext *pkix.Extension, urls []string, userOnly bool) {
	t.Helper()
	for i, e := range crl.Extensions {
		if !e.Id.Equal(oidIDP) {
			continue
		}
		var v idp
		if rest, err := asn1.Unmarshal(e.Value, &v); err != nil || len(rest) > 0 {
			t.Fatalf("IDP: %v (rest %d)", err, len(rest))
		}
		if len(v.DistributionPoint.Bytes) > 0 {
			var fullName asn1.RawValue // [0] fullName
			if _, err := asn1.Unmarshal(v.DistributionPoint.Bytes, &fullName); err != nil {
				t.Fatal(err)
			}
			rest := fullName.Bytes
			for len(rest) > 0 {
				var gn asn1.RawValue
				var err error
				if rest, err = asn1.Unmarshal(rest, &gn); err != nil {
					t.Fatal(err)
				}
				if gn.Tag != 6 || gn.Class != asn1.ClassContextSpecific {
					t.Fatalf("IDP general name has tag %d class %d, want URI [6]", gn.Tag, gn.Class)
				}
				urls = append(urls, string(gn.Bytes))
			}
		}
		return &crl.Extensions[i], urls, v.OnlyContainsUserCerts
	}
	return nil, nil, false
}

func writeCRL(t *testing.T, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "crl.der")
	if err := os.WriteFile(p, der, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func opensslCRLText(t *testing.T, der []byte) string {
	t.Helper()
	out, err := exec.Command(opensslPath, "crl", "-inform", "DER", "-in", writeCRL(t, der), "-text", "-noout").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl crl: %v\n%s", err, out)
	}
	return string(out)
}

func TestSignCRL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		kt        keys.KeyType
		root      bool // sign with the root (may issue CAs) rather than the intermediate
		wantUser  bool // onlyContainsUserCerts
		sigAlgStr string
	}{
		{"intermediate ecdsa-p256", keys.ECDSAP256, false, true, "ecdsa-with-SHA256"},
		{"intermediate ecdsa-p384", keys.ECDSAP384, false, true, "ecdsa-with-SHA384"},
		{"intermediate rsa-2048", keys.RSA2048, false, true, "sha256WithRSAEncryption"},
		{"intermediate ed25519", keys.Ed25519, false, true, "ED25519"},
		{"root ecdsa-p256", keys.ECDSAP256, true, false, "ecdsa-with-SHA256"},
	}
	for idx, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			chain := newChain(t, tt.kt, tt.kt, 10+idx)
			iss := chain.interIssuer
			if tt.root {
				iss = chain.rootIssuer
			}
			now := time.Now().UTC().Truncate(time.Second)
			revokedAt := now.Add(-time.Hour)
			es := []RevokedCert{
				{Serial: big.NewInt(0x1234), RevokedAt: revokedAt, Reason: 0},
				{Serial: new(big.Int).Lsh(big.NewInt(1), 158), RevokedAt: revokedAt.Add(time.Minute), Reason: 1},
				{Serial: big.NewInt(0x80), RevokedAt: revokedAt.Add(2 * time.Minute), Reason: 4},
				{Serial: big.NewInt(0x81), RevokedAt: revokedAt.Add(3 * time.Minute), Reason: 6},
			}
			number := big.NewInt(42)
			der, err := iss.SignCRL(CRLRequest{Number: number, ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour), Entries: entries(es...)})
			if err != nil {
				t.Fatalf("SignCRL: %v", err)
			}
			crl, err := x509.ParseRevocationList(der)
			if err != nil {
				t.Fatalf("ParseRevocationList: %v", err)
			}
			if err := crl.CheckSignatureFrom(iss.Cert()); err != nil {
				t.Fatalf("CheckSignatureFrom: %v", err)
			}
			if crl.Number.Cmp(number) != 0 || !crl.ThisUpdate.Equal(now) || !crl.NextUpdate.Equal(now.Add(24*time.Hour)) {
				t.Errorf("number %v thisUpdate %v nextUpdate %v", crl.Number, crl.ThisUpdate, crl.NextUpdate)
			}
			if !bytes.Equal(crl.AuthorityKeyId, iss.KeyID()) || !bytes.Equal(crl.RawIssuer, iss.Cert().RawSubject) {
				t.Errorf("AKI %x issuer %x, want %x %x", crl.AuthorityKeyId, crl.RawIssuer, iss.KeyID(), iss.Cert().RawSubject)
			}
			if len(crl.RevokedCertificateEntries) != len(es) {
				t.Fatalf("%d entries, want %d", len(crl.RevokedCertificateEntries), len(es))
			}
			want := map[string]RevokedCert{}
			for _, e := range es {
				want[e.Serial.String()] = e
			}
			for _, got := range crl.RevokedCertificateEntries {
				w, ok := want[got.SerialNumber.String()]
				if !ok {
					t.Fatalf("unexpected serial %x", got.SerialNumber)
				}
				if !got.RevocationTime.Equal(w.RevokedAt) || got.ReasonCode != w.Reason {
					t.Errorf("serial %x: time %v reason %d, want %v %d", got.SerialNumber, got.RevocationTime, got.ReasonCode, w.RevokedAt, w.Reason)
				}
				if hasExt := len(got.Extensions) > 0; hasExt != (w.Reason != 0) {
					t.Errorf("serial %x reason %d: reasonCode extension present = %v (RFC 5280 §5.3.1: absent for unspecified)", got.SerialNumber, w.Reason, hasExt)
				}
			}
			ext, urls, userOnly := idpOf(t, crl)
			if ext == nil || !ext.Critical {
				t.Fatalf("IDP extension %+v, want critical", ext)
			}
			if !slices.Equal(urls, testIssuerConfig.CRLDistributionPoints) || userOnly != tt.wantUser {
				t.Errorf("IDP urls %v onlyContainsUserCerts %v, want %v %v", urls, userOnly, testIssuerConfig.CRLDistributionPoints, tt.wantUser)
			}
			// zlint, private-PKI registry, on the real output.
			reg, err := privateRegistry()
			if err != nil {
				t.Fatal(err)
			}
			zc, err := zx509.ParseRevocationList(der)
			if err != nil {
				t.Fatal(err)
			}
			rs := zlint.LintRevocationListEx(zc, reg)
			if len(rs.Results) == 0 {
				t.Fatal("zlint ran no CRL lints")
			}
			for n, r := range rs.Results {
				if r.Status >= lint.Notice {
					t.Errorf("zlint %s: %s %s", n, r.Status, r.Details)
				}
			}
			// openssl parses it.
			text := opensslCRLText(t, der)
			for _, s := range []string{
				"Version 2", "X509v3 CRL Number: \n                42",
				"X509v3 Issuing Distribution Point: critical", "URI:" + testIssuerConfig.CRLDistributionPoints[0],
				"Key Compromise", "Superseded", "Certificate Hold", tt.sigAlgStr,
				"Serial Number: 1234", "X509v3 Authority Key Identifier",
			} {
				if !strings.Contains(text, s) {
					t.Errorf("openssl crl -text lacks %q:\n%s", s, text)
				}
			}
			if got := strings.Contains(text, "Only User Certificates"); got != tt.wantUser {
				t.Errorf("openssl shows Only User Certificates = %v, want %v", got, tt.wantUser)
			}
			if strings.Count(text, "CRL Reason Code") != 3 {
				t.Errorf("want 3 reason codes (unspecified omitted):\n%s", text)
			}
		})
	}
}

// TestSignCRLMatchesStdlib compares SignCRL's TBS with what
// x509.CreateRevocationList encodes for the same content: only the
// Issuing Distribution Point (which the stdlib takes as an extra extension)
// may differ in placement, so it is passed the same way.
func TestSignCRLMatchesStdlib(t *testing.T) {
	t.Parallel()
	chain := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 20)
	iss := chain.interIssuer
	now := time.Now().UTC().Truncate(time.Second)
	es := []RevokedCert{
		{Serial: big.NewInt(5), RevokedAt: now.Add(-time.Hour), Reason: 1},
		{Serial: big.NewInt(0x0107), RevokedAt: now.Add(-time.Minute)},
	}
	for _, tc := range []struct {
		name    string
		entries []RevokedCert
	}{{"entries", es}, {"empty", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			der, err := iss.SignCRL(CRLRequest{Number: big.NewInt(7), ThisUpdate: now, NextUpdate: now.Add(time.Hour), Entries: entries(tc.entries...)})
			if err != nil {
				t.Fatal(err)
			}
			ours, err := x509.ParseRevocationList(der)
			if err != nil {
				t.Fatal(err)
			}
			ext, _, _ := idpOf(t, ours)
			tmpl := &x509.RevocationList{
				Number: big.NewInt(7), ThisUpdate: now, NextUpdate: now.Add(time.Hour),
				ExtraExtensions: []pkix.Extension{*ext},
			}
			for _, e := range tc.entries {
				tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
					x509.RevocationListEntry{SerialNumber: e.Serial, RevocationTime: e.RevokedAt, ReasonCode: e.Reason})
			}
			stdDER, err := x509.CreateRevocationList(nil, tmpl, iss.Cert(), chain.intermediate)
			if err != nil {
				t.Fatal(err)
			}
			std, err := x509.ParseRevocationList(stdDER)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours.RawTBSRevocationList, std.RawTBSRevocationList) {
				t.Errorf("TBS differs from x509.CreateRevocationList's:\nours %x\nstd  %x", ours.RawTBSRevocationList, std.RawTBSRevocationList)
			}
		})
	}
}

func TestSignCRLLarge(t *testing.T) {
	t.Parallel()
	// Above CRLFullCheckEntries: the lint runs on a sample; the output must
	// still parse whole and verify.
	chain := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 21)
	now := time.Now().UTC().Truncate(time.Second)
	n := CRLFullCheckEntries*3 + 7
	gen := func(emit func(RevokedCert) error) error {
		for i := range n {
			// Big-endian order: fixed-width 8-octet serials.
			s := new(big.Int).SetUint64(1<<56 + uint64(i))
			if err := emit(RevokedCert{Serial: s, RevokedAt: now.Add(-time.Duration(i) * time.Second), Reason: i % 6}); err != nil {
				return err
			}
		}
		return nil
	}
	der, err := chain.interIssuer.SignCRL(CRLRequest{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(time.Hour), Entries: gen})
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(chain.inter); err != nil {
		t.Fatal(err)
	}
	if len(crl.RevokedCertificateEntries) != n {
		t.Fatalf("%d entries, want %d", len(crl.RevokedCertificateEntries), n)
	}
	last := crl.RevokedCertificateEntries[n-1]
	if last.SerialNumber.Uint64() != 1<<56+uint64(n-1) || last.ReasonCode != (n-1)%6 || !last.RevocationTime.Equal(now.Add(-time.Duration(n-1)*time.Second)) {
		t.Errorf("last entry %x %d %v", last.SerialNumber, last.ReasonCode, last.RevocationTime)
	}
}

func TestSignCRLErrors(t *testing.T) {
	t.Parallel()
	chain := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 22)
	now := time.Now().UTC().Truncate(time.Second)
	ok := func(s int64) RevokedCert {
		return RevokedCert{Serial: big.NewInt(s), RevokedAt: now.Add(-time.Hour), Reason: 1}
	}
	boom := errors.New("cursor broke")
	tests := []struct {
		name    string
		req     CRLRequest
		wantIs  error
		wantMsg string
	}{
		{"nil number", CRLRequest{ThisUpdate: now, NextUpdate: now.Add(time.Hour)}, nil, "number"},
		{"negative number", CRLRequest{Number: big.NewInt(-1), ThisUpdate: now, NextUpdate: now.Add(time.Hour)}, nil, "number"},
		{"21-octet number", CRLRequest{Number: new(big.Int).Lsh(big.NewInt(1), 159), ThisUpdate: now, NextUpdate: now.Add(time.Hour)}, nil, "20 octets"},
		{"next before this", CRLRequest{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now}, nil, "not after thisUpdate"},
		{"after issuer expiry", CRLRequest{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.AddDate(30, 0, 0)}, nil, "outside the issuer"},
		{"shard out of range", CRLRequest{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(time.Hour), Shard: 1}, nil, "shard 1 out of range"},
		{"unordered", CRLRequest{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(time.Hour), Entries: func(emit func(RevokedCert) error) error {
			if err := emit(ok(5)); err != nil {
				return err
			}
			return emit(ok(4))
		}}, nil, "increasing order"},
		{"duplicate", CRLRequest{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(time.Hour), Entries: func(emit func(RevokedCert) error) error {
			if err := emit(ok(5)); err != nil {
				return err
			}
			return emit(ok(5))
		}}, nil, "unique"},
		{"reason 7", CRLRequest{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(time.Hour),
			Entries: entries(RevokedCert{Serial: big.NewInt(1), RevokedAt: now, Reason: 7})}, nil, "reason code 7"},
		{"removeFromCRL", CRLRequest{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(time.Hour),
			Entries: entries(RevokedCert{Serial: big.NewInt(1), RevokedAt: now, Reason: 8})}, nil, "delta CRLs"},
		{"revoked after thisUpdate", CRLRequest{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(time.Hour),
			Entries: entries(RevokedCert{Serial: big.NewInt(1), RevokedAt: now.Add(time.Second)})}, nil, "after thisUpdate"},
		{"revoked in 1990", CRLRequest{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(time.Hour),
			Entries: entries(RevokedCert{Serial: big.NewInt(1), RevokedAt: time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)})}, nil, "before 1999"},
		{"zero serial", CRLRequest{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(time.Hour),
			Entries: entries(RevokedCert{Serial: new(big.Int), RevokedAt: now})}, nil, "positive"},
		{"iterator error", CRLRequest{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(time.Hour),
			Entries: func(emit func(RevokedCert) error) error { return boom }}, boom, "cursor broke"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			der, err := chain.interIssuer.SignCRL(tt.req)
			if err == nil {
				t.Fatalf("SignCRL = %d bytes, want error", len(der))
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v, want %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q, want it to mention %q", err, tt.wantMsg)
			}
		})
	}
}

func TestSignCRLNeedsCRLSign(t *testing.T) {
	t.Parallel()
	chain := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 23)
	p := mustProfile(t, "nocrl", ProfileConfig{Validity: Duration(365 * day), KeyUsage: []string{"cert_sign"}, CA: true})
	key := testKey(t, keys.ECDSAP256, 3)
	ca := issue(t, chain.rootIssuer, p, &Request{PublicKey: key.Public(), Subject: pkixName("no crl sign")}, chain.now)
	iss, err := NewIssuer(ca, key, IssuerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := iss.SignCRL(CRLRequest{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(time.Hour)}); err == nil || !strings.Contains(err.Error(), "cRLSign") {
		t.Fatalf("SignCRL error = %v, want cRLSign", err)
	}
}

func TestShardOf(t *testing.T) {
	t.Parallel()
	big159 := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 159), big.NewInt(1))
	tests := []struct {
		serial *big.Int
		shards int
		want   int
	}{
		{big.NewInt(10), 0, 0},
		{big.NewInt(10), 1, 0},
		{big.NewInt(10), 4, 2},
		{big.NewInt(7), 7, 0},
		{nil, 4, 0},
		{big159, 16, 15}, // 2^159-1 ≡ -1 (mod 16)
		{big159, 3, int(new(big.Int).Mod(big159, big.NewInt(3)).Int64())},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v mod %d", tt.serial, tt.shards), func(t *testing.T) {
			if got := ShardOf(tt.serial, tt.shards); got != tt.want {
				t.Errorf("ShardOf = %d, want %d", got, tt.want)
			}
		})
	}
	// Random serials spread over the shards.
	counts := make([]int, 8)
	for range 8000 {
		counts[ShardOf(serial(t), 8)]++
	}
	for s, c := range counts {
		if c < 700 || c > 1300 { // mean 1000, sd ≈ 30
			t.Errorf("shard %d got %d of 8000 random serials", s, c)
		}
	}
}

func TestIssuerCRLShards(t *testing.T) {
	t.Parallel()
	chain := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 24)
	const tmpl = "http://127.0.0.1:8080/crl/{shard}"
	tests := []struct {
		name    string
		cfg     IssuerConfig
		wantMsg string // "" = OK
		shards  int
	}{
		{"default", IssuerConfig{CRLDistributionPoints: []string{"http://pki.internal/ca.crl"}}, "", 1},
		{"placeholder, one shard", IssuerConfig{CRLDistributionPoints: []string{tmpl}}, "", 1},
		{"four shards", IssuerConfig{CRLShards: 4, CRLDistributionPoints: []string{tmpl, "ldap://ldap.internal/cn=crl{shard}"}}, "", 4},
		{"no placeholder", IssuerConfig{CRLShards: 4, CRLDistributionPoints: []string{"http://pki.internal/ca.crl"}}, "has no {shard} placeholder", 0},
		{"one without placeholder", IssuerConfig{CRLShards: 2, CRLDistributionPoints: []string{tmpl, "http://x.internal/ca.crl"}}, "crl[1]", 0},
		{"no crl url", IssuerConfig{CRLShards: 2}, "no crl URL", 0},
		{"negative", IssuerConfig{CRLShards: -1}, "crl_shards -1", 0},
		{"too many", IssuerConfig{CRLShards: MaxCRLShards + 1, CRLDistributionPoints: []string{tmpl}}, "crl_shards", 0},
		{"placeholder in ocsp", IssuerConfig{OCSPServers: []string{"http://ocsp/{shard}"}}, "only crl URLs", 0},
		{"bad url after substitution", IssuerConfig{CRLDistributionPoints: []string{"/crl/{shard}"}}, "crl[0]", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iss, err := NewIssuer(chain.inter, chain.intermediate, tt.cfg)
			if tt.wantMsg != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("NewIssuer error = %v, want %q", err, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if iss.CRLShards() != tt.shards {
				t.Errorf("CRLShards = %d, want %d", iss.CRLShards(), tt.shards)
			}
		})
	}

	// Issued certificates name their shard, and the shard's CRL names the same URLs.
	iss, err := NewIssuer(chain.inter, chain.intermediate, IssuerConfig{CRLShards: 4, CRLDistributionPoints: []string{tmpl}})
	if err != nil {
		t.Fatal(err)
	}
	p := defaultProfile(t, "server")
	seen := map[int]bool{}
	for i := 0; len(seen) < 4 && i < 200; i++ {
		_, tok, err := iss.Prepare(p, &Request{PublicKey: testKey(t, keys.ECDSAP256, 1).Public(), DNSNames: []string{"a.example.internal"}}, serial(t), chain.now)
		if err != nil {
			t.Fatal(err)
		}
		if tok.Shard() != ShardOf(tok.Serial(), 4) {
			t.Fatalf("Token.Shard %d, ShardOf %d", tok.Shard(), ShardOf(tok.Serial(), 4))
		}
		der, err := iss.Issue(tok)
		if err != nil {
			t.Fatal(err)
		}
		cert := parseCert(t, der)
		want := fmt.Sprintf("http://127.0.0.1:8080/crl/%d", tok.Shard())
		if !slices.Equal(cert.CRLDistributionPoints, []string{want}) || !slices.Equal(iss.CRLURLs(tok.Shard()), []string{want}) {
			t.Fatalf("CDP %v, CRLURLs %v, want [%s]", cert.CRLDistributionPoints, iss.CRLURLs(tok.Shard()), want)
		}
		if !seen[tok.Shard()] {
			seen[tok.Shard()] = true
			now := time.Now()
			crlDER, err := iss.SignCRL(CRLRequest{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(time.Hour), Shard: tok.Shard()})
			if err != nil {
				t.Fatal(err)
			}
			crl, err := x509.ParseRevocationList(crlDER)
			if err != nil {
				t.Fatal(err)
			}
			if _, urls, user := idpOf(t, crl); !slices.Equal(urls, cert.CRLDistributionPoints) || !user {
				t.Errorf("shard %d IDP %v (user-only %v), want the certificate's CDP %v", tok.Shard(), urls, user, cert.CRLDistributionPoints)
			}
		}
	}
	if len(seen) != 4 {
		t.Errorf("200 certificates landed in shards %v only", seen)
	}
}

// TestSignCRLNoIDP: an unsharded issuer without CRL URLs that can issue CAs
// has nothing to state in an IDP, and RFC 5280 §5.2.5 forbids an empty one.
func TestSignCRLNoIDP(t *testing.T) {
	t.Parallel()
	chain := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 25)
	iss, err := NewIssuer(chain.root, chain.rootKey, IssuerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	der, err := iss.SignCRL(CRLRequest{Number: big.NewInt(3), ThisUpdate: now, NextUpdate: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if ext, _, _ := idpOf(t, crl); ext != nil {
		t.Errorf("unexpected IDP %x", ext.Value)
	}
	if p := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}); !strings.Contains(opensslCRLText(t, der), "CRL Number") || len(p) == 0 {
		t.Error("openssl does not show the CRL number")
	}
}
