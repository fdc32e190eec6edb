package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/term"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/scan"
	"github.com/certctl/certctl/scan/schedule"
	"github.com/certctl/certctl/scan/targets"
)

const scanDoc = `Scan TLS endpoints and grade them (A+ … F, T: untrusted, M: name mismatch).

A TARGET is a host name or IP address (scanned on every --port), host:port,
[IPv6]:port, postgres://host[:port] or smtp://host[:port] (STARTTLS), a CIDR
range (10.1.2.0/24, fd00::/120; at most 65536 addresses: IPv4 /16, IPv6
/112), or @FILE: a file with one target per line (# comments). The
addresses of a range are first probed with a TCP connection (--probe-timeout)
and only those that answer are scanned.

Output: a table on stdout (--json: a JSON array of results); a progress bar
on stderr when it is a terminal. --store also saves the results in the
certificate database (see 'certctl scan history').

Exit status: 0 when every endpoint grades --fail-below or better; 1 when an
endpoint grades worse (by default F, T or M) or could not be scanned, or on
any other error; 2 for command-line mistakes. Addresses of a range that do
not answer the probe are not failures.

Subcommands:
  certctl scan schedule add --every 1h [scan flags] TARGET…   scan regularly ('certctl serve' runs them)
  certctl scan schedule list [--json]
  certctl scan schedule remove ID
  certctl scan history [TARGET] [--json] [--limit N]         stored scans, each compared with the one before

(To scan hosts named "schedule" or "history", write them with a port.)`

func cmdScan(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "schedule":
			return cmdScanSchedule(ctx, e, args[1:])
		case "history":
			return cmdScanHistory(ctx, e, args[1:])
		}
	}
	fs := newFlagSet(e, "scan", " TARGET…", scanDoc)
	var c common
	c.register(fs, e)
	sf := registerScanFlags(fs)
	concurrency := fs.Int("concurrency", schedule.DefaultConcurrency, "endpoints scanned at once")
	probeTimeout := fs.Duration("probe-timeout", schedule.DefaultProbeTimeout, "TCP probe timeout for the addresses of CIDR ranges")
	jsonOut := fs.Bool("json", false, "print a JSON array of results")
	store := fs.Bool("store", false, "save the results in the certificate database (--dir/--db)")
	failBelow := fs.String("fail-below", scan.GradeE, "exit 1 when an endpoint grades below `GRADE` (A+, A, A-, B, C, D, E) or cannot be scanned; none: never")
	verbose := fs.Bool("verbose", false, "log to stderr")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError("scan needs at least one TARGET")
	}
	if *concurrency < 1 {
		return usageError("--concurrency must be at least 1")
	}
	if *probeTimeout <= 0 {
		return usageError("--probe-timeout must be positive")
	}
	minRank := -2 // "none": nothing fails
	if *failBelow != "none" {
		if minRank = scan.GradeRank(*failBelow); minRank <= 0 {
			return usageError("--fail-below %q: want A+, A, A-, B, C, D, E or none", *failBelow)
		}
	}
	opts, err := sf.options(false)
	if err != nil {
		return err
	}
	specs, err := readSpecs(fs.Args())
	if err != nil {
		return err
	}
	eps, err := opts.Endpoints(specs)
	if err != nil {
		return usageError("%v", err)
	}
	scanOpts, err := opts.ScanOptions()
	if err != nil {
		return err
	}
	log := newLogger(e, *verbose)
	scanOpts = append(scanOpts, scan.WithLogger(log))

	var st certdb.ScanStore
	if *store { // open it first: a bad --db should fail before a long scan
		s, closeStore, err := openScanStore(ctx, e, &c, *verbose)
		if err != nil {
			return err
		}
		defer closeStore()
		st = s
	}

	bar := newProgress(e.stderr)
	b := &schedule.Batch{Concurrency: *concurrency, ProbeTimeout: *probeTimeout, Progress: bar.update}
	start := time.Now()
	res, err := b.Run(ctx, eps, scanOpts)
	bar.done()
	if err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	if res.Probed > 0 {
		fmt.Fprintf(e.stderr, "probed %d range addresses in %s: %d answered\n", res.Probed, time.Since(start).Round(time.Millisecond), res.Live)
	}
	if st != nil {
		for _, r := range res.Results {
			rec, err := schedule.Record(r, time.Now())
			if err == nil {
				err = st.AddScanResult(ctx, rec)
			}
			if err != nil {
				return fmt.Errorf("store the scan of %s: %w", r.Target, err)
			}
		}
	}
	if *jsonOut {
		out := res.Results
		if out == nil {
			out = []*scan.Result{}
		}
		if err := writeJSON(e.stdout, out); err != nil {
			return err
		}
	} else {
		printResults(e.stdout, res.Results)
	}
	var failed []string
	for _, r := range res.Results {
		if scan.GradeRank(r.Grade) < minRank {
			failed = append(failed, fmt.Sprintf("%s (%s)", r.Target, gradeOrError(r)))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d endpoints graded below %s or could not be scanned: %s", len(failed), len(res.Results), *failBelow, strings.Join(failed, ", "))
	}
	return nil
}

