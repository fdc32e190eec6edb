package certdbtest

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/certctl/certctl/certdb"
)

// scanTests are the subtests for [certdb.ScanStore], which Run adds to its
// list. What they pin down:
//   - Result bytes come back exactly as sent; nil NotAfter and Serial come
//     back nil; nil and empty IssuerKeyID are equivalent (nil back).
//   - ScanHistory of an unknown target is empty, not an error.
//   - Nil Options come back nil; a zero NextRun becomes CreatedAt.
//   - ClaimDueSchedules returns nil or an empty slice when nothing is due;
//     a schedule is claimed by exactly one of many concurrent claimers.
func scanTests() []struct {
	name string
	fn   func(t *testing.T, s certdb.Store)
} {
	tests := []struct {
		name string
		fn   func(*testing.T, certdb.ScanStore)
	}{
		{"ScanResultRoundTrip", testScanResultRoundTrip},
		{"ScanHistory", testScanHistory},
		{"ScanLatest", testScanLatest},
		{"ScanPrune", testScanPrune},
		{"ScanResultInvalid", testScanResultInvalid},
		{"ScanScheduleRoundTrip", testScanScheduleRoundTrip},
		{"ScanScheduleInvalid", testScanScheduleInvalid},
		{"ScanClaim", testScanClaim},
		{"ScanClaimConcurrent", testScanClaimConcurrent},
	}
	out := make([]struct {
		name string
		fn   func(t *testing.T, s certdb.Store)
	}, len(tests))
	for i, tt := range tests {
		out[i].name = tt.name
		out[i].fn = func(t *testing.T, s certdb.Store) {
			ss, ok := s.(certdb.ScanStore)
			if !ok {
				t.Fatalf("certdbtest: %T does not implement certdb.ScanStore", s)
			}
			tt.fn(t, ss)
		}
	}
	return out
}

// NewScanResult returns a realistic result record for target scanned at at:
// grade A, a leaf with a random serial expiring 90 days later, and a small
// JSON document standing in for a scan.Result.
func NewScanResult(target string, at time.Time) *certdb.ScanResult {
	at = at.UTC().Truncate(time.Microsecond)
	na := at.Add(90 * 24 * time.Hour)
	return &certdb.ScanResult{
		Target:      target,
		Grade:       "A",
		ScannedAt:   at,
		NotAfter:    &na,
		Serial:      RandomSerial(),
		IssuerKeyID: DefaultIssuerKeyID(),
		Result:      []byte(fmt.Sprintf(`{"target": {"host": %q},  "grade": "A", "findings": [ ]}`, target)),
	}
}

func diffScanResult(got, want *certdb.ScanResult) []string {
	var d []string
	if got.ID != want.ID || got.Target != want.Target || got.Grade != want.Grade {
		d = append(d, fmt.Sprintf("ID/Target/Grade = %d/%q/%q, want %d/%q/%q", got.ID, got.Target, got.Grade, want.ID, want.Target, want.Grade))
	}
	d = append(d, diffTime("ScannedAt", got.ScannedAt, want.ScannedAt)...)
	switch {
	case (got.NotAfter == nil) != (want.NotAfter == nil):
		d = append(d, fmt.Sprintf("NotAfter = %v, want %v", got.NotAfter, want.NotAfter))
	case got.NotAfter != nil:
		d = append(d, diffTime("NotAfter", *got.NotAfter, *want.NotAfter)...)
	}
	switch {
	case (got.Serial == nil) != (want.Serial == nil):
		d = append(d, fmt.Sprintf("Serial = %v, want %v", got.Serial, want.Serial))
	case got.Serial != nil && got.Serial.Cmp(want.Serial) != 0:
		d = append(d, fmt.Sprintf("Serial = %x, want %x", got.Serial, want.Serial))
	}
	if !bytes.Equal(got.IssuerKeyID, want.IssuerKeyID) {
		d = append(d, fmt.Sprintf("IssuerKeyID = %x, want %x", got.IssuerKeyID, want.IssuerKeyID))
	}
	if len(want.IssuerKeyID) == 0 && got.IssuerKeyID != nil {
		d = append(d, "IssuerKeyID = empty non-nil, want nil")
	}
	if !bytes.Equal(got.Result, want.Result) {
		d = append(d, fmt.Sprintf("Result = %s, want %s", got.Result, want.Result))
	}
	return d
}

