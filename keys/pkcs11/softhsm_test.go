package pkcs11

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	p11 "github.com/miekg/pkcs11"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/internal/pkitest"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
)

// These tests run against a real SoftHSM2 token, a fresh one per test. They
// cannot run in parallel: a PKCS#11 library reads its configuration
// (SOFTHSM2_CONF) once per C_Initialize, and NewSoftHSM uses t.Setenv.

func openTestModule(t *testing.T, h *pkitest.SoftHSM) *Module {
	t.Helper()
	m, err := OpenModule(h.Module)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Module.Close: %v", err)
		}
	})
	return m
}

func mustURI(t testing.TB, s string) *URI {
	t.Helper()
	u, err := ParseURI(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// verify checks sig with the standard library.
func verify(pub crypto.PublicKey, msg, sig []byte, opts crypto.SignerOpts) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest(msg, opts.HashFunc()), sig) {
			return errors.New("ECDSA signature does not verify")
		}
		return nil
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			return rsa.VerifyPSS(k, opts.HashFunc(), digest(msg, opts.HashFunc()), sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: pss.Hash})
		}
		return rsa.VerifyPKCS1v15(k, opts.HashFunc(), digest(msg, opts.HashFunc()), sig)
	case ed25519.PublicKey:
		if !ed25519.Verify(k, msg, sig) {
			return errors.New("Ed25519 signature does not verify")
		}
		return nil
	}
	return fmt.Errorf("unexpected key %T", pub)
}

func digest(msg []byte, h crypto.Hash) []byte {
	switch h {
	case crypto.SHA256:
		d := sha256.Sum256(msg)
		return d[:]
	case crypto.SHA384:
		d := sha512.Sum384(msg)
		return d[:]
	case crypto.SHA512:
		d := sha512.Sum512(msg)
		return d[:]
	case 0:
		return msg
	}
	panic("hash")
}

// signVerify signs msg with every option set that applies to s's key type
// and verifies each signature with the standard library.
func signVerify(t *testing.T, s crypto.Signer) {
	t.Helper()
	msg := []byte("certctl pkcs11 test message")
	var cases []crypto.SignerOpts
	switch s.Public().(type) {
	case *ecdsa.PublicKey:
		cases = []crypto.SignerOpts{crypto.SHA256, crypto.SHA384}
	case *rsa.PublicKey:
		cases = []crypto.SignerOpts{crypto.SHA256, crypto.SHA384, crypto.SHA512,
			&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256},
			&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: crypto.SHA384},
			&rsa.PSSOptions{SaltLength: 20, Hash: crypto.SHA512}}
	case ed25519.PublicKey:
		cases = []crypto.SignerOpts{crypto.Hash(0), &ed25519.Options{}}
	}
	for _, opts := range cases {
		sig, err := s.Sign(rand.Reader, digest(msg, opts.HashFunc()), opts)
		if err != nil {
			t.Fatalf("Sign(%T %v): %v", opts, opts.HashFunc(), err)
		}
		if err := verify(s.Public(), msg, sig, opts); err != nil {
			t.Fatalf("Sign(%T %v): %v", opts, opts.HashFunc(), err)
		}
	}
}

