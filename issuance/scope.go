package issuance

import (
	"fmt"
	"net/netip"
	"strings"
)

// NameScope is a set of name patterns in the syntax of a profile's names:
// section, used to authorize callers (an API token's --names) on top of the
// profile's own policy. It never changes after NewNameScope and is safe for
// concurrent use.
type NameScope struct {
	raw   []string
	dns   []pattern
	ip    []netip.Prefix
	uri   []pattern
	email []emailPattern
}

// NewNameScope compiles patterns. Each is classified like Request.AddNames
// classifies names: "scheme://…" is a URI pattern, one with "@" an email
// pattern, a CIDR or IP address an IP range, anything else a DNS pattern
// ("db.internal", "*.svc.internal", "**.internal").
func NewNameScope(patterns []string) (*NameScope, error) {
	s := &NameScope{raw: append([]string(nil), patterns...)}
	for i, raw := range patterns {
		raw = strings.TrimSpace(raw)
		var err error
		switch {
		case strings.Contains(raw, "://"):
			var p pattern
			if p, err = compileURIPattern(raw); err == nil {
				s.uri = append(s.uri, p)
			}
		case strings.Contains(raw, "@"):
			var p emailPattern
			if p, err = compileEmailPattern(raw); err == nil {
				s.email = append(s.email, p)
			}
		case isIPPattern(raw):
			var p netip.Prefix
			if p, err = compileIPPattern(raw); err == nil {
				s.ip = append(s.ip, p)
			}
		default:
			var p pattern
			if p, err = compileDNSPattern(raw); err == nil {
				s.dns = append(s.dns, p)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("issuance: name pattern [%d] %q: %v", i, raw, err)
		}
	}
	return s, nil
}

func isIPPattern(s string) bool {
	if _, err := netip.ParsePrefix(s); err == nil {
		return true
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}

// Patterns returns the patterns the scope was made from.
func (s *NameScope) Patterns() []string { return append([]string(nil), s.raw...) }

// Check returns a *PolicyError naming the first name of req that no
// pattern allows (profile is used in the error only). The common name must
// be one of the request's names or match a DNS pattern: a client
// certificate's CN is often its identity (a PostgreSQL role), so it is
// scoped like any name. A request with no names passes: the profile decides
// whether names are required.
func (s *NameScope) Check(profile string, req *Request) error {
	deny := func(field, name string) error {
		return &PolicyError{Profile: profile, Field: field, Reason: fmt.Sprintf("%q is outside the caller's allowed names %v", name, s.raw)}
	}
	if cn := req.Subject.CommonName; cn != "" && !s.cnAllowed(cn, req) {
		return deny("common_name", cn)
	}
	for i, n := range req.DNSNames {
		if !matchAny(s.dns, strings.TrimSuffix(n, ".")) {
			return deny(fmt.Sprintf("dns_names[%d]", i), n)
		}
	}
	for i, ip := range req.IPAddresses {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return deny(fmt.Sprintf("ip_addresses[%d]", i), ip.String())
		}
		a = a.Unmap()
		allowed := false
		for _, p := range s.ip {
			if p.Contains(a) {
				allowed = true
				break
			}
		}
		if !allowed {
			return deny(fmt.Sprintf("ip_addresses[%d]", i), a.String())
		}
	}
	for i, u := range req.URIs {
		if !matchAny(s.uri, lowerAuthority(u.String())) {
			return deny(fmt.Sprintf("uris[%d]", i), u.String())
		}
	}
	for i, e := range req.EmailAddresses {
		allowed := false
		for _, p := range s.email {
			if p.match(e) {
				allowed = true
				break
			}
		}
		if !allowed {
			return deny(fmt.Sprintf("email_addresses[%d]", i), e)
		}
	}
	return nil
}

func (s *NameScope) cnAllowed(cn string, req *Request) bool {
	for _, n := range req.DNSNames {
		if strings.EqualFold(strings.TrimSuffix(n, "."), cn) {
			return true
		}
	}
	for _, ip := range req.IPAddresses {
		if ip.String() == cn {
			return true
		}
	}
	for _, e := range req.EmailAddresses {
		if e == cn {
			return true
		}
	}
	for _, u := range req.URIs {
		if u.String() == cn {
			return true
		}
	}
	return matchAny(s.dns, cn)
}
