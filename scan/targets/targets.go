// Package targets turns what users type after `certctl scan` (host names,
// host:port, IP addresses, CIDR ranges, target files) into the endpoints
// [scan.Scan] takes, and finds the live hosts of a range quickly before the
// full scans.
//
// Use [Parse] for one argument, [ReadFile] for the lines of an @file, and
// [Expand] for a whole command line; then [Live] keeps the range endpoints
// that accept a TCP connection. Everything here is a pure function or
// bounded by its context, and safe for concurrent use.
//
// # Syntax
//
// A spec is one of:
//   - a host name or IP address: scanned on every port of the port list;
//   - host:port, [IPv6]:port, or scheme://host[:port] with scheme https,
//     postgres or smtp (as [scan.ParseTarget] reads them): that port only;
//   - an IPv4 or IPv6 CIDR range such as 10.1.2.0/24 or fd00::/120: every
//     address (IPv4 ranges up to /30 without their network and broadcast
//     addresses) on every port of the port list. A range holds at most
//     [MaxRangeAddrs] addresses (IPv4 /16, IPv6 /112).
//
// A target file has one spec per line; blank lines and # comments (whole
// line, or after whitespace) are ignored.
package targets

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/certctl/certctl/scan"
)

// Limits.
const (
	// MaxRangeAddrs bounds the addresses of one CIDR range (an IPv4 /16 or
	// an IPv6 /112).
	MaxRangeAddrs = 1 << 16
	// MaxEndpoints bounds the endpoints of one Expand (addresses × ports).
	MaxEndpoints = 1 << 18
	// MaxFileSize bounds a target file.
	MaxFileSize = 8 << 20
	// maxLine bounds one line of a target file.
	maxLine = 4096
)

// ErrInvalid is wrapped by every error about a malformed spec, port list or
// target file.
var ErrInvalid = errors.New("targets: invalid target")

// ErrTooLarge is wrapped by errors about ranges or expansions above the
// limits.
var ErrTooLarge = errors.New("targets: too many addresses")

// Spec is one parsed argument.
type Spec struct {
	// Range is set for a CIDR range (masked: 10.1.2.0/24).
	Range netip.Prefix
	// Target is the endpoint of a non-range spec. Port is 0 when the spec
	// named none (the port list applies).
	Target scan.Target
}

// IsRange reports whether s is a CIDR range.
func (s Spec) IsRange() bool { return s.Range.IsValid() }

// Parse parses one spec (see the package doc). startTLS ("", "postgres",
// "smtp") applies to specs without a scheme. Errors wrap ErrInvalid or
// ErrTooLarge and name the spec.
func Parse(spec, startTLS string) (Spec, error) {
	s := strings.TrimSpace(spec)
	if s == "" {
		return Spec{}, fmt.Errorf("%w: empty target", ErrInvalid)
	}
	if strings.HasPrefix(s, "@") {
		return Spec{}, fmt.Errorf("%w %q: target files cannot name other target files", ErrInvalid, spec)
	}
	if strings.Contains(s, "/") && !strings.Contains(s, "://") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Spec{}, fmt.Errorf("%w %q: not a CIDR range (want e.g. 10.0.0.0/24 or fd00::/120): %v", ErrInvalid, spec, err)
		}
		p = p.Masked()
		if n := rangeSize(p); n.Cmp(big.NewInt(MaxRangeAddrs)) > 0 {
			return Spec{}, fmt.Errorf("%w: range %s has %s addresses, more than the %d (IPv4 /16, IPv6 /112) one range may have: split it into smaller ranges",
				ErrTooLarge, p, n, MaxRangeAddrs)
		}
		if err := checkStartTLS(spec, startTLS); err != nil {
			return Spec{}, err
		}
		return Spec{Range: p, Target: scan.Target{StartTLS: startTLS}}, nil
	}
	if strings.Contains(s, "://") {
		// scheme://host[:port]: the scheme sets STARTTLS and the default
		// port; the port list does not apply.
		t, err := scan.ParseTarget(s, 0)
		if err == nil {
			err = checkHost(t.Host)
		}
		if err != nil {
			return Spec{}, fmt.Errorf("%w %q: %v", ErrInvalid, spec, err)
		}
		return Spec{Target: t}, nil
	}
	if err := checkStartTLS(spec, startTLS); err != nil {
		return Spec{}, err
	}
	hasPort := strings.HasPrefix(s, "[") && strings.Contains(s, "]:") || strings.Count(s, ":") == 1
	t, err := scan.ParseTarget(s, 1) // 1: a placeholder, cleared below when s has no port
	if err == nil {
		err = checkHost(t.Host)
	}
	if err != nil {
		return Spec{}, fmt.Errorf("%w %q: %v", ErrInvalid, spec, err)
	}
	t.StartTLS = startTLS
	if !hasPort {
		t.Port = 0
	}
	return Spec{Target: t}, nil
}

