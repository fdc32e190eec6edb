package scan

import (
	"math"

	"github.com/certctl/certctl/scan/probe"
)

// protocolScore is the SSL Labs score of one protocol version.
func protocolScore(v uint16) int {
	switch v {
	case probe.VersionSSL30:
		return 80
	case probe.VersionTLS10:
		return 90
	case probe.VersionTLS11:
		return 95
	case probe.VersionTLS12, probe.VersionTLS13:
		return 100
	}
	return 0 // SSL 2.0 and unknown
}

// keyExchangeScore is the SSL Labs score of a key or DH/ECDH strength in
// RSA-equivalent bits.
func keyExchangeScore(rsaBits int) int {
	switch {
	case rsaBits <= 0:
		return 0
	case rsaBits < 512:
		return 20
	case rsaBits < 1024:
		return 40
	case rsaBits < 2048:
		return 80
	case rsaBits < 4096:
		return 90
	}
	return 100
}

// cipherScore is the SSL Labs score of a cipher strength in bits.
func cipherScore(bits int) int {
	switch {
	case bits <= 0:
		return 0
	case bits < 128:
		return 20
	case bits < 256:
		return 80
	}
	return 100
}

// scoreGrade maps the numeric score to a letter (SSL Labs rating guide).
func scoreGrade(score int) string {
	switch {
	case score >= 80:
		return GradeA
	case score >= 65:
		return GradeB
	case score >= 50:
		return GradeC
	case score >= 35:
		return GradeD
	case score >= 20:
		return GradeE
	}
	return GradeF
}

// grade computes the scores and the final grade from the results and the
// findings' caps. See the package documentation for the rules.
func (s *scanner) grade(rep *probe.Report, prim *handshake) {
	r := s.res
	// Protocol: average of the best and the worst supported version.
	best, worst := -1, 101
	for _, p := range r.Protocols {
		if p.Supported {
			sc := protocolScore(p.Version)
			best, worst = max(best, sc), min(worst, sc)
		}
	}
	if best < 0 {
		sc := protocolScore(prim.state.Version)
		best, worst = sc, sc
	}
	r.ProtocolScore = (best + worst) / 2

	// Key exchange: the weakest of the server key, the DH prime and the
	// groups accepted; anonymous suites score 0, export suites at most 40.
	kt, bits := "unknown", 0
	if len(prim.peerCerts) > 0 {
		kt, bits = keyInfo(prim.peerCerts[0])
	}
	kx := rsaEquivalentBits(kt, bits)
	if rep != nil && rep.DHPrimeBits > 0 {
		kx = min(kx, rep.DHPrimeBits)
	}
	for _, g := range r.Groups {
		if g.Bits > 0 {
			kx = min(kx, securityToRSABits(g.Bits))
		}
	}
	r.KeyExchangeScore = keyExchangeScore(kx)
	if s.has("cipher.anonymous") {
		r.KeyExchangeScore = 0
	} else if s.has("cipher.export") {
		r.KeyExchangeScore = min(r.KeyExchangeScore, 40)
	}

	// Cipher strength: average of the strongest and the weakest suite.
	strong, weak := -1, math.MaxInt
	for _, cs := range r.CipherSuites {
		strong, weak = max(strong, cs.Bits), min(weak, cs.Bits)
	}
	if strong < 0 {
		strong, weak = 128, 128 // crypto/tls negotiated something: at least 128 bits
	}
	r.CipherScore = (cipherScore(strong) + cipherScore(weak)) / 2

	r.Score = int(math.Round(0.3*float64(r.ProtocolScore) + 0.3*float64(r.KeyExchangeScore) + 0.4*float64(r.CipherScore)))
	r.Grade = finalGrade(scoreGrade(r.Score), s.findingsCopy(), r.HSTS)
}

func (s *scanner) findingsCopy() []Finding {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Finding(nil), s.findings...)
}

// finalGrade applies the findings' caps to the score's grade: F beats T, T
// beats M, otherwise the worst cap wins; an A with any warning becomes A-;
// an A without warnings and with a long HSTS max-age becomes A+.
func finalGrade(g string, findings []Finding, hsts *HSTS) string {
	var t, m, warn bool
	for _, f := range findings {
		switch f.GradeCap {
		case GradeF:
			return GradeF
		case GradeT:
			t = true
		case GradeM:
			m = true
		case "":
		default:
			if GradeRank(f.GradeCap) < GradeRank(g) {
				g = f.GradeCap
			}
		}
		if f.Severity != SeverityInfo {
			warn = true
		}
	}
	switch {
	case g == GradeF:
		return GradeF
	case t:
		return GradeT
	case m:
		return GradeM
	case g == GradeA && warn:
		return GradeAMinus
	case g == GradeA && hsts != nil && hsts.MaxAge >= hstsMinMaxAge:
		return GradeAPlus
	}
	return g
}
