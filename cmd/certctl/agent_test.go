package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/pkitest"
	"github.com/certctl/certctl/transport"
)

// agentCA runs `certctl init` and `certctl serve` in-process, with the
// server profile issuing certificates of validity+backdate lifetime.
type agentCA struct {
	dir, apiAddr string
	stop         context.CancelFunc
	done         chan error
	out, err     *pkitest.SyncBuffer
}

func startAgentCA(t *testing.T, validity, backdate string) *agentCA {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"init", "--dir", dir}, &out, &errb); err != nil {
		t.Fatalf("init: %v\n%s", err, errb.String())
	}
	cfgPath := filepath.Join(dir, "certctl.yaml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// The peer profile (serverAuth and clientAuth): renewals authenticate
	// with the current certificate as a TLS client certificate.
	old := "  peer:\n    validity: 30d\n    backdate: 1m0s\n"
	if !bytes.Contains(cfg, []byte(old)) {
		t.Fatalf("init's config has no default peer profile:\n%s", cfg)
	}
	cfg = bytes.Replace(cfg, []byte(old), []byte("  peer:\n    validity: "+validity+"\n    backdate: "+backdate+"\n"), 1)
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &agentCA{dir: dir, stop: cancel, done: make(chan error, 1), out: &pkitest.SyncBuffer{}, err: &pkitest.SyncBuffer{}}
	go func() {
		c.done <- run(ctx, []string{"serve", "--dir", dir, "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, c.out, c.err)
	}()
	t.Cleanup(func() { cancel(); <-c.done })
	apiRe := regexp.MustCompile(`API on https://(127\.0\.0\.1:\d+)`)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if m := apiRe.FindStringSubmatch(c.out.String()); m != nil {
			c.apiAddr = m[1]
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s\n%s", c.out.String(), c.err.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// identity creates a single-use token and writes an identity file using it.
func (c *agentCA) identity(t *testing.T, name string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"token", "create", "--dir", c.dir, "--profile", "peer", "--names", name, "--single-use", "--ttl", "1h"}, &out, &errb); err != nil {
		t.Fatalf("token create: %v\n%s", err, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	token := lines[len(lines)-1]
	p := filepath.Join(t.TempDir(), "identity.yaml")
	id := fmt.Sprintf(`ca_url: https://%s
ca_roots: %s
profile: peer
names: [%s]
token: %s
renew_at: 0.5
jitter: 10ms
retry_min: 100ms
retry_max: 500ms
enroll_timeout: 30s
`, c.apiAddr, filepath.Join(c.dir, "root.crt"), name, token)
	if err := os.WriteFile(p, []byte(id), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type agentRun struct {
	done     chan error
	out, err *pkitest.SyncBuffer
	cancel   context.CancelFunc
}

func startAgent(t *testing.T, args ...string) *agentRun {
	ctx, cancel := context.WithCancel(context.Background())
	a := &agentRun{done: make(chan error, 1), out: &pkitest.SyncBuffer{}, err: &pkitest.SyncBuffer{}, cancel: cancel}
	go func() { a.done <- run(ctx, append([]string{"agent"}, args...), a.out, a.err) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", a.err.String())
		}
		cancel()
		select {
		case <-a.done:
		case <-time.After(30 * time.Second):
			t.Error("agent did not stop")
		}
	})
	return a
}

// waitAgent returns the agent's result within d.
func (a *agentRun) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-a.done:
		a.done <- err // for Cleanup
		return err
	case <-time.After(d):
		t.Fatalf("agent still running after %s:\n%s", d, a.err.String())
		return nil
	}
}

// readFiles reads and checks what the agent wrote: modes, a key matching
// the leaf, a chain verifying against the bundle. It returns the leaf.
func readFiles(t *testing.T, certPath, keyPath, bundlePath string) (*x509.Certificate, []byte) {
	t.Helper()
	for p, mode := range map[string]os.FileMode{certPath: 0o644, keyPath: 0o600, bundlePath: 0o644} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", filepath.Base(p), fi.Mode().Perm(), mode)
		}
	}
	// The key and the certificate are two files, replaced one after the
	// other: a reader may catch the moment between the two renames (the
	// hook runs only after both). Read again until they match.
	var (
		keyPEM []byte
		pair   tls.Certificate
		err    error
	)
	for i := 0; ; i++ {
		certPEM, _ := os.ReadFile(certPath)
		keyPEM, _ = os.ReadFile(keyPath)
		if pair, err = tls.X509KeyPair(certPEM, keyPEM); err == nil {
			break
		}
		if i == 50 {
			t.Fatalf("cert and key do not match: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(pair.Certificate) != 2 {
		t.Errorf("cert file has %d certificates, want leaf and intermediate", len(pair.Certificate))
	}
	bundle, _ := os.ReadFile(bundlePath)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		t.Fatal("CA bundle holds no certificate")
	}
	inters := x509.NewCertPool()
	inter, _ := x509.ParseCertificate(pair.Certificate[1])
	inters.AddCert(inter)
	leaf := pair.Leaf
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters}); err != nil {
		t.Fatalf("chain does not verify against the bundle: %v", err)
	}
	return leaf, keyPEM
}

