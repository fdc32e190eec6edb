package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func TestDispatch(t *testing.T) {
	var ran string
	subs := []subcommand{
		{"add", func(_ context.Context, _ *env, args []string) error {
			ran = "add " + strings.Join(args, " ")
			return nil
		}},
		{"list", func(context.Context, *env, []string) error { ran = "list"; return nil }},
		{"remove", func(context.Context, *env, []string) error { ran = "remove"; return nil }},
	}
	tests := []struct {
		args      []string
		wantRan   string
		wantErr   string // "" = success
		wantUsage bool
	}{
		{args: []string{"add", "x", "y"}, wantRan: "add x y"},
		{args: []string{"remove"}, wantRan: "remove"},
		{args: nil, wantErr: "thing needs a subcommand: add, list or remove", wantUsage: true},
		{args: []string{"--help"}, wantUsage: true},
		{args: []string{"frob"}, wantErr: `unknown thing subcommand "frob": want add, list or remove`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, "_"), func(t *testing.T) {
			ran = ""
			var out bytes.Buffer
			err := dispatch(t.Context(), &env{stdout: &out, stderr: &out}, "thing", "thing add|list|remove", "DOC", subs, tt.args)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("dispatch(%q) = %v", tt.args, err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, errUsage)) {
				t.Fatalf("dispatch(%q) = %v, want a usage error containing %q", tt.args, err, tt.wantErr)
			}
			if ran != tt.wantRan {
				t.Errorf("ran %q, want %q", ran, tt.wantRan)
			}
			if got := strings.Contains(out.String(), "Usage: certctl thing add|list|remove\n\nDOC"); got != tt.wantUsage {
				t.Errorf("usage printed = %v, want %v: %q", got, tt.wantUsage, out.String())
			}
		})
	}
	for names, want := range map[string]string{"": "", "a": "a", "a b": "a or b", "a b c": "a, b or c"} {
		if got := orList(strings.Fields(names)); got != want {
			t.Errorf("orList(%q) = %q, want %q", names, got, want)
		}
	}
}
