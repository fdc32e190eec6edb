package keys

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// testKeys generates one key per type once per test binary: RSA-4096
// generation is slow under -race.
var testKeys = sync.OnceValue(func() map[KeyType]crypto.Signer {
	m := map[KeyType]crypto.Signer{}
	for _, t := range allTypes {
		s, err := Generate(t)
		if err != nil {
			panic(err)
		}
		m[t] = s
	}
	return m
})

type equaler interface {
	Equal(crypto.PrivateKey) bool
}

func TestParseKeyType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    KeyType
		wantErr bool
	}{
		{"", ECDSAP256, false},
		{"ecdsa-p256", ECDSAP256, false},
		{"ECDSA-P384", ECDSAP384, false},
		{" rsa-2048 ", RSA2048, false},
		{"rsa-3072", RSA3072, false},
		{"rsa-4096", RSA4096, false},
		{"ed25519", Ed25519, false},
		{"rsa-1024", "", true},
		{"ecdsa-p521", "", true},
		{"x25519", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseKeyType(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseKeyType(%q) = %v, want error", tt.in, got)
				}
				// The error must tell the user what is accepted.
				for _, name := range KeyTypes() {
					if !strings.Contains(err.Error(), name) {
						t.Errorf("error %q does not list %q", err, name)
					}
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseKeyType(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestKeyTypes(t *testing.T) {
	t.Parallel()
	got := KeyTypes()
	if len(got) != 6 || got[0] != string(ECDSAP256) {
		t.Fatalf("KeyTypes() = %v, want 6 types, default first", got)
	}
	for _, name := range got {
		if kt, err := ParseKeyType(name); err != nil || string(kt) != name {
			t.Errorf("ParseKeyType(%q) = %v, %v", name, kt, err)
		}
	}
}

func TestGenerateAndTypeOf(t *testing.T) {
	t.Parallel()
	for typ, s := range testKeys() {
		t.Run(string(typ), func(t *testing.T) {
			got, err := TypeOf(s.Public())
			if err != nil || got != typ {
				t.Fatalf("TypeOf(Generate(%s).Public()) = %v, %v", typ, got, err)
			}
		})
	}
	if _, err := Generate("dsa-1024"); err == nil {
		t.Error("Generate(dsa-1024) succeeded")
	}
}

func TestTypeOfRejects(t *testing.T) {
	t.Parallel()
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, want string
		pub        crypto.PublicKey
	}{
		{"rsa-1024", "too small", &rsa1024.PublicKey},
		{"p-521", "P-521", &p521.PublicKey},
		{"x25519", "*ecdh.PublicKey", x25519.PublicKey()},
		{"nil", "no public key", nil},
		{"nil rsa", "empty RSA key", (*rsa.PublicKey)(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := TypeOf(tt.pub)
			if !errors.Is(err, ErrUnsupportedKey) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("TypeOf() error = %v, want ErrUnsupportedKey mentioning %q", err, tt.want)
			}
		})
	}
}

// encodings returns every PEM form ParsePEM accepts for s.
func encodings(t testing.TB, s crypto.Signer) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	p8, err := MarshalPEM(s)
	if err != nil {
		t.Fatal(err)
	}
	out["pkcs8"] = p8
	switch k := s.(type) {
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
		out["sec1"] = sec1
		// As `openssl ecparam -genkey` writes it.
		var oid asn1.ObjectIdentifier
		switch k.Curve {
		case elliptic.P256():
			oid = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
		case elliptic.P384():
			oid = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
		}
		params, err := asn1.Marshal(oid)
		if err != nil {
			t.Fatal(err)
		}
		out["sec1+params"] = append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: params}), sec1...)
	case *rsa.PrivateKey:
		out["pkcs1"] = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	}
	return out
}

func TestParsePEMForms(t *testing.T) {
	t.Parallel()
	for typ, s := range testKeys() {
		for form, data := range encodings(t, s) {
			t.Run(string(typ)+"/"+form, func(t *testing.T) {
				got, err := ParsePEM(data)
				if err != nil {
					t.Fatalf("ParsePEM: %v", err)
				}
				if !got.(equaler).Equal(s) {
					t.Fatal("parsed key differs from the original")
				}
				// With surrounding whitespace, as text editors leave it.
				if _, err := ParsePEM(append([]byte("\n"), append(data, "\n\n"...)...)); err != nil {
					t.Fatalf("ParsePEM with whitespace: %v", err)
				}
			})
		}
	}
}

