// Command certctl is the certctl CLI: an internal certificate authority and
// its tools. Run `certctl help` for the list of commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode prints err (if any) and returns the process exit status:
// 0 success or --help, 2 command-line mistakes, 1 anything else.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "certctl:", err)
		return 2
	}
	fmt.Fprintln(stderr, "certctl:", err)
	return 1
}

var (
	// errUsage marks command-line mistakes (exit status 2).
	errUsage = errors.New("usage error")
)

// usageError wraps a message so that main exits with status 2.
func usageError(format string, args ...any) error {
	return fmt.Errorf("%s\n(run `certctl help` or `certctl COMMAND --help`): %w", fmt.Sprintf(format, args...), errUsage)
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

// env is what every command gets: its streams and the process environment.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

func commands() []command {
	return []command{
		{"init", "create a root CA and an issuing intermediate", cmdInit},
		{"issue", "generate a key and issue a certificate for it", cmdIssue},
		{"sign", "issue a certificate for a CSR", cmdSign},
		{"revoke", "revoke a certificate by serial", cmdRevoke},
		{"list", "list issued certificates", cmdList},
		{"show", "show one certificate by serial", cmdShow},
		{"db", "database maintenance (migrate)", cmdDB},
		{"serve", "run the CA's HTTPS API server", cmdServe},
		{"token", "manage API tokens (create, list, revoke)", cmdToken},
		{"ocsp", "OCSP responder (serve) and pre-signing (refresh)", cmdOCSP},
		{"crl", "build and write a CRL", cmdCRL},
		{"hsm", "PKCS#11 tokens: list keys, generate a key on a token", cmdHSM},
		{"ct", "Certificate Transparency: verify embedded SCTs", cmdCT},
		{"agent", "keep a certificate and key renewed on disk for non-Go services", cmdAgent},
		{"scan", "scan TLS endpoints and grade them (also: schedule, history)", cmdScan},
		{"version", "print the version", cmdVersion},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	e := &env{stdout: stdout, stderr: stderr, getenv: os.Getenv}
	if len(args) == 0 {
		printUsage(stderr)
		return usageError("no command given")
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			for _, c := range commands() {
				if c.name == args[1] {
					return c.run(ctx, e, []string{"--help"})
				}
			}
		}
		printUsage(stdout)
		return nil
	case "-version", "--version":
		name = "version"
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, e, args[1:])
		}
	}
	printUsage(stderr)
	return usageError("unknown command %q", name)
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `certctl: an internal certificate authority for mutual TLS.

Usage: certctl COMMAND [flags]

Commands:
`)
	cs := commands()
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Every command takes --dir DIR (default ./certctl-data, env CERTCTL_DIR) holding the
configuration, keys and the embedded database, and --db URL (postgres://… or
sqlite:PATH, env CERTCTL_DB) to use another certificate database.
Run 'certctl COMMAND --help' for a command's flags.
`)
}

func cmdVersion(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "version", "", "Print the certctl version.")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "certctl", version())
	return nil
}

func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}

// newFlagSet makes a subcommand's flag set with a usage text.
func newFlagSet(e *env, name, argsUsage, doc string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: certctl %s [flags]%s\n\n%s\n\nFlags:\n", name, argsUsage, strings.TrimSpace(doc))
		// Print flags as --name, the way the docs write them.
		var b strings.Builder
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(out)
		fmt.Fprint(out, strings.TrimPrefix(strings.ReplaceAll("\n"+b.String(), "\n  -", "\n  --"), "\n"))
	}
	return fs
}

// parse parses flags, allowing flags after positional arguments
// (`certctl revoke SERIAL --reason keyCompromise`); fs.Args() then holds the
// positional arguments in order. --help prints the usage to stdout.
func parse(e *env, fs *flag.FlagSet, args []string) error {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(e.stdout)
			fs.Usage()
			return flag.ErrHelp
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return fmt.Errorf("%v: %w", err, errUsage)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if rest[0] == "--" {
			pos = append(pos, rest[1:]...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}