func TestSoftHSMGenerateAndSign(t *testing.T) {
	h := pkitest.NewSoftHSM(t)
	m := openTestModule(t, h)
	ctx := context.Background()
	for _, kt := range []keys.KeyType{keys.ECDSAP256, keys.ECDSAP384, keys.RSA2048, keys.Ed25519} {
		t.Run(string(kt), func(t *testing.T) {
			s, err := m.GenerateKey(ctx, mustURI(t, h.KeyURI("gen-"+string(kt))), kt)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got, err := keys.TypeOf(s.Public()); err != nil || got != kt {
				t.Fatalf("TypeOf(Public()) = %v, %v; want %s", got, err, kt)
			}
			if len(s.URI().ID) != 8 || s.URI().HasPINValue() {
				t.Errorf("URI() = %s: want an 8-byte id and no PIN", s.URI())
			}
			signVerify(t, s)

			// The private key can never leave the token.
			l, err := s.pool.get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			a, err := m.c.GetAttributeValue(l.sh, p11.ObjectHandle(s.priv.Load()), []*p11.Attribute{
				p11.NewAttribute(p11.CKA_EXTRACTABLE, nil),
				p11.NewAttribute(p11.CKA_SENSITIVE, nil),
				p11.NewAttribute(p11.CKA_NEVER_EXTRACTABLE, nil),
				p11.NewAttribute(p11.CKA_TOKEN, nil),
			})
			s.pool.put(l, false)
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range []byte{0, 1, 1, 1} {
				if len(a[i].Value) != 1 || a[i].Value[0] != want {
					t.Errorf("attribute 0x%X = %v, want %d", a[i].Type, a[i].Value, want)
				}
			}

			// Generating again under the same label creates nothing.
			_, err = m.GenerateKey(ctx, mustURI(t, h.KeyURI("gen-"+string(kt))), kt)
			if !errors.Is(err, ErrKeyExists) {
				t.Fatalf("second GenerateKey: %v, want ErrKeyExists", err)
			}

			// A second Signer on the same key finds it by label alone.
			s2, err := m.OpenSigner(ctx, mustURI(t, h.KeyURI("gen-"+string(kt))), WithPublicKey(s.Public()))
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			signVerify(t, s2)
		})
	}
}

// Keys made by another tool (OpenSC's pkcs11-tool) work too.
func TestSoftHSMToolKeys(t *testing.T) {
	h := pkitest.NewSoftHSM(t)
	h.MustTool(t, "--keypairgen", "--key-type", "EC:prime256v1", "--label", "tool-ec", "--id", "01", "--usage-sign")
	h.MustTool(t, "--keypairgen", "--key-type", "EC:secp384r1", "--label", "tool-ec384", "--id", "03", "--usage-sign")
	h.MustTool(t, "--keypairgen", "--key-type", "rsa:2048", "--label", "tool-rsa", "--id", "02", "--usage-sign")
	m := openTestModule(t, h)
	ctx := context.Background()
	tests := []struct {
		name, uri string
		want      keys.KeyType
	}{
		{"ec by label", h.KeyURI("tool-ec"), keys.ECDSAP256},
		{"ec by id", "pkcs11:token=" + h.Label + ";id=%01?pin-source=file:" + h.PINFile, keys.ECDSAP256},
		{"p384 by label and id", "pkcs11:token=" + h.Label + ";object=tool-ec384;id=%03;type=private?pin-source=file:" + h.PINFile, keys.ECDSAP384},
		{"rsa by label", h.KeyURI("tool-rsa"), keys.RSA2048},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := m.OpenSigner(ctx, mustURI(t, tt.uri))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got, _ := keys.TypeOf(s.Public()); got != tt.want {
				t.Fatalf("key type %s, want %s", got, tt.want)
			}
			signVerify(t, s)
		})
	}
}

