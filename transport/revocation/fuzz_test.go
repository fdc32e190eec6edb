package revocation

import (
	"bytes"
	"crypto/x509"
	"io"
	"net/http"
	"reflect"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	xocsp "golang.org/x/crypto/ocsp"

	"github.com/certctl/certctl/certdb"
)

// marshalIDP encodes p (the inverse of parseIDP for what idp keeps).
func marshalIDP(p *idp) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if p.hasName {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				if p.relativeName {
					b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {})
					return
				}
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					for _, u := range p.uris {
						b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(u)) })
					}
					if len(p.uris) == 0 { // only non-URI names: keep one (a dNSName)
						b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte("x")) })
					}
				})
			})
		}
		for i, v := range []bool{p.onlyUserCerts, p.onlyCACerts, p.onlySomeReasons, p.indirect, p.onlyAttributeCerts} {
			if !v {
				continue
			}
			b.AddASN1(cbasn1.Tag(i+1).ContextSpecific(), func(b *cryptobyte.Builder) {
				if i+1 == 3 {
					b.AddBytes([]byte{7, 0x80}) // ReasonFlags with keyCompromise
				} else {
					b.AddUint8(0xff)
				}
			})
		}
	})
	return b.BytesOrPanic()
}

// idpSeeds returns the IDP extensions of real CRLs (single and sharded,
// onlyContainsUserCerts) plus hand-made ones.
func idpSeeds(t testing.TB) [][]byte {
	var out [][]byte
	for _, shards := range []int{1, 3} {
		p := newPKI(t, pkiOptions{shards: shards})
		c, err := p.crlb.Build(t.Context(), shards-1)
		if err != nil {
			t.Fatal(err)
		}
		rl, err := x509.ParseRevocationList(c.DER)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range rl.Extensions {
			if e.Id.Equal(oidIDP) {
				out = append(out, e.Value)
			}
		}
	}
	if len(out) != 2 {
		t.Fatalf("want an IDP in each real CRL, got %d", len(out))
	}
	out = append(out,
		marshalIDP(&idp{}),
		marshalIDP(&idp{hasName: true, relativeName: true}),
		marshalIDP(&idp{hasName: true, uris: []string{"http://a/crl", "http://b/crl"}, onlyCACerts: true, onlySomeReasons: true, indirect: true, onlyAttributeCerts: true}),
	)
	return out
}

// Real IDPs parse to what the certificates' CDPs say.
func TestParseIDP(t *testing.T) {
	seeds := idpSeeds(t)
	p, err := parseIDP(seeds[0])
	if err != nil || !p.hasName || len(p.uris) != 1 || !p.onlyUserCerts {
		t.Fatalf("real IDP: %+v, %v", p, err)
	}
	for _, bad := range [][]byte{nil, {0x30}, {0x30, 0x00, 0x00}, {0x30, 0x03, 0x81, 0x01, 0x01}, {0x30, 0x02, 0xa0, 0x00}, append(slices.Clone(seeds[0]), 0)} {
		if _, err := parseIDP(bad); err == nil {
			t.Errorf("parseIDP(%x) accepted", bad)
		}
	}
}

// FuzzParseIDP: parseIDP never panics, and what it accepts survives a
// marshal/parse round trip unchanged.
func FuzzParseIDP(f *testing.F) {
	for _, s := range idpSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		p, err := parseIDP(der)
		if err != nil {
			return
		}
		if p.relativeName && len(p.uris) > 0 {
			t.Fatalf("both name forms: %+v", p)
		}
		again, err := parseIDP(marshalIDP(p))
		if err != nil {
			t.Fatalf("re-parse of %+v: %v", p, err)
		}
		if !reflect.DeepEqual(p, again) {
			t.Fatalf("round trip: %+v != %+v", p, again)
		}
	})
}

// FuzzVerifyOCSP: verifyOCSP never panics on any body, and whatever it
// accepts also verifies with x/crypto/ocsp given the issuer (which checks
// the signature chain, though not the EKU), and was signed by the issuer
// or an id-kp-OCSPSigning delegate.
func FuzzVerifyOCSP(f *testing.F) {
	p := newPKI(f, pkiOptions{})
	good := p.issue(f, "good.test.internal")
	bad := p.issue(f, "bad.test.internal")
	p.revoke(f, bad, certdb.ReasonKeyCompromise)
	for _, c := range []*x509.Certificate{good, bad} {
		req, err := xocsp.CreateRequest(c, p.inter, nil)
		if err != nil {
			f.Fatal(err)
		}
		resp, err := http.Post(p.srv.URL+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
		if err != nil {
			f.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		f.Add(body, c == bad)
	}
	now := time.Now()
	direct, err := xocsp.CreateResponse(p.inter, p.inter, xocsp.Response{Status: xocsp.Good, SerialNumber: good.SerialNumber, ThisUpdate: now, NextUpdate: now.Add(time.Hour)}, p.interKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(direct, false)
	f.Add(xocsp.TryLaterErrorResponse, false)
	f.Fuzz(func(t *testing.T, body []byte, forBad bool) {
		leaf := good
		if forBad {
			leaf = bad
		}
		a, _, err := verifyOCSP(body, leaf, p.inter, now, DefaultClockSkew)
		if err != nil {
			return
		}
		r, err := xocsp.ParseResponseForCert(body, leaf, p.inter)
		if err != nil {
			t.Fatalf("verifyOCSP accepted what x/crypto/ocsp refuses: %v", err)
		}
		if r.Certificate != nil && !r.Certificate.Equal(p.inter) && !slices.Contains(r.Certificate.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) {
			t.Fatal("accepted a delegate without id-kp-OCSPSigning")
		}
		if a.revoked != (r.Status == xocsp.Revoked) {
			t.Fatalf("status mismatch: %+v vs %d", a, r.Status)
		}
	})
}

// FuzzVerifyCRL: verifyCRL never panics, and whatever it accepts is a CRL
// signed by the issuer.
func FuzzVerifyCRL(f *testing.F) {
	p := newPKI(f, pkiOptions{shards: 2})
	leaf := p.issue(f, "leaf.test.internal")
	p.revoke(f, leaf, certdb.ReasonKeyCompromise)
	for s := range 2 {
		c, err := p.crlb.Build(f.Context(), s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(c.DER)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, der []byte) {
		d, _, err := verifyCRL(der, p.inter, now, DefaultClockSkew)
		if err != nil {
			return
		}
		rl, err := x509.ParseRevocationList(der)
		if err != nil || rl.CheckSignatureFrom(p.inter) != nil {
			t.Fatalf("verifyCRL accepted a CRL that does not verify: %v", err)
		}
		_ = d.covers(leaf)
	})
}
