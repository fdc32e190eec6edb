package postgres

import (
	"context"
	"embed"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/certctl/certctl/certdb"
	mig "github.com/certctl/certctl/certdb/internal/migrations"
)

// migrationFS holds the schema migrations, named NNNN_description.sql and
// numbered 1, 2, 3… without gaps. A released migration is never edited: a
// change is a new file.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

// migrateLockKey is the pg_advisory_lock key that serialises Migrate calls
// on one database ("certctl" followed by 0x01). Advisory locks are scoped to
// the current database.
const migrateLockKey int64 = 0x6365727463746c01

// unlockTimeout bounds releasing the advisory lock after Migrate, even when
// the caller's context is done.
const unlockTimeout = 10 * time.Second

// migrations parses the embedded migrations, in version order.
func migrations() ([]mig.Migration, error) {
	return mig.Parse(migrationFS, "migrations")
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    integer     PRIMARY KEY,
	name       text        NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`

// Migrate applies the embedded migrations the database does not have yet,
// each in its own transaction, in order. It is idempotent. Concurrent
// Migrate calls on one database, from any number of processes, are
// serialised by a PostgreSQL advisory lock: the later ones wait and then find
// nothing to do. It fails, wrapping certdb.ErrSchema, if the database is
// newer than this binary.
func (s *Store) Migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return fmt.Errorf("postgres: migrate: %v", err)
	}
	want := ms[len(ms)-1].Version
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return s.dbError("migrate "+s.target, err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrateLockKey); err != nil {
		conn.Release()
		return s.dbError("migrate "+s.target+": take the migration lock", err)
	}
	defer s.unlock(ctx, conn)

	if _, err := conn.Exec(ctx, createMigrationsTable); err != nil {
		return s.dbError("migrate "+s.target, err)
	}
	var cur int
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
		return s.dbError("migrate "+s.target, err)
	}
	if cur > want {
		return fmt.Errorf("postgres: migrate %s: %w: database schema version %d is newer than this certctl (version %d); upgrade certctl",
			s.target, certdb.ErrSchema, cur, want)
	}
	for _, m := range ms[cur:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
			return err
		})
		if err != nil {
			return s.dbError(fmt.Sprintf("migrate %s: %s", s.target, m.Name), err)
		}
		s.log.InfoContext(ctx, "PostgreSQL schema migrated", "database", s.target, "version", m.Version, "migration", m.Name)
	}
	return nil
}

// unlock releases the migration lock and the connection. A connection that
// may still hold the lock is closed instead of going back to the pool
// (closing the session releases its advisory locks).
func (s *Store) unlock(ctx context.Context, conn *pgxpool.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
	defer cancel()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, migrateLockKey); err != nil {
		s.log.WarnContext(ctx, "closing connection: releasing the migration lock failed", "database", s.target, "err", err)
		conn.Conn().Close(ctx)
	}
	conn.Release()
}

// SchemaVersion returns the schema version of the database (0 if it was
// never migrated) and the version this binary needs.
func (s *Store) SchemaVersion(ctx context.Context) (current, wanted int, err error) {
	ms, err := migrations()
	if err != nil {
		return 0, 0, fmt.Errorf("postgres: schema version: %v", err)
	}
	wanted = ms[len(ms)-1].Version
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, 0, s.dbError("schema version of "+s.target, err)
	}
	if exists {
		if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
			return 0, 0, s.dbError("schema version of "+s.target, err)
		}
	}
	return current, wanted, nil
}

// CheckSchema reports whether the database has exactly the schema this
// binary needs. When it is missing or behind, the error wraps
// certdb.ErrSchema and says to run `certctl db migrate`; when the database is
// newer than the binary, it also wraps certdb.ErrSchema and says to upgrade
// certctl.
func (s *Store) CheckSchema(ctx context.Context) error {
	cur, want, err := s.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if err := certdb.CheckSchemaVersion(cur, want); err != nil {
		return fmt.Errorf("postgres: %s: %w", s.target, err)
	}
	return nil
}
