// Package certdbtest is the conformance suite for [certdb.Store]
// implementations. Every store (certdb/postgres, certdb/sqlite) runs it from
// its own tests:
//
//	func TestConformance(t *testing.T) {
//		certdbtest.Run(t, func(t *testing.T) certdb.Store {
//			s := openFreshMigratedStore(t)
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The suite only uses the certdb.Store interface, so it knows nothing about
// SQL or drivers. It also exports small helpers to build realistic records
// ([RandomSerial], [NewCertificate], [ReservationOf]) for a store's own tests.
//
// # What the suite pins down
//
// Where certdb.go leaves room for interpretation the suite decides, so that
// both stores behave alike:
//   - A serial is valid when it is positive and its minimal big-endian encoding
//     ([big.Int.Bytes]) is at most 20 octets, as [certdb.ParseSerial] checks.
//   - "Ordered by serial" means bytes.Compare order of the minimal big-endian
//     encodings (memcmp, then the shorter first), which is what SQLite BLOB and
//     PostgreSQL bytea comparisons give. It is not numeric order: 0x0100 sorts
//     before 0xff. Query.After selects serials strictly after the cursor in
//     that order.
//   - Times come back in UTC (Location() == time.UTC), at microsecond
//     precision; finer input is truncated or rounded to the microsecond.
//   - Nil and empty SANs, IssuerKeyID and DER are equivalent.
//   - AddCertificate on a reservation keeps the reservation's CreatedAt and
//     sets Status to valid; the fields of the certificate are stored.
//   - A nil *Reservation or *Certificate is ErrInvalid, not a panic.
//
// For tokens and the audit trail:
//   - Nil and empty Profiles and Names are equivalent. UsedAt and RevokedAt
//     given to CreateToken are stored as given.
//   - A zero Token.CreatedAt or AuditEvent.Time is set by the store, in the
//     database and in the caller's struct.
//   - UseToken and RevokeToken with a zero time are ErrInvalid, and so are
//     AppendAudit with a nil event or an empty Action and ListAudit with a
//     negative Before.
//   - UseToken on a revoked token is ErrTokenRevoked even if it was also
//     used; it ignores ExpiresAt. For a multi-use token UsedAt is the latest
//     time of use, not the last call's.
//   - ListTokens orders by CreatedAt descending, then ID ascending.
//   - Audit IDs are positive and strictly increase in the order of appends
//     that do not overlap in time; gaps are allowed.
//
// For revocation:
//   - A zero Certificate.Shard given to AddCertificate keeps the
//     reservation's shard; a negative shard is ErrInvalid everywhere.
//   - PutOCSPResponse on a reserved serial is ErrNotIssued, on an unknown one
//     ErrNotFound; a response with an equal ThisUpdate replaces the stored
//     one.
//   - PutCRL with an equal number replaces the stored CRL.
//   - Notifications are checked only for arrival (within a generous
//     timeout), never for latency; receivers tolerate duplicates and nil
//     (rescan) markers. A second TryLock of a held name on the same store
//     fails.
package certdbtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/certdb"
)

// Run runs the conformance suite against the store that open returns. Each
// subtest calls open once and expects a fresh, empty, migrated store; open
// registers its own cleanup (t.Cleanup) and may call t.Fatal. Subtests run
// sequentially, so open need not be safe for concurrent use.
//
// Every store must also implement [certdb.TokenStore] and
// [certdb.AuditStore], the revocation interfaces [certdb.OCSPStore],
// [certdb.CRLStore], [certdb.RevocationNotifier] and [certdb.Locker], and
// [certdb.SCTStore]: the
// subtests for an interface fail for a store that does not implement it.
func Run(t *testing.T, open func(t *testing.T) certdb.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s certdb.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"TimePrecision", testTimePrecision},
		{"ReserveDuplicate", testReserveDuplicate},
		{"AddCompletesReservation", testAddCompletesReservation},
		{"AddWithoutReservation", testAddWithoutReservation},
		{"AddDuplicate", testAddDuplicate},
		{"GetUnknown", testGetUnknown},
		{"Revoke", testRevoke},
		{"ListFilters", testListFilters},
		{"Pagination", testPagination},
		{"ListRevoked", testListRevoked},
		{"Invalid", testInvalid},
		{"ConcurrentReserveDistinct", testConcurrentReserveDistinct},
		{"ConcurrentReserveSame", testConcurrentReserveSame},
		{"Ping", testPing},
		{"CloseIdempotent", testCloseIdempotent},

		{"TokenRoundTrip", withTokens(testTokenRoundTrip)},
		{"TokenCreatedAtDefault", withTokens(testTokenCreatedAtDefault)},
		{"TokenDuplicate", withTokens(testTokenDuplicate)},
		{"TokenUnknown", withTokens(testTokenUnknown)},
		{"TokenUseSingle", withTokens(testTokenUseSingle)},
		{"TokenUseMulti", withTokens(testTokenUseMulti)},
		{"TokenUseSingleRace", withTokens(testTokenUseSingleRace)},
		{"TokenRevoke", withTokens(testTokenRevoke)},
		{"TokenRevokeRace", withTokens(testTokenRevokeRace)},
		{"TokenList", withTokens(testTokenList)},
		{"AuditRoundTrip", withAudit(testAuditRoundTrip)},
		{"AuditFilters", withAudit(testAuditFilters)},
		{"AuditPagination", withAudit(testAuditPagination)},
		{"AuditConcurrent", withAudit(testAuditConcurrent)},
		{"TokenAuditInvalid", withTokenAudit(testTokenAuditInvalid)},

		{"ShardRoundTrip", testShardRoundTrip},
		{"ShardInvalid", testShardInvalid},
		{"OCSPRoundTrip", with(testOCSPRoundTrip)},
		{"OCSPPutErrors", with(testOCSPPutErrors)},
		{"OCSPConcurrentPuts", with(testOCSPConcurrentPuts)},
		{"OCSPStale", with(testOCSPStale)},
		{"OCSPStaleLimit", with(testOCSPStaleLimit)},
		{"CRLNumbers", with(testCRLNumbers)},
		{"CRLNumbersConcurrent", with(testCRLNumbersConcurrent)},
		{"CRLPutGet", with(testCRLPutGet)},
		{"ListRevokedShard", with(testListRevokedShard)},
		{"ListRevokedShardErrors", with(testListRevokedShardErrors)},
		{"NotifyRevoke", with(testNotifyRevoke)},
		{"NotifyExplicit", with(testNotifyExplicit)},
		{"NotifyTwoSubscribers", with(testNotifyTwoSubscribers)},
		{"NotifyCancel", with(testNotifyCancel)},
		{"NotifyClose", with(testNotifyClose)},
		{"Lock", with(testLock)},

		{"SCTPrecertificate", with(testSCTPrecertificate)},
		{"SCTs", with(testSCTs)},
	}
	tests = append(tests, scanTests()...) // scan.go: certdb.ScanStore
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			if s == nil {
				t.Fatal("certdbtest: open returned a nil Store")
			}
			tt.fn(t, s)
		})
	}
}

