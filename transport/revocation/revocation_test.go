package revocation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/internal/pkitest"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/ocsp"
)

// Good and revoked answers from certctl's own OCSP responder and CRL
// handler, each method on its own, in both modes.
func TestGoodAndRevoked(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	good := p.issue(t, "good.test.internal")
	bad := p.issue(t, "revoked.test.internal")
	p.revoke(t, bad, certdb.ReasonKeyCompromise)
	for _, m := range []Method{OCSP, CRL} {
		for _, mode := range []Mode{SoftFail, HardFail} {
			t.Run(m.String()+"/"+mode.String(), func(t *testing.T) {
				var events []Event
				var mu sync.Mutex
				c := New(WithMode(mode), WithMethods(m), WithObserver(func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }))
				if err := c.Check(t.Context(), p.chain(good)); err != nil {
					t.Fatalf("good certificate: %v", err)
				}
				err := c.Check(t.Context(), p.chain(bad))
				var re *RevokedError
				if !errors.Is(err, ErrRevoked) || !errors.As(err, &re) {
					t.Fatalf("revoked certificate: got %v, want ErrRevoked", err)
				}
				if re.Method != m || re.Reason != int(certdb.ReasonKeyCompromise) || re.Serial.Cmp(bad.SerialNumber) != 0 || re.RevokedAt.IsZero() {
					t.Errorf("RevokedError = %+v", re)
				}
				if !strings.Contains(err.Error(), "keyCompromise") || !strings.Contains(err.Error(), re.URL) {
					t.Errorf("error text %q lacks reason or URL", err)
				}
				mu.Lock()
				defer mu.Unlock()
				if len(events) != 2 || events[0].Err != nil || events[0].Revoked || !events[1].Revoked || events[0].Method != m {
					t.Errorf("events = %+v", events)
				}
			})
		}
	}
}

// Concurrent checks share one fetch; later checks are answered from the
// cache until nextUpdate; past it the response is fetched again and,
// being expired, refused.
func TestCachingAndExpiry(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	leaves := []*x509.Certificate{p.issue(t, "a.test.internal"), p.issue(t, "b.test.internal")}
	for _, m := range []Method{OCSP, CRL} {
		t.Run(m.String(), func(t *testing.T) {
			clock := newClock(time.Now())
			c := New(WithMode(HardFail), WithMethods(m), WithClock(clock.Now))
			count := &p.ocspReqs
			if m == CRL {
				count = &p.crlReqs
			}
			before := count.Load()
			// Hold the responses back until every check is waiting, so
			// that they all share the fetch.
			release := make(chan struct{})
			p.setIntercept(func(w http.ResponseWriter, r *http.Request) bool { <-release; return false })
			var wg sync.WaitGroup
			errs := make(chan error, 20)
			for range 10 {
				wg.Go(func() { errs <- c.Check(t.Context(), p.chain(leaves[0])) })
			}
			waitFor(t, "a fetch to start", func() bool { return count.Load() > before })
			close(release)
			wg.Wait()
			p.setIntercept(nil)
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if n := count.Load() - before; n != 1 {
				t.Fatalf("10 concurrent checks made %d requests, want 1", n)
			}
			for range 5 {
				if err := c.Check(t.Context(), p.chain(leaves[0])); err != nil {
					t.Fatal(err)
				}
			}
			want := int64(1)
			if m == OCSP {
				want = 2 // one response per certificate
			}
			if err := c.Check(t.Context(), p.chain(leaves[1])); err != nil {
				t.Fatal(err)
			}
			if n := count.Load() - before; n != want {
				t.Fatalf("after cached checks: %d requests, want %d", n, want)
			}
			// Past nextUpdate (plus the skew allowance): asked again, and
			// the response served (still the same) has expired.
			clock.Advance(ocsp.DefaultValidity + DefaultClockSkew + time.Minute)
			err := c.Check(t.Context(), p.chain(leaves[0]))
			if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrInvalidResponse) || !strings.Contains(err.Error(), "expired") {
				t.Fatalf("expired response: got %v", err)
			}
			if n := count.Load() - before; n != want+1 {
				t.Fatalf("after expiry: %d requests, want %d", n, want+1)
			}
		})
	}
}

