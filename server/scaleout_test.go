package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/certdb/postgres"
	"github.com/certctl/certctl/internal/pkitest"
	"github.com/certctl/certctl/server"
)

var pg *pkitest.Postgres

func TestMain(m *testing.M) { pkitest.MainWithPostgres(m, &pg) }

// TestScaleOut runs two API servers, each with its own CA object and its own
// connection pool (as two processes would), on one PostgreSQL database.
func TestScaleOut(t *testing.T) {
	dsn := pg.NewDatabase(t)
	openPG := func(t testing.TB) envStore {
		st, err := postgres.Open(context.Background(), dsn, postgres.WithMaxConns(8))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	a := newEnv(t, envOpts{store: openPG})
	// Process B: another pool, another CA object over the same issuer.
	stB := openPG(t)
	t.Cleanup(func() { stB.Close() })
	caB, err := ca.New(a.ca.Issuer(), a.ca.Chain(), a.profiles, stB)
	if err != nil {
		t.Fatal(err)
	}
	srvB, err := server.New(caB, stB, server.Config{Chain: a.ca.Chain(), Roots: []*x509.Certificate{a.root}})
	if err != nil {
		t.Fatal(err)
	}
	b := &env{t: t, ca: caB, store: stB, root: a.root, inter: a.inter, profiles: a.profiles, server: srvB}
	b.srv = httptest.NewUnstartedServer(srvB.Handler())
	b.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	b.srv.StartTLS()
	t.Cleanup(b.srv.Close)

	// A single-use token is consumed once across both processes.
	tok := a.token(func(tk *certdb.Token) { tk.SingleUse = true })
	body := server.IssueRequest{CSR: csrPEM(t, mustKey(t), "a.svc.internal", "a.svc.internal"), Profile: "server"}
	var wg sync.WaitGroup
	var ok atomic.Int32
	for i := range 8 {
		e := a
		if i%2 == 1 {
			e = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := e.do(t, nil, "POST", "/v1/certificates", tok, body); r.status == 201 {
				ok.Add(1)
			} else if r.status != 401 {
				t.Errorf("status %d: %s", r.status, r.body)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Fatalf("%d issuances from one single-use token across two servers", ok.Load())
	}

	// Issue on A, revoke on B, A sees it.
	admin := a.token(func(tk *certdb.Token) { tk.Admin = true })
	r := a.do(t, nil, "POST", "/v1/certificates", admin, server.IssueRequest{CSR: csrPEM(t, mustKey(t), "b.svc.internal", "b.svc.internal"), Profile: "server"})
	var out server.CertificateResponse
	if err := json.Unmarshal(r.body, &out); err != nil || r.status != 201 {
		t.Fatalf("issue on A: %d %s", r.status, r.body)
	}
	if r := b.do(t, nil, "POST", "/v1/certificates/"+out.Serial+"/revoke", admin, server.RevokeRequest{Reason: "superseded"}); r.status != 200 {
		t.Fatalf("revoke on B: %d %s", r.status, r.body)
	}
	r = a.do(t, nil, "GET", "/v1/certificates/"+out.Serial, admin, nil)
	var got server.CertificateJSON
	json.Unmarshal(r.body, &got)
	if got.Status != "revoked" {
		t.Fatalf("A sees %q after B revoked", got.Status)
	}
	// One audit trail for both.
	evs, err := a.store.ListAudit(context.Background(), certdb.AuditQuery{Since: time.Now().Add(-time.Hour), Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var issues, revokes int
	for _, ev := range evs {
		if ev.Outcome == "ok" && ev.Action == "issue" {
			issues++
		}
		if ev.Outcome == "ok" && ev.Action == "revoke" {
			revokes++
		}
	}
	if issues != 2 || revokes != 1 {
		t.Fatalf("audit trail: %d issues, %d revokes; want 2 and 1", issues, revokes)
	}
}
