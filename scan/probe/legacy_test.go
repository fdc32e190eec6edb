package probe

import (
	"bytes"
	"io"
	"net"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
)

// legacyPeer is a scripted SSL 3.0 / TLS 1.0 server for what no real peer on
// this machine does any more (Debian's OpenSSL 3.0 is built without SSL 3.0,
// and neither OpenSSL nor Go compresses, omits renegotiation_info or ignores
// TLS_FALLBACK_SCSV). It reads one ClientHello, chooses by its own preference
// from suites, accepts DEFLATE, sends no extensions, and ends the flight with
// Certificate and ServerHelloDone.
type legacyPeer struct {
	versions []uint16 // highest last
	suites   []uint16 // server preference
	cert     []byte
}

func (p *legacyPeer) serve(c net.Conn) {
	var hdr [5]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(c, body); err != nil {
		return
	}
	alert := func(d uint8) { c.Write([]byte{recordAlert, 3, 0, 0, 2, 2, d}) }
	s := cryptobyte.String(body[4:])
	var version uint16
	var random, sid, suites, comp cryptobyte.String
	if !s.ReadUint16(&version) || !s.ReadBytes((*[]byte)(&random), 32) || !s.ReadUint8LengthPrefixed(&sid) ||
		!s.ReadUint16LengthPrefixed(&suites) || !s.ReadUint8LengthPrefixed(&comp) {
		alert(AlertDecodeError)
		return
	}
	if version > p.versions[len(p.versions)-1] {
		version = p.versions[len(p.versions)-1]
	}
	if !slices.Contains(p.versions, version) {
		alert(AlertProtocolVersion)
		return
	}
	var offered []uint16
	for !suites.Empty() {
		var x uint16
		suites.ReadUint16(&x)
		offered = append(offered, x)
	}
	// This peer deliberately ignores TLS_FALLBACK_SCSV.
	chosen := -1
	for _, x := range p.suites {
		if slices.Contains(offered, x) {
			chosen = int(x)
			break
		}
	}
	if chosen < 0 {
		alert(AlertHandshakeFailure)
		return
	}
	var b cryptobyte.Builder
	b.AddUint8(recordHandshake)
	b.AddUint16(version)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint8(typeServerHello)
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint16(version)
			b.AddBytes(make([]byte, 32))
			b.AddUint8(0) // no session id
			b.AddUint16(uint16(chosen))
			b.AddUint8(map[bool]uint8{true: 1, false: 0}[bytes.IndexByte(comp, 1) >= 0])
		})
		b.AddUint8(typeCertificate)
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
				b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(p.cert) })
			})
		})
		b.AddUint8(typeServerHelloDone)
		b.AddUint24(0)
	})
	c.Write(b.BytesOrPanic())
	io.Copy(io.Discard, c) // until the prober hangs up
}

func TestEnumerateScriptedSSL30(t *testing.T) {
	t.Parallel()
	cert := newTestCert(t, "rsa")
	peer := &legacyPeer{versions: []uint16{VersionSSL30, VersionTLS10}, suites: []uint16{0x000a, 0x0005, 0x0004}, cert: cert.der}
	addr := startRawServer(t, peer.serve)
	r, err := Enumerate(testContext(t), tcpDial(addr), Config{})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, r, cert.der, want{
		versions: map[uint16][]uint16{
			VersionSSL30: {0x000a, 0x0005, 0x0004},
			VersionTLS10: {0x000a, 0x0005, 0x0004},
		},
		serverPref: map[uint16]bool{VersionSSL30: true, VersionTLS10: true},
		fallback:   new(false),
		reneg:      false,
		certs:      true,
		compressed: true,
	})
}

// strictTLS13Peer is a scripted TLS 1.3 server that refuses a ClientHello
// with an empty key_share (as RFC 8446 §4.2.8 permits), so that groups must
// be found with real key shares. It answers with a ServerHello (or a
// HelloRetryRequest) and stops: it cannot finish a handshake.
type strictTLS13Peer struct {
	groups []uint16 // server preference
}

