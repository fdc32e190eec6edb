package issuance

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/keys"
)

// defaultRequests is a typical request for each default profile.
func defaultRequest(t testing.TB, profile string, pub crypto.PublicKey) *Request {
	t.Helper()
	r := &Request{PublicKey: pub}
	var names []string
	switch profile {
	case "server":
		r.Subject = pkixName("db.internal")
		names = []string{"db.internal", "DB2.Internal.", "localhost", "127.0.0.1", "::1"}
	case "client":
		r.Subject = pkixName("app", "certctl test") // a PostgreSQL role, no SAN
	case "peer":
		names = []string{"node1.cluster.internal", "127.0.0.2"}
	case "ocsp":
		r.Subject = pkixName("certctl OCSP responder")
	case "intermediate":
		r.Subject = pkixName("certctl Test Sub CA", "certctl test")
	default:
		t.Fatalf("no request for profile %q", profile)
	}
	if err := r.AddNames(names...); err != nil {
		t.Fatal(err)
	}
	return r
}

var profileEKUs = map[string][]x509.ExtKeyUsage{
	"server":       {x509.ExtKeyUsageServerAuth},
	"client":       {x509.ExtKeyUsageClientAuth},
	"peer":         {x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	"ocsp":         {x509.ExtKeyUsageOCSPSigning},
	"intermediate": {x509.ExtKeyUsageAny},
}

var opensslPurposes = map[string][]string{
	"server":       {"sslserver"},
	"client":       {"sslclient"},
	"peer":         {"sslserver", "sslclient"},
	"ocsp":         {"ocsphelper"},
	"intermediate": {""},
}

// TestIssueDefaultProfiles issues every default profile for every subject key
// type and checks the result with x509.Verify, zlint and openssl.
func TestIssueDefaultProfiles(t *testing.T) {
	t.Parallel()
	chain := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 0)
	for _, profile := range []string{"server", "client", "peer", "ocsp", "intermediate"} {
		p := defaultProfile(t, profile)
		for _, kt := range allKeyTypes {
			t.Run(profile+"/"+string(kt), func(t *testing.T) {
				t.Parallel()
				key := testKey(t, kt, 0)
				req := defaultRequest(t, profile, key.Public())
				iss, parents := chain.interIssuer, []*x509.Certificate{chain.inter}
				if p.IsCA() {
					// The intermediate has max_path_len 0: sub-CAs come from the root.
					iss, parents = chain.rootIssuer, nil
				}
				sn := serial(t)
				lintDER, tok, err := iss.Prepare(p, req, sn, chain.now)
				if err != nil {
					t.Fatalf("Prepare: %v", err)
				}
				der, err := iss.Issue(tok)
				if err != nil {
					t.Fatalf("Issue: %v", err)
				}
				cert := parseCert(t, der)
				lintCert := parseCert(t, lintDER)
				if !bytes.Equal(cert.RawTBSCertificate, lintCert.RawTBSCertificate) {
					t.Fatal("issued TBSCertificate differs from the linted one")
				}

				// Chain verification with the right EKU.
				inters := x509.NewCertPool()
				for _, c := range parents {
					inters.AddCert(c)
				}
				roots := x509.NewCertPool()
				roots.AddCert(chain.root)
				if _, err := cert.Verify(x509.VerifyOptions{
					Roots: roots, Intermediates: inters, CurrentTime: chain.now, KeyUsages: profileEKUs[profile],
				}); err != nil {
					t.Fatalf("x509.Verify: %v", err)
				}
				for _, purpose := range opensslPurposes[profile] {
					if err := opensslVerify(t, []*x509.Certificate{chain.root}, parents, cert, purpose); err != nil {
						t.Fatalf("openssl verify -purpose %q: %v", purpose, err)
					}
				}

				// Extensions.
				wantSKI, err := subjectKeyID(key.Public())
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(cert.SubjectKeyId, wantSKI) || len(cert.SubjectKeyId) != 20 {
					t.Errorf("SubjectKeyId = %x, want %x", cert.SubjectKeyId, wantSKI)
				}
				if !bytes.Equal(cert.AuthorityKeyId, iss.KeyID()) {
					t.Errorf("AuthorityKeyId = %x, want issuer's %x", cert.AuthorityKeyId, iss.KeyID())
				}
				if !slices.Equal(cert.OCSPServer, testIssuerConfig.OCSPServers) ||
					!slices.Equal(cert.IssuingCertificateURL, testIssuerConfig.IssuingCertificateURL) ||
					!slices.Equal(cert.CRLDistributionPoints, testIssuerConfig.CRLDistributionPoints) {
					t.Errorf("AIA/CDP = %v %v %v", cert.OCSPServer, cert.IssuingCertificateURL, cert.CRLDistributionPoints)
				}
				if cert.IsCA != p.IsCA() || !cert.BasicConstraintsValid {
					t.Errorf("IsCA = %v, BasicConstraintsValid = %v", cert.IsCA, cert.BasicConstraintsValid)
				}
				if p.IsCA() && (cert.MaxPathLen != 0 || !cert.MaxPathLenZero) {
					t.Errorf("intermediate MaxPathLen = %d (zero %v), want 0", cert.MaxPathLen, cert.MaxPathLenZero)
				}
				if hasExt(cert, ocspNoCheckExt.Id) != (profile == "ocsp") {
					t.Errorf("ocsp-nocheck present = %v", hasExt(cert, ocspNoCheckExt.Id))
				}
				if got, want := cert.SignatureAlgorithm, x509.ECDSAWithSHA256; got != want {
					t.Errorf("SignatureAlgorithm = %v, want %v", got, want)
				}
				if cert.KeyUsage&(x509.KeyUsageKeyEncipherment|x509.KeyUsageDataEncipherment) != 0 {
					t.Errorf("KeyUsage = %b has encipherment", cert.KeyUsage)
				}

				// Validity: NotAfter = now + validity, NotBefore = now - backdate.
				now := chain.now.UTC().Truncate(time.Second)
				if got := cert.NotAfter.Sub(now); got != p.Validity() {
					t.Errorf("NotAfter - now = %v, want %v", got, p.Validity())
				}
				wantNB := now.Add(-p.Backdate())
				if issuerNB := iss.Cert().NotBefore; wantNB.Before(issuerNB) {
					wantNB = issuerNB
				}
				if !cert.NotBefore.Equal(wantNB) {
					t.Errorf("NotBefore = %v, want %v", cert.NotBefore, wantNB)
				}

				// The token describes the certificate.
				if tok.Serial().Cmp(cert.SerialNumber) != 0 || sn.Cmp(cert.SerialNumber) != 0 {
					t.Errorf("serial: token %x, cert %x, asked %x", tok.Serial(), cert.SerialNumber, sn)
				}
				if !tok.NotBefore().Equal(cert.NotBefore) || !tok.NotAfter().Equal(cert.NotAfter) {
					t.Errorf("token validity %v..%v, cert %v..%v", tok.NotBefore(), tok.NotAfter(), cert.NotBefore, cert.NotAfter)
				}
				if tok.Subject() != cert.Subject.String() || tok.Profile() != profile {
					t.Errorf("token subject %q profile %q, cert subject %q", tok.Subject(), tok.Profile(), cert.Subject)
				}
				if got, want := tok.SANs(), certSANs(cert); !slices.Equal(got, want) {
					t.Errorf("token SANs %v, cert %v", got, want)
				}

				// An independent lint of the final certificate.
				if err := lintCertificate(iss.lints, der); err != nil {
					t.Errorf("final certificate: %v", err)
				}
			})
		}
	}
}

