package migrations

import (
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
)

func TestParse(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	tests := []struct {
		name    string
		fs      fstest.MapFS
		wantErr string // "" = parses to 0001_a.sql "A", 0002_b.sql "B"
	}{
		{"ok", fstest.MapFS{"m/0001_a.sql": file("A"), "m/0002_b.sql": file("B")}, ""},
		{"gap", fstest.MapFS{"m/0001_a.sql": file("A"), "m/0003_c.sql": file("C")}, "want 2"},
		{"not from 1", fstest.MapFS{"m/0002_b.sql": file("B")}, "want 1"},
		{"duplicate version", fstest.MapFS{"m/0001_a.sql": file("A"), "m/0001_b.sql": file("B")}, "want 2"},
		{"no number", fstest.MapFS{"m/init.sql": file("A")}, "NNNN_description.sql"},
		{"no padding", fstest.MapFS{"m/1_a.sql": file("A")}, "NNNN_description.sql"},
		{"no description", fstest.MapFS{"m/0001.sql": file("A")}, "NNNN_description.sql"},
		{"not sql", fstest.MapFS{"m/0001_a.txt": file("A")}, "NNNN_description.sql"},
		{"stray file", fstest.MapFS{"m/0001_a.sql": file("A"), "m/README": file("r")}, "NNNN_description.sql"},
		{"only a dot file", fstest.MapFS{"m/.keep": nil}, "NNNN_description.sql"},
		{"empty dir", fstest.MapFS{"m": &fstest.MapFile{Mode: fs.ModeDir | 0o755}}, "no migrations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := Parse(tt.fs, "m")
			if tt.wantErr == "" {
				if err != nil || len(ms) != 2 || ms[0] != (Migration{1, "0001_a.sql", "A"}) || ms[1] != (Migration{2, "0002_b.sql", "B"}) {
					t.Fatalf("Parse() = %+v, %v", ms, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Parse() = %+v, %v; want an error containing %q", ms, err, tt.wantErr)
			}
		})
	}
}
