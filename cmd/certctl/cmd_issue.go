package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
)

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*m = append(*m, s)
		}
	}
	return nil
}

const issueDoc = `Generate a private key and issue a certificate for it.

Writes PREFIX.crt (leaf, then intermediate) and PREFIX.key (mode 0600) and
prints the serial (hex). PREFIX defaults to the common name.
A common name that looks like a host name (contains a dot, or is localhost)
or an IP address is also added as a subject alternative name.`

func cmdIssue(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "issue", "", issueDoc)
	var c common
	c.register(fs, e)
	cn := fs.String("cn", "", "subject common `NAME` (required)")
	var sans multiFlag
	fs.Var(&sans, "san", "subject alternative `NAME` (DNS name, IP, URI or email); repeatable or comma-separated")
	profile := fs.String("profile", "server", "signing `PROFILE` from certctl.yaml (server, client, peer, …)")
	out := fs.String("out", "", "output `PREFIX` for PREFIX.crt and PREFIX.key (default: the common name)")
	keyType := fs.String("key-type", "ecdsa-p256", "key `TYPE`: "+joinKeyTypes())
	jsonOut := fs.Bool("json", false, "print a JSON object instead of the serial")
	verbose := fs.Bool("verbose", false, "log to stderr")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("issue takes no arguments, got %q (names go in --san)", fs.Args())
	}
	if *cn == "" {
		return usageError("issue needs --cn NAME")
	}
	kt, err := keys.ParseKeyType(*keyType)
	if err != nil {
		return usageError("%v", err)
	}
	prefix := *out
	if prefix == "" {
		prefix = strings.NewReplacer("/", "_", "*", "wildcard", ":", "_").Replace(*cn)
	}
	crtPath, keyPath := prefix+".crt", prefix+".key"
	for _, p := range []string{crtPath, keyPath} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s already exists: choose another --out PREFIX or remove it", p)
		}
	}
	names := []string(sans)
	if looksLikeHost(*cn) && !slices.Contains(names, *cn) {
		// RFC 6125 §6.4.4: clients match SANs, not the CN; a host-name CN
		// must be a SAN too.
		names = append([]string{*cn}, names...)
	}
	req := &issuance.Request{}
	req.Subject.CommonName = *cn
	if err := req.AddNames(names...); err != nil {
		return fmt.Errorf("--san: %w", err)
	}

	log := newLogger(e, *verbose)
	l, err := loadCA(ctx, &c, log)
	if err != nil {
		return err
	}
	defer l.Close()

	key, err := keys.Generate(kt)
	if err != nil {
		return err
	}
	req.PublicKey = key.Public()
	issued, err := l.authority(ctx, &c, e, log).Issue(ctx, ca.Request{Profile: *profile, Request: req, Requester: requester(e)})
	if err != nil {
		return explainIssueError(err, *profile)
	}
	// The certificate is in certdb; now hand it out.
	if err := keys.WriteFile(keyPath, key); err != nil {
		return fmt.Errorf("certificate %s was issued and recorded, but its key could not be written: %w (revoke it with `certctl revoke %s`)",
			certdb.SerialHex(issued.Serial), err, certdb.SerialHex(issued.Serial))
	}
	if err := writeFileExcl(crtPath, pemChain(issued.Chain), 0o644); err != nil {
		os.Remove(keyPath)
		return fmt.Errorf("certificate %s was issued and recorded, but could not be written: %w (revoke it with `certctl revoke %s`)",
			certdb.SerialHex(issued.Serial), err, certdb.SerialHex(issued.Serial))
	}
	return printIssued(e.stdout, issued, *jsonOut, map[string]any{"certificate_file": crtPath, "key_file": keyPath})
}

const signDoc = `Issue a certificate for a certificate signing request (PEM or DER).

The CSR's signature is checked, and its subject and names must satisfy the
profile. The chain (leaf, then intermediate) is written to --out FILE, or
to stdout; the serial goes to stderr (or use --json).`

