package scan

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/certctl/certctl/scan/probe"
)

// Scan scans one endpoint and grades it. See the package documentation for
// the checks and the grading rules.
//
// Scan returns an error only for an invalid target (wrapping
// ErrInvalidTarget) or when ctx is done before the scan finished (the partial
// Result is returned with it). An endpoint that cannot be reached is not an
// error: the Result then has Error set and Grade "".
//
// Scan is safe for concurrent use; it keeps no state between calls. Every
// network operation is bounded by ctx and by WithTimeout.
func Scan(ctx context.Context, target Target, opts ...Option) (*Result, error) {
	if err := target.Validate(); err != nil {
		return nil, err
	}
	cfg := newConfig(opts)
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	s := &scanner{
		cfg: cfg,
		t:   target,
		sni: target.SNI(),
		res: &Result{Target: target, StartedAt: cfg.now().UTC()},
	}
	start := time.Now()
	s.run(ctx)
	s.res.Duration = time.Since(start)
	slices.SortStableFunc(s.findings, func(a, b Finding) int {
		if c := cmp.Compare(severityRank(b.Severity), severityRank(a.Severity)); c != 0 {
			return c
		}
		return cmp.Compare(a.Check, b.Check)
	})
	s.res.Findings = s.findings
	if s.res.Findings == nil {
		s.res.Findings = []Finding{}
	}
	cfg.log.DebugContext(ctx, "scan done", "target", target.String(), "grade", s.res.Grade,
		"duration", s.res.Duration, "error", s.res.Error)
	if err := ctx.Err(); err != nil {
		if s.res.Error == "" {
			s.res.Error = "scan interrupted: " + err.Error()
		}
		return s.res, fmt.Errorf("scan: %s: %w", target, err)
	}
	return s.res, nil
}

func severityRank(s string) int {
	switch s {
	case SeverityCritical:
		return 2
	case SeverityWarning:
		return 1
	}
	return 0
}

// scanner holds the state of one Scan. Checks run concurrently; each writes
// its own fields of res, and findings go through add.
type scanner struct {
	cfg *config
	t   Target
	sni string
	res *Result

	mu       sync.Mutex
	findings []Finding

	// primary is the address the detailed checks use: the first that
	// completed a handshake.
	primary string
	// rtt is the primary handshake's duration, used to size waits.
	rtt time.Duration
}

func (s *scanner) add(check, severity, gradeCap, evidence, format string, args ...any) {
	f := Finding{Check: check, Severity: severity, GradeCap: gradeCap, Message: fmt.Sprintf(format, args...), Evidence: evidence}
	s.mu.Lock()
	s.findings = append(s.findings, f)
	s.mu.Unlock()
}

func (s *scanner) has(check string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.findings {
		if f.Check == check {
			return true
		}
	}
	return false
}

// dial returns a DialFunc to addr that has done the STARTTLS exchange, if any.
func (s *scanner) dial(addr string) probe.DialFunc {
	return probe.Dialer("tcp", addr, s.t.StartTLS)
}

func (s *scanner) run(ctx context.Context) {
	addrs, err := s.resolve(ctx)
	if err != nil {
		s.res.Error = err.Error()
		s.add("dns.failed", SeverityCritical, "", err.Error(), "cannot resolve %s", s.t.Host)
		return
	}
	prim, rep := s.connectAll(ctx, addrs)
	if prim == nil {
		s.res.Error = "no address completed a TLS handshake"
		for _, a := range s.res.Addresses {
			if a.Error != "" {
				s.res.Error += "; " + a.Address + ": " + a.Error
				break
			}
		}
		return
	}
	s.primary, s.rtt = prim.addr, prim.elapsed

	var wg sync.WaitGroup
	if rep == nil {
		wg.Go(func() { rep = s.enumerate(ctx) })
	}
	wg.Go(func() { s.checkCertificate(ctx, prim) })
	wg.Go(func() { s.checkResumption(ctx, prim) })
	wg.Go(func() { s.checkMTLS(ctx, prim) })
	wg.Go(func() { s.checkHTTP(ctx, prim) })
	wg.Wait()
	s.applyEnumeration(rep, prim)
	s.grade(rep, prim)
}

