package issuance

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sort"
	"time"

	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
	"golang.org/x/crypto/ocsp"
)

// OCSP response signing (RFC 6960, RFC 5019 profile) with a delegated
// responder certificate.
//
// golang.org/x/crypto/ocsp.CreateResponse writes one SingleResponse whose
// CertID uses one hash algorithm, and a ResponderID byName. Relying parties
// such as OpenSSL match the response's CertID to their request's CertID
// including the hash algorithm (OCSP_id_issuer_cmp compares the hash OID
// first), so a response pre-signed for SHA-1 CertIDs does not answer a
// SHA-256 request. Because responses are pre-signed and served by a
// responder that holds no key, each response carries two SingleResponses
// for the same certificate, one with a SHA-1 CertID (what RFC 5019 §2.1.1
// clients send) and one with a SHA-256 CertID; RFC 5019 §2.2.1 allows
// additional SingleResponses "to improve response pre-generation
// performance or cache efficiency". The structures below are RFC 6960
// §4.2.1's; the result is re-parsed with x/crypto/ocsp (which checks the
// responder certificate against the issuer and the signature against the
// responder certificate) and linted with zlint before it is returned.

// ocspCertID is RFC 6960 §4.1.1 CertID.
type ocspCertID struct {
	HashAlgorithm  pkix.AlgorithmIdentifier
	IssuerNameHash []byte
	IssuerKeyHash  []byte
	SerialNumber   *big.Int
}

// ocspRevokedInfo is RFC 6960 §4.2.1 RevokedInfo. A zero Reason
// (unspecified) is omitted, as RFC 5280 §5.3.1 asks for CRL entries.
type ocspRevokedInfo struct {
	RevocationTime time.Time       `asn1:"generalized"`
	Reason         asn1.Enumerated `asn1:"explicit,tag:0,optional"`
}

// ocspSingleResponse is RFC 6960 §4.2.1 SingleResponse; exactly one of Good
// and Revoked is set (CertStatus is a CHOICE).
type ocspSingleResponse struct {
	CertID     ocspCertID
	Good       asn1.Flag       `asn1:"tag:0,optional"`
	Revoked    ocspRevokedInfo `asn1:"tag:1,optional"`
	ThisUpdate time.Time       `asn1:"generalized"`
	NextUpdate time.Time       `asn1:"generalized,explicit,tag:0,optional"`
}

type ocspResponseData struct {
	ResponderID asn1.RawValue
	ProducedAt  time.Time `asn1:"generalized"`
	Responses   []ocspSingleResponse
}

type ocspBasicResponse struct {
	TBSResponseData    asn1.RawValue
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          asn1.BitString
	Certs              []asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

type ocspResponseBytes struct {
	ResponseType asn1.ObjectIdentifier
	Response     []byte
}

type ocspResponse struct {
	Status        asn1.Enumerated
	ResponseBytes ocspResponseBytes `asn1:"explicit,tag:0"`
}

var (
	oidOCSPBasic = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}
	oidSHA1      = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256    = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	// Signature algorithm identifiers, encoded as the CA/B BRs §7.1.3.2
	// require (zlint e_ocsp_*_signature_encoding_correct): RSA with NULL
	// parameters, ECDSA with the parameters absent.
	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidEKUOCSPSigning  = x509.ExtKeyUsageOCSPSigning
)

// OCSPTemplate is what one OCSP response asserts about one certificate.
type OCSPTemplate struct {
	Serial *big.Int
	// Revoked selects the revoked status (RevokedAt and Reason are then
	// used); otherwise the response says good.
	Revoked   bool
	RevokedAt time.Time
	Reason    int // RFC 5280 §5.3.1 CRLReason code; 0 (unspecified) is omitted
	// ThisUpdate and NextUpdate bound the validity of the response
	// (RFC 5019 §2.2.4). ProducedAt is the signing time; ThisUpdate must
	// not be after it (RFC 6960 §2.4).
	ThisUpdate, NextUpdate, ProducedAt time.Time
}

