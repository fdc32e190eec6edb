package certdbtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/certdb"
)

// NotifyTimeout is how long the suite waits for an announced revocation or a
// closed channel. It is generous on purpose: the suite checks that things
// arrive, not how fast.
const NotifyTimeout = 10 * time.Second

// with adapts a subtest that needs the optional interface T; it fails when
// the store does not implement T.
func with[T any](fn func(*testing.T, certdb.Store, T)) func(*testing.T, certdb.Store) {
	return func(t *testing.T, s certdb.Store) {
		x, ok := s.(T)
		if !ok {
			t.Fatalf("certdbtest: %T does not implement %v", s, reflect.TypeFor[T]())
		}
		fn(t, s, x)
	}
}

// issue stores an issued certificate of issuer in shard, expiring expires
// after refNow, through a reservation.
func issue(t *testing.T, s certdb.Store, issuer []byte, shard int, expires time.Duration) *certdb.Certificate {
	t.Helper()
	now := refNow()
	c := NewCertificate(t, RandomSerial(), now.Add(-400*24*time.Hour), now.Add(expires))
	c.IssuerKeyID = issuer
	c.Shard = shard
	mustReserve(t, s, ReservationOf(c))
	mustAdd(t, s, c)
	return c
}

// revoke revokes c and updates the record the way the store must.
func revoke(t *testing.T, s certdb.Store, c *certdb.Certificate, reason certdb.Reason, at time.Time) {
	t.Helper()
	mustRevoke(t, s, c.Serial, reason, at)
	c.Status, c.Reason, c.RevokedAt = certdb.StatusRevoked, reason, at
}

func testShardRoundTrip(t *testing.T, s certdb.Store) {
	ctx := t.Context()
	now := refNow()
	tests := []struct {
		name              string
		reserved          bool
		reserveShard, add int
		want              int
	}{
		{"reservation shard kept", true, 3, 0, 3},
		{"certificate shard overrides", true, 2, 4, 4},
		{"zero both", true, 0, 0, 0},
		{"without reservation", false, 0, 5, 5},
		{"large shard", true, 1<<31 - 1, 0, 1<<31 - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCertificate(t, RandomSerial(), now, now.Add(time.Hour))
			if tt.reserved {
				r := ReservationOf(c)
				r.Shard = tt.reserveShard
				mustReserve(t, s, r)
				checkCert(t, "after ReserveSerial", mustGet(t, s, c.Serial), expectedReserved(r))
			}
			c.Shard = tt.add
			mustAdd(t, s, c)
			want := *c
			want.Shard = tt.want
			checkCert(t, "GetCertificate", mustGet(t, s, c.Serial), &want)

			list, err := s.ListCertificates(ctx, certdb.Query{Limit: certdb.MaxLimit})
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(list, func(g *certdb.Certificate) bool { return g.Serial.Cmp(c.Serial) == 0 })
			if i < 0 {
				t.Fatalf("ListCertificates() does not list %s", certdb.SerialHex(c.Serial))
			}
			checkCert(t, "ListCertificates", list[i], &want)

			mustRevoke(t, s, c.Serial, certdb.ReasonSuperseded, now)
			revoked, err := s.ListRevoked(ctx, c.IssuerKeyID, now)
			if err != nil {
				t.Fatal(err)
			}
			i = slices.IndexFunc(revoked, func(g *certdb.Certificate) bool { return g.Serial.Cmp(c.Serial) == 0 })
			if i < 0 || revoked[i].Shard != tt.want {
				t.Fatalf("ListRevoked() does not list %s with shard %d", certdb.SerialHex(c.Serial), tt.want)
			}
		})
	}
}

func testShardInvalid(t *testing.T, s certdb.Store) {
	now := refNow()
	c := NewCertificate(t, RandomSerial(), now, now.Add(time.Hour))
	r := ReservationOf(c)
	r.Shard = -1
	if err := s.ReserveSerial(t.Context(), r); !errors.Is(err, certdb.ErrInvalid) {
		t.Errorf("ReserveSerial(shard -1) error = %v, want ErrInvalid", err)
	}
	c.Shard = -1
	if err := s.AddCertificate(t.Context(), c); !errors.Is(err, certdb.ErrInvalid) {
		t.Errorf("AddCertificate(shard -1) error = %v, want ErrInvalid", err)
	}
	if _, err := s.GetCertificate(t.Context(), c.Serial); !errors.Is(err, certdb.ErrNotFound) {
		t.Errorf("after invalid calls: GetCertificate() error = %v, want ErrNotFound", err)
	}
}

// newResponse returns an OCSP response record for c. The DER is opaque to
// the store; it names the status and time so that tests can tell responses
// apart.
func newResponse(c *certdb.Certificate, status certdb.Status, thisUpdate time.Time) *certdb.OCSPResponse {
	return &certdb.OCSPResponse{
		Serial:      cloneInt(c.Serial),
		IssuerKeyID: slices.Clone(c.IssuerKeyID),
		DER:         fmt.Appendf(nil, "ocsp %s %v %d", certdb.SerialHex(c.Serial), status, thisUpdate.UnixMicro()),
		Status:      status,
		ThisUpdate:  thisUpdate,
		NextUpdate:  thisUpdate.Add(4 * 24 * time.Hour),
	}
}

