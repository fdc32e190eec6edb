package issuance

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
	"golang.org/x/crypto/ocsp"

	"github.com/certctl/certctl/keys"
)

// newResponder issues a delegated OCSP responder certificate (default
// "ocsp" profile) from the chain's intermediate.
func newResponder(t testing.TB, c *testChain, kt keys.KeyType, idx int) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key := testKey(t, kt, idx)
	cert := issue(t, c.interIssuer, defaultProfile(t, "ocsp"), &Request{
		PublicKey: key.Public(),
		Subject:   pkixName("certctl Test OCSP Responder"),
	}, c.now)
	return cert, key
}

func TestOCSPSignerSign(t *testing.T) {
	t.Parallel()
	c := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 30)
	for _, kt := range []keys.KeyType{keys.ECDSAP256, keys.ECDSAP384, keys.RSA2048} {
		cert, key := newResponder(t, c, kt, 30)
		s, err := NewOCSPSigner(c.inter, cert, key)
		if err != nil {
			t.Fatalf("NewOCSPSigner(%s): %v", kt, err)
		}
		now := c.now.Truncate(time.Second)
		leaf := &x509.Certificate{SerialNumber: big.NewInt(0x1234567)}
		tests := []struct {
			name       string
			tmpl       OCSPTemplate
			wantStatus int
			wantReason int
		}{
			{"good", OCSPTemplate{Serial: leaf.SerialNumber}, ocsp.Good, 0},
			{"revoked keyCompromise", OCSPTemplate{Serial: leaf.SerialNumber, Revoked: true, RevokedAt: now.Add(-time.Hour), Reason: 1}, ocsp.Revoked, 1},
			{"revoked unspecified", OCSPTemplate{Serial: leaf.SerialNumber, Revoked: true, RevokedAt: now.Add(-time.Hour)}, ocsp.Revoked, 0},
		}
		for _, tt := range tests {
			t.Run(string(kt)+"/"+tt.name, func(t *testing.T) {
				tmpl := tt.tmpl
				tmpl.ThisUpdate, tmpl.NextUpdate, tmpl.ProducedAt = now.Add(-time.Minute), now.Add(24*time.Hour), now
				der, err := s.Sign(tmpl)
				if err != nil {
					t.Fatalf("Sign: %v", err)
				}
				resp, err := ocsp.ParseResponseForCert(der, leaf, c.inter)
				if err != nil {
					t.Fatalf("ParseResponseForCert: %v", err)
				}
				if resp.Status != tt.wantStatus || resp.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
					t.Errorf("status %d serial %x, want %d %x", resp.Status, resp.SerialNumber, tt.wantStatus, leaf.SerialNumber)
				}
				if tt.wantStatus == ocsp.Revoked && (resp.RevocationReason != tt.wantReason || !resp.RevokedAt.Equal(now.Add(-time.Hour))) {
					t.Errorf("revoked reason %d at %s, want %d at %s", resp.RevocationReason, resp.RevokedAt, tt.wantReason, now.Add(-time.Hour))
				}
				if !resp.ThisUpdate.Equal(tmpl.ThisUpdate) || !resp.NextUpdate.Equal(tmpl.NextUpdate) || !resp.ProducedAt.Equal(now) {
					t.Errorf("times %s %s %s", resp.ThisUpdate, resp.NextUpdate, resp.ProducedAt)
				}
				if resp.Certificate == nil || !bytes.Equal(resp.Certificate.Raw, cert.Raw) {
					t.Errorf("response does not carry the responder certificate")
				}
				// RFC 6960 §4.2.1: ResponderID byKey is the SHA-1 hash of the
				// responder's public key.
				h1, _ := IssuerHashes(cert)
				if !bytes.Equal(resp.ResponderKeyHash, h1.KeyHash) {
					t.Errorf("ResponderKeyHash %x, want %x", resp.ResponderKeyHash, h1.KeyHash)
				}
				rs := zlint.LintOcspResponse(resp)
				if len(rs.Results) == 0 {
					t.Fatal("zlint ran no OCSP lints")
				}
				for name, r := range rs.Results {
					if r.Status >= lint.Warn {
						t.Errorf("zlint %s: %s %s", name, r.Status, r.Details)
					}
				}
				// Both CertIDs answer requests of their hash.
				ids := singleCertIDs(t, der)
				for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
					reqDER, err := ocsp.CreateRequest(&x509.Certificate{SerialNumber: leaf.SerialNumber}, c.inter, &ocsp.RequestOptions{Hash: h})
					if err != nil {
						t.Fatal(err)
					}
					req, err := ocsp.ParseRequest(reqDER)
					if err != nil {
						t.Fatal(err)
					}
					found := false
					for _, id := range ids {
						found = found || (bytes.Equal(id.IssuerNameHash, req.IssuerNameHash) && bytes.Equal(id.IssuerKeyHash, req.IssuerKeyHash) && id.SerialNumber.Cmp(req.SerialNumber) == 0)
					}
					if !found {
						t.Errorf("no SingleResponse matches a %v request", h)
					}
				}
			})
		}
	}
}

