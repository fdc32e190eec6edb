package schedule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/certdb/certdbtest"
	"github.com/certctl/certctl/certdb/sqlite"
	"github.com/certctl/certctl/internal/catest"
	"github.com/certctl/certctl/scan"
	"github.com/certctl/certctl/scan/targets"
)

// fakeScanner answers scans from a table the test edits between runs. It
// records the targets scanned.
type fakeScanner struct {
	mu      sync.Mutex
	results map[string]scan.Result // by Target.String()
	scanned []string
}

func (f *fakeScanner) set(target string, r scan.Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.results == nil {
		f.results = map[string]scan.Result{}
	}
	f.results[target] = r
}

func (f *fakeScanner) scan(ctx context.Context, t scan.Target, opts ...scan.Option) (*scan.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scanned = append(f.scanned, t.String())
	r, ok := f.results[t.String()]
	if !ok {
		return nil, fmt.Errorf("fake: no result for %s", t)
	}
	r.Target = t
	return &r, nil
}

func (f *fakeScanner) takeScanned() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.scanned
	f.scanned = nil
	slices.Sort(s)
	return s
}

// recordingHook keeps the events it gets.
type recordingHook struct {
	mu     sync.Mutex
	events []*Event
}

func (h *recordingHook) Fire(_ context.Context, ev *Event) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, ev)
	return nil
}

func (h *recordingHook) String() string { return "recording" }

func (h *recordingHook) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, ev := range h.events {
		out = append(out, ev.Kind+" "+ev.Target)
	}
	h.events = nil
	slices.Sort(out)
	return out
}

func (h *recordingHook) last() *Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.events) == 0 {
		return nil
	}
	return h.events[len(h.events)-1]
}

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	return catest.SQLiteStore(t)
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func leaf(serial string, der []byte, notAfter time.Time) *scan.CertSummary {
	sum := sha256.Sum256(der)
	return &scan.CertSummary{Serial: serial, Subject: "CN=svc", NotAfter: notAfter, SHA256: hex.EncodeToString(sum[:])}
}

func graded(grade string, c *scan.CertSummary, now time.Time, checks ...string) scan.Result {
	r := scan.Result{Grade: grade, Certificate: c, StartedAt: now, Findings: []scan.Finding{}}
	for _, ch := range checks {
		r.Findings = append(r.Findings, scan.Finding{Check: ch, Severity: scan.SeverityWarning, Message: ch})
	}
	return r
}

