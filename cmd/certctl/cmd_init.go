package main

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
	"github.com/certctl/certctl/keys/pkcs11"
	"github.com/certctl/certctl/server/cfsslapi"
)

const defaultCAName = "certctl Internal CA"

// defaultRootValidity: ten years. The root only signs intermediates and can
// be kept offline, so a long life costs little; the intermediate (5 years,
// profile "intermediate") does the daily signing.
const defaultRootValidity = 10 * 365 * 24 * time.Hour

const initDoc = `Create a root CA and an issuing intermediate in DIR, and record both
certificates in the certificate database.

Writes DIR/certctl.yaml (unless present: an existing file is used as is),
root.crt, root.key, intermediate.crt and intermediate.key (keys mode 0600).
Only the intermediate key is used to issue: root.key may be moved offline
afterwards. With a postgres:// --db the schema is migrated first.

HSM: --key 'pkcs11:token=T;object=LABEL?module-path=LIB&pin-source=file:PIN'
creates the intermediate key on a PKCS#11 token (or uses the key already
there under that label) instead of writing intermediate.key; the key never
leaves the token. The URI (without any PIN) is recorded as
ca.intermediate_key in certctl.yaml, and every later command signs through
the token. --root-key does the same for the root key. The PIN comes from the
URI's pin-source file or from CERTCTL_PKCS11_PIN; a pin-value on the command
line is refused (process listings would show it).`

