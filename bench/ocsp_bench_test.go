package bench

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/certdb/postgres"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
	"github.com/certctl/certctl/ocsp"
)

const (
	ocspCerts      = 10000
	ocspRevokedPct = 10
	ocspConc       = 8
)

// ocspFixture is a PostgreSQL database with ocspCerts issued certificates,
// 10% revoked, and a pre-signed response for each.
type ocspFixture struct {
	store  *postgres.Store
	issuer *x509.Certificate
	reqs   [][]byte // DER OCSP requests (SHA-1 CertIDs), one per certificate
}

var (
	ocspFixOnce sync.Once
	ocspFix     *ocspFixture
	ocspFixErr  error
)

func ocspSetup(b *testing.B) *ocspFixture {
	b.Helper()
	ocspFixOnce.Do(func() { ocspFix, ocspFixErr = buildOCSPFixture(b) })
	if ocspFixErr != nil {
		b.Fatal(ocspFixErr)
	}
	return ocspFix
}

func buildOCSPFixture(b *testing.B) (*ocspFixture, error) {
	ctx := context.Background()
	dsn := postgresCluster(b).NewDatabase(b)
	st, err := postgres.Open(ctx, dsn, postgres.WithMaxConns(16))
	if err != nil {
		return nil, err
	}
	b.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		return nil, err
	}
	leafCA := newCA(b, st, keys.ECDSAP256)
	// A CA with the "ocsp" profile over the same issuer, for the responder.
	defaults := issuance.DefaultProfiles()
	op, err := issuance.NewProfile("ocsp", defaults["ocsp"])
	if err != nil {
		return nil, err
	}
	respCA, err := ca.New(leafCA.Issuer(), leafCA.Chain(), map[string]*issuance.Profile{"ocsp": op}, st)
	if err != nil {
		return nil, err
	}
	issuer := leafCA.Issuer().Cert()

	// Issue the certificates (8 at a time), revoke every tenth.
	start := time.Now()
	leafKey, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		return nil, err
	}
	certs := make([]*x509.Certificate, ocspCerts)
	var wg sync.WaitGroup
	errs := make(chan error, ocspConc)
	next := make(chan int)
	for range ocspConc {
		wg.Go(func() {
			for i := range next {
				req := &issuance.Request{PublicKey: leafKey.Public()}
				if err := req.AddNames(fmt.Sprintf("ocsp-%d.bench.internal", i)); err != nil {
					errs <- err
					return
				}
				iss, err := leafCA.Issue(ctx, ca.Request{Profile: "server", Request: req, Requester: "bench"})
				if err != nil {
					errs <- err
					return
				}
				certs[i] = iss.Certificate
				if i%(100/ocspRevokedPct) == 0 {
					if err := st.Revoke(ctx, iss.Serial, certdb.ReasonKeyCompromise, time.Now()); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	for i := range ocspCerts {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	b.Logf("issued %d certificates (%d%% revoked) in %s", ocspCerts, ocspRevokedPct, time.Since(start).Round(time.Millisecond))

	signer, err := ocsp.NewSigner(ctx, issuer, func(ctx context.Context, pub crypto.PublicKey) (*x509.Certificate, error) {
		req := &issuance.Request{PublicKey: pub}
		req.Subject.CommonName = "certctl OCSP responder"
		iss, err := respCA.Issue(ctx, ca.Request{Profile: "ocsp", Request: req, Requester: "bench"})
		if err != nil {
			return nil, err
		}
		return iss.Certificate, nil
	})
	if err != nil {
		return nil, err
	}
	pre, err := ocsp.NewPresigner(issuer, st, signer, ocsp.Config{})
	if err != nil {
		return nil, err
	}
	start = time.Now()
	n, err := pre.RefreshAll(ctx, false, nil)
	if err != nil {
		return nil, err
	}
	took := time.Since(start)
	b.Logf("pre-signed %d responses in %s (%.0f responses/s, 8 workers, batches of 1000)", n.Signed, took.Round(time.Millisecond), float64(n.Signed)/took.Seconds())

	f := &ocspFixture{store: st, issuer: issuer}
	for _, c := range certs {
		der, err := xocsp.CreateRequest(c, issuer, &xocsp.RequestOptions{Hash: crypto.SHA1})
		if err != nil {
			return nil, err
		}
		f.reqs = append(f.reqs, der)
	}
	// Check the answers once before measuring.
	for i, c := range certs[:100] {
		r, err := st.GetOCSPResponse(ctx, c.SerialNumber)
		if err != nil {
			return nil, err
		}
		resp, err := xocsp.ParseResponseForCert(r.DER, c, issuer)
		if err != nil {
			return nil, err
		}
		if want := i%(100/ocspRevokedPct) == 0; want != (resp.Status == xocsp.Revoked) {
			return nil, fmt.Errorf("certificate %d: status %d", i, resp.Status)
		}
	}
	return f, nil
}

// BenchmarkOCSPResponder: the Responder over HTTP (loopback, keep-alive),
// answering from PostgreSQL through StoreSource, 10,000 certificates (10%
// revoked), requests spread evenly over them, 8 concurrent clients. With
// the default cache (every response is cached after its first request) and
// with the cache off (every request is a PostgreSQL query).
func BenchmarkOCSPResponder(b *testing.B) {
	f := ocspSetup(b)
	for _, cache := range []struct {
		name string
		size int
	}{{"cache", ocsp.DefaultCacheSize}, {"nocache", 0}} {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			b.Run(fmt.Sprintf("%s/%s/conc=%d", cache.name, method, ocspConc), func(b *testing.B) {
				src := ocsp.NewStoreSource(f.store, ocsp.WithCacheSize(cache.size))
				rs, err := ocsp.NewResponder(f.issuer, src, "/ocsp")
				if err != nil {
					b.Fatal(err)
				}
				srv := httptest.NewServer(rs.Wrap(http.NotFoundHandler()))
				defer srv.Close()
				benchOCSP(b, srv.URL+"/ocsp", method, f.reqs)
			})
		}
	}
}

func benchOCSP(b *testing.B, url, method string, reqs [][]byte) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: ocspConc, MaxConnsPerHost: ocspConc}}
	defer client.CloseIdleConnections()
	do := func(der []byte) error {
		var req *http.Request
		var err error
		if method == http.MethodGet {
			req, err = http.NewRequest(method, url+"/"+base64.StdEncoding.EncodeToString(der), nil)
		} else {
			req, err = http.NewRequest(method, url, bytes.NewReader(der))
			if req != nil {
				req.Header.Set("Content-Type", "application/ocsp-request")
			}
		}
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || len(body) < 100 {
			return fmt.Errorf("HTTP %d, %d bytes", resp.StatusCode, len(body))
		}
		return nil
	}
	// Warm up connections (and, with the cache, one pass over every response).
	for _, r := range reqs {
		if err := do(r); err != nil {
			b.Fatal(err)
		}
	}
	runConcurrent(b, ocspConc, "responses/s", func(i int) error { return do(reqs[i%len(reqs)]) })
}
