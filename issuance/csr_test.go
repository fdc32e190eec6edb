package issuance

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/certctl/certctl/keys"
)

func makeCSR(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func csrDER(t testing.TB, pemBytes []byte) []byte {
	t.Helper()
	b, _ := pem.Decode(pemBytes)
	if b == nil {
		t.Fatal("no PEM")
	}
	return b.Bytes
}

func TestParseCSR(t *testing.T) {
	t.Parallel()
	key := testKey(t, keys.ECDSAP256, 0)
	good := makeCSR(t, key, &x509.CertificateRequest{Subject: pkixName("tamper.internal"), DNSNames: []string{"tamper.internal"}})
	der := csrDER(t, good)

	tamper := func(b []byte, at int) []byte {
		c := bytes.Clone(b)
		c[at] ^= 0x01
		return c
	}
	subjectAt := bytes.Index(der, []byte("tamper.internal"))
	if subjectAt < 0 {
		t.Fatal("CN not found in DER")
	}

	ok := []struct {
		name string
		data []byte
	}{
		{"pem", good},
		{"der", der},
		{"pem with whitespace", append(append([]byte("\n  "), good...), "\n\n"...)},
		{"new certificate request", pem.EncodeToMemory(&pem.Block{Type: "NEW CERTIFICATE REQUEST", Bytes: der})},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			csr, err := ParseCSR(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(csr.Raw, der) || csr.Subject.CommonName != "tamper.internal" {
				t.Fatalf("parsed CSR differs: CN %q", csr.Subject.CommonName)
			}
		})
	}

	bad := []struct {
		name, want string
		data       []byte
	}{
		{"empty", "empty", nil},
		{"whitespace", "empty", []byte(" \n")},
		{"garbage", "no PEM block found, and not DER", []byte("hello")},
		{"truncated der", "", der[:len(der)-10]},
		{"trailing data after der", "trailing data", append(bytes.Clone(der), 0)},
		{"trailing data after pem", "trailing data after the PEM block", append(bytes.Clone(good), "junk"...)},
		{"two csrs", "trailing data after the PEM block", append(bytes.Clone(good), good...)},
		{"data before pem", "data before the PEM block", append([]byte("Certificate Request:\n"), good...)},
		{"wrong pem type", `PEM block is "CERTIFICATE"`, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
		{"pem headers", "headers", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Headers: map[string]string{"A": "b"}, Bytes: der})},
		{"broken pem", "malformed PEM block", []byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA")},
		{"tampered signature", "CSR signature is invalid", tamper(der, len(der)-3)},
		{"tampered subject", "CSR signature is invalid", tamper(der, subjectAt)},
		{"too large", "larger than", append(bytes.Clone(good), bytes.Repeat([]byte(" "), maxCSRSize)...)},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			csr, err := ParseCSR(tt.data)
			if !errors.Is(err, ErrBadCSR) || csr != nil {
				t.Fatalf("ParseCSR() = %v, %v; want ErrBadCSR", csr, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseCSR() error = %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

// FuzzParseCSR: ParseCSR never panics, and whatever it accepts is exactly the
// DER it was given (csr.Raw), parses again identically from DER and from
// re-encoded PEM, and has a verifying signature.
func FuzzParseCSR(f *testing.F) {
	u, _ := url.Parse("spiffe://example.internal/ns/a")
	for j, kt := range allKeyTypes {
		key := testKey(f, kt, 0)
		p := makeCSR(f, key, &x509.CertificateRequest{
			Subject:        pkixName("db.internal", "Example"),
			DNSNames:       []string{"db.internal", "*.svc.internal"},
			IPAddresses:    []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
			URIs:           []*url.URL{u},
			EmailAddresses: []string{"ops@example.internal"},
		})
		f.Add(p)
		f.Add(csrDER(f, p))
		if j == 0 {
			f.Add(makeCSR(f, key, &x509.CertificateRequest{}))
		}
	}
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{0x30, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := ParseCSR(data)
		if err != nil {
			if !errors.Is(err, ErrBadCSR) || csr != nil {
				t.Fatalf("ParseCSR error %v does not wrap ErrBadCSR (csr %v)", err, csr)
			}
			return
		}
		in := data
		if b, _ := pem.Decode(bytes.TrimSpace(data)); b != nil {
			in = b.Bytes
		}
		if !bytes.Equal(csr.Raw, in) {
			t.Fatal("csr.Raw differs from the DER input")
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted CSR does not verify: %v", err)
		}
		for _, again := range [][]byte{csr.Raw, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr.Raw})} {
			c2, err := ParseCSR(again)
			if err != nil {
				t.Fatalf("re-parse: %v", err)
			}
			if !bytes.Equal(c2.Raw, csr.Raw) || !bytes.Equal(c2.RawTBSCertificateRequest, csr.RawTBSCertificateRequest) ||
				!bytes.Equal(c2.RawSubject, csr.RawSubject) {
				t.Fatal("re-parse differs")
			}
		}
		// Building a request from any accepted CSR must not panic either.
		r := RequestFromCSR(csr)
		if len(r.DNSNames) != len(csr.DNSNames) || len(r.URIs) != len(csr.URIs) {
			t.Fatal("RequestFromCSR lost names")
		}
	})
}
