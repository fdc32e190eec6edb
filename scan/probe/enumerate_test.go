package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// want is the expected Report of a reference server. Versions lists only the
// supported ones; every other probed version must be unsupported.
type want struct {
	versions    map[uint16][]uint16 // supported version -> suites in order
	serverPref  map[uint16]bool
	groups      []uint16
	preferred   uint16
	fallback    *bool
	reneg       bool
	alpn        []string
	certs       bool // Certificates == [leaf]
	dhBits      int
	certRequest bool
	compressed  bool
}

func checkReport(t *testing.T, r *Report, leaf []byte, w want) {
	t.Helper()
	names := func(ss []uint16) string {
		var n []string
		for _, s := range ss {
			n = append(n, CipherSuiteName(s))
		}
		return strings.Join(n, " ")
	}
	if len(r.Versions) != 5 {
		t.Fatalf("Versions has %d entries, want 5", len(r.Versions))
	}
	for _, v := range r.Versions {
		suites, ok := w.versions[v.Version]
		if v.Supported != ok {
			t.Errorf("%s: Supported = %v, want %v", VersionName(v.Version), v.Supported, ok)
		}
		if !slices.Equal(v.CipherSuites, suites) {
			t.Errorf("%s: suites\n got %s\nwant %s", VersionName(v.Version), names(v.CipherSuites), names(suites))
		}
		if v.ServerPreference != w.serverPref[v.Version] {
			t.Errorf("%s: ServerPreference = %v, want %v", VersionName(v.Version), v.ServerPreference, w.serverPref[v.Version])
		}
	}
	gn := func(gs []uint16) string {
		var n []string
		for _, g := range gs {
			n = append(n, GroupName(g))
		}
		return strings.Join(n, " ")
	}
	if !slices.Equal(r.Groups, w.groups) {
		t.Errorf("Groups = [%s], want [%s]", gn(r.Groups), gn(w.groups))
	}
	if r.PreferredGroup != w.preferred {
		t.Errorf("PreferredGroup = %s, want %s", GroupName(r.PreferredGroup), GroupName(w.preferred))
	}
	switch {
	case (r.FallbackSCSV == nil) != (w.fallback == nil):
		t.Errorf("FallbackSCSV = %v, want %v", r.FallbackSCSV, w.fallback)
	case r.FallbackSCSV != nil && *r.FallbackSCSV != *w.fallback:
		t.Errorf("FallbackSCSV = %v, want %v", *r.FallbackSCSV, *w.fallback)
	}
	if r.Compression != w.compressed {
		t.Errorf("Compression = %v, want %v", r.Compression, w.compressed)
	}
	if r.SecureRenegotiation != w.reneg {
		t.Errorf("SecureRenegotiation = %v, want %v", r.SecureRenegotiation, w.reneg)
	}
	if !slices.Equal(r.ALPN, w.alpn) {
		t.Errorf("ALPN = %q, want %q", r.ALPN, w.alpn)
	}
	if w.certs {
		if len(r.Certificates) != 1 || !bytes.Equal(r.Certificates[0], leaf) {
			t.Errorf("Certificates: got %d certificates, want the server's leaf", len(r.Certificates))
		}
	} else if len(r.Certificates) != 0 {
		t.Errorf("Certificates: got %d, want none", len(r.Certificates))
	}
	if r.DHPrimeBits != w.dhBits {
		t.Errorf("DHPrimeBits = %d, want %d", r.DHPrimeBits, w.dhBits)
	}
	if r.ClientCertRequested != w.certRequest {
		t.Errorf("ClientCertRequested = %v, want %v", r.ClientCertRequested, w.certRequest)
	}
	if len(r.Errors) != 0 {
		t.Errorf("Errors = %q, want none", r.Errors)
	}
	t.Logf("Enumerate: %d probes in %v", r.Probes, r.Duration)
}

// OpenSSL's default group order (server preference for TLS 1.3 groups).
var opensslGroups13 = []uint16{GroupX25519, GroupSecp256r1, GroupX448, GroupSecp521r1, GroupSecp384r1,
	GroupFFDHE2048, GroupFFDHE3072, GroupFFDHE4096, GroupFFDHE6144, GroupFFDHE8192}