// An issuer whose key is on the token issues a chain that OpenSSL accepts,
// and the key/certificate check of issuance.NewIssuer holds.
func TestSoftHSMIssuance(t *testing.T) {
	h := pkitest.NewSoftHSM(t)
	m := openTestModule(t, h)
	ctx := context.Background()
	for _, kt := range []keys.KeyType{keys.ECDSAP256, keys.RSA2048} {
		t.Run(string(kt), func(t *testing.T) {
			hsmKey, err := m.GenerateKey(ctx, mustURI(t, h.KeyURI("issuing-"+string(kt))), kt)
			if err != nil {
				t.Fatal(err)
			}
			defer hsmKey.Close()
			root, rootKey := newRoot(t, kt)
			inter := issueIntermediate(t, root, rootKey, hsmKey.Public())

			// The real check: reopen the key against the certificate.
			s, err := m.OpenSigner(ctx, mustURI(t, h.KeyURI("issuing-"+string(kt))), WithPublicKey(inter.PublicKey))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			iss, err := issuance.NewIssuer(inter, s, issuance.IssuerConfig{})
			if err != nil {
				t.Fatal(err)
			}
			leafProfile, err := issuance.NewProfile("server", issuance.DefaultProfiles()["server"])
			if err != nil {
				t.Fatal(err)
			}
			authority, err := ca.New(iss, [][]byte{inter.Raw}, map[string]*issuance.Profile{"server": leafProfile}, nopStore{})
			if err != nil {
				t.Fatal(err)
			}
			leafKey, _ := keys.Generate(keys.ECDSAP256)
			req := &issuance.Request{PublicKey: leafKey.Public()}
			if err := req.AddNames("web.internal"); err != nil {
				t.Fatal(err)
			}
			req.Subject.CommonName = "web.internal"
			leaf, err := authority.Issue(ctx, ca.Request{Profile: "server", Request: req, Requester: "test"})
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			write := func(name string, der []byte) string {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
					t.Fatal(err)
				}
				return p
			}
			out, err := exec.Command("openssl", "verify", "-CAfile", write("root.crt", root.Raw),
				"-untrusted", write("inter.crt", inter.Raw), write("leaf.crt", leaf.DER)).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "leaf.crt: OK") {
				t.Fatalf("openssl verify: %v\n%s", err, out)
			}

			// A certificate for another key: both checks refuse it.
			other, _ := keys.Generate(kt)
			wrong := issueIntermediate(t, root, rootKey, other.Public())
			if _, err := issuance.NewIssuer(wrong, s, issuance.IssuerConfig{}); !errors.Is(err, issuance.ErrKeyMismatch) {
				t.Fatalf("NewIssuer(wrong cert): %v, want ErrKeyMismatch", err)
			}
			_, err = m.OpenSigner(ctx, mustURI(t, h.KeyURI("issuing-"+string(kt))), WithPublicKey(wrong.PublicKey))
			if !errors.Is(err, ErrKeyMismatch) || !strings.Contains(err.Error(), h.Label) {
				t.Fatalf("OpenSigner(WithPublicKey(wrong)): %v, want ErrKeyMismatch naming the token", err)
			}
		})
	}
}

type nopStore struct{}

func (nopStore) ReserveSerial(context.Context, *certdb.Reservation) error  { return nil }
func (nopStore) AddCertificate(context.Context, *certdb.Certificate) error { return nil }

