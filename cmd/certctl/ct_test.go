package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/certctl/certctl/internal/pkitest"
	"github.com/certctl/certctl/issuance"
)

// cmdCTLog runs real CT logs (TesseraCT, see pkitest.StartCTLog) for the
// scripts:
//
//	ctlog start NAME ROOTS.pem    start a log trusting ROOTS.pem; sets $NAME_URL,
//	                              writes its key to $WORK/NAME.pub
//	ctlog stop NAME               stop it (later submissions fail)
//	ctlog profile DIR PROFILE REQUIRE ONFAIL NAME...
//	                              give DIR's PROFILE a ct: section with these logs
//	                              (operator "Operator NAME", key file DIR/NAME.pub)
func cmdCTLog(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: ctlog start NAME ROOTS.pem | stop NAME | profile DIR PROFILE REQUIRE ONFAIL NAME...")
	}
	logs, _ := ts.Value("ctlogs").(map[string]*pkitest.CTLog)
	switch args[0] {
	case "start":
		if len(args) != 3 {
			ts.Fatalf("usage: ctlog start NAME ROOTS.pem")
		}
		roots, err := os.ReadFile(ts.MkAbs(args[2]))
		ts.Check(err)
		dir := ts.MkAbs(".ctlog-" + args[1])
		ts.Check(os.MkdirAll(dir, 0o755))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		l, err := pkitest.StartCTLogIn(ctx, dir, roots)
		ts.Check(err)
		ts.Defer(l.Stop)
		logs[args[1]] = l
		ts.Setenv(args[1]+"_URL", l.URL)
		ts.Check(os.WriteFile(ts.MkAbs(args[1]+".pub"), []byte(l.PublicKeyPEM), 0o644))
	case "stop":
		l := logs[args[1]]
		if l == nil {
			ts.Fatalf("no log %q", args[1])
		}
		l.Stop()
	case "profile":
		if len(args) < 6 {
			ts.Fatalf("usage: ctlog profile DIR PROFILE REQUIRE ONFAIL NAME...")
		}
		dir, profile := ts.MkAbs(args[1]), args[2]
		require, err := strconv.Atoi(args[3])
		ts.Check(err)
		path := filepath.Join(dir, configFile)
		b, err := os.ReadFile(path)
		ts.Check(err)
		cfg, err := parseConfig(path, b)
		ts.Check(err)
		pc, ok := cfg.Profiles[profile]
		if !ok {
			ts.Fatalf("no profile %q in %s", profile, path)
		}
		ct := &issuance.CTConfig{Require: require, OnFailure: args[4], Timeout: issuance.Duration(5 * time.Second)}
		for _, name := range args[5:] {
			l := logs[name]
			if l == nil {
				ts.Fatalf("no log %q", name)
			}
			ts.Check(os.WriteFile(filepath.Join(dir, name+".pub"), []byte(l.PublicKeyPEM), 0o644))
			ct.Logs = append(ct.Logs, issuance.CTLogConfig{URL: l.URL, PublicKey: name + ".pub", Operator: "Operator " + name})
		}
		pc.CT = ct
		cfg.Profiles[profile] = pc
		out, err := marshalConfig(cfg)
		ts.Check(err)
		ts.Check(os.WriteFile(path, out, 0o600))
	default:
		ts.Fatalf("unknown ctlog subcommand %q", args[0])
	}
}

func TestConfigCT(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})
	if err := os.WriteFile(filepath.Join(dir, "log.pub"), keyPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	base := "ca: {name: T}\nprofiles:\n  server:\n    validity: 30d\n    ext_key_usage: [server_auth]\n    names: {dns: ['**.internal']}\n    ct:\n"
	tests := []struct {
		name, ct string
		wantErr  string // "" = loads and builds
	}{
		{"key file", "      logs: [{url: 'http://127.0.0.1:1/log', public_key: log.pub, operator: A}]\n      require: 1\n", ""},
		{"inline PEM", "      logs:\n        - url: 'http://127.0.0.1:1/log'\n          operator: A\n          public_key: |\n" + indent(string(keyPEM), "            ") + "      require: 1\n", ""},
		{"unknown field", "      logs: [{url: 'http://127.0.0.1:1/log', public_key: log.pub, operator: A}]\n      require: 1\n      quorum: 2\n", "field quorum not found"},
		{"unknown log field", "      logs: [{url: 'http://127.0.0.1:1/log', public_key: log.pub, operator: A, name: x}]\n      require: 1\n", "field name not found"},
		{"missing key file", "      logs: [{url: 'http://127.0.0.1:1/log', public_key: nope.pub, operator: A}]\n      require: 1\n", "ct.logs[0].public_key"},
		{"bad on_failure", "      logs: [{url: 'http://127.0.0.1:1/log', public_key: log.pub, operator: A}]\n      require: 1\n      on_failure: warn\n", "ct.on_failure"},
		{"bad timeout", "      logs: [{url: 'http://127.0.0.1:1/log', public_key: log.pub, operator: A}]\n      require: 1\n      timeout: soon\n", "invalid duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, configFile), []byte(base+tt.ct), 0o600); err != nil {
				t.Fatal(err)
			}
			c := &common{dir: dir}
			cfg, err := c.loadConfig()
			if err == nil {
				_, err = configuredLogs(cfg)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("load = %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("load error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func indent(s, prefix string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(prefix + line)
	}
	return b.String() + "\n"
}

// certctl serve counts its CT submissions on /metrics: its own server
// certificate (profile server, with a ct: section) goes through a real log.
func TestServeCTMetrics(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	var initOut, initErr strings.Builder
	if err := run(t.Context(), []string{"init", "--dir", dir}, &initOut, &initErr); err != nil {
		t.Fatalf("init: %v\n%s", err, initErr.String())
	}
	inter, err := os.ReadFile(filepath.Join(dir, intermediateCertFile))
	if err != nil {
		t.Fatal(err)
	}
	lg := pkitest.StartCTLog(t, inter)
	path := filepath.Join(dir, configFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig(path, b)
	if err != nil {
		t.Fatal(err)
	}
	pc := cfg.Profiles["server"]
	pc.CT = &issuance.CTConfig{Require: 1, Timeout: issuance.Duration(10 * time.Second),
		Logs: []issuance.CTLogConfig{{URL: lg.URL, PublicKey: lg.PublicKeyPEM, Operator: "Test Ops"}}}
	cfg.Profiles["server"] = pc
	out, err := marshalConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr pkitest.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--dir", dir, "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, &stdout, &stderr)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(stdout.String(), "API on https://") {
		select {
		case err := <-done:
			t.Fatalf("serve exited: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	body := serveMetrics(t, dir, stdout.String())
	want := `certctl_ct_submissions_total{kind="precert",log="` + lg.URL + `",outcome="ok"} 1`
	if !strings.Contains(body, want) {
		t.Errorf("/metrics lacks %q", want)
	}
	if !strings.Contains(body, `certctl_ct_submission_duration_seconds_count{kind="precert",log="`+lg.URL+`"} 1`) {
		t.Errorf("/metrics lacks the submission latency for %s", lg.URL)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
}