func gradeOrError(r *scan.Result) string {
	if r.Grade != "" {
		return r.Grade
	}
	return "no grade"
}

// scanFlags are the flags `scan` and `scan schedule add` share.
type scanFlags struct {
	ports, startTLS, caBundle, clientCert, clientKey string
	timeout                                          time.Duration
	expectClientAuth                                 bool
}

func registerScanFlags(fs *flag.FlagSet) *scanFlags {
	sf := &scanFlags{}
	fs.StringVar(&sf.ports, "port", "443", "comma-separated `PORTS` for targets without a port")
	fs.StringVar(&sf.startTLS, "starttls", "", "STARTTLS `PROTOCOL` for targets without a scheme: postgres or smtp")
	fs.StringVar(&sf.caBundle, "ca-bundle", "", "PEM `FILE` of trusted roots (default: the system roots)")
	fs.StringVar(&sf.clientCert, "client-cert", "", "client certificate PEM `FILE`, for endpoints that require one")
	fs.StringVar(&sf.clientKey, "client-key", "", "client private key PEM `FILE` (with --client-cert)")
	fs.DurationVar(&sf.timeout, "timeout", scan.DefaultTimeout, "bound on the scan of one endpoint")
	fs.BoolVar(&sf.expectClientAuth, "expect-client-auth", false, "the endpoints must require a client certificate (grade F otherwise)")
	return sf
}

// options turns the flags into schedule.Options. For a schedule, file paths
// are made absolute: `certctl serve` reads them later from its own
// directory.
func (sf *scanFlags) options(absolute bool) (schedule.Options, error) {
	ports, err := targets.ParsePorts(sf.ports)
	if err != nil {
		return schedule.Options{}, usageError("--port: %v", err)
	}
	if sf.timeout <= 0 {
		return schedule.Options{}, usageError("--timeout must be positive")
	}
	o := schedule.Options{Ports: ports, StartTLS: sf.startTLS, CABundle: sf.caBundle, ClientCert: sf.clientCert,
		ClientKey: sf.clientKey, ExpectClientAuth: sf.expectClientAuth, Timeout: schedule.Duration(sf.timeout)}
	if absolute {
		for _, p := range []*string{&o.CABundle, &o.ClientCert, &o.ClientKey} {
			if *p != "" {
				if *p, err = filepath.Abs(*p); err != nil {
					return schedule.Options{}, err
				}
			}
		}
	}
	if err := o.Validate(); err != nil {
		return schedule.Options{}, usageError("%v", err)
	}
	return o, nil
}

// readSpecs replaces each @FILE argument by the targets in the file.
func readSpecs(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		name, ok := strings.CutPrefix(a, "@")
		if !ok {
			out = append(out, a)
			continue
		}
		f, err := os.Open(name)
		if err != nil {
			return nil, usageError("target file: %v", err)
		}
		specs, lines, err := targets.ReadFile(f)
		f.Close()
		if err != nil {
			return nil, usageError("%s: %v", name, err)
		}
		for i, s := range specs {
			if _, err := targets.Parse(s, ""); err != nil && !errors.Is(err, targets.ErrTooLarge) {
				return nil, usageError("%s:%d: %v", name, lines[i], err)
			}
		}
		out = append(out, specs...)
	}
	return out, nil
}

