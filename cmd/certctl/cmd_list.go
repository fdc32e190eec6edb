package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/certctl/certctl/certdb"
)

const revokeDoc = `Revoke a certificate by serial (hex, as printed by issue and list).

Reasons (RFC 5280): ` + "unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, certificateHold, removeFromCRL, privilegeWithdrawn, aACompromise."

func cmdRevoke(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "revoke", " SERIAL", revokeDoc)
	var c common
	c.register(fs, e)
	reasonName := fs.String("reason", "unspecified", "revocation `REASON`")
	verbose := fs.Bool("verbose", false, "log to stderr")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError("revoke needs exactly one SERIAL")
	}
	serial, err := certdb.ParseSerial(fs.Arg(0))
	if err != nil {
		return usageError("%v", err)
	}
	reason, err := certdb.ParseReason(*reasonName)
	if err != nil {
		return usageError("%v", err)
	}
	log := newLogger(e, *verbose)
	l, err := loadCA(ctx, &c, log)
	if err != nil {
		return err
	}
	defer l.Close()
	if err := l.authority(ctx, &c, e, log).Revoke(ctx, serial, reason); err != nil {
		switch {
		case errors.Is(err, certdb.ErrNotFound):
			return fmt.Errorf("no certificate with serial %s in this CA's database: check the serial with `certctl list`", certdb.SerialHex(serial))
		case errors.Is(err, certdb.ErrAlreadyRevoked):
			return fmt.Errorf("certificate %s is already revoked", certdb.SerialHex(serial))
		case errors.Is(err, certdb.ErrNotIssued):
			return fmt.Errorf("serial %s was reserved but never issued: there is nothing to revoke", certdb.SerialHex(serial))
		}
		return err
	}
	fmt.Fprintf(e.stdout, "revoked %s (%s)\n", certdb.SerialHex(serial), reason)
	return nil
}

const listDoc = `List certificates in the certificate database, in serial order.

--status valid lists unexpired, unrevoked certificates; expired lists
unrevoked certificates past their expiry; revoked lists revoked ones;
reserved lists serials whose signing never completed.`

func cmdList(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "list", "", listDoc)
	var c common
	c.register(fs, e)
	status := fs.String("status", "", "only `STATUS`: valid, revoked, expired or reserved")
	within := fs.Duration("expiring-within", 0, "only certificates expiring within `DURATION` (e.g. 720h)")
	profile := fs.String("profile", "", "only certificates of `PROFILE`")
	limit := fs.Int("limit", 0, "print at most `N` certificates (default: all)")
	jsonOut := fs.Bool("json", false, "print a JSON array")
	verbose := fs.Bool("verbose", false, "log to stderr")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("list takes no arguments")
	}
	now := time.Now()
	q, err := certdb.StateQuery(*status, now)
	if err != nil {
		return usageError("--status %q: want valid, revoked, expired or reserved", *status)
	}
	q.Profile = *profile
	if *within < 0 {
		return usageError("--expiring-within must be positive")
	}
	if *within > 0 {
		q.ExpiringBefore = now.Add(*within)
		if q.Expiry == certdb.ExpiryAny {
			q.Expiry = certdb.ExpiryUnexpired
		}
	}
	if *limit < 0 {
		return usageError("--limit must be positive")
	}
	l, err := loadCA(ctx, &c, newLogger(e, *verbose))
	if err != nil {
		return err
	}
	defer l.Close()

	var all []*certdb.Certificate
	for {
		page, err := l.store.ListCertificates(ctx, q)
		if err != nil {
			return fmt.Errorf("list certificates: %w", err)
		}
		all = append(all, page...)
		if *limit > 0 && len(all) >= *limit {
			all = all[:*limit]
			break
		}
		if len(page) < q.EffectiveLimit() {
			break
		}
		q.After = page[len(page)-1].Serial
	}
	if *jsonOut {
		out := make([]certJSON, 0, len(all))
		for _, r := range all {
			out = append(out, toJSON(r, now, false))
		}
		return writeJSON(e.stdout, out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERIAL\tSTATUS\tPROFILE\tNOT AFTER\tSUBJECT\tNAMES")
	for _, r := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", certdb.SerialHex(r.Serial), r.State(now), r.Profile,
			r.NotAfter.UTC().Format(time.RFC3339), r.Subject, strings.Join(r.SANs, ","))
	}
	return tw.Flush()
}

