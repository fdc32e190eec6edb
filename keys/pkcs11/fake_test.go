package pkcs11

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"encoding/binary"
	"fmt"
	"math/big"
	"sync"

	p11 "github.com/miekg/pkcs11"
)

// fakeCtx is a hand-written fake of the cryptoki interface: one slot with
// one token holding software keys, sessions, a login state shared by all
// sessions (as in PKCS#11), and injectable failures. It records the calls
// that matter to the tests.
type fakeCtx struct {
	mu       sync.Mutex
	slot     uint
	label    string
	pin      string
	loggedIn bool
	next     p11.SessionHandle
	sessions map[p11.SessionHandle]bool // open sessions
	objects  map[p11.ObjectHandle]*fakeObject
	finds    map[p11.SessionHandle][]p11.ObjectHandle
	ops      map[p11.SessionHandle]p11.ObjectHandle // active signing operations

	// signErrs are returned by the next Sign calls, one each, in order.
	signErrs []error
	// signHook runs inside Sign without the lock (tests block on it).
	signHook func()

	calls     map[string]int
	lastMech  *p11.Mechanism
	lastInput []byte
	finalized bool
}

type fakeObject struct {
	class   uint
	keyType uint
	label   string
	id      []byte
	attrs   map[uint][]byte
	signer  crypto.Signer // private keys
}

func ulongBytes(v uint) []byte {
	b := make([]byte, 8)
	binary.NativeEndian.PutUint64(b, uint64(v))
	return b
}

func newFakeCtx() *fakeCtx {
	return &fakeCtx{
		slot: 7, label: "fake-token", pin: "1234", next: 100,
		sessions: map[p11.SessionHandle]bool{},
		objects:  map[p11.ObjectHandle]*fakeObject{},
		finds:    map[p11.SessionHandle][]p11.ObjectHandle{},
		ops:      map[p11.SessionHandle]p11.ObjectHandle{},
		calls:    map[string]int{},
	}
}

// addECKey puts a P-256 key pair labelled label, id id on the token.
func (f *fakeCtx) addECKey(label string, id []byte) *ecdsa.PrivateKey {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	params, _ := asn1.Marshal(oidP256)
	raw, _ := k.PublicKey.Bytes()
	point, _ := asn1.Marshal(raw)
	f.add(&fakeObject{class: p11.CKO_PRIVATE_KEY, keyType: p11.CKK_EC, label: label, id: id, signer: k,
		attrs: map[uint][]byte{p11.CKA_EC_PARAMS: params}})
	f.add(&fakeObject{class: p11.CKO_PUBLIC_KEY, keyType: p11.CKK_EC, label: label, id: id,
		attrs: map[uint][]byte{p11.CKA_EC_PARAMS: params, p11.CKA_EC_POINT: point}})
	return k
}

// addRSAKey puts an RSA-2048 private key (no public object: its public
// attributes are read from the private key) on the token.
func (f *fakeCtx) addRSAKey(label string, id []byte) *rsa.PrivateKey {
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	f.add(&fakeObject{class: p11.CKO_PRIVATE_KEY, keyType: p11.CKK_RSA, label: label, id: id, signer: k,
		attrs: map[uint][]byte{p11.CKA_MODULUS: k.N.Bytes(), p11.CKA_PUBLIC_EXPONENT: big.NewInt(int64(k.E)).Bytes()}})
	return k
}

func (f *fakeCtx) add(o *fakeObject) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := p11.ObjectHandle(len(f.objects) + 1)
	f.objects[h] = o
}

func (f *fakeCtx) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

func (f *fakeCtx) call(name string) {
	f.calls[name]++
}

// resetToken simulates a token reset: every session closed, logged out.
func (f *fakeCtx) resetToken() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sessions = map[p11.SessionHandle]bool{}
	f.loggedIn = false
}

func (f *fakeCtx) Finalize() error { f.mu.Lock(); f.finalized = true; f.mu.Unlock(); return nil }
func (f *fakeCtx) Destroy()        {}

