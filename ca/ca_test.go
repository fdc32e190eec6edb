package ca_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/internal/catest"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
)

// recordingStore is a fake of ca.Store that records the order of calls and
// can be told to fail.
type recordingStore struct {
	mu          sync.Mutex
	calls       []string
	reserved    []*certdb.Reservation
	added       []*certdb.Certificate
	reserveErrs []error // returned by successive ReserveSerial calls, then nil
	addErr      error
	addCtxErr   error // ctx.Err() seen by AddCertificate
	onReserve   func()
}

func (s *recordingStore) ReserveSerial(ctx context.Context, r *certdb.Reservation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "reserve")
	if s.onReserve != nil {
		s.onReserve()
	}
	if len(s.reserveErrs) > 0 {
		err := s.reserveErrs[0]
		s.reserveErrs = s.reserveErrs[1:]
		if err != nil {
			return err
		}
	}
	s.reserved = append(s.reserved, r)
	return nil
}

func (s *recordingStore) AddCertificate(ctx context.Context, c *certdb.Certificate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "add")
	s.addCtxErr = ctx.Err()
	if s.addErr != nil {
		return s.addErr
	}
	s.added = append(s.added, c)
	return nil
}

type fixture struct {
	root     *x509.Certificate
	inter    *x509.Certificate
	issuer   *issuance.Issuer
	interKey crypto.Signer
	profiles map[string]*issuance.Profile
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	h := catest.NewHierarchy(t, catest.Options{Store: &recordingStore{}, Requester: "test"})
	iss := h.Issuer(t, issuance.IssuerConfig{OCSPServers: []string{"http://ocsp.test.internal"}})
	return &fixture{root: h.Root, inter: h.Intermediate, issuer: iss, interKey: h.IntermediateKey, profiles: catest.Profiles(t)}
}

