#!/usr/bin/env bash
# ocsp-vs-cfssl.sh: OCSP responders over HTTP, `certctl ocsp serve` (PostgreSQL,
# pre-signed responses, in-memory cache) vs `cfssl ocspserve` v1.6.5 backed by
# its PostgreSQL certdb and by a responses file, on this machine, in one run.
#
# Setup (not measured): a throwaway PostgreSQL 15 cluster (durable settings)
# with one database per CA. Each CA issues the same COUNT ECDSA P-256 CSRs
# through its own API server (bench/loadgen: `certctl serve`, `cfssl serve
# -db-config`), so each database holds its COUNT certificates. Every tenth
# certificate (REVOKE_EVERY) is revoked with keyCompromise: certctl through
# POST /v1/certificates/{serial}/revoke (which re-signs the OCSP response),
# cfssl with `cfssl revoke -db-config`. Responses: certctl signs one at
# issuance and on revocation (`certctl ocsp refresh` then confirms none is
# missing); cfssl gets `cfssl ocsprefresh -db-config` with a delegated ECDSA
# P-256 responder certificate (cfssl gencert, profile with "ocsp signing"),
# then `cfssl ocspdump` for the file-backed responder. The API servers are
# stopped before any measurement.
#
# Measurement: ROUNDS rounds; in each, the three responders are started one
# at a time (never two at once; the order rotates), and bench/ocspload sends
# first GET then POST: a warm-up of one request per certificate (each answer
# parsed, signature and status checked), then REQUESTS measured requests
# spread evenly over the certificates, at CONCURRENCY workers with one
# keep-alive connection each. Also recorded: the responder's and the
# PostgreSQL cluster's CPU time per measured response. Prints medians.
#
# Usage: bench/ocsp-vs-cfssl.sh   (`make bench-ocsp`)
# Environment: COUNT (10000), REVOKE_EVERY (10), REQUESTS (30000),
#   CONCURRENCY (8), ROUNDS (3), PGBIN, KEEP=1, QUIET_LOAD (e.g. 1.5: before each
#   responder's measurement, wait up to 3 min for the 1-minute load average to fall below it).
# Needs: go, PostgreSQL 15 server binaries, psql, curl, jq.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
COUNT=${COUNT:-10000}
REVOKE_EVERY=${REVOKE_EVERY:-10}
REQUESTS=${REQUESTS:-30000}
CONCURRENCY=${CONCURRENCY:-8}
ROUNDS=${ROUNDS:-3}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
CFSSL_VERSION=v1.6.5
BENCH=ocsp-vs-cfssl
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_init go psql curl jq "$PGBIN/initdb" "$PGBIN/pg_ctl"
log_machine
grep -q "github.com/cloudflare/cfssl $CFSSL_VERSION" go.mod || { echo "ocsp-vs-cfssl: go.mod does not require cfssl $CFSSL_VERSION" >&2; exit 1; }
go build -o "$W/certctl" ./cmd/certctl
go build -o "$W/loadgen" ./bench/loadgen
go build -o "$W/ocspload" ./bench/ocspload
go build -o "$W/cfssl" github.com/cloudflare/cfssl/cmd/cfssl
go build -o "$W/cfssljson" github.com/cloudflare/cfssl/cmd/cfssljson
log "$("$W/certctl" version) / $("$W/cfssl" version | tr '\n' ' ')"

# --- PostgreSQL ----------------------------------------------------------
start_pg cfssl certctl
DSN_CFSSL="postgres://postgres@127.0.0.1:$PGPORT/cfssl?sslmode=disable"
DSN_CERTCTL="postgres://postgres@127.0.0.1:$PGPORT/certctl?sslmode=disable"
cfssl_schema cfssl

# --- cfssl CA: ECDSA P-256 root, intermediate, delegated OCSP responder ---
cfssl_ca http://127.0.0.1:8081/
echo '{"CN": "cfssl Bench OCSP Responder", "key": {"algo": "ecdsa", "size": 256}}' >"$C/ocsp.json"
(
	cd "$C"
	"$W/cfssl" gencert -loglevel 2 -ca inter.pem -ca-key inter-key.pem -config config.json -profile ocsp ocsp.json |
		"$W/cfssljson" -bare ocsp
)

# --- issue COUNT certificates on each side ---------------------------------
"$W/loadgen" --gen --csrs "$COUNT" --csr-file "$W/csrs.pem"
CFSSL_API=$(freeport)
"$W/cfssl" serve -address 127.0.0.1 -port "$CFSSL_API" -ca "$C/inter.pem" -ca-key "$C/inter-key.pem" \
	-config "$C/config.json" -db-config "$C/db.json" >"$W/cfssl-serve.log" 2>&1 &
pid=$!
PIDS+=("$pid")
wait_http "http://127.0.0.1:$CFSSL_API/api/v1/cfssl/info" -X POST -d '{}'
"$W/loadgen" --target cfssl --url "http://127.0.0.1:$CFSSL_API" --csr-file "$W/csrs.pem" --count "$COUNT" | tail -n 1
stop "$pid"

