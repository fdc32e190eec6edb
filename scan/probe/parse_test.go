package probe

import (
	"bytes"
	"crypto/tls"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
)

var capture = flag.Bool("capture", false, "regenerate testdata/captures from real openssl and Go servers")

// serverHelloBody builds a ServerHello body with the given extensions block
// (nil: no block).
func serverHelloBody(random []byte, exts []byte) []byte {
	var b cryptobyte.Builder
	b.AddUint16(VersionTLS12)
	if random == nil {
		random = bytes.Repeat([]byte{7}, 32)
	}
	b.AddBytes(random)
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte{1, 2, 3}) })
	b.AddUint16(0x1301)
	b.AddUint8(0)
	if exts != nil {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(exts) })
	}
	return b.BytesOrPanic()
}

func ext(typ uint16, data ...byte) []byte {
	return append([]byte{byte(typ >> 8), byte(typ), byte(len(data) >> 8), byte(len(data))}, data...)
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func TestParseServerHello(t *testing.T) {
	tests := []struct {
		name  string
		body  []byte
		check func(t *testing.T, h *ServerHello)
	}{
		{"SSL 3.0 style, no extensions block", serverHelloBody(nil, nil), func(t *testing.T, h *ServerHello) {
			if h.Extensions != nil || h.NegotiatedVersion() != VersionTLS12 || h.CipherSuite != 0x1301 || len(h.SessionID) != 3 {
				t.Errorf("got %+v", h)
			}
		}},
		{"TLS 1.3 ServerHello", serverHelloBody(nil, cat(ext(extSupportedVersions, 3, 4), ext(extKeyShare, 0, 0x1d, 0, 2, 9, 9))),
			func(t *testing.T, h *ServerHello) {
				if h.NegotiatedVersion() != VersionTLS13 || h.KeyShareGroup != GroupX25519 || !bytes.Equal(h.KeyShare, []byte{9, 9}) || h.HelloRetryRequest {
					t.Errorf("got %+v", h)
				}
			}},
		{"HelloRetryRequest", serverHelloBody(helloRetryRequestRandom[:], cat(ext(extSupportedVersions, 3, 4), ext(extKeyShare, 0x11, 0xec))),
			func(t *testing.T, h *ServerHello) {
				if !h.HelloRetryRequest || h.KeyShareGroup != GroupX25519MLKEM768 || h.KeyShare != nil {
					t.Errorf("got %+v", h)
				}
			}},
		{"TLS 1.2 renegotiation_info and ALPN", serverHelloBody(nil, cat(ext(extRenegotiationInfo, 0), ext(extALPN, 0, 3, 2, 'h', '2'), ext(0x1234))),
			func(t *testing.T, h *ServerHello) {
				if !h.SecureRenegotiation || h.ALPNProtocol != "h2" || len(h.Extensions) != 3 || h.Extensions[2].Type != 0x1234 {
					t.Errorf("got %+v", h)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseServerHello(tt.body)
			if err != nil {
				t.Fatalf("ParseServerHello: %v", err)
			}
			tt.check(t, h)
			out, err := h.Marshal()
			if err != nil || !bytes.Equal(out, tt.body) {
				t.Errorf("Marshal() = %x, %v; want %x", out, err, tt.body)
			}
		})
	}
}

func TestParseServerHelloRejects(t *testing.T) {
	good := serverHelloBody(nil, ext(extSupportedVersions, 3, 4))
	tests := []struct {
		name string
		body []byte
	}{
		{"empty", nil},
		{"truncated random", good[:20]},
		{"trailing byte", append(append([]byte{}, good...), 0)},
		{"extensions block too long", append(serverHelloBody(nil, nil), 0, 9, 0)},
		{"duplicate extension", serverHelloBody(nil, cat(ext(extRenegotiationInfo, 0), ext(extRenegotiationInfo, 0)))},
		{"supported_versions too long", serverHelloBody(nil, ext(extSupportedVersions, 3, 4, 0))},
		{"key_share without key", serverHelloBody(nil, ext(extKeyShare, 0, 0x1d, 0, 0))},
		{"HRR key_share with key", serverHelloBody(helloRetryRequestRandom[:], ext(extKeyShare, 0, 0x1d, 0, 1, 1))},
		{"renegotiation_info bad length", serverHelloBody(nil, ext(extRenegotiationInfo, 5))},
		{"ALPN with two protocols", serverHelloBody(nil, ext(extALPN, 0, 4, 1, 'a', 1, 'b'))},
		{"ALPN empty protocol", serverHelloBody(nil, ext(extALPN, 0, 1, 0))},
		{"session id of 33 bytes", func() []byte {
			b := append([]byte{3, 3}, make([]byte, 32)...)
			b = append(b, 33)
			return append(append(b, make([]byte, 33)...), 0x13, 0x01, 0)
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if h, err := ParseServerHello(tt.body); !errors.Is(err, errMalformed) {
				t.Errorf("ParseServerHello() = %+v, %v; want a malformed error", h, err)
			}
		})
	}
}

func TestParseCertificateMessage(t *testing.T) {
	tests := []struct {
		name    string
		body    []byte
		want    [][]byte
		wantErr bool
	}{
		{"empty list", []byte{0, 0, 0}, nil, false},
		{"two certificates", []byte{0, 0, 9, 0, 0, 2, 0xaa, 0xbb, 0, 0, 1, 0xcc}, [][]byte{{0xaa, 0xbb}, {0xcc}}, false},
		{"empty certificate", []byte{0, 0, 3, 0, 0, 0}, nil, true},
		{"list longer than message", []byte{0, 0, 9, 0, 0, 1, 0xaa}, nil, true},
		{"certificate longer than list", []byte{0, 0, 4, 0, 0, 2, 0xaa}, nil, true},
		{"trailing byte", []byte{0, 0, 0, 0}, nil, true},
		{"short", []byte{0, 0}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCertificateMessage(tt.body)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseCertificateMessage() error = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d certificates, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !bytes.Equal(got[i], tt.want[i]) {
					t.Errorf("certificate %d = %x, want %x", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestParseServerKeyExchange(t *testing.T) {
	dhP := append([]byte{0x80}, make([]byte, 127)...) // a 1024-bit "prime"
	var dh cryptobyte.Builder
	for _, v := range [][]byte{dhP, {2}, {5, 5}} {
		dh.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(v) })
	}
	tests := []struct {
		name, kx string
		body     []byte
		want     serverKeyExchange
		wantErr  bool
	}{
		{"ECDHE x25519", "ECDHE_RSA", []byte{3, 0, 0x1d, 2, 9, 9, 0xff}, serverKeyExchange{curve: GroupX25519}, false},
		{"ECDHE explicit curve", "ECDHE_ECDSA", []byte{1, 0, 0x1d, 1, 9}, serverKeyExchange{}, true},
		{"ECDHE empty point", "ECDHE_RSA", []byte{3, 0, 0x17, 0}, serverKeyExchange{}, true},
		{"DHE 1024", "DHE_RSA", append(dh.BytesOrPanic(), 1, 2, 3), serverKeyExchange{dhPrimeBits: 1024}, false},
		{"DHE short", "DHE_RSA", []byte{0, 5, 1}, serverKeyExchange{}, true},
		{"RSA has none", "RSA", []byte{1}, serverKeyExchange{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseServerKeyExchange(tt.kx, tt.body)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseServerKeyExchange() = %+v, %v; want %+v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestDescribeSuite(t *testing.T) {
	tests := []struct {
		id   uint16
		want CipherSuite
	}{
		{0x0005, CipherSuite{ID: 5, Name: "TLS_RSA_WITH_RC4_128_SHA", KeyExchange: "RSA", Cipher: "RC4_128", MAC: "SHA", Bits: 128}},
		{0x000a, CipherSuite{ID: 0xa, Name: "TLS_RSA_WITH_3DES_EDE_CBC_SHA", KeyExchange: "RSA", Cipher: "3DES_EDE_CBC", MAC: "SHA", Bits: 112}},
		{0x0003, CipherSuite{ID: 3, Name: "TLS_RSA_EXPORT_WITH_RC4_40_MD5", KeyExchange: "RSA_EXPORT", Cipher: "RC4_40", MAC: "MD5", Bits: 40, Export: true}},
		{0x0002, CipherSuite{ID: 2, Name: "TLS_RSA_WITH_NULL_SHA", KeyExchange: "RSA", Cipher: "NULL", MAC: "SHA"}},
		{0x0018, CipherSuite{ID: 0x18, Name: "TLS_DH_anon_WITH_RC4_128_MD5", KeyExchange: "DH_anon", Cipher: "RC4_128", MAC: "MD5", Bits: 128, ForwardSecret: true, Anonymous: true}},
		{0xc030, CipherSuite{ID: 0xc030, Name: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", KeyExchange: "ECDHE_RSA", Cipher: "AES_256_GCM", MAC: "SHA384", Bits: 256, ForwardSecret: true, AEAD: true}},
		{0xc0a2, CipherSuite{ID: 0xc0a2, Name: "TLS_DHE_RSA_WITH_AES_128_CCM_8", KeyExchange: "DHE_RSA", Cipher: "AES_128_CCM_8", Bits: 128, ForwardSecret: true, AEAD: true}},
		{0xcca8, CipherSuite{ID: 0xcca8, Name: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", KeyExchange: "ECDHE_RSA", Cipher: "CHACHA20_POLY1305", MAC: "SHA256", Bits: 256, ForwardSecret: true, AEAD: true}},
		{0x1302, CipherSuite{ID: 0x1302, Name: "TLS_AES_256_GCM_SHA384", Cipher: "AES_256_GCM", MAC: "SHA384", Bits: 256, ForwardSecret: true, AEAD: true, TLS13: true}},
	}
	for _, tt := range tests {
		t.Run(tt.want.Name, func(t *testing.T) {
			got, ok := LookupCipherSuite(tt.id)
			if !ok || got != tt.want {
				t.Errorf("LookupCipherSuite(%#04x) = %+v, %v\nwant %+v", tt.id, got, ok, tt.want)
			}
		})
	}
	// Names agree with crypto/tls for every suite it knows.
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if got := CipherSuiteName(s.ID); got != s.Name {
			t.Errorf("CipherSuiteName(%#04x) = %q, crypto/tls says %q", s.ID, got, s.Name)
		}
	}
	if n12, n13 := len(suitesFor(VersionTLS12)), len(suitesFor(VersionTLS13)); n12 != 231 || n13 != 5 {
		t.Errorf("offering %d suites for TLS 1.2 and %d for TLS 1.3; the package doc says 231 and 5", n12, n13)
	}
	// Every offered suite has a cipher strength unless it is NULL.
	for _, s := range suiteNames {
		if d := describeSuite(s.id, s.name); d.Bits == 0 && d.Cipher != "NULL" {
			t.Errorf("%s: no key strength for cipher %q", s.name, d.Cipher)
		}
	}
}

// TestClientHelloEncoding checks the shape of our hellos: SSL 3.0 in a
// 0x0300 record without extensions and with the renegotiation SCSV, TLS 1.3
// with supported_versions and key shares.
func TestClientHelloEncoding(t *testing.T) {
	parse := func(t *testing.T, rec []byte) (recVer, legacy uint16, suites []uint16, exts map[uint16][]byte) {
		s := cryptobyte.String(rec)
		var typ, ht uint8
		var body, hs, random, sid, cs, comp, extBlock cryptobyte.String
		if !s.ReadUint8(&typ) || !s.ReadUint16(&recVer) || !s.ReadUint16LengthPrefixed(&body) || !s.Empty() || typ != recordHandshake ||
			!body.ReadUint8(&ht) || !body.ReadUint24LengthPrefixed(&hs) || !body.Empty() || ht != typeClientHello ||
			!hs.ReadUint16(&legacy) || !hs.ReadBytes((*[]byte)(&random), 32) || !hs.ReadUint8LengthPrefixed(&sid) ||
			!hs.ReadUint16LengthPrefixed(&cs) || !hs.ReadUint8LengthPrefixed(&comp) {
			t.Fatalf("malformed ClientHello record %x", rec)
		}
		for !cs.Empty() {
			var c uint16
			cs.ReadUint16(&c)
			suites = append(suites, c)
		}
		if hs.Empty() {
			return recVer, legacy, suites, nil
		}
		exts = map[uint16][]byte{}
		if !hs.ReadUint16LengthPrefixed(&extBlock) || !hs.Empty() {
			t.Fatalf("malformed extensions")
		}
		for !extBlock.Empty() {
			var et uint16
			var ed cryptobyte.String
			if !extBlock.ReadUint16(&et) || !extBlock.ReadUint16LengthPrefixed(&ed) {
				t.Fatalf("malformed extension")
			}
			exts[et] = ed
		}
		return recVer, legacy, suites, exts
	}

	t.Run("SSL 3.0", func(t *testing.T) {
		rec, err := baseHello(VersionSSL30, suitesFor(VersionSSL30)).marshal()
		if err != nil {
			t.Fatal(err)
		}
		recVer, legacy, suites, exts := parse(t, rec)
		if recVer != VersionSSL30 || legacy != VersionSSL30 || exts != nil || suites[len(suites)-1] != scsvRenegotiation {
			t.Errorf("record version %x, hello version %x, extensions %v, last suite %x", recVer, legacy, exts, suites[len(suites)-1])
		}
	})
	t.Run("TLS 1.3 with X25519MLKEM768 share", func(t *testing.T) {
		h := baseHello(VersionTLS13, suitesFor(VersionTLS13))
		ks, err := newKeyShare(GroupX25519MLKEM768)
		if err != nil {
			t.Fatal(err)
		}
		h.keyShares = []keyShare{ks}
		h.serverName = "example.test"
		rec, err := h.marshal()
		if err != nil {
			t.Fatal(err)
		}
		recVer, legacy, suites, exts := parse(t, rec)
		if recVer != VersionTLS10 || legacy != VersionTLS12 || len(suites) != 5 {
			t.Errorf("record version %x, hello version %x, %d suites", recVer, legacy, len(suites))
		}
		if !bytes.Equal(exts[extSupportedVersions], []byte{2, 3, 4}) {
			t.Errorf("supported_versions = %x", exts[extSupportedVersions])
		}
		// key_share: list length, group 0x11ec, length 1216 = 1184 (ML-KEM-768) + 32 (X25519)
		if k := exts[extKeyShare]; len(k) != 2+4+1216 || k[2] != 0x11 || k[3] != 0xec || int(k[4])<<8|int(k[5]) != 1216 {
			t.Errorf("key_share has %d bytes, header %x", len(k), k[:6])
		}
		if !strings.Contains(string(exts[extServerName]), "example.test") {
			t.Errorf("server_name = %q", exts[extServerName])
		}
	})
}

// TestCapture regenerates the fuzz seeds in testdata/captures from real
// servers (go test -run TestCapture -capture), and otherwise checks that the
// checked-in captures still parse and round-trip.
func TestCapture(t *testing.T) {
	dir := filepath.Join("testdata", "captures")
	if *capture {
		writeCaptures(t, dir)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.bin"))
	if err != nil || len(files) < 6 {
		t.Fatalf("want at least 6 captures in %s (regenerate with -capture), got %d (%v)", dir, len(files), err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		switch base := filepath.Base(f); {
		case strings.HasPrefix(base, "serverhello-"):
			h, err := ParseServerHello(b)
			if err != nil {
				t.Errorf("%s: %v", base, err)
				continue
			}
			if out, _ := h.Marshal(); !bytes.Equal(out, b) {
				t.Errorf("%s: does not round-trip", base)
			}
		case strings.HasPrefix(base, "certificate-"):
			certs, err := ParseCertificateMessage(b)
			if err != nil || len(certs) == 0 {
				t.Errorf("%s: %d certificates, %v", base, len(certs), err)
			}
		}
	}
}

func writeCaptures(t *testing.T, dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rsaCert := newTestCert(t, "rsa")
	type source struct {
		name string
		addr string
		h    *helloSpec
	}
	opensslTLS12 := startOpenSSL(t, rsaCert, "-no_tls1_3")
	opensslTLS13 := startOpenSSL(t, rsaCert, "-groups", "secp384r1")
	chain := rsaCert.tls // a two-certificate chain for variety (the leaf twice; nothing verifies it)
	chain.Certificate = [][]byte{rsaCert.der, rsaCert.der}
	goTLS := startGoTLS(t, &tls.Config{Certificates: []tls.Certificate{chain}, NextProtos: []string{"h2"}})
	hrr := baseHello(VersionTLS13, suitesFor(VersionTLS13))
	mlkem := baseHello(VersionTLS13, suitesFor(VersionTLS13))
	ks, _ := newKeyShare(GroupX25519MLKEM768)
	mlkem.keyShares = []keyShare{ks}
	alpn := baseHello(VersionTLS12, suitesFor(VersionTLS12))
	alpn.alpn = []string{"h2"}
	sources := []source{
		{"openssl-tls12", opensslTLS12, baseHello(VersionTLS12, suitesFor(VersionTLS12))},
		{"openssl-hrr", opensslTLS13, hrr},
		{"openssl-tls13", opensslTLS13, func() *helloSpec {
			h := baseHello(VersionTLS13, suitesFor(VersionTLS13))
			ks, _ := newKeyShare(GroupSecp384r1)
			h.keyShares = []keyShare{ks}
			return h
		}()},
		{"go-x25519mlkem768", goTLS, mlkem},
		{"go-tls12-alpn", goTLS, alpn},
	}
	p := &prober{dial: tcpDial(""), cfg: Config{ServerName: "localhost"}.withDefaults()}
	p.sem = make(chan struct{}, 1)
	for _, s := range sources {
		p.dial = tcpDial(s.addr)
		f, err := p.flight(testContext(t), s.h, true)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "serverhello-"+s.name+".bin"), f.rawHello, 0o644); err != nil {
			t.Fatal(err)
		}
		if f.rawCert != nil {
			if err := os.WriteFile(filepath.Join(dir, "certificate-"+s.name+".bin"), f.rawCert, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func handshakeMsg(typ uint8, body []byte) []byte {
	return append([]byte{typ, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
}

func record(typ uint8, body []byte) []byte {
	return append([]byte{typ, 3, 3, byte(len(body) >> 8), byte(len(body))}, body...)
}

func seeds(f *testing.F, prefix string) {
	files, _ := filepath.Glob(filepath.Join("testdata", "captures", prefix+"*.bin"))
	if len(files) == 0 {
		f.Fatalf("no %s captures in testdata/captures: run go test -run TestCapture -capture", prefix)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzParseServerHello: whatever parses must re-marshal to the same bytes.
func FuzzParseServerHello(f *testing.F) {
	seeds(f, "serverhello-")
	f.Add(serverHelloBody(nil, nil))
	f.Add(serverHelloBody(helloRetryRequestRandom[:], ext(extKeyShare, 0x11, 0xec)))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseServerHello(b)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("error %v does not wrap errMalformed", err)
			}
			return
		}
		out, err := h.Marshal()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("round trip: %x -> %x (%v)", b, out, err)
		}
	})
}

// FuzzParseCertificateMessage: whatever parses must re-marshal to the same
// bytes, and no certificate is empty.
func FuzzParseCertificateMessage(f *testing.F) {
	seeds(f, "certificate-")
	f.Add([]byte{0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		certs, err := ParseCertificateMessage(b)
		if err != nil {
			return
		}
		for _, c := range certs {
			if len(c) == 0 {
				t.Fatal("empty certificate accepted")
			}
		}
		out, err := MarshalCertificateMessage(certs)
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("round trip: %x -> %x (%v)", b, out, err)
		}
	})
}

// FuzzReadFlight feeds arbitrary server bytes to the record reader: it must
// not panic, and a flight it returns has a ServerHello.
func FuzzReadFlight(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "captures", "*.bin"))
	var flight []byte // every capture as one handshake record each, ServerHellos first
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		typ := typeCertificate
		if strings.Contains(name, "serverhello-") {
			typ = typeServerHello
			f.Add(record(recordHandshake, handshakeMsg(typ, b)))
		}
		flight = append(flight, record(recordHandshake, handshakeMsg(typ, b))...)
	}
	f.Add(flight)
	f.Add([]byte{22, 3, 3, 0, 4, 14, 0, 0, 0})
	f.Add([]byte{21, 3, 3, 0, 2, 2, 40})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, full := range []bool{false, true} {
			fl, err := readFlight(bytes.NewReader(b), full)
			if err == nil && fl.hello == nil {
				t.Fatal("flight without ServerHello")
			}
		}
	})
}