func cmdInit(ctx context.Context, e *env, args []string) (err error) {
	fs := newFlagSet(e, "init", "", initDoc)
	var c common
	c.register(fs, e)
	keyType := fs.String("key-type", "", "key `TYPE` for root and intermediate: "+joinKeyTypes()+" (default ecdsa-p256, or ca.key_type from certctl.yaml)")
	name := fs.String("name", "", "CA `NAME`: the root's common name; the intermediate is \"NAME Intermediate\" (default \""+defaultCAName+"\")")
	jsonOut := fs.Bool("json", false, "print the result as JSON")
	verbose := fs.Bool("verbose", false, "log progress to stderr")
	keyFlag := fs.String("key", "", "make the intermediate key on an HSM: a pkcs11: `URI` (token=…;object=LABEL?module-path=…&pin-source=file:…); an existing key with that label is used (default: ca.intermediate_key from certctl.yaml, else the file intermediate.key)")
	rootKeyFlag := fs.String("root-key", "", "make the root key on an HSM too: a pkcs11: `URI` (default: the file root.key)")
	cfsslConfig := fs.String("cfssl-config", "", "import signing profiles and authsign keys from CFSSL's ca-config.json `FILE` (new configuration only)")
	module := fs.String("module", e.getenv(envPKCS11Module), "PKCS#11 library `PATH` for --key/--root-key URIs without module-path (env "+envPKCS11Module+")")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("init takes no arguments, got %q", fs.Args())
	}
	log := newLogger(e, *verbose)
	var interURI, rootURI *pkcs11.URI
	if *keyFlag != "" {
		if interURI, err = parseKeyFlag("key", *keyFlag, *module); err != nil {
			return err
		}
	}
	if *rootKeyFlag != "" {
		if rootURI, err = parseKeyFlag("root-key", *rootKeyFlag, *module); err != nil {
			return err
		}
	}

	for _, f := range []string{intermediateCertFile, intermediateKeyFile, rootCertFile, rootKeyFile} {
		if _, err := os.Stat(c.path(f)); err == nil {
			return fmt.Errorf("%s already holds a CA (%s exists): use another --dir, or remove the directory to start over", c.dir, f)
		}
	}
	_, statErr := os.Stat(c.dir)
	dirExisted := statErr == nil
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", c.dir, err)
	}
	// On failure leave nothing behind that this init created: a directory
	// it made, or the embedded database it started.
	dbPath := c.path(sqliteFile)
	_, statErr = os.Stat(dbPath)
	dbExisted := statErr == nil
	defer func() {
		if err == nil {
			return
		}
		if !dirExisted {
			os.RemoveAll(c.dir)
			return
		}
		if !dbExisted {
			for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
				os.Remove(dbPath + suffix)
			}
		}
	}()

	cfg, writeConfig, err := initConfig(&c, *name, *keyType)
	if err != nil {
		return err
	}
	if writeConfig && c.db != "" {
		// Remember the database so later commands need no --db.
		cfg.Database = c.db
	}
	if *cfsslConfig != "" {
		if !writeConfig {
			return usageError("--cfssl-config: %s already exists; import into a new directory, or merge the profiles by hand", c.path(configFile))
		}
		if err := importCFSSLConfig(e, cfg, *cfsslConfig); err != nil {
			return err
		}
	}
	kt, err := keys.ParseKeyType(cfg.CA.KeyType)
	if err != nil {
		return usageError("%v", err)
	}
	if interURI, err = reconcileKeyRef(cfg, writeConfig, interURI); err != nil {
		return err
	}
	profiles, err := buildProfiles(cfg)
	if err != nil {
		return err
	}
	interProfile, ok := profiles["intermediate"]
	if !ok || !interProfile.IsCA() {
		return fmt.Errorf("%s: init needs a CA profile named \"intermediate\"", configFile)
	}
	st, err := openStore(ctx, c.dbURL(cfg), true, log)
	if err != nil {
		return err
	}
	defer st.Close()

	// HSM keys: each library is opened once; keys made on a token stay
	// there even if init fails (the next init finds and uses them).
	hsm := newHSMModules(log)
	defer hsm.Close()
	var made []string
	defer func() {
		if err != nil && len(made) > 0 {
			err = fmt.Errorf("%w\nnote: init generated %s on the HSM and left it there; running init again uses it", err, strings.Join(made, " and "))
		}
	}()
	hsmOpts := hsmOptions(e.getenv, log)
	strictType := *keyType != ""
	var notes []string

	// Everything is made and recorded in the database before any file is
	// written: a failure leaves no half-made CA directory behind.
	log.Info("generating root key", "type", kt)
	rootKey, note, err := initKey(ctx, hsm, rootURI, kt, strictType, hsmOpts, &made)
	if err != nil {
		return fmt.Errorf("root key: %w", err)
	}
	if note != "" {
		notes = append(notes, "root "+note)
	}
	rootValidity := time.Duration(cfg.CA.RootValidity)
	if rootValidity == 0 {
		rootValidity = defaultRootValidity
	}
	now := time.Now()
	root, err := ca.CreateRoot(ctx, st, rootKey, issuance.RootConfig{
		CommonName: cfg.CA.Name,
		Validity:   rootValidity,
		MaxPathLen: 1, // root -> intermediate -> leaf
	}, "cli:init", now, nil)
	if err != nil {
		return err
	}
	rootIssuer, err := issuance.NewIssuer(root, rootKey, issuance.IssuerConfig{})
	if err != nil {
		return err
	}
	log.Info("generating intermediate key", "type", kt)
	interKey, note, err := initKey(ctx, hsm, interURI, kt, strictType, hsmOpts, &made)
	if err != nil {
		return fmt.Errorf("intermediate key: %w", err)
	}
	if note != "" {
		notes = append(notes, "intermediate "+note)
	}
	rootKeyDesc, interKeyDesc := c.path(rootKeyFile), c.path(intermediateKeyFile)
	if hs, ok := rootKey.(*pkcs11.Signer); ok {
		rootKeyDesc = hs.URI().String()
		cfg.CA.RootKey = rootKeyDesc
	}
	if hs, ok := interKey.(*pkcs11.Signer); ok {
		interKeyDesc = hs.URI().String()
		cfg.CA.IntermediateKey = interKeyDesc
		if t, err := keys.TypeOf(hs.Public()); err == nil {
			cfg.CA.KeyType = string(t)
		}
	}
	rootCA, err := ca.New(rootIssuer, nil, map[string]*issuance.Profile{"intermediate": interProfile}, st, ca.WithLogger(log))
	if err != nil {
		return err
	}
	req := &issuance.Request{PublicKey: interKey.Public()}
	req.Subject.CommonName = cfg.CA.Name + " Intermediate"
	inter, err := rootCA.Issue(ctx, ca.Request{Profile: "intermediate", Request: req, Requester: "cli:init"})
	if err != nil {
		return fmt.Errorf("issue intermediate: %w", err)
	}

	w := &fileWriter{}
	if err := w.writeAll(c, cfg, writeConfig, rootKey, interKey, root.Raw, inter.DER); err != nil {
		w.rollback()
		return err
	}

	rootFP := sha256.Sum256(root.Raw)
	if *jsonOut {
		return writeJSON(e.stdout, map[string]any{
			"dir":                      c.dir,
			"database":                 redact(c.dbURL(cfg)),
			"root_certificate":         c.path(rootCertFile),
			"root_key":                 rootKeyDesc,
			"root_serial":              hex.EncodeToString(root.SerialNumber.Bytes()),
			"root_sha256":              hex.EncodeToString(rootFP[:]),
			"intermediate_certificate": c.path(intermediateCertFile),
			"intermediate_key":         interKeyDesc,
			"intermediate_serial":      hex.EncodeToString(inter.Serial.Bytes()),
			"key_type":                 string(kt),
			"notes":                    notes,
		})
	}
	fmt.Fprintf(e.stdout, `Created CA %q (%s) in %s
  root:         %s (SHA-256 %s)
  intermediate: %s
  database:     %s
The root key (%s) is not needed for issuing: keep it offline.
Next: certctl issue --dir %s --cn NAME.internal
`, cfg.CA.Name, kt, c.dir, c.path(rootCertFile), hex.EncodeToString(rootFP[:]), c.path(intermediateCertFile),
		redact(c.dbURL(cfg)), rootKeyDesc, c.dir)
	for _, n := range notes {
		fmt.Fprintln(e.stdout, n)
	}
	if _, ok := interKey.(*pkcs11.Signer); ok {
		fmt.Fprintf(e.stdout, "The intermediate key stays on the HSM: %s\n(recorded as ca.intermediate_key in %s)\n", interKeyDesc, c.path(configFile))
	}
	return nil
}

