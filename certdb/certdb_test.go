package certdb_test

import (
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/certdb"
)

func TestParseSerial(t *testing.T) {
	tests := []struct {
		in   string
		want string // hex from SerialHex, "" = error
	}{
		{"01", "01"},
		{"0x0a0b", "0a0b"},
		{"0A:0B", "0a0b"},
		{" 7f ", "7f"},
		{"4bf226bf12d8108c7e1655426d819ac938580ea6", "4bf226bf12d8108c7e1655426d819ac938580ea6"},
		{"ffffffffffffffffffffffffffffffffffffffff", "ffffffffffffffffffffffffffffffffffffffff"},
		{"", ""},
		{"00", ""},
		{"-01", ""},
		{"zz", ""},
		{"0x", ""},
		{"0100000000000000000000000000000000000000ff", ""}, // 21 octets
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := certdb.ParseSerial(tt.in)
			if tt.want == "" {
				if err == nil || !errors.Is(err, certdb.ErrInvalid) {
					t.Fatalf("ParseSerial(%q) = %v, %v; want ErrInvalid", tt.in, got, err)
				}
				return
			}
			if err != nil || certdb.SerialHex(got) != tt.want {
				t.Fatalf("ParseSerial(%q) = %v, %v; want %s", tt.in, certdb.SerialHex(got), err, tt.want)
			}
		})
	}
}

