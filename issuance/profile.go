package issuance

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/certctl/certctl/keys"
)

// Limits enforced by NewProfile.
const (
	// maxLeafValidity is the CA/Browser Forum Baseline Requirements §6.3.2
	// limit for publicly trusted TLS certificates (398 days since
	// 2020-09-01). A private PKI has no reason to exceed it for leaves: keys
	// are renewed automatically, and a shorter life bounds the damage of a
	// stolen key that revocation checking might not catch.
	maxLeafValidity = 398 * day
	// maxCAValidity bounds intermediates: 20 years (with leap days).
	maxCAValidity = 7305 * day
	// maxBackdate: backdating only absorbs clock skew between the CA and
	// relying parties; the CA/B BRs §7.1.2.7 allow 48 hours, we allow 1 hour.
	maxBackdate = time.Hour
)

// NamesConfig lists the names a profile allows in certificates. Patterns:
//
//   - DNS: "db.internal" (exact), "*.svc.internal" (exactly one label in place
//     of "*"), "**.internal" (one or more labels; "**" only leftmost). DNS
//     names are compared in lower case, without a trailing dot.
//   - URI: segments separated by "/"; "*" matches one segment, "**" one or
//     more ("spiffe://example.internal/**"). Scheme and host are compared in
//     lower case, the rest as written.
//   - Email: "*@example.internal" or "ops@**.internal": the local part is "*"
//     or literal, the domain a DNS pattern.
//   - IP: CIDRs ("10.0.0.0/8") or single addresses.
//   - CommonName: like DNS patterns, but literal segments may be any text
//     and are case-sensitive (CNs are often PostgreSQL role names); "*"
//     matches a single dot-free name such as a database role ("app"), "**"
//     any common name.
//
// A name kind whose list is empty is not allowed at all. Each pattern may
// contain at most one "**". "*" and "**" must be whole segments.
type NamesConfig struct {
	// CommonName lists patterns the subject CN may match. A CN equal to one
	// of the requested subject alternative names is always accepted. Empty:
	// the CN must equal one of the SANs (or be empty). On CA profiles, empty
	// means any CN.
	CommonName []string `yaml:"common_name,omitempty" json:"common_name,omitempty"`
	DNS        []string `yaml:"dns,omitempty" json:"dns,omitempty"`
	IP         []string `yaml:"ip,omitempty" json:"ip,omitempty"`
	URI        []string `yaml:"uri,omitempty" json:"uri,omitempty"`
	Email      []string `yaml:"email,omitempty" json:"email,omitempty"`
	// AllowWildcardNames allows DNS SANs like "*.foo.internal" (they must
	// still match a DNS pattern). Off by default: a wildcard certificate
	// covers hosts nobody asked for.
	AllowWildcardNames bool `yaml:"allow_wildcard_names,omitempty" json:"allow_wildcard_names,omitempty"`
}

// NameConstraintsConfig is the name constraints extension (RFC 5280
// §4.2.1.10) put into certificates issued with a CA profile. DNS, email and
// URI entries follow Go's crypto/x509 semantics: "example.internal" covers
// that name and its subdomains, ".example.internal" only subdomains; email
// entries may also be a full address. IP entries are CIDRs.
type NameConstraintsConfig struct {
	// Critical must be true: RFC 5280 §4.2.1.10 says conforming CAs MUST
	// mark the extension critical (zlint e_ext_name_constraints_not_critical),
	// so that relying parties that do not understand it reject the chain.
	Critical       bool     `yaml:"critical" json:"critical"`
	PermittedDNS   []string `yaml:"permitted_dns,omitempty" json:"permitted_dns,omitempty"`
	ExcludedDNS    []string `yaml:"excluded_dns,omitempty" json:"excluded_dns,omitempty"`
	PermittedIP    []string `yaml:"permitted_ip,omitempty" json:"permitted_ip,omitempty"`
	ExcludedIP     []string `yaml:"excluded_ip,omitempty" json:"excluded_ip,omitempty"`
	PermittedEmail []string `yaml:"permitted_email,omitempty" json:"permitted_email,omitempty"`
	ExcludedEmail  []string `yaml:"excluded_email,omitempty" json:"excluded_email,omitempty"`
	PermittedURI   []string `yaml:"permitted_uri,omitempty" json:"permitted_uri,omitempty"`
	ExcludedURI    []string `yaml:"excluded_uri,omitempty" json:"excluded_uri,omitempty"`
}

