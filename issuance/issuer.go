package issuance

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/certctl/certctl/keys"
)

// IssuerConfig holds the URLs an Issuer puts into the certificates it signs
// (leaves and intermediates alike). All are optional; each must be an
// absolute http, https or ldap URL. Plain http is the usual choice for OCSP
// and CRLs: fetching them over https would need the very revocation
// information being fetched.
type IssuerConfig struct {
	// OCSPServers: Authority Information Access id-ad-ocsp (RFC 5280 §4.2.2.1).
	OCSPServers []string `yaml:"ocsp,omitempty" json:"ocsp,omitempty"`
	// IssuingCertificateURL: Authority Information Access id-ad-caIssuers,
	// where the issuer certificate can be downloaded.
	IssuingCertificateURL []string `yaml:"issuing_certificate,omitempty" json:"issuing_certificate,omitempty"`
	// CRLDistributionPoints (RFC 5280 §4.2.1.13). A URL may contain the
	// placeholder "{shard}" (see ShardPlaceholder), replaced in each
	// certificate by the number of its CRL shard, e.g.
	// "http://pki.internal/crl/{shard}". With CRLShards > 1 every URL must
	// contain it.
	CRLDistributionPoints []string `yaml:"crl,omitempty" json:"crl,omitempty"`
	// CRLShards is the number of CRL shards the issuer's certificates are
	// spread over (see ShardOf). 0 or 1 means one full CRL.
	CRLShards int `yaml:"crl_shards,omitempty" json:"crl_shards,omitempty"`
}

// ShardPlaceholder is replaced by a certificate's CRL shard number in
// IssuerConfig.CRLDistributionPoints.
const ShardPlaceholder = "{shard}"

// MaxCRLShards bounds IssuerConfig.CRLShards: every shard is a CRL that the
// updater regenerates on every period.
const MaxCRLShards = 1024

// ShardOf returns the CRL shard of a certificate: serial mod shards (0 when
// shards ≤ 1 or serial is nil).
//
// Why a modulus: certctl's serials are 159 random bits (NewSerial), so they
// spread evenly over any small number of shards (the bias is below
// shards/2^159), and the shard follows from the serial alone: no counter, no
// coordination between processes, nothing to look up. The shard is still
// recorded with the certificate (certdb.Certificate.Shard), because that is
// what its CDP says: changing the shard count later moves only new
// certificates.
func ShardOf(serial *big.Int, shards int) int {
	if shards <= 1 || serial == nil {
		return 0
	}
	return int(new(big.Int).Mod(serial, big.NewInt(int64(shards))).Int64())
}

// Issuer signs certificates with one CA certificate and its key. It is
// immutable after NewIssuer and safe for concurrent use, provided its
// crypto.Signer is (the standard library's keys are).
type Issuer struct {
	cert   *x509.Certificate
	signer crypto.Signer
	cfg    IssuerConfig
	keyID  []byte
	sigAlg x509.SignatureAlgorithm

	// Pre-issuance linting: lintParent is a copy of cert whose public key is
	// lintKey's, so a certificate signed by lintKey under lintParent has
	// exactly the TBSCertificate the real signature will cover.
	lintKey    crypto.Signer
	lintParent *x509.Certificate
	lints      lint.Registry
}