// FuzzParseSerial: serials come from users and API callers. Whatever parses
// is positive, at most 20 octets, and round-trips through SerialHex.
func FuzzParseSerial(f *testing.F) {
	for _, s := range []string{"01", "0x7f", "de:ad:be:ef", "", "-1", "ffffffffffffffffffffffffffffffffffffffff", "0x-1", "+1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := certdb.ParseSerial(s)
		if err != nil {
			if !errors.Is(err, certdb.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if n.Sign() <= 0 || len(n.Bytes()) > 20 {
			t.Fatalf("ParseSerial(%q) = %x: not positive or > 20 octets", s, n)
		}
		back, err := certdb.ParseSerial(certdb.SerialHex(n))
		if err != nil || back.Cmp(n) != 0 {
			t.Fatalf("round trip of %q: %v, %v", s, back, err)
		}
	})
}

func TestParseReason(t *testing.T) {
	for _, name := range certdb.ReasonNames() {
		r, err := certdb.ParseReason(name)
		if err != nil || r.String() != name || !r.Valid() {
			t.Fatalf("ParseReason(%q) = %v, %v", name, r, err)
		}
		if r2, err := certdb.ParseReason(strings.ToUpper(name)); err != nil || r2 != r {
			t.Fatalf("ParseReason is case-sensitive for %q", name)
		}
	}
	if r, err := certdb.ParseReason("1"); err != nil || r != certdb.ReasonKeyCompromise {
		t.Fatalf("ParseReason(\"1\") = %v, %v", r, err)
	}
	for _, bad := range []string{"7", "bogus", "", "11"} {
		if _, err := certdb.ParseReason(bad); !errors.Is(err, certdb.ErrInvalid) {
			t.Fatalf("ParseReason(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if certdb.Reason(7).Valid() {
		t.Fatal("reason 7 is unused in RFC 5280")
	}
}

func TestParseStatus(t *testing.T) {
	for _, st := range []certdb.Status{certdb.StatusReserved, certdb.StatusValid, certdb.StatusRevoked} {
		got, err := certdb.ParseStatus(st.String())
		if err != nil || got != st {
			t.Fatalf("ParseStatus(%q) = %v, %v", st.String(), got, err)
		}
	}
	if _, err := certdb.ParseStatus("expired"); !errors.Is(err, certdb.ErrInvalid) {
		t.Fatalf("expired is derived, not stored: %v", err)
	}
}

func TestQueryValidate(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name string
		q    certdb.Query
		ok   bool
	}{
		{"zero", certdb.Query{}, true},
		{"expiry with now", certdb.Query{Expiry: certdb.ExpiryExpired, Now: now}, true},
		{"expiry without now", certdb.Query{Expiry: certdb.ExpiryUnexpired}, false},
		{"bad expiry", certdb.Query{Expiry: 7, Now: now}, false},
		{"bad status", certdb.Query{Status: 9}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.q.Validate()
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, certdb.ErrInvalid)) {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	if got := (certdb.Query{Limit: 5000}).EffectiveLimit(); got != certdb.MaxLimit {
		t.Fatalf("EffectiveLimit caps at %d, got %d", certdb.MaxLimit, got)
	}
	if got := (certdb.Query{}).EffectiveLimit(); got != certdb.DefaultLimit {
		t.Fatalf("default limit %d", got)
	}
}

func TestExpired(t *testing.T) {
	now := time.Now()
	c := &certdb.Certificate{Serial: big.NewInt(1), NotAfter: now}
	if !c.Expired(now) || c.Expired(now.Add(-time.Second)) {
		t.Fatal("Expired: NotAfter is the first instant of expiry")
	}
}

func TestAuditQueryEffectiveLimit(t *testing.T) {
	tests := []struct{ limit, want int }{
		{-1, certdb.DefaultLimit},
		{0, certdb.DefaultLimit},
		{1, 1},
		{certdb.MaxLimit, certdb.MaxLimit},
		{certdb.MaxLimit + 1, certdb.MaxLimit},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
			if got := (certdb.AuditQuery{Limit: tt.limit}).EffectiveLimit(); got != tt.want {
				t.Fatalf("AuditQuery{Limit: %d}.EffectiveLimit() = %d, want %d", tt.limit, got, tt.want)
			}
		})
	}
}

func TestStateQuery(t *testing.T) {
	now := time.Now()
	tests := []struct {
		state  string
		status certdb.Status
		expiry certdb.Expiry
		err    bool
	}{
		{"", certdb.StatusAny, certdb.ExpiryAny, false},
		{"valid", certdb.StatusValid, certdb.ExpiryUnexpired, false},
		{"expired", certdb.StatusValid, certdb.ExpiryExpired, false},
		{"revoked", certdb.StatusRevoked, certdb.ExpiryAny, false},
		{"reserved", certdb.StatusReserved, certdb.ExpiryAny, false},
		{"bogus", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.state, func(t *testing.T) {
			q, err := certdb.StateQuery(tt.state, now)
			if tt.err {
				if !errors.Is(err, certdb.ErrInvalid) {
					t.Fatalf("StateQuery(%q) error = %v, want ErrInvalid", tt.state, err)
				}
				return
			}
			if err != nil || q.Status != tt.status || q.Expiry != tt.expiry || q.Validate() != nil {
				t.Fatalf("StateQuery(%q) = %+v, %v", tt.state, q, err)
			}
		})
	}
	c := &certdb.Certificate{Status: certdb.StatusValid, NotAfter: now.Add(-time.Second)}
	if c.State(now) != "expired" {
		t.Fatal("an unrevoked certificate past NotAfter is expired")
	}
	c.Status = certdb.StatusRevoked
	if c.State(now) != "revoked" {
		t.Fatal("a revoked certificate stays revoked after expiry")
	}
}

func TestValidateOCSPAndCRL(t *testing.T) {
	now := time.Now()
	good := &certdb.OCSPResponse{Serial: big.NewInt(1), DER: []byte{0x30}, Status: certdb.StatusValid, ThisUpdate: now, NextUpdate: now.Add(time.Hour)}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid response: %v", err)
	}
	for name, mod := range map[string]func(r *certdb.OCSPResponse){
		"no DER":        func(r *certdb.OCSPResponse) { r.DER = nil },
		"reserved":      func(r *certdb.OCSPResponse) { r.Status = certdb.StatusReserved },
		"no thisUpdate": func(r *certdb.OCSPResponse) { r.ThisUpdate = time.Time{} },
		"no nextUpdate": func(r *certdb.OCSPResponse) { r.NextUpdate = time.Time{} },
	} {
		r := *good
		mod(&r)
		if err := r.Validate(); !errors.Is(err, certdb.ErrInvalid) {
			t.Errorf("%s: Validate() = %v, want ErrInvalid", name, err)
		}
	}
	if err := (*certdb.OCSPResponse)(nil).Validate(); !errors.Is(err, certdb.ErrInvalid) {
		t.Errorf("nil response: %v", err)
	}

	crl := &certdb.CRL{Number: big.NewInt(1), DER: []byte{0x30}, ThisUpdate: now, NextUpdate: now.Add(time.Hour)}
	if err := crl.Validate(); err != nil {
		t.Fatalf("valid CRL: %v", err)
	}
	for name, mod := range map[string]func(c *certdb.CRL){
		"no number":       func(c *certdb.CRL) { c.Number = nil },
		"negative number": func(c *certdb.CRL) { c.Number = big.NewInt(-1) },
		"negative shard":  func(c *certdb.CRL) { c.Shard = -1 },
		"no DER":          func(c *certdb.CRL) { c.DER = nil },
		"no thisUpdate":   func(c *certdb.CRL) { c.ThisUpdate = time.Time{} },
	} {
		c := *crl
		mod(&c)
		if err := c.Validate(); !errors.Is(err, certdb.ErrInvalid) {
			t.Errorf("%s: Validate() = %v, want ErrInvalid", name, err)
		}
	}
	if err := (*certdb.CRL)(nil).Validate(); !errors.Is(err, certdb.ErrInvalid) {
		t.Errorf("nil CRL: %v", err)
	}
}

func TestCheckSchemaVersion(t *testing.T) {
	if err := certdb.CheckSchemaVersion(3, 3); err != nil {
		t.Fatal(err)
	}
	if err := certdb.CheckSchemaVersion(1, 3); !errors.Is(err, certdb.ErrSchema) || !strings.Contains(err.Error(), "run `certctl db migrate`") {
		t.Fatalf("behind: %v", err)
	}
	if err := certdb.CheckSchemaVersion(4, 3); !errors.Is(err, certdb.ErrSchema) || !strings.Contains(err.Error(), "upgrade certctl") {
		t.Fatalf("ahead: %v", err)
	}
}