func waitFile(t *testing.T, p string, d time.Duration, a *agentRun) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(p); err == nil {
			return
		}
		select {
		case err := <-a.done:
			t.Fatalf("agent exited: %v\n%s", err, a.err.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear:\n%s", p, a.err.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The whole agent against a real `certctl serve`: enrollment with a
// single-use token, files with the right modes, rotation of short-lived
// certificates with the hook after each, and a non-zero exit with a clear
// message when the CA is gone and the certificate expires. Also: SIGTERM
// (ctx cancellation) exits 0, and --once.
func TestAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for certificate renewals and expiry")
	}
	ca := startAgentCA(t, "8s", "1s") // 9s lifetime; renew_at 0.5 renews ~3.5s after issuance
	out := t.TempDir()
	certPath, keyPath, bundlePath := filepath.Join(out, "tls.crt"), filepath.Join(out, "tls.key"), filepath.Join(out, "ca.pem")
	hookLog := filepath.Join(out, "hook.log")

	t.Run("once", func(t *testing.T) {
		dir := t.TempDir()
		c, k, b := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), filepath.Join(dir, "b.pem")
		a := startAgent(t, "--identity", ca.identity(t, "once.svc.internal"), "--cert", c, "--key", k, "--ca-bundle", b,
			"--exec", `test -s "$CERTCTL_CERT" && echo "reload $CERTCTL_SERIAL"`, "--once")
		if err := a.wait(t, 60*time.Second); err != nil {
			t.Fatalf("--once: %v\n%s", err, a.err.String())
		}
		leaf, _ := readFiles(t, c, k, b)
		if !strings.Contains(a.err.String(), "reload "+serialOf(leaf)) {
			t.Errorf("hook output not logged:\n%s", a.err.String())
		}
	})

	t.Run("SIGTERM", func(t *testing.T) {
		dir := t.TempDir()
		c := filepath.Join(dir, "c.pem")
		a := startAgent(t, "--identity", ca.identity(t, "term.svc.internal"), "--cert", c, "--key", filepath.Join(dir, "k.pem"))
		waitFile(t, c, 60*time.Second, a)
		a.cancel()
		if err := a.wait(t, 10*time.Second); err != nil || exitCode(err, &bytes.Buffer{}) != 0 {
			t.Fatalf("after SIGTERM: %v", err)
		}
	})

	a := startAgent(t, "--identity", ca.identity(t, "svc.internal"), "--cert", certPath, "--key", keyPath, "--ca-bundle", bundlePath,
		"--exec", `echo "$CERTCTL_SERIAL $CERTCTL_NOT_AFTER" >> `+hookLog, "--log-format", "json", "--metrics-addr", "127.0.0.1:0")
	waitFile(t, bundlePath, 60*time.Second, a) // written last
	first, firstKey := readFiles(t, certPath, keyPath, bundlePath)

	// Rotation: a new certificate (and, with a memory key, a new key)
	// replaces the files, and the hook runs after each.
	serials := []string{serialOf(first)}
	deadline := time.Now().Add(30 * time.Second)
	for len(serials) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("saw serials %v; want 2 renewals within 30s:\n%s", serials, a.err.String())
		}
		time.Sleep(50 * time.Millisecond)
		leaf, key := readFiles(t, certPath, keyPath, bundlePath)
		if s := serialOf(leaf); s != serials[len(serials)-1] {
			if bytes.Equal(key, firstKey) {
				t.Error("the key did not change with the certificate")
			}
			serials = append(serials, s)
		}
	}
	waitForHook := time.Now().Add(10 * time.Second)
	for {
		log, _ := os.ReadFile(hookLog)
		ok := true
		for _, s := range serials {
			ok = ok && bytes.Contains(log, []byte(s+" "))
		}
		if ok {
			break
		}
		if time.Now().After(waitForHook) {
			t.Fatalf("hook log %q lacks serials %v", log, serials)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Metrics: the certificate's expiry, renewals, file updates and hook runs.
	m := regexp.MustCompile(`"url":"(http://127\.0\.0\.1:\d+/metrics)"`).FindStringSubmatch(a.err.String())
	if m == nil {
		t.Fatalf("metrics URL not logged:\n%s", a.err.String())
	}
	res, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, re := range []string{
		`certctl_transport_certificate_expiry_timestamp_seconds\{identity="svc.internal",profile="peer"\} \d`,
		`certctl_transport_renewals_total\{identity="svc.internal",outcome="ok",profile="peer"\} [3-9]`,
		`certctl_agent_exec_runs_total\{outcome="ok"\} [3-9]`,
		`certctl_agent_file_updates_total\{outcome="ok"\} [3-9]`,
	} {
		if !regexp.MustCompile(re).Match(metrics) {
			t.Errorf("metrics lack %s:\n%s", re, metrics)
		}
	}
	if tmp, _ := filepath.Glob(filepath.Join(out, ".*tmp-*")); len(tmp) > 0 {
		t.Errorf("temporary files left behind: %v", tmp)
	}
	if strings.Contains(a.err.String(), "PRIVATE KEY") {
		t.Error("the key was logged")
	}

	// The CA goes away: renewals fail, the certificate expires, the agent
	// exits non-zero and says why.
	ca.stop()
	<-ca.done
	ca.done <- nil
	err = a.wait(t, 40*time.Second)
	var stderr bytes.Buffer
	if code := exitCode(err, &stderr); code != 1 || !strings.Contains(stderr.String(), "expired at") ||
		!strings.Contains(stderr.String(), "without renewal") || !strings.Contains(stderr.String(), "check that the CA is reachable") {
		t.Fatalf("after CA outage: exit %d, %q\n%s", code, stderr.String(), a.err.String())
	}
	t.Logf("agent: %s", strings.TrimSpace(stderr.String()))
}

func TestAgentUsage(t *testing.T) {
	idFile := filepath.Join(t.TempDir(), "id.yaml")
	os.WriteFile(idFile, []byte("ca_url: https://ca.internal\nca_roots: /nonexistent.pem\nprofile: server\nnames: [a.internal]\nkey: pkcs11:token=x;object=y\n"), 0o600)
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"--help"}, 0, ""},
		{"no identity", []string{"--cert", "a", "--key", "b"}, 2, "needs --identity"},
		{"no key", []string{"--identity", idFile, "--cert", "a"}, 2, "needs --cert FILE and --key FILE"},
		{"same file", []string{"--identity", idFile, "--cert", filepath.Join(dir, "a"), "--key", filepath.Join(dir, "a")}, 2, "different files"},
		{"missing dir", []string{"--identity", idFile, "--cert", "/nonexistent/dir/c", "--key", filepath.Join(dir, "k")}, 1, "does not exist"},
		{"bad timeout", []string{"--identity", idFile, "--cert", "c", "--key", "k", "--exec-timeout", "0s"}, 2, "--exec-timeout"},
		{"pkcs11 key", []string{"--identity", idFile, "--cert", filepath.Join(dir, "c"), "--key", filepath.Join(dir, "k")}, 1, "cannot be written"},
		{"bad identity", []string{"--identity", filepath.Join(dir, "none.yaml"), "--cert", filepath.Join(dir, "c"), "--key", filepath.Join(dir, "k")}, 1, "identity file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(t.Context(), append([]string{"agent"}, tt.args...), &out, &errb)
			if code := exitCode(err, &errb); code != tt.code || !strings.Contains(errb.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errb.String(), tt.code, tt.want)
			}
			if tt.name == "help" && !strings.Contains(out.String(), "--ca-bundle") {
				t.Fatalf("help: %s", out.String())
			}
		})
	}
}

