package transport

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

func selfSigned(t testing.TB) []byte {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}}, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// FuzzCAResponse: what the CA sends (certificate responses, the trust
// bundle) is parsed without panics, and parsed certificates re-encode to
// PEM that parses to the same certificates.
func FuzzCAResponse(f *testing.F) {
	c := selfSigned(f)
	good, _ := json.Marshal(certificateResponse{Serial: "01", CertificatePEM: string(c), ChainPEM: string(c) + string(c)})
	f.Add(good)
	f.Add([]byte(`{"chain_pem": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}`))
	f.Add([]byte(`{"certificate_pem": "garbage"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var out certificateResponse
		if json.Unmarshal(data, &out) != nil {
			return
		}
		chain, err := responseChain("fuzz", out)
		if err != nil {
			return
		}
		var b bytes.Buffer
		for _, c := range chain {
			pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
		again, err := parseCertsPEM(b.Bytes())
		if err != nil || len(again) != len(chain) {
			t.Fatalf("re-parse: %d certificates, %v; want %d", len(again), err, len(chain))
		}
		for i := range chain {
			if !chain[i].Equal(again[i]) {
				t.Fatalf("certificate %d changed on round trip", i)
			}
		}
	})
}

func TestParseCertsPEM(t *testing.T) {
	c := selfSigned(t)
	tests := []struct {
		name    string
		in      string
		n       int
		wantErr bool
	}{
		{"one", string(c), 1, false},
		{"two with text around", "junk\n" + string(c) + "\n" + string(c) + "trailer", 2, false},
		{"empty", "", 0, false},
		{"not PEM", "hello", 0, true},
		{"private key block", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0, true},
		{"bad DER", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCertsPEM([]byte(tt.in))
			if (err != nil) != tt.wantErr || len(got) != tt.n {
				t.Fatalf("parseCertsPEM() = %d certificates, %v; want %d, error %v", len(got), err, tt.n, tt.wantErr)
			}
		})
	}
}
