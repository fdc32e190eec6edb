package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/server"
)

const tokenDoc = `Manage API tokens for 'certctl serve'.

  certctl token create --profile P --names PATTERN… --ttl 24h [--single-use] [--admin]
  certctl token list [--json]
  certctl token revoke ID

create prints the token once, alone on the last line of stdout; the database
keeps only its hash. A token may issue only under its profiles and only for
names matching its patterns ("*.svc.internal" = one label, "**.internal" =
any depth, CIDRs for IPs). Single-use tokens are the bootstrap path for a
service's first certificate.`

func cmdToken(ctx context.Context, e *env, args []string) error {
	return dispatch(ctx, e, "token", "token create|list|revoke [flags]", tokenDoc, []subcommand{
		{"create", cmdTokenCreate}, {"list", cmdTokenList}, {"revoke", cmdTokenRevoke},
	}, args)
}

// tokenStore is what the token commands need.
type tokenStore interface {
	certdb.TokenStore
	certdb.AuditStore
}

// openTokenStore opens the database of the CA in DIR; no CA key is read.
func openTokenStore(ctx context.Context, e *env, c *common, verbose bool) (*Config, store, tokenStore, error) {
	cfg, err := c.loadConfig()
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := openStore(ctx, c.dbURL(cfg), false, newLogger(e, verbose))
	if err != nil {
		return nil, nil, nil, err
	}
	ts, ok := st.(tokenStore)
	if !ok {
		st.Close()
		return nil, nil, nil, errors.New("this database cannot hold API tokens")
	}
	return cfg, st, ts, nil
}

func cmdTokenCreate(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "token create", "", "Create an API token. The token is printed once, alone on the last line of stdout.")
	var c common
	c.register(fs, e)
	var profiles, names multiFlag
	fs.Var(&profiles, "profile", "`PROFILE` the token may issue under (repeatable or comma-separated)")
	fs.Var(&names, "names", "name `PATTERN`s the token may request, e.g. '*.svc.internal' (repeatable or comma-separated)")
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime of the token")
	single := fs.Bool("single-use", false, "the token is consumed by its first issuance (bootstrap of a new service)")
	admin := fs.Bool("admin", false, "the token may call everything (issue under any profile, revoke, list)")
	desc := fs.String("description", "", "a note stored with the token")
	verbose := fs.Bool("verbose", false, "log to stderr")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("token create takes no arguments (patterns go in --names)")
	}
	if *ttl <= 0 {
		return usageError("--ttl must be positive")
	}
	if !*admin && len(profiles) == 0 {
		return usageError("token create needs --profile (or --admin)")
	}
	if !*admin && len(names) == 0 {
		return usageError("token create needs --names: the name patterns the token may request")
	}
	if _, err := issuance.NewNameScope(names); err != nil {
		return usageError("--names: %v", err)
	}
	cfg, st, ts, err := openTokenStore(ctx, e, &c, *verbose)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, p := range profiles {
		if _, ok := cfg.Profiles[p]; !ok {
			known := make([]string, 0, len(cfg.Profiles))
			for n := range cfg.Profiles {
				known = append(known, n)
			}
			slices.Sort(known)
			return usageError("--profile %q is not in %s (have: %s)", p, configFile, strings.Join(known, ", "))
		}
	}
	text, rec := server.NewToken()
	rec.Profiles, rec.Names = profiles, names
	rec.SingleUse, rec.Admin, rec.Description = *single, *admin, *desc
	rec.CreatedBy = requester(e)
	rec.ExpiresAt = time.Now().Add(*ttl).UTC()
	if err := ts.CreateToken(ctx, rec); err != nil {
		return fmt.Errorf("store token: %w", err)
	}
	auditCLI(ctx, e, ts, "token.create", rec.ID, fmt.Sprintf("profiles=%v names=%v single_use=%t admin=%t", rec.Profiles, rec.Names, rec.SingleUse, rec.Admin))
	fmt.Fprintf(e.stdout, "token %s: profiles %v, names %v, expires %s%s%s\n", rec.ID, rec.Profiles, rec.Names,
		rec.ExpiresAt.Format(time.RFC3339), map[bool]string{true: ", single-use"}[rec.SingleUse], map[bool]string{true: ", admin"}[rec.Admin])
	fmt.Fprintln(e.stdout, text)
	return nil
}

