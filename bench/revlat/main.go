// Command revlat measures revocation latency against a running
// `certctl serve`: how long after a revoke call OCSP answers "revoked" and
// the CRL lists the serial.
//
// It issues --count certificates through the API (POST /v1/certificates,
// fresh ECDSA P-256 keys), waits until every OCSP responder answers "good"
// for the first one and the CRL is served, then revokes them one at a time
// (POST /v1/certificates/{serial}/revoke, reason keyCompromise). For each
// revocation it starts the clock just before the revoke request is sent and,
// for every OCSP URL and the CRL URL at once, polls every --poll until the
// answer shows the revocation: an OCSP response (POST, verified with
// ocsp.ParseResponseForCert) with status revoked, or a CRL (signature
// checked against the issuer) listing the serial. The latency is the time
// until that answer was read; a target that does not show it within
// --timeout counts as a timeout. It prints median, p90 and max per target.
//
// Bounded and loopback only: --count revocations, each polled at most
// --timeout.
//
//	revlat --api https://127.0.0.1:8443 --token T --cacert root.crt --issuer intermediate.crt \
//	  --ocsp serve=http://127.0.0.1:8080/ocsp --ocsp standalone=http://127.0.0.1:8090/ocsp --crl http://127.0.0.1:8080/crl
package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "revlat:", err)
		os.Exit(1)
	}
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

type options struct {
	api, token, cacert, issuer, crlURL, jsonOut string
	ocspURLs                                    multiFlag
	count                                       int
	poll, timeout                               time.Duration
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("revlat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.api, "api", "", "certctl serve API base `URL` (https, loopback)")
	fs.StringVar(&o.token, "token", "", "admin API token")
	fs.StringVar(&o.cacert, "cacert", "", "root certificate PEM `FILE` (verifies the API's TLS certificate)")
	fs.StringVar(&o.issuer, "issuer", "", "issuing CA certificate PEM `FILE`")
	fs.Var(&o.ocspURLs, "ocsp", "`NAME=URL` of an OCSP responder to poll (repeatable)")
	fs.StringVar(&o.crlURL, "crl", "", "CRL `URL` to poll")
	fs.IntVar(&o.count, "count", 100, "certificates to issue and revoke")
	fs.DurationVar(&o.poll, "poll", 5*time.Millisecond, "poll interval")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "give up on one target for one revocation after this long")
	fs.StringVar(&o.jsonOut, "json", "", "also write the JSON summary to `FILE`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	rep, err := measure(ctx, o, stderr)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", b)
	fmt.Fprintf(stdout, "revoke call (POST .../revoke until its answer): median %.1f ms, p90 %.1f ms, max %.1f ms\n",
		rep.RevokeCallMs.MedianMs, rep.RevokeCallMs.P90Ms, rep.RevokeCallMs.MaxMs)
	for _, t := range rep.Targets {
		fmt.Fprintf(stdout, "%s: %d revocations, median %.1f ms, p90 %.1f ms, max %.1f ms, timeouts %d (poll %s)\n",
			t.Name, t.N, t.MedianMs, t.P90Ms, t.MaxMs, t.Timeouts, o.poll)
	}
	if o.jsonOut != "" {
		if err := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write summary: %w", err)
		}
	}
	return nil
}

func loopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q: not a URL", raw)
	}
	if h := u.Hostname(); h != "localhost" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("%q: only loopback targets are allowed", raw)
		}
	}
	return nil
}

// TargetReport is one target's latencies.
type TargetReport struct {
	Name     string    `json:"name"`
	URL      string    `json:"url"`
	N        int       `json:"n"`
	Timeouts int       `json:"timeouts"`
	MedianMs float64   `json:"median_ms"`
	P90Ms    float64   `json:"p90_ms"`
	MaxMs    float64   `json:"max_ms"`
	AllMs    []float64 `json:"all_ms"`
}

