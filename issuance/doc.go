// Package issuance is certctl's crypto core: the only place that signs
// certificates. It turns a validated [Profile] and a [Request] into a
// certificate signed by an [Issuer], and refuses anything the profile does
// not allow or that zlint objects to.
//
// It depends on the standard library, zlint and package keys only; it does
// no I/O and keeps no state beyond the single-use [Token].
//
// # Profiles
//
// A [ProfileConfig] is decoded from the config file (YAML or JSON, snake_case
// keys); [NewProfile] validates it (limits, usage names, CA/leaf consistency,
// patterns) and returns an immutable [*Profile] or a [*ConfigError].
// [DefaultProfiles] lists the built-in server, client, peer, ocsp and
// intermediate profiles and explains their choices.
//
// # Issuing
//
// Issuance happens in two steps, after Boulder's issuance package:
//
//  1. [Issuer.Prepare] checks the request against the profile (a
//     [*PolicyError] names the offending field and the rule), builds the
//     certificate template, signs it with a throwaway key of the issuer's
//     type under a copy of the issuer certificate, and lints the result with
//     zlint's RFC and community lints (a [*LintError] on any warning or
//     error). It returns that lint certificate and a [Token].
//  2. The caller records its intent (serial, lint certificate), then calls
//     [Issuer.Issue], which signs the same template with the real key and
//     checks that the signed TBSCertificate is byte for byte the one that was
//     linted. A token is redeemable once, by the issuer that made it.
//
// # Certificate Transparency
//
// A profile with a ct: section ([CTConfig], validated into a [CTPolicy]) makes
// Prepare build and lint an RFC 6962 precertificate (the critical poison
// extension last among the extensions), and its token is redeemed in two
// steps instead of Issue: [Issuer.IssuePrecert] signs the linted
// precertificate; after the caller has recorded it and collected SCTs (package
// ct), [Issuer.IssueFinal] replaces the poison with the SCT list at the same
// position (or drops it when issuing without SCTs), lints that certificate
// too, signs it and checks with [SamePrecertTBS] that nothing else changed.
//
// Serial numbers come from [NewSerial]; roots from [SelfSignRoot].
// Untrusted certificate requests are parsed with [ParseCSR] and turned into
// requests with [RequestFromCSR]; names typed by a user go through
// [Request.AddNames].
//
// # Concurrency
//
// Profiles and Issuers are immutable and safe for concurrent use; Issue may
// run concurrently with distinct tokens. The issuer's crypto.Signer must be
// safe for concurrent use.
package issuance