// openScanStore opens the certificate database for scan results: --db, or
// the database of the CA in --dir.
func openScanStore(ctx context.Context, e *env, c *common, verbose bool) (certdb.ScanStore, func(), error) {
	var cfg *Config
	if c.db == "" {
		var err error
		if cfg, err = c.loadConfig(); err != nil {
			return nil, nil, fmt.Errorf("%w\n(scan results are stored in the CA's database; or pass --db sqlite:PATH or --db postgres://…)", err)
		}
	}
	st, err := openStore(ctx, c.dbURL(cfg), false, newLogger(e, verbose))
	if err != nil {
		return nil, nil, err
	}
	ss, ok := st.(certdb.ScanStore)
	if !ok {
		st.Close()
		return nil, nil, errors.New("this database cannot hold scan results")
	}
	return ss, func() { st.Close() }, nil
}

// printResults writes the readable report: a table, then the warnings and
// critical findings of each endpoint.
func printResults(w io.Writer, results []*scan.Result) {
	if len(results) == 0 {
		fmt.Fprintln(w, "no endpoints answered")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tGRADE\tPROTOCOLS\tCERTIFICATE\tEXPIRES\tTIME")
	for _, r := range results {
		grade, protos, cert, expires := "-", "-", "-", "-"
		if r.Grade != "" {
			grade = r.Grade
		}
		var names []string
		for _, p := range r.Protocols {
			if p.Supported {
				names = append(names, strings.TrimPrefix(p.Name, "TLS "))
			}
		}
		if len(names) > 0 {
			protos = "TLS " + strings.Join(names, ",")
		} else if len(r.Addresses) > 0 && r.Addresses[0].Version != "" {
			protos = r.Addresses[0].Version
		}
		if c := r.Certificate; c != nil {
			cert = fmt.Sprintf("%s (%s %d)", shortName(c), c.KeyType, c.KeyBits)
			expires = c.NotAfter.UTC().Format(time.DateOnly)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Target, grade, protos, cert, expires, r.Duration.Round(10*time.Millisecond))
	}
	tw.Flush()
	for _, r := range results {
		var lines []string
		if r.Error != "" {
			lines = append(lines, "  error: "+r.Error)
		}
		for _, f := range r.Findings {
			if f.Severity == scan.SeverityInfo {
				continue
			}
			l := fmt.Sprintf("  %-8s %s: %s", f.Severity, f.Check, f.Message)
			if f.GradeCap != "" {
				l += " (caps the grade at " + f.GradeCap + ")"
			}
			lines = append(lines, l)
		}
		if len(lines) > 0 {
			fmt.Fprintf(w, "\n%s:\n%s\n", r.Target, strings.Join(lines, "\n"))
		}
	}
}

// shortName is the first SAN, else the subject.
func shortName(c *scan.CertSummary) string {
	if len(c.SANs) > 0 {
		return c.SANs[0]
	}
	return c.Subject
}

// progress draws a bar on a terminal (and nothing otherwise).
type progress struct {
	w    io.Writer
	on   bool
	last time.Time
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, on: ok && term.IsTerminal(int(f.Fd()))}
}

// update is Batch.Progress: calls do not overlap.
func (p *progress) update(phase string, done, total int) {
	if !p.on || total == 0 || (done != total && time.Since(p.last) < 50*time.Millisecond) {
		return
	}
	p.last = time.Now()
	const width = 30
	n := done * width / total
	label := "scanning"
	if phase == "probe" {
		label = "probing "
	}
	fmt.Fprintf(p.w, "\r%s [%s%s] %d/%d", label, strings.Repeat("=", n), strings.Repeat(" ", width-n), done, total)
}

