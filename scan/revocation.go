package scan

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"
)

const maxOCSPSize = 64 << 10

// Revocation statuses (Revocation.OCSP, Revocation.CRL).
const (
	revGood    = "good"
	revRevoked = "revoked"
	revUnknown = "unknown"
	revError   = "error"
)

// issuerOf returns the leaf's issuer: from the verified path if there is
// one, else from the served chain.
func issuerOf(chain []*x509.Certificate) *x509.Certificate {
	for _, p := range chain[1:] {
		if issuedBy(chain[0], p) {
			return p
		}
	}
	return nil
}

// checkRevocation asks the leaf's OCSP responder (or reads the stapled
// response) and its CRL, concurrently.
func (s *scanner) checkRevocation(ctx context.Context, hs *handshake, now time.Time) {
	leaf := hs.peerCerts[0]
	issuer := issuerOf(hs.peerCerts)
	if issuer == nil && isSelfSigned(leaf) {
		return // nothing can revoke it
	}
	if len(leaf.OCSPServer) == 0 && len(leaf.CRLDistributionPoints) == 0 && len(hs.state.OCSPResponse) == 0 {
		return
	}
	rev := &Revocation{}
	var wg sync.WaitGroup
	if len(hs.state.OCSPResponse) > 0 || len(leaf.OCSPServer) > 0 {
		wg.Go(func() { s.checkOCSP(ctx, rev, leaf, issuer, hs.state.OCSPResponse, now) })
	}
	var crlRevokedAt time.Time
	if len(leaf.CRLDistributionPoints) > 0 {
		wg.Go(func() { crlRevokedAt = s.checkCRL(ctx, rev, leaf, issuer, now) })
	}
	wg.Wait()
	if rev.RevokedAt.IsZero() {
		rev.RevokedAt = crlRevokedAt
	}
	s.res.Revocation = rev
	switch {
	case rev.OCSP == revRevoked || rev.CRL == revRevoked:
		src := "OCSP"
		if rev.OCSP != revRevoked {
			src = "CRL"
		}
		s.add("revocation.revoked", SeverityCritical, GradeF, fmt.Sprintf("%s: revoked at %s", src, rev.RevokedAt.UTC().Format(time.RFC3339)),
			"the certificate is revoked")
	case rev.OCSP == revError || rev.CRL == revError:
		var ev []string
		if rev.OCSPError != "" {
			ev = append(ev, "OCSP: "+rev.OCSPError)
		}
		if rev.CRLError != "" {
			ev = append(ev, "CRL: "+rev.CRLError)
		}
		s.add("revocation.unavailable", SeverityWarning, "", strings.Join(ev, "; "),
			"the revocation status could not be checked")
	}
}

func (s *scanner) checkOCSP(ctx context.Context, rev *Revocation, leaf, issuer *x509.Certificate, stapled []byte, now time.Time) {
	fail := func(err error) { rev.OCSP, rev.OCSPError = revError, err.Error() }
	if len(leaf.OCSPServer) > 0 {
		rev.OCSPURL = leaf.OCSPServer[0]
	}
	if issuer == nil {
		fail(fmt.Errorf("scan: OCSP: the issuer certificate is not available"))
		return
	}
	der := stapled
	if len(der) == 0 {
		req, err := ocsp.CreateRequest(leaf, issuer, &ocsp.RequestOptions{Hash: crypto.SHA256})
		if err != nil {
			fail(fmt.Errorf("scan: OCSP request: %v", err))
			return
		}
		hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, rev.OCSPURL, bytes.NewReader(req))
		if err != nil {
			fail(fmt.Errorf("scan: OCSP %s: %v", rev.OCSPURL, err))
			return
		}
		hreq.Header.Set("Content-Type", "application/ocsp-request")
		resp, err := s.cfg.httpClient.Do(hreq)
		if err != nil {
			fail(fmt.Errorf("scan: OCSP %s: %v", rev.OCSPURL, err))
			return
		}
		der, err = io.ReadAll(io.LimitReader(resp.Body, maxOCSPSize))
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			fail(fmt.Errorf("scan: OCSP %s: HTTP %s %v", rev.OCSPURL, resp.Status, err))
			return
		}
	}
	r, err := ocsp.ParseResponseForCert(der, leaf, issuer)
	if err != nil {
		fail(fmt.Errorf("scan: OCSP response: %v", err))
		return
	}
	if !r.NextUpdate.IsZero() && now.After(r.NextUpdate) {
		fail(fmt.Errorf("scan: OCSP response expired at %s", r.NextUpdate.UTC().Format(time.RFC3339)))
		return
	}
	switch r.Status {
	case ocsp.Good:
		rev.OCSP = revGood
	case ocsp.Revoked:
		rev.OCSP, rev.RevokedAt = revRevoked, r.RevokedAt
	default:
		rev.OCSP = revUnknown
	}
}

// checkCRL sets the CRL fields of rev (and only those: checkOCSP runs
// concurrently) and returns the revocation time if the leaf is revoked.
func (s *scanner) checkCRL(ctx context.Context, rev *Revocation, leaf, issuer *x509.Certificate, now time.Time) time.Time {
	fail := func(err error) { rev.CRL, rev.CRLError = revError, err.Error() }
	for _, u := range leaf.CRLDistributionPoints {
		if strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
			rev.CRLURL = u
			break
		}
	}
	if rev.CRLURL == "" {
		fail(fmt.Errorf("scan: CRL: no http distribution point in %v", leaf.CRLDistributionPoints))
		return time.Time{}
	}
	if issuer == nil {
		fail(fmt.Errorf("scan: CRL: the issuer certificate is not available"))
		return time.Time{}
	}
	der, err := s.fetch(ctx, rev.CRLURL, maxCRLSize)
	if err != nil {
		fail(err)
		return time.Time{}
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		fail(fmt.Errorf("scan: CRL %s: %v", rev.CRLURL, err))
		return time.Time{}
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		fail(fmt.Errorf("scan: CRL %s: signature: %v", rev.CRLURL, err))
		return time.Time{}
	}
	if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
		fail(fmt.Errorf("scan: CRL %s expired at %s", rev.CRLURL, crl.NextUpdate.UTC().Format(time.RFC3339)))
		return time.Time{}
	}
	rev.CRL = revGood
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
			rev.CRL = revRevoked
			return e.RevocationTime
		}
	}
	return time.Time{}
}
