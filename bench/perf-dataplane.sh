#!/bin/sh
# Issue 13: profile the data plane. Builds lbd and bench, then runs
# `bench profile` (bench/profile.go): direct, lbd and nftlb (rr, snat) in
# the bench's own rigs under wrk CPS (Connection: close) and keep-alive
# loads, `perf record -a -g -e cpu-clock` over each run, CPU per request by
# kernel area, top symbols, each contender's ruleset and the nftrace of one
# connection; then lbd's daemon variants (up / killed / killed with
# nf_conntrack_acct=0) and keep-alive with a software flowtable off/on.
# Needs root, perf (linux-perf), wrk, nftlb, nginx, iperf3, conntrack.
# Usage: bench/perf-dataplane.sh [OUTDIR] [extra bench profile flags...]
# Writes OUTDIR/summary.md (default out/profile) and prints it.
set -eu
cd "$(dirname "$0")/.."
out=${1:-out/profile}
[ $# -gt 0 ] && shift
./scripts/apt-ensure linux-perf wrk nftlb nginx iperf3 conntrack nftables >/dev/null
mkdir -p "$out"
CGO_ENABLED=0 go build -o "$out/lbd" ./cmd/lbd
CGO_ENABLED=0 go build -o "$out/bench" ./bench
uptime | tee "$out/uptime-before.txt"
"$out/bench" profile -lbd "$out/lbd" -out "$out" -reps 2 -dur 8s -variants 2 -flowtable 3 "$@"
uptime | tee "$out/uptime-after.txt"
# The rule walk per packet: for each traced packet (trace id), the
# chains and rules it matched in the contender's tables (the trace table
# lbdperftrace itself left out).
for t in "$out"/*.trace.txt; do
	echo "== rule walk per packet: $t"
	awk '$4 != "lbdperftrace" && ($6 == "rule" || $6 == "policy" || $6 == "packet:") {
		if ($6 == "packet:") { for (i = 7; i <= NF; i++) if ($i == "flags") { f = $(i+2); break } ; pk[$3] = pk[$3] " [" $4 "/" $5 " flags " f "]"; next }
		n[$3]++ ; pk[$3] = pk[$3] " " $5 ":" $6 }
		END { for (k in pk) print k, (n[k] + 0) " rules matched:" pk[k] }' "$t"
done
