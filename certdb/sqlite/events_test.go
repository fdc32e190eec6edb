package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/certdb/certdbtest"
)

// A revocation by one Store (standing in for `certctl revoke`) reaches the
// subscribers of another Store on the same file (standing in for `certctl
// serve`) through the revocation_events log.
func TestRevocationAcrossStores(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	a := openPath(t, path)
	if err := a.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	b := openPath(t, path)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch, err := a.SubscribeRevocations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := certdbtest.NewCertificate(t, certdbtest.RandomSerial(), now.Add(-time.Hour), now.Add(time.Hour))
	if err := b.AddCertificate(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := b.Revoke(ctx, c.Serial, certdb.ReasonKeyCompromise, now); err != nil {
		t.Fatal(err)
	}
	certdbtest.WaitForSerial(t, ch, c.Serial)

	// NotifyRevoked crosses too.
	if err := b.NotifyRevoked(ctx, c.Serial); err != nil {
		t.Fatal(err)
	}
	certdbtest.WaitForSerial(t, ch, c.Serial)
}
