package catest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/certctl/certctl/certdb/postgres"
	"github.com/certctl/certctl/certdb/sqlite"
)

// SQLiteStore opens an embedded store in a new file under t.TempDir() and
// migrates it. The store is closed when the test ends.
func SQLiteStore(t testing.TB) *sqlite.Store {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "certdb.sqlite"))
	if err != nil {
		t.Fatalf("catest: open sqlite store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("catest: migrate sqlite store: %v", err)
	}
	return st
}

// PostgresStore opens a PostgreSQL store on dsn (for example from
// pkitest.Postgres.NewDatabase) with opts and migrates it. The store is
// closed when the test ends.
func PostgresStore(t testing.TB, dsn string, opts ...postgres.Option) *postgres.Store {
	t.Helper()
	ctx := context.Background()
	st, err := postgres.Open(ctx, dsn, opts...)
	if err != nil {
		t.Fatalf("catest: open postgres store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("catest: migrate postgres store: %v", err)
	}
	return st
}