func TestParsePEMErrors(t *testing.T) {
	t.Parallel()
	k := testKeys()[ECDSAP256]
	good, err := MarshalPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p521DER, err := x509.MarshalPKCS8PrivateKey(p521)
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519DER, err := x509.MarshalPKCS8PrivateKey(x25519)
	if err != nil {
		t.Fatal(err)
	}
	block := func(typ string, b []byte, h map[string]string) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: typ, Headers: h, Bytes: b})
	}
	tests := []struct {
		name, want string
		data       []byte
	}{
		{"empty", "no PEM block", nil},
		{"garbage", "no PEM block", []byte("not a key")},
		{"der", "no PEM block", p521DER},
		{"trailing data", "trailing data", append(append([]byte{}, good...), "junk"...)},
		{"two keys", "more than one PEM block", append(append([]byte{}, good...), good...)},
		{"certificate", `"CERTIFICATE" PEM block, not a private key`, block("CERTIFICATE", []byte{1}, nil)},
		{"unknown type", `unsupported PEM block type "FOO"`, block("FOO", []byte{1}, nil)},
		{"encrypted pkcs8", "encrypted", block("ENCRYPTED PRIVATE KEY", []byte{1}, nil)},
		{"legacy encrypted", "encrypted", block("EC PRIVATE KEY", []byte{1}, map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"})},
		{"bad der", `"PRIVATE KEY" block`, block("PRIVATE KEY", []byte{0x30, 0x03, 1, 2, 3}, nil)},
		{"pkcs1 in pkcs8 block", `"PRIVATE KEY" block`, block("PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa1024), nil)},
		{"rsa-1024", "too small", block("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa1024), nil)},
		{"p-521", "P-521", block("PRIVATE KEY", p521DER, nil)},
		{"x25519", "cannot sign", block("PRIVATE KEY", x25519DER, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParsePEM(tt.data)
			if err == nil {
				t.Fatalf("ParsePEM() = %T, want error", s)
			}
			if !strings.HasPrefix(err.Error(), "keys: ") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParsePEM() error = %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestMarshalPEMRejectsNonSoftwareKeys(t *testing.T) {
	t.Parallel()
	if _, err := MarshalPEM(opaqueSigner{testKeys()[ECDSAP256]}); err == nil {
		t.Fatal("MarshalPEM(opaque signer) succeeded")
	}
	if _, err := MarshalPEM(nil); err == nil {
		t.Fatal("MarshalPEM(nil) succeeded")
	}
}

// opaqueSigner hides the concrete key type, as an HSM signer would.
type opaqueSigner struct{ crypto.Signer }

func TestWriteFileLoadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for typ, s := range testKeys() {
		t.Run(string(typ), func(t *testing.T) {
			path := filepath.Join(dir, string(typ)+".key")
			if err := WriteFile(path, s); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("mode = %04o, want 0600", fi.Mode().Perm())
			}
			if !IsPrivate(fi.Mode()) {
				t.Error("IsPrivate(0600) = false")
			}
			got, err := LoadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !got.(equaler).Equal(s) {
				t.Fatal("loaded key differs from the written one")
			}
		})
	}
}

func TestWriteFileRefusesOverwrite(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ca.key")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(path, testKeys()[ECDSAP256])
	if !errors.Is(err, ErrKeyExists) || !strings.Contains(err.Error(), path) {
		t.Fatalf("WriteFile over an existing file: error = %v, want ErrKeyExists naming the path", err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "precious" {
		t.Fatalf("existing file changed: %q, %v", b, err)
	}
	// A key that cannot be marshalled must not leave a file behind.
	path2 := filepath.Join(t.TempDir(), "hsm.key")
	if err := WriteFile(path2, opaqueSigner{testKeys()[ECDSAP256]}); err == nil {
		t.Fatal("WriteFile(opaque signer) succeeded")
	}
	if _, err := os.Stat(path2); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("WriteFile failure left a file: %v", err)
	}
}

func TestLoadFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good, err := MarshalPEM(testKeys()[ECDSAP256])
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // not subject to umask
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "missing.key"), "no such file"},
		{"group writable", write("gw.key", good, 0o620), "writable by group or others"},
		{"world writable", write("ww.key", good, 0o606), "writable by group or others"},
		{"not a key", write("junk.key", []byte("junk"), 0o600), "no PEM block"},
		{"directory", dir, "not a regular file"},
		{"too large", write("big.key", make([]byte, maxFileSize+1), 0o600), "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadFile(tt.path)
			if err == nil || !strings.Contains(err.Error(), tt.path) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadFile() error = %v, want it to name the path and mention %q", err, tt.want)
			}
		})
	}

	// Readable by others: loaded (callers may warn using IsPrivate).
	p := write("readable.key", good, 0o644)
	if _, err := LoadFile(p); err != nil {
		t.Fatalf("LoadFile(0644) = %v, want success", err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if IsPrivate(fi.Mode()) {
		t.Error("IsPrivate(0644) = true")
	}
}

// FuzzParsePEM checks that ParsePEM never panics on arbitrary input and that
// whatever it accepts survives a MarshalPEM/ParsePEM round trip unchanged.
func FuzzParsePEM(f *testing.F) {
	for _, s := range testKeys() {
		for _, data := range encodings(f, s) {
			f.Add(data)
		}
	}
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParsePEM(data)
		if err != nil {
			if s != nil {
				t.Fatal("ParsePEM returned a key and an error")
			}
			return
		}
		typ, err := TypeOf(s.Public())
		if err != nil {
			t.Fatalf("ParsePEM accepted an unsupported key: %v", err)
		}
		out, err := MarshalPEM(s)
		if err != nil {
			t.Fatalf("MarshalPEM of a parsed key: %v", err)
		}
		s2, err := ParsePEM(out)
		if err != nil {
			t.Fatalf("ParsePEM(MarshalPEM(key)): %v", err)
		}
		if !s2.(equaler).Equal(s) {
			t.Fatal("round trip changed the key")
		}
		if typ2, _ := TypeOf(s2.Public()); typ2 != typ {
			t.Fatalf("round trip changed the key type: %s -> %s", typ, typ2)
		}
		out2, err := MarshalPEM(s2)
		if err != nil || string(out2) != string(out) {
			t.Fatalf("MarshalPEM is not stable across a round trip (err %v)", err)
		}
	})
}