// A delegated responder must be signed by the issuer and hold
// id-kp-OCSPSigning; a response signed by the issuer itself is fine;
// tampered responses and CRLs, and those of another issuer, are refused.
func TestSignatures(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	other := newPKI(t, pkiOptions{})
	leaf := p.issue(t, "leaf.test.internal")
	now := time.Now()
	sign := func(issuer, respCert *x509.Certificate, embed bool, key crypto.Signer) []byte {
		t.Helper()
		tm := xocsp.Response{Status: xocsp.Revoked, SerialNumber: leaf.SerialNumber, ThisUpdate: now.Add(-time.Minute),
			NextUpdate: now.Add(time.Hour), RevokedAt: now.Add(-time.Minute), RevocationReason: xocsp.Superseded}
		if embed {
			tm.Certificate = respCert
		}
		der, err := xocsp.CreateResponse(issuer, respCert, tm, key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	leafKey := cachedKey(t, "leaf")
	noEKU := p.issueProfile(t, "not-a-responder.test.internal", "server", false) // our CA, no id-kp-OCSPSigning
	foreign := other.issueProfile(t, "Other OCSP Responder", "ocsp", false)      // another CA's delegated responder
	serve := func(body []byte) func(w http.ResponseWriter, r *http.Request) bool {
		return func(w http.ResponseWriter, r *http.Request) bool { w.Write(body); return true }
	}
	// tamper serves the real answer with its last byte (in the signature) flipped.
	tamper := func(w http.ResponseWriter, r *http.Request) bool {
		rec := httptest.NewRecorder()
		(*p.handler.Load()).ServeHTTP(rec, r)
		b := rec.Body.Bytes()
		b[len(b)-1] ^= 1
		w.Write(b)
		return true
	}
	otherCRL, err := other.crlb.Build(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		method    Method
		intercept func(w http.ResponseWriter, r *http.Request) bool
		wantErr   error
		contains  string
	}{
		{"OCSP signed by the issuer", OCSP, serve(sign(p.inter, p.inter, false, p.interKey)), ErrRevoked, "superseded"},
		{"OCSP signed by the issuer, issuer embedded", OCSP, serve(sign(p.inter, p.inter, true, p.interKey)), ErrRevoked, "superseded"},
		{"OCSP delegate without id-kp-OCSPSigning", OCSP, serve(sign(p.inter, noEKU, true, leafKey)), ErrInvalidResponse, "lacks id-kp-OCSPSigning"},
		{"OCSP delegate of another CA", OCSP, serve(sign(other.inter, foreign, true, leafKey)), ErrInvalidResponse, "not signed by the issuer"},
		{"OCSP signed by another CA's key", OCSP, serve(sign(other.inter, other.inter, false, other.interKey)), ErrInvalidResponse, "does not verify with the issuer's key"},
		{"OCSP tampered", OCSP, tamper, ErrInvalidResponse, "verif"},
		{"OCSP garbage", OCSP, serve([]byte("<html>proxy login</html>")), ErrInvalidResponse, "parse OCSP response"},
		{"OCSP tryLater", OCSP, serve(xocsp.TryLaterErrorResponse), nil, "responder error: try later"},
		{"OCSP unauthorized", OCSP, serve(xocsp.UnauthorizedErrorResponse), ErrUnknown, "unauthorized"},
		{"CRL tampered", CRL, tamper, ErrInvalidResponse, "signature does not verify"},
		{"CRL of another CA", CRL, serve(otherCRL.DER), ErrInvalidResponse, "authority key identifier"},
		{"CRL garbage", CRL, serve([]byte("not a CRL")), ErrInvalidResponse, "parse CRL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.setIntercept(tt.intercept)
			defer p.setIntercept(nil)
			c := New(WithMode(HardFail), WithMethods(tt.method))
			err := c.Check(t.Context(), p.chain(leaf))
			if tt.wantErr == ErrRevoked {
				if !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), tt.contains) {
					t.Fatalf("got %v, want ErrRevoked (%s)", err, tt.contains)
				}
				return
			}
			if !errors.Is(err, ErrUnavailable) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) || !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("got %v, want ErrUnavailable wrapping %v containing %q", err, tt.wantErr, tt.contains)
			}
			// Soft-fail lets the peer through on the same answer.
			if err := New(WithMethods(tt.method)).Check(t.Context(), p.chain(leaf)); err != nil {
				t.Fatalf("soft-fail: %v", err)
			}
		})
	}
}

