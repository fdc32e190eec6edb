// Package catest builds certctl certificate hierarchies for tests the way
// certctl itself does: through keys, issuance and ca, so the intermediate is
// issued (linted, recorded) by a real root CA; and it opens migrated
// certdb stores ([SQLiteStore], [PostgresStore]). Only tests import it.
//
// catest imports ca, so it cannot be used by package ca's internal tests
// (package ca); use it from package ca_test and from every package above ca.
// For fixtures that need only crypto/x509, see internal/pkitest.
//
//	h := catest.NewHierarchy(t, catest.Options{Name: "CRL Test"})
//	iss := h.Issuer(t, issuance.IssuerConfig{CRLShards: 4})
//	c, err := ca.New(iss, h.Chain(), catest.Profiles(t, "server"), st)
package catest

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
)

// RootValidity is the lifetime of the root NewHierarchy makes.
const RootValidity = 10 * 365 * 24 * time.Hour

// Options says how NewHierarchy builds the hierarchy. The zero value makes
// a "Test Root" and a "Test Intermediate" with ECDSA P-256 keys, recorded
// nowhere.
type Options struct {
	// Name prefixes the common names: "<Name> Root" and "<Name> Intermediate".
	// Empty means "Test".
	Name string
	// Now is the root's NotBefore base and the root CA's clock. Zero means
	// time.Now(), and the root CA keeps the real clock.
	Now time.Time
	// KeyType is the type of the keys generated. Empty means keys.ECDSAP256.
	KeyType keys.KeyType
	// IntermediateKey, if set, is used instead of a generated intermediate
	// key (a file key or an HSM key).
	IntermediateKey crypto.Signer
	// Store records the intermediate's issuance. Nil discards it.
	Store ca.Store
	// RecordRoot makes the root with ca.CreateRoot, which records it in
	// Store with RootRequester, instead of self-signing it in memory.
	RecordRoot    bool
	RootRequester string
	// Requester is recorded with the intermediate.
	Requester string
	// RootIssuer configures the root's issuer (for example a CRL
	// distribution point to put in the intermediate).
	RootIssuer issuance.IssuerConfig
}

// Hierarchy is a root certificate and an intermediate (path length 0) it
// issued, with their keys. Its fields do not change after NewHierarchy
// returns.
type Hierarchy struct {
	Root            *x509.Certificate
	RootKey         crypto.Signer
	Intermediate    *x509.Certificate
	IntermediateKey crypto.Signer
	// RootIssuer is the root's issuer (Options.RootIssuer) and RootCA the
	// CA over it, with only the "intermediate" profile, that issued
	// Intermediate into Options.Store.
	RootIssuer *issuance.Issuer
	RootCA     *ca.CA
}

// NewHierarchy makes a root (path length 1, valid RootValidity) and has a CA
// over it issue an intermediate with the default "intermediate" profile. It
// fails t on any error.
func NewHierarchy(t testing.TB, o Options) *Hierarchy {
	t.Helper()
	if o.Name == "" {
		o.Name = "Test"
	}
	if o.KeyType == "" {
		o.KeyType = keys.ECDSAP256
	}
	st := o.Store
	if st == nil {
		st = discardStore{}
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	rootKey := Key(t, o.KeyType)
	cfg := issuance.RootConfig{CommonName: o.Name + " Root", Validity: RootValidity, MaxPathLen: 1}
	var root *x509.Certificate
	if o.RecordRoot {
		var err error
		root, err = ca.CreateRoot(context.Background(), st, rootKey, cfg, o.RootRequester, now, nil)
		if err != nil {
			t.Fatalf("catest: create root: %v", err)
		}
	} else {
		serial, err := issuance.NewSerial(rand.Reader)
		if err != nil {
			t.Fatalf("catest: root serial: %v", err)
		}
		der, err := issuance.SelfSignRoot(rootKey, cfg, serial, now)
		if err != nil {
			t.Fatalf("catest: self-sign root: %v", err)
		}
		if root, err = x509.ParseCertificate(der); err != nil {
			t.Fatalf("catest: parse root: %v", err)
		}
	}
	rootIss, err := issuance.NewIssuer(root, rootKey, o.RootIssuer)
	if err != nil {
		t.Fatalf("catest: root issuer: %v", err)
	}
	var opts []ca.Option
	if !o.Now.IsZero() {
		opts = append(opts, ca.WithClock(func() time.Time { return o.Now }))
	}
	rootCA, err := ca.New(rootIss, nil, Profiles(t, "intermediate"), st, opts...)
	if err != nil {
		t.Fatalf("catest: root CA: %v", err)
	}
	interKey := o.IntermediateKey
	if interKey == nil {
		interKey = Key(t, o.KeyType)
	}
	req := &issuance.Request{PublicKey: interKey.Public()}
	req.Subject.CommonName = o.Name + " Intermediate"
	inter, err := rootCA.Issue(context.Background(), ca.Request{Profile: "intermediate", Request: req, Requester: o.Requester})
	if err != nil {
		t.Fatalf("catest: issue intermediate: %v", err)
	}
	return &Hierarchy{Root: root, RootKey: rootKey, Intermediate: inter.Certificate, IntermediateKey: interKey, RootIssuer: rootIss, RootCA: rootCA}
}

// Issuer returns an issuer over the intermediate with cfg.
func (h *Hierarchy) Issuer(t testing.TB, cfg issuance.IssuerConfig) *issuance.Issuer {
	t.Helper()
	iss, err := issuance.NewIssuer(h.Intermediate, h.IntermediateKey, cfg)
	if err != nil {
		t.Fatalf("catest: intermediate issuer: %v", err)
	}
	return iss
}

// Chain is what follows a leaf issued by the intermediate: the
// intermediate's DER (for ca.New).
func (h *Hierarchy) Chain() [][]byte { return [][]byte{h.Intermediate.Raw} }

// Profiles builds the named profiles from issuance.DefaultProfiles, or all
// of them when no name is given. An unknown name fails t.
func Profiles(t testing.TB, names ...string) map[string]*issuance.Profile {
	t.Helper()
	defaults := issuance.DefaultProfiles()
	if len(names) == 0 {
		for name := range defaults {
			names = append(names, name)
		}
	}
	profiles := make(map[string]*issuance.Profile, len(names))
	for _, name := range names {
		pc, ok := defaults[name]
		if !ok {
			t.Fatalf("catest: no default profile %q", name)
		}
		p, err := issuance.NewProfile(name, pc)
		if err != nil {
			t.Fatalf("catest: profile %q: %v", name, err)
		}
		profiles[name] = p
	}
	return profiles
}

// Key generates a key of type kt.
func Key(t testing.TB, kt keys.KeyType) crypto.Signer {
	t.Helper()
	k, err := keys.Generate(kt)
	if err != nil {
		t.Fatalf("catest: generate %s key: %v", kt, err)
	}
	return k
}

// discardStore is a ca.Store that records nothing.
type discardStore struct{}

func (discardStore) ReserveSerial(context.Context, *certdb.Reservation) error  { return nil }
func (discardStore) AddCertificate(context.Context, *certdb.Certificate) error { return nil }
