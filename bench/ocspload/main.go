// Command ocspload measures an OCSP responder over HTTP: it builds one
// RFC 6960 request (SHA-1 CertID, no nonce) per certificate of a PEM file,
// sends them by GET (RFC 5019: base64 in the path, percent-encoded) or by
// POST from a fixed number of workers, and prints responses/s and latency
// percentiles. The same tool, with the same request mix, drives
// `certctl ocsp serve` and `cfssl ocspserve` (bench/ocsp-vs-cfssl.sh).
//
// Checks. The warm-up sends one request per certificate and parses every
// answer with ocsp.ParseResponseForCert (signature, responder certificate
// signed by the issuer, CertID matches); each status must be revoked for
// the serials listed in --revoked and good for the others. In the measured
// phase each answer must be HTTP 200 and byte-identical to the warm-up
// answer for that certificate (a pre-signed response), or else it is parsed
// and checked again, so the client's own CPU stays small and equal for both
// servers.
//
// It is a bounded benchmark client: loopback targets only, and it stops
// after --count measured requests.
//
//	ocspload --certs certs.pem --issuer ca.pem --revoked revoked.txt --url http://127.0.0.1:8080/ocsp --method GET --count 30000
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	_ "crypto/sha1" // SHA-1 CertIDs: the RFC 5019 profile
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
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

	"golang.org/x/crypto/ocsp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ocspload:", err)
		os.Exit(1)
	}
}

type options struct {
	certs, issuer, revoked, url, method, label, jsonOut string
	concurrency, count                                  int
	decimal                                             bool
	timeout                                             time.Duration
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ocspload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.certs, "certs", "", "PEM `FILE` of the certificates to ask about (required)")
	fs.StringVar(&o.issuer, "issuer", "", "PEM `FILE` of their issuing CA certificate (required)")
	fs.StringVar(&o.revoked, "revoked", "", "`FILE` of serials (hex unless --revoked-decimal, one a line) that must be revoked; all others must be good")
	fs.BoolVar(&o.decimal, "revoked-decimal", false, "the --revoked serials are decimal (as cfssl's database stores them)")
	fs.StringVar(&o.url, "url", "", "responder `URL` (loopback only), e.g. http://127.0.0.1:8080/ocsp")
	fs.StringVar(&o.method, "method", "POST", "GET or POST")
	fs.IntVar(&o.concurrency, "concurrency", 8, "number of workers, each with one keep-alive connection")
	fs.IntVar(&o.count, "count", 30000, "measured requests, spread evenly over the certificates")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "per-request timeout")
	fs.StringVar(&o.label, "label", "", "label for the summary")
	fs.StringVar(&o.jsonOut, "json", "", "also write the JSON summary to `FILE`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	rep, err := benchmark(ctx, o, stderr)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n%s\n", b, rep.human())
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

// item is one certificate and its pre-built request.
type item struct {
	cert    *x509.Certificate
	der     []byte // OCSP request
	getPath string // URL for GET
	revoked bool   // expected status
	want    []byte // warm-up answer
	err     error  // warm-up failure
}

// httpError is an answer other than HTTP 200.
type httpError struct {
	serial *big.Int
	status int
	body   []byte
}

func (e *httpError) Error() string {
	return fmt.Sprintf("serial %x: HTTP %d: %.100q", e.serial, e.status, e.body)
}

// Report is the JSON summary of a measured run.
type Report struct {
	Label        string  `json:"label"`
	URL          string  `json:"url"`
	Method       string  `json:"method"`
	Concurrency  int     `json:"concurrency"`
	Certificates int     `json:"certificates"`
	Good         int     `json:"good"`
	Revoked      int     `json:"revoked"`
	Requests     int     `json:"requests"`
	Errors       int     `json:"errors"`
	Reparsed     int     `json:"reparsed"`
	Excluded     int     `json:"excluded"`
	ExcludedWhy  string  `json:"excluded_why,omitempty"`
	FirstError   string  `json:"first_error,omitempty"`
	Seconds      float64 `json:"seconds"`
	PerSec       float64 `json:"responses_per_sec"`
	P50Ms        float64 `json:"p50_ms"`
	P90Ms        float64 `json:"p90_ms"`
	P99Ms        float64 `json:"p99_ms"`
	MaxMs        float64 `json:"max_ms"`
}

