package pkcs11

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	p11 "github.com/miekg/pkcs11"
)

// Unit tests over the hand-written fake (fake_test.go); softhsm_test.go runs
// the same code against a real token.

func fakeSigner(t *testing.T, f *fakeCtx, uri string, opts ...Option) (*Module, *Signer) {
	t.Helper()
	m := newModule("fake.so", f, newConfig(nil))
	s, err := m.OpenSigner(context.Background(), mustURI(t, uri), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, s
}

func TestFakeSignECDSA(t *testing.T) {
	t.Parallel()
	f := newFakeCtx()
	k := f.addECKey("ec", []byte{1})
	_, s := fakeSigner(t, f, "pkcs11:token=fake-token;object=ec?pin-value=1234", WithPublicKey(&k.PublicKey))
	d := sha256.Sum256([]byte("m"))
	sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(&k.PublicKey, d[:], sig) {
		t.Fatal("signature does not verify")
	}
	if f.lastMech.Mechanism != p11.CKM_ECDSA || !bytes.Equal(f.lastInput, d[:]) {
		t.Fatalf("mechanism 0x%X input %x: want CKM_ECDSA over the digest", f.lastMech.Mechanism, f.lastInput)
	}
	if got := s.URI().String(); got != "pkcs11:token=fake-token;object=ec;id=%01" {
		t.Errorf("URI() = %s", got)
	}
	if f.count("Login") != 1 {
		t.Errorf("%d logins, want 1", f.count("Login"))
	}
}

func TestFakeSignRSA(t *testing.T) {
	t.Parallel()
	f := newFakeCtx()
	k := f.addRSAKey("rsa", []byte{2})
	_, s := fakeSigner(t, f, "pkcs11:object=rsa?pin-value=1234")
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		d := digest([]byte("m"), h)
		sig, err := s.Sign(rand.Reader, d, h)
		if err != nil {
			t.Fatal(err)
		}
		if err := rsa.VerifyPKCS1v15(&k.PublicKey, h, d, sig); err != nil {
			t.Fatalf("%v: %v", h, err)
		}
	}
	// PSS: the mechanism parameters carry hash, MGF and salt length.
	d := sha512.Sum384([]byte("m"))
	if _, err := s.Sign(rand.Reader, d[:], &rsa.PSSOptions{Hash: crypto.SHA384, SaltLength: rsa.PSSSaltLengthEqualsHash}); err == nil {
		t.Fatal("the fake cannot do PSS: want its error")
	}
	if f.lastMech.Mechanism != p11.CKM_RSA_PKCS_PSS || !bytes.Equal(f.lastMech.Parameter, p11.NewPSSParams(p11.CKM_SHA384, p11.CKG_MGF1_SHA384, 48)) {
		t.Fatalf("PSS mechanism 0x%X params %x", f.lastMech.Mechanism, f.lastMech.Parameter)
	}
}

func TestMechanismErrors(t *testing.T) {
	t.Parallel()
	f := newFakeCtx()
	f.addECKey("ec", []byte{1})
	f.addRSAKey("rsa", []byte{2})
	_, ec := fakeSigner(t, f, "pkcs11:object=ec?pin-value=1234")
	_, rs := fakeSigner(t, f, "pkcs11:object=rsa?pin-value=1234")
	d := sha256.Sum256(nil)
	tests := []struct {
		name   string
		s      *Signer
		digest []byte
		opts   crypto.SignerOpts
	}{
		{"ecdsa without hash", ec, d[:], crypto.Hash(0)},
		{"ecdsa digest length", ec, d[:20], crypto.SHA256},
		{"rsa sha1", rs, make([]byte, 20), crypto.SHA1},
		{"rsa digest length", rs, d[:31], crypto.SHA256},
		{"pss md5", rs, make([]byte, 16), &rsa.PSSOptions{Hash: crypto.MD5}},
		{"pss bad salt", rs, d[:], &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: -7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.count("SignInit")
			if _, err := tt.s.Sign(rand.Reader, tt.digest, tt.opts); err == nil {
				t.Fatal("Sign succeeded")
			}
			if f.count("SignInit") != before {
				t.Fatal("the token was asked to sign")
			}
		})
	}
}

func TestECDSADER(t *testing.T) {
	t.Parallel()
	raw := make([]byte, 64)
	raw[31] = 5    // r = 5
	raw[32] = 0x80 // s has its top bit set: DER needs a leading zero
	der, err := ecdsaDER(raw)
	if err != nil {
		t.Fatal(err)
	}
	var sig struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &sig); err != nil || len(rest) != 0 {
		t.Fatal(err)
	}
	if sig.R.Int64() != 5 || sig.S.Cmp(new(big.Int).SetBytes(raw[32:])) != 0 {
		t.Fatalf("r=%v s=%x", sig.R, sig.S)
	}
	for _, bad := range [][]byte{nil, make([]byte, 63)} {
		if _, err := ecdsaDER(bad); err == nil {
			t.Errorf("ecdsaDER(%d bytes) succeeded", len(bad))
		}
	}
}

