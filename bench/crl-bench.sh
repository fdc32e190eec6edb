#!/usr/bin/env bash
# CRL build benchmarks (bench/RESULTS.md, "Issue 4: CRL build"): each case
# runs in its own process, so that its peak RSS (VmHWM) is not inflated by
# an earlier, larger case. Usage: bash bench/crl-bench.sh [runs] > out.txt
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
go test -c -o /tmp/certctl-bench.test ./bench/
for name in \
	'CRLBuild$/^store=postgres$/^put=yes$/^revoked=100000$' 'CRLBuild$/^store=postgres$/^put=no$/^revoked=100000$' \
	'CRLBuild$/^store=postgres$/^put=yes$/^revoked=1000000$' 'CRLBuild$/^store=postgres$/^put=no$/^revoked=1000000$' \
	'SignCRL$/^revoked=100000$' 'SignCRL$/^revoked=1000000$' \
	'CreateRevocationListStdlib$/^revoked=100000$' 'CreateRevocationListStdlib$/^revoked=1000000$'; do
	for _ in $(seq "$runs"); do
		(cd bench && /tmp/certctl-bench.test -test.run '^$' -test.bench "^Benchmark${name}" -test.benchtime 1x -test.timeout 20m) |
			grep -E '^Benchmark'
	done
done
