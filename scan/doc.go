// Package scan is a graded TLS endpoint scanner for internal services: it
// connects to one endpoint, runs the checks below, and returns a structured
// [Result] with a grade A+ … F, T or M, a score, and one [Finding] per
// problem with the evidence observed. It knows nothing of storage: certctl
// stores and diffs Results (their JSON is stable).
//
// # Entry point
//
//	t, err := scan.ParseTarget("db.internal:5432", 443) // or "postgres://db.internal"
//	t.StartTLS = scan.StartTLSPostgres
//	r, err := scan.Scan(ctx, t, scan.WithRoots(orgRoots), scan.WithTimeout(20*time.Second))
//	fmt.Println(r.Grade, r.Score, r.Findings)
//
// [Scan] is safe for concurrent use and keeps no state between calls; every
// network operation (DNS, TCP, STARTTLS, TLS, HTTP fetches) is bounded by the
// caller's ctx and by [WithTimeout]. An unreachable endpoint is a Result with
// Error set and Grade "", not an error.
//
// # Checks
//
// Each check records its outcome in the Result and, when there is something
// to report, a Finding whose Check is one of the identifiers below.
//
// Connectivity. The host is resolved (all A and AAAA records, through
// [WithResolver]); every address gets a TCP connection (over IPv4 or IPv6),
// the STARTTLS exchange if any (PostgreSQL SSLRequest, SMTP EHLO/STARTTLS;
// see package scan/probe) and a crypto/tls handshake. The first address that
// sends its certificate is the primary: every other check uses it.
//   - dns.failed: the name does not resolve (no grade).
//   - connectivity.tcp_failed, connectivity.starttls_failed,
//     connectivity.tls_failed: no address accepts TCP / completes the
//     STARTTLS exchange / completes a handshake (no grade). Each connection
//     attempt is bounded by 10 s (or WithTimeout if shorter).
//   - connectivity.partial (warning): some addresses fail.
//   - connectivity.inconsistent (warning): addresses serve different
//     certificates or negotiate different versions.
//   - connectivity.go_incompatible (warning): crypto/tls cannot handshake
//     (e.g. only DHE suites), but the prober can; the certificate chain then
//     comes from the prober's TLS ≤ 1.2 handshake, and resumption, HTTP and
//     the mTLS probes are skipped (mtls.untested, info, if it asked for a
//     client certificate).
//
// Protocols, cipher suites, groups (package scan/probe: hand-built
// ClientHellos, so SSL 3.0 and suites crypto/tls cannot negotiate are seen).
// SSL 2.0 is not probed (no server here can speak it).
//   - protocol.ssl3 (critical, cap B), protocol.tls10 and protocol.tls11
//     (warning, cap B), protocol.no_tls12 (neither 1.2 nor 1.3; cap C),
//     protocol.no_tls13 (info).
//   - cipher.export, cipher.null, cipher.anonymous (cap F), cipher.rc4 (cap
//     C), cipher.64bit_block (3DES/DES/IDEA, SWEET32; cap C),
//     cipher.no_forward_secrecy (no (EC)DHE or TLS 1.3 suite; cap B),
//     cipher.partial_forward_secrecy (some RSA key-exchange suites; cap A-),
//     cipher.no_aead (cap B).
//   - tls.compression (CRIME; cap C), tls.no_secure_renegotiation (RFC 5746
//     missing while TLS ≤ 1.2 is spoken; cap A-), tls.no_fallback_scsv (RFC
//     7507 not honoured; cap A-), kex.weak_dh (DHE prime < 1024: cap F,
//     < 2048: cap B).
//   - probe.failed, probe.no_versions (warning): the enumeration did not
//     work; the grade then rests on what crypto/tls negotiated.
//
// Certificate, from the primary handshake (crypto/tls with
// InsecureSkipVerify; the chain is verified here, after the handshake, so an
// untrusted chain can still be described and graded).
//   - certificate.expired, certificate.not_yet_valid (cap T);
//     certificate.expires_soon (warning; [WithExpiryWarning], default 30
//     days, but never more than the last third of the certificate's
//     lifetime: a short-lived certificate is healthy until its renewal
//     point). Trust is judged apart from validity: an expired certificate from
//     a trusted CA has Trusted set and only the expiry finding.
//     chain.expired (cap T): an intermediate or the root is outside its
//     validity period.
//   - certificate.name_mismatch (cap M): the leaf is not valid for
//     Target.SNI() (or the IP address).
//   - certificate.untrusted, certificate.self_signed (cap T): the chain does
//     not verify against [WithRoots] (default: the system pool) for
//     serverAuth.
//   - chain.incomplete: an intermediate is missing but was fetched over AIA
//     caIssuers, after which the chain verifies (warning, cap B); or the AIA
//     fetch failed (critical, cap T). Without an AIA URL the finding is
//     certificate.untrusted.
//   - chain.order (warning): a certificate is not followed by its issuer.
//     chain.extra_certs (info): certificates outside the verified path.
//     chain.contains_anchor (info): the root is sent.
//   - certificate.weak_key: RSA < 1024 bits or equivalent (cap F), < 2048
//     (warning, cap B). ECDSA and Ed25519 are converted to RSA-equivalent
//     sizes (NIST SP 800-57: P-256 = 3072).
//   - certificate.sha1_signature (cap T, as browsers distrust it) and
//     certificate.insecure_signature (MD2/MD5, cap F), for every certificate
//     of the served chain except a self-signed anchor.
//   - revocation.revoked (cap F): OCSP (stapled response, else the AIA
//     responder, POST) or the CRL from the CDP says revoked; both are checked
//     and verified against the issuer. revocation.unavailable (warning): a
//     responder or CRL is named but could not be fetched or verified.
//   - certificate.bad_sct_list (warning). OCSP stapling and the number of
//     SCTs (embedded and TLS extension) are recorded in Features.
//
// Session resumption (Features.SessionTickets, SessionResumption): two
// handshakes sharing a ClientSessionCache must report DidResume, for TLS 1.2
// tickets and TLS 1.3 PSK.
//
// HTTP, only when the server selected an HTTP ALPN protocol or the port is
// 443: GET / (redirects not followed) to read Strict-Transport-Security.
// hsts.missing, hsts.short (max-age under 180 days), http.failed: info, they
// only withhold A+.
//
// Mutual TLS. The primary handshake observes the CertificateRequest (through
// GetClientCertificate) and its acceptable CA names. If the server asked,
// these connections follow, each presenting one certificate:
// no_certificate; other_ca (from a throwaway CA made for the scan);
// expired and no_client_auth_eku (signed by the client CA given with
// [WithClientIssuer], else skipped: mtls.issuer_probes_skipped, info); and
// supplied ([WithClientCertificate]). TLS 1.2 servers reject a certificate
// inside the handshake. TLS 1.3 servers reject it after the client's side of
// the handshake is done, so the scanner reads once: an alert or a close is a
// rejection; a session ticket or application data, or no alert within the
// wait (20 handshake times, between 1 and 3 s), is acceptance.
//   - mtls.accepts_other_ca, mtls.accepts_expired,
//     mtls.accepts_no_client_auth (cap F).
//   - mtls.not_required (cap F): [WithExpectClientAuth] was given and the
//     server does not ask for a certificate, or accepts a connection without
//     one.
//   - mtls.required, mtls.optional (info); mtls.supplied_rejected (warning);
//     mtls.probe_failed (warning).
//
// # Grading
//
// The score follows the SSL Labs rating guide: 30% protocol support, 30% key
// exchange, 40% cipher strength, each the average of the best and the worst
// case offered.
//   - Protocol: SSL 3.0 80, TLS 1.0 90, TLS 1.1 95, TLS 1.2 and 1.3 100.
//   - Key exchange: the weakest of the server key, the DHE prime and every
//     accepted group, in RSA-equivalent bits (groups by their security level:
//     X25519/P-256 = 3072, P-384 = 7680, ffdhe2048 = 2048; ML-KEM hybrids by
//     the ML-KEM category): < 512 20, < 1024 40, < 2048 80, < 4096 90, else
//     100. Anonymous suites make it 0; export suites cap it at 40.
//   - Cipher strength: 0 bits 0, < 128 20, < 256 80, ≥ 256 100 (3DES counts
//     as 112).
//
// Score to grade: ≥ 80 A, ≥ 65 B, ≥ 50 C, ≥ 35 D, ≥ 20 E, else F. Then the
// caps of the findings apply, in this order:
//  1. any cap F (or a score grade of F): F;
//  2. any cap T: T (trust: untrusted, self-signed, expired, SHA-1);
//  3. any cap M: M (name mismatch);
//  4. otherwise the worst of the score grade and the caps B … A-;
//  5. an A with any finding of severity warning or critical becomes A-
//     (the rating guide's "warnings");
//  6. an A without such findings and with HSTS max-age ≥ 180 days becomes
//     A+.
//
// [GradeRank] orders grades for "did it get worse?" comparisons; F, T and M
// rank equal (all failing).
//
// # Differences from SSL Labs
//
// Caps that need browser simulations (e.g. forward secrecy "with reference
// browsers") are applied to the suites the server accepts at all. Revoked is
// F; SSL Labs shows untrusted. The mTLS rules are ours.
package scan