// Report is the JSON summary.
type Report struct {
	Count          int            `json:"count"`
	PollMs         float64        `json:"poll_ms"`
	RevokeCallMs   TargetReport   `json:"revoke_call"`
	Targets        []TargetReport `json:"targets"`
	IssueSeconds   float64        `json:"issue_seconds"`
	MeasureSeconds float64        `json:"measure_seconds"`
}

type target struct {
	name, url string
	crl       bool
}

func measure(ctx context.Context, o options, stderr io.Writer) (*Report, error) {
	if o.count < 1 || o.poll <= 0 || o.timeout <= 0 {
		return nil, errors.New("--count, --poll and --timeout must be positive")
	}
	var targets []target
	for _, s := range o.ocspURLs {
		name, u, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("--ocsp %q: want NAME=URL", s)
		}
		targets = append(targets, target{name: "OCSP " + name, url: u})
	}
	if o.crlURL != "" {
		targets = append(targets, target{name: "CRL", url: o.crlURL, crl: true})
	}
	if len(targets) == 0 {
		return nil, errors.New("nothing to poll: give --ocsp and/or --crl")
	}
	for _, u := range append([]string{o.api}, func() (us []string) {
		for _, t := range targets {
			us = append(us, t.url)
		}
		return
	}()...) {
		if err := loopback(u); err != nil {
			return nil, err
		}
	}
	issuer, err := readCert(o.issuer)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if b, err := os.ReadFile(o.cacert); err != nil || !roots.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("--cacert %s: no PEM certificates (%v)", o.cacert, err)
	}
	apiClient := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	pollClient := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}
	api := strings.TrimSuffix(o.api, "/")

	// 1. Issue.
	t0 := time.Now()
	certs := make([]*x509.Certificate, o.count)
	for i := range certs {
		if certs[i], err = issue(ctx, apiClient, api, o.token, i); err != nil {
			return nil, err
		}
	}
	issueTime := time.Since(t0)
	fmt.Fprintf(stderr, "revlat: issued %d certificates in %.1f s\n", o.count, issueTime.Seconds())

	// 2. Every target must answer before the clock runs: OCSP "good" for the
	// first certificate (so its response exists), and a CRL.
	for _, t := range targets {
		deadline := time.Now().Add(30 * time.Second)
		for {
			revoked, err := poll(ctx, pollClient, t, certs[0], issuer)
			if err == nil && revoked {
				return nil, fmt.Errorf("%s: %x is revoked before the revoke call", t.name, certs[0].SerialNumber)
			}
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%s not ready after 30 s: %w", t.name, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// 3. Revoke one at a time and poll every target.
	lat := make([][]time.Duration, len(targets))
	timeouts := make([]int, len(targets))
	var calls []time.Duration
	t1 := time.Now()
	for _, c := range certs {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		start := time.Now()
		if err := revoke(ctx, apiClient, api, o.token, c); err != nil {
			return nil, err
		}
		calls = append(calls, time.Since(start))
		var wg sync.WaitGroup
		for ti, t := range targets {
			wg.Go(func() {
				d, ok := waitRevoked(ctx, pollClient, t, c, issuer, start, o.poll, o.timeout)
				if ok {
					lat[ti] = append(lat[ti], d)
				} else {
					timeouts[ti]++
				}
			})
		}
		wg.Wait()
	}
	rep := &Report{Count: o.count, PollMs: ms(o.poll), IssueSeconds: issueTime.Seconds(), MeasureSeconds: time.Since(t1).Seconds()}
	rep.RevokeCallMs = summarize("revoke call", api, calls, 0)
	for ti, t := range targets {
		rep.Targets = append(rep.Targets, summarize(t.name, t.url, lat[ti], timeouts[ti]))
	}
	return rep, nil
}

func summarize(name, u string, d []time.Duration, timeouts int) TargetReport {
	r := TargetReport{Name: name, URL: u, N: len(d), Timeouts: timeouts}
	if len(d) == 0 {
		return r
	}
	for _, x := range d {
		r.AllMs = append(r.AllMs, ms(x))
	}
	s := slices.Clone(d)
	slices.Sort(s)
	r.MedianMs = ms(s[(len(s)-1)/2])
	if len(s)%2 == 0 {
		r.MedianMs = ms((s[len(s)/2-1] + s[len(s)/2]) / 2)
	}
	r.P90Ms = ms(s[max((90*len(s)+99)/100, 1)-1])
	r.MaxMs = ms(s[len(s)-1])
	return r
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// waitRevoked polls t every interval until it shows c revoked, and returns
// the time from start until that answer was read.
func waitRevoked(ctx context.Context, cl *http.Client, t target, c, issuer *x509.Certificate, start time.Time, interval, timeout time.Duration) (time.Duration, bool) {
	deadline := start.Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		revoked, err := poll(ctx, cl, t, c, issuer)
		if err == nil && revoked {
			return time.Since(start), true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, false
		}
		select {
		case <-ctx.Done():
			return 0, false
		case <-tick.C:
		}
	}
}

// poll asks t once whether c is revoked.
func poll(ctx context.Context, cl *http.Client, t target, c, issuer *x509.Certificate) (bool, error) {
	var req *http.Request
	var err error
	if t.crl {
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	} else {
		var der []byte
		if der, err = ocsp.CreateRequest(c, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1}); err != nil {
			return false, err
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(der))
		if req != nil {
			req.Header.Set("Content-Type", "application/ocsp-request")
		}
	}
	if err != nil {
		return false, err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return false, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	resp.Body.Close()
	if err != nil {
		return false, err
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("%s: HTTP %d", t.url, resp.StatusCode)
	}
	if t.crl {
		rl, err := x509.ParseRevocationList(body)
		if err != nil {
			return false, fmt.Errorf("%s: %w", t.url, err)
		}
		if err := rl.CheckSignatureFrom(issuer); err != nil {
			return false, fmt.Errorf("%s: %w", t.url, err)
		}
		for _, e := range rl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(c.SerialNumber) == 0 {
				return true, nil
			}
		}
		return false, nil
	}
	r, err := ocsp.ParseResponseForCert(body, c, issuer)
	if err != nil {
		return false, fmt.Errorf("%s: %w", t.url, err)
	}
	return r.Status == ocsp.Revoked, nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

func apiDo(ctx context.Context, cl *http.Client, method, u, token string, body any, want int, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: HTTP %d: %.200s", method, u, resp.StatusCode, rb)
	}
	if out != nil {
		return json.Unmarshal(rb, out)
	}
	return nil
}

func issue(ctx context.Context, cl *http.Client, api, token string, i int) (*x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("revlat-%d.bench.internal", i)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}, key)
	if err != nil {
		return nil, err
	}
	var out struct {
		CertificatePEM string `json:"certificate_pem"`
	}
	csr := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	if err := apiDo(ctx, cl, http.MethodPost, api+"/v1/certificates", token,
		map[string]any{"csr": csr, "profile": "server", "names": []string{name}}, http.StatusCreated, &out); err != nil {
		return nil, fmt.Errorf("issue %s: %w", name, err)
	}
	blk, _ := pem.Decode([]byte(out.CertificatePEM))
	if blk == nil {
		return nil, fmt.Errorf("issue %s: no certificate in the response", name)
	}
	return x509.ParseCertificate(blk.Bytes)
}

func revoke(ctx context.Context, cl *http.Client, api, token string, c *x509.Certificate) error {
	u := fmt.Sprintf("%s/v1/certificates/%x/revoke", api, c.SerialNumber)
	if err := apiDo(ctx, cl, http.MethodPost, u, token, map[string]string{"reason": "keyCompromise"}, http.StatusOK, nil); err != nil {
		return fmt.Errorf("revoke %x: %w", c.SerialNumber, err)
	}
	return nil
}
