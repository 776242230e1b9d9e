#!/usr/bin/env bash
# A real Linux guest (QEMU 7.2, TCG, Debian 6.1 kernel, virtio-net-pci over vhost-user) against
# our vhost port, with our testpmd in macswap mode: every frame the guest's qg-pktcheck sends
# must come back intact with MACs swapped. Cases: our vhost as server (QEMU client) and as
# client (QEMU server), 1 and 2 queue pairs, mergeable buffers off, the packed ring, and QEMU
# killed and restarted twice against the same testpmd (server and client modes). Then
# tests/qemu/vhost-kernel.sh: our testpmd inside the guest on /dev/vhost-net (set
# FERROVIA_QEMU_VHOST_KERNEL=0 to leave it out), and tests/qemu/pvp-vm.sh: the PVP loop with
# the guest as the VNF, driven by ferrovia-pktgen (set FERROVIA_QEMU_PVP_VM=0 to leave it out),
# after tests/qemu/virtio-pci.sh: net_virtio_pci's errors and stop/start in the guest
# (FERROVIA_QEMU_VIRTIO_PCI=0 to leave it out).
#
# Needs the harness in ../shared/tools/qemu-guest (built on first use; installs
# qemu-system-x86 and busybox-static) and target/release/testpmd (built here).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
QG=${QG_TOOLS:-}
if [ -z "$QG" ]; then
    for d in "$ROOT/../shared/tools/qemu-guest" /work/shared/tools/qemu-guest; do
        if [ -x "$d/run-guest.sh" ]; then QG=$d; break; fi
    done
fi
if [ ! -x "$QG/run-guest.sh" ]; then
    echo "qemu tests: harness not found at $QG (set QG_TOOLS)" >&2
    exit 1
fi
"$QG/build-initramfs.sh" >/dev/null 2>&1
cargo build --release -q -p ferrovia-testpmd
TESTPMD=$ROOT/target/release/testpmd
WORK=$(mktemp -d /tmp/ferrovia-qemu.XXXXXX)
trap 'pkill -INT -f "$WORK" 2>/dev/null || true; sleep 1; pkill -KILL -f "$WORK" 2>/dev/null || true; rm -rf "$WORK"' EXIT
fails=0

start_testpmd() { # name vdev queues (TP_EXTRA: more testpmd options)
    # shellcheck disable=SC2086
    "$TESTPMD" -l 0-1 --vdev "$2" -- --forward-mode=macswap --rxq="$3" --txq="$3" --stats-period 1000 \
        ${TP_EXTRA:-} > "$WORK/$1.testpmd.log" 2>&1 &
    echo $!
}

stop_testpmd() { # pid name
    kill -INT "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

guest() { # name sock mode queues devopts
    QG_TESTS=pkt QG_EXPECT=pkt QG_TIMEOUT=90 QG_NETDEV_OPTS=",queues=$4" QG_DEV_OPTS="$5" \
        "$QG/run-guest.sh" "$2" "$3" > "$WORK/$1.guest.log" 2>&1
}

verdict() { # name rc testpmd-name
    local line
    line=$(grep -E 'QG-PKT summary' "$WORK/$1.guest.log" | tail -1 | sed 's/.*summary //')
    if [ "$2" = 0 ] && echo "$line" | grep -q "sent=20 back=20 intact=20 corrupt=0 macswapped=20"; then
        echo "PASS $1: $line"
    else
        echo "FAIL $1 (rc=$2): ${line:-no summary}"
        tail -20 "$WORK/$1.guest.log" | sed 's/^/    guest: /'
        grep -E 'ERROR|WARN' "$WORK/$3.testpmd.log" | head -5 | sed 's/^/    testpmd: /' || true
        fails=$((fails + 1))
    fi
}

# Our vhost listens, QEMU connects; restarts run the guest again against the same testpmd.
client_case() { # name queues devopts runs
    local sock=$WORK/$1.sock pid i rc
    pid=$(start_testpmd "$1" "net_vhost0,iface=$sock,queues=$2" "$2")
    for i in $(seq 1 "$4"); do
        rc=0; guest "$1-boot$i" "$sock" client "$2" "$3" || rc=$?
        verdict "$1-boot$i" "$rc" "$1"
    done
    stop_testpmd "$pid"
}

# QEMU listens, our vhost connects (client=1) and reconnects after each QEMU restart.
server_case() { # name queues devopts runs
    local sock=$WORK/$1.sock pid i rc gpid
    pid=""
    for i in $(seq 1 "$4"); do
        rm -f "$sock"
        guest "$1-boot$i" "$sock" server "$2" "$3" &
        gpid=$!
        for _ in $(seq 1 200); do [ -S "$sock" ] && break; sleep 0.05; done
        [ -n "$pid" ] || pid=$(start_testpmd "$1" "net_vhost0,iface=$sock,queues=$2,client=1" "$2")
        rc=0; wait "$gpid" || rc=$?
        verdict "$1-boot$i" "$rc" "$1"
    done
    stop_testpmd "$pid"
}

t0=$(date +%s)
client_case vhost-server-1q 1 "" 1
client_case vhost-server-2q 2 ",mq=on" 1
client_case vhost-server-nomrg 1 ",mrg_rxbuf=off" 1
client_case vhost-server-packed 1 ",packed=on" 1
client_case vhost-server-restart 1 "" 3
server_case vhost-client-1q 1 "" 1
server_case vhost-client-2q-restart 2 ",mq=on" 3
# Offloads offered (checksums both ways, TSO/LRO with tso=1): the Linux guest negotiates them
# (CSUM, GUEST_CSUM, HOST_TSO4/6, GUEST_TSO4/6) and frames still come back intact.
TP_EXTRA="--enable-rx-cksum --enable-lro --tx-offloads=0x2e" client_case vhost-server-offloads 1 "" 1
# virtio-user over vhost-kernel, inside the guest (its own QEMU run; see vhost-kernel.sh)
if [ "${FERROVIA_QEMU_VHOST_KERNEL:-1}" = 1 ]; then
    if ! tests/qemu/vhost-kernel.sh; then
        echo "FAIL vhost-kernel (tests/qemu/vhost-kernel.sh)"
        fails=$((fails + 1))
    fi
fi
# net_virtio_pci's probing errors and stop/start on a real device (its own QEMU run)
if [ "${FERROVIA_QEMU_VIRTIO_PCI:-1}" = 1 ]; then
    if ! tests/qemu/virtio-pci.sh; then
        echo "FAIL virtio-pci (tests/qemu/virtio-pci.sh)"
        fails=$((fails + 1))
    fi
fi
# PVP with the guest as the VNF (its own QEMU run with two virtio-net devices; see pvp-vm.sh)
if [ "${FERROVIA_QEMU_PVP_VM:-1}" = 1 ]; then
    if ! tests/qemu/pvp-vm.sh; then
        echo "FAIL pvp-vm (tests/qemu/pvp-vm.sh)"
        fails=$((fails + 1))
    fi
fi
echo "qemu tests: $fails failure(s) in $(( $(date +%s) - t0 )) s"
[ "$fails" = 0 ]
