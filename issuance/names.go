package issuance

import (
	"crypto"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Request is what a caller asks to be certified. Prepare validates it
// against a Profile; nothing in it is trusted. Prepare does not modify it.
// A Request is a plain value: do not modify it while Prepare runs.
type Request struct {
	PublicKey crypto.PublicKey
	// Subject: only CommonName, Organization and OrganizationalUnit are
	// copied into certificates; other attributes are ignored.
	Subject        pkix.Name
	DNSNames       []string
	IPAddresses    []net.IP
	URIs           []*url.URL
	EmailAddresses []string
}

// AddNames classifies each name and appends it to the matching list: an IP
// literal is an IP address, anything containing "://" a URI, anything
// containing "@" an email address, and everything else a DNS name. DNS names
// are normalized (lower case, trailing dot removed) and must be ASCII (use
// the IDNA A-label "xn--" form for internationalized names). On error, which
// wraps ErrInvalidName, r is left unchanged.
func (r *Request) AddNames(names ...string) error {
	var (
		dns, emails []string
		ips         []net.IP
		uris        []*url.URL
	)
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			return fmt.Errorf("%w: empty name", ErrInvalidName)
		}
		if ip, ok := parseIP(n); ok {
			ips = append(ips, ip)
			continue
		}
		var err error
		switch {
		case strings.Contains(n, "://"):
			var u *url.URL
			if u, err = parseURIName(n); err == nil {
				uris = append(uris, u)
			}
		case strings.Contains(n, "@"):
			var e string
			if e, err = normalizeEmail(n); err == nil {
				emails = append(emails, e)
			}
		default:
			var d string
			if d, err = normalizeDNS(n); err == nil {
				dns = append(dns, d)
			}
		}
		if err != nil {
			return fmt.Errorf("%w %q: %v", ErrInvalidName, n, err)
		}
	}
	r.DNSNames = append(r.DNSNames, dns...)
	r.IPAddresses = append(r.IPAddresses, ips...)
	r.URIs = append(r.URIs, uris...)
	r.EmailAddresses = append(r.EmailAddresses, emails...)
	return nil
}

// parseIP parses an IP literal (no zone). IPv4-mapped IPv6 addresses become
// IPv4 addresses, as Go's x509 encodes them.
func parseIP(s string) (net.IP, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return nil, false
	}
	return net.IP(a.Unmap().AsSlice()), true
}

// normalizeIP returns ip as a netip.Addr, IPv4-mapped addresses unmapped.
func normalizeIP(ip net.IP) (netip.Addr, error) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, fmt.Errorf("not an IP address (%d bytes)", len(ip))
	}
	return a.Unmap(), nil
}

// normalizeDNS lower-cases s, drops one trailing dot and checks the
// preferred name syntax of RFC 1034 §3.5 as relaxed by RFC 1123 §2.1
// (labels may start with a digit), which RFC 5280 §4.2.1.6 requires for
// dNSName. A leftmost "*" label (a wildcard, RFC 6125 §6.4.3) is accepted
// here; whether the profile allows it is checked by Prepare.
func normalizeDNS(s string) (string, error) {
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return "", errors.New("empty DNS name")
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return "", errors.New("DNS name is not ASCII: use the IDNA A-label (\"xn--\") form")
		}
	}
	s = strings.ToLower(s)
	if len(s) > 253 {
		return "", fmt.Errorf("DNS name is %d characters long (maximum 253)", len(s))
	}
	labels := strings.Split(s, ".")
	for i, l := range labels {
		if l == "*" && i == 0 {
			if len(labels) < 3 {
				return "", errors.New("a wildcard must be followed by at least two labels (\"*.example.internal\")")
			}
			continue
		}
		if err := checkLabel(l); err != nil {
			return "", err
		}
	}
	return s, nil
}

func checkLabel(l string) error {
	switch {
	case l == "":
		return errors.New("empty label")
	case len(l) > 63:
		return fmt.Errorf("label %q is longer than 63 characters", l)
	case l[0] == '-' || l[len(l)-1] == '-':
		return fmt.Errorf("label %q starts or ends with a hyphen", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			if c == '*' {
				return fmt.Errorf("label %q: a wildcard may only be the whole leftmost label", l)
			}
			return fmt.Errorf("label %q contains %q (allowed: letters, digits, hyphen)", l, c)
		}
	}
	return nil
}

