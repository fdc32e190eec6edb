package transport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/certctl/certctl/keys"
)

// Identity describes one workload identity: where to enroll, what to trust,
// which names to hold and how to keep the certificate renewed. It is a plain
// value: New copies it, so changing it afterwards has no effect.
//
// In files (see LoadIdentity) the field names are the snake_case tags below,
// and durations are strings such as "30s" or "2m".
type Identity struct {
	// CAURL is the https URL of `certctl serve` (e.g. https://ca.internal:8443).
	CAURL string `yaml:"ca_url" json:"ca_url"`
	// CARoots is a PEM file of the roots to trust, pinned at start. The
	// system pool is never used. The set is then refreshed from the CA
	// (GET /v1/ca), so a root rollover needs no new file.
	CARoots string `yaml:"ca_roots" json:"ca_roots"`
	// Profile is the CA's issuance profile (server, client, peer, ...).
	Profile string `yaml:"profile" json:"profile"`
	// Names are the subject alternative names to request: DNS names, IP
	// addresses and URIs (spiffe://...), as in the server's IssueRequest.
	Names []string `yaml:"names" json:"names"`
	// CommonName is the subject CN. Empty: the first DNS name of Names, if
	// any. For PostgreSQL client certificates it is the role.
	CommonName string `yaml:"common_name,omitempty" json:"common_name,omitempty"`
	// KeyType is a keys.KeyType name; default ecdsa-p256.
	KeyType string `yaml:"key_type,omitempty" json:"key_type,omitempty"`
	// Key says where the private key lives: "" or "memory" keeps it in
	// memory and draws a fresh key at every renewal; a file path keeps one
	// key in that file (created with mode 0600 if missing); a pkcs11: URI
	// uses a key in an HSM. File and HSM keys are reused across renewals.
	Key string `yaml:"key,omitempty" json:"key,omitempty"`
	// CertFile, when set, is where the current certificate chain is written
	// (PEM, mode 0644, replaced atomically). With a file or HSM key, a
	// restart reuses a still-valid certificate from it instead of enrolling.
	CertFile string `yaml:"cert_file,omitempty" json:"cert_file,omitempty"`
	// Token (or the content of TokenFile) is the single-use bootstrap token
	// for the first enrollment (POST /v1/certificates). Renewals use the
	// current certificate instead (POST /v1/renew over mutual TLS).
	Token     string `yaml:"token,omitempty" json:"token,omitempty"`
	TokenFile string `yaml:"token_file,omitempty" json:"token_file,omitempty"`
	// RenewAt is the fraction of the certificate's lifetime after which it
	// is renewed; default 2/3. Jitter (default: 10% of the lifetime, at most
	// one hour) is added at random so that peers do not renew in step.
	RenewAt float64       `yaml:"renew_at,omitempty" json:"renew_at,omitempty"`
	Jitter  time.Duration `yaml:"jitter,omitempty" json:"jitter,omitempty"`
	// RetryMin and RetryMax bound the exponential backoff between failed
	// renewals (defaults 1s and 1m); retries never wait longer than a tenth
	// of the remaining lifetime.
	RetryMin time.Duration `yaml:"retry_min,omitempty" json:"retry_min,omitempty"`
	RetryMax time.Duration `yaml:"retry_max,omitempty" json:"retry_max,omitempty"`
	// EnrollTimeout bounds how long New waits for its first certificate
	// (default 30s).
	EnrollTimeout time.Duration `yaml:"enroll_timeout,omitempty" json:"enroll_timeout,omitempty"`
}

// Defaults applied by New.
const (
	DefaultRenewAt       = 2.0 / 3
	DefaultRetryMin      = time.Second
	DefaultRetryMax      = time.Minute
	DefaultEnrollTimeout = 30 * time.Second
	maxIdentityFile      = 1 << 20
)

// ErrInvalidIdentity is wrapped by every error about an Identity's content.
var ErrInvalidIdentity = errors.New("transport: invalid identity")

// LoadIdentity reads an identity file: YAML (.yaml, .yml) or JSON (.json).
// Unknown fields are an error that names the field (and, for YAML, the
// line). Durations are Go duration strings ("45s", "5m"). Relative paths
// in it are relative to the working directory, as in an Identity built in
// Go. The identity is checked as New would check it.
func LoadIdentity(path string) (Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return Identity{}, fmt.Errorf("transport: identity file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxIdentityFile+1))
	if err != nil {
		return Identity{}, fmt.Errorf("transport: identity file %s: %w", path, err)
	}
	if len(data) > maxIdentityFile {
		return Identity{}, fmt.Errorf("%w: %s is larger than %d bytes", ErrInvalidIdentity, path, maxIdentityFile)
	}
	var id Identity
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".yaml", ".yml":
		id, err = parseIdentityYAML(data)
	case ".json":
		id, err = parseIdentityJSON(data)
	default:
		return Identity{}, fmt.Errorf("%w: %s: unknown extension %q: use .yaml, .yml or .json", ErrInvalidIdentity, path, ext)
	}
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %s: %v", ErrInvalidIdentity, path, err)
	}
	if err := id.check(); err != nil {
		return Identity{}, fmt.Errorf("%s: %w", path, err)
	}
	return id, nil
}

