package crl_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/certdb/postgres"
	"github.com/certctl/certctl/crl"
	"github.com/certctl/certctl/internal/catest"
	"github.com/certctl/certctl/internal/pkitest"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
)

var pg *pkitest.Postgres

func TestMain(m *testing.M) { pkitest.MainWithPostgres(m, &pg) }

// fullStore is everything these tests use of a real certdb store.
type fullStore interface {
	ca.Store
	ca.Revoker
	crl.Store
	crl.CRLGetter
	crl.CertificateGetter
	crl.Notifier
	crl.Locker
}

// stores opens each real store: the embedded SQLite one and PostgreSQL.
var stores = []struct {
	name string
	open func(t *testing.T) fullStore
}{
	{"sqlite", func(t *testing.T) fullStore { return catest.SQLiteStore(t) }},
	{"postgres", func(t *testing.T) fullStore { return catest.PostgresStore(t, pg.NewDatabase(t)) }},
}

// fixture is a root, an intermediate (path length 0) whose issuer has the
// given number of shards, and a CA issuing from it into st.
type fixture struct {
	root, inter *x509.Certificate
	interKey    crypto.Signer
	iss         *issuance.Issuer
	ca          *ca.CA
	st          fullStore
	dir         string
}

const crlBase = "http://127.0.0.1:8080/crl"

func newFixture(t *testing.T, st fullStore, shards int) *fixture {
	t.Helper()
	h := catest.NewHierarchy(t, catest.Options{Name: "CRL Test"})
	cdp := crlBase
	if shards > 1 {
		cdp = crlBase + "/{shard}"
	}
	iss := h.Issuer(t, issuance.IssuerConfig{CRLShards: shards, CRLDistributionPoints: []string{cdp}})
	c, err := ca.New(iss, h.Chain(), catest.Profiles(t, "server"), st)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{root: h.Root, inter: h.Intermediate, interKey: h.IntermediateKey, iss: iss, ca: c, st: st, dir: t.TempDir()}
}

