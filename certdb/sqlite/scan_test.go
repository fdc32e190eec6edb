package sqlite

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/certdb"
)

// TestClaimTwoStoresOneFile: two Stores on one file (as two processes
// would) claim the same due schedules at once; each goes to one of them.
func TestClaimTwoStoresOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "certctl.db")
	a, b := openPath(t, path), openPath(t, path)
	if err := a.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	const schedules = 30
	for range schedules {
		if err := a.AddScanSchedule(t.Context(), &certdb.ScanSchedule{Targets: []string{"svc.example.test"}, Interval: time.Hour, NextRun: t0}); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu    sync.Mutex
		count = map[int64]int{}
		wg    sync.WaitGroup
	)
	for _, s := range []*Store{a, b, a, b} {
		wg.Go(func() {
			got, err := s.ClaimDueSchedules(t.Context(), t0, time.Minute)
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
	wg.Wait()
	if len(count) != schedules {
		t.Errorf("%d schedules claimed, want %d", len(count), schedules)
	}
	for id, n := range count {
		if n != 1 {
			t.Errorf("schedule %d claimed %d times, want once", id, n)
		}
	}
}
