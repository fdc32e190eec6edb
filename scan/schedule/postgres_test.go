package schedule

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/certdb/postgres"
	"github.com/certctl/certctl/internal/pkitest"
)

var pg *pkitest.Postgres

func TestMain(m *testing.M) { pkitest.MainWithPostgres(m, &pg) }

// TestRunnersSharePostgres: three Runners on three Stores (as three
// `certctl serve` processes) share one PostgreSQL database; each due
// schedule is scanned by exactly one of them.
func TestRunnersSharePostgres(t *testing.T) {
	dsn := pg.NewDatabase(t)
	var stores []*postgres.Store
	for i := range 3 {
		s, err := postgres.Open(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if i == 0 {
			if err := s.Migrate(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		stores = append(stores, s)
	}
	fake := &fakeScanner{}
	var want []string
	for i := range 12 {
		target := "svc" + string(rune('a'+i)) + ".internal"
		fake.set(target+":443", graded("A", nil, time.Now()))
		want = append(want, target+":443")
		if err := stores[0].AddScanSchedule(t.Context(), &certdb.ScanSchedule{Targets: []string{target}, Interval: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
	)
	for _, s := range stores {
		r, err := NewRunner(s, WithScanFunc(fake.scan))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			n, err := r.RunDue(t.Context())
			if err != nil {
				t.Errorf("RunDue = %v", err)
			}
			mu.Lock()
			total += n
			mu.Unlock()
		})
	}
	wg.Wait()
	if total != 12 {
		t.Errorf("the runners ran %d schedules in all, want 12", total)
	}
	if got := fake.takeScanned(); !slices.Equal(got, want) {
		t.Errorf("scanned %v, want each target once: %v", got, want)
	}
	latest, err := stores[1].LatestScanResults(t.Context())
	if err != nil || len(latest) != 12 {
		t.Errorf("LatestScanResults = %d, %v; want 12", len(latest), err)
	}
}