// initConfig loads DIR/certctl.yaml or builds the default one; flags given
// on the command line override the CA name and key type.
func initConfig(c *common, name, keyType string) (cfg *Config, write bool, err error) {
	b, err := os.ReadFile(c.path(configFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		cfg, write = defaultConfig(defaultCAName, string(keys.ECDSAP256)), true
	case err != nil:
		return nil, false, fmt.Errorf("read config: %w", err)
	default:
		if cfg, err = parseConfig(c.path(configFile), b); err != nil {
			return nil, false, err
		}
	}
	if name != "" {
		cfg.CA.Name = name
	}
	if cfg.CA.Name == "" {
		cfg.CA.Name = defaultCAName
	}
	if keyType != "" {
		cfg.CA.KeyType = keyType
	}
	if cfg.CA.KeyType == "" {
		cfg.CA.KeyType = string(keys.ECDSAP256)
	}
	// An existing file is never rewritten (it may carry the operator's
	// comments); the flags then apply to this init only.
	return cfg, write, nil
}

// fileWriter writes the CA files and can remove what it wrote.
type fileWriter struct{ written []string }

func (w *fileWriter) writeAll(c common, cfg *Config, writeConfig bool, rootKey, interKey crypto.Signer, rootDER, interDER []byte) error {
	if err := w.key(c.path(rootKeyFile), rootKey); err != nil {
		return err
	}
	if err := w.key(c.path(intermediateKeyFile), interKey); err != nil {
		return err
	}
	if err := w.file(c.path(rootCertFile), pemCert(rootDER), 0o644); err != nil {
		return err
	}
	if err := w.file(c.path(intermediateCertFile), pemCert(interDER), 0o644); err != nil {
		return err
	}
	if writeConfig {
		b, err := marshalConfig(cfg)
		if err != nil {
			return err
		}
		// 0600: the database URL may carry a password.
		if err := w.replace(c.path(configFile), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (w *fileWriter) key(path string, k crypto.Signer) error {
	if _, onHSM := k.(*pkcs11.Signer); onHSM {
		return nil // it never leaves the token
	}
	if err := keys.WriteFile(path, k); err != nil {
		return err
	}
	w.written = append(w.written, path)
	return nil
}

func (w *fileWriter) file(path string, data []byte, mode os.FileMode) error {
	if err := writeFileExcl(path, data, mode); err != nil {
		return err
	}
	w.written = append(w.written, path)
	return nil
}

// replace writes a file that may exist (the config), atomically.
func (w *fileWriter) replace(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func (w *fileWriter) rollback() {
	for _, p := range w.written {
		os.Remove(p)
	}
}

// writeFileExcl creates path (it must not exist), writes and syncs it.
func writeFileExcl(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists: refusing to overwrite it", path)
		}
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func writeJSON(w interface{ Write([]byte) (int, error) }, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func joinKeyTypes() string {
	out := ""
	for i, t := range keys.KeyTypes() {
		if i > 0 {
			out += ", "
		}
		out += t
	}
	return out
}

// initKey makes a CA key: in software when u is nil, else on the token u
// names, or, when the token already has a key under that label, that key
// (strict: it must be of type kt). note says which, for the output.
func initKey(ctx context.Context, hsm *hsmModules, u *pkcs11.URI, kt keys.KeyType, strict bool, opts []pkcs11.Option, made *[]string) (crypto.Signer, string, error) {
	if u == nil {
		k, err := keys.Generate(kt)
		return k, "", err
	}
	m, err := hsm.get(u.ModulePath)
	if err != nil {
		return nil, "", err
	}
	s, err := m.GenerateKey(ctx, u, kt, opts...)
	if err == nil {
		*made = append(*made, s.URI().String())
		return s, fmt.Sprintf("key: generated %s key %q on token %q (not exportable)", kt, u.Object, u.Token), nil
	}
	if !errors.Is(err, pkcs11.ErrKeyExists) {
		return nil, "", hsmHint(err)
	}
	s, err = m.OpenSigner(ctx, u, opts...)
	if err != nil {
		return nil, "", hsmHint(err)
	}
	got, err := keys.TypeOf(s.Public())
	if err != nil {
		return nil, "", err
	}
	if strict && got != kt {
		return nil, "", usageError("token %q already has key %q of type %s, not --key-type %s: use another object= label, or drop --key-type", u.Token, u.Object, got, kt)
	}
	return s, fmt.Sprintf("key: using the existing %s key %q on token %q (found there, not generated)", got, u.Object, u.Token), nil
}

// reconcileKeyRef decides the intermediate's HSM key: --key, else a pkcs11:
// ca.intermediate_key in an existing certctl.yaml. An existing file is never
// rewritten, so it must already name the key given with --key.
func reconcileKeyRef(cfg *Config, writeConfig bool, flag *pkcs11.URI) (*pkcs11.URI, error) {
	fromCfg := cfg.CA.IntermediateKey
	if flag == nil {
		if fromCfg == "" || !isPKCS11(fromCfg) {
			return nil, nil
		}
		u, err := pkcs11.ParseURI(fromCfg)
		if err != nil {
			return nil, fmt.Errorf("%s: ca.intermediate_key: %w", configFile, err)
		}
		if u.ModulePath == "" {
			return nil, fmt.Errorf("%s: ca.intermediate_key has no module-path: add ?module-path=/path/to/pkcs11-library.so", configFile)
		}
		return u, nil
	}
	if !writeConfig {
		cu, err := pkcs11.ParseURI(fromCfg)
		if fromCfg == "" || err != nil || cu.WithoutPIN().String() != flag.String() {
			return nil, fmt.Errorf("%s exists and is never rewritten, but its ca.intermediate_key is not --key: set `intermediate_key: %q` under ca: in it, or run init in a new --dir", configFile, flag.String())
		}
	}
	return flag, nil
}

// importCFSSLConfig converts CFSSL's ca-config.json into cfg's profiles and
// cfssl: section. certctl's default profiles stay unless the CFSSL file
// has one of the same name; CFSSL profiles get the default server profile's name policy (CFSSL
// profiles allow any name; certctl profiles list what they allow: widen
// them in certctl.yaml on purpose).
func importCFSSLConfig(e *env, cfg *Config, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--cfssl-config: %w", err)
	}
	conv, err := cfsslapi.ProfilesFromCFSSLConfig(data, cfsslapi.ImportOptions{
		Names: issuance.DefaultProfiles()["server"].Names,
		ResolveKey: func(ref string) (string, error) {
			switch {
			case strings.HasPrefix(ref, "env:"):
				v := e.getenv(strings.TrimPrefix(ref, "env:"))
				if v == "" {
					return "", fmt.Errorf("environment variable %s is empty", strings.TrimPrefix(ref, "env:"))
				}
				return v, nil
			case strings.HasPrefix(ref, "file:"):
				b, err := os.ReadFile(strings.TrimPrefix(ref, "file:"))
				return strings.TrimSpace(string(b)), err
			}
			return "", fmt.Errorf("unsupported key reference %q", ref)
		},
	})
	if err != nil {
		return fmt.Errorf("--cfssl-config %s: %w", path, err)
	}
	for name, pc := range conv.Profiles {
		cfg.Profiles[name] = pc // CFSSL's "intermediate" or "ocsp" replace certctl's
	}
	cfg.CFSSL.DefaultProfile = conv.DefaultProfile
	cfg.CFSSL.ProfileAuthKeys = conv.ProfileAuthKeys
	if len(conv.AuthKeys) > 0 {
		cfg.CFSSL.AuthKeys = map[string]string{}
		for name, k := range conv.AuthKeys {
			cfg.CFSSL.AuthKeys[name] = hex.EncodeToString(k) // certctl.yaml is 0600
		}
	}
	for _, w := range conv.Warnings {
		fmt.Fprintf(e.stderr, "certctl: --cfssl-config: %s\n", w)
	}
	fmt.Fprintf(e.stderr, "certctl: imported %d CFSSL profile(s) from %s\n", len(conv.Profiles), path)
	return nil
}