// RandomSerial returns a serial the way a CA draws one: 20 random octets with
// the high bit cleared, so it is positive and its DER encoding is at most 20
// octets (RFC 5280 §4.1.2.2; CA/B BR 7.1: at least 64 random bits).
func RandomSerial() *big.Int {
	b := make([]byte, 20)
	rand.Read(b) // crypto/rand: cannot fail since Go 1.24
	b[0] &= 0x7f
	if b[0] == 0 {
		b[0] = 1 // keep all 20 octets significant
	}
	return new(big.Int).SetBytes(b)
}

// DefaultIssuerKeyID returns the IssuerKeyID that NewCertificate uses: a
// SHA-1 sized key identifier (RFC 5280 §4.2.1.2 method 1).
func DefaultIssuerKeyID() []byte {
	id := sha1.Sum([]byte("certdbtest issuer"))
	return id[:]
}

// NewCertificate returns a realistic record for an issued certificate:
// a fresh ECDSA P-256 self-signed certificate with the given serial and
// validity, whose DER is in the record. Times in the record keep the
// precision given (the DER has whole seconds). Status is StatusValid;
// CreatedAt is left for the store to set.
func NewCertificate(tb testing.TB, serial *big.Int, notBefore, notAfter time.Time) *certdb.Certificate {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("certdbtest: generate key: %v", err)
	}
	h := certdb.SerialHex(serial)
	cn := "svc-" + h[:min(len(h), 8)] + ".example.test"
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"certctl test"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		DNSNames:     []string{cn, "www." + cn},
		IPAddresses:  []net.IP{net.IPv4(192, 0, 2, 7)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// x509.CreateCertificate takes AuthorityKeyId from the parent for
		// self-signed certificates; the record's IssuerKeyID is set below.
		SubjectKeyId: DefaultIssuerKeyID(),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("certdbtest: create certificate: %v", err)
	}
	return &certdb.Certificate{
		Serial:      new(big.Int).Set(serial),
		IssuerKeyID: DefaultIssuerKeyID(),
		Subject:     tmpl.Subject.String(),
		SANs:        []string{"dns:" + cn, "dns:www." + cn, "ip:192.0.2.7"},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		Status:      certdb.StatusValid,
		DER:         der,
		Profile:     "server",
		Requester:   "token:test",
	}
}

// ReservationOf returns the reservation a CA would record before signing c.
func ReservationOf(c *certdb.Certificate) *certdb.Reservation {
	return &certdb.Reservation{
		Serial:      cloneInt(c.Serial),
		IssuerKeyID: slices.Clone(c.IssuerKeyID),
		Profile:     c.Profile,
		Requester:   c.Requester,
		Subject:     c.Subject,
		SANs:        slices.Clone(c.SANs),
		NotBefore:   c.NotBefore,
		NotAfter:    c.NotAfter,
		Shard:       c.Shard,
		LintDER:     []byte("lint certificate DER, opaque to the store"),
	}
}

func cloneInt(n *big.Int) *big.Int {
	if n == nil {
		return nil
	}
	return new(big.Int).Set(n)
}

// refNow is the reference time of the suite: far from the wall clock, so a
// store that compares with time.Now instead of Query.Now fails, and in a
// zone other than UTC, so a store that does not convert fails.
func refNow() time.Time {
	return time.Date(2031, time.March, 14, 15, 9, 26, 535897000, time.FixedZone("UTC+05:30", 5*3600+1800))
}

// serialOf parses a hex serial in a table, failing the test on typos.
func serialOf(tb testing.TB, h string) *big.Int {
	tb.Helper()
	n, ok := new(big.Int).SetString(h, 16)
	if !ok {
		tb.Fatalf("bad test serial %q", h)
	}
	return n
}

func mustReserve(t *testing.T, s certdb.Store, r *certdb.Reservation) {
	t.Helper()
	if err := s.ReserveSerial(t.Context(), r); err != nil {
		t.Fatalf("ReserveSerial(%s) error = %v", certdb.SerialHex(r.Serial), err)
	}
}

func mustAdd(t *testing.T, s certdb.Store, c *certdb.Certificate) {
	t.Helper()
	if err := s.AddCertificate(t.Context(), c); err != nil {
		t.Fatalf("AddCertificate(%s) error = %v", certdb.SerialHex(c.Serial), err)
	}
}

func mustGet(t *testing.T, s certdb.Store, serial *big.Int) *certdb.Certificate {
	t.Helper()
	c, err := s.GetCertificate(t.Context(), serial)
	if err != nil {
		t.Fatalf("GetCertificate(%s) error = %v", certdb.SerialHex(serial), err)
	}
	if c == nil {
		t.Fatalf("GetCertificate(%s) = nil, nil", certdb.SerialHex(serial))
	}
	return c
}

func mustRevoke(t *testing.T, s certdb.Store, serial *big.Int, r certdb.Reason, at time.Time) {
	t.Helper()
	if err := s.Revoke(t.Context(), serial, r, at); err != nil {
		t.Fatalf("Revoke(%s) error = %v", certdb.SerialHex(serial), err)
	}
}

