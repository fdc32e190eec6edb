package ocsp

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
	xocsp "golang.org/x/crypto/ocsp"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/internal/pkitest"
	"github.com/certctl/certctl/issuance"
)

func TestConfigDefaultsAndLimits(t *testing.T) {
	c, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(c.Validity) != 24*time.Hour || time.Duration(c.Backdate) != time.Minute || time.Duration(c.Interval) != 3*time.Hour || c.Workers != 8 || c.BatchSize != 1000 {
		t.Errorf("defaults %+v", c)
	}
	h := func(d time.Duration) issuance.Duration { return issuance.Duration(d) }
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"validity too short", Config{Validity: h(30 * time.Second)}, "validity"},
		{"validity too long", Config{Validity: h(8 * 24 * time.Hour)}, "validity"},
		{"backdate too long", Config{Backdate: h(2 * time.Hour)}, "backdate"},
		{"backdate vs validity", Config{Validity: h(10 * time.Minute), Backdate: h(5 * time.Minute)}, "backdate"},
		{"interval", Config{Interval: h(7 * time.Hour)}, "interval"},
		{"workers", Config{Workers: -1}, "workers"},
		{"batch", Config{BatchSize: certdb.MaxOCSPStaleLimit + 1}, "batch_size"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.cfg.withDefaults(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}

func TestSignOne(t *testing.T) {
	ctx := context.Background()
	clock := newClock(time.Now().Truncate(time.Second))
	st := newFakeStore()
	pki := newPKI(t, st, clock)
	_, pre := pki.service(t, Config{Validity: issuance.Duration(4 * time.Hour), Backdate: issuance.Duration(2 * time.Minute)})
	good := pki.leaf(t, "one.test.internal")
	rev := pki.leaf(t, "two.test.internal")
	revokedAt := clock.Now().Add(-10 * time.Second)
	if err := st.Revoke(ctx, rev.Serial, certdb.ReasonCessationOfOperation, revokedAt); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		serial *big.Int
		status int
		reason int
	}{
		{"good", good.Serial, xocsp.Good, 0},
		{"revoked", rev.Serial, xocsp.Revoked, xocsp.CessationOfOperation},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := pre.SignOne(ctx, tt.serial); err != nil {
				t.Fatal(err)
			}
			r := st.response(t, tt.serial)
			wantThis := clock.Now().Add(-2 * time.Minute)
			if !r.ThisUpdate.Equal(wantThis) || !r.NextUpdate.Equal(wantThis.Add(4*time.Hour)) || !bytes.Equal(r.IssuerKeyID, pki.inter.SubjectKeyId) {
				t.Errorf("stored %s..%s key %x", r.ThisUpdate, r.NextUpdate, r.IssuerKeyID)
			}
			resp := parse(t, r.DER, &x509.Certificate{SerialNumber: tt.serial}, pki.inter)
			if resp.Status != tt.status || resp.RevocationReason != tt.reason || !resp.ThisUpdate.Equal(r.ThisUpdate) || !resp.NextUpdate.Equal(r.NextUpdate) {
				t.Errorf("response %s reason %d %s..%s", statusName(resp.Status), resp.RevocationReason, resp.ThisUpdate, resp.NextUpdate)
			}
			if tt.status == xocsp.Revoked && !resp.RevokedAt.Equal(revokedAt.Truncate(time.Second)) {
				t.Errorf("revoked at %s, want %s", resp.RevokedAt, revokedAt)
			}
			wantStatus := map[int]certdb.Status{xocsp.Good: certdb.StatusValid, xocsp.Revoked: certdb.StatusRevoked}[tt.status]
			if r.Status != wantStatus {
				t.Errorf("stored status %s, want %s", r.Status, wantStatus)
			}
			// The delegated responder: issued by our CA (so recorded in
			// certdb), OCSPSigning, ocsp-nocheck.
			rc := resp.Certificate
			if rc == nil || rc.CheckSignatureFrom(pki.inter) != nil || len(rc.ExtKeyUsage) != 1 || !hasNoCheck(rc) {
				t.Fatalf("responder certificate %v", rc)
			}
			if c, err := st.GetCertificate(ctx, rc.SerialNumber); err != nil || c.Profile != "ocsp" {
				t.Errorf("responder certificate not recorded in certdb: %v %v", c, err)
			}
			for name, res := range zlint.LintOcspResponse(resp).Results {
				if res.Status >= lint.Warn {
					t.Errorf("zlint %s: %s %s", name, res.Status, res.Details)
				}
			}
		})
	}
	t.Run("unknown", func(t *testing.T) {
		if err := pre.SignOne(ctx, big.NewInt(12345)); !errors.Is(err, certdb.ErrNotFound) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("other issuer", func(t *testing.T) {
		// The intermediate itself is in the store, issued by the root.
		if err := pre.SignOne(ctx, pki.inter.SerialNumber); !errors.Is(err, certdb.ErrInvalid) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("expired is skipped", func(t *testing.T) {
		later := newClock(good.Certificate.NotAfter.Add(time.Second))
		p2, err := NewPresigner(pki.inter, st, staticProvider{}, Config{}, WithPresignerClock(later.Now))
		if err != nil {
			t.Fatal(err)
		}
		if err := p2.SignOne(ctx, good.Serial); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("store down", func(t *testing.T) {
		st.fail.Store(true)
		defer st.fail.Store(false)
		if err := pre.SignOne(ctx, good.Serial); !errors.Is(err, errDown) {
			t.Fatalf("err %v", err)
		}
	})
}

func hasNoCheck(c *x509.Certificate) bool {
	for _, e := range c.Extensions {
		if e.Id.String() == "1.3.6.1.5.5.7.48.1.5" {
			return true
		}
	}
	return false
}

// staticProvider fails: for presigners that must not sign.
type staticProvider struct{}

func (staticProvider) OCSPSigner(context.Context, time.Time) (*issuance.OCSPSigner, error) {
	return nil, errors.New("static provider cannot sign")
}

// A revoked response is not rolled back by a concurrent "good" signature
// made in the same second (PutOCSPResponse lets an equal ThisUpdate
// replace): SignOne checks and signs again.
func TestSignOneRevokedWinsSameSecond(t *testing.T) {
	ctx := context.Background()
	st := &rollbackStore{fakeStore: newFakeStore()}
	clock := newClock(time.Now().Truncate(time.Second))
	pki := newPKI(t, st, clock)
	_, pre := pki.service(t, Config{}, WithPresignerClock(func() time.Time {
		return time.Now() // real time: SignOne waits for the next second
	}))
	leaf := pki.leaf(t, "race.test.internal")
	if err := st.Revoke(ctx, leaf.Serial, certdb.ReasonKeyCompromise, time.Now()); err != nil {
		t.Fatal(err)
	}
	st.rollback.Store(true) // the first revoked put is immediately overwritten by a "good" one
	if err := pre.SignOne(ctx, leaf.Serial); err != nil {
		t.Fatal(err)
	}
	if r := st.response(t, leaf.Serial); r.Status != certdb.StatusRevoked {
		t.Fatalf("stored %s, want revoked", r.Status)
	}
}

// rollbackStore simulates a concurrent pre-signer storing a "good" response
// with the same ThisUpdate right after the first revoked one.
type rollbackStore struct {
	*fakeStore
	rollback atomic.Bool
}

func (s *rollbackStore) PutOCSPResponse(ctx context.Context, r *certdb.OCSPResponse) error {
	if err := s.fakeStore.PutOCSPResponse(ctx, r); err != nil {
		return err
	}
	if r.Status == certdb.StatusRevoked && s.rollback.CompareAndSwap(true, false) {
		g := *r
		g.Status = certdb.StatusValid
		return s.fakeStore.PutOCSPResponse(ctx, &g)
	}
	return nil
}

func TestRefreshAll(t *testing.T) {
	ctx := context.Background()
	clock := newClock(time.Now().Truncate(time.Second))
	st := newFakeStore()
	pki := newPKI(t, st, clock)
	_, pre := pki.service(t, Config{Workers: 3, BatchSize: 7})
	var serials []*big.Int
	for i := range 20 {
		serials = append(serials, pki.leaf(t, fmt.Sprintf("r%d.test.internal", i)).Serial)
	}
	var progress []Progress
	// 20 leaves + the responder certificate the Signer issued.
	n, err := pre.RefreshAll(ctx, false, func(p Progress) { progress = append(progress, p) })
	if err != nil || n.Signed != 21 || n.Failed != 0 {
		t.Fatalf("RefreshAll: %+v %v", n, err)
	}
	if len(progress) != 3 || progress[0].Signed != 7 || progress[2].Signed != 21 {
		t.Errorf("progress %+v, want 3 batches of up to 7", progress)
	}
	for _, s := range serials {
		st.response(t, s)
	}
	if n, _ := pre.RefreshAll(ctx, false, nil); n.Signed != 0 {
		t.Errorf("second refresh signed %d, want 0", n.Signed)
	}
	// Revoked behind its back: the status mismatch makes it stale.
	if err := st.Revoke(ctx, serials[3], certdb.ReasonSuperseded, clock.Now()); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	if n, _ := pre.RefreshAll(ctx, false, nil); n.Signed != 1 || st.response(t, serials[3]).Status != certdb.StatusRevoked {
		t.Errorf("after revoke: signed %d", n.Signed)
	}
	// Half the validity later everything is re-signed.
	clock.Advance(12 * time.Hour)
	if n, _ := pre.RefreshAll(ctx, false, nil); n.Signed != 21 {
		t.Errorf("after 12h: signed %d, want 21", n.Signed)
	}
	if n, _ := pre.RefreshAll(ctx, true, nil); n.Signed != 21 {
		t.Errorf("force: signed %d, want 21", n.Signed)
	}
	st.fail.Store(true)
	if _, err := pre.RefreshAll(ctx, true, nil); !errors.Is(err, errDown) {
		t.Errorf("store down: %v", err)
	}
	st.fail.Store(false)
	// A failing signer: every certificate counted as failed, error returned.
	bad, err := NewPresigner(pki.inter, st, staticProvider{}, Config{}, WithPresignerClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := bad.RefreshAll(ctx, true, nil); err == nil || n.Failed != 21 {
		t.Errorf("failing signer: %+v %v", n, err)
	}
}

// Run: one leader does the bulk refresh; every process re-signs announced
// revocations.
func TestRunLeaderAndRevocations(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := newClock(time.Now().Truncate(time.Second))
	st := newFakeStore()
	pki := newPKI(t, st, clock)
	a := newCountingStore(st)
	b := newCountingStore(st)
	sa, err := NewSigner(ctx, pki.inter, pki.issueFunc(), WithSignerClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	sb, err := NewSigner(ctx, pki.inter, pki.issueFunc(), WithSignerClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	var logs pkitest.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	pa, err := NewPresigner(pki.inter, a, sa, Config{}, WithPresignerClock(clock.Now), WithLocker(st), WithNotifier(st), WithPresignerLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	pb, err := NewPresigner(pki.inter, b, sb, Config{}, WithPresignerClock(clock.Now), WithLocker(st), WithNotifier(st), WithPresignerLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	leaf := pki.leaf(t, "run.test.internal")
	var wg sync.WaitGroup
	for _, p := range []*Presigner{pa, pb} {
		wg.Go(func() {
			if err := p.Run(ctx); !errors.Is(err, context.Canceled) {
				t.Errorf("Run: %v", err)
			}
		})
	}
	waitFor(t, "the leader's first pass", func() bool {
		_, err := st.GetOCSPResponse(ctx, leaf.Serial)
		return err == nil
	})
	waitFor(t, "both subscriptions", func() bool { return st.subscribers() == 2 })
	if a.lists.Load() > 0 && b.lists.Load() > 0 {
		t.Errorf("both presigners ran bulk passes (%d, %d)", a.lists.Load(), b.lists.Load())
	}
	// Revocation through the store's announcement: the response says
	// revoked without any pass (the follower and the leader both re-sign).
	clock.Advance(time.Second)
	if err := st.Revoke(ctx, leaf.Serial, certdb.ReasonKeyCompromise, clock.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "revoked response", func() bool {
		r, err := st.GetOCSPResponse(ctx, leaf.Serial)
		return err == nil && r.Status == certdb.StatusRevoked
	})
	r := parse(t, st.response(t, leaf.Serial).DER, leaf.Certificate, pki.inter)
	if r.Status != xocsp.Revoked || r.RevocationReason != xocsp.KeyCompromise {
		t.Errorf("response %s reason %d", statusName(r.Status), r.RevocationReason)
	}
	// A nil announcement (missed some) makes a process rescan.
	listsBefore := a.lists.Load() + b.lists.Load()
	st.NotifyRevoked(ctx, nil)
	waitFor(t, "rescan", func() bool { return a.lists.Load()+b.lists.Load() > listsBefore })
	cancel()
	wg.Wait()
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", logs.String())
	}
}

// countingStore counts one presigner's stale scans over a shared store.
type countingStore struct {
	*fakeStore
	lists atomic.Int64
}

func newCountingStore(f *fakeStore) *countingStore { return &countingStore{fakeStore: f} }

func (c *countingStore) ListOCSPStale(ctx context.Context, k []byte, sb, now time.Time, after *big.Int, limit int) ([]*certdb.Certificate, error) {
	c.lists.Add(1)
	return c.fakeStore.ListOCSPStale(ctx, k, sb, now, after, limit)
}

// A store outage during Run is logged, and the pass is retried.
func TestRunRetriesAfterStoreErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := newClock(time.Now().Truncate(time.Second))
	st := newFakeStore()
	pki := newPKI(t, st, clock)
	var logs pkitest.SyncBuffer
	_, pre := pki.service(t, Config{}, WithPresignerLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	leaf := pki.leaf(t, "retry.test.internal")
	st.fail.Store(true)
	done := make(chan error)
	go func() { done <- pre.Run(ctx) }()
	waitFor(t, "a failed pass logged", func() bool { return strings.Contains(logs.String(), "OCSP refresh pass failed") })
	st.fail.Store(false)
	pre.requestRescan() // stands in for the next tick
	waitFor(t, "the retried pass", func() bool {
		_, err := st.GetOCSPResponse(ctx, leaf.Serial)
		return err == nil
	})
	cancel()
	<-done
}