func diffResponse(got, want *certdb.OCSPResponse) []string {
	var d []string
	add := func(field string, g, w any) { d = append(d, fmt.Sprintf("%s = %v, want %v", field, g, w)) }
	if got.Serial == nil || got.Serial.Cmp(want.Serial) != 0 {
		add("Serial", certdb.SerialHex(got.Serial), certdb.SerialHex(want.Serial))
	}
	if !bytes.Equal(got.IssuerKeyID, want.IssuerKeyID) {
		add("IssuerKeyID", fmt.Sprintf("%x", got.IssuerKeyID), fmt.Sprintf("%x", want.IssuerKeyID))
	}
	if !bytes.Equal(got.DER, want.DER) {
		add("DER", fmt.Sprintf("%q", got.DER), fmt.Sprintf("%q", want.DER))
	}
	if got.Status != want.Status {
		add("Status", got.Status, want.Status)
	}
	d = append(d, diffTime("ThisUpdate", got.ThisUpdate, want.ThisUpdate)...)
	d = append(d, diffTime("NextUpdate", got.NextUpdate, want.NextUpdate)...)
	return d
}

func checkResponse(t *testing.T, s certdb.OCSPStore, what string, want *certdb.OCSPResponse) {
	t.Helper()
	got, err := s.GetOCSPResponse(t.Context(), want.Serial)
	if err != nil {
		t.Fatalf("%s: GetOCSPResponse() error = %v", what, err)
	}
	for _, d := range diffResponse(got, want) {
		t.Errorf("%s: %s", what, d)
	}
}

func mustPut(t *testing.T, s certdb.OCSPStore, r *certdb.OCSPResponse) {
	t.Helper()
	if err := s.PutOCSPResponse(t.Context(), r); err != nil {
		t.Fatalf("PutOCSPResponse(%s) error = %v", certdb.SerialHex(r.Serial), err)
	}
}

func testOCSPRoundTrip(t *testing.T, st certdb.Store, s certdb.OCSPStore) {
	now := refNow() // not in UTC, with nanoseconds: must come back UTC, in µs
	c := issue(t, st, DefaultIssuerKeyID(), 0, 24*time.Hour)

	if _, err := s.GetOCSPResponse(t.Context(), c.Serial); !errors.Is(err, certdb.ErrNotFound) {
		t.Fatalf("GetOCSPResponse() before any put: error = %v, want ErrNotFound", err)
	}
	first := newResponse(c, certdb.StatusValid, now.Add(-time.Hour))
	mustPut(t, s, first)
	checkResponse(t, s, "first put", first)

	steps := []struct {
		name   string
		status certdb.Status
		at     time.Time
		stored bool // whether the put replaces the stored response
	}{
		{"later", certdb.StatusValid, now, true},
		{"earlier is a no-op", certdb.StatusValid, now.Add(-time.Minute), false},
		{"earlier revoked is a no-op", certdb.StatusRevoked, now.Add(-time.Microsecond), false},
		{"same time replaces", certdb.StatusRevoked, now, true},
		{"later revoked", certdb.StatusRevoked, now.Add(time.Hour), true},
		{"good cannot roll back", certdb.StatusValid, now.Add(30 * time.Minute), false},
	}
	want := newResponse(c, certdb.StatusValid, now)
	for _, step := range steps {
		r := newResponse(c, step.status, step.at)
		if err := s.PutOCSPResponse(t.Context(), r); err != nil {
			t.Fatalf("%s: PutOCSPResponse() error = %v, want nil", step.name, err)
		}
		if step.stored {
			want = r
		}
		checkResponse(t, s, step.name, want)
	}

	t.Run("issuer taken from the certificate", func(t *testing.T) {
		c := issue(t, st, []byte("issuer X"), 0, time.Hour)
		r := newResponse(c, certdb.StatusValid, now)
		r.IssuerKeyID = nil
		mustPut(t, s, r)
		r.IssuerKeyID = []byte("issuer X")
		checkResponse(t, s, "nil IssuerKeyID", r)
	})

	t.Run("revoked certificate", func(t *testing.T) {
		c := issue(t, st, DefaultIssuerKeyID(), 0, time.Hour)
		revoke(t, st, c, certdb.ReasonKeyCompromise, now)
		r := newResponse(c, certdb.StatusRevoked, now)
		mustPut(t, s, r)
		checkResponse(t, s, "revoked", r)
	})
}