// A validly signed CRL of another shard, served at this certificate's
// CRL URL, must not be taken for its own (RFC 5280 §6.3.3, the Issuing
// Distribution Point check).
func TestCRLShardSubstitution(t *testing.T) {
	p := newPKI(t, pkiOptions{shards: 2})
	var leaf *x509.Certificate
	for i := 0; leaf == nil; i++ {
		c := p.issue(t, "shard.test.internal")
		if issuance.ShardOf(c.SerialNumber, 2) == 1 {
			leaf = c
		}
		if i > 100 {
			t.Fatal("no certificate in shard 1")
		}
	}
	p.revoke(t, leaf, certdb.ReasonKeyCompromise)
	c := New(WithMode(HardFail), WithMethods(CRL))
	if err := c.Check(t.Context(), p.chain(leaf)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("own shard: got %v, want ErrRevoked", err)
	}
	// An attacker serves shard 0's CRL (which does not list leaf) at /crl/1.
	p.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/crl/0"
		(*p.handler.Load()).ServeHTTP(w, r2)
		return true
	})
	defer p.setIntercept(nil)
	err := New(WithMode(HardFail), WithMethods(CRL)).Check(t.Context(), p.chain(leaf))
	if !errors.Is(err, ErrInvalidResponse) || !strings.Contains(err.Error(), "issuing distribution point") {
		t.Fatalf("shard 0's CRL at shard 1's URL: got %v, want ErrInvalidResponse about the issuing distribution point", err)
	}
}

