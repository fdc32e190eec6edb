package scan

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/certctl/certctl/scan/probe"
)

// goSuites is every suite crypto/tls can negotiate, the insecure ones
// included: to grade a legacy server the scanner must first complete a
// handshake with it. No application data is exchanged on these connections.
var goSuites = func() []uint16 {
	var ids []uint16
	for _, cs := range tls.CipherSuites() {
		ids = append(ids, cs.ID)
	}
	for _, cs := range tls.InsecureCipherSuites() {
		ids = append(ids, cs.ID)
	}
	return ids
}()

// maxHandshakeTime bounds one connection's dial, STARTTLS and handshake.
const maxHandshakeTime = 10 * time.Second

// hsOptions are the knobs of one crypto/tls handshake.
type hsOptions struct {
	cert       *tls.Certificate // presented when the server asks; nil: an empty Certificate message
	maxVersion uint16
	cache      tls.ClientSessionCache
	alpn       []string
}

// handshake is one crypto/tls connection attempt and what it observed.
type handshake struct {
	addr        string
	conn        *tls.Conn // nil unless the handshake completed; the caller closes it
	state       tls.ConnectionState
	elapsed     time.Duration
	tcpErr      error // TCP connect failed
	startTLSErr error // the STARTTLS exchange failed
	err         error // any failure

	// peerCerts is the chain as served, captured when the server's
	// Certificate message is processed: also set when the handshake fails
	// later (TLS 1.2 server that requires a client certificate).
	peerCerts []*x509.Certificate
	// certRequest is the server's CertificateRequest, if it sent one.
	certRequest *tls.CertificateRequestInfo
	// fromProbe: crypto/tls could not connect; peerCerts and the version
	// come from the prober (see probeFallback).
	fromProbe bool
}

// handshake connects to addr and runs a crypto/tls handshake without
// verifying the server (verification is a separate check, so that an
// untrusted chain can still be graded). A completed connection is returned
// open in hs.conn only when keep is set; otherwise it is closed.
func (s *scanner) handshake(ctx context.Context, addr string, o hsOptions) *handshake {
	return s.handshakeKeep(ctx, addr, o, false)
}

func (s *scanner) handshakeKeep(ctx context.Context, addr string, o hsOptions, keep bool) *handshake {
	hs := &handshake{addr: addr}
	start := time.Now()
	defer func() { hs.elapsed = time.Since(start) }()
	// One silent peer (a filtered port, a service waiting for a protocol we
	// do not speak) must not hold the whole scan.
	ctx, cancel := context.WithTimeout(ctx, min(s.cfg.timeout, maxHandshakeTime))
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		hs.tcpErr, hs.err = err, err
		return hs
	}
	if err := probe.StartTLS(ctx, raw, s.t.StartTLS); err != nil {
		raw.Close()
		hs.startTLSErr, hs.err = err, err
		return hs
	}
	cfg := &tls.Config{
		ServerName:         s.sni,
		InsecureSkipVerify: true, // verified by checkCertificate against the configured roots
		// A scanner must speak to old servers to grade them; nothing
		// confidential is sent on these connections.
		MinVersion:         tls.VersionTLS10,
		MaxVersion:         o.maxVersion,
		CipherSuites:       goSuites,
		NextProtos:         o.alpn,
		ClientSessionCache: o.cache,
		GetClientCertificate: func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			hs.certRequest = cri
			if o.cert != nil {
				return o.cert, nil
			}
			return &tls.Certificate{}, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			hs.peerCerts = cs.PeerCertificates
			return nil
		},
	}
	c := tls.Client(raw, cfg)
	if err := c.HandshakeContext(ctx); err != nil {
		hs.state = c.ConnectionState()
		hs.err = fmt.Errorf("scan: TLS handshake with %s: %w", addr, err)
		c.Close()
		return hs
	}
	hs.state = c.ConnectionState()
	if len(hs.peerCerts) == 0 {
		hs.peerCerts = hs.state.PeerCertificates
	}
	if keep {
		hs.conn = c
	} else {
		c.Close()
	}
	return hs
}

// notifyCache is a ClientSessionCache that signals when the server sent a
// session ticket (TLS 1.2 NewSessionTicket or TLS 1.3 post-handshake
// ticket).
type notifyCache struct {
	tls.ClientSessionCache
	got chan struct{} // cap 1
}

func newNotifyCache() *notifyCache {
	return &notifyCache{ClientSessionCache: tls.NewLRUClientSessionCache(4), got: make(chan struct{}, 1)}
}

func (c *notifyCache) Put(key string, cs *tls.ClientSessionState) {
	c.ClientSessionCache.Put(key, cs)
	if cs != nil {
		select {
		case c.got <- struct{}{}:
		default:
		}
	}
}

// serverVerdict is what the server did after our side of a handshake
// completed.
type serverVerdict struct {
	accepted bool
	evidence string
}

// awaitServer reads once from a completed TLS connection to learn whether the
// server accepted it. In TLS 1.3 the client's certificate is checked after
// the client considers the handshake done, so a rejection arrives as an
// alert on the first read. Acceptance is a session ticket (servers send them
// only after the client's Finished and certificate were accepted),
// application data, or no alert within wait.
func awaitServer(ctx context.Context, c *tls.Conn, tickets <-chan struct{}, wait time.Duration) serverVerdict {
	type readResult struct {
		n   int
		err error
	}
	done := make(chan readResult, 1)
	go func() {
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		done <- readResult{n, err}
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	var v serverVerdict
	select {
	case r := <-done:
		return verdictOf(r.n, r.err)
	case <-tickets:
		v = serverVerdict{true, "the server sent a session ticket after the handshake"}
	case <-t.C:
		v = serverVerdict{true, fmt.Sprintf("no alert within %v after the handshake", wait.Round(time.Millisecond))}
	case <-ctx.Done():
		v = serverVerdict{false, "interrupted: " + ctx.Err().Error()}
	}
	c.SetReadDeadline(time.Unix(1, 0)) // unblock the reader
	r := <-done
	if r.n > 0 || !isTimeout(r.err) {
		// Data or an alert arrived in the same instant: it decides.
		return verdictOf(r.n, r.err)
	}
	return v
}

func verdictOf(n int, err error) serverVerdict {
	switch {
	case n > 0:
		return serverVerdict{true, fmt.Sprintf("the server sent %d bytes of application data", n)}
	case err == nil:
		return serverVerdict{true, "read returned no error"}
	case errors.Is(err, io.EOF):
		return serverVerdict{false, "the server closed the connection after the handshake"}
	}
	return serverVerdict{false, err.Error()}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// waitFor sizes awaitServer's wait from the primary handshake time: long
// enough for a loaded server to check a certificate and answer, short
// enough not to dominate the scan.
func (s *scanner) waitFor() time.Duration {
	return min(max(20*s.rtt, time.Second), 3*time.Second)
}
