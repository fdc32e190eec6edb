package cfsslapi

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cloudflare/cfssl/config"

	"github.com/certctl/certctl/issuance"
)

// CFSSLConfig is what ProfilesFromCFSSLConfig reads from a ca-config.json.
type CFSSLConfig struct {
	// Profiles are the converted signing profiles, each checked with
	// issuance.NewProfile.
	Profiles map[string]issuance.ProfileConfig
	// DefaultProfile is the name given to signing.default ("default"):
	// the profile of requests that name none.
	DefaultProfile string
	// AuthKeys are the decoded HMAC keys that some profile uses.
	AuthKeys map[string][]byte
	// ProfileAuthKeys lists, per profile, auth_key then prev_auth_key.
	ProfileAuthKeys map[string][]string
	// Warnings name settings that were ignored because certctl configures
	// them elsewhere or does not need them; none of them weakens a policy.
	// Show them to the operator.
	Warnings []string
}

// Options returns handler options carrying the keys and default profile.
func (c *CFSSLConfig) Options() Options {
	return Options{AuthKeys: c.AuthKeys, ProfileAuthKeys: c.ProfileAuthKeys, DefaultProfile: c.DefaultProfile}
}

// ImportOptions adapts ProfilesFromCFSSLConfig to the deployment.
type ImportOptions struct {
	// Names is the name policy given to every leaf profile. A CFSSL
	// profile has none (any name is signed unless name_whitelist is set),
	// while a certctl profile allows only the names it lists; use e.g.
	// issuance.DefaultProfiles()["server"].Names. CA profiles get none.
	Names issuance.NamesConfig
	// ResolveKey resolves auth keys written as "env:NAME" or "file:PATH"
	// (CFSSL's auth.New syntax) to their hex text. nil refuses them: this
	// package reads no files and no environment.
	ResolveKey func(ref string) (string, error)
}

// CFSSLConfigError reports a ca-config.json setting that cannot be
// converted. Path is the JSON path ("signing.profiles.server.usages[2]").
type CFSSLConfigError struct {
	Path, Reason string
}

func (e *CFSSLConfigError) Error() string {
	return fmt.Sprintf("cfsslapi: ca-config.json: %s: %s", e.Path, e.Reason)
}

// defaultProfileName is the certctl name of signing.default.
const defaultProfileName = "default"

// cfsslBackdate is CFSSL's backdate when a profile sets none
// (signer.FillTemplate).
const cfsslBackdate = 5 * time.Minute

// cfsslKeyUsages maps CFSSL usage names (config.KeyUsage) to issuance's.
// "encipher only" and "decipher only" have no issuance equivalent.
var cfsslKeyUsages = map[string]string{
	"signing":            "digital_signature",
	"digital signature":  "digital_signature",
	"content commitment": "content_commitment",
	"key encipherment":   "key_encipherment",
	"key agreement":      "key_agreement",
	"data encipherment":  "data_encipherment",
	"cert sign":          "cert_sign",
	"crl sign":           "crl_sign",
}

// cfsslExtKeyUsages maps CFSSL names (config.ExtKeyUsage) to issuance's.
// "any", the IPsec and the SGC usages are refused: "any" defeats the
// purpose of an extended key usage, and the others are obsolete.
var cfsslExtKeyUsages = map[string]string{
	"server auth":      "server_auth",
	"client auth":      "client_auth",
	"code signing":     "code_signing",
	"email protection": "email_protection",
	"s/mime":           "email_protection",
	"timestamping":     "time_stamping",
	"ocsp signing":     "ocsp_signing",
}

// cfsslUsages is the reverse: issuance usage names -> CFSSL names, key
// usages first, for the info endpoint.
func cfsslUsages(ku, eku []string) []string {
	out := []string{}
	for _, u := range ku {
		out = append(out, strings.ReplaceAll(u, "_", " "))
	}
	for _, u := range eku {
		if u == "time_stamping" {
			out = append(out, "timestamping")
			continue
		}
		out = append(out, strings.ReplaceAll(u, "_", " "))
	}
	return out
}

