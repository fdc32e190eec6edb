// Package pkcs11 signs with private keys that never leave a PKCS#11 token
// (an HSM, a smart card, SoftHSM2). It returns them as [crypto.Signer]
// values, so package issuance signs with them exactly as with key files.
//
// Keys are named by PKCS#11 URIs (RFC 7512), parsed by [ParseURI]:
//
//	pkcs11:token=ca-token;object=issuing-ca;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/certctl/hsm.pin
//
// # Entry points
//
// [Open] loads the library named by module-path and returns a [*Signer] for
// one key; closing the Signer unloads the library. A process that uses
// several keys behind one library opens it once with [OpenModule] and calls
// [Module.OpenSigner] for each key: PKCS#11 allows one initialisation of a
// library per process. [Module.GenerateKey] (or [GenerateKey]) creates a key
// pair on the token that can never be extracted; [Module.Slots] and
// [Module.Keys] list tokens and keys.
//
// # The PIN
//
// The user PIN comes from the URI's pin-source (file:PATH: the first line of
// the file), its pin-value, or [WithPIN]. It is kept in memory for logging in
// again after a token reset, and never appears in an error, a log line or
// [URI.String]. Do not pass pin-value on a command line: process listings
// show it.
//
// # Sessions and concurrency
//
// A [Signer] is safe for concurrent use. Every signature runs on a session
// of its own, taken from a pool of at most [WithMaxSessions] sessions
// (sharing one session between goroutines crashes SoftHSM); callers beyond
// that wait, at most [WithWaitTimeout] (Sign) or until their context is done
// (SignContext), then fail with [ErrBusy]. No lock is held during a PKCS#11
// call. The login is done once per token. When a session or the login is lost
// (CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_USER_NOT_LOGGED_IN,
// CKR_TOKEN_NOT_PRESENT, a stale key handle) the Signer reopens a session,
// logs in again, finds the key again (it must still be the same key) and
// retries once.
//
// # Algorithms
//
// ECDSA P-256 and P-384 (CKM_ECDSA; the token's raw r||s is converted to
// DER), RSA 2048–4096 with PKCS#1 v1.5 (CKM_RSA_PKCS over the DigestInfo) or
// PSS (CKM_RSA_PKCS_PSS), and Ed25519 (CKM_EDDSA) where the token supports
// it; SoftHSM 2.6.1 does.
//
// # Errors
//
// Failed PKCS#11 calls are [*Error] values naming the operation, token,
// object and return code, e.g. `pkcs11: wrong PIN for token "ca-token":
// CKR_PIN_INCORRECT (0xA0)`. Test for the sentinels (ErrWrongPIN,
// ErrTokenNotFound, ErrKeyNotFound, ErrModule, ErrKeyMismatch, …) with
// errors.Is.
//
// This package uses cgo (github.com/miekg/pkcs11 loads the library with
// dlopen).
package pkcs11
