package pkcs11

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseURI(t *testing.T) {
	t.Parallel()
	slot := uint(42)
	tests := []struct {
		in    string
		want  URI
		pin   string
		canon string // canonical String() form; "" means same as in
	}{
		{in: "pkcs11:token=ca-token;object=issuing-ca", want: URI{Token: "ca-token", Object: "issuing-ca"}},
		{in: "pkcs11:object=k;id=%01%02%FF", want: URI{Object: "k", ID: []byte{1, 2, 0xff}}},
		{in: "PKCS11:id=%61", want: URI{ID: []byte("a")}, canon: "pkcs11:id=%61"},
		{in: "pkcs11:token=My%20Token;object=a%3Bb", want: URI{Token: "My Token", Object: "a;b"}},
		{in: "pkcs11:manufacturer=SoftHSM%20project;serial=abc;model=SoftHSM%20v2;slot-id=42;object=x;type=private",
			want: URI{Manufacturer: "SoftHSM project", Serial: "abc", Model: "SoftHSM v2", SlotID: &slot, Object: "x", Type: "private"}},
		{in: "pkcs11:token=t;object=k?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/certctl/pin",
			want: URI{Token: "t", Object: "k", ModulePath: "/usr/lib/softhsm/libsofthsm2.so", PINSource: "file:/etc/certctl/pin"}},
		{in: "pkcs11:object=k?pin-value=s%26cr=t&module-name=softhsm2", pin: "s&cr=t",
			want: URI{Object: "k", ModuleName: "softhsm2"}, canon: "pkcs11:object=k?module-name=softhsm2"},
		{in: "pkcs11:", want: URI{}},
		{in: "pkcs11:token=a&b", want: URI{Token: "a&b"}}, // "&" needs no escaping in the path (RFC 7512 §2.3)
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := ParseURI(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			want.pinValue = tt.pin
			if !reflect.DeepEqual(*u, want) {
				t.Fatalf("ParseURI = %#v\nwant       %#v", *u, want)
			}
			canon := tt.canon
			if canon == "" {
				canon = tt.in
			}
			if u.String() != canon {
				t.Errorf("String() = %q, want %q", u.String(), canon)
			}
		})
	}
}

func TestParseURIErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", `does not start with "pkcs11:"`},
		{"file:/x", `does not start with "pkcs11:"`},
		{"pkcs11:token=a;token=b", `"token" given twice`},
		{"pkcs11:object=a?pin-value=1&pin-value=2", `"pin-value" given twice`},
		{"pkcs11:object", `without "="`},
		{"pkcs11:token=a;;object=b", "stray separator"},
		{"pkcs11:token=", `"token": empty value`},
		{"pkcs11:id=", `"id": empty value`},
		{"pkcs11:objet=k", `"objet" is not supported`},
		{"pkcs11:x-vendor=1", `"x-vendor" is not supported`},
		{"pkcs11:object=k?pin=1234", `"pin" is not supported`},
		{"pkcs11:type=secret", `"type": must be one of`},
		{"pkcs11:slot-id=x1", `"slot-id": not a decimal`},
		{"pkcs11:slot-id=99999999999999999999", `"slot-id": out of range`},
		{"pkcs11:id=%G1", "bad percent-encoding"},
		{"pkcs11:id=%1", "bad percent-encoding"},
		{"pkcs11:object=a b", `character ' ' must be percent-encoded`},
		{"pkcs11:object=a/b", `character '/' must be percent-encoded`},
		{"pkcs11:object=k#frag", "fragment"},
		{"pkcs11:object=k?", "empty query"},
		{"pkcs11:object=k?pin-value=1&pin-source=file:/p", "both pin-value and pin-source"},
		{"pkcs11:Token=a", "lowercase"},
		{"pkcs11:object=" + strings.Repeat("a", maxURILen), "longer than 65536 bytes"},
		{"pkcs11:id=" + strings.Repeat("%56", maxValueLen+1), `"id": longer than 1024 bytes`},
	}
	for _, tt := range tests {
		t.Run(tt.in[:min(len(tt.in), 60)], func(t *testing.T) {
			_, err := ParseURI(tt.in)
			if err == nil {
				t.Fatal("ParseURI succeeded")
			}
			if !errors.Is(err, ErrURI) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseURI: %v, want ErrURI containing %q", err, tt.want)
			}
		})
	}
}