func (p *progress) done() {
	if p.on {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

const scheduleDoc = `Manage scheduled scans. 'certctl serve' runs the due schedules (with
several serve processes on one PostgreSQL database, each schedule runs in one
of them) and stores the results, fires the hooks of the scan: section of
certctl.yaml on a grade drop, an expiring or a revoked certificate.

  certctl scan schedule add --every 1h [scan flags] TARGET…
  certctl scan schedule list [--json]
  certctl scan schedule remove ID

File paths (--ca-bundle, --client-cert, --client-key) are stored as absolute
paths and read by 'certctl serve' at each run; @FILE target lists are read
now.`

func cmdScanSchedule(ctx context.Context, e *env, args []string) error {
	return dispatch(ctx, e, "scan schedule", "scan schedule add|list|remove [flags]", scheduleDoc, []subcommand{
		{"add", cmdScanScheduleAdd}, {"list", cmdScanScheduleList}, {"remove", cmdScanScheduleRemove},
	}, args)
}

// minScheduleInterval keeps schedules from hammering endpoints.
const minScheduleInterval = time.Minute

func cmdScanScheduleAdd(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "scan schedule add", " TARGET…", "Add a scan schedule: scan TARGET… every --every (see 'certctl scan --help' for targets).")
	var c common
	c.register(fs, e)
	sf := registerScanFlags(fs)
	every := fs.Duration("every", 0, "scan interval, e.g. 1h or 24h (at least 1m)")
	verbose := fs.Bool("verbose", false, "log to stderr")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError("scan schedule add needs at least one TARGET")
	}
	if *every < minScheduleInterval {
		return usageError("--every %v: give an interval of at least %v, e.g. --every 1h", *every, minScheduleInterval)
	}
	opts, err := sf.options(true)
	if err != nil {
		return err
	}
	specs, err := readSpecs(fs.Args())
	if err != nil {
		return err
	}
	eps, err := opts.Endpoints(specs) // reject bad targets now, not at the first run
	if err != nil {
		return usageError("%v", err)
	}
	ob, err := json.Marshal(opts)
	if err != nil {
		return err
	}
	st, closeStore, err := openScanStore(ctx, e, &c, *verbose)
	if err != nil {
		return err
	}
	defer closeStore()
	sc := &certdb.ScanSchedule{Targets: specs, Interval: *every, Options: ob}
	if err := st.AddScanSchedule(ctx, sc); err != nil {
		return fmt.Errorf("add scan schedule: %w", err)
	}
	fmt.Fprintf(e.stdout, "added scan schedule %d: %d targets (up to %d endpoints) every %v; 'certctl serve' runs it, first now\n",
		sc.ID, len(specs), len(eps), *every)
	return nil
}

func cmdScanScheduleList(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "scan schedule list", "", "List scan schedules.")
	var c common
	c.register(fs, e)
	jsonOut := fs.Bool("json", false, "print a JSON array")
	verbose := fs.Bool("verbose", false, "log to stderr")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("scan schedule list takes no arguments")
	}
	st, closeStore, err := openScanStore(ctx, e, &c, *verbose)
	if err != nil {
		return err
	}
	defer closeStore()
	list, err := st.ListScanSchedules(ctx)
	if err != nil {
		return fmt.Errorf("list scan schedules: %w", err)
	}
	if *jsonOut {
		type item struct {
			ID        int64            `json:"id"`
			Targets   []string         `json:"targets"`
			Interval  string           `json:"interval"`
			Options   schedule.Options `json:"options"`
			NextRun   time.Time        `json:"next_run"`
			LastRun   *time.Time       `json:"last_run,omitempty"`
			CreatedAt time.Time        `json:"created_at"`
		}
		out := []item{}
		for _, sc := range list {
			o, _ := schedule.ParseOptions(sc.Options)
			it := item{ID: sc.ID, Targets: sc.Targets, Interval: sc.Interval.String(), Options: o, NextRun: sc.NextRun, CreatedAt: sc.CreatedAt}
			if !sc.LastRun.IsZero() {
				it.LastRun = &sc.LastRun
			}
			out = append(out, it)
		}
		return writeJSON(e.stdout, out)
	}
	if len(list) == 0 {
		fmt.Fprintln(e.stdout, "no scan schedules (add one with 'certctl scan schedule add --every 1h TARGET…')")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEVERY\tNEXT RUN (UTC)\tLAST RUN (UTC)\tTARGETS")
	for _, sc := range list {
		last := "never"
		if !sc.LastRun.IsZero() {
			last = sc.LastRun.UTC().Format(time.DateTime)
		}
		tgts := strings.Join(sc.Targets, " ")
		if len(tgts) > 60 {
			tgts = tgts[:57] + "..."
		}
		fmt.Fprintf(tw, "%d\t%v\t%s\t%s\t%s\n", sc.ID, sc.Interval, sc.NextRun.UTC().Format(time.DateTime), last, tgts)
	}
	return tw.Flush()
}