func testOCSPPutErrors(t *testing.T, st certdb.Store, s certdb.OCSPStore) {
	now := refNow()
	issued := issue(t, st, DefaultIssuerKeyID(), 0, time.Hour)
	reserved := NewCertificate(t, RandomSerial(), now, now.Add(time.Hour))
	mustReserve(t, st, ReservationOf(reserved))
	unknown := NewCertificate(t, RandomSerial(), now, now.Add(time.Hour))

	modified := func(f func(r *certdb.OCSPResponse)) *certdb.OCSPResponse {
		r := newResponse(issued, certdb.StatusValid, now)
		f(r)
		return r
	}
	tests := []struct {
		name string
		r    *certdb.OCSPResponse
		want error
	}{
		{"unknown serial", newResponse(unknown, certdb.StatusValid, now), certdb.ErrNotFound},
		{"reserved serial", newResponse(reserved, certdb.StatusValid, now), certdb.ErrNotIssued},
		{"nil", nil, certdb.ErrInvalid},
		{"nil serial", modified(func(r *certdb.OCSPResponse) { r.Serial = nil }), certdb.ErrInvalid},
		{"zero serial", modified(func(r *certdb.OCSPResponse) { r.Serial = big.NewInt(0) }), certdb.ErrInvalid},
		{"21 octet serial", modified(func(r *certdb.OCSPResponse) { r.Serial = new(big.Int).Lsh(big.NewInt(1), 160) }), certdb.ErrInvalid},
		{"no DER", modified(func(r *certdb.OCSPResponse) { r.DER = nil }), certdb.ErrInvalid},
		{"status reserved", modified(func(r *certdb.OCSPResponse) { r.Status = certdb.StatusReserved }), certdb.ErrInvalid},
		{"status any", modified(func(r *certdb.OCSPResponse) { r.Status = certdb.StatusAny }), certdb.ErrInvalid},
		{"status unknown", modified(func(r *certdb.OCSPResponse) { r.Status = 7 }), certdb.ErrInvalid},
		{"zero ThisUpdate", modified(func(r *certdb.OCSPResponse) { r.ThisUpdate = time.Time{} }), certdb.ErrInvalid},
		{"zero NextUpdate", modified(func(r *certdb.OCSPResponse) { r.NextUpdate = time.Time{} }), certdb.ErrInvalid},
		{"other issuer", modified(func(r *certdb.OCSPResponse) { r.IssuerKeyID = []byte("someone else") }), certdb.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.PutOCSPResponse(t.Context(), tt.r); !errors.Is(err, tt.want) {
				t.Fatalf("PutOCSPResponse() error = %v, want %v", err, tt.want)
			}
		})
	}
	for _, c := range []*certdb.Certificate{issued, reserved, unknown} {
		if _, err := s.GetOCSPResponse(t.Context(), c.Serial); !errors.Is(err, certdb.ErrNotFound) {
			t.Errorf("after failed puts: GetOCSPResponse(%s) error = %v, want ErrNotFound", certdb.SerialHex(c.Serial), err)
		}
	}
	for _, sn := range []*big.Int{nil, big.NewInt(0), big.NewInt(-1)} {
		if _, err := s.GetOCSPResponse(t.Context(), sn); !errors.Is(err, certdb.ErrInvalid) {
			t.Errorf("GetOCSPResponse(%v) error = %v, want ErrInvalid", sn, err)
		}
	}
}

// Concurrent signers (pre-signer, revocation path) race: whatever the
// interleaving, the response with the latest ThisUpdate is the one kept.
func testOCSPConcurrentPuts(t *testing.T, st certdb.Store, s certdb.OCSPStore) {
	now := refNow()
	c := issue(t, st, DefaultIssuerKeyID(), 0, time.Hour)
	const n = 16
	resps := make([]*certdb.OCSPResponse, n)
	for i := range resps {
		status := certdb.StatusValid
		if i%2 == 1 {
			status = certdb.StatusRevoked
		}
		resps[i] = newResponse(c, status, now.Add(time.Duration(i)*time.Second))
	}
	errs := Race(n, func(i int) error { return s.PutOCSPResponse(t.Context(), resps[n-1-i]) })
	for i, err := range errs {
		if err != nil {
			t.Errorf("put %d: %v", i, err)
		}
	}
	checkResponse(t, s, "after concurrent puts", resps[n-1])
}

func listStale(t *testing.T, s certdb.OCSPStore, issuer []byte, signedBefore, now time.Time, after *big.Int, limit int) []*certdb.Certificate {
	t.Helper()
	got, err := s.ListOCSPStale(t.Context(), issuer, signedBefore, now, after, limit)
	if err != nil {
		t.Fatalf("ListOCSPStale() error = %v", err)
	}
	return got
}