func (f *fixture) newCA(t *testing.T, st ca.Store, opts ...ca.Option) *ca.CA {
	t.Helper()
	c, err := ca.New(f.issuer, [][]byte{f.inter.Raw}, f.profiles, st, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func serverRequest(t *testing.T, names ...string) *issuance.Request {
	t.Helper()
	k, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	req := &issuance.Request{PublicKey: k.Public()}
	if err := req.AddNames(names...); err != nil {
		t.Fatal(err)
	}
	if len(names) > 0 {
		req.Subject.CommonName = names[0]
	}
	return req
}

func TestIssueRecordsIntentThenCertificate(t *testing.T) {
	f := newFixture(t)
	st := &recordingStore{}
	c := f.newCA(t, st)
	got, err := c.Issue(context.Background(), ca.Request{Profile: "server", Request: serverRequest(t, "a.test.internal"), Requester: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"reserve", "add"}; !equal(st.calls, want) {
		t.Fatalf("store calls = %v, want %v", st.calls, want)
	}
	r, a := st.reserved[0], st.added[0]
	if r.Serial.Cmp(got.Serial) != 0 || a.Serial.Cmp(got.Serial) != 0 || got.Certificate.SerialNumber.Cmp(got.Serial) != 0 {
		t.Fatalf("serials differ: reserved %x, added %x, returned %x", r.Serial, a.Serial, got.Serial)
	}
	if !bytes.Equal(a.DER, got.DER) {
		t.Fatal("stored DER differs from the returned certificate")
	}
	if r.Profile != "server" || r.Requester != "alice" || a.Requester != "alice" || a.Status != certdb.StatusValid {
		t.Fatalf("reservation/record metadata wrong: %+v / %+v", r, a)
	}
	if !bytes.Equal(r.IssuerKeyID, f.inter.SubjectKeyId) || !bytes.Equal(a.IssuerKeyID, f.inter.SubjectKeyId) {
		t.Fatal("issuer key id is not the intermediate's SKI")
	}
	// The reservation carries the lint certificate, whose TBS is exactly what
	// was signed.
	lint, err := x509.ParseCertificate(r.LintDER)
	if err != nil {
		t.Fatalf("lint DER: %v", err)
	}
	if !bytes.Equal(lint.RawTBSCertificate, got.Certificate.RawTBSCertificate) {
		t.Fatal("signed TBS differs from the linted TBS")
	}
	if !r.NotAfter.Equal(got.Certificate.NotAfter) || !r.NotBefore.Equal(got.Certificate.NotBefore) {
		t.Fatal("reserved validity differs from the certificate's")
	}
	if len(got.Chain) != 2 || !bytes.Equal(got.Chain[1], f.inter.Raw) {
		t.Fatal("chain is not leaf + intermediate")
	}
	roots := x509.NewCertPool()
	roots.AddCert(f.root)
	inters := x509.NewCertPool()
	inters.AddCert(f.inter)
	if _, err := got.Certificate.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, DNSName: "a.test.internal"}); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

// TestIssueRecordsShard: the shard in the reservation, the record and the
// certificate's CDP agree, for sharded and unsharded issuers.
func TestIssueRecordsShard(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		cfg    issuance.IssuerConfig
		shards int
	}{
		{"unsharded", issuance.IssuerConfig{CRLDistributionPoints: []string{"http://127.0.0.1:8080/crl"}}, 1},
		{"eight shards", issuance.IssuerConfig{CRLShards: 8, CRLDistributionPoints: []string{"http://127.0.0.1:8080/crl/{shard}"}}, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iss, err := issuance.NewIssuer(f.inter, f.interKey, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			st := &recordingStore{}
			c, err := ca.New(iss, [][]byte{f.inter.Raw}, f.profiles, st)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[int]bool{}
			for range 24 {
				got, err := c.Issue(context.Background(), ca.Request{Profile: "server", Request: serverRequest(t, "a.test.internal")})
				if err != nil {
					t.Fatal(err)
				}
				r, a := st.reserved[len(st.reserved)-1], st.added[len(st.added)-1]
				want := issuance.ShardOf(got.Serial, tt.shards)
				if r.Shard != want || a.Shard != want {
					t.Fatalf("serial %x: reserved shard %d, recorded %d, want %d", got.Serial, r.Shard, a.Shard, want)
				}
				wantCDP := tt.cfg.CRLDistributionPoints[0]
				if tt.shards > 1 {
					wantCDP = fmt.Sprintf("http://127.0.0.1:8080/crl/%d", want)
				}
				if !slices.Equal(got.Certificate.CRLDistributionPoints, []string{wantCDP}) {
					t.Fatalf("CDP %v, want %s", got.Certificate.CRLDistributionPoints, wantCDP)
				}
				seen[want] = true
			}
			if tt.shards > 1 && len(seen) < 2 {
				t.Errorf("24 certificates all in shards %v", seen)
			}
		})
	}
}

func TestIssueFailuresHandOutNothing(t *testing.T) {
	f := newFixture(t)
	boom := errors.New("disk on fire")
	tests := []struct {
		name      string
		store     *recordingStore
		profile   string
		names     []string
		wantIs    error
		wantAs    any
		wantCalls []string
	}{
		{"reserve fails", &recordingStore{reserveErrs: []error{boom}}, "server", []string{"a.test.internal"}, ca.ErrStore, nil, []string{"reserve"}},
		{"add fails", &recordingStore{addErr: boom}, "server", []string{"a.test.internal"}, ca.ErrStore, nil, []string{"reserve", "add"}},
		{"serial always collides", &recordingStore{reserveErrs: []error{certdb.ErrDuplicate, certdb.ErrDuplicate, certdb.ErrDuplicate}}, "server", []string{"a.test.internal"}, certdb.ErrDuplicate, nil, []string{"reserve", "reserve", "reserve"}},
		{"unknown profile", &recordingStore{}, "nope", []string{"a.test.internal"}, ca.ErrUnknownProfile, nil, nil},
		{"name outside profile", &recordingStore{}, "server", []string{"www.example.com"}, nil, new(*issuance.PolicyError), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := f.newCA(t, tt.store)
			got, err := c.Issue(context.Background(), ca.Request{Profile: tt.profile, Request: serverRequest(t, tt.names...)})
			if err == nil || got != nil {
				t.Fatalf("Issue() = %v, %v; want an error and no certificate", got, err)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Fatalf("error %v is not %v", err, tt.wantIs)
			}
			if tt.wantAs != nil && !errors.As(err, tt.wantAs) {
				t.Fatalf("error %v is not a %T", err, tt.wantAs)
			}
			if !equal(tt.store.calls, tt.wantCalls) {
				t.Fatalf("store calls = %v, want %v", tt.store.calls, tt.wantCalls)
			}
			if len(tt.store.added) != 0 {
				t.Fatal("a certificate was stored")
			}
		})
	}
}

