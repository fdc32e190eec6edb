package main

import (
	"context"
	"fmt"
	"strings"
)

// subcommand is one verb of a command group such as `certctl token`.
type subcommand struct {
	name string
	run  func(ctx context.Context, e *env, args []string) error
}

// dispatch runs the subcommand named by args[0] of the group name (e.g.
// "token", "scan schedule"). With no arguments it prints the group's usage
// and fails; with --help it prints it and succeeds. usage is the line after
// "Usage: certctl " (e.g. "token create|list|revoke [flags]"), doc the text
// under it.
func dispatch(ctx context.Context, e *env, name, usage, doc string, subs []subcommand, args []string) error {
	names := make([]string, len(subs))
	for i, s := range subs {
		names[i] = s.name
	}
	want := orList(names)
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" || args[0] == "help" {
		fmt.Fprintln(e.stdout, "Usage: certctl "+usage+"\n\n"+doc)
		if len(args) == 0 {
			return usageError("%s needs a subcommand: %s", name, want)
		}
		return nil
	}
	for _, s := range subs {
		if s.name == args[0] {
			return s.run(ctx, e, args[1:])
		}
	}
	return usageError("unknown %s subcommand %q: want %s", name, args[0], want)
}

// orList joins names as "a", "a or b", "a, b or c".
func orList(names []string) string {
	if len(names) <= 1 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