func testOCSPStale(t *testing.T, st certdb.Store, s certdb.OCSPStore) {
	now := refNow()
	day := 24 * time.Hour
	signedBefore := now.Add(-time.Hour)
	issuerA, issuerB := DefaultIssuerKeyID(), []byte{0xb0, 0x0b, 0x00, 0x01}
	fx := loadFixtures(t, st, []fixture{
		{"missing", issuerA, "server", certdb.StatusValid, 0, 30 * day},
		{"fresh", issuerA, "server", certdb.StatusValid, 0, 30 * day},
		{"old", issuerA, "server", certdb.StatusValid, 0, 30 * day},
		{"signed at the bound", issuerA, "server", certdb.StatusValid, 0, 30 * day},
		{"revoked, good response", issuerA, "server", certdb.StatusValid, 0, 30 * day}, // revoked below
		{"revoked, revoked response", issuerA, "server", certdb.StatusRevoked, certdb.ReasonKeyCompromise, 30 * day},
		{"revoked, missing", issuerA, "client", certdb.StatusRevoked, certdb.ReasonSuperseded, day},
		{"valid, revoked response", issuerA, "server", certdb.StatusValid, 0, 30 * day},
		{"expires now, missing", issuerA, "server", certdb.StatusValid, 0, 0},
		{"expired, old", issuerA, "server", certdb.StatusValid, 0, -day},
		{"reserved", issuerA, "server", certdb.StatusReserved, 0, 30 * day},
		{"issuer B, missing", issuerB, "server", certdb.StatusValid, 0, 30 * day},
	})
	put := func(name string, status certdb.Status, at time.Time) {
		mustPut(t, s, newResponse(fx[name], status, at))
	}
	put("fresh", certdb.StatusValid, now.Add(-10*time.Minute))
	put("old", certdb.StatusValid, now.Add(-2*time.Hour))
	put("signed at the bound", certdb.StatusValid, signedBefore)
	put("revoked, good response", certdb.StatusValid, now.Add(-time.Minute))
	revoke(t, st, fx["revoked, good response"], certdb.ReasonCessationOfOperation, now.Add(-time.Second))
	put("revoked, revoked response", certdb.StatusRevoked, now.Add(-time.Minute))
	put("valid, revoked response", certdb.StatusRevoked, now.Add(-time.Minute))
	put("expired, old", certdb.StatusValid, now.Add(-2*time.Hour))

	stale := []string{"missing", "old", "revoked, good response", "revoked, missing", "valid, revoked response"}
	tests := []struct {
		name         string
		issuer       []byte
		signedBefore time.Time
		now          time.Time
		want         []string
	}{
		{"issuer A", issuerA, signedBefore, now, stale},
		{"issuer B", issuerB, signedBefore, now, []string{"issuer B, missing"}},
		{"unknown issuer", []byte{0x01}, signedBefore, now, nil},
		{"everything signed before now is stale", issuerA, now, now, []string{
			"missing", "fresh", "old", "signed at the bound", "revoked, good response",
			"revoked, revoked response", "revoked, missing", "valid, revoked response"}},
		{"two days later", issuerA, signedBefore, now.Add(2 * day), []string{"missing", "old", "revoked, good response", "valid, revoked response"}},
		{"earlier now", issuerA, signedBefore, now.Add(-2 * day), append(slices.Clone(stale), "expires now, missing", "expired, old")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkNames(t, listStale(t, s, tt.issuer, tt.signedBefore, tt.now, nil, certdb.MaxOCSPStaleLimit), fx, tt.want)
		})
	}

	t.Run("pagination", func(t *testing.T) {
		for _, limit := range []int{1, 2, 3, len(stale), len(stale) + 1} {
			t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
				var all []*certdb.Certificate
				var after *big.Int
				for page := 0; ; page++ {
					if page > len(stale) {
						t.Fatalf("pagination does not end")
					}
					got := listStale(t, s, issuerA, signedBefore, now, after, limit)
					if len(got) > limit {
						t.Fatalf("page %d has %d records, limit %d", page, len(got), limit)
					}
					all = append(all, got...)
					if len(got) < limit {
						break
					}
					after = got[len(got)-1].Serial
				}
				checkNames(t, all, fx, stale)
			})
		}
	})

	t.Run("re-signing empties the list", func(t *testing.T) {
		for _, c := range listStale(t, s, issuerA, signedBefore, now, nil, 0) {
			mustPut(t, s, newResponse(c, c.Status, now))
		}
		if got := listStale(t, s, issuerA, signedBefore, now, nil, 0); len(got) != 0 {
			t.Fatalf("after re-signing: %d stale records, want 0", len(got))
		}
	})

	t.Run("negative cursor", func(t *testing.T) {
		_, err := s.ListOCSPStale(t.Context(), issuerA, signedBefore, now, big.NewInt(-1), 10)
		if !errors.Is(err, certdb.ErrInvalid) {
			t.Fatalf("ListOCSPStale(after -1) error = %v, want ErrInvalid", err)
		}
	})
}

func testOCSPStaleLimit(t *testing.T, st certdb.Store, s certdb.OCSPStore) {
	now := refNow()
	issuer := []byte("limit issuer")
	const n = certdb.DefaultLimit + 5
	for range n {
		c := NewCertificate(t, RandomSerial(), now, now.Add(time.Hour))
		c.IssuerKeyID = issuer
		mustAdd(t, st, c)
	}
	for _, tt := range []struct{ limit, want int }{
		{0, certdb.DefaultLimit},
		{-1, certdb.DefaultLimit},
		{certdb.DefaultLimit + 1, certdb.DefaultLimit + 1},
		{certdb.MaxOCSPStaleLimit, n},
		{certdb.MaxOCSPStaleLimit + 1, n},
	} {
		if got := listStale(t, s, issuer, now, now, nil, tt.limit); len(got) != tt.want {
			t.Errorf("ListOCSPStale(limit %d) returned %d records, want %d", tt.limit, len(got), tt.want)
		}
	}
}

func nextNumber(t *testing.T, s certdb.CRLStore, issuer []byte, shard int) *big.Int {
	t.Helper()
	n, err := s.NextCRLNumber(t.Context(), issuer, shard)
	if err != nil {
		t.Fatalf("NextCRLNumber(%x, %d) error = %v", issuer, shard, err)
	}
	return n
}

func testCRLNumbers(t *testing.T, _ certdb.Store, s certdb.CRLStore) {
	a, b := DefaultIssuerKeyID(), []byte("issuer B")
	steps := []struct {
		issuer []byte
		shard  int
		want   int64
	}{
		{a, 0, 1}, {a, 0, 2}, {a, 1, 1}, {a, 0, 3}, {b, 0, 1}, {a, 1, 2}, {b, 7, 1}, {a, 0, 4},
	}
	for i, st := range steps {
		if got := nextNumber(t, s, st.issuer, st.shard); got.Cmp(big.NewInt(st.want)) != 0 {
			t.Errorf("step %d: NextCRLNumber(%q, %d) = %v, want %d", i, st.issuer, st.shard, got, st.want)
		}
	}
	if _, err := s.NextCRLNumber(t.Context(), a, -1); !errors.Is(err, certdb.ErrInvalid) {
		t.Errorf("NextCRLNumber(shard -1) error = %v, want ErrInvalid", err)
	}
}