func certSANs(c *x509.Certificate) []string {
	var s []string
	for _, n := range c.DNSNames {
		s = append(s, "dns:"+n)
	}
	for _, ip := range c.IPAddresses {
		s = append(s, "ip:"+ip.String())
	}
	for _, u := range c.URIs {
		s = append(s, "uri:"+u.String())
	}
	for _, e := range c.EmailAddresses {
		s = append(s, "email:"+e)
	}
	return s
}

func hasExt(c *x509.Certificate, id asn1.ObjectIdentifier) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(id) {
			return bytes.Equal(e.Value, asn1.NullBytes) && !e.Critical
		}
	}
	return false
}

func TestServerCertificateContents(t *testing.T) {
	t.Parallel()
	chain := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 0)
	cert := issue(t, chain.interIssuer, defaultProfile(t, "server"),
		defaultRequest(t, "server", testKey(t, keys.ECDSAP256, 2).Public()), chain.now)
	// Names are normalized and duplicates dropped.
	if want := []string{"db.internal", "db2.internal", "localhost"}; !slices.Equal(cert.DNSNames, want) {
		t.Errorf("DNSNames = %v, want %v", cert.DNSNames, want)
	}
	if len(cert.IPAddresses) != 2 || !cert.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || !cert.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IPAddresses = %v", cert.IPAddresses)
	}
	if cert.Subject.String() != "CN=db.internal" {
		t.Errorf("Subject = %q", cert.Subject)
	}
	if cert.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KeyUsage = %v", cert.KeyUsage)
	}
	if err := cert.VerifyHostname("db2.internal"); err != nil {
		t.Error(err)
	}
}

// TestIssuerKeyTypes issues from a chain of each key type: the lint key and
// the signature algorithm must follow the issuer's key.
func TestIssuerKeyTypes(t *testing.T) {
	t.Parallel()
	wantAlg := map[keys.KeyType]x509.SignatureAlgorithm{
		keys.ECDSAP256: x509.ECDSAWithSHA256, keys.ECDSAP384: x509.ECDSAWithSHA384,
		keys.RSA2048: x509.SHA256WithRSA, keys.RSA3072: x509.SHA256WithRSA, keys.RSA4096: x509.SHA256WithRSA,
		keys.Ed25519: x509.PureEd25519,
	}
	for _, kt := range allKeyTypes {
		t.Run(string(kt), func(t *testing.T) {
			t.Parallel()
			chain := newChain(t, kt, kt, 1)
			if chain.inter.SignatureAlgorithm != wantAlg[kt] {
				t.Errorf("intermediate SignatureAlgorithm = %v, want %v", chain.inter.SignatureAlgorithm, wantAlg[kt])
			}
			if err := opensslVerify(t, []*x509.Certificate{chain.root}, nil, chain.inter, ""); err != nil {
				t.Fatalf("openssl verify intermediate: %v", err)
			}
			cert := issue(t, chain.interIssuer, defaultProfile(t, "peer"),
				defaultRequest(t, "peer", testKey(t, keys.ECDSAP256, 3).Public()), chain.now)
			if cert.SignatureAlgorithm != wantAlg[kt] {
				t.Errorf("SignatureAlgorithm = %v, want %v", cert.SignatureAlgorithm, wantAlg[kt])
			}
			roots, inters := x509.NewCertPool(), x509.NewCertPool()
			roots.AddCert(chain.root)
			inters.AddCert(chain.inter)
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: chain.now}); err != nil {
				t.Fatalf("x509.Verify: %v", err)
			}
			if err := opensslVerify(t, []*x509.Certificate{chain.root}, []*x509.Certificate{chain.inter}, cert, "sslserver"); err != nil {
				t.Fatalf("openssl verify: %v", err)
			}
		})
	}
}

