package pkitest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// tlsTestCA is a throwaway CA for the TLS cluster tests (stdlib only).
type tlsTestCA struct {
	*CA
	pem []byte
}

func newTLSTestCA(t *testing.T) *tlsTestCA {
	t.Helper()
	ca := NewCA(t, &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "pkitest root"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	})
	return &tlsTestCA{CA: ca, pem: ca.PEM()}
}

// leaf issues a certificate; server certificates get localhost and 127.0.0.1.
func (ca *tlsTestCA) leaf(t *testing.T, cn string, serial int64, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key := NewKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	c := ca.Issue(t, tmpl, key.Public())
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func startTLSCluster(t *testing.T, ctx context.Context, ca *tlsTestCA, hba string) *Postgres {
	t.Helper()
	certPEM, keyPEM := ca.leaf(t, "localhost", 100, true)
	p, err := StartPostgresTLS(ctx, certPEM, keyPEM, ca.pem, hba)
	if err != nil {
		t.Fatalf("StartPostgresTLS: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return p
}

// tlsConnect connects as user over TCP with TLS verify-full (client
// certificate optional) and returns the server certificate's serial.
func tlsConnect(ctx context.Context, p *Postgres, ca *tlsTestCA, user, db string, client *tls.Certificate) (*pgx.Conn, string, error) {
	cfg, err := pgx.ParseConfig("host=localhost port=" + strconv.Itoa(p.Port()) + " user=" + user + " dbname=" + db + " sslmode=require connect_timeout=10")
	if err != nil {
		return nil, "", err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	var serverSerial string
	cfg.TLSConfig = &tls.Config{
		RootCAs:    roots,
		ServerName: "localhost",
		MinVersion: tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			serverSerial = cs.PeerCertificates[0].SerialNumber.String()
			return nil
		},
	}
	if client != nil {
		cfg.TLSConfig.Certificates = []tls.Certificate{*client}
	}
	cfg.Fallbacks = nil
	conn, err := pgx.ConnectConfig(ctx, cfg)
	return conn, serverSerial, err
}

func TestStartPostgresTLS(t *testing.T) {
	ctx := testCtx(t)
	ca := newTLSTestCA(t)
	p := startTLSCluster(t, ctx, ca, "")
	if p.SocketDir() == "" || p.Addr() != "127.0.0.1:"+strconv.Itoa(p.Port()) {
		t.Fatalf("SocketDir() = %q, Addr() = %q", p.SocketDir(), p.Addr())
	}
	if err := p.CreateRole(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := p.CreateRole(ctx, "app"); err != nil { // idempotent
		t.Fatalf("CreateRole again: %v", err)
	}
	// NewDatabase and Exec work over the trusted socket although TCP needs a certificate.
	dsn := p.NewDatabase(t)
	db := dsn[strings.LastIndex(dsn, "dbname=")+len("dbname="):]

	certPEM, keyPEM := ca.leaf(t, "app", 200, false)
	client, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	otherPEM, otherKey := ca.leaf(t, "mallory", 201, false)
	other, err := tls.X509KeyPair(otherPEM, otherKey)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("client certificate with CN = role", func(t *testing.T) {
		conn, serverSerial, err := tlsConnect(ctx, p, ca, "app", db, &client)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer conn.Close(ctx)
		var user, dn, serial string
		var ssl bool
		if err := conn.QueryRow(ctx, "SELECT current_user, ssl, client_dn, client_serial::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&user, &ssl, &dn, &serial); err != nil {
			t.Fatal(err)
		}
		if user != "app" || !ssl || dn != "/CN=app" || serial != "200" || serverSerial != "100" {
			t.Fatalf("got user=%s ssl=%v dn=%s serial=%s server serial=%s", user, ssl, dn, serial, serverSerial)
		}
	})

	refused := []struct {
		name   string
		user   string
		client *tls.Certificate
		want   string
	}{
		{"no client certificate", "app", nil, "certificate"},
		{"CN is not the role", "app", &other, "certificate authentication failed"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			conn, _, err := tlsConnect(ctx, p, ca, tt.user, db, tt.client)
			if err == nil {
				conn.Close(ctx)
				t.Fatal("connected")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to mention %q", err, tt.want)
			}
		})
	}

	t.Run("plaintext refused", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, "host=127.0.0.1 port="+strconv.Itoa(p.Port())+" user=app dbname="+db+" sslmode=disable")
		if err == nil {
			conn.Close(ctx)
			t.Fatal("plaintext connection accepted")
		}
		if !strings.Contains(err.Error(), "no pg_hba.conf entry") {
			t.Fatalf("error %v, want no pg_hba.conf entry", err)
		}
	})

	t.Run("ReplaceServerCertificate", func(t *testing.T) {
		old, _, err := tlsConnect(ctx, p, ca, "app", db, &client)
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close(ctx)
		newCert, newKey := ca.leaf(t, "localhost", 101, true)
		if err := p.ReplaceServerCertificate(ctx, newCert, newKey); err != nil {
			t.Fatalf("ReplaceServerCertificate: %v", err)
		}
		conn, serverSerial, err := tlsConnect(ctx, p, ca, "app", db, &client)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
		if serverSerial != "101" {
			t.Fatalf("server serial after replace = %s, want 101", serverSerial)
		}
		if err := old.Ping(ctx); err != nil {
			t.Fatalf("connection made before the reload: %v", err)
		}
	})
}

func TestStartPostgresTLSCustomHBA(t *testing.T) {
	ctx := testCtx(t)
	ca := newTLSTestCA(t)
	// TLS without client certificates, as a scanner sees a server.
	p := startTLSCluster(t, ctx, ca, "hostssl all all 127.0.0.1/32 trust")
	conn, serverSerial, err := tlsConnect(ctx, p, ca, "postgres", "postgres", nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if serverSerial != "100" {
		t.Fatalf("server serial %s", serverSerial)
	}
}

func TestStartPostgresWithRejects(t *testing.T) {
	ctx := testCtx(t)
	ca := newTLSTestCA(t)
	certPEM, _ := ca.leaf(t, "localhost", 100, true)
	_, otherKey := ca.leaf(t, "localhost", 101, true)
	tests := []struct {
		name string
		tls  *PostgresTLS
		want string
	}{
		{"no key", &PostgresTLS{CertPEM: certPEM}, "CertPEM and KeyPEM are required"},
		{"key does not match", &PostgresTLS{CertPEM: certPEM, KeyPEM: otherKey}, "server certificate and key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := StartPostgresWith(ctx, PostgresOptions{TLS: tt.tls})
			if err == nil {
				p.Stop()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}