// identityFile is Identity as written in files: durations are strings.
type identityFile struct {
	CAURL         string   `yaml:"ca_url" json:"ca_url"`
	CARoots       string   `yaml:"ca_roots" json:"ca_roots"`
	Profile       string   `yaml:"profile" json:"profile"`
	Names         []string `yaml:"names" json:"names"`
	CommonName    string   `yaml:"common_name" json:"common_name"`
	KeyType       string   `yaml:"key_type" json:"key_type"`
	Key           string   `yaml:"key" json:"key"`
	CertFile      string   `yaml:"cert_file" json:"cert_file"`
	Token         string   `yaml:"token" json:"token"`
	TokenFile     string   `yaml:"token_file" json:"token_file"`
	RenewAt       float64  `yaml:"renew_at" json:"renew_at"`
	Jitter        duration `yaml:"jitter" json:"jitter"`
	RetryMin      duration `yaml:"retry_min" json:"retry_min"`
	RetryMax      duration `yaml:"retry_max" json:"retry_max"`
	EnrollTimeout duration `yaml:"enroll_timeout" json:"enroll_timeout"`
}

func (f identityFile) identity() Identity {
	return Identity{
		CAURL: f.CAURL, CARoots: f.CARoots, Profile: f.Profile, Names: f.Names, CommonName: f.CommonName,
		KeyType: f.KeyType, Key: f.Key, CertFile: f.CertFile, Token: f.Token, TokenFile: f.TokenFile,
		RenewAt: f.RenewAt, Jitter: time.Duration(f.Jitter), RetryMin: time.Duration(f.RetryMin),
		RetryMax: time.Duration(f.RetryMax), EnrollTimeout: time.Duration(f.EnrollTimeout),
	}
}

// duration is a time.Duration written as a Go duration string.
type duration time.Duration

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: want a Go duration such as \"30s\" or \"5m\"", b)
	}
	*d = duration(v)
	return nil
}

// UnmarshalYAML adds the line to errors.
func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration string such as \"30s\"", n.Line)
	}
	if err := d.UnmarshalText([]byte(n.Value)); err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	return nil
}

func parseIdentityYAML(data []byte) (Identity, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f identityFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return Identity{}, errors.New("empty file")
		}
		// yaml.v3 says "field x not found in type transport.identityFile".
		return Identity{}, errors.New(strings.ReplaceAll(err.Error(), " in type transport.identityFile", ""))
	}
	return f.identity(), nil
}

func parseIdentityJSON(data []byte) (Identity, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f identityFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return Identity{}, errors.New("empty file")
		}
		return Identity{}, errors.New(strings.ReplaceAll(err.Error(), "json: ", ""))
	}
	if dec.More() {
		return Identity{}, errors.New("trailing data after the JSON object")
	}
	return f.identity(), nil
}

// check validates fields on their own (no I/O).
func (id *Identity) check() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidIdentity, field, fmt.Sprintf(format, args...))
	}
	u, err := url.Parse(id.CAURL)
	switch {
	case id.CAURL == "":
		return bad("ca_url", "required: the https URL of `certctl serve`")
	case err != nil || u.Host == "":
		return bad("ca_url", "%q is not a URL", id.CAURL)
	case u.Scheme != "https":
		return bad("ca_url", "%q must use https", id.CAURL)
	}
	if id.CARoots == "" {
		return bad("ca_roots", "required: a PEM file with the CA's root certificate(s) (the system pool is never used)")
	}
	if id.Profile == "" {
		return bad("profile", "required: the CA's issuance profile, e.g. peer")
	}
	if len(id.Names) == 0 {
		return bad("names", "at least one DNS name, IP address or URI is required")
	}
	for _, n := range id.Names {
		if strings.TrimSpace(n) == "" || strings.ContainsAny(n, " \t\r\n") {
			return bad("names", "%q is not a name", n)
		}
	}
	if _, err := keys.ParseKeyType(id.KeyType); err != nil {
		return bad("key_type", "%v", err)
	}
	if id.Token != "" && id.TokenFile != "" {
		return bad("token", "set token or token_file, not both")
	}
	if id.RenewAt != 0 && (id.RenewAt <= 0 || id.RenewAt >= 1 || math.IsNaN(id.RenewAt)) {
		return bad("renew_at", "%v must be between 0 and 1 (a fraction of the lifetime)", id.RenewAt)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"jitter", id.Jitter}, {"retry_min", id.RetryMin}, {"retry_max", id.RetryMax}, {"enroll_timeout", id.EnrollTimeout}} {
		if d.v < 0 {
			return bad(d.name, "must not be negative")
		}
	}
	if id.RetryMin > 0 && id.RetryMax > 0 && id.RetryMax < id.RetryMin {
		return bad("retry_max", "%s is shorter than retry_min %s", id.RetryMax, id.RetryMin)
	}
	return nil
}

// withDefaults returns a copy with defaults filled in.
func (id Identity) withDefaults() Identity {
	id.Names = append([]string(nil), id.Names...)
	if id.RenewAt == 0 {
		id.RenewAt = DefaultRenewAt
	}
	if id.RetryMin == 0 {
		id.RetryMin = DefaultRetryMin
	}
	if id.RetryMax == 0 {
		id.RetryMax = max(DefaultRetryMax, id.RetryMin)
	}
	if id.EnrollTimeout == 0 {
		id.EnrollTimeout = DefaultEnrollTimeout
	}
	if id.CommonName == "" {
		for _, n := range id.Names {
			if !strings.Contains(n, ":") && net.ParseIP(n) == nil {
				id.CommonName = n
				break
			}
		}
	}
	return id
}

// memoryKey reports whether the key lives only in memory.
func (id *Identity) memoryKey() bool { return id.Key == "" || strings.EqualFold(id.Key, "memory") }

// pkcs11Key reports whether the key is a PKCS#11 URI.
func (id *Identity) pkcs11Key() bool {
	return len(id.Key) >= len("pkcs11:") && strings.EqualFold(id.Key[:len("pkcs11:")], "pkcs11:")
}