// diffCert lists the differences between a stored record and what it should
// be. want's times are compared after conversion to UTC; want.CreatedAt is
// compared only when set.
func diffCert(got, want *certdb.Certificate) []string {
	var d []string
	add := func(field string, g, w any) { d = append(d, fmt.Sprintf("%s = %v, want %v", field, g, w)) }
	if got.Serial == nil || want.Serial == nil || got.Serial.Cmp(want.Serial) != 0 {
		add("Serial", certdb.SerialHex(got.Serial), certdb.SerialHex(want.Serial))
	}
	if !bytes.Equal(got.IssuerKeyID, want.IssuerKeyID) {
		add("IssuerKeyID", fmt.Sprintf("%x", got.IssuerKeyID), fmt.Sprintf("%x", want.IssuerKeyID))
	}
	if got.Subject != want.Subject {
		add("Subject", got.Subject, want.Subject)
	}
	if !slices.Equal(got.SANs, want.SANs) { // nil and empty are equal
		add("SANs", fmt.Sprintf("%q", got.SANs), fmt.Sprintf("%q", want.SANs))
	}
	cmpTime := func(field string, g, w time.Time) {
		switch {
		case w.IsZero() && !g.IsZero():
			add(field, g, "zero time")
		case !g.Equal(w):
			add(field, g, w)
		case !g.IsZero() && g.Location() != time.UTC:
			add(field+".Location()", g.Location(), "UTC")
		}
	}
	cmpTime("NotBefore", got.NotBefore, want.NotBefore)
	cmpTime("NotAfter", got.NotAfter, want.NotAfter)
	if got.Status != want.Status {
		add("Status", got.Status, want.Status)
	}
	cmpTime("RevokedAt", got.RevokedAt, want.RevokedAt)
	if want.Status == certdb.StatusRevoked && got.Reason != want.Reason {
		add("Reason", got.Reason, want.Reason)
	}
	if !bytes.Equal(got.DER, want.DER) {
		add("DER", fmt.Sprintf("%d bytes", len(got.DER)), fmt.Sprintf("%d bytes", len(want.DER)))
	}
	if got.Profile != want.Profile {
		add("Profile", got.Profile, want.Profile)
	}
	if got.Requester != want.Requester {
		add("Requester", got.Requester, want.Requester)
	}
	if !want.CreatedAt.IsZero() {
		cmpTime("CreatedAt", got.CreatedAt, want.CreatedAt)
	}
	if got.Shard != want.Shard {
		add("Shard", got.Shard, want.Shard)
	}
	return d
}

func checkCert(t *testing.T, what string, got, want *certdb.Certificate) {
	t.Helper()
	for _, d := range diffCert(got, want) {
		t.Errorf("%s: %s", what, d)
	}
}

// checkCreatedAt checks that a store-set CreatedAt is plausible: set, in UTC,
// at microsecond precision, and near the wall clock (catches unit mix-ups
// such as seconds stored as microseconds; not a timing assertion).
func checkCreatedAt(t *testing.T, c *certdb.Certificate) {
	t.Helper()
	switch {
	case c.CreatedAt.IsZero():
		t.Errorf("CreatedAt is zero; the store must set it")
	case c.CreatedAt.Location() != time.UTC:
		t.Errorf("CreatedAt.Location() = %v, want UTC", c.CreatedAt.Location())
	case c.CreatedAt.Nanosecond()%1000 != 0:
		t.Errorf("CreatedAt = %v has sub-microsecond digits", c.CreatedAt)
	}
	if d := time.Since(c.CreatedAt).Abs(); d > 24*time.Hour {
		t.Errorf("CreatedAt = %v is %v away from the wall clock", c.CreatedAt, d)
	}
}

// expectedReserved is the record GetCertificate must return right after
// ReserveSerial(r).
func expectedReserved(r *certdb.Reservation) *certdb.Certificate {
	return &certdb.Certificate{
		Serial:      r.Serial,
		IssuerKeyID: r.IssuerKeyID,
		Subject:     r.Subject,
		SANs:        r.SANs,
		NotBefore:   r.NotBefore,
		NotAfter:    r.NotAfter,
		Status:      certdb.StatusReserved,
		Profile:     r.Profile,
		Requester:   r.Requester,
		Shard:       r.Shard,
	}
}

func testRoundTrip(t *testing.T, s certdb.Store) {
	now := refNow()
	tests := []struct {
		name   string
		serial string
		sans   []string
		keyID  []byte
	}{
		{"one octet", "01", []string{"dns:a.example.test"}, DefaultIssuerKeyID()},
		{"one octet high bit", "80", []string{"dns:b.example.test"}, DefaultIssuerKeyID()},
		{"20 octets 7f", "7fffffffffffffffffffffffffffffffffffffff", []string{"dns:c.example.test", "ip:192.0.2.1", "ip:2001:db8::1", "uri:spiffe://example.test/svc", "email:ops@example.test"}, DefaultIssuerKeyID()},
		{"20 octets high bit", "ff00000000000000000000000000000000000001", []string{"dns:d.example.test"}, DefaultIssuerKeyID()},
		{"leading zero octet inside", "0100", []string{"dns:e.example.test"}, []byte{0x00, 0x01, 0xff}},
		{"nil SANs", "7f0102030405060708090a0b0c0d0e0f10111213", nil, DefaultIssuerKeyID()},
		{"empty SANs", "7f0102030405060708090a0b0c0d0e0f10111214", []string{}, DefaultIssuerKeyID()},
		{"unicode and quotes", "42", []string{`dns:xn--caf-dma.example.test`, `uri:https://example.test/a"b`, "email:é@example.test"}, DefaultIssuerKeyID()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			serial := serialOf(t, tt.serial)
			c := NewCertificate(t, serial, now.Add(-time.Hour), now.Add(90*24*time.Hour+123456*time.Microsecond))
			c.SANs = tt.sans
			c.IssuerKeyID = tt.keyID
			c.Subject = `CN=café \, "quoted",O=certctl test` // RFC 2253 escapes survive as text
			r := ReservationOf(c)
			r.SANs = tt.sans

			mustReserve(t, s, r)
			reserved := mustGet(t, s, serial)
			checkCert(t, "after ReserveSerial", reserved, expectedReserved(r))
			checkCreatedAt(t, reserved)

			mustAdd(t, s, c)
			got := mustGet(t, s, serial)
			want := *c
			want.Status = certdb.StatusValid
			want.CreatedAt = reserved.CreatedAt // kept from the reservation
			checkCert(t, "after AddCertificate", got, &want)

			// The serial must not alias the caller's big.Int.
			if got.Serial == serial {
				t.Errorf("GetCertificate returned the caller's *big.Int")
			}

			list, err := s.ListCertificates(ctx, certdb.Query{Limit: certdb.MaxLimit})
			if err != nil {
				t.Fatalf("ListCertificates() error = %v", err)
			}
			i := slices.IndexFunc(list, func(c *certdb.Certificate) bool { return c.Serial.Cmp(serial) == 0 })
			if i < 0 {
				t.Fatalf("ListCertificates() does not list %s", tt.serial)
			}
			checkCert(t, "ListCertificates", list[i], &want)
		})
	}
}

