package scan

import (
	"bufio"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/certctl/certctl/internal/pkitest"
)

// pki is the set of CAs and certificates the endpoint tests share.
type pki struct {
	root, inter *testCA
	clientCA    *testCA
	client      tls.Certificate // valid client identity from clientCA
}

func newPKI(t *testing.T) *pki {
	p := &pki{root: newRootCA(t, "Scan Test Root")}
	p.inter = p.root.intermediate(t, "Scan Test Intermediate")
	p.clientCA = newRootCA(t, "Scan Test Client CA")
	c, k := p.clientCA.issue(t, leafSpec{cn: "client-app", eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	p.client = tlsCert([]*x509.Certificate{c}, k)
	return p
}

// leaf issues a localhost server certificate from the intermediate.
func (p *pki) leaf(t *testing.T, s leafSpec) ([]*x509.Certificate, crypto.Signer) {
	if s.dns == nil {
		s.dns = []string{"localhost"}
	}
	c, k := p.inter.issue(t, s)
	return []*x509.Certificate{c, p.inter.cert}, k
}

func goServerConfig(chain []*x509.Certificate, key crypto.Signer) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{tlsCert(chain, key)}}
}

const hstsYear = "max-age=31536000; includeSubDomains"

// endpoint is one reference server and the expected outcome of its scan.
type endpoint struct {
	name   string
	start  func(t *testing.T, p *pki) (Target, []Option)
	grade  string
	checks []string
	// check, if set, makes further assertions on the result.
	check func(t *testing.T, r *Result)
}

