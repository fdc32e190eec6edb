#!/usr/bin/env bash
# api-vs-cfssl.sh: issuance over HTTP, `certctl serve` vs `cfssl serve` v1.6.5,
# each with a PostgreSQL certificate database, on this machine, in one run.
#
# It builds certctl, cfssl and bench/loadgen; starts a throwaway PostgreSQL 15
# cluster (durable settings: fsync and synchronous_commit on) with one
# database per server; makes an ECDSA P-256 root and intermediate for cfssl
# (certctl init makes the same for certctl); starts both servers on loopback;
# and runs loadgen against each in turn (never both at once) with the same
# CSR file, ROUNDS times, alternating which goes first. It then checks that
# both databases hold the certificates and prints both sides and the ratios.
# Everything lives in a temporary directory removed on exit.
#
# Usage: bench/api-vs-cfssl.sh      (from any directory; `make bench-api`)
# Environment: COUNT (3000), WARMUP (300), CONCURRENCY (8), ROUNDS (3),
#   PGBIN (/usr/lib/postgresql/15/bin), KEEP=1 keeps the temporary directory,
#   PROFILE=1 records a `perf` CPU profile of certctl serve during its last
#   measured run and prints the top symbols.
# Needs: go, PostgreSQL 15 server binaries, psql, curl, jq (and perf for PROFILE=1).
# As root, PostgreSQL runs as user postgres (runuser).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

COUNT=${COUNT:-3000}
WARMUP=${WARMUP:-300}
CONCURRENCY=${CONCURRENCY:-8}
ROUNDS=${ROUNDS:-3}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
CFSSL_VERSION=v1.6.5

BENCH=api-vs-cfssl
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_init go psql curl jq "$PGBIN/initdb" "$PGBIN/pg_ctl"
log_machine

# --- build ---------------------------------------------------------------
log "build certctl, loadgen, cfssl $CFSSL_VERSION"
if ! grep -q "github.com/cloudflare/cfssl $CFSSL_VERSION" go.mod; then
	echo "api-vs-cfssl: go.mod does not require github.com/cloudflare/cfssl $CFSSL_VERSION" >&2
	exit 1
fi
go build -o "$W/certctl" ./cmd/certctl
go build -o "$W/loadgen" ./bench/loadgen
go build -o "$W/cfssl" github.com/cloudflare/cfssl/cmd/cfssl
go build -o "$W/cfssljson" github.com/cloudflare/cfssl/cmd/cfssljson
log "$("$W/certctl" version) / $("$W/cfssl" version | tr '\n' ' ')"

# --- PostgreSQL ----------------------------------------------------------
start_pg cfssl certctl
DSN_CFSSL="postgres://postgres@127.0.0.1:$PGPORT/cfssl?sslmode=disable"
DSN_CERTCTL="postgres://postgres@127.0.0.1:$PGPORT/certctl?sslmode=disable"

cfssl_schema cfssl

# --- cfssl CA: ECDSA P-256 root and intermediate, like certctl init ------
cfssl_ca http://127.0.0.1:8081/ocsp
CFSSL_PORT=$(freeport)
"$W/cfssl" serve -address 127.0.0.1 -port "$CFSSL_PORT" -ca "$C/inter.pem" -ca-key "$C/inter-key.pem" \
	-config "$C/config.json" -db-config "$C/db.json" >"$W/cfssl.log" 2>&1 &
CFSSL_PID=$!
PIDS+=("$CFSSL_PID")
wait_http "http://127.0.0.1:$CFSSL_PORT/api/v1/cfssl/info" -X POST -d '{}'
log "cfssl serve (pid $CFSSL_PID) on http://127.0.0.1:$CFSSL_PORT"

# --- certctl CA and server ----------------------------------------------
D="$W/certctl-ca"
"$W/certctl" init --dir "$D" --db "$DSN_CERTCTL" >"$W/certctl-init.log"
"$W/certctl" db migrate --dir "$D" --db "$DSN_CERTCTL" >>"$W/certctl-init.log"
API_PORT=$(freeport)
HTTP_PORT=$(freeport)
"$W/certctl" serve --dir "$D" --addr "127.0.0.1:$API_PORT" --http-addr "127.0.0.1:$HTTP_PORT" --rate 0 \
	>"$W/certctl.out" 2>"$W/certctl.log" &
