#!/usr/bin/env bash
# The PVP benchmark (issue 20): ferrovia-pvp with our testpmd, DPDK's dpdk-testpmd and our
# vSwitch as the host, side by side in one run, rounds in ABBA order, NDR/PDR at 64 and 1518 B
# (60 and 1514 without FCS), latency at 10/50/90 % of NDR, the results template, JSON and the
# HTML report.
#
# Usage: scripts/bench-pvp.sh [OUT_PREFIX] [extra ferrovia-pvp options]    (root: DPDK's
#        testpmd needs hugepages; installs dpdk if missing)
#   OUT_PREFIX   where the results go: OUT_PREFIX.json, OUT_PREFIX.html, OUT_PREFIX.txt
#                (default docs/bench/pvp-$(date +%F))
#   PVP_HOSTS    hosts to compare (default ours,dpdk,switch)
#   PVP_ROUNDS   rounds per host and size (default 3)
#   PVP_SIZES    frame sizes without FCS (default 60,1514)
#
# Extra options go to ferrovia-pvp, e.g. --queue-size 32768 --line-rate 40Gbps for rings that
# ride out a VM's vCPU stalls (see docs/performance.md, "PVP").
#
# On a 2-CPU machine the host forwarder runs on CPU 0 and the generator with the in-process
# VNF on CPU 1 (ferrovia-pvp's single-process mode). Run it on a quiet machine: a zero-loss
# search is the measure most hurt by other work, as every descheduled poller loses frames.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-docs/bench/pvp-$(date +%F)}
shift || true
HOSTS=${PVP_HOSTS:-ours,dpdk,switch}
ROUNDS=${PVP_ROUNDS:-3}
SIZES=${PVP_SIZES:-60,1514}

if [[ $HOSTS == *dpdk* ]]; then
    command -v dpdk-testpmd >/dev/null || { apt-get update -qq && apt-get install -y -qq dpdk >/dev/null; }
    have=$(awk '/HugePages_Total/ {print $2}' /proc/meminfo)
    if (( have < 1024 )); then echo 1024 > /proc/sys/vm/nr_hugepages; fi
    mountpoint -q /dev/hugepages || mount -t hugetlbfs none /dev/hugepages
fi
cargo build --release -q -p ferrovia-testpmd -p ferrovia-pktgen -p ferrovia-switch
mkdir -p "$(dirname "$OUT")"
{
    echo "# scripts/bench-pvp.sh on $(hostname) at $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD)"
    echo "# $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
} > "$OUT.txt"
target/release/ferrovia-pvp --host "$HOSTS" --sizes "$SIZES" --rounds "$ROUNDS" \
    --initial-duration 0.5 --final-duration 1 --phases 2 --width 0.01 \
    --latency-duration 2 --json "$OUT.json" --report "$OUT.html" "$@" \
    2> >(tee "$OUT.log" >&2) | tee -a "$OUT.txt"
echo "results: $OUT.txt $OUT.json $OUT.html (trial log $OUT.log)"
