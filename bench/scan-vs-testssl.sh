#!/usr/bin/env bash
# scan-vs-testssl.sh: `certctl scan` vs testssl.sh and sslscan (Debian
# packages) against the same local endpoints, in one run, on this machine.
#
# Endpoints: openssl s_server on 127.0.0.1, one port each, with certificates
# from bench/scanfixtures (a root, an intermediate, leaves for localhost and
# 127.0.0.1):
#   modern      ECDSA P-256 leaf + intermediate, OpenSSL defaults (TLS 1.2, 1.3)
#   legacy      RSA-2048, TLS 1.0-1.3 and every suite OpenSSL has (SECLEVEL=0: 3DES, CBC, non-PFS)
#   expired     expired leaf
#   selfsigned  self-signed leaf, no chain
#   wrongname   leaf for other.example only
#   nochain     the modern leaf without its intermediate
#   rsa1024     RSA-1024 leaf (SECLEVEL=0)
#   mtls        the modern endpoint requiring a client certificate from root.pem (-Verify 1 -verify_return_error)
# Each endpoint is scanned by each tool in turn (never two at once):
#   certctl scan --json --ca-bundle root.pem 127.0.0.1:PORT
#   testssl --add-ca root.pem --jsonfile … 127.0.0.1:PORT   (its default full run)
#   sslscan --xml=… 127.0.0.1:PORT
# and the wall time of each is recorded. bench/scan-compare.py then compares
# what they found: protocol versions, cipher suites (by IANA code point),
# and certificate issues (expired, trusted against root.pem, name match,
# self-signed, key size), and prints every disagreement.
#
# Range timing: s_server on three addresses of 127.0.1.0/24 (the whole of
# 127/8 is on the loopback interface on Linux; unused addresses refuse at
# once), `certctl scan 127.0.1.0/24` RUNS times; then 192.0.2.0/24 (TEST-NET-1,
# nothing answers: the probes are refused or time out, --probe-timeout 1s).
#
# Usage: bench/scan-vs-testssl.sh   (`make bench-scan`)
# Environment: ENDPOINTS (space-separated subset of the names above),
#   RUNS (3), KEEP=1 (keep the work directory), NO_TESTSSL=1.
# Needs: go, openssl, python3, testssl.sh and sslscan (installed with apt-get
#   when missing and running as root).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ENDPOINTS=${ENDPOINTS:-"modern legacy expired selfsigned wrongname nochain rsa1024 mtls"}
RUNS=${RUNS:-3}
BASEPORT=${BASEPORT:-24400}

missing=()
command -v testssl >/dev/null 2>&1 || command -v testssl.sh >/dev/null 2>&1 || missing+=(testssl.sh)
command -v sslscan >/dev/null 2>&1 || missing+=(sslscan)
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "missing ${missing[*]}: install with sudo apt-get install -y ${missing[*]}" >&2
		exit 1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null
fi
TESTSSL=$(command -v testssl || command -v testssl.sh)

WORK=$(mktemp -d /tmp/scan-bench.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ "${KEEP:-}" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

go build -o "$WORK/certctl" ./cmd/certctl
mkdir -p "$WORK/fx"
go run ./bench/scanfixtures -out "$WORK/fx"
FX=$WORK/fx

# serve NAME PORT ADDR LEAF CHAIN(0/1) EXTRA…
serve() {
	local name=$1 port=$2 addr=$3 leaf=$4 chain=$5
	shift 5
	local args=(-accept "$addr:$port" -cert "$FX/$leaf.crt" -key "$FX/$leaf.key" -www -quiet)
	[ "$chain" = 1 ] && args+=(-cert_chain "$FX/inter.pem")
	openssl s_server "${args[@]}" "$@" >"$WORK/$name.server.log" 2>&1 &
	PIDS+=($!)
}

wait_port() { # ADDR PORT
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	echo "endpoint $1:$2 did not start" >&2
	exit 1
}

port_of() {
	local i=0
	for n in modern legacy expired selfsigned wrongname nochain rsa1024 mtls; do
		[ "$n" = "$1" ] && { echo $((BASEPORT + i)); return; }
		i=$((i + 1))
	done
	echo "unknown endpoint $1" >&2
	exit 2
}

for name in $ENDPOINTS; do
	port=$(port_of "$name")
	case $name in
	modern) serve "$name" "$port" 127.0.0.1 ecdsa 1 ;;
	legacy) serve "$name" "$port" 127.0.0.1 rsa2048 1 -cipher 'ALL:@SECLEVEL=0' -min_protocol TLSv1 ;;
	expired) serve "$name" "$port" 127.0.0.1 expired 1 ;;
	selfsigned) serve "$name" "$port" 127.0.0.1 selfsigned 0 ;;
	wrongname) serve "$name" "$port" 127.0.0.1 wrongname 1 ;;
	nochain) serve "$name" "$port" 127.0.0.1 ecdsa 0 ;;
	rsa1024) serve "$name" "$port" 127.0.0.1 rsa1024 1 -cipher 'DEFAULT:@SECLEVEL=0' ;;
	mtls) serve "$name" "$port" 127.0.0.1 ecdsa 1 -Verify 1 -verify_return_error -CAfile "$FX/root.pem" ;;
	esac
	wait_port 127.0.0.1 "$port"