// ProfileConfig is a certificate profile as written in the config file.
// NewProfile validates it into a Profile.
type ProfileConfig struct {
	// Validity is how long certificates are valid from the time of issuance
	// (NotAfter = now + Validity). At most 398 days for leaves, 20 years
	// for CAs.
	Validity Duration `yaml:"validity" json:"validity"`
	// Backdate moves NotBefore into the past (never NotAfter) to tolerate
	// clock skew. 0 to 1h, less than Validity.
	Backdate Duration `yaml:"backdate,omitempty" json:"backdate,omitempty"`
	// KeyUsage names: digital_signature, content_commitment,
	// key_encipherment, data_encipherment, key_agreement, cert_sign,
	// crl_sign. Empty: digital_signature for leaves; cert_sign, crl_sign and
	// digital_signature for CAs. Usages a subject key cannot have are
	// dropped at issuance: key_encipherment and data_encipherment for ECDSA
	// and Ed25519 keys (RFC 8813 §3, RFC 8410 §5), key_agreement for RSA and
	// Ed25519 keys (RFC 4055 §1.2, RFC 8410 §5).
	KeyUsage []string `yaml:"key_usage,omitempty" json:"key_usage,omitempty"`
	// ExtKeyUsage names: server_auth, client_auth, code_signing,
	// email_protection, ocsp_signing, time_stamping. Required for leaves.
	ExtKeyUsage []string `yaml:"ext_key_usage,omitempty" json:"ext_key_usage,omitempty"`
	// CA makes certificates intermediate CAs.
	CA bool `yaml:"ca,omitempty" json:"ca,omitempty"`
	// MaxPathLen (CA profiles only) is the basic constraints pathLenConstraint;
	// nil means 0 (the intermediate may only issue leaves).
	MaxPathLen *int        `yaml:"max_path_len,omitempty" json:"max_path_len,omitempty"`
	Names      NamesConfig `yaml:"names,omitempty" json:"names,omitempty"`
	// NameConstraints (CA profiles only) restricts the names the issued CA's
	// certificates can certify.
	NameConstraints *NameConstraintsConfig `yaml:"name_constraints,omitempty" json:"name_constraints,omitempty"`
	// OCSPNoCheck adds id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1) for
	// delegated OCSP responder certificates, which relying parties then do
	// not check for revocation: keep their validity short. Requires the
	// ocsp_signing extended key usage.
	OCSPNoCheck bool `yaml:"ocsp_no_check,omitempty" json:"ocsp_no_check,omitempty"`
	// KeyTypes lists the subject key types allowed (keys.KeyType names).
	// Empty: all supported types.
	KeyTypes []string `yaml:"key_types,omitempty" json:"key_types,omitempty"`
	// CT submits every certificate of the profile to Certificate
	// Transparency logs as a precertificate and embeds the SCTs (RFC 6962).
	// Nil: no CT.
	CT *CTConfig `yaml:"ct,omitempty" json:"ct,omitempty"`
}