func TestIssueRetriesSerialCollision(t *testing.T) {
	f := newFixture(t)
	st := &recordingStore{reserveErrs: []error{certdb.ErrDuplicate}}
	got, err := f.newCA(t, st).Issue(context.Background(), ca.Request{Profile: "server", Request: serverRequest(t, "a.test.internal")})
	if err != nil {
		t.Fatal(err)
	}
	if !equal(st.calls, []string{"reserve", "reserve", "add"}) {
		t.Fatalf("calls %v", st.calls)
	}
	if st.added[0].Serial.Cmp(got.Serial) != 0 {
		t.Fatal("stored serial differs")
	}
}

// Approve runs once, after the policy check and before anything is recorded
// (also when a serial collision makes Issue prepare again); its error ends
// the issuance untouched; a request the policy refuses never reaches it.
func TestIssueApprove(t *testing.T) {
	f := newFixture(t)
	denied := errors.New("token already used")
	tests := []struct {
		name      string
		store     *recordingStore
		names     []string
		approve   error
		wantCalls []string // store calls, with "approve" where Approve ran
		wantErr   error
		wantOK    bool
	}{
		{"approved", &recordingStore{}, []string{"a.test.internal"}, nil, []string{"approve", "reserve", "add"}, nil, true},
		{"approved once despite a serial collision", &recordingStore{reserveErrs: []error{certdb.ErrDuplicate}}, []string{"a.test.internal"}, nil, []string{"approve", "reserve", "reserve", "add"}, nil, true},
		{"not approved", &recordingStore{}, []string{"a.test.internal"}, denied, []string{"approve"}, denied, false},
		{"refused by policy: never asked", &recordingStore{}, []string{"www.example.com"}, nil, nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			approve := func(context.Context) error {
				tt.store.calls = append(tt.store.calls, "approve")
				return tt.approve
			}
			got, err := f.newCA(t, tt.store).Issue(context.Background(), ca.Request{Profile: "server", Request: serverRequest(t, tt.names...), Approve: approve})
			if tt.wantOK != (err == nil && got != nil) {
				t.Fatalf("Issue() = %v, %v; want success %v", got, err, tt.wantOK)
			}
			if tt.wantErr != nil && err != tt.wantErr {
				t.Fatalf("Issue() error = %v, want Approve's error unchanged", err)
			}
			if !equal(tt.store.calls, tt.wantCalls) {
				t.Fatalf("calls = %v, want %v", tt.store.calls, tt.wantCalls)
			}
		})
	}
}

// Once signed, a certificate is recorded even if the caller went away.
func TestIssueStoresDespiteCancelledCaller(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	st := &recordingStore{onReserve: cancel}
	got, err := f.newCA(t, st).Issue(ctx, ca.Request{Profile: "server", Request: serverRequest(t, "a.test.internal")})
	if err != nil {
		t.Fatal(err)
	}
	if st.addCtxErr != nil {
		t.Fatalf("AddCertificate saw a cancelled context: %v", st.addCtxErr)
	}
	if len(st.added) != 1 || st.added[0].Serial.Cmp(got.Serial) != 0 {
		t.Fatal("certificate not stored")
	}
}

func TestSerialsAreRandomAndValid(t *testing.T) {
	f := newFixture(t)
	st := &recordingStore{}
	c := f.newCA(t, st)
	seen := map[string]bool{}
	for range 50 {
		got, err := c.Issue(context.Background(), ca.Request{Profile: "server", Request: serverRequest(t, "a.test.internal")})
		if err != nil {
			t.Fatal(err)
		}
		s := got.Serial
		if s.Sign() <= 0 || len(s.Bytes()) > 20 {
			t.Fatalf("serial %x not positive or longer than 20 octets", s)
		}
		if s.BitLen() < 64 {
			t.Fatalf("serial %x has fewer than 64 bits", s)
		}
		if seen[s.String()] {
			t.Fatalf("serial %x repeated", s)
		}
		seen[s.String()] = true
	}
}

