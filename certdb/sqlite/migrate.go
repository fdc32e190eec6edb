package sqlite

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/certctl/certctl/certdb"
)

// migrationFS holds the schema migrations, named NNNN_description.sql and
// numbered 1, 2, 3… without gaps. A released migration is never edited: a
// change is a new file.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// migrations parses the embedded migrations, in version order.
func migrations() ([]migration, error) {
	return parseMigrations(migrationFS, "migrations")
}

func parseMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries { // ReadDir sorts by name; zero padding makes that version order
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(name, ".sql") || len(num) != 4 {
			return nil, fmt.Errorf("migration %s: name is not NNNN_description.sql", name)
		}
		if v != len(out)+1 {
			return nil, fmt.Errorf("migration %s: version %d, want %d (versions must be 1, 2, 3… without gaps)", name, v, len(out)+1)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: name, sql: string(b)})
	}
	if len(out) == 0 {
		return nil, errors.New("no migrations")
	}
	return out, nil
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
	want := ms[len(ms)-1].version

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
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("sqlite: migrate %s: %s: %v", s.path, m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.version, m.name, micros(s.now())); err != nil {
			return fmt.Errorf("sqlite: migrate %s: %s: %v", s.path, m.name, err)
		}
		applied = append(applied, m.name)
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
	wanted = ms[len(ms)-1].version
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