func auditCLI(ctx context.Context, e *env, st certdb.AuditStore, action, target, detail string) {
	err := st.AppendAudit(ctx, &certdb.AuditEvent{Time: time.Now(), Actor: requester(e), Action: action, Target: target, Outcome: "ok", Detail: detail})
	if err != nil {
		fmt.Fprintf(e.stderr, "certctl: warning: audit event not recorded: %v\n", err)
	}
}

// tokenJSON is the JSON form of a token (never the secret or its hash).
type tokenJSON struct {
	ID          string     `json:"id"`
	Profiles    []string   `json:"profiles"`
	Names       []string   `json:"names"`
	SingleUse   bool       `json:"single_use"`
	Admin       bool       `json:"admin"`
	Description string     `json:"description,omitempty"`
	CreatedBy   string     `json:"created_by"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   time.Time  `json:"expires_at"`
	UsedAt      *time.Time `json:"used_at,omitempty"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	State       string     `json:"state"`
}

func tokenState(t *certdb.Token, now time.Time) string {
	switch {
	case !t.RevokedAt.IsZero():
		return "revoked"
	case !now.Before(t.ExpiresAt):
		return "expired"
	case t.SingleUse && !t.UsedAt.IsZero():
		return "used"
	}
	return "active"
}

func cmdTokenList(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "token list", "", "List API tokens (never their secrets).")
	var c common
	c.register(fs, e)
	jsonOut := fs.Bool("json", false, "print a JSON array")
	verbose := fs.Bool("verbose", false, "log to stderr")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	_, st, ts, err := openTokenStore(ctx, e, &c, *verbose)
	if err != nil {
		return err
	}
	defer st.Close()
	toks, err := ts.ListTokens(ctx)
	if err != nil {
		return fmt.Errorf("list tokens: %w", err)
	}
	now := time.Now()
	if *jsonOut {
		out := make([]tokenJSON, 0, len(toks))
		for _, t := range toks {
			j := tokenJSON{ID: t.ID, Profiles: nonNilStrings(t.Profiles), Names: nonNilStrings(t.Names), SingleUse: t.SingleUse, Admin: t.Admin,
				Description: t.Description, CreatedBy: t.CreatedBy, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, State: tokenState(t, now)}
			if !t.UsedAt.IsZero() {
				u := t.UsedAt
				j.UsedAt = &u
			}
			if !t.RevokedAt.IsZero() {
				r := t.RevokedAt
				j.RevokedAt = &r
			}
			out = append(out, j)
		}
		return writeJSON(e.stdout, out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tPROFILES\tNAMES\tEXPIRES\tFLAGS")
	for _, t := range toks {
		var flags []string
		if t.SingleUse {
			flags = append(flags, "single-use")
		}
		if t.Admin {
			flags = append(flags, "admin")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, tokenState(t, now), strings.Join(t.Profiles, ","), strings.Join(t.Names, ","),
			t.ExpiresAt.UTC().Format(time.RFC3339), strings.Join(flags, ","))
	}
	return tw.Flush()
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func cmdTokenRevoke(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "token revoke", " ID", "Revoke an API token by its ID (as shown by token list).")
	var c common
	c.register(fs, e)
	verbose := fs.Bool("verbose", false, "log to stderr")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError("token revoke needs exactly one token ID")
	}
	id := fs.Arg(0)
	if tid, _, err := server.ParseToken(id); err == nil {
		id = tid // the whole token text was pasted
	}
	_, st, ts, err := openTokenStore(ctx, e, &c, *verbose)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := ts.RevokeToken(ctx, id, time.Now()); err != nil {
		switch {
		case errors.Is(err, certdb.ErrNotFound):
			return fmt.Errorf("no token with ID %q: see `certctl token list`", id)
		case errors.Is(err, certdb.ErrTokenRevoked):
			return fmt.Errorf("token %s is already revoked", id)
		}
		return err
	}
	auditCLI(ctx, e, ts, "token.revoke", id, "")
	fmt.Fprintf(e.stdout, "revoked token %s\n", id)
	return nil
}
