package pkitest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Certificate Transparency logs for tests.
//
// [StartCTLog] runs a real, independent CT log: TesseraCT's POSIX
// static-ct-api log (github.com/transparency-dev/tesseract), built from the
// tools module in tools/ctlog of this repository, whose go.sum pins every
// hash. The binary is built once per go.sum into the user cache directory
// (os.UserCacheDir()/certctl/ctlog/HASH/tesseract-posix) under a file lock,
// so parallel test packages build it once; a cold build takes a minute or
// two, later starts take a fraction of a second.
//
// [NewCTProxy] puts a real HTTP proxy in front of a log that can delay
// requests or corrupt the SCTs the log returns.

// ctLogBinaryName is the file name of the cached log binary.
const ctLogBinaryName = "tesseract-posix"

// ctLogStartTimeout bounds a log's start-up (it listens within ~0.2 s).
const ctLogStartTimeout = 30 * time.Second

// ctLogBuildTimeout bounds the one-off build of the log binary.
const ctLogBuildTimeout = 10 * time.Minute

// CTLog is a running TesseraCT log. Stop it with Stop (StartCTLog registers
// that with t.Cleanup). Its fields do not change.
type CTLog struct {
	// URL is the submission prefix: clients post to URL/ct/v1/add-pre-chain.
	URL string
	// PublicKeyPEM is the log's public key, a PEM "PUBLIC KEY" block.
	PublicKeyPEM string
	// PublicKey is the parsed log key; LogID its RFC 6962 log ID.
	PublicKey crypto.PublicKey
	LogID     [32]byte
	// Dir holds the key, the roots and the log's storage (checkpoint and
	// tiles: the static-ct-api read side).
	Dir string

	cmd      *exec.Cmd
	exited   chan struct{}
	stopOnce sync.Once
}

// StartCTLog starts a CT log on 127.0.0.1 with a fresh P-256 key that
// accepts chains ending in one of the certificates in rootsPEM (the CA that
// submits must be in them). It fails the test if the log cannot be built or
// started. extraFlags are appended to the log's command line, e.g.
// "--enable_publication_awaiter=false" to get SCTs before the entry is in a
// published checkpoint (as RFC 6962 logs answer).
func StartCTLog(t testing.TB, rootsPEM []byte, extraFlags ...string) *CTLog {
	t.Helper()
	bin, err := CTLogBinary(context.Background())
	if err != nil {
		t.Fatalf("pkitest: CT log: %v", err)
	}
	l, err := startCTLog(bin, t.TempDir(), rootsPEM, extraFlags)
	if err != nil {
		t.Fatalf("pkitest: CT log: %v", err)
	}
	t.Cleanup(l.Stop)
	return l
}

// StartCTLogIn is StartCTLog for callers without a testing.TB (testscript
// commands, TestMain): the log keeps its files in dir, and the caller calls
// Stop.
func StartCTLogIn(ctx context.Context, dir string, rootsPEM []byte, extraFlags ...string) (*CTLog, error) {
	bin, err := CTLogBinary(ctx)
	if err != nil {
		return nil, err
	}
	return startCTLog(bin, dir, rootsPEM, extraFlags)
}

func startCTLog(bin, dir string, rootsPEM []byte, extraFlags []string) (*CTLog, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	sec1, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	keyFile, rootsFile := filepath.Join(dir, "log-priv.pem"), filepath.Join(dir, "roots.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(rootsFile, rootsPEM, 0o644); err != nil {
		return nil, err
	}
	l := &CTLog{
		PublicKeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})),
		PublicKey:    &key.PublicKey,
		LogID:        sha256.Sum256(spki),
		Dir:          dir,
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // the free port may be taken before the log binds it
		if lastErr = l.start(bin, keyFile, rootsFile, attempt, extraFlags); lastErr == nil {
			return l, nil
		}
	}
	return nil, lastErr
}