// Unreachable, failing and hanging responders: soft-fail passes and logs,
// hard-fail refuses with every attempt listed; failures are remembered for
// the failure TTL; ctx bounds the wait.
func TestUnavailable(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	leaf := p.issue(t, "leaf.test.internal")
	// An address nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + ln.Addr().String()
	ln.Close()
	dead := *leaf
	dead.OCSPServer = []string{deadURL + "/ocsp"}
	dead.CRLDistributionPoints = []string{deadURL + "/crl"}

	t.Run("refused", func(t *testing.T) {
		var logs pkitest.SyncBuffer
		soft := New(WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		if err := soft.Check(t.Context(), p.chain(&dead)); err != nil {
			t.Fatalf("soft-fail: %v", err)
		}
		if !strings.Contains(logs.String(), "revocation status unavailable") || !strings.Contains(logs.String(), "connection refused") {
			t.Errorf("soft-fail did not log the failure: %s", logs.String())
		}
		// The remembered failure is not logged again on every check.
		if err := soft.Check(t.Context(), p.chain(&dead)); err != nil {
			t.Fatalf("soft-fail: %v", err)
		}
		if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
			t.Errorf("%d warnings for one failure:\n%s", n, logs.String())
		}
		err := New(WithMode(HardFail)).Check(t.Context(), p.chain(&dead))
		var ue *UnavailableError
		if !errors.As(err, &ue) || !errors.Is(err, ErrUnavailable) || len(ue.Errs) != 2 ||
			!strings.Contains(err.Error(), "OCSP "+deadURL) || !strings.Contains(err.Error(), "CRL "+deadURL) {
			t.Fatalf("hard-fail: got %v, want UnavailableError with both attempts", err)
		}
	})

	t.Run("HTTP 500, then remembered", func(t *testing.T) {
		p.setIntercept(func(w http.ResponseWriter, r *http.Request) bool { http.Error(w, "boom", 500); return true })
		defer p.setIntercept(nil)
		clock := newClock(time.Now())
		c := New(WithMode(HardFail), WithMethods(OCSP), WithClock(clock.Now), WithFailureTTL(time.Minute))
		before := p.ocspReqs.Load()
		for range 3 {
			if err := c.Check(t.Context(), p.chain(leaf)); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "HTTP 500") {
				t.Fatalf("got %v", err)
			}
		}
		if n := p.ocspReqs.Load() - before; n != 1 {
			t.Fatalf("%d requests within the failure TTL, want 1", n)
		}
		p.setIntercept(nil)
		clock.Advance(time.Minute)
		if err := c.Check(t.Context(), p.chain(leaf)); err != nil {
			t.Fatalf("after the failure TTL, the responder is back: %v", err)
		}
	})

	t.Run("hanging responder, ctx bounds the wait", func(t *testing.T) {
		stop := make(chan struct{})
		p.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
			select {
			case <-stop:
			case <-r.Context().Done():
			}
			return true
		})
		defer p.setIntercept(nil)
		defer close(stop)
		for _, mode := range []Mode{SoftFail, HardFail} {
			c := New(WithMode(mode), WithMethods(OCSP))
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			err := c.Check(ctx, p.chain(leaf))
			cancel()
			if mode == SoftFail && err != nil {
				t.Fatalf("soft-fail: %v", err)
			}
			if mode == HardFail && (!errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded)) {
				t.Fatalf("hard-fail: got %v, want ErrUnavailable wrapping DeadlineExceeded", err)
			}
		}
		// The fetch itself is bounded by the fetch timeout.
		c := New(WithMode(HardFail), WithMethods(OCSP), WithFetchTimeout(100*time.Millisecond))
		if err := c.Check(t.Context(), p.chain(leaf)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("fetch timeout: got %v", err)
		}
	})

	t.Run("OCSP down, CRL answers", func(t *testing.T) {
		bad := p.issue(t, "fallback.test.internal")
		p.revoke(t, bad, certdb.ReasonCessationOfOperation)
		p.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
			if strings.HasPrefix(r.URL.Path, "/ocsp") {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return true
			}
			return false
		})
		defer p.setIntercept(nil)
		err := New(WithMode(HardFail)).Check(t.Context(), p.chain(bad))
		var re *RevokedError
		if !errors.As(err, &re) || re.Method != CRL || re.Reason != int(certdb.ReasonCessationOfOperation) {
			t.Fatalf("got %v, want revoked according to the CRL", err)
		}
	})

	t.Run("too large", func(t *testing.T) {
		big := bytes.Repeat([]byte{0x30}, 4096)
		for _, chunked := range []bool{false, true} {
			p.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
				if chunked {
					w.Write(big[:1]) // no Content-Length
					w.(http.Flusher).Flush()
					w.Write(big[1:])
				} else {
					w.Write(big)
				}
				return true
			})
			c := New(WithMode(HardFail), WithMaxResponseSize(1024), WithMaxCRLSize(2048))
			err := c.Check(t.Context(), p.chain(leaf))
			var ue *UnavailableError
			if !errors.As(err, &ue) || len(ue.Errs) != 2 || !errors.Is(ue.Errs[0], ErrTooLarge) || !errors.Is(ue.Errs[1], ErrTooLarge) {
				t.Fatalf("chunked=%v: got %v, want ErrTooLarge for both", chunked, err)
			}
		}
		p.setIntercept(nil)
	})
}

