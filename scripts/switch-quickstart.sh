#!/usr/bin/env bash
# Attaches two "containers" to a running ferrovia-switch started with its built-in default
# (cargo run --release -p ferrovia-switch): our testpmd on virtio-user ports vhu0 and vhu1.
# Container 1 (vhu0) answers in macswap mode; container 2 (vhu1) sends to container 1's MAC in
# txonly mode. After SECONDS (default 5) it prints the switch's ports, FDB and PMD counters and
# stops the containers. No root, no hugepages.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
RUN=${FERROVIA_RUN_DIR:-${XDG_RUNTIME_DIR:+$XDG_RUNTIME_DIR/ferrovia}}
RUN=${RUN:-/tmp/ferrovia-$(id -u)}
CTL=target/release/ferrovia-ctl
TESTPMD=target/release/testpmd
cargo build --release -q -p ferrovia-testpmd -p ferrovia-switch
if ! "$CTL" --socket "$RUN/switch.sock" show >/dev/null 2>&1; then
    echo "switch-quickstart: no switch answers on $RUN/switch.sock; start it first:" >&2
    echo "    cargo run --release -p ferrovia-switch" >&2
    exit 1
fi
C1=02:00:00:00:c1:01
C2=02:00:00:00:c2:01
"$TESTPMD" -l 0 --no-pci --vdev "net_virtio_user0,path=$RUN/vhu0.sock,mac=$C1" -- \
    --forward-mode=macswap --stats-period 60 >/tmp/ferrovia-quickstart-c1.log 2>&1 &
P1=$!
"$TESTPMD" -l 1 --no-pci --vdev "net_virtio_user0,path=$RUN/vhu1.sock,mac=$C2" -- \
    --forward-mode=txonly --eth-peer=0,$C1 --stats-period 60 >/tmp/ferrovia-quickstart-c2.log 2>&1 &
P2=$!
trap 'kill -INT $P1 $P2 2>/dev/null || true; wait $P1 $P2 2>/dev/null || true' EXIT
sleep "$SECS"
echo "== ferrovia-ctl show (after ${SECS} s: container 2 sends to container 1, which answers)"
"$CTL" --socket "$RUN/switch.sock" show
echo "== ferrovia-ctl show fdb br0"
"$CTL" --socket "$RUN/switch.sock" show fdb br0
echo "== ferrovia-ctl show pmd-stats"
"$CTL" --socket "$RUN/switch.sock" show pmd-stats
