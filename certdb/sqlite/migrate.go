package sqlite

import (
	"context"
	"embed"
	"fmt"

	"github.com/certctl/certctl/certdb"
	mig "github.com/certctl/certctl/certdb/internal/migrations"
)

// migrationFS holds the schema migrations, named NNNN_description.sql and
// numbered 1, 2, 3… without gaps. A released migration is never edited: a
// change is a new file.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

// migrations parses the embedded migrations, in version order.
func migrations() ([]mig.Migration, error) {
	return mig.Parse(migrationFS, "migrations")
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER NOT NULL PRIMARY KEY,
	name       TEXT    NOT NULL,
	applied_at INTEGER NOT NULL -- unix microseconds, UTC
) STRICT`

// Migrate applies the embedded migrations the database does not have yet,
// in one transaction: either all of them are applied or none. It is
// idempotent, and concurrent Migrate calls (from several processes too) are
// serialized by SQLite's write lock. It fails, wrapping certdb.ErrSchema, if
// the database is newer than this binary.
func (s *Store) Migrate(ctx context.Context) (err error) {
	ms, err := migrations()
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %v", err)
	}
	want := ms[len(ms)-1].Version

	tx, err := s.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE: one migrator at a time
	if err != nil {
		return fmt.Errorf("sqlite: migrate %s: %v", s.path, err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	if _, err := tx.ExecContext(ctx, createMigrationsTable); err != nil {
		return fmt.Errorf("sqlite: migrate %s: %v", s.path, err)
	}
	var cur int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
		return fmt.Errorf("sqlite: migrate %s: %v", s.path, err)
	}
	if cur > want {
		return fmt.Errorf("sqlite: migrate %s: %w: database schema version %d is newer than this certctl (version %d); upgrade certctl",
			s.path, certdb.ErrSchema, cur, want)
	}
	var applied []string
	for _, m := range ms[cur:] {
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("sqlite: migrate %s: %s: %v", s.path, m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.Version, m.Name, micros(s.now())); err != nil {
			return fmt.Errorf("sqlite: migrate %s: %s: %v", s.path, m.Name, err)
		}
		applied = append(applied, m.Name)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: migrate %s: commit: %v", s.path, err)
	}
	if len(applied) > 0 {
		s.log.InfoContext(ctx, "sqlite schema migrated", "path", s.path, "from", cur, "to", want, "applied", applied)
	}
	return nil
}

// SchemaVersion returns the schema version of the database (0 if it was
// never migrated) and the version this binary needs.
func (s *Store) SchemaVersion(ctx context.Context) (current, wanted int, err error) {
	ms, err := migrations()
	if err != nil {
		return 0, 0, fmt.Errorf("sqlite: schema version: %v", err)
	}
	wanted = ms[len(ms)-1].Version
	var n int
	err = s.r.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&n)
	if err == nil && n > 0 {
		err = s.r.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("sqlite: schema version of %s: %v", s.path, err)
	}
	return current, wanted, nil
}

// CheckSchema reports whether the database has exactly the schema this
// binary needs. When it is missing or behind, the error wraps
// certdb.ErrSchema and says to run `certctl db migrate`; when the database is
// newer than the binary, the error also wraps certdb.ErrSchema and says to
// upgrade certctl.
func (s *Store) CheckSchema(ctx context.Context) error {
	cur, want, err := s.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if err := certdb.CheckSchemaVersion(cur, want); err != nil {
		return fmt.Errorf("sqlite: %s: %w", s.path, err)
	}
	return nil
}
