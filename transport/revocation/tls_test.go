package revocation

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"sync/atomic"
	"testing"

	"github.com/certctl/certctl/certdb"
)

// The Checker as a TLS client uses it: in VerifyConnection, on the
// verified chain. A server whose certificate was revoked is refused; a
// good one is not.
func TestTLSVerifyConnection(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	good := p.issue(t, "good.test.internal")
	bad := p.issue(t, "bad.test.internal")
	p.revoke(t, bad, certdb.ReasonKeyCompromise)
	roots := x509.NewCertPool()
	roots.AddCert(p.root)
	rc := New(WithMode(HardFail))

	for _, tt := range []struct {
		leaf    *x509.Certificate
		wantErr error
	}{{good, nil}, {bad, ErrRevoked}} {
		name := tt.leaf.DNSNames[0]
		t.Run(name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			srvCfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{tt.leaf.Raw, p.inter.Raw}, PrivateKey: cachedKey(t, "leaf")}}}
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				tls.Server(c, srvCfg).HandshakeContext(t.Context())
			}()
			var checked atomic.Int32
			cliCfg := &tls.Config{
				RootCAs: roots, ServerName: name, MinVersion: tls.VersionTLS13,
				VerifyConnection: func(cs tls.ConnectionState) error {
					checked.Add(1)
					return rc.Check(t.Context(), cs.VerifiedChains[0])
				},
			}
			conn, err := (&tls.Dialer{Config: cliCfg}).DialContext(t.Context(), "tcp", ln.Addr().String())
			if conn != nil {
				conn.Close()
			}
			if checked.Load() != 1 || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("handshake: %v (checked %d times), want %v", err, checked.Load(), tt.wantErr)
			}
		})
	}
}