func testTimePrecision(t *testing.T, s certdb.Store) {
	zone := time.FixedZone("UTC-07:00", -7*3600)
	nb := time.Date(2030, time.January, 2, 3, 4, 5, 999999999, zone)
	na := time.Date(2031, time.June, 7, 8, 9, 10, 123456789, zone)
	c := NewCertificate(t, RandomSerial(), nb, na)
	mustAdd(t, s, c)
	got := mustGet(t, s, c.Serial)
	for _, tc := range []struct {
		field     string
		got, sent time.Time
	}{{"NotBefore", got.NotBefore, nb}, {"NotAfter", got.NotAfter, na}} {
		if tc.got.Location() != time.UTC {
			t.Errorf("%s.Location() = %v, want UTC", tc.field, tc.got.Location())
		}
		if tc.got.Nanosecond()%1000 != 0 {
			t.Errorf("%s = %v, want microsecond precision", tc.field, tc.got)
		}
		if d := tc.got.Sub(tc.sent).Abs(); d >= time.Microsecond {
			t.Errorf("%s = %v, sent %v: off by %v", tc.field, tc.got, tc.sent, d)
		}
	}
}

func testReserveDuplicate(t *testing.T, s certdb.Store) {
	ctx := t.Context()
	now := refNow()
	t.Run("reserved", func(t *testing.T) {
		c := NewCertificate(t, RandomSerial(), now, now.Add(time.Hour))
		r := ReservationOf(c)
		mustReserve(t, s, r)
		r2 := ReservationOf(c)
		r2.Profile, r2.Requester = "other", "someone else"
		if err := s.ReserveSerial(ctx, r2); !errors.Is(err, certdb.ErrDuplicate) {
			t.Fatalf("second ReserveSerial() error = %v, want ErrDuplicate", err)
		}
		checkCert(t, "after failed ReserveSerial", mustGet(t, s, c.Serial), expectedReserved(r))
	})
	t.Run("issued", func(t *testing.T) {
		c := NewCertificate(t, RandomSerial(), now, now.Add(time.Hour))
		mustAdd(t, s, c)
		if err := s.ReserveSerial(ctx, ReservationOf(c)); !errors.Is(err, certdb.ErrDuplicate) {
			t.Fatalf("ReserveSerial() of an issued serial error = %v, want ErrDuplicate", err)
		}
		if got := mustGet(t, s, c.Serial); got.Status != certdb.StatusValid {
			t.Fatalf("Status = %v after failed ReserveSerial, want valid", got.Status)
		}
	})
	t.Run("revoked", func(t *testing.T) {
		c := NewCertificate(t, RandomSerial(), now, now.Add(time.Hour))
		mustAdd(t, s, c)
		mustRevoke(t, s, c.Serial, certdb.ReasonSuperseded, now)
		if err := s.ReserveSerial(ctx, ReservationOf(c)); !errors.Is(err, certdb.ErrDuplicate) {
			t.Fatalf("ReserveSerial() of a revoked serial error = %v, want ErrDuplicate", err)
		}
	})
}

func testAddCompletesReservation(t *testing.T, s certdb.Store) {
	now := refNow()
	tests := []struct {
		name                    string
		profile, requester      string // set on the Certificate passed to AddCertificate
		wantProf, wantRequester string
	}{
		{"fields from certificate override", "client", "cli:root", "client", "cli:root"},
		{"empty fields keep reservation", "", "", "server", "token:test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCertificate(t, RandomSerial(), now, now.Add(24*time.Hour))
			r := ReservationOf(c) // Profile "server", Requester "token:test"
			mustReserve(t, s, r)
			reserved := mustGet(t, s, c.Serial)
			if reserved.Status != certdb.StatusReserved || len(reserved.DER) != 0 {
				t.Fatalf("after ReserveSerial: Status = %v, %d DER bytes; want reserved, none", reserved.Status, len(reserved.DER))
			}

			add := *c
			add.Profile, add.Requester = tt.profile, tt.requester
			mustAdd(t, s, &add)

			got := mustGet(t, s, c.Serial)
			want := *c
			want.Status = certdb.StatusValid
			want.Profile, want.Requester = tt.wantProf, tt.wantRequester
			want.CreatedAt = reserved.CreatedAt
			checkCert(t, "after AddCertificate", got, &want)
		})
	}
}

func testAddWithoutReservation(t *testing.T, s certdb.Store) {
	now := refNow()
	c := NewCertificate(t, RandomSerial(), now.Add(-time.Hour), now.Add(10*365*24*time.Hour))
	c.Profile, c.Requester = "root", "cli:init"
	mustAdd(t, s, c)
	got := mustGet(t, s, c.Serial)
	want := *c
	checkCert(t, "GetCertificate", got, &want)
	checkCreatedAt(t, got)
}

func testAddDuplicate(t *testing.T, s certdb.Store) {
	ctx := t.Context()
	now := refNow()
	tests := []struct {
		name    string
		reserve bool
		revoke  bool
	}{
		{"inserted twice", false, false},
		{"reservation completed twice", true, false},
		{"after revocation", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCertificate(t, RandomSerial(), now, now.Add(time.Hour))
			if tt.reserve {
				mustReserve(t, s, ReservationOf(c))
			}
			mustAdd(t, s, c)
			wantStatus := certdb.StatusValid
			if tt.revoke {
				mustRevoke(t, s, c.Serial, certdb.ReasonKeyCompromise, now)
				wantStatus = certdb.StatusRevoked
			}
			again := *c
			again.DER = []byte("a different certificate")
			if err := s.AddCertificate(ctx, &again); !errors.Is(err, certdb.ErrDuplicate) {
				t.Fatalf("second AddCertificate() error = %v, want ErrDuplicate", err)
			}
			got := mustGet(t, s, c.Serial)
			if got.Status != wantStatus || !bytes.Equal(got.DER, c.DER) {
				t.Fatalf("after failed AddCertificate: Status = %v, DER changed = %v; want %v, unchanged",
					got.Status, !bytes.Equal(got.DER, c.DER), wantStatus)
			}
		})
	}
}