// NewIssuer checks that signer holds the private key of cert (else an error
// wrapping ErrKeyMismatch), that cert is a CA certificate allowed to sign
// certificates and has a subject key identifier, and that the URLs in cfg are
// valid. It generates a throwaway key of the same type as the issuer's for
// pre-issuance linting (an RSA-4096 issuer takes a second or two).
func NewIssuer(cert *x509.Certificate, signer crypto.Signer, cfg IssuerConfig) (*Issuer, error) {
	if cert == nil || signer == nil {
		return nil, errors.New("issuance: new issuer: nil certificate or signer")
	}
	name := cert.Subject.String()
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%w: issuer %q", ErrKeyMismatch, name)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("issuance: new issuer %q: not a CA certificate (basic constraints cA is not set)", name)
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("issuance: new issuer %q: key usage lacks keyCertSign", name)
	}
	if len(cert.SubjectKeyId) == 0 {
		// RFC 5280 §4.2.1.2: CA certificates MUST carry it, and we copy it
		// into every AuthorityKeyIdentifier.
		return nil, fmt.Errorf("issuance: new issuer %q: certificate has no subject key identifier", name)
	}
	kt, err := keys.TypeOf(cert.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("issuance: new issuer %q: %w", name, err)
	}
	sigAlg, err := signatureAlgorithm(cert.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("issuance: new issuer %q: %w", name, err)
	}
	checkURLs := func(field string, list []string) error {
		for j, s := range list {
			u, err := url.Parse(s)
			if err != nil || !u.IsAbs() || u.Host == "" || u.User != nil ||
				(u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "ldap") {
				return fmt.Errorf("issuance: new issuer %q: %s[%d]: %q is not an absolute http, https or ldap URL", name, field, j, s)
			}
		}
		return nil
	}
	for _, f := range []struct {
		field string
		list  []string
	}{{"ocsp", cfg.OCSPServers}, {"issuing_certificate", cfg.IssuingCertificateURL}} {
		for j, s := range f.list {
			if strings.Contains(s, ShardPlaceholder) {
				return nil, fmt.Errorf("issuance: new issuer %q: %s[%d]: %q: only crl URLs may contain %s", name, f.field, j, s, ShardPlaceholder)
			}
		}
		if err := checkURLs(f.field, f.list); err != nil {
			return nil, err
		}
	}
	shards := cfg.CRLShards
	switch {
	case shards < 0 || shards > MaxCRLShards:
		return nil, fmt.Errorf("issuance: new issuer %q: crl_shards %d must be between 1 and %d", name, shards, MaxCRLShards)
	case shards == 0:
		shards = 1
	}
	if shards > 1 {
		if len(cfg.CRLDistributionPoints) == 0 {
			return nil, fmt.Errorf("issuance: new issuer %q: crl_shards is %d but no crl URL is configured: each certificate's CRL distribution point must name its shard (e.g. \"http://pki.internal/crl/%s\")", name, shards, ShardPlaceholder)
		}
		for j, s := range cfg.CRLDistributionPoints {
			if !strings.Contains(s, ShardPlaceholder) {
				return nil, fmt.Errorf("issuance: new issuer %q: crl[%d]: %q has no %s placeholder, but crl_shards is %d: every certificate would point at the same CRL", name, j, s, ShardPlaceholder, shards)
			}
		}
	}
	if err := checkURLs("crl", substituteShard(cfg.CRLDistributionPoints, 0)); err != nil {
		return nil, err
	}
	lintKey, err := keys.Generate(kt)
	if err != nil {
		return nil, fmt.Errorf("issuance: new issuer %q: lint key: %w", name, err)
	}
	lintParent := *cert // shallow copy: only PublicKey differs; nothing is modified
	lintParent.PublicKey = lintKey.Public()
	lints, err := privateRegistry()
	if err != nil {
		return nil, fmt.Errorf("issuance: new issuer %q: %w", name, err)
	}
	return &Issuer{
		cert:   cert,
		signer: signer,
		cfg: IssuerConfig{
			OCSPServers:           slices.Clone(cfg.OCSPServers),
			IssuingCertificateURL: slices.Clone(cfg.IssuingCertificateURL),
			CRLDistributionPoints: slices.Clone(cfg.CRLDistributionPoints),
			CRLShards:             shards,
		},
		keyID:      slices.Clone(cert.SubjectKeyId),
		sigAlg:     sigAlg,
		lintKey:    lintKey,
		lintParent: &lintParent,
		lints:      lints,
	}, nil
}

// Cert returns the issuer certificate. Callers must not modify it.
func (i *Issuer) Cert() *x509.Certificate { return i.cert }

// KeyID returns (a copy of) the issuer's subject key identifier, which is the
// authority key identifier of everything it signs.
func (i *Issuer) KeyID() []byte { return slices.Clone(i.keyID) }

// CRLShards returns the number of CRL shards (at least 1).
func (i *Issuer) CRLShards() int { return i.cfg.CRLShards }

// CRLURLs returns the CRL distribution point URLs of shard: the configured
// URLs with ShardPlaceholder replaced by the shard number. The certificates
// of that shard carry them in their CDP, and the shard's CRL names them in
// its Issuing Distribution Point. Nil when no CRL URL is configured.
func (i *Issuer) CRLURLs(shard int) []string {
	return substituteShard(i.cfg.CRLDistributionPoints, shard)
}

func substituteShard(urls []string, shard int) []string {
	if len(urls) == 0 {
		return nil
	}
	out := make([]string, len(urls))
	for j, u := range urls {
		out[j] = strings.ReplaceAll(u, ShardPlaceholder, strconv.Itoa(shard))
	}
	return out
}