func TestEnumerateOpenSSL(t *testing.T) {
	t.Parallel()
	rsaCert := newTestCert(t, "rsa")
	ecCert := newTestCert(t, "ecdsa")
	// ECDHE-RSA-AES256-GCM-SHA384, DHE-RSA-AES128-CCM8, AES128-SHA256,
	// ECDHE-RSA-CHACHA20-POLY1305, DHE-RSA-ARIA256-GCM-SHA384, CAMELLIA128-SHA
	mixed := "ECDHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-CCM8:AES128-SHA256:ECDHE-RSA-CHACHA20-POLY1305:" +
		"DHE-RSA-ARIA256-GCM-SHA384:CAMELLIA128-SHA:@SECLEVEL=0"
	mixedPref := []uint16{0xc030, 0xc0a2, 0x003c, 0xcca8, 0xc053, 0x0041}
	mixedCode := slices.Sorted(slices.Values(mixedPref))
	tests := []struct {
		name string
		cert *testCert
		args []string
		want want
	}{
		{
			name: "TLS 1.0-1.2 server preference, old suites",
			cert: rsaCert,
			args: []string{"-no_tls1_3", "-serverpref", "-cipher", mixed},
			want: want{
				versions:   map[uint16][]uint16{VersionTLS10: {0x0041}, VersionTLS11: {0x0041}, VersionTLS12: mixedPref},
				serverPref: map[uint16]bool{VersionTLS12: true},
				groups:     []uint16{GroupX25519, GroupSecp256r1, GroupX448, GroupSecp521r1, GroupSecp384r1},
				preferred:  GroupX25519,
				fallback:   new(true), reneg: true, certs: true, dhBits: 2048,
			},
		},
		{
			name: "TLS 1.0-1.2 client preference",
			cert: rsaCert,
			args: []string{"-no_tls1_3", "-cipher", mixed, "-groups", "P-384:P-256"},
			want: want{
				versions:  map[uint16][]uint16{VersionTLS10: {0x0041}, VersionTLS11: {0x0041}, VersionTLS12: mixedCode},
				groups:    []uint16{GroupSecp256r1, GroupSecp384r1}, // our order: the server follows the client
				preferred: GroupSecp256r1,
				fallback:  new(true), reneg: true, certs: true, dhBits: 2048,
			},
		},
		{
			name: "TLS 1.3 only, server preference, groups, ALPN",
			cert: rsaCert,
			args: []string{"-no_tls1_2", "-serverpref", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256",
				"-groups", "secp384r1:x25519", "-alpn", "http/1.1"},
			want: want{
				versions:   map[uint16][]uint16{VersionTLS13: {0x1303, 0x1301}},
				serverPref: map[uint16]bool{VersionTLS13: true},
				groups:     []uint16{GroupSecp384r1, GroupX25519},
				preferred:  GroupSecp384r1,
				alpn:       []string{"http/1.1"},
			},
		},
		{
			name: "TLS 1.2 and 1.3 ECDSA, client certificate, ALPN",
			cert: ecCert,
			args: []string{"-verify", "1", "-alpn", "h2,http/1.1", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-SHA"},
			want: want{
				versions: map[uint16][]uint16{VersionTLS12: {0xc00a, 0xc02b}, VersionTLS13: {0x1301, 0x1302, 0x1303}},
				groups:   opensslGroups13, preferred: GroupX25519,
				fallback: new(true), reneg: true, certs: true, certRequest: true,
				alpn: []string{"h2", "http/1.1"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr := startOpenSSL(t, tt.cert, tt.args...)
			r, err := Enumerate(testContext(t), tcpDial(addr), Config{ServerName: "localhost"})
			if err != nil {
				t.Fatalf("Enumerate: %v", err)
			}
			checkReport(t, r, tt.cert.der, tt.want)
		})
	}
}

func TestEnumerateGo(t *testing.T) {
	t.Parallel()
	c := newTestCert(t, "rsa")
	tests := []struct {
		name string
		cfg  *tls.Config
		want want
	}{
		{
			name: "TLS 1.3 X25519MLKEM768",
			cfg: &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{"h2", "http/1.1"},
				CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519}},
			want: want{
				versions:  map[uint16][]uint16{VersionTLS13: {0x1301, 0x1302, 0x1303}},
				groups:    []uint16{GroupX25519MLKEM768, GroupX25519},
				preferred: GroupX25519MLKEM768,
				alpn:      []string{"h2", "http/1.1"},
			},
		},
		{
			name: "TLS 1.2-1.3 SecP256r1MLKEM768 and P-384",
			cfg: &tls.Config{MinVersion: tls.VersionTLS12,
				CurvePreferences: []tls.CurveID{tls.SecP256r1MLKEM768, tls.CurveP384}},
			want: want{
				versions: map[uint16][]uint16{
					VersionTLS12: {0xcca8, 0xc02f, 0xc030, 0xc013, 0xc014},
					VersionTLS13: {0x1301, 0x1302, 0x1303},
				},
				serverPref: map[uint16]bool{VersionTLS12: true},
				groups:     []uint16{GroupSecP256r1MLKEM768, GroupSecp384r1},
				preferred:  GroupSecP256r1MLKEM768,
				fallback:   new(true), reneg: true, certs: true,
			},
		},
		{
			name: "TLS 1.0-1.2 RC4 3DES CBC-SHA256",
			cfg: &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS12,
				CipherSuites: []uint16{tls.TLS_RSA_WITH_RC4_128_SHA, tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA,
					tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256, tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA},
				CurvePreferences: []tls.CurveID{tls.CurveP384, tls.X25519}},
			want: want{
				versions: map[uint16][]uint16{ // Go's own preference order
					VersionTLS10: {0x002f, 0x000a, 0xc011, 0x0005},
					VersionTLS11: {0x002f, 0x000a, 0xc011, 0x0005},
					VersionTLS12: {0x002f, 0x000a, 0xc027, 0xc011, 0x0005},
				},
				serverPref: map[uint16]bool{VersionTLS10: true, VersionTLS11: true, VersionTLS12: true},
				groups:     []uint16{GroupX25519, GroupSecp384r1}, // Go ignores the order of CurvePreferences
				preferred:  GroupX25519,
				fallback:   new(true), reneg: true, certs: true,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.cfg.Certificates = []tls.Certificate{c.tls}
			addr := startGoTLS(t, tt.cfg)
			r, err := Enumerate(testContext(t), tcpDial(addr), Config{ServerName: "localhost"})
			if err != nil {
				t.Fatalf("Enumerate: %v", err)
			}
			checkReport(t, r, c.der, tt.want)
		})
	}
}

