// Package bench holds certctl's benchmarks. Run them with `make bench`; the
// method and the figures are in RESULTS.md.
package bench

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/certdb/postgres"
	"github.com/certctl/certctl/certdb/sqlite"
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
	now := time.Now()
	rootKey, err := keys.Generate(kt)
	if err != nil {
		b.Fatal(err)
	}
	serial, err := issuance.NewSerial(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	rootDER, err := issuance.SelfSignRoot(rootKey, issuance.RootConfig{CommonName: "Bench Root", Validity: 10 * 365 * 24 * time.Hour, MaxPathLen: 1}, serial, now)
	if err != nil {
		b.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	rootIss, err := issuance.NewIssuer(root, rootKey, issuance.IssuerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defaults := issuance.DefaultProfiles()
	interProfile, err := issuance.NewProfile("intermediate", defaults["intermediate"])
	if err != nil {
		b.Fatal(err)
	}
	interKey, err := keys.Generate(kt)
	if err != nil {
		b.Fatal(err)
	}
	rootCA, err := ca.New(rootIss, nil, map[string]*issuance.Profile{"intermediate": interProfile}, discardStore{})
	if err != nil {
		b.Fatal(err)
	}
	req := &issuance.Request{PublicKey: interKey.Public()}
	req.Subject.CommonName = "Bench Intermediate"
	inter, err := rootCA.Issue(context.Background(), ca.Request{Profile: "intermediate", Request: req})
	if err != nil {
		b.Fatal(err)
	}
	iss, err := issuance.NewIssuer(inter.Certificate, interKey, issuance.IssuerConfig{
		OCSPServers:           []string{"http://127.0.0.1:8080/ocsp"},
		IssuingCertificateURL: []string{"http://127.0.0.1:8080/ca.crt"},
		CRLDistributionPoints: []string{"http://127.0.0.1:8080/crl"},
	})
	if err != nil {
		b.Fatal(err)
	}
	server, err := issuance.NewProfile("server", defaults["server"])
	if err != nil {
		b.Fatal(err)
	}
	c, err := ca.New(iss, [][]byte{inter.DER}, map[string]*issuance.Profile{"server": server}, st)
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
	lat := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	next := make(chan int)
	errs := make(chan error, conc)
	b.ResetTimer()
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t0 := time.Now()
				if err := issueOne(leafKey.Public(), i); err != nil {
					errs <- err
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
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
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "certs/s")
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
			dsn := postgresCluster(b).NewDatabase(b)
			ctx := context.Background()
			st, err := postgres.Open(ctx, dsn, postgres.WithMaxConns(16))
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			if err := st.Migrate(ctx); err != nil {
				b.Fatal(err)
			}
			benchIssue(b, newCA(b, st, keys.ECDSAP256), conc)
		})
		b.Run(fmt.Sprintf("store=sqlite/conc=%d", conc), func(b *testing.B) {
			ctx := context.Background()
			st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			if err := st.Migrate(ctx); err != nil {
				b.Fatal(err)
			}
			benchIssue(b, newCA(b, st, keys.ECDSAP256), conc)
		})
	}
}