// TestKeyUsageByKeyType: usages the key cannot have are dropped (RFC 8813,
// RFC 8410, RFC 4055) and what remains is lint-clean.
func TestKeyUsageByKeyType(t *testing.T) {
	t.Parallel()
	chain := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 0)
	cfg := DefaultProfiles()["server"]
	cfg.KeyUsage = []string{"digital_signature", "key_encipherment", "key_agreement"}
	p := mustProfile(t, "server-ku", cfg)
	want := map[keys.KeyType]x509.KeyUsage{
		keys.ECDSAP256: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
		keys.ECDSAP384: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
		keys.RSA2048:   x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		keys.RSA3072:   x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		keys.RSA4096:   x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		keys.Ed25519:   x509.KeyUsageDigitalSignature,
	}
	for _, kt := range allKeyTypes {
		t.Run(string(kt), func(t *testing.T) {
			cert := issue(t, chain.interIssuer, p, defaultRequest(t, "server", testKey(t, kt, 0).Public()), chain.now)
			if cert.KeyUsage != want[kt] {
				t.Errorf("KeyUsage = %b, want %b", cert.KeyUsage, want[kt])
			}
		})
	}
	// A profile whose only usage the key cannot carry refuses the key.
	cfg.KeyUsage = []string{"key_encipherment"}
	p = mustProfile(t, "rsa-only", cfg)
	_, _, err := chain.interIssuer.Prepare(p, defaultRequest(t, "server", testKey(t, keys.ECDSAP256, 0).Public()), serial(t), chain.now)
	var pe *PolicyError
	if !errors.As(err, &pe) || pe.Field != "public_key" {
		t.Fatalf("Prepare = %v, want PolicyError on public_key", err)
	}
}

func TestPrepareRejects(t *testing.T) {
	t.Parallel()
	chain := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 0)
	ecKey := testKey(t, keys.ECDSAP256, 4).Public()
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaE3 := *testKey(t, keys.RSA2048, 0).Public().(*rsa.PublicKey)
	rsaE3.E = 3

	// A root that expires in 10 days cannot issue 30-day certificates.
	shortKey := testKey(t, keys.ECDSAP256, 5)
	shortDER, err := SelfSignRoot(shortKey, RootConfig{CommonName: "Short Root", Validity: 10 * day, MaxPathLen: 0}, serial(t), chain.now)
	if err != nil {
		t.Fatal(err)
	}
	shortIssuer, err := NewIssuer(parseCert(t, shortDER), shortKey, IssuerConfig{})
	if err != nil {
		t.Fatal(err)
	}

	ecOnly := DefaultProfiles()["server"]
	ecOnly.KeyTypes = []string{"ecdsa-p256"}

	names := func(n ...string) func(*Request) {
		return func(r *Request) {
			if err := r.AddNames(n...); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name, profile, field, reason string
		cfg                          *ProfileConfig // instead of the default profile
		issuer                       *Issuer        // default: the intermediate
		pub                          crypto.PublicKey
		edit                         func(*Request)
	}{
		{name: "disallowed dns name", profile: "server", field: "dns_names[1]",
			reason: `"db.example.com" is not allowed: names.dns allows [localhost **.internal]`, edit: names("db.internal", "db.example.com")},
		{name: "wildcard refused", profile: "server", field: "dns_names[0]", reason: "wildcard names are not allowed",
			edit: names("*.svc.internal")},
		{name: "ip outside cidr", profile: "server", field: "ip_addresses[0]", reason: "10.0.0.1 is not allowed: names.ip allows [127.0.0.0/8 ::1/128]",
			edit: names("10.0.0.1")},
		{name: "email not allowed", profile: "server", field: "email_addresses[0]", reason: "names.email is empty",
			edit: names("db.internal", "ops@db.internal")},
		{name: "uri not allowed", profile: "peer", field: "uris[0]", reason: "names.uri is empty",
			edit: names("spiffe://example.internal/db")},
		{name: "invalid dns name from csr", profile: "server", field: "dns_names[0]", reason: "contains '_'",
			edit: func(r *Request) { r.DNSNames = []string{"bad_name.internal"} }},
		{name: "rsa-1024 key", profile: "server", field: "public_key", reason: "too small",
			pub: &rsa1024.PublicKey, edit: names("db.internal")},
		{name: "rsa exponent 3", profile: "server", field: "public_key", reason: "exponent must be 65537",
			pub: &rsaE3, edit: names("db.internal")},
		{name: "key type not allowed", profile: "server", cfg: &ecOnly, field: "public_key", reason: "key type ed25519 is not allowed",
			pub: testKey(t, keys.Ed25519, 0).Public(), edit: names("db.internal")},
		{name: "issuer's own key", profile: "server", field: "public_key", reason: "issuer's own key",
			pub: chain.intermediate.Public(), edit: names("db.internal")},
		{name: "no public key", profile: "server", field: "public_key", reason: "no public key",
			pub: nil, edit: names("db.internal")},
		{name: "issuer expires first", profile: "server", issuer: shortIssuer, field: "validity", reason: "rotate the intermediate",
			edit: names("db.internal")},
		{name: "cn not in sans", profile: "server", field: "common_name", reason: "must equal one of the requested subject alternative names",
			edit: func(r *Request) { names("db.internal")(r); r.Subject.CommonName = "other.internal" }},
		{name: "client cn with dot", profile: "client", field: "common_name", reason: `match names.common_name [*]`,
			edit: func(r *Request) { r.Subject.CommonName = "app.example" }},
		{name: "no names at all", profile: "server", field: "common_name", reason: "names no subject"},
		{name: "cn too long", profile: "client", field: "common_name", reason: "maximum 64",
			edit: func(r *Request) { r.Subject.CommonName = strings.Repeat("a", 65) }},
		{name: "control character in organization", profile: "client", field: "organization[0]", reason: "control character",
			edit: func(r *Request) { r.Subject.CommonName = "app"; r.Subject.Organization = []string{"a\nb"} }},
		{name: "sans on a ca", profile: "intermediate", issuer: chain.rootIssuer, field: "dns_names[0]", reason: "no subject alternative names",
			edit: func(r *Request) { names("ca.internal")(r); r.Subject.CommonName = "Sub CA" }},
		{name: "ca without cn", profile: "intermediate", issuer: chain.rootIssuer, field: "common_name", reason: "need a common name"},
		{name: "ca below path length 0", profile: "intermediate", field: "max_path_len", reason: "cannot issue CA certificates",
			edit: func(r *Request) { r.Subject.CommonName = "Sub CA" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := DefaultProfiles()[tt.profile]
			if tt.cfg != nil {
				cfg = *tt.cfg
			}
			p := mustProfile(t, tt.profile, cfg)
			iss := chain.interIssuer
			if tt.issuer != nil {
				iss = tt.issuer
			}
			req := &Request{PublicKey: ecKey}
			if tt.pub != nil || strings.Contains(tt.name, "no public key") {
				req.PublicKey = tt.pub
			}
			if tt.edit != nil {
				tt.edit(req)
			}
			lintDER, tok, err := iss.Prepare(p, req, serial(t), chain.now)
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("Prepare() error = %v, want *PolicyError", err)
			}
			if lintDER != nil || tok != nil {
				t.Error("Prepare returned a certificate along with an error")
			}
			if pe.Field != tt.field || pe.Profile != tt.profile || !strings.Contains(pe.Reason, tt.reason) {
				t.Fatalf("PolicyError = %+v, want field %q, reason containing %q", pe, tt.field, tt.reason)
			}
			if want := fmt.Sprintf("issuance: profile %q: %s: %s", tt.profile, tt.field, pe.Reason); err.Error() != want {
				t.Errorf("Error() = %q, want %q", err, want)
			}
		})
	}
}

