package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/ocsp"
	"github.com/certctl/certctl/scan/schedule"
)

// File layout inside --dir. Later issues and users rely on these names.
const (
	configFile           = "certctl.yaml"
	rootCertFile         = "root.crt"
	rootKeyFile          = "root.key"
	intermediateCertFile = "intermediate.crt"
	intermediateKeyFile  = "intermediate.key"
	sqliteFile           = "certctl.db"
	defaultDir           = "./certctl-data"
	maxConfigSize        = 1 << 20
)

// Config is certctl.yaml. Unknown fields are an error naming field and line.
type Config struct {
	CA       CAConfig                          `yaml:"ca"`
	Database string                            `yaml:"database,omitempty"`
	URLs     issuance.IssuerConfig             `yaml:"urls,omitempty"`
	Profiles map[string]issuance.ProfileConfig `yaml:"profiles,omitempty"`
	// OCSP tunes the pre-signed OCSP responses (validity, refresh).
	OCSP ocsp.Config `yaml:"ocsp,omitempty"`
	// CRL tunes CRL generation (validity, schedule).
	CRL CRLConfig `yaml:"crl,omitempty"`
	// CFSSL configures the CFSSL-compatible API (/api/v1/cfssl/).
	CFSSL CFSSLConfig `yaml:"cfssl,omitempty"`
	// Scan configures the scheduled TLS scans run by serve, and their hooks.
	Scan schedule.Config `yaml:"scan,omitempty"`
}

// CFSSLConfig is the cfssl: section: what CFSSL clients need.
type CFSSLConfig struct {
	// DefaultProfile signs requests that name no profile ("" refuses them).
	DefaultProfile string `yaml:"default_profile,omitempty"`
	// AuthKeys are authsign's HMAC keys by name: hex text, or "env:NAME" /
	// "file:PATH" (as in CFSSL's ca-config.json).
	AuthKeys map[string]string `yaml:"auth_keys,omitempty"`
	// ProfileAuthKeys lists the auth keys that may authsign under each
	// profile (current key first).
	ProfileAuthKeys map[string][]string `yaml:"profile_auth_keys,omitempty"`
}

// CAConfig names the CA and its keys.
type CAConfig struct {
	Name    string `yaml:"name"`
	KeyType string `yaml:"key_type,omitempty"`
	// IntermediateKey names the issuing key when it is not DIR/intermediate.key:
	// a pkcs11: URI (the key stays on the token; no pin-value: the PIN comes
	// from pin-source or CERTCTL_PKCS11_PIN) or a file path relative to DIR.
	IntermediateKey string `yaml:"intermediate_key,omitempty"`
	// RootKey records where `certctl init --root-key` put the root key (a
	// pkcs11: URI). Nothing loads it: the root only signs at init.
	RootKey string `yaml:"root_key,omitempty"`
	// RootValidity and IntermediateValidity apply at `certctl init`.
	RootValidity issuance.Duration `yaml:"root_validity,omitempty"`
}

// common holds the flags every command that touches the CA takes.
type common struct {
	dir    string
	db     string
	getenv func(string) string // the process environment (HSM PIN and module)
}

func (c *common) register(fs *flag.FlagSet, e *env) {
	c.getenv = e.getenv
	def := e.getenv("CERTCTL_DIR")
	if def == "" {
		def = defaultDir
	}
	fs.StringVar(&c.dir, "dir", def, "`DIR` holding certctl.yaml, keys and the embedded database (env CERTCTL_DIR)")
	fs.StringVar(&c.db, "db", e.getenv("CERTCTL_DB"), "certificate database `URL`: postgres://… or sqlite:PATH (env CERTCTL_DB; default: database in certctl.yaml, else sqlite in DIR)")
}

func (c *common) path(name string) string { return filepath.Join(c.dir, name) }

// dbURL resolves the database: --db, then the config file, then the
// embedded default in DIR.
func (c *common) dbURL(cfg *Config) string {
	if c.db != "" {
		return c.db
	}
	if cfg != nil && cfg.Database != "" {
		if p, ok := strings.CutPrefix(cfg.Database, "sqlite:"); ok && !filepath.IsAbs(p) {
			return "sqlite:" + c.path(p)
		}
		return cfg.Database
	}
	return "sqlite:" + c.path(sqliteFile)
}