// Token is the result of a successful Prepare: a certificate that was built
// and linted but not yet signed. Pass it to Issue of the same Issuer, once.
// Its accessors are safe for concurrent use.
type Token struct {
	issuer   *Issuer
	profile  string
	template *x509.Certificate
	shard    int
	pub      crypto.PublicKey
	lintTBS  []byte
	used     atomic.Bool

	// Certificate Transparency (ct.go): the template carries the poison
	// extension; state sequences IssuePrecert and IssueFinal.
	ct     bool
	state  atomic.Int32
	preTBS *x509.Certificate
}

// Serial returns (a copy of) the certificate's serial number.
func (t *Token) Serial() *big.Int { return new(big.Int).Set(t.template.SerialNumber) }

// NotBefore returns the certificate's notBefore.
func (t *Token) NotBefore() time.Time { return t.template.NotBefore }

// NotAfter returns the certificate's notAfter.
func (t *Token) NotAfter() time.Time { return t.template.NotAfter }

// Subject returns the certificate subject in RFC 2253 form ("CN=app,O=Example").
func (t *Token) Subject() string { return t.template.Subject.String() }

// Shard returns the certificate's CRL shard (ShardOf its serial); its CRL
// distribution points name that shard.
func (t *Token) Shard() int { return t.shard }

// Profile returns the name of the profile the token was prepared with.
func (t *Token) Profile() string { return t.profile }

// SANs returns the subject alternative names as "dns:…", "ip:…", "uri:…" and
// "email:…" strings, in that order.
func (t *Token) SANs() []string {
	var s []string
	for _, n := range t.template.DNSNames {
		s = append(s, "dns:"+n)
	}
	for _, ip := range t.template.IPAddresses {
		s = append(s, "ip:"+ip.String())
	}
	for _, u := range t.template.URIs {
		s = append(s, "uri:"+u.String())
	}
	for _, e := range t.template.EmailAddresses {
		s = append(s, "email:"+e)
	}
	return s
}

// Prepare checks req against profile p, builds the certificate, signs it
// with a throwaway key and lints it. now is the issuance time; serial must be
// positive and at most 20 octets when encoded (see NewSerial).
//
// A request the profile does not allow returns a *PolicyError; a certificate
// zlint objects to (any warning, error or fatal result) returns a *LintError,
// which wraps ErrLint. On success it returns the DER of the lint certificate
// (same TBSCertificate as the final one, signed by the throwaway key: record
// it before calling Issue) and a Token for Issue.
func (i *Issuer) Prepare(p *Profile, req *Request, serial *big.Int, now time.Time) (lintDER []byte, t *Token, err error) {
	if p == nil || req == nil {
		return nil, nil, errors.New("issuance: prepare: nil profile or request")
	}
	if p.validity <= 0 || i.lints == nil {
		return nil, nil, errors.New("issuance: prepare: profile or issuer not made by NewProfile/NewIssuer")
	}
	// RFC 5280 §4.1.2.2: positive, at most 20 octets. DER adds a leading
	// zero octet when the top bit is set, hence 159 bits.
	if serial == nil || serial.Sign() <= 0 || serial.BitLen() > 159 {
		return nil, nil, fmt.Errorf("issuance: prepare: serial %v must be positive and at most 20 octets when encoded", serial)
	}
	tmpl, err := i.template(p, req, serial, now)
	if err != nil {
		return nil, nil, err
	}
	lintDER, err = x509.CreateCertificate(rand.Reader, tmpl, i.lintParent, req.PublicKey, i.lintKey)
	if err != nil {
		return nil, nil, fmt.Errorf("issuance: prepare serial %x: build certificate: %w", serial, err)
	}
	lintCert, err := x509.ParseCertificate(lintDER)
	if err != nil {
		return nil, nil, fmt.Errorf("issuance: prepare serial %x: parse lint certificate: %w", serial, err)
	}
	if err := lintCertificate(i.lints, lintDER); err != nil {
		return nil, nil, err
	}
	return lintDER, &Token{
		issuer:   i,
		profile:  p.name,
		template: tmpl,
		shard:    ShardOf(serial, i.cfg.CRLShards),
		pub:      req.PublicKey,
		lintTBS:  lintCert.RawTBSCertificate,
		ct:       p.ct != nil,
	}, nil
}

