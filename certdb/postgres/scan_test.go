package postgres

import (
	"fmt"
	"testing"
	"time"

	"github.com/certctl/certctl/certdb/certdbtest"
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
	certdbtest.AddDueSchedules(t, first, schedules, t0)
	var claimers []certdbtest.ScheduleStore
	for _, s := range stores {
		for range 3 {
			claimers = append(claimers, s)
		}
	}
	for round := range 3 { // each round: every schedule due again
		now := t0.Add(time.Duration(round) * 2 * time.Hour)
		certdbtest.CheckClaimedOnce(t, claimers, now, schedules, fmt.Sprintf("round %d", round))
	}
}
