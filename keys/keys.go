// Package keys generates, stores and loads the private keys certctl signs
// with, and returns them as [crypto.Signer] values. It knows nothing about
// certificates or CAs: package issuance decides what a key may sign.
//
// # Key types
//
// Only the key types named by [KeyType] are supported: ECDSA on P-256 (the
// default) and P-384, RSA with 2048, 3072 or 4096-bit moduli, and Ed25519.
// Every function that accepts a key (ParsePEM, LoadFile, TypeOf) refuses
// anything else, so a weak key (RSA-1024) cannot enter the system.
//
// # Files
//
// [WriteFile] stores a key as a PKCS#8 PEM file created exclusively with mode
// 0600, and never overwrites an existing key ([ErrKeyExists]). [LoadFile]
// reads PKCS#8, SEC 1 ("EC PRIVATE KEY") and PKCS#1 ("RSA PRIVATE KEY") PEM
// files and refuses files that other users can write.
//
// All functions are safe for concurrent use. The returned signers are the
// standard library's own key types, which are safe for concurrent use too.
package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// KeyType names a supported key algorithm and size.
type KeyType string

// Supported key types.
const (
	ECDSAP256 KeyType = "ecdsa-p256" // the default: small, fast, universally supported in TLS
	ECDSAP384 KeyType = "ecdsa-p384"
	RSA2048   KeyType = "rsa-2048"
	RSA3072   KeyType = "rsa-3072"
	RSA4096   KeyType = "rsa-4096"
	Ed25519   KeyType = "ed25519"
)

// allTypes is the canonical order used by KeyTypes and in error messages.
var allTypes = [...]KeyType{ECDSAP256, ECDSAP384, RSA2048, RSA3072, RSA4096, Ed25519}

// ErrKeyExists is returned (wrapped, with the path) by WriteFile when the
// destination already exists: keys are never overwritten.
var ErrKeyExists = errors.New("keys: key file already exists")

// ErrUnsupportedKey is returned (wrapped, with details) for keys whose
// algorithm or size is not one of the supported KeyTypes.
var ErrUnsupportedKey = errors.New("keys: unsupported key")

// maxFileSize bounds what LoadFile reads: a PEM RSA-4096 key is about 3.3 KiB.
const maxFileSize = 64 << 10

// KeyTypes returns the names of the supported key types, default first.
func KeyTypes() []string {
	s := make([]string, len(allTypes))
	for i, t := range allTypes {
		s[i] = string(t)
	}
	return s
}

// ParseKeyType parses a key type name (case-insensitive). The empty string
// means the default, ECDSAP256.
func ParseKeyType(s string) (KeyType, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return ECDSAP256, nil
	}
	for _, t := range allTypes {
		if s == string(t) {
			return t, nil
		}
	}
	return "", fmt.Errorf("keys: unknown key type %q: accepted values are %s", s, strings.Join(KeyTypes(), ", "))
}

// String returns the key type name.
func (t KeyType) String() string { return string(t) }

// Generate creates a new key of type t using crypto/rand.
func Generate(t KeyType) (crypto.Signer, error) {
	var (
		s   crypto.Signer
		err error
	)
	switch t {
	case ECDSAP256:
		s, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		s, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RSA2048:
		s, err = rsa.GenerateKey(rand.Reader, 2048)
	case RSA3072:
		s, err = rsa.GenerateKey(rand.Reader, 3072)
	case RSA4096:
		s, err = rsa.GenerateKey(rand.Reader, 4096)
	case Ed25519:
		_, s, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("keys: generate: unknown key type %q: accepted values are %s", string(t), strings.Join(KeyTypes(), ", "))
	}
	if err != nil {
		return nil, fmt.Errorf("keys: generate %s: %w", t, err)
	}
	return s, nil
}

// TypeOf reports the KeyType of a public key. Keys of other algorithms,
// curves or sizes (including RSA keys shorter than 2048 bits) return an error
// wrapping ErrUnsupportedKey.
func TypeOf(pub crypto.PublicKey) (KeyType, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return "", fmt.Errorf("%w: empty ECDSA key", ErrUnsupportedKey)
		}
		switch k.Curve {
		case elliptic.P256():
			return ECDSAP256, nil
		case elliptic.P384():
			return ECDSAP384, nil
		}
		return "", fmt.Errorf("%w: ECDSA curve %s (supported: P-256, P-384)", ErrUnsupportedKey, k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return "", fmt.Errorf("%w: empty RSA key", ErrUnsupportedKey)
		}
		switch bits := k.N.BitLen(); bits {
		case 2048:
			return RSA2048, nil
		case 3072:
			return RSA3072, nil
		case 4096:
			return RSA4096, nil
		default:
			if bits < 2048 {
				return "", fmt.Errorf("%w: RSA key of %d bits is too small (minimum 2048)", ErrUnsupportedKey, bits)
			}
			return "", fmt.Errorf("%w: RSA key of %d bits (supported: 2048, 3072, 4096)", ErrUnsupportedKey, bits)
		}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "", fmt.Errorf("%w: Ed25519 key of %d bytes", ErrUnsupportedKey, len(k))
		}
		return Ed25519, nil
	case nil:
		return "", fmt.Errorf("%w: no public key", ErrUnsupportedKey)
	default:
		return "", fmt.Errorf("%w: key type %T (supported: %s)", ErrUnsupportedKey, pub, strings.Join(KeyTypes(), ", "))
	}
}

