package issuance

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
)

// maxCSRSize bounds what ParseCSR accepts. A PEM CSR with an RSA-4096 key
// and a few hundred names is well under 16 KiB.
const maxCSRSize = 64 << 10

// ParseCSR parses a PKCS#10 certificate request, PEM ("CERTIFICATE
// REQUEST" or "NEW CERTIFICATE REQUEST", nothing but whitespace around it)
// or DER, and checks its self-signature. Every error wraps ErrBadCSR and
// says what is wrong. It is meant for untrusted input: it never panics.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadCSR, fmt.Sprintf(format, args...))
	}
	if len(data) > maxCSRSize {
		return nil, bad("larger than %d bytes", maxCSRSize)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, bad("empty")
	}
	der := data
	switch {
	case bytes.HasPrefix(trimmed, []byte("-----BEGIN ")):
		block, rest := pem.Decode(trimmed)
		if block == nil {
			return nil, bad("malformed PEM block")
		}
		if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
			return nil, bad("PEM block is %q, want \"CERTIFICATE REQUEST\"", block.Type)
		}
		if len(block.Headers) != 0 {
			return nil, bad("PEM headers are not allowed in a CSR")
		}
		if len(bytes.TrimSpace(rest)) != 0 {
			return nil, bad("trailing data after the PEM block")
		}
		der = block.Bytes
	case data[0] == 0x30: // DER SEQUENCE
	case bytes.Contains(data, []byte("-----BEGIN ")):
		return nil, bad("data before the PEM block")
	default:
		return nil, bad("no PEM block found, and not DER")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, bad("%v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, bad("CSR signature is invalid: %v", err)
	}
	return csr, nil
}

// RequestFromCSR copies the public key, subject and subject alternative
// names of csr into a new Request. Nothing else in the CSR (requested
// extensions, attributes) is used. The names are not validated here:
// Prepare does that.
func RequestFromCSR(csr *x509.CertificateRequest) *Request {
	if csr == nil {
		return &Request{}
	}
	r := &Request{
		PublicKey:      csr.PublicKey,
		Subject:        csr.Subject,
		DNSNames:       slices.Clone(csr.DNSNames),
		EmailAddresses: slices.Clone(csr.EmailAddresses),
	}
	r.Subject.Organization = slices.Clone(csr.Subject.Organization)
	r.Subject.OrganizationalUnit = slices.Clone(csr.Subject.OrganizationalUnit)
	for _, ip := range csr.IPAddresses {
		r.IPAddresses = append(r.IPAddresses, slices.Clone(ip))
	}
	for _, u := range csr.URIs {
		c := *u
		r.URIs = append(r.URIs, &c)
	}
	return r
}