func testGetUnknown(t *testing.T, s certdb.Store) {
	ctx := t.Context()
	now := refNow()
	mustAdd(t, s, NewCertificate(t, serialOf(t, "0102"), now, now.Add(time.Hour)))
	// Neighbours of a stored serial: a prefix, an extension, the next value.
	for _, h := range []string{"01", "010200", "0103", "7fffffffffffffffffffffffffffffffffffffff"} {
		t.Run(h, func(t *testing.T) {
			c, err := s.GetCertificate(ctx, serialOf(t, h))
			if !errors.Is(err, certdb.ErrNotFound) {
				t.Fatalf("GetCertificate(%s) = %v, %v; want ErrNotFound", h, c, err)
			}
		})
	}
}

func testRevoke(t *testing.T, s certdb.Store) {
	ctx := t.Context()
	now := refNow()

	t.Run("valid to revoked", func(t *testing.T) {
		c := NewCertificate(t, RandomSerial(), now.Add(-time.Hour), now.Add(time.Hour))
		mustReserve(t, s, ReservationOf(c))
		mustAdd(t, s, c)
		created := mustGet(t, s, c.Serial).CreatedAt
		at := now.Add(-90 * time.Second) // non-UTC zone, microsecond digits
		mustRevoke(t, s, c.Serial, certdb.ReasonKeyCompromise, at)
		got := mustGet(t, s, c.Serial)
		want := *c
		want.Status = certdb.StatusRevoked
		want.Reason = certdb.ReasonKeyCompromise
		want.RevokedAt = at
		want.CreatedAt = created
		checkCert(t, "after Revoke", got, &want)

		err := s.Revoke(ctx, c.Serial, certdb.ReasonSuperseded, now)
		if !errors.Is(err, certdb.ErrAlreadyRevoked) {
			t.Fatalf("second Revoke() error = %v, want ErrAlreadyRevoked", err)
		}
		checkCert(t, "after second Revoke", mustGet(t, s, c.Serial), &want)
	})

	t.Run("every reason", func(t *testing.T) {
		for _, name := range certdb.ReasonNames() {
			reason, err := certdb.ParseReason(name)
			if err != nil {
				t.Fatal(err)
			}
			c := NewCertificate(t, RandomSerial(), now, now.Add(time.Hour))
			mustAdd(t, s, c)
			mustRevoke(t, s, c.Serial, reason, now)
			if got := mustGet(t, s, c.Serial); got.Status != certdb.StatusRevoked || got.Reason != reason {
				t.Errorf("Revoke(%v): Status = %v, Reason = %v", reason, got.Status, got.Reason)
			}
		}
	})

	t.Run("unknown", func(t *testing.T) {
		err := s.Revoke(ctx, RandomSerial(), certdb.ReasonUnspecified, now)
		if !errors.Is(err, certdb.ErrNotFound) {
			t.Fatalf("Revoke(unknown) error = %v, want ErrNotFound", err)
		}
	})

	t.Run("reserved only", func(t *testing.T) {
		c := NewCertificate(t, RandomSerial(), now, now.Add(time.Hour))
		r := ReservationOf(c)
		mustReserve(t, s, r)
		err := s.Revoke(ctx, c.Serial, certdb.ReasonKeyCompromise, now)
		if !errors.Is(err, certdb.ErrNotIssued) {
			t.Fatalf("Revoke(reserved) error = %v, want ErrNotIssued", err)
		}
		checkCert(t, "after failed Revoke", mustGet(t, s, c.Serial), expectedReserved(r))
	})
}

// fixture is a named record for the filter tests.
type fixture struct {
	name    string
	issuer  []byte
	profile string
	status  certdb.Status
	reason  certdb.Reason
	expires time.Duration // NotAfter relative to refNow
}

// loadFixtures stores the records and returns them by name.
func loadFixtures(t *testing.T, s certdb.Store, fs []fixture) map[string]*certdb.Certificate {
	t.Helper()
	now := refNow()
	out := make(map[string]*certdb.Certificate, len(fs))
	for _, f := range fs {
		c := NewCertificate(t, RandomSerial(), now.Add(-400*24*time.Hour), now.Add(f.expires))
		c.IssuerKeyID = f.issuer
		c.Profile = f.profile
		c.Requester = "fixture:" + f.name
		c.Subject = "CN=" + f.name
		switch f.status {
		case certdb.StatusReserved:
			mustReserve(t, s, ReservationOf(c))
			c.Status, c.DER = certdb.StatusReserved, nil
		case certdb.StatusValid:
			mustAdd(t, s, c)
		case certdb.StatusRevoked:
			mustAdd(t, s, c)
			at := now.Add(-time.Minute)
			mustRevoke(t, s, c.Serial, f.reason, at)
			c.Status, c.Reason, c.RevokedAt = certdb.StatusRevoked, f.reason, at
		default:
			t.Fatalf("fixture %s: bad status %v", f.name, f.status)
		}
		out[f.name] = c
	}
	return out
}

// checkNames checks that got holds exactly the named fixtures, ordered by
// serial, with every field as stored.
func checkNames(t *testing.T, got []*certdb.Certificate, fx map[string]*certdb.Certificate, names []string) {
	t.Helper()
	want := make([]*certdb.Certificate, 0, len(names))
	for _, n := range names {
		c, ok := fx[n]
		if !ok {
			t.Fatalf("test bug: no fixture %q", n)
		}
		want = append(want, c)
	}
	slices.SortFunc(want, func(a, b *certdb.Certificate) int { return bytes.Compare(a.Serial.Bytes(), b.Serial.Bytes()) })
	nameOf := func(c *certdb.Certificate) string {
		for n, f := range fx {
			if c.Serial != nil && f.Serial.Cmp(c.Serial) == 0 {
				return n
			}
		}
		return "unknown serial " + certdb.SerialHex(c.Serial)
	}
	gotNames := make([]string, len(got))
	for i, c := range got {
		gotNames[i] = nameOf(c)
	}
	wantNames := make([]string, len(want))
	for i, c := range want {
		wantNames[i] = nameOf(c)
	}
	if !slices.Equal(gotNames, wantNames) {
		t.Fatalf("got records %v, want %v (in serial order)", gotNames, wantNames)
	}
	for i := range got {
		checkCert(t, "record "+gotNames[i], got[i], want[i])
	}
}