// DefaultProfiles returns the built-in profiles; each call returns a fresh
// map the caller may modify. The defaults are deliberately narrow:
//
//   - server, client, peer: 30 days. Issued certificates are renewed
//     automatically at two thirds of their life (transport), which leaves 10
//     days to notice and fix a broken renewal, while a stolen key is useful
//     for at most a month even if no relying party checks revocation.
//   - ocsp: 7 days. A responder certificate with id-pkix-ocsp-nocheck cannot
//     be revoked in practice, so RFC 6960 §4.2.2.2.1 asks for a short life.
//   - intermediate: 5 years, max_path_len 0 (it issues leaves only), no SANs.
//   - backdate 1 minute everywhere: enough for ordinary clock skew.
//   - DNS names: "localhost" and "**.internal" only. ".internal" is the
//     top-level domain ICANN reserved for private use (2024); it cannot
//     collide with a public name. Add your own domains in the config.
//     Wildcard names are refused.
//   - IP addresses: loopback only (127.0.0.0/8, ::1). Add your networks.
//   - URIs and email addresses: none. Add e.g.
//     "spiffe://example.internal/**" to carry SPIFFE IDs.
//   - client: common_name ["*"], so the CN can be a PostgreSQL role or
//     service name ("app", "app_user"): PostgreSQL's cert authentication
//     maps the client certificate's CN to the role. "*" is a single
//     dot-free name, so a client certificate cannot claim a dotted host name
//     in its CN without also holding it as a SAN. Which roles a caller may request
//     is an authorization decision for the caller of Prepare, not the profile.
//   - server and peer: the CN, if any, must be one of the SANs.
//   - key types: all supported.
func DefaultProfiles() map[string]ProfileConfig {
	names := func() NamesConfig {
		return NamesConfig{
			DNS: []string{"localhost", "**.internal"},
			IP:  []string{"127.0.0.0/8", "::1/128"},
		}
	}
	const leafValidity = Duration(30 * day)
	const backdate = Duration(time.Minute)
	client := names()
	client.CommonName = []string{"*"}
	zero := 0
	return map[string]ProfileConfig{
		"server": {
			Validity:    leafValidity,
			Backdate:    backdate,
			KeyUsage:    []string{"digital_signature"},
			ExtKeyUsage: []string{"server_auth"},
			Names:       names(),
		},
		"client": {
			Validity:    leafValidity,
			Backdate:    backdate,
			KeyUsage:    []string{"digital_signature"},
			ExtKeyUsage: []string{"client_auth"},
			Names:       client,
		},
		"peer": {
			Validity:    leafValidity,
			Backdate:    backdate,
			KeyUsage:    []string{"digital_signature"},
			ExtKeyUsage: []string{"server_auth", "client_auth"},
			Names:       names(),
		},
		"ocsp": {
			Validity:    Duration(7 * day),
			Backdate:    backdate,
			KeyUsage:    []string{"digital_signature"},
			ExtKeyUsage: []string{"ocsp_signing"},
			OCSPNoCheck: true,
			// The CN names the responder; it is not a host name.
			Names: NamesConfig{CommonName: []string{"**"}},
		},
		"intermediate": {
			Validity:   Duration(5 * 365 * day),
			Backdate:   backdate,
			KeyUsage:   []string{"cert_sign", "crl_sign", "digital_signature"},
			CA:         true,
			MaxPathLen: &zero,
		},
	}
}

var keyUsageNames = map[string]x509.KeyUsage{
	"digital_signature":  x509.KeyUsageDigitalSignature,
	"content_commitment": x509.KeyUsageContentCommitment,
	"key_encipherment":   x509.KeyUsageKeyEncipherment,
	"data_encipherment":  x509.KeyUsageDataEncipherment,
	"key_agreement":      x509.KeyUsageKeyAgreement,
	"cert_sign":          x509.KeyUsageCertSign,
	"crl_sign":           x509.KeyUsageCRLSign,
}

var extKeyUsageNames = map[string]x509.ExtKeyUsage{
	"server_auth":      x509.ExtKeyUsageServerAuth,
	"client_auth":      x509.ExtKeyUsageClientAuth,
	"code_signing":     x509.ExtKeyUsageCodeSigning,
	"email_protection": x509.ExtKeyUsageEmailProtection,
	"ocsp_signing":     x509.ExtKeyUsageOCSPSigning,
	"time_stamping":    x509.ExtKeyUsageTimeStamping,
}

func sortedKeys[V any](m map[string]V) []string {
	s := make([]string, 0, len(m))
	for k := range m {
		s = append(s, k)
	}
	slices.Sort(s)
	return s
}

