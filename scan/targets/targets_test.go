package targets

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/scan"
)

func TestParse(t *testing.T) {
	tests := []struct {
		spec, startTLS string
		want           Spec
	}{
		{"web.internal", "", Spec{Target: scan.Target{Host: "web.internal"}}},
		{"web.internal.", "", Spec{Target: scan.Target{Host: "web.internal"}}},
		{"web.internal:8443", "", Spec{Target: scan.Target{Host: "web.internal", Port: 8443}}},
		{" 10.0.0.1 ", "", Spec{Target: scan.Target{Host: "10.0.0.1"}}},
		{"10.0.0.1:443", "", Spec{Target: scan.Target{Host: "10.0.0.1", Port: 443}}},
		{"fd00::1", "", Spec{Target: scan.Target{Host: "fd00::1"}}},
		{"[fd00::1]", "", Spec{Target: scan.Target{Host: "fd00::1"}}},
		{"[fd00::1]:5432", "postgres", Spec{Target: scan.Target{Host: "fd00::1", Port: 5432, StartTLS: "postgres"}}},
		{"db.internal", "postgres", Spec{Target: scan.Target{Host: "db.internal", StartTLS: "postgres"}}},
		{"postgres://db.internal", "", Spec{Target: scan.Target{Host: "db.internal", Port: 5432, StartTLS: "postgres"}}},
		{"postgres://app@db.internal:6543/app?sslmode=require", "", Spec{Target: scan.Target{Host: "db.internal", Port: 6543, StartTLS: "postgres"}}},
		{"smtp://mx.internal", "postgres", Spec{Target: scan.Target{Host: "mx.internal", Port: 25, StartTLS: "smtp"}}},
		{"https://web.internal", "", Spec{Target: scan.Target{Host: "web.internal", Port: 443}}},
		{"10.1.2.0/24", "", Spec{Range: netip.MustParsePrefix("10.1.2.0/24")}},
		{"10.1.2.77/24", "smtp", Spec{Range: netip.MustParsePrefix("10.1.2.0/24"), Target: scan.Target{StartTLS: "smtp"}}},
		{"10.1.0.0/16", "", Spec{Range: netip.MustParsePrefix("10.1.0.0/16")}},
		{"fd00::/112", "", Spec{Range: netip.MustParsePrefix("fd00::/112")}},
		{"192.0.2.7/32", "", Spec{Range: netip.MustParsePrefix("192.0.2.7/32")}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := Parse(tt.spec, tt.startTLS)
			if err != nil {
				t.Fatalf("Parse(%q, %q) error = %v", tt.spec, tt.startTLS, err)
			}
			if got != tt.want {
				t.Errorf("Parse(%q, %q) = %+v, want %+v", tt.spec, tt.startTLS, got, tt.want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name, spec, startTLS string
		want                 error
		msg                  string
	}{
		{"empty", "  ", "", ErrInvalid, "empty"},
		{"nested file", "@more.txt", "", ErrInvalid, "other target files"},
		{"IPv4 range too large", "10.0.0.0/15", "", ErrTooLarge, "131072 addresses"},
		{"IPv4 /8", "10.0.0.0/8", "", ErrTooLarge, "split it"},
		{"IPv6 range too large", "fd00::/64", "", ErrTooLarge, "/112"},
		{"bad prefix", "10.0.0.0/33", "", ErrInvalid, "CIDR"},
		{"host with slash", "web.internal/24", "", ErrInvalid, "CIDR"},
		{"bad port", "web.internal:https", "", ErrInvalid, "not a number"},
		{"port out of range", "web.internal:70000", "", ErrInvalid, "out of range"},
		{"port zero", "web.internal:0", "", ErrInvalid, "out of range"},
		{"unknown starttls", "web.internal", "imap", ErrInvalid, "STARTTLS"},
		{"unknown starttls on range", "10.0.0.0/24", "ftp", ErrInvalid, "STARTTLS"},
		{"unknown scheme", "ldaps://dir.internal", "", ErrInvalid, "scheme"},
		{"space in host", "web internal", "", ErrInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.spec, tt.startTLS)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Parse(%q, %q) error = %v, want %v containing %q", tt.spec, tt.startTLS, err, tt.want, tt.msg)
			}
		})
	}
}

