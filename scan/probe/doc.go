// Package probe is the wire-level prober behind package scan: it sends
// hand-built ClientHello messages (golang.org/x/crypto/cryptobyte) and reads
// the server's first flight, so it can see protocol versions, cipher suites
// and key-exchange groups that crypto/tls cannot negotiate (SSL 3.0, RC4,
// 3DES, export, NULL and anonymous suites, CBC-SHA256, DHE, CCM, ARIA,
// CAMELLIA, post-quantum hybrids). It never completes a handshake with its own
// hellos: it stops at the ServerHello (or HelloRetryRequest), or for TLS 1.2
// and older at ServerHelloDone when it needs the certificate chain. It does not
// fork crypto/tls; it uses crypto/tls only to learn the ALPN protocol of a
// server that speaks nothing older than TLS 1.3 (ALPN is encrypted there).
//
// # Entry point
//
// [Enumerate] runs every probe against one endpoint and returns a [Report]:
//
//	dial := probe.Dialer("tcp", "db.internal:5432", "postgres") // or "" / "smtp"
//	rep, err := probe.Enumerate(ctx, dial, probe.Config{ServerName: "db.internal"})
//
// Each probe opens a new connection through the [DialFunc], so a DialFunc must
// be callable concurrently and must return a connection on which the next bytes
// are the ClientHello (STARTTLS already done: see [StartTLS] and [Dialer]).
// Up to [Config].Concurrency connections are open at once (default 8). Every
// probe is bounded by ctx and by [Config].Timeout (default 5 s): deadlines are
// set on the connection and the connection is closed when ctx is done.
//
// # What is probed
//
//   - Versions: SSL 3.0, TLS 1.0, 1.1, 1.2 (legacy_version in the hello, no
//     supported_versions) and TLS 1.3 (supported_versions). SSL 3.0 hellos are
//     sent in a record with version 0x0300 and without extensions
//     (TLS_EMPTY_RENEGOTIATION_INFO_SCSV signals secure renegotiation instead).
//   - Cipher suites per version: offer every suite left, record the one the
//     server picks, remove it, repeat until the server refuses. The list comes
//     out in server preference order if the server has one, else in our
//     offering order (ascending code point). Server preference: offer the
//     found suites in reverse order; if the server still picks the same first
//     suite, [VersionResult].ServerPreference is true. 231 suites are offered
//     for SSL 3.0-TLS 1.2 (every IANA suite but PSK, SRP, Kerberos and GOST;
//     see [LookupCipherSuite]), the 5 TLS 1.3 suites for TLS 1.3.
//   - Groups, TLS 1.3: offer the remaining groups in supported_groups with an
//     empty key_share, so the server names its choice in a HelloRetryRequest;
//     remove it and repeat. The first group chosen is [Report].PreferredGroup,
//     confirmed with a real key share (ML-KEM encapsulation key from
//     crypto/mlkem plus an X25519/P-256/P-384 share from crypto/ecdh) that the
//     server must accept with a ServerHello. A server that refuses an empty
//     key_share gets one hello per group with a real share instead (no
//     PreferredGroup then). Groups, TLS 1.2 only servers: the same loop with
//     ECDHE suites, reading the curve from ServerKeyExchange.
//   - Compression: a TLS <= 1.2 hello offering DEFLATE (1) and null (0).
//   - Secure renegotiation: renegotiation_info in a TLS <= 1.2 ServerHello
//     (false when the server speaks only TLS 1.3, which has no renegotiation).
//   - TLS_FALLBACK_SCSV: a hello for the second-highest version with the SCSV;
//     an inappropriate_fallback alert means the server is protected. Nil when
//     the server supports fewer than two versions.
//   - ALPN: offer [Config].ALPN (default h2, http/1.1), remove the protocol the
//     server selected, repeat; in TLS 1.2 ServerHello, else via crypto/tls.
//   - Certificates: the Certificate message of a TLS <= 1.2 handshake, as sent
//     (leaf first, DER). TLS 1.3 encrypts it: use crypto/tls for that.
//   - DH parameters: the prime size of a DHE ServerKeyExchange
//     ([Report].DHPrimeBits), for grading weak DH.
//
// # Outcomes of one probe
//
// A fatal alert (handshake_failure, protocol_version, insufficient_security,
// ...) or a connection closed right after the hello means "not supported"; an
// [*AlertError] describes the alert. A ServerHello for a lower version than
// offered is ordinary negotiation: the offered version is not supported. A
// higher version, or a suite that was not offered, is reported in
// [Report].Errors and treated as not supported. Timeouts and dial errors are recorded in [Report].Errors; if no
// probe got any TLS answer at all, Enumerate returns an error wrapping the
// first failure ([ErrNotTLS] if the peer answered with something that is not
// TLS).
//
// # Not probed
//
// SSL 2.0, session resumption, OCSP stapling and the TLS 1.3 certificate
// (all need a completed handshake: package scan uses crypto/tls for them).
//
// # Parsers
//
// [ParseServerHello] and [ParseCertificateMessage] parse untrusted bytes and
// are fuzzed; both round-trip ([ServerHello.Marshal],
// [MarshalCertificateMessage]). Records are limited to 2^14+2048 bytes and
// handshake messages to 256 KiB.
//
// # Speed
//
// Measured on 127.0.0.1 (2 shared cores, BenchmarkEnumerate; the range is
// a quiet vs a busy machine): 13-72 ms and 27 connections for a default Go
// server, 18-37 ms and 46 connections for a default OpenSSL 3.0 s_server,
// 66-114 ms and 116 connections for s_server with "ALL:@SECLEVEL=0" (56 TLS
// 1.2 suites, 16 each for TLS 1.0 and 1.1); 160 ms for PostgreSQL 15 through
// STARTTLS. [Report].Probes and [Report].Duration give the numbers of each
// call.
//
// # Testing
//
// The tests use real peers on 127.0.0.1: openssl s_server (suite lists and
// order, groups, ALPN, client certificate request, DH size; the TLS 1.2 suite
// list and order are cross-checked against openssl s_client), crypto/tls
// servers (X25519MLKEM768, SecP256r1MLKEM768, RC4, 3DES, CBC-SHA256), PostgreSQL
// with ssl=on and ssl=off (internal/pkitest), and an ESMTP server with
// STARTTLS. SSL 3.0, compression, a missing renegotiation_info and an ignored
// TLS_FALLBACK_SCSV come from a scripted peer, because no real server on the
// test machine does them any more; a second scripted peer refuses an empty
// key_share.
//
// # Concurrency
//
// Enumerate, StartTLS, Dialer and the parsers are safe for concurrent use; a
// [Report] is owned by the caller and not touched after Enumerate returns.
package probe