func testListFilters(t *testing.T, s certdb.Store) {
	ctx := t.Context()
	now := refNow()
	day := 24 * time.Hour
	issuerA, issuerB := DefaultIssuerKeyID(), []byte{0xb0, 0x0b, 0x00, 0x01}
	fx := loadFixtures(t, s, []fixture{
		{"a", issuerA, "server", certdb.StatusValid, 0, 30 * day},
		{"b", issuerA, "server", certdb.StatusRevoked, certdb.ReasonKeyCompromise, 60 * day},
		{"c", issuerA, "client", certdb.StatusValid, 0, -day},
		{"d", issuerB, "server", certdb.StatusValid, 0, 0}, // NotAfter == Now: expired
		{"e", issuerB, "client", certdb.StatusRevoked, certdb.ReasonSuperseded, -10 * day},
		{"f", issuerA, "server", certdb.StatusReserved, 0, 10 * day},
		{"g", issuerB, "client", certdb.StatusValid, 0, time.Microsecond}, // unexpired by 1µs
		{"h", issuerB, "server", certdb.StatusReserved, 0, -5 * day},
	})
	tests := []struct {
		name string
		q    certdb.Query
		want []string
	}{
		{"zero query lists issued", certdb.Query{}, []string{"a", "b", "c", "d", "e", "g"}},
		{"status valid", certdb.Query{Status: certdb.StatusValid}, []string{"a", "c", "d", "g"}},
		{"status revoked", certdb.Query{Status: certdb.StatusRevoked}, []string{"b", "e"}},
		{"status reserved", certdb.Query{Status: certdb.StatusReserved}, []string{"f", "h"}},
		{"unexpired", certdb.Query{Expiry: certdb.ExpiryUnexpired, Now: now}, []string{"a", "b", "g"}},
		{"expired", certdb.Query{Expiry: certdb.ExpiryExpired, Now: now}, []string{"c", "d", "e"}},
		{"expiry any ignores Now", certdb.Query{Expiry: certdb.ExpiryAny, Now: now}, []string{"a", "b", "c", "d", "e", "g"}},
		{"expiring before (strict)", certdb.Query{ExpiringBefore: now.Add(30 * day)}, []string{"c", "d", "e", "g"}},
		{"issuer A", certdb.Query{IssuerKeyID: issuerA}, []string{"a", "b", "c"}},
		{"issuer B", certdb.Query{IssuerKeyID: issuerB}, []string{"d", "e", "g"}},
		{"unknown issuer", certdb.Query{IssuerKeyID: []byte{0xb0, 0x0b}}, nil},
		{"profile client", certdb.Query{Profile: "client"}, []string{"c", "e", "g"}},
		{"unknown profile", certdb.Query{Profile: "nope"}, nil},
		{"valid unexpired issuer B", certdb.Query{Status: certdb.StatusValid, Expiry: certdb.ExpiryUnexpired, Now: now, IssuerKeyID: issuerB}, []string{"g"}},
		{"reserved expired", certdb.Query{Status: certdb.StatusReserved, Expiry: certdb.ExpiryExpired, Now: now}, []string{"h"}},
		{"reserved issuer A", certdb.Query{Status: certdb.StatusReserved, IssuerKeyID: issuerA}, []string{"f"}},
		{"unexpired expiring soon", certdb.Query{Expiry: certdb.ExpiryUnexpired, Now: now, ExpiringBefore: now.Add(45 * day)}, []string{"a", "g"}},
		{"server unexpired expiring soon", certdb.Query{Profile: "server", Expiry: certdb.ExpiryUnexpired, Now: now, ExpiringBefore: now.Add(45 * day)}, []string{"a"}},
		{"revoked expired client issuer B", certdb.Query{Status: certdb.StatusRevoked, Expiry: certdb.ExpiryExpired, Now: now, Profile: "client", IssuerKeyID: issuerB}, []string{"e"}},
		{"contradiction", certdb.Query{Expiry: certdb.ExpiryUnexpired, Now: now, ExpiringBefore: now}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListCertificates(ctx, tt.q)
			if err != nil {
				t.Fatalf("ListCertificates() error = %v", err)
			}
			checkNames(t, got, fx, tt.want)
		})
	}
}

// serialSet draws n distinct serials of every length from 1 to 20 octets,
// so that byte-wise and numeric order differ.
func serialSet(n int) []*big.Int {
	seen := make(map[string]bool, n)
	out := make([]*big.Int, 0, n)
	for i := 0; len(out) < n; i++ {
		b := make([]byte, 1+i%20)
		rand.Read(b)
		if b[0] == 0 {
			b[0] = 0x80 // keep the length; high bit set is a valid serial too
		}
		if seen[string(b)] {
			continue
		}
		seen[string(b)] = true
		out = append(out, new(big.Int).SetBytes(b))
	}
	return out
}