// MarshalPEM encodes a software key as a PKCS#8 "PRIVATE KEY" PEM block.
// Signers whose private part is not in memory (HSM keys) return an error.
func MarshalPEM(s crypto.Signer) ([]byte, error) {
	if s == nil {
		return nil, errors.New("keys: marshal: nil key")
	}
	if _, err := TypeOf(s.Public()); err != nil {
		return nil, fmt.Errorf("keys: marshal: %w", err)
	}
	switch s.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
	default:
		return nil, fmt.Errorf("keys: marshal: %T is not a software key that can be exported", s)
	}
	der, err := x509.MarshalPKCS8PrivateKey(s)
	if err != nil {
		return nil, fmt.Errorf("keys: marshal: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePEM parses a PEM private key: PKCS#8 ("PRIVATE KEY"), SEC 1
// ("EC PRIVATE KEY", optionally preceded by an "EC PARAMETERS" block as
// `openssl ecparam -genkey` writes) or PKCS#1 ("RSA PRIVATE KEY"). The data
// must hold exactly one key and nothing but whitespace after it. Encrypted
// keys are refused. The key must be of a supported KeyType.
//
// ParsePEM is meant for untrusted input: it never panics.
func ParsePEM(data []byte) (crypto.Signer, error) {
	s, err := parsePEM(data)
	if err != nil {
		return nil, fmt.Errorf("keys: parse: %w", err)
	}
	return s, nil
}

func parsePEM(data []byte) (crypto.Signer, error) {
	var block *pem.Block
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "EC PARAMETERS" && block == nil {
			continue // the curve is repeated inside the SEC 1 key itself
		}
		if block != nil {
			return nil, fmt.Errorf("more than one PEM block after %q (found %q): put one key per file", block.Type, b.Type)
		}
		block = b
	}
	if block == nil {
		return nil, errors.New("no PEM block found (expected \"PRIVATE KEY\", \"EC PRIVATE KEY\" or \"RSA PRIVATE KEY\")")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("trailing data after the PEM block")
	}
	if _, ok := block.Headers["Proc-Type"]; ok {
		return nil, fmt.Errorf("%q block is encrypted (legacy PEM encryption); decrypt it first, e.g. `openssl pkey -in KEY -out KEY.plain`", block.Type)
	}

	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("the key is encrypted (PKCS#8 \"ENCRYPTED PRIVATE KEY\"); decrypt it first, e.g. `openssl pkey -in KEY -out KEY.plain`")
	case "CERTIFICATE", "PUBLIC KEY", "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST":
		return nil, fmt.Errorf("found a %q PEM block, not a private key", block.Type)
	default:
		return nil, fmt.Errorf("unsupported PEM block type %q (expected \"PRIVATE KEY\", \"EC PRIVATE KEY\" or \"RSA PRIVATE KEY\")", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%q block: %v", block.Type, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %T cannot sign", ErrUnsupportedKey, key)
	}
	if _, err := TypeOf(s.Public()); err != nil {
		return nil, err
	}
	return s, nil
}

// WriteFile writes s to path as a PKCS#8 PEM file. The file is created
// exclusively (an existing file is never overwritten: the error wraps
// ErrKeyExists) with mode 0600, and synced to disk before WriteFile returns.
func WriteFile(path string, s crypto.Signer) (err error) {
	data, err := MarshalPEM(s)
	if err != nil {
		return fmt.Errorf("keys: write %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("keys: write %s: %w: refusing to overwrite it", path, ErrKeyExists)
		}
		return fmt.Errorf("keys: write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			// Do not leave a truncated key behind: a later run would refuse
			// to overwrite it and LoadFile would fail on it.
			os.Remove(path)
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("keys: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("keys: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("keys: close %s: %w", path, err)
	}
	// Make the new directory entry durable too. Best effort: some file
	// systems and platforms cannot sync a directory, and the key itself is
	// already on disk.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// LoadFile reads and parses a PEM private key file (see ParsePEM). It refuses
// a file that group or other users can write (on Unix), since whoever can
// replace the key can sign as us. Group- or world-readable files are loaded;
// callers that want to warn about them can check the mode with IsPrivate.
func LoadFile(path string) (crypto.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keys: load %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keys: load %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("keys: load %s: not a regular file", path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("keys: load %s: file is writable by group or others (mode %04o); run `chmod go-w %s`", path, fi.Mode().Perm(), path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("keys: load %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("keys: load %s: file larger than %d bytes is not a key", path, maxFileSize)
	}
	s, err := parsePEM(data)
	if err != nil {
		return nil, fmt.Errorf("keys: load %s: %w", path, err)
	}
	return s, nil
}

// IsPrivate reports whether a key file mode grants no permissions to group or
// others (Unix). LoadFile only refuses writable files; commands can use
// IsPrivate to warn about readable ones.
func IsPrivate(mode fs.FileMode) bool {
	return mode.Perm()&0o077 == 0
}