// OCSPSigner signs OCSP responses about the certificates of one issuer with
// a delegated OCSP responder certificate (RFC 6960 §4.2.2.2: issued by that
// issuer, with id-kp-OCSPSigning). Responses carry the responder
// certificate, so relying parties that know only the issuer can verify
// them. An OCSPSigner is immutable and safe for concurrent use, provided its
// crypto.Signer is.
type OCSPSigner struct {
	issuer  *x509.Certificate
	cert    *x509.Certificate
	key     crypto.Signer
	hash    crypto.Hash
	sigAlg  pkix.AlgorithmIdentifier
	rid     asn1.RawValue // ResponderID byKey
	certIDs [2]ocspCertID // SHA-1 and SHA-256 CertIDs without the serial
	lints   lint.Registry
}

// NewOCSPSigner checks that cert is a delegated OCSP responder certificate
// issued by issuer (signature, id-kp-OCSPSigning, digitalSignature) whose
// private key is key, and precomputes the CertID hashes of the issuer and
// the responder's key hash. Responder keys must be ECDSA P-256 or P-384 or
// RSA: golang.org/x/crypto/ocsp cannot verify Ed25519 responses.
func NewOCSPSigner(issuer, cert *x509.Certificate, key crypto.Signer) (*OCSPSigner, error) {
	if issuer == nil || cert == nil || key == nil {
		return nil, errors.New("issuance: new OCSP signer: nil issuer, certificate or key")
	}
	name := cert.Subject.String()
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%w: OCSP responder %q", ErrKeyMismatch, name)
	}
	if err := cert.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("issuance: new OCSP signer %q: not issued by %q: %v", name, issuer.Subject, err)
	}
	if !slices.Contains(cert.ExtKeyUsage, oidEKUOCSPSigning) {
		// RFC 6960 §4.2.2.2: a delegated responder certificate MUST carry it.
		return nil, fmt.Errorf("issuance: new OCSP signer %q: extended key usage lacks id-kp-OCSPSigning", name)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, fmt.Errorf("issuance: new OCSP signer %q: key usage lacks digitalSignature", name)
	}
	s := &OCSPSigner{issuer: issuer, cert: cert, key: key}
	switch k := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			s.hash, s.sigAlg = crypto.SHA256, pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA256}
		case elliptic.P384():
			s.hash, s.sigAlg = crypto.SHA384, pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA384}
		default:
			return nil, fmt.Errorf("issuance: new OCSP signer %q: unsupported curve %s", name, k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		s.hash, s.sigAlg = crypto.SHA256, pkix.AlgorithmIdentifier{Algorithm: oidSHA256WithRSA, Parameters: asn1.NullRawValue}
	default:
		return nil, fmt.Errorf("issuance: new OCSP signer %q: unsupported responder key %T (want ECDSA P-256/P-384 or RSA)", name, cert.PublicKey)
	}
	// ResponderID byKey: RFC 6960 §4.2.1 KeyHash is the SHA-1 hash of the
	// responder's subjectPublicKey BIT STRING value. It must be SHA-1:
	// OpenSSL (OCSP_RESPID_match_ex) only matches 20-byte SHA-1 key hashes.
	// RFC 5019 §2.2.2 recommends byKey over byName.
	respKeyBits, err := publicKeyBits(cert)
	if err != nil {
		return nil, fmt.Errorf("issuance: new OCSP signer %q: %v", name, err)
	}
	kh := sha1.Sum(respKeyBits)
	khDER, err := asn1.Marshal(kh[:])
	if err != nil {
		return nil, fmt.Errorf("issuance: new OCSP signer %q: %v", name, err)
	}
	s.rid = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, IsCompound: true, Bytes: khDER}

	h1, h256 := IssuerHashes(issuer)
	if h1 == nil || h256 == nil {
		return nil, fmt.Errorf("issuance: new OCSP signer %q: cannot hash issuer %q public key", name, issuer.Subject)
	}
	s.certIDs[0] = ocspCertID{HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: oidSHA1, Parameters: asn1.NullRawValue}, IssuerNameHash: h1.NameHash, IssuerKeyHash: h1.KeyHash}
	s.certIDs[1] = ocspCertID{HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: oidSHA256, Parameters: asn1.NullRawValue}, IssuerNameHash: h256.NameHash, IssuerKeyHash: h256.KeyHash}

	// Every OCSP lint zlint has: the RFC 6960 ones and the CA/B BR
	// signature-encoding ones, which are about DER correctness and apply to
	// a private PKI as much as a public one.
	s.lints, err = lint.GlobalRegistry().Filter(lint.FilterOptions{})
	if err != nil {
		return nil, fmt.Errorf("issuance: new OCSP signer: lint registry: %v", err)
	}
	return s, nil
}

