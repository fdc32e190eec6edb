// Package proxy dials TCP connections through an HTTP CONNECT proxy
// (RFC 9110 §9.3.6), optionally speaking TLS or mutual TLS to the proxy
// itself. An [HTTPConnect] has the DialContext signature, so it plugs into
// transport's dialers, http.Transport.DialContext and pgconn.DialFunc:
//
//	p := &proxy.HTTPConnect{URL: proxyURL, TLSConfig: proxyTLS}
//	conn, err := p.DialContext(ctx, "tcp", "db.internal:5432")
//
// The connection returned is the tunnel: the end-to-end TLS (for example
// transport's mTLS) runs inside it, so the proxy sees only ciphertext.
package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// ContextDialer dials a connection; *net.Dialer, *tls.Dialer, another
// *HTTPConnect (proxy chains) and transport's dialer satisfy it.
type ContextDialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// MaxResponseHeader bounds the proxy's response to CONNECT (status line and
// headers). Real proxies send a few hundred bytes.
const MaxResponseHeader = 16 << 10

// DefaultTimeout bounds a dial whose ctx has no deadline.
const DefaultTimeout = 30 * time.Second

// ErrProxyRefused: the proxy answered CONNECT with a non-2xx status. The
// error is a *StatusError.
var ErrProxyRefused = errors.New("proxy: CONNECT refused")

// StatusError is a non-2xx answer to CONNECT. It matches ErrProxyRefused.
type StatusError struct {
	Proxy      string // proxy host:port
	Addr       string // the target asked for
	StatusCode int
	Status     string // e.g. "407 Proxy Authentication Required"
	Body       string // the start of the body, if it came with the headers
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("proxy: CONNECT %s via %s: proxy answered %q", e.Addr, e.Proxy, e.Status)
	switch e.StatusCode {
	case http.StatusProxyAuthRequired, http.StatusUnauthorized: // tinyproxy answers 401
		msg += " (set the Proxy-Authorization header or user:password in the proxy URL)"
	case http.StatusForbidden:
		msg += " (the proxy does not allow this destination or port)"
	}
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Is makes errors.Is(err, ErrProxyRefused) true.
func (e *StatusError) Is(target error) bool { return target == ErrProxyRefused }

// HTTPConnect dials through an HTTP CONNECT proxy.
//
// Fields must not be modified after the first DialContext; an HTTPConnect
// is then safe for concurrent use. TLSConfig is cloned, never modified.
type HTTPConnect struct {
	// URL of the proxy: http://host[:port] (default port 80) or
	// https://host[:port] (default 443). user:password in the URL is sent
	// as Basic Proxy-Authorization unless Header has one.
	URL *url.URL
	// TLSConfig, when non-nil, makes the connection to the proxy TLS
	// (mutual TLS if it has a client certificate). An https URL with a nil
	// TLSConfig uses TLS with the system roots. ServerName defaults to the
	// proxy's host; MinVersion is raised to TLS 1.2 at least.
	TLSConfig *tls.Config
	// Forward dials the proxy (default: a net.Dialer).
	Forward ContextDialer
	// Header is sent with CONNECT (e.g. Proxy-Authorization).
	Header http.Header
}

// DialContext connects to addr (host:port) through the proxy and returns
// the tunnel. network must be tcp, tcp4 or tcp6. ctx bounds the whole
// setup: dialing the proxy, its TLS handshake, CONNECT and its answer
// (DefaultTimeout if ctx has no deadline); it does not bound the returned
// connection. Bytes the proxy sent after its answer are kept: the first
// reads on the returned connection return them.
func (p *HTTPConnect) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("proxy: dial %s %s: only tcp can go through a CONNECT proxy", network, addr)
	}
	if err := validTarget(addr); err != nil {
		return nil, err
	}
	if p.URL == nil || p.URL.Host == "" {
		return nil, fmt.Errorf("proxy: dial %s: no proxy URL", addr)
	}
	useTLS := p.TLSConfig != nil
	port := "80"
	switch p.URL.Scheme {
	case "http":
	case "https":
		useTLS, port = true, "443"
	default:
		return nil, fmt.Errorf("proxy: dial %s: proxy URL scheme %q is not http or https", addr, p.URL.Scheme)
	}
	host := p.URL.Hostname()
	if pp := p.URL.Port(); pp != "" {
		port = pp
	}
	proxyAddr := net.JoinHostPort(host, port)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	fwd := p.Forward
	if fwd == nil {
		fwd = &net.Dialer{}
	}
	raw, err := fwd.DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, fmt.Errorf("proxy: dial proxy %s: %w", proxyAddr, err)
	}
	conn := raw
	if useTLS {
		cfg := &tls.Config{}
		if p.TLSConfig != nil {
			cfg = p.TLSConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
		if cfg.MinVersion < tls.VersionTLS12 {
			cfg.MinVersion = tls.VersionTLS12
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("proxy: TLS handshake with proxy %s: %w", proxyAddr, err)
		}
		conn = tc
	}
	out, err := p.connect(ctx, conn, proxyAddr, addr)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return out, nil
}

