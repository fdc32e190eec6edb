// Package migrations reads the schema migrations that certdb's stores embed:
// files named NNNN_description.sql, numbered 1, 2, 3… without gaps. A
// released migration is never edited: a change is a new file.
package migrations

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// Migration is one schema migration.
type Migration struct {
	Version int
	Name    string // the file name
	SQL     string
}

// Parse reads the migrations in dir of fsys, in version order. It fails on
// a file not named NNNN_description.sql, on a gap in the numbering, and on an
// empty dir.
func Parse(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries { // ReadDir sorts by name; zero padding makes that version order
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || len(num) != 4 || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("migration %s: name is not NNNN_description.sql", name)
		}
		if v != len(out)+1 {
			return nil, fmt.Errorf("migration %s: version %d, want %d (versions must be 1, 2, 3… without gaps)", name, v, len(out)+1)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(b)})
	}
	if len(out) == 0 {
		return nil, errors.New("no migrations")
	}
	return out, nil
}
