package pkcs11

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	p11 "github.com/miekg/pkcs11"

	"github.com/certctl/certctl/keys"
)

// GenerateKey is Module.GenerateKey on the module named by the URI's
// module-path (else WithModulePath). As with Open, closing the returned
// Signer closes the module.
func GenerateKey(ctx context.Context, uri string, kt keys.KeyType, opts ...Option) (*Signer, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	cfg := newConfig(opts)
	path := u.ModulePath
	if path == "" {
		path = cfg.modulePath
	}
	m, err := OpenModule(path, opts...)
	if err != nil {
		return nil, err
	}
	s, err := m.GenerateKey(ctx, u, kt, opts...)
	if err != nil {
		m.Close()
		return nil, err
	}
	s.ownModule = true
	return s, nil
}

// GenerateKey creates a key pair of type kt on the token u names, labelled
// u.Object (required) with CKA_ID u.ID (8 random bytes if the URI has none),
// and returns a Signer for it. The private key is a token object that is
// sensitive, never extractable and usable only to sign (CKA_SENSITIVE true,
// CKA_EXTRACTABLE false, CKA_DECRYPT/UNWRAP/DERIVE false): it cannot leave
// the token. If a private key with that label (or id) exists, GenerateKey
// fails with an error wrapping ErrKeyExists and creates nothing. A token
// that lacks the mechanism (Ed25519 needs CKM_EC_EDWARDS_KEY_PAIR_GEN) fails
// with ErrUnsupported. Options: as OpenSigner.
func (m *Module) GenerateKey(ctx context.Context, u *URI, kt keys.KeyType, opts ...Option) (*Signer, error) {
	cfg := newConfig(opts)
	if err := m.checkOpen(); err != nil {
		return nil, err
	}
	if u.Object == "" {
		return nil, fmt.Errorf("%w: generating a key needs object=LABEL in the URI", ErrURI)
	}
	if u.Type != "" && u.Type != "private" {
		return nil, fmt.Errorf("%w: type=%s: a signing key is type=private", ErrURI, u.Type)
	}
	mech, pubAttrs, err := keygenTemplate(kt)
	if err != nil {
		return nil, err
	}
	t, err := m.findToken(u)
	if err != nil {
		return nil, err
	}
	if err := m.requireMechanism(t, mech.Mechanism, fmt.Sprintf("key generation for %s (mechanism 0x%X)", kt, mech.Mechanism)); err != nil {
		return nil, err
	}
	l, err := resolveLogin(t, u, cfg)
	if err != nil {
		return nil, err
	}
	if !l.hasPIN && t.loginRequired() {
		return nil, fmt.Errorf("%w for token %q: generating a key needs a login: add pin-source=file:PATH to the URI or give the PIN another way", ErrNoPIN, t.label)
	}
	sh, err := m.openSession(t, true, l) // token objects need a read-write session
	if err != nil {
		return nil, err
	}
	defer m.closeSession(sh)

	// Refuse to add a second key under the same name: lookups by label
	// would then be ambiguous.
	gu := u.WithoutPIN()
	for _, probe := range []*URI{{Object: u.Object}, {ID: u.ID}} {
		if probe.Object == "" && len(probe.ID) == 0 {
			continue
		}
		objs, err := m.findObjects(sh, keyTemplate(p11.CKO_PRIVATE_KEY, probe), 1)
		if err != nil {
			return nil, newError("find key", t.label, keySelector(probe), err)
		}
		if len(objs) > 0 {
			return nil, fmt.Errorf("%w: token %q already has a private key %s", ErrKeyExists, t.label, keySelector(probe))
		}
	}
	if len(gu.ID) == 0 {
		gu.ID = make([]byte, 8)
		rand.Read(gu.ID)
	}
	if err := ctxErr(ctx, "generate key"); err != nil {
		return nil, err
	}
	common := func(private bool) []*p11.Attribute {
		return []*p11.Attribute{
			p11.NewAttribute(p11.CKA_TOKEN, true),
			p11.NewAttribute(p11.CKA_LABEL, gu.Object),
			p11.NewAttribute(p11.CKA_ID, gu.ID),
			p11.NewAttribute(p11.CKA_PRIVATE, private),
		}
	}
	pubTmpl := append(common(false), pubAttrs...)
	pubTmpl = append(pubTmpl,
		p11.NewAttribute(p11.CKA_VERIFY, true),
		p11.NewAttribute(p11.CKA_ENCRYPT, false),
		p11.NewAttribute(p11.CKA_WRAP, false),
	)
	privTmpl := append(common(true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_SIGN, true),
		p11.NewAttribute(p11.CKA_DECRYPT, false),
		p11.NewAttribute(p11.CKA_UNWRAP, false),
		p11.NewAttribute(p11.CKA_DERIVE, false),
	)
	if _, _, err := m.c.GenerateKeyPair(sh, []*p11.Mechanism{mech}, pubTmpl, privTmpl); err != nil {
		e := newError("generate "+string(kt)+" key", t.label, keySelector(gu), err)
		if errors.Is(e, ErrUnsupported) {
			return nil, fmt.Errorf("%w (the token cannot make %s keys)", e, kt)
		}
		return nil, e
	}
	m.log.Info("pkcs11: generated key", "token", t.label, "key", keySelector(gu), "type", kt)
	// Open by label and id, exactly as a later OpenSigner would.
	su := gu.clone()
	su.pinValue = u.pinValue
	s, err := m.OpenSigner(ctx, su, opts...)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: open the key just generated: %w", err)
	}
	if !bytes.Equal(s.uri.ID, gu.ID) {
		s.close()
		return nil, fmt.Errorf("pkcs11: generated key has id %X, want %X", s.uri.ID, gu.ID)
	}
	return s, nil
}

// keygenTemplate returns the key pair mechanism and public key attributes
// for kt.
func keygenTemplate(kt keys.KeyType) (*p11.Mechanism, []*p11.Attribute, error) {
	switch kt {
	case keys.ECDSAP256, keys.ECDSAP384:
		params, err := ecParams(kt)
		if err != nil {
			return nil, nil, err
		}
		return p11.NewMechanism(p11.CKM_EC_KEY_PAIR_GEN, nil),
			[]*p11.Attribute{p11.NewAttribute(p11.CKA_EC_PARAMS, params)}, nil
	case keys.RSA2048, keys.RSA3072, keys.RSA4096:
		bits := map[keys.KeyType]int{keys.RSA2048: 2048, keys.RSA3072: 3072, keys.RSA4096: 4096}[kt]
		return p11.NewMechanism(p11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil), []*p11.Attribute{
			p11.NewAttribute(p11.CKA_MODULUS_BITS, bits),
			p11.NewAttribute(p11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
		}, nil
	case keys.Ed25519:
		params, err := ecParams(kt)
		if err != nil {
			return nil, nil, err
		}
		return p11.NewMechanism(ckmECEdwardsKeyPairGen, nil),
			[]*p11.Attribute{p11.NewAttribute(p11.CKA_EC_PARAMS, params)}, nil
	}
	return nil, nil, fmt.Errorf("%w: key type %q (supported: %v)", ErrUnsupported, kt, keys.KeyTypes())
}
