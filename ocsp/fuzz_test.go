package ocsp

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/certctl/certctl/certdb"
)

// seedRequests are real OCSP requests, SHA-1 and SHA-256, for fuzz seeds.
func seedRequests(f *testing.F) [][]byte {
	f.Helper()
	issuer := &x509.Certificate{RawSubject: []byte{0x30, 0}, RawSubjectPublicKeyInfo: mustSPKI(f)}
	var out [][]byte
	for _, s := range []int64{1, 0x7f, 0xffff, 1 << 62} {
		for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
			der, err := xocsp.CreateRequest(&x509.Certificate{SerialNumber: big.NewInt(s)}, issuer, &xocsp.RequestOptions{Hash: h})
			if err != nil {
				f.Fatal(err)
			}
			out = append(out, der)
		}
	}
	return out
}

func mustSPKI(f *testing.F) []byte {
	// An ECDSA P-256 SubjectPublicKeyInfo (any key will do for hashing).
	b, _ := base64.StdEncoding.DecodeString("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEzEOuFRkMqPiAB2PNfa2PhyqqLT0ySaedM3YsKX6hU5hVwGKaUwlc/RBqXw2fKFyWrm69SGYIWN25ac4tnDAKgA==")
	return b
}

// FuzzDecodeGETPath: every way a client may encode a request in a GET path
// decodes to the same bytes (round trip), and no input panics.
func FuzzDecodeGETPath(f *testing.F) {
	for _, r := range seedRequests(f) {
		f.Add(r, "")
	}
	f.Add([]byte{0xfb, 0xff, 0xfe}, "/") // '+' and '/' in the base64
	f.Add([]byte{}, "%")
	f.Add([]byte("x"), "%zz")
	f.Fuzz(func(t *testing.T, der []byte, junk string) {
		DecodeGETPath(junk) // arbitrary input: no panic
		if len(der) == 0 || len(der) > MaxRequestSize {
			return
		}
		std := base64.StdEncoding.EncodeToString(der)
		if strings.HasPrefix(std, "/") && strings.HasPrefix(strings.TrimLeft(std, "/"), "M") {
			// Read as a doubled slash before a request: such bytes (first
			// byte 0xfc..0xff) are never an OCSP request (0x30).
			return
		}
		esc := strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D").Replace(std)
		variants := []string{
			std, strings.TrimRight(std, "="), esc,
			url.PathEscape(std), strings.ReplaceAll(std, "+", " "),
			base64.RawURLEncoding.EncodeToString(der),
		}
		if der[0] == 0x30 { // a DER SEQUENCE, as every request is
			variants = append(variants, "/"+std, "//"+std)
		}
		for _, p := range variants {
			got, err := DecodeGETPath(p)
			if err != nil || !bytes.Equal(got, der) {
				t.Fatalf("DecodeGETPath(%q) = %x, %v; want %x", p, got, err, der)
			}
		}
	})
}

// FuzzParseRequest: arbitrary DER never panics; a request that parses
// re-encodes (through x/crypto/ocsp) to one that parses to the same CertID.
func FuzzParseRequest(f *testing.F) {
	for _, r := range seedRequests(f) {
		f.Add(r)
	}
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		req, err := ParseRequest(der)
		if err != nil {
			return
		}
		if req.SerialNumber.Sign() <= 0 {
			t.Fatalf("non-positive serial %v accepted", req.SerialNumber)
		}
		again, err := req.Marshal()
		if err != nil {
			return // e.g. a hash x/crypto parses but cannot name on output
		}
		req2, err := ParseRequest(again)
		if err != nil {
			t.Fatalf("re-encoded request does not parse: %v", err)
		}
		if req2.HashAlgorithm != req.HashAlgorithm || !bytes.Equal(req2.IssuerKeyHash, req.IssuerKeyHash) ||
			!bytes.Equal(req2.IssuerNameHash, req.IssuerNameHash) || req2.SerialNumber.Cmp(req.SerialNumber) != 0 {
			t.Fatalf("round trip changed the request: %+v -> %+v", req, req2)
		}
	})
}

// FuzzResponder: whatever arrives, the handler answers 200, 400, 404 or 413
// with an OCSP body (never a 5xx, never a panic), and a 200 body always
// parses.
func FuzzResponder(f *testing.F) {
	for _, r := range seedRequests(f) {
		f.Add(r, base64.StdEncoding.EncodeToString(r), true)
		f.Add(r, base64.StdEncoding.EncodeToString(r), false)
	}
	f.Add([]byte("junk"), "%2F%2B", false)
	issuer := &x509.Certificate{RawSubject: []byte{0x30, 0}, RawSubjectPublicKeyInfo: mustSPKI(f)}
	now := time.Now()
	src := staticSource{r: &certdb.OCSPResponse{DER: xocsp.UnauthorizedErrorResponse, ThisUpdate: now, NextUpdate: now.Add(time.Hour)}}
	rs, err := NewResponder(issuer, src, "/ocsp")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, path string, post bool) {
		var req *http.Request
		if post {
			req = httptest.NewRequest(http.MethodPost, "/ocsp", bytes.NewReader(body))
		} else {
			u := &url.URL{Path: "/ocsp/" + path}
			req = httptest.NewRequest(http.MethodGet, "/", nil)
			req.URL = u
		}
		w := httptest.NewRecorder()
		rs.ServeHTTP(w, req)
		switch w.Code {
		case 200, 400, 404, 413:
		default:
			t.Fatalf("HTTP %d", w.Code)
		}
		if w.Code != 404 {
			if _, err := xocsp.ParseResponse(w.Body.Bytes(), nil); err == nil {
				return
			} else if _, ok := err.(xocsp.ResponseError); !ok {
				t.Fatalf("body %x is not an OCSP response: %v", w.Body.Bytes(), err)
			}
		}
	})
}
