package ocsp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/certctl/certctl/certdb"
)

type responderEnv struct {
	pki   *testPKI
	store *fakeStore
	pre   *Presigner
	src   *StoreSource
	rs    *Responder
	good  *x509.Certificate
	rev   *x509.Certificate
}

func newResponderEnv(t *testing.T) *responderEnv {
	t.Helper()
	st := newFakeStore()
	clock := newClock(time.Now().Truncate(time.Second))
	pki := newPKI(t, st, clock)
	_, pre := pki.service(t, Config{})
	e := &responderEnv{pki: pki, store: st, pre: pre}
	e.good = pki.leaf(t, "good.test.internal").Certificate
	e.rev = pki.leaf(t, "revoked.test.internal").Certificate
	ctx := context.Background()
	if _, err := pre.RefreshAll(ctx, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.Revoke(ctx, e.rev.SerialNumber, certdb.ReasonKeyCompromise, clock.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := pre.SignOne(ctx, e.rev.SerialNumber); err != nil {
		t.Fatal(err)
	}
	e.src = NewStoreSource(st, WithSourceClock(clock.Now))
	var err error
	e.rs, err = NewResponder(pki.inter, e.src, "/ocsp", WithResponderClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *responderEnv) do(method, target string, body []byte, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/ocsp-request")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	e.rs.ServeHTTP(w, req)
	return w
}

func TestResponderAnswers(t *testing.T) {
	e := newResponderEnv(t)
	other := newPKI(t, newFakeStore(), e.pki.clock)
	unknown := &x509.Certificate{SerialNumber: big.NewInt(0x7777)}
	get := func(der []byte) (string, string, []byte) {
		return http.MethodGet, "/ocsp/" + base64.StdEncoding.EncodeToString(der), nil
	}
	post := func(der []byte) (string, string, []byte) { return http.MethodPost, "/ocsp", der }
	tests := []struct {
		name       string
		code       int
		status     int // OCSP certificate status
		reason     int
		verifyCert *x509.Certificate
	}{
		{name: "good GET SHA-1", code: 200, status: xocsp.Good, verifyCert: e.good},
		{name: "good GET SHA-256", code: 200, status: xocsp.Good, verifyCert: e.good},
		{name: "good POST SHA-1", code: 200, status: xocsp.Good, verifyCert: e.good},
		{name: "good POST SHA-256", code: 200, status: xocsp.Good, verifyCert: e.good},
		{name: "revoked GET", code: 200, status: xocsp.Revoked, reason: xocsp.KeyCompromise, verifyCert: e.rev},
		{name: "revoked POST SHA-256", code: 200, status: xocsp.Revoked, reason: xocsp.KeyCompromise, verifyCert: e.rev},
	}
	reqs := map[string]func() (string, string, []byte){
		"good GET SHA-1":       func() (string, string, []byte) { return get(request(t, e.good, e.pki.inter, crypto.SHA1)) },
		"good GET SHA-256":     func() (string, string, []byte) { return get(request(t, e.good, e.pki.inter, crypto.SHA256)) },
		"good POST SHA-1":      func() (string, string, []byte) { return post(request(t, e.good, e.pki.inter, crypto.SHA1)) },
		"good POST SHA-256":    func() (string, string, []byte) { return post(request(t, e.good, e.pki.inter, crypto.SHA256)) },
		"revoked GET":          func() (string, string, []byte) { return get(request(t, e.rev, e.pki.inter, crypto.SHA1)) },
		"revoked POST SHA-256": func() (string, string, []byte) { return post(request(t, e.rev, e.pki.inter, crypto.SHA256)) },
	}
	errCases := []struct {
		name    string
		method  string
		target  string
		body    []byte
		code    int
		errBody []byte
	}{
		{"unknown serial", http.MethodPost, "/ocsp", request(t, unknown, e.pki.inter, crypto.SHA1), 200, xocsp.UnauthorizedErrorResponse},
		{"foreign issuer", http.MethodPost, "/ocsp", request(t, e.good, other.inter, crypto.SHA1), 200, xocsp.UnauthorizedErrorResponse},
		{"foreign issuer SHA-256", http.MethodPost, "/ocsp", request(t, e.good, other.inter, crypto.SHA256), 200, xocsp.UnauthorizedErrorResponse},
		{"SHA-384 CertID", http.MethodPost, "/ocsp", request(t, e.good, e.pki.inter, crypto.SHA384), 200, xocsp.UnauthorizedErrorResponse},
		{"garbage POST", http.MethodPost, "/ocsp", []byte("hello"), 400, xocsp.MalformedRequestErrorResponse},
		{"empty POST", http.MethodPost, "/ocsp/", nil, 400, xocsp.MalformedRequestErrorResponse},
		{"bad base64 GET", http.MethodGet, "/ocsp/!!!", nil, 400, xocsp.MalformedRequestErrorResponse},
		{"empty GET", http.MethodGet, "/ocsp/", nil, 400, xocsp.MalformedRequestErrorResponse},
		{"base64 of garbage", http.MethodGet, "/ocsp/aGVsbG8", nil, 400, xocsp.MalformedRequestErrorResponse},
		{"too large POST", http.MethodPost, "/ocsp", make([]byte, MaxRequestSize+1), 413, xocsp.MalformedRequestErrorResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, target, body := reqs[tt.name]()
			w := e.do(m, target, body)
			if w.Code != tt.code {
				t.Fatalf("HTTP %d, want %d: %q", w.Code, tt.code, w.Body.Bytes())
			}
			r := parse(t, w.Body.Bytes(), tt.verifyCert, e.pki.inter)
			if r.Status != tt.status || (tt.status == xocsp.Revoked && r.RevocationReason != tt.reason) {
				t.Fatalf("status %s reason %d, want %s %d", statusName(r.Status), r.RevocationReason, statusName(tt.status), tt.reason)
			}
			if got := w.Header().Get("Content-Type"); got != "application/ocsp-response" {
				t.Errorf("Content-Type %q", got)
			}
		})
	}
	for _, tt := range errCases {
		t.Run(tt.name, func(t *testing.T) {
			w := e.do(tt.method, tt.target, tt.body)
			if w.Code != tt.code || !bytes.Equal(w.Body.Bytes(), tt.errBody) {
				t.Fatalf("HTTP %d %x, want %d %x", w.Code, w.Body.Bytes(), tt.code, tt.errBody)
			}
			if cc := w.Header().Get("Cache-Control"); cc != "max-age=0, no-cache" {
				t.Errorf("Cache-Control %q on an error", cc)
			}
			_, err := xocsp.ParseResponse(w.Body.Bytes(), nil)
			if _, ok := err.(xocsp.ResponseError); !ok {
				t.Errorf("error body does not parse as an OCSP error response: %v", err)
			}
		})
	}
	for _, tt := range []struct {
		name, method, target string
		code                 int
	}{
		{"PUT", http.MethodPut, "/ocsp", 405},
		{"other path", http.MethodGet, "/crl/0", 404},
		{"prefix lookalike", http.MethodGet, "/ocspMEow", 404},
		{"POST below prefix", http.MethodPost, "/ocsp/x", 404},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if w := e.do(tt.method, tt.target, nil); w.Code != tt.code {
				t.Fatalf("HTTP %d, want %d", w.Code, tt.code)
			}
		})
	}
}

