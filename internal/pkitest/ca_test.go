package pkitest

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"testing"
	"time"
)

func TestCAChain(t *testing.T) {
	t.Parallel()
	root := NewCA(t, &x509.Certificate{Subject: pkix.Name{CommonName: "root"}})
	if !root.Cert.IsCA || !root.Cert.BasicConstraintsValid || root.Cert.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Fatalf("root: IsCA %v BasicConstraintsValid %v KeyUsage %b", root.Cert.IsCA, root.Cert.BasicConstraintsValid, root.Cert.KeyUsage)
	}
	if root.Cert.SerialNumber.Sign() <= 0 || root.Cert.NotBefore.After(time.Now()) || root.Cert.NotAfter.Before(time.Now()) {
		t.Fatalf("root: serial %v valid %v to %v", root.Cert.SerialNumber, root.Cert.NotBefore, root.Cert.NotAfter)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "inter"}, KeyUsage: x509.KeyUsageCertSign}
	inter := root.NewIntermediate(t, tmpl)
	if tmpl.IsCA || tmpl.NotBefore != (time.Time{}) {
		t.Fatal("NewIntermediate modified its template")
	}
	if inter.Cert.SerialNumber.Int64() != 7 || inter.Cert.KeyUsage != x509.KeyUsageCertSign {
		t.Fatalf("inter: serial %v KeyUsage %b; the template's values must be kept", inter.Cert.SerialNumber, inter.Cert.KeyUsage)
	}
	key := NewKey(t)
	leaf := inter.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "leaf"}, DNSNames: []string{"leaf.test"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, key.Public())
	if leaf.IsCA {
		t.Fatal("leaf is a CA")
	}
	inters := x509.NewCertPool()
	inters.AddCert(inter.Cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: root.Pool(), Intermediates: inters, DNSName: "leaf.test"}); err != nil {
		t.Fatalf("leaf does not verify: %v", err)
	}
	if blk, _ := pem.Decode(root.PEM()); blk == nil || blk.Type != "CERTIFICATE" || string(blk.Bytes) != string(root.Cert.Raw) {
		t.Fatal("PEM() is not the root certificate")
	}
}

func TestWriteCertsPEM(t *testing.T) {
	t.Parallel()
	root := NewCA(t, &x509.Certificate{Subject: pkix.Name{CommonName: "root"}})
	inter := root.NewIntermediate(t, &x509.Certificate{Subject: pkix.Name{CommonName: "inter"}})
	p := WriteCertsPEM(t, t.TempDir(), "chain.pem", inter.Cert, root.Cert)
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("Stat(%s) = %v, %v; want mode 0600", p, fi, err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []*x509.Certificate{inter.Cert, root.Cert} {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil || string(blk.Bytes) != string(want.Raw) {
			t.Fatalf("block for %q missing or out of order", want.Subject.CommonName)
		}
	}
	if len(b) != 0 {
		t.Fatalf("trailing data: %q", b)
	}
}
