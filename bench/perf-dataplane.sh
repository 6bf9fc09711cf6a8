#!/bin/sh
# Issue 13: profile the data plane. Builds lbd and bench, then runs
# `bench profile` (bench/profile.go): direct, lbd and nftlb (rr, snat) in
# the bench's own rigs under wrk CPS (Connection: close) and keep-alive
# loads, `perf record -a -g -e cpu-clock` over each run, CPU per request by
# kernel area, top symbols, each contender's ruleset and the nftrace of one
# connection; then lbd's daemon variants (up / killed / killed with
# nf_conntrack_acct=0), lbd's conntrack DESTROY reader alone against none
# (bench ctevents), and keep-alive with a software flowtable off/on.
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
"$out/bench" profile -lbd "$out/lbd" -out "$out" -reps 2 -dur 8s -variants 2 -readers 3 -flowtable 3 "$@"
uptime | tee "$out/uptime-after.txt"
# The rule walk per packet: one line per packet (a new packet starts at
# the trace table's prerouting hook), with the chains it entered in the
# contender's tables and the rules that matched there (nftrace reports
# matched rules and policies, not rules that were tried and failed).
for t in "$out"/*.trace.txt; do
	echo "== rule walk per packet: $t"
	awk '
	function flush() { if (f != "") print hdr " | " n " rules matched:" walk; walk = ""; n = 0 }
	$5 == "lbdperftrace" && $7 == "packet:" {
		flush(); f = ""; iif = ""; hdr = ""
		for (i = 8; i <= NF; i++) { if ($i == "iif") iif = $(i+1); if ($i == "flags") f = $(i+2) }
		hdr = "iif " iif " tcp flags " f; next }
	$5 == "lbdperftrace" { next }
	$7 == "packet:" { walk = walk " [" $5 "/" $6 "]"; next }
	$7 == "rule" { n++; v = $0; sub(/.*\(verdict /, "", v); sub(/\).*/, "", v); walk = walk " " $6 ":rule(" v ")"; next }
	$7 == "policy" { walk = walk " " $6 ":policy-" $8; next }
	END { flush() }' "$t"
done