// checkHost accepts an IP address or a DNS name: dot-separated labels of
// 1–63 letters, digits, hyphens and underscores (service names such as
// _sip._tcp appear in internal zones), 253 characters at most.
func checkHost(h string) error {
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	if len(h) > 253 {
		return fmt.Errorf("host name longer than 253 characters")
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("host %q: empty or over-long label", h)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("host %q: character %q is not allowed in a host name", h, c)
			}
		}
	}
	return nil
}

func checkStartTLS(spec, st string) error {
	switch st {
	case "", scan.StartTLSPostgres, scan.StartTLSSMTP:
		return nil
	}
	return fmt.Errorf("%w %q: unknown STARTTLS protocol %q (use postgres or smtp)", ErrInvalid, spec, st)
}

// rangeSize is the number of addresses of p.
func rangeSize(p netip.Prefix) *big.Int {
	return new(big.Int).Lsh(big.NewInt(1), uint(p.Addr().BitLen()-p.Bits()))
}

// Addrs lists the addresses of a range Spec: every address, except the
// network and broadcast addresses of IPv4 ranges of 4 or more addresses
// (/30 and shorter), which hosts do not use.
func (s Spec) Addrs() []netip.Addr {
	if !s.IsRange() {
		return nil
	}
	p := s.Range
	n := int(rangeSize(p).Int64()) // ≤ MaxRangeAddrs: Parse checked
	skipEnds := p.Addr().Is4() && p.Bits() <= 30
	out := make([]netip.Addr, 0, n)
	a := p.Addr()
	for i := 0; i < n; i++ {
		if !(skipEnds && (i == 0 || i == n-1)) {
			out = append(out, a)
		}
		a = a.Next()
	}
	return out
}

// ParsePorts parses a comma-separated port list ("443,8443"). Duplicates
// are dropped; order is kept.
func ParsePorts(list string) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("%w: port %q: want a number from 1 to 65535", ErrInvalid, f)
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: empty port list", ErrInvalid)
	}
	return out, nil
}

// ReadFile reads a target file: one spec per line; blank lines and #
// comments are skipped. It returns the specs unparsed, with their line
// numbers for messages. Errors wrap ErrInvalid.
func ReadFile(r io.Reader) (specs []string, lines []int, err error) {
	br := bufio.NewReader(io.LimitReader(r, MaxFileSize+1))
	total := 0
	for n := 1; ; n++ {
		line, err := br.ReadString('\n')
		total += len(line)
		if total > MaxFileSize {
			return nil, nil, fmt.Errorf("%w: target file larger than %d bytes", ErrInvalid, MaxFileSize)
		}
		if len(line) > maxLine {
			return nil, nil, fmt.Errorf("%w: line %d: longer than %d bytes", ErrInvalid, n, maxLine)
		}
		if s := stripComment(line); s != "" {
			if strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
				return nil, nil, fmt.Errorf("%w: line %d: %q: one target per line, without spaces or control characters", ErrInvalid, n, s)
			}
			specs = append(specs, s)
			lines = append(lines, n)
		}
		if err == io.EOF {
			return specs, lines, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("targets: read target file: %w", err)
		}
	}
}