// The hook: environment, output in the log, failure and timeout logged
// and not fatal.
func TestAgentHook(t *testing.T) {
	leaf := &x509.Certificate{SerialNumber: big.NewInt(0xabc), NotAfter: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	snap := &transport.Snapshot{Leaf: leaf}
	tests := []struct {
		name, hook string
		want       []string
	}{
		{"env", `echo "serial=$CERTCTL_SERIAL cert=$CERTCTL_CERT na=$CERTCTL_NOT_AFTER"`, []string{"--exec ran", "serial=abc cert=/x/c.pem na=2030-01-02T03:04:05Z"}},
		{"failure", `echo oops >&2; exit 3`, []string{"--exec failed", "exit status 3", "oops"}},
		{"timeout", `sleep 30`, []string{"--exec timed out"}},
		{"big output", `head -c 100000 /dev/zero | tr '\0' x`, []string{"--exec ran", "(truncated)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs pkitest.SyncBuffer
			a := newAgent(agentOptions{cert: "/x/c.pem", key: "/x/k.pem", hook: tt.hook, hookTimeout: 300 * time.Millisecond}, slog.New(slog.NewTextHandler(&logs, nil)))
			if tt.name != "timeout" {
				a.o.hookTimeout = 10 * time.Second
			}
			start := time.Now()
			a.runHook(t.Context(), snap)
			if d := time.Since(start); d > 8*time.Second {
				t.Errorf("hook held the agent for %s", d)
			}
			for _, w := range tt.want {
				if !strings.Contains(logs.String(), w) {
					t.Errorf("log lacks %q:\n%s", w, logs.String())
				}
			}
			if len(logs.String()) > 2*maxHookOutput {
				t.Errorf("log of %d bytes: output not capped", len(logs.String()))
			}
		})
	}
}

// writeFileAtomic replaces a file and sets its mode, whatever the old one was.
func TestWriteFileAtomic(t *testing.T) {
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	b, _ := os.ReadFile(p)
	if string(b) != "new" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("got %q mode %v", b, fi.Mode().Perm())
	}
	if err := writeFileAtomic(filepath.Join(t.TempDir(), "missing", "x"), nil, 0o644); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}