// IssuerHash is the issuer part of an OCSP CertID (RFC 6960 §4.1.1) for one
// hash algorithm.
type IssuerHash struct {
	NameHash []byte // hash of the issuer's DER-encoded subject
	KeyHash  []byte // hash of the issuer's subjectPublicKey BIT STRING value
}

// IssuerHashes returns the CertID hashes of issuer for SHA-1 and SHA-256,
// or nils if its public key cannot be decoded.
func IssuerHashes(issuer *x509.Certificate) (sha1Hash, sha256Hash *IssuerHash) {
	bits, err := publicKeyBits(issuer)
	if err != nil {
		return nil, nil
	}
	n1, k1 := sha1.Sum(issuer.RawSubject), sha1.Sum(bits)
	n256, k256 := sha256.Sum256(issuer.RawSubject), sha256.Sum256(bits)
	return &IssuerHash{NameHash: n1[:], KeyHash: k1[:]}, &IssuerHash{NameHash: n256[:], KeyHash: k256[:]}
}

func publicKeyBits(c *x509.Certificate) ([]byte, error) {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if rest, err := asn1.Unmarshal(c.RawSubjectPublicKeyInfo, &spki); err != nil || len(rest) != 0 {
		return nil, errors.New("cannot decode the subject public key info")
	}
	return spki.PublicKey.RightAlign(), nil
}

// Cert returns the responder certificate. Callers must not modify it.
func (s *OCSPSigner) Cert() *x509.Certificate { return s.cert }

// Issuer returns the certificate of the CA the responses are about.
func (s *OCSPSigner) Issuer() *x509.Certificate { return s.issuer }

