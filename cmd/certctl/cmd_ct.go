package main

import (
	"context"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/ct"
	"github.com/certctl/certctl/issuance"
)

const ctDoc = `Certificate Transparency (RFC 6962).

Profiles with a ct: section submit every certificate to CT logs as a
precertificate first and embed the logs' SCTs:

  profiles:
    server:
      ...
      ct:
        logs:
          - url: https://ct.example.internal/log      # submission prefix
            public_key: ct/log1.pub                    # PEM, or a file (relative to DIR)
            operator: Example Ops
        require: 1                      # valid SCTs needed, from distinct logs
        require_distinct_operators: false
        on_failure: fail                # or issue_without_scts (logged and audited)
        submit_final: false             # also submit the final certificate
        timeout: 10s                    # per log

Subcommands:
  verify CERT.pem   check the embedded SCTs against the logs configured in DIR
                    (any profile); exits non-zero when an SCT does not verify`

func cmdCT(ctx context.Context, e *env, args []string) error {
	return dispatch(ctx, e, "ct", "ct verify [flags] CERT.pem", ctDoc, []subcommand{{"verify", cmdCTVerify}}, args)
}

// sctResultJSON is one embedded SCT in `certctl ct verify --json`.
type sctResultJSON struct {
	LogID     string    `json:"log_id"`
	LogURL    string    `json:"log_url,omitempty"`
	Operator  string    `json:"operator,omitempty"`
	Timestamp time.Time `json:"timestamp"`
	Valid     bool      `json:"valid"`
	Error     string    `json:"error,omitempty"`
}

type ctVerifyJSON struct {
	Serial string          `json:"serial"`
	Valid  bool            `json:"valid"`
	SCTs   []sctResultJSON `json:"scts"`
}

func cmdCTVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "ct verify", " CERT.pem",
		"Verify the SCTs embedded in a certificate against the CT logs configured in DIR's certctl.yaml.\n"+
			"The issuer certificate is DIR/intermediate.crt unless --issuer names one.\nExits non-zero if the certificate has no SCTs or any SCT does not verify.")
	var c common
	c.register(fs, e)
	issuerFile := fs.String("issuer", "", "issuer certificate `FILE` (PEM; default DIR/"+intermediateCertFile+")")
	jsonOut := fs.Bool("json", false, "print JSON")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError("ct verify needs exactly one CERT.pem")
	}
	cert, err := readCert(fs.Arg(0))
	if err != nil {
		return err
	}
	if *issuerFile == "" {
		*issuerFile = c.path(intermediateCertFile)
	}
	issuer, err := readCert(*issuerFile)
	if err != nil {
		return fmt.Errorf("%w (pass the issuing CA certificate with --issuer)", err)
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return err
	}
	logs, err := configuredLogs(cfg)
	if err != nil {
		return err
	}
	vs, err := ct.VerifyEmbedded(cert.Raw, issuer.Raw, logs)
	if err != nil {
		return err
	}
	out := ctVerifyJSON{Serial: certdb.SerialHex(cert.SerialNumber), Valid: true}
	bad := 0
	for _, v := range vs {
		r := sctResultJSON{LogID: hex.EncodeToString(v.LogID[:]), Timestamp: v.Timestamp, Valid: v.Err == nil}
		if v.Log != nil {
			r.LogURL, r.Operator = v.Log.URL, v.Log.Operator
		}
		if v.Err != nil {
			r.Error = v.Err.Error()
			out.Valid = false
			bad++
		}
		out.SCTs = append(out.SCTs, r)
	}
	if *jsonOut {
		if err := writeJSON(e.stdout, out); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "Serial:\t%s\n", out.Serial)
		for j, r := range out.SCTs {
			status := "OK"
			if !r.Valid {
				status = "FAIL: " + r.Error
			}
			log := r.LogURL
			if log == "" {
				log = "unknown log " + r.LogID
			} else {
				log += " (" + r.Operator + ")"
			}
			fmt.Fprintf(tw, "SCT %d:\t%s\t%s\t%s\n", j+1, log, r.Timestamp.Format(time.RFC3339Nano), status)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d embedded SCTs do not verify: check the log keys in %s and that --issuer is the certificate's issuer", bad, len(vs), configFile)
	}
	return nil
}