func TestPrepareAllows(t *testing.T) {
	t.Parallel()
	chain := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 0)
	pub := testKey(t, keys.ECDSAP256, 4).Public()

	wild := DefaultProfiles()["server"]
	wild.Names.AllowWildcardNames = true
	spiffe := DefaultProfiles()["peer"]
	spiffe.Names.URI = []string{"spiffe://example.internal/ns/*/sa/*"}
	spiffe.Names.Email = []string{"*@example.internal"}
	spiffe.Names.IP = []string{"10.0.0.0/8", "192.168.1.1"}

	tests := []struct {
		name  string
		cfg   ProfileConfig
		cn    string
		names []string
		want  []string // token SANs
	}{
		{"wildcard when allowed", wild, "", []string{"*.svc.internal"}, []string{"dns:*.svc.internal"}},
		{"uri email ip", spiffe, "", []string{"spiffe://Example.Internal/ns/prod/sa/db", "ops@Example.Internal", "10.1.2.3", "192.168.1.1", "::ffff:10.0.0.1"},
			[]string{"ip:10.1.2.3", "ip:192.168.1.1", "ip:10.0.0.1", "uri:spiffe://example.internal/ns/prod/sa/db", "email:ops@example.internal"}},
		{"duplicates removed", DefaultProfiles()["server"], "DB.internal", []string{"db.internal", "DB.INTERNAL", "db.internal.", "127.0.0.1", "127.0.0.1"},
			[]string{"dns:db.internal", "ip:127.0.0.1"}},
		{"cn equal to an ip san", DefaultProfiles()["server"], "127.0.0.1", []string{"127.0.0.1"}, []string{"ip:127.0.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := &Request{PublicKey: pub, Subject: pkixName(tt.cn)}
			if err := req.AddNames(tt.names...); err != nil {
				t.Fatal(err)
			}
			_, tok, err := chain.interIssuer.Prepare(mustProfile(t, "p", tt.cfg), req, serial(t), chain.now)
			if err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			if got := tok.SANs(); !slices.Equal(got, tt.want) {
				t.Errorf("SANs = %v, want %v", got, tt.want)
			}
			der, err := chain.interIssuer.Issue(tok)
			if err != nil {
				t.Fatal(err)
			}
			if c := parseCert(t, der); tt.cn != "" && c.Subject.CommonName != strings.ToLower(tt.cn) {
				t.Errorf("CN = %q, want the normalized SAN", c.Subject.CommonName)
			}
		})
	}
}

func TestBackdateNeverShortensValidity(t *testing.T) {
	t.Parallel()
	chain := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 0)
	cfg := DefaultProfiles()["server"]
	cfg.Backdate = Duration(time.Hour)
	cfg.Validity = Duration(2 * time.Hour)
	p := mustProfile(t, "server", cfg)
	now := chain.now.Add(3*time.Hour + 250*time.Millisecond) // sub-second part is truncated
	req := defaultRequest(t, "server", testKey(t, keys.ECDSAP256, 2).Public())
	cert := issue(t, chain.interIssuer, p, req, now)
	tnow := now.UTC().Truncate(time.Second)
	if got := cert.NotAfter.Sub(tnow); got != 2*time.Hour {
		t.Errorf("NotAfter - now = %v, want the full validity 2h", got)
	}
	if got := tnow.Sub(cert.NotBefore); got != time.Hour {
		t.Errorf("now - NotBefore = %v, want the backdate 1h", got)
	}
	// Right after the intermediate was made, the backdate is clamped to
	// the issuer's NotBefore, and NotAfter still counts from now.
	cert = issue(t, chain.interIssuer, p, req, chain.inter.NotBefore)
	if !cert.NotBefore.Equal(chain.inter.NotBefore) {
		t.Errorf("NotBefore = %v, want clamped to the issuer's %v", cert.NotBefore, chain.inter.NotBefore)
	}
	if got := cert.NotAfter.Sub(chain.inter.NotBefore); got != 2*time.Hour {
		t.Errorf("NotAfter - now = %v, want 2h", got)
	}
	// Before the issuer is valid: refused.
	if _, _, err := chain.interIssuer.Prepare(p, req, serial(t), chain.inter.NotBefore.Add(-time.Second)); err == nil {
		t.Error("Prepare before the issuer's NotBefore succeeded")
	}
}