// loadConfig reads DIR/certctl.yaml strictly.
func (c *common) loadConfig() (*Config, error) {
	p := c.path(configFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no CA in %s (%s not found): run `certctl init --dir %s` first, or pass --dir", c.dir, configFile, c.dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := parseConfig(p, b)
	if err != nil {
		return nil, err
	}
	if err := resolveCTKeys(cfg, c.dir); err != nil { // ct.logs[].public_key may name a file (cmd_ct.go)
		return nil, err
	}
	return cfg, nil
}

func parseConfig(name string, b []byte) (*Config, error) {
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxConfigSize)
	}
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		if loc := locateProfileError(b); loc != "" {
			return nil, fmt.Errorf("%s: %s: %v: fix the file", name, loc, err)
		}
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = strings.ReplaceAll(strings.TrimPrefix(msg, "unmarshal errors:\n"), "\n", ";")
		return nil, fmt.Errorf("%s: %s: fix the file (see `certctl init --help` for the layout)", name, strings.TrimSpace(msg))
	}
	if len(cfg.Profiles) == 0 {
		return nil, fmt.Errorf("%s: no profiles defined: add a profiles: section", name)
	}
	return &cfg, nil
}

// locateProfileError finds which profile (and line) a value error comes
// from: errors from a field's UnmarshalText (a bad duration, say) carry no
// position of their own.
func locateProfileError(b []byte) string {
	var root yaml.Node
	if yaml.Unmarshal(b, &root) != nil || len(root.Content) == 0 {
		return ""
	}
	doc := root.Content[0]
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value != "profiles" {
			continue
		}
		profiles := doc.Content[i+1]
		for j := 0; j+1 < len(profiles.Content); j += 2 {
			var pc issuance.ProfileConfig
			if err := profiles.Content[j+1].Decode(&pc); err != nil {
				return fmt.Sprintf("profile %q (line %d)", profiles.Content[j].Value, profiles.Content[j].Line)
			}
		}
	}
	return ""
}

// buildProfiles validates every profile in the config.
func buildProfiles(cfg *Config) (map[string]*issuance.Profile, error) {
	out := make(map[string]*issuance.Profile, len(cfg.Profiles))
	for name, pc := range cfg.Profiles {
		p, err := issuance.NewProfile(name, pc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", configFile, err)
		}
		out[name] = p
	}
	return out, nil
}

const configHeader = `# certctl configuration. Unknown fields are an error.
#
# ca.name:        common name of the root; the intermediate is "<name> Intermediate"
# ca.key_type:    ecdsa-p256 (default), ecdsa-p384, rsa-2048, rsa-3072, rsa-4096, ed25519
# ca.intermediate_key: the issuing key if not intermediate.key: a pkcs11: URI (HSM; PIN from
#                 pin-source=file:PATH or env CERTCTL_PKCS11_PIN, never pin-value here) or a file
# database:       certificate database; sqlite:FILE (relative to this directory) or
#                 postgres://user@host:5432/db (run 'certctl db migrate' once)
# urls:           written into every issued certificate: AIA OCSP (ocsp), AIA caIssuers
#                 (issuing_certificate) and CRL distribution points (crl)
# ocsp:           pre-signed OCSP responses: validity (default 24h, re-signed at half),
#                 backdate, interval, workers, batch_size
# crl:            validity (default 24h) and period (default 1h) of the CRLs; urls.crl_shards
#                 splits them into shards (the crl URL then needs "{shard}")
# cfssl:          CFSSL-compatible API: default_profile, auth_keys (name: hex key, env:NAME or
#                 file:PATH) and profile_auth_keys (profile: [key names]) for authsign
# scan:           scheduled TLS scans run by serve: poll, concurrency, lease, expiry_warning (14d), retention (90d),
#                 hooks (- webhook: URL, headers: {Authorization: env:NAME} | - exec: CMD; events, timeout)
# profiles:       signing profiles. validity/backdate take Go durations or days ("30d").
#                 names.dns patterns: "a.internal" exact, "*.svc.internal" one label,
#                 "**.internal" one or more labels. names.ip: CIDRs. Wildcard certificate
#                 names need allow_wildcard_names: true.
#                 ct: submit to Certificate Transparency logs and embed SCTs (see: certctl ct --help).
`

// defaultConfig is what `certctl init` writes when DIR has no config.
func defaultConfig(name, keyType string) *Config {
	return &Config{
		CA:       CAConfig{Name: name, KeyType: keyType},
		Database: "sqlite:" + sqliteFile,
		URLs: issuance.IssuerConfig{
			// The plain-HTTP address `certctl serve` uses for OCSP, CRLs and the
			// CA certificate (its --http-addr default).
			OCSPServers:           []string{"http://127.0.0.1:8080/ocsp"},
			IssuingCertificateURL: []string{"http://127.0.0.1:8080/ca.crt"},
			CRLDistributionPoints: []string{"http://127.0.0.1:8080/crl"},
		},
		Profiles: issuance.DefaultProfiles(),
	}
}

func marshalConfig(cfg *Config) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(configHeader)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(cfg); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return buf.Bytes(), nil
}