// configuredLogs collects the CT logs of every profile, each once.
func configuredLogs(cfg *Config) ([]issuance.CTLog, error) {
	profiles, err := buildProfiles(cfg)
	if err != nil {
		return nil, err
	}
	var logs []issuance.CTLog
	seen := map[[32]byte]bool{}
	for _, p := range profiles {
		pol := p.CT()
		if pol == nil {
			continue
		}
		for _, l := range pol.Logs {
			if !seen[l.ID] {
				seen[l.ID] = true
				logs = append(logs, l)
			}
		}
	}
	if len(logs) == 0 {
		return nil, fmt.Errorf("%s configures no CT logs: add a ct: section to a profile (see `certctl ct --help`)", configFile)
	}
	return logs, nil
}

// resolveCTKeys replaces CT log public_key values that are not PEM by the
// contents of the file they name (relative paths are relative to dir), so
// that issuance.NewProfile sees PEM only.
func resolveCTKeys(cfg *Config, dir string) error {
	for name, pc := range cfg.Profiles {
		if pc.CT == nil {
			continue
		}
		for j, l := range pc.CT.Logs {
			k := strings.TrimSpace(l.PublicKey)
			if k == "" || strings.HasPrefix(k, "-----BEGIN") {
				continue
			}
			path := k
			if !filepath.IsAbs(path) {
				path = filepath.Join(dir, path)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("%s: profile %q: ct.logs[%d].public_key: %v: give the log's PEM public key or a file holding it", configFile, name, j, err)
			}
			if blk, _ := pem.Decode(b); blk == nil {
				return fmt.Errorf("%s: profile %q: ct.logs[%d].public_key: %s holds no PEM block", configFile, name, j, path)
			}
			pc.CT.Logs[j].PublicKey = string(b)
		}
	}
	return nil
}

// sctLister is the store capability `certctl show` uses for SCTs.
type sctLister interface {
	ListSCTs(ctx context.Context, serial *big.Int) ([]*certdb.SCT, error)
}

// sctJSON is one stored SCT in `certctl show --json`.
type sctJSON struct {
	LogID     string    `json:"log_id"`
	LogURL    string    `json:"log_url"`
	Operator  string    `json:"operator"`
	Timestamp time.Time `json:"timestamp"`
	Embedded  bool      `json:"embedded"`
}

// storedSCTs returns the SCTs stored for serial (none when the store keeps
// no SCTs).
func storedSCTs(ctx context.Context, st any, serial *big.Int) ([]*certdb.SCT, error) {
	sl, ok := st.(sctLister)
	if !ok {
		return nil, nil
	}
	scts, err := sl.ListSCTs(ctx, serial)
	if err != nil && !errors.Is(err, certdb.ErrNotFound) {
		return nil, err
	}
	return scts, nil
}

func sctsJSON(scts []*certdb.SCT) []sctJSON {
	out := make([]sctJSON, 0, len(scts))
	for _, s := range scts {
		out = append(out, sctJSON{LogID: hex.EncodeToString(s.LogID), LogURL: s.LogURL, Operator: s.Operator,
			Timestamp: s.Timestamp.UTC(), Embedded: s.Embedded})
	}
	return out
}

// printSCTs adds the SCT lines to `certctl show`.
func printSCTs(w io.Writer, scts []*certdb.SCT) error {
	if len(scts) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	for _, s := range scts {
		kind := "embedded"
		if !s.Embedded {
			kind = "final"
		}
		fmt.Fprintf(tw, "SCT:\t%s (%s)\t%s\t%s\n", s.LogURL, s.Operator, s.Timestamp.UTC().Format(time.RFC3339Nano), kind)
	}
	return tw.Flush()
}