// Issue signs exactly the certificate Prepare linted, with the issuer's key,
// and returns its DER. A token can be redeemed once (ErrTokenUsed), and only
// by the Issuer that prepared it (ErrWrongIssuer). Issue refuses to return a
// certificate whose TBSCertificate differs from the linted one. It is safe
// for concurrent use with distinct tokens.
func (i *Issuer) Issue(t *Token) (der []byte, err error) {
	if t == nil || t.template == nil {
		return nil, errors.New("issuance: issue: token not made by Prepare")
	}
	if t.issuer != i {
		return nil, fmt.Errorf("%w (serial %x)", ErrWrongIssuer, t.template.SerialNumber)
	}
	if t.ct {
		return nil, fmt.Errorf("issuance: issue serial %x: the profile uses CT: call IssuePrecert, submit, then IssueFinal", t.template.SerialNumber)
	}
	if !t.used.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("%w (serial %x)", ErrTokenUsed, t.template.SerialNumber)
	}
	serial := t.template.SerialNumber
	der, err = x509.CreateCertificate(rand.Reader, t.template, i.cert, t.pub, i.signer)
	if err != nil {
		return nil, fmt.Errorf("issuance: issue serial %x: sign: %w", serial, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issuance: issue serial %x: parse signed certificate: %w", serial, err)
	}
	if !bytes.Equal(cert.RawTBSCertificate, t.lintTBS) {
		return nil, fmt.Errorf("issuance: issue serial %x: signed TBSCertificate differs from the linted one; certificate discarded", serial)
	}
	// No second signature check here: x509.CreateCertificate already
	// verified the signature against signer.Public(), which NewIssuer
	// checked equals the issuer certificate's key.
	return der, nil
}

