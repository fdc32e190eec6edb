// Command loadgen measures certificate issuance over HTTP: it sends
// pre-generated ECDSA P-256 CSRs to `certctl serve` (POST /v1/certificates)
// or to `cfssl serve` (POST /api/v1/cfssl/sign) from a fixed number of
// workers, checks that every response carries a certificate for the
// requested name, and prints certs/s and latency percentiles.
//
// It is a bounded benchmark client, not a stress tool: it talks to loopback
// addresses only and stops after --count requests or --duration, whichever
// comes first. bench/api-vs-cfssl.sh runs it against both servers with the
// same CSR file; the method and results are in bench/RESULTS.md.
//
//	loadgen --gen --csrs 3200 --csr-file csrs.pem
//	loadgen --target certctl --url https://127.0.0.1:8443 --token T --cacert root.crt --csr-file csrs.pem --count 3000 --warmup 200
//	loadgen --target cfssl --url http://127.0.0.1:8888 --csr-file csrs.pem --count 3000 --warmup 200
package main

import (
	"bytes"
	"context"
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
	"sync/atomic"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

const usage = `Usage:
  loadgen --gen --csrs N --csr-file FILE
  loadgen --target certctl|cfssl --url URL [--token T --cacert FILE] [--csr-file FILE]
          [--concurrency 8] [--count N | --duration D] [--warmup N] [--json FILE]

Sends one issuance request per CSR (each CSR is used once; the run stops
after --count requests, when the CSRs run out, or after --duration) and
prints a JSON summary and a one-line human summary on stdout. Exits 1 if any
request failed.
`

type options struct {
	gen         bool
	nCSRs       int
	csrFile     string
	target      string
	url         string
	token       string
	cacert      string
	profile     string
	domain      string
	concurrency int
	count       int
	duration    time.Duration
	warmup      int
	timeout     time.Duration
	jsonOut     string
	label       string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage, "\nFlags:\n"); fs.PrintDefaults() }
	var o options
	fs.BoolVar(&o.gen, "gen", false, "only generate --csrs CSRs into --csr-file and exit")
	fs.IntVar(&o.nCSRs, "csrs", 0, "number of CSRs to generate (default: warmup+count)")
	fs.StringVar(&o.csrFile, "csr-file", "", "PEM `FILE` of CSRs: read if it exists, else generated and written (so that several runs use the same CSRs)")
	fs.StringVar(&o.target, "target", "", "server kind: certctl or cfssl")
	fs.StringVar(&o.url, "url", "", "server base `URL` (loopback only), e.g. https://127.0.0.1:8443")
	fs.StringVar(&o.token, "token", "", "certctl API bearer token")
	fs.StringVar(&o.cacert, "cacert", "", "PEM `FILE` with the root that verifies the server's TLS certificate")
	fs.StringVar(&o.profile, "profile", "server", "signing profile requested")
	fs.StringVar(&o.domain, "domain", "bench.internal", "names are svc-N.DOMAIN")
	fs.IntVar(&o.concurrency, "concurrency", 8, "number of workers, each with one keep-alive connection")
	fs.IntVar(&o.count, "count", 0, "measured requests (default: all CSRs after the warm-up)")
	fs.DurationVar(&o.duration, "duration", 0, "stop the measured phase after this long (0: no limit)")
	fs.IntVar(&o.warmup, "warmup", 0, "unmeasured requests sent first")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "per-request timeout")
	fs.StringVar(&o.jsonOut, "json", "", "also write the JSON summary to `FILE`")
	fs.StringVar(&o.label, "label", "", "label for the summary (default: the target)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.gen {
		return generate(ctx, o, stderr)
	}
	rep, err := benchmark(ctx, o, stderr)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", b)
	fmt.Fprintln(stdout, rep.human())
	if o.jsonOut != "" {
		if err := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write summary: %w", err)
		}
	}
	if rep.Errors > 0 {
		return fmt.Errorf("%d of %d requests failed (first: %s)", rep.Errors, rep.Requests, rep.FirstError)
	}
	return nil
}

