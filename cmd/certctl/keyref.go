package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/certctl/certctl/keys"
	"github.com/certctl/certctl/keys/pkcs11"
)

// Environment variables for HSM keys.
const (
	// envPKCS11PIN holds the token's user PIN when the key URI has no
	// pin-source. (An environment variable, unlike an argument, does not
	// show in process listings.)
	envPKCS11PIN = "CERTCTL_PKCS11_PIN"
	// envPKCS11Module is the default PKCS#11 library for URIs without
	// module-path.
	envPKCS11Module = "CERTCTL_PKCS11_MODULE"
)

// isPKCS11 reports whether a key reference is a PKCS#11 URI rather than a
// file path.
func isPKCS11(ref string) bool {
	return len(ref) >= len("pkcs11:") && strings.EqualFold(ref[:len("pkcs11:")], "pkcs11:")
}

// parseKeyFlag parses a pkcs11: URI given on the command line. It refuses
// pin-value (it would show in process listings) and fills in module-path
// from module when the URI has none, so the URI recorded in certctl.yaml is
// complete.
func parseKeyFlag(flagName, ref, module string) (*pkcs11.URI, error) {
	u, err := pkcs11.ParseURI(ref)
	if err != nil {
		return nil, usageError("--%s: %v", flagName, err)
	}
	if u.HasPINValue() {
		return nil, usageError("--%s: the URI carries pin-value: a PIN on the command line shows in process listings; use pin-source=file:PATH in the URI or set %s", flagName, envPKCS11PIN)
	}
	if u.ModulePath == "" {
		if module == "" {
			return nil, usageError("--%s: the URI has no module-path: add ?module-path=/path/to/pkcs11-library.so, or pass --module (env %s)", flagName, envPKCS11Module)
		}
		u.ModulePath = module
	}
	return u, nil
}

// hsmOptions are the pkcs11 options every command uses: the PIN from the
// environment (used only when the URI names none) and the logger.
func hsmOptions(getenv func(string) string, log *slog.Logger, extra ...pkcs11.Option) []pkcs11.Option {
	opts := []pkcs11.Option{pkcs11.WithLogger(log)}
	if pin := getenv(envPKCS11PIN); pin != "" {
		opts = append(opts, pkcs11.WithPIN(pin))
	}
	return append(opts, extra...)
}

// hsmHint adds what to do next to the HSM errors a user can fix.
func hsmHint(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pkcs11.ErrNoPIN):
		return fmt.Errorf("%w\nset %s or add pin-source=file:PATH to the key URI", err, envPKCS11PIN)
	case errors.Is(err, pkcs11.ErrWrongPIN):
		return fmt.Errorf("%w\ncheck %s or the key URI's pin-source file (tokens lock the PIN after a few wrong tries)", err, envPKCS11PIN)
	case errors.Is(err, pkcs11.ErrModule):
		return fmt.Errorf("%w\ncheck module-path in the key URI (or --module / %s)", err, envPKCS11Module)
	case errors.Is(err, pkcs11.ErrTokenNotFound), errors.Is(err, pkcs11.ErrKeyNotFound):
		return fmt.Errorf("%w\nrun `certctl hsm list --module PATH` to see the tokens and keys", err)
	}
	return err
}

// hsmModules opens each PKCS#11 library once per process (PKCS#11 allows
// one initialisation per process), for commands that use several keys.
type hsmModules struct {
	log  *slog.Logger
	mods map[string]*pkcs11.Module
}

func newHSMModules(log *slog.Logger) *hsmModules {
	return &hsmModules{log: log, mods: map[string]*pkcs11.Module{}}
}

func (h *hsmModules) get(path string) (*pkcs11.Module, error) {
	if m, ok := h.mods[path]; ok {
		return m, nil
	}
	m, err := pkcs11.OpenModule(path, pkcs11.WithLogger(h.log))
	if err != nil {
		return nil, hsmHint(err)
	}
	h.mods[path] = m
	return m, nil
}

// Close closes every module and the signers still open on them.
func (h *hsmModules) Close() {
	for _, m := range h.mods {
		m.Close()
	}
}

// openIntermediateKey returns the signer of the issuing key: the pkcs11:
// URI in ca.intermediate_key, else the key file (ca.intermediate_key if it
// is a path, relative to DIR, else DIR/intermediate.key). An HSM key must
// match the intermediate certificate. Call close when done.
func openIntermediateKey(ctx context.Context, c *common, cfg *Config, log *slog.Logger, cert crypto.PublicKey) (s crypto.Signer, close func() error, err error) {
	ref := cfg.CA.IntermediateKey
	if ref != "" && isPKCS11(ref) {
		getenv := c.getenv
		if getenv == nil {
			getenv = func(string) string { return "" }
		}
		hs, err := pkcs11.Open(ctx, ref, hsmOptions(getenv, log, pkcs11.WithModulePath(getenv(envPKCS11Module)), pkcs11.WithPublicKey(cert))...)
		if err != nil {
			return nil, nil, fmt.Errorf("load intermediate key from %s: %w", configFile, hsmHint(err))
		}
		return hs, hs.Close, nil
	}
	path := c.path(intermediateKeyFile)
	if ref != "" {
		path = ref
		if !filepath.IsAbs(path) {
			path = c.path(ref)
		}
	}
	fk, err := keys.LoadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("load intermediate key: %w", err)
	}
	return fk, func() error { return nil }, nil
}