func cmdSign(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "sign", " CSR.pem", signDoc)
	var c common
	c.register(fs, e)
	profile := fs.String("profile", "server", "signing `PROFILE` from certctl.yaml")
	out := fs.String("out", "", "write the chain PEM to `FILE` instead of stdout")
	jsonOut := fs.Bool("json", false, "print a JSON object (with the chain PEM) instead")
	verbose := fs.Bool("verbose", false, "log to stderr")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError("sign needs exactly one CSR file (use - for stdin)")
	}
	var (
		data []byte
		err  error
	)
	if fs.Arg(0) == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	} else {
		data, err = os.ReadFile(fs.Arg(0))
	}
	if err != nil {
		return fmt.Errorf("read CSR: %w", err)
	}
	csr, err := issuance.ParseCSR(data)
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	log := newLogger(e, *verbose)
	l, err := loadCA(ctx, &c, log)
	if err != nil {
		return err
	}
	defer l.Close()
	issued, err := l.authority(ctx, &c, e, log).Issue(ctx, ca.Request{Profile: *profile, Request: issuance.RequestFromCSR(csr), Requester: requester(e)})
	if err != nil {
		return explainIssueError(err, *profile)
	}
	chain := pemChain(issued.Chain)
	extra := map[string]any{}
	if *out != "" {
		if err := writeFileExcl(*out, chain, 0o644); err != nil {
			return fmt.Errorf("certificate %s was issued and recorded, but could not be written: %w", certdb.SerialHex(issued.Serial), err)
		}
		extra["certificate_file"] = *out
	}
	if *jsonOut {
		extra["chain_pem"] = string(chain)
		return printIssued(e.stdout, issued, true, extra)
	}
	if *out == "" {
		if _, err := e.stdout.Write(chain); err != nil {
			return err
		}
		fmt.Fprintln(e.stderr, certdb.SerialHex(issued.Serial))
		return nil
	}
	return printIssued(e.stdout, issued, false, extra)
}

// issuedJSON is the --json output of issue and sign. Scripts rely on these
// field names.
type issuedJSON struct {
	Serial          string    `json:"serial"`
	Profile         string    `json:"profile"`
	Subject         string    `json:"subject"`
	SANs            []string  `json:"sans"`
	NotBefore       time.Time `json:"not_before"`
	NotAfter        time.Time `json:"not_after"`
	CertificateFile string    `json:"certificate_file,omitempty"`
	KeyFile         string    `json:"key_file,omitempty"`
	ChainPEM        string    `json:"chain_pem,omitempty"`
}

func printIssued(w io.Writer, is *ca.Issued, asJSON bool, extra map[string]any) error {
	if !asJSON {
		_, err := fmt.Fprintln(w, certdb.SerialHex(is.Serial))
		return err
	}
	j := issuedJSON{
		Serial:    certdb.SerialHex(is.Serial),
		Profile:   is.Profile,
		Subject:   is.Certificate.Subject.String(),
		SANs:      ca.SANs(is.Certificate),
		NotBefore: is.Certificate.NotBefore.UTC(),
		NotAfter:  is.Certificate.NotAfter.UTC(),
	}
	if j.SANs == nil {
		j.SANs = []string{}
	}
	if v, ok := extra["certificate_file"].(string); ok {
		j.CertificateFile = v
	}
	if v, ok := extra["key_file"].(string); ok {
		j.KeyFile = v
	}
	if v, ok := extra["chain_pem"].(string); ok {
		j.ChainPEM = v
	}
	return writeJSON(w, j)
}

// explainIssueError adds what to do next to issuance errors.
func explainIssueError(err error, profile string) error {
	var pe *issuance.PolicyError
	var le *issuance.LintError
	switch {
	case errors.Is(err, ca.ErrUnknownProfile):
		return fmt.Errorf("%w: pass --profile with one of those, or add the profile to %s", err, configFile)
	case errors.As(err, &pe):
		return fmt.Errorf("request refused: %w\nchange the request, or widen profile %q in %s", err, profile, configFile)
	case errors.As(err, &le):
		return fmt.Errorf("request refused by pre-issuance lint: %w", err)
	case errors.Is(err, ca.ErrStore):
		return fmt.Errorf("%w\nno certificate was issued; check that the database is reachable and retry", err)
	}
	return err
}

// looksLikeHost: a CN used as a SAN by default.
func looksLikeHost(cn string) bool {
	if net.ParseIP(cn) != nil {
		return true
	}
	return cn == "localhost" || (strings.Contains(cn, ".") && !strings.ContainsAny(cn, " @/:"))
}

// requester names the CLI user in certdb and audit logs.
func requester(e *env) string {
	u := e.getenv("USER")
	if u == "" {
		u = fmt.Sprint(os.Getuid())
	}
	return "cli:" + u
}
