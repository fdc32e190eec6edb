package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/certctl/certctl/internal/pkitest"
)

// tlsserve [-clientca FILE] VAR CERT KEY [ADDR]: serve HTTPS (TLS 1.2+) on
// ADDR (default 127.0.0.1:0) with the certificate and key in the files, read
// again at each handshake (so that a script can replace the certificate).
// With -clientca, clients must present a certificate from the CAs in FILE.
// Sets VAR to host:port and VAR_PORT to the port; the server stops when the
// script ends.
func cmdTLSServer(ts *testscript.TestScript, neg bool, args []string) {
	var clientCAs *x509.CertPool
	if len(args) > 1 && args[0] == "-clientca" {
		b, err := os.ReadFile(ts.MkAbs(args[1]))
		ts.Check(err)
		clientCAs = x509.NewCertPool()
		if !clientCAs.AppendCertsFromPEM(b) {
			ts.Fatalf("tlsserve: no certificates in %s", args[1])
		}
		args = args[2:]
	}
	if neg || len(args) < 3 || len(args) > 4 {
		ts.Fatalf("usage: tlsserve [-clientca FILE] VAR CERT KEY [ADDR]")
	}
	certFile, keyFile := ts.MkAbs(args[1]), ts.MkAbs(args[2])
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		ts.Fatalf("tlsserve: %v", err)
	}
	addr := "127.0.0.1:0"
	if len(args) == 4 {
		addr = args[3]
	}
	ln, err := net.Listen("tcp", addr)
	ts.Check(err)
	clientAuth := tls.NoClientCert
	if clientCAs != nil {
		clientAuth = tls.RequireAndVerifyClientCert
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") }),
		TLSConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			ClientAuth: clientAuth,
			ClientCAs:  clientCAs,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				c, err := tls.LoadX509KeyPair(certFile, keyFile)
				return &c, err
			},
		},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // the scanner's probes fail handshakes on purpose
	}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			ts.Logf("tlsserve %s: %v", args[0], err)
		}
	}()
	ts.Defer(func() { srv.Close() })
	ts.Setenv(args[0], ln.Addr().String())
	ts.Setenv(args[0]+"_PORT", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
}

// TestServeRunsScanSchedules: `certctl serve` runs a scan schedule added
// with `certctl scan schedule add`, stores the result, and fires the
// webhook of certctl.yaml because the endpoint serves a certificate that was
// revoked in this CA; its metrics are on /metrics.
func TestServeRunsScanSchedules(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	runOK := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if err := run(t.Context(), args, &stdout, &stderr); err != nil {
			t.Fatalf("certctl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String()
	}
	runOK("init", "--dir", dir)
	prefix := filepath.Join(t.TempDir(), "web")
	serial := strings.TrimSpace(runOK("issue", "--dir", dir, "--cn", "localhost", "--san", "127.0.0.1", "--out", prefix))
	cert, err := tls.LoadX509KeyPair(prefix+".crt", prefix+".key")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	web := &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go web.Serve(ln)
	defer web.Close()
	runOK("revoke", "--dir", dir, serial, "--reason", "keyCompromise")

	events := make(chan map[string]any, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev map[string]any
		if err := json.NewDecoder(r.Body).Decode(&ev); err == nil {
			events <- ev
		}
	}))
	defer hook.Close()
	f, err := os.OpenFile(filepath.Join(dir, configFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "scan:\n  poll: 100ms\n  hooks:\n    - webhook: %s/hook?token=s3cret\n      events: [revoked]\n", hook.URL)
	f.Close()
	runOK("scan", "schedule", "add", "--dir", dir, "--every", "1h", "--ca-bundle", filepath.Join(dir, rootCertFile), ln.Addr().String())

	var stdout, stderr pkitest.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--dir", dir, "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, &stdout, &stderr)
	}()
	var ev map[string]any
	select {
	case ev = <-events:
	case err := <-done:
		t.Fatalf("serve exited: %v\n%s", err, stderr.String())
	case <-time.After(90 * time.Second):
		t.Fatalf("no webhook call\nstderr: %s", stderr.String())
	}
	if ev["kind"] != "revoked" || ev["serial"] != serial || ev["target"] != ln.Addr().String() || ev["reason"] != "keyCompromise" {
		t.Errorf("webhook event = %v", ev)
	}
	// The API's /metrics counts the scan.
	body := serveMetrics(t, dir, stdout.String())
	for _, want := range []string{`certctl_scans_total{outcome="ok"} 1`, `certctl_scan_events_total{kind="revoked"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
	if strings.Contains(stderr.String(), "s3cret") {
		t.Errorf("the webhook token is in the logs:\n%s", stderr.String())
	}
	out := runOK("scan", "history", "--dir", dir, ln.Addr().String())
	if !strings.Contains(out, "certificate "+serial) {
		t.Errorf("history after serve:\n%s", out)
	}
}

// TestProgress: the bar drawn on a terminal (newProgress turns it on only
// for a terminal; a buffer stands in for one here).
func TestProgress(t *testing.T) {
	var buf bytes.Buffer
	if newProgress(&buf).on {
		t.Fatal("progress on for a buffer, want off (not a terminal)")
	}
	p := &progress{w: &buf, on: true}
	p.update("probe", 127, 254)
	p.update("probe", 254, 254)
	p.update("scan", 3, 3)
	p.done()
	out := buf.String()
	for _, want := range []string{"\rprobing  [===============               ] 127/254", "254/254", "\rscanning [==============================] 3/3", "\r\033[K"} {
		if !strings.Contains(out, want) {
			t.Errorf("progress output %q lacks %q", out, want)
		}
	}
}

// serveMetrics fetches /metrics from the API of a `certctl serve` on dir,
// whose address is in its stdout.
func serveMetrics(t *testing.T, dir, stdout string) string {
	t.Helper()
	m := regexp.MustCompile(`API on https://(127\.0\.0\.1:\d+)`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no API address in %q", stdout)
	}
	rootPEM, err := os.ReadFile(filepath.Join(dir, rootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	res, err := client.Get("https://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}
