package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
)

// maxRecord is the largest record body we accept: 2^14 plus the expansion
// allowed for compressed/encrypted records (RFC 5246 §6.2.3).
const maxRecord = 1<<14 + 2048

// errClosed means the server closed the connection after the hello without
// sending an alert: treated as "not supported".
var errClosed = errors.New("probe: connection closed without an answer")

// flight is what the server sent in answer to one ClientHello.
type flight struct {
	hello         *ServerHello
	certs         [][]byte
	ske           []byte // ServerKeyExchange body
	certRequested bool
	// raw message bodies, for tests that capture seed corpora
	rawHello, rawCert []byte
}

// rejected reports whether err means the server refused the hello (an alert,
// or the connection closed), as opposed to a failed probe.
func rejected(err error) bool {
	var ae *AlertError
	return errors.As(err, &ae) || errors.Is(err, errClosed)
}

// exchange opens a connection, sends hello and reads the answer: up to the
// ServerHello, or with full set (and TLS <= 1.2) up to ServerHelloDone.
// It returns an *AlertError or errClosed when the server refused.
func (p *prober) exchange(ctx context.Context, hello []byte, full bool) (*flight, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-p.sem }()
	p.probes.Add(1)

	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	conn, err := p.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("probe: dial: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	if _, err := conn.Write(hello); err != nil {
		return nil, p.ioError(ctx, "write ClientHello", err)
	}
	f, err := readFlight(bufio.NewReaderSize(conn, 8192), full)
	if err != nil && !rejected(err) && !errors.Is(err, ErrNotTLS) && !errors.Is(err, errMalformed) {
		return nil, p.ioError(ctx, "read answer", err)
	}
	return f, err
}

// ioError turns an I/O error into errClosed (the server hung up: a refusal)
// or a probe error naming the timeout.
func (p *prober) ioError(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("probe: %s: no answer within %v", op, p.cfg.Timeout)
		}
		return fmt.Errorf("probe: %s: %w", op, ctx.Err())
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("probe: %s: no answer within %v", op, p.cfg.Timeout)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) {
		return errClosed
	}
	return fmt.Errorf("probe: %s: %w", op, err)
}

// readFlight reads records until the flight is complete. It stops after the
// ServerHello unless full is set and the ServerHello is for TLS <= 1.2.
func readFlight(r io.Reader, full bool) (*flight, error) {
	f := &flight{}
	var hs []byte // handshake bytes not yet parsed
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, err
		}
		typ, major, n := hdr[0], hdr[1], int(hdr[3])<<8|int(hdr[4])
		if typ < recordChangeCipherSpec || typ > recordApplicationData || major != 3 {
			return nil, fmt.Errorf("%w (first bytes %q)", ErrNotTLS, hdr[:])
		}
		if n > maxRecord {
			return nil, malformed(fmt.Sprintf("record of %d bytes", n))
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, err
		}
		switch typ {
		case recordAlert:
			if len(body) < 2 {
				return nil, malformed("short alert")
			}
			if body[0] == 1 && body[1] != 0 { // a warning (e.g. unrecognized_name): keep reading
				continue
			}
			return nil, &AlertError{Level: body[0], Description: body[1]}
		case recordChangeCipherSpec:
			continue
		case recordApplicationData:
			return nil, malformed("application data before the handshake")
		}
		hs = append(hs, body...)
		for len(hs) >= 4 {
			mlen := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
			if mlen > maxHandshakeMessage {
				return nil, malformed(fmt.Sprintf("handshake message of %d bytes", mlen))
			}
			if len(hs) < 4+mlen {
				break
			}
			mtype, msg := hs[0], hs[4:4+mlen]
			hs = hs[4+mlen:]
			done, err := f.add(mtype, msg, full)
			if err != nil || done {
				return f, err
			}
		}
		if len(hs) > maxHandshakeMessage+4 {
			return nil, malformed("handshake data too long")
		}
	}
}

// add records one handshake message and reports whether the flight is done.
func (f *flight) add(mtype uint8, msg []byte, full bool) (bool, error) {
	if f.hello == nil {
		if mtype != typeServerHello {
			return false, malformed(fmt.Sprintf("handshake message %d before ServerHello", mtype))
		}
		h, err := ParseServerHello(msg)
		if err != nil {
			return false, err
		}
		f.hello, f.rawHello = h, msg
		return !full || h.HelloRetryRequest || h.NegotiatedVersion() >= VersionTLS13, nil
	}
	switch mtype {
	case typeCertificate:
		certs, err := ParseCertificateMessage(msg)
		if err != nil {
			return false, err
		}
		f.certs, f.rawCert = certs, msg
	case typeServerKeyExchange:
		f.ske = msg
	case typeCertificateRequest:
		f.certRequested = true
	case typeServerHelloDone:
		return true, nil
	}
	return false, nil
}

// hello is exchange for a helloSpec; it returns the ServerHello.
func (p *prober) hello(ctx context.Context, h *helloSpec) (*ServerHello, error) {
	f, err := p.flight(ctx, h, false)
	if err != nil {
		return nil, err
	}
	return f.hello, nil
}

// flight marshals h, runs the exchange and records whether the server
// answered with TLS at all.
func (p *prober) flight(ctx context.Context, h *helloSpec, full bool) (*flight, error) {
	if h.serverName == "" {
		h.serverName = p.cfg.ServerName
	}
	rec, err := h.marshal()
	if err != nil {
		return nil, fmt.Errorf("probe: build ClientHello: %w", err)
	}
	f, err := p.exchange(ctx, rec, full)
	var ae *AlertError
	switch {
	case err == nil, errors.As(err, &ae):
		p.answered.Store(true)
	case errors.Is(err, ErrNotTLS):
		p.notTLS.Store(true)
	}
	return f, err
}
