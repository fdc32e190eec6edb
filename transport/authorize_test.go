package transport

import (
	"crypto/x509"
	"errors"
	"net/url"
	"testing"
)

func TestAuthorizers(t *testing.T) {
	mustURL := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	issuer := &x509.Certificate{Raw: []byte("issuer")}
	other := &x509.Certificate{Raw: []byte("other")}
	peer := &x509.Certificate{
		DNSNames: []string{"api.internal", "API2.Internal"},
		URIs:     []*url.URL{mustURL("spiffe://Example.Internal/ns/prod/api")},
	}
	twoURIs := &x509.Certificate{URIs: []*url.URL{mustURL("spiffe://example.internal/a"), mustURL("spiffe://example.internal/b")}}
	chains := [][]*x509.Certificate{{peer, issuer, other}}
	tests := []struct {
		name   string
		a      Authorizer
		peer   *x509.Certificate
		chains [][]*x509.Certificate
		ok     bool
	}{
		{"dns match", AuthorizeDNS("db.internal", "api.internal"), peer, chains, true},
		{"dns case and trailing dot", AuthorizeDNS("api2.internal."), peer, chains, true},
		{"dns no match", AuthorizeDNS("db.internal"), peer, chains, false},
		{"dns none", AuthorizeDNS(), peer, chains, false},
		{"uri match host case", AuthorizeURI("spiffe://example.internal/ns/prod/api"), peer, chains, true},
		{"uri path case matters", AuthorizeURI("spiffe://example.internal/ns/prod/API"), peer, chains, false},
		{"spiffe match", AuthorizeSPIFFEID("spiffe://example.internal/ns/prod/api"), peer, chains, true},
		{"spiffe other id", AuthorizeSPIFFEID("spiffe://example.internal/ns/dev/api"), peer, chains, false},
		{"spiffe two URIs is no SVID", AuthorizeSPIFFEID("spiffe://example.internal/a"), twoURIs, chains, false},
		{"uri with two URIs", AuthorizeURI("spiffe://example.internal/b"), twoURIs, chains, true},
		{"issuer in chain", AuthorizeIssuer(issuer), peer, chains, true},
		{"issuer not in chain", AuthorizeIssuer(&x509.Certificate{Raw: []byte("x")}), peer, chains, false},
		{"issuer is not the leaf", AuthorizeIssuer(peer), peer, [][]*x509.Certificate{{peer}}, false},
		{"nil issuer", AuthorizeIssuer(nil), peer, chains, false},
		{"any trusted", AuthorizeAnyTrusted(), peer, chains, true},
		{"any trusted without chain", AuthorizeAnyTrusted(), peer, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.a(tt.peer, tt.chains)
			if (err == nil) != tt.ok {
				t.Fatalf("authorizer error = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrNotAuthorized) {
				t.Errorf("error %v does not wrap ErrNotAuthorized", err)
			}
		})
	}
}
