package scan

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/certctl/certctl/scan/probe"
)

// enumerate runs the wire-level prober against the primary address; nil when
// skipped or failed (a finding says which).
func (s *scanner) enumerate(ctx context.Context) *probe.Report {
	if s.cfg.skipProbe {
		return nil
	}
	pc := probe.Config{ServerName: s.sni}
	if s.t.StartTLS == StartTLSPostgres {
		pc.ALPN = []string{"postgresql"}
	}
	rep, err := probe.Enumerate(ctx, s.dial(s.primary), pc)
	if err != nil {
		s.add("probe.failed", SeverityWarning, "", err.Error(),
			"protocol and cipher suite enumeration failed; the grade rests on the negotiated parameters only")
		return nil
	}
	s.cfg.log.DebugContext(ctx, "enumeration done", "target", s.t.String(), "probes", rep.Probes, "duration", rep.Duration, "errors", len(rep.Errors))
	return rep
}

// groupBits is a group's classical-equivalent security in bits (NIST SP
// 800-57; for ML-KEM hybrids, the ML-KEM category: 768 = 192, 1024 = 256).
func groupBits(g uint16) int {
	switch g {
	case probe.GroupX25519, probe.GroupSecp256r1, probe.GroupBrainpoolP256r1, probe.GroupBrainpoolP256r1TLS, probe.GroupSecp256k1:
		return 128
	case probe.GroupSecp224r1:
		return 112
	case probe.GroupSecp384r1, probe.GroupBrainpoolP384r1, probe.GroupBrainpoolP384r1TLS:
		return 192
	case probe.GroupX448:
		return 224
	case probe.GroupSecp521r1, probe.GroupBrainpoolP512r1, probe.GroupBrainpoolP512r1TLS:
		return 256
	case probe.GroupFFDHE2048:
		return 112
	case probe.GroupFFDHE3072:
		return 128
	case probe.GroupFFDHE4096:
		return 152
	case probe.GroupFFDHE6144:
		return 176
	case probe.GroupFFDHE8192:
		return 192
	case probe.GroupMLKEM512:
		return 128
	case probe.GroupMLKEM768, probe.GroupX25519MLKEM768, probe.GroupSecP256r1MLKEM768:
		return 192
	case probe.GroupMLKEM1024, probe.GroupSecP384r1MLKEM1024:
		return 256
	}
	return 0
}

// securityToRSABits maps symmetric-equivalent security to an RSA modulus
// size (NIST SP 800-57 Part 1 Table 2).
func securityToRSABits(sec int) int {
	switch {
	case sec <= 0:
		return 0
	case sec < 112:
		return 1024
	case sec < 128:
		return 2048
	case sec < 192:
		return 3072
	case sec < 256:
		return 7680
	}
	return 15360
}

