package ocsp

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certctl/certctl/keys"
)

func TestSignerRotation(t *testing.T) {
	ctx := context.Background()
	clock := newClock(time.Now().Truncate(time.Second))
	st := newFakeStore()
	pki := newPKI(t, st, clock)
	var issued atomic.Int64
	var failIssue atomic.Bool
	issue := func(ctx context.Context, pub crypto.PublicKey) (*x509.Certificate, error) {
		if failIssue.Load() {
			return nil, errors.New("CA unavailable")
		}
		issued.Add(1)
		return pki.issueFunc()(ctx, pub)
	}
	var rotated []*x509.Certificate
	var mu sync.Mutex
	s, err := NewSigner(ctx, pki.inter, issue, WithSignerClock(clock.Now), WithOnRotate(func(_ context.Context, c *x509.Certificate, _ crypto.Signer) error {
		mu.Lock()
		defer mu.Unlock()
		rotated = append(rotated, c)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	first := s.Current()
	life := first.Cert().NotAfter.Sub(first.Cert().NotBefore)
	if issued.Load() != 1 || len(rotated) != 1 || rotated[0] != first.Cert() {
		t.Fatalf("NewSigner issued %d, rotated %d", issued.Load(), len(rotated))
	}
	day := 24 * time.Hour

	// Before two thirds of the life: the same responder, concurrently.
	clock.Set(first.Cert().NotBefore.Add(life / 2))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if got, err := s.OCSPSigner(ctx, clock.Now().Add(day)); err != nil || got != first {
				t.Errorf("half life: %v", err)
			}
		})
	}
	wg.Wait()
	// A response that would outlive the certificate forces a rotation.
	got, err := s.OCSPSigner(ctx, first.Cert().NotAfter.Add(time.Second))
	if err != nil || got == first || issued.Load() != 2 {
		t.Fatalf("outliving: %v, issued %d", err, issued.Load())
	}
	second := got
	// Two thirds of the second one's life: rotation, once, however many callers.
	life2 := second.Cert().NotAfter.Sub(second.Cert().NotBefore)
	clock.Set(second.Cert().NotBefore.Add(life2*2/3 + time.Second))
	for range 8 {
		wg.Go(func() {
			if got, err := s.OCSPSigner(ctx, clock.Now().Add(day)); err != nil || got == second {
				t.Errorf("two thirds: %v", err)
			}
		})
	}
	wg.Wait()
	if issued.Load() != 3 {
		t.Fatalf("issued %d, want 3", issued.Load())
	}
	third := s.Current()
	// Failing CA: the current responder is kept while it covers the
	// request; a response it cannot cover fails.
	failIssue.Store(true)
	life3 := third.Cert().NotAfter.Sub(third.Cert().NotBefore)
	clock.Set(third.Cert().NotBefore.Add(life3 * 3 / 4))
	if got, err := s.OCSPSigner(ctx, clock.Now().Add(time.Hour)); err != nil || got != third {
		t.Fatalf("failing CA, covered: %v", err)
	}
	if _, err := s.OCSPSigner(ctx, third.Cert().NotAfter.Add(time.Hour)); err == nil {
		t.Fatal("failing CA, not covered: no error")
	}
	failIssue.Store(false)
	// After the retry delay it rotates again.
	clock.Advance(rotateRetry)
	if got, err := s.OCSPSigner(ctx, clock.Now().Add(time.Hour)); err != nil || got == third {
		t.Fatalf("after retry delay: %v", err)
	}
}

func TestSignerInitial(t *testing.T) {
	ctx := context.Background()
	clock := newClock(time.Now().Truncate(time.Second))
	st := newFakeStore()
	pki := newPKI(t, st, clock)
	key, err := keys.Generate(keys.ECDSAP384)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.issueFunc()(ctx, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	var issued atomic.Int64
	issue := func(ctx context.Context, pub crypto.PublicKey) (*x509.Certificate, error) {
		issued.Add(1)
		return pki.issueFunc()(ctx, pub)
	}
	s, err := NewSigner(ctx, pki.inter, issue, WithSignerClock(clock.Now), WithInitial(cert, key))
	if err != nil || s.Current().Cert() != cert || issued.Load() != 0 {
		t.Fatalf("fresh initial not used: %v, issued %d", err, issued.Load())
	}
	// An initial responder past two thirds of its life is replaced.
	clock.Set(cert.NotAfter.Add(-time.Hour))
	s, err = NewSigner(ctx, pki.inter, issue, WithSignerClock(clock.Now), WithInitial(cert, key))
	if err != nil || s.Current().Cert() == cert || issued.Load() != 1 {
		t.Fatalf("old initial kept: %v, issued %d", err, issued.Load())
	}
	// A mismatched key is not used.
	other, _ := keys.Generate(keys.ECDSAP256)
	clock.Set(cert.NotBefore.Add(time.Hour))
	s, err = NewSigner(ctx, pki.inter, issue, WithSignerClock(clock.Now), WithInitial(cert, other))
	if err != nil || s.Current().Cert() == cert {
		t.Fatalf("mismatched initial used: %v", err)
	}
	if _, err := NewSigner(ctx, pki.inter, issue, WithKeyType(keys.Ed25519)); err == nil {
		t.Fatal("Ed25519 accepted")
	}
	if _, err := NewSigner(ctx, pki.inter, func(context.Context, crypto.PublicKey) (*x509.Certificate, error) {
		return nil, errors.New("no CA")
	}); err == nil {
		t.Fatal("NewSigner without a responder succeeded")
	}
}