done

now_ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }

echo "# certctl scan vs testssl $("$TESTSSL" --version 2>/dev/null | grep -o 'testssl *[0-9.]*' | head -1 | awk '{print $2}') vs sslscan $(sslscan --version | grep -o '[0-9]\.[0-9.]*' | head -1), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs"
echo "# openssl $(openssl version | awk '{print $2}'); certctl $(git rev-parse --short HEAD 2>/dev/null || echo '?') (+ working tree)"
for name in $ENDPOINTS; do
	port=$(port_of "$name")
	t0=$(now_ns)
	"$WORK/certctl" scan --json --fail-below none --ca-bundle "$FX/root.pem" "127.0.0.1:$port" >"$WORK/$name.certctl.json" 2>"$WORK/$name.certctl.err" || true
	t1=$(now_ns)
	if [ "${NO_TESTSSL:-}" != 1 ]; then
		timeout 900 "$TESTSSL" --quiet --color 0 --warnings off --add-ca "$FX/root.pem" --jsonfile "$WORK/$name.testssl.json" \
			"127.0.0.1:$port" >"$WORK/$name.testssl.out" 2>&1 || true
	fi
	t2=$(now_ns)
	timeout 300 sslscan --no-colour --xml="$WORK/$name.sslscan.xml" "127.0.0.1:$port" >"$WORK/$name.sslscan.out" 2>&1 || true
	t3=$(now_ns)
	echo "$name $(secs "$t0" "$t1") $(secs "$t1" "$t2") $(secs "$t2" "$t3")" >>"$WORK/times.txt"
	echo "scanned $name: certctl $(secs "$t0" "$t1")s, testssl $(secs "$t1" "$t2")s, sslscan $(secs "$t2" "$t3")s" >&2
done
python3 bench/scan-compare.py "$WORK" $ENDPOINTS

# A /24 with three live hosts.
RPORT=$((BASEPORT + 50))
for a in 127.0.1.10 127.0.1.77 127.0.1.200; do
	serve "range-$a" "$RPORT" "$a" ecdsa 1
	wait_port "$a" "$RPORT"
done
echo
echo "## certctl scan 127.0.1.0/24 --port $RPORT (3 live hosts, 251 addresses refuse)"
for i in $(seq "$RUNS"); do
	t0=$(now_ns)
	"$WORK/certctl" scan --fail-below none --ca-bundle "$FX/root.pem" --port "$RPORT" 127.0.1.0/24 >"$WORK/range.out" 2>"$WORK/range.err"
	t1=$(now_ns)
	echo "run $i: $(secs "$t0" "$t1") s; $(grep -cE '^127\.0\.1\.[0-9]+:[0-9]+ +[A-FTM]' "$WORK/range.out") endpoints graded: $(grep -o 'probed.*' "$WORK/range.err")"
done
echo
echo "## certctl scan 192.0.2.0/24 --port 443 (TEST-NET-1: no host answers)"
t0=$(now_ns)
"$WORK/certctl" scan --fail-below none 192.0.2.0/24 >"$WORK/testnet.out" 2>"$WORK/testnet.err" || true
t1=$(now_ns)
echo "$(secs "$t0" "$t1") s: $(grep -o 'probed.*' "$WORK/testnet.err" || cat "$WORK/testnet.err")"