func TestResponderCachingHeaders(t *testing.T) {
	e := newResponderEnv(t)
	stored := e.store.response(t, e.good.SerialNumber)
	e.pki.clock.Advance(2 * time.Hour)
	der := request(t, e.good, e.pki.inter, crypto.SHA1)
	w := e.do(http.MethodPost, "/ocsp", der)
	if w.Code != 200 {
		t.Fatalf("HTTP %d", w.Code)
	}
	sum := sha256.Sum256(w.Body.Bytes())
	now := e.pki.clock.Now()
	want := map[string]string{
		"Content-Type":  "application/ocsp-response",
		"Cache-Control": fmt.Sprintf("max-age=%d, public, no-transform, must-revalidate", int(stored.NextUpdate.Sub(now)/time.Second)),
		"ETag":          `"` + hex.EncodeToString(sum[:]) + `"`,
		"Last-Modified": stored.ThisUpdate.UTC().Format(http.TimeFormat),
		"Expires":       stored.NextUpdate.UTC().Format(http.TimeFormat),
	}
	for h, v := range want {
		if got := w.Header().Get(h); got != v {
			t.Errorf("%s = %q, want %q", h, got, v)
		}
	}
	if stored.NextUpdate.Sub(stored.ThisUpdate) != DefaultValidity {
		t.Errorf("validity %s, want %s", stored.NextUpdate.Sub(stored.ThisUpdate), DefaultValidity)
	}
	// Conditional GET.
	w2 := e.do(http.MethodGet, "/ocsp/"+base64.StdEncoding.EncodeToString(der), nil, "If-None-Match", want["ETag"])
	if w2.Code != http.StatusNotModified || w2.Body.Len() != 0 || w2.Header().Get("ETag") != want["ETag"] {
		t.Errorf("If-None-Match: HTTP %d, %d bytes, ETag %q", w2.Code, w2.Body.Len(), w2.Header().Get("ETag"))
	}
	if w3 := e.do(http.MethodGet, "/ocsp/"+base64.StdEncoding.EncodeToString(der), nil, "If-None-Match", `"other"`); w3.Code != 200 {
		t.Errorf("non-matching If-None-Match: HTTP %d", w3.Code)
	}
}