// Profile is a validated certificate profile. It has only unexported fields
// and never changes after NewProfile: it is safe for concurrent use.
type Profile struct {
	name        string
	cfg         ProfileConfig // deep copy, for Config and error messages
	validity    time.Duration
	backdate    time.Duration
	keyUsage    x509.KeyUsage
	extKeyUsage []x509.ExtKeyUsage
	isCA        bool
	maxPathLen  int
	ocspNoCheck bool
	keyTypes    []keys.KeyType

	cn, dns, uri  []pattern
	ip            []netip.Prefix
	email         []emailPattern
	allowWildcard bool

	nc *nameConstraints
	ct *CTPolicy // nil: no Certificate Transparency
}

type nameConstraints struct {
	critical                      bool
	permittedDNS, excludedDNS     []string
	permittedIP, excludedIP       []*net.IPNet
	permittedEmail, excludedEmail []string
	permittedURI, excludedURI     []string
}

// Name returns the profile name given to NewProfile.
func (p *Profile) Name() string { return p.name }

// IsCA reports whether the profile issues CA certificates.
func (p *Profile) IsCA() bool { return p.isCA }

// Validity returns the configured validity: NotAfter = issuance time + Validity.
func (p *Profile) Validity() time.Duration { return p.validity }

// Backdate returns how far NotBefore is set before the issuance time.
func (p *Profile) Backdate() time.Duration { return p.backdate }

// Config returns a copy of the configuration the profile was built from,
// with defaults filled in.
func (p *Profile) Config() ProfileConfig { return cloneConfig(p.cfg) }

func cloneConfig(c ProfileConfig) ProfileConfig {
	c.KeyUsage = slices.Clone(c.KeyUsage)
	c.ExtKeyUsage = slices.Clone(c.ExtKeyUsage)
	c.KeyTypes = slices.Clone(c.KeyTypes)
	if c.MaxPathLen != nil {
		v := *c.MaxPathLen
		c.MaxPathLen = &v
	}
	c.Names.CommonName = slices.Clone(c.Names.CommonName)
	c.Names.DNS = slices.Clone(c.Names.DNS)
	c.Names.IP = slices.Clone(c.Names.IP)
	c.Names.URI = slices.Clone(c.Names.URI)
	c.Names.Email = slices.Clone(c.Names.Email)
	if c.NameConstraints != nil {
		nc := *c.NameConstraints
		nc.PermittedDNS = slices.Clone(nc.PermittedDNS)
		nc.ExcludedDNS = slices.Clone(nc.ExcludedDNS)
		nc.PermittedIP = slices.Clone(nc.PermittedIP)
		nc.ExcludedIP = slices.Clone(nc.ExcludedIP)
		nc.PermittedEmail = slices.Clone(nc.PermittedEmail)
		nc.ExcludedEmail = slices.Clone(nc.ExcludedEmail)
		nc.PermittedURI = slices.Clone(nc.PermittedURI)
		nc.ExcludedURI = slices.Clone(nc.ExcludedURI)
		c.NameConstraints = &nc
	}
	c.CT = cloneCTConfig(c.CT)
	return c
}

