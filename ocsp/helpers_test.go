package ocsp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/internal/catest"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
)

// fakeClock is a settable clock, safe for concurrent use. A clock from
// realClock follows time.Now.
type fakeClock struct {
	t    atomic.Int64
	real bool
}

func newClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.Set(t)
	return c
}

func realClock() *fakeClock { return &fakeClock{real: true} }

func (c *fakeClock) Now() time.Time {
	if c.real {
		return time.Now()
	}
	return time.Unix(0, c.t.Load())
}

func (c *fakeClock) Set(t time.Time)         { c.t.Store(t.UnixNano()) }
func (c *fakeClock) Advance(d time.Duration) { c.t.Add(int64(d)) }

// fakeStore is an in-memory certdb with the OCSP, notifier and locker
// capabilities, following the certdb contracts. fail makes every call
// return errDown (a database outage).
type fakeStore struct {
	mu    sync.Mutex
	certs map[string]*certdb.Certificate
	resp  map[string]*certdb.OCSPResponse
	subs  []chan *big.Int
	locks map[string]bool

	fail  atomic.Bool
	gets  atomic.Int64 // GetOCSPResponse calls
	lists atomic.Int64 // ListOCSPStale calls
	puts  atomic.Int64 // PutOCSPResponse calls
}

var errDown = errors.New("fake store: database unreachable")

func newFakeStore() *fakeStore {
	return &fakeStore{certs: map[string]*certdb.Certificate{}, resp: map[string]*certdb.OCSPResponse{}, locks: map[string]bool{}}
}

func key(s *big.Int) string { return string(s.Bytes()) }

