package pkcs11

import (
	"bytes"
	"context"
	"fmt"
	"math/big"
	"slices"
	"strings"

	p11 "github.com/miekg/pkcs11"

	"github.com/certctl/certctl/keys"
)

// Slot describes a slot of the module and the token in it.
type Slot struct {
	ID           uint
	Description  string
	Manufacturer string
	Token        *TokenInfo // nil when no token is present
}

// TokenInfo describes a token.
type TokenInfo struct {
	Label         string
	Manufacturer  string
	Model         string
	Serial        string
	Initialized   bool
	LoginRequired bool
	// URI selects this token (token label and serial), for building key URIs.
	URI *URI
}

// KeyInfo describes a key object on a token.
type KeyInfo struct {
	Class string // "private" or "public"
	Label string
	ID    []byte
	Type  string // a keys.KeyType name ("ecdsa-p256"), or what the token holds ("rsa-1024", "key type 0x…")
	// URI selects this key (token, object label and id, type). It carries
	// no module path and no PIN.
	URI *URI
}

// Slots lists the module's slots and their tokens. It needs no login.
func (m *Module) Slots(ctx context.Context) ([]Slot, error) {
	if err := m.checkOpen(); err != nil {
		return nil, err
	}
	if err := ctxErr(ctx, "list slots"); err != nil {
		return nil, err
	}
	ids, err := m.c.GetSlotList(false)
	if err != nil {
		return nil, newError("list slots", "", "", err)
	}
	out := make([]Slot, 0, len(ids))
	for _, id := range ids {
		si, err := m.c.GetSlotInfo(id)
		if err != nil {
			return nil, newError(fmt.Sprintf("slot %d info", id), "", "", err)
		}
		s := Slot{ID: id, Description: si.SlotDescription, Manufacturer: si.ManufacturerID}
		if si.Flags&p11.CKF_TOKEN_PRESENT != 0 {
			ti, err := m.c.GetTokenInfo(id)
			if err != nil {
				return nil, newError(fmt.Sprintf("slot %d token info", id), "", "", err)
			}
			s.Token = &TokenInfo{
				Label: ti.Label, Manufacturer: ti.ManufacturerID, Model: ti.Model, Serial: ti.SerialNumber,
				Initialized:   ti.Flags&p11.CKF_TOKEN_INITIALIZED != 0,
				LoginRequired: ti.Flags&p11.CKF_LOGIN_REQUIRED != 0,
				URI:           &URI{Token: ti.Label, Serial: ti.SerialNumber},
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// maxListedKeys bounds Keys on a token holding very many objects.
const maxListedKeys = 10000

// Keys lists the key pairs' objects on the token u selects (u's object and
// id narrow the list). Without a PIN (u's pin-value or pin-source, or
// WithPIN) it does not log in, and lists what the session can see: public
// keys, or everything if this process is already logged in to the token
// (PKCS#11 login state is per process and token, not per session). Options:
// WithPIN.
func (m *Module) Keys(ctx context.Context, u *URI, opts ...Option) ([]KeyInfo, error) {
	cfg := newConfig(opts)
	if err := m.checkOpen(); err != nil {
		return nil, err
	}
	if err := ctxErr(ctx, "list keys"); err != nil {
		return nil, err
	}
	t, err := m.findToken(u)
	if err != nil {
		return nil, err
	}
	l, err := resolveLogin(t, u, cfg)
	if err != nil {
		return nil, err
	}
	l.required = l.required && l.hasPIN
	sh, err := m.openSession(t, false, l)
	if err != nil {
		return nil, err
	}
	defer m.closeSession(sh)
	var out []KeyInfo
	for _, c := range []struct {
		class uint
		name  string
	}{{p11.CKO_PRIVATE_KEY, "private"}, {p11.CKO_PUBLIC_KEY, "public"}} {
		objs, err := m.findObjects(sh, keyTemplate(c.class, u), maxListedKeys)
		if err != nil {
			return nil, newError("list keys", t.label, "", err)
		}
		for _, o := range objs {
			a, err := m.c.GetAttributeValue(sh, o, []*p11.Attribute{
				p11.NewAttribute(p11.CKA_LABEL, nil),
				p11.NewAttribute(p11.CKA_ID, nil),
				p11.NewAttribute(p11.CKA_KEY_TYPE, nil),
			})
			if err != nil {
				return nil, newError("read key attributes", t.label, "", err)
			}
			k := KeyInfo{Class: c.name, Label: string(a[0].Value), ID: a[1].Value}
			k.Type = m.describeKeyType(sh, o, a[2].Value)
			k.URI = &URI{Token: t.label, Object: k.Label, ID: k.ID, Type: c.name}
			if len(k.ID) == 0 {
				k.URI.ID = nil
			}
			out = append(out, k)
		}
	}
	slices.SortStableFunc(out, func(a, b KeyInfo) int { return strings.Compare(a.Label, b.Label) })
	return out, nil
}

// describeKeyType names a key object's type. Public keys are parsed; for
// private keys (whose EC point is not stored) the non-sensitive attributes
// tell the curve or modulus size.
func (m *Module) describeKeyType(sh p11.SessionHandle, o p11.ObjectHandle, ktRaw []byte) string {
	kt, err := ulong(ktRaw)
	if err != nil {
		return "unknown"
	}
	if pub, err := m.readPublic(sh, o, kt); err == nil {
		if t, err := keys.TypeOf(pub); err == nil {
			return string(t)
		}
	}
	switch kt {
	case p11.CKK_RSA:
		a, err := m.c.GetAttributeValue(sh, o, []*p11.Attribute{p11.NewAttribute(p11.CKA_MODULUS, nil)})
		if err != nil {
			return "rsa"
		}
		return fmt.Sprintf("rsa-%d", new(big.Int).SetBytes(a[0].Value).BitLen())
	case p11.CKK_EC:
		a, err := m.c.GetAttributeValue(sh, o, []*p11.Attribute{p11.NewAttribute(p11.CKA_EC_PARAMS, nil)})
		if err != nil {
			return "ec"
		}
		for _, kt := range []keys.KeyType{keys.ECDSAP256, keys.ECDSAP384} {
			if p, _ := ecParams(kt); bytes.Equal(p, a[0].Value) {
				return string(kt)
			}
		}
		return "ec (unsupported curve)"
	case ckkECEdwards:
		return string(keys.Ed25519)
	}
	return fmt.Sprintf("key type 0x%X", kt)
}
