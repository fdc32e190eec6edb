package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// startRawServer accepts connections on 127.0.0.1 and runs handle on each.
func startRawServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				handle(c)
			})
		}
	})
	return ln.Addr().String()
}

func TestEnumerateFailures(t *testing.T) {
	t.Parallel()
	closedAddr := func() string { // a port nobody listens on
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := ln.Addr().String()
		ln.Close()
		return a
	}()
	httpAddr := startRawServer(t, func(c net.Conn) {
		c.Read(make([]byte, 1024))
		io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
	})
	hangupAddr := startRawServer(t, func(c net.Conn) { c.Read(make([]byte, 1024)) })
	quit := make(chan struct{})
	silentAddr := startRawServer(t, func(c net.Conn) {
		c.Read(make([]byte, 1024))
		<-quit // never answer
	})
	t.Cleanup(func() { close(quit) })

	tests := []struct {
		name    string
		addr    string
		wantIs  error
		wantSub string
	}{
		{"connection refused", closedAddr, nil, "connection refused"},
		{"plaintext HTTP server", httpAddr, ErrNotTLS, "did not answer with TLS"},
		{"server never answers", silentAddr, nil, "no answer within 300ms"},
		{"server hangs up", hangupAddr, nil, "closed every connection"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := Enumerate(testContext(t), tcpDial(tt.addr), Config{Timeout: 300 * time.Millisecond})
			if err == nil {
				t.Fatalf("Enumerate() = %+v, want an error", r)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Enumerate() error = %v, want errors.Is %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantSub) {
				t.Errorf("Enumerate() error = %q, want it to contain %q", err, tt.wantSub)
			}
		})
	}

	t.Run("context canceled while probing", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(testContext(t))
		dial := func(ctx context.Context) (net.Conn, error) {
			c, err := tcpDial(silentAddr)(ctx)
			cancel() // the first connection is open and waiting for an answer that never comes
			return c, err
		}
		// A probe timeout far beyond the test's deadline: only ctx can end this.
		_, err := Enumerate(ctx, dial, Config{Timeout: time.Hour})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Enumerate() error = %v, want context.Canceled", err)
		}
	})
	t.Run("context canceled", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := Enumerate(ctx, tcpDial(silentAddr), Config{})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Enumerate() error = %v, want context.Canceled", err)
		}
	})
}

// TestEnumerateConcurrencyBound counts the connections open at once and
// checks that the result does not depend on the concurrency.
func TestEnumerateConcurrencyBound(t *testing.T) {
	t.Parallel()
	c := newTestCert(t, "rsa")
	addr := startGoTLS(t, &tls.Config{Certificates: []tls.Certificate{c.tls}, MinVersion: tls.VersionTLS12})
	var open, peak atomic.Int64
	dial := func(ctx context.Context) (net.Conn, error) {
		conn, err := tcpDial(addr)(ctx)
		if err != nil {
			return nil, err
		}
		n := open.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		return &countedConn{Conn: conn, open: &open}, nil
	}
	serial, err := Enumerate(testContext(t), dial, Config{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	if p := peak.Load(); p != 1 {
		t.Errorf("Concurrency 1: %d connections open at once", p)
	}
	peak.Store(0)
	parallel, err := Enumerate(testContext(t), dial, Config{Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	if p := peak.Load(); p > 3 || p < 2 {
		t.Errorf("Concurrency 3: %d connections open at once, want 2 or 3", p)
	}
	if n := open.Load(); n != 0 {
		t.Errorf("%d connections still open after Enumerate returned", n)
	}
	serial.Duration, parallel.Duration = 0, 0
	if !reflect.DeepEqual(serial, parallel) {
		t.Errorf("reports differ:\nConcurrency 1: %+v\nConcurrency 3: %+v", serial, parallel)
	}
	t.Logf("Concurrency 1: %d probes; Concurrency 3: %d probes", serial.Probes, parallel.Probes)
}

type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}