func TestPrepareRejectsBadSerial(t *testing.T) {
	t.Parallel()
	chain := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 0)
	p := defaultProfile(t, "server")
	req := defaultRequest(t, "server", testKey(t, keys.ECDSAP256, 2).Public())
	for _, s := range []*big.Int{nil, big.NewInt(0), big.NewInt(-5), new(big.Int).Lsh(big.NewInt(1), 159)} {
		if _, _, err := chain.interIssuer.Prepare(p, req, s, chain.now); err == nil {
			t.Errorf("Prepare with serial %v succeeded", s)
		}
	}
	// 159 bits is the largest that encodes in 20 octets.
	max := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 159), big.NewInt(1))
	if _, _, err := chain.interIssuer.Prepare(p, req, max, chain.now); err != nil {
		t.Errorf("Prepare with a 159-bit serial: %v", err)
	}
}

func TestNewIssuerRejects(t *testing.T) {
	t.Parallel()
	chain := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 0)
	leaf := issue(t, chain.interIssuer, defaultProfile(t, "server"),
		defaultRequest(t, "server", testKey(t, keys.ECDSAP256, 2).Public()), chain.now)
	noSKI := *chain.inter
	noSKI.SubjectKeyId = nil

	tests := []struct {
		name    string
		cert    *x509.Certificate
		signer  crypto.Signer
		cfg     IssuerConfig
		wantIs  error
		wantMsg string
	}{
		{"mismatched key", chain.inter, chain.rootKey, IssuerConfig{}, ErrKeyMismatch, "does not match"},
		{"mismatched key type", chain.inter, testKey(t, keys.Ed25519, 0), IssuerConfig{}, ErrKeyMismatch, "does not match"},
		{"not a ca", leaf, testKey(t, keys.ECDSAP256, 2), IssuerConfig{}, nil, "not a CA"},
		{"no ski", &noSKI, chain.intermediate, IssuerConfig{}, nil, "no subject key identifier"},
		{"ftp url", chain.inter, chain.intermediate, IssuerConfig{CRLDistributionPoints: []string{"ftp://pki.internal/ca.crl"}}, nil, "crl[0]"},
		{"relative url", chain.inter, chain.intermediate, IssuerConfig{OCSPServers: []string{"/ocsp"}}, nil, "ocsp[0]"},
		{"nil signer", chain.inter, nil, IssuerConfig{}, nil, "nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iss, err := NewIssuer(tt.cert, tt.signer, tt.cfg)
			if err == nil {
				t.Fatalf("NewIssuer() = %v, want error", iss)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Fatalf("NewIssuer() error = %v, want %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("NewIssuer() error = %q, want it to mention %q", err, tt.wantMsg)
			}
		})
	}
}

func TestTokenRedeemedOnce(t *testing.T) {
	t.Parallel()
	chain := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 0)
	p := defaultProfile(t, "server")
	_, tok, err := chain.interIssuer.Prepare(p, defaultRequest(t, "server", testKey(t, keys.ECDSAP256, 2).Public()), serial(t), chain.now)
	if err != nil {
		t.Fatal(err)
	}
	// Another issuer refuses the token without consuming it.
	other := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 0)
	if _, err := other.interIssuer.Issue(tok); !errors.Is(err, ErrWrongIssuer) {
		t.Fatalf("Issue by another issuer: error = %v, want ErrWrongIssuer", err)
	}
	if _, err := chain.rootIssuer.Issue(tok); !errors.Is(err, ErrWrongIssuer) {
		t.Fatalf("Issue by the root: error = %v, want ErrWrongIssuer", err)
	}
	if _, err := chain.interIssuer.Issue(tok); err != nil {
		t.Fatalf("first Issue: %v", err)
	}
	if der, err := chain.interIssuer.Issue(tok); !errors.Is(err, ErrTokenUsed) || der != nil {
		t.Fatalf("second Issue: %v, want ErrTokenUsed", err)
	}
	if _, err := chain.interIssuer.Issue(nil); err == nil {
		t.Fatal("Issue(nil) succeeded")
	}
	if _, err := chain.interIssuer.Issue(&Token{}); err == nil {
		t.Fatal("Issue(&Token{}) succeeded")
	}
	if _, _, err := chain.interIssuer.Prepare(&Profile{}, &Request{}, big.NewInt(1), chain.now); err == nil {
		t.Fatal("Prepare with a zero Profile succeeded")
	}
}

// TestIssueRefusesUnlintedTBS: if what would be signed differs from what was
// linted (here: the subject key changed after Prepare), Issue returns nothing.
func TestIssueRefusesUnlintedTBS(t *testing.T) {
	t.Parallel()
	chain := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 0)
	p := defaultProfile(t, "server")
	_, tok, err := chain.interIssuer.Prepare(p, defaultRequest(t, "server", testKey(t, keys.ECDSAP256, 2).Public()), serial(t), chain.now)
	if err != nil {
		t.Fatal(err)
	}
	tok.pub = testKey(t, keys.ECDSAP256, 3).Public()
	der, err := chain.interIssuer.Issue(tok)
	if err == nil || der != nil || !strings.Contains(err.Error(), "differs from the linted one") {
		t.Fatalf("Issue() = %d bytes, %v; want refusal", len(der), err)
	}
}