// The PIN never shows: not in String, %v, %+v, %#v, nor slog.
func TestURIRedaction(t *testing.T) {
	t.Parallel()
	u, err := ParseURI("pkcs11:token=t;object=k?pin-value=s3cr3t-PIN")
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "uri", u, "value", *u)
	outs := []string{u.String(), fmt.Sprint(u), fmt.Sprintf("%v %+v %#v %s", u, u, u, u),
		fmt.Sprintf("%v %+v %#v", *u, *u, *u), fmt.Sprintf("%+v", struct{ U URI }{*u}), logged.String()}
	for _, s := range outs {
		if strings.Contains(s, "s3cr3t") {
			t.Errorf("PIN shown: %s", s)
		}
	}
	if !u.HasPINValue() || !strings.Contains(u.Unredacted(), "pin-value=s3cr3t-PIN") {
		t.Errorf("Unredacted() = %q lost the PIN", u.Unredacted())
	}
	if u.WithoutPIN().HasPINValue() || !u.HasPINValue() {
		t.Error("WithoutPIN must copy, not modify")
	}
}

func TestPINSources(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pinFile := write("pin", "4321\r\nignored second line\n")
	tests := []struct {
		name, uri, fallback, want string
		ok                        bool
		err                       string
	}{
		{"value", "pkcs11:object=k?pin-value=1111", "9", "1111", true, ""},
		{"file:", "pkcs11:object=k?pin-source=file:" + pinFile, "9", "4321", true, ""},
		{"file:///", "pkcs11:object=k?pin-source=file://" + pinFile, "", "4321", true, ""},
		{"plain path", "pkcs11:object=k?pin-source=" + pinFile, "", "4321", true, ""},
		{"fallback", "pkcs11:object=k", "9999", "9999", true, ""},
		{"none", "pkcs11:object=k", "", "", false, ""},
		{"empty file", "pkcs11:object=k?pin-source=file:" + write("empty", "\n"), "", "", false, "empty"},
		{"big file", "pkcs11:object=k?pin-source=file:" + write("big", strings.Repeat("1", 2000)), "", "", false, "larger than"},
		{"missing file", "pkcs11:object=k?pin-source=file:" + filepath.Join(dir, "nope"), "", "", false, "no such file"},
		{"other scheme", "pkcs11:object=k?pin-source=https://example.com/pin", "", "", false, "only file:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pin, ok, err := mustURI(t, tt.uri).pin(tt.fallback)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("pin() error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || pin != tt.want || ok != tt.ok {
				t.Fatalf("pin() = %q, %v, %v; want %q, %v", pin, ok, err, tt.want, tt.ok)
			}
		})
	}
}

// FuzzParseURI: ParseURI never panics; whatever it accepts has a canonical
// form that parses back to the same URI (PIN included) and is stable; the
// redacted form parses to the same URI minus the PIN.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:token=ca-token;object=issuing-ca;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pin",
		"pkcs11:object=k?pin-value=1234",
		"pkcs11:manufacturer=SoftHSM%20project;serial=abc;model=m;slot-id=0;type=private",
		"pkcs11:token=a&b;object=%3B%3F%23",
		"PKCS11:id=%aa%BB",
		"pkcs11:",
		"pkcs11:object=k?module-name=x&pin-value=%00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			if !errors.Is(err, ErrURI) {
				t.Fatalf("error %v does not wrap ErrURI", err)
			}
			return
		}
		canon := u.Unredacted()
		u2, err := ParseURI(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, s, err)
		}
		if !reflect.DeepEqual(u, u2) {
			t.Fatalf("round trip of %q via %q: %#v != %#v", s, canon, *u, *u2)
		}
		if again := u2.Unredacted(); again != canon {
			t.Fatalf("canonical form not stable: %q -> %q", canon, again)
		}
		u3, err := ParseURI(u.String())
		if err != nil {
			t.Fatalf("redacted form %q does not parse: %v", u.String(), err)
		}
		if !reflect.DeepEqual(u3, u.WithoutPIN()) {
			t.Fatalf("redacted round trip: %#v != %#v", *u3, *u.WithoutPIN())
		}
		if u.pinValue != "" && strings.Contains(u.String(), "pin-value") {
			t.Fatalf("String() shows pin-value: %q", u.String())
		}
	})
}