// generate writes o.nCSRs fresh CSRs to o.csrFile.
func generate(ctx context.Context, o options, stderr io.Writer) error {
	if o.csrFile == "" || o.nCSRs <= 0 {
		return errors.New("--gen needs --csrs N (N > 0) and --csr-file")
	}
	csrs, err := makeCSRs(ctx, o.nCSRs, o.domain)
	if err != nil {
		return err
	}
	if err := writeCSRs(o.csrFile, csrs); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "loadgen: wrote %d CSRs to %s\n", len(csrs), o.csrFile)
	return nil
}

// csr is one pre-built request: the PEM CSR and the name it asks for.
type csr struct {
	name string
	pem  string
}

// makeCSRs generates n CSRs, each for a fresh ECDSA P-256 key, with
// CN = DNS SAN = svc-I.domain.
func makeCSRs(ctx context.Context, n int, domain string) ([]csr, error) {
	out := make([]csr, n)
	for i := range out {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate key: %w", err)
		}
		name := fmt.Sprintf("svc-%d.%s", i, domain)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject:  pkix.Name{CommonName: name},
			DNSNames: []string{name},
		}, key)
		if err != nil {
			return nil, fmt.Errorf("create CSR %d: %w", i, err)
		}
		out[i] = csr{name: name, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))}
	}
	return out, nil
}

func writeCSRs(path string, csrs []csr) error {
	var b bytes.Buffer
	for _, c := range csrs {
		b.WriteString(c.pem)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write CSRs: %w", err)
	}
	return nil
}

// readCSRs reads a PEM file of CSRs; each CSR's name is its first DNS SAN.
func readCSRs(path string) ([]csr, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CSRs: %w", err)
	}
	var out []csr
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		r, err := x509.ParseCertificateRequest(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: CSR %d: %w", path, len(out), err)
		}
		if len(r.DNSNames) == 0 {
			return nil, fmt.Errorf("%s: CSR %d has no DNS name", path, len(out))
		}
		out = append(out, csr{name: r.DNSNames[0], pem: string(pem.EncodeToMemory(blk))})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no CSRs", path)
	}
	return out, nil
}

// loadCSRs reads o.csrFile if it exists, else generates warmup+count CSRs
// (or --csrs) and writes them there when a file is named.
func loadCSRs(ctx context.Context, o options) ([]csr, error) {
	if o.csrFile != "" {
		if _, err := os.Stat(o.csrFile); err == nil {
			return readCSRs(o.csrFile)
		}
	}
	n := o.nCSRs
	if n <= 0 {
		n = o.warmup + o.count
	}
	if n <= 0 {
		return nil, errors.New("nothing to send: give --count, --csrs or an existing --csr-file")
	}
	csrs, err := makeCSRs(ctx, n, o.domain)
	if err != nil {
		return nil, err
	}
	if o.csrFile != "" {
		if err := writeCSRs(o.csrFile, csrs); err != nil {
			return nil, err
		}
	}
	return csrs, nil
}

// checkLoopback refuses any target that is not on this machine.
func checkLoopback(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("--url %q: want http(s)://HOST:PORT", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return u, nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return u, nil
	}
	return nil, fmt.Errorf("--url %q: only loopback targets are allowed (127.0.0.1, ::1, localhost)", raw)
}

// target builds the request for one CSR and checks the response.
type target interface {
	newRequest(ctx context.Context, c csr) (*http.Request, error)
	check(status int, body []byte, c csr) error
}

type certctlTarget struct {
	endpoint, token, profile string
}

func (t *certctlTarget) newRequest(ctx context.Context, c csr) (*http.Request, error) {
	body, err := json.Marshal(map[string]any{"csr": c.pem, "profile": t.profile, "names": []string{c.name}})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+t.token)
	return req, nil
}

