package transport_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certctl/certctl/transport"
)

// TestEndToEnd is the end-to-end test: a CA server and two services
// with 1-minute certificates calling each other over transport under steady
// load (kept-alive and new connections) through two renewal cycles, with a
// CA outage shorter than the remaining lifetime across one renewal: not one
// request may fail.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: 1-minute certificates through two renewal cycles and a CA outage take ~100 s; run without -short")
	}
	c := newTestCA(t, 55*time.Second, 5*time.Second) // lifetime 60 s: renewal at 40 s + up to 6 s jitter

	type service struct {
		name    string
		tr      *transport.Transport
		url     string
		renewed atomic.Int32 // certificates after the first
		mu      sync.Mutex
		seen    map[string]bool // client serials seen by this service's server
	}
	newService := func(name, peer string) *service {
		s := &service{name: name, seen: map[string]bool{}}
		id := c.identity(name+".internal", "127.0.0.1")
		id.RetryMin, id.RetryMax = 200*time.Millisecond, 2*time.Second
		var serial string
		s.tr = newTransport(t, id, transport.WithAuthorizer(transport.AuthorizeDNS(peer+".internal")),
			transport.WithOnRotate(func(snap transport.Snapshot) {
				if cur := snap.Leaf.SerialNumber.String(); cur != serial {
					if serial != "" {
						s.renewed.Add(1)
					}
					serial = cur
				}
			}))
		ln, err := s.tr.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s.mu.Lock()
				s.seen[r.TLS.PeerCertificates[0].SerialNumber.String()] = true
				s.mu.Unlock()
				fmt.Fprintf(w, "%s says hello to %s", name, r.TLS.PeerCertificates[0].DNSNames[0])
			}),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelError), // failures show as failed requests
		}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		s.url = "https://" + ln.Addr().String() + "/"
		return s
	}
	a, b := newService("a", "b"), newService("b", "a")

	// Steady load in both directions: two kept-alive clients and one that
	// makes a new connection (a full handshake) per request.
	var ok, failed atomic.Int64
	var failMu sync.Mutex
	var failures []string
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	load := func(from, to *service, client *http.Client, pause time.Duration) {
		defer wg.Done()
		want := fmt.Sprintf("%s says hello to %s.internal", to.name, from.name)
		for ctx.Err() == nil {
			err := get(ctx, client, to.url, want)
			switch {
			case err == nil:
				ok.Add(1)
			case ctx.Err() != nil:
				return
			default:
				failed.Add(1)
				failMu.Lock()
				if len(failures) < 10 {
					failures = append(failures, fmt.Sprintf("%s: %s -> %s: %v", time.Now().Format(time.TimeOnly), from.name, to.name, err))
				}
				failMu.Unlock()
			}
			time.Sleep(pause)
		}
	}
	for _, p := range [][2]*service{{a, b}, {b, a}} {
		from, to := p[0], p[1]
		kept := from.tr.HTTPClient()
		fresh := &http.Client{Transport: &http.Transport{DialTLSContext: from.tr.Dial, DisableKeepAlives: true}}
		wg.Add(3)
		go load(from, to, kept, 5*time.Millisecond)
		go load(from, to, kept, 5*time.Millisecond)
		go load(from, to, fresh, 20*time.Millisecond)
	}
	defer func() { stop(); wg.Wait() }()

	// Cycle 1.
	waitFor(t, 90*time.Second, "first renewal of both services", func() bool { return a.renewed.Load() >= 1 && b.renewed.Load() >= 1 })
	t.Logf("cycle 1 done: %d requests ok, %d failed", ok.Load(), failed.Load())

	// Cycle 2 with a CA outage: from 2 s before the earlier renewal point,
	// for 10 s; at its start both certificates have >= 16 s left.
	first := a.tr.Status().NextRenewal
	if nb := b.tr.Status().NextRenewal; nb.Before(first) {
		first = nb
	}
	time.Sleep(time.Until(first.Add(-2 * time.Second)))
	for _, s := range []*service{a, b} {
		if left := time.Until(s.tr.NotAfter()); left <= 12*time.Second {
			t.Fatalf("%s: only %s left at the outage start: the test would not be about a short outage", s.name, left)
		}
	}
	c.down.Store(true)
	t.Logf("CA down at %s", time.Now().Format(time.TimeOnly))
	sawRenewing := false
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		for _, s := range []*service{a, b} {
			if st := s.tr.Status(); st.State == transport.StateRenewing {
				sawRenewing = true
			} else if st.State != transport.StateValid {
				t.Errorf("%s: state %s during a short outage", s.name, st.State)
			}
		}
	}
	c.down.Store(false)
	t.Logf("CA up at %s", time.Now().Format(time.TimeOnly))
	if !sawRenewing {
		t.Error("no renewal failed during the outage: the outage missed the renewal point")
	}
	waitFor(t, 60*time.Second, "second renewal of both services", func() bool { return a.renewed.Load() >= 2 && b.renewed.Load() >= 2 })
	seen := func(s *service) int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.seen)
	}
	waitFor(t, 10*time.Second, "third certificates in use", func() bool { return seen(a) >= 3 && seen(b) >= 3 })
	stop()
	wg.Wait()

	t.Logf("%d requests ok, %d failed; renewals: a=%d b=%d", ok.Load(), failed.Load(), a.renewed.Load(), b.renewed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d requests failed, want 0; first failures:\n%v", failed.Load(), failures)
	}
	if ok.Load() == 0 {
		t.Fatal("no request succeeded")
	}
	for _, s := range []*service{a, b} {
		if st := s.tr.Status(); st.State != transport.StateValid || st.LastError != nil {
			t.Errorf("%s: final status %+v", s.name, st)
		}
	}
}

func get(ctx context.Context, c *http.Client, url, want string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(body) != want {
		return fmt.Errorf("status %d body %q, want %q", resp.StatusCode, body, want)
	}
	return nil
}