// NewProfile validates c and returns the profile. Errors are *ConfigError
// naming the offending field.
func NewProfile(name string, c ProfileConfig) (*Profile, error) {
	c = cloneConfig(c) // the caller may reuse c
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Profile: name, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if strings.TrimSpace(name) == "" {
		return nil, bad("name", "must not be empty")
	}
	p := &Profile{
		name:          name,
		isCA:          c.CA,
		validity:      time.Duration(c.Validity),
		backdate:      time.Duration(c.Backdate),
		ocspNoCheck:   c.OCSPNoCheck,
		allowWildcard: c.Names.AllowWildcardNames,
	}

	// Validity and backdate.
	limit, kind := maxLeafValidity, "leaf"
	if p.isCA {
		limit, kind = maxCAValidity, "CA"
	}
	switch {
	case p.validity <= 0:
		return nil, bad("validity", "must be > 0")
	case p.validity > limit:
		return nil, bad("validity", "%s exceeds the %s limit of %s", c.Validity, kind, Duration(limit))
	case p.validity%time.Second != 0:
		return nil, bad("validity", "must be a whole number of seconds (certificate times have 1s resolution)")
	}
	switch {
	case p.backdate < 0:
		return nil, bad("backdate", "must not be negative")
	case p.backdate > maxBackdate:
		return nil, bad("backdate", "%s exceeds the limit of %s", c.Backdate, Duration(maxBackdate))
	case p.backdate >= p.validity:
		return nil, bad("backdate", "must be shorter than validity (%s)", c.Validity)
	case p.backdate%time.Second != 0:
		return nil, bad("backdate", "must be a whole number of seconds")
	}

	// Key usage.
	if len(c.KeyUsage) == 0 {
		if p.isCA {
			c.KeyUsage = []string{"cert_sign", "crl_sign", "digital_signature"}
		} else {
			c.KeyUsage = []string{"digital_signature"}
		}
	}
	for i, u := range c.KeyUsage {
		ku, ok := keyUsageNames[u]
		if !ok {
			return nil, bad(fmt.Sprintf("key_usage[%d]", i), "unknown key usage %q (known: %s)", u, strings.Join(sortedKeys(keyUsageNames), ", "))
		}
		if !p.isCA && (ku == x509.KeyUsageCertSign || ku == x509.KeyUsageCRLSign) {
			return nil, bad(fmt.Sprintf("key_usage[%d]", i), "%s is only allowed on CA profiles (ca: true)", u)
		}
		p.keyUsage |= ku
	}
	if p.isCA && p.keyUsage&x509.KeyUsageCertSign == 0 {
		// RFC 5280 §4.2.1.3: keyCertSign must be set for CA certificates.
		return nil, bad("key_usage", "CA profiles must include cert_sign")
	}

	// Extended key usage.
	for i, u := range c.ExtKeyUsage {
		eku, ok := extKeyUsageNames[u]
		if !ok {
			return nil, bad(fmt.Sprintf("ext_key_usage[%d]", i), "unknown extended key usage %q (known: %s)", u, strings.Join(sortedKeys(extKeyUsageNames), ", "))
		}
		if slices.Contains(p.extKeyUsage, eku) {
			return nil, bad(fmt.Sprintf("ext_key_usage[%d]", i), "%s is listed twice", u)
		}
		if p.isCA && eku == x509.ExtKeyUsageOCSPSigning {
			// A CA with id-kp-OCSPSigning is a delegated responder for its
			// parent: it could sign OCSP responses about its siblings
			// (Mozilla bug 1649939, 2020).
			return nil, bad(fmt.Sprintf("ext_key_usage[%d]", i), "ocsp_signing is not allowed on CA profiles")
		}
		p.extKeyUsage = append(p.extKeyUsage, eku)
	}
	if !p.isCA && len(p.extKeyUsage) == 0 {
		return nil, bad("ext_key_usage", "leaf profiles must list at least one extended key usage (without one, a certificate is valid for any purpose)")
	}
	if p.ocspNoCheck {
		if p.isCA {
			return nil, bad("ocsp_no_check", "is only for OCSP responder (leaf) profiles")
		}
		if !slices.Contains(p.extKeyUsage, x509.ExtKeyUsageOCSPSigning) {
			return nil, bad("ocsp_no_check", "requires ext_key_usage ocsp_signing (RFC 6960 §4.2.2.2.1)")
		}
	}

	// Basic constraints.
	if c.MaxPathLen != nil {
		if !p.isCA {
			return nil, bad("max_path_len", "is only allowed on CA profiles (ca: true)")
		}
		if *c.MaxPathLen < 0 {
			return nil, bad("max_path_len", "must be >= 0")
		}
		p.maxPathLen = *c.MaxPathLen
	} else if p.isCA {
		zero := 0
		c.MaxPathLen = &zero
	}

	// Allowed names.
	if err := p.compileNames(c.Names, bad); err != nil {
		return nil, err
	}

	// Name constraints.
	if c.NameConstraints != nil {
		if !p.isCA {
			return nil, bad("name_constraints", "is only allowed on CA profiles (ca: true)")
		}
		nc, err := compileNameConstraints(c.NameConstraints, bad)
		if err != nil {
			return nil, err
		}
		p.nc = nc
	}

	// Key types.
	if len(c.KeyTypes) == 0 {
		c.KeyTypes = keys.KeyTypes()
	}
	for i, s := range c.KeyTypes {
		if strings.TrimSpace(s) == "" {
			return nil, bad(fmt.Sprintf("key_types[%d]", i), "empty key type (accepted: %s)", strings.Join(keys.KeyTypes(), ", "))
		}
		t, err := keys.ParseKeyType(s)
		if err != nil {
			return nil, bad(fmt.Sprintf("key_types[%d]", i), "unknown key type %q (accepted: %s)", s, strings.Join(keys.KeyTypes(), ", "))
		}
		if !slices.Contains(p.keyTypes, t) {
			p.keyTypes = append(p.keyTypes, t)
		}
	}

	// Certificate Transparency.
	if c.CT != nil {
		ct, err := compileCT(c.CT, bad)
		if err != nil {
			return nil, err
		}
		p.ct = ct
	}

	p.cfg = c
	return p, nil
}