// stripComment removes a # comment that starts the line or follows
// whitespace, and surrounding whitespace.
func stripComment(line string) string {
	s := strings.TrimSpace(line)
	if strings.HasPrefix(s, "#") {
		return ""
	}
	for i := 1; i < len(s); i++ {
		if s[i] == '#' && (s[i-1] == ' ' || s[i-1] == '\t') {
			return strings.TrimSpace(s[:i])
		}
	}
	return s
}

// Endpoint is one endpoint to scan.
type Endpoint struct {
	Target scan.Target
	// FromRange: the address came from a CIDR range, so it may well have no
	// server (see Live).
	FromRange bool
}

// Expand parses specs and returns their endpoints: specs without a port on
// every port of ports, ranges expanded, duplicates dropped, in the order
// given. ErrTooLarge above MaxEndpoints.
func Expand(specs []string, ports []int, startTLS string) ([]Endpoint, error) {
	if len(ports) == 0 {
		ports = []int{443}
	}
	var out []Endpoint
	seen := map[string]bool{}
	add := func(t scan.Target, fromRange bool) error {
		k := t.String()
		if seen[k] {
			return nil
		}
		if len(out) >= MaxEndpoints {
			return fmt.Errorf("%w: more than %d endpoints (addresses × ports): scan fewer ranges or ports at once", ErrTooLarge, MaxEndpoints)
		}
		seen[k] = true
		out = append(out, Endpoint{Target: t, FromRange: fromRange})
		return nil
	}
	for _, raw := range specs {
		s, err := Parse(raw, startTLS)
		if err != nil {
			return nil, err
		}
		if s.IsRange() {
			if n := rangeSize(s.Range).Int64() * int64(len(ports)); int64(len(out))+n > MaxEndpoints {
				return nil, fmt.Errorf("%w: %s on %d ports makes more than %d endpoints: scan fewer ranges or ports at once", ErrTooLarge, s.Range, len(ports), MaxEndpoints)
			}
			for _, a := range s.Addrs() {
				for _, p := range ports {
					if err := add(scan.Target{Host: a.String(), Port: p, StartTLS: s.Target.StartTLS}, true); err != nil {
						return nil, err
					}
				}
			}
			continue
		}
		if s.Target.Port != 0 {
			if err := add(s.Target, false); err != nil {
				return nil, err
			}
			continue
		}
		for _, p := range ports {
			t := s.Target
			t.Port = p
			if err := add(t, false); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// Dialer opens TCP connections; *net.Dialer satisfies it.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Live returns the endpoints worth a full scan: every endpoint not from a
// range, and the range endpoints that accept a TCP connection within
// timeout. It dials up to concurrency endpoints at once (at least 1) and
// calls progress (if not nil) after each dial, from one goroutine at a
// time. Order is kept. It returns early with ctx's error when ctx ends.
func Live(ctx context.Context, d Dialer, eps []Endpoint, timeout time.Duration, concurrency int, progress func(done, total int)) ([]Endpoint, error) {
	var idx []int
	for i, e := range eps {
		if e.FromRange {
			idx = append(idx, i)
		}
	}
	live := make([]bool, len(eps))
	var (
		mu   sync.Mutex
		done int
		wg   sync.WaitGroup
		sem  = make(chan struct{}, max(concurrency, 1))
	)
loop:
	for _, i := range idx {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		wg.Go(func() {
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, timeout)
			c, err := d.DialContext(dctx, "tcp", eps[i].Target.Addr())
			cancel()
			if err == nil {
				c.Close()
			}
			mu.Lock()
			defer mu.Unlock()
			live[i] = err == nil
			done++
			if progress != nil {
				progress(done, len(idx))
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []Endpoint
	for i, e := range eps {
		if !e.FromRange || live[i] {
			out = append(out, e)
		}
	}
	return out, nil
}