func TestScanEndpoints(t *testing.T) {
	p := newPKI(t)
	clientCAFile := writeFile(t, t.TempDir(), "clientca.pem", pkitest.CertsPEM(p.clientCA.cert))
	mtlsOpts := func() []Option {
		return []Option{WithRoots(p.root.pool()), WithClientIssuer(p.clientCA.cert, p.clientCA.key)}
	}
	opensslLeaf := func(extra ...string) func(t *testing.T, p *pki) (Target, []Option) {
		return func(t *testing.T, p *pki) (Target, []Option) {
			chain, key := p.leaf(t, leafSpec{})
			return localTarget(startOpenSSL(t, chain, key, extra...)), mtlsOpts()
		}
	}
	goMTLS := func(auth tls.ClientAuthType, maxVersion uint16) func(t *testing.T, p *pki) (Target, []Option) {
		return func(t *testing.T, p *pki) (Target, []Option) {
			chain, key := p.leaf(t, leafSpec{})
			cfg := goServerConfig(chain, key)
			cfg.ClientAuth, cfg.ClientCAs, cfg.MaxVersion = auth, p.clientCA.pool(), maxVersion
			return localTarget(startGoTLS(t, cfg, hstsYear)), append(mtlsOpts(), WithClientCertificate(p.client), WithExpectClientAuth())
		}
	}
	probeNames := func(t *testing.T, r *Result, want map[string]bool) {
		t.Helper()
		if r.MTLS == nil {
			t.Fatal("MTLS = nil")
		}
		got := map[string]bool{}
		for _, pr := range r.MTLS.Probes {
			got[pr.Name] = pr.Accepted
		}
		for name, acc := range want {
			if a, ok := got[name]; !ok || a != acc {
				t.Errorf("probe %s: accepted=%v (ran=%v), want %v; probes %+v", name, a, ok, acc, r.MTLS.Probes)
			}
		}
	}

	tests := []endpoint{
		{
			name: "go/good with HSTS",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				chain, key := p.leaf(t, leafSpec{})
				return localTarget(startGoTLS(t, goServerConfig(chain, key), hstsYear)), []Option{WithRoots(p.root.pool())}
			},
			grade: GradeAPlus, checks: []string{},
			check: func(t *testing.T, r *Result) {
				f := r.Features
				if !f.HTTP2 || !f.SessionTickets || !f.SessionResumption || !f.FallbackSCSV || !f.SecureRenegotiation || f.Compression {
					t.Errorf("features = %+v", f)
				}
				if r.HSTS == nil || r.HSTS.MaxAge != 31536000 || !r.HSTS.IncludeSubDomains {
					t.Errorf("HSTS = %+v", r.HSTS)
				}
				if !r.Trusted || !r.NameMatch || r.MTLS != nil || r.Score != 93 {
					t.Errorf("trusted=%v name=%v mtls=%v score=%d", r.Trusted, r.NameMatch, r.MTLS, r.Score)
				}
				if !slices.ContainsFunc(r.Groups, func(g Group) bool { return g.Name == "X25519MLKEM768" && g.PostQuantum }) {
					t.Errorf("groups %+v lack X25519MLKEM768", r.Groups)
				}
				if len(r.Chain) != 2 || r.Certificate.KeyType != "ECDSA" || r.Certificate.SANs[0] != "localhost" {
					t.Errorf("certificate %+v chain %d", r.Certificate, len(r.Chain))
				}
			},
		},
		{
			name: "go/good without enumeration",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				chain, key := p.leaf(t, leafSpec{})
				return localTarget(startGoTLS(t, goServerConfig(chain, key), hstsYear)), []Option{WithRoots(p.root.pool()), WithoutEnumeration()}
			},
			grade: GradeAPlus, checks: []string{},
			check: func(t *testing.T, r *Result) {
				// Only what crypto/tls negotiated: TLS 1.3, AES-128 (cipher
				// score 80), X25519MLKEM768 and P-256 key (90).
				if len(r.Protocols) != 1 || len(r.CipherSuites) != 1 || r.Score != 89 {
					t.Errorf("protocols %+v suites %+v score %d", r.Protocols, r.CipherSuites, r.Score)
				}
			},
		},
		{
			name: "go/OCSP stapled, SCTs embedded",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				sctExt, err := marshalSCTList([][]byte{{0, 1, 2}, {3, 4, 5}})
				if err != nil {
					t.Fatal(err)
				}
				chain, key := p.leaf(t, leafSpec{ocsp: []string{"http://127.0.0.1:1/unused"}, extra: []pkix.Extension{{Id: oidSCTList, Value: sctExt}}})
				now := time.Now()
				staple, err := ocsp.CreateResponse(p.inter.cert, p.inter.cert, ocsp.Response{
					Status: ocsp.Good, SerialNumber: chain[0].SerialNumber, ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(time.Hour),
				}, p.inter.key)
				if err != nil {
					t.Fatal(err)
				}
				cfg := goServerConfig(chain, key)
				cfg.Certificates[0].OCSPStaple = staple
				return localTarget(startGoTLS(t, cfg, hstsYear)), []Option{WithRoots(p.root.pool())}
			},
			grade: GradeAPlus, checks: []string{},
			check: func(t *testing.T, r *Result) {
				if !r.Features.OCSPStapling || r.Features.SCTs != 2 || r.Revocation == nil || r.Revocation.OCSP != "good" {
					t.Errorf("features %+v revocation %+v", r.Features, r.Revocation)
				}
			},
		},
		{
			name: "go/good, expected mTLS not requested",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				chain, key := p.leaf(t, leafSpec{})
				return localTarget(startGoTLS(t, goServerConfig(chain, key), hstsYear)), []Option{WithRoots(p.root.pool()), WithExpectClientAuth()}
			},
			grade: GradeF, checks: []string{"mtls.not_required"},
		},
		{
			name: "go/expires soon",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				// 10 of 90 days left: inside both the 14-day threshold and the last third.
				chain, key := p.leaf(t, leafSpec{notBefore: time.Now().Add(-80 * 24 * time.Hour), notAfter: time.Now().Add(10 * 24 * time.Hour)})
				return localTarget(startGoTLS(t, goServerConfig(chain, key), hstsYear)), []Option{WithRoots(p.root.pool()), WithExpiryWarning(14)}
			},
			grade: GradeAMinus, checks: []string{"certificate.expires_soon"},
		},
		{
			name: "go/chain out of order with root",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				chain, key := p.leaf(t, leafSpec{})
				chain = []*x509.Certificate{chain[0], p.root.cert, chain[1]}
				return localTarget(startGoTLS(t, goServerConfig(chain, key), hstsYear)), []Option{WithRoots(p.root.pool())}
			},
			grade: GradeAMinus, checks: []string{"chain.order", "chain.contains_anchor"},
		},
		{
			name: "go/extra certificate",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				chain, key := p.leaf(t, leafSpec{})
				chain = append(chain, p.clientCA.cert) // unrelated to the path
				return localTarget(startGoTLS(t, goServerConfig(chain, key), hstsYear)), []Option{WithRoots(p.root.pool())}
			},
			grade: GradeAPlus, checks: []string{"chain.extra_certs"},
		},
		{
			name: "go/legacy protocols RC4 3DES",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				chain, key := p.leaf(t, leafSpec{key: rsaKey(t, 2048)})
				cfg := goServerConfig(chain, key)
				cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS12
				cfg.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
					tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA, tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA}
				return localTarget(startGoTLS(t, cfg, hstsYear)), []Option{WithRoots(p.root.pool())}
			},
			grade:  GradeC,
			checks: []string{"cipher.64bit_block", "cipher.rc4", "protocol.no_tls13", "protocol.tls10", "protocol.tls11"},
			check: func(t *testing.T, r *Result) {
				// Cipher strength: strongest AES-128/RC4 (80), weakest 3DES
				// (112 bits: 20) -> 50; protocols (100 + 90) / 2 = 95; key
				// exchange RSA-2048 90: 0.3*95 + 0.3*90 + 0.4*50 = 75.5.
				if r.CipherScore != 50 || r.ProtocolScore != 95 || r.KeyExchangeScore != 90 || r.Score != 76 {
					t.Errorf("scores cipher %d protocol %d kx %d total %d, want 50 95 90 76", r.CipherScore, r.ProtocolScore, r.KeyExchangeScore, r.Score)
				}
			},
		},
		{
			name: "go/revoked (OCSP and CRL)",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				var leaf *x509.Certificate
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					now := time.Now()
					if r.URL.Path == "/crl" {
						der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
							Number: big.NewInt(1), ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(time.Hour),
							RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: leaf.SerialNumber, RevocationTime: now.Add(-time.Minute)}},
						}, p.inter.cert, p.inter.key)
						if err != nil {
							http.Error(w, err.Error(), 500)
							return
						}
						w.Write(der)
						return
					}
					body, _ := io.ReadAll(r.Body)
					req, err := ocsp.ParseRequest(body)
					if err != nil {
						http.Error(w, err.Error(), 400)
						return
					}
					der, err := ocsp.CreateResponse(p.inter.cert, p.inter.cert, ocsp.Response{
						Status: ocsp.Revoked, SerialNumber: req.SerialNumber, RevokedAt: now.Add(-time.Minute),
						ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(time.Hour),
					}, p.inter.key)
					if err != nil {
						http.Error(w, err.Error(), 500)
						return
					}
					w.Write(der)
				}))
				t.Cleanup(srv.Close)
				chain, key := p.leaf(t, leafSpec{ocsp: []string{srv.URL + "/ocsp"}, crl: []string{srv.URL + "/crl"}})
				leaf = chain[0]
				return localTarget(startGoTLS(t, goServerConfig(chain, key), hstsYear)), []Option{WithRoots(p.root.pool())}
			},
			grade: GradeF, checks: []string{"revocation.revoked"},
			check: func(t *testing.T, r *Result) {
				if rv := r.Revocation; rv == nil || rv.OCSP != "revoked" || rv.CRL != "revoked" || rv.RevokedAt.IsZero() {
					t.Errorf("revocation = %+v", r.Revocation)
				}
			},
		},
		{
			name:   "go/RequireAnyClientCert accepts any certificate",
			start:  goMTLS(tls.RequireAnyClientCert, 0),
			grade:  GradeF,
			checks: []string{"mtls.accepts_expired", "mtls.accepts_no_client_auth", "mtls.accepts_other_ca", "mtls.required"},
			check: func(t *testing.T, r *Result) {
				probeNames(t, r, map[string]bool{probeNoCert: false, probeOtherCA: true, probeExpired: true, probeNoClientEKU: true, probeSupplied: true})
			},
		},
		{
			name:   "go/RequireAndVerifyClientCert TLS 1.3",
			start:  goMTLS(tls.RequireAndVerifyClientCert, 0),
			grade:  GradeAPlus,
			checks: []string{"mtls.required"},
			check: func(t *testing.T, r *Result) {
				probeNames(t, r, map[string]bool{probeNoCert: false, probeOtherCA: false, probeExpired: false, probeNoClientEKU: false, probeSupplied: true})
				if !r.MTLS.Required || !slices.Equal(r.MTLS.AcceptableCAs, []string{"CN=Scan Test Client CA"}) {
					t.Errorf("MTLS = %+v", r.MTLS)
				}
			},
		},
		{
			name:   "go/RequireAndVerifyClientCert TLS 1.2",
			start:  goMTLS(tls.RequireAndVerifyClientCert, tls.VersionTLS12),
			grade:  GradeAPlus,
			checks: []string{"mtls.required", "protocol.no_tls13"},
			check: func(t *testing.T, r *Result) {
				probeNames(t, r, map[string]bool{probeNoCert: false, probeOtherCA: false, probeExpired: false, probeNoClientEKU: false, probeSupplied: true})
			},
		},
		{
			name: "go/inconsistent IPv4 and IPv6",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				port := dualStack(t, p)
				return Target{Host: "dual.test", Port: port}, []Option{WithRoots(p.root.pool()), WithResolver(fakeResolver{"dual.test": {"::1", "127.0.0.1"}})}
			},
			grade: GradeAMinus, checks: []string{"connectivity.inconsistent"},
			check: func(t *testing.T, r *Result) {
				if len(r.Addresses) != 2 || r.Addresses[0].Family != "ipv4" || r.Addresses[1].Family != "ipv6" || !r.Addresses[1].TLS {
					t.Errorf("addresses = %+v", r.Addresses)
				}
			},
		},
		{
			name: "go/SMTP STARTTLS",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				chain, key := p.leaf(t, leafSpec{dns: []string{"mx.test"}})
				port := startSMTP(t, goServerConfig(chain, key))
				target, err := ParseTarget("smtp://mx.test:"+strconv.Itoa(port), 0)
				if err != nil {
					t.Fatal(err)
				}
				return target, []Option{WithRoots(p.root.pool()), WithResolver(fakeResolver{"mx.test": {"127.0.0.1"}})}
			},
			grade: GradeA, checks: []string{},
			check: func(t *testing.T, r *Result) {
				if r.HSTS != nil || !r.Trusted || !r.NameMatch || !r.Features.SessionResumption {
					t.Errorf("HSTS %+v trusted %v name %v features %+v", r.HSTS, r.Trusted, r.NameMatch, r.Features)
				}
			},
		},
		{
			name: "go/one address refuses connections",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				chain, key := p.leaf(t, leafSpec{dns: []string{"partial.test"}})
				port := startGoTLS(t, goServerConfig(chain, key), hstsYear) // listens on 127.0.0.1 only
				return Target{Host: "partial.test", Port: port}, []Option{WithRoots(p.root.pool()),
					WithResolver(fakeResolver{"partial.test": {"127.0.0.2", "127.0.0.1"}})}
			},
			grade: GradeAMinus, checks: []string{"connectivity.partial"},
			check: func(t *testing.T, r *Result) {
				if len(r.Addresses) != 2 || r.Addresses[0].TCP || !r.Addresses[1].TLS {
					t.Errorf("addresses = %+v", r.Addresses)
				}
			},
		},
		{
			name: "openssl/ecdsa default",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				chain, key := p.leaf(t, leafSpec{})
				return localTarget(startOpenSSL(t, chain, key)), []Option{WithRoots(p.root.pool())}
			},
			grade: GradeA, checks: []string{},
		},
		{
			name: "openssl/rsa-2048 with RSA key exchange",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				chain, key := p.leaf(t, leafSpec{key: rsaKey(t, 2048)})
				return localTarget(startOpenSSL(t, chain, key)), []Option{WithRoots(p.root.pool())}
			},
			grade: GradeAMinus, checks: []string{"cipher.partial_forward_secrecy"},
		},
		{
			name: "openssl/expired",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				chain, key := p.leaf(t, leafSpec{notBefore: time.Now().Add(-30 * 24 * time.Hour), notAfter: time.Now().Add(-24 * time.Hour)})
				return localTarget(startOpenSSL(t, chain, key)), []Option{WithRoots(p.root.pool())}
			},
			grade: GradeT, checks: []string{"certificate.expired"},
			check: func(t *testing.T, r *Result) {
				if !r.Trusted { // trust is judged apart from expiry
					t.Error("Trusted = false for an expired but otherwise valid chain")
				}
			},
		},
		{
			name: "openssl/expired intermediate",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				old := p.root.intermediateValid(t, "Expired Intermediate", time.Now().Add(-60*24*time.Hour), time.Now().Add(-24*time.Hour))
				leaf, key := old.issue(t, leafSpec{dns: []string{"localhost"}, notBefore: time.Now().Add(-30 * 24 * time.Hour)})
				return localTarget(startOpenSSL(t, []*x509.Certificate{leaf, old.cert}, key)), []Option{WithRoots(p.root.pool())}
			},
			grade: GradeT, checks: []string{"chain.expired"},
		},
		{
			name: "openssl/self-signed",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				c, key := (&testCA{}).issue(t, leafSpec{dns: []string{"localhost"}})
				return localTarget(startOpenSSL(t, []*x509.Certificate{c}, key)), []Option{WithRoots(p.root.pool())}
			},
			grade: GradeT, checks: []string{"certificate.self_signed"},
		},
		{
			name: "openssl/wrong name",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				chain, key := p.leaf(t, leafSpec{dns: []string{"other.example"}})
				return localTarget(startOpenSSL(t, chain, key)), []Option{WithRoots(p.root.pool())}
			},
			grade: GradeM, checks: []string{"certificate.name_mismatch"},
		},
		{
			name: "openssl/missing intermediate, fetched over AIA",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				aia := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(p.inter.cert.Raw) }))
				t.Cleanup(aia.Close)
				chain, key := p.leaf(t, leafSpec{aia: []string{aia.URL + "/inter.der"}})
				return localTarget(startOpenSSL(t, chain[:1], key)), []Option{WithRoots(p.root.pool())}
			},
			grade: GradeB, checks: []string{"chain.incomplete"},
			check: func(t *testing.T, r *Result) {
				if !r.Trusted {
					t.Error("Trusted = false after the AIA fetch")
				}
			},
		},
		{
			name: "openssl/missing intermediate, no AIA",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				chain, key := p.leaf(t, leafSpec{})
				return localTarget(startOpenSSL(t, chain[:1], key)), []Option{WithRoots(p.root.pool())}
			},
			grade: GradeT, checks: []string{"certificate.untrusted"},
		},
		{
			name: "openssl/SHA-1 signature",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				chain, key := sha1Leaf(t, p)
				return localTarget(startOpenSSL(t, chain, key, "-cipher", "DEFAULT@SECLEVEL=0", "-no_tls1", "-no_tls1_1")), []Option{WithRoots(p.root.pool())}
			},
			grade: GradeT, checks: []string{"certificate.sha1_signature"},
		},
		{
			name: "openssl/RSA-1024",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				chain, key := p.leaf(t, leafSpec{key: rsaKey(t, 1024)})
				return localTarget(startOpenSSL(t, chain, key, "-cipher", "DEFAULT@SECLEVEL=0", "-no_tls1", "-no_tls1_1")), []Option{WithRoots(p.root.pool())}
			},
			grade: GradeB, checks: []string{"certificate.weak_key", "cipher.partial_forward_secrecy", "kex.weak_dh"},
			check: func(t *testing.T, r *Result) {
				if r.KeyExchangeScore != 80 {
					t.Errorf("KeyExchangeScore = %d, want 80 (key under 2048 bits)", r.KeyExchangeScore)
				}
			},
		},
		{
			name: "openssl/TLS 1.0 and 1.1",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				chain, key := p.leaf(t, leafSpec{})
				return localTarget(startOpenSSL(t, chain, key, "-cipher", "DEFAULT@SECLEVEL=0")), []Option{WithRoots(p.root.pool())}
			},
			grade: GradeB, checks: []string{"protocol.tls10", "protocol.tls11"},
			check: func(t *testing.T, r *Result) {
				if r.ProtocolScore != 95 { // (100 + 90) / 2
					t.Errorf("ProtocolScore = %d, want 95", r.ProtocolScore)
				}
			},
		},
		{
			name: "openssl/DHE only (crypto/tls cannot connect)",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				chain, key := p.leaf(t, leafSpec{key: rsaKey(t, 2048)})
				return localTarget(startOpenSSL(t, chain, key, "-no_tls1_3", "-cipher", "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384")), []Option{WithRoots(p.root.pool())}
			},
			grade:  GradeAMinus,
			checks: []string{"connectivity.go_incompatible", "protocol.no_tls13"},
			check: func(t *testing.T, r *Result) {
				if !r.Trusted || len(r.CipherSuites) != 2 || r.Addresses[0].Version != "TLS 1.2" || r.Addresses[0].Error == "" {
					t.Errorf("trusted %v suites %+v addresses %+v", r.Trusted, r.CipherSuites, r.Addresses)
				}
			},
		},
		{
			name:   "openssl/client certificate required and verified",
			start:  opensslLeaf("-Verify", "1", "-verify_return_error", "-CAfile", clientCAFile),
			grade:  GradeA,
			checks: []string{"mtls.required"},
			check: func(t *testing.T, r *Result) {
				probeNames(t, r, map[string]bool{probeNoCert: false, probeOtherCA: false, probeExpired: false, probeNoClientEKU: false})
			},
		},
		{
			name:   "openssl/client certificate required, any accepted",
			start:  opensslLeaf("-Verify", "1", "-CAfile", clientCAFile),
			grade:  GradeF,
			checks: []string{"mtls.accepts_expired", "mtls.accepts_no_client_auth", "mtls.accepts_other_ca", "mtls.required"},
		},
		{
			name:   "openssl/client certificate optional",
			start:  opensslLeaf("-verify", "1", "-verify_return_error", "-CAfile", clientCAFile),
			grade:  GradeA,
			checks: []string{"mtls.optional"},
			check: func(t *testing.T, r *Result) {
				if r.MTLS == nil || r.MTLS.Required || !r.MTLS.Requested {
					t.Errorf("MTLS = %+v", r.MTLS)
				}
			},
		},
		{
			name: "openssl/client certificate optional, but required expected",
			start: func(t *testing.T, p *pki) (Target, []Option) {
				tg, opts := opensslLeaf("-verify", "1", "-verify_return_error", "-CAfile", clientCAFile)(t, p)
				return tg, append(opts, WithExpectClientAuth())
			},
			grade:  GradeF,
			checks: []string{"mtls.not_required"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			target, opts := tt.start(t, p)
			r, err := Scan(scanCtx(t), target, opts...)
			if err != nil {
				t.Fatalf("Scan() error = %v", err)
			}
			t.Logf("scan of %s took %v (probe + checks), score %d", tt.name, r.Duration.Round(time.Millisecond), r.Score)
			if got := checks(r.Findings); !slices.Equal(got, sorted(tt.checks)) || r.Grade != tt.grade {
				t.Errorf("grade %q findings %v, want grade %q findings %v", r.Grade, got, tt.grade, sorted(tt.checks))
				for _, f := range r.Findings {
					t.Logf("  %+v", f)
				}
			}
			if r.Error != "" {
				t.Errorf("Error = %q", r.Error)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	if s == nil {
		s = []string{}
	}
	return s
}

// sha1Leaf issues a localhost leaf signed with ECDSA-SHA1 by the
// intermediate. crypto/x509 refuses to sign with SHA-1, so openssl does it.
func sha1Leaf(t *testing.T, p *pki) ([]*x509.Certificate, crypto.Signer) {
	dir := t.TempDir()
	caCert := writeFile(t, dir, "ca.pem", pkitest.CertsPEM(p.inter.cert))
	caKey := writeFile(t, dir, "ca.key", keyPEM(t, p.inter.key))
	leafKey := ecKey(t)
	keyFile := writeFile(t, dir, "leaf.key", keyPEM(t, leafKey))
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	csr, crt := filepath.Join(dir, "leaf.csr"), filepath.Join(dir, "leaf.pem")
	run("req", "-new", "-key", keyFile, "-subj", "/CN=sha1-leaf", "-addext", "subjectAltName=DNS:localhost",
		"-addext", "extendedKeyUsage=serverAuth", "-out", csr)
	run("x509", "-req", "-in", csr, "-CA", caCert, "-CAkey", caKey, "-sha1", "-days", "365",
		"-set_serial", strconv.FormatInt(nextSerial().Int64(), 10), "-copy_extensions", "copyall", "-out", crt)
	b, err := os.ReadFile(crt)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if c.SignatureAlgorithm != x509.ECDSAWithSHA1 {
		t.Fatalf("openssl made a %v certificate, want ECDSA-SHA1", c.SignatureAlgorithm)
	}
	return []*x509.Certificate{c, p.inter.cert}, leafKey
}

// fakeResolver maps host names to addresses.
type fakeResolver map[string][]string

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, a := range f[host] {
		out = append(out, netip.MustParseAddr(a))
	}
	if out == nil {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, nil
}

// dualStack starts two Go servers on the same port, one on 127.0.0.1 and
// one on ::1, serving different certificates for dual.test.
func dualStack(t *testing.T, p *pki) int {
	for range 20 {
		l4, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l4.Addr().(*net.TCPAddr).Port
		l6, err := net.Listen("tcp", net.JoinHostPort("::1", strconv.Itoa(port)))
		if err != nil {
			l4.Close()
			continue
		}
		for _, l := range []net.Listener{l4, l6} {
			chain, key := p.leaf(t, leafSpec{dns: []string{"dual.test"}})
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Strict-Transport-Security", hstsYear)
			}))
			srv.Listener.Close()
			srv.Listener = l
			srv.EnableHTTP2 = true
			srv.TLS = goServerConfig(chain, key)
			srv.Config.ErrorLog = quietLog()
			srv.StartTLS()
			t.Cleanup(srv.Close)
		}
		return port
	}
	t.Fatal("no port free on both 127.0.0.1 and ::1")
	return 0
}

func TestScanPostgresSTARTTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	p := newPKI(t)
	chain, key := p.leaf(t, leafSpec{key: rsaKey(t, 2048)})
	ctx := scanCtx(t)
	pg, err := pkitest.StartPostgresTLS(ctx, pkitest.CertsPEM(chain...), keyPEM(t, key), pkitest.CertsPEM(p.clientCA.cert), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Stop() })
	target, err := ParseTarget("postgres://localhost:"+strconv.Itoa(pg.Port()), 0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Scan(ctx, target, WithRoots(p.root.pool()), WithClientIssuer(p.clientCA.cert, p.clientCA.key), WithClientCertificate(p.client),
		WithResolver(fakeResolver{"localhost": {"127.0.0.1"}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("scan of PostgreSQL (STARTTLS) took %v, grade %s", r.Duration.Round(time.Millisecond), r.Grade)
	// PostgreSQL asks for a client certificate when it has ssl_ca_file but
	// leaves the decision to pg_hba.conf: at the TLS layer a connection
	// without one is accepted, one that does not verify is rejected.
	want := []string{"cipher.partial_forward_secrecy", "mtls.optional"}
	if got := checks(r.Findings); !slices.Equal(got, want) || r.Grade != GradeAMinus {
		t.Errorf("grade %q findings %v, want %q %v", r.Grade, got, GradeAMinus, want)
		for _, f := range r.Findings {
			t.Logf("  %+v", f)
		}
	}
	if r.Features.ALPN != nil && !slices.Equal(r.Features.ALPN, []string{"postgresql"}) {
		t.Errorf("ALPN = %v", r.Features.ALPN)
	}
	if !r.Trusted || !r.NameMatch || r.Target.StartTLS != StartTLSPostgres {
		t.Errorf("trusted=%v name=%v target=%+v", r.Trusted, r.NameMatch, r.Target)
	}
	if r.MTLS == nil {
		t.Fatal("MTLS = nil")
	}
	for _, pr := range r.MTLS.Probes {
		if want := pr.Name == probeNoCert || pr.Name == probeSupplied; pr.Accepted != want {
			t.Errorf("probe %s accepted=%v, want %v (%s)", pr.Name, pr.Accepted, want, pr.Evidence)
		}
	}
}

func TestScanUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(plain.Close)
	plainPort := plain.Listener.Addr().(*net.TCPAddr).Port
	// banner answers every connection with a line of plaintext at once.
	banner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { banner.Close() })
	go func() {
		for {
			c, err := banner.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.0 400 Bad Request\r\n\r\n")
			c.Close()
		}
	}()
	bannerPort := banner.Addr().(*net.TCPAddr).Port
	tests := []struct {
		name   string
		target Target
		opts   []Option
		check  string
	}{
		{"closed port", localTarget(closedPort), nil, "connectivity.tcp_failed"},
		{"plaintext HTTP", localTarget(plainPort), nil, "connectivity.tls_failed"},
		{"postgres STARTTLS to HTTP", Target{Host: "127.0.0.1", Port: bannerPort, StartTLS: StartTLSPostgres}, nil, "connectivity.starttls_failed"},
		{"unknown host", Target{Host: "nowhere.test", Port: 443}, []Option{WithResolver(fakeResolver{})}, "dns.failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := Scan(scanCtx(t), tt.target, tt.opts...)
			if err != nil {
				t.Fatalf("Scan() error = %v, want a Result with Error", err)
			}
			if r.Grade != "" || r.Error == "" || !slices.Equal(checks(r.Findings), []string{tt.check}) {
				t.Errorf("grade %q error %q findings %v, want no grade, an error and [%s]", r.Grade, r.Error, checks(r.Findings), tt.check)
			}
		})
	}
}