// connect sends CONNECT on conn and reads the answer, within ctx.
func (p *HTTPConnect) connect(ctx context.Context, conn net.Conn, proxyAddr, addr string) (net.Conn, error) {
	// ctx bounds the exchange: its deadline on the connection, and an
	// immediate deadline if it is cancelled.
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	ctxErr := func(err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("proxy: CONNECT %s via %s: %w (%v)", addr, proxyAddr, context.Cause(ctx), err)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Our only deadline is ctx's, which the connection may reach
			// a moment before ctx reports it.
			return fmt.Errorf("proxy: CONNECT %s via %s: %w (%v)", addr, proxyAddr, context.DeadlineExceeded, err)
		}
		return fmt.Errorf("proxy: CONNECT %s via %s: %w", addr, proxyAddr, err)
	}
	req, err := p.request(addr)
	if err != nil {
		stop()
		return nil, err
	}
	if _, err := conn.Write(req); err != nil {
		stop()
		return nil, ctxErr(err)
	}
	tunnel, err := readResponse(conn, proxyAddr, addr)
	if !stop() {
		// ctx ended during the exchange; the deadline we set may have
		// broken the read.
		if err == nil {
			err = context.Cause(ctx)
		}
		return nil, ctxErr(err)
	}
	if err != nil {
		var se *StatusError
		if errors.As(err, &se) {
			return nil, err
		}
		return nil, ctxErr(err)
	}
	conn.SetDeadline(time.Time{})
	return tunnel, nil
}

// request builds the CONNECT request.
func (p *HTTPConnect) request(addr string) ([]byte, error) {
	h := p.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if u := p.URL.User; u != nil && h.Get("Proxy-Authorization") == "" {
		pw, _ := u.Password()
		h.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pw)))
	}
	h.Del("Host")
	for k, vs := range h {
		if !validHeaderName(k) {
			return nil, fmt.Errorf("proxy: CONNECT %s: invalid header name %q", addr, k)
		}
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n\x00") {
				return nil, fmt.Errorf("proxy: CONNECT %s: header %s contains a line break", addr, k)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", addr, addr)
	h.Write(&b)
	b.WriteString("\r\n")
	return []byte(b.String()), nil
}

// readResponse reads the proxy's answer to CONNECT from conn: at most
// MaxResponseHeader bytes of status line and headers. On 2xx it returns
// conn, wrapped to first return whatever was read past the headers. It
// never reads a body: on 2xx the tunnel starts right after the headers
// (RFC 9110 §9.3.6), and on an error only what already arrived is quoted.
func readResponse(conn net.Conn, proxyAddr, addr string) (net.Conn, error) {
	lr := &io.LimitedReader{R: conn, N: MaxResponseHeader}
	br := bufio.NewReaderSize(lr, 4096)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		if lr.N == 0 {
			return nil, fmt.Errorf("proxy response headers exceed %d bytes", MaxResponseHeader)
		}
		return nil, fmt.Errorf("read proxy response: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, _ := br.Peek(min(br.Buffered(), 256))
		return nil, &StatusError{Proxy: proxyAddr, Addr: addr, StatusCode: resp.StatusCode, Status: resp.Status, Body: printable(body)}
	}
	n := br.Buffered()
	if n == 0 {
		return conn, nil
	}
	left, _ := br.Peek(n)
	return &bufferedConn{Conn: conn, buf: append([]byte(nil), left...)}, nil
}

// bufferedConn returns buf before reading from Conn.
type bufferedConn struct {
	net.Conn
	buf []byte
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// validTarget checks that addr is host:port with nothing that could
// break the request line.
func validTarget(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" || strings.ContainsFunc(addr, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '/' }) {
		return fmt.Errorf("proxy: dial %q: want host:port", addr)
	}
	return nil
}

// validHeaderName: an RFC 9110 token.
func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// printable keeps the printable ASCII of b, for error messages.
func printable(b []byte) string {
	s := strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return ' '
		}
		return r
	}, string(b))
	return strings.Join(strings.Fields(s), " ")
}