CERTCTL_PID=$!
PIDS+=("$CERTCTL_PID")
wait_http "https://127.0.0.1:$API_PORT/healthz" --cacert "$D/root.crt"
TOKEN=$("$W/certctl" token create --admin --ttl 1h --dir "$D" --description "api-vs-cfssl benchmark" | tail -n 1)
log "certctl serve (pid $CERTCTL_PID) on https://127.0.0.1:$API_PORT (TLS; cfssl serve is plain HTTP)"

# --- load ----------------------------------------------------------------
"$W/loadgen" --gen --csrs $((WARMUP + COUNT)) --csr-file "$W/csrs.pem"
common=(--csr-file "$W/csrs.pem" --concurrency "$CONCURRENCY" --count "$COUNT" --warmup "$WARMUP")
# measure NAME ROUND PID CMD…: runs the loadgen command CMD, then prints its
# summary line and the CPU the server (PID) and PostgreSQL used per issued
# certificate (warm-up included), and adds those to the JSON summary.
measure() {
	local name=$1 round=$2 pid=$3
	shift 3
	local s0 p0 s1 p1 n load
	load=$(cut -d' ' -f1 /proc/loadavg)
	s0=$(cpu_ms "$pid")
	p0=$(pg_cpu_ms)
	"$@" >"$W/$name-$round.out" || { cat "$W/$name-$round.out"; return 1; }
	s1=$(cpu_ms "$pid")
	p1=$(pg_cpu_ms)
	n=$((WARMUP + COUNT))
	jq --argjson s "$(((s1 - s0) * 1000 / n))" --argjson p "$(((p1 - p0) * 1000 / n))" --arg load "$load" \
		'. + {server_cpu_us_per_cert: $s, postgres_cpu_us_per_cert: $p, loadavg_before: ($load | tonumber)}' \
		"$W/$name-$round.json" >"$W/$name-$round.tmp" && mv "$W/$name-$round.tmp" "$W/$name-$round.json"
	echo "round $round: $(tail -n 1 "$W/$name-$round.out"); CPU per cert: server $(((s1 - s0) * 1000 / n)) µs, PostgreSQL $(((p1 - p0) * 1000 / n)) µs; load average before $load"
}
run_cfssl() {
	measure cfssl "$1" "$CFSSL_PID" "$W/loadgen" --target cfssl --label "cfssl serve $CFSSL_VERSION" \
		--url "http://127.0.0.1:$CFSSL_PORT" --json "$W/cfssl-$1.json" "${common[@]}"
}
run_certctl() {
	local perf_pid=
	if [ "${PROFILE:-0}" = 1 ] && [ "$1" = "$ROUNDS" ]; then
		perf record -F 499 -g -o "$W/perf.data" -p "$CERTCTL_PID" >"$W/perf.log" 2>&1 &
		perf_pid=$!
	fi
	measure certctl "$1" "$CERTCTL_PID" "$W/loadgen" --target certctl --label "certctl serve" \
		--url "https://127.0.0.1:$API_PORT" --token "$TOKEN" --cacert "$D/root.crt" --json "$W/certctl-$1.json" "${common[@]}"
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid"
		wait "$perf_pid" || true
	fi
}
log "load: $ROUNDS rounds; per round and server $WARMUP warm-up + $COUNT measured requests, concurrency $CONCURRENCY, same $((WARMUP + COUNT)) ECDSA P-256 CSRs"
for r in $(seq "$ROUNDS"); do
	if [ $((r % 2)) = 1 ]; then
		run_cfssl "$r"
		run_certctl "$r"
	else
		run_certctl "$r"
		run_cfssl "$r"
	fi
done

