package scan

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"sync"
	"time"
)

// mTLS probe names (MTLSProbe.Name).
const (
	probeNoCert      = "no_certificate"
	probeOtherCA     = "other_ca"
	probeExpired     = "expired"
	probeNoClientEKU = "no_client_auth_eku"
	probeSupplied    = "supplied"
)

// checkMTLS finds out whether the server asks for, requires and verifies
// client certificates, with throwaway certificates it should reject.
func (s *scanner) checkMTLS(ctx context.Context, prim *handshake) {
	if prim.fromProbe {
		if prim.certRequest != nil {
			s.res.MTLS = &MTLSResult{Requested: true}
			s.add("mtls.untested", SeverityInfo, "", "CertificateRequest seen by the prober",
				"the server asks for a client certificate, but crypto/tls cannot connect to test how it checks one")
		}
		return
	}
	if prim.certRequest == nil {
		if s.cfg.expectMTLS {
			s.add("mtls.not_required", SeverityCritical, GradeF, "no CertificateRequest in the handshake",
				"the server does not ask for a client certificate, but one was expected to be required")
		}
		if s.cfg.clientCert != nil {
			s.res.MTLS = &MTLSResult{}
		}
		return
	}
	m := &MTLSResult{Requested: true}
	for _, dn := range prim.certRequest.AcceptableCAs {
		m.AcceptableCAs = append(m.AcceptableCAs, rdnString(dn))
	}
	certs, err := s.throwawayCerts()
	if err != nil {
		s.add("mtls.probe_failed", SeverityWarning, "", err.Error(), "could not make throwaway client certificates")
	}
	names := []string{probeNoCert, probeOtherCA, probeExpired, probeNoClientEKU, probeSupplied}
	probes := make([]*MTLSProbe, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		var cert *tls.Certificate
		switch name {
		case probeSupplied:
			cert = s.cfg.clientCert
		case probeNoCert:
		default:
			cert = certs[name]
		}
		if cert == nil && name != probeNoCert {
			continue
		}
		wg.Go(func() { probes[i] = s.probeClientCert(ctx, name, cert) })
	}
	wg.Wait()
	got := map[string]*MTLSProbe{}
	for _, p := range probes {
		if p != nil {
			m.Probes = append(m.Probes, *p)
			got[p.Name] = p
		}
	}
	if p := got[probeNoCert]; p != nil {
		m.Required = !p.Accepted
		switch {
		case p.Accepted && s.cfg.expectMTLS:
			s.add("mtls.not_required", SeverityCritical, GradeF, p.Evidence,
				"the server accepts connections without a client certificate, but one was expected to be required")
		case p.Accepted:
			s.add("mtls.optional", SeverityInfo, "", p.Evidence, "the server asks for a client certificate but does not require one")
		default:
			s.add("mtls.required", SeverityInfo, "", p.Evidence, "the server requires a client certificate")
		}
	}
	for name, check := range map[string]string{
		probeOtherCA:     "mtls.accepts_other_ca",
		probeExpired:     "mtls.accepts_expired",
		probeNoClientEKU: "mtls.accepts_no_client_auth",
	} {
		if p := got[name]; p != nil && p.Accepted {
			what := map[string]string{
				probeOtherCA:     "a client certificate from a CA it does not trust",
				probeExpired:     "an expired client certificate",
				probeNoClientEKU: "a client certificate without the clientAuth extended key usage",
			}[name]
			s.add(check, SeverityCritical, GradeF, p.Evidence, "the server accepts %s", what)
		}
	}
	if s.cfg.clientCA == nil {
		s.add("mtls.issuer_probes_skipped", SeverityInfo, "", "WithClientIssuer not given",
			"expired and non-clientAuth client certificates were not tried (they must be signed by a CA the server trusts)")
	}
	if p := got[probeSupplied]; p != nil && !p.Accepted {
		s.add("mtls.supplied_rejected", SeverityWarning, "", p.Evidence, "the server rejects the supplied client certificate")
	}
	s.res.MTLS = m
}

// probeClientCert connects presenting cert (nil: none) and reports whether
// the server accepted the connection.
func (s *scanner) probeClientCert(ctx context.Context, name string, cert *tls.Certificate) *MTLSProbe {
	cache := newNotifyCache()
	hs := s.handshakeKeep(ctx, s.primary, hsOptions{cert: cert, cache: cache}, true)
	if hs.err != nil {
		return &MTLSProbe{Name: name, Evidence: hs.err.Error()}
	}
	defer hs.conn.Close()
	if hs.state.Version < tls.VersionTLS13 {
		// Before TLS 1.3 the server checks the client certificate before
		// sending its Finished: a completed handshake is acceptance.
		return &MTLSProbe{Name: name, Accepted: true, Evidence: "handshake completed (" + tls.VersionName(hs.state.Version) + ")"}
	}
	v := awaitServer(ctx, hs.conn, cache.got, s.waitFor())
	return &MTLSProbe{Name: name, Accepted: v.accepted, Evidence: v.evidence}
}

// throwawayCerts makes the client certificates of the negative probes:
// other_ca (from a CA made here, valid, clientAuth), and with
// WithClientIssuer, expired and no_client_auth_eku signed by the server's
// trusted client CA.
func (s *scanner) throwawayCerts() (map[string]*tls.Certificate, error) {
	out := map[string]*tls.Certificate{}
	now := s.cfg.now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return out, fmt.Errorf("scan: throwaway key: %v", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{CommonName: "certctl scan throwaway CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return out, fmt.Errorf("scan: throwaway CA: %v", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return out, fmt.Errorf("scan: throwaway CA: %v", err)
	}
	leaf := func(parent *x509.Certificate, parentKey crypto.Signer, notAfter time.Time, eku x509.ExtKeyUsage) (*tls.Certificate, error) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: randSerial(),
			Subject:      pkix.Name{CommonName: "certctl-scan-probe"},
			NotBefore:    notAfter.Add(-48 * time.Hour),
			NotAfter:     notAfter,
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{eku},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, k.Public(), parentKey)
		if err != nil {
			return nil, err
		}
		return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}, nil
	}
	if out[probeOtherCA], err = leaf(ca, caKey, now.Add(time.Hour), x509.ExtKeyUsageClientAuth); err != nil {
		return out, fmt.Errorf("scan: throwaway client certificate: %v", err)
	}
	if s.cfg.clientCA != nil {
		if out[probeExpired], err = leaf(s.cfg.clientCA, s.cfg.clientCAKey, now.Add(-24*time.Hour), x509.ExtKeyUsageClientAuth); err != nil {
			return out, fmt.Errorf("scan: expired client certificate from %s: %v", s.cfg.clientCA.Subject, err)
		}
		if out[probeNoClientEKU], err = leaf(s.cfg.clientCA, s.cfg.clientCAKey, now.Add(time.Hour), x509.ExtKeyUsageServerAuth); err != nil {
			return out, fmt.Errorf("scan: serverAuth-only client certificate from %s: %v", s.cfg.clientCA.Subject, err)
		}
	}
	return out, nil
}

func randSerial() *big.Int {
	b := make([]byte, 16)
	rand.Read(b)
	b[0] &= 0x7f
	return new(big.Int).SetBytes(b)
}

// rdnString renders a DER-encoded distinguished name, or its hex if it does
// not parse.
func rdnString(der []byte) string {
	var seq pkix.RDNSequence
	if _, err := asn1.Unmarshal(der, &seq); err != nil {
		return fmt.Sprintf("%x", der)
	}
	var n pkix.Name
	n.FillFromRDNSequence(&seq)
	return n.String()
}