func cmdScanScheduleRemove(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "scan schedule remove", " ID", "Remove a scan schedule (its stored results are kept).")
	var c common
	c.register(fs, e)
	verbose := fs.Bool("verbose", false, "log to stderr")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError("scan schedule remove needs exactly one ID (see 'certctl scan schedule list')")
	}
	id, err := strconv.ParseInt(fs.Arg(0), 10, 64)
	if err != nil || id <= 0 {
		return usageError("schedule ID %q: want a positive number (see 'certctl scan schedule list')", fs.Arg(0))
	}
	st, closeStore, err := openScanStore(ctx, e, &c, *verbose)
	if err != nil {
		return err
	}
	defer closeStore()
	if err := st.RemoveScanSchedule(ctx, id); err != nil {
		if errors.Is(err, certdb.ErrNotFound) {
			return fmt.Errorf("no scan schedule %d: see 'certctl scan schedule list'", id)
		}
		return fmt.Errorf("remove scan schedule %d: %w", id, err)
	}
	fmt.Fprintf(e.stdout, "removed scan schedule %d\n", id)
	return nil
}

const historyDoc = `Show the stored scans of one endpoint, newest first, each with what
changed since the scan before it: grade, findings added (+) and removed (-),
protocols, and the certificate. Without TARGET: the latest stored scan of
every endpoint.

TARGET is spelled as for 'certctl scan' (host, host:port, postgres://host…);
--port (one port) and --starttls apply to a TARGET without them.`

func cmdScanHistory(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "scan history", " [TARGET]", historyDoc)
	var c common
	c.register(fs, e)
	port := fs.Int("port", 443, "`PORT` for a TARGET without one")
	startTLS := fs.String("starttls", "", "STARTTLS `PROTOCOL` (postgres or smtp) for a TARGET without a scheme")
	limit := fs.Int("limit", 20, "show at most `N` scans")
	jsonOut := fs.Bool("json", false, "print a JSON array")
	verbose := fs.Bool("verbose", false, "log to stderr")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usageError("scan history takes one TARGET (or none, for the latest scan of every target)")
	}
	if *limit < 1 || *limit > certdb.MaxLimit {
		return usageError("--limit must be between 1 and %d", certdb.MaxLimit)
	}
	if fs.NArg() == 0 {
		return latestScans(ctx, e, &c, *jsonOut, *verbose)
	}
	spec, err := targets.Parse(fs.Arg(0), *startTLS)
	if err != nil || spec.IsRange() {
		return usageError("scan history: TARGET %q: want one endpoint (host, host:port, postgres://host…): %v", fs.Arg(0), err)
	}
	t := spec.Target
	if t.Port == 0 {
		t.Port = *port
	}
	if err := t.Validate(); err != nil {
		return usageError("%v", err)
	}
	st, closeStore, err := openScanStore(ctx, e, &c, *verbose)
	if err != nil {
		return err
	}
	defer closeStore()
	// One more than shown: the oldest shown scan is compared with it.
	recs, err := st.ScanHistory(ctx, t.String(), *limit+1)
	if err != nil {
		return fmt.Errorf("scan history of %s: %w", t, err)
	}
	if len(recs) == 0 {
		return fmt.Errorf("no stored scans of %s: scan it with 'certctl scan --store %s' or add a schedule", t, t)
	}
	results := make([]*scan.Result, len(recs))
	for i, r := range recs {
		if results[i], err = schedule.Decode(r); err != nil {
			return err
		}
	}
	n := min(len(recs), *limit)
	diffs := make([]*schedule.Diff, n)
	for i := range n {
		var prev *scan.Result
		if i+1 < len(recs) {
			prev = results[i+1]
		}
		diffs[i] = schedule.Compare(prev, results[i])
	}
	if *jsonOut {
		type item struct {
			ID        int64           `json:"id"`
			Target    string          `json:"target"`
			Grade     string          `json:"grade"`
			ScannedAt time.Time       `json:"scanned_at"`
			NotAfter  *time.Time      `json:"not_after,omitempty"`
			Serial    string          `json:"serial,omitempty"`
			Changes   *schedule.Diff  `json:"changes"`
			Result    json.RawMessage `json:"result"`
		}
		out := make([]item, n)
		for i := range n {
			r := recs[i]
			out[i] = item{ID: r.ID, Target: r.Target, Grade: r.Grade, ScannedAt: r.ScannedAt, NotAfter: r.NotAfter,
				Serial: certdb.SerialHex(r.Serial), Changes: diffs[i], Result: r.Result}
		}
		return writeJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "scan history of %s (newest first):\n", t)
	for i := range n {
		r, res := recs[i], results[i]
		line := fmt.Sprintf("\n%s  grade %-3s", r.ScannedAt.UTC().Format(time.DateTime), gradeOrError(res))
		if c := res.Certificate; c != nil {
			line += fmt.Sprintf("  certificate %s, expires %s", c.Serial, c.NotAfter.UTC().Format(time.DateOnly))
		}
		if res.Error != "" {
			line += "  error: " + res.Error
		}
		fmt.Fprintln(e.stdout, line)
		if i+1 >= len(recs) {
			fmt.Fprintln(e.stdout, "    (first stored scan)")
			continue
		}
		for _, l := range describeDiff(diffs[i]) {
			fmt.Fprintln(e.stdout, "    "+l)
		}
	}
	return nil
}