func (l *CTLog) start(bin, keyFile, rootsFile string, attempt int, extraFlags []string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	logFile, err := os.Create(filepath.Join(l.Dir, fmt.Sprintf("server-%d.log", attempt)))
	if err != nil {
		return err
	}
	defer logFile.Close()
	// Flags from shared/recipes/ct-log.md: a checkpoint every 100ms and
	// batches of at most 20ms keep add-pre-chain near 100-200ms instead of
	// ~1.8s; --origin matches the submission prefix.
	args := []string{
		"--private_key=" + keyFile,
		"--roots_pem_file=" + rootsFile,
		"--origin=localhost/test-log",
		"--path_prefix=/test-log",
		"--storage_dir=" + filepath.Join(l.Dir, "storage"),
		"--http_endpoint=" + addr,
		"--checkpoint_interval=100ms",
		"--batch_max_age=20ms",
	}
	cmd := exec.Command(bin, append(args, extraFlags...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	l.URL = "http://" + addr + "/test-log"
	deadline := time.Now().Add(ctLogStartTimeout)
	hc := &http.Client{Timeout: time.Second}
	for {
		resp, err := hc.Get(l.URL + "/ct/v1/get-roots")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				l.cmd, l.exited = cmd, exited
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("log exited at start-up: %s", tail(logFile.Name()))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("log not ready after %v: %s", ctLogStartTimeout, tail(logFile.Name()))
		}
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Stop kills the log and waits for it to exit. Idempotent. Its storage
// stays in Dir.
func (l *CTLog) Stop() {
	l.stopOnce.Do(func() {
		if l.cmd == nil {
			return
		}
		l.cmd.Process.Kill() // throwaway storage: no need for a clean shutdown
		<-l.exited
	})
}

// Checkpoint returns the log's latest signed checkpoint (static-ct-api:
// origin, tree size, root hash and signature lines).
func (l *CTLog) Checkpoint() ([]byte, error) {
	return os.ReadFile(filepath.Join(l.Dir, "storage", "checkpoint"))
}

var ctLogBuild sync.Mutex // one build per process; the file lock covers other processes

// CTLogBinary returns the path of the TesseraCT binary, building it first
// if the cache has none for the current tools/ctlog/go.sum.
func CTLogBinary(ctx context.Context) (string, error) {
	ctLogBuild.Lock()
	defer ctLogBuild.Unlock()
	tools, err := findToolsModule()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum", "tools.go"} {
		b, err := os.ReadFile(filepath.Join(tools, f))
		if err != nil {
			return "", fmt.Errorf("CT log tools module: %v", err)
		}
		h.Write(b)
	}
	cacheRoot, err := os.UserCacheDir()
	if err != nil { // no $HOME (some CI sandboxes): fall back to the temp dir
		cacheRoot = os.TempDir()
	}
	dir := filepath.Join(cacheRoot, "certctl", "ctlog", hex.EncodeToString(h.Sum(nil))[:16])
	bin := filepath.Join(dir, ctLogBinaryName)
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("CT log cache: %v", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("CT log cache: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil { // released by Close
		return "", fmt.Errorf("CT log cache: lock: %v", err)
	}
	if _, err := os.Stat(bin); err == nil { // another process built it while we waited
		return bin, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(goroot(), "bin", "go")
	}
	tmp := bin + ".tmp"
	ctx, cancel := context.WithTimeout(ctx, ctLogBuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-mod=readonly", "-o", tmp, "github.com/transparency-dev/tesseract/cmd/tesseract/posix")
	cmd.Dir = tools
	// go.sum pins every hash, so the checksum database (which has no entry
	// for tesseract v0.1.1) is not consulted. GOFLAGS from the test run
	// (e.g. -race) must not leak into this build.
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("build TesseraCT in %s: %v: %s", tools, err, out.String())
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("CT log cache: %v", err)
	}
	return bin, nil
}

func goroot() string {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "/usr/local/go"
	}
	return string(bytes.TrimSpace(out))
}

// findToolsModule walks up from the working directory (a package directory
// under go test) to the repository's tools/ctlog module.
func findToolsModule() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "tools", "ctlog")
		if _, err := os.Stat(filepath.Join(p, "go.sum")); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("CT log: no tools/ctlog/go.sum above the working directory: run the tests from the certctl repository")
		}
		dir = parent
	}
}

// CTProxy is a real HTTP proxy in front of a CT log. Its settings are read
// on every request and may be changed at any time (they are guarded).
type CTProxy struct {
	// URL is the proxy's submission prefix (use it instead of the log's).
	URL string

	mu       sync.Mutex
	delay    time.Duration
	corrupt  bool
	onSubmit func(chain [][]byte)
	srv      *httptest.Server
}

// NewCTProxy starts a proxy for the log at logURL on 127.0.0.1; it is
// closed at the end of the test.
func NewCTProxy(t testing.TB, logURL string) *CTProxy {
	t.Helper()
	p, err := StartCTProxy(logURL)
	if err != nil {
		t.Fatalf("pkitest: CT proxy: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// StartCTProxy is NewCTProxy for callers without a testing.TB; they call
// Close.
func StartCTProxy(logURL string) (*CTProxy, error) {
	target, err := url.Parse(logURL)
	if err != nil {
		return nil, err
	}
	p := &CTProxy{}
	hc := &http.Client{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		delay, corrupt, onSubmit := p.delay, p.corrupt, p.onSubmit
		p.mu.Unlock()
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if onSubmit != nil {
			var req struct{ Chain [][]byte }
			if json.Unmarshal(body, &req) == nil {
				onSubmit(req.Chain)
			}
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		out, err := http.NewRequestWithContext(r.Context(), r.Method, target.String()+strings.TrimPrefix(r.URL.Path, "/test-log"), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		out.Header = r.Header.Clone()
		resp, err := hc.Do(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		rb, err := io.ReadAll(resp.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if corrupt && resp.StatusCode == http.StatusOK {
			rb = corruptSCT(rb)
		}
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		w.Write(rb)
	}))
	p.URL = p.srv.URL + "/test-log"
	return p, nil
}

// Close stops the proxy. Idempotent.
func (p *CTProxy) Close() { p.srv.Close() }

// SetDelay makes the proxy wait d before forwarding each request.
func (p *CTProxy) SetDelay(d time.Duration) { p.mu.Lock(); p.delay = d; p.mu.Unlock() }

// SetCorrupt makes the proxy flip one byte of the signature of every SCT the
// log returns (the rest of the response is unchanged).
func (p *CTProxy) SetCorrupt(on bool) { p.mu.Lock(); p.corrupt = on; p.mu.Unlock() }

// OnSubmit calls fn with the DER chain of every submission before it is
// forwarded (fn runs on the proxy's goroutines).
func (p *CTProxy) OnSubmit(fn func(chain [][]byte)) { p.mu.Lock(); p.onSubmit = fn; p.mu.Unlock() }

// corruptSCT flips the last byte of the "signature" field of an
// add-(pre-)chain response (RFC 6962 §4.1: base64 of a DigitallySigned, whose
// last bytes are the signature itself).
func corruptSCT(body []byte) []byte {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return body
	}
	s, ok := m["signature"].(string)
	if !ok {
		return body
	}
	var sig []byte
	if err := json.Unmarshal([]byte(strconv.Quote(s)), &sig); err != nil || len(sig) == 0 {
		return body
	}
	sig[len(sig)-1] ^= 0x01
	m["signature"] = sig // re-encoded as base64 by json.Marshal
	out, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return out
}