func TestAddrs(t *testing.T) {
	tests := []struct {
		prefix      string
		n           int
		first, last string
	}{
		{"10.0.0.0/24", 254, "10.0.0.1", "10.0.0.254"},
		{"10.0.0.0/30", 2, "10.0.0.1", "10.0.0.2"},
		{"10.0.0.0/31", 2, "10.0.0.0", "10.0.0.1"}, // RFC 3021 point-to-point: both usable
		{"10.0.0.9/32", 1, "10.0.0.9", "10.0.0.9"},
		{"10.0.0.0/16", 65534, "10.0.0.1", "10.0.255.254"},
		{"fd00::/120", 256, "fd00::", "fd00::ff"},
		{"fd00::/112", 65536, "fd00::", "fd00::ffff"},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			s, err := Parse(tt.prefix, "")
			if err != nil {
				t.Fatal(err)
			}
			a := s.Addrs()
			if len(a) != tt.n || a[0].String() != tt.first || a[len(a)-1].String() != tt.last {
				t.Errorf("Addrs(%s) = %d addresses %v…%v, want %d %s…%s", tt.prefix, len(a), a[0], a[len(a)-1], tt.n, tt.first, tt.last)
			}
		})
	}
}

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in   string
		want []int
		err  bool
	}{
		{"443", []int{443}, false},
		{"443, 8443,443,5432", []int{443, 8443, 5432}, false},
		{"443,", []int{443}, false},
		{"", nil, true},
		{",", nil, true},
		{"https", nil, true},
		{"0", nil, true},
		{"65536", nil, true},
		{"-1", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePorts(tt.in)
			if (err != nil) != tt.err || !slices.Equal(got, tt.want) {
				t.Errorf("ParsePorts(%q) = %v, %v; want %v (error %t)", tt.in, got, err, tt.want, tt.err)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("ParsePorts(%q) error %v does not wrap ErrInvalid", tt.in, err)
			}
		})
	}
}

func TestReadFile(t *testing.T) {
	tests := []struct {
		name, in string
		specs    []string
		lines    []int
		err      string
	}{
		{"plain", "a.internal\nb.internal:8443\n", []string{"a.internal", "b.internal:8443"}, []int{1, 2}, ""},
		{"comments and blanks", "# fleet\n\n  a.internal  # the web tier\n\t10.0.0.0/30\n#b.internal\n", []string{"a.internal", "10.0.0.0/30"}, []int{3, 4}, ""},
		{"no final newline", "a.internal", []string{"a.internal"}, []int{1}, ""},
		{"CRLF", "a.internal\r\nb.internal\r\n", []string{"a.internal", "b.internal"}, []int{1, 2}, ""},
		{"hash inside a word", "a#b.internal\n", []string{"a#b.internal"}, []int{1}, ""},
		{"empty", "", nil, nil, ""},
		{"two per line", "a.internal b.internal\n", nil, nil, "line 1"},
		{"long line", strings.Repeat("a", maxLine+1), nil, nil, "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			specs, lines, err := ReadFile(strings.NewReader(tt.in))
			if tt.err != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ReadFile error = %v, want ErrInvalid containing %q", err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(specs, tt.specs) || !slices.Equal(lines, tt.lines) {
				t.Errorf("ReadFile = %q %v, %v; want %q %v", specs, lines, err, tt.specs, tt.lines)
			}
		})
	}
	t.Run("too large", func(t *testing.T) {
		big := strings.Repeat("a.internal\n", MaxFileSize/11+2)
		if _, _, err := ReadFile(strings.NewReader(big)); !errors.Is(err, ErrInvalid) {
			t.Errorf("ReadFile(%d bytes) error = %v, want ErrInvalid", len(big), err)
		}
	})
}

func TestExpand(t *testing.T) {
	tests := []struct {
		name     string
		specs    []string
		ports    []int
		startTLS string
		want     []string // Target.String() of each endpoint; "~" prefix: from a range
	}{
		{"default port", []string{"a.internal"}, nil, "", []string{"a.internal:443"}},
		{"port list", []string{"a.internal", "b.internal:9443"}, []int{443, 8443}, "",
			[]string{"a.internal:443", "a.internal:8443", "b.internal:9443"}},
		{"duplicates", []string{"a.internal:443", "a.internal", "A.internal:443"}, []int{443}, "",
			[]string{"a.internal:443", "A.internal:443"}},
		{"range", []string{"10.0.0.0/30"}, []int{443, 8443}, "",
			[]string{"~10.0.0.1:443", "~10.0.0.1:8443", "~10.0.0.2:443", "~10.0.0.2:8443"}},
		{"range overlapping a host", []string{"10.0.0.1", "10.0.0.0/30"}, []int{443}, "",
			[]string{"10.0.0.1:443", "~10.0.0.2:443"}},
		{"starttls", []string{"db.internal", "10.0.0.8/31"}, []int{5432}, "postgres",
			[]string{"postgres://db.internal:5432", "~postgres://10.0.0.8:5432", "~postgres://10.0.0.9:5432"}},
		{"IPv6", []string{"fd00::1", "[fd00::2]:8443"}, []int{443}, "", []string{"[fd00::1]:443", "[fd00::2]:8443"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps, err := Expand(tt.specs, tt.ports, tt.startTLS)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range eps {
				s := e.Target.String()
				if e.FromRange {
					s = "~" + s
				}
				got = append(got, s)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Expand(%q, %v) = %q, want %q", tt.specs, tt.ports, got, tt.want)
			}
		})
	}
	t.Run("too many endpoints", func(t *testing.T) {
		specs := []string{"10.0.0.0/16", "10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16", "10.4.0.0/16"}
		if _, err := Expand(specs, []int{443}, ""); !errors.Is(err, ErrTooLarge) {
			t.Errorf("Expand(five /16) error = %v, want ErrTooLarge", err)
		}
		if _, err := Expand(specs[:1], []int{443, 8443, 5432, 25, 993}, ""); !errors.Is(err, ErrTooLarge) {
			t.Errorf("Expand(/16 × 5 ports) error = %v, want ErrTooLarge", err)
		}
	})
}

