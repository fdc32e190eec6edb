package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// prober holds the state of one Enumerate call.
type prober struct {
	dial DialFunc
	cfg  Config
	sem  chan struct{} // one token per open connection

	probes   atomic.Int64
	answered atomic.Bool // some probe got a ServerHello or an alert
	notTLS   atomic.Bool

	mu       sync.Mutex
	errs     []string
	firstErr error
}

// fail records a probe-level problem.
func (p *prober) fail(what string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs = append(p.errs, fmt.Sprintf("%s: %v", what, err))
	if p.firstErr == nil {
		p.firstErr = err
	}
}

// Enumerate probes the endpoint reached through dial and reports its
// protocol versions, cipher suites, groups and the other properties listed in
// the package documentation. It returns an error only when ctx is done or no
// probe got a TLS answer (wrapping the first failure, or ErrNotTLS);
// problems of single probes are listed in Report.Errors.
//
// Enumerate is safe for concurrent use; it keeps at most cfg.Concurrency
// connections open and returns when all of them are closed.
func Enumerate(ctx context.Context, dial DialFunc, cfg Config) (*Report, error) {
	start := time.Now()
	p := &prober{dial: dial, cfg: cfg.withDefaults()}
	p.sem = make(chan struct{}, p.cfg.Concurrency)
	rep := &Report{}

	// Phase 1: versions and their suites, TLS 1.3 groups.
	rep.Versions = make([]VersionResult, len(p.cfg.Versions))
	var wg sync.WaitGroup
	for i, v := range p.cfg.Versions {
		wg.Go(func() { rep.Versions[i] = p.enumerateVersion(ctx, v) })
	}
	var groups13 []uint16
	if slices.Contains(p.cfg.Versions, VersionTLS13) {
		wg.Go(func() { groups13 = p.enumerateGroups13(ctx) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("probe: enumerate: %w", err)
	}
	if !p.answered.Load() {
		if p.notTLS.Load() {
			return nil, fmt.Errorf("probe: enumerate: %w", ErrNotTLS)
		}
		if p.firstErr != nil {
			return nil, fmt.Errorf("probe: enumerate: no TLS answer: %w", p.firstErr)
		}
		return nil, fmt.Errorf("probe: enumerate: %w: the server closed every connection without a TLS answer", errClosed)
	}

	// Phase 2: what depends on the versions found.
	supported := rep.Supported()
	var legacy *VersionResult // highest supported version <= TLS 1.2
	for i := range rep.Versions {
		if v := &rep.Versions[i]; v.Supported && v.Version <= VersionTLS12 && (legacy == nil || v.Version > legacy.Version) {
			legacy = v
		}
	}
	if legacy != nil {
		wg.Go(func() { p.legacyFlight(ctx, legacy, rep) })
		wg.Go(func() { rep.DHPrimeBits = p.dhPrimeBits(ctx, legacy) })
	}
	tls13 := rep.Version(VersionTLS13)
	switch {
	case len(groups13) > 0:
		rep.Groups = groups13
		wg.Go(func() { rep.PreferredGroup = p.confirmGroup13(ctx, groups13[0]) })
	case tls13 != nil && tls13.Supported:
		// The server refused every hello with an empty key_share (RFC 8446
		// §4.2.8 allows it): try each group with a real share instead.
		wg.Go(func() { rep.Groups = p.groupsByKeyShare(ctx) })
	case legacy != nil:
		wg.Go(func() { rep.Groups = p.enumerateCurves(ctx, legacy) })
	}
	if len(supported) > 0 {
		wg.Go(func() { rep.ALPN = p.enumerateALPN(ctx, legacy) })
	}
	if len(supported) >= 2 {
		below := rep.Version(supported[len(supported)-2])
		wg.Go(func() { rep.FallbackSCSV = p.fallbackSCSV(ctx, below) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("probe: enumerate: %w", err)
	}
	if len(groups13) == 0 && len(rep.Groups) > 0 && (tls13 == nil || !tls13.Supported) {
		rep.PreferredGroup = rep.Groups[0] // TLS 1.2 curves: the enumeration order
	}
	rep.Errors = p.errs
	rep.Probes = int(p.probes.Load())
	rep.Duration = time.Since(start)
	return rep, nil
}

// suitesFor returns the suites offered for version v, in offering order.
func suitesFor(v uint16) []uint16 {
	var out []uint16
	for _, s := range suiteNames {
		if tls13 := s.id>>8 == 0x13; tls13 == (v >= VersionTLS13) {
			out = append(out, s.id)
		}
	}
	return out
}

// baseHello is a hello for version v offering suites, with every group.
func baseHello(v uint16, suites []uint16) *helloSpec {
	h := &helloSpec{version: v, suites: suites}
	if v >= VersionTLS13 {
		h.groups = tls13Groups()
		ks, _ := newKeyShare(GroupX25519)
		h.keyShares = []keyShare{ks}
	} else {
		h.groups = append(legacyCurves(), GroupFFDHE2048, GroupFFDHE3072, GroupFFDHE4096)
	}
	return h
}

// accepted checks that sh is an answer to a hello for version v offering
// offered, and returns the chosen suite. ok is false (and the problem
// recorded) otherwise.
func (p *prober) accepted(what string, v uint16, offered []uint16, sh *ServerHello) (uint16, bool) {
	if got := sh.NegotiatedVersion(); got != v {
		// A lower version is ordinary negotiation (v is not supported); a
		// higher one than offered is a server bug.
		if got > v {
			p.fail(what, fmt.Errorf("probe: server answered with %s, higher than offered", VersionName(got)))
		}
		return 0, false
	}
	if !slices.Contains(offered, sh.CipherSuite) {
		p.fail(what, fmt.Errorf("probe: server chose suite %s, which was not offered", CipherSuiteName(sh.CipherSuite)))
		return 0, false
	}
	return sh.CipherSuite, true
}

// enumerateVersion finds the suites of version v and the server's order.
func (p *prober) enumerateVersion(ctx context.Context, v uint16) VersionResult {
	res := VersionResult{Version: v}
	what := VersionName(v)
	offered := suitesFor(v)
	for len(offered) > 0 {
		sh, err := p.hello(ctx, baseHello(v, offered))
		if err != nil {
			if !rejected(err) {
				p.fail(what, err)
			}
			break
		}
		s, ok := p.accepted(what, v, offered, sh)
		if !ok {
			break
		}
		res.CipherSuites = append(res.CipherSuites, s)
		offered = slices.DeleteFunc(offered, func(x uint16) bool { return x == s })
	}
	res.Supported = len(res.CipherSuites) > 0
	if len(res.CipherSuites) < 2 {
		return res
	}
	// The found order is ours if the server follows the client. Offer it
	// reversed: a server with its own order still picks its first.
	rev := slices.Clone(res.CipherSuites)
	slices.Reverse(rev)
	sh, err := p.hello(ctx, baseHello(v, rev))
	if err != nil {
		p.fail(what+" server preference", err)
		return res
	}
	if s, ok := p.accepted(what+" server preference", v, rev, sh); ok {
		res.ServerPreference = s == res.CipherSuites[0]
	}
	return res
}

// enumerateGroups13 offers the remaining TLS 1.3 groups with no key share so
// that each HelloRetryRequest names the server's choice.
func (p *prober) enumerateGroups13(ctx context.Context) []uint16 {
	offered := tls13Groups()
	var found []uint16
	for len(offered) > 0 {
		h := baseHello(VersionTLS13, suitesFor(VersionTLS13))
		h.groups, h.keyShares = offered, nil
		sh, err := p.hello(ctx, h)
		if err != nil {
			if !rejected(err) {
				p.fail("TLS 1.3 groups", err)
			}
			break
		}
		g := sh.KeyShareGroup
		if sh.NegotiatedVersion() != VersionTLS13 || !sh.HelloRetryRequest || !slices.Contains(offered, g) {
			p.fail("TLS 1.3 groups", fmt.Errorf("probe: expected a HelloRetryRequest for an offered group, got %s group %s",
				VersionName(sh.NegotiatedVersion()), GroupName(g)))
			break
		}
		found = append(found, g)
		offered = slices.DeleteFunc(offered, func(x uint16) bool { return x == g })
	}
	return found
}

// confirmGroup13 sends a real key share for g and checks that the server
// answers with a ServerHello for it. It returns g, or 0 if it did not.
func (p *prober) confirmGroup13(ctx context.Context, g uint16) uint16 {
	ks, err := newKeyShare(g)
	if err != nil {
		return g // no way to build a share (brainpool): the HRR is the evidence
	}
	h := baseHello(VersionTLS13, suitesFor(VersionTLS13))
	h.groups, h.keyShares = []uint16{g}, []keyShare{ks}
	sh, err := p.hello(ctx, h)
	if err == nil && (sh.HelloRetryRequest || sh.KeyShareGroup != g || len(sh.KeyShare) == 0) {
		err = fmt.Errorf("probe: server answered with key_share group %s (HelloRetryRequest %v)",
			GroupName(sh.KeyShareGroup), sh.HelloRetryRequest)
	}
	if err != nil {
		p.fail("TLS 1.3 key share for "+GroupName(g), err)
		return 0
	}
	return g
}

// groupsByKeyShare offers each TLS 1.3 group we can make a key share for,
// alone and with its share, and returns those the server accepted, in our
// order. It finds no preference.
func (p *prober) groupsByKeyShare(ctx context.Context) []uint16 {
	var candidates []uint16
	for _, g := range tls13Groups() {
		if _, err := newKeyShare(g); err == nil {
			candidates = append(candidates, g)
		}
	}
	ok := make([]bool, len(candidates))
	var wg sync.WaitGroup
	for i, g := range candidates {
		wg.Go(func() {
			ks, _ := newKeyShare(g)
			h := baseHello(VersionTLS13, suitesFor(VersionTLS13))
			h.groups, h.keyShares = []uint16{g}, []keyShare{ks}
			sh, err := p.hello(ctx, h)
			switch {
			case err == nil:
				ok[i] = !sh.HelloRetryRequest && sh.KeyShareGroup == g
			case !rejected(err):
				p.fail("TLS 1.3 key share for "+GroupName(g), err)
			}
		})
	}
	wg.Wait()
	var found []uint16
	for i, g := range candidates {
		if ok[i] {
			found = append(found, g)
		}
	}
	return found
}

// legacyFlight reads a whole TLS <= 1.2 flight offering DEFLATE: the
// certificate chain, compression, renegotiation_info, CertificateRequest.
// (Compression applies only after ChangeCipherSpec, so the flight is readable.)
func (p *prober) legacyFlight(ctx context.Context, v *VersionResult, rep *Report) {
	h := baseHello(v.Version, v.CipherSuites)
	h.compression = true
	what := VersionName(v.Version) + " certificate"
	f, err := p.flight(ctx, h, true)
	if err != nil {
		p.fail(what, err)
		return
	}
	if _, ok := p.accepted(what, v.Version, v.CipherSuites, f.hello); !ok {
		return
	}
	rep.Certificates = f.certs
	rep.Compression = f.hello.CompressionMethod == 1
	rep.SecureRenegotiation = f.hello.SecureRenegotiation
	rep.ClientCertRequested = f.certRequested
}

// dhPrimeBits offers only the DHE suites of v and reads the prime size.
func (p *prober) dhPrimeBits(ctx context.Context, v *VersionResult) int {
	var dhe []uint16
	for _, s := range v.CipherSuites {
		if d, _ := LookupCipherSuite(s); d.KeyExchange == "DHE_RSA" || d.KeyExchange == "DHE_DSS" || d.KeyExchange == "DH_anon" {
			dhe = append(dhe, s)
		}
	}
	if len(dhe) == 0 {
		return 0
	}
	ske, err := p.keyExchange(ctx, baseHello(v.Version, dhe), v.Version, "DH parameters")
	if err != nil {
		return 0
	}
	return ske.dhPrimeBits
}

// keyExchange runs a full TLS <= 1.2 flight and parses its ServerKeyExchange.
func (p *prober) keyExchange(ctx context.Context, h *helloSpec, v uint16, what string) (serverKeyExchange, error) {
	f, err := p.flight(ctx, h, true)
	if err != nil {
		if !rejected(err) {
			p.fail(what, err)
		}
		return serverKeyExchange{}, err
	}
	s, ok := p.accepted(what, v, h.suites, f.hello)
	if !ok {
		return serverKeyExchange{}, errors.New("probe: unexpected ServerHello")
	}
	if f.ske == nil {
		err := errors.New("probe: no ServerKeyExchange")
		p.fail(what, err)
		return serverKeyExchange{}, err
	}
	d, _ := LookupCipherSuite(s)
	ske, err := parseServerKeyExchange(d.KeyExchange, f.ske)
	if err != nil {
		p.fail(what, err)
	}
	return ske, err
}

// enumerateCurves finds the ECDHE curves of a server without TLS 1.3 by
// offering its ECDHE suites with the remaining curves and reading each
// ServerKeyExchange.
func (p *prober) enumerateCurves(ctx context.Context, v *VersionResult) []uint16 {
	var ecdhe []uint16
	for _, s := range v.CipherSuites {
		if d, _ := LookupCipherSuite(s); d.KeyExchange == "ECDHE_RSA" || d.KeyExchange == "ECDHE_ECDSA" || d.KeyExchange == "ECDH_anon" {
			ecdhe = append(ecdhe, s)
		}
	}
	if len(ecdhe) == 0 {
		return nil
	}
	offered := legacyCurves()
	var found []uint16
	for len(offered) > 0 {
		h := baseHello(v.Version, ecdhe)
		h.groups = offered
		ske, err := p.keyExchange(ctx, h, v.Version, "ECDHE curves")
		if err != nil {
			break
		}
		if !slices.Contains(offered, ske.curve) {
			p.fail("ECDHE curves", fmt.Errorf("probe: server chose curve %s, which was not offered", GroupName(ske.curve)))
			break
		}
		found = append(found, ske.curve)
		offered = slices.DeleteFunc(offered, func(x uint16) bool { return x == ske.curve })
	}
	return found
}

// enumerateALPN offers the remaining protocols until the server selects
// none. With a TLS <= 1.2 version it reads the ServerHello; a TLS 1.3 only
// server sends ALPN encrypted, so crypto/tls does the handshake.
func (p *prober) enumerateALPN(ctx context.Context, legacy *VersionResult) []string {
	offered := slices.Clone(p.cfg.ALPN)
	var found []string
	for len(offered) > 0 {
		var proto string
		var err error
		if legacy != nil {
			h := baseHello(legacy.Version, legacy.CipherSuites)
			h.alpn = offered
			var sh *ServerHello
			if sh, err = p.hello(ctx, h); err == nil {
				proto = sh.ALPNProtocol
			}
		} else {
			proto, err = p.alpn13(ctx, offered)
		}
		if err != nil {
			var ae *AlertError
			if !errors.As(err, &ae) || ae.Description != 120 { // no_application_protocol: done
				p.fail("ALPN", err)
			}
			break
		}
		if proto == "" {
			break
		}
		if !slices.Contains(offered, proto) {
			p.fail("ALPN", fmt.Errorf("probe: server selected %q, which was not offered", proto))
			break
		}
		found = append(found, proto)
		offered = slices.DeleteFunc(offered, func(x string) bool { return x == proto })
	}
	return found
}

// alpn13 does a TLS 1.3 handshake with crypto/tls to read the selected
// protocol. The certificate is not verified: only ALPN is read, and the
// connection is closed right after the handshake.
func (p *prober) alpn13(ctx context.Context, protos []string) (string, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-p.sem }()
	p.probes.Add(1)
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	conn, err := p.dial(ctx)
	if err != nil {
		return "", fmt.Errorf("probe: dial: %w", err)
	}
	tc := tls.Client(conn, &tls.Config{
		ServerName:         p.cfg.ServerName,
		MinVersion:         tls.VersionTLS13,
		NextProtos:         protos,
		InsecureSkipVerify: true, // only the ALPN protocol is read; the chain is checked by package scan
	})
	defer tc.Close()
	if err := tc.HandshakeContext(ctx); err != nil {
		if strings.Contains(err.Error(), "no application protocol") { // crypto/tls does not export received alerts
			return "", &AlertError{Level: 2, Description: 120}
		}
		return "", fmt.Errorf("probe: TLS 1.3 handshake for ALPN: %w", err)
	}
	return tc.ConnectionState().NegotiatedProtocol, nil
}

// fallbackSCSV offers version v (below the highest) with TLS_FALLBACK_SCSV.
func (p *prober) fallbackSCSV(ctx context.Context, v *VersionResult) *bool {
	h := baseHello(v.Version, v.CipherSuites)
	h.fallback = true
	sh, err := p.hello(ctx, h)
	var ae *AlertError
	switch {
	case err == nil:
		if _, ok := p.accepted("fallback SCSV", v.Version, v.CipherSuites, sh); !ok {
			return nil
		}
		return new(false)
	case errors.As(err, &ae) && ae.Description == AlertInappropriateFallback:
		return new(true)
	}
	p.fail("fallback SCSV", err)
	return nil
}