// resolve returns the addresses of the target host: the host itself if it is
// an IP address, else every A and AAAA record.
func (s *scanner) resolve(ctx context.Context) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(s.t.Host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	r := s.cfg.resolver
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", s.t.Host)
	if err != nil {
		return nil, fmt.Errorf("scan: resolve %s: %v", s.t.Host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("scan: resolve %s: no A or AAAA records", s.t.Host)
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	slices.SortStableFunc(addrs, func(a, b netip.Addr) int { // IPv4 first, then as returned
		return cmp.Compare(boolInt(a.Is6()), boolInt(b.Is6()))
	})
	return slices.Compact(addrs), nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// connectAll handshakes with every address concurrently, fills
// res.Addresses, reports inconsistencies, and returns the first address (in
// resolution order) whose server sent its certificate. When crypto/tls
// cannot handshake with any address but one accepts TCP, the prober's
// certificate chain stands in (see probeFallback), and its report is
// returned too.
func (s *scanner) connectAll(ctx context.Context, addrs []netip.Addr) (*handshake, *probe.Report) {
	hss := make([]*handshake, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		addr := netip.AddrPortFrom(a, uint16(s.t.Port)).String()
		wg.Go(func() {
			hss[i] = s.handshake(ctx, addr, hsOptions{cert: s.cfg.clientCert, alpn: s.alpnOffer()})
		})
	}
	wg.Wait()
	var prim *handshake
	var unreachable []string
	for i, hs := range hss {
		ar := AddressResult{Address: hs.addr, Family: "ipv4", HandshakeMS: hs.elapsed.Milliseconds()}
		if addrs[i].Is6() {
			ar.Family = "ipv6"
		}
		ar.TCP = hs.tcpErr == nil
		if len(hs.peerCerts) > 0 {
			ar.TLS = true
			ar.Version = tls.VersionName(hs.state.Version)
			ar.CipherSuite = tls.CipherSuiteName(hs.state.CipherSuite)
			sum := sha256.Sum256(hs.peerCerts[0].Raw)
			ar.CertificateSHA256 = hex.EncodeToString(sum[:])
			if prim == nil {
				prim = hs
			}
		}
		if hs.err != nil {
			ar.Error = hs.err.Error()
		}
		if !ar.TLS {
			unreachable = append(unreachable, hs.addr+": "+ar.Error)
		}
		s.res.Addresses = append(s.res.Addresses, ar)
	}
	var rep *probe.Report
	if prim == nil {
		prim, rep = s.probeFallback(ctx, hss)
		if prim != nil {
			unreachable = slices.DeleteFunc(unreachable, func(u string) bool { return strings.HasPrefix(u, prim.addr+": ") })
		}
	}
	starttlsFailed := slices.ContainsFunc(hss, func(h *handshake) bool { return h.startTLSErr != nil })
	switch {
	case prim == nil && starttlsFailed:
		s.add("connectivity.starttls_failed", SeverityCritical, "", joinEvidence(unreachable), "the %s STARTTLS exchange with %s failed", s.t.StartTLS, s.t.Host)
	case prim == nil && !slices.ContainsFunc(hss, func(h *handshake) bool { return h.tcpErr == nil }):
		s.add("connectivity.tcp_failed", SeverityCritical, "", joinEvidence(unreachable), "no address of %s accepts TCP connections on port %d", s.t.Host, s.t.Port)
	case prim == nil:
		s.add("connectivity.tls_failed", SeverityCritical, "", joinEvidence(unreachable), "no TLS handshake with %s completed", s.t)
	case len(unreachable) > 0:
		s.add("connectivity.partial", SeverityWarning, "", joinEvidence(unreachable),
			"%d of %d addresses did not complete a TLS handshake", len(unreachable), len(hss))
	}
	if prim == nil {
		return nil, nil
	}
	// Consistency: every address that answered should serve the same
	// certificate with the same protocol version.
	var diffs []string
	p := s.res.Addresses[slices.IndexFunc(s.res.Addresses, func(a AddressResult) bool { return a.Address == prim.addr })]
	for _, a := range s.res.Addresses {
		if !a.TLS || a.Address == p.Address {
			continue
		}
		if a.CertificateSHA256 != p.CertificateSHA256 {
			diffs = append(diffs, fmt.Sprintf("%s serves certificate %.16s…, %s serves %.16s…", a.Address, a.CertificateSHA256, p.Address, p.CertificateSHA256))
		}
		if a.Version != p.Version {
			diffs = append(diffs, fmt.Sprintf("%s negotiates %s, %s negotiates %s", a.Address, a.Version, p.Address, p.Version))
		}
	}
	if len(diffs) > 0 {
		s.add("connectivity.inconsistent", SeverityWarning, "", joinEvidence(diffs),
			"the addresses of %s do not behave the same; the grade describes %s", s.t.Host, p.Address)
	}
	return prim, rep
}

// probeFallback handles a server that crypto/tls cannot handshake with
// (e.g. only DHE or other suites Go does not implement, or only SSL 3.0):
// the prober reads the certificate chain from a TLS ≤ 1.2 handshake on the
// first address that accepted TCP. It returns nil if that fails too.
func (s *scanner) probeFallback(ctx context.Context, hss []*handshake) (*handshake, *probe.Report) {
	i := slices.IndexFunc(hss, func(h *handshake) bool { return h.tcpErr == nil && h.startTLSErr == nil })
	if i < 0 || s.cfg.skipProbe {
		return nil, nil
	}
	hs := hss[i]
	rep, err := probe.Enumerate(ctx, s.dial(hs.addr), probe.Config{ServerName: s.sni})
	if err != nil || len(rep.Certificates) == 0 {
		return nil, nil
	}
	var chain []*x509.Certificate
	for _, der := range rep.Certificates {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			s.cfg.log.DebugContext(ctx, "prober certificate does not parse", "addr", hs.addr, "err", err)
			return nil, nil
		}
		chain = append(chain, c)
	}
	vs := rep.Supported()
	if len(vs) == 0 {
		return nil, nil
	}
	prim := &handshake{addr: hs.addr, elapsed: hs.elapsed, peerCerts: chain, fromProbe: true}
	if rep.ClientCertRequested {
		prim.certRequest = &tls.CertificateRequestInfo{}
	}
	prim.state.Version = vs[len(vs)-1]
	if vr := rep.Version(prim.state.Version); vr != nil && len(vr.CipherSuites) > 0 {
		prim.state.CipherSuite = vr.CipherSuites[0]
	}
	s.add("connectivity.go_incompatible", SeverityWarning, "", hs.err.Error(),
		"crypto/tls cannot connect (clients built on modern TLS stacks cannot either); the certificate was read by the prober")
	ar := &s.res.Addresses[i]
	ar.TLS = true
	ar.Version = probe.VersionName(prim.state.Version)
	ar.CipherSuite = probe.CipherSuiteName(prim.state.CipherSuite)
	sum := sha256.Sum256(chain[0].Raw)
	ar.CertificateSHA256 = hex.EncodeToString(sum[:])
	s.primary = hs.addr
	return prim, rep
}

func joinEvidence(items []string) string { return strings.Join(items, "; ") }

// alpnOffer is the ALPN list of our crypto/tls handshakes. PostgreSQL 17+
// rejects any protocol other than "postgresql"; SMTP has none.
func (s *scanner) alpnOffer() []string {
	switch s.t.StartTLS {
	case StartTLSPostgres:
		return []string{"postgresql"}
	case StartTLSSMTP:
		return nil
	}
	return []string{"h2", "http/1.1"}
}

// isHTTP reports whether the endpoint speaks HTTP: the server selected an
// HTTP ALPN protocol, or it is plain TLS on port 443.
func (s *scanner) isHTTP(hs *handshake) bool {
	if s.t.StartTLS != "" {
		return false
	}
	switch hs.state.NegotiatedProtocol {
	case "h2", "http/1.1":
		return true
	}
	return s.t.Port == 443
}