D="$W/certctl-ca"
"$W/certctl" init --dir "$D" --db "$DSN_CERTCTL" >"$W/certctl-init.log"
API_PORT=$(freeport)
HTTP_PORT=$(freeport)
"$W/certctl" serve --dir "$D" --db "$DSN_CERTCTL" --addr "127.0.0.1:$API_PORT" --http-addr "127.0.0.1:$HTTP_PORT" --rate 0 \
	>"$W/certctl-serve.out" 2>"$W/certctl-serve.log" &
pid=$!
PIDS+=("$pid")
wait_http "https://127.0.0.1:$API_PORT/healthz" --cacert "$D/root.crt"
TOKEN=$("$W/certctl" token create --admin --ttl 2h --dir "$D" --db "$DSN_CERTCTL" --description "ocsp benchmark" | tail -n 1)
"$W/loadgen" --target certctl --url "https://127.0.0.1:$API_PORT" --token "$TOKEN" --cacert "$D/root.crt" \
	--csr-file "$W/csrs.pem" --count "$COUNT" | tail -n 1

# --- revoke every REVOKE_EVERY-th certificate (by serial order: random) ----
NREV=$((COUNT / REVOKE_EVERY))
"${PSQL[@]}" -d certctl -c "SELECT encode(serial, 'hex') FROM certificates WHERE status = 2 AND subject LIKE '%svc-%.bench.internal%' ORDER BY serial LIMIT $NREV" >"$W/certctl-revoked.txt"
t0=$(date +%s)
xargs -P 4 -I{} curl -sf -o /dev/null --cacert "$D/root.crt" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
	-d '{"reason":"keyCompromise"}' "https://127.0.0.1:$API_PORT/v1/certificates/{}/revoke" <"$W/certctl-revoked.txt"
log "certctl: revoked $(wc -l <"$W/certctl-revoked.txt") through the API in $(($(date +%s) - t0)) s"
stop "$pid"
"$W/certctl" ocsp refresh --dir "$D" --db "$DSN_CERTCTL" --verbose 2>&1 | tail -n 3
"${PSQL[@]}" -d certctl -c "SELECT '-----BEGIN CERTIFICATE-----' || chr(10) || encode(der, 'base64') || chr(10) || '-----END CERTIFICATE-----' FROM certificates WHERE status IN (2, 3) AND subject LIKE '%svc-%.bench.internal%'" >"$W/certctl-certs.pem"

"${PSQL[@]}" -d cfssl -c "SELECT convert_from(serial_number, 'UTF8') || ' ' || convert_from(authority_key_identifier, 'UTF8') FROM certificates WHERE common_name LIKE 'svc-%.bench.internal' ORDER BY serial_number LIMIT $NREV" >"$W/cfssl-revoke-args.txt"
t0=$(date +%s)
awk '{print "-serial\n" $1 "\n-aki\n" $2}' "$W/cfssl-revoke-args.txt" |
	xargs -P 4 -n 4 "$W/cfssl" revoke -loglevel 2 -db-config "$C/db.json" -reason keycompromise
cut -d' ' -f1 "$W/cfssl-revoke-args.txt" >"$W/cfssl-revoked.txt"
log "cfssl: revoked $(wc -l <"$W/cfssl-revoked.txt") with cfssl revoke in $(($(date +%s) - t0)) s"
t0=$(date +%s)
"$W/cfssl" ocsprefresh -loglevel 2 -db-config "$C/db.json" -ca "$C/inter.pem" -responder "$C/ocsp.pem" -responder-key "$C/ocsp-key.pem" -interval 96h
log "cfssl ocsprefresh: $("${PSQL[@]}" -d cfssl -c 'SELECT count(*) FROM ocsp_responses') responses in $(($(date +%s) - t0)) s"
"$W/cfssl" ocspdump -loglevel 2 -db-config "$C/db.json" >"$W/cfssl-responses.txt"
"${PSQL[@]}" -d cfssl -c "SELECT convert_from(pem, 'UTF8') FROM certificates WHERE common_name LIKE 'svc-%.bench.internal'" >"$W/cfssl-certs.pem"
log "certificates: certctl $(grep -c BEGIN "$W/certctl-certs.pem") ($(wc -l <"$W/certctl-revoked.txt") revoked), cfssl $(grep -c BEGIN "$W/cfssl-certs.pem") ($(wc -l <"$W/cfssl-revoked.txt") revoked, $(wc -l <"$W/cfssl-responses.txt") responses in the file)"
"${PSQL[@]}" -d postgres -c "CHECKPOINT"