// ProfilesFromCFSSLConfig converts the signing section of CFSSL's
// ca-config.json (v1.6.5 format) into certctl profiles.
//
// Mapping, per profile (signing.default becomes the profile "default"):
//
//   - expiry -> validity; backdate -> backdate (CFSSL's default of 5m when
//     unset). The limits of issuance.NewProfile apply: a leaf expiry over
//     398 days is refused.
//   - usages -> key_usage and ext_key_usage ("signing" and "digital
//     signature" -> digital_signature, "server auth" -> server_auth, ...).
//     Unknown names, "any", "encipher only", "decipher only", IPsec and
//     SGC usages are refused (CFSSL silently drops unknown names).
//   - ca_constraint: is_ca -> ca; max_path_len N > 0 -> max_path_len N;
//     max_path_len 0 with max_path_len_zero -> 0. With neither, CFSSL
//     issues CAs with no path length limit, which certctl does not: refused.
//   - ocsp_no_check -> ocsp_no_check.
//   - auth_key, prev_auth_key -> ProfileAuthKeys; the keys must be in
//     auth_keys with type "standard".
//   - name_whitelist is refused: a regular expression cannot be turned into
//     certctl's name patterns without widening or narrowing it. Remove it
//     and put the allowed names in ImportOptions.Names.
//   - remote, auth_remote (client-side forwarding), not_before, not_after
//     (fixed validity dates) are refused.
//   - issuer_urls, ocsp_url, crl_url (set on the issuer in certctl),
//     copy_extensions and allowed_extensions (certctl never copies
//     requested extensions), policies, ct_log_servers, cert_store and the
//     lint settings (certctl always lints) are ignored with a warning.
//
// Every converted profile is checked with issuance.NewProfile. Errors are
// *CFSSLConfigError (or *issuance.ConfigError for profile limits).
func ProfilesFromCFSSLConfig(data []byte, opts ImportOptions) (*CFSSLConfig, error) {
	var cfg config.Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, &CFSSLConfigError{Path: "(file)", Reason: "not valid JSON: " + err.Error()}
	}
	if cfg.Signing == nil {
		return nil, &CFSSLConfigError{Path: "signing", Reason: "missing: the file has no signing profiles"}
	}
	out := &CFSSLConfig{
		Profiles:        map[string]issuance.ProfileConfig{},
		DefaultProfile:  defaultProfileName,
		AuthKeys:        map[string][]byte{},
		ProfileAuthKeys: map[string][]string{},
	}
	if _, ok := cfg.Signing.Profiles[defaultProfileName]; ok {
		return nil, &CFSSLConfigError{Path: "signing.profiles.default",
			Reason: `certctl names signing.default "default"; rename this profile`}
	}
	def := cfg.Signing.Default
	if def == nil {
		def = config.DefaultConfig()
		out.Warnings = append(out.Warnings, "signing.default is absent: using CFSSL's built-in default (8760h; signing, key encipherment, server auth, client auth)")
	}
	type entry struct {
		name, path string
		p          *config.SigningProfile
	}
	entries := []entry{{defaultProfileName, "signing.default", def}}
	for _, name := range slices.Sorted(maps.Keys(cfg.Signing.Profiles)) {
		entries = append(entries, entry{name, "signing.profiles." + name, cfg.Signing.Profiles[name]})
	}
	usedKeys := map[string]string{} // key name -> path of the first profile using it
	for _, e := range entries {
		if e.p == nil {
			return nil, &CFSSLConfigError{Path: e.path, Reason: "profile is null"}
		}
		pc, keyNames, warnings, err := convertProfile(e.path, e.p, opts)
		if err != nil {
			return nil, err
		}
		if _, err := issuance.NewProfile(e.name, pc); err != nil {
			return nil, fmt.Errorf("cfsslapi: ca-config.json: %s: %w", e.path, err)
		}
		out.Profiles[e.name] = pc
		out.Warnings = append(out.Warnings, warnings...)
		for _, k := range keyNames {
			if _, ok := usedKeys[k]; !ok {
				usedKeys[k] = e.path
			}
		}
		if len(keyNames) > 0 {
			out.ProfileAuthKeys[e.name] = keyNames
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.AuthKeys)) {
		if _, ok := usedKeys[name]; !ok {
			out.Warnings = append(out.Warnings, fmt.Sprintf("auth_keys.%s is not used by any profile: ignored", name))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(usedKeys)) {
		path := "auth_keys." + name
		k, ok := cfg.AuthKeys[name]
		if !ok {
			return nil, &CFSSLConfigError{Path: usedKeys[name], Reason: fmt.Sprintf("auth key %q is not defined in auth_keys", name)}
		}
		key, err := decodeAuthKey(path, k, opts.ResolveKey)
		if err != nil {
			return nil, err
		}
		out.AuthKeys[name] = key
	}
	return out, nil
}

