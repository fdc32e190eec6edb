package bench

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	p11 "github.com/miekg/pkcs11"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/internal/catest"
	"github.com/certctl/certctl/internal/pkitest"
	"github.com/certctl/certctl/keys"
	"github.com/certctl/certctl/keys/pkcs11"
)

// hsmKeys: the keys BenchmarkHSMSign uses, made with OpenSC's pkcs11-tool so
// that both sides sign with the very same token objects.
var hsmKeys = []struct {
	name, label, toolType string
}{
	{"ecdsa-p256", "bench-ec", "EC:prime256v1"},
	{"rsa-2048", "bench-rsa", "rsa:2048"},
}

// BenchmarkHSMSign compares signatures/s through pkcs11.Signer with raw
// github.com/miekg/pkcs11 calls (C_SignInit + C_Sign on sessions opened
// beforehand, one per goroutine, no pool, no conversions), with 1, 2 and 4
// sessions and as many goroutines, on the same key objects of one token.
//
// The machine these run on is shared, so the two sides are not run one
// after the other: they alternate in rounds of 64 signatures per session
// (the order flips every round) and each side's rate is its signatures over
// its own time. Both use the library initialised once by the Signer's
// module (PKCS#11 state is per process), so the raw sessions share its login.
//
// The digest is a fixed SHA-256; the Signer also takes a session from its
// pool, builds the mechanism, adds the DigestInfo (RSA) or converts r||s to
// DER (ECDSA), as it does for real. With CERTCTL_BENCH_HSM_AA=1 the "signer"
// side is a second raw signer: an A/A run that shows the harness's noise.
func BenchmarkHSMSign(b *testing.B) {
	h := pkitest.NewSoftHSM(b)
	for _, k := range hsmKeys {
		h.MustTool(b, "--keypairgen", "--key-type", k.toolType, "--label", k.label, "--usage-sign")
	}
	digest := sha256.Sum256([]byte("certctl HSM benchmark"))
	for _, k := range hsmKeys {
		for _, sessions := range []int{1, 2, 4} {
			b.Run(fmt.Sprintf("key=%s/sessions=%d", k.name, sessions), func(b *testing.B) {
				s, err := pkcs11.Open(context.Background(), h.KeyURI(k.label), pkcs11.WithMaxSessions(sessions))
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				raw := newRawSigner(b, h, k.label, sessions, digest[:], k.name == "rsa-2048")
				defer raw.close()
				signer := func(int) error {
					_, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
					return err
				}
				if os.Getenv("CERTCTL_BENCH_HSM_AA") != "" {
					// Calibration (A/A): both sides are raw, so the spread of
					// signer/raw-% is the harness's own noise on this machine.
					raw2 := newRawSigner(b, h, k.label, sessions, digest[:], k.name == "rsa-2048")
					defer raw2.close()
					signer = raw2.sign
				}
				// Warm up: every session of both sides exists and has signed.
				timeParallel(b, sessions, 4*sessions, raw.sign)
				timeParallel(b, sessions, 4*sessions, signer)
				var rawTime, signerTime time.Duration
				b.ResetTimer()
				round := 64 * sessions
				for done, i := 0, 0; done < b.N; done, i = done+round, i+1 {
					n := min(round, b.N-done)
					if i%2 == 0 {
						rawTime += timeParallel(b, sessions, n, raw.sign)
						signerTime += timeParallel(b, sessions, n, signer)
					} else {
						signerTime += timeParallel(b, sessions, n, signer)
						rawTime += timeParallel(b, sessions, n, raw.sign)
					}
				}
				b.StopTimer()
				rawRate := float64(b.N) / rawTime.Seconds()
				signerRate := float64(b.N) / signerTime.Seconds()
				b.ReportMetric(rawRate, "raw-signs/s")
				b.ReportMetric(signerRate, "signer-signs/s")
				b.ReportMetric(100*signerRate/rawRate, "signer/raw-%")
			})
		}
	}
}

// timeParallel runs n calls of op spread over `workers` goroutines (worker
// w always passes w) and returns the wall time they took.
func timeParallel(b *testing.B, workers, n int, op func(worker int) error) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if err := op(w); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return elapsed
}

