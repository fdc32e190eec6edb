package pkitest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// EnvPKCS11Module names the environment variable that points the tests at a
// SoftHSM2 library installed somewhere unusual.
const EnvPKCS11Module = "CERTCTL_TEST_PKCS11_MODULE"

// softHSMModules are where Debian, Ubuntu, Fedora and Homebrew put SoftHSM2.
var softHSMModules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/opt/homebrew/lib/softhsm/libsofthsm2.so",
}

// errNoSoftHSM is the message when SoftHSM2 is missing.
var errNoSoftHSM = errors.New("pkitest: SoftHSM2 not found: run `make test` (installs softhsm2 and opensc) or `apt-get install softhsm2 opensc`; or set " + EnvPKCS11Module)

// SoftHSM is a throwaway SoftHSM2 token: its own configuration file and
// token directory, one initialised token. PKCS#11 libraries read their
// configuration once, at C_Initialize, so only one SoftHSM per process can be
// in use at a time: tests that use one cannot run in parallel (NewSoftHSM
// uses t.Setenv, which enforces that).
type SoftHSM struct {
	Module  string // path of libsofthsm2.so
	Dir     string // holds softhsm2.conf and tokens/
	Conf    string // SOFTHSM2_CONF for this token
	Label   string // token label
	PIN     string // user PIN
	SOPIN   string // security officer PIN
	PINFile string // a 0600 file holding PIN, for pin-source=file:…
}

// NewSoftHSM makes a fresh token in t.TempDir() and points SOFTHSM2_CONF at
// it for the rest of the test (t.Setenv). It fails the test, never skips it,
// when SoftHSM2 is not installed.
func NewSoftHSM(t testing.TB) *SoftHSM {
	t.Helper()
	dir := t.TempDir()
	if !softHSMSafePath(dir) {
		// Sub-test and sub-benchmark names ("key=hsm") end up in TempDir,
		// and SoftHSM's configuration parser splits lines at "=".
		var err error
		if dir, err = os.MkdirTemp("", "certctl-softhsm-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	h, err := InitSoftHSM(dir, "certctl-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", h.Conf)
	return h
}

// InitSoftHSM makes a fresh SoftHSM2 token labelled label in dir (which must
// exist) without touching the process environment: callers that start
// subprocesses give them h.Env(). The PINs are fixed test values.
func InitSoftHSM(dir, label string) (*SoftHSM, error) {
	mod, err := SoftHSMModule()
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		return nil, errNoSoftHSM
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if !softHSMSafePath(dir) {
		return nil, fmt.Errorf("pkitest: SoftHSM cannot use directory %q: its configuration file format cannot hold \"=\", \"#\" or spaces in paths", dir)
	}
	h := &SoftHSM{
		Module: mod, Dir: dir, Conf: filepath.Join(dir, "softhsm2.conf"),
		Label: label, PIN: "1234", SOPIN: "12345678", PINFile: filepath.Join(dir, "user.pin"),
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(h.Conf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(h.PINFile, []byte(h.PIN+"\n"), 0o600); err != nil {
		return nil, err
	}
	if _, err := h.run("softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", h.SOPIN, "--pin", h.PIN); err != nil {
		return nil, err
	}
	return h, nil
}

func softHSMSafePath(p string) bool { return !strings.ContainsAny(p, "=# \t\n") }

// SoftHSMModule returns the path of libsofthsm2.so: $CERTCTL_TEST_PKCS11_MODULE,
// or the first of the usual places that exists.
func SoftHSMModule() (string, error) {
	if p := os.Getenv(EnvPKCS11Module); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("pkitest: %s=%s: %w", EnvPKCS11Module, p, err)
		}
		return p, nil
	}
	for _, p := range softHSMModules {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errNoSoftHSM
}

// Env returns the environment entries a subprocess needs to see this token.
func (h *SoftHSM) Env() []string { return []string{"SOFTHSM2_CONF=" + h.Conf} }

// KeyURI returns a PKCS#11 URI for object on this token, with module-path
// and pin-source (the PIN file) but not the PIN itself.
func (h *SoftHSM) KeyURI(object string) string {
	return fmt.Sprintf("pkcs11:token=%s;object=%s?module-path=%s&pin-source=file:%s", h.Label, object, h.Module, h.PINFile)
}

// Tool runs pkcs11-tool (OpenSC) logged in to this token with args appended,
// e.g. Tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", "k", "--id", "01").
func (h *SoftHSM) Tool(args ...string) (string, error) {
	if _, err := exec.LookPath("pkcs11-tool"); err != nil {
		return "", errors.New("pkitest: pkcs11-tool not found: run `make test` (installs opensc) or `apt-get install opensc`")
	}
	base := []string{"--module", h.Module, "--token-label", h.Label, "--login", "--pin", h.PIN}
	return h.run("pkcs11-tool", append(base, args...)...)
}

// MustTool is Tool that fails the test on error.
func (h *SoftHSM) MustTool(t testing.TB, args ...string) string {
	t.Helper()
	out, err := h.Tool(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (h *SoftHSM) run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), h.Env()...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		// The PINs are test values, but keep them out of messages anyway.
		cmdline := strings.ReplaceAll(strings.ReplaceAll(strings.Join(args, " "), h.SOPIN, "***"), h.PIN, "***")
		return out.String(), fmt.Errorf("pkitest: %s %s: %v\n%s", name, cmdline, err, out.String())
	}
	return out.String(), nil
}