func (p *Profile) compileNames(n NamesConfig, bad func(field, format string, args ...any) error) error {
	if p.isCA {
		for field, list := range map[string][]string{"names.dns": n.DNS, "names.ip": n.IP, "names.uri": n.URI, "names.email": n.Email} {
			if len(list) > 0 {
				return bad(field, "CA profiles carry no subject alternative names; use name_constraints to restrict what the CA may certify")
			}
		}
		if n.AllowWildcardNames {
			return bad("names.allow_wildcard_names", "is meaningless on CA profiles")
		}
	}
	for i, s := range n.CommonName {
		pt, err := compileCNPattern(s)
		if err != nil {
			return bad(fmt.Sprintf("names.common_name[%d]", i), "%q: %v", s, err)
		}
		p.cn = append(p.cn, pt)
	}
	for i, s := range n.DNS {
		pt, err := compileDNSPattern(s)
		if err != nil {
			return bad(fmt.Sprintf("names.dns[%d]", i), "%q: %v", s, err)
		}
		p.dns = append(p.dns, pt)
	}
	for i, s := range n.IP {
		pt, err := compileIPPattern(s)
		if err != nil {
			return bad(fmt.Sprintf("names.ip[%d]", i), "%q: %v", s, err)
		}
		p.ip = append(p.ip, pt)
	}
	for i, s := range n.URI {
		pt, err := compileURIPattern(s)
		if err != nil {
			return bad(fmt.Sprintf("names.uri[%d]", i), "%q: %v", s, err)
		}
		p.uri = append(p.uri, pt)
	}
	for i, s := range n.Email {
		pt, err := compileEmailPattern(s)
		if err != nil {
			return bad(fmt.Sprintf("names.email[%d]", i), "%q: %v", s, err)
		}
		p.email = append(p.email, pt)
	}
	return nil
}

