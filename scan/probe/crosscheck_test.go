package probe

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// opensslSuites returns the TLS 1.2-and-older suites the openssl binary
// knows (no PSK/SRP: they need credentials), name -> id.
func opensslSuites(t *testing.T) map[string]uint16 {
	out, err := exec.Command("openssl", "ciphers", "-V", "ALL:COMPLEMENTOFALL:@SECLEVEL=0").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl ciphers: %v: %s", err, out)
	}
	re := regexp.MustCompile(`0x([0-9A-F]{2}),0x([0-9A-F]{2}) - (\S+)\s+(\S+)\s+Kx=(\S+)`)
	m := map[string]uint16{}
	for _, l := range strings.Split(string(out), "\n") {
		f := re.FindStringSubmatch(l)
		if f == nil || f[4] == "TLSv1.3" || strings.Contains(f[5], "PSK") || strings.Contains(f[5], "SRP") {
			continue
		}
		id, _ := strconv.ParseUint(f[1]+f[2], 16, 16)
		m[f[3]] = uint16(id)
	}
	if len(m) < 50 {
		t.Fatalf("openssl ciphers listed only %d suites: %s", len(m), out)
	}
	return m
}

// sClientCipher connects with `openssl s_client -tls1_2 -cipher list` and
// returns the name of the negotiated suite, or "" if the handshake failed.
func sClientCipher(ctx context.Context, addr, list string) (string, error) {
	cmd := exec.CommandContext(ctx, "openssl", "s_client", "-connect", addr, "-servername", "localhost",
		"-tls1_2", "-cipher", list+":@SECLEVEL=0")
	out, _ := cmd.CombinedOutput() // exit status 1 on handshake failure
	m := regexp.MustCompile(`Cipher is (\S+)`).FindSubmatch(out)
	if m == nil {
		if strings.Contains(string(out), "CONNECTED") {
			return "", nil
		}
		return "", fmt.Errorf("s_client -cipher %s: %s", list, out)
	}
	if string(m[1]) == "(NONE)" {
		return "", nil
	}
	return string(m[1]), nil
}

// TestCrossCheckOpenSSLClient compares the TLS 1.2 suites and server order
// that Enumerate finds on an `openssl s_server -cipher ALL:@SECLEVEL=0
// -serverpref` with what `openssl s_client` negotiates: every suite openssl
// knows is tried alone (the supported set must match), and every adjacent
// pair of our list is offered in reverse (the server must pick ours first).
func TestCrossCheckOpenSSLClient(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ~200 openssl s_client processes; skipped with -short")
	}
	t.Parallel()
	cert := newTestCert(t, "rsa")
	// s_server serves one connection at a time and s_client lingers ~150 ms
	// at close: run several identical servers so the s_client runs overlap.
	const servers = 8
	var addrs []string
	for range servers {
		addrs = append(addrs, startOpenSSL(t, cert, "-no_tls1_3", "-serverpref", "-cipher", "ALL:@SECLEVEL=0"))
	}
	addr := addrs[0]
	ctx := testContext(t)
	r, err := Enumerate(ctx, tcpDial(addr), Config{ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	ours := r.Version(VersionTLS12).CipherSuites
	if len(ours) < 20 {
		t.Fatalf("Enumerate found only %d TLS 1.2 suites", len(ours))
	}

	known := opensslSuites(t)
	byID := map[uint16]string{}
	for n, id := range known {
		byID[id] = n
	}
	type job struct{ list, want string }
	var jobs []job
	for name := range known {
		jobs = append(jobs, job{list: name})
	}
	for i := 0; i+1 < len(ours); i++ {
		a, b := byID[ours[i]], byID[ours[i+1]]
		if a == "" || b == "" {
			t.Fatalf("openssl does not know suite %s or %s that its server negotiated", CipherSuiteName(ours[i]), CipherSuiteName(ours[i+1]))
		}
		jobs = append(jobs, job{list: b + ":" + a, want: a})
	}
	results := make([]string, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	next := make(chan int)
	for _, a := range addrs { // one s_client at a time per server
		wg.Go(func() {
			for i := range next {
				results[i], errs[i] = sClientCipher(ctx, a, jobs[i].list)
			}
		})
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()

	var theirs []uint16
	for i, j := range jobs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		switch {
		case j.want == "" && results[i] != "":
			theirs = append(theirs, known[results[i]])
		case j.want != "" && results[i] != j.want:
			t.Errorf("s_client -cipher %s negotiated %q; Enumerate's order says the server prefers %s", j.list, results[i], j.want)
		}
	}
	slices.Sort(theirs)
	sortedOurs := slices.Sorted(slices.Values(ours))
	if !slices.Equal(sortedOurs, theirs) {
		var missing, extra []string
		for _, id := range theirs {
			if !slices.Contains(sortedOurs, id) {
				missing = append(missing, CipherSuiteName(id))
			}
		}
		for _, id := range sortedOurs {
			if !slices.Contains(theirs, id) {
				extra = append(extra, CipherSuiteName(id))
			}
		}
		t.Errorf("TLS 1.2 suites differ from s_client's: missing %v, extra %v", missing, extra)
	}
	t.Logf("%d TLS 1.2 suites agree with openssl s_client (%d s_client runs)", len(ours), len(jobs))
}