// rawSigner is the baseline: bare miekg/pkcs11 calls, one session per
// worker. It shares the library initialisation (and so the login) of the
// Signer's module: PKCS#11 state is per process, and a second C_Initialize
// would fail.
type rawSigner struct {
	c     *p11.Ctx
	sess  []p11.SessionHandle
	key   p11.ObjectHandle
	mechs []*p11.Mechanism
	input []byte
}

func newRawSigner(b *testing.B, h *pkitest.SoftHSM, label string, sessions int, digest []byte, rsa bool) *rawSigner {
	c := p11.New(h.Module) // dlopen of an already loaded library: same instance
	if c == nil {
		b.Fatalf("load %s", h.Module)
	}
	r := &rawSigner{c: c}
	slots, err := c.GetSlotList(true)
	if err != nil {
		b.Fatal(err)
	}
	slot, found := uint(0), false
	for _, s := range slots {
		if ti, err := c.GetTokenInfo(s); err == nil && ti.Label == h.Label {
			slot, found = s, true
		}
	}
	if !found {
		b.Fatalf("token %q not found", h.Label)
	}
	for range sessions {
		sh, err := c.OpenSession(slot, p11.CKF_SERIAL_SESSION)
		if err != nil {
			b.Fatal(err)
		}
		r.sess = append(r.sess, sh)
	}
	if err := c.FindObjectsInit(r.sess[0], []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY),
		p11.NewAttribute(p11.CKA_LABEL, label),
	}); err != nil {
		b.Fatal(err)
	}
	objs, _, err := c.FindObjects(r.sess[0], 1)
	c.FindObjectsFinal(r.sess[0])
	if err != nil || len(objs) != 1 {
		b.Fatalf("find %s: %v (%d objects; logged in by the Signer?)", label, err, len(objs))
	}
	r.key = objs[0]
	r.mechs, r.input = []*p11.Mechanism{p11.NewMechanism(p11.CKM_ECDSA, nil)}, digest
	if rsa {
		// DER DigestInfo for SHA-256 (RFC 8017 §9.2 note 1).
		prefix := []byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}
		r.mechs, r.input = []*p11.Mechanism{p11.NewMechanism(p11.CKM_RSA_PKCS, nil)}, append(prefix, digest...)
	}
	return r
}

func (r *rawSigner) sign(w int) error {
	if err := r.c.SignInit(r.sess[w], r.mechs, r.key); err != nil {
		return err
	}
	_, err := r.c.Sign(r.sess[w], r.input)
	return err
}

// close closes the raw sessions; the Signer's module finalises the library.
func (r *rawSigner) close() {
	for _, sh := range r.sess {
		r.c.CloseSession(sh)
	}
}

// BenchmarkHSMIssue: end-to-end issuance (ca.CA.Issue into the discard
// store: policy, serial, lint, reserve, sign, verify) with the intermediate
// key on the token versus in a key file, ECDSA P-256, at concurrency 1 and 4
// (the HSM signer gets as many sessions).
func BenchmarkHSMIssue(b *testing.B) {
	for _, conc := range []int{1, 4} {
		b.Run(fmt.Sprintf("key=file/conc=%d", conc), func(b *testing.B) {
			key, err := keys.Generate(keys.ECDSAP256)
			if err != nil {
				b.Fatal(err)
			}
			benchIssue(b, newCAWithKey(b, key), conc)
		})
		b.Run(fmt.Sprintf("key=hsm/conc=%d", conc), func(b *testing.B) {
			h := pkitest.NewSoftHSM(b)
			s, err := pkcs11.GenerateKey(context.Background(), h.KeyURI("bench-issuing"), keys.ECDSAP256, pkcs11.WithMaxSessions(conc))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			benchIssue(b, newCAWithKey(b, s), conc)
		})
	}
}

// newCAWithKey is newCA with the intermediate key given (a file key or an
// HSM key); the root is made in memory and signs the intermediate.
func newCAWithKey(b *testing.B, interKey crypto.Signer) *ca.CA {
	b.Helper()
	return newCAOver(b, discardStore{}, catest.NewHierarchy(b, catest.Options{Name: "Bench", IntermediateKey: interKey}))
}
