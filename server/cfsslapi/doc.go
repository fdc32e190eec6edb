// Package cfsslapi speaks CFSSL's HTTP API (the /api/v1/cfssl/ endpoints of
// `cfssl serve`, v1.6.5) so that existing CFSSL clients — the
// github.com/cloudflare/cfssl/api/client package and the `cfssl` CLI with
// -remote — work unchanged against certctl.
//
// The package owns the wire protocol only: request decoding (bounded in
// size, never trusting the body), CFSSL's HMAC authentication for authsign,
// the response envelope and the choice of HTTP status and CFSSL error code.
// Everything that is policy — who the caller is, what it may do, issuing and
// revoking — is delegated to a [Backend], which package server implements on
// top of ca.CA and certdb.
//
// # Entry points
//
// [NewHandler] returns an http.Handler to mount at [PathPrefix]:
//
//	h, err := cfsslapi.NewHandler(backend, cfsslapi.Options{AuthKeys: keys, ProfileAuthKeys: byProfile, DefaultProfile: "server"})
//	mux.Handle(cfsslapi.PathPrefix, h)
//
// [ProfilesFromCFSSLConfig] converts the signing section of CFSSL's
// ca-config.json into issuance.ProfileConfig values and HMAC keys.
//
// # Endpoints
//
//   - sign: a CSR signing request ({"certificate_request", "hosts",
//     "profile", "subject", ...}). It carries no CFSSL authentication: the
//     Backend authenticates the HTTP request itself (bearer token, mTLS).
//   - authsign: the same request wrapped in CFSSL's AuthenticatedRequest and
//     MACed with HMAC-SHA-256 (auth.Standard). The key is chosen by the
//     requested profile, as in CFSSL (the profile's auth_key, then its
//     prev_auth_key).
//   - info: {"label","profile"} -> the issuer certificate, the profile's
//     usages and expiry.
//   - revoke: {"serial" (decimal), "authority_key_id" (hex), "reason"}.
//   - certinfo: {"certificate"} (parsed locally) or {"serial",
//     "authority_key_id"} (looked up through the Backend). The {"domain"}
//     form, which makes CFSSL dial an arbitrary host, is refused.
//   - newkey, newcert, init_ca: refused. certctl never generates private
//     keys on the server; clients generate the key and CSR locally
//     (`cfssl genkey`) and use sign or authsign.
//
// # Differences from CFSSL
//
// CFSSL silently falls back to its default profile when a request names an
// unknown one; certctl refuses the request. Request fields that would let a
// client choose what the CA controls (serial, extensions, not_before,
// not_after, crl_override, precertificates) are refused with 400 instead of
// being applied or ignored. Errors that are not the caller's fault are
// reported as 500 with a generic message; details go to the log only.
//
// CFSSL's HMAC covers only the inner request: the timestamp and remote
// address of an AuthenticatedRequest are not authenticated, so a captured
// authsign request can be replayed for another certificate over the same
// CSR. As in CFSSL, run authsign over TLS.
package cfsslapi
