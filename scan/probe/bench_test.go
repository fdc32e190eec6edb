package probe

import (
	"context"
	"crypto/tls"
	"testing"
)

// BenchmarkEnumerate measures one Enumerate against local reference servers
// (go test -run '^$' -bench Enumerate ./scan/probe/).
func BenchmarkEnumerate(b *testing.B) {
	c := newTestCert(b, "rsa")
	servers := []struct{ name, addr string }{
		{"openssl-default", startOpenSSL(b, c)},
		{"openssl-ALL-SECLEVEL0-serverpref", startOpenSSL(b, c, "-cipher", "ALL:@SECLEVEL=0", "-serverpref")},
		{"go-default", startGoTLS(b, &tls.Config{Certificates: []tls.Certificate{c.tls}})},
	}
	for _, s := range servers {
		b.Run(s.name, func(b *testing.B) {
			probes := 0
			for b.Loop() {
				r, err := Enumerate(context.Background(), tcpDial(s.addr), Config{ServerName: "localhost"})
				if err != nil {
					b.Fatal(err)
				}
				probes = r.Probes
			}
			b.ReportMetric(float64(probes), "probes/op")
		})
	}
}