func testPagination(t *testing.T, s certdb.Store) {
	ctx := t.Context()
	now := refNow()
	const n = 250
	serials := serialSet(n)
	for i, sn := range serials {
		c := NewCertificate(t, sn, now.Add(-time.Hour), now.Add(time.Duration(i+1)*time.Hour))
		mustAdd(t, s, c)
		if i%10 == 0 {
			mustRevoke(t, s, sn, certdb.ReasonSuperseded, now)
		}
	}
	for range 5 { // reservations are not listed by the zero query
		mustReserve(t, s, ReservationOf(NewCertificate(t, RandomSerial(), now, now.Add(time.Hour))))
	}
	sorted := slices.Clone(serials)
	slices.SortFunc(sorted, func(a, b *big.Int) int { return bytes.Compare(a.Bytes(), b.Bytes()) })

	// pageAll walks every page of q and checks order and uniqueness.
	pageAll := func(t *testing.T, q certdb.Query, wantPage int) []*big.Int {
		t.Helper()
		var all []*big.Int
		for pages := 0; ; pages++ {
			if pages > n {
				t.Fatalf("pagination does not terminate")
			}
			page, err := s.ListCertificates(ctx, q)
			if err != nil {
				t.Fatalf("ListCertificates(After=%s) error = %v", certdb.SerialHex(q.After), err)
			}
			if len(page) > wantPage {
				t.Fatalf("page of %d records, limit %d", len(page), wantPage)
			}
			for _, c := range page {
				if q.After != nil && bytes.Compare(c.Serial.Bytes(), q.After.Bytes()) <= 0 {
					t.Fatalf("serial %s is not after the cursor %s", certdb.SerialHex(c.Serial), certdb.SerialHex(q.After))
				}
				if len(all) > 0 && bytes.Compare(all[len(all)-1].Bytes(), c.Serial.Bytes()) >= 0 {
					t.Fatalf("serial %s listed after %s: not in byte-wise order",
						certdb.SerialHex(c.Serial), certdb.SerialHex(all[len(all)-1]))
				}
				all = append(all, c.Serial)
			}
			if len(page) < wantPage {
				return all
			}
			q.After = page[len(page)-1].Serial
		}
	}
	checkSerials := func(t *testing.T, got, want []*big.Int) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("listed %d serials, want %d", len(got), len(want))
		}
		for i := range got {
			if got[i].Cmp(want[i]) != 0 {
				t.Fatalf("serial #%d = %s, want %s", i, certdb.SerialHex(got[i]), certdb.SerialHex(want[i]))
			}
		}
	}

	t.Run("every serial once in byte order", func(t *testing.T) {
		checkSerials(t, pageAll(t, certdb.Query{Limit: 100}, 100), sorted)
	})
	t.Run("revoked pages of 7", func(t *testing.T) {
		var want []*big.Int
		for i, sn := range serials {
			if i%10 == 0 {
				want = append(want, sn)
			}
		}
		slices.SortFunc(want, func(a, b *big.Int) int { return bytes.Compare(a.Bytes(), b.Bytes()) })
		checkSerials(t, pageAll(t, certdb.Query{Status: certdb.StatusRevoked, Limit: 7}, 7), want)
	})
	t.Run("cursor not stored", func(t *testing.T) {
		// 0x80 then 0x00: sorts after every serial that starts with 0x80 alone.
		cursor := serialOf(t, "8000")
		var want []*big.Int
		for _, sn := range sorted {
			if bytes.Compare(sn.Bytes(), cursor.Bytes()) > 0 {
				want = append(want, sn)
			}
		}
		q := certdb.Query{After: cursor, Limit: certdb.MaxLimit}
		got, err := s.ListCertificates(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		gs := make([]*big.Int, len(got))
		for i, c := range got {
			gs[i] = c.Serial
		}
		checkSerials(t, gs, want)
	})
	t.Run("limits", func(t *testing.T) {
		tests := []struct {
			limit, want int
		}{
			{0, certdb.DefaultLimit},
			{-1, certdb.DefaultLimit},
			{1, 1},
			{7, 7},
			{certdb.MaxLimit + 1, n}, // capped at MaxLimit, which is more than n
		}
		for _, tt := range tests {
			t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
				if eff := (certdb.Query{Limit: tt.limit}).EffectiveLimit(); eff < tt.want {
					t.Fatalf("test bug: EffectiveLimit(%d) = %d", tt.limit, eff)
				}
				got, err := s.ListCertificates(ctx, certdb.Query{Limit: tt.limit})
				if err != nil {
					t.Fatalf("ListCertificates(Limit %d) error = %v", tt.limit, err)
				}
				if len(got) != tt.want {
					t.Fatalf("ListCertificates(Limit %d) returned %d records, want %d", tt.limit, len(got), tt.want)
				}
				for i := range got {
					if got[i].Serial.Cmp(sorted[i]) != 0 {
						t.Fatalf("record #%d = %s, want %s", i, certdb.SerialHex(got[i].Serial), certdb.SerialHex(sorted[i]))
					}
				}
			})
		}
	})
}

func testListRevoked(t *testing.T, s certdb.Store) {
	ctx := t.Context()
	now := refNow()
	day := 24 * time.Hour
	issuerA, issuerB := DefaultIssuerKeyID(), []byte{0xb0, 0x0b, 0x00, 0x01}
	fx := loadFixtures(t, s, []fixture{
		{"revoked A 1", issuerA, "server", certdb.StatusRevoked, certdb.ReasonKeyCompromise, 30 * day},
		{"revoked A 2", issuerA, "client", certdb.StatusRevoked, certdb.ReasonCessationOfOperation, time.Microsecond},
		{"revoked A 3", issuerA, "server", certdb.StatusRevoked, certdb.ReasonCertificateHold, 400 * day},
		{"revoked A expires now", issuerA, "server", certdb.StatusRevoked, certdb.ReasonSuperseded, 0},
		{"revoked A expired", issuerA, "server", certdb.StatusRevoked, certdb.ReasonSuperseded, -day},
		{"revoked B", issuerB, "server", certdb.StatusRevoked, certdb.ReasonKeyCompromise, 30 * day},
		{"valid A", issuerA, "server", certdb.StatusValid, 0, 30 * day},
		{"reserved A", issuerA, "server", certdb.StatusReserved, 0, 30 * day},
	})
	tests := []struct {
		name   string
		issuer []byte
		now    time.Time
		want   []string
	}{
		{"issuer A", issuerA, now, []string{"revoked A 1", "revoked A 2", "revoked A 3"}},
		{"issuer B", issuerB, now, []string{"revoked B"}},
		{"unknown issuer", []byte{0x01}, now, nil},
		{"issuer A later", issuerA, now.Add(31 * day), []string{"revoked A 3"}},
		{"issuer A earlier", issuerA, now.Add(-2 * day), []string{"revoked A 1", "revoked A 2", "revoked A 3", "revoked A expires now", "revoked A expired"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListRevoked(ctx, tt.issuer, tt.now)
			if err != nil {
				t.Fatalf("ListRevoked() error = %v", err)
			}
			checkNames(t, got, fx, tt.want)
		})
	}
	t.Run("not paginated", func(t *testing.T) {
		const n = certdb.DefaultLimit + 5
		for range n {
			c := NewCertificate(t, RandomSerial(), now, now.Add(day))
			c.IssuerKeyID = []byte("many")
			mustAdd(t, s, c)
			mustRevoke(t, s, c.Serial, certdb.ReasonUnspecified, now)
		}
		got, err := s.ListRevoked(ctx, []byte("many"), now)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != n {
			t.Fatalf("ListRevoked() returned %d records, want %d", len(got), n)
		}
		for i := 1; i < len(got); i++ {
			if bytes.Compare(got[i-1].Serial.Bytes(), got[i].Serial.Bytes()) >= 0 {
				t.Fatalf("ListRevoked() not ordered by serial at #%d", i)
			}
		}
	})
}