func (f *fakeStore) ReserveSerial(ctx context.Context, r *certdb.Reservation) error {
	if f.fail.Load() {
		return errDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.certs[key(r.Serial)]; ok {
		return certdb.ErrDuplicate
	}
	f.certs[key(r.Serial)] = &certdb.Certificate{Serial: r.Serial, IssuerKeyID: r.IssuerKeyID, Status: certdb.StatusReserved, NotBefore: r.NotBefore, NotAfter: r.NotAfter}
	return nil
}

func (f *fakeStore) AddCertificate(ctx context.Context, c *certdb.Certificate) error {
	if f.fail.Load() {
		return errDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if old, ok := f.certs[key(c.Serial)]; ok && old.Status != certdb.StatusReserved {
		return certdb.ErrDuplicate
	}
	cc := *c
	cc.Status = certdb.StatusValid
	f.certs[key(c.Serial)] = &cc
	return nil
}

func (f *fakeStore) GetCertificate(ctx context.Context, serial *big.Int) (*certdb.Certificate, error) {
	if f.fail.Load() {
		return nil, errDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.certs[key(serial)]
	if !ok {
		return nil, certdb.ErrNotFound
	}
	cc := *c
	return &cc, nil
}

func (f *fakeStore) Revoke(ctx context.Context, serial *big.Int, reason certdb.Reason, at time.Time) error {
	if f.fail.Load() {
		return errDown
	}
	f.mu.Lock()
	c, ok := f.certs[key(serial)]
	switch {
	case !ok:
		f.mu.Unlock()
		return certdb.ErrNotFound
	case c.Status == certdb.StatusRevoked:
		f.mu.Unlock()
		return certdb.ErrAlreadyRevoked
	}
	c.Status, c.Reason, c.RevokedAt = certdb.StatusRevoked, reason, at.UTC().Truncate(time.Microsecond)
	f.mu.Unlock()
	return f.NotifyRevoked(ctx, serial)
}

func (f *fakeStore) GetOCSPResponse(ctx context.Context, serial *big.Int) (*certdb.OCSPResponse, error) {
	f.gets.Add(1)
	if f.fail.Load() {
		return nil, errDown
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.resp[key(serial)]
	if !ok {
		return nil, certdb.ErrNotFound
	}
	rr := *r
	return &rr, nil
}

func (f *fakeStore) PutOCSPResponse(ctx context.Context, r *certdb.OCSPResponse) error {
	f.puts.Add(1)
	if f.fail.Load() {
		return errDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.certs[key(r.Serial)]
	switch {
	case !ok:
		return certdb.ErrNotFound
	case c.Status == certdb.StatusReserved:
		return certdb.ErrNotIssued
	case len(r.DER) == 0 || r.ThisUpdate.IsZero() || r.NextUpdate.IsZero():
		return certdb.ErrInvalid
	}
	if old, ok := f.resp[key(r.Serial)]; ok && old.ThisUpdate.After(r.ThisUpdate) {
		return nil
	}
	rr := *r
	f.resp[key(r.Serial)] = &rr
	return nil
}

func (f *fakeStore) ListOCSPStale(ctx context.Context, issuerKeyID []byte, signedBefore, now time.Time, after *big.Int, limit int) ([]*certdb.Certificate, error) {
	f.lists.Add(1)
	if f.fail.Load() {
		return nil, errDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*certdb.Certificate
	for k, c := range f.certs {
		if c.Status == certdb.StatusReserved || !bytes.Equal(c.IssuerKeyID, issuerKeyID) || !now.Before(c.NotAfter) {
			continue
		}
		if after != nil && c.Serial.Cmp(after) <= 0 {
			continue
		}
		r, ok := f.resp[k]
		if ok && !r.ThisUpdate.Before(signedBefore) && r.Status == c.Status {
			continue
		}
		cc := *c
		out = append(out, &cc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Serial.Cmp(out[j].Serial) < 0 })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (f *fakeStore) NotifyRevoked(ctx context.Context, serial *big.Int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range f.subs {
		select {
		case ch <- serial:
		default:
		}
	}
	return nil
}

func (f *fakeStore) SubscribeRevocations(ctx context.Context) (<-chan *big.Int, error) {
	ch := make(chan *big.Int, 64)
	f.mu.Lock()
	f.subs = append(f.subs, ch)
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		defer f.mu.Unlock()
		f.subs = slices.DeleteFunc(f.subs, func(c chan *big.Int) bool { return c == ch })
		close(ch)
	}()
	return ch, nil
}

func (f *fakeStore) subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

func (f *fakeStore) TryLock(ctx context.Context, name string) (bool, func(), <-chan struct{}, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.locks[name] {
		return false, func() {}, nil, nil
	}
	f.locks[name] = true
	lost := make(chan struct{})
	var once sync.Once
	return true, func() {
		once.Do(func() {
			f.mu.Lock()
			delete(f.locks, name)
			f.mu.Unlock()
			close(lost)
		})
	}, lost, nil
}

func (f *fakeStore) response(t testing.TB, serial *big.Int) *certdb.OCSPResponse {
	t.Helper()
	r, err := f.GetOCSPResponse(context.Background(), serial)
	if err != nil {
		t.Fatalf("GetOCSPResponse(%x): %v", serial, err)
	}
	return r
}

// caStore is what the test PKI needs from a store.
type caStore interface {
	ca.Store
	PresignStore
}

// testPKI is a root, an intermediate CA issuing into a store, and the
// pieces of the OCSP service for the intermediate.
type testPKI struct {
	root, inter *x509.Certificate
	ca          *ca.CA
	clock       *fakeClock
	store       caStore
}

var keyCache sync.Map // keys.KeyType -> crypto.Signer: reuse keys across tests

func newPKI(t testing.TB, st caStore, clock *fakeClock) *testPKI {
	t.Helper()
	h := catest.NewHierarchy(t, catest.Options{Name: "OCSP Test", Now: clock.Now().Add(-time.Hour), Store: st, Requester: "test"})
	iss := h.Issuer(t, issuance.IssuerConfig{OCSPServers: []string{"http://127.0.0.1/ocsp"}})
	c, err := ca.New(iss, h.Chain(), catest.Profiles(t, "server", "ocsp"), st, ca.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{root: h.Root, inter: h.Intermediate, ca: c, clock: clock, store: st}
}

// issueFunc issues responder certificates through the CA.
func (p *testPKI) issueFunc() IssueFunc {
	return func(ctx context.Context, pub crypto.PublicKey) (*x509.Certificate, error) {
		req := &issuance.Request{PublicKey: pub}
		req.Subject.CommonName = "certctl OCSP responder"
		iss, err := p.ca.Issue(ctx, ca.Request{Profile: "ocsp", Request: req, Requester: "ocsp"})
		if err != nil {
			return nil, err
		}
		return iss.Certificate, nil
	}
}

// leaf issues a server certificate.
func (p *testPKI) leaf(t testing.TB, name string) *ca.Issued {
	t.Helper()
	k, ok := keyCache.Load("leaf")
	if !ok {
		s, err := keys.Generate(keys.ECDSAP256)
		if err != nil {
			t.Fatal(err)
		}
		k, _ = keyCache.LoadOrStore("leaf", s)
	}
	req := &issuance.Request{PublicKey: k.(crypto.Signer).Public()}
	if err := req.AddNames(name); err != nil {
		t.Fatal(err)
	}
	iss, err := p.ca.Issue(context.Background(), ca.Request{Profile: "server", Request: req, Requester: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

// leafWithSerial issues a certificate whose serial is chosen by pick: it
// draws certificates until pick accepts one.
func (p *testPKI) leafWith(t testing.TB, pick func(*x509.Certificate) bool) *ca.Issued {
	t.Helper()
	for i := range 2000 {
		l := p.leaf(t, fmt.Sprintf("pick-%d.test.internal", i))
		if pick(l.Certificate) {
			return l
		}
	}
	t.Fatal("no certificate matched")
	return nil
}

// service wires a Signer and a Presigner over the PKI's store.
func (p *testPKI) service(t testing.TB, cfg Config, opts ...PresignerOption) (*Signer, *Presigner) {
	t.Helper()
	s, err := NewSigner(context.Background(), p.inter, p.issueFunc(), WithSignerClock(p.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	pre, err := NewPresigner(p.inter, p.store, s, cfg, append([]PresignerOption{WithPresignerClock(p.clock.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s, pre
}

// request builds a DER OCSP request for cert.
func request(t testing.TB, cert, issuer *x509.Certificate, h crypto.Hash) []byte {
	t.Helper()
	der, err := xocsp.CreateRequest(cert, issuer, &xocsp.RequestOptions{Hash: h})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// parse parses an OCSP response body for cert, verifying it with issuer.
func parse(t testing.TB, body []byte, cert, issuer *x509.Certificate) *xocsp.Response {
	t.Helper()
	r, err := xocsp.ParseResponseForCert(body, cert, issuer)
	if err != nil {
		t.Fatalf("parse OCSP response: %v", err)
	}
	return r
}

func statusName(s int) string {
	return map[int]string{xocsp.Good: "good", xocsp.Revoked: "revoked", xocsp.Unknown: "unknown"}[s]
}

var _ http.Handler = (*Responder)(nil)