// template applies every policy check and builds the certificate template.
func (i *Issuer) template(p *Profile, req *Request, serial *big.Int, now time.Time) (*x509.Certificate, error) {
	deny := func(field, format string, args ...any) error {
		return &PolicyError{Profile: p.name, Field: field, Reason: fmt.Sprintf(format, args...)}
	}

	// 1. The subject public key.
	kt, err := keys.TypeOf(req.PublicKey)
	if err != nil {
		return nil, deny("public_key", "%s", strings.TrimPrefix(err.Error(), keys.ErrUnsupportedKey.Error()+": "))
	}
	if !p.allowsKeyType(kt) {
		return nil, deny("public_key", "key type %s is not allowed: key_types allows %v", kt, p.cfg.KeyTypes)
	}
	if k, ok := req.PublicKey.(*rsa.PublicKey); ok && k.E != 65537 {
		// Other exponents are legal but unusual; small ones have a history
		// of implementation attacks. Boulder's goodkey makes the same choice.
		return nil, deny("public_key", "RSA public exponent must be 65537, not %d", k.E)
	}
	if pub, ok := req.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(i.cert.PublicKey) {
		return nil, deny("public_key", "is the issuer's own key")
	}
	ski, err := subjectKeyID(req.PublicKey)
	if err != nil {
		return nil, deny("public_key", "%v", err)
	}

	// 2. Names.
	names, err := p.checkNames(req, deny)
	if err != nil {
		return nil, err
	}
	subject, err := p.checkSubject(req.Subject, names, deny)
	if err != nil {
		return nil, err
	}

	// 3. Path length (RFC 5280 §4.2.1.9): an intermediate below an issuer
	// with pathLenConstraint n must have a constraint below n, else no
	// relying party accepts what it issues.
	if p.isCA && i.cert.MaxPathLen >= 0 && (i.cert.MaxPathLen > 0 || i.cert.MaxPathLenZero) {
		if i.cert.MaxPathLen == 0 {
			return nil, deny("max_path_len", "the issuer's path length constraint is 0: it cannot issue CA certificates")
		}
		if p.maxPathLen >= i.cert.MaxPathLen {
			return nil, deny("max_path_len", "%d must be less than the issuer's path length constraint %d", p.maxPathLen, i.cert.MaxPathLen)
		}
	}

	// 4. Validity. NotAfter counts from now, not from the backdated
	// NotBefore, so backdating never shortens the usable lifetime.
	now = now.UTC().Truncate(time.Second)
	if now.Before(i.cert.NotBefore) {
		return nil, fmt.Errorf("issuance: issuer %q is not valid before %s", i.cert.Subject, i.cert.NotBefore.UTC().Format(time.RFC3339))
	}
	notBefore := now.Add(-p.backdate)
	if notBefore.Before(i.cert.NotBefore) {
		notBefore = i.cert.NotBefore.UTC()
	}
	notAfter := now.Add(p.validity)
	if notAfter.After(i.cert.NotAfter) {
		return nil, deny("validity", "certificate would expire at %s, after the issuer certificate %q (expires %s); rotate the intermediate",
			notAfter.Format(time.RFC3339), i.cert.Subject, i.cert.NotAfter.UTC().Format(time.RFC3339))
	}

	// 5. Key usage that fits the key type.
	ku := p.keyUsageFor(kt)
	if ku == 0 {
		return nil, deny("public_key", "a %s key can carry none of the profile's key usages %v", kt, p.cfg.KeyUsage)
	}

	tmpl := &x509.Certificate{
		SignatureAlgorithm:    i.sigAlg,
		SerialNumber:          new(big.Int).Set(serial),
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              ku,
		ExtKeyUsage:           slices.Clone(p.extKeyUsage),
		BasicConstraintsValid: true,
		IsCA:                  p.isCA,
		DNSNames:              names.dns,
		IPAddresses:           names.ip,
		URIs:                  names.uri,
		EmailAddresses:        names.email,
		SubjectKeyId:          ski,
		AuthorityKeyId:        slices.Clone(i.keyID),
		OCSPServer:            slices.Clone(i.cfg.OCSPServers),
		IssuingCertificateURL: slices.Clone(i.cfg.IssuingCertificateURL),
		CRLDistributionPoints: i.CRLURLs(ShardOf(serial, i.cfg.CRLShards)),
	}
	if p.isCA {
		tmpl.MaxPathLen = p.maxPathLen
		tmpl.MaxPathLenZero = p.maxPathLen == 0
	}
	if nc := p.nc; nc != nil {
		tmpl.PermittedDNSDomainsCritical = nc.critical
		tmpl.PermittedDNSDomains = slices.Clone(nc.permittedDNS)
		tmpl.ExcludedDNSDomains = slices.Clone(nc.excludedDNS)
		tmpl.PermittedIPRanges = slices.Clone(nc.permittedIP)
		tmpl.ExcludedIPRanges = slices.Clone(nc.excludedIP)
		tmpl.PermittedEmailAddresses = slices.Clone(nc.permittedEmail)
		tmpl.ExcludedEmailAddresses = slices.Clone(nc.excludedEmail)
		tmpl.PermittedURIDomains = slices.Clone(nc.permittedURI)
		tmpl.ExcludedURIDomains = slices.Clone(nc.excludedURI)
	}
	if p.ocspNoCheck {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, ocspNoCheckExt)
	}
	if p.ct != nil {
		// RFC 6962 §3.1: the precertificate. IssueFinal replaces this entry
		// with the SCT list, so both certificates keep the same order.
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, ctPoisonExt)
	}
	return tmpl, nil
}

// ocspNoCheckExt is id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1): OID
// 1.3.6.1.5.5.7.48.1.5, extnValue an ASN.1 NULL.
var ocspNoCheckExt = pkix.Extension{
	Id:    asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5},
	Value: asn1.NullBytes,
}

type checkedNames struct {
	dns   []string
	ip    []net.IP
	uri   []*url.URL
	email []string
}

func (c *checkedNames) empty() bool {
	return len(c.dns)+len(c.ip)+len(c.uri)+len(c.email) == 0
}