func (p *strictTLS13Peer) serve(c net.Conn) {
	var hdr [5]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(c, body); err != nil {
		return
	}
	alert := func(d uint8) { c.Write([]byte{recordAlert, 3, 3, 0, 2, 2, d}) }
	s := cryptobyte.String(body[4:])
	var version uint16
	var random, sid, suites, comp, exts cryptobyte.String
	if !s.ReadUint16(&version) || !s.ReadBytes((*[]byte)(&random), 32) || !s.ReadUint8LengthPrefixed(&sid) ||
		!s.ReadUint16LengthPrefixed(&suites) || !s.ReadUint8LengthPrefixed(&comp) || !s.ReadUint16LengthPrefixed(&exts) {
		alert(AlertDecodeError)
		return
	}
	var tls13, keyShareSeen bool
	var clientGroups, shareGroups []uint16
	for !exts.Empty() {
		var typ uint16
		var d cryptobyte.String
		exts.ReadUint16(&typ)
		exts.ReadUint16LengthPrefixed(&d)
		switch typ {
		case extSupportedVersions:
			tls13 = bytes.Contains(d, []byte{3, 4})
		case extSupportedGroups:
			var l cryptobyte.String
			d.ReadUint16LengthPrefixed(&l)
			var g uint16
			for l.ReadUint16(&g) {
				clientGroups = append(clientGroups, g)
			}
		case extKeyShare:
			keyShareSeen = true
			var l, ke cryptobyte.String
			d.ReadUint16LengthPrefixed(&l)
			var g uint16
			for l.ReadUint16(&g) && l.ReadUint16LengthPrefixed(&ke) {
				shareGroups = append(shareGroups, g)
			}
		}
	}
	if !tls13 {
		alert(AlertProtocolVersion)
		return
	}
	if !bytes.Contains(suites, []byte{0x13, 0x01}) || !keyShareSeen {
		alert(AlertHandshakeFailure)
		return
	}
	if len(shareGroups) == 0 {
		alert(AlertIllegalParameter) // the point of this peer
		return
	}
	var mutual []uint16
	for _, g := range p.groups {
		if slices.Contains(clientGroups, g) {
			mutual = append(mutual, g)
		}
	}
	if len(mutual) == 0 {
		alert(AlertHandshakeFailure)
		return
	}
	group, hrr := mutual[0], true
	for _, g := range mutual {
		if slices.Contains(shareGroups, g) {
			group, hrr = g, false
			break
		}
	}
	var b cryptobyte.Builder
	b.AddUint8(recordHandshake)
	b.AddUint16(VersionTLS12)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint8(typeServerHello)
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint16(VersionTLS12)
			if hrr {
				b.AddBytes(helloRetryRequestRandom[:])
			} else {
				b.AddBytes(make([]byte, 32))
			}
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(sid) })
			b.AddUint16(0x1301)
			b.AddUint8(0)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				b.AddUint16(extSupportedVersions)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(VersionTLS13) })
				b.AddUint16(extKeyShare)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint16(group)
					if !hrr {
						b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(make([]byte, 32)) })
					}
				})
			})
		})
	})
	c.Write(b.BytesOrPanic())
	io.Copy(io.Discard, c)
}

func TestEnumerateGroupsWithoutEmptyKeyShare(t *testing.T) {
	t.Parallel()
	peer := &strictTLS13Peer{groups: []uint16{GroupSecp256r1, GroupX25519MLKEM768}}
	addr := startRawServer(t, peer.serve)
	r, err := Enumerate(testContext(t), tcpDial(addr), Config{Versions: []uint16{VersionTLS12, VersionTLS13}})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Supported(); !slices.Equal(got, []uint16{VersionTLS13}) {
		t.Errorf("supported versions = %x, want only TLS 1.3", got)
	}
	if got := r.Version(VersionTLS13).CipherSuites; !slices.Equal(got, []uint16{0x1301}) {
		t.Errorf("TLS 1.3 suites = %x, want [1301]", got)
	}
	if want := []uint16{GroupX25519MLKEM768, GroupSecp256r1}; !slices.Equal(r.Groups, want) { // our offering order
		t.Errorf("Groups = %x, want %x", r.Groups, want)
	}
	if r.PreferredGroup != 0 {
		t.Errorf("PreferredGroup = %s, want none (no preference can be seen)", GroupName(r.PreferredGroup))
	}
	// The peer cannot finish a handshake, so the ALPN probe (crypto/tls for a
	// TLS 1.3 only server) must fail, and nothing else.
	if len(r.Errors) != 1 || !strings.HasPrefix(r.Errors[0], "ALPN: ") {
		t.Errorf("Errors = %q, want one ALPN failure", r.Errors)
	}
}
