package issuance

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"runtime"
	"sort"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// RevokedCert is one entry of a CRL.
type RevokedCert struct {
	Serial    *big.Int
	RevokedAt time.Time // the true revocation time; encoded to the second
	// Reason is the RFC 5280 §5.3.1 CRLReason code. 0 (unspecified) is
	// encoded by omitting the reasonCode extension, as §5.3.1 asks.
	Reason int
}

// RevokedCerts produces the entries of a CRL by calling emit for each, in
// strictly increasing order of the serials' big-endian encodings
// (bytes.Compare of big.Int.Bytes: the order certdb lists them in). An
// error from emit must be returned. It lets SignCRL stream entries from a
// database cursor without holding them as structs.
type RevokedCerts func(emit func(RevokedCert) error) error

// CRLRequest describes a CRL for SignCRL.
type CRLRequest struct {
	// Number is the CRL number (RFC 5280 §5.2.3): non-negative, at most
	// 20 octets, and larger than any number used before for this shard.
	Number *big.Int
	// ThisUpdate and NextUpdate (RFC 5280 §5.1.2.4, §5.1.2.5). Encoded to
	// the second; NextUpdate must be after ThisUpdate.
	ThisUpdate, NextUpdate time.Time
	// Shard selects the Issuing Distribution Point URLs (Issuer.CRLURLs).
	Shard int
	// Entries streams the revoked certificates; nil means none. Every
	// entry's RevokedAt must be at or before ThisUpdate (to the second).
	Entries RevokedCerts
}

// CRLFullCheckEntries is the largest CRL that SignCRL lints and re-parses
// whole. Larger CRLs are checked by linting a sample (see SignCRL): zlint
// and the x509 parsers turn every entry into structs, several hundred bytes
// each, which for a million entries would cost more memory than building
// the CRL itself.
const CRLFullCheckEntries = 10_000

// rfc2459Date: revocation times before RFC 2459 (January 1999) are
// nonsense (zlint e_crl_revocation_date_too_early).
var rfc2459Date = time.Date(1999, time.January, 1, 0, 0, 0, 0, time.UTC)

// Object identifiers (RFC 5280 §4.2.1.1, §5.2.3, §5.2.5, §5.3.1).
var (
	oidAuthorityKeyID = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidCRLNumber      = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidIDP            = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidReasonCode     = asn1.ObjectIdentifier{2, 5, 29, 21}
)

