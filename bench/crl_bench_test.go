package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/certdb/postgres"
	"github.com/certctl/certctl/crl"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
)

// Peak RSS is measured in-process (run one case per process for a clean
// figure, e.g. -bench 'CRLBuild/store=postgres/put=yes/revoked=1000000$'; the
// recorded figures in RESULTS.md come from bench/crl-bench.sh, which does): /proc/self/clear_refs "5" resets the
// kernel's high-water mark (VmHWM) to the current RSS, after the heap left
// by setup has been returned to the OS (debug.FreeOSMemory), and VmHWM is
// read after the build. So the figure is the whole benchmark process (Go
// runtime, zlint's registry, pgx pool) at its peak during the build.

// resetPeakRSS resets VmHWM and returns the RSS it starts from (report it
// as base-RSS-MB after the loop: b.Loop deletes metrics reported before).
func resetPeakRSS(b *testing.B) float64 {
	b.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Fatalf("reset peak RSS: %v", err)
	}
	return procStatusMB(b, "VmRSS:")
}

// peakRSSMB returns VmHWM in MiB.
func peakRSSMB(b *testing.B) float64 { return procStatusMB(b, "VmHWM:") }

func procStatusMB(b *testing.B, field string) float64 {
	b.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				b.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// crlDBs holds one populated database per size, shared by -count runs.
var (
	crlDBMu sync.Mutex
	crlDBs  = map[int]*crlDB{}
)

type crlDB struct {
	st  *postgres.Store
	iss *issuance.Issuer
}

// populatedCRLDB returns a PostgreSQL store holding n revoked, unexpired
// certificates of one issuer in shard 0 (20-octet serials like NewSerial's,
// reasons 0–5), inserted server-side with generate_series.
func populatedCRLDB(b *testing.B, n int) *crlDB {
	crlDBMu.Lock()
	defer crlDBMu.Unlock()
	if db := crlDBs[n]; db != nil {
		return db
	}
	ctx := context.Background()
	// Not b.Cleanup: the database outlives this benchmark for -count runs;
	// TestMain stops the whole cluster.
	dsn := postgresCluster(b).NewDatabase(&keepTB{b})
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	iss, _ := benchIssuer(b)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	start := time.Now()
	if _, err := conn.Exec(ctx, `
		INSERT INTO certificates (serial, issuer_key_id, subject, sans, not_before, not_after, status, revoked_at, reason, der, profile, requester, shard)
		SELECT '\x40'::bytea || int8send(g) || substr(sha256(int8send(g)), 1, 11), $1, 'CN=bench', '{}',
		       now() - interval '1 day', now() + interval '90 days', 3, now() - interval '1 hour' + g * interval '1 millisecond',
		       (g % 6)::smallint, '\x3000'::bytea, 'server', 'bench', 0
		FROM generate_series(1, $2::bigint) AS g`, iss.KeyID(), n); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE certificates`); err != nil {
		b.Fatal(err)
	}
	b.Logf("inserted %d revoked certificates in %s", n, time.Since(start).Round(time.Millisecond))
	db := &crlDB{st: st, iss: iss}
	crlDBs[n] = db
	return db
}

// benchIssuer is an ECDSA P-256 CA (path length 0, one CRL shard) and its key.
func benchIssuer(b *testing.B) (*issuance.Issuer, crypto.Signer) {
	b.Helper()
	key, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		b.Fatal(err)
	}
	serial, err := issuance.NewSerial(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	der, err := issuance.SelfSignRoot(key, issuance.RootConfig{CommonName: "Bench CRL CA", Validity: 365 * 24 * time.Hour}, serial, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		b.Fatal(err)
	}
	iss, err := issuance.NewIssuer(cert, key, issuance.IssuerConfig{CRLDistributionPoints: []string{"http://127.0.0.1:8080/crl"}})
	if err != nil {
		b.Fatal(err)
	}
	return iss, key
}

// keepTB hands pkitest a TB whose Cleanup never runs (the database is
// dropped with the cluster).
type keepTB struct{ testing.TB }

func (keepTB) Cleanup(func()) {}

// BenchmarkCRLBuild: a full CRL (one shard) of 100k and 1M revoked
// certificates from PostgreSQL through crl.Builder: allocate the number,
// stream the rows, encode, lint a 10k-entry sample, sign, verify, PutCRL.
func BenchmarkCRLBuild(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("store=postgres/put=yes/revoked=%d", n), func(b *testing.B) {
			db := populatedCRLDB(b, n)
			builder, err := crl.NewBuilder(db.iss, db.st)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			base := resetPeakRSS(b)
			b.ResetTimer()
			var size int
			for b.Loop() {
				c, err := builder.Build(ctx, 0)
				if err != nil {
					b.Fatal(err)
				}
				size = len(c.DER)
			}
			b.StopTimer()
			b.ReportMetric(peakRSSMB(b), "peak-RSS-MB")
			b.ReportMetric(base, "base-RSS-MB")
			b.ReportMetric(float64(size)/(1<<20), "CRL-MB")
		})
		// The same stream-encode-lint-sign path without allocating a
		// number or storing the result: what `cfssl gencrl` does (read the
		// database, print the CRL).
		b.Run(fmt.Sprintf("store=postgres/put=no/revoked=%d", n), func(b *testing.B) {
			db := populatedCRLDB(b, n)
			ctx := context.Background()
			key := db.iss.KeyID()
			base := resetPeakRSS(b)
			for b.Loop() {
				now := time.Now()
				list := func(emit func(issuance.RevokedCert) error) error {
					return db.st.ListRevokedShard(ctx, key, 0, now, func(c *certdb.Certificate) error {
						return emit(issuance.RevokedCert{Serial: c.Serial, RevokedAt: c.RevokedAt, Reason: int(c.Reason)})
					})
				}
				if _, err := db.iss.SignCRL(issuance.CRLRequest{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(time.Hour), Entries: list}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(peakRSSMB(b), "peak-RSS-MB")
			b.ReportMetric(base, "base-RSS-MB")
		})
	}
}

// revokedGen streams n synthetic entries in certdb's order (fixed-length
// serials, so numeric order is byte order).
func revokedGen(n int, now time.Time) issuance.RevokedCerts {
	return func(emit func(issuance.RevokedCert) error) error {
		base := new(big.Int).Lsh(big.NewInt(0x40), 152)
		for i := range n {
			s := new(big.Int).Add(base, big.NewInt(int64(i)))
			if err := emit(issuance.RevokedCert{Serial: s, RevokedAt: now.Add(-time.Hour), Reason: i % 6}); err != nil {
				return err
			}
		}
		return nil
	}
}

// BenchmarkSignCRL: issuance.Issuer.SignCRL alone (no database), entries
// generated in memory.
func BenchmarkSignCRL(b *testing.B) {
	iss, _ := benchIssuer(b)
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("revoked=%d", n), func(b *testing.B) {
			now := time.Now()
			base := resetPeakRSS(b)
			for b.Loop() {
				if _, err := iss.SignCRL(issuance.CRLRequest{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(time.Hour), Entries: revokedGen(n, now)}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(peakRSSMB(b), "peak-RSS-MB")
			b.ReportMetric(base, "base-RSS-MB")
		})
	}
}

// BenchmarkCreateRevocationListStdlib: what x509.CreateRevocationList costs
// for the same entries (no database, no lint): it needs them all in memory
// as structs, which the timing includes.
func BenchmarkCreateRevocationListStdlib(b *testing.B) {
	iss, key := benchIssuer(b)
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("revoked=%d", n), func(b *testing.B) {
			now := time.Now()
			base := resetPeakRSS(b)
			for b.Loop() {
				tmpl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(time.Hour)}
				tmpl.RevokedCertificateEntries = make([]x509.RevocationListEntry, 0, n)
				if err := revokedGen(n, now)(func(e issuance.RevokedCert) error {
					tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
						x509.RevocationListEntry{SerialNumber: e.Serial, RevocationTime: e.RevokedAt, ReasonCode: e.Reason})
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				der, err := x509.CreateRevocationList(nil, tmpl, iss.Cert(), key)
				if err != nil {
					b.Fatal(err)
				}
				if bytes.Equal(der, nil) {
					b.Fatal("empty CRL")
				}
			}
			b.StopTimer()
			b.ReportMetric(peakRSSMB(b), "peak-RSS-MB")
			b.ReportMetric(base, "base-RSS-MB")
		})
	}
}