// TestLive listens on two addresses of 127.0.4.0/29 (the whole of 127/8 is
// on the loopback interface on Linux) with the same port; the other
// addresses refuse at once.
func TestLive(t *testing.T) {
	ln1, err := net.Listen("tcp", "127.0.4.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln1.Close()
	port := ln1.Addr().(*net.TCPAddr).Port
	ln2, err := net.Listen("tcp", fmt.Sprintf("127.0.4.5:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	for _, ln := range []net.Listener{ln1, ln2} {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	eps, err := Expand([]string{"127.0.4.0/29", "unlisted.invalid"}, []int{port}, "")
	if err != nil {
		t.Fatal(err)
	}
	var calls, lastTotal int
	live, err := Live(t.Context(), &net.Dialer{}, eps, 5*time.Second, 4, func(done, total int) { calls++; lastTotal = total })
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range live {
		got = append(got, e.Target.Addr())
	}
	want := []string{fmt.Sprintf("127.0.4.2:%d", port), fmt.Sprintf("127.0.4.5:%d", port), fmt.Sprintf("unlisted.invalid:%d", port)}
	if !slices.Equal(got, want) {
		t.Errorf("Live = %v, want %v (the range's listening addresses, and every non-range endpoint)", got, want)
	}
	if calls != 6 || lastTotal != 6 {
		t.Errorf("progress called %d times (total %d), want 6 (one per range address)", calls, lastTotal)
	}

	ctx, cancel := contextCanceled(t)
	defer cancel()
	if _, err := Live(ctx, &net.Dialer{}, eps, time.Second, 1, nil); err == nil {
		t.Error("Live with a canceled context succeeded")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"web.internal", "web.internal:8443", "10.0.0.1", "[fd00::1]:443", "fd00::1",
		"10.0.0.0/24", "fd00::/120", "postgres://u@db:5432/x", "smtp://mx", "@x", "a:b:c", "[", "]:1", "1.2.3.4/0"} {
		f.Add(s, "")
		f.Add(s, "postgres")
	}
	f.Fuzz(func(t *testing.T, spec, startTLS string) {
		s, err := Parse(spec, startTLS)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Parse(%q) error %v wraps neither ErrInvalid nor ErrTooLarge", spec, err)
			}
			return
		}
		if s.IsRange() {
			if n := len(s.Addrs()); n == 0 || n > MaxRangeAddrs {
				t.Fatalf("Parse(%q) = range %s with %d addresses", spec, s.Range, n)
			}
			return
		}
		tgt := s.Target
		if tgt.Port == 0 {
			tgt.Port = 443
		}
		if err := tgt.Validate(); err != nil {
			t.Fatalf("Parse(%q) = %+v, which does not validate: %v", spec, s.Target, err)
		}
		// Round trip: the canonical spelling parses back to the same target.
		again, err := Parse(tgt.String(), "")
		if err != nil || again.Target != tgt {
			t.Fatalf("Parse(%q) = %+v; Parse(%q) = %+v, %v", spec, tgt, tgt.String(), again.Target, err)
		}
	})
}

func FuzzReadFile(f *testing.F) {
	f.Add("a.internal\n# c\n\n b:1 # x\n10.0.0.0/24\r\n")
	f.Add("a b\n")
	f.Add("#\n\t#\n")
	f.Fuzz(func(t *testing.T, in string) {
		specs, lines, err := ReadFile(strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ReadFile error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if len(specs) != len(lines) {
			t.Fatalf("%d specs, %d line numbers", len(specs), len(lines))
		}
		for i, s := range specs {
			if s == "" || strings.ContainsAny(s, " \t\r\n") || strings.HasPrefix(s, "#") {
				t.Fatalf("spec %q (line %d) has whitespace or is a comment", s, lines[i])
			}
			if i > 0 && lines[i] <= lines[i-1] {
				t.Fatalf("line numbers not increasing: %v", lines)
			}
			if !strings.Contains(in, s) {
				t.Fatalf("spec %q not in the input", s)
			}
		}
	})
}

func contextCanceled(t *testing.T) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx, cancel
}
