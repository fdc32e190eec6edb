package ca_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/certdb/sqlite"
	"github.com/certctl/certctl/ct"
	"github.com/certctl/certctl/internal/catest"
	"github.com/certctl/certctl/internal/pkitest"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
)

var (
	oidPoison  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 3}
	oidSCTList = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}
)

func hasExt(c *x509.Certificate, oid asn1.ObjectIdentifier) bool {
	return slices.ContainsFunc(c.Extensions, func(e pkix.Extension) bool { return e.Id.Equal(oid) })
}

func openSQLite(t *testing.T) *sqlite.Store {
	t.Helper()
	return catest.SQLiteStore(t)
}

// ctCA returns a CA whose "server" profile submits to logs under cfg.
func (f *fixture) ctCA(t *testing.T, st ca.Store, cfg issuance.CTConfig) *ca.CA {
	t.Helper()
	pc := issuance.DefaultProfiles()["server"]
	pc.Names.DNS = []string{"**.test.internal"}
	pc.CT = &cfg
	p, err := issuance.NewProfile("server", pc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.New(f.issuer, [][]byte{f.inter.Raw}, map[string]*issuance.Profile{"server": p}, st)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fixture) interPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.inter.Raw})
}

func TestIssueWithCT(t *testing.T) {
	f := newFixture(t)
	st := openSQLite(t)
	a := pkitest.StartCTLog(t, f.interPEM())
	b := pkitest.StartCTLog(t, f.interPEM())
	// Proxies that look into certdb when a submission arrives: the
	// precertificate must already be recorded.
	var (
		mu       sync.Mutex
		recorded []bool
	)
	watch := func(l *pkitest.CTLog) string {
		p := pkitest.NewCTProxy(t, l.URL)
		p.OnSubmit(func(chain [][]byte) {
			c, err := x509.ParseCertificate(chain[0])
			if err != nil || !hasExt(c, oidPoison) {
				return // the final certificate (add-chain)
			}
			der, err := st.GetPrecertificate(context.Background(), c.SerialNumber)
			mu.Lock()
			recorded = append(recorded, err == nil && bytes.Equal(der, chain[0]))
			mu.Unlock()
		})
		return p.URL
	}
	c := f.ctCA(t, st, issuance.CTConfig{
		Logs: []issuance.CTLogConfig{
			{URL: watch(a), PublicKey: a.PublicKeyPEM, Operator: "Operator A"},
			{URL: watch(b), PublicKey: b.PublicKeyPEM, Operator: "Operator B"},
		},
		Require: 2, RequireDistinctOperators: true, SubmitFinal: true,
	})
	got, err := c.Issue(t.Context(), ca.Request{Profile: "server", Request: serverRequest(t, "ct.test.internal"), Requester: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(recorded, []bool{true, true}) {
		t.Fatalf("precertificate recorded in certdb when each log received it: %v, want [true true]", recorded)
	}
	if len(got.SCTs) != 2 || !hasExt(got.Certificate, oidSCTList) || hasExt(got.Certificate, oidPoison) {
		t.Fatalf("issued certificate: %d SCTs, SCT list %v, poison %v", len(got.SCTs), hasExt(got.Certificate, oidSCTList), hasExt(got.Certificate, oidPoison))
	}

	// certdb: the precertificate, the certificate and its SCTs.
	preDER, err := st.GetPrecertificate(t.Context(), got.Serial)
	if err != nil {
		t.Fatal(err)
	}
	pre, err := x509.ParseCertificate(preDER)
	if err != nil {
		t.Fatal(err)
	}
	if err := issuance.SamePrecertTBS(pre, got.Certificate); err != nil {
		t.Fatalf("final vs precertificate: %v", err)
	}
	rec, err := st.GetCertificate(t.Context(), got.Serial)
	if err != nil || rec.Status != certdb.StatusValid || !bytes.Equal(rec.DER, got.DER) {
		t.Fatalf("stored certificate = %+v, %v", rec, err)
	}
	scts, err := st.ListSCTs(t.Context(), got.Serial)
	if err != nil {
		t.Fatal(err)
	}
	var embedded, final int
	for _, s := range scts {
		if s.Embedded {
			embedded++
		} else {
			final++
		}
		if s.Operator == "" || len(s.Signature) == 0 || s.Timestamp.IsZero() {
			t.Errorf("stored SCT incomplete: %+v", s)
		}
	}
	if embedded != 2 || final != 2 {
		t.Fatalf("stored SCTs: %d embedded, %d for the final certificate; want 2 and 2 (submit_final)", embedded, final)
	}
	logs := []issuance.CTLog{{ID: a.LogID, PublicKey: a.PublicKey}, {ID: b.LogID, PublicKey: b.PublicKey}}
	vs, err := ct.VerifyEmbedded(got.DER, f.inter.Raw, logs)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.Err != nil {
			t.Errorf("embedded SCT: %v", v.Err)
		}
	}
}

func TestIssueWithCTQuorumPolicy(t *testing.T) {
	f := newFixture(t)
	good := pkitest.StartCTLog(t, f.interPEM())
	other := pkitest.StartCTLog(t, f.interPEM())
	bad := pkitest.NewCTProxy(t, other.URL)
	bad.SetCorrupt(true)
	slow := pkitest.NewCTProxy(t, other.URL)
	slow.SetDelay(5 * time.Second)

	tests := []struct {
		name      string
		second    string // URL of the second log (key: other's)
		onFailure string
	}{
		{"bad SCT, fail", bad.URL, issuance.CTOnFailureFail},
		{"slow log, fail", slow.URL, issuance.CTOnFailureFail},
		{"bad SCT, issue without SCTs", bad.URL, issuance.CTOnFailureIssueWithoutSCTs},
		{"slow log, issue without SCTs", slow.URL, issuance.CTOnFailureIssueWithoutSCTs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := openSQLite(t)
			c := f.ctCA(t, st, issuance.CTConfig{
				Logs: []issuance.CTLogConfig{
					{URL: good.URL, PublicKey: good.PublicKeyPEM, Operator: "A"},
					{URL: tt.second, PublicKey: other.PublicKeyPEM, Operator: "B"},
				},
				Require: 2, OnFailure: tt.onFailure, Timeout: issuance.Duration(time.Second),
			})
			got, err := c.Issue(t.Context(), ca.Request{Profile: "server", Request: serverRequest(t, "q.test.internal"), Requester: "bob"})
			// Whatever the outcome, exactly one serial is recorded, with its
			// precertificate.
			recs, lerr := st.ListCertificates(t.Context(), certdb.Query{Status: certdb.StatusReserved})
			issued, ierr := st.ListCertificates(t.Context(), certdb.Query{})
			if lerr != nil || ierr != nil || len(recs)+len(issued) != 1 {
				t.Fatalf("records: %d reserved, %d issued (%v, %v); want 1 in all", len(recs), len(issued), lerr, ierr)
			}
			serial := append(recs, issued...)[0].Serial
			if _, err := st.GetPrecertificate(t.Context(), serial); err != nil {
				t.Fatalf("precertificate not recorded: %v", err)
			}
			audit, aerr := st.ListAudit(t.Context(), certdb.AuditQuery{Action: ca.AuditActionCTNoSCTs})
			if aerr != nil {
				t.Fatal(aerr)
			}
			if tt.onFailure == issuance.CTOnFailureFail {
				var qe *ct.QuorumError
				if !errors.Is(err, ca.ErrCT) || !errors.As(err, &qe) || got != nil {
					t.Fatalf("Issue = %v, %v; want ErrCT with a *ct.QuorumError", got, err)
				}
				if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ca.ErrStore) {
					t.Fatalf("Issue = %v: a log's failure must not look like a timeout of the caller or the database", err)
				}
				if len(recs) != 1 || len(audit) != 0 {
					t.Fatalf("after a refused issuance: %d reserved, %d audit events; want 1, 0", len(recs), len(audit))
				}
				return
			}
			if err != nil {
				t.Fatalf("Issue = %v, want a certificate without SCTs", err)
			}
			if hasExt(got.Certificate, oidSCTList) || hasExt(got.Certificate, oidPoison) || len(got.SCTs) != 0 {
				t.Fatal("certificate issued without quorum carries an SCT list or the poison")
			}
			pre, _ := st.GetPrecertificate(t.Context(), got.Serial)
			preCert, _ := x509.ParseCertificate(pre)
			if err := issuance.SamePrecertTBS(preCert, got.Certificate); err != nil {
				t.Fatalf("final vs precertificate: %v", err)
			}
			if scts, err := st.ListSCTs(t.Context(), got.Serial); err != nil || len(scts) != 0 {
				t.Fatalf("ListSCTs = %d, %v; want none", len(scts), err)
			}
			if len(audit) != 1 || audit[0].Target != certdb.SerialHex(got.Serial) || audit[0].Actor != "bob" {
				t.Fatalf("audit events = %+v, want one ct.issued_without_scts for the serial", audit)
			}
		})
	}
}

func TestNewRefusesCTWithoutSCTStore(t *testing.T) {
	f := newFixture(t)
	pc := issuance.DefaultProfiles()["server"]
	key := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: mustSPKI(t)})
	pc.CT = &issuance.CTConfig{Logs: []issuance.CTLogConfig{{URL: "http://127.0.0.1:1/log", PublicKey: string(key), Operator: "A"}}, Require: 1}
	p, err := issuance.NewProfile("server", pc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.New(f.issuer, nil, map[string]*issuance.Profile{"server": p}, &recordingStore{}); err == nil {
		t.Fatal("ca.New with a CT profile and a store without SCTStore succeeded")
	}
}

func mustSPKI(t *testing.T) []byte {
	t.Helper()
	k, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return der
}
