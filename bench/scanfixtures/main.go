// Command scanfixtures writes the certificates and keys of the reference
// endpoints that bench/scan-vs-testssl.sh serves with openssl s_server: a
// root and an intermediate CA, and leaves that are good (ECDSA P-256, RSA
// 2048), expired, self-signed, for the wrong name, and RSA-1024. Each leaf
// is valid for localhost and 127.0.0.1 (except "wrongname"). Files:
// root.pem, inter.pem, NAME.crt (leaf only), NAME.key (PKCS#8, 0600).
//
//	scanfixtures -out DIR
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

func main() {
	out := flag.String("out", "", "output `DIR` (must exist)")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "usage: scanfixtures -out DIR")
		os.Exit(2)
	}
	if err := write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "scanfixtures:", err)
		os.Exit(1)
	}
}

type ca struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func serial() *big.Int {
	b := make([]byte, 16)
	rand.Read(b)
	b[0] &= 0x7f
	return new(big.Int).SetBytes(b)
}

func ecKey() crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func rsaKey(bits int) crypto.Signer {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

func sign(tmpl *x509.Certificate, key crypto.Signer, parent *ca) (*x509.Certificate, error) {
	pc, pk := tmpl, key
	if parent != nil {
		pc, pk = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pc, key.Public(), pk)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

func write(dir string) error {
	now := time.Now().Truncate(time.Second)
	rootKey := ecKey()
	root, err := sign(&x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "Bench Root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, rootKey, nil)
	if err != nil {
		return err
	}
	interKey := ecKey()
	inter, err := sign(&x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "Bench Intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(5 * 365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, interKey, &ca{root, rootKey})
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, "root.pem"), "CERTIFICATE", root.Raw, 0o644); err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, "inter.pem"), "CERTIFICATE", inter.Raw, 0o644); err != nil {
		return err
	}
	issuer := &ca{inter, interKey}
	leaves := []struct {
		name      string
		key       crypto.Signer
		dns       []string
		notBefore time.Time
		notAfter  time.Time
		self      bool
	}{
		{"ecdsa", ecKey(), []string{"localhost"}, now.Add(-time.Hour), now.Add(90 * 24 * time.Hour), false},
		{"rsa2048", rsaKey(2048), []string{"localhost"}, now.Add(-time.Hour), now.Add(90 * 24 * time.Hour), false},
		{"expired", ecKey(), []string{"localhost"}, now.Add(-60 * 24 * time.Hour), now.Add(-24 * time.Hour), false},
		{"selfsigned", ecKey(), []string{"localhost"}, now.Add(-time.Hour), now.Add(90 * 24 * time.Hour), true},
		{"wrongname", ecKey(), []string{"other.example"}, now.Add(-time.Hour), now.Add(90 * 24 * time.Hour), false},
		{"rsa1024", rsaKey(1024), []string{"localhost"}, now.Add(-time.Hour), now.Add(90 * 24 * time.Hour), false},
	}
	for _, l := range leaves {
		tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: l.dns[0]}, DNSNames: l.dns,
			NotBefore: l.notBefore, NotAfter: l.notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		if l.name != "wrongname" {
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		}
		if _, ok := l.key.(*rsa.PrivateKey); ok {
			tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
		}
		parent := issuer
		if l.self {
			parent = nil
		}
		c, err := sign(tmpl, l.key, parent)
		if err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
		kb, err := x509.MarshalPKCS8PrivateKey(l.key)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, l.name+".crt"), "CERTIFICATE", c.Raw, 0o644); err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, l.name+".key"), "PRIVATE KEY", kb, 0o600); err != nil {
			return err
		}
	}
	return nil
}