func (f *fixture) issue(t *testing.T, name string) *ca.Issued {
	t.Helper()
	k, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	req := &issuance.Request{PublicKey: k.Public()}
	if err := req.AddNames(name); err != nil {
		t.Fatal(err)
	}
	got, err := f.ca.Issue(t.Context(), ca.Request{Profile: "server", Request: req, Requester: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// byShard issues certificates until every shard has at least n.
func (f *fixture) byShard(t *testing.T, n int) map[int][]*ca.Issued {
	t.Helper()
	out := map[int][]*ca.Issued{}
	for i := 0; ; i++ {
		full := len(out) == f.iss.CRLShards()
		for _, l := range out {
			full = full && len(l) >= n
		}
		if full {
			return out
		}
		if i > 200*n*f.iss.CRLShards() {
			t.Fatalf("shards never filled: %v", out)
		}
		c := f.issue(t, fmt.Sprintf("svc-%d.test.internal", i))
		s := issuance.ShardOf(c.Serial, f.iss.CRLShards())
		out[s] = append(out[s], c)
	}
}

func (f *fixture) write(t *testing.T, name, typ string, ders ...[]byte) string {
	t.Helper()
	var b []byte
	for _, d := range ders {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
	}
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *fixture) writeDER(t *testing.T, name string, der []byte) string {
	t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, der, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// upperHex prints a serial the way openssl does: upper-case, even length.
func upperHex(n *big.Int) string { return strings.ToUpper(hex.EncodeToString(n.Bytes())) }

const opensslPath = "/usr/bin/openssl"

func openssl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	if _, err := os.Stat(opensslPath); err != nil {
		t.Fatalf("openssl is required for interop tests: %v", err)
	}
	out, err := exec.Command(opensslPath, args...).CombinedOutput()
	return string(out), err
}

// verify runs openssl verify -crl_check on cert with crlDER.
func (f *fixture) verify(t *testing.T, cert []byte, crlDER []byte) (string, error) {
	t.Helper()
	return openssl(t, "verify", "-x509_strict", "-crl_check",
		"-CAfile", f.write(t, "root.pem", "CERTIFICATE", f.root.Raw),
		"-untrusted", f.write(t, "inter.pem", "CERTIFICATE", f.inter.Raw),
		"-CRLfile", f.write(t, "crl.pem", "X509 CRL", crlDER),
		f.write(t, "leaf.pem", "CERTIFICATE", cert))
}

func lintCRL(t *testing.T, der []byte) {
	t.Helper()
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{ExcludeSources: lint.SourceList{
		lint.CABFBaselineRequirements, lint.CABFEVGuidelines, lint.CABFSMIMEBaselineRequirements,
		lint.CABFCSBaselineRequirements, lint.MozillaRootStorePolicy, lint.AppleRootStorePolicy,
		lint.ChromeRootStorePolicy, lint.EtsiEsi,
	}})
	if err != nil {
		t.Fatal(err)
	}
	zc, err := zx509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	rs := zlint.LintRevocationListEx(zc, reg)
	if len(rs.Results) == 0 {
		t.Fatal("no CRL lints ran")
	}
	for name, r := range rs.Results {
		if r.Status >= lint.Warn {
			t.Errorf("zlint %s: %s: %s", name, r.Status, r.Details)
		}
	}
}

func TestBuildInteropSharded(t *testing.T) {
	for _, sto := range stores {
		t.Run(sto.name, func(t *testing.T) {
			st := sto.open(t)
			f := newFixture(t, st, 4)
			b, err := crl.NewBuilder(f.iss, st)
			if err != nil {
				t.Fatal(err)
			}
			certs := f.byShard(t, 3)
			reasons := []certdb.Reason{certdb.ReasonKeyCompromise, certdb.ReasonUnspecified}
			for s := range 4 {
				// In each shard: certs[s][0] keyCompromise, certs[s][1]
				// unspecified, certs[s][2] stays good.
				for i, r := range reasons {
					if err := f.ca.Revoke(t.Context(), certs[s][i].Serial, r); err != nil {
						t.Fatal(err)
					}
				}
			}
			// A certificate revoked after thisUpdate cannot be listed yet;
			// the clock is injected via the Builder only, so revoke now and
			// build "now": RevokedAt ≤ thisUpdate to the second.
			for s := range 4 {
				c, err := b.Build(t.Context(), s)
				if err != nil {
					t.Fatalf("Build(%d): %v", s, err)
				}
				crlDER := c.DER
				parsed, err := x509.ParseRevocationList(crlDER)
				if err != nil {
					t.Fatal(err)
				}
				if err := parsed.CheckSignatureFrom(f.inter); err != nil {
					t.Fatal(err)
				}
				if len(parsed.RevokedCertificateEntries) != 2 {
					t.Fatalf("shard %d lists %d certificates, want 2", s, len(parsed.RevokedCertificateEntries))
				}
				for _, e := range parsed.RevokedCertificateEntries {
					if issuance.ShardOf(e.SerialNumber, 4) != s {
						t.Errorf("shard %d lists serial %x of shard %d", s, e.SerialNumber, issuance.ShardOf(e.SerialNumber, 4))
					}
				}
				// Stored, and the CDP of every certificate in the shard is the IDP.
				got, err := st.GetCRL(t.Context(), f.iss.KeyID(), s)
				if err != nil || !bytes.Equal(got.DER, crlDER) || got.Number.Cmp(parsed.Number) != 0 {
					t.Fatalf("GetCRL(%d) = %v, %v; want the built CRL", s, got, err)
				}
				wantURL := fmt.Sprintf("%s/%d", crlBase, s)
				for _, c := range certs[s] {
					if !slices.Equal(c.Certificate.CRLDistributionPoints, []string{wantURL}) {
						t.Errorf("certificate %x in shard %d has CDP %v, want %s", c.Serial, s, c.Certificate.CRLDistributionPoints, wantURL)
					}
				}
				text, err := openssl(t, "crl", "-inform", "DER", "-in", f.writeDER(t, "crl.der", crlDER), "-text", "-noout")
				if err != nil {
					t.Fatalf("openssl crl: %v\n%s", err, text)
				}
				for _, want := range []string{
					"X509v3 CRL Number: \n                " + parsed.Number.String(),
					"X509v3 Issuing Distribution Point: critical", "URI:" + wantURL, "Only User Certificates",
					"Key Compromise", "Serial Number: " + upperHex(certs[s][0].Serial),
				} {
					if !strings.Contains(text, want) {
						t.Errorf("shard %d: openssl crl -text lacks %q:\n%s", s, want, text)
					}
				}
				if n := strings.Count(text, "CRL Reason Code"); n != 1 {
					t.Errorf("shard %d: %d reason codes, want 1 (unspecified is omitted)", s, n)
				}
				lintCRL(t, crlDER)

				// openssl verify: revoked certificates fail, the good one in
				// the same shard passes.
				for i, c := range certs[s] {
					out, err := f.verify(t, c.DER, crlDER)
					if i < 2 {
						if err == nil || !strings.Contains(out, "certificate revoked") {
							t.Errorf("shard %d cert %d (revoked): openssl verify = %v\n%s", s, i, err, out)
						}
					} else if err != nil || !strings.Contains(out, ": OK") {
						t.Errorf("shard %d cert %d (good): openssl verify = %v\n%s", s, i, err, out)
					}
				}
				// The IDP scopes the CRL: another shard's CRL is not
				// accepted for this shard's certificates.
				other, err := b.Build(t.Context(), (s+1)%4)
				if err != nil {
					t.Fatal(err)
				}
				if out, err := f.verify(t, certs[s][2].DER, other.DER); err == nil || !strings.Contains(out, "different CRL scope") {
					t.Errorf("shard %d certificate with shard %d's CRL: openssl verify = %v\n%s", s, (s+1)%4, err, out)
				}
			}
		})
	}
}

func TestBuildInteropSingleShard(t *testing.T) {
	st := stores[0].open(t)
	f := newFixture(t, st, 1)
	b, err := crl.NewBuilder(f.iss, st)
	if err != nil {
		t.Fatal(err)
	}
	good, bad := f.issue(t, "good.test.internal"), f.issue(t, "bad.test.internal")
	if err := f.ca.Revoke(t.Context(), bad.Serial, certdb.ReasonSuperseded); err != nil {
		t.Fatal(err)
	}
	c, err := b.Build(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(good.Certificate.CRLDistributionPoints, []string{crlBase}) {
		t.Errorf("CDP %v", good.Certificate.CRLDistributionPoints)
	}
	if out, err := f.verify(t, bad.DER, c.DER); err == nil || !strings.Contains(out, "certificate revoked") {
		t.Errorf("revoked: %v\n%s", err, out)
	}
	if out, err := f.verify(t, good.DER, c.DER); err != nil {
		t.Errorf("good: %v\n%s", err, out)
	}
	lintCRL(t, c.DER)
	if _, err := b.Build(t.Context(), 1); err == nil {
		t.Error("Build(1) with one shard succeeded")
	}
}

func TestNumbersIncrease(t *testing.T) {
	for _, sto := range stores {
		t.Run(sto.name, func(t *testing.T) {
			st := sto.open(t)
			f := newFixture(t, st, 2)
			b1, err := crl.NewBuilder(f.iss, st)
			if err != nil {
				t.Fatal(err)
			}
			b2, err := crl.NewBuilder(f.iss, st)
			if err != nil {
				t.Fatal(err)
			}
			// Sequential regenerations: strictly increasing.
			var last *big.Int
			for i := range 4 {
				c, err := []*crl.Builder{b1, b2}[i%2].Build(t.Context(), 0)
				if err != nil {
					t.Fatal(err)
				}
				if last != nil && c.Number.Cmp(last) <= 0 {
					t.Fatalf("build %d: number %v after %v", i, c.Number, last)
				}
				last = c.Number
			}
			// Two Builders racing on the same shard: every number distinct,
			// and the stored CRL is the highest.
			var (
				mu   sync.Mutex
				nums = map[string]bool{}
				max  = new(big.Int)
				wg   sync.WaitGroup
			)
			for _, b := range []*crl.Builder{b1, b2} {
				wg.Go(func() {
					for range 5 {
						c, err := b.Build(t.Context(), 1)
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						if nums[c.Number.String()] {
							t.Errorf("number %v handed out twice", c.Number)
						}
						nums[c.Number.String()] = true
						if c.Number.Cmp(max) > 0 {
							max.Set(c.Number)
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			got, err := st.GetCRL(t.Context(), f.iss.KeyID(), 1)
			if err != nil {
				t.Fatal(err)
			}
			if got.Number.Cmp(max) != 0 {
				t.Errorf("stored CRL number %v, want the highest %v", got.Number, max)
			}
			parsed, err := x509.ParseRevocationList(got.DER)
			if err != nil || parsed.Number.Cmp(max) != 0 {
				t.Errorf("stored DER number %v (%v), want %v", parsed, err, max)
			}
		})
	}
}

func TestExpiredDropOff(t *testing.T) {
	st := stores[0].open(t)
	f := newFixture(t, st, 1)
	c := f.issue(t, "expiring.test.internal")
	if err := f.ca.Revoke(t.Context(), c.Serial, certdb.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	notAfter := c.Certificate.NotAfter
	tests := []struct {
		name   string
		at     time.Time
		opts   []crl.Option
		listed bool
	}{
		{"before expiry", notAfter.Add(-time.Hour), nil, true},
		{"just expired, default retention (one validity)", notAfter.Add(time.Hour), nil, true},
		{"expired beyond retention", notAfter.Add(crl.DefaultValidity + time.Second), nil, false},
		{"just expired, no retention", notAfter.Add(time.Second), []crl.Option{crl.WithExpiredRetention(0)}, false},
		{"at expiry, no retention", notAfter, []crl.Option{crl.WithExpiredRetention(0)}, false},
		{"second before expiry, no retention", notAfter.Add(-time.Second), []crl.Option{crl.WithExpiredRetention(0)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := crl.NewBuilder(f.iss, st, append(tt.opts, crl.WithClock(func() time.Time { return tt.at }))...)
			if err != nil {
				t.Fatal(err)
			}
			got, err := b.Build(t.Context(), 0)
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := x509.ParseRevocationList(got.DER)
			if err != nil {
				t.Fatal(err)
			}
			if listed := len(parsed.RevokedCertificateEntries) == 1; listed != tt.listed {
				t.Errorf("listed = %v (%d entries), want %v", listed, len(parsed.RevokedCertificateEntries), tt.listed)
			}
			if !parsed.ThisUpdate.Equal(tt.at.UTC().Truncate(time.Second)) {
				t.Errorf("thisUpdate %v, want %v", parsed.ThisUpdate, tt.at)
			}
		})
	}
}

// TestRevokedAfterThisUpdateIsDeferred: a revocation stamped after the
// builder's clock is left for the next CRL instead of failing the build.
func TestRevokedAfterThisUpdateIsDeferred(t *testing.T) {
	st := stores[0].open(t)
	f := newFixture(t, st, 1)
	c := f.issue(t, "late.test.internal")
	if err := f.ca.Revoke(t.Context(), c.Serial, certdb.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	b, err := crl.NewBuilder(f.iss, st, crl.WithClock(func() time.Time { return time.Now().Add(-time.Minute) }))
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Build(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := x509.ParseRevocationList(got.DER)
	if err != nil {
		t.Fatal(err)
	}
	if len(parsed.RevokedCertificateEntries) != 0 {
		t.Errorf("CRL with thisUpdate %v lists a revocation from after it", parsed.ThisUpdate)
	}
}

// waitFor polls cond until it holds or the deadline (generous: this is not
// a timing assertion) passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func lists(t *testing.T, st fullStore, keyID []byte, shard int, serial *big.Int) (*big.Int, bool) {
	t.Helper()
	c, err := st.GetCRL(context.Background(), keyID, shard)
	if errors.Is(err, certdb.ErrNotFound) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := x509.ParseRevocationList(c.DER)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range parsed.RevokedCertificateEntries {
		if serial != nil && e.SerialNumber.Cmp(serial) == 0 {
			return parsed.Number, true
		}
	}
	return parsed.Number, false
}

// TestUpdaterRevocation runs an Updater against a real store (its notifier
// and locker included): after the first scheduled pass, a revocation
// rebuilds that certificate's shard and no other.
func TestUpdaterRevocation(t *testing.T) {
	for _, sto := range stores {
		t.Run(sto.name, func(t *testing.T) {
			st := sto.open(t)
			f := newFixture(t, st, 4)
			certs := f.byShard(t, 1)
			b, err := crl.NewBuilder(f.iss, st)
			if err != nil {
				t.Fatal(err)
			}
			u, err := crl.NewUpdater(b, st, crl.WithNotifier(st), crl.WithLocker(st), crl.WithPeriod(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- u.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; !errors.Is(err, context.Canceled) {
					t.Errorf("Run = %v, want context.Canceled", err)
				}
			}()
			// The first scheduled pass builds every shard.
			numbers := map[int]*big.Int{}
			waitFor(t, "the first pass", func() bool {
				for s := range 4 {
					n, _ := lists(t, st, f.iss.KeyID(), s, nil)
					if n == nil {
						return false
					}
					numbers[s] = n
				}
				return true
			})
			target := 2
			serial := certs[target][0].Serial
			if err := f.ca.Revoke(t.Context(), serial, certdb.ReasonKeyCompromise); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the revoked certificate on its shard's CRL", func() bool {
				_, ok := lists(t, st, f.iss.KeyID(), target, serial)
				return ok
			})
			for s := range 4 {
				n, _ := lists(t, st, f.iss.KeyID(), s, nil)
				if s != target && n.Cmp(numbers[s]) != 0 {
					t.Errorf("shard %d rebuilt (number %v -> %v) for a revocation in shard %d", s, numbers[s], n, target)
				}
				if s == target && n.Cmp(numbers[s]) <= 0 {
					t.Errorf("shard %d number %v did not increase from %v", s, n, numbers[s])
				}
			}
		})
	}
}

// TestUpdaterTwoProcesses: two Updaters on one PostgreSQL database (as two
// serve processes would be): a revocation made through either is on the CRL.
func TestUpdaterTwoProcesses(t *testing.T) {
	dsn := pg.NewDatabase(t)
	open := func() *postgres.Store {
		st, err := postgres.Open(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	st1, st2 := open(), open()
	if err := st1.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, st1, 2)
	certs := f.byShard(t, 2)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for _, st := range []*postgres.Store{st1, st2} {
		b, err := crl.NewBuilder(f.iss, st)
		if err != nil {
			t.Fatal(err)
		}
		u, err := crl.NewUpdater(b, st, crl.WithNotifier(st), crl.WithLocker(st), crl.WithPeriod(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { u.Run(ctx) })
	}
	waitFor(t, "the first pass", func() bool {
		for s := range 2 {
			if n, _ := lists(t, st1, f.iss.KeyID(), s, nil); n == nil {
				return false
			}
		}
		return true
	})
	for s := range 2 {
		// Revoke through the second process's store: the notification
		// reaches both.
		if err := st2.Revoke(t.Context(), certs[s][1].Serial, certdb.ReasonSuperseded, time.Now()); err != nil {
			t.Fatal(err)
		}
		waitFor(t, fmt.Sprintf("revocation in shard %d", s), func() bool {
			_, ok := lists(t, st1, f.iss.KeyID(), s, certs[s][1].Serial)
			return ok
		})
	}
}

func TestHandlerServesStoredCRLs(t *testing.T) {
	st := stores[0].open(t)
	f := newFixture(t, st, 2)
	now := time.Now()
	clock := func() time.Time { return now }
	b, err := crl.NewBuilder(f.iss, st, crl.WithClock(clock), crl.WithValidity(6*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	h, err := crl.NewHandler(st, f.iss.KeyID(), 2, crl.WithClock(clock), crl.WithCacheTTL(0))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(path string, hdr ...string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if resp := get("/crl/1"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("before any build: status %d, want 404", resp.StatusCode)
	}
	c1, err := b.Build(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	resp := get("/crl/1")
	body := new(bytes.Buffer)
	body.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body.Bytes(), c1.DER) {
		t.Fatalf("status %d, %d bytes; want 200 and the CRL", resp.StatusCode, body.Len())
	}
	thisUpdate := now.UTC().Truncate(time.Second)
	wantHdr := map[string]string{
		"Content-Type":  "application/pkix-crl",
		"Cache-Control": fmt.Sprintf("public, max-age=%d", int((6*time.Hour-now.Sub(thisUpdate))/time.Second)),
		"ETag":          `"` + c1.Number.Text(16) + `"`,
		"Last-Modified": thisUpdate.Format(http.TimeFormat),
		"Expires":       thisUpdate.Add(6 * time.Hour).Format(http.TimeFormat),
	}
	for k, v := range wantHdr {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if resp := get("/crl/1", "If-None-Match", resp.Header.Get("ETag")); resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: status %d, want 304", resp.StatusCode)
	}
	// A new CRL: new ETag, the old one no longer matches.
	c2, err := b.Build(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	resp2 := get("/crl/1", "If-None-Match", wantHdr["ETag"])
	if resp2.StatusCode != http.StatusOK || resp2.Header.Get("ETag") != `"`+c2.Number.Text(16)+`"` {
		t.Errorf("after rebuild: status %d ETag %s, want 200 and number %v", resp2.StatusCode, resp2.Header.Get("ETag"), c2.Number)
	}
	for _, p := range []string{"/crl", "/crl/2", "/crl/01", "/crl/-1", "/crl/1/", "/crl/x"} {
		if resp := get(p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, resp.StatusCode)
		}
	}
	post, err := srv.Client().Post(srv.URL+"/crl/1", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d, want 405", post.StatusCode)
	}
	// The served CRL is what openssl and a relying party read.
	if out, err := openssl(t, "crl", "-inform", "DER", "-in", f.writeDER(t, "served.crl", body.Bytes()), "-noout", "-crlnumber"); err != nil ||
		!strings.Contains(out, "crlNumber=0x"+upperHex(c1.Number)) {
		t.Errorf("openssl crl -crlnumber: %v %s", err, out)
	}
}

func TestHandlerSingleShardPath(t *testing.T) {
	st := stores[0].open(t)
	f := newFixture(t, st, 1)
	b, err := crl.NewBuilder(f.iss, st)
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.Build(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	h, err := crl.NewHandler(st, f.iss.KeyID(), 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/crl", "/crl/0"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), c.DER) {
			t.Errorf("%s: status %d", p, rec.Code)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/crl", nil))
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") != fmt.Sprint(len(c.DER)) {
		t.Errorf("HEAD: status %d body %d length %q", rec.Code, rec.Body.Len(), rec.Header().Get("Content-Length"))
	}
}

func TestParseShardPath(t *testing.T) {
	tests := []struct {
		path   string
		shards int
		want   int
		ok     bool
	}{
		{"/crl", 1, 0, true},
		{"/crl", 2, 0, false},
		{"/crl/0", 1, 0, true},
		{"/crl/1", 1, 0, false},
		{"/crl/7", 8, 7, true},
		{"/crl/1023", 1024, 1023, true},
		{"/crl/1024", 1024, 0, false},
		{"/crl/00", 8, 0, false},
		{"/crl/07", 8, 0, false},
		{"/crl/+1", 8, 0, false},
		{"/crl/-0", 8, 0, false},
		{"/crl/", 8, 0, false},
		{"/crl/1/", 8, 0, false},
		{"/crl/ 1", 8, 0, false},
		{"/crl/99999", 100000, 0, false},
		{"/crlx", 1, 0, false},
		{"/ocsp/1", 8, 0, false},
		{"/crl/١", 8, 0, false}, // Arabic-Indic digit one
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q/%d", tt.path, tt.shards), func(t *testing.T) {
			got, ok := crl.ParseShardPath(tt.path, tt.shards)
			if ok != tt.ok || (ok && got != tt.want) {
				t.Errorf("ParseShardPath = %d, %v; want %d, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// FuzzParseShardPath: the shard segment is untrusted. Whatever is accepted
// is in range and is the canonical spelling of the shard.
func FuzzParseShardPath(f *testing.F) {
	for _, s := range []string{"/crl", "/crl/0", "/crl/15", "/crl/007", "/crl/-1", "/crl/9999999999999999999999", "/crl/1/2"} {
		f.Add(s, 16)
	}
	f.Fuzz(func(t *testing.T, path string, shards int) {
		n, ok := crl.ParseShardPath(path, shards)
		if !ok {
			return
		}
		if n < 0 || n >= shards {
			t.Fatalf("%q with %d shards: shard %d out of range", path, shards, n)
		}
		if path != "/crl" && path != fmt.Sprintf("/crl/%d", n) {
			t.Fatalf("%q accepted as shard %d: not canonical", path, n)
		}
		if path == "/crl" && shards != 1 {
			t.Fatalf("/crl accepted with %d shards", shards)
		}
	})
}
