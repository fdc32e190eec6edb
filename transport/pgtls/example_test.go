package pgtls_test

import (
	"context"
	"log"
	"net/url"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/certctl/certctl/transport"
	"github.com/certctl/certctl/transport/pgtls"
	"github.com/certctl/certctl/transport/proxy"
)

// A pool whose connections log in with the service's renewing certificate
// (CN = role "app"), verifying db.internal against the identity's roots.
func ExamplePoolConfig() {
	ctx := context.Background()
	id, err := transport.LoadIdentity("/etc/certctl/app.yaml") // profile client, common_name app
	if err != nil {
		log.Fatal(err)
	}
	tr, err := transport.New(ctx, id, transport.WithAuthorizer(transport.AuthorizeDNS("db.internal")))
	if err != nil {
		log.Fatal(err)
	}
	defer tr.Close()

	cfg, err := pgtls.PoolConfig("postgres://app@db.internal:5432/app", tr)
	if err != nil {
		log.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
}

// Through an HTTP CONNECT proxy to HAProxy, which terminates TLS with ALPN
// "postgresql" (direct TLS) in front of PostgreSQL.
func ExampleWithDialFunc() {
	var tr *transport.Transport // from transport.New
	p := &proxy.HTTPConnect{URL: &url.URL{Scheme: "http", Host: "proxy.internal:3128"}}
	cfg, err := pgtls.ConnConfig("host=pg-haproxy.internal port=5433 user=app dbname=app sslnegotiation=direct", tr,
		pgtls.WithDialFunc(p.DialContext))
	if err != nil {
		log.Fatal(err)
	}
	_ = cfg // pgx.ConnectConfig(ctx, cfg)
}
