package catest_test

import (
	"context"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/internal/catest"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
)

type recordingStore struct {
	mu    sync.Mutex
	added []*certdb.Certificate
}

func (s *recordingStore) ReserveSerial(context.Context, *certdb.Reservation) error { return nil }
func (s *recordingStore) AddCertificate(_ context.Context, c *certdb.Certificate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.added = append(s.added, c)
	return nil
}

func TestNewHierarchy(t *testing.T) {
	t.Parallel()
	now := time.Now().Add(-time.Hour).Truncate(time.Second)
	interKey := catest.Key(t, keys.ECDSAP384)
	tests := []struct {
		name      string
		opts      catest.Options
		rootCN    string
		wantAdded int
	}{
		{"zero options", catest.Options{}, "Test Root", 0},
		{"named, clock, given key", catest.Options{Name: "X", Now: now, IntermediateKey: interKey, KeyType: keys.RSA2048}, "X Root", 0},
		{"recorded", catest.Options{Store: &recordingStore{}, RecordRoot: true, RootRequester: "r", Requester: "i"}, "Test Root", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := catest.NewHierarchy(t, tt.opts)
			if h.Root.Subject.CommonName != tt.rootCN || !h.Root.IsCA || h.Root.MaxPathLen != 1 {
				t.Fatalf("root = %q IsCA=%v MaxPathLen=%d", h.Root.Subject.CommonName, h.Root.IsCA, h.Root.MaxPathLen)
			}
			if !h.Intermediate.IsCA || h.Intermediate.MaxPathLen != 0 || !h.Intermediate.MaxPathLenZero {
				t.Fatalf("intermediate IsCA=%v MaxPathLen=%d", h.Intermediate.IsCA, h.Intermediate.MaxPathLen)
			}
			roots := x509.NewCertPool()
			roots.AddCert(h.Root)
			if _, err := h.Intermediate.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				t.Fatalf("intermediate does not chain to root: %v", err)
			}
			if tt.opts.IntermediateKey != nil && h.IntermediateKey != tt.opts.IntermediateKey {
				t.Fatal("IntermediateKey not used")
			}
			if !tt.opts.Now.IsZero() && h.Root.NotBefore.After(tt.opts.Now) {
				t.Fatalf("root NotBefore %v after Now %v", h.Root.NotBefore, tt.opts.Now)
			}
			if s, ok := tt.opts.Store.(*recordingStore); ok && len(s.added) != tt.wantAdded {
				t.Fatalf("store recorded %d certificates, want %d", len(s.added), tt.wantAdded)
			}
			if got := h.Chain(); len(got) != 1 || string(got[0]) != string(h.Intermediate.Raw) {
				t.Fatal("Chain() is not the intermediate's DER")
			}
			if iss := h.Issuer(t, issuance.IssuerConfig{}); iss == nil {
				t.Fatal("Issuer() = nil")
			}
		})
	}
}

func TestProfiles(t *testing.T) {
	t.Parallel()
	all := catest.Profiles(t)
	for _, name := range []string{"server", "intermediate"} {
		if all[name] == nil {
			t.Fatalf("Profiles() lacks %q", name)
		}
	}
	if got := catest.Profiles(t, "server"); len(got) != 1 || got["server"] == nil {
		t.Fatalf("Profiles(server) = %v", got)
	}
}

// TestSQLiteStoreRecordsHierarchy checks that SQLiteStore is migrated and
// writable, and that RecordRoot records both certificates with their
// requesters.
func TestSQLiteStoreRecordsHierarchy(t *testing.T) {
	t.Parallel()
	st := catest.SQLiteStore(t)
	h := catest.NewHierarchy(t, catest.Options{Store: st, RecordRoot: true, RootRequester: "root-op", Requester: "inter-op"})
	for _, tt := range []struct {
		name, requester string
		cert            *x509.Certificate
	}{
		{"root", "root-op", h.Root},
		{"intermediate", "inter-op", h.Intermediate},
	} {
		got, err := st.GetCertificate(t.Context(), tt.cert.SerialNumber)
		if err != nil {
			t.Fatalf("%s not in store: %v", tt.name, err)
		}
		if string(got.DER) != string(tt.cert.Raw) || got.Requester != tt.requester {
			t.Fatalf("%s stored with requester %q (want %q), same DER %v", tt.name, got.Requester, tt.requester, string(got.DER) == string(tt.cert.Raw))
		}
	}
}
