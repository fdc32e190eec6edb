# bench/lib.sh: what the benchmark scripts share. Source it after setting
# BENCH (the script's name, for messages) and PGBIN; then call bench_init.
#
#   bench_init TOOL…     check tools, make the work directory $W (removed on
#                        exit unless KEEP=1), stop $PIDS and PostgreSQL on exit
#   start_pg [DB…]       a throwaway PostgreSQL cluster with durable settings
#                        (fsync, synchronous_commit, full_page_writes on) on
#                        $PGPORT, databases DB…; sets PSQL (an array)
#   cfssl_schema DB      cfssl $CFSSL_VERSION's certdb schema into DB
#   cfssl_ca OCSP_URL    a cfssl root + intermediate CA and its config in $C
#   as_pg, freeport, wait_http URL [curl args…], stop PID, log, log_machine,
#   cpu_ms PID, pg_cpu_ms

# as_pg runs a PostgreSQL server binary: as user postgres when we are root
# (initdb and postgres refuse to run as root).
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

freeport() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
		echo $((20000 + RANDOM % 20000))
}

# wait_http URL [curl args…]: wait up to 30 s for a response.
wait_http() {
	local url=$1
	shift
	for _ in $(seq 300); do
		if curl -s -o /dev/null --max-time 2 "$@" "$url"; then return 0; fi
		sleep 0.1
	done
	echo "$BENCH: $url did not answer in 30 s" >&2
	return 1
}

# stop PID: stop one process we started and forget it.
stop() {
	kill "$1" 2>/dev/null && wait "$1" 2>/dev/null || true
	local keep=() p
	for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

log() { echo "== $*"; }

log_machine() {
	log "machine: $(nproc) CPUs, $(uname -sr), $(go version | cut -d' ' -f3-), load average $(cut -d' ' -f1-3 /proc/loadavg)"
	log "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
}

# CPU time (ms) used so far by a process, and by the PostgreSQL cluster
# (the postmaster, its live children, and the children it has reaped, such as
# backends of closed connections).
HZ=$(getconf CLK_TCK)
cpu_ms() { awk -v hz="$HZ" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$1/stat"; }
pg_cpu_ms() {
	local pm t p
	pm=$(head -n 1 "$W/pg/data/postmaster.pid")
	t=$(awk -v hz="$HZ" '{print int(($14 + $15 + $16 + $17) * 1000 / hz)}' "/proc/$pm/stat")
	for p in $(pgrep -P "$pm"); do t=$((t + $(cpu_ms "$p" 2>/dev/null || echo 0))); done
	echo "$t"
}

bench_cleanup() {
	local rc=$?
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	done
	if [ -f "$W/pg/data/postmaster.pid" ]; then
		as_pg "$PGBIN/pg_ctl" -D "$W/pg/data" -m fast -w stop >/dev/null 2>&1 || true
	fi
	if [ "${KEEP:-0}" = 1 ]; then echo "$BENCH: kept $W" >&2; else rm -rf "$W"; fi
	exit $rc
}

bench_init() {
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null || { echo "$BENCH: $tool not found" >&2; exit 1; }
	done
	W=$(mktemp -d "${TMPDIR:-/tmp}/certctl-$BENCH.XXXXXX")
	chmod 755 "$W" # the postgres user must traverse it
	PIDS=()
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

start_pg() {
	PGPORT=$(freeport)
	mkdir -p "$W/pg"
	[ "$(id -u)" = 0 ] && chown postgres:postgres "$W/pg"
	as_pg "$PGBIN/initdb" -D "$W/pg/data" -U postgres --auth-local=trust --auth-host=trust \
		-E UTF8 --locale=C.UTF-8 >"$W/pg/initdb.log"
	# Durable settings: PostgreSQL's defaults, made explicit so that the
	# run's log shows them.
	cat >>"$W/pg/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$W/pg'
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 200
CONF
	as_pg "$PGBIN/pg_ctl" -D "$W/pg/data" -l "$W/pg/server.log" -w -t 60 start >/dev/null
	PSQL=(psql -h 127.0.0.1 -p "$PGPORT" -U postgres -X -q -At -v ON_ERROR_STOP=1)
	local db
	for db in "$@"; do
		"${PSQL[@]}" -d postgres -c "CREATE DATABASE $db"
	done
	log "PostgreSQL $("${PSQL[@]}" -d postgres -c 'SHOW server_version') on port $PGPORT:" \
		"$("${PSQL[@]}" -d postgres -c "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync','synchronous_commit','full_page_writes','wal_sync_method','shared_buffers')")"
}

# cfssl_schema DB: cfssl's own certdb schema (the "-- +goose Up" half of each
# migration) into DB.
cfssl_schema() {
	local migrations f
	migrations="$(go env GOMODCACHE)/github.com/cloudflare/cfssl@$CFSSL_VERSION/certdb/pg/migrations"
	[ -d "$migrations" ] || go mod download "github.com/cloudflare/cfssl@$CFSSL_VERSION"
	for f in "$migrations"/*.sql; do
		sed -n '/^-- +goose Up/,/^-- +goose Down/p' "$f" | "${PSQL[@]}" -d "$1"
	done
}

# cfssl_ca OCSP_URL: a cfssl CA in $C ($W/cfssl-ca) like `certctl init`: an
# ECDSA P-256 root and intermediate (inter.pem, inter-key.pem), config.json
# with profiles "server" (matching certctl's default: 30 days,
# digitalSignature, serverAuth, with OCSP_URL and CRL/caIssuers URLs; certctl
# also backdates 1 min), "intermediate" and "ocsp" (a delegated responder),
# and db.json pointing at $DSN_CFSSL.
cfssl_ca() {
	C="$W/cfssl-ca"
	mkdir -p "$C"
	cat >"$C/config.json" <<JSON
{
  "signing": {
    "default": {"expiry": "720h", "usages": ["digital signature", "server auth"]},
    "profiles": {
      "server": {
        "expiry": "720h",
        "usages": ["digital signature", "server auth"],
        "ocsp_url": "$1",
        "crl_url": "http://127.0.0.1:8081/crl",
        "issuer_urls": ["http://127.0.0.1:8081/ca.crt"]
      },
      "intermediate": {
        "expiry": "43800h",
        "usages": ["cert sign", "crl sign", "digital signature"],
        "ca_constraint": {"is_ca": true, "max_path_len": 0, "max_path_len_zero": true}
      },
      "ocsp": {"expiry": "720h", "usages": ["digital signature", "ocsp signing"]}
    }
  }
}
JSON
	echo '{"CN": "cfssl Bench Root", "key": {"algo": "ecdsa", "size": 256}, "ca": {"expiry": "87600h"}}' >"$C/root.json"
	echo '{"CN": "cfssl Bench Intermediate", "key": {"algo": "ecdsa", "size": 256}}' >"$C/inter.json"
	(
		cd "$C"
		"$W/cfssl" gencert -loglevel 2 -initca root.json | "$W/cfssljson" -bare root
		"$W/cfssl" genkey -loglevel 2 inter.json | "$W/cfssljson" -bare inter
		"$W/cfssl" sign -loglevel 2 -ca root.pem -ca-key root-key.pem -config config.json -profile intermediate inter.csr |
			"$W/cfssljson" -bare inter
	)
	printf '{"driver": "postgres", "data_source": "%s"}\n' "$DSN_CFSSL" >"$C/db.json"
}
