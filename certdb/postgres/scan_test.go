package postgres

import (
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/certdb"
)

// TestClaimAcrossStores: several Stores (separate pools, as separate
// certctl serve processes have) claim the same due schedules at once; each
// schedule goes to exactly one of them.
func TestClaimAcrossStores(t *testing.T) {
	dsn := pg.NewDatabase(t)
	first := open(t, dsn)
	if err := first.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	stores := []*Store{first, open(t, dsn), open(t, dsn), open(t, dsn)}
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	const schedules = 50
	for range schedules {
		if err := first.AddScanSchedule(t.Context(), &certdb.ScanSchedule{Targets: []string{"svc.example.test"}, Interval: time.Hour, NextRun: t0}); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 3 { // each round: every schedule due again
		now := t0.Add(time.Duration(round) * 2 * time.Hour)
		var (
			mu    sync.Mutex
			count = map[int64]int{}
			wg    sync.WaitGroup
		)
		for _, s := range stores {
			for range 3 {
				wg.Go(func() {
					got, err := s.ClaimDueSchedules(t.Context(), now, time.Minute)
					if err != nil {
						t.Errorf("ClaimDueSchedules = %v", err)
						return
					}
					mu.Lock()
					defer mu.Unlock()
					for _, sc := range got {
						count[sc.ID]++
					}
				})
			}
		}
		wg.Wait()
		if len(count) != schedules {
			t.Errorf("round %d: %d schedules claimed, want %d", round, len(count), schedules)
		}
		for id, n := range count {
			if n != 1 {
				t.Errorf("round %d: schedule %d claimed %d times, want once", round, id, n)
			}
		}
	}
}
