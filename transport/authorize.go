package transport

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// AuthorizeDNS accepts peers whose certificate holds one of names as a DNS
// SAN (compared case-insensitively, without a trailing dot; no wildcards).
func AuthorizeDNS(names ...string) Authorizer {
	want := make([]string, len(names))
	for i, n := range names {
		want[i] = normDNS(n)
	}
	return func(peer *x509.Certificate, _ [][]*x509.Certificate) error {
		for _, n := range peer.DNSNames {
			if slices.Contains(want, normDNS(n)) {
				return nil
			}
		}
		return fmt.Errorf("%w: DNS names %v, want one of %v", ErrNotAuthorized, peer.DNSNames, names)
	}
}

func normDNS(s string) string { return strings.TrimSuffix(strings.ToLower(s), ".") }

// AuthorizeURI accepts peers whose certificate holds one of uris as a URI
// SAN (exact match after parsing; scheme and host compared case-insensitively).
func AuthorizeURI(uris ...string) Authorizer {
	want := make([]string, 0, len(uris))
	for _, u := range uris {
		want = append(want, normURI(u))
	}
	return func(peer *x509.Certificate, _ [][]*x509.Certificate) error {
		for _, u := range peer.URIs {
			if slices.Contains(want, normURI(u.String())) {
				return nil
			}
		}
		return fmt.Errorf("%w: URIs %v, want one of %v", ErrNotAuthorized, uriStrings(peer), uris)
	}
}

func normURI(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "\x00invalid:" + s // matches nothing a certificate can hold
	}
	u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	return u.String()
}

func uriStrings(c *x509.Certificate) []string {
	s := make([]string, len(c.URIs))
	for i, u := range c.URIs {
		s[i] = u.String()
	}
	return s
}

// AuthorizeSPIFFEID accepts peers whose certificate holds exactly one URI
// SAN, a spiffe:// ID equal to one of ids (as the SPIFFE X.509-SVID
// specification requires: one URI SAN).
func AuthorizeSPIFFEID(ids ...string) Authorizer {
	want := make([]string, 0, len(ids))
	for _, id := range ids {
		want = append(want, normURI(id))
	}
	return func(peer *x509.Certificate, _ [][]*x509.Certificate) error {
		if len(peer.URIs) != 1 || !strings.EqualFold(peer.URIs[0].Scheme, "spiffe") {
			return fmt.Errorf("%w: not an X.509-SVID (want exactly one spiffe:// URI SAN, have %v)", ErrNotAuthorized, uriStrings(peer))
		}
		if !slices.Contains(want, normURI(peer.URIs[0].String())) {
			return fmt.Errorf("%w: SPIFFE ID %s, want one of %v", ErrNotAuthorized, peer.URIs[0], ids)
		}
		return nil
	}
}

// AuthorizeIssuer accepts peers with a verified chain through issuer (an
// intermediate or root certificate, compared byte for byte).
func AuthorizeIssuer(issuer *x509.Certificate) Authorizer {
	return func(peer *x509.Certificate, chains [][]*x509.Certificate) error {
		if issuer == nil {
			return fmt.Errorf("%w: no issuer configured", ErrNotAuthorized)
		}
		for _, ch := range chains {
			for _, c := range ch[1:] {
				if bytes.Equal(c.Raw, issuer.Raw) {
					return nil
				}
			}
		}
		return fmt.Errorf("%w: not issued through %s", ErrNotAuthorized, issuer.Subject)
	}
}

// AuthorizeAnyTrusted accepts any peer whose certificate verified against
// the trust bundle. Choose it explicitly: every workload of the CA can then
// connect.
func AuthorizeAnyTrusted() Authorizer {
	return func(peer *x509.Certificate, chains [][]*x509.Certificate) error {
		if len(chains) == 0 {
			return fmt.Errorf("%w: no verified chain", ErrNotAuthorized)
		}
		return nil
	}
}
