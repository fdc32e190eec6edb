package scan

import (
	"bytes"
	"crypto/x509"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in      string
		defPort int
		want    Target
	}{
		{"example.com", 443, Target{Host: "example.com", Port: 443}},
		{"example.com.", 0, Target{Host: "example.com", Port: 443}},
		{"example.com:8443", 443, Target{Host: "example.com", Port: 8443}},
		{"10.0.0.1", 5432, Target{Host: "10.0.0.1", Port: 5432}},
		{"10.0.0.1:636", 443, Target{Host: "10.0.0.1", Port: 636}},
		{"[2001:db8::1]:8443", 443, Target{Host: "2001:db8::1", Port: 8443}},
		{"[2001:db8::1]", 443, Target{Host: "2001:db8::1", Port: 443}},
		{"2001:db8::1", 443, Target{Host: "2001:db8::1", Port: 443}},
		{"https://example.com/path", 8443, Target{Host: "example.com", Port: 443}},
		{"postgres://db.internal", 443, Target{Host: "db.internal", Port: 5432, StartTLS: StartTLSPostgres}},
		{"postgresql://user@db.internal:6432/app?sslmode=require", 0, Target{Host: "db.internal", Port: 6432, StartTLS: StartTLSPostgres}},
		{"smtp://mx.example.com", 0, Target{Host: "mx.example.com", Port: 25, StartTLS: StartTLSSMTP}},
		{"smtp://mx.example.com:587", 0, Target{Host: "mx.example.com", Port: 587, StartTLS: StartTLSSMTP}},
		{"  host  ", 443, Target{Host: "host", Port: 443}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTarget(tt.in, tt.defPort)
			if err != nil || got != tt.want {
				t.Fatalf("ParseTarget(%q, %d) = %+v, %v; want %+v", tt.in, tt.defPort, got, err, tt.want)
			}
			again, err := ParseTarget(got.String(), 1)
			if err != nil || again != got {
				t.Errorf("ParseTarget(%q) = %+v, %v; want the same target back", got.String(), again, err)
			}
		})
	}
}

func TestParseTargetRejects(t *testing.T) {
	for _, in := range []string{"", "  ", "host:0", "host:65536", "host:x", "ftp://host", "[::1", "host:1:2:3", "a b:443", "https://", ":443"} {
		t.Run(in, func(t *testing.T) {
			if got, err := ParseTarget(in, 443); !errors.Is(err, ErrInvalidTarget) {
				t.Errorf("ParseTarget(%q) = %+v, %v; want ErrInvalidTarget", in, got, err)
			}
		})
	}
}

func TestTargetSNI(t *testing.T) {
	tests := []struct {
		t    Target
		want string
	}{
		{Target{Host: "a.example"}, "a.example"},
		{Target{Host: "10.1.1.1"}, ""},
		{Target{Host: "::1"}, ""},
		{Target{Host: "10.1.1.1", ServerName: "db.internal"}, "db.internal"},
	}
	for _, tt := range tests {
		if got := tt.t.SNI(); got != tt.want {
			t.Errorf("%+v.SNI() = %q, want %q", tt.t, got, tt.want)
		}
	}
}