func (t *certctlTarget) check(status int, body []byte, c csr) error {
	if status != http.StatusCreated {
		return fmt.Errorf("HTTP %d: %.200s", status, body)
	}
	var resp struct {
		Serial         string `json:"serial"`
		CertificatePEM string `json:"certificate_pem"`
		ChainPEM       string `json:"chain_pem"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	if resp.Serial == "" || resp.ChainPEM == "" {
		return fmt.Errorf("response without serial or chain: %.200s", body)
	}
	return checkCert(resp.CertificatePEM, c)
}

type cfsslTarget struct {
	endpoint, profile string
}

func (t *cfsslTarget) newRequest(ctx context.Context, c csr) (*http.Request, error) {
	body, err := json.Marshal(map[string]any{"certificate_request": c.pem, "hosts": []string{c.name}, "profile": t.profile})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return req, nil
}

func (t *cfsslTarget) check(status int, body []byte, c csr) error {
	if status != http.StatusOK {
		return fmt.Errorf("HTTP %d: %.200s", status, body)
	}
	var resp struct {
		Success bool `json:"success"`
		Result  struct {
			Certificate string `json:"certificate"`
		} `json:"result"`
		Errors []json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	if !resp.Success {
		return fmt.Errorf("cfssl: success=false: %.200s", body)
	}
	return checkCert(resp.Result.Certificate, c)
}

// checkCert parses the issued certificate and checks it names c.
func checkCert(certPEM string, c csr) error {
	blk, _ := pem.Decode([]byte(certPEM))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return errors.New("response has no PEM certificate")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return fmt.Errorf("parse issued certificate: %w", err)
	}
	if !slices.Contains(cert.DNSNames, c.name) {
		return fmt.Errorf("issued certificate names %v, want %s", cert.DNSNames, c.name)
	}
	return nil
}

// Report is the JSON summary of a measured run.
type Report struct {
	Label       string  `json:"label"`
	Target      string  `json:"target"`
	URL         string  `json:"url"`
	Concurrency int     `json:"concurrency"`
	Warmup      int     `json:"warmup"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	Seconds     float64 `json:"seconds"`
	CertsPerSec float64 `json:"certs_per_sec"`
	MeanMs      float64 `json:"mean_ms"`
	P50Ms       float64 `json:"p50_ms"`
	P90Ms       float64 `json:"p90_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
}

func (r *Report) human() string {
	return fmt.Sprintf("%s: %d requests, %d errors, %.0f certs/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms (concurrency %d, %.1f s)",
		r.Label, r.Requests, r.Errors, r.CertsPerSec, r.P50Ms, r.P99Ms, r.MaxMs, r.Concurrency, r.Seconds)
}

func benchmark(ctx context.Context, o options, stderr io.Writer) (*Report, error) {
	if o.concurrency < 1 {
		return nil, errors.New("--concurrency must be at least 1")
	}
	if o.count < 0 || o.warmup < 0 || o.duration < 0 {
		return nil, errors.New("--count, --warmup and --duration must not be negative")
	}
	if o.count == 0 && o.duration == 0 && o.csrFile == "" {
		return nil, errors.New("give --count, --duration or a --csr-file to bound the run")
	}
	u, err := checkLoopback(o.url)
	if err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(u.String(), "/")
	var tgt target
	switch o.target {
	case "certctl":
		if o.token == "" {
			return nil, errors.New("--target certctl needs --token")
		}
		tgt = &certctlTarget{endpoint: base + "/v1/certificates", token: o.token, profile: o.profile}
	case "cfssl":
		tgt = &cfsslTarget{endpoint: base + "/api/v1/cfssl/sign", profile: o.profile}
	default:
		return nil, fmt.Errorf("--target %q: want certctl or cfssl", o.target)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.cacert != "" {
		b, err := os.ReadFile(o.cacert)
		if err != nil {
			return nil, fmt.Errorf("read --cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificates", o.cacert)
		}
		tlsCfg.RootCAs = pool
	}

	csrs, err := loadCSRs(ctx, o)
	if err != nil {
		return nil, err
	}
	if o.warmup >= len(csrs) {
		return nil, fmt.Errorf("%d CSRs: not enough for a warm-up of %d", len(csrs), o.warmup)
	}
	measured := csrs[o.warmup:]
	if o.count > 0 {
		if o.count > len(measured) {
			return nil, fmt.Errorf("%d CSRs: not enough for a warm-up of %d and %d measured requests (each CSR is sent once)", len(csrs), o.warmup, o.count)
		}
		measured = measured[:o.count]
	}

	// One client per worker, each with one keep-alive connection, so that
	// connection set-up (and TLS handshakes) happen during the warm-up.
	clients := make([]*http.Client, o.concurrency)
	for i := range clients {
		tr := &http.Transport{
			TLSClientConfig:     tlsCfg.Clone(),
			MaxIdleConns:        1,
			MaxIdleConnsPerHost: 1,
			MaxConnsPerHost:     1,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		}
		clients[i] = &http.Client{Transport: tr, Timeout: o.timeout}
		defer tr.CloseIdleConnections()
	}

	if o.warmup > 0 {
		w := phase(ctx, tgt, clients, csrs[:o.warmup], 0)
		if w.errors > 0 {
			return nil, fmt.Errorf("warm-up: %d of %d requests failed (first: %v)", w.errors, o.warmup, w.firstErr)
		}
		fmt.Fprintf(stderr, "loadgen: warm-up of %d requests done in %.1f s\n", o.warmup, w.elapsed.Seconds())
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res := phase(ctx, tgt, clients, measured, o.duration)
	rep := &Report{
		Label: o.label, Target: o.target, URL: base, Concurrency: o.concurrency, Warmup: o.warmup,
		Requests: len(res.lat) + res.errors, Errors: res.errors, Seconds: res.elapsed.Seconds(),
	}
	if rep.Label == "" {
		rep.Label = o.target
	}
	if res.firstErr != nil {
		rep.FirstError = res.firstErr.Error()
	}
	if len(res.lat) > 0 {
		slices.Sort(res.lat)
		var sum time.Duration
		for _, d := range res.lat {
			sum += d
		}
		rep.CertsPerSec = float64(len(res.lat)) / res.elapsed.Seconds()
		rep.MeanMs = ms(sum / time.Duration(len(res.lat)))
		rep.P50Ms = ms(percentile(res.lat, 50))
		rep.P90Ms = ms(percentile(res.lat, 90))
		rep.P99Ms = ms(percentile(res.lat, 99))
		rep.MaxMs = ms(res.lat[len(res.lat)-1])
	}
	return rep, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// percentile returns the nearest-rank p-th percentile of sorted.
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	return sorted[max(rank, 1)-1]
}

type phaseResult struct {
	lat      []time.Duration // latencies of successful requests
	errors   int
	firstErr error
	elapsed  time.Duration
}

// phase sends each CSR once, from len(clients) workers pulling from a
// shared index, until the CSRs run out, ctx is done or limit (if > 0) has
// passed. Latency is measured per request, from before the request is
// built to after the body is read and checked.
func phase(ctx context.Context, tgt target, clients []*http.Client, csrs []csr, limit time.Duration) phaseResult {
	var (
		next     atomic.Int64
		mu       sync.Mutex
		res      phaseResult
		wg       sync.WaitGroup
		deadline time.Time
	)
	res.lat = make([]time.Duration, 0, len(csrs))
	start := time.Now()
	if limit > 0 {
		deadline = start.Add(limit)
	}
	for _, cl := range clients {
		wg.Go(func() {
			lat := make([]time.Duration, 0, len(csrs)/len(clients)+1)
			var nerr int
			var first error
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(csrs) || (!deadline.IsZero() && time.Now().After(deadline)) {
					break
				}
				t0 := time.Now()
				err := do(ctx, cl, tgt, csrs[i])
				d := time.Since(t0)
				if err != nil {
					nerr++
					if first == nil {
						first = fmt.Errorf("%s: %w", csrs[i].name, err)
					}
					continue
				}
				lat = append(lat, d)
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.errors += nerr
			if res.firstErr == nil {
				res.firstErr = first
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

func do(ctx context.Context, cl *http.Client, tgt target, c csr) error {
	req, err := tgt.newRequest(ctx, c)
	if err != nil {
		return err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	return tgt.check(resp.StatusCode, body, c)
}