func (f *fakeCtx) GetSlotList(bool) ([]uint, error) { return []uint{f.slot}, nil }

func (f *fakeCtx) GetSlotInfo(slot uint) (p11.SlotInfo, error) {
	if slot != f.slot {
		return p11.SlotInfo{}, p11.Error(p11.CKR_SLOT_ID_INVALID)
	}
	return p11.SlotInfo{SlotDescription: "fake slot", Flags: p11.CKF_TOKEN_PRESENT}, nil
}

func (f *fakeCtx) GetTokenInfo(slot uint) (p11.TokenInfo, error) {
	if slot != f.slot {
		return p11.TokenInfo{}, p11.Error(p11.CKR_SLOT_ID_INVALID)
	}
	return p11.TokenInfo{Label: f.label, SerialNumber: "0001", Flags: p11.CKF_TOKEN_INITIALIZED | p11.CKF_LOGIN_REQUIRED}, nil
}

func (f *fakeCtx) GetMechanismList(uint) ([]*p11.Mechanism, error) {
	return []*p11.Mechanism{p11.NewMechanism(p11.CKM_ECDSA, nil), p11.NewMechanism(p11.CKM_RSA_PKCS, nil)}, nil
}

func (f *fakeCtx) OpenSession(slot, flags uint) (p11.SessionHandle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("OpenSession")
	f.next++
	f.sessions[f.next] = true
	return f.next, nil
}

func (f *fakeCtx) CloseSession(sh p11.SessionHandle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("CloseSession")
	if !f.sessions[sh] {
		return p11.Error(p11.CKR_SESSION_HANDLE_INVALID)
	}
	delete(f.sessions, sh)
	if len(f.sessions) == 0 {
		f.loggedIn = false // closing the last session logs out (PKCS#11 §5.6)
	}
	return nil
}

func (f *fakeCtx) GetSessionInfo(sh p11.SessionHandle) (p11.SessionInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.sessions[sh] {
		return p11.SessionInfo{}, p11.Error(p11.CKR_SESSION_HANDLE_INVALID)
	}
	st := uint(p11.CKS_RO_PUBLIC_SESSION)
	if f.loggedIn {
		st = p11.CKS_RO_USER_FUNCTIONS
	}
	return p11.SessionInfo{SlotID: f.slot, State: st}, nil
}

func (f *fakeCtx) Login(sh p11.SessionHandle, userType uint, pin string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("Login")
	switch {
	case !f.sessions[sh]:
		return p11.Error(p11.CKR_SESSION_HANDLE_INVALID)
	case f.loggedIn:
		return p11.Error(p11.CKR_USER_ALREADY_LOGGED_IN)
	case pin != f.pin:
		return p11.Error(p11.CKR_PIN_INCORRECT)
	}
	f.loggedIn = true
	return nil
}

func (f *fakeCtx) FindObjectsInit(sh p11.SessionHandle, tmpl []*p11.Attribute) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.sessions[sh] {
		return p11.Error(p11.CKR_SESSION_HANDLE_INVALID)
	}
	var out []p11.ObjectHandle
	for h := p11.ObjectHandle(1); int(h) <= len(f.objects); h++ {
		o := f.objects[h]
		if o.class == p11.CKO_PRIVATE_KEY && !f.loggedIn {
			continue // private objects are invisible before login
		}
		match := true
		for _, a := range tmpl {
			switch a.Type {
			case p11.CKA_CLASS:
				match = match && bytes.Equal(a.Value, ulongBytes(o.class))
			case p11.CKA_LABEL:
				match = match && string(a.Value) == o.label
			case p11.CKA_ID:
				match = match && bytes.Equal(a.Value, o.id)
			default:
				return p11.Error(p11.CKR_ATTRIBUTE_TYPE_INVALID)
			}
		}
		if match {
			out = append(out, h)
		}
	}
	f.finds[sh] = out
	return nil
}

