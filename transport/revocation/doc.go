// Package revocation checks whether a peer's certificate has been revoked,
// using the OCSP responders of its Authority Information Access extension
// (RFC 6960, RFC 5019 profile) and the CRLs of its CRL Distribution Points
// (RFC 5280 §5).
//
// A [Checker] is made once (by [New]) and shared by every connection:
//
//	rc := revocation.New(revocation.WithMode(revocation.HardFail))
//	err := rc.Check(ctx, verifiedChain) // chain[0] leaf, chain[1] its issuer
//
// # Verification
//
// An OCSP response counts only if it is signed by the issuer, or by a
// delegated responder certificate that the issuer signed and that carries
// id-kp-OCSPSigning (RFC 6960 §4.2.2.2), that is valid now, and whose
// thisUpdate/nextUpdate window contains now (with a small allowance for
// clock skew). A CRL counts only if the issuer signed it, names it as its
// issuer, is current, is not a delta CRL, has no critical extension this
// package does not understand, and, if it carries an Issuing Distribution
// Point, covers the certificate (RFC 5280 §6.3.3: one of its names equals
// one of the certificate's CRL distribution points, and its scope includes
// the certificate), so that a validly signed CRL of another shard cannot be
// substituted for the certificate's own.
//
// # Failures
//
// The sources are tried in order (OCSP, then CRL, unless [WithPreferCRL] or
// [WithMethods] say otherwise) until one gives a verified answer. "Revoked"
// is always an error ([ErrRevoked], details in [RevokedError]). When no
// source answers, [SoftFail] (the default) lets the connection proceed and
// logs a warning; [HardFail] returns an [UnavailableError] ([ErrUnavailable])
// that lists every attempt. A certificate without any revocation pointer
// passes, unless [WithRequireInfo] is given in hard-fail mode.
//
// # Caching and limits
//
// Verified responses and CRLs are cached in bounded LRU caches until their
// nextUpdate; failures are cached for a short time ([WithFailureTTL]) so a
// dead responder does not add a timeout to every handshake. Concurrent checks
// that need the same response share one fetch (one per URL and certificate
// for OCSP, one per URL and issuer for CRLs). A fetch runs detached from the
// caller's context, bounded by [WithFetchTimeout], so that a caller giving up
// does not fail the others waiting on it; each caller still stops waiting as
// soon as its own ctx is done. Bodies are limited in size
// ([WithMaxResponseSize], [WithMaxCRLSize]).
package revocation
