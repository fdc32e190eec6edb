package pkcs11

import (
	"errors"
	"fmt"
	"strings"

	p11 "github.com/miekg/pkcs11"
)

// Sentinel errors. Errors from this package wrap one of them where it
// applies (test with errors.Is); PKCS#11 failures are *Error values.
var (
	// ErrModule: the PKCS#11 library could not be loaded or initialised.
	ErrModule = errors.New("pkcs11: cannot load module")
	// ErrTokenNotFound: no token matches the URI.
	ErrTokenNotFound = errors.New("pkcs11: token not found")
	// ErrKeyNotFound: the token holds no key matching the URI.
	ErrKeyNotFound = errors.New("pkcs11: key not found")
	// ErrAmbiguous: the URI matches more than one token or key.
	ErrAmbiguous = errors.New("pkcs11: URI matches more than one")
	// ErrWrongPIN: the token refused the PIN (CKR_PIN_INCORRECT).
	ErrWrongPIN = errors.New("pkcs11: wrong PIN")
	// ErrPINLocked: the token locked its user PIN after too many wrong tries.
	ErrPINLocked = errors.New("pkcs11: PIN locked")
	// ErrNoPIN: the token needs a login and no PIN was given.
	ErrNoPIN = errors.New("pkcs11: no PIN")
	// ErrKeyMismatch: the key on the token is not the expected one.
	ErrKeyMismatch = errors.New("pkcs11: key on token does not match the expected public key")
	// ErrKeyExists: GenerateKey found a key with that label or id already.
	ErrKeyExists = errors.New("pkcs11: key already exists on token")
	// ErrUnsupported: a key type, hash or mechanism this package or the token
	// does not support.
	ErrUnsupported = errors.New("pkcs11: unsupported")
	// ErrBusy: every session was in use for the whole wait.
	ErrBusy = errors.New("pkcs11: all sessions busy")
	// ErrClosed: the Signer or Module was closed.
	ErrClosed = errors.New("pkcs11: closed")
)

// Error is a failed PKCS#11 call. It names the operation, the token and the
// object (never the PIN) and the return code.
type Error struct {
	Op     string // what we were doing: "login", "sign", "find key", …
	Token  string // token label ("" if not known yet)
	Object string // key label or id ("" for token-level operations)
	Code   uint   // the CKR_* return value, 0 if the failure was not a PKCS#11 return code
	Err    error  // the underlying error (a github.com/miekg/pkcs11.Error for return codes)
	kind   error  // one of the sentinels, or nil
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("pkcs11: ")
	switch e.kind {
	case ErrWrongPIN:
		fmt.Fprintf(&b, "wrong PIN for token %q", e.Token)
	case ErrPINLocked:
		fmt.Fprintf(&b, "user PIN of token %q is locked (too many wrong PINs): the security officer must reset it", e.Token)
	default:
		b.WriteString(e.Op)
		if e.Token != "" {
			fmt.Fprintf(&b, ": token %q", e.Token)
		}
		if e.Object != "" {
			fmt.Fprintf(&b, " object %s", e.Object)
		}
	}
	if e.Code != 0 {
		fmt.Fprintf(&b, ": %s (0x%X)", ckrName(e.Code), e.Code)
	} else if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

// Unwrap returns the sentinel (if any) and the underlying error.
func (e *Error) Unwrap() []error {
	var out []error
	if e.kind != nil {
		out = append(out, e.kind)
	}
	if e.Err != nil {
		out = append(out, e.Err)
	}
	return out
}

// newError classifies err (usually a p11.Error return code).
func newError(op, token, object string, err error) *Error {
	e := &Error{Op: op, Token: token, Object: object, Err: err}
	var rv p11.Error
	if errors.As(err, &rv) {
		e.Code = uint(rv)
		switch e.Code {
		case p11.CKR_PIN_INCORRECT, p11.CKR_PIN_INVALID, p11.CKR_PIN_LEN_RANGE:
			e.kind = ErrWrongPIN
		case p11.CKR_PIN_LOCKED:
			e.kind = ErrPINLocked
		case p11.CKR_MECHANISM_INVALID, p11.CKR_MECHANISM_PARAM_INVALID, p11.CKR_KEY_TYPE_INCONSISTENT, p11.CKR_FUNCTION_NOT_SUPPORTED:
			e.kind = ErrUnsupported
		}
	}
	return e
}

// ckrName is the CKR_* name of a return code ("CKR_PIN_INCORRECT").
func ckrName(code uint) string {
	// p11.Error's text is "pkcs11: 0xA0: CKR_PIN_INCORRECT".
	s := p11.Error(code).Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.HasPrefix(s[i+2:], "CKR_") {
		return s[i+2:]
	}
	return "CKR_VENDOR_DEFINED"
}

// code returns err's PKCS#11 return code, or 0.
func code(err error) uint {
	var rv p11.Error
	if errors.As(err, &rv) {
		return uint(rv)
	}
	return 0
}

// recoverable reports whether a failed operation may succeed on a fresh
// session after logging in again: the session or the login was lost (a token
// reset, C_CloseAllSessions by someone else, a removed and reinserted token),
// or the object handle went stale with it.
func recoverable(err error) bool {
	switch code(err) {
	case p11.CKR_USER_NOT_LOGGED_IN, p11.CKR_SESSION_HANDLE_INVALID, p11.CKR_SESSION_CLOSED,
		p11.CKR_TOKEN_NOT_PRESENT, p11.CKR_DEVICE_REMOVED, p11.CKR_TOKEN_NOT_RECOGNIZED,
		p11.CKR_KEY_HANDLE_INVALID, p11.CKR_OBJECT_HANDLE_INVALID:
		return true
	}
	return false
}