// applyEnumeration fills Protocols, CipherSuites, Groups and Features from the
// prober's report (or, without one, from the primary handshake) and reports
// the protocol and cipher findings.
func (s *scanner) applyEnumeration(rep *probe.Report, prim *handshake) {
	f := &s.res.Features
	if rep == nil {
		v := prim.state.Version
		s.res.Protocols = []Protocol{{Name: tls.VersionName(v), Version: v, Supported: true}}
		if d, ok := probe.LookupCipherSuite(prim.state.CipherSuite); ok {
			s.res.CipherSuites = []CipherSuite{suiteOf(tls.VersionName(v), d, 0)}
		}
		if prim.state.CurveID != 0 {
			g := uint16(prim.state.CurveID)
			s.res.Groups = []Group{{ID: g, Name: probe.GroupName(g), Bits: groupBits(g), PostQuantum: probe.IsPostQuantumGroup(g)}}
		}
		if p := prim.state.NegotiatedProtocol; p != "" {
			f.ALPN = []string{p}
		}
		s.res.Protocols = nonNil(s.res.Protocols)
		s.res.CipherSuites = nonNil(s.res.CipherSuites)
		s.res.Groups = nonNil(s.res.Groups)
		return
	}
	for _, vr := range rep.Versions {
		name := probe.VersionName(vr.Version)
		s.res.Protocols = append(s.res.Protocols, Protocol{Name: name, Version: vr.Version, Supported: vr.Supported, ServerPreference: vr.ServerPreference})
		for i, id := range vr.CipherSuites {
			d, ok := probe.LookupCipherSuite(id)
			if !ok {
				d = probe.CipherSuite{ID: id, Name: probe.CipherSuiteName(id)}
			}
			order := 0
			if vr.ServerPreference {
				order = i + 1
			}
			s.res.CipherSuites = append(s.res.CipherSuites, suiteOf(name, d, order))
		}
	}
	for _, g := range rep.Groups {
		s.res.Groups = append(s.res.Groups, Group{ID: g, Name: probe.GroupName(g), Bits: groupBits(g), PostQuantum: probe.IsPostQuantumGroup(g)})
	}
	s.res.Protocols = nonNil(s.res.Protocols)
	s.res.CipherSuites = nonNil(s.res.CipherSuites)
	s.res.Groups = nonNil(s.res.Groups)
	f.Compression = rep.Compression
	f.SecureRenegotiation = rep.SecureRenegotiation
	f.FallbackSCSV = rep.FallbackSCSV != nil && *rep.FallbackSCSV
	f.ALPN = rep.ALPN

	supported := map[uint16]bool{}
	legacy := 0 // versions that have renegotiation (TLS 1.2 and older)
	for _, v := range rep.Supported() {
		supported[v] = true
		if v <= probe.VersionTLS12 {
			legacy++
		}
	}
	if len(supported) == 0 {
		s.add("probe.no_versions", SeverityWarning, "", strings.Join(rep.Errors, "; "),
			"the prober found no supported protocol version although crypto/tls connected")
		return
	}
	if supported[probe.VersionSSL30] {
		s.add("protocol.ssl3", SeverityCritical, GradeB, "SSL 3.0 accepted", "SSL 3.0 is supported (POODLE)")
	}
	if supported[probe.VersionTLS10] {
		s.add("protocol.tls10", SeverityWarning, GradeB, "TLS 1.0 accepted", "TLS 1.0 is supported")
	}
	if supported[probe.VersionTLS11] {
		s.add("protocol.tls11", SeverityWarning, GradeB, "TLS 1.1 accepted", "TLS 1.1 is supported")
	}
	if !supported[probe.VersionTLS12] && !supported[probe.VersionTLS13] {
		s.add("protocol.no_tls12", SeverityCritical, GradeC, "", "neither TLS 1.2 nor TLS 1.3 is supported")
	}
	if !supported[probe.VersionTLS13] {
		s.add("protocol.no_tls13", SeverityInfo, "", "", "TLS 1.3 is not supported")
	}

	// Cipher suites.
	var rc4, block64, export, null, anon, nonFS, cbcOnly []string
	fs, aead := 0, 0
	for _, cs := range s.res.CipherSuites {
		d, _ := probe.LookupCipherSuite(cs.ID)
		tag := cs.Protocol + " " + cs.Name
		switch {
		case strings.HasPrefix(d.Cipher, "RC4"):
			rc4 = append(rc4, tag)
		case strings.Contains(d.Cipher, "3DES") || strings.HasPrefix(d.Cipher, "DES") || strings.HasPrefix(d.Cipher, "IDEA") || strings.HasPrefix(d.Cipher, "RC2"):
			block64 = append(block64, tag)
		}
		if d.Export {
			export = append(export, tag)
		}
		if d.Cipher == "NULL" {
			null = append(null, tag)
		}
		if d.Anonymous {
			anon = append(anon, tag)
		}
		if d.ForwardSecret {
			fs++
		} else {
			nonFS = append(nonFS, tag)
		}
		if d.AEAD {
			aead++
		} else {
			cbcOnly = append(cbcOnly, tag)
		}
	}
	if len(export) > 0 {
		s.add("cipher.export", SeverityCritical, GradeF, strings.Join(export, ", "), "export-grade cipher suites are accepted (FREAK, Logjam)")
	}
	if len(null) > 0 {
		s.add("cipher.null", SeverityCritical, GradeF, strings.Join(null, ", "), "cipher suites without encryption are accepted")
	}
	if len(anon) > 0 {
		s.add("cipher.anonymous", SeverityCritical, GradeF, strings.Join(anon, ", "), "anonymous (unauthenticated) cipher suites are accepted")
	}
	if len(rc4) > 0 {
		s.add("cipher.rc4", SeverityCritical, GradeC, strings.Join(rc4, ", "), "RC4 cipher suites are accepted")
	}
	if len(block64) > 0 {
		s.add("cipher.64bit_block", SeverityWarning, GradeC, strings.Join(block64, ", "), "cipher suites with a 64-bit block cipher (3DES, DES, IDEA) are accepted (SWEET32)")
	}
	switch {
	case fs == 0 && len(s.res.CipherSuites) > 0:
		s.add("cipher.no_forward_secrecy", SeverityWarning, GradeB, strings.Join(nonFS, ", "), "no cipher suite has forward secrecy")
	case len(nonFS) > 0:
		s.add("cipher.partial_forward_secrecy", SeverityWarning, GradeAMinus, strings.Join(nonFS, ", "), "some cipher suites lack forward secrecy (RSA key exchange)")
	}
	if aead == 0 && len(s.res.CipherSuites) > 0 {
		s.add("cipher.no_aead", SeverityWarning, GradeB, strings.Join(cbcOnly, ", "), "no AEAD cipher suite (GCM, ChaCha20-Poly1305, CCM) is supported")
	}
	if rep.Compression {
		s.add("tls.compression", SeverityCritical, GradeC, "DEFLATE accepted", "TLS compression is enabled (CRIME)")
	}
	if legacy > 0 && !rep.SecureRenegotiation {
		s.add("tls.no_secure_renegotiation", SeverityWarning, GradeAMinus, "no renegotiation_info in the ServerHello", "secure renegotiation (RFC 5746) is not supported")
	}
	if rep.FallbackSCSV != nil && !*rep.FallbackSCSV {
		s.add("tls.no_fallback_scsv", SeverityWarning, GradeAMinus, "a downgraded hello with TLS_FALLBACK_SCSV was accepted", "TLS_FALLBACK_SCSV (RFC 7507) is not honoured: downgrade attacks are possible")
	}
	switch b := rep.DHPrimeBits; {
	case b > 0 && b < 1024:
		s.add("kex.weak_dh", SeverityCritical, GradeF, fmt.Sprintf("DH prime %d bits", b), "DHE uses a prime under 1024 bits (Logjam)")
	case b > 0 && b < 2048:
		s.add("kex.weak_dh", SeverityWarning, GradeB, fmt.Sprintf("DH prime %d bits", b), "DHE uses a prime under 2048 bits")
	}
	for _, e := range rep.Errors {
		s.cfg.log.Debug("probe error", "target", s.t.String(), "err", e)
	}
}

func suiteOf(protocol string, d probe.CipherSuite, order int) CipherSuite {
	weak := d.Export || d.Anonymous || d.Cipher == "NULL" || strings.HasPrefix(d.Cipher, "RC4") ||
		strings.Contains(d.Cipher, "3DES") || strings.HasPrefix(d.Cipher, "DES") || strings.HasPrefix(d.Cipher, "IDEA") ||
		strings.HasPrefix(d.Cipher, "RC2") || (!d.AEAD && d.MAC == "SHA" && protocol == "TLS 1.2")
	return CipherSuite{Protocol: protocol, ID: d.ID, Name: d.Name, Bits: d.Bits, ForwardSecrecy: d.ForwardSecret, Weak: weak, Order: order}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
