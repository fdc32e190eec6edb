package probe

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// StartTLS runs the plaintext exchange that precedes TLS for proto on conn,
// leaving conn ready for a ClientHello:
//
//   - "postgres": an SSLRequest (protocol 1234.5679); the server must answer 'S'.
//   - "smtp": read the 220 greeting, EHLO, check the STARTTLS capability,
//     STARTTLS, expect 220.
//   - "": nothing (direct TLS).
//
// The exchange is bounded by ctx (deadline and cancellation). Errors wrap
// [ErrStartTLS] when the server refuses or does not speak the protocol.
func StartTLS(ctx context.Context, conn net.Conn, proto string) (err error) {
	if proto == "" {
		return nil
	}
	// Cancellation and the deadline of ctx interrupt blocked reads and
	// writes by moving the connection's deadline to the past.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			conn.SetDeadline(time.Time{})
			if err != nil {
				err = fmt.Errorf("probe: starttls %s: %w", proto, ctx.Err())
			}
		}
	}()
	switch proto {
	case "postgres", "postgresql":
		return startPostgres(conn)
	case "smtp":
		return startSMTP(conn)
	}
	return fmt.Errorf("probe: starttls %q: unknown protocol (want postgres or smtp)", proto)
}

// startPostgres sends an SSLRequest (PostgreSQL protocol, "SSLRequest").
func startPostgres(conn net.Conn) error {
	var req [8]byte
	binary.BigEndian.PutUint32(req[0:], 8)
	binary.BigEndian.PutUint32(req[4:], 80877103) // 1234<<16 | 5679
	if _, err := conn.Write(req[:]); err != nil {
		return fmt.Errorf("probe: starttls postgres: write SSLRequest: %w", err)
	}
	var resp [1]byte
	if _, err := io.ReadFull(conn, resp[:]); err != nil {
		return fmt.Errorf("probe: starttls postgres: read SSLRequest answer: %w", err)
	}
	switch resp[0] {
	case 'S':
		return nil
	case 'N':
		return fmt.Errorf("%w: postgres server refused SSL (ssl = off in postgresql.conf?)", ErrStartTLS)
	}
	return fmt.Errorf("%w: postgres: unexpected answer %q to SSLRequest (not a PostgreSQL server?)", ErrStartTLS, resp[0])
}

// startSMTP runs EHLO and STARTTLS (RFC 3207). The reader is dropped after
// the 220: the server sends nothing more until the ClientHello.
func startSMTP(conn net.Conn) error {
	r := bufio.NewReaderSize(conn, 4096)
	if _, err := smtpReply(r, 220); err != nil {
		return fmt.Errorf("probe: starttls smtp: greeting: %w", err)
	}
	if _, err := io.WriteString(conn, "EHLO certctl-scan.invalid\r\n"); err != nil {
		return fmt.Errorf("probe: starttls smtp: write EHLO: %w", err)
	}
	lines, err := smtpReply(r, 250)
	if err != nil {
		return fmt.Errorf("probe: starttls smtp: EHLO: %w", err)
	}
	found := false
	for _, l := range lines {
		if strings.EqualFold(strings.TrimSpace(l), "STARTTLS") {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("%w: smtp server does not offer STARTTLS in its EHLO reply", ErrStartTLS)
	}
	if _, err := io.WriteString(conn, "STARTTLS\r\n"); err != nil {
		return fmt.Errorf("probe: starttls smtp: write STARTTLS: %w", err)
	}
	if _, err := smtpReply(r, 220); err != nil {
		return fmt.Errorf("probe: starttls smtp: STARTTLS: %w", err)
	}
	if r.Buffered() > 0 {
		return fmt.Errorf("%w: smtp server sent data after 220 to STARTTLS", ErrStartTLS)
	}
	return nil
}

// smtpReply reads one (multi-line) reply and checks its code. It returns the
// text of each line.
func smtpReply(r *bufio.Reader, want int) ([]string, error) {
	var lines []string
	for n := 0; ; n++ {
		if n > 100 {
			return nil, fmt.Errorf("%w: smtp reply longer than 100 lines", ErrStartTLS)
		}
		line, err := r.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		s := strings.TrimRight(string(line), "\r\n")
		var code int
		if len(s) < 3 || func() bool { _, err := fmt.Sscanf(s[:3], "%d", &code); return err != nil }() {
			return nil, fmt.Errorf("%w: not an SMTP reply: %q", ErrStartTLS, s)
		}
		if code != want {
			return nil, fmt.Errorf("%w: smtp server answered %q, want %d", ErrStartTLS, s, want)
		}
		if len(s) > 4 {
			lines = append(lines, s[4:])
		}
		if len(s) == 3 || s[3] == ' ' {
			return lines, nil
		}
	}
}

// Dialer returns a DialFunc that connects to address with net.Dialer and runs
// StartTLS(proto) on the new connection. It is safe for concurrent use.
func Dialer(network, address, proto string) DialFunc {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		if err := StartTLS(ctx, conn, proto); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	}
}