// singleCertIDs decodes the CertIDs of every SingleResponse in der.
func singleCertIDs(t *testing.T, der []byte) []ocspCertID {
	t.Helper()
	var r ocspResponse
	if _, err := asn1.Unmarshal(der, &r); err != nil {
		t.Fatal(err)
	}
	var b ocspBasicResponse
	if _, err := asn1.Unmarshal(r.ResponseBytes.Response, &b); err != nil {
		t.Fatal(err)
	}
	var d struct {
		ResponderID asn1.RawValue
		ProducedAt  time.Time `asn1:"generalized"`
		Responses   []ocspSingleResponse
	}
	if _, err := asn1.Unmarshal(b.TBSResponseData.FullBytes, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Responses) != 2 {
		t.Fatalf("%d SingleResponses, want 2", len(d.Responses))
	}
	var ids []ocspCertID
	for _, s := range d.Responses {
		ids = append(ids, s.CertID)
	}
	return ids
}

func TestNewOCSPSignerRejects(t *testing.T) {
	t.Parallel()
	c := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 31)
	other := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 32)
	cert, key := newResponder(t, c, keys.ECDSAP256, 31)
	edCert, edKey := newResponder(t, c, keys.Ed25519, 31)
	serverKey := testKey(t, keys.ECDSAP256, 33)
	server := issue(t, c.interIssuer, defaultProfile(t, "server"), &Request{PublicKey: serverKey.Public(), DNSNames: []string{"a.internal"}}, c.now)
	tests := []struct {
		name   string
		issuer *x509.Certificate
		cert   *x509.Certificate
		key    crypto.Signer
		want   string
	}{
		{"wrong key", c.inter, cert, serverKey, "does not match"},
		{"other issuer", other.inter, cert, key, "not issued by"},
		{"no OCSPSigning", c.inter, server, serverKey, "id-kp-OCSPSigning"},
		{"Ed25519", c.inter, edCert, edKey, "unsupported responder key"},
		{"nil", nil, cert, key, "nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewOCSPSigner(tt.issuer, tt.cert, tt.key)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewOCSPSigner error = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := NewOCSPSigner(c.inter, cert, serverKey); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("wrong key: %v, want ErrKeyMismatch", err)
	}
}

func TestOCSPSignerSignRejects(t *testing.T) {
	t.Parallel()
	c := newChain(t, keys.ECDSAP256, keys.ECDSAP256, 34)
	cert, key := newResponder(t, c, keys.ECDSAP256, 34)
	s, err := NewOCSPSigner(c.inter, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	now := c.now
	ok := OCSPTemplate{Serial: big.NewInt(5), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour), ProducedAt: now}
	tests := []struct {
		name string
		edit func(*OCSPTemplate)
		want string
	}{
		{"no serial", func(t *OCSPTemplate) { t.Serial = nil }, "positive"},
		{"zero serial", func(t *OCSPTemplate) { t.Serial = big.NewInt(0) }, "positive"},
		{"no times", func(t *OCSPTemplate) { t.ProducedAt = time.Time{} }, "required"},
		{"next before this", func(t *OCSPTemplate) { t.NextUpdate = t.ThisUpdate }, "not after thisUpdate"},
		{"this after produced", func(t *OCSPTemplate) { t.ThisUpdate = now.Add(time.Minute) }, "after producedAt"},
		{"outlives responder", func(t *OCSPTemplate) { t.NextUpdate = cert.NotAfter.Add(time.Second) }, "responder certificate expires"},
		{"responder not yet valid", func(t *OCSPTemplate) {
			t.ProducedAt, t.ThisUpdate = cert.NotBefore.Add(-time.Hour), cert.NotBefore.Add(-time.Hour)
		}, "not valid at"},
		{"revoked no time", func(t *OCSPTemplate) { t.Revoked = true }, "revocation time"},
		{"reason 7", func(t *OCSPTemplate) { t.Revoked, t.RevokedAt, t.Reason = true, now, 7 }, "CRLReason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := ok
			tt.edit(&tmpl)
			if _, err := s.Sign(tmpl); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Sign error = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := s.Sign(ok); err != nil {
		t.Fatalf("Sign(valid template): %v", err)
	}
}