func decodeAuthKey(path string, k config.AuthKey, resolve func(string) (string, error)) ([]byte, error) {
	if k.Type != "standard" {
		return nil, &CFSSLConfigError{Path: path + ".type", Reason: fmt.Sprintf("%q is not supported (only \"standard\", HMAC-SHA-256)", k.Type)}
	}
	text := k.Key
	if kind, _, ok := strings.Cut(text, ":"); ok {
		if kind != "env" && kind != "file" {
			return nil, &CFSSLConfigError{Path: path + ".key", Reason: fmt.Sprintf("unknown key prefix %q (want hex, env:NAME or file:PATH)", kind)}
		}
		if resolve == nil {
			return nil, &CFSSLConfigError{Path: path + ".key", Reason: "the key is a " + kind + ": reference, which this import cannot resolve; write the key in hex"}
		}
		var err error
		if text, err = resolve(text); err != nil {
			return nil, &CFSSLConfigError{Path: path + ".key", Reason: fmt.Sprintf("resolve %s: reference: %v", kind, err)}
		}
		text = strings.TrimSpace(text) // auth.New trims file contents
	}
	key, err := hex.DecodeString(text)
	if err != nil {
		// The key itself is not repeated in the message.
		return nil, &CFSSLConfigError{Path: path + ".key", Reason: "not a hex string"}
	}
	if len(key) < minAuthKeyBytes {
		return nil, &CFSSLConfigError{Path: path + ".key", Reason: fmt.Sprintf("%d bytes; at least %d are needed", len(key), minAuthKeyBytes)}
	}
	return key, nil
}