// checkNames normalizes every SAN in req, removes duplicates and checks
// each against the profile's patterns.
func (p *Profile) checkNames(req *Request, deny func(field, format string, args ...any) error) (*checkedNames, error) {
	out := &checkedNames{}
	noSANs := "CA certificates carry no subject alternative names"
	notAllowed := func(field, kind, shown, yamlName string, patterns []string) error {
		if len(patterns) == 0 {
			return deny(field, "%s is not allowed: the profile allows no %s (names.%s is empty)", shown, kind, yamlName)
		}
		return deny(field, "%s is not allowed: names.%s allows %v", shown, yamlName, patterns)
	}
	seen := map[string]bool{}
	for j, raw := range req.DNSNames {
		field := fmt.Sprintf("dns_names[%d]", j)
		if p.isCA {
			return nil, deny(field, noSANs)
		}
		n, err := normalizeDNS(raw)
		if err != nil {
			return nil, deny(field, "%q: %v", raw, err)
		}
		if strings.HasPrefix(n, "*.") && !p.allowWildcard {
			return nil, deny(field, "%q: wildcard names are not allowed (names.allow_wildcard_names is false)", raw)
		}
		if !matchAny(p.dns, n) {
			return nil, notAllowed(field, "DNS names", fmt.Sprintf("%q", raw), "dns", p.cfg.Names.DNS)
		}
		if !seen["dns:"+n] {
			seen["dns:"+n] = true
			out.dns = append(out.dns, n)
		}
	}
	for j, ip := range req.IPAddresses {
		field := fmt.Sprintf("ip_addresses[%d]", j)
		if p.isCA {
			return nil, deny(field, noSANs)
		}
		a, err := normalizeIP(ip)
		if err != nil {
			return nil, deny(field, "%v", err)
		}
		ok := false
		for _, pfx := range p.ip {
			ok = ok || pfx.Contains(a)
		}
		if !ok {
			return nil, notAllowed(field, "IP addresses", a.String(), "ip", p.cfg.Names.IP)
		}
		if !seen["ip:"+a.String()] {
			seen["ip:"+a.String()] = true
			out.ip = append(out.ip, net.IP(a.AsSlice()))
		}
	}
	for j, u := range req.URIs {
		field := fmt.Sprintf("uris[%d]", j)
		if p.isCA {
			return nil, deny(field, noSANs)
		}
		nu, err := checkURI(u)
		if err != nil {
			return nil, deny(field, "%v", err)
		}
		s := nu.String()
		if !matchAny(p.uri, lowerAuthority(s)) {
			return nil, notAllowed(field, "URIs", fmt.Sprintf("%q", s), "uri", p.cfg.Names.URI)
		}
		if !seen["uri:"+s] {
			seen["uri:"+s] = true
			out.uri = append(out.uri, nu)
		}
	}
	for j, raw := range req.EmailAddresses {
		field := fmt.Sprintf("email_addresses[%d]", j)
		if p.isCA {
			return nil, deny(field, noSANs)
		}
		e, err := normalizeEmail(raw)
		if err != nil {
			return nil, deny(field, "%q: %v", raw, err)
		}
		ok := false
		for _, pt := range p.email {
			ok = ok || pt.match(e)
		}
		if !ok {
			return nil, notAllowed(field, "email addresses", fmt.Sprintf("%q", raw), "email", p.cfg.Names.Email)
		}
		if !seen["email:"+e] {
			seen["email:"+e] = true
			out.email = append(out.email, e)
		}
	}
	return out, nil
}

func matchAny(ps []pattern, name string) bool {
	for _, p := range ps {
		if p.match(name) {
			return true
		}
	}
	return false
}

// checkSubject applies the common name rule (see NamesConfig.CommonName) and
// returns the subject to certify: CN, O and OU only.
func (p *Profile) checkSubject(s pkix.Name, names *checkedNames, deny func(field, format string, args ...any) error) (pkix.Name, error) {
	out := pkix.Name{CommonName: s.CommonName}
	for j, o := range s.Organization {
		if o == "" {
			return out, deny(fmt.Sprintf("organization[%d]", j), "is empty")
		}
		if err := checkText(o, 64); err != nil {
			return out, deny(fmt.Sprintf("organization[%d]", j), "%q %v", o, err)
		}
		out.Organization = append(out.Organization, o)
	}
	for j, ou := range s.OrganizationalUnit {
		if ou == "" {
			return out, deny(fmt.Sprintf("organizational_unit[%d]", j), "is empty")
		}
		if err := checkText(ou, 64); err != nil {
			return out, deny(fmt.Sprintf("organizational_unit[%d]", j), "%q %v", ou, err)
		}
		out.OrganizationalUnit = append(out.OrganizationalUnit, ou)
	}
	cn := s.CommonName
	if cn == "" {
		if p.isCA {
			return out, deny("common_name", "CA certificates need a common name")
		}
		if names.empty() {
			return out, deny("common_name", "the request names no subject: give a common name or at least one subject alternative name")
		}
		return out, nil
	}
	if err := checkText(cn, 64); err != nil {
		return out, deny("common_name", "%q %v", cn, err)
	}
	if !p.isCA {
		// A CN that repeats a SAN is always fine: the SAN passed the profile.
		if san, ok := names.find(cn); ok {
			out.CommonName = san
			return out, nil
		}
	}
	if matchAny(p.cn, cn) {
		return out, nil
	}
	if p.isCA && len(p.cn) == 0 {
		return out, nil
	}
	if len(p.cn) == 0 {
		return out, deny("common_name", "%q is not allowed: it must equal one of the requested subject alternative names (names.common_name is empty)", cn)
	}
	if p.isCA {
		return out, deny("common_name", "%q is not allowed: names.common_name allows %v", cn, p.cfg.Names.CommonName)
	}
	return out, deny("common_name", "%q is not allowed: it must equal one of the requested subject alternative names or match names.common_name %v", cn, p.cfg.Names.CommonName)
}

