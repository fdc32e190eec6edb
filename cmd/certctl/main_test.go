package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rogpeppe/go-internal/testscript"
	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/certctl/certctl/internal/pkitest"
)

// pgAdminDSN is set by TestMain once the throwaway PostgreSQL cluster runs.
// (Test-binary state: the scripts run as subprocesses and get DSNs through
// their environment.)
var pgAdminDSN string

// withPostgres runs the tests with a throwaway PostgreSQL cluster. The
// testscript subcommands (certctl itself) never reach Run.
type withPostgres struct{ m *testing.M }

func (w withPostgres) Run() int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	pg, err := pkitest.StartPostgres(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start PostgreSQL for the CLI tests:", err)
		return 1
	}
	defer pg.Stop()
	pgAdminDSN = pg.AdminDSN()
	return w.m.Run()
}

func TestMain(m *testing.M) {
	testscript.Main(withPostgres{m}, map[string]func(){
		"certctl": func() {
			os.Exit(exitCode(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr), os.Stderr))
		},
	})
}

var dbCounter atomic.Int64

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata",
		Setup: func(env *testscript.Env) error {
			dsn, drop, err := newPostgresDB(pgAdminDSN)
			if err != nil {
				return err
			}
			env.Defer(drop)
			env.Setenv("PGDSN", dsn)
			env.Setenv("CERTCTL_DIR", "")
			env.Setenv("CERTCTL_DB", "")
			env.Setenv("USER", "tester")
			env.Setenv("CERTCTL_PKCS11_PIN", "")
			env.Setenv("CERTCTL_PKCS11_MODULE", "")
			env.Values["ctlogs"] = map[string]*pkitest.CTLog{} // ct_test.go
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"mode":     cmdMode,
			"serialof": cmdSerialOf,
			"zlint":    cmdZlint,
			"mkcsr":    cmdMkCSR,
			"certinfo": cmdCertInfo,
			"softhsm":  cmdSoftHSM,
			"tlsserve": cmdTLSServer,
			"ctlog":    cmdCTLog, // ct_test.go
		},
	})
}

// newPostgresDB creates a database for one script.
func newPostgresDB(admin string) (dsn string, drop func(), err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", nil, fmt.Errorf("connect admin: %w", err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("cli_%d_%d", os.Getpid(), dbCounter.Add(1))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	drop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, admin); err == nil {
			c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	}
	return u.String(), drop, nil
}

// mode FILE 0600: the file's permission bits.
func cmdMode(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: mode FILE OCTAL")
	}
	fi, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	want, err := strconv.ParseUint(args[1], 8, 32)
	ts.Check(err)
	got := uint64(fi.Mode().Perm())
	if (got == want) == neg {
		ts.Fatalf("%s: mode %#o, want %s%#o", args[0], got, map[bool]string{true: "not ", false: ""}[neg], want)
	}
}

func readCerts(ts *testscript.TestScript, file string) []*x509.Certificate {
	b, err := os.ReadFile(ts.MkAbs(file))
	ts.Check(err)
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		ts.Check(err)
		out = append(out, c)
	}
	if len(out) == 0 {
		ts.Fatalf("%s: no certificates", file)
	}
	return out
}

// serialof FILE VAR: sets $VAR to the hex serial of the first certificate.
func cmdSerialOf(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: serialof FILE VAR")
	}
	c := readCerts(ts, args[0])[0]
	ts.Setenv(args[1], fmt.Sprintf("%x", c.SerialNumber.Bytes()))
}

// certinfo FILE: prints facts about the first certificate to stdout, for
// matching with stdout.
func cmdCertInfo(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: certinfo FILE")
	}
	certs := readCerts(ts, args[0])
	c := certs[0]
	var b strings.Builder
	fmt.Fprintf(&b, "chain-length: %d\n", len(certs))
	fmt.Fprintf(&b, "subject: %s\n", c.Subject)
	fmt.Fprintf(&b, "dns: %s\n", strings.Join(c.DNSNames, ","))
	var ips []string
	for _, ip := range c.IPAddresses {
		ips = append(ips, ip.String())
	}
	fmt.Fprintf(&b, "ip: %s\n", strings.Join(ips, ","))
	fmt.Fprintf(&b, "ski: %t\n", len(c.SubjectKeyId) > 0)
	fmt.Fprintf(&b, "aki: %t\n", len(c.AuthorityKeyId) > 0)
	fmt.Fprintf(&b, "ocsp: %s\n", strings.Join(c.OCSPServer, ","))
	fmt.Fprintf(&b, "ca-issuers: %s\n", strings.Join(c.IssuingCertificateURL, ","))
	fmt.Fprintf(&b, "crl: %s\n", strings.Join(c.CRLDistributionPoints, ","))
	fmt.Fprintf(&b, "is-ca: %t\n", c.IsCA)
	fmt.Fprintf(&b, "key: %s\n", c.PublicKeyAlgorithm)
	fmt.Fprintf(&b, "validity-seconds: %d\n", int64(c.NotAfter.Sub(c.NotBefore)/time.Second))
	fmt.Fprintf(&b, "serial-bytes: %d\n", len(c.SerialNumber.Bytes()))
	ts.Stdout().Write([]byte(b.String()))
}

// zlint FILE: every certificate in FILE passes the private-PKI lints with
// no error and no warning. An independent check of what issuance promises.
func cmdZlint(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: zlint FILE")
	}
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{
		ExcludeSources: lint.SourceList{
			lint.CABFBaselineRequirements, lint.CABFEVGuidelines, lint.CABFSMIMEBaselineRequirements,
			lint.CABFCSBaselineRequirements, lint.MozillaRootStorePolicy, lint.AppleRootStorePolicy,
			lint.ChromeRootStorePolicy, lint.EtsiEsi,
		},
	})
	ts.Check(err)
	var problems []string
	for _, c := range readCerts(ts, args[0]) {
		zc, err := zx509.ParseCertificate(c.Raw)
		ts.Check(err)
		rs := zlint.LintCertificateEx(zc, reg)
		for name, r := range rs.Results {
			if r.Status >= lint.Warn {
				problems = append(problems, fmt.Sprintf("%s: %s %s %s", c.Subject, r.Status, name, r.Details))
			}
		}
	}
	if (len(problems) == 0) == neg {
		ts.Fatalf("zlint: %v", problems)
	}
}

// mkcsr OUT CN [SAN...] [-tamper]: writes a CSR with a fresh P-256 key;
// -tamper flips a bit in the signature so the CSR's signature is invalid.
func cmdMkCSR(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || neg {
		ts.Fatalf("usage: mkcsr OUT CN [SAN...] [-tamper]")
	}
	tamper := false
	var sans []string
	for _, a := range args[2:] {
		if a == "-tamper" {
			tamper = true
			continue
		}
		sans = append(sans, a)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ts.Check(err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: args[1]},
		DNSNames: sans,
	}, key)
	ts.Check(err)
	if tamper {
		der[len(der)-3] ^= 0x01
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o644))
}
