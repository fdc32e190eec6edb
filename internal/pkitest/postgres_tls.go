package pkitest

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultTLSHBA is the pg_hba.conf host rule of a TLS cluster when
// PostgresOptions.HBA is empty: TCP connections from 127.0.0.1 must use TLS
// and log in with a client certificate that chains to the client CA and whose
// CN is the role name.
const DefaultTLSHBA = "hostssl all all 127.0.0.1/32 cert clientcert=verify-full\n"

// PostgresOptions changes the cluster that StartPostgresWith makes. The zero
// value makes the same cluster as StartPostgres.
//
// A cluster with any option set also listens on a Unix socket in its temporary
// directory (see Postgres.SocketDir), and pg_hba.conf always starts with
// "local all all trust": the superuser (AdminDSN, NewDatabase, Exec) works over
// that socket whatever the TCP rules say.
type PostgresOptions struct {
	// TLS, if non-nil, turns on ssl=on with the given server certificate.
	TLS *PostgresTLS
	// HBA replaces the TCP rules of pg_hba.conf (lines in pg_hba.conf syntax;
	// only connections from 127.0.0.1 can reach the server). Empty means
	// DefaultTLSHBA when TLS is set, and "host all all 127.0.0.1/32 trust"
	// otherwise.
	HBA string
}

// PostgresTLS is the server side of a TLS cluster. The server reads the PEM
// bytes from files in its data directory (server.crt, server.key mode 0600,
// root.crt, root.crl); it accepts TLS 1.2 and later.
type PostgresTLS struct {
	CertPEM []byte // server certificate chain, leaf first (ssl_cert_file); required
	KeyPEM  []byte // private key of the leaf (ssl_key_file); required
	// ClientCAPEM holds the CA certificates that client certificates must
	// chain to (ssl_ca_file). With it the server asks every client for a
	// certificate; without it the server never asks, and hba rules that need
	// one (cert, clientcert=...) cannot succeed.
	ClientCAPEM []byte
	CRLPEM      []byte // optional CRL(s) for client certificates (ssl_crl_file)
}

func (o PostgresOptions) isZero() bool { return o.TLS == nil && o.HBA == "" }

// validate checks the options before any work is done.
func (o PostgresOptions) validate() error {
	if o.TLS == nil {
		return nil
	}
	return checkKeyPair(o.TLS.CertPEM, o.TLS.KeyPEM)
}

// StartPostgresTLS starts a throwaway cluster with ssl=on, for tests of TLS
// clients and scanners (the server speaks PostgreSQL's SSLRequest/STARTTLS-
// style negotiation on Addr). serverCertPEM and serverKeyPEM are the server's
// certificate chain and key; clientCAPEM (may be nil) are the CAs for client
// certificates; hba replaces the TCP rules of pg_hba.conf ("" means
// DefaultTLSHBA, i.e. certificate login with the CN as role). Examples of hba:
//
//	hostssl all all 127.0.0.1/32 cert clientcert=verify-full   # mTLS, CN = role
//	hostssl all all 127.0.0.1/32 trust                          # TLS, no client certificate
//	host    all all 127.0.0.1/32 trust                          # TLS optional (plaintext allowed)
//
// Roles the tests log in as must exist: create them with CreateRole. The caller
// stops the cluster with Stop. It never uses EnvDatabaseURL.
func StartPostgresTLS(ctx context.Context, serverCertPEM, serverKeyPEM, clientCAPEM []byte, hba string) (*Postgres, error) {
	return StartPostgresWith(ctx, PostgresOptions{
		TLS: &PostgresTLS{CertPEM: serverCertPEM, KeyPEM: serverKeyPEM, ClientCAPEM: clientCAPEM},
		HBA: hba,
	})
}

// Port returns the TCP port of a cluster StartPostgres or StartPostgresWith
// made on 127.0.0.1, or 0 for a server from EnvDatabaseURL.
func (p *Postgres) Port() int { return p.port }