func compileNameConstraints(c *NameConstraintsConfig, bad func(field, format string, args ...any) error) (*nameConstraints, error) {
	if !c.Critical {
		return nil, bad("name_constraints.critical", "must be true: RFC 5280 §4.2.1.10 requires CAs to mark name constraints critical")
	}
	nc := &nameConstraints{critical: true}
	domains := func(field string, list []string) ([]string, error) {
		var out []string
		for i, s := range list {
			d := strings.ToLower(strings.TrimPrefix(s, "."))
			if _, err := normalizeDNS(d); err != nil || strings.HasPrefix(d, "*") || strings.HasSuffix(d, ".") {
				return nil, bad(fmt.Sprintf("%s[%d]", field, i), "%q is not a domain (\"example.internal\" or \".example.internal\")", s)
			}
			out = append(out, strings.ToLower(s))
		}
		return out, nil
	}
	ips := func(field string, list []string) ([]*net.IPNet, error) {
		var out []*net.IPNet
		for i, s := range list {
			pfx, err := netip.ParsePrefix(s)
			if err != nil || pfx.Addr().Is4In6() {
				return nil, bad(fmt.Sprintf("%s[%d]", field, i), "%q is not a CIDR", s)
			}
			pfx = pfx.Masked()
			out = append(out, &net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen())})
		}
		return out, nil
	}
	emails := func(field string, list []string) ([]string, error) {
		var out []string
		for i, s := range list {
			var err error
			if strings.Contains(s, "@") {
				_, err = normalizeEmail(s)
			} else {
				_, err = normalizeDNS(strings.TrimPrefix(s, "."))
			}
			if err != nil || strings.HasPrefix(strings.TrimPrefix(s, "."), "*") {
				return nil, bad(fmt.Sprintf("%s[%d]", field, i), "%q is not a mailbox or domain", s)
			}
			out = append(out, s)
		}
		return out, nil
	}
	var err error
	if nc.permittedDNS, err = domains("name_constraints.permitted_dns", c.PermittedDNS); err != nil {
		return nil, err
	}
	if nc.excludedDNS, err = domains("name_constraints.excluded_dns", c.ExcludedDNS); err != nil {
		return nil, err
	}
	if nc.permittedURI, err = domains("name_constraints.permitted_uri", c.PermittedURI); err != nil {
		return nil, err
	}
	if nc.excludedURI, err = domains("name_constraints.excluded_uri", c.ExcludedURI); err != nil {
		return nil, err
	}
	if nc.permittedIP, err = ips("name_constraints.permitted_ip", c.PermittedIP); err != nil {
		return nil, err
	}
	if nc.excludedIP, err = ips("name_constraints.excluded_ip", c.ExcludedIP); err != nil {
		return nil, err
	}
	if nc.permittedEmail, err = emails("name_constraints.permitted_email", c.PermittedEmail); err != nil {
		return nil, err
	}
	if nc.excludedEmail, err = emails("name_constraints.excluded_email", c.ExcludedEmail); err != nil {
		return nil, err
	}
	if len(nc.permittedDNS)+len(nc.excludedDNS)+len(nc.permittedIP)+len(nc.excludedIP)+
		len(nc.permittedEmail)+len(nc.excludedEmail)+len(nc.permittedURI)+len(nc.excludedURI) == 0 {
		// RFC 5280 §4.2.1.10: "Conforming CAs MUST NOT issue certificates
		// where name constraints is an empty sequence."
		return nil, bad("name_constraints", "lists no constraint")
	}
	return nc, nil
}

// allowsKeyType reports whether t is one of the profile's key types.
func (p *Profile) allowsKeyType(t keys.KeyType) bool { return slices.Contains(p.keyTypes, t) }

// keyUsageFor drops usages a key of type t cannot carry (see
// ProfileConfig.KeyUsage).
func (p *Profile) keyUsageFor(t keys.KeyType) x509.KeyUsage {
	ku := p.keyUsage
	switch t {
	case keys.RSA2048, keys.RSA3072, keys.RSA4096:
		// RFC 4055 §1.2 / RFC 3279 §2.3.1: an rsaEncryption key is for
		// signatures and key transport, not key agreement.
		ku &^= x509.KeyUsageKeyAgreement
	case keys.ECDSAP256, keys.ECDSAP384:
		// RFC 8813 §3: keyEncipherment and dataEncipherment MUST NOT be
		// asserted for id-ecPublicKey (zlint e_ecdsa_allowed_ku).
		ku &^= x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment
	case keys.Ed25519:
		// RFC 8410 §5: only digitalSignature, nonRepudiation, keyCertSign
		// and cRLSign for Ed25519.
		ku &^= x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageKeyAgreement
	}
	return ku
}