func TestScanInvalidTarget(t *testing.T) {
	_, err := Scan(context.Background(), Target{Host: "x", Port: 0})
	if !errors.Is(err, ErrInvalidTarget) {
		t.Fatalf("Scan() error = %v, want ErrInvalidTarget", err)
	}
}

func TestScanContextCanceled(t *testing.T) {
	p := newPKI(t)
	chain, key := p.leaf(t, leafSpec{})
	port := startGoTLS(t, goServerConfig(chain, key), "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r, err := Scan(ctx, localTarget(port))
	if !errors.Is(err, context.Canceled) || r == nil || r.Error == "" {
		t.Fatalf("Scan() = %+v, %v; want a Result with Error and context.Canceled", r, err)
	}
}

// startSMTP runs a minimal SMTP server on 127.0.0.1 that offers STARTTLS and
// then speaks TLS with cfg; it returns the port.
func startSMTP(t *testing.T, cfg *tls.Config) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				br := bufio.NewReader(c)
				io.WriteString(c, "220 mx.test ESMTP\r\n")
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
					case strings.HasPrefix(cmd, "EHLO"):
						io.WriteString(c, "250-mx.test\r\n250-8BITMIME\r\n250 STARTTLS\r\n")
					case cmd == "STARTTLS":
						io.WriteString(c, "220 2.0.0 Ready to start TLS\r\n")
						tc := tls.Server(c, cfg)
						if tc.Handshake() == nil {
							io.Copy(io.Discard, tc)
						}
						return
					default:
						io.WriteString(c, "502 5.5.2 not implemented\r\n")
					}
				}
			})
		}
	})
	return l.Addr().(*net.TCPAddr).Port
}