// Addr returns "127.0.0.1:PORT", the TCP address of a cluster we started, or
// "" for a server from EnvDatabaseURL.
func (p *Postgres) Addr() string {
	if p.external {
		return ""
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
}

// SocketDir returns the directory holding the cluster's Unix socket
// (.s.PGSQL.PORT), or "" if it has none (StartPostgres's cluster and servers
// from EnvDatabaseURL). Anyone connecting on it is trusted as any role.
func (p *Postgres) SocketDir() string { return p.socketDir() }

// Exec runs one SQL statement as the superuser on the maintenance database.
func (p *Postgres) Exec(ctx context.Context, sql string) error {
	if err := p.adminExec(ctx, sql); err != nil {
		return fmt.Errorf("pkitest: %v", err)
	}
	return nil
}

// CreateRole creates a role that may log in, for certificate logins whose
// certificate CN is name. It does nothing if the role exists.
func (p *Postgres) CreateRole(ctx context.Context, name string) error {
	q := "DO $$ BEGIN CREATE ROLE " + pgx.Identifier{name}.Sanitize() + " LOGIN; " +
		"EXCEPTION WHEN duplicate_object THEN NULL; END $$"
	if err := p.adminExec(ctx, q); err != nil {
		return fmt.Errorf("pkitest: create role %q: %v", name, err)
	}
	return nil
}

// ReplaceServerCertificate writes a new server certificate chain and key and
// reloads the server (SIGHUP; no restart): connections made after it returns
// see the new certificate, existing ones keep the old session.
func (p *Postgres) ReplaceServerCertificate(ctx context.Context, certPEM, keyPEM []byte) error {
	return p.lifecycle(ctx, func() error {
		if p.opts.TLS == nil {
			return errors.New("pkitest: ReplaceServerCertificate: the cluster has no TLS (use StartPostgresTLS)")
		}
		if err := checkKeyPair(certPEM, keyPEM); err != nil {
			return err
		}
		before, err := p.confLoadTime(ctx)
		if err != nil {
			return err
		}
		if err := p.writeDataFile("server.key", string(keyPEM)); err != nil {
			return err
		}
		if err := p.writeDataFile("server.crt", string(certPEM)); err != nil {
			return err
		}
		if err := p.pgCtlNoWait(ctx, "reload"); err != nil {
			return err
		}
		return p.waitReloaded(ctx, before)
	})
}

func (p *Postgres) pgCtlNoWait(ctx context.Context, action string) error {
	return p.run(ctx, filepath.Join(p.bin, "pg_ctl"), action, "-D", p.data)
}

// confLoadTime returns pg_conf_load_time() as seen by a new backend.
func (p *Postgres) confLoadTime(ctx context.Context) (time.Time, error) {
	conn, err := pgx.Connect(ctx, p.admin)
	if err != nil {
		return time.Time{}, fmt.Errorf("pkitest: reload: %v", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var t time.Time
	if err := conn.QueryRow(ctx, "SELECT pg_conf_load_time()").Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("pkitest: reload: %v", err)
	}
	return t, nil
}

// waitReloaded waits until the postmaster has processed the SIGHUP that
// pg_ctl reload sent. The postmaster handles SIGHUP (configuration, hba and
// TLS files) before it forks another backend, and backends inherit its
// reload time, so a new backend reporting a newer pg_conf_load_time() means
// the next handshake uses the new files.
func (p *Postgres) waitReloaded(ctx context.Context, before time.Time) error {
	for {
		t, err := p.confLoadTime(ctx)
		if err != nil {
			return err
		}
		if t.After(before) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pkitest: reload: server did not reload: %v\nserver log:\n%s", ctx.Err(), p.logTail())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// socketDir is the Unix socket directory of a cluster with options set.
func (p *Postgres) socketDir() string {
	if p.opts.isZero() || p.root == "" {
		return ""
	}
	return p.root
}

// hbaConf returns pg_hba.conf: StartPostgres's trust rules for the zero
// options; otherwise a trusted local socket plus the TCP rules asked for.
func (p *Postgres) hbaConf() string {
	if p.opts.isZero() {
		return defaultHBAConf()
	}
	hba := p.opts.HBA
	if hba == "" {
		hba = "host all all 127.0.0.1/32 trust\n"
		if p.opts.TLS != nil {
			hba = DefaultTLSHBA
		}
	}
	if !strings.HasSuffix(hba, "\n") {
		hba += "\n"
	}
	return "# written by certctl internal/pkitest (StartPostgresWith)\n" +
		"local all all trust\n" + hba
}

// adminDSN is the superuser DSN of the maintenance database: over the Unix
// socket when there is one (the TCP rules may demand a client certificate).
func (p *Postgres) adminDSN() string {
	dir := p.socketDir()
	if dir == "" {
		return p.dsn("postgres")
	}
	return fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable", quoteConnValue(dir), p.port, superuser)
}

// quoteConnValue quotes a value for a keyword/value connection string.
func quoteConnValue(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// tlsServerConf returns the postgresql.conf lines for TLS, or "".
func (p *Postgres) tlsServerConf() string {
	t := p.opts.TLS
	if t == nil {
		return ""
	}
	conf := "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_min_protocol_version = 'TLSv1.2'\n"
	if len(t.ClientCAPEM) > 0 {
		conf += "ssl_ca_file = 'root.crt'\n"
	}
	if len(t.CRLPEM) > 0 {
		conf += "ssl_crl_file = 'root.crl'\n"
	}
	return conf
}

// maxSocketPath is the longest Unix socket path Linux accepts
// (sizeof(sockaddr_un.sun_path) - 1).
const maxSocketPath = 107

// writeOptionFiles checks that the Unix socket path fits and writes the
// server's certificate, key, client CAs and CRL into the data directory,
// owned by the server user, mode 0600.
func (p *Postgres) writeOptionFiles() error {
	if dir := p.socketDir(); len(dir)+len("/.s.PGSQL.65535") > maxSocketPath {
		return fmt.Errorf("pkitest: Unix socket directory %s is too long for a socket path: set TMPDIR to a shorter directory", dir)
	}
	t := p.opts.TLS
	if t == nil {
		return nil
	}
	files := []struct {
		name string
		pem  []byte
	}{{"server.crt", t.CertPEM}, {"server.key", t.KeyPEM}, {"root.crt", t.ClientCAPEM}, {"root.crl", t.CRLPEM}}
	for _, f := range files {
		if len(f.pem) == 0 {
			continue
		}
		if b, _ := pem.Decode(f.pem); b == nil {
			return fmt.Errorf("pkitest: PostgresTLS: %s: no PEM block", f.name)
		}
		if err := p.writeDataFile(f.name, string(f.pem)); err != nil {
			return err
		}
	}
	return nil
}

// checkKeyPair fails early, with a clear message, where the server would
// only write "could not load server certificate file" to its log.
func checkKeyPair(certPEM, keyPEM []byte) error {
	if len(certPEM) == 0 || len(keyPEM) == 0 {
		return errors.New("pkitest: PostgresTLS: CertPEM and KeyPEM are required")
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return fmt.Errorf("pkitest: PostgresTLS: server certificate and key: %v", err)
	}
	return nil
}
