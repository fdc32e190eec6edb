// Package pkitest holds test fixtures for certctl's packages. Only tests
// import it.
//
// # PostgreSQL
//
// [StartPostgres] makes a throwaway PostgreSQL cluster (or uses the server
// named by CERTCTL_TEST_DATABASE_URL), and [Postgres.NewDatabase] gives each
// test an empty database that is dropped when the test ends. Packages whose
// tests need PostgreSQL use [MainWithPostgres] as their TestMain:
//
//	var pg *pkitest.Postgres
//
//	func TestMain(m *testing.M) { pkitest.MainWithPostgres(m, &pg) }
//
//	func TestX(t *testing.T) {
//		dsn := pg.NewDatabase(t)
//		…
//	}
//
// Tests that need PostgreSQL fail, never skip, when no server can be had: the
// error says to run `make test` (which installs the server) or to set
// CERTCTL_TEST_DATABASE_URL.
//
// # PostgreSQL with TLS
//
// [StartPostgresTLS] makes a throwaway cluster with ssl=on from a server
// certificate and key and the CAs for client certificates (all PEM), with
// [DefaultTLSHBA] (certificate login, CN = role) or the pg_hba.conf rules
// given; [StartPostgresWith] takes the same as [PostgresOptions]. TLS clusters
// never use CERTCTL_TEST_DATABASE_URL. The superuser works over a trusted Unix
// socket ([Postgres.AdminDSN], [Postgres.NewDatabase], [Postgres.Exec]),
// clients connect over TCP to [Postgres.Addr]:
//
//	p, err := pkitest.StartPostgresTLS(ctx, serverCertPEM, serverKeyPEM, caPEM, "")
//	if err != nil {
//		t.Fatal(err)
//	}
//	t.Cleanup(func() { p.Stop() })
//	if err := p.CreateRole(ctx, "app"); err != nil { // client certificate CN "app"
//		t.Fatal(err)
//	}
//	dsn := "host=localhost port=" + strconv.Itoa(p.Port()) + " user=app dbname=postgres sslmode=verify-full"
//
// [Postgres.ReplaceServerCertificate] rotates the server certificate without
// a restart.
//
// # Certificates and logs
//
// [NewCA] makes a throwaway CA with crypto/x509 alone ([CA.NewIntermediate],
// [CA.Issue] sign from templates), for tests that need certificates
// certctl's profiles would not issue; internal/catest builds hierarchies
// through certctl's own packages. [WriteCertsPEM] writes certificates to a
// PEM file. [SyncBuffer] collects log or child-process output that a test
// reads while it is still being written.
//
// # Certificate Transparency
//
// [StartCTLog] runs a real CT log (TesseraCT, static-ct-api) on 127.0.0.1,
// built once from the pinned tools module in tools/ctlog into the user cache
// directory; [NewCTProxy] puts a proxy in front of it that delays requests or
// corrupts the SCTs it returns.
package pkitest