// SignCRL builds, lints and signs a CRL (RFC 5280 §5) for shard req.Shard
// and returns its DER. The CRL carries:
//   - version v2, the issuer's subject, thisUpdate and nextUpdate (UTCTime
//     until 2049, GeneralizedTime after, §5.1.2.4);
//   - one entry per revoked certificate with its true revocation time and,
//     unless unspecified, a reasonCode extension (§5.3.1);
//   - the Authority Key Identifier (§5.2.1) and CRL Number (§5.2.3)
//     extensions;
//   - a critical Issuing Distribution Point (§5.2.5) naming the shard's
//     URLs (Issuer.CRLURLs), the URLs each certificate of the shard has in
//     its CDP, so that a CRL of one shard cannot be taken for another's.
//     It asserts onlyContainsUserCerts when the issuer cannot issue CA
//     certificates (its pathLenConstraint is 0, and Prepare refuses CA
//     profiles for it). An issuer that can (a root, an intermediate with a
//     path length above 0) lists the CA certificates it issued (revoked
//     intermediates) in the same shards, so its IDP claims no scope. The
//     IDP is omitted only when there is neither a URL nor a scope to state
//     (an unsharded issuer without CRL URLs: a full CRL, and §5.2.5 forbids
//     an empty IDP).
//
// # Why SignCRL encodes the CRL itself
//
// x509.CreateRevocationList needs every entry in memory as an
// x509.RevocationListEntry (with a *big.Int and extension slices) and
// marshals through encoding/asn1 reflection: for a million entries this
// takes several hundred megabytes and many seconds (bench/RESULTS.md,
// "Issue 4"). So, the one exception to "don't hand-roll ASN.1" in this
// package: SignCRL streams entries straight from Entries into DER with
// golang.org/x/crypto/cryptobyte, appending to fixed-size chunks (no
// doubling growth), assembles the TBSCertList once, signs it with the
// issuer's crypto.Signer (digest per the issuer's signature algorithm) and
// checks the signature with the issuer certificate's key. Peak heap is
// about twice the DER size (the chunks and the output buffer; for large
// CRLs SignCRL collects garbage before allocating the output and before
// returning, so that streaming garbage does not add a third).
//
// # Linting and checks
//
// Every entry is checked as it is encoded for what the per-entry lints would
// catch: serial positive and at most 20 octets, strictly increasing (so
// no duplicates, in constant memory), reason code defined by RFC 5280 and
// not removeFromCRL (delta CRLs only), revocation time after 1999 and not
// after thisUpdate. Then, as for certificates, a lint CRL with the same
// header and extensions and the first CRLFullCheckEntries entries (all of
// them for a CRL that size or smaller, which is then byte for byte the TBS
// that gets signed) is signed with the issuer's throwaway lint key, parsed
// by crypto/x509 and zcrypto, and linted with zlint's private-PKI registry;
// any warning fails with a *LintError. Finally the real CRL's signature is
// verified against the issuer certificate, and a CRL of at most
// CRLFullCheckEntries entries is also parsed with x509.ParseRevocationList
// and checked with CheckSignatureFrom.
//
// SignCRL is safe for concurrent use. It does no I/O beyond calling
// Entries and the signer.
func (i *Issuer) SignCRL(req CRLRequest) (der []byte, err error) {
	if i.lints == nil {
		return nil, errors.New("issuance: sign CRL: issuer not made by NewIssuer")
	}
	if i.cert.KeyUsage&x509.KeyUsageCRLSign == 0 {
		// RFC 5280 §4.2.1.3: the cRLSign bit must be set to verify CRLs.
		return nil, fmt.Errorf("issuance: sign CRL: issuer %q: key usage lacks cRLSign", i.cert.Subject)
	}
	// RFC 5280 §5.2.3: "CRL issuers MUST NOT use CRLNumber values longer
	// than 20 octets"; a positive DER INTEGER of 160 bits needs 21.
	if req.Number == nil || req.Number.Sign() < 0 || req.Number.BitLen() > 159 {
		return nil, fmt.Errorf("issuance: sign CRL: number %v must be non-negative and at most 20 octets when encoded", req.Number)
	}
	if req.Shard < 0 || req.Shard >= i.cfg.CRLShards {
		return nil, fmt.Errorf("issuance: sign CRL %d: shard %d out of range [0, %d)", req.Number, req.Shard, i.cfg.CRLShards)
	}
	thisUpdate := req.ThisUpdate.UTC().Truncate(time.Second)
	nextUpdate := req.NextUpdate.UTC().Truncate(time.Second)
	if !nextUpdate.After(thisUpdate) {
		return nil, fmt.Errorf("issuance: sign CRL %d: nextUpdate %s is not after thisUpdate %s", req.Number,
			nextUpdate.Format(time.RFC3339), thisUpdate.Format(time.RFC3339))
	}
	if thisUpdate.Before(i.cert.NotBefore) || nextUpdate.After(i.cert.NotAfter) {
		return nil, fmt.Errorf("issuance: sign CRL %d: validity %s to %s is outside the issuer certificate's (%s to %s)", req.Number,
			thisUpdate.Format(time.RFC3339), nextUpdate.Format(time.RFC3339),
			i.cert.NotBefore.UTC().Format(time.RFC3339), i.cert.NotAfter.UTC().Format(time.RFC3339))
	}

	// 1. Stream the entries into chunks.
	var ents entryWriter
	ents.thisUpdate = thisUpdate
	if req.Entries != nil {
		if err := req.Entries(ents.add); err != nil {
			return nil, fmt.Errorf("issuance: sign CRL %d: %w", req.Number, err)
		}
	}

	// 2. The parts of the TBSCertList around the entries.
	head, err := i.crlHead(thisUpdate, nextUpdate)
	if err != nil {
		return nil, fmt.Errorf("issuance: sign CRL %d: %v", req.Number, err)
	}
	exts, err := i.crlExtensions(req.Number, req.Shard)
	if err != nil {
		return nil, fmt.Errorf("issuance: sign CRL %d: %v", req.Number, err)
	}

	// 3. Lint a CRL with the same header and extensions and (up to) the
	// first CRLFullCheckEntries entries, signed with the throwaway key.
	sample := ents.prefix(ents.sampleLen)
	lintDER, err := i.assembleCRL(head, sample, ents.sampleLen, exts, i.lintKey, i.lintParent)
	if err != nil {
		return nil, fmt.Errorf("issuance: sign CRL %d: lint CRL: %v", req.Number, err)
	}
	if err := i.checkLintCRL(lintDER); err != nil {
		return nil, err
	}

	// 4. The real thing.
	if ents.size >= largeCRL {
		// About to allocate a second buffer the size of the entries: first
		// let the garbage from streaming go, so that the heap holds the
		// chunks and the output, not also a GC cycle's worth of garbage.
		runtime.GC()
	}
	der, err = i.assembleCRL(head, ents.chunks, ents.size, exts, i.signer, i.cert)
	if err != nil {
		return nil, fmt.Errorf("issuance: sign CRL %d: %v", req.Number, err)
	}
	if ents.size >= largeCRL {
		// The entry chunks (as large as der) are garbage now, but the GC's
		// goal was set while they were live: the caller's next large
		// allocations (a store copies der once or twice to send it) would
		// grow the heap to about four times der. Collecting now makes that
		// memory reusable instead. Only for large CRLs, which are built at
		// most once per shard per period; the collection takes
		// milliseconds (the heap is mostly pointer-free byte slices).
		ents.chunks, sample = nil, nil
		runtime.GC()
	}
	if ents.count <= CRLFullCheckEntries {
		// The TBS is the one just linted; check it parses and verifies as
		// any relying party would.
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, fmt.Errorf("issuance: sign CRL %d: parse signed CRL: %v", req.Number, err)
		}
		if err := crl.CheckSignatureFrom(i.cert); err != nil {
			return nil, fmt.Errorf("issuance: sign CRL %d: signature does not verify: %v; CRL discarded", req.Number, err)
		}
	}
	return der, nil
}

