package ct_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"testing"
	"time"

	ctgo "github.com/google/certificate-transparency-go"
	"github.com/google/certificate-transparency-go/ctutil"
	cttls "github.com/google/certificate-transparency-go/tls"
	ctx509 "github.com/google/certificate-transparency-go/x509"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/certctl/certctl/ct"
	"github.com/certctl/certctl/internal/catest"
	"github.com/certctl/certctl/internal/pkitest"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
)

// testCA is a root and an intermediate issuer; the logs trust the
// intermediate (the log must have the issuing CA in its roots).
type testCA struct {
	issuer   *issuance.Issuer
	interPEM []byte
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	h := catest.NewHierarchy(t, catest.Options{Name: "CT Test"})
	iss := h.Issuer(t, issuance.IssuerConfig{OCSPServers: []string{"http://ocsp.pki.internal"}})
	return &testCA{issuer: iss, interPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.Intermediate.Raw})}
}

func mustSerial(t testing.TB) *big.Int {
	t.Helper()
	s, err := issuance.NewSerial(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ctProfile is the default server profile with a ct: section.
func ctProfile(t testing.TB, c issuance.CTConfig) *issuance.Profile {
	t.Helper()
	pc := issuance.DefaultProfiles()["server"]
	pc.CT = &c
	p, err := issuance.NewProfile("server", pc)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func logConfig(url, keyPEM, operator string) issuance.CTLogConfig {
	return issuance.CTLogConfig{URL: url, PublicKey: keyPEM, Operator: operator}
}

// precert prepares a server certificate under p and signs its precertificate.
func (ca *testCA) precert(t testing.TB, p *issuance.Profile, name string) (*issuance.Token, []byte) {
	t.Helper()
	key, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	req := &issuance.Request{PublicKey: key.Public(), DNSNames: []string{name}}
	_, tok, err := ca.issuer.Prepare(p, req, mustSerial(t), time.Now())
	if err != nil {
		t.Fatalf("Prepare (lints the precertificate) = %v", err)
	}
	pre, err := ca.issuer.IssuePrecert(tok)
	if err != nil {
		t.Fatal(err)
	}
	return tok, pre
}

func TestSubmitEmbedVerifyTwoLogs(t *testing.T) {
	ca := newTestCA(t)
	a := pkitest.StartCTLog(t, ca.interPEM)
	b := pkitest.StartCTLog(t, ca.interPEM)
	p := ctProfile(t, issuance.CTConfig{
		Logs:                     []issuance.CTLogConfig{logConfig(a.URL, a.PublicKeyPEM, "Operator A"), logConfig(b.URL, b.PublicKeyPEM, "Operator B")},
		Require:                  2,
		RequireDistinctOperators: true,
		SubmitFinal:              true,
	})
	sub, err := ct.NewSubmitter(p.CT())
	if err != nil {
		t.Fatal(err)
	}
	tok, preDER := ca.precert(t, p, "svc.pki.internal")
	res, err := sub.SubmitPrecert(t.Context(), preDER, ca.issuer.Cert().Raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Quorum(); err != nil {
		t.Fatalf("Quorum() = %v", err)
	}
	if len(res.SCTs) != 2 || res.SCTs[0].Log.ID != a.LogID || res.SCTs[1].Log.ID != b.LogID {
		t.Fatalf("SCTs = %+v, want one from each log in config order", res.SCTs)
	}
	for _, s := range res.SCTs {
		// Independent check with ct-go against the precertificate.
		pre, _ := ctx509.ParseCertificate(preDER)
		iss, _ := ctx509.ParseCertificate(ca.issuer.Cert().Raw)
		if err := ctutil.VerifySCT(s.Log.PublicKey, []*ctx509.Certificate{pre, iss}, s.SCT, false); err != nil {
			t.Errorf("VerifySCT(%s, precert) = %v", s.Log.URL, err)
		}
		if len(s.SCT.Extensions) == 0 {
			t.Errorf("SCT from %s has no extensions; static-ct-api logs put the leaf index there", s.Log.URL)
		}
	}
	list, err := ct.MarshalSCTList(res.SCTs)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ct.ParseSCTList(list)
	if err != nil || len(parsed) != 2 {
		t.Fatalf("ParseSCTList(MarshalSCTList) = %d SCTs, %v", len(parsed), err)
	}
	finalDER, err := ca.issuer.IssueFinal(tok, list) // lints the final certificate
	if err != nil {
		t.Fatal(err)
	}
	pre, _ := x509.ParseCertificate(preDER)
	final, _ := x509.ParseCertificate(finalDER)
	if err := issuance.SamePrecertTBS(pre, final); err != nil {
		t.Errorf("SamePrecertTBS = %v", err)
	}
	vs, err := ct.VerifyEmbedded(finalDER, ca.issuer.Cert().Raw, p.CT().Logs)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 {
		t.Fatalf("VerifyEmbedded: %d SCTs, want 2", len(vs))
	}
	for _, v := range vs {
		if v.Err != nil || v.Log == nil {
			t.Errorf("embedded SCT of %x: %v", v.LogID[:4], v.Err)
		}
	}
	// The embedded SCTs do not verify against another issuer (the
	// issuer key hash is part of the signed entry).
	other := newTestCA(t)
	vs, err = ct.VerifyEmbedded(finalDER, other.issuer.Cert().Raw, p.CT().Logs)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if !errors.Is(v.Err, ct.ErrBadSCT) {
			t.Errorf("VerifyEmbedded with the wrong issuer: err = %v, want ErrBadSCT", v.Err)
		}
	}
	// Only one log configured: the other SCT is from an unknown log.
	vs, _ = ct.VerifyEmbedded(finalDER, ca.issuer.Cert().Raw, p.CT().Logs[:1])
	if vs[0].Err != nil || !errors.Is(vs[1].Err, ct.ErrUnknownLog) {
		t.Errorf("VerifyEmbedded with one log: errs = %v, %v; want nil, ErrUnknownLog", vs[0].Err, vs[1].Err)
	}

	// The final certificate itself (add-chain).
	fres, err := sub.SubmitFinal(t.Context(), finalDER, ca.issuer.Cert().Raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := fres.Quorum(); err != nil {
		t.Fatalf("SubmitFinal: %v", err)
	}
}

func TestQuorumFailures(t *testing.T) {
	ca := newTestCA(t)
	a := pkitest.StartCTLog(t, ca.interPEM)
	b := pkitest.StartCTLog(t, ca.interPEM)
	down := pkitest.StartCTLog(t, ca.interPEM)
	down.Stop()
	slow := pkitest.NewCTProxy(t, b.URL)
	slow.SetDelay(30 * time.Second) // far beyond the timeout; the proxy gives up when the client does
	bad := pkitest.NewCTProxy(t, b.URL)
	bad.SetCorrupt(true)

	tests := []struct {
		name      string
		logs      []issuance.CTLogConfig
		require   int
		distinct  bool
		wantSCTs  int
		wantOK    bool
		wantCause error // in the failures, when set
		timeout   time.Duration
		failed    string // the second log's outcome in certctl_ct_submissions_total
	}{
		{"both good", []issuance.CTLogConfig{logConfig(a.URL, a.PublicKeyPEM, "A"), logConfig(b.URL, b.PublicKeyPEM, "B")}, 2, true, 2, true, nil, 10 * time.Second, "ok"},
		{"one log down", []issuance.CTLogConfig{logConfig(a.URL, a.PublicKeyPEM, "A"), logConfig(down.URL, down.PublicKeyPEM, "B")}, 2, false, 1, false, context.DeadlineExceeded, time.Second, "timeout"},
		{"one log down, require 1", []issuance.CTLogConfig{logConfig(a.URL, a.PublicKeyPEM, "A"), logConfig(down.URL, down.PublicKeyPEM, "B")}, 1, false, 1, true, nil, 3 * time.Second, "timeout"},
		{"slow log beyond timeout", []issuance.CTLogConfig{logConfig(a.URL, a.PublicKeyPEM, "A"), logConfig(slow.URL, b.PublicKeyPEM, "B")}, 2, false, 1, false, context.DeadlineExceeded, time.Second, "timeout"},
		{"bad SCT signature", []issuance.CTLogConfig{logConfig(a.URL, a.PublicKeyPEM, "A"), logConfig(bad.URL, b.PublicKeyPEM, "B")}, 2, false, 1, false, ct.ErrBadSCT, 10 * time.Second, "bad_sct"},
		{"SCT from another key", []issuance.CTLogConfig{logConfig(a.URL, a.PublicKeyPEM, "A"), logConfig(b.URL, down.PublicKeyPEM, "B")}, 2, false, 1, false, ct.ErrBadSCT, 10 * time.Second, "bad_sct"},
		{"same operator twice", []issuance.CTLogConfig{logConfig(a.URL, a.PublicKeyPEM, "A"), logConfig(b.URL, b.PublicKeyPEM, "A")}, 2, false, 2, true, nil, 10 * time.Second, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := ctProfile(t, issuance.CTConfig{Logs: tt.logs, Require: tt.require, RequireDistinctOperators: tt.distinct,
				Timeout: issuance.Duration(tt.timeout)})
			reg := prometheus.NewRegistry()
			m, err := ct.NewMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			sub, err := ct.NewSubmitter(p.CT(), ct.WithMetrics(m))
			if err != nil {
				t.Fatal(err)
			}
			_, pre := ca.precert(t, p, "q.pki.internal")
			res, err := sub.SubmitPrecert(t.Context(), pre, ca.issuer.Cert().Raw)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.SCTs) != tt.wantSCTs {
				t.Errorf("%d valid SCTs, want %d (failures: %v)", len(res.SCTs), tt.wantSCTs, res.Failures)
			}
			if got := submissions(t, reg, tt.logs[0].URL, "ok"); got != 1 {
				t.Errorf("submissions{log=first, outcome=ok} = %v, want 1", got)
			}
			if got := submissions(t, reg, tt.logs[1].URL, tt.failed); got != 1 {
				t.Errorf("submissions{log=second, outcome=%s} = %v, want 1", tt.failed, got)
			}
			qerr := res.Quorum()
			if (qerr == nil) != tt.wantOK {
				t.Fatalf("Quorum() = %v, want ok=%v", qerr, tt.wantOK)
			}
			if qerr != nil {
				var qe *ct.QuorumError
				if !errors.As(qerr, &qe) || !errors.Is(qerr, ct.ErrQuorum) || qe.Need != tt.require {
					t.Errorf("Quorum() = %#v, want a *QuorumError needing %d", qerr, tt.require)
				}
				if tt.wantCause != nil && !qe.FailedWith(tt.wantCause) {
					t.Errorf("Quorum() = %v, want a log failure matching %v", qerr, tt.wantCause)
				}
				if errors.Is(qerr, context.DeadlineExceeded) {
					t.Errorf("Quorum() = %v unwraps to context.DeadlineExceeded: a log's timeout would look like the caller's", qerr)
				}
			}
		})
	}
	t.Run("distinct operators not met", func(t *testing.T) {
		// Both logs answer, but they share an operator: policy refused at
		// config time already.
		pc := issuance.DefaultProfiles()["server"]
		pc.CT = &issuance.CTConfig{Logs: []issuance.CTLogConfig{logConfig(a.URL, a.PublicKeyPEM, "A"), logConfig(b.URL, b.PublicKeyPEM, "A")},
			Require: 2, RequireDistinctOperators: true}
		var ce *issuance.ConfigError
		if _, err := issuance.NewProfile("server", pc); !errors.As(err, &ce) || ce.Field != "ct.require_distinct_operators" {
			t.Fatalf("NewProfile = %v, want ConfigError on ct.require_distinct_operators", err)
		}
	})
}

func TestResultQuorumDistinctOperators(t *testing.T) {
	// Three logs, two operators: require 2 distinct operators is met only
	// when SCTs from both operators are valid.
	ca := newTestCA(t)
	a := pkitest.StartCTLog(t, ca.interPEM)
	b := pkitest.StartCTLog(t, ca.interPEM)
	c := pkitest.StartCTLog(t, ca.interPEM)
	badC := pkitest.NewCTProxy(t, c.URL)
	badC.SetCorrupt(true)
	p := ctProfile(t, issuance.CTConfig{
		Logs: []issuance.CTLogConfig{logConfig(a.URL, a.PublicKeyPEM, "X"), logConfig(b.URL, b.PublicKeyPEM, "X"),
			logConfig(badC.URL, c.PublicKeyPEM, "Y")},
		Require: 2, RequireDistinctOperators: true, Timeout: issuance.Duration(5 * time.Second),
	})
	sub, err := ct.NewSubmitter(p.CT())
	if err != nil {
		t.Fatal(err)
	}
	_, pre := ca.precert(t, p, "ops.pki.internal")
	res, err := sub.SubmitPrecert(t.Context(), pre, ca.issuer.Cert().Raw)
	if err != nil {
		t.Fatal(err)
	}
	var qe *ct.QuorumError
	if err := res.Quorum(); len(res.SCTs) != 2 || !errors.As(err, &qe) || qe.Got != 1 || !qe.FailedWith(ct.ErrBadSCT) {
		t.Fatalf("2 SCTs from operator X, bad SCT from Y: SCTs=%d Quorum()=%v, want 1 of 2 operators", len(res.SCTs), err)
	}
}

func FuzzParseSCTList(f *testing.F) {
	f.Add([]byte{0, 0})
	f.Add([]byte{0, 2, 0, 0})
	// A real list: one SCT with an empty signature body.
	sct := ctgo.SignedCertificateTimestamp{SCTVersion: ctgo.V1, Timestamp: 1, Signature: ctgo.DigitallySigned{
		Algorithm: ctgoSigAlg(), Signature: []byte{1, 2, 3}}}
	if list, err := ct.MarshalSCTList([]*ct.SCT{{SCT: &sct}}); err == nil {
		f.Add(list)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		scts, err := ct.ParseSCTList(b)
		if err != nil {
			return
		}
		wrapped := make([]*ct.SCT, len(scts))
		for j, s := range scts {
			wrapped[j] = &ct.SCT{SCT: s}
		}
		out, err := ct.MarshalSCTList(wrapped)
		if err != nil {
			t.Fatalf("MarshalSCTList(parsed) = %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip: %x -> %x", b, out)
		}
	})
}

func ctgoSigAlg() cttls.SignatureAndHashAlgorithm {
	return cttls.SignatureAndHashAlgorithm{Hash: cttls.SHA256, Signature: cttls.ECDSA}
}

// submissions reads certctl_ct_submissions_total{log, kind="precert", outcome}.
func submissions(t *testing.T, reg *prometheus.Registry, log, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "certctl_ct_submissions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["log"] == log && labels["kind"] == "precert" && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