# --- check both databases ------------------------------------------------
want=$((ROUNDS * (WARMUP + COUNT)))
n_cfssl=$("${PSQL[@]}" -d cfssl -c "SELECT count(*) FROM certificates WHERE status = 'good' AND common_name LIKE '%.bench.internal'")
n_certctl=$("${PSQL[@]}" -d certctl -c "SELECT count(*) FROM certificates WHERE status = 2 AND subject LIKE '%.bench.internal%'")
log "certificates recorded: cfssl $n_cfssl, certctl $n_certctl (requests sent to each: $want)"
if [ "$n_cfssl" != "$want" ] || [ "$n_certctl" != "$want" ]; then
	echo "api-vs-cfssl: a database does not hold every issued certificate" >&2
	exit 1
fi

# --- results -------------------------------------------------------------
log "results (median of $ROUNDS rounds; each round $COUNT measured requests)"
jq -rs --argjson rounds "$ROUNDS" '
	def median: sort | if length % 2 == 1 then .[length/2|floor] else (.[length/2-1] + .[length/2]) / 2 end;
	def side($t): map(select(.target == $t)) | {
		label: .[0].label,
		cps: (map(.certs_per_sec) | median), p50: (map(.p50_ms) | median),
		p99: (map(.p99_ms) | median), max: (map(.max_ms) | median),
		cps_all: map(.certs_per_sec | round), p99_all: map(.p99_ms),
		scpu: (map(.server_cpu_us_per_cert) | median), pcpu: (map(.postgres_cpu_us_per_cert) | median)};
	(side("cfssl")) as $a | (side("certctl")) as $b |
	"\($a.label): \($a.cps | round) certs/s, p50 \($a.p50) ms, p99 \($a.p99) ms, max \($a.max) ms (rounds: certs/s \($a.cps_all), p99 \($a.p99_all)); CPU/cert: server \($a.scpu) µs, PostgreSQL \($a.pcpu) µs",
	"\($b.label): \($b.cps | round) certs/s, p50 \($b.p50) ms, p99 \($b.p99) ms, max \($b.max) ms (rounds: certs/s \($b.cps_all), p99 \($b.p99_all)); CPU/cert: server \($b.scpu) µs, PostgreSQL \($b.pcpu) µs",
	"ratio certs/s certctl/cfssl: \($b.cps / $a.cps * 100 | round / 100)x (goal >= 5x: \(if $b.cps >= 5 * $a.cps then "met" else "MISSED" end))",
	"ratio p99 certctl/cfssl: \($b.p99 / $a.p99 * 100 | round / 100) (goal <= 0.33: \(if $b.p99 * 3 <= $a.p99 then "met" else "MISSED" end))"
' "$W"/cfssl-*.json "$W"/certctl-*.json

if [ -n "${PROFILE:-}" ] && [ "$PROFILE" = 1 ] && [ -f "$W/perf.data" ]; then
	log "perf: certctl serve during its last measured run"
	# awk, not head: under pipefail an early-closing reader fails the pipeline.
	log "perf: inclusive time of the main code paths"
	perf report -i "$W/perf.data" --children --sort symbol --stdio -g none 2>/dev/null | awk '/%/ {print $1, $4}' |
		grep -E '[ /](server\.\(\*Server\)\.(handleIssue|issue|audit|authn)|ca\.\(\*CA\)\.Issue|issuance\.(\(\*Issuer\)\.(Prepare|Issue)|lintCertificate|ParseCSR)|v3\.LintCertificateEx|ecdsa\.(SignASN1|VerifyASN1)|postgres\.\(\*Store\)\.[A-Za-z]+|tls\.\(\*Conn\)\.(Read|Write)|slog\.\(\*Logger\)\.log|json\.\(\*Decoder\)\.Decode|server\.writeJSON|runtime\.gcBgMarkWorker|finish_task_switch\.isra\.0)$' |
		awk '{printf "  %8s  %s\n", $1, $2}' || true
	log "perf: self time by symbol (top 25)"
	perf report -i "$W/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null | grep '%' |
		awk 'NR <= 25 {printf "  %8s  %s\n", $1, $3}' || true
fi