func testCRLNumbersConcurrent(t *testing.T, _ certdb.Store, s certdb.CRLStore) {
	const goroutines, each = 16, 4
	issuer := DefaultIssuerKeyID()
	got := make([][]*big.Int, goroutines)
	errs := Race(goroutines, func(i int) error {
		for range each {
			n, err := s.NextCRLNumber(t.Context(), issuer, 3)
			if err != nil {
				return err
			}
			got[i] = append(got[i], n)
		}
		return nil
	})
	seen := map[string]int{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("goroutine %d: %v", i, err)
		}
		for j, n := range got[i] {
			if j > 0 && n.Cmp(got[i][j-1]) <= 0 {
				t.Errorf("goroutine %d got %v after %v: not increasing", i, n, got[i][j-1])
			}
			if prev, dup := seen[n.String()]; dup {
				t.Errorf("number %v handed to goroutines %d and %d", n, prev, i)
			}
			seen[n.String()] = i
		}
	}
	// Nothing was skipped or handed out twice: 1..total, then the next.
	const total = goroutines * each
	for k := 1; k <= total; k++ {
		if _, ok := seen[fmt.Sprint(k)]; !ok {
			t.Errorf("number %d was never handed out", k)
		}
	}
	if n := nextNumber(t, s, issuer, 3); n.Cmp(big.NewInt(total+1)) != 0 {
		t.Errorf("NextCRLNumber after the race = %v, want %d", n, total+1)
	}
}

func newCRL(issuer []byte, shard int, number int64, thisUpdate time.Time) *certdb.CRL {
	return &certdb.CRL{
		IssuerKeyID: slices.Clone(issuer),
		Shard:       shard,
		Number:      big.NewInt(number),
		ThisUpdate:  thisUpdate,
		NextUpdate:  thisUpdate.Add(7 * 24 * time.Hour),
		DER:         fmt.Appendf(nil, "crl %x/%d #%d", issuer, shard, number),
	}
}

func diffCRL(got, want *certdb.CRL) []string {
	var d []string
	add := func(field string, g, w any) { d = append(d, fmt.Sprintf("%s = %v, want %v", field, g, w)) }
	if !bytes.Equal(got.IssuerKeyID, want.IssuerKeyID) {
		add("IssuerKeyID", fmt.Sprintf("%x", got.IssuerKeyID), fmt.Sprintf("%x", want.IssuerKeyID))
	}
	if got.Shard != want.Shard {
		add("Shard", got.Shard, want.Shard)
	}
	if got.Number == nil || got.Number.Cmp(want.Number) != 0 {
		add("Number", got.Number, want.Number)
	}
	if !bytes.Equal(got.DER, want.DER) {
		add("DER", fmt.Sprintf("%q", got.DER), fmt.Sprintf("%q", want.DER))
	}
	d = append(d, diffTime("ThisUpdate", got.ThisUpdate, want.ThisUpdate)...)
	d = append(d, diffTime("NextUpdate", got.NextUpdate, want.NextUpdate)...)
	return d
}

func checkCRL(t *testing.T, s certdb.CRLStore, what string, want *certdb.CRL) {
	t.Helper()
	got, err := s.GetCRL(t.Context(), want.IssuerKeyID, want.Shard)
	if err != nil {
		t.Fatalf("%s: GetCRL() error = %v", what, err)
	}
	for _, d := range diffCRL(got, want) {
		t.Errorf("%s: %s", what, d)
	}
}

func testCRLPutGet(t *testing.T, _ certdb.Store, s certdb.CRLStore) {
	ctx := t.Context()
	now := refNow()
	issuer := DefaultIssuerKeyID()
	if _, err := s.GetCRL(ctx, issuer, 0); !errors.Is(err, certdb.ErrNotFound) {
		t.Fatalf("GetCRL() before any put: error = %v, want ErrNotFound", err)
	}
	steps := []struct {
		name   string
		number int64
		stored bool
	}{
		{"first", 5, true},
		{"lower is a no-op", 3, false},
		{"equal replaces", 5, true},
		{"higher", 6, true},
		{"much lower is a no-op", 1, false},
		{"zero is a no-op", 0, false},
	}
	var want *certdb.CRL
	for i, st := range steps {
		c := newCRL(issuer, 2, st.number, now.Add(time.Duration(i)*time.Minute))
		if err := s.PutCRL(ctx, c); err != nil {
			t.Fatalf("%s: PutCRL() error = %v", st.name, err)
		}
		if st.stored {
			want = c
		}
		checkCRL(t, s, st.name, want)
	}
	// Shards and issuers are independent.
	if _, err := s.GetCRL(ctx, issuer, 0); !errors.Is(err, certdb.ErrNotFound) {
		t.Errorf("GetCRL(shard 0) error = %v, want ErrNotFound", err)
	}
	if _, err := s.GetCRL(ctx, []byte("other"), 2); !errors.Is(err, certdb.ErrNotFound) {
		t.Errorf("GetCRL(other issuer) error = %v, want ErrNotFound", err)
	}
	other := newCRL([]byte("other"), 2, 1, now)
	if err := s.PutCRL(ctx, other); err != nil {
		t.Fatal(err)
	}
	checkCRL(t, s, "other issuer", other)
	checkCRL(t, s, "first issuer after other", want)

	modified := func(f func(c *certdb.CRL)) *certdb.CRL {
		c := newCRL(issuer, 2, 100, now)
		f(c)
		return c
	}
	for _, tt := range []struct {
		name string
		c    *certdb.CRL
	}{
		{"nil", nil},
		{"nil number", modified(func(c *certdb.CRL) { c.Number = nil })},
		{"negative number", modified(func(c *certdb.CRL) { c.Number = big.NewInt(-1) })},
		{"negative shard", modified(func(c *certdb.CRL) { c.Shard = -1 })},
		{"no DER", modified(func(c *certdb.CRL) { c.DER = nil })},
		{"zero ThisUpdate", modified(func(c *certdb.CRL) { c.ThisUpdate = time.Time{} })},
		{"zero NextUpdate", modified(func(c *certdb.CRL) { c.NextUpdate = time.Time{} })},
		{"longer than 20 octets", modified(func(c *certdb.CRL) { c.Number = new(big.Int).Lsh(big.NewInt(1), 160) })},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.PutCRL(ctx, tt.c); !errors.Is(err, certdb.ErrInvalid) {
				t.Fatalf("PutCRL() error = %v, want ErrInvalid", err)
			}
		})
	}
	checkCRL(t, s, "after invalid puts", want)
	if _, err := s.GetCRL(ctx, issuer, -1); !errors.Is(err, certdb.ErrInvalid) {
		t.Errorf("GetCRL(shard -1) error = %v, want ErrInvalid", err)
	}
}

