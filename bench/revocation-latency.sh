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
BENCH=revocation-latency
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_init go psql curl "$PGBIN/initdb" "$PGBIN/pg_ctl"
log_machine
go build -o "$W/certctl" ./cmd/certctl
go build -o "$W/revlat" ./bench/revlat

start_pg certctl
DSN="postgres://postgres@127.0.0.1:$PGPORT/certctl?sslmode=disable"

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