func testScanResultRoundTrip(t *testing.T, s certdb.ScanStore) {
	ctx := t.Context()
	now := time.Now()
	full := NewScanResult("web.example.test:443", now.Add(-time.Hour))
	full.ScannedAt = now.Add(-time.Hour).Add(123 * time.Nanosecond) // truncated to the µs
	failed := &certdb.ScanResult{Target: "web.example.test:443", ScannedAt: now, IssuerKeyID: []byte{},
		Result: []byte(`{"error":"dial tcp: connection refused"}`)}
	for _, r := range []*certdb.ScanResult{full, failed} {
		if err := s.AddScanResult(ctx, r); err != nil {
			t.Fatalf("AddScanResult(%s) = %v", r.Result, err)
		}
		if r.ID <= 0 {
			t.Fatalf("AddScanResult set ID %d, want > 0", r.ID)
		}
	}
	if failed.ID <= full.ID {
		t.Errorf("IDs %d then %d: want increasing", full.ID, failed.ID)
	}
	got, err := s.ScanHistory(ctx, "web.example.test:443", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("ScanHistory returned %d results, want 2", len(got))
	}
	wantFull := *full
	wantFull.ScannedAt = full.ScannedAt.Truncate(time.Microsecond)
	failed.IssuerKeyID = nil
	for i, want := range []*certdb.ScanResult{failed, &wantFull} {
		if d := diffScanResult(got[i], want); len(d) > 0 {
			t.Errorf("result %d:\n%s", i, joinLines(d))
		}
	}
}

