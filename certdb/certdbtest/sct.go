package certdbtest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/certctl/certctl/certdb"
)

// For Certificate Transparency (certdb.SCTStore):
//   - AddPrecertificate works on a reserved serial and keeps the
//     precertificate when AddCertificate completes the reservation.
//   - SCT timestamps come back at millisecond precision, in UTC; nil and
//     empty Extensions are equivalent.
//   - AddSCTs is atomic: a batch with one duplicate stores nothing.

func newSCT(serial *big.Int, embedded bool, ts time.Time) *certdb.SCT {
	id := make([]byte, 32)
	rand.Read(id)
	sig := make([]byte, 72)
	rand.Read(sig)
	return &certdb.SCT{
		Serial: cloneInt(serial), LogID: id, LogURL: "http://ct.example.test/log", Operator: "Example Operator",
		Version: 0, Timestamp: ts.UTC().Truncate(time.Millisecond), Extensions: []byte{0, 0, 5, 0, 0, 0, 0, 7},
		Signature: sig, Embedded: embedded,
	}
}

func diffSCT(got, want *certdb.SCT) []string {
	var d []string
	if got.Serial == nil || got.Serial.Cmp(want.Serial) != 0 {
		d = append(d, fmt.Sprintf("Serial = %v, want %v", got.Serial, want.Serial))
	}
	if !bytes.Equal(got.LogID, want.LogID) {
		d = append(d, fmt.Sprintf("LogID = %x, want %x", got.LogID, want.LogID))
	}
	if got.LogURL != want.LogURL || got.Operator != want.Operator {
		d = append(d, fmt.Sprintf("LogURL, Operator = %q, %q, want %q, %q", got.LogURL, got.Operator, want.LogURL, want.Operator))
	}
	if got.Version != want.Version || got.Embedded != want.Embedded {
		d = append(d, fmt.Sprintf("Version, Embedded = %d, %v, want %d, %v", got.Version, got.Embedded, want.Version, want.Embedded))
	}
	if !got.Timestamp.Equal(want.Timestamp) || got.Timestamp.Location() != time.UTC {
		d = append(d, fmt.Sprintf("Timestamp = %v, want %v in UTC", got.Timestamp, want.Timestamp))
	}
	if !bytes.Equal(got.Extensions, want.Extensions) || !bytes.Equal(got.Signature, want.Signature) {
		d = append(d, fmt.Sprintf("Extensions, Signature = %x, %x, want %x, %x", got.Extensions, got.Signature, want.Extensions, want.Signature))
	}
	return d
}

func testSCTPrecertificate(t *testing.T, st certdb.Store, s certdb.SCTStore) {
	ctx := t.Context()
	now := refNow()
	c := NewCertificate(t, RandomSerial(), now.Add(-time.Hour), now.Add(24*time.Hour))
	mustReserve(t, st, ReservationOf(c))
	if _, err := s.GetPrecertificate(ctx, c.Serial); !errors.Is(err, certdb.ErrNotFound) {
		t.Fatalf("GetPrecertificate before Add: err = %v, want ErrNotFound", err)
	}
	pre := []byte("precertificate DER " + c.Serial.String())
	if err := s.AddPrecertificate(ctx, c.Serial, pre); err != nil {
		t.Fatalf("AddPrecertificate(reserved) = %v", err)
	}
	for _, tt := range []struct {
		name   string
		serial *big.Int
		der    []byte
		want   error
	}{
		{"again", c.Serial, []byte("other"), certdb.ErrDuplicate},
		{"unknown serial", RandomSerial(), pre, certdb.ErrNotFound},
		{"empty DER", c.Serial, nil, certdb.ErrInvalid},
		{"nil serial", nil, pre, certdb.ErrInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.AddPrecertificate(ctx, tt.serial, tt.der); !errors.Is(err, tt.want) {
				t.Fatalf("AddPrecertificate = %v, want %v", err, tt.want)
			}
		})
	}
	mustAdd(t, st, c)
	got, err := s.GetPrecertificate(ctx, c.Serial)
	if err != nil || !bytes.Equal(got, pre) {
		t.Fatalf("GetPrecertificate after AddCertificate = %q, %v, want %q", got, err, pre)
	}
	checkCert(t, "GetCertificate", mustGet(t, st, c.Serial), c)
}

func testSCTs(t *testing.T, st certdb.Store, s certdb.SCTStore) {
	ctx := t.Context()
	now := refNow()
	c := issue(t, st, DefaultIssuerKeyID(), 0, 24*time.Hour)
	if got, err := s.ListSCTs(ctx, c.Serial); err != nil || len(got) != 0 {
		t.Fatalf("ListSCTs(no SCTs) = %v, %v, want none", got, err)
	}
	a := newSCT(c.Serial, true, now.Add(2*time.Millisecond))
	b := newSCT(c.Serial, true, now.Add(time.Millisecond))
	b.Extensions = nil
	f := newSCT(c.Serial, false, now)
	f.LogID = a.LogID // the same log, for the final certificate
	if err := s.AddSCTs(ctx, []*certdb.SCT{a, b, f}); err != nil {
		t.Fatalf("AddSCTs = %v", err)
	}
	got, err := s.ListSCTs(ctx, c.Serial)
	if err != nil {
		t.Fatalf("ListSCTs = %v", err)
	}
	want := []*certdb.SCT{b, a, f} // embedded first, then by timestamp
	if len(got) != len(want) {
		t.Fatalf("ListSCTs returned %d SCTs, want %d", len(got), len(want))
	}
	for j := range want {
		if d := diffSCT(got[j], want[j]); len(d) > 0 {
			t.Errorf("ListSCTs[%d]: %v", j, d)
		}
	}

	other := issue(t, st, DefaultIssuerKeyID(), 0, 24*time.Hour)
	dup := newSCT(c.Serial, true, now)
	dup.LogID = a.LogID
	badSig := newSCT(other.Serial, true, now)
	badSig.Signature = nil
	shortID := newSCT(other.Serial, true, now)
	shortID.LogID = shortID.LogID[:31]
	for _, tt := range []struct {
		name string
		scts []*certdb.SCT
		want error
	}{
		{"duplicate in batch", []*certdb.SCT{newSCT(c.Serial, true, now), dup}, certdb.ErrDuplicate},
		{"unknown serial", []*certdb.SCT{newSCT(RandomSerial(), true, now)}, certdb.ErrNotFound},
		{"mixed serials", []*certdb.SCT{newSCT(other.Serial, true, now), newSCT(c.Serial, true, now)}, certdb.ErrInvalid},
		{"no signature", []*certdb.SCT{badSig}, certdb.ErrInvalid},
		{"short log ID", []*certdb.SCT{shortID}, certdb.ErrInvalid},
		{"nil", []*certdb.SCT{nil}, certdb.ErrInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.AddSCTs(ctx, tt.scts); !errors.Is(err, tt.want) {
				t.Fatalf("AddSCTs = %v, want %v", err, tt.want)
			}
		})
	}
	if got, err := s.ListSCTs(ctx, c.Serial); err != nil || len(got) != 3 {
		t.Fatalf("after failed batches ListSCTs = %d SCTs, %v; want the 3 stored (batches are atomic)", len(got), err)
	}
	if got, err := s.ListSCTs(ctx, other.Serial); err != nil || len(got) != 0 {
		t.Fatalf("ListSCTs(other) = %d SCTs, %v; want none", len(got), err)
	}
}