func testInvalid(t *testing.T, s certdb.Store) {
	now := refNow()
	issued := NewCertificate(t, RandomSerial(), now, now.Add(time.Hour))
	mustAdd(t, s, issued)

	tooLong := new(big.Int).Lsh(big.NewInt(1), 160) // 21 octets: 01 00…00
	bad := []struct {
		name   string
		serial *big.Int
	}{
		{"nil serial", nil},
		{"zero serial", big.NewInt(0)},
		{"negative serial", big.NewInt(-5)},
		{"21 octets", tooLong},
	}
	withSerial := func(sn *big.Int) *certdb.Certificate {
		c := NewCertificate(t, RandomSerial(), now, now.Add(time.Hour))
		c.Serial = sn
		return c
	}

	type call struct {
		name string
		fn   func(ctx context.Context) error
	}
	var calls []call
	for _, b := range bad {
		calls = append(calls,
			call{"ReserveSerial " + b.name, func(ctx context.Context) error {
				return s.ReserveSerial(ctx, ReservationOf(withSerial(b.serial)))
			}},
			call{"AddCertificate " + b.name, func(ctx context.Context) error {
				return s.AddCertificate(ctx, withSerial(b.serial))
			}},
			call{"GetCertificate " + b.name, func(ctx context.Context) error {
				_, err := s.GetCertificate(ctx, b.serial)
				return err
			}},
			call{"Revoke " + b.name, func(ctx context.Context) error {
				return s.Revoke(ctx, b.serial, certdb.ReasonKeyCompromise, now)
			}},
		)
	}
	for _, r := range []certdb.Reason{7, -1, 11, 100} {
		calls = append(calls, call{fmt.Sprintf("Revoke reason %d", int(r)), func(ctx context.Context) error {
			return s.Revoke(ctx, issued.Serial, r, now)
		}})
	}
	calls = append(calls,
		call{"ReserveSerial nil", func(ctx context.Context) error { return s.ReserveSerial(ctx, nil) }},
		call{"AddCertificate nil", func(ctx context.Context) error { return s.AddCertificate(ctx, nil) }},
	)
	for _, q := range []struct {
		name string
		q    certdb.Query
	}{
		{"expiry without Now", certdb.Query{Expiry: certdb.ExpiryExpired}},
		{"unexpired without Now", certdb.Query{Expiry: certdb.ExpiryUnexpired}},
		{"unknown expiry", certdb.Query{Expiry: certdb.ExpiryExpired + 1, Now: now}},
		{"negative expiry", certdb.Query{Expiry: -1, Now: now}},
		{"unknown status", certdb.Query{Status: certdb.StatusRevoked + 1}},
		{"negative status", certdb.Query{Status: -1}},
	} {
		if q.q.Validate() == nil {
			t.Fatalf("test bug: query %q is valid", q.name)
		}
		calls = append(calls, call{"ListCertificates " + q.name, func(ctx context.Context) error {
			_, err := s.ListCertificates(ctx, q.q)
			return err
		}})
	}

	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			if err := c.fn(t.Context()); !errors.Is(err, certdb.ErrInvalid) {
				t.Fatalf("error = %v, want ErrInvalid", err)
			}
		})
	}

	// Nothing above may have changed the store.
	if got := mustGet(t, s, issued.Serial); got.Status != certdb.StatusValid {
		t.Errorf("after invalid calls: Status = %v, want valid", got.Status)
	}
	list, err := s.ListCertificates(t.Context(), certdb.Query{Status: certdb.StatusAny})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.ListCertificates(t.Context(), certdb.Query{Status: certdb.StatusReserved})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || len(res) != 0 {
		t.Errorf("after invalid calls: %d issued and %d reserved records, want 1 and 0", len(list), len(res))
	}
}

func testConcurrentReserveDistinct(t *testing.T, s certdb.Store) {
	ctx := t.Context()
	now := refNow()
	const n = 16
	certs := make([]*certdb.Certificate, n)
	for i := range certs {
		certs[i] = NewCertificate(t, RandomSerial(), now, now.Add(time.Hour))
	}
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range certs {
		wg.Go(func() {
			<-start
			if err := s.ReserveSerial(ctx, ReservationOf(c)); err != nil {
				errs[i] = fmt.Errorf("ReserveSerial: %w", err)
				return
			}
			if err := s.AddCertificate(ctx, c); err != nil {
				errs[i] = fmt.Errorf("AddCertificate: %w", err)
				return
			}
			if _, err := s.GetCertificate(ctx, c.Serial); err != nil {
				errs[i] = fmt.Errorf("GetCertificate: %w", err)
			}
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("goroutine %d: %v", i, err)
		}
	}
	got, err := s.ListCertificates(ctx, certdb.Query{Status: certdb.StatusValid})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("ListCertificates() returned %d valid records, want %d", len(got), n)
	}
}

func testConcurrentReserveSame(t *testing.T, s certdb.Store) {
	ctx := t.Context()
	now := refNow()
	const n = 8
	c := NewCertificate(t, RandomSerial(), now, now.Add(time.Hour))
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := ReservationOf(c)
			r.Requester = fmt.Sprintf("racer %d", i)
			<-start
			errs[i] = s.ReserveSerial(ctx, r)
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	var other []string
	for i, err := range errs {
		switch {
		case err == nil && winner < 0:
			winner = i
		case err == nil:
			other = append(other, fmt.Sprintf("goroutine %d also succeeded", i))
		case !errors.Is(err, certdb.ErrDuplicate):
			other = append(other, fmt.Sprintf("goroutine %d: %v (want ErrDuplicate)", i, err))
		}
	}
	if winner < 0 {
		t.Fatalf("no goroutine reserved the serial: %v", errs)
	}
	if len(other) > 0 {
		t.Fatalf("exactly one reservation must succeed:\n%s", strings.Join(other, "\n"))
	}
	if got := mustGet(t, s, c.Serial); got.Requester != fmt.Sprintf("racer %d", winner) {
		t.Fatalf("stored Requester = %q, want the winner's %q", got.Requester, fmt.Sprintf("racer %d", winner))
	}
}

func testPing(t *testing.T, s certdb.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping() error = %v", err)
	}
}

func testCloseIdempotent(t *testing.T, s certdb.Store) {
	if err := s.Close(); err != nil {
		t.Fatalf("first Close() error = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close() error = %v", err)
	}
}