# --- measure ---------------------------------------------------------------
PORT=$(freeport)
start_server() { # NAME: starts one responder on $PORT, sets SPID and URL
	case $1 in
	certctl)
		"$W/certctl" ocsp serve --dir "$D" --db "$DSN_CERTCTL" --addr "127.0.0.1:$PORT" >"$W/certctl-ocsp.out" 2>>"$W/certctl-ocsp.log" &
		URL="http://127.0.0.1:$PORT/ocsp" ;;
	cfssl-db)
		"$W/cfssl" ocspserve -address 127.0.0.1 -port "$PORT" -db-config "$C/db.json" >>"$W/cfssl-ocsp-db.log" 2>&1 &
		URL="http://127.0.0.1:$PORT/" ;;
	cfssl-file)
		"$W/cfssl" ocspserve -address 127.0.0.1 -port "$PORT" -responses "$W/cfssl-responses.txt" >>"$W/cfssl-ocsp-file.log" 2>&1 &
		URL="http://127.0.0.1:$PORT/" ;;
	esac
	SPID=$!
	PIDS+=("$SPID")
	wait_http "$URL"
}
measure() { # NAME ROUND
	local name=$1 round=$2 m s0 s1 p0 p1 load certs=$W/certctl-certs.pem issuer=$D/intermediate.crt rev=(--revoked "$W/certctl-revoked.txt")
	if [ "$name" != certctl ]; then
		certs=$W/cfssl-certs.pem issuer=$C/inter.pem rev=(--revoked "$W/cfssl-revoked.txt" --revoked-decimal)
	fi
	if [ -n "${QUIET_LOAD:-}" ]; then
		for _ in $(seq 36); do
			awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v q="$QUIET_LOAD" 'BEGIN { exit !(l < q) }' && break
			sleep 5
		done
	fi
	start_server "$name"
	for m in GET POST; do
		load=$(cut -d' ' -f1 /proc/loadavg)
		s0=$(cpu_ms "$SPID")
		p0=$(pg_cpu_ms)
		"$W/ocspload" --certs "$certs" --issuer "$issuer" "${rev[@]}" --url "$URL" --method "$m" \
			--concurrency "$CONCURRENCY" --count "$REQUESTS" --label "$name" --json "$W/$name-$m-$round.json" >"$W/$name-$m-$round.out" 2>&1 ||
			{ cat "$W/$name-$m-$round.out"; return 1; }
		s1=$(cpu_ms "$SPID")
		p1=$(pg_cpu_ms)
		# CPU per response over warm-up + measured requests.
		jq --argjson s "$(((s1 - s0) * 1000000 / (COUNT + REQUESTS)))" --argjson p "$(((p1 - p0) * 1000000 / (COUNT + REQUESTS)))" --arg load "$load" \
			'. + {server_cpu_ns_per_resp: $s, postgres_cpu_ns_per_resp: $p, loadavg_before: ($load | tonumber)}' \
			"$W/$name-$m-$round.json" >"$W/tmp.json" && mv "$W/tmp.json" "$W/$name-$m-$round.json"
		echo "round $round: $(tail -n 1 "$W/$name-$m-$round.out"); CPU/response (incl. warm-up): server $(((s1 - s0) * 1000000 / (COUNT + REQUESTS))) ns, PostgreSQL $(((p1 - p0) * 1000000 / (COUNT + REQUESTS))) ns; load before $load"
	done
	stop "$SPID"
}
SERVERS=(certctl cfssl-db cfssl-file)
log "load: $ROUNDS rounds; per round, responder and method: warm-up $COUNT (one per certificate, all parsed) + $REQUESTS measured requests, concurrency $CONCURRENCY"
for r in $(seq "$ROUNDS"); do
	for i in 0 1 2; do
		measure "${SERVERS[$(((i + r - 1) % 3))]}" "$r"
	done
done

log "results (median of $ROUNDS rounds)"
jq -rs '
	def median: sort | if length % 2 == 1 then .[length/2|floor] else (.[length/2-1] + .[length/2]) / 2 end;
	group_by(.label + " " + .method) | map({label: .[0].label, method: .[0].method,
		rps: (map(.responses_per_sec) | median), p50: (map(.p50_ms) | median), p99: (map(.p99_ms) | median),
		max: (map(.max_ms) | median), rps_all: map(.responses_per_sec | round), p99_all: map(.p99_ms),
		scpu: (map(.server_cpu_ns_per_resp) | median), pcpu: (map(.postgres_cpu_ns_per_resp) | median),
		errors: (map(.errors) | add)}) |
	(.[] | "\(.label) \(.method): \(.rps | round) responses/s, p50 \(.p50) ms, p99 \(.p99) ms, max \(.max) ms (rounds: \(.rps_all), p99 \(.p99_all)); CPU/response: server \(.scpu) ns, PostgreSQL \(.pcpu) ns; errors \(.errors)"),
	(. as $all | ["GET", "POST"][] as $m |
		($all | map(select(.method == $m)) | INDEX(.label)) as $x |
		"ratio \($m): certctl/cfssl-db \($x.certctl.rps / $x["cfssl-db"].rps * 100 | round / 100)x (goal >= 10x: \(if $x.certctl.rps >= 10 * $x["cfssl-db"].rps then "met" else "MISSED" end)), certctl/cfssl-file \($x.certctl.rps / $x["cfssl-file"].rps * 100 | round / 100)x (goal >= 3x: \(if $x.certctl.rps >= 3 * $x["cfssl-file"].rps then "met" else "MISSED" end)), certctl p99 \($x.certctl.p99) ms (goal <= 5 ms: \(if $x.certctl.p99 <= 5 then "met" else "MISSED" end))")
' "$W"/*-GET-*.json "$W"/*-POST-*.json