// crlHead encodes version, signature, issuer, thisUpdate and nextUpdate.
func (i *Issuer) crlHead(thisUpdate, nextUpdate time.Time) ([]byte, error) {
	sigAlg, err := i.sigAlgDER()
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1Int64(1) // v2 (RFC 5280 §5.1.2.1: required when extensions are present)
	b.AddBytes(sigAlg)
	b.AddBytes(i.cert.RawSubject) // §5.1.2.3: byte for byte the issuer's subject
	addTime(&b, thisUpdate)
	addTime(&b, nextUpdate)
	return b.Bytes()
}

// crlExtensions encodes the [0] EXPLICIT crlExtensions.
func (i *Issuer) crlExtensions(number *big.Int, shard int) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			// §5.2.1: AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING }.
			addExtension(b, oidAuthorityKeyID, false, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(i.keyID) })
				})
			})
			// §5.2.3: CRLNumber ::= INTEGER (0..MAX).
			addExtension(b, oidCRLNumber, false, func(b *cryptobyte.Builder) { b.AddASN1BigInt(number) })
			// §5.2.5: critical IssuingDistributionPoint.
			urls := i.CRLURLs(shard)
			userOnly := i.crlUserCertsOnly()
			if len(urls) > 0 || userOnly {
				addExtension(b, oidIDP, true, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						if len(urls) > 0 {
							// distributionPoint [0] DistributionPointName (a CHOICE,
							// so explicitly tagged), fullName [0] IMPLICIT
							// GeneralNames, uniformResourceIdentifier [6] IMPLICIT IA5String.
							b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
								b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
									for _, u := range urls {
										b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(u)) })
									}
								})
							})
						}
						if userOnly {
							// onlyContainsUserCerts [1] IMPLICIT BOOLEAN (DER: TRUE is 0xff).
							b.AddASN1(cbasn1.Tag(1).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddUint8(0xff) })
						}
					})
				})
			}
		})
	})
	return b.Bytes()
}

// crlUserCertsOnly reports whether the issuer can only issue end-entity
// certificates: a pathLenConstraint of 0 (RFC 5280 §4.2.1.9), which Prepare
// enforces by refusing CA profiles.
func (i *Issuer) crlUserCertsOnly() bool { return i.cert.MaxPathLen == 0 && i.cert.MaxPathLenZero }

// sigAlgDER returns the issuer's signature AlgorithmIdentifier.
func (i *Issuer) sigAlgDER() ([]byte, error) {
	var ai struct {
		Algorithm  asn1.ObjectIdentifier
		Parameters asn1.RawValue `asn1:"optional"`
	}
	switch i.sigAlg {
	case x509.ECDSAWithSHA256: // RFC 5758 §3.2: parameters absent
		ai.Algorithm = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	case x509.ECDSAWithSHA384:
		ai.Algorithm = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	case x509.SHA256WithRSA: // RFC 4055 §5: parameters NULL
		ai.Algorithm = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
		ai.Parameters = asn1.RawValue{FullBytes: asn1.NullBytes}
	case x509.PureEd25519: // RFC 8410 §3: parameters absent
		ai.Algorithm = asn1.ObjectIdentifier{1, 3, 101, 112}
	default:
		return nil, fmt.Errorf("no CRL encoding for signature algorithm %v", i.sigAlg)
	}
	return asn1.Marshal(ai)
}

