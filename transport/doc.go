// Package transport gives a service an always-valid, automatically renewed
// mutual-TLS identity from certctl's CA, and the connections that use it:
// swapping net.Dial/net.Listen for Transport.Dial/Transport.Listen is all it
// takes to get mutually authenticated TLS.
//
// # Use
//
//	id, err := transport.LoadIdentity("/etc/myservice/identity.yaml")
//	t, err := transport.New(ctx, id, transport.WithAuthorizer(transport.AuthorizeSPIFFEID("spiffe://example.internal/api")))
//	defer t.Close()
//	ln, err := t.Listen("tcp", ":8443")          // servers
//	conn, err := t.Dial(ctx, "tcp", "db.internal:5433") // clients
//	client := t.HTTPClient()
//
// New returns once it holds a certificate: a still-valid one from CertFile
// (with a persistent key), or one enrolled with the single-use bootstrap
// token (POST /v1/certificates). It fails within Identity.EnrollTimeout.
//
// # Renewal
//
// A background goroutine renews at RenewAt (two thirds) of the lifetime plus
// jitter, over mutual TLS with the current certificate (POST /v1/renew),
// retrying with capped exponential backoff. While the CA is unreachable the
// current certificate keeps being served until it expires; Status and the
// Prometheus metrics say so. Handshakes read the current certificate through
// GetCertificate/GetClientCertificate, so rotation needs no restart and
// existing connections are untouched.
//
// # Trust
//
// The roots are pinned (Identity.CARoots, never the system pool) and
// refreshed from the CA (GET /v1/ca) periodically and before each renewal;
// during a root rollover the CA publishes old and new roots and both are
// trusted. Since a tls.Config's RootCAs/ClientCAs cannot change once in use,
// peers are verified in VerifyConnection against the current bundle: the
// full chain, the extended key usage, the host name when ServerName is set,
// then the Authorizer (required: there is no nil-means-allow) and the
// optional RevocationChecker. VerifyConnection also runs on resumed
// sessions, so authorization and revocation apply to them too.
//
// # Keys
//
// Identity.Key "" or "memory" draws a fresh key for every certificate and
// never writes it anywhere; a file path keeps one key (mode 0600) reused
// across renewals; a pkcs11: URI uses an HSM key. Keys and tokens are never
// logged.
package transport