// Sign builds, signs, verifies and lints the response for t. The response
// holds two SingleResponses for t.Serial (SHA-1 and SHA-256 CertIDs), the
// ResponderID by key hash and the responder certificate. It refuses a
// template whose NextUpdate is after the responder certificate expires (the
// response could not be verified until its NextUpdate) or whose ProducedAt
// is outside the certificate's validity. Any zlint warning or error is
// returned as a *LintError.
func (s *OCSPSigner) Sign(t OCSPTemplate) (der []byte, err error) {
	if s == nil || s.lints == nil {
		return nil, errors.New("issuance: sign OCSP: signer not made by NewOCSPSigner")
	}
	if t.Serial == nil || t.Serial.Sign() <= 0 {
		return nil, fmt.Errorf("issuance: sign OCSP: serial %v must be positive", t.Serial)
	}
	serial := t.Serial
	fail := func(format string, args ...any) error {
		return fmt.Errorf("issuance: sign OCSP for serial %x: %s", serial, fmt.Sprintf(format, args...))
	}
	thisUpdate := t.ThisUpdate.UTC().Truncate(time.Second)
	nextUpdate := t.NextUpdate.UTC().Truncate(time.Second)
	producedAt := t.ProducedAt.UTC().Truncate(time.Second)
	switch {
	case t.ThisUpdate.IsZero() || t.NextUpdate.IsZero() || t.ProducedAt.IsZero():
		return nil, fail("thisUpdate, nextUpdate and producedAt are required")
	case !nextUpdate.After(thisUpdate):
		return nil, fail("nextUpdate %s is not after thisUpdate %s", nextUpdate, thisUpdate)
	case thisUpdate.After(producedAt):
		return nil, fail("thisUpdate %s is after producedAt %s (RFC 6960 §2.4)", thisUpdate, producedAt)
	case nextUpdate.After(s.cert.NotAfter):
		return nil, fail("nextUpdate %s is after the responder certificate expires (%s)", nextUpdate, s.cert.NotAfter.UTC())
	case producedAt.Before(s.cert.NotBefore) || producedAt.After(s.cert.NotAfter):
		return nil, fail("responder certificate is not valid at %s", producedAt)
	case t.Revoked && t.RevokedAt.IsZero():
		return nil, fail("revoked without a revocation time")
	case t.Revoked && (t.Reason < 0 || t.Reason > 10 || t.Reason == 7):
		return nil, fail("revocation reason %d is not an RFC 5280 CRLReason", t.Reason)
	}

	singles := make([]ocspSingleResponse, len(s.certIDs))
	for i, id := range s.certIDs {
		id.SerialNumber = serial
		singles[i] = ocspSingleResponse{CertID: id, ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
		if t.Revoked {
			singles[i].Revoked = ocspRevokedInfo{RevocationTime: t.RevokedAt.UTC().Truncate(time.Second), Reason: asn1.Enumerated(t.Reason)}
		} else {
			singles[i].Good = true
		}
	}
	tbs, err := asn1.Marshal(ocspResponseData{ResponderID: s.rid, ProducedAt: producedAt, Responses: singles})
	if err != nil {
		return nil, fail("encode response data: %v", err)
	}
	h := s.hash.New()
	h.Write(tbs)
	sig, err := s.key.Sign(rand.Reader, h.Sum(nil), s.hash)
	if err != nil {
		return nil, fail("sign: %v", err)
	}
	basic, err := asn1.Marshal(ocspBasicResponse{
		TBSResponseData:    asn1.RawValue{FullBytes: tbs},
		SignatureAlgorithm: s.sigAlg,
		Signature:          asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
		Certs:              []asn1.RawValue{{FullBytes: s.cert.Raw}},
	})
	if err != nil {
		return nil, fail("encode basic response: %v", err)
	}
	der, err = asn1.Marshal(ocspResponse{
		Status:        asn1.Enumerated(ocsp.Success),
		ResponseBytes: ocspResponseBytes{ResponseType: oidOCSPBasic, Response: basic},
	})
	if err != nil {
		return nil, fail("encode response: %v", err)
	}

	// Self-check, as x509.CreateCertificate does for certificates: parse
	// what we built, verifying the responder certificate against the issuer
	// and the signature against the responder certificate.
	resp, err := ocsp.ParseResponseForCert(der, &x509.Certificate{SerialNumber: serial}, s.issuer)
	if err != nil {
		return nil, fail("verify signed response: %v", err)
	}
	want := ocsp.Good
	if t.Revoked {
		want = ocsp.Revoked
	}
	if resp.Status != want || resp.SerialNumber.Cmp(serial) != 0 || !resp.ThisUpdate.Equal(thisUpdate) || !resp.NextUpdate.Equal(nextUpdate) ||
		resp.Certificate == nil || !bytes.Equal(resp.Certificate.Raw, s.cert.Raw) {
		return nil, fail("signed response does not say what was asked")
	}
	if err := lintOCSP(s.lints, resp); err != nil {
		return nil, err
	}
	return der, nil
}

// lintOCSP runs reg's OCSP lints over resp and returns a *LintError on any
// warning, error or fatal result.
func lintOCSP(reg lint.Registry, resp *ocsp.Response) error {
	rs := zlint.LintOcspResponseEx(resp, reg)
	var findings []LintFinding
	for name, r := range rs.Results {
		if r.Status >= lint.Warn {
			findings = append(findings, LintFinding{Name: name, Status: r.Status.String(), Details: r.Details, Source: string(r.LintMetadata.Source)})
		}
	}
	if len(findings) == 0 {
		return nil
	}
	sort.Slice(findings, func(a, b int) bool { return findings[a].Name < findings[b].Name })
	return &LintError{Findings: findings}
}
