// Package pgtls connects pgx/v5 to PostgreSQL with mutual TLS from a
// rotating identity (a *transport.Transport, or anything with its
// ClientTLSConfig and NotAfter methods: see [Identity]).
//
// [ConnConfig] (one connection), [PoolConfig] (pgxpool) and [OpenDB]
// (database/sql through pgx's stdlib) parse a DSN and return settings in which
// every connection
//
//   - uses TLS and never falls back to plaintext: pgx's Fallbacks keep only
//     TLS attempts, and a hook refuses any connection that is not TLS;
//   - verifies the server like sslmode=verify-full: the chain by the
//     identity's TLS configuration (its pinned roots) and the host name of the
//     DSN (or [WithServerName]) by the certificate's SANs;
//   - presents the identity's current client certificate: the identity's
//     GetClientCertificate runs on every handshake and session resumption is
//     off, so connections made after a rotation use the new certificate while
//     existing ones keep working;
//   - is retired before its certificate expires: pools get a MaxConnLifetime
//     shorter than the identity's remaining life, and a connection whose own
//     certificate is within the expiry margin ([WithExpiryMargin]) is closed
//     instead of being handed out again.
//
// Example:
//
//	cfg, err := pgtls.PoolConfig("host=db.internal user=app dbname=app", id)
//	if err != nil { … }
//	pool, err := pgxpool.NewWithConfig(ctx, cfg)
//
// # sslmode
//
// The DSN's sslmode decides nothing weaker than verify-full:
//
//   - sslmode=disable and sslmode=allow (which try plaintext first) are
//     refused with [ErrPlaintext]: such a DSN was written for something else,
//     and quietly changing its meaning would hide the mistake;
//   - no sslmode (libpq's default "prefer"), prefer, require and verify-ca
//     are upgraded to verify-full: they ask for TLS, and checking more than
//     they ask for cannot expose anything. Connecting to an IP address needs
//     the IP in the server certificate's SANs, or [WithServerName];
//   - sslrootcert, sslcert, sslkey and sslpassword are overridden by the
//     identity (pgx still reads the files they name while parsing);
//     sslcertmode=disable is refused;
//   - a Unix-domain socket host is refused with [ErrUnixSocket]: PostgreSQL
//     does not speak TLS there.
//
// # Proxies
//
// sslnegotiation=direct in the DSN (or [WithDirectTLS]) starts TLS at once
// with ALPN "postgresql", as HAProxy or another TLS terminator in front of
// PostgreSQL needs; the server must then select "postgresql" by ALPN.
// PgBouncer speaks the usual SSLRequest negotiation. [WithDialFunc] puts a
// hop under the TLS session, such as an HTTP CONNECT proxy
// (transport/proxy); never pass a dialer that does TLS itself, such as
// (*transport.Transport).Dial: pgx does the TLS to PostgreSQL.
//
// # Hooks
//
// The returned configurations use these pgx hooks: pgconn's AfterNetConnect
// and AfterConnect, and for pools BeforeConnect, PrepareConn and AfterRelease
// (database/sql: BeforeConnect and ResetSession). Code that sets them must
// call the previous value. Do not modify the TLS configurations; build new
// settings instead.
package pgtls
