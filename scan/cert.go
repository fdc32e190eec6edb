package scan

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// maxFetch bounds AIA certificate and CRL downloads.
const (
	maxAIASize = 1 << 20
	maxCRLSize = 32 << 20
	// maxAIAHops bounds how many missing intermediates are fetched.
	maxAIAHops = 3
)

// summarize describes c for the Result.
func summarize(c *x509.Certificate) CertSummary {
	sum := sha256.Sum256(c.Raw)
	cs := CertSummary{
		Serial:             hex.EncodeToString(c.SerialNumber.Bytes()),
		Subject:            c.Subject.String(),
		Issuer:             c.Issuer.String(),
		NotBefore:          c.NotBefore.UTC(),
		NotAfter:           c.NotAfter.UTC(),
		SignatureAlgorithm: c.SignatureAlgorithm.String(),
		IsCA:               c.IsCA,
		SHA256:             hex.EncodeToString(sum[:]),
	}
	if c.SerialNumber.Sign() == 0 {
		cs.Serial = "00"
	}
	cs.KeyType, cs.KeyBits = keyInfo(c)
	cs.SANs = append(cs.SANs, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		cs.SANs = append(cs.SANs, ip.String())
	}
	cs.SANs = append(cs.SANs, c.EmailAddresses...)
	for _, u := range c.URIs {
		cs.SANs = append(cs.SANs, u.String())
	}
	return cs
}

func keyInfo(c *x509.Certificate) (string, int) {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		return "RSA", k.N.BitLen()
	case *ecdsa.PublicKey:
		return "ECDSA", k.Curve.Params().BitSize
	case ed25519.PublicKey:
		return "Ed25519", 256
	}
	return "unknown", 0
}

// rsaEquivalentBits is the RSA modulus size of equivalent strength (NIST SP
// 800-57 Part 1 Table 2), the unit of the SSL Labs key-exchange score.
func rsaEquivalentBits(keyType string, bits int) int {
	switch keyType {
	case "RSA", "DH":
		return bits
	case "ECDSA", "Ed25519", "EC":
		switch {
		case bits >= 512:
			return 15360
		case bits >= 384:
			return 7680
		case bits >= 256:
			return 3072
		case bits >= 224:
			return 2048
		default:
			return 1024
		}
	}
	return 0
}