func (r *Report) human() string {
	return fmt.Sprintf("%s %s: %d requests, %d errors, %.0f responses/s, p50 %.3f ms, p99 %.3f ms, max %.2f ms (concurrency %d, %.1f s; %d certificates, %d revoked, %d refused in warm-up and left out)",
		r.Label, r.Method, r.Requests, r.Errors, r.PerSec, r.P50Ms, r.P99Ms, r.MaxMs, r.Concurrency, r.Seconds, r.Certificates, r.Revoked, r.Excluded)
}

func checkLoopback(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Scheme != "http" {
		return nil, fmt.Errorf("--url %q: want http://HOST:PORT/PATH", raw)
	}
	if h := u.Hostname(); h != "localhost" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("--url %q: only loopback targets are allowed", raw)
		}
	}
	return u, nil
}

func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, len(out), err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no certificates", path)
	}
	return out, nil
}

func readSerials(path string, base int) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		s := strings.ToLower(strings.TrimSpace(sc.Text()))
		if s == "" {
			continue
		}
		n, ok := new(big.Int).SetString(s, base)
		if !ok {
			return nil, fmt.Errorf("%s: %q is not a base-%d serial", path, s, base)
		}
		m[n.Text(16)] = true
	}
	return m, sc.Err()
}

func benchmark(ctx context.Context, o options, stderr io.Writer) (*Report, error) {
	u, err := checkLoopback(o.url)
	if err != nil {
		return nil, err
	}
	o.method = strings.ToUpper(o.method)
	if o.method != http.MethodGet && o.method != http.MethodPost {
		return nil, fmt.Errorf("--method %q: want GET or POST", o.method)
	}
	if o.concurrency < 1 || o.count < 1 {
		return nil, errors.New("--concurrency and --count must be at least 1")
	}
	certs, err := readCerts(o.certs)
	if err != nil {
		return nil, err
	}
	issuers, err := readCerts(o.issuer)
	if err != nil {
		return nil, err
	}
	issuer := issuers[0]
	revoked := map[string]bool{}
	if o.revoked != "" {
		base := 16
		if o.decimal {
			base = 10
		}
		if revoked, err = readSerials(o.revoked, base); err != nil {
			return nil, err
		}
	}
	base := strings.TrimSuffix(u.String(), "/")
	items := make([]*item, len(certs))
	nRevoked := 0
	for i, c := range certs {
		der, err := ocsp.CreateRequest(c, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
		if err != nil {
			return nil, fmt.Errorf("request for %x: %w", c.SerialNumber, err)
		}
		it := &item{cert: c, der: der, revoked: revoked[c.SerialNumber.Text(16)]}
		// RFC 5019 §5: the base64 request, URL-encoded, as one path segment.
		it.getPath = base + "/" + url.PathEscape(base64.StdEncoding.EncodeToString(der))
		if it.revoked {
			nRevoked++
		}
		items[i] = it
	}
	if o.revoked != "" && nRevoked != len(revoked) {
		return nil, fmt.Errorf("%s lists %d serials, %d of them are in %s", o.revoked, len(revoked), nRevoked, o.certs)
	}

	clients := make([]*http.Client, o.concurrency)
	for i := range clients {
		tr := &http.Transport{MaxIdleConns: 1, MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1,
			IdleConnTimeout: time.Minute, DisableCompression: true}
		defer tr.CloseIdleConnections()
		clients[i] = &http.Client{Transport: tr, Timeout: o.timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}

	// Warm-up: every certificate once, every answer parsed and checked.
	t0 := time.Now()
	w := phase(ctx, clients, len(items), func(ctx context.Context, cl *http.Client, i int) error {
		it := items[i]
		body, err := send(ctx, cl, o.method, base, it)
		if err == nil {
			err = checkResponse(body, it, issuer)
		}
		if err != nil {
			it.err = err
			return err
		}
		it.want = body
		return nil
	})
	// A certificate whose request the server refuses at the HTTP level (for
	// example a GET path it cannot decode) is left out of the measured mix
	// and reported; a wrong or unverifiable answer stops the run.
	var kept []*item
	excluded, why := 0, ""
	for _, it := range items {
		if it.want != nil {
			kept = append(kept, it)
			continue
		}
		excluded++
		if why == "" && it.err != nil {
			why = it.err.Error()
		}
		if !errors.As(it.err, new(*httpError)) {
			return nil, fmt.Errorf("warm-up: %d of %d requests failed (first: %v)", w.errors, len(items), it.err)
		}
	}
	if excluded*20 > len(items) {
		return nil, fmt.Errorf("warm-up: %d of %d requests failed (first: %s)", excluded, len(items), why)
	}
	if excluded > 0 {
		fmt.Fprintf(stderr, "ocspload: %d certificates left out of the measured mix: the server refused their request (first: %s)\n", excluded, why)
		nRevoked = 0
		for _, it := range kept {
			if it.revoked {
				nRevoked++
			}
		}
		items = kept
	}
	fmt.Fprintf(stderr, "ocspload: warm-up: %d responses parsed and checked (%d good, %d revoked) in %.1f s\n",
		len(items), len(items)-nRevoked, nRevoked, time.Since(t0).Seconds())
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	var reparsed atomic.Int64
	res := phase(ctx, clients, o.count, func(ctx context.Context, cl *http.Client, i int) error {
		it := items[i%len(items)]
		body, err := send(ctx, cl, o.method, base, it)
		if err != nil {
			return err
		}
		if !bytes.Equal(body, it.want) {
			reparsed.Add(1)
			return checkResponse(body, it, issuer)
		}
		return nil
	})
	rep := &Report{Label: o.label, URL: base, Method: o.method, Concurrency: o.concurrency,
		Certificates: len(items), Good: len(items) - nRevoked, Revoked: nRevoked,
		Requests: len(res.lat) + res.errors, Errors: res.errors, Reparsed: int(reparsed.Load()), Seconds: res.elapsed.Seconds(),
		Excluded: excluded, ExcludedWhy: why}
	if res.firstErr != nil {
		rep.FirstError = res.firstErr.Error()
	}
	if n := len(res.lat); n > 0 {
		slices.Sort(res.lat)
		rep.PerSec = float64(n) / res.elapsed.Seconds()
		rep.P50Ms, rep.P90Ms, rep.P99Ms = ms(percentile(res.lat, 50)), ms(percentile(res.lat, 90)), ms(percentile(res.lat, 99))
		rep.MaxMs = ms(res.lat[n-1])
	}
	return rep, nil
}

// send makes one OCSP request and returns the body of a 200 answer.
func send(ctx context.Context, cl *http.Client, method, base string, it *item) ([]byte, error) {
	var req *http.Request
	var err error
	if method == http.MethodGet {
		req, err = http.NewRequestWithContext(ctx, method, it.getPath, nil)
	} else {
		req, err = http.NewRequestWithContext(ctx, method, base, bytes.NewReader(it.der))
		if req != nil {
			req.Header.Set("Content-Type", "application/ocsp-request")
		}
	}
	if err != nil {
		return nil, err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("serial %x: read response: %w", it.cert.SerialNumber, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &httpError{serial: it.cert.SerialNumber, status: resp.StatusCode, body: body}
	}
	return body, nil
}

// checkResponse verifies an OCSP response for it and its status.
func checkResponse(body []byte, it *item, issuer *x509.Certificate) error {
	r, err := ocsp.ParseResponseForCert(body, it.cert, issuer)
	if err != nil {
		return fmt.Errorf("serial %x: %w", it.cert.SerialNumber, err)
	}
	want := ocsp.Good
	if it.revoked {
		want = ocsp.Revoked
	}
	if r.Status != want {
		return fmt.Errorf("serial %x: status %d, want %d", it.cert.SerialNumber, r.Status, want)
	}
	return nil
}

type phaseResult struct {
	lat      []time.Duration
	errors   int
	firstErr error
	elapsed  time.Duration
}

// phase runs do for i in [0, n) from one worker per client; latency is
// measured around each call.
func phase(ctx context.Context, clients []*http.Client, n int, do func(context.Context, *http.Client, int) error) phaseResult {
	var (
		next atomic.Int64
		mu   sync.Mutex
		res  phaseResult
		wg   sync.WaitGroup
	)
	res.lat = make([]time.Duration, 0, n)
	start := time.Now()
	for _, cl := range clients {
		wg.Go(func() {
			lat := make([]time.Duration, 0, n/len(clients)+1)
			var nerr int
			var first error
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					break
				}
				t := time.Now()
				err := do(ctx, cl, i)
				d := time.Since(t)
				if err != nil {
					nerr++
					if first == nil {
						first = err
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

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// percentile returns the nearest-rank p-th percentile of sorted.
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1]
}