// latestScans prints the latest stored scan of every endpoint.
func latestScans(ctx context.Context, e *env, c *common, jsonOut, verbose bool) error {
	st, closeStore, err := openScanStore(ctx, e, c, verbose)
	if err != nil {
		return err
	}
	defer closeStore()
	recs, err := st.LatestScanResults(ctx)
	if err != nil {
		return fmt.Errorf("latest scan results: %w", err)
	}
	if jsonOut {
		type item struct {
			ID        int64      `json:"id"`
			Target    string     `json:"target"`
			Grade     string     `json:"grade"`
			ScannedAt time.Time  `json:"scanned_at"`
			NotAfter  *time.Time `json:"not_after,omitempty"`
			Serial    string     `json:"serial,omitempty"`
		}
		out := []item{}
		for _, r := range recs {
			out = append(out, item{ID: r.ID, Target: r.Target, Grade: r.Grade, ScannedAt: r.ScannedAt, NotAfter: r.NotAfter, Serial: certdb.SerialHex(r.Serial)})
		}
		return writeJSON(e.stdout, out)
	}
	if len(recs) == 0 {
		fmt.Fprintln(e.stdout, "no stored scans (scan with 'certctl scan --store TARGET…' or add a schedule)")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tGRADE\tSCANNED (UTC)\tCERTIFICATE EXPIRES")
	for _, r := range recs {
		expires := "-"
		if r.NotAfter != nil {
			expires = r.NotAfter.UTC().Format(time.DateOnly)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Target, orDash(r.Grade), r.ScannedAt.UTC().Format(time.DateTime), expires)
	}
	return tw.Flush()
}

// describeDiff lists the changes of d, one per line.
func describeDiff(d *schedule.Diff) []string {
	if d.Empty() {
		return []string{"no change"}
	}
	var out []string
	if d.GradeBefore != d.GradeAfter {
		l := fmt.Sprintf("grade %s -> %s", orDash(d.GradeBefore), orDash(d.GradeAfter))
		if d.GradeDropped {
			l += " (dropped)"
		}
		out = append(out, l)
	}
	if d.ErrorAfter != "" && d.ErrorBefore != d.ErrorAfter {
		out = append(out, "error: "+d.ErrorAfter)
	}
	if d.CertificateChanged {
		out = append(out, fmt.Sprintf("certificate changed: %s -> %s", certText(d.CertificateBefore), certText(d.CertificateAfter)))
	}
	for _, p := range d.ProtocolsAdded {
		out = append(out, "+ protocol "+p)
	}
	for _, p := range d.ProtocolsRemoved {
		out = append(out, "- protocol "+p)
	}
	for _, f := range d.FindingsAdded {
		out = append(out, fmt.Sprintf("+ %s %s: %s", f.Severity, f.Check, f.Message))
	}
	for _, f := range d.FindingsRemoved {
		out = append(out, fmt.Sprintf("- %s %s: %s", f.Severity, f.Check, f.Message))
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func certText(c *scan.CertSummary) string {
	if c == nil {
		return "none"
	}
	return fmt.Sprintf("serial %s (expires %s)", c.Serial, c.NotAfter.UTC().Format(time.DateOnly))
}

// newScanRunner builds the scheduled-scan runner of `certctl serve` from the
// scan: section of certctl.yaml, with its metrics on reg.
func newScanRunner(c *common, l *loadedCA, log *slog.Logger, reg prometheus.Registerer) (*schedule.Runner, error) {
	st, ok := l.store.(schedule.Store)
	if !ok {
		return nil, fmt.Errorf("database %s cannot hold scan results", redact(c.dbURL(l.cfg)))
	}
	opts, err := l.cfg.Scan.RunnerOptions(c.getenv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", configFile, err)
	}
	opts = append(opts, schedule.WithLogger(log.With("component", "scan")), schedule.WithRegisterer(reg))
	return schedule.NewRunner(st, opts...)
}