// A lost session or login is recovered once: new session, new login, retry.
func TestFakeRecovery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		signErrs  []error
		reset     bool
		wantErr   string
		wantSigns int
	}{
		{"token reset", nil, true, "", 1},
		{"session handle invalid", []error{p11.Error(p11.CKR_SESSION_HANDLE_INVALID)}, false, "", 2},
		{"user not logged in", []error{p11.Error(p11.CKR_USER_NOT_LOGGED_IN)}, false, "", 2},
		{"token not present", []error{p11.Error(p11.CKR_TOKEN_NOT_PRESENT)}, false, "", 2},
		{"only once", []error{p11.Error(p11.CKR_SESSION_CLOSED), p11.Error(p11.CKR_SESSION_CLOSED)}, false, "CKR_SESSION_CLOSED", 2},
		{"not recoverable", []error{p11.Error(p11.CKR_DEVICE_ERROR)}, false, "CKR_DEVICE_ERROR", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeCtx()
			k := f.addECKey("ec", []byte{1})
			_, s := fakeSigner(t, f, "pkcs11:object=ec?pin-value=1234")
			if tt.reset {
				f.resetToken()
			}
			f.mu.Lock()
			f.signErrs = tt.signErrs
			f.mu.Unlock()
			d := sha256.Sum256([]byte("m"))
			sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), `token "fake-token"`) {
					t.Fatalf("Sign: %v, want an error naming the token and %s", err, tt.wantErr)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if !ecdsa.VerifyASN1(&k.PublicKey, d[:], sig) {
					t.Fatal("signature does not verify")
				}
			}
			if got := f.count("Sign"); got != tt.wantSigns {
				t.Errorf("%d C_Sign calls, want %d", got, tt.wantSigns)
			}
		})
	}
}

// Signatures on different sessions run at the same time: no lock is held
// around the PKCS#11 call. The fake's Sign blocks until two are inside it,
// so a serialising Signer would never finish.
func TestFakeSignsInParallel(t *testing.T) {
	t.Parallel()
	f := newFakeCtx()
	f.addECKey("ec", []byte{1})
	arrived := make(chan struct{}, 2)
	release := make(chan struct{})
	f.signHook = func() {
		arrived <- struct{}{}
		<-release
	}
	_, s := fakeSigner(t, f, "pkcs11:object=ec?pin-value=1234", WithMaxSessions(2))
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := sha256.Sum256([]byte("m"))
			_, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
			errs <- err
		}()
	}
	for range 2 {
		select {
		case <-arrived:
		case <-time.After(20 * time.Second): // only on failure: the second never got in
			t.Fatal("the second signature never started while the first was in progress")
		}
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := f.count("OpenSession"); n != 2 {
		t.Errorf("%d sessions opened, want 2", n)
	}
}

func TestFakeErrors(t *testing.T) {
	t.Parallel()
	f := newFakeCtx()
	f.addECKey("ec", []byte{1})
	m := newModule("fake.so", f, newConfig(nil))
	defer m.Close()
	ctx := context.Background()
	tests := []struct {
		uri  string
		want error
		text string
	}{
		{"pkcs11:object=ec?pin-value=0000", ErrWrongPIN, `pkcs11: wrong PIN for token "fake-token": CKR_PIN_INCORRECT (0xA0)`},
		{"pkcs11:object=ec", ErrNoPIN, `token "fake-token"`},
		{"pkcs11:token=other;object=ec?pin-value=1234", ErrTokenNotFound, `tokens present: "fake-token"`},
		{"pkcs11:serial=9999;object=ec?pin-value=1234", ErrTokenNotFound, `serial="9999"`},
		{"pkcs11:object=nope?pin-value=1234", ErrKeyNotFound, `no private key "nope"`},
		{"pkcs11:object=ec;type=public?pin-value=1234", ErrURI, "type=private"},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			_, err := m.OpenSigner(ctx, mustURI(t, tt.uri))
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("OpenSigner: %v\nwant %v containing %q", err, tt.want, tt.text)
			}
			if strings.Contains(err.Error(), "0000") {
				t.Fatalf("error shows the PIN: %v", err)
			}
		})
	}
	// Every session opened for a failed open is closed again.
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.sessions) != 0 {
		t.Fatalf("%d sessions left open", len(f.sessions))
	}
}

func TestPool(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	next, closed := p11.SessionHandle(0), map[p11.SessionHandle]bool{}
	p := newPool(2,
		func() (p11.SessionHandle, error) { mu.Lock(); defer mu.Unlock(); next++; return next, nil },
		func(sh p11.SessionHandle) { mu.Lock(); closed[sh] = true; mu.Unlock() })
	ctx := context.Background()
	a, _ := p.get(ctx)
	b, _ := p.get(ctx)
	short, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	if _, err := p.get(short); !errors.Is(err, ErrBusy) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third get: %v, want ErrBusy", err)
	}
	p.put(a, false)
	c, _ := p.get(ctx)
	if c.sh != a.sh {
		t.Fatalf("got session %d, want the idle %d back", c.sh, a.sh)
	}
	p.drain() // a and b predate the drain: closed when they come back
	p.put(c, false)
	p.put(b, false)
	mu.Lock()
	if !closed[a.sh] || !closed[b.sh] {
		t.Fatalf("closed = %v: sessions from before drain must be closed", closed)
	}
	mu.Unlock()
	d, _ := p.get(ctx)
	if d.sh == a.sh || d.sh == b.sh {
		t.Fatal("a drained session was reused")
	}
	done := make(chan bool)
	go func() { done <- p.shutdown(ctx) }()
	p.put(d, false) // shutdown waits for it
	if !<-done {
		t.Fatal("shutdown did not see every session back")
	}
	if _, err := p.get(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("get after shutdown: %v, want ErrClosed", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !closed[d.sh] {
		t.Fatal("session returned after shutdown was not closed")
	}
}