func newRoot(t *testing.T, kt keys.KeyType) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, err := keys.Generate(kt)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := issuance.NewSerial(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := issuance.SelfSignRoot(key, issuance.RootConfig{CommonName: "HSM Test Root", Validity: 10 * 365 * 24 * time.Hour, MaxPathLen: 1}, serial, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return root, key
}

func issueIntermediate(t *testing.T, root *x509.Certificate, rootKey crypto.Signer, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	rootIss, err := issuance.NewIssuer(root, rootKey, issuance.IssuerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := issuance.NewProfile("intermediate", issuance.DefaultProfiles()["intermediate"])
	if err != nil {
		t.Fatal(err)
	}
	rootCA, err := ca.New(rootIss, nil, map[string]*issuance.Profile{"intermediate": p}, nopStore{})
	if err != nil {
		t.Fatal(err)
	}
	req := &issuance.Request{PublicKey: pub}
	req.Subject.CommonName = "HSM Test Intermediate"
	inter, err := rootCA.Issue(context.Background(), ca.Request{Profile: "intermediate", Request: req})
	if err != nil {
		t.Fatal(err)
	}
	return inter.Certificate
}

// More goroutines than sessions: every signature verifies, nothing crashes
// (SoftHSM crashes the process if two goroutines share a session), and no
// more than max sessions are ever open.
func TestSoftHSMConcurrency(t *testing.T) {
	h := pkitest.NewSoftHSM(t)
	m := openTestModule(t, h)
	ctx := context.Background()
	for _, kt := range []keys.KeyType{keys.ECDSAP256, keys.RSA2048} {
		t.Run(string(kt), func(t *testing.T) {
			const maxSessions, goroutines, each = 2, 12, 15
			cc := &checkingCtx{cryptoki: m.c, open: map[p11.SessionHandle]bool{}, busy: map[p11.SessionHandle]bool{}}
			m.c = cc // the module is not in use by anything else here
			defer func() { m.c = cc.cryptoki }()
			s, err := m.GenerateKey(ctx, mustURI(t, h.KeyURI("conc-"+string(kt))), kt, WithMaxSessions(maxSessions))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var wg sync.WaitGroup
			errs := make(chan error, goroutines)
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						msg := fmt.Appendf(nil, "message %d/%d", g, i)
						sig, err := s.Sign(rand.Reader, digest(msg, crypto.SHA256), crypto.SHA256)
						if err == nil {
							err = verify(s.Public(), msg, sig, crypto.SHA256)
						}
						if err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			cc.mu.Lock()
			defer cc.mu.Unlock()
			if cc.shared > 0 {
				t.Fatalf("%d PKCS#11 calls ran on a session another goroutine was using", cc.shared)
			}
			// GenerateKey's own read-write session is closed before the
			// Signer opens its pool.
			if cc.maxOpen > maxSessions {
				t.Fatalf("%d sessions were open at once, want at most %d", cc.maxOpen, maxSessions)
			}

		})
	}
}

// checkingCtx watches a real module: how many sessions are open at once,
// and whether a session is ever used by two goroutines at the same time.
type checkingCtx struct {
	cryptoki
	mu              sync.Mutex
	open, busy      map[p11.SessionHandle]bool
	maxOpen, shared int
}

func (c *checkingCtx) OpenSession(slot, flags uint) (p11.SessionHandle, error) {
	sh, err := c.cryptoki.OpenSession(slot, flags)
	if err == nil {
		c.mu.Lock()
		c.open[sh] = true
		c.maxOpen = max(c.maxOpen, len(c.open))
		c.mu.Unlock()
	}
	return sh, err
}

func (c *checkingCtx) CloseSession(sh p11.SessionHandle) error {
	c.mu.Lock()
	delete(c.open, sh)
	c.mu.Unlock()
	return c.cryptoki.CloseSession(sh)
}

func (c *checkingCtx) enter(sh p11.SessionHandle) {
	c.mu.Lock()
	if c.busy[sh] {
		c.shared++
	}
	c.busy[sh] = true
	c.mu.Unlock()
}

func (c *checkingCtx) leave(sh p11.SessionHandle) {
	c.mu.Lock()
	delete(c.busy, sh)
	c.mu.Unlock()
}

func (c *checkingCtx) Sign(sh p11.SessionHandle, msg []byte) ([]byte, error) {
	c.enter(sh)
	defer c.leave(sh)
	time.Sleep(100 * time.Microsecond) // widen the window in which sharing would be seen
	return c.cryptoki.Sign(sh, msg)
}

// When every session stays busy, Sign gives up after its wait with ErrBusy.
func TestSoftHSMBusy(t *testing.T) {
	h := pkitest.NewSoftHSM(t)
	m := openTestModule(t, h)
	ctx := context.Background()
	s, err := m.GenerateKey(ctx, mustURI(t, h.KeyURI("busy")), keys.ECDSAP256, WithMaxSessions(1), WithWaitTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	held, err := s.pool.get(ctx) // the only session
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("x"))
	_, err = s.Sign(rand.Reader, d[:], crypto.SHA256)
	if !errors.Is(err, ErrBusy) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "all 1 sessions busy") {
		t.Fatalf("Sign with no free session: %v, want ErrBusy", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.SignContext(cctx, d[:], crypto.SHA256); !errors.Is(err, ErrBusy) || !errors.Is(err, context.Canceled) {
		t.Fatalf("SignContext(canceled): %v, want ErrBusy and context.Canceled", err)
	}
	s.pool.put(held, false)
	if _, err := s.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
		t.Fatalf("Sign after the session came back: %v", err)
	}
}

// Sessions closed behind the Signer's back (here C_CloseAllSessions, which
// also logs the token out) are reopened, the login redone, and the
// signature retried.
func TestSoftHSMRecoversClosedSessions(t *testing.T) {
	h := pkitest.NewSoftHSM(t)
	m := openTestModule(t, h)
	ctx := context.Background()
	s, err := m.GenerateKey(ctx, mustURI(t, h.KeyURI("recover")), keys.ECDSAP256, WithMaxSessions(3))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	signVerify(t, s)
	raw := m.c.(*p11.Ctx)
	for round := range 3 {
		if err := raw.CloseAllSessions(s.tok.slot); err != nil {
			t.Fatal(err)
		}
		// Prove the token really lost the login: a fresh session is public.
		sh, err := raw.OpenSession(s.tok.slot, p11.CKF_SERIAL_SESSION)
		if err != nil {
			t.Fatal(err)
		}
		si, err := raw.GetSessionInfo(sh)
		raw.CloseSession(sh)
		if err != nil || si.State != p11.CKS_RO_PUBLIC_SESSION {
			t.Fatalf("round %d: session state %d, %v; want a public (logged-out) session", round, si.State, err)
		}
		signVerify(t, s)
	}
}

func TestSoftHSMErrors(t *testing.T) {
	h := pkitest.NewSoftHSM(t)
	h.MustTool(t, "--keypairgen", "--key-type", "EC:prime256v1", "--label", "k", "--id", "01", "--usage-sign")
	h.MustTool(t, "--keypairgen", "--key-type", "EC:prime256v1", "--label", "dup", "--id", "02", "--usage-sign")
	h.MustTool(t, "--keypairgen", "--key-type", "EC:prime256v1", "--label", "dup", "--id", "03", "--usage-sign")
	wrongPIN := filepath.Join(t.TempDir(), "wrong.pin")
	if err := os.WriteFile(wrongPIN, []byte("9999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notLib := filepath.Join(t.TempDir(), "notalib.so")
	if err := os.WriteFile(notLib, []byte("not an ELF file"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	base := "pkcs11:token=" + h.Label
	q := "?module-path=" + h.Module + "&pin-source=file:" + h.PINFile
	tests := []struct {
		name string
		uri  string
		opts []Option
		want error
		text []string // substrings of the message
	}{
		{"wrong PIN", base + ";object=k?module-path=" + h.Module + "&pin-source=file:" + wrongPIN, nil, ErrWrongPIN,
			[]string{`wrong PIN for token "certctl-test"`, "CKR_PIN_INCORRECT"}},
		{"wrong PIN value", base + ";object=k?module-path=" + h.Module + "&pin-value=4321", nil, ErrWrongPIN,
			[]string{`wrong PIN for token "certctl-test"`}},
		{"no PIN", base + ";object=k?module-path=" + h.Module, nil, ErrNoPIN, []string{`token "certctl-test"`, "pin-source"}},
		{"PIN by option", base + ";object=k?module-path=" + h.Module, []Option{WithPIN(h.PIN)}, nil, nil},
		{"missing token", "pkcs11:token=nope;object=k" + q, nil, ErrTokenNotFound, []string{`token="nope"`, `"certctl-test"`}},
		{"missing object", base + ";object=nope" + q, nil, ErrKeyNotFound, []string{`"nope"`, `token "certctl-test"`}},
		{"missing id", base + ";id=%77" + q, nil, ErrKeyNotFound, []string{"id=77"}},
		{"ambiguous object", base + ";object=dup" + q, nil, ErrAmbiguous, []string{"add id="}},
		{"ambiguity resolved by id", base + ";object=dup;id=%03" + q, nil, nil, nil},
		{"no object", base + q, nil, ErrURI, []string{"object=LABEL"}},
		{"wrong module path", base + ";object=k?module-path=/nonexistent/libpkcs11.so&pin-source=file:" + h.PINFile, nil, ErrModule,
			[]string{"/nonexistent/libpkcs11.so"}},
		{"not a library", base + ";object=k?module-path=" + notLib + "&pin-source=file:" + h.PINFile, nil, ErrModule, []string{"dlopen"}},
		{"no module path", base + ";object=k?pin-source=file:" + h.PINFile, nil, ErrModule, []string{"module-path"}},
		{"module path by option", base + ";object=k?pin-source=file:" + h.PINFile, []Option{WithModulePath(h.Module)}, nil, nil},
		{"missing PIN file", base + ";object=k?module-path=" + h.Module + "&pin-source=file:/nonexistent/pin", nil, os.ErrNotExist, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(ctx, tt.uri, tt.opts...)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				signVerify(t, s)
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded, want %v", tt.want)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open: %v, want %v", err, tt.want)
			}
			for _, sub := range tt.text {
				if !strings.Contains(err.Error(), sub) {
					t.Errorf("error %q lacks %q", err, sub)
				}
			}
			for _, pin := range []string{h.PIN, "4321", "9999"} {
				if strings.Contains(err.Error(), pin) && !strings.Contains(h.PINFile, pin) && !strings.Contains(h.Module, pin) {
					t.Errorf("error %q shows a PIN", err)
				}
			}
		})
	}
}

func TestSoftHSMCloseAndList(t *testing.T) {
	h := pkitest.NewSoftHSM(t)
	h.MustTool(t, "--keypairgen", "--key-type", "rsa:2048", "--label", "tool-rsa", "--id", "02", "--usage-sign")
	m := openTestModule(t, h)
	ctx := context.Background()
	summary := func(ks []KeyInfo) string {
		var b strings.Builder
		for _, k := range ks {
			fmt.Fprintf(&b, "%s %s %s;", k.Label, k.Class, k.Type)
		}
		return b.String()
	}
	// Before any login only public objects are visible (login state
	// belongs to the process: once a Signer logged in, Keys sees all).
	pub, err := m.Keys(ctx, mustURI(t, "pkcs11:token="+h.Label))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := summary(pub), "tool-rsa public rsa-2048;"; got != want {
		t.Errorf("Keys without login = %q, want %q", got, want)
	}
	s, err := m.GenerateKey(ctx, mustURI(t, h.KeyURI("listed")), keys.ECDSAP384)
	if err != nil {
		t.Fatal(err)
	}

	slots, err := m.Slots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var tok *TokenInfo
	for _, sl := range slots {
		if sl.Token != nil && sl.Token.Label == h.Label {
			tok = sl.Token
		}
	}
	if tok == nil || !tok.Initialized || !tok.LoginRequired || tok.Serial == "" {
		t.Fatalf("Slots() = %+v: no initialised token %q", slots, h.Label)
	}
	all, err := m.Keys(ctx, mustURI(t, "pkcs11:token="+h.Label), WithPIN(h.PIN))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := summary(all), "listed private ecdsa-p384;listed public ecdsa-p384;tool-rsa private rsa-2048;tool-rsa public rsa-2048;"; got != want {
		t.Errorf("Keys with login = %q, want %q", got, want)
	}
	if k := all[0]; k.URI.String() != fmt.Sprintf("pkcs11:token=%s;object=listed;id=%s;type=private", h.Label, pctHex(s.URI().ID)) {
		t.Errorf("KeyInfo.URI = %s", k.URI)
	}

	// Close is idempotent; a closed Signer refuses to sign; Module.Close
	// closes the Signers still open.
	d := sha512.Sum384([]byte("x"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(rand.Reader, d[:], crypto.SHA384); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sign after Close: %v, want ErrClosed", err)
	}
	s2, err := m.OpenSigner(ctx, mustURI(t, h.KeyURI("listed")))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Sign(rand.Reader, d[:], crypto.SHA384); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sign after Module.Close: %v, want ErrClosed", err)
	}
	if _, err := m.OpenSigner(ctx, mustURI(t, h.KeyURI("listed"))); !errors.Is(err, ErrClosed) {
		t.Fatalf("OpenSigner after Module.Close: %v, want ErrClosed", err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
}

func pctHex(b []byte) string {
	var s strings.Builder
	for _, c := range b {
		fmt.Fprintf(&s, "%%%02X", c)
	}
	return s.String()
}
