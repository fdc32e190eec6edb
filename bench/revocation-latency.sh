#!/usr/bin/env bash
# revocation-latency.sh: time from a revoke call to OCSP and CRL showing it,
# with `certctl serve` on PostgreSQL, on this machine, in one run.
#
# It builds certctl and bench/revlat; starts a throwaway PostgreSQL 15
# cluster (durable settings, as bench/api-vs-cfssl.sh); runs `certctl init
# --db`, `certctl serve` (API on HTTPS, OCSP/CRL on plain HTTP) and, as a
# separate process, the standalone responder `certctl ocsp serve --db`
# (which learns of revocations through PostgreSQL LISTEN/NOTIFY); creates an
# admin token; then revlat issues COUNT certificates through the API and
# revokes them one at a time, polling every POLL, at the same time, the
# built-in OCSP responder, the standalone one and the CRL, until each shows
# the revocation. Everything lives in a temporary directory removed on exit.
#
# Usage: bench/revocation-latency.sh   (`make bench-revocation`)
# Environment: COUNT (100), POLL (5ms), TIMEOUT (5s), PGBIN, KEEP=1, OUT=FILE (JSON summary).
# Needs: go, PostgreSQL 15 server binaries, psql, curl.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
COUNT=${COUNT:-100}
POLL=${POLL:-5ms}
TIMEOUT=${TIMEOUT:-5s}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
for tool in go psql curl "$PGBIN/initdb" "$PGBIN/pg_ctl"; do
	command -v "$tool" >/dev/null || { echo "revocation-latency: $tool not found" >&2; exit 1; }
done

W=$(mktemp -d "${TMPDIR:-/tmp}/certctl-revlat.XXXXXX")
chmod 755 "$W"
PIDS=()
cleanup() {
	local rc=$?
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	done
	if [ -f "$W/pg/data/postmaster.pid" ]; then
		as_pg "$PGBIN/pg_ctl" -D "$W/pg/data" -m fast -w stop >/dev/null 2>&1 || true
	fi
	if [ "${KEEP:-0}" = 1 ]; then echo "revocation-latency: kept $W" >&2; else rm -rf "$W"; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
freeport() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
		echo $((20000 + RANDOM % 20000))
}
wait_http() {
	local url=$1
	shift
	for _ in $(seq 300); do
		if curl -s -o /dev/null --max-time 2 "$@" "$url"; then return 0; fi
		sleep 0.1
	done
	echo "revocation-latency: $url did not answer in 30 s" >&2
	return 1
}
log() { echo "== $*"; }

log "machine: $(nproc) CPUs, $(uname -sr), $(go version | cut -d' ' -f3-), load average $(cut -d' ' -f1-3 /proc/loadavg)"
log "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
go build -o "$W/certctl" ./cmd/certctl
go build -o "$W/revlat" ./bench/revlat

PGPORT=$(freeport)
mkdir -p "$W/pg"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$W/pg"
as_pg "$PGBIN/initdb" -D "$W/pg/data" -U postgres --auth-local=trust --auth-host=trust -E UTF8 --locale=C.UTF-8 >"$W/pg/initdb.log"
cat >>"$W/pg/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$W/pg'
fsync = on
synchronous_commit = on
full_page_writes = on
CONF
as_pg "$PGBIN/pg_ctl" -D "$W/pg/data" -l "$W/pg/server.log" -w -t 60 start >/dev/null
psql -h 127.0.0.1 -p "$PGPORT" -U postgres -X -q -At -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE certctl"
DSN="postgres://postgres@127.0.0.1:$PGPORT/certctl?sslmode=disable"
log "PostgreSQL $(psql -h 127.0.0.1 -p "$PGPORT" -U postgres -X -At -d postgres -c 'SHOW server_version') on port $PGPORT (fsync, synchronous_commit on)"

D="$W/ca"
"$W/certctl" init --dir "$D" --db "$DSN" >"$W/init.log"
API_PORT=$(freeport)
HTTP_PORT=$(freeport)
OCSP_PORT=$(freeport)
"$W/certctl" serve --dir "$D" --db "$DSN" --addr "127.0.0.1:$API_PORT" --http-addr "127.0.0.1:$HTTP_PORT" --rate 0 \
	>"$W/serve.out" 2>"$W/serve.log" &
PIDS+=($!)
wait_http "https://127.0.0.1:$API_PORT/healthz" --cacert "$D/root.crt"
"$W/certctl" ocsp serve --dir "$D" --db "$DSN" --addr "127.0.0.1:$OCSP_PORT" >"$W/ocsp.out" 2>"$W/ocsp.log" &
PIDS+=($!)
wait_http "http://127.0.0.1:$OCSP_PORT/ocsp"
TOKEN=$("$W/certctl" token create --admin --ttl 1h --dir "$D" --db "$DSN" --description "revocation latency benchmark" | tail -n 1)
log "certctl serve: API https://127.0.0.1:$API_PORT, OCSP/CRL http://127.0.0.1:$HTTP_PORT; certctl ocsp serve: http://127.0.0.1:$OCSP_PORT"
log "$COUNT certificates, revoked one at a time; poll every $POLL (timeout $TIMEOUT); load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$W/revlat" --api "https://127.0.0.1:$API_PORT" --token "$TOKEN" --cacert "$D/root.crt" --issuer "$D/intermediate.crt" \
	--ocsp "serve=http://127.0.0.1:$HTTP_PORT/ocsp" --ocsp "standalone=http://127.0.0.1:$OCSP_PORT/ocsp" \
	--crl "http://127.0.0.1:$HTTP_PORT/crl" --count "$COUNT" --poll "$POLL" --timeout "$TIMEOUT" --json "$W/revlat.json" |
	grep -v '^ *[0-9.]*,\?$' # the per-revocation lists stay in the JSON file
[ -n "${OUT:-}" ] && cp "$W/revlat.json" "$OUT"
log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
log "serve log lines mentioning errors: $(grep -ci 'level=error' "$W/serve.log" || true), standalone: $(grep -ci 'level=error' "$W/ocsp.log" || true)"