// convertProfile converts one CFSSL signing profile. It returns the auth
// key names (auth_key, prev_auth_key) and warnings for ignored settings.
func convertProfile(path string, p *config.SigningProfile, opts ImportOptions) (issuance.ProfileConfig, []string, []string, error) {
	var pc issuance.ProfileConfig
	bad := func(field, format string, args ...any) error {
		return &CFSSLConfigError{Path: path + "." + field, Reason: fmt.Sprintf(format, args...)}
	}
	var warnings []string
	warn := func(field, why string) {
		warnings = append(warnings, fmt.Sprintf("%s.%s ignored: %s", path, field, why))
	}

	// Refused: settings that would change what is signed in ways certctl
	// cannot reproduce.
	switch {
	case p.RemoteName != "" || p.AuthRemote.RemoteName != "":
		return pc, nil, nil, bad("remote", "the profile forwards to another CFSSL server; that is client configuration, not a signing profile")
	case p.NameWhitelistString != "":
		return pc, nil, nil, bad("name_whitelist", "a regular expression cannot be converted into certctl name patterns without changing what it allows; remove it and list the allowed names in certctl's names policy (dns, ip, uri, email patterns)")
	case !p.NotBefore.IsZero() || !p.NotAfter.IsZero():
		return pc, nil, nil, bad("not_before", "fixed validity dates are not supported; certctl uses expiry from the time of issuance")
	}

	// Validity.
	if p.ExpiryString == "" {
		return pc, nil, nil, bad("expiry", "missing (CFSSL requires it too)")
	}
	d, err := time.ParseDuration(p.ExpiryString)
	if err != nil || d <= 0 {
		return pc, nil, nil, bad("expiry", "%q is not a positive Go duration such as \"8760h\"", p.ExpiryString)
	}
	pc.Validity = issuance.Duration(d)
	pc.Backdate = issuance.Duration(cfsslBackdate)
	if p.BackdateString != "" {
		b, err := time.ParseDuration(p.BackdateString)
		if err != nil || b < 0 {
			return pc, nil, nil, bad("backdate", "%q is not a non-negative Go duration such as \"5m\"", p.BackdateString)
		}
		pc.Backdate = issuance.Duration(b)
	}

	// Usages.
	if len(p.Usage) == 0 {
		return pc, nil, nil, bad("usages", "missing: list the key usages (e.g. \"signing\", \"server auth\")")
	}
	for i, u := range p.Usage {
		name := strings.ToLower(strings.TrimSpace(u))
		if ku, ok := cfsslKeyUsages[name]; ok {
			if !slices.Contains(pc.KeyUsage, ku) {
				pc.KeyUsage = append(pc.KeyUsage, ku)
			}
			continue
		}
		if eku, ok := cfsslExtKeyUsages[name]; ok {
			if !slices.Contains(pc.ExtKeyUsage, eku) {
				pc.ExtKeyUsage = append(pc.ExtKeyUsage, eku)
			}
			continue
		}
		known := append(slices.Sorted(maps.Keys(cfsslKeyUsages)), slices.Sorted(maps.Keys(cfsslExtKeyUsages))...)
		return pc, nil, nil, bad(fmt.Sprintf("usages[%d]", i), "%q is not supported (supported: %s)", u, strings.Join(known, ", "))
	}

	// CA constraint.
	if cc := p.CAConstraint; cc.IsCA {
		pc.CA = true
		switch {
		case cc.MaxPathLen > 0:
			n := cc.MaxPathLen
			pc.MaxPathLen = &n
		case cc.MaxPathLen == 0 && cc.MaxPathLenZero:
			zero := 0
			pc.MaxPathLen = &zero
		default:
			return pc, nil, nil, bad("ca_constraint", "no path length limit (max_path_len %d without max_path_len_zero means unlimited in CFSSL); set \"max_path_len_zero\": true or a positive max_path_len", cc.MaxPathLen)
		}
	} else {
		pc.Names = cloneNames(opts.Names)
		if isEmptyNames(pc.Names) {
			warnings = append(warnings, fmt.Sprintf("%s: no names are allowed (ImportOptions.Names is empty): the profile cannot issue until a names policy is added", path))
		}
	}
	pc.OCSPNoCheck = p.OCSPNoCheck

	// Auth keys.
	var keys []string
	if p.AuthKeyName != "" {
		keys = append(keys, p.AuthKeyName)
	}
	if p.PrevAuthKeyName != "" && p.PrevAuthKeyName != p.AuthKeyName {
		keys = append(keys, p.PrevAuthKeyName)
	}

	// Ignored with a warning: configured elsewhere in certctl, or only
	// ever narrowing what certctl issues.
	if len(p.IssuerURL) > 0 || p.OCSP != "" || p.CRL != "" {
		warn("issuer_urls/ocsp_url/crl_url", "AIA, OCSP and CRL URLs are set on the issuer in certctl's configuration")
	}
	if p.CopyExtensions || len(p.AllowedExtensions) > 0 {
		warn("copy_extensions/allowed_extensions", "certctl never copies extensions from requests")
	}
	if len(p.Policies) > 0 {
		warn("policies", "certificate policies are not supported")
	}
	if len(p.CTLogServers) > 0 {
		warn("ct_log_servers", "certctl does not submit to CT logs")
	}
	if p.CertStore != "" {
		warn("cert_store", "certctl stores every certificate in its own database")
	}
	if p.LintErrLevel != 0 || len(p.ExcludeLints) > 0 || len(p.ExcludeLintSources) > 0 {
		warn("lint_error_level/ignored_lints", "certctl always lints with zlint and refuses any warning or error")
	}
	if p.ClientProvidesSerialNumbers {
		warn("ClientProvidesSerialNumbers", "certctl draws serials itself and refuses requests that carry one")
	}
	return pc, keys, warnings, nil
}

func cloneNames(n issuance.NamesConfig) issuance.NamesConfig {
	n.CommonName = slices.Clone(n.CommonName)
	n.DNS = slices.Clone(n.DNS)
	n.IP = slices.Clone(n.IP)
	n.URI = slices.Clone(n.URI)
	n.Email = slices.Clone(n.Email)
	return n
}

func isEmptyNames(n issuance.NamesConfig) bool {
	return len(n.CommonName)+len(n.DNS)+len(n.IP)+len(n.URI)+len(n.Email) == 0
}