// normalizeEmail checks an rfc822Name (RFC 5280 §4.2.1.6: a Mailbox as in
// RFC 5321 §4.1.2, ASCII only) and lower-cases its domain. The local part is
// kept as written: it is case-sensitive.
func normalizeEmail(s string) (string, error) {
	local, domain, ok := strings.Cut(s, "@")
	if !ok || strings.Contains(domain, "@") {
		return "", errors.New("email address must contain exactly one \"@\"")
	}
	if local == "" || len(local) > 64 {
		return "", errors.New("email local part must be 1 to 64 characters")
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),:;<>[\]`, c) >= 0 {
			return "", fmt.Errorf("email local part contains %q", c)
		}
	}
	if strings.HasPrefix(local, ".") || strings.HasSuffix(local, ".") || strings.Contains(local, "..") {
		return "", errors.New("email local part has a misplaced dot")
	}
	d, err := normalizeDNS(domain)
	if err != nil {
		return "", fmt.Errorf("email domain: %v", err)
	}
	if strings.HasPrefix(d, "*") {
		return "", errors.New("email domain cannot be a wildcard")
	}
	return local + "@" + d, nil
}

// parseURIName parses a URI SAN: absolute (RFC 5280 §4.2.1.6: "The name MUST
// NOT be a relative URI"), ASCII, without spaces, with a host for
// hierarchical schemes. Scheme and host are lower-cased.
func parseURIName(s string) (*url.URL, error) {
	if err := checkURIText(s); err != nil {
		return nil, err
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("invalid URI: %v", err)
	}
	return checkURI(u)
}

func checkURIText(s string) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("URI contains %q (percent-encode it)", c)
		}
	}
	return nil
}

func checkURI(u *url.URL) (*url.URL, error) {
	if u == nil {
		return nil, errors.New("nil URI")
	}
	if u.Scheme == "" {
		return nil, errors.New("URI must be absolute (have a scheme)")
	}
	if u.Opaque == "" && u.Host == "" {
		return nil, errors.New("URI has no host")
	}
	if u.User != nil {
		return nil, errors.New("URI must not contain user information")
	}
	c := *u
	c.Scheme = strings.ToLower(c.Scheme)
	c.Host = strings.ToLower(c.Host)
	if err := checkURIText(c.String()); err != nil {
		return nil, err
	}
	return &c, nil
}

// checkText validates a subject attribute value: valid UTF-8, no control
// characters, at most max characters (RFC 5280 Appendix A upper bounds:
// ub-common-name, ub-organization-name, ub-organizational-unit-name = 64).
func checkText(s string, max int) error {
	if !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(s); n > max {
		return fmt.Errorf("is %d characters long (maximum %d, RFC 5280 Appendix A)", n, max)
	}
	if strings.TrimSpace(s) != s {
		return errors.New("has leading or trailing space")
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return fmt.Errorf("contains the control character %U", r)
		}
	}
	return nil
}

// A pattern matches names split into segments at sep. A segment "*" matches
// exactly one non-empty segment, a segment "**" one or more segments (at
// most one "**" per pattern, so matching is linear); other segments match
// themselves (case-insensitively when fold is set).
type pattern struct {
	raw  string
	sep  string
	fold bool
	segs []string
}

func (p pattern) match(name string) bool {
	if p.fold {
		name = strings.ToLower(name)
	}
	return matchSegs(p.segs, strings.Split(name, p.sep))
}

func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			rest := pat[1:]
			// "**" takes one or more segments; the rest (without "**")
			// must match the tail exactly.
			if len(name)-len(rest) < 1 {
				return false
			}
			return matchSegs(rest, name[len(name)-len(rest):])
		}
		if len(name) == 0 {
			return false
		}
		if pat[0] == "*" {
			if name[0] == "" {
				return false
			}
		} else if pat[0] != name[0] {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// compileSegments splits raw at sep and checks the wildcard rules; check
// validates each literal segment.
func compileSegments(raw, sep string, fold bool, check func(i int, seg string) error) (pattern, error) {
	if raw == "" {
		return pattern{}, errors.New("empty pattern")
	}
	if fold {
		raw = strings.ToLower(raw)
	}
	p := pattern{raw: raw, sep: sep, fold: fold, segs: strings.Split(raw, sep)}
	doubles := 0
	for i, s := range p.segs {
		switch {
		case s == "**":
			doubles++
			if doubles > 1 {
				return pattern{}, errors.New(`at most one "**" per pattern`)
			}
		case s == "*":
		case strings.Contains(s, "*"):
			return pattern{}, fmt.Errorf(`segment %q: "*" and "**" must be whole segments`, s)
		default:
			if err := check(i, s); err != nil {
				return pattern{}, err
			}
		}
	}
	return p, nil
}

// compileDNSPattern: "db.internal", "*.svc.internal" (one label),
// "**.internal" (one or more labels; "**" only leftmost).
func compileDNSPattern(raw string) (pattern, error) {
	p, err := compileSegments(strings.TrimSuffix(raw, "."), ".", true, func(_ int, l string) error { return checkLabel(l) })
	if err != nil {
		return p, err
	}
	for i, s := range p.segs {
		if s == "**" && i != 0 {
			return pattern{}, errors.New(`"**" may only be the leftmost label`)
		}
	}
	return p, nil
}

// compileCNPattern: like DNS patterns, but literal segments may hold any
// text and are compared case-sensitively (a CN is often a PostgreSQL role
// name, and "app" and "APP" are different roles); "**" alone matches any
// common name.
func compileCNPattern(raw string) (pattern, error) {
	if err := checkText(raw, 64); err != nil {
		return pattern{}, fmt.Errorf("pattern %v", err)
	}
	return compileSegments(raw, ".", false, func(int, string) error { return nil })
}

// compileURIPattern: "spiffe://example.internal/**"; scheme and host are
// compared case-insensitively, the path case-sensitively.
func compileURIPattern(raw string) (pattern, error) {
	if !strings.Contains(raw, "://") {
		return pattern{}, errors.New(`URI pattern must start with "scheme://"`)
	}
	if err := checkURIText(raw); err != nil {
		return pattern{}, err
	}
	return compileSegments(lowerAuthority(raw), "/", false, func(int, string) error { return nil })
}

// lowerAuthority lower-cases the "scheme://host" prefix of a URI string.
func lowerAuthority(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	end := len(s)
	if j := strings.IndexAny(s[i+3:], "/?#"); j >= 0 {
		end = i + 3 + j
	}
	return strings.ToLower(s[:end]) + s[end:]
}

// emailPattern: "*@example.internal", "ops@**.internal"; the local part is
// "*" (any) or literal (case-sensitive), the domain a DNS pattern.
type emailPattern struct {
	raw    string
	local  string
	domain pattern
}

func compileEmailPattern(raw string) (emailPattern, error) {
	local, domain, ok := strings.Cut(raw, "@")
	if !ok || local == "" || strings.Contains(domain, "@") {
		return emailPattern{}, errors.New(`email pattern must look like "*@example.internal" or "ops@example.internal"`)
	}
	if local != "*" && strings.Contains(local, "*") {
		return emailPattern{}, errors.New(`the local part must be "*" or contain no "*"`)
	}
	d, err := compileDNSPattern(domain)
	if err != nil {
		return emailPattern{}, fmt.Errorf("domain: %v", err)
	}
	return emailPattern{raw: raw, local: local, domain: d}, nil
}

func (p emailPattern) match(addr string) bool {
	local, domain, ok := strings.Cut(addr, "@")
	if !ok {
		return false
	}
	return (p.local == "*" || p.local == local) && p.domain.match(domain)
}

// compileIPPattern parses a CIDR ("10.0.0.0/8") or a single address.
func compileIPPattern(raw string) (netip.Prefix, error) {
	if strings.Contains(raw, "/") {
		p, err := netip.ParsePrefix(raw)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR: %v", err)
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, errors.New("use the IPv4 form, not an IPv4-mapped IPv6 prefix")
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(raw)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, errors.New("not a CIDR or an IP address")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