func TestFinalGrade(t *testing.T) {
	f := func(check, sev, cap string) Finding { return Finding{Check: check, Severity: sev, GradeCap: cap} }
	longHSTS := &HSTS{MaxAge: hstsMinMaxAge}
	tests := []struct {
		name     string
		score    string
		findings []Finding
		hsts     *HSTS
		want     string
	}{
		{"clean A with HSTS", GradeA, nil, longHSTS, GradeAPlus},
		{"clean A, short HSTS", GradeA, nil, &HSTS{MaxAge: 86400}, GradeA},
		{"clean A, no HTTP", GradeA, nil, nil, GradeA},
		{"info findings keep A+", GradeA, []Finding{f("mtls.required", SeverityInfo, "")}, longHSTS, GradeAPlus},
		{"warning without cap", GradeA, []Finding{f("certificate.expires_soon", SeverityWarning, "")}, longHSTS, GradeAMinus},
		{"A- cap", GradeA, []Finding{f("tls.no_fallback_scsv", SeverityWarning, GradeAMinus)}, longHSTS, GradeAMinus},
		{"B cap", GradeA, []Finding{f("protocol.tls10", SeverityWarning, GradeB)}, longHSTS, GradeB},
		{"worst cap wins", GradeA, []Finding{f("x", SeverityWarning, GradeB), f("y", SeverityCritical, GradeC)}, nil, GradeC},
		{"score below caps", GradeD, []Finding{f("x", SeverityWarning, GradeB)}, nil, GradeD},
		{"T", GradeA, []Finding{f("certificate.expired", SeverityCritical, GradeT)}, longHSTS, GradeT},
		{"M", GradeA, []Finding{f("certificate.name_mismatch", SeverityCritical, GradeM)}, nil, GradeM},
		{"T beats M", GradeA, []Finding{f("a", SeverityCritical, GradeM), f("b", SeverityCritical, GradeT)}, nil, GradeT},
		{"F beats T", GradeA, []Finding{f("a", SeverityCritical, GradeT), f("mtls.accepts_other_ca", SeverityCritical, GradeF)}, nil, GradeF},
		{"score F beats T", GradeF, []Finding{f("a", SeverityCritical, GradeT)}, nil, GradeF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := finalGrade(tt.score, tt.findings, tt.hsts); got != tt.want {
				t.Errorf("finalGrade() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestScores(t *testing.T) {
	for _, tt := range []struct {
		fn   func(int) int
		in   int
		want int
	}{
		{keyExchangeScore, 1024, 80}, {keyExchangeScore, 2048, 90}, {keyExchangeScore, 3072, 90},
		{keyExchangeScore, 4096, 100}, {keyExchangeScore, 512, 40}, {keyExchangeScore, 0, 0},
		{cipherScore, 0, 0}, {cipherScore, 56, 20}, {cipherScore, 112, 20}, {cipherScore, 128, 80}, {cipherScore, 256, 100},
	} {
		if got := tt.fn(tt.in); got != tt.want {
			t.Errorf("score(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
	for score, want := range map[int]string{100: GradeA, 80: GradeA, 79: GradeB, 65: GradeB, 50: GradeC, 35: GradeD, 20: GradeE, 19: GradeF} {
		if got := scoreGrade(score); got != want {
			t.Errorf("scoreGrade(%d) = %q, want %q", score, got, want)
		}
	}
	if !(GradeRank(GradeAPlus) > GradeRank(GradeA) && GradeRank(GradeA) > GradeRank(GradeAMinus) &&
		GradeRank(GradeAMinus) > GradeRank(GradeB) && GradeRank(GradeE) > GradeRank(GradeF) &&
		GradeRank(GradeF) == GradeRank(GradeT) && GradeRank("") < GradeRank(GradeF)) {
		t.Error("GradeRank order is wrong")
	}
}

func TestParseHSTS(t *testing.T) {
	tests := []struct {
		header            string
		maxAge            int64
		subdomains, preld bool
	}{
		{"max-age=31536000; includeSubDomains; preload", 31536000, true, true},
		{`Max-Age="600"`, 600, false, false},
		{"includesubdomains", -1, true, false},
		{"max-age=-5", -1, false, false},
		{"max-age=abc; preload", -1, false, true},
	}
	for _, tt := range tests {
		h := &HSTS{Header: tt.header}
		parseHSTS(h)
		if h.MaxAge != tt.maxAge || h.IncludeSubDomains != tt.subdomains || h.Preload != tt.preld {
			t.Errorf("parseHSTS(%q) = %+v", tt.header, h)
		}
	}
}

func FuzzParseHSTS(f *testing.F) {
	f.Add("max-age=31536000; includeSubDomains; preload")
	f.Add(`max-age="1";;;=`)
	f.Fuzz(func(t *testing.T, header string) {
		h := &HSTS{Header: header}
		parseHSTS(h)
		if h.MaxAge < -1 {
			t.Fatalf("MaxAge %d < -1", h.MaxAge)
		}
	})
}

func FuzzParseSCTList(f *testing.F) {
	good, err := marshalSCTList([][]byte{{1, 2, 3}, bytes.Repeat([]byte{9}, 300)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{0x04, 0x02, 0x00, 0x00})
	f.Add([]byte{0x04, 0x05, 0x00, 0x03, 0x00, 0x01, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		scts, err := parseSCTList(b)
		if err != nil {
			return
		}
		if len(scts) == 0 {
			t.Fatal("parsed an empty SCT list")
		}
		again, err := marshalSCTList(scts)
		if err != nil {
			t.Fatal(err)
		}
		back, err := parseSCTList(again)
		if err != nil || !slices.EqualFunc(back, scts, bytes.Equal) {
			t.Fatalf("round trip: %x -> %v -> %x -> %v, %v", b, scts, again, back, err)
		}
	})
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"example.com", "[::1]:443", "postgres://u@db:5432/x", "smtp://mx", "1.2.3.4:5", "a:b:c"} {
		f.Add(s, 443)
	}
	f.Fuzz(func(t *testing.T, s string, def int) {
		tg, err := ParseTarget(s, def)
		if err != nil {
			return
		}
		if err := tg.Validate(); err != nil {
			t.Fatalf("ParseTarget(%q) = %+v, which does not validate: %v", s, tg, err)
		}
		back, err := ParseTarget(tg.String(), def)
		if err != nil || back != tg {
			t.Fatalf("ParseTarget(%q) = %+v; String %q parses to %+v, %v", s, tg, tg.String(), back, err)
		}
	})
}

func TestParseSCTListRejects(t *testing.T) {
	for _, b := range [][]byte{nil, {0x04, 0x00}, {0x04, 0x02, 0x00, 0x00}, {0x04, 0x03, 0x00, 0x01, 0x00}, {0x05, 0x00}} {
		if _, err := parseSCTList(b); err == nil {
			t.Errorf("parseSCTList(%x) = nil error", b)
		}
	}
}

func TestExpiryWarning(t *testing.T) {
	const day = 24 * time.Hour
	now := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name            string
		lifetime, left  time.Duration
		threshold       time.Duration
		wantExpiresSoon bool
	}{
		{"30-day cert, 29 days left", 30 * day, 29 * day, 30 * day, false},
		{"30-day cert, past its renewal point", 30 * day, 9 * day, 30 * day, true},
		{"90-day cert, 10 days left, 14-day threshold", 90 * day, 10 * day, 14 * day, true},
		{"90-day cert, 20 days left, 14-day threshold", 90 * day, 20 * day, 14 * day, false},
		{"24-hour cert, 12 hours left", day, 12 * time.Hour, 30 * day, false},
		{"24-hour cert, 7 hours left", day, 7 * time.Hour, 30 * day, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf := &x509.Certificate{NotBefore: now.Add(tt.left - tt.lifetime), NotAfter: now.Add(tt.left)}
			if got := tt.left < expiryWarning(leaf, tt.threshold); got != tt.wantExpiresSoon {
				t.Errorf("expires soon = %v, want %v (warning window %v)", got, tt.wantExpiresSoon, expiryWarning(leaf, tt.threshold))
			}
		})
	}
}