func cmdShow(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "show", " SERIAL", "Show one certificate record by serial (hex).")
	var c common
	c.register(fs, e)
	jsonOut := fs.Bool("json", false, "print JSON (includes the certificate PEM)")
	pemOut := fs.Bool("pem", false, "print only the certificate PEM")
	verbose := fs.Bool("verbose", false, "log to stderr")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError("show needs exactly one SERIAL")
	}
	serial, err := certdb.ParseSerial(fs.Arg(0))
	if err != nil {
		return usageError("%v", err)
	}
	l, err := loadCA(ctx, &c, newLogger(e, *verbose))
	if err != nil {
		return err
	}
	defer l.Close()
	r, err := l.store.GetCertificate(ctx, serial)
	if errors.Is(err, certdb.ErrNotFound) {
		return fmt.Errorf("no certificate with serial %s in this CA's database: check the serial with `certctl list`", certdb.SerialHex(serial))
	}
	if err != nil {
		return err
	}
	now := time.Now()
	switch {
	case *pemOut:
		if r.DER == nil {
			return fmt.Errorf("serial %s was reserved but never issued: there is no certificate", certdb.SerialHex(serial))
		}
		_, err := e.stdout.Write(pemCert(r.DER))
		return err
	}
	scts, err := storedSCTs(ctx, l.store, serial) // cmd_ct.go
	if err != nil {
		return err
	}
	if *jsonOut {
		j := toJSON(r, now, true)
		j.SCTs = sctsJSON(scts)
		return writeJSON(e.stdout, j)
	}
	if err := printRecord(e.stdout, r, now); err != nil {
		return err
	}
	return printSCTs(e.stdout, scts)
}

// certJSON is the JSON form of a certificate record (list, show).
type certJSON struct {
	Serial      string     `json:"serial"`
	Status      string     `json:"status"`
	Profile     string     `json:"profile"`
	Subject     string     `json:"subject"`
	SANs        []string   `json:"sans"`
	IssuerKeyID string     `json:"issuer_key_id"`
	NotBefore   time.Time  `json:"not_before"`
	NotAfter    time.Time  `json:"not_after"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	Reason      string     `json:"revocation_reason,omitempty"`
	Requester   string     `json:"requester"`
	CreatedAt   time.Time  `json:"created_at"`
	PEM         string     `json:"certificate_pem,omitempty"`
	SCTs        []sctJSON  `json:"scts,omitempty"` // show only
}

func toJSON(r *certdb.Certificate, now time.Time, withPEM bool) certJSON {
	j := certJSON{
		Serial:      certdb.SerialHex(r.Serial),
		Status:      r.State(now),
		Profile:     r.Profile,
		Subject:     r.Subject,
		SANs:        r.SANs,
		IssuerKeyID: fmt.Sprintf("%x", r.IssuerKeyID),
		NotBefore:   r.NotBefore.UTC(),
		NotAfter:    r.NotAfter.UTC(),
		Requester:   r.Requester,
		CreatedAt:   r.CreatedAt.UTC(),
	}
	if j.SANs == nil {
		j.SANs = []string{}
	}
	if r.Status == certdb.StatusRevoked {
		t := r.RevokedAt.UTC()
		j.RevokedAt = &t
		j.Reason = r.Reason.String()
	}
	if withPEM && r.DER != nil {
		j.PEM = string(pemCert(r.DER))
	}
	return j
}

func printRecord(w io.Writer, r *certdb.Certificate, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	fmt.Fprintf(tw, "Serial:\t%s\n", certdb.SerialHex(r.Serial))
	fmt.Fprintf(tw, "Status:\t%s\n", r.State(now))
	if r.Status == certdb.StatusRevoked {
		fmt.Fprintf(tw, "Revoked:\t%s (%s)\n", r.RevokedAt.UTC().Format(time.RFC3339), r.Reason)
	}
	fmt.Fprintf(tw, "Profile:\t%s\n", r.Profile)
	fmt.Fprintf(tw, "Subject:\t%s\n", r.Subject)
	fmt.Fprintf(tw, "Names:\t%s\n", strings.Join(r.SANs, ", "))
	fmt.Fprintf(tw, "Not before:\t%s\n", r.NotBefore.UTC().Format(time.RFC3339))
	fmt.Fprintf(tw, "Not after:\t%s\n", r.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(tw, "Issuer key ID:\t%x\n", r.IssuerKeyID)
	fmt.Fprintf(tw, "Requester:\t%s\n", r.Requester)
	fmt.Fprintf(tw, "Recorded:\t%s\n", r.CreatedAt.UTC().Format(time.RFC3339))
	if r.DER != nil {
		if c, err := x509.ParseCertificate(r.DER); err == nil {
			fmt.Fprintf(tw, "Signature:\t%s\n", c.SignatureAlgorithm)
			fmt.Fprintf(tw, "Key:\t%s\n", c.PublicKeyAlgorithm)
		}
	}
	return tw.Flush()
}

const dbDoc = `Database maintenance.

  certctl db migrate   create or upgrade the certificate database schema
                       (PostgreSQL needs this once per upgrade; SQLite migrates on open)`

func cmdDB(ctx context.Context, e *env, args []string) error {
	return dispatch(ctx, e, "db", "db migrate [flags]", dbDoc, []subcommand{{"migrate", cmdDBMigrate}}, args)
}

func cmdDBMigrate(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "db migrate", "", "Create or upgrade the certificate database schema (idempotent; safe with several processes).")
	var c common
	c.register(fs, e)
	verbose := fs.Bool("verbose", false, "log to stderr")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	var cfg *Config
	if c.db == "" {
		var err error
		if cfg, err = c.loadConfig(); err != nil {
			return err
		}
	}
	url := c.dbURL(cfg)
	st, err := openStore(ctx, url, true, newLogger(e, *verbose))
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Fprintf(e.stdout, "database %s is up to date\n", redact(url))
	return nil
}