// GET paths with '/' and '+' in the base64, in every encoding clients use.
func TestResponderGETEncodings(t *testing.T) {
	e := newResponderEnv(t)
	// Find a certificate whose SHA-1 request encodes with '/' and '+'.
	// Padding is not required: a request ends in '=' only for the rare
	// 19-octet serial (1 in 256), so asking for it made this test fail in
	// about 1 run in 500; missing padding is covered by FuzzDecodeGETPath's
	// round trip.
	var der []byte
	l := e.pki.leafWith(t, func(c *x509.Certificate) bool {
		der = request(t, c, e.pki.inter, crypto.SHA1)
		b := base64.StdEncoding.EncodeToString(der)
		return strings.Contains(b, "/") && strings.Contains(b, "+")
	})
	if err := e.pre.SignOne(context.Background(), l.Serial); err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString(der)
	esc := strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D")
	variants := map[string]string{
		"plain":           b64,
		"escaped":         esc.Replace(b64),
		"escaped lower":   strings.NewReplacer("+", "%2b", "/", "%2f", "=", "%3d").Replace(b64),
		"no padding":      strings.TrimRight(b64, "="),
		"double slash":    "/" + b64,
		"plus as space":   strings.ReplaceAll(b64, "+", "%20"),
		"url-safe base64": base64.RawURLEncoding.EncodeToString(der),
	}
	// Through a real HTTP server and client, so nothing cleans the path.
	srv := httptest.NewServer(e.rs.Wrap(http.NotFoundHandler()))
	defer srv.Close()
	for name, v := range variants {
		t.Run(name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, srv.URL+"/ocsp/"+v, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 {
				t.Fatalf("GET %s: HTTP %d %x", req.URL.RawPath+req.URL.Path, resp.StatusCode, body)
			}
			if r := parse(t, body, l.Certificate, e.pki.inter); r.Status != xocsp.Good {
				t.Fatalf("status %s", statusName(r.Status))
			}
		})
	}
}

// staticSource returns one fixed response or error.
type staticSource struct {
	r   *certdb.OCSPResponse
	err error
}

func (s staticSource) Response(context.Context, *big.Int) (*certdb.OCSPResponse, error) {
	return s.r, s.err
}

func TestResponderNeverServesStale(t *testing.T) {
	e := newResponderEnv(t)
	stored := e.store.response(t, e.good.SerialNumber)
	der := request(t, e.good, e.pki.inter, crypto.SHA1)
	clock := newClock(stored.NextUpdate)
	for name, src := range map[string]Source{
		"source returns stale": staticSource{r: stored},
		"source fails":         staticSource{err: errDown},
	} {
		t.Run(name, func(t *testing.T) {
			rs, err := NewResponder(e.pki.inter, src, "", WithResponderClock(clock.Now))
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			rs.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(der)))
			if w.Code != http.StatusServiceUnavailable || !bytes.Equal(w.Body.Bytes(), xocsp.TryLaterErrorResponse) {
				t.Fatalf("HTTP %d %x, want 503 tryLater", w.Code, w.Body.Bytes())
			}
		})
	}
}

// slowSource blocks until its context is done and reports whether it was
// cancelled by the deadline rather than the client.
type slowSource struct{ done chan error }

func (s slowSource) Response(ctx context.Context, _ *big.Int) (*certdb.OCSPResponse, error) {
	<-ctx.Done()
	s.done <- ctx.Err()
	return nil, ctx.Err()
}

func TestResponderOwnTimeout(t *testing.T) {
	e := newResponderEnv(t)
	src := slowSource{done: make(chan error, 1)}
	rs, err := NewResponder(e.pki.inter, src, "", WithTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the client is gone already: the lookup still runs to our timeout
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(request(t, e.good, e.pki.inter, crypto.SHA1))).WithContext(ctx)
	w := httptest.NewRecorder()
	rs.ServeHTTP(w, req)
	if err := <-src.done; err != context.DeadlineExceeded {
		t.Errorf("source context ended with %v, want our deadline", err)
	}
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("HTTP %d, want 503", w.Code)
	}
}

func TestNewResponderRejects(t *testing.T) {
	e := newResponderEnv(t)
	for _, p := range []string{"ocsp", "/ocsp/"} {
		if _, err := NewResponder(e.pki.inter, e.src, p); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
	if _, err := NewResponder(nil, e.src, ""); err == nil {
		t.Error("nil issuer accepted")
	}
}
