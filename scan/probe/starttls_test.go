package probe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/pkitest"
)

// smtpServer speaks just enough ESMTP (RFC 5321, RFC 3207) to upgrade to
// TLS with crypto/tls. With offerTLS false its EHLO reply has no STARTTLS.
func smtpServer(t *testing.T, cfg *tls.Config, offerTLS bool) string {
	return startRawServer(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		io.WriteString(c, "220 mail.test ESMTP ready\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
			case strings.HasPrefix(cmd, "EHLO"):
				io.WriteString(c, "250-mail.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n")
				if offerTLS {
					io.WriteString(c, "250-STARTTLS\r\n")
				}
				io.WriteString(c, "250 8BITMIME\r\n")
			case cmd == "STARTTLS" && offerTLS:
				io.WriteString(c, "220 2.0.0 go ahead\r\n")
				tls.Server(c, cfg).Handshake()
				return
			default:
				io.WriteString(c, "502 5.5.2 unknown command\r\n")
			}
		}
	})
}

func TestStartTLSSMTP(t *testing.T) {
	t.Parallel()
	c := newTestCert(t, "ecdsa")
	cfg := &tls.Config{Certificates: []tls.Certificate{c.tls}, MinVersion: tls.VersionTLS12}
	addr := smtpServer(t, cfg, true)
	r, err := Enumerate(testContext(t), Dialer("tcp", addr, "smtp"), Config{ServerName: "localhost"})
	if err != nil {
		t.Fatalf("Enumerate over SMTP STARTTLS: %v", err)
	}
	if got := r.Supported(); !slices.Equal(got, []uint16{VersionTLS12, VersionTLS13}) {
		t.Errorf("supported versions = %x, want TLS 1.2 and 1.3", got)
	}
	if len(r.Certificates) != 1 || !bytes.Equal(r.Certificates[0], c.der) {
		t.Errorf("Certificates: want the server's leaf, got %d certificates", len(r.Certificates))
	}
	if len(r.Errors) != 0 {
		t.Errorf("Errors = %q", r.Errors)
	}

	noTLS := smtpServer(t, cfg, false)
	_, err = Enumerate(testContext(t), Dialer("tcp", noTLS, "smtp"), Config{})
	if !errors.Is(err, ErrStartTLS) || !strings.Contains(err.Error(), "does not offer STARTTLS") {
		t.Errorf("Enumerate against SMTP without STARTTLS: error = %v, want ErrStartTLS naming the missing capability", err)
	}
}

func TestStartTLSErrors(t *testing.T) {
	t.Parallel()
	quit := make(chan struct{})
	silent := startRawServer(t, func(c net.Conn) { <-quit })
	t.Cleanup(func() { close(quit) })
	http := startRawServer(t, func(c net.Conn) { io.WriteString(c, "HTTP/1.1 400 Bad Request\r\n\r\n") })
	tests := []struct {
		name, addr, proto string
		wantIs            error
		wantSub           string
	}{
		{"unknown protocol", http, "imap", nil, "unknown protocol"},
		{"postgres: not a postgres server", http, "postgres", ErrStartTLS, "not a PostgreSQL server"},
		{"smtp: not an smtp server", http, "smtp", ErrStartTLS, "not an SMTP reply"},
		{"smtp: no greeting before the deadline", silent, "smtp", context.DeadlineExceeded, "smtp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			conn, err := net.Dial("tcp", tt.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			err = StartTLS(ctx, conn, tt.proto)
			if err == nil || (tt.wantIs != nil && !errors.Is(err, tt.wantIs)) || !strings.Contains(err.Error(), tt.wantSub) {
				t.Errorf("StartTLS(%q) error = %v, want %v containing %q", tt.proto, err, tt.wantIs, tt.wantSub)
			}
		})
	}
}

// TestStartTLSPostgres scans a real PostgreSQL cluster with ssl=on through
// its SSLRequest negotiation, and one with ssl=off.
func TestStartTLSPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two PostgreSQL clusters; skipped with -short")
	}
	t.Parallel()
	c := newTestCert(t, "rsa")
	keyPEM, err := os.ReadFile(c.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.der})
	ctx := testContext(t)

	t.Run("ssl on", func(t *testing.T) {
		t.Parallel()
		pg, err := pkitest.StartPostgresTLS(ctx, certPEM, keyPEM, nil, "hostssl all all 127.0.0.1/32 trust\n")
		if err != nil {
			t.Fatalf("StartPostgresTLS: %v", err)
		}
		t.Cleanup(func() { pg.Stop() })
		r, err := Enumerate(ctx, Dialer("tcp", pg.Addr(), "postgres"), Config{ServerName: "localhost"})
		if err != nil {
			t.Fatalf("Enumerate over postgres STARTTLS: %v", err)
		}
		// pkitest configures ssl_min_protocol_version = TLSv1.2.
		if got := r.Supported(); !slices.Equal(got, []uint16{VersionTLS12, VersionTLS13}) {
			t.Errorf("supported versions = %x, want TLS 1.2 and 1.3", got)
		}
		// PostgreSQL sets ssl_prefer_server_ciphers = on by default.
		if v := r.Version(VersionTLS12); !v.ServerPreference || len(v.CipherSuites) < 2 {
			t.Errorf("TLS 1.2: ServerPreference = %v with %d suites, want server preference", v.ServerPreference, len(v.CipherSuites))
		}
		if len(r.Certificates) != 1 || !bytes.Equal(r.Certificates[0], c.der) {
			t.Errorf("Certificates: want the server's leaf, got %d certificates", len(r.Certificates))
		}
		if r.FallbackSCSV == nil || !*r.FallbackSCSV || !r.SecureRenegotiation || r.Compression {
			t.Errorf("FallbackSCSV %v, SecureRenegotiation %v, Compression %v; want true, true, false",
				r.FallbackSCSV, r.SecureRenegotiation, r.Compression)
		}
		if len(r.Errors) != 0 {
			t.Errorf("Errors = %q", r.Errors)
		}
		t.Logf("postgres: %d probes in %v", r.Probes, r.Duration)
	})
	t.Run("ssl off", func(t *testing.T) {
		t.Parallel()
		pg, err := pkitest.StartPostgresWith(ctx, pkitest.PostgresOptions{HBA: "host all all 127.0.0.1/32 trust\n"})
		if err != nil {
			t.Fatalf("StartPostgresWith: %v", err)
		}
		t.Cleanup(func() { pg.Stop() })
		_, err = Enumerate(ctx, Dialer("tcp", pg.Addr(), "postgres"), Config{})
		if !errors.Is(err, ErrStartTLS) || !strings.Contains(err.Error(), "refused SSL") {
			t.Errorf("Enumerate against postgres with ssl=off: error = %v, want ErrStartTLS (refused SSL)", err)
		}
	})
}
