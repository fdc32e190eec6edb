#!/usr/bin/env bash
# Installs what certctl's tests need on a fresh Debian/Ubuntu machine:
#   - PostgreSQL server binaries (initdb, pg_ctl): tests start throwaway clusters
#   - SoftHSM2 and OpenSC (pkcs11-tool): PKCS#11 tests
#   - OpenSSL: interop peer (openssl verify, ocsp, crl, s_client, s_server)
#   - PgBouncer, HAProxy, tinyproxy: real proxies for transport/pgtls and transport/proxy
# The CT log the tests use (TesseraCT) is built by the tests themselves, once,
# from the pinned module in tools/ctlog (internal/pkitest/ctlog.go).
# As root it installs missing packages with apt-get; otherwise it names them and fails.
set -euo pipefail

missing=()

have_pg_server() {
	command -v initdb >/dev/null 2>&1 && return 0
	command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ] && return 0
	compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && return 0
	return 1
}

have_pg_server || missing+=(postgresql)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v softhsm2-util >/dev/null 2>&1 || missing+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || missing+=(opensc)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v tinyproxy >/dev/null 2>&1 || missing+=(tinyproxy-bin)

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "certctl tests need these packages, which are not installed: ${missing[*]}" >&2
	echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
	echo "(or run 'make test' as root, which installs them)" >&2
	exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "missing packages ${missing[*]} and no apt-get on this machine: install them with your package manager" >&2
	exit 1
fi

echo "installing test dependencies: ${missing[*]}" >&2
# The tests never use the distribution's default cluster: don't create one.
mkdir -p /etc/postgresql-common
if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
	echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}" >&2
