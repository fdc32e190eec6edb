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
package pkitest