// sigHash returns the digest that i.sigAlg signs (0: the message itself).
func (i *Issuer) sigHash() crypto.Hash {
	switch i.sigAlg {
	case x509.ECDSAWithSHA384:
		return crypto.SHA384
	case x509.PureEd25519:
		return 0
	}
	return crypto.SHA256
}

// assembleCRL builds the CertificateList from head, the entry chunks
// (entriesLen bytes in all; none means the revokedCertificates field is
// absent, §5.1.2.6) and exts, and signs it with signer. The output buffer
// is allocated once, at its final size give or take a few bytes.
func (i *Issuer) assembleCRL(head []byte, chunks [][]byte, entriesLen int, exts []byte, signer crypto.Signer, verifyWith *x509.Certificate) ([]byte, error) {
	sigAlg, err := i.sigAlgDER()
	if err != nil {
		return nil, err
	}
	tbsContent := len(head) + len(exts)
	if entriesLen > 0 {
		tbsContent += derHeaderLen(entriesLen) + entriesLen
	}
	tbsLen := derHeaderLen(tbsContent) + tbsContent
	// The outer SEQUENCE header goes in front once the signature's length
	// is known: reserve room for the longest one (a 4-octet length).
	const outerRoom = 6
	out := make([]byte, outerRoom, outerRoom+tbsLen+len(sigAlg)+maxSignatureLen+8)
	out = appendDERHeader(out, 0x30, tbsContent) // TBSCertList SEQUENCE
	out = append(out, head...)
	if entriesLen > 0 {
		out = appendDERHeader(out, 0x30, entriesLen) // revokedCertificates SEQUENCE OF
		for _, c := range chunks {
			out = append(out, c...)
		}
	}
	out = append(out, exts...)
	tbs := out[outerRoom:]
	if len(tbs) != tbsLen {
		return nil, fmt.Errorf("internal error: TBSCertList is %d octets, expected %d", len(tbs), tbsLen)
	}
	signed := tbs
	if h := i.sigHash(); h != 0 {
		d := h.New()
		d.Write(tbs)
		signed = d.Sum(nil)
	}
	sig, err := signer.Sign(rand.Reader, signed, i.sigHash())
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	// As x509.CreateCertificate does: never hand out a signature that does
	// not verify (a faulty HSM, a wrong key). This costs one verification
	// however large the CRL.
	if err := verifyWith.CheckSignature(i.sigAlg, tbs, sig); err != nil {
		return nil, fmt.Errorf("signature does not verify: %v; CRL discarded", err)
	}
	out = append(out, sigAlg...)
	out = appendDERHeader(out, 0x03, len(sig)+1) // BIT STRING
	out = append(out, 0)                         // no unused bits
	out = append(out, sig...)
	content := len(out) - outerRoom
	hdr := appendDERHeader(nil, 0x30, content)
	start := outerRoom - len(hdr)
	copy(out[start:], hdr)
	return out[start:], nil
}

// maxSignatureLen bounds the signatures of the key types keys supports
// (RSA-4096: 512 octets; ECDSA P-384: at most 104; Ed25519: 64). Only used
// to size a buffer.
const maxSignatureLen = 512

// derHeaderLen is the length of a DER tag and length for content of n octets.
func derHeaderLen(n int) int {
	switch {
	case n < 0x80:
		return 2
	case n <= 0xff:
		return 3
	case n <= 0xffff:
		return 4
	case n <= 0xffffff:
		return 5
	}
	return 6
}

// appendDERHeader appends a one-octet tag and the DER length of n content
// octets (X.690 §8.1.3: short form below 128, else the minimal long form).
// cryptobyte computes lengths by rewriting its buffer as nested content
// grows, which for a 50 MB revokedCertificates field means copying it; the
// sizes here are known in advance.
func appendDERHeader(dst []byte, tag byte, n int) []byte {
	dst = append(dst, tag)
	switch l := derHeaderLen(n); l {
	case 2:
		return append(dst, byte(n))
	default:
		dst = append(dst, 0x80|byte(l-2))
		for s := (l - 3) * 8; s >= 0; s -= 8 {
			dst = append(dst, byte(n>>s))
		}
		return dst
	}
}

// addTime encodes a Time (RFC 5280 §5.1.2.4): UTCTime through 2049,
// GeneralizedTime from 2050.
func addTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC()
	if t.Year() >= 2050 {
		b.AddASN1GeneralizedTime(t)
		return
	}
	b.AddASN1UTCTime(t)
}