// find returns the normalized SAN equal to cn, if any.
func (c *checkedNames) find(cn string) (string, bool) {
	if d, err := normalizeDNS(cn); err == nil && slices.Contains(c.dns, d) {
		return d, true
	}
	if ip, ok := parseIP(cn); ok {
		for _, x := range c.ip {
			if x.Equal(ip) {
				return x.String(), true
			}
		}
	}
	if e, err := normalizeEmail(cn); err == nil && slices.Contains(c.email, e) {
		return e, true
	}
	for _, u := range c.uri {
		if u.String() == cn {
			return cn, true
		}
	}
	return "", false
}

// subjectKeyID computes the key identifier with RFC 7093 §2 method 1: the
// leftmost 160 bits of the SHA-256 hash of the subjectPublicKey BIT STRING
// value (RFC 5280 §4.2.1.2 allows any method). This is also what Go's
// x509.CreateCertificate uses for CA certificates since Go 1.25, so all our
// identifiers are computed the same way.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("cannot encode the public key: %v", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if rest, err := asn1.Unmarshal(der, &spki); err != nil || len(rest) != 0 {
		return nil, errors.New("cannot decode the encoded public key")
	}
	h := sha256.Sum256(spki.PublicKey.Bytes)
	return h[:20], nil
}

// signatureAlgorithm picks the signature algorithm for an issuer key: the
// hash matches the curve strength for ECDSA (RFC 5480 §4), SHA-256 with
// PKCS#1 v1.5 for RSA (the most widely supported), pure EdDSA for Ed25519
// (RFC 8410 §6).
func signatureAlgorithm(pub crypto.PublicKey) (x509.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return x509.ECDSAWithSHA256, nil
		case elliptic.P384():
			return x509.ECDSAWithSHA384, nil
		}
	case *rsa.PublicKey:
		return x509.SHA256WithRSA, nil
	case ed25519.PublicKey:
		return x509.PureEd25519, nil
	}
	return 0, fmt.Errorf("issuance: no signature algorithm for %T", pub)
}

// privateRegistry returns the zlint lints that apply to a private PKI: all
// sources but the public-trust ones (CA/B Forum requirements, root store
// policies, ETSI), whose rules (public TLDs, reserved IPs, certificate
// policies, 398-day limits, SCTs) do not apply to an internal CA.
func privateRegistry() (lint.Registry, error) {
	r, err := lint.GlobalRegistry().Filter(lint.FilterOptions{
		ExcludeSources: lint.SourceList{
			lint.CABFBaselineRequirements, lint.CABFEVGuidelines, lint.CABFSMIMEBaselineRequirements,
			lint.CABFCSBaselineRequirements, lint.MozillaRootStorePolicy, lint.AppleRootStorePolicy,
			lint.ChromeRootStorePolicy, lint.EtsiEsi,
		},
		ExcludeNames: []string{
			// Verifies every certificate's signature against the key of one
			// compromised public CA (a P-384 verification: 85% of issuance CPU
			// when measured). Our certificates are signed by our own issuer,
			// whose key NewIssuer has checked, so it cannot fire.
			"e_cert_issued_by_compromised_emudhra_ca",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("issuance: lint registry: %v", err)
	}
	return r, nil
}

// lintCertificate runs reg over der and returns a *LintError listing every
// warning, error and fatal result. We refuse warnings too: certctl promises
// zlint finds nothing to warn about in what it issues.
func lintCertificate(reg lint.Registry, der []byte) error {
	zc, err := zx509.ParseCertificate(der)
	if err != nil {
		return &LintError{Findings: []LintFinding{{Name: "zcrypto_parse", Status: "fatal", Details: err.Error(), Source: "zcrypto"}}}
	}
	rs := zlint.LintCertificateEx(zc, reg)
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
