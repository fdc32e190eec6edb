package scan

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// hstsMinMaxAge is the max-age SSL Labs requires for A+: 180 days.
const hstsMinMaxAge = 180 * 24 * 3600

// httpTimeout bounds the HSTS request: a TLS server that does not speak HTTP
// on 443 would otherwise hold the scan until its timeout.
const httpTimeout = 5 * time.Second

// checkResumption tests TLS 1.2 session tickets and TLS 1.3 PSK resumption:
// two handshakes sharing a session cache, the second must report DidResume.
func (s *scanner) checkResumption(ctx context.Context, prim *handshake) {
	if prim.fromProbe {
		return
	}
	try := func(maxVersion uint16) (bool, bool) { // (tested, resumed)
		cache := newNotifyCache()
		o := hsOptions{cert: s.cfg.clientCert, maxVersion: maxVersion, cache: cache}
		first := s.handshakeKeep(ctx, s.primary, o, true)
		if first.err != nil {
			return false, false
		}
		if first.state.Version == tls.VersionTLS13 {
			// TLS 1.3 tickets arrive after the handshake: read until one
			// comes (or the wait ends).
			awaitServer(ctx, first.conn, cache.got, s.waitFor())
		}
		first.conn.Close()
		if maxVersion != 0 && first.state.Version != maxVersion {
			return false, false
		}
		second := s.handshake(ctx, s.primary, o)
		if second.err != nil {
			return true, false
		}
		return true, second.state.DidResume
	}
	if prim.state.Version == tls.VersionTLS13 {
		_, s.res.Features.SessionResumption = try(0)
	}
	_, s.res.Features.SessionTickets = try(tls.VersionTLS12)
}

// checkHTTP fetches GET / over HTTPS to read Strict-Transport-Security.
// Only for endpoints that speak HTTP (see isHTTP).
func (s *scanner) checkHTTP(ctx context.Context, prim *handshake) {
	s.res.Features.HTTP2 = prim.state.NegotiatedProtocol == "h2"
	if prim.fromProbe || !s.isHTTP(prim) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, httpTimeout)
	defer cancel()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return s.dial(s.primary)(ctx)
		},
		TLSClientConfig: &tls.Config{
			ServerName:         s.sni,
			InsecureSkipVerify: true, // trust is graded by checkCertificate; this request reads one header
			MinVersion:         tls.VersionTLS10,
			CipherSuites:       goSuites,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if s.cfg.clientCert != nil {
					return s.cfg.clientCert, nil
				}
				return &tls.Certificate{}, nil
			},
		},
		ForceAttemptHTTP2:      true,
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	defer tr.CloseIdleConnections()
	host := s.sni
	if host == "" {
		host = s.t.Host
	}
	u := "https://" + net.JoinHostPort(host, strconv.Itoa(s.t.Port)) + "/"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return
	}
	req.Header.Set("User-Agent", "certctl-scan")
	resp, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}).Do(req)
	if err != nil {
		s.add("http.failed", SeverityInfo, "", err.Error(), "GET / over HTTPS failed; HSTS not checked")
		return
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	h := &HSTS{StatusCode: resp.StatusCode, Header: resp.Header.Get("Strict-Transport-Security")}
	s.res.HSTS = h
	if h.Header == "" {
		s.add("hsts.missing", SeverityInfo, "", fmt.Sprintf("GET / -> %d, no Strict-Transport-Security header", resp.StatusCode),
			"no HTTP Strict Transport Security (needed for A+)")
		return
	}
	parseHSTS(h)
	if h.MaxAge < hstsMinMaxAge {
		s.add("hsts.short", SeverityInfo, "", h.Header, "HSTS max-age is under 180 days (needed for A+)")
	}
}

// parseHSTS fills MaxAge, IncludeSubDomains and Preload from h.Header (RFC
// 6797 §6.1; directive names are case-insensitive, values may be quoted).
func parseHSTS(h *HSTS) {
	h.MaxAge = -1
	for _, d := range strings.Split(h.Header, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(d), "=")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "max-age":
			if n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(v), `"`), 10, 64); err == nil && n >= 0 {
				h.MaxAge = n
			}
		case "includesubdomains":
			h.IncludeSubDomains = true
		case "preload":
			h.Preload = true
		}
	}
}