func TestIssueConcurrent(t *testing.T) {
	t.Parallel()
	chain := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 0)
	p := defaultProfile(t, "peer")
	const n = 16
	toks := make([]*Token, n)
	for j := range toks {
		var err error
		_, toks[j], err = chain.interIssuer.Prepare(p, defaultRequest(t, "peer", testKey(t, keys.ECDSAP256, j%4).Public()), serial(t), chain.now)
		if err != nil {
			t.Fatal(err)
		}
	}
	ders := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for j := range toks {
		wg.Go(func() { ders[j], errs[j] = chain.interIssuer.Issue(toks[j]) })
	}
	// Concurrent double redemption of one token: exactly one wins.
	var wins, used int
	var mu sync.Mutex
	_, extra, err := chain.interIssuer.Prepare(p, defaultRequest(t, "peer", testKey(t, keys.ECDSAP256, 0).Public()), serial(t), chain.now)
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		wg.Go(func() {
			_, err := chain.interIssuer.Issue(extra)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, ErrTokenUsed):
				used++
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for j := range ders {
		if errs[j] != nil {
			t.Fatalf("Issue %d: %v", j, errs[j])
		}
		c := parseCert(t, ders[j])
		if c.SerialNumber.Cmp(toks[j].Serial()) != 0 || seen[c.SerialNumber.String()] {
			t.Fatalf("certificate %d has serial %x", j, c.SerialNumber)
		}
		seen[c.SerialNumber.String()] = true
	}
	if wins != 1 || used != 3 {
		t.Fatalf("concurrent redemption of one token: %d successes, %d ErrTokenUsed; want 1 and 3", wins, used)
	}
}

// TestNameConstraintsIntermediate: an intermediate constrained to .internal
// issues a leaf that verifies; a leaf outside the constraint is rejected by
// x509.Verify (and openssl) even though this intermediate signed it.
func TestNameConstraintsIntermediate(t *testing.T) {
	t.Parallel()
	chain := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 0)
	ca := DefaultProfiles()["intermediate"]
	ca.NameConstraints = &NameConstraintsConfig{Critical: true, PermittedDNS: []string{".internal"}, PermittedIP: []string{"127.0.0.0/8"}}
	key := testKey(t, keys.ECDSAP256, 6)
	constrained := issue(t, chain.rootIssuer, mustProfile(t, "constrained", ca),
		&Request{PublicKey: key.Public(), Subject: pkixName("Constrained CA")}, chain.now)
	if !constrained.PermittedDNSDomainsCritical || !slices.Equal(constrained.PermittedDNSDomains, []string{".internal"}) {
		t.Fatalf("name constraints = %v (critical %v)", constrained.PermittedDNSDomains, constrained.PermittedDNSDomainsCritical)
	}
	iss, err := NewIssuer(constrained, key, testIssuerConfig)
	if err != nil {
		t.Fatal(err)
	}
	// A profile (wrongly) allowing names outside the constraint.
	wide := DefaultProfiles()["server"]
	wide.Names.DNS = append(wide.Names.DNS, "**.com")
	p := mustProfile(t, "wide", wide)
	leafReq := func(name string) *Request {
		r := &Request{PublicKey: testKey(t, keys.ECDSAP256, 2).Public()}
		if err := r.AddNames(name); err != nil {
			t.Fatal(err)
		}
		return r
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(chain.root)
	inters.AddCert(constrained)
	opts := x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: chain.now}

	good := issue(t, iss, p, leafReq("db.internal"), chain.now)
	if _, err := good.Verify(opts); err != nil {
		t.Fatalf("leaf inside the constraint: %v", err)
	}
	if err := opensslVerify(t, []*x509.Certificate{chain.root}, []*x509.Certificate{constrained}, good, "sslserver"); err != nil {
		t.Fatalf("openssl, leaf inside the constraint: %v", err)
	}
	bad := issue(t, iss, p, leafReq("db.example.com"), chain.now)
	var cie x509.CertificateInvalidError
	if _, err := bad.Verify(opts); !errors.As(err, &cie) || cie.Reason != x509.CANotAuthorizedForThisName {
		t.Fatalf("leaf outside the constraint: Verify error = %v, want CANotAuthorizedForThisName", err)
	}
	if err := opensslVerify(t, []*x509.Certificate{chain.root}, []*x509.Certificate{constrained}, bad, "sslserver"); err == nil {
		t.Fatal("openssl accepted a leaf outside the name constraints")
	}
}

// TestLintRefuses: the lint step really refuses (a certificate zlint warns
// about is never handed out) and reports the findings.
func TestLintRefuses(t *testing.T) {
	t.Parallel()
	chain := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 0)
	reg, err := privateRegistry()
	if err != nil {
		t.Fatal(err)
	}
	// A leaf without a subject key identifier: RFC 5280 lint warning.
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1234),
		Subject:               pkixName("db.internal"),
		DNSNames:              []string{"db.internal"},
		NotBefore:             chain.now.Add(-time.Minute),
		NotAfter:              chain.now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, chain.inter, testKey(t, keys.ECDSAP256, 2).Public(), chain.intermediate)
	if err != nil {
		t.Fatal(err)
	}
	err = lintCertificate(reg, der)
	var le *LintError
	if !errors.As(err, &le) || !errors.Is(err, ErrLint) {
		t.Fatalf("lintCertificate() = %v, want *LintError wrapping ErrLint", err)
	}
	if len(le.Findings) != 1 || le.Findings[0].Name != "w_ext_subject_key_identifier_missing_sub_cert" ||
		le.Findings[0].Status != "warn" || le.Findings[0].Source != "RFC5280" {
		t.Fatalf("findings = %+v", le.Findings)
	}
	if !strings.Contains(err.Error(), "w_ext_subject_key_identifier_missing_sub_cert (warn, RFC5280)") {
		t.Errorf("Error() = %q", err)
	}
	if err := lintCertificate(reg, []byte{0x30, 0}); !errors.Is(err, ErrLint) {
		t.Errorf("lintCertificate(garbage) = %v", err)
	}

	// Through Prepare: a DNS label that is not valid punycode passes our
	// syntax checks but not zlint's IDNA lint.
	req := &Request{PublicKey: testKey(t, keys.ECDSAP256, 2).Public(), DNSNames: []string{"xn--zz.internal"}}
	lintDER, tok, err := chain.interIssuer.Prepare(defaultProfile(t, "server"), req, serial(t), chain.now)
	if !errors.As(err, &le) || lintDER != nil || tok != nil {
		t.Fatalf("Prepare(invalid punycode) = %v, want *LintError", err)
	}
}

