package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/certdb/postgres"
	"github.com/certctl/certctl/certdb/sqlite"
	"github.com/certctl/certctl/issuance"
)

// store is a certdb.Store that can also migrate its schema.
type store interface {
	certdb.Store
	Migrate(ctx context.Context) error
	CheckSchema(ctx context.Context) error
}

// defaultPoolSize is the PostgreSQL pool size unless the URL sets
// pool_max_conns.
const defaultPoolSize = 16

// connectTimeout bounds how long a command waits for an unreachable database.
const connectTimeout = 10 * time.Second

// openStore opens the database named by rawURL. The embedded SQLite store is
// migrated on open (zero set-up); PostgreSQL must be migrated explicitly with
// `certctl db migrate` (or by `certctl init`) unless migrate is true.
func openStore(ctx context.Context, rawURL string, migrate bool, log *slog.Logger) (store, error) {
	var (
		st  store
		err error
	)
	switch {
	case strings.HasPrefix(rawURL, "postgres://"), strings.HasPrefix(rawURL, "postgresql://"):
		cctx, cancel := context.WithTimeout(ctx, connectTimeout)
		defer cancel()
		opts := []postgres.Option{postgres.WithLogger(log)}
		if !strings.Contains(rawURL, "pool_max_conns") {
			// pgxpool's default (max(4, NumCPU)) starves a busy server:
			// each issuance holds a connection for two round trips.
			opts = append(opts, postgres.WithMaxConns(defaultPoolSize))
		}
		st, err = postgres.Open(cctx, rawURL, opts...)
		if err != nil {
			return nil, fmt.Errorf("cannot use database %s: %w\ncheck --db (or database: in %s) and that the server is running", redact(rawURL), err, configFile)
		}
	case strings.HasPrefix(rawURL, "sqlite:"):
		p := strings.TrimPrefix(rawURL, "sqlite:")
		p = strings.TrimPrefix(p, "//")
		if p == "" {
			return nil, usageError("database %q: sqlite: needs a file path (sqlite:PATH)", rawURL)
		}
		if dir := filepath.Dir(p); dir != "" {
			if _, serr := os.Stat(dir); serr != nil {
				return nil, fmt.Errorf("database %s: directory %s does not exist: run `certctl init` or create it", rawURL, dir)
			}
		}
		st, err = sqlite.Open(ctx, p, sqlite.WithLogger(log))
		if err != nil {
			return nil, fmt.Errorf("cannot open database %s: %w", rawURL, err)
		}
		migrate = true
	default:
		return nil, usageError("database %q: unsupported URL: use postgres://user@host:port/db or sqlite:PATH", redact(rawURL))
	}
	if migrate {
		err = st.Migrate(ctx)
	} else {
		err = st.CheckSchema(ctx)
	}
	if err != nil {
		st.Close()
		if errors.Is(err, certdb.ErrSchema) {
			return nil, fmt.Errorf("database %s: %w", redact(rawURL), err)
		}
		return nil, fmt.Errorf("database %s: %w", redact(rawURL), err)
	}
	return st, nil
}

// redact hides a password in a database URL.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// loadedCA is the CA as the CLI commands use it.
type loadedCA struct {
	cfg   *Config
	store store
	ca    *ca.CA
	root  *x509.Certificate
	inter *x509.Certificate

	closeKey func() error // releases the intermediate key (HSM sessions); nil for none
}

// Close closes the store, then the signing key (an HSM key holds sessions).
func (l *loadedCA) Close() error {
	err := l.store.Close()
	if l.closeKey != nil {
		if kerr := l.closeKey(); err == nil {
			err = kerr
		}
	}
	return err
}

// loadCA reads the config, the intermediate key (a file, or a pkcs11: URI
// in ca.intermediate_key) and certificates, and opens the store. The root key
// is not read: it may be offline. opts go to ca.New after its logger. Close
// releases the store and the key.
func loadCA(ctx context.Context, c *common, log *slog.Logger, opts ...ca.Option) (*loadedCA, error) {
	cfg, err := c.loadConfig()
	if err != nil {
		return nil, err
	}
	profiles, err := buildProfiles(cfg)
	if err != nil {
		return nil, err
	}
	root, err := readCert(c.path(rootCertFile))
	if err != nil {
		return nil, err
	}
	inter, err := readCert(c.path(intermediateCertFile))
	if err != nil {
		return nil, err
	}
	signer, closeKey, err := openIntermediateKey(ctx, c, cfg, log, inter.PublicKey)
	if err != nil {
		return nil, err
	}
	iss, err := issuance.NewIssuer(inter, signer, cfg.URLs)
	if err != nil {
		closeKey()
		return nil, fmt.Errorf("load issuer: %w", err)
	}
	st, err := openStore(ctx, c.dbURL(cfg), false, log)
	if err != nil {
		closeKey()
		return nil, err
	}
	authority, err := ca.New(iss, [][]byte{inter.Raw}, profiles, st, append([]ca.Option{ca.WithLogger(log)}, opts...)...)
	if err != nil {
		st.Close()
		closeKey()
		return nil, err
	}
	return &loadedCA{cfg: cfg, store: st, ca: authority, root: root, inter: inter, closeKey: closeKey}, nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s not found: is this a CA directory? run `certctl init` first, or pass --dir", path)
		}
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", path)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cert, nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func pemChain(ders [][]byte) []byte {
	var out []byte
	for _, d := range ders {
		out = append(out, pemCert(d)...)
	}
	return out
}

// newLogger returns the CLI's structured logger: warnings and errors to
// stderr unless --verbose.
func newLogger(e *env, verbose bool) *slog.Logger {
	lvl := slog.LevelWarn
	if verbose {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: lvl}))
}