func ExampleEnumerate() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := Dialer("tcp", "db.internal:5432", "postgres")
	rep, err := Enumerate(ctx, dial, Config{ServerName: "db.internal"})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, v := range rep.Versions {
		if v.Supported {
			fmt.Println(VersionName(v.Version), len(v.CipherSuites), "suites")
		}
	}
}

// TestEnumerateSNI checks that Config.ServerName is sent: openssl serves a
// second certificate for that name. An IP address is not sent (RFC 6066 §3).
func TestEnumerateSNI(t *testing.T) {
	t.Parallel()
	def, named := newTestCert(t, "rsa"), newTestCert(t, "ecdsa")
	addr := startOpenSSL(t, def, "-no_tls1_3", "-servername", "scan.test", "-cert2", named.certFile, "-key2", named.keyFile)
	tests := []struct {
		serverName string
		want       []byte
	}{
		{"scan.test", named.der},
		{"", def.der},
		{"127.0.0.1", def.der},
		{"other.test", def.der},
	}
	for _, tt := range tests {
		t.Run("name "+tt.serverName, func(t *testing.T) {
			r, err := Enumerate(testContext(t), tcpDial(addr), Config{ServerName: tt.serverName, Versions: []uint16{VersionTLS12}})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Certificates) != 1 || !bytes.Equal(r.Certificates[0], tt.want) {
				t.Errorf("ServerName %q: got a different certificate than expected (%d certificates)", tt.serverName, len(r.Certificates))
			}
		})
	}
}