func TestNewSerial(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	minBits := 160
	for range 2000 {
		s, err := NewSerial(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if s.Sign() <= 0 || s.BitLen() > 159 || len(s.Bytes()) > 20 {
			t.Fatalf("serial %x: sign %d, %d bits", s, s.Sign(), s.BitLen())
		}
		der, err := asn1.Marshal(s)
		if err != nil || len(der)-2 > 20 {
			t.Fatalf("serial %x encodes in %d octets", s, len(der)-2)
		}
		if seen[s.String()] {
			t.Fatalf("serial %x drawn twice", s)
		}
		seen[s.String()] = true
		minBits = min(minBits, s.BitLen())
	}
	// With 159 random bits, 2000 draws all stay far above 64 bits.
	if minBits < 140 {
		t.Errorf("smallest serial has %d bits", minBits)
	}

	if _, err := NewSerial(bytes.NewReader(make([]byte, 1000))); err == nil {
		t.Error("NewSerial(all zeros) succeeded")
	}
	if _, err := NewSerial(bytes.NewReader(make([]byte, 10))); err == nil {
		t.Error("NewSerial(short reader) succeeded")
	}
	// A zero draw is replaced by the next one.
	src := append(make([]byte, 20), bytes.Repeat([]byte{0xff}, 20)...)
	s, err := NewSerial(bytes.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	if want := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 159), big.NewInt(1)); s.Cmp(want) != 0 {
		t.Errorf("NewSerial = %x, want %x (second draw, top bit cleared)", s, want)
	}
}

func TestSelfSignRoot(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, kt := range allKeyTypes {
		for _, mpl := range []int{-1, 0, 2} {
			t.Run(fmt.Sprintf("%s/pathlen%d", kt, mpl), func(t *testing.T) {
				t.Parallel()
				key := testKey(t, kt, 0)
				der, err := SelfSignRoot(key, RootConfig{CommonName: "Root", Organization: []string{"Org"}, Validity: 20 * 365 * day, MaxPathLen: mpl}, serial(t), now)
				if err != nil {
					t.Fatal(err)
				}
				c := parseCert(t, der)
				if err := c.CheckSignatureFrom(c); err != nil {
					t.Fatal(err)
				}
				ski, _ := subjectKeyID(key.Public())
				if !c.IsCA || !bytes.Equal(c.SubjectKeyId, ski) || c.MaxPathLen != mpl || c.MaxPathLenZero != (mpl == 0) ||
					c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign|x509.KeyUsageDigitalSignature {
					t.Errorf("root: IsCA %v SKI %x MaxPathLen %d/%v KU %b", c.IsCA, c.SubjectKeyId, c.MaxPathLen, c.MaxPathLenZero, c.KeyUsage)
				}
				if got := c.NotAfter.Sub(now.UTC().Truncate(time.Second)); got != 20*365*day {
					t.Errorf("validity = %v", got)
				}
				reg, _ := privateRegistry()
				if err := lintCertificate(reg, der); err != nil {
					t.Error(err)
				}
			})
		}
	}
	bad := []struct {
		name string
		cfg  RootConfig
		s    *big.Int
	}{
		{"no cn", RootConfig{Validity: day}, big.NewInt(1)},
		{"zero validity", RootConfig{CommonName: "R"}, big.NewInt(1)},
		{"too long", RootConfig{CommonName: "R", Validity: 30 * 365 * day}, big.NewInt(1)},
		{"bad path len", RootConfig{CommonName: "R", Validity: day, MaxPathLen: -2}, big.NewInt(1)},
		{"no serial", RootConfig{CommonName: "R", Validity: day}, nil},
		{"empty org", RootConfig{CommonName: "R", Validity: day, Organization: []string{""}}, big.NewInt(1)},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := SelfSignRoot(testKey(t, keys.ECDSAP256, 0), tt.cfg, tt.s, now); err == nil {
				t.Fatal("SelfSignRoot succeeded")
			}
		})
	}
}

func TestRequestFromCSRThenIssue(t *testing.T) {
	t.Parallel()
	chain := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 0)
	key := testKey(t, keys.RSA2048, 0)
	csr := makeCSR(t, key, &x509.CertificateRequest{
		Subject:     pkixName("DB.internal", "Example"),
		DNSNames:    []string{"DB.internal", "replica.db.internal."},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	})
	parsed, err := ParseCSR(csr)
	if err != nil {
		t.Fatal(err)
	}
	req := RequestFromCSR(parsed)
	parsed.DNSNames[0] = "changed.internal" // the request holds its own copy
	cert := issue(t, chain.interIssuer, defaultProfile(t, "server"), req, chain.now)
	if !slices.Equal(cert.DNSNames, []string{"db.internal", "replica.db.internal"}) || cert.Subject.CommonName != "db.internal" ||
		!slices.Equal(cert.Subject.Organization, []string{"Example"}) {
		t.Fatalf("issued names %v subject %q", cert.DNSNames, cert.Subject)
	}
	if !key.Public().(*rsa.PublicKey).Equal(cert.PublicKey) {
		t.Fatal("public key not copied")
	}
	if r := RequestFromCSR(nil); r == nil || r.PublicKey != nil {
		t.Fatal("RequestFromCSR(nil)")
	}
}