func TestRunner(t *testing.T) {
	ctx := t.Context()
	st := openStore(t)
	clk := &clock{now: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)}
	fake := &fakeScanner{}
	hook := &recordingHook{}
	reg := prometheus.NewRegistry()
	r, err := NewRunner(st, WithScanFunc(fake.scan), WithHook(hook), WithClock(clk.Now), WithRegisterer(reg),
		WithExpiryWarning(14*24*time.Hour), WithLease(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewRunner(st, WithRegisterer(reg)); err == nil {
		t.Error("a second Runner on one registry: no error")
	}

	// A certificate of this CA, served by db; revoked later.
	issued := certdbtest.NewCertificate(t, certdbtest.RandomSerial(), clk.Now().Add(-time.Hour), clk.Now().Add(90*24*time.Hour))
	if err := st.AddCertificate(ctx, issued); err != nil {
		t.Fatal(err)
	}
	dbLeaf := leaf(certdb.SerialHex(issued.Serial), issued.DER, issued.NotAfter)
	webLeaf := leaf("0a0b", []byte("web cert"), clk.Now().Add(60*24*time.Hour))

	sc := &certdb.ScanSchedule{Targets: []string{"web.internal", "db.internal:5432"}, Interval: time.Hour,
		Options: []byte(`{"ports":[443,8443]}`), NextRun: clk.Now()}
	if err := st.AddScanSchedule(ctx, sc); err != nil {
		t.Fatal(err)
	}
	fake.set("web.internal:443", graded("A", webLeaf, clk.Now()))
	fake.set("web.internal:8443", graded("B", webLeaf, clk.Now(), "protocol.tls10"))
	fake.set("db.internal:5432", graded("A", dbLeaf, clk.Now()))

	n, err := r.RunDue(ctx)
	if err != nil || n != 1 {
		t.Fatalf("first RunDue = %d, %v; want 1 schedule", n, err)
	}
	if got, want := fake.takeScanned(), []string{"db.internal:5432", "web.internal:443", "web.internal:8443"}; !slices.Equal(got, want) {
		t.Errorf("scanned %v, want %v", got, want)
	}
	if got := hook.take(); len(got) != 0 {
		t.Errorf("first run fired %v, want nothing (all graded well, nothing expiring)", got)
	}
	if n, err := r.RunDue(ctx); err != nil || n != 0 {
		t.Errorf("RunDue again at once = %d, %v; want 0 (not due)", n, err)
	}

	// An hour later: web:8443 drops to C, web:443 fails, db's certificate
	// is revoked, and web's certificate is now inside the expiry window.
	clk.Add(time.Hour)
	if err := st.Revoke(ctx, issued.Serial, certdb.ReasonKeyCompromise, clk.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	soon := leaf("0c0d", []byte("new web cert"), clk.Now().Add(10*24*time.Hour))
	fake.set("web.internal:443", scan.Result{StartedAt: clk.Now(), Error: "connection refused"})
	fake.set("web.internal:8443", graded("C", soon, clk.Now(), "protocol.tls10", "cipher.3des"))
	fake.set("db.internal:5432", graded("A", dbLeaf, clk.Now()))
	if n, err := r.RunDue(ctx); err != nil || n != 1 {
		t.Fatalf("second RunDue = %d, %v", n, err)
	}
	want := []string{"expiring web.internal:8443", "grade_dropped web.internal:443", "grade_dropped web.internal:8443", "revoked db.internal:5432"}
	if got := hook.take(); !slices.Equal(got, want) {
		t.Errorf("second run fired %v, want %v", got, want)
	}

	// Same state an hour later: edge-triggered events do not repeat.
	clk.Add(time.Hour)
	if n, err := r.RunDue(ctx); err != nil || n != 1 {
		t.Fatalf("third RunDue = %d, %v", n, err)
	}
	if got := hook.take(); len(got) != 0 {
		t.Errorf("third run fired %v, want nothing (no change)", got)
	}

	hist, err := st.ScanHistory(ctx, "web.internal:8443", 0)
	if err != nil || len(hist) != 3 {
		t.Fatalf("history of web.internal:8443 = %d records, %v; want 3", len(hist), err)
	}
	if hist[0].Grade != "C" || hist[2].Grade != "B" || hist[0].Serial.Text(16) != "c0d" || hist[0].NotAfter == nil {
		t.Errorf("history = %s/%s/%s, serial %x", hist[0].Grade, hist[1].Grade, hist[2].Grade, hist[0].Serial)
	}
	d := Compare(mustDecode(t, hist[1]), mustDecode(t, hist[0]))
	if !d.Empty() {
		t.Errorf("no change between the last two scans, diff = %+v", d)
	}
	d = Compare(mustDecode(t, hist[2]), mustDecode(t, hist[1]))
	if !d.GradeDropped || !d.CertificateChanged || len(d.FindingsAdded) != 1 || d.FindingsAdded[0].Check != "cipher.3des" {
		t.Errorf("diff B -> C = %+v", d)
	}

	for _, m := range []struct {
		name, label string
		want        float64
	}{
		{"certctl_scans_total", "ok", 7},
		{"certctl_scans_total", "failed", 2},
		{"certctl_scan_schedule_runs_total", "", 3},
		{"certctl_scan_events_total", "grade_dropped", 2},
		{"certctl_scan_events_total", "expiring", 1},
		{"certctl_scan_events_total", "revoked", 1},
	} {
		if got := counterValue(t, reg, m.name, m.label); got != m.want {
			t.Errorf("%s{%s} = %v, want %v", m.name, m.label, got, m.want)
		}
	}
}

// counterValue reads a counter from reg: the series whose only label has
// value label ("" for a counter without labels).
func counterValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			lv := ""
			if len(m.GetLabel()) > 0 {
				lv = m.GetLabel()[0].GetValue()
			}
			if lv == label {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func mustDecode(t *testing.T, r *certdb.ScanResult) *scan.Result {
	t.Helper()
	res, err := Decode(r)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestRunnerRevokedEvent checks the event's contents, and that a
// certificate of another CA with the same serial is not reported.
func TestRunnerRevokedEvent(t *testing.T) {
	ctx := t.Context()
	st := openStore(t)
	now := time.Now().UTC()
	issued := certdbtest.NewCertificate(t, certdbtest.RandomSerial(), now.Add(-time.Hour), now.Add(30*24*time.Hour))
	if err := st.AddCertificate(ctx, issued); err != nil {
		t.Fatal(err)
	}
	if err := st.Revoke(ctx, issued.Serial, certdb.ReasonSuperseded, now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	fake := &fakeScanner{}
	fake.set("ours.internal:443", graded("A", leaf(certdb.SerialHex(issued.Serial), issued.DER, issued.NotAfter), now))
	fake.set("theirs.internal:443", graded("A", leaf(certdb.SerialHex(issued.Serial), []byte("another CA's certificate"), issued.NotAfter), now))
	hook := &recordingHook{}
	r, err := NewRunner(st, WithScanFunc(fake.scan), WithHook(hook))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddScanSchedule(ctx, &certdb.ScanSchedule{Targets: []string{"ours.internal", "theirs.internal"}, Interval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	ev := hook.last()
	if got := hook.take(); !slices.Equal(got, []string{"revoked ours.internal:443"}) {
		t.Fatalf("events = %v, want only the revoked certificate of ours.internal", got)
	}
	if ev.Reason != "superseded" || ev.RevokedAt == nil || ev.Serial != certdb.SerialHex(issued.Serial) || !strings.Contains(ev.Message, "revoked") || ev.ResultID == 0 {
		t.Errorf("event = %+v", ev)
	}
}

func TestRunnerBadSchedule(t *testing.T) {
	ctx := t.Context()
	st := openStore(t)
	fake := &fakeScanner{}
	fake.set("ok.internal:443", graded("A", nil, time.Now()))
	r, err := NewRunner(st, WithScanFunc(fake.scan))
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range []*certdb.ScanSchedule{
		{Targets: []string{"ok.internal"}, Interval: time.Hour},
		{Targets: []string{"10.0.0.0/8"}, Interval: time.Hour},
		{Targets: []string{"ok.internal"}, Interval: time.Hour, Options: []byte(`{"ca_bundle":"/nonexistent/ca.pem"}`)},
		{Targets: []string{"ok.internal"}, Interval: time.Hour, Options: []byte(`{"portz":[1]}`)},
	} {
		if err := st.AddScanSchedule(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	n, err := r.RunDue(ctx)
	if n != 4 || err == nil {
		t.Fatalf("RunDue = %d, %v; want 4 schedules and an error", n, err)
	}
	for _, want := range []string{"schedule 2:", "too many addresses", "schedule 3:", "CA bundle", "schedule 4:", "portz"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if got := fake.takeScanned(); !slices.Equal(got, []string{"ok.internal:443"}) {
		t.Errorf("scanned %v, want the good schedule's endpoint", got)
	}
}

func TestRunnerRun(t *testing.T) {
	st := openStore(t)
	fake := &fakeScanner{}
	fake.set("ok.internal:443", graded("A", nil, time.Now()))
	r, err := NewRunner(st, WithScanFunc(fake.scan), WithPoll(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddScanSchedule(t.Context(), &certdb.ScanSchedule{Targets: []string{"ok.internal"}, Interval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	for {
		h, err := st.ScanHistory(t.Context(), "ok.internal:443", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}

// TestBatchRange scans a range with two live addresses (127.0.5.0/28 is on
// the loopback interface) and a named host: only the live addresses and
// the host are scanned.
func TestBatchRange(t *testing.T) {
	ln1, err := net.Listen("tcp", "127.0.5.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln1.Close()
	port := ln1.Addr().(*net.TCPAddr).Port
	ln2, err := net.Listen("tcp", fmt.Sprintf("127.0.5.9:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	fake := &fakeScanner{}
	for _, a := range []string{"127.0.5.3", "127.0.5.9", "named.internal"} {
		fake.set(fmt.Sprintf("%s:%d", a, port), graded("A", nil, time.Now()))
	}
	eps, err := targets.Expand([]string{"127.0.5.0/28", "named.internal"}, []int{port}, "")
	if err != nil {
		t.Fatal(err)
	}
	var phases []string
	b := &Batch{Scan: fake.scan, Concurrency: 2, Progress: func(phase string, done, total int) {
		if done == total {
			phases = append(phases, fmt.Sprintf("%s %d", phase, total))
		}
	}}
	res, err := b.Run(t.Context(), eps, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Probed != 14 || res.Live != 2 || len(res.Results) != 3 {
		t.Errorf("probed %d, live %d, %d results; want 14, 2, 3", res.Probed, res.Live, len(res.Results))
	}
	for _, r := range res.Results {
		if r.Grade != "A" {
			t.Errorf("%s: grade %q (error %q)", r.Target, r.Grade, r.Error)
		}
	}
	if !slices.Equal(phases, []string{"probe 14", "scan 3"}) {
		t.Errorf("progress phases %v", phases)
	}
	// A scan that errors still yields a result.
	res, err = (&Batch{Scan: fake.scan}).Run(t.Context(), []targets.Endpoint{{Target: scan.Target{Host: "unknown.internal", Port: 443}}}, nil)
	if err != nil || len(res.Results) != 1 || !strings.Contains(res.Results[0].Error, "no result") || res.Results[0].StartedAt.IsZero() {
		t.Errorf("Run(unknown) = %+v, %v", res, err)
	}
}

func TestCompare(t *testing.T) {
	now := time.Now()
	c1, c2 := leaf("01", []byte("a"), now), leaf("02", []byte("b"), now)
	withProtos := func(r scan.Result, names ...string) scan.Result {
		for _, n := range names {
			r.Protocols = append(r.Protocols, scan.Protocol{Name: n, Supported: true})
		}
		r.Protocols = append(r.Protocols, scan.Protocol{Name: "SSL 3.0"})
		return r
	}
	tests := []struct {
		name       string
		prev, cur  *scan.Result
		dropped    bool
		certChange bool
		added      []string
		removed    []string
		protoAdd   []string
		protoDel   []string
		empty      bool
	}{
		{"first scan", nil, ptr(graded("A", c1, now)), false, true, nil, nil, nil, nil, false},
		{"same", ptr(graded("A", c1, now, "x")), ptr(graded("A", c1, now, "x")), false, false, nil, nil, nil, nil, true},
		{"drop", ptr(graded("A", c1, now)), ptr(graded("B", c1, now, "y")), true, false, []string{"y"}, nil, nil, nil, false},
		{"rise", ptr(graded("C", c1, now, "y", "z")), ptr(graded("A+", c2, now)), false, true, nil, []string{"y", "z"}, nil, nil, false},
		{"to T", ptr(graded("A-", c1, now)), ptr(graded("T", c1, now)), true, false, nil, nil, nil, nil, false},
		{"failed", ptr(graded("A", c1, now)), &scan.Result{Error: "refused"}, true, true, nil, nil, nil, nil, false},
		{"failed again", &scan.Result{Error: "refused"}, &scan.Result{Error: "refused"}, false, false, nil, nil, nil, nil, true},
		{"recovered", &scan.Result{Error: "refused"}, ptr(graded("B", c1, now)), false, true, nil, nil, nil, nil, false},
		{"protocols", ptr(withProtos(graded("A", c1, now), "TLS 1.2", "TLS 1.0")), ptr(withProtos(graded("A", c1, now), "TLS 1.2", "TLS 1.3")),
			false, false, nil, nil, []string{"TLS 1.3"}, []string{"TLS 1.0"}, false},
	}
	checks := func(fs []scan.Finding) []string {
		var out []string
		for _, f := range fs {
			out = append(out, f.Check)
		}
		return out
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Compare(tt.prev, tt.cur)
			if d.GradeDropped != tt.dropped || d.CertificateChanged != tt.certChange || !slices.Equal(checks(d.FindingsAdded), tt.added) ||
				!slices.Equal(checks(d.FindingsRemoved), tt.removed) || !slices.Equal(d.ProtocolsAdded, tt.protoAdd) ||
				!slices.Equal(d.ProtocolsRemoved, tt.protoDel) || d.Empty() != tt.empty {
				t.Errorf("Compare = %+v", d)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestRecord(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	res := graded("A", leaf("00ff01", []byte("x"), now.Add(time.Hour)), now)
	res.Target = scan.Target{Host: "db.internal", Port: 5432, StartTLS: "postgres"}
	rec, err := Record(&res, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Target != "postgres://db.internal:5432" || rec.Grade != "A" || !rec.ScannedAt.Equal(now) ||
		rec.Serial.Text(16) != "ff01" || !rec.NotAfter.Equal(now.Add(time.Hour)) || !json.Valid(rec.Result) {
		t.Errorf("Record = %+v", rec)
	}
	back, err := Decode(rec)
	if err != nil || back.Grade != "A" || back.Certificate.Serial != "00ff01" {
		t.Errorf("Decode = %+v, %v", back, err)
	}
	bad := graded("", &scan.CertSummary{Serial: "not hex"}, time.Time{})
	rec, err = Record(&bad, now)
	if err != nil || rec.Serial != nil || !rec.ScannedAt.Equal(now) {
		t.Errorf("Record(bad serial, no start) = %+v, %v", rec, err)
	}
}

func TestWebhook(t *testing.T) {
	var (
		mu   sync.Mutex
		got  []Event
		auth []string
	)
	status := http.StatusNoContent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev Event
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &ev) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, ev)
		auth = append(auth, r.Header.Get("Authorization"))
		s := status
		mu.Unlock()
		w.WriteHeader(s)
	}))
	defer srv.Close()
	cfg := Config{Hooks: []HookConfig{{Webhook: srv.URL + "/hook?token=s3cret", Headers: map[string]string{"Authorization": "env:HOOK_AUTH"}}}}
	opts, err := cfg.RunnerOptions(func(k string) string { return map[string]string{"HOOK_AUTH": "Bearer abc"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	var rc runnerConfig
	for _, o := range opts {
		o(&rc)
	}
	h := rc.hooks[0]
	if s := h.String(); strings.Contains(s, "s3cret") || !strings.Contains(s, "/hook") {
		t.Errorf("String() = %q: must show the path and not the query", s)
	}
	days := 3
	ev := &Event{Kind: EventExpiring, Target: "web.internal:443", Grade: "A", DaysLeft: &days, Message: "expires in 3 days"}
	if err := h.Fire(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(got) != 1 || got[0].Kind != EventExpiring || *got[0].DaysLeft != 3 || auth[0] != "Bearer abc" {
		t.Errorf("webhook got %+v with Authorization %q", got, auth)
	}
	status = http.StatusInternalServerError
	mu.Unlock()
	err = h.Fire(t.Context(), ev)
	if err == nil || !strings.Contains(err.Error(), "500") || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "abc") {
		t.Errorf("Fire against a failing server = %v: want the status, without secrets", err)
	}
	srv.Close()
	err = h.Fire(t.Context(), ev)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Fire against a closed server = %v: want an error without the token", err)
	}
}

func TestExecHook(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	h, err := NewExec(`printf '%s|%s|%s|%s|%s|' "$CERTCTL_EVENT" "$CERTCTL_TARGET" "$CERTCTL_GRADE" "$CERTCTL_PREVIOUS_GRADE" "$CERTCTL_DAYS_LEFT" > `+out+` && cat >> `+out, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	days := 0
	na := time.Now()
	ev := &Event{Kind: EventGradeDropped, Target: "postgres://db.internal:5432", Grade: "B", PreviousGrade: "A", DaysLeft: &days, NotAfter: &na, Message: "dropped"}
	if err := h.Fire(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	env, stdin, _ := strings.Cut(strings.Replace(string(b), "|", "\x00", 4), "|")
	if env != "grade_dropped\x00postgres://db.internal:5432\x00B\x00A\x000" {
		t.Errorf("environment seen by the command = %q", env)
	}
	var back Event
	if err := json.Unmarshal([]byte(stdin), &back); err != nil || back.Kind != EventGradeDropped || back.PreviousGrade != "A" {
		t.Errorf("stdin = %q (%v)", stdin, err)
	}

	t.Setenv("CERTCTL_PKCS11_PIN", "1234")
	leak, _ := NewExec(`test -z "$CERTCTL_PKCS11_PIN" && test -n "$PATH"`, 5*time.Second)
	if err := leak.Fire(t.Context(), ev); err != nil {
		t.Errorf("the hook saw the server's secret environment, or no PATH: %v", err)
	}

	fail, _ := NewExec("echo broken pipe >&2; exit 3", time.Second)
	if err := fail.Fire(t.Context(), ev); err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "broken pipe") {
		t.Errorf("failing command: %v, want its status and output", err)
	}
	slow, _ := NewExec("sleep 30", 200*time.Millisecond)
	if err := slow.Fire(t.Context(), ev); err == nil || !strings.Contains(err.Error(), "killed after") {
		t.Errorf("slow command: %v, want killed after the timeout", err)
	}
}

func TestConfigRejects(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		msg  string
	}{
		{"no kind", Config{Hooks: []HookConfig{{}}}, "needs webhook or exec"},
		{"both", Config{Hooks: []HookConfig{{Webhook: "https://h/x", Exec: "true"}}}, "not both"},
		{"bad URL", Config{Hooks: []HookConfig{{Webhook: "ftp://h/x?token=s3cret"}}}, "http(s)"},
		{"unknown event", Config{Hooks: []HookConfig{{Exec: "true", Events: []string{"grade_rose"}}}}, "grade_rose"},
		{"empty env", Config{Hooks: []HookConfig{{Webhook: "https://h/x", Headers: map[string]string{"Authorization": "env:NOPE"}}}}, "NOPE"},
		{"headers on exec", Config{Hooks: []HookConfig{{Exec: "true", Headers: map[string]string{"A": "b"}}}}, "webhooks only"},
		{"negative poll", Config{Poll: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cfg.RunnerOptions(func(string) string { return "" })
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.msg) || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("RunnerOptions = %v, want ErrInvalid mentioning %q", err, tt.msg)
			}
		})
	}
}

func TestEventFilter(t *testing.T) {
	rec := &recordingHook{}
	f := &filtered{Hook: rec, kinds: []string{EventRevoked}}
	for _, k := range []string{EventExpiring, EventRevoked, EventGradeDropped} {
		if err := f.Fire(t.Context(), &Event{Kind: k, Target: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if got := rec.take(); !slices.Equal(got, []string{"revoked x"}) {
		t.Errorf("filtered hook got %v", got)
	}
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		in  string
		ok  bool
		msg string
	}{
		{``, true, ""},
		{`{"ports":[443,8443],"starttls":"smtp","timeout":"20s"}`, true, ""},
		{`{"ports":[0]}`, false, "out of range"},
		{`{"starttls":"imap"}`, false, "imap"},
		{`{"client_cert":"/c.pem"}`, false, "both"},
		{`{"timeout":"soon"}`, false, "duration"},
		{`{"extra":1}`, false, "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseOptions([]byte(tt.in))
			if (err == nil) != tt.ok || (err != nil && !strings.Contains(err.Error(), tt.msg)) {
				t.Errorf("ParseOptions(%s) = %v, want ok=%t %q", tt.in, err, tt.ok, tt.msg)
			}
		})
	}
	o, err := ParseOptions([]byte(`{"timeout":"2d"}`))
	if err != nil || time.Duration(o.Timeout) != 48*time.Hour {
		t.Errorf("timeout 2d = %v, %v", o.Timeout, err)
	}
	b, _ := json.Marshal(Options{Timeout: Duration(90 * time.Second)})
	if string(b) != `{"timeout":"1m30s"}` {
		t.Errorf("marshal = %s", b)
	}
}

// Prune deletes what is older than the retention, counted from the runner's
// clock, and keeps each target's newest result.
func TestRunnerPrune(t *testing.T) {
	st := openStore(t)
	clk := &clock{now: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)}
	r, err := NewRunner(st, WithClock(clk.Now), WithRetention(30*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, days := range []int{-60, -40, -20, -1} { // web: two inside the retention
		if err := st.AddScanResult(t.Context(), certdbtest.NewScanResult("web.internal:443", clk.Now().AddDate(0, 0, days))); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.AddScanResult(t.Context(), certdbtest.NewScanResult("old.internal:443", clk.Now().AddDate(0, 0, -100))); err != nil {
		t.Fatal(err)
	}
	n, err := r.Prune(t.Context())
	if err != nil || n != 2 {
		t.Fatalf("Prune() = %d, %v; want 2 deleted", n, err)
	}
	web, _ := st.ScanHistory(t.Context(), "web.internal:443", 0)
	old, _ := st.ScanHistory(t.Context(), "old.internal:443", 0)
	if len(web) != 2 || len(old) != 1 {
		t.Errorf("after Prune: web has %d results (want 2), old has %d (want its newest, 1)", len(web), len(old))
	}
	if _, err := NewRunner(st, WithRetention(0)); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewRunner with retention 0 = %v, want ErrInvalid", err)
	}
}