func isSelfSigned(c *x509.Certificate) bool {
	// Not CheckSignatureFrom: it refuses a non-CA "parent", and a
	// self-signed leaf is exactly that.
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// issuedBy reports whether parent's subject and key identifier match child's
// issuer. It does not check the signature (SHA-1 signatures, which crypto/x509
// refuses to check, must still be placed in the chain).
func issuedBy(child, parent *x509.Certificate) bool {
	if !bytes.Equal(child.RawIssuer, parent.RawSubject) {
		return false
	}
	if len(child.AuthorityKeyId) > 0 && len(parent.SubjectKeyId) > 0 {
		return bytes.Equal(child.AuthorityKeyId, parent.SubjectKeyId)
	}
	return true
}

// checkCertificate runs the certificate checks on the chain the primary
// address served: trust, expiry, name, key, signatures, chain order,
// completeness, revocation, stapling and SCTs.
func (s *scanner) checkCertificate(ctx context.Context, hs *handshake) {
	chain := hs.peerCerts
	leaf := chain[0]
	leafSum := summarize(leaf)
	s.res.Certificate = &leafSum
	for _, c := range chain {
		s.res.Chain = append(s.res.Chain, summarize(c))
	}
	now := s.cfg.now()

	// Validity period.
	switch {
	case now.After(leaf.NotAfter):
		s.add("certificate.expired", SeverityCritical, GradeT, "not_after "+leaf.NotAfter.UTC().Format(time.RFC3339),
			"the certificate expired %s ago", now.Sub(leaf.NotAfter).Round(time.Minute))
	case now.Before(leaf.NotBefore):
		s.add("certificate.not_yet_valid", SeverityCritical, GradeT, "not_before "+leaf.NotBefore.UTC().Format(time.RFC3339),
			"the certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	case leaf.NotAfter.Sub(now) < expiryWarning(leaf, s.cfg.expiryWarn):
		left := leaf.NotAfter.Sub(now)
		s.add("certificate.expires_soon", SeverityWarning, "", "not_after "+leaf.NotAfter.UTC().Format(time.RFC3339),
			"the certificate expires in %s, past the last third of its %s lifetime", roundDuration(left), roundDuration(leaf.NotAfter.Sub(leaf.NotBefore)))
	}

	// Name.
	name := s.sni
	if name == "" {
		name = s.t.Host
	}
	if err := leaf.VerifyHostname(name); err != nil {
		s.add("certificate.name_mismatch", SeverityCritical, GradeM, "SANs: "+strings.Join(leafSum.SANs, ", "),
			"the certificate is not valid for %s", name)
	} else {
		s.res.NameMatch = true
	}

	// Key.
	kt, bits := keyInfo(leaf)
	ev := fmt.Sprintf("%s %d bits", kt, bits)
	switch eq := rsaEquivalentBits(kt, bits); {
	case kt == "unknown":
		s.add("certificate.weak_key", SeverityWarning, "", fmt.Sprintf("%T", leaf.PublicKey), "unknown public key type")
	case eq < 1024:
		s.add("certificate.weak_key", SeverityCritical, GradeF, ev, "the %s key is insecure (under 1024 bits RSA or equivalent)", kt)
	case eq < 2048:
		s.add("certificate.weak_key", SeverityWarning, GradeB, ev, "the %s key is weak (under 2048 bits RSA or equivalent)", kt)
	}

	// Signatures of the served chain (a self-signed anchor's own signature
	// does not matter).
	for i, c := range chain {
		if i > 0 && bytes.Equal(c.RawIssuer, c.RawSubject) {
			continue
		}
		who := fmt.Sprintf("chain[%d] %s: %s", i, c.Subject, c.SignatureAlgorithm)
		switch c.SignatureAlgorithm {
		case x509.MD2WithRSA, x509.MD5WithRSA:
			s.add("certificate.insecure_signature", SeverityCritical, GradeF, who, "a certificate in the chain is signed with MD5/MD2")
		case x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1:
			s.add("certificate.sha1_signature", SeverityCritical, GradeT, who, "a certificate in the chain is signed with SHA-1, which clients no longer trust")
		}
	}

	s.checkChain(ctx, chain, now)
	s.checkRevocation(ctx, hs, now)

	// OCSP stapling and certificate transparency.
	s.res.Features.OCSPStapling = len(hs.state.OCSPResponse) > 0
	n, err := countEmbeddedSCTs(leaf)
	if err != nil {
		s.add("certificate.bad_sct_list", SeverityWarning, "", err.Error(), "the certificate's SCT list does not parse")
	}
	s.res.Features.SCTs = n + len(hs.state.SignedCertificateTimestamps)
}

// checkChain verifies the chain against the roots, fetching missing
// intermediates over AIA, and reports order problems and extra certificates.
func (s *scanner) checkChain(ctx context.Context, chain []*x509.Certificate, now time.Time) {
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	// Trust is judged apart from expiry (its own finding): if the chain
	// does not verify now only because of validity periods, verify it at
	// the end and at the start of the leaf's validity.
	at := now
	verify := func(p *x509.CertPool) ([][]*x509.Certificate, error) {
		return leaf.Verify(x509.VerifyOptions{
			Roots:         s.cfg.roots,
			Intermediates: p,
			CurrentTime:   at,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
	}
	var ce x509.CertificateInvalidError
	if _, err := verify(inter); errors.As(err, &ce) && ce.Reason == x509.Expired {
		if leafValid := !now.After(leaf.NotAfter) && !now.Before(leaf.NotBefore); leafValid || ce.Cert != leaf {
			// An intermediate (or the root) is outside its validity.
			s.add("chain.expired", SeverityCritical, GradeT, err.Error(),
				"a certificate of the chain (%s) is expired or not yet valid", ce.Cert.Subject)
		}
		for _, cand := range []time.Time{leaf.NotAfter.Add(-time.Second), leaf.NotBefore.Add(time.Second)} {
			at = cand
			if _, err := verify(inter); err == nil || !errors.As(err, &ce) || ce.Reason != x509.Expired {
				break
			}
		}
	}
	chains, err := verify(inter)
	var fetched []string
	if err != nil && errors.As(err, new(x509.UnknownAuthorityError)) {
		// Missing intermediates: follow AIA caIssuers from the last
		// certificate whose issuer we lack.
		cur := lastInPath(chain)
		for range maxAIAHops {
			if len(cur.IssuingCertificateURL) == 0 || isSelfSigned(cur) {
				break
			}
			url := cur.IssuingCertificateURL[0]
			ic, ferr := s.fetchCert(ctx, url)
			if ferr != nil {
				s.cfg.log.DebugContext(ctx, "AIA fetch failed", "url", url, "err", ferr)
				fetched = append(fetched, url+": "+ferr.Error())
				break
			}
			fetched = append(fetched, url)
			inter.AddCert(ic)
			if chains, err = verify(inter); err == nil {
				s.add("chain.incomplete", SeverityWarning, GradeB, "fetched "+strings.Join(fetched, ", "),
					"the server does not send all intermediate certificates; clients that do not fetch them over AIA fail")
				break
			}
			cur = ic
		}
	}
	if err != nil {
		switch {
		case isSelfSigned(leaf):
			s.add("certificate.self_signed", SeverityCritical, GradeT, err.Error(), "the certificate is self-signed and not among the trusted roots")
		case strings.Contains(err.Error(), "insecure algorithm") && s.has("certificate.sha1_signature"):
			// Reported as certificate.sha1_signature.
		case len(fetched) > 0 && strings.Contains(fetched[len(fetched)-1], ": "):
			s.add("chain.incomplete", SeverityCritical, GradeT, err.Error()+"; AIA: "+strings.Join(fetched, ", "),
				"the chain is incomplete: the server does not send the issuer of %s and it could not be fetched", lastInPath(chain).Subject)
		default:
			msg := "the chain does not verify against the trusted roots"
			if last := lastInPath(chain); errors.As(err, new(x509.UnknownAuthorityError)) && !isSelfSigned(last) {
				msg += fmt.Sprintf(" (the issuer %q of %q is neither sent by the server nor a trusted root: a missing intermediate, or an unknown CA)", last.Issuer.String(), last.Subject.String())
			}
			s.add("certificate.untrusted", SeverityCritical, GradeT, err.Error(), "%s", msg)
		}
	} else {
		s.res.Trusted = true
	}

	// Order: each served certificate should be followed by its issuer.
	var order []string
	for i, c := range chain {
		if i+1 < len(chain) && issuedBy(c, chain[i+1]) {
			continue
		}
		for j, p := range chain {
			if j != i && j != i+1 && issuedBy(c, p) {
				order = append(order, fmt.Sprintf("chain[%d] %s is issued by chain[%d] %s", i, c.Subject, j, p.Subject))
				break
			}
		}
	}
	if len(order) > 0 {
		s.add("chain.order", SeverityWarning, "", strings.Join(order, "; "),
			"the certificates are not in order (each must be followed by its issuer)")
	}

	// Extra certificates: served but not part of the verified path.
	if len(chains) > 0 {
		used := map[string]bool{}
		for _, c := range chains[0] {
			used[string(c.Raw)] = true
		}
		var extra []string
		for i, c := range chain {
			switch {
			case !used[string(c.Raw)]:
				extra = append(extra, fmt.Sprintf("chain[%d] %s", i, c.Subject))
			case i > 0 && isSelfSigned(c):
				s.add("chain.contains_anchor", SeverityInfo, "", fmt.Sprintf("chain[%d] %s", i, c.Subject),
					"the server sends the root certificate (unnecessary)")
			}
		}
		if len(extra) > 0 {
			s.add("chain.extra_certs", SeverityInfo, "", strings.Join(extra, "; "),
				"the server sends certificates that are not part of the path to the trusted root")
		}
	}
}

// lastInPath follows the served chain from the leaf through issuers and
// returns the last certificate reached.
func lastInPath(chain []*x509.Certificate) *x509.Certificate {
	cur := chain[0]
	seen := map[*x509.Certificate]bool{cur: true}
	for {
		next := (*x509.Certificate)(nil)
		for _, p := range chain {
			if !seen[p] && issuedBy(cur, p) {
				next = p
				break
			}
		}
		if next == nil {
			return cur
		}
		seen[next] = true
		cur = next
	}
}

// fetch GETs url with the scan's context and HTTP client, up to limit bytes.
func (s *scanner) fetch(ctx context.Context, url string, limit int64) ([]byte, error) {
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return nil, fmt.Errorf("scan: fetch %s: only http and https URLs are fetched", url)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("scan: fetch %s: %v", url, err)
	}
	resp, err := s.cfg.httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scan: fetch %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scan: fetch %s: HTTP %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("scan: fetch %s: %v", url, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("scan: fetch %s: larger than %d bytes", url, limit)
	}
	return b, nil
}

// fetchCert fetches a caIssuers certificate (DER, or PEM as some servers
// publish).
func (s *scanner) fetchCert(ctx context.Context, url string) (*x509.Certificate, error) {
	b, err := s.fetch(ctx, url, maxAIASize)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		return nil, fmt.Errorf("scan: AIA %s: %v", url, err)
	}
	return c, nil
}

// hostIsIP reports whether the target is an IP literal.
func (s *scanner) hostIsIP() bool {
	_, err := netip.ParseAddr(s.t.Host)
	return err == nil
}

// expiryWarning is how close to NotAfter a leaf must be for
// certificate.expires_soon: the configured threshold, but never more than a
// third of the certificate's lifetime. Short-lived certificates (a 30-day
// server certificate, a 24-hour service certificate) are renewed at about
// two thirds of their life; before that point they are healthy however few
// days they have left.
func expiryWarning(leaf *x509.Certificate, threshold time.Duration) time.Duration {
	return min(threshold, leaf.NotAfter.Sub(leaf.NotBefore)/3)
}

// roundDuration prints d in days above two days, hours above two hours, else
// minutes.
func roundDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", int(d.Hours()))
	default:
		return d.Round(time.Minute).String()
	}
}
