package sqlite

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/certctl/certctl/certdb/certdbtest"
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
	certdbtest.AddDueSchedules(t, a, schedules, t0)
	certdbtest.CheckClaimedOnce(t, []certdbtest.ScheduleStore{a, b, a, b}, t0, schedules, "")
}