// collectShard lists a shard through ListRevokedShard.
func collectShard(t *testing.T, s certdb.CRLStore, issuer []byte, shard int, now time.Time) []*certdb.Certificate {
	t.Helper()
	var out []*certdb.Certificate
	err := s.ListRevokedShard(t.Context(), issuer, shard, now, func(c *certdb.Certificate) error {
		out = append(out, c)
		return nil
	})
	if err != nil {
		t.Fatalf("ListRevokedShard() error = %v", err)
	}
	return out
}

// checkEntries checks CRL entries against the full records they come from:
// the CRL fields must match, and there must be no DER.
func checkEntries(t *testing.T, got, want []*certdb.Certificate) {
	t.Helper()
	want = slices.Clone(want)
	slices.SortFunc(want, func(a, b *certdb.Certificate) int { return bytes.Compare(a.Serial.Bytes(), b.Serial.Bytes()) })
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	for i, g := range got {
		w := *want[i]
		w.Subject, w.SANs, w.NotBefore, w.DER, w.Profile, w.Requester, w.CreatedAt = "", nil, time.Time{}, nil, "", "", time.Time{}
		for _, d := range diffCert(g, &w) {
			t.Errorf("entry #%d (%s): %s", i, certdb.SerialHex(w.Serial), d)
		}
	}
}

func testListRevokedShard(t *testing.T, st certdb.Store, s certdb.CRLStore) {
	now := refNow()
	day := 24 * time.Hour
	a, b := DefaultIssuerKeyID(), []byte("issuer B")
	type entry struct {
		issuer  []byte
		shard   int
		expires time.Duration
		revoked bool
	}
	entries := map[string]entry{
		"a0 1":       {a, 0, 30 * day, true},
		"a0 2":       {a, 0, time.Microsecond, true},
		"a0 expired": {a, 0, 0, true},
		"a0 valid":   {a, 0, 30 * day, false},
		"a1 1":       {a, 1, 30 * day, true},
		"a1 2":       {a, 1, 400 * day, true},
		"a1 3":       {a, 1, 2 * day, true},
		"a1 expired": {a, 1, -day, true},
		"b1 1":       {b, 1, 30 * day, true},
		"a5 valid":   {a, 5, 30 * day, false},
		"a2 valid":   {a, 2, 30 * day, false},
	}
	certs := map[string]*certdb.Certificate{}
	reasons := certdb.ReasonNames()
	i := 0
	for name, e := range entries {
		c := issue(t, st, e.issuer, e.shard, e.expires)
		if e.revoked {
			reason, err := certdb.ParseReason(reasons[i%len(reasons)])
			if err != nil {
				t.Fatal(err)
			}
			revoke(t, st, c, reason, now.Add(-time.Duration(i)*time.Hour))
		}
		certs[name] = c
		i++
	}
	r := ReservationOf(NewCertificate(t, RandomSerial(), now, now.Add(day)))
	r.Shard = 2
	mustReserve(t, st, r)
	pick := func(names ...string) []*certdb.Certificate {
		var out []*certdb.Certificate
		for _, n := range names {
			out = append(out, certs[n])
		}
		return out
	}
	tests := []struct {
		name   string
		issuer []byte
		shard  int
		now    time.Time
		want   []*certdb.Certificate
	}{
		{"a shard 0", a, 0, now, pick("a0 1", "a0 2")},
		{"a shard 1", a, 1, now, pick("a1 1", "a1 2", "a1 3")},
		{"b shard 1", b, 1, now, pick("b1 1")},
		{"b shard 0", b, 0, now, nil},
		{"a shard 2 (reserved only)", a, 2, now, nil},
		{"a shard 5 (valid only)", a, 5, now, nil},
		{"unknown issuer", []byte{1}, 0, now, nil},
		{"a shard 1 later", a, 1, now.Add(3 * day), pick("a1 1", "a1 2")},
		{"a shard 1 earlier", a, 1, now.Add(-2 * day), pick("a1 1", "a1 2", "a1 3", "a1 expired")},
		{"a shard 0 earlier", a, 0, now.Add(-time.Second), pick("a0 1", "a0 2", "a0 expired")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkEntries(t, collectShard(t, s, tt.issuer, tt.shard, tt.now), tt.want)
		})
	}

	t.Run("many, in order", func(t *testing.T) {
		const n = certdb.MaxLimit + 10 // more than any page size
		issuer := []byte("many")
		var want []*certdb.Certificate
		for range n {
			c := NewCertificate(t, RandomSerial(), now, now.Add(day))
			c.IssuerKeyID, c.Shard = issuer, 9
			mustAdd(t, st, c)
			revoke(t, st, c, certdb.ReasonUnspecified, now)
			want = append(want, c)
		}
		got := collectShard(t, s, issuer, 9, now)
		for i := 1; i < len(got); i++ {
			if bytes.Compare(got[i-1].Serial.Bytes(), got[i].Serial.Bytes()) >= 0 {
				t.Fatalf("not ordered by serial at #%d", i)
			}
		}
		checkEntries(t, got, want)
	})
}