func (f *fakeCtx) FindObjects(sh p11.SessionHandle, max int) ([]p11.ObjectHandle, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	objs := f.finds[sh]
	n := min(max, len(objs))
	f.finds[sh] = objs[n:]
	return objs[:n], false, nil
}

func (f *fakeCtx) FindObjectsFinal(sh p11.SessionHandle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.finds, sh)
	return nil
}

func (f *fakeCtx) GetAttributeValue(sh p11.SessionHandle, h p11.ObjectHandle, attrs []*p11.Attribute) ([]*p11.Attribute, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.objects[h]
	if !ok || !f.sessions[sh] {
		return nil, p11.Error(p11.CKR_OBJECT_HANDLE_INVALID)
	}
	out := make([]*p11.Attribute, len(attrs))
	for i, a := range attrs {
		var v []byte
		switch a.Type {
		case p11.CKA_KEY_TYPE:
			v = ulongBytes(o.keyType)
		case p11.CKA_LABEL:
			v = []byte(o.label)
		case p11.CKA_ID:
			v = o.id
		default:
			if v, ok = o.attrs[a.Type]; !ok {
				return nil, p11.Error(p11.CKR_ATTRIBUTE_TYPE_INVALID)
			}
		}
		out[i] = p11.NewAttribute(a.Type, v)
	}
	return out, nil
}

func (f *fakeCtx) GenerateKeyPair(p11.SessionHandle, []*p11.Mechanism, []*p11.Attribute, []*p11.Attribute) (p11.ObjectHandle, p11.ObjectHandle, error) {
	return 0, 0, p11.Error(p11.CKR_FUNCTION_NOT_SUPPORTED)
}

func (f *fakeCtx) SignInit(sh p11.SessionHandle, m []*p11.Mechanism, h p11.ObjectHandle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("SignInit")
	if !f.sessions[sh] {
		return p11.Error(p11.CKR_SESSION_HANDLE_INVALID)
	}
	if !f.loggedIn {
		return p11.Error(p11.CKR_USER_NOT_LOGGED_IN)
	}
	if _, ok := f.objects[h]; !ok {
		return p11.Error(p11.CKR_KEY_HANDLE_INVALID)
	}
	f.lastMech = m[0]
	f.ops[sh] = h
	return nil
}

func (f *fakeCtx) Sign(sh p11.SessionHandle, msg []byte) ([]byte, error) {
	f.mu.Lock()
	f.call("Sign")
	if len(f.signErrs) > 0 {
		err := f.signErrs[0]
		f.signErrs = f.signErrs[1:]
		delete(f.ops, sh)
		f.mu.Unlock()
		return nil, err
	}
	if !f.sessions[sh] {
		f.mu.Unlock()
		return nil, p11.Error(p11.CKR_SESSION_HANDLE_INVALID)
	}
	f.lastInput = bytes.Clone(msg)
	mech := f.lastMech
	key, ok := f.objects[f.ops[sh]]
	delete(f.ops, sh)
	if !ok {
		f.mu.Unlock()
		return nil, p11.Error(p11.CKR_OPERATION_NOT_INITIALIZED)
	}
	hook := f.signHook
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	switch k := key.signer.(type) {
	case *ecdsa.PrivateKey:
		der, err := ecdsa.SignASN1(rand.Reader, k, msg)
		if err != nil {
			return nil, err
		}
		var sig struct{ R, S *big.Int }
		asn1.Unmarshal(der, &sig)
		raw := make([]byte, 64)
		sig.R.FillBytes(raw[:32])
		sig.S.FillBytes(raw[32:])
		return raw, nil
	case *rsa.PrivateKey:
		if mech.Mechanism == p11.CKM_RSA_PKCS {
			return rsa.SignPKCS1v15(rand.Reader, k, crypto.Hash(0), msg) // msg is DigestInfo||digest
		}
	}
	return nil, fmt.Errorf("fake: cannot sign with mechanism 0x%X", mech.Mechanism)
}