func testScanHistory(t *testing.T, s certdb.ScanStore) {
	ctx := t.Context()
	base := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	var ids []int64
	for i := range 5 {
		r := NewScanResult("a.example.test:443", base.Add(time.Duration(i)*time.Hour))
		if err := s.AddScanResult(ctx, r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	// Same time as the newest: the higher ID comes first.
	tie := NewScanResult("a.example.test:443", base.Add(4*time.Hour))
	if err := s.AddScanResult(ctx, tie); err != nil {
		t.Fatal(err)
	}
	// Older but added last: ordered by time, not by insertion.
	old := NewScanResult("a.example.test:443", base.Add(-time.Hour))
	if err := s.AddScanResult(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := s.AddScanResult(ctx, NewScanResult("b.example.test:443", base.Add(10*time.Hour))); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		target string
		limit  int
		want   []int64
	}{
		{"all", "a.example.test:443", 0, []int64{tie.ID, ids[4], ids[3], ids[2], ids[1], ids[0], old.ID}},
		{"limit", "a.example.test:443", 3, []int64{tie.ID, ids[4], ids[3]}},
		{"other target", "b.example.test:443", 10, nil},
		{"unknown", "nothing.example.test:443", 10, nil},
		{"prefix is not a match", "a.example.test", 10, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ScanHistory(ctx, tt.target, tt.limit)
			if err != nil {
				t.Fatalf("ScanHistory(%q, %d) = %v", tt.target, tt.limit, err)
			}
			var gotIDs []int64
			for _, r := range got {
				gotIDs = append(gotIDs, r.ID)
			}
			if tt.target == "b.example.test:443" {
				if len(got) != 1 || got[0].Target != tt.target {
					t.Fatalf("ScanHistory(%q) = %d results, want the 1 of that target", tt.target, len(got))
				}
				return
			}
			if !slices.Equal(gotIDs, tt.want) {
				t.Errorf("ScanHistory(%q, %d) IDs = %v, want %v", tt.target, tt.limit, gotIDs, tt.want)
			}
		})
	}
}

func testScanLatest(t *testing.T, s certdb.ScanStore) {
	ctx := t.Context()
	got, err := s.LatestScanResults(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("LatestScanResults on an empty store = %d results, %v; want none", len(got), err)
	}
	base := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	want := map[string]int64{}
	// Insert newest in the middle so that neither first nor last insert wins.
	for _, target := range []string{"z.example.test:443", "a.example.test:8443", "postgres://db.example.test:5432"} {
		for _, h := range []int{1, 3, 2} {
			r := NewScanResult(target, base.Add(time.Duration(h)*time.Hour))
			r.Grade = fmt.Sprintf("grade-%d", h)
			if err := s.AddScanResult(ctx, r); err != nil {
				t.Fatal(err)
			}
			if h == 3 {
				want[target] = r.ID
			}
		}
	}
	got, err = s.LatestScanResults(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var targets []string
	for _, r := range got {
		targets = append(targets, r.Target)
		if r.ID != want[r.Target] || r.Grade != "grade-3" {
			t.Errorf("latest of %s = ID %d grade %q, want ID %d grade-3", r.Target, r.ID, r.Grade, want[r.Target])
		}
	}
	wantTargets := []string{"a.example.test:8443", "postgres://db.example.test:5432", "z.example.test:443"}
	if !slices.Equal(targets, wantTargets) {
		t.Errorf("LatestScanResults targets = %v, want %v", targets, wantTargets)
	}
}

// PruneScanResults deletes what is older than the cut-off but never a
// target's newest result, however old.
func testScanPrune(t *testing.T, s certdb.ScanStore) {
	ctx := t.Context()
	base := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	add := func(target string, days int) *certdb.ScanResult {
		t.Helper()
		r := NewScanResult(target, base.AddDate(0, 0, days))
		if err := s.AddScanResult(ctx, r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	// a: scanned on days 0, 10, 20 and 30; b (gone since): days 0 and 5.
	for _, d := range []int{0, 10, 20, 30} {
		add("a.example.test:443", d)
	}
	add("b.example.test:443", 0)
	lastB := add("b.example.test:443", 5)

	n, err := s.PruneScanResults(ctx, base.AddDate(0, 0, 15)) // keep what is from day 15 on
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 { // a's days 0 and 10, b's day 0
		t.Errorf("PruneScanResults deleted %d, want 3", n)
	}
	a, err := s.ScanHistory(ctx, "a.example.test:443", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 2 || !a[0].ScannedAt.Equal(base.AddDate(0, 0, 30)) || !a[1].ScannedAt.Equal(base.AddDate(0, 0, 20)) {
		t.Errorf("after pruning, a has %d results, want days 30 and 20", len(a))
	}
	b, err := s.ScanHistory(ctx, "b.example.test:443", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 1 || b[0].ID != lastB.ID {
		t.Errorf("after pruning, b has %d results, want only its newest (ID %d)", len(b), lastB.ID)
	}
	if n, err := s.PruneScanResults(ctx, base.AddDate(0, 0, 15)); err != nil || n != 0 {
		t.Errorf("second PruneScanResults = %d, %v; want 0, nil", n, err)
	}
}

func testScanResultInvalid(t *testing.T, s certdb.ScanStore) {
	now := time.Now()
	mod := func(f func(*certdb.ScanResult)) *certdb.ScanResult {
		r := NewScanResult("x.example.test:443", now)
		f(r)
		return r
	}
	tests := []struct {
		name string
		r    *certdb.ScanResult
	}{
		{"nil", nil},
		{"no target", mod(func(r *certdb.ScanResult) { r.Target = "" })},
		{"no time", mod(func(r *certdb.ScanResult) { r.ScannedAt = time.Time{} })},
		{"zero serial", mod(func(r *certdb.ScanResult) { r.Serial = new(big.Int) })},
		{"negative serial", mod(func(r *certdb.ScanResult) { r.Serial = big.NewInt(-5) })},
		{"no result", mod(func(r *certdb.ScanResult) { r.Result = nil })},
		{"bad JSON", mod(func(r *certdb.ScanResult) { r.Result = []byte(`{"grade":`) })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.AddScanResult(t.Context(), tt.r); !errors.Is(err, certdb.ErrInvalid) {
				t.Errorf("AddScanResult = %v, want ErrInvalid", err)
			}
		})
	}
	got, err := s.ScanHistory(t.Context(), "x.example.test:443", 0)
	if err != nil || len(got) != 0 {
		t.Errorf("after rejected adds: ScanHistory = %d results, %v; want none", len(got), err)
	}
}

func diffSchedule(got, want *certdb.ScanSchedule) []string {
	var d []string
	if got.ID != want.ID || !slices.Equal(got.Targets, want.Targets) || got.Interval != want.Interval {
		d = append(d, fmt.Sprintf("ID/Targets/Interval = %d/%q/%v, want %d/%q/%v", got.ID, got.Targets, got.Interval, want.ID, want.Targets, want.Interval))
	}
	if !bytes.Equal(got.Options, want.Options) || (got.Options == nil) != (want.Options == nil) {
		d = append(d, fmt.Sprintf("Options = %q, want %q", got.Options, want.Options))
	}
	d = append(d, diffTime("NextRun", got.NextRun, want.NextRun)...)
	d = append(d, diffTime("LastRun", got.LastRun, want.LastRun)...)
	d = append(d, diffTime("CreatedAt", got.CreatedAt, want.CreatedAt)...)
	return d
}

func testScanScheduleRoundTrip(t *testing.T, s certdb.ScanStore) {
	ctx := t.Context()
	if l, err := s.ListScanSchedules(ctx); err != nil || len(l) != 0 {
		t.Fatalf("ListScanSchedules on an empty store = %d, %v; want none", len(l), err)
	}
	created := time.Now().Add(-time.Minute).UTC().Truncate(time.Microsecond)
	explicit := &certdb.ScanSchedule{
		Targets:   []string{"10.0.0.0/30", "web.example.test:443", "@hosts.txt"},
		Interval:  90 * time.Minute,
		Options:   []byte(`{"ports": [443, 8443], "starttls": ""}`),
		NextRun:   created.Add(time.Hour),
		CreatedAt: created,
	}
	before := time.Now().UTC().Truncate(time.Microsecond)
	defaults := &certdb.ScanSchedule{Targets: []string{"db.example.test"}, Interval: time.Hour}
	for _, sc := range []*certdb.ScanSchedule{explicit, defaults} {
		if err := s.AddScanSchedule(ctx, sc); err != nil {
			t.Fatalf("AddScanSchedule(%v) = %v", sc.Targets, err)
		}
		if sc.ID <= 0 {
			t.Fatalf("AddScanSchedule set ID %d, want > 0", sc.ID)
		}
	}
	after := time.Now().Add(time.Millisecond)
	if defaults.CreatedAt.Before(before.Add(-time.Minute)) || defaults.CreatedAt.After(after.Add(time.Minute)) {
		t.Errorf("default CreatedAt = %v, want about now (%v)", defaults.CreatedAt, before)
	}
	if !defaults.NextRun.Equal(defaults.CreatedAt) {
		t.Errorf("default NextRun = %v, want CreatedAt %v", defaults.NextRun, defaults.CreatedAt)
	}
	got, err := s.ListScanSchedules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("ListScanSchedules = %d schedules, want 2", len(got))
	}
	for i, want := range []*certdb.ScanSchedule{explicit, defaults} {
		if d := diffSchedule(got[i], want); len(d) > 0 {
			t.Errorf("schedule %d:\n%s", i, joinLines(d))
		}
	}
	if err := s.RemoveScanSchedule(ctx, explicit.ID); err != nil {
		t.Fatalf("RemoveScanSchedule(%d) = %v", explicit.ID, err)
	}
	if err := s.RemoveScanSchedule(ctx, explicit.ID); !errors.Is(err, certdb.ErrNotFound) {
		t.Errorf("second RemoveScanSchedule(%d) = %v, want ErrNotFound", explicit.ID, err)
	}
	if err := s.RemoveScanSchedule(ctx, 987654); !errors.Is(err, certdb.ErrNotFound) {
		t.Errorf("RemoveScanSchedule(unknown) = %v, want ErrNotFound", err)
	}
	got, err = s.ListScanSchedules(ctx)
	if err != nil || len(got) != 1 || got[0].ID != defaults.ID {
		t.Fatalf("after remove: ListScanSchedules = %v, %v; want only %d", got, err, defaults.ID)
	}
}

func testScanScheduleInvalid(t *testing.T, s certdb.ScanStore) {
	mod := func(f func(*certdb.ScanSchedule)) *certdb.ScanSchedule {
		sc := &certdb.ScanSchedule{Targets: []string{"a.example.test"}, Interval: time.Hour}
		f(sc)
		return sc
	}
	tests := []struct {
		name string
		sc   *certdb.ScanSchedule
	}{
		{"nil", nil},
		{"no targets", mod(func(sc *certdb.ScanSchedule) { sc.Targets = nil })},
		{"empty target", mod(func(sc *certdb.ScanSchedule) { sc.Targets = []string{"a", ""} })},
		{"zero interval", mod(func(sc *certdb.ScanSchedule) { sc.Interval = 0 })},
		{"sub-microsecond interval", mod(func(sc *certdb.ScanSchedule) { sc.Interval = 999 })},
		{"negative interval", mod(func(sc *certdb.ScanSchedule) { sc.Interval = -time.Hour })},
		{"options not JSON", mod(func(sc *certdb.ScanSchedule) { sc.Options = []byte("ports=443") })},
		{"options not an object", mod(func(sc *certdb.ScanSchedule) { sc.Options = []byte(`[443]`) })},
		{"options null", mod(func(sc *certdb.ScanSchedule) { sc.Options = []byte(`null`) })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.AddScanSchedule(t.Context(), tt.sc); !errors.Is(err, certdb.ErrInvalid) {
				t.Errorf("AddScanSchedule = %v, want ErrInvalid", err)
			}
		})
	}
	if l, err := s.ListScanSchedules(t.Context()); err != nil || len(l) != 0 {
		t.Errorf("after rejected adds: %d schedules, %v; want none", len(l), err)
	}
	if _, err := s.ClaimDueSchedules(t.Context(), time.Time{}, time.Minute); !errors.Is(err, certdb.ErrInvalid) {
		t.Errorf("ClaimDueSchedules(zero time) = %v, want ErrInvalid", err)
	}
	if _, err := s.ClaimDueSchedules(t.Context(), time.Now(), -time.Minute); !errors.Is(err, certdb.ErrInvalid) {
		t.Errorf("ClaimDueSchedules(negative lease) = %v, want ErrInvalid", err)
	}
}

func claimedIDs(l []*certdb.ScanSchedule) []int64 {
	var ids []int64
	for _, sc := range l {
		ids = append(ids, sc.ID)
	}
	return ids
}

func testScanClaim(t *testing.T, s certdb.ScanStore) {
	ctx := t.Context()
	t0 := time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)
	add := func(next time.Time, interval time.Duration) *certdb.ScanSchedule {
		sc := &certdb.ScanSchedule{Targets: []string{"svc.example.test"}, Interval: interval, NextRun: next, CreatedAt: t0.Add(-24 * time.Hour)}
		if err := s.AddScanSchedule(ctx, sc); err != nil {
			t.Fatal(err)
		}
		return sc
	}
	hourly := add(t0, time.Hour)                          // due exactly at t0
	overdue := add(t0.Add(-72*time.Hour), 10*time.Minute) // down for days: no replay
	future := add(t0.Add(time.Second), time.Hour)         // not due yet
	short := add(t0.Add(-time.Minute), 30*time.Second)    // interval shorter than the lease
	if got, err := s.ClaimDueSchedules(ctx, t0.Add(-73*time.Hour), time.Minute); err != nil || len(got) != 0 {
		t.Fatalf("ClaimDueSchedules before anything is due = %v, %v; want none", claimedIDs(got), err)
	}

	got, err := s.ClaimDueSchedules(ctx, t0, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{hourly.ID, overdue.ID, short.ID}; !slices.Equal(claimedIDs(got), want) {
		t.Fatalf("ClaimDueSchedules(t0) = %v, want %v", claimedIDs(got), want)
	}
	wantNext := map[int64]time.Time{
		hourly.ID:  t0.Add(time.Hour),
		overdue.ID: t0.Add(10 * time.Minute),
		short.ID:   t0.Add(5 * time.Minute), // the lease
	}
	for _, sc := range got {
		if d := append(diffTime("NextRun", sc.NextRun, wantNext[sc.ID]), diffTime("LastRun", sc.LastRun, t0)...); len(d) > 0 {
			t.Errorf("claimed schedule %d:\n%s", sc.ID, joinLines(d))
		}
		if len(sc.Targets) != 1 || sc.Interval == 0 {
			t.Errorf("claimed schedule %d is incomplete: %+v", sc.ID, sc)
		}
	}
	if got, err := s.ClaimDueSchedules(ctx, t0, 5*time.Minute); err != nil || len(got) != 0 {
		t.Errorf("second claim at t0 = %v, %v; want none", claimedIDs(got), err)
	}
	// The store's list shows the claim.
	list, err := s.ListScanSchedules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range list {
		if want, ok := wantNext[sc.ID]; ok && !sc.NextRun.Equal(want) {
			t.Errorf("listed schedule %d NextRun = %v, want %v", sc.ID, sc.NextRun, want)
		}
		if sc.ID == future.ID && !sc.LastRun.IsZero() {
			t.Errorf("unclaimed schedule %d has LastRun %v", sc.ID, sc.LastRun)
		}
	}
	got, err = s.ClaimDueSchedules(ctx, t0.Add(10*time.Minute), 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{overdue.ID, future.ID, short.ID}; !slices.Equal(claimedIDs(got), want) {
		t.Errorf("ClaimDueSchedules(t0+10m) = %v, want %v", claimedIDs(got), want)
	}
}

func testScanClaimConcurrent(t *testing.T, s certdb.ScanStore) {
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	const schedules, claimers = 20, 8
	AddDueSchedules(t, s, schedules, t0)
	CheckClaimedOnce(t, slices.Repeat([]ScheduleStore{s}, claimers), t0, schedules, "")
}

func joinLines(l []string) string {
	var b bytes.Buffer
	for _, s := range l {
		b.WriteString("\t" + s + "\n")
	}
	return b.String()
}
