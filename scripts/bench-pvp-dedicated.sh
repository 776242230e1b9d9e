#!/usr/bin/env bash
# The PVP benchmark with a core for each component, as the how-to runs it: the host forwarder,
# the generator and the VNF (our testpmd in macswap on two virtio-user ports) each on its own
# physical core, ours and DPDK's dpdk-testpmd as the host side by side, one ferrovia-pvp run
# per frame size. Needs 5 CPUs or more: CPUs 0 and 1 (and their SMT siblings) are left to the
# system. On 2-4 CPUs use scripts/bench-pvp.sh, whose single-process mode shares a CPU.
#
# Usage: scripts/bench-pvp-dedicated.sh [OUT_PREFIX]       (root: DPDK needs hugepages)
#   OUT_PREFIX       results: OUT_PREFIX-SIZE.{txt,json,html,log} (default
#                    docs/bench/pvp-$(date +%F)-dedicated)
#   PVP_ROUNDS       rounds per host and size (default 1)
#   PVP_SIZES        frame sizes without FCS (default 1514,60)
#   PVP_TIMEOUT      seconds allowed per size (default 600)
#   PVP_BIN          folder with ferrovia-pvp and testpmd (default: build target/release)
#   PVP_DPDK_BUNDLE  a folder made by scripts/dpdk-bundle.sh, for a machine without DPDK
#   PVP_CPUS         "HOST GEN VNF" to choose the CPUs yourself
# Extra options go to every ferrovia-pvp run (later ones win).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-docs/bench/pvp-$(date +%F)-dedicated}
shift || true
ROUNDS=${PVP_ROUNDS:-1}
SIZES=${PVP_SIZES:-1514,60}
if [[ -n ${PVP_DPDK_BUNDLE:-} ]]; then
    [[ -x $PVP_DPDK_BUNDLE/bin/dpdk-testpmd ]] || { echo "bench-pvp-dedicated: $PVP_DPDK_BUNDLE/bin/dpdk-testpmd is missing (make the folder with scripts/dpdk-bundle.sh)" >&2; exit 1; }
    export PATH=$PVP_DPDK_BUNDLE/bin:$PATH
elif ! command -v dpdk-testpmd >/dev/null; then
    apt-get update -qq && apt-get install -y -qq dpdk >/dev/null
fi
if [[ -n ${PVP_CPUS:-} ]]; then
    read -r H G V <<< "$PVP_CPUS"
else
    # The first CPU of each of three physical cores on CPU 2's socket, none shared with CPU 0
    # or CPU 1.
    read -r H G V < <(lscpu -p=CPU,CORE,SOCKET | grep -v '^#' | awk -F, '
        { core[$1] = $2; sock[$1] = $3; last = $1 }
        END {
            used[core[0]] = 1; used[core[1]] = 1; k = 0
            for (i = 2; i <= last && k < 3; i++)
                if (sock[i] == sock[2] && !(core[i] in used)) { used[core[i]] = 1; pick[k++] = i }
            if (k == 3) print pick[0], pick[1], pick[2]
        }') || true
fi
if [[ -z ${V:-} ]]; then
    echo "bench-pvp-dedicated: needs three physical cores besides those of CPUs 0 and 1; this machine has $(nproc) CPUs (use scripts/bench-pvp.sh, or set PVP_CPUS=\"HOST GEN VNF\")" >&2
    exit 1
fi
if [[ -z ${PVP_BIN:-} ]]; then
    cargo build --release -q -p ferrovia-testpmd -p ferrovia-pktgen
    PVP_BIN=target/release
fi
have=$(awk '/HugePages_Total/ {print $2}' /proc/meminfo)
if (( have < 1024 )); then echo 1024 > /proc/sys/vm/nr_hugepages; fi
mkdir -p /dev/hugepages
mountpoint -q /dev/hugepages || mount -t hugetlbfs none /dev/hugepages
mkdir -p "$(dirname "$OUT")"
{
    echo "# scripts/bench-pvp-dedicated.sh on $(hostname) at $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "# $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); host on CPU $H, generator on CPU $G, VNF on CPU $V"
    lscpu -p=CPU,CORE,SOCKET,NODE
} > "$OUT-env.txt"
for sz in ${SIZES//,/ }; do
    # The search's ceiling: above what a host reaches on a core, below where it wastes trials.
    if (( sz < 512 )); then max=40Mpps; else max=4Mpps; fi
    rc=0
    timeout "${PVP_TIMEOUT:-600}" "$PVP_BIN/ferrovia-pvp" --host ours,dpdk --vnf ours \
        --testpmd "$PVP_BIN/testpmd" --host-cpu "$H" --gen-cpu "$G" --vnf-cpu "$V" \
        --sizes "$sz" --rounds "$ROUNDS" --line-rate 40Gbps --min-load 0.2Mpps --max-load "$max" \
        --initial-duration 1 --final-duration 1 --phases 1 --width 0.02 --latency-duration 1 \
        --json "$OUT-$sz.json" --report "$OUT-$sz.html" "$@" \
        > "$OUT-$sz.txt" 2> "$OUT-$sz.log" || rc=$?
    if (( rc != 0 )); then
        echo "bench-pvp-dedicated: ferrovia-pvp at $sz B ended with status $rc (124: over PVP_TIMEOUT); its trial log is $OUT-$sz.log" >&2
    fi
    grep -E "ours / dpdk|^ +[0-9]+ +(ours|dpdk) " "$OUT-$sz.txt" || true
done
echo "results: $OUT-<size>.{txt,json,html,log}, machine in $OUT-env.txt"
