package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// buildConfigs returns the server and client configurations. Both serve
// the current certificate through callbacks and verify peers themselves in
// VerifyConnection against the current trust bundle, because RootCAs and
// ClientCAs cannot change after a tls.Config is in use, and because
// VerifyPeerCertificate "is not invoked on resumed connections" while
// VerifyConnection is: authorization (and revocation) then applies to
// resumed sessions too.
func (t *Transport) buildConfigs() (server, client *tls.Config) {
	server = &tls.Config{
		MinVersion:     tls.VersionTLS12, // TLS 1.3 is negotiated whenever both sides have it
		GetCertificate: t.getCertificate,
		// Any certificate is required here; VerifyConnection verifies it
		// against the current bundle (ClientCAs would be frozen).
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: t.verifyClient,
	}
	client = &tls.Config{
		MinVersion:           tls.VersionTLS12,
		GetClientCertificate: t.getClientCertificate,
		// Full verification happens in VerifyConnection: chain to the
		// current bundle, server_auth EKU, and the host name whenever
		// ServerName is set (Dial and http.Transport set it from the
		// address). InsecureSkipVerify only turns off the stdlib's check
		// against the frozen RootCAs.
		InsecureSkipVerify: true,
		// Replaced by clientConfig; here so that no copy ever goes unverified.
		VerifyConnection: func(cs tls.ConnectionState) error { return t.verifyServerName(cs, cs.ServerName) },
	}
	return server, client
}

func (t *Transport) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return t.cur.Load().cert, nil
}

func (t *Transport) getClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return t.cur.Load().cert, nil
}

func (t *Transport) verifyClient(cs tls.ConnectionState) error {
	chains, err := t.verifyChain(cs.PeerCertificates, x509.ExtKeyUsageClientAuth, "")
	if err != nil {
		return err
	}
	return t.authorize(chains)
}

func (t *Transport) verifyServer(cs tls.ConnectionState, name string) error {
	chains, err := t.verifyChain(cs.PeerCertificates, x509.ExtKeyUsageServerAuth, name)
	if err != nil {
		return err
	}
	return t.authorize(chains)
}

// clientConfig returns a client configuration for serverName ("": take
// ServerName from the configuration at handshake time). The host name to
// verify is read from the returned configuration itself, because
// ConnectionState.ServerName is empty when ServerName is an IP address (no
// SNI is sent for IPs), and the stdlib's own check is off.
func (t *Transport) clientConfig(serverName string) *tls.Config {
	cfg := t.clientCfg.Clone()
	cfg.ServerName = serverName
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		name := cfg.ServerName
		if name == "" {
			name = cs.ServerName
		}
		return t.verifyServerName(cs, name)
	}
	return cfg
}

// verifyServerName verifies the server for name; without a name it fails
// closed, unless host name checks are off (WithoutHostnameCheck).
func (t *Transport) verifyServerName(cs tls.ConnectionState, name string) error {
	if t.o.noHostname {
		name = ""
	} else if name == "" {
		return ErrNoServerName
	}
	return t.verifyServer(cs, name)
}

// verifyChain verifies certs (leaf first) against the current bundle at the
// current time, for usage eku and, if name is set, that host name or IP.
// A chain to an unknown root asks the loop to refresh the bundle (a root
// rollover may have started).
func (t *Transport) verifyChain(certs []*x509.Certificate, eku x509.ExtKeyUsage, name string) ([][]*x509.Certificate, error) {
	if len(certs) == 0 {
		return nil, errors.New("transport: the peer sent no certificate")
	}
	opts := x509.VerifyOptions{
		Roots:       t.roots.Load().pool,
		DNSName:     name,
		KeyUsages:   []x509.ExtKeyUsage{eku},
		CurrentTime: t.now(),
	}
	if len(certs) > 1 {
		opts.Intermediates = x509.NewCertPool()
		for _, c := range certs[1:] {
			opts.Intermediates.AddCert(c)
		}
	}
	chains, err := certs[0].Verify(opts)
	if err != nil {
		var ua x509.UnknownAuthorityError
		if errors.As(err, &ua) && t.kick != nil {
			t.requestRefresh()
		}
		return nil, fmt.Errorf("transport: verify certificate %s (%s): %w", serialHex(certs[0]), certs[0].Subject, err)
	}
	return chains, nil
}

// authorize runs the Authorizer, then the revocation checker.
func (t *Transport) authorize(chains [][]*x509.Certificate) error {
	leaf := chains[0][0]
	if err := t.o.authz(leaf, chains); err != nil {
		return fmt.Errorf("transport: peer %s (%s): %w", serialHex(leaf), leaf.Subject, err)
	}
	if t.o.revocation != nil {
		ctx, cancel := context.WithTimeout(context.Background(), t.o.revocationTimeout)
		defer cancel()
		if err := t.o.revocation.Check(ctx, chains[0]); err != nil {
			return fmt.Errorf("transport: peer %s (%s): revocation check: %w", serialHex(leaf), leaf.Subject, err)
		}
	}
	return nil
}

// ServerTLSConfig returns a new server configuration: current certificate
// on every handshake, client certificate required and verified against the
// current bundle, then authorized. TLS 1.2 minimum. The caller may modify
// the copy (NextProtos, say) but should keep the callbacks.
func (t *Transport) ServerTLSConfig() *tls.Config { return t.serverCfg.Clone() }

// ClientTLSConfig returns a new client configuration: current certificate
// as client certificate, server verified against the current bundle and
// for the host name or IP address in ServerName, then authorized. Set
// ServerName on the returned value before using or cloning it (Dial does):
// a clone made with an empty ServerName and given an IP address later
// cannot be checked, since TLS sends no SNI for IPs, and its handshakes
// fail with ErrNoServerName (a DNS ServerName set on a clone works, as it
// is sent as SNI). WithoutHostnameCheck turns the host name check off.
func (t *Transport) ClientTLSConfig() *tls.Config { return t.clientConfig("") }

// dialRaw dials the connection under TLS.
func (t *Transport) dialRaw(ctx context.Context, network, addr string) (net.Conn, error) {
	if t.o.dialer != nil {
		return t.o.dialer.DialContext(ctx, network, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// Dial connects to addr and completes a mutual TLS handshake bounded by
// ctx, verifying the server for the host of addr. It has the DialContext
// signature, for http.Transport and pgconn.Config.DialFunc-style hooks.
func (t *Transport) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	raw, err := t.dialRaw(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", addr, err)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	conn := tls.Client(raw, t.clientConfig(host))
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("transport: dial %s: %w", addr, err)
	}
	return conn, nil
}

// Listen listens on addr and returns a listener whose connections use
// ServerTLSConfig. The handshake runs on the first Read or Write (or an
// explicit Handshake). Rotation never re-creates the listener.
func (t *Transport) Listen(network, addr string) (net.Listener, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen %s: %w", addr, err)
	}
	return tls.NewListener(ln, t.serverCfg), nil
}

// HTTPClient returns a new HTTP/1.1 client whose connections are made by
// Dial. Keep and reuse it: each one has its own connection pool.
func (t *Transport) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialTLSContext:      t.Dial,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 64,
	}}
}