// addExtension encodes an Extension (RFC 5280 §4.1): extnID, critical
// (DEFAULT FALSE, so only TRUE is encoded), extnValue.
func addExtension(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, critical bool, value func(*cryptobyte.Builder)) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if critical {
			b.AddASN1Boolean(true)
		}
		b.AddASN1(cbasn1.OCTET_STRING, value)
	})
}

// largeCRL is the entries size above which SignCRL collects garbage before
// allocating its output and before returning (see there).
const largeCRL = 8 << 20

// entryChunkSize: entries are appended to chunks of this size, so a large
// CRL never needs one buffer re-allocated (and copied) as it grows.
const entryChunkSize = 1 << 20

// entryWriter encodes revokedCertificates entries as they stream in.
type entryWriter struct {
	thisUpdate time.Time
	chunks     [][]byte
	size       int    // total encoded octets
	count      int    // entries
	sampleLen  int    // octets of the first CRLFullCheckEntries entries
	last       []byte // previous serial, big-endian, for the order check
	scratch    [128]byte
}

func (w *entryWriter) add(e RevokedCert) error {
	s := e.Serial
	if s == nil || s.Sign() <= 0 || s.BitLen() > 159 {
		return fmt.Errorf("entry %d: serial %v must be positive and at most 20 octets when encoded", w.count, s)
	}
	sb := s.Bytes()
	if w.last != nil && bytes.Compare(w.last, sb) >= 0 {
		return fmt.Errorf("entry %d: serial %x is not after %x: entries must be unique and in increasing order", w.count, sb, w.last)
	}
	w.last = append(w.last[:0], sb...)
	at := e.RevokedAt.UTC()
	if at.Before(rfc2459Date) {
		return fmt.Errorf("entry %d: serial %x: revocation time %s is before 1999", w.count, sb, at.Format(time.RFC3339))
	}
	if at.Truncate(time.Second).After(w.thisUpdate) {
		// RFC 5280 §5.1.2.6 (zlint e_crl_revocation_time_after_this_update).
		return fmt.Errorf("entry %d: serial %x: revocation time %s is after thisUpdate %s", w.count, sb,
			at.Format(time.RFC3339), w.thisUpdate.Format(time.RFC3339))
	}
	switch {
	case e.Reason < 0 || e.Reason == 7 || e.Reason > 10:
		return fmt.Errorf("entry %d: serial %x: reason code %d is not defined by RFC 5280 §5.3.1", w.count, sb, e.Reason)
	case e.Reason == 8:
		return fmt.Errorf("entry %d: serial %x: reason removeFromCRL is only for delta CRLs (RFC 5280 §5.3.1)", w.count, sb)
	}
	b := cryptobyte.NewFixedBuilder(w.scratch[:0])
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(s)
		addTime(b, at)
		if e.Reason != 0 { // §5.3.1: absent rather than unspecified
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				addExtension(b, oidReasonCode, false, func(b *cryptobyte.Builder) { b.AddASN1Enum(int64(e.Reason)) })
			})
		}
	})
	enc, err := b.Bytes()
	if err != nil {
		return fmt.Errorf("entry %d: serial %x: %v", w.count, sb, err)
	}
	if n := len(w.chunks); n == 0 || len(w.chunks[n-1])+len(enc) > cap(w.chunks[n-1]) {
		w.chunks = append(w.chunks, make([]byte, 0, entryChunkSize))
	}
	last := &w.chunks[len(w.chunks)-1]
	*last = append(*last, enc...)
	w.size += len(enc)
	w.count++
	if w.count <= CRLFullCheckEntries {
		w.sampleLen = w.size
	}
	return nil
}

// prefix returns the first n encoded octets as chunks.
func (w *entryWriter) prefix(n int) [][]byte {
	var out [][]byte
	for _, c := range w.chunks {
		if n <= 0 {
			break
		}
		k := min(n, len(c))
		out = append(out, c[:k])
		n -= k
	}
	return out
}

// checkLintCRL parses the lint CRL with crypto/x509 and zcrypto, checks its
// signature against the lint key and lints it with zlint.
func (i *Issuer) checkLintCRL(der []byte) error {
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return &LintError{Findings: []LintFinding{{Name: "x509_parse", Status: "fatal", Details: err.Error(), Source: "crypto/x509"}}}
	}
	if err := crl.CheckSignatureFrom(i.lintParent); err != nil {
		return fmt.Errorf("issuance: sign CRL: lint CRL signature: %v", err)
	}
	zcrl, err := zx509.ParseRevocationList(der)
	if err != nil {
		return &LintError{Findings: []LintFinding{{Name: "zcrypto_parse", Status: "fatal", Details: err.Error(), Source: "zcrypto"}}}
	}
	rs := zlint.LintRevocationListEx(zcrl, i.lints)
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