// WithIntermediates also checks the intermediate, here against the root's CRL.
func TestIntermediates(t *testing.T) {
	p := newPKI(t, pkiOptions{rootCRL: true})
	leaf := p.issue(t, "leaf.test.internal")
	chain := []*x509.Certificate{leaf, p.inter, p.root}
	if len(p.inter.CRLDistributionPoints) != 1 {
		t.Fatalf("fixture: intermediate CDP %q", p.inter.CRLDistributionPoints)
	}
	for _, opts := range [][]Option{nil, {WithIntermediates()}} {
		if err := New(append(opts, WithMode(HardFail))...).Check(t.Context(), chain); err != nil {
			t.Fatalf("before revocation: %v", err)
		}
	}
	if err := p.rootCA.Revoke(t.Context(), p.inter.SerialNumber, certdb.ReasonCACompromise); err != nil {
		t.Fatal(err)
	}
	if _, err := p.rootCRL.Build(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	if err := New(WithMode(HardFail)).Check(t.Context(), chain); err != nil {
		t.Fatalf("leaf only: %v", err)
	}
	err := New(WithMode(HardFail), WithIntermediates()).Check(t.Context(), chain)
	var re *RevokedError
	if !errors.As(err, &re) || re.Serial.Cmp(p.inter.SerialNumber) != 0 || re.Reason != int(certdb.ReasonCACompromise) ||
		!strings.Contains(err.Error(), "Revocation Test Intermediate") {
		t.Fatalf("with intermediates: got %v, want the intermediate revoked", err)
	}
}

// Certificates without revocation pointers, and bad chains.
func TestNoInformation(t *testing.T) {
	p := newPKI(t, pkiOptions{noURLs: true})
	leaf := p.issueProfile(t, "bare.test.internal", "server", false)
	if len(leaf.OCSPServer)+len(leaf.CRLDistributionPoints) != 0 {
		t.Fatal("fixture: leaf has revocation pointers")
	}
	ldap := *leaf
	ldap.CRLDistributionPoints = []string{"ldap://ldap.example/cn=CRL"}
	tests := []struct {
		name  string
		c     *Checker
		chain []*x509.Certificate
		want  error
	}{
		{"soft-fail", New(), p.chain(leaf), nil},
		{"hard-fail", New(WithMode(HardFail)), p.chain(leaf), nil},
		{"hard-fail, ldap only", New(WithMode(HardFail)), p.chain(&ldap), nil},
		{"hard-fail, info required", New(WithMode(HardFail), WithRequireInfo()), p.chain(leaf), ErrNoRevocationInfo},
		{"soft-fail, info required", New(WithRequireInfo()), p.chain(leaf), nil},
		{"no issuer", New(), []*x509.Certificate{leaf}, ErrNoIssuer},
		{"nil issuer", New(), []*x509.Certificate{leaf, nil}, ErrNoIssuer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.c.Check(t.Context(), tt.chain); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// The caches stay within their bounds.
func TestCacheBound(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	c := New(WithCacheSize(3, 1))
	for i := range 6 {
		leaf := p.issue(t, "bound.test.internal")
		if err := c.Check(t.Context(), p.chain(leaf)); err != nil {
			t.Fatal(err)
		}
		if c.ocsp.len() > 3 {
			t.Fatalf("after %d checks: %d cached responses, bound 3", i+1, c.ocsp.len())
		}
	}
	if c.ocsp.len() != 3 {
		t.Fatalf("%d cached responses, want 3", c.ocsp.len())
	}
	l := newLRU[int](2)
	now := time.Now()
	for i, k := range []string{"a", "b", "a", "c"} { // "b" is least recently used when "c" comes
		l.put(k, &entry[int]{val: i, expires: now.Add(time.Hour)})
	}
	if _, ok := l.get("b", now); ok {
		t.Error("LRU kept the least recently used entry")
	}
	if e, ok := l.get("a", now); !ok || e.val != 2 {
		t.Error("LRU lost the recently used entry")
	}
	if _, ok := l.get("c", now.Add(time.Hour)); ok {
		t.Error("LRU returned an expired entry")
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkCheckCached is the cost a handshake pays once the answer is cached.
func BenchmarkCheckCached(b *testing.B) {
	p := newPKI(b, pkiOptions{})
	leaf := p.issue(b, "bench.test.internal")
	for _, m := range []Method{OCSP, CRL} {
		b.Run(m.String(), func(b *testing.B) {
			c := New(WithMode(HardFail), WithMethods(m))
			chain := p.chain(leaf)
			if err := c.Check(b.Context(), chain); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := c.Check(context.Background(), chain); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
