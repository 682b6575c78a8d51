package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrationFiles are the schema migrations, NNNN_name.sql, applied in the
// order of their numbers, each once, each in its own transaction. A
// migration is never changed once released: a change of schema is a new
// file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one schema migration.
type migration struct {
	version int
	name    string
	sql     string
}

// migrationLockClass is the first key of the advisory lock that serializes
// migrations ("uma" in ASCII); the second is a hash of the schema, so that
// stores in different schemas of one database do not wait for each other.
const migrationLockClass = 0x756d61

// loadMigrations reads migrationFiles, checking that their versions run
// 1, 2, 3, ... without gaps or repeats.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var list []migration
	for _, name := range names {
		base := path.Base(name)
		num, rest, ok := strings.Cut(base, "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil || version < 1 {
			return nil, fmt.Errorf("migration %s: the name must be NNNN_name.sql", base)
		}
		sql, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		list = append(list, migration{version: version, name: strings.TrimSuffix(rest, ".sql"), sql: string(sql)})
	}
	slices.SortFunc(list, func(a, b migration) int { return a.version - b.version })
	for i, m := range list {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %04d_%s: want version %d (no gaps, no repeats)", m.version, m.name, i+1)
		}
	}
	return list, nil
}

// migrate applies the migrations that the database lacks, holding the
// advisory lock of its schema for the whole time, on conn.
func migrate(ctx context.Context, conn *pgxpool.Conn) error {
	migrations, err := loadMigrations(migrationFiles)
	if err != nil {
		return err
	}

	var schema *string
	if err := conn.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return err
	}
	if schema == nil {
		return errors.New("no schema to create the tables in: the search_path names no existing schema")
	}
	// A session lock: released by the unlock below, or by the server when
	// the connection ends (if ctx ends the wait, pgx closes the connection).
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, hashtext($2))", migrationLockClass, *schema); err != nil {
		return fmt.Errorf("waiting for the migration lock of schema %q: %w", *schema, err)
	}
	defer func() {
		_, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1, hashtext($2))", migrationLockClass, *schema)
		if err != nil {
			// Ending the session releases the lock.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return err
	}
	rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		return err
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return err
	}
	if len(applied) > 0 && applied[len(applied)-1] > len(migrations) {
		return fmt.Errorf("schema %q is at version %d, newer than this caddy-uma knows (%d): run a newer caddy-uma",
			*schema, applied[len(applied)-1], len(migrations))
	}
	for _, m := range migrations {
		if slices.Contains(applied, m.version) {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %04d_%s: %w", m.version, m.name, err)
		}
	}
	return nil
}
