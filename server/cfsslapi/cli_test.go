package cfsslapi_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/keys"
)

// cfsslTool returns the path of the cfssl CLI named by go.mod's tool
// directive, building it if needed. A failure to build fails the test: the
// CLI is a required peer, not an optional one.
func cfsslTool(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the cfssl tool: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, goBin, "tool", "-n", "cfssl")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go tool -n cfssl: %v\n%s", err, stderr.Bytes())
	}
	path := strings.TrimSpace(string(out))
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("go tool -n cfssl printed %q: %v", path, err)
	}
	return path
}

type cli struct {
	t    *testing.T
	bin  string
	dir  string
	home string
}

// run runs cfssl with args; it returns stdout, stderr and whether it
// exited 0.
func (c *cli) run(args ...string) (stdout, stderr []byte, ok bool) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir = c.dir
	// No proxies: the server is on 127.0.0.1.
	cmd.Env = []string{"HOME=" + c.home, "PATH=" + os.Getenv("PATH"), "NO_PROXY=*"}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		if _, exit := err.(*exec.ExitError); !exit {
			c.t.Fatalf("cfssl %v: %v", args, err)
		}
	}
	return out.Bytes(), errb.Bytes(), err == nil
}

func (c *cli) write(name string, data []byte) string {
	c.t.Helper()
	p := filepath.Join(c.dir, name)
	mustNoErr(c.t, os.WriteFile(p, data, 0o600))
	return p
}

// clientConfig is a CFSSL client-side ca-config.json that sends every
// request with authsign under keyHex to url.
func clientConfig(url, keyHex string) []byte {
	return fmt.Appendf(nil, `{
  "signing": {
    "default": {"auth_remote": {"remote": "certctl", "auth_key": "k"}}
  },
  "auth_keys": {"k": {"type": "standard", "key": %q}},
  "remotes": {"certctl": %q}
}`, keyHex, url)
}

func TestCFSSLCLI(t *testing.T) {
	t.Parallel()
	bin := cfsslTool(t)
	e := newEnv(t)
	c := &cli{t: t, bin: bin, dir: t.TempDir(), home: t.TempDir()}
	caFile := c.write("server-ca.pem", e.serverCA)

	t.Run("authsign", func(t *testing.T) {
		csr := c.write("peer.csr", newCSR(t, "cli-peer.internal", "cli-peer.internal"))
		cfg := c.write("client-config.json", clientConfig(e.ts.URL, peerKeyHex))
		out, errOut, ok := c.run("sign", "-remote", e.ts.URL, "-tls-remote-ca", caFile, "-config", cfg, "-profile", "peer", csr)
		if !ok {
			t.Fatalf("cfssl sign failed:\n%s%s", out, errOut)
		}
		var res struct {
			Cert string `json:"cert"`
		}
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("cfssl sign output is not JSON: %v\n%s", err, out)
		}
		cert := e.verifyIssued(t, []byte(res.Cert), "peer", "hmac:peer-key", x509.ExtKeyUsageServerAuth)
		if !slices.Equal(cert.DNSNames, []string{"cli-peer.internal"}) {
			t.Errorf("DNSNames = %v", cert.DNSNames)
		}
	})

	t.Run("authsign with hostname flag", func(t *testing.T) {
		csr := c.write("h.csr", newCSR(t, "", "ignored.internal"))
		cfg := c.write("client-config.json", clientConfig(e.ts.URL, peerKeyHex))
		out, errOut, ok := c.run("sign", "-remote", e.ts.URL, "-tls-remote-ca", caFile, "-config", cfg, "-profile", "peer",
			"-hostname", "a.internal,127.0.0.1", csr)
		if !ok {
			t.Fatalf("cfssl sign failed:\n%s%s", out, errOut)
		}
		var res struct {
			Cert string `json:"cert"`
		}
		mustNoErr(t, json.Unmarshal(out, &res))
		cert := e.verifyIssued(t, []byte(res.Cert), "peer", "hmac:peer-key", x509.ExtKeyUsageClientAuth)
		if !slices.Equal(cert.DNSNames, []string{"a.internal"}) || len(cert.IPAddresses) != 1 {
			t.Errorf("names = %v %v, want [a.internal] [127.0.0.1]", cert.DNSNames, cert.IPAddresses)
		}
	})

	t.Run("authsign with a wrong key is refused", func(t *testing.T) {
		before := e.countIssued(t)
		csr := c.write("w.csr", newCSR(t, "w.internal", "w.internal"))
		cfg := c.write("wrong-config.json", clientConfig(e.ts.URL, strings.Repeat("cd", 16)))
		out, errOut, ok := c.run("sign", "-remote", e.ts.URL, "-tls-remote-ca", caFile, "-config", cfg, "-profile", "peer", csr)
		if ok {
			t.Fatalf("cfssl sign with a wrong key succeeded:\n%s", out)
		}
		if !strings.Contains(string(errOut), "invalid token") {
			t.Errorf("cfssl sign stderr does not explain the refusal:\n%s", errOut)
		}
		if n := e.countIssued(t); n != before {
			t.Errorf("store holds %d certificates after a refusal, want %d", n, before)
		}
	})

	t.Run("plain sign with a client certificate", func(t *testing.T) {
		cert, key := e.clientCert(t, "cli-deployer")
		var chain []byte
		for _, der := range cert.Certificate {
			chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
		}
		keyPEM, err := keys.MarshalPEM(key)
		mustNoErr(t, err)
		certFile, keyFile := c.write("client.pem", chain), c.write("client-key.pem", keyPEM)
		csr := c.write("s.csr", newCSR(t, "cli-server.internal", "cli-server.internal"))
		out, errOut, ok := c.run("sign", "-remote", e.ts.URL, "-tls-remote-ca", caFile,
			"-mutual-tls-client-cert", certFile, "-mutual-tls-client-key", keyFile, "-profile", "server", csr)
		if !ok {
			t.Fatalf("cfssl sign failed:\n%s%s", out, errOut)
		}
		var res struct {
			Cert string `json:"cert"`
		}
		mustNoErr(t, json.Unmarshal(out, &res))
		e.verifyIssued(t, []byte(res.Cert), "server", "mtls:cli-deployer", x509.ExtKeyUsageServerAuth)
	})

	t.Run("plain sign without authentication is refused", func(t *testing.T) {
		csr := c.write("u.csr", newCSR(t, "u.internal", "u.internal"))
		out, errOut, ok := c.run("sign", "-remote", e.ts.URL, "-tls-remote-ca", caFile, "-profile", "server", csr)
		if ok {
			t.Fatalf("unauthenticated cfssl sign succeeded:\n%s", out)
		}
		if !strings.Contains(string(errOut), "authentication required") {
			t.Errorf("cfssl sign stderr does not explain the refusal:\n%s", errOut)
		}
	})

	t.Run("info", func(t *testing.T) {
		out, errOut, ok := c.run("info", "-remote", e.ts.URL, "-tls-remote-ca", caFile, "-profile", "server")
		if !ok {
			t.Fatalf("cfssl info failed:\n%s%s", out, errOut)
		}
		var res struct {
			Certificate string   `json:"certificate"`
			Usages      []string `json:"usages"`
			Expiry      string   `json:"expiry"`
		}
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("cfssl info output is not JSON: %v\n%s", err, out)
		}
		block, _ := pem.Decode([]byte(res.Certificate))
		if block == nil || !bytes.Equal(block.Bytes, e.inter.Raw) || res.Expiry != "8760h" || !slices.Contains(res.Usages, "server auth") {
			t.Fatalf("cfssl info = %s", out)
		}
	})
}