// With a real store: issue, look up, revoke, and a failed issuance leaves
// only a reservation (nothing is lost, nothing is handed out).
func TestCAWithSQLite(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	st := catest.SQLiteStore(t)
	now := time.Now()
	c := f.newCA(t, st, ca.WithClock(func() time.Time { return now }))
	got, err := c.Issue(ctx, ca.Request{Profile: "server", Request: serverRequest(t, "a.test.internal"), Requester: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := st.GetCertificate(ctx, got.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != certdb.StatusValid || !bytes.Equal(rec.DER, got.DER) || rec.Requester != "bob" || rec.Profile != "server" {
		t.Fatalf("stored record wrong: %+v", rec)
	}
	if err := c.Revoke(ctx, got.Serial, certdb.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	rec, err = st.GetCertificate(ctx, got.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != certdb.StatusRevoked || rec.Reason != certdb.ReasonKeyCompromise || !rec.RevokedAt.Equal(now.UTC().Truncate(time.Microsecond)) {
		t.Fatalf("revocation not recorded: %+v", rec)
	}
	if err := c.Revoke(ctx, got.Serial, certdb.ReasonKeyCompromise); !errors.Is(err, certdb.ErrAlreadyRevoked) {
		t.Fatalf("second revoke: %v", err)
	}
	if err := c.Revoke(ctx, big.NewInt(12345), certdb.ReasonUnspecified); !errors.Is(err, certdb.ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
	if err := c.Revoke(ctx, got.Serial, certdb.Reason(7)); !errors.Is(err, certdb.ErrInvalid) {
		t.Fatalf("revoke with reason 7: %v", err)
	}

	// A store that fails after the reservation: the intent stays recorded,
	// the caller gets no certificate.
	failing := &failAdd{Store: st}
	c2 := f.newCA(t, failing)
	if got, err := c2.Issue(ctx, ca.Request{Profile: "server", Request: serverRequest(t, "b.test.internal")}); err == nil || got != nil {
		t.Fatalf("Issue with failing store = %v, %v", got, err)
	}
	res, err := st.ListCertificates(ctx, certdb.Query{Status: certdb.StatusReserved})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].DER != nil || res[0].SANs[0] != "dns:b.test.internal" {
		t.Fatalf("reserved intents = %+v, want the one failed issuance", res)
	}
}

type failAdd struct{ certdb.Store }

func (failAdd) AddCertificate(context.Context, *certdb.Certificate) error {
	return errors.New("connection reset")
}

func TestRevokeNeedsRevoker(t *testing.T) {
	f := newFixture(t)
	c := f.newCA(t, &recordingStore{})
	if err := c.Revoke(context.Background(), big.NewInt(1), certdb.ReasonUnspecified); !errors.Is(err, ca.ErrNoRevoker) {
		t.Fatalf("Revoke = %v, want ErrNoRevoker", err)
	}
}

func TestCreateRootRecordsRoot(t *testing.T) {
	key, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	st := &recordingStore{}
	root, err := ca.CreateRoot(context.Background(), st, key, issuance.RootConfig{CommonName: "R", Validity: 48 * time.Hour, MaxPathLen: 1}, "init", time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !equal(st.calls, []string{"reserve", "add"}) {
		t.Fatalf("calls %v", st.calls)
	}
	if !bytes.Equal(st.added[0].IssuerKeyID, root.SubjectKeyId) || st.added[0].Profile != ca.RootProfile {
		t.Fatalf("root record %+v", st.added[0])
	}
	st2 := &recordingStore{addErr: errors.New("nope")}
	if _, err := ca.CreateRoot(context.Background(), st2, key, issuance.RootConfig{CommonName: "R", Validity: 48 * time.Hour}, "init", time.Now(), nil); !errors.Is(err, ca.ErrStore) {
		t.Fatalf("CreateRoot with failing store = %v", err)
	}
}

func TestNewRejects(t *testing.T) {
	f := newFixture(t)
	if _, err := ca.New(nil, nil, f.profiles, &recordingStore{}); err == nil {
		t.Fatal("nil issuer accepted")
	}
	if _, err := ca.New(f.issuer, nil, nil, &recordingStore{}); err == nil {
		t.Fatal("no profiles accepted")
	}
	if _, err := ca.New(f.issuer, nil, f.profiles, nil); err == nil {
		t.Fatal("nil store accepted")
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
