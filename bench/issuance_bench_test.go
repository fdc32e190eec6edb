// Package bench holds certctl's benchmarks. Run them with `make bench`; the
// method and the figures are in RESULTS.md.
package bench

import (
	"context"
	"crypto"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/certdb/postgres"
	"github.com/certctl/certctl/internal/catest"
	"github.com/certctl/certctl/internal/pkitest"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
)

// pg is started by the first benchmark that needs it and stopped by TestMain.
var (
	pgOnce sync.Once
	pg     *pkitest.Postgres
	pgErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if pg != nil {
		pg.Stop()
	}
	os.Exit(code)
}

func postgresCluster(b *testing.B) *pkitest.Postgres {
	pgOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		pg, pgErr = pkitest.StartPostgres(ctx)
	})
	if pgErr != nil {
		b.Fatalf("start PostgreSQL: %v", pgErr)
	}
	return pg
}

// discardStore records nothing: it measures the CA without a database.
type discardStore struct{}

func (discardStore) ReserveSerial(context.Context, *certdb.Reservation) error  { return nil }
func (discardStore) AddCertificate(context.Context, *certdb.Certificate) error { return nil }

// newCA builds a root and an intermediate in memory and a CA over st.
func newCA(b *testing.B, st ca.Store, kt keys.KeyType) *ca.CA {
	b.Helper()
	return newCAOver(b, st, catest.NewHierarchy(b, catest.Options{Name: "Bench", KeyType: kt}))
}

// newCAOver is a CA issuing "server" certificates from h's intermediate into st.
func newCAOver(b *testing.B, st ca.Store, h *catest.Hierarchy) *ca.CA {
	b.Helper()
	iss := h.Issuer(b, issuance.IssuerConfig{
		OCSPServers:           []string{"http://127.0.0.1:8080/ocsp"},
		IssuingCertificateURL: []string{"http://127.0.0.1:8080/ca.crt"},
		CRLDistributionPoints: []string{"http://127.0.0.1:8080/crl"},
	})
	c, err := ca.New(iss, h.Chain(), catest.Profiles(b, "server"), st)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// benchIssue issues b.N certificates with `conc` goroutines and reports
// certs/s and latency percentiles.
func benchIssue(b *testing.B, c *ca.CA, conc int) {
	leafKey, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	issueOne := func(pub crypto.PublicKey, i int) error {
		req := &issuance.Request{PublicKey: pub}
		if err := req.AddNames(fmt.Sprintf("svc-%d.bench.internal", i)); err != nil {
			return err
		}
		req.Subject.CommonName = req.DNSNames[0]
		_, err := c.Issue(ctx, ca.Request{Profile: "server", Request: req, Requester: "bench"})
		return err
	}
	runConcurrent(b, conc, "certs/s", func(i int) error { return issueOne(leafKey.Public(), i) })
}

// runConcurrent calls op(i) for i in [0, b.N) on conc goroutines, timing
// from here; it stops at the first error and fails b with it. It reports
// b.N per second as unit, and the p50 and p99 latency of op.
func runConcurrent(b *testing.B, conc int, unit string, op func(i int) error) {
	b.Helper()
	lat := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	next := make(chan int)
	errs := make(chan error, conc)
	b.ResetTimer()
	start := time.Now()
	for w := range conc {
		wg.Go(func() {
			for i := range next {
				t0 := time.Now()
				if err := op(i); err != nil {
					errs <- err
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	for i := 0; i < b.N; i++ {
		select {
		case next <- i:
		case err := <-errs:
			close(next)
			wg.Wait()
			b.Fatal(err)
		}
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), unit)
	b.ReportMetric(float64(percentile(all, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(all, 0.99).Microseconds())/1000, "p99-ms")
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

// BenchmarkIssue: issuance through the library (policy, serial, lint,
// reserve, sign, store) at concurrency 1 and 8, into PostgreSQL, into the
// embedded SQLite store, and with no store.
func BenchmarkIssue(b *testing.B) {
	for _, conc := range []int{1, 8} {
		b.Run(fmt.Sprintf("store=none/conc=%d", conc), func(b *testing.B) {
			benchIssue(b, newCA(b, discardStore{}, keys.ECDSAP256), conc)
		})
		b.Run(fmt.Sprintf("store=postgres/conc=%d", conc), func(b *testing.B) {
			st := catest.PostgresStore(b, postgresCluster(b).NewDatabase(b), postgres.WithMaxConns(16))
			benchIssue(b, newCA(b, st, keys.ECDSAP256), conc)
		})
		b.Run(fmt.Sprintf("store=sqlite/conc=%d", conc), func(b *testing.B) {
			st := catest.SQLiteStore(b)
			benchIssue(b, newCA(b, st, keys.ECDSAP256), conc)
		})
	}
}