func testListRevokedShardErrors(t *testing.T, st certdb.Store, s certdb.CRLStore) {
	now := refNow()
	for range 5 {
		c := issue(t, st, DefaultIssuerKeyID(), 0, time.Hour)
		revoke(t, st, c, certdb.ReasonKeyCompromise, now)
	}
	errStop := errors.New("stop here")
	calls := 0
	err := s.ListRevokedShard(t.Context(), DefaultIssuerKeyID(), 0, now, func(*certdb.Certificate) error {
		calls++
		if calls == 2 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Errorf("ListRevokedShard() error = %v, want the callback's error", err)
	}
	if calls != 2 {
		t.Errorf("callback called %d times, want 2 (the iteration must stop at the error)", calls)
	}
	if err := s.ListRevokedShard(t.Context(), DefaultIssuerKeyID(), -1, now, func(*certdb.Certificate) error { return nil }); !errors.Is(err, certdb.ErrInvalid) {
		t.Errorf("ListRevokedShard(shard -1) error = %v, want ErrInvalid", err)
	}
	if err := s.ListRevokedShard(t.Context(), DefaultIssuerKeyID(), 0, now, nil); !errors.Is(err, certdb.ErrInvalid) {
		t.Errorf("ListRevokedShard(nil fn) error = %v, want ErrInvalid", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.ListRevokedShard(ctx, DefaultIssuerKeyID(), 0, now, func(*certdb.Certificate) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("ListRevokedShard(canceled) error = %v, want context.Canceled", err)
	}
}

// WaitForSerial reads ch until want arrives, skipping other serials and nil
// (rescan) markers. It fails t if ch is closed first or nothing arrives
// within NotifyTimeout.
func WaitForSerial(t testing.TB, ch <-chan *big.Int, want *big.Int) {
	t.Helper()
	timeout := time.NewTimer(NotifyTimeout)
	defer timeout.Stop()
	for {
		select {
		case got, ok := <-ch:
			if !ok {
				t.Fatalf("subscription closed before serial %s arrived", certdb.SerialHex(want))
			}
			if got != nil && got.Cmp(want) == 0 {
				return
			}
		case <-timeout.C:
			t.Fatalf("serial %s did not arrive within %v", certdb.SerialHex(want), NotifyTimeout)
		}
	}
}

// WaitForClose reads ch until it is closed, failing t if that takes longer
// than NotifyTimeout.
func WaitForClose(t testing.TB, ch <-chan *big.Int) {
	t.Helper()
	timeout := time.NewTimer(NotifyTimeout)
	defer timeout.Stop()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout.C:
			t.Fatalf("subscription not closed within %v", NotifyTimeout)
		}
	}
}

func subscribe(t *testing.T, ctx context.Context, s certdb.RevocationNotifier) <-chan *big.Int {
	t.Helper()
	ch, err := s.SubscribeRevocations(ctx)
	if err != nil {
		t.Fatalf("SubscribeRevocations() error = %v", err)
	}
	return ch
}

func testNotifyRevoke(t *testing.T, st certdb.Store, s certdb.RevocationNotifier) {
	ch := subscribe(t, t.Context(), s)
	for range 3 {
		c := issue(t, st, DefaultIssuerKeyID(), 0, time.Hour)
		mustRevoke(t, st, c.Serial, certdb.ReasonKeyCompromise, refNow())
		WaitForSerial(t, ch, c.Serial)
	}
	// A failed Revoke announces nothing: the next serial to arrive is the
	// one revoked after it.
	c := issue(t, st, DefaultIssuerKeyID(), 0, time.Hour)
	mustRevoke(t, st, c.Serial, certdb.ReasonKeyCompromise, refNow())
	WaitForSerial(t, ch, c.Serial)
	if err := st.Revoke(t.Context(), c.Serial, certdb.ReasonKeyCompromise, refNow()); !errors.Is(err, certdb.ErrAlreadyRevoked) {
		t.Fatalf("second Revoke() error = %v, want ErrAlreadyRevoked", err)
	}
	next := issue(t, st, DefaultIssuerKeyID(), 0, time.Hour)
	mustRevoke(t, st, next.Serial, certdb.ReasonKeyCompromise, refNow())
	for {
		select {
		case got, ok := <-ch:
			if !ok {
				t.Fatal("subscription closed")
			}
			if got != nil && got.Cmp(c.Serial) == 0 {
				t.Fatalf("a failed Revoke announced %s", certdb.SerialHex(c.Serial))
			}
			if got != nil && got.Cmp(next.Serial) == 0 {
				return
			}
		case <-time.After(NotifyTimeout):
			t.Fatalf("serial %s did not arrive within %v", certdb.SerialHex(next.Serial), NotifyTimeout)
		}
	}
}

func testNotifyExplicit(t *testing.T, _ certdb.Store, s certdb.RevocationNotifier) {
	ch := subscribe(t, t.Context(), s)
	for _, h := range []string{"01", "80", "7fffffffffffffffffffffffffffffffffffffff", "0100"} {
		sn := serialOf(t, h)
		if err := s.NotifyRevoked(t.Context(), sn); err != nil {
			t.Fatalf("NotifyRevoked(%s) error = %v", h, err)
		}
		WaitForSerial(t, ch, sn)
	}
	for _, sn := range []*big.Int{nil, big.NewInt(0), big.NewInt(-3)} {
		if err := s.NotifyRevoked(t.Context(), sn); !errors.Is(err, certdb.ErrInvalid) {
			t.Errorf("NotifyRevoked(%v) error = %v, want ErrInvalid", sn, err)
		}
	}
}

func testNotifyTwoSubscribers(t *testing.T, st certdb.Store, s certdb.RevocationNotifier) {
	ch1 := subscribe(t, t.Context(), s)
	ch2 := subscribe(t, t.Context(), s)
	c := issue(t, st, DefaultIssuerKeyID(), 0, time.Hour)
	mustRevoke(t, st, c.Serial, certdb.ReasonKeyCompromise, refNow())
	WaitForSerial(t, ch1, c.Serial)
	WaitForSerial(t, ch2, c.Serial)
	sn := RandomSerial()
	if err := s.NotifyRevoked(t.Context(), sn); err != nil {
		t.Fatal(err)
	}
	WaitForSerial(t, ch2, sn)
	WaitForSerial(t, ch1, sn)
}

func testNotifyCancel(t *testing.T, st certdb.Store, s certdb.RevocationNotifier) {
	ctx, cancel := context.WithCancel(t.Context())
	ch := subscribe(t, ctx, s)
	other := subscribe(t, t.Context(), s)
	cancel()
	WaitForClose(t, ch)
	// The other subscription is unaffected, and revoking still works with
	// a canceled subscriber around.
	c := issue(t, st, DefaultIssuerKeyID(), 0, time.Hour)
	mustRevoke(t, st, c.Serial, certdb.ReasonKeyCompromise, refNow())
	WaitForSerial(t, other, c.Serial)

	// A subscription with a done context is refused, or closed at once.
	if ch, err := s.SubscribeRevocations(ctx); err == nil {
		WaitForClose(t, ch)
	}
}

func testNotifyClose(t *testing.T, st certdb.Store, s certdb.RevocationNotifier) {
	ch := subscribe(t, context.Background(), s)
	if err := st.Close(); err != nil {
		t.Fatalf("Close() error = %v", err)
	}
	WaitForClose(t, ch)
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func tryLock(t *testing.T, s certdb.Locker, name string) (bool, func(), <-chan struct{}) {
	t.Helper()
	ok, release, lost, err := s.TryLock(t.Context(), name)
	if err != nil {
		t.Fatalf("TryLock(%q) error = %v", name, err)
	}
	if release == nil {
		t.Fatalf("TryLock(%q) returned a nil release", name)
	}
	switch {
	case ok && lost == nil:
		t.Fatalf("TryLock(%q) acquired with a nil lost channel", name)
	case !ok && lost != nil:
		t.Fatalf("TryLock(%q) not acquired but returned a lost channel", name)
	}
	return ok, release, lost
}

func testLock(t *testing.T, _ certdb.Store, s certdb.Locker) {
	ok, release, lost := tryLock(t, s, "ocsp-refresh")
	if !ok {
		t.Fatal("first TryLock did not acquire a free lock")
	}
	if isClosed(lost) {
		t.Fatal("lost is closed while the lock is held")
	}
	if ok2, release2, _ := tryLock(t, s, "ocsp-refresh"); ok2 {
		release2()
		t.Fatal("second TryLock acquired a held lock")
	} else {
		release2() // a no-op, and must not release the holder's lock
	}
	if ok2, _, _ := tryLock(t, s, "ocsp-refresh"); ok2 {
		t.Fatal("the loser's release freed the holder's lock")
	}
	okOther, releaseOther, _ := tryLock(t, s, "crl-update")
	if !okOther {
		t.Fatal("TryLock of another name failed: names must be independent")
	}
	releaseOther()

	release()
	if !isClosed(lost) {
		t.Error("lost is not closed after release")
	}
	release() // idempotent

	ok3, release3, lost3 := tryLock(t, s, "ocsp-refresh")
	if !ok3 {
		t.Fatal("TryLock after release did not acquire")
	}
	if isClosed(lost3) {
		t.Fatal("new holder's lost is closed")
	}
	release3()

	if _, _, _, err := s.TryLock(t.Context(), ""); !errors.Is(err, certdb.ErrInvalid) {
		t.Errorf("TryLock(\"\") error = %v, want ErrInvalid", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	winners := 0
	var releases []func()
	for range 8 {
		wg.Go(func() {
			ok, rel, _, err := s.TryLock(t.Context(), "race")
			if err != nil {
				t.Errorf("TryLock(race) error = %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if ok {
				winners++
				releases = append(releases, rel)
			}
		})
	}
	wg.Wait()
	for _, rel := range releases {
		rel()
	}
	if winners != 1 {
		t.Errorf("%d of 8 concurrent TryLock calls acquired the lock, want exactly 1", winners)
	}
}