func TestAddNames(t *testing.T) {
	t.Parallel()
	u := func(s string) string { p, _ := url.Parse(s); return p.String() }
	tests := []struct {
		in                    string
		dns, ip, uri, email   string
		wantErr, errSubstring string
	}{
		{in: "DB.Internal.", dns: "db.internal"},
		{in: "localhost", dns: "localhost"},
		{in: "xn--bcher-kva.internal", dns: "xn--bcher-kva.internal"},
		{in: "*.svc.internal", dns: "*.svc.internal"},
		{in: " 127.0.0.1 ", ip: "127.0.0.1"},
		{in: "::ffff:10.0.0.1", ip: "10.0.0.1"},
		{in: "2001:db8::1", ip: "2001:db8::1"},
		{in: "spiffe://Example.Internal/ns/A", uri: u("spiffe://example.internal/ns/A")},
		{in: "urn://x.internal/a", uri: "urn://x.internal/a"},
		{in: "Ops@Example.Internal", email: "Ops@example.internal"},
		{in: "", wantErr: "empty"},
		{in: "bad_name.internal", wantErr: "'_'"},
		{in: "bücher.internal", wantErr: "A-label"},
		{in: "a..b", wantErr: "empty label"},
		{in: "-a.internal", wantErr: "hyphen"},
		{in: strings.Repeat("a", 64) + ".internal", wantErr: "longer than 63"},
		{in: "a.*.internal", wantErr: "wildcard may only be"},
		{in: "*.internal", wantErr: "at least two labels"},
		{in: "fe80::1%eth0", wantErr: "contains ':'"},
		{in: "http://", wantErr: "no host"},
		{in: "http://user:pw@host.internal/", wantErr: "user information"},
		{in: "spiffe://x.internal/a b", wantErr: "' '"},
		{in: "@example.internal", wantErr: "local part"},
		{in: "a@b@c.internal", wantErr: "exactly one"},
		{in: "ops@*.a.internal", wantErr: "cannot be a wildcard"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r := &Request{DNSNames: []string{"keep.internal"}}
			err := r.AddNames("first.internal", tt.in)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("AddNames(%q) error = %v, want ErrInvalidName mentioning %q", tt.in, err, tt.wantErr)
				}
				if !slices.Equal(r.DNSNames, []string{"keep.internal"}) {
					t.Fatalf("failed AddNames changed the request: %v", r.DNSNames)
				}
				return
			}
			if err != nil {
				t.Fatalf("AddNames(%q): %v", tt.in, err)
			}
			var dns, ip, uri, email string
			if len(r.DNSNames) > 2 {
				dns = r.DNSNames[2]
			}
			if len(r.IPAddresses) > 0 {
				ip = r.IPAddresses[0].String()
				if strings.Contains(tt.in, ".") && len(r.IPAddresses[0]) != net.IPv4len {
					t.Errorf("IPv4 address stored in %d bytes", len(r.IPAddresses[0]))
				}
			}
			if len(r.URIs) > 0 {
				uri = r.URIs[0].String()
			}
			if len(r.EmailAddresses) > 0 {
				email = r.EmailAddresses[0]
			}
			if dns != tt.dns || ip != tt.ip || uri != tt.uri || email != tt.email {
				t.Fatalf("AddNames(%q): dns %q ip %q uri %q email %q; want %q %q %q %q", tt.in, dns, ip, uri, email, tt.dns, tt.ip, tt.uri, tt.email)
			}
		})
	}
}

func TestPatterns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind, pattern  string
		match, noMatch []string
	}{
		{"dns", "db.internal", []string{"db.internal", "DB.INTERNAL"}, []string{"x.db.internal", "internal", "db.internal.evil"}},
		{"dns", "*.svc.internal", []string{"a.svc.internal"}, []string{"svc.internal", "a.b.svc.internal", "a.svc.internal.x"}},
		{"dns", "**.internal", []string{"a.internal", "a.b.c.internal", "*.b.internal"}, []string{"internal", "a.internal.com", "ainternal"}},
		{"dns", "db.*.internal", []string{"db.eu.internal"}, []string{"db.internal", "db.a.b.internal"}},
		{"dns", "localhost", []string{"localhost"}, []string{"a.localhost"}},
		{"uri", "spiffe://example.internal/**", []string{"spiffe://example.internal/a", "spiffe://EXAMPLE.internal/ns/a/sa/b"}, []string{"spiffe://example.internal", "spiffe://other.internal/a", "https://example.internal/a"}},
		{"uri", "spiffe://example.internal/ns/*/sa/*", []string{"spiffe://example.internal/ns/prod/sa/db"}, []string{"spiffe://example.internal/ns/prod/sa/db/x", "spiffe://example.internal/ns//sa/db", "spiffe://example.internal/ns/prod/sa/DB/"}},
		{"uri", "spiffe://**", []string{"spiffe://a/b", "spiffe://a"}, []string{"https://a/b"}},
		{"email", "*@example.internal", []string{"ops@example.internal", "a.b@example.internal"}, []string{"ops@x.example.internal", "ops@example.com"}},
		{"email", "ops@**.internal", []string{"ops@a.internal", "ops@a.b.internal"}, []string{"Ops@a.internal", "dev@a.internal"}},
		{"cn", "*", []string{"app", "app_user", "App"}, []string{"a.b", ""}},
		{"cn", "app", []string{"app"}, []string{"APP", "App", "app.x"}},
		{"cn", "*.db.internal", []string{"app.db.internal"}, []string{"app.DB.internal", "db.internal"}},
		{"cn", "**", []string{"app", "any thing.at all"}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.kind+"/"+tt.pattern, func(t *testing.T) {
			var match func(string) bool
			var err error
			switch tt.kind {
			case "dns":
				var p pattern
				p, err = compileDNSPattern(tt.pattern)
				match = func(s string) bool { return p.match(s) }
			case "uri":
				var p pattern
				p, err = compileURIPattern(tt.pattern)
				match = func(s string) bool { return p.match(lowerAuthority(s)) }
			case "email":
				var p emailPattern
				p, err = compileEmailPattern(tt.pattern)
				match = p.match
			case "cn":
				var p pattern
				p, err = compileCNPattern(tt.pattern)
				match = func(s string) bool { return p.match(s) }
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.match {
				if !match(s) {
					t.Errorf("%q does not match %q", s, tt.pattern)
				}
			}
			for _, s := range tt.noMatch {
				if match(s) {
					t.Errorf("%q matches %q", s, tt.pattern)
				}
			}
		})
	}
}
