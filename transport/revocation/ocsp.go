package revocation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	xocsp "golang.org/x/crypto/ocsp"
)

// checkOCSP asks the responder at u about leaf, through the cache.
func (c *Checker) checkOCSP(ctx context.Context, u string, leaf, issuer *x509.Certificate) (*answer, bool, error) {
	key := "ocsp|" + u + "|" + issuerID(issuer) + "|" + leaf.SerialNumber.Text(16)
	return fetch(ctx, c, c.ocsp, key, func(ctx context.Context) (*answer, time.Time, error) {
		body, err := c.queryOCSP(ctx, u, leaf, issuer)
		if err != nil {
			return nil, time.Time{}, err
		}
		return verifyOCSP(body, leaf, issuer, c.cfg.now(), c.cfg.skew)
	})
}

// queryOCSP sends an RFC 6960 request for leaf (SHA-1 CertID, the RFC 5019
// profile, no nonce) by GET when it fits 255 bytes, else by POST.
func (c *Checker) queryOCSP(ctx context.Context, u string, leaf, issuer *x509.Certificate) ([]byte, error) {
	der, err := xocsp.CreateRequest(leaf, issuer, &xocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		return nil, fmt.Errorf("create request: %w", err)
	}
	// RFC 6960 Appendix A.1: GET {url}/{url-encoding of base64 of DER}.
	enc := strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D").Replace(base64.StdEncoding.EncodeToString(der))
	get := u
	if !strings.HasSuffix(get, "/") {
		get += "/"
	}
	get += enc
	var req *http.Request
	if len(get) <= maxGETURL {
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, get, nil)
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(der))
		if req != nil {
			req.Header.Set("Content-Type", "application/ocsp-request")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	return c.do(req, c.cfg.maxResp, "application/ocsp-response")
}

// verifyOCSP parses an OCSP response about leaf and checks that issuer
// signed it (directly or through a delegated responder, RFC 6960
// §4.2.2.2) and that it is current at now. It returns the answer and how
// long it may be cached (its nextUpdate; zero when it has none, RFC 5019
// §2.2.4: "newer information is always available").
func verifyOCSP(body []byte, leaf, issuer *x509.Certificate, now time.Time, skew time.Duration) (*answer, time.Time, error) {
	// With a nil issuer, x/crypto/ocsp checks the signature against an
	// embedded responder certificate, and nothing else; the checks that
	// tie the signer to the issuer are below.
	r, err := xocsp.ParseResponseForCert(body, leaf, nil)
	if err != nil {
		var re xocsp.ResponseError
		if errors.As(err, &re) {
			if re.Status == xocsp.Unauthorized {
				return nil, time.Time{}, fmt.Errorf("%w: responder says %q", ErrUnknown, re.Status.String())
			}
			return nil, time.Time{}, fmt.Errorf("responder error: %s", re.Status.String())
		}
		return nil, time.Time{}, fmt.Errorf("%w: parse OCSP response: %v", ErrInvalidResponse, err)
	}
	if err := checkOCSPSigner(r, issuer, now, skew); err != nil {
		return nil, time.Time{}, err
	}
	if r.ThisUpdate.After(now.Add(skew)) {
		return nil, time.Time{}, fmt.Errorf("%w: OCSP response not valid before %s (thisUpdate)", ErrInvalidResponse, r.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if !r.NextUpdate.IsZero() && !now.Before(r.NextUpdate.Add(skew)) {
		return nil, time.Time{}, fmt.Errorf("%w: OCSP response expired at %s (nextUpdate)", ErrInvalidResponse, r.NextUpdate.UTC().Format(time.RFC3339))
	}
	var a answer
	switch r.Status {
	case xocsp.Good:
	case xocsp.Revoked:
		a = answer{revoked: true, revokedAt: r.RevokedAt, reason: r.RevocationReason}
	default:
		return nil, time.Time{}, fmt.Errorf("%w: status unknown", ErrUnknown)
	}
	return &a, r.NextUpdate, nil
}

// checkOCSPSigner checks who signed r: the issuer itself, or a responder
// certificate signed by the issuer, with id-kp-OCSPSigning, valid at now.
func checkOCSPSigner(r *xocsp.Response, issuer *x509.Certificate, now time.Time, skew time.Duration) error {
	rc := r.Certificate
	if rc == nil || bytes.Equal(rc.Raw, issuer.Raw) {
		// Signed by the issuer (an embedded copy of the issuer was
		// checked by ParseResponseForCert; check against ours anyway).
		if err := r.CheckSignatureFrom(issuer); err != nil {
			return fmt.Errorf("%w: OCSP response signature does not verify with the issuer's key: %v", ErrInvalidResponse, err)
		}
		return nil
	}
	// ParseResponseForCert verified the response signature with rc.
	name := rc.Subject.String()
	if !bytes.Equal(rc.RawIssuer, issuer.RawSubject) {
		return fmt.Errorf("%w: OCSP responder certificate %q was issued by %q, not the certificate's issuer", ErrInvalidResponse, name, rc.Issuer.String())
	}
	if err := rc.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("%w: OCSP responder certificate %q is not signed by the issuer: %v", ErrInvalidResponse, name, err)
	}
	if !slices.Contains(rc.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) {
		return fmt.Errorf("%w: OCSP responder certificate %q lacks id-kp-OCSPSigning (RFC 6960 §4.2.2.2)", ErrInvalidResponse, name)
	}
	if now.Add(skew).Before(rc.NotBefore) || now.Add(-skew).After(rc.NotAfter) {
		return fmt.Errorf("%w: OCSP responder certificate %q is not valid now (valid %s to %s)", ErrInvalidResponse, name,
			rc.NotBefore.UTC().Format(time.RFC3339), rc.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// readLimited reads r up to max bytes; more is ErrTooLarge.
func readLimited(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: body exceeds %d bytes", ErrTooLarge, max)
	}
	return b, nil
}
