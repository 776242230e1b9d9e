#!/usr/bin/env bash
# PVP with a real VM as the VNF (issue 20, item 3b): the loop of docs/pktgen.md with the QEMU
# guest in place of the container VNF.
#
#   ferrovia-pktgen A ─ genA ┐                        ┌ vnf0 ─ 00:04.0 ┐ guest: our testpmd,
#                            ├ host testpmd io ───────┤                │ macswap on
#   ferrovia-pktgen B ─ genB ┘ (4 vhost-user servers) └ vnf1 ─ 00:05.0 ┘ net_virtio_pci
#
# - host: target/release/testpmd in io mode with four vhost-user server ports, in this order:
#   genA, vnf0, genB, vnf1 (paired topology: 0<->1, 2<->3);
# - guest: QEMU (TCG) with two virtio-net-pci devices on vnf0 and vnf1 (vhost-user, QEMU as
#   client, guest memory a shared memfd). tests/qemu/pvp-vm-guest.sh is its /init, appended
#   with our testpmd and its shared libraries as a second cpio to the harness's initramfs (as
#   vhost-kernel.sh does), with the uio and uio_pci_generic modules. With PV_GUEST_PMD=virtio-pci
#   (the default) it binds both functions to uio_pci_generic, reserves hugepages and runs our
#   testpmd with -a 0000:00:04.0 -a 0000:00:05.0 (net_virtio_pci) in macswap mode; with
#   PV_GUEST_PMD=af_packet it brings eth0/eth1 up in promiscuous mode and runs it with
#   --vdev net_af_packet0,iface=eth0 --vdev net_af_packet1,iface=eth1;
# - generator: target/release/ferrovia-pktgen on virtio-user ports on genA and genB, both
#   directions, at a rate the TCG guest carries without loss.
#
# Verdict, from the generator's JSON: per stream, received == sent (PV_MAX_LOSS frames of
# slack, default 0), no duplicates, and no corrupt frame (the generator runs with --verify: every
# byte of every returned frame, MACs aside, is checked). A stream that sent under 90 % of the requested frames
# gets a NOTE (the generator shares its CPU), not a failure.
#
# Exit status: 0 pass (or skipped: no qemu-system-x86_64, no harness), 1 fail, 2 no result
# (the guest did not come up).
# Env: QG_TOOLS (harness), PV_RATE (per stream, default 2kpps), PV_DURATION (5), PV_WARMUP
# (2), PV_SIZE (frame size, default 60), PV_MAX_LOSS (0), PV_SMP (guest vCPUs, 1),
# PV_TIMEOUT (QEMU wall-clock limit, 150 s), PV_HOST_CPU (the host testpmd's CPU, 0),
# PV_GEN_CPU and PV_VM_CPU (the generator's and QEMU's, 1; "-" for anywhere),
# PV_GUEST_MODE (the guest testpmd's forward mode, macswap; rxonly must fail), PV_GUEST_PMD
# (virtio-pci, the default, or af_packet: how the guest's testpmd reaches the devices), PV_TESTPMD
# (the testpmd to run), PV_PVP=0 (leave out the ferrovia-pvp --vnf vm run), PV_NO_BUILD=1 (use the binaries as they are), PV_KEEP=1 (keep the
# work directory).
#
# pvp-vm.sh --vnf-only VNF0_SOCK VNF1_SOCK boots only the guest, against vhost-user sockets
# someone else listens on (ferrovia-pvp --vnf vm does), prints "PV-READY" once the guest
# forwards, and keeps it running until it gets SIGINT or SIGTERM.
set -euo pipefail
VNF_ONLY=
if [ "${1:-}" = --vnf-only ]; then
    [ $# = 3 ] || { echo "usage: $0 [--vnf-only VNF0_SOCK VNF1_SOCK]" >&2; exit 2; }
    VNF_ONLY=1
    VNF0=$(realpath "$2")
    VNF1=$(realpath "$3")
fi
cd "$(dirname "$0")/../.."
ROOT=$PWD
skip() {
    echo "SKIP pvp-vm: $*"
    exit 0
}

QG=${QG_TOOLS:-}
if [ -z "$QG" ]; then
    for d in "$ROOT/../shared/tools/qemu-guest" /work/shared/tools/qemu-guest; do
        if [ -x "$d/build-initramfs.sh" ]; then QG=$d; break; fi
    done
fi
[ -n "$QG" ] && [ -x "$QG/build-initramfs.sh" ] ||
    skip "the QEMU guest harness is not there (looked in ../shared/tools/qemu-guest; set QG_TOOLS)"
command -v qemu-system-x86_64 >/dev/null ||
    skip "qemu-system-x86_64 is not installed (the harness's build-initramfs.sh installs it)"
CACHE=${QG_CACHE:-/var/tmp/qemu-guest}
QG_CACHE=$CACHE "$QG/build-initramfs.sh" >/dev/null 2>&1 ||
    skip "the harness could not build its initramfs ($QG/build-initramfs.sh failed)"
# shellcheck disable=SC1091
. "$CACHE/guest.env"
[ -r "$KERNEL" ] && [ -r "$INITRD" ] || skip "no guest kernel or initramfs in $CACHE"
if [ "${PV_NO_BUILD:-0}" != 1 ] && [ -z "$VNF_ONLY" ]; then
    cargo build --release -q -p ferrovia-testpmd -p ferrovia-pktgen
fi
TESTPMD=$ROOT/target/release/testpmd
PKTGEN=$ROOT/target/release/ferrovia-pktgen
[ -z "${PV_TESTPMD:-}" ] || TESTPMD=$PV_TESTPMD
bins=("$TESTPMD")
[ -n "$VNF_ONLY" ] || bins+=("$PKTGEN")
for b in "${bins[@]}"; do
    [ -x "$b" ] || { echo "FAIL pvp-vm: $b is not built"; exit 1; }
done

RATE=${PV_RATE:-2kpps}
DURATION=${PV_DURATION:-5}
WARMUP=${PV_WARMUP:-2}
SIZE=${PV_SIZE:-60}
MAX_LOSS=${PV_MAX_LOSS:-0}
SMP=${PV_SMP:-1}
TIMEOUT=${PV_TIMEOUT:-150}
HOST_CPU=${PV_HOST_CPU:-0}
GEN_CPU=${PV_GEN_CPU:-1}
VM_CPU=${PV_VM_CPU:-1}
pin() { # cpu: the command prefix that runs a command on that CPU ("" or "-": anywhere)
    if [ -n "$1" ] && [ "$1" != - ] && command -v taskset >/dev/null; then echo "taskset -c $1"; fi
}
MEM=512

WORK=$(mktemp -d /tmp/ferrovia-pvpvm.XXXXXX)
HPID= QPID= GPID= HOLDPID=
stop_pid() { # pid signal: signal it, give it 5 s, then SIGKILL
    local p=$1 i=0
    [ -n "$p" ] || return 0
    kill "-$2" "$p" 2>/dev/null || return 0
    while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}
cleanup() {
    stop_pid "$GPID" INT
    stop_pid "$QPID" TERM
    stop_pid "$HPID" INT
    stop_pid "$HOLDPID" TERM
    exec 3>&-
    if [ "${PV_KEEP:-0}" = 1 ]; then echo "pvp-vm: work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM
T0=$(date +%s.%N)
since() { awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $T0}"; }

# ---- the guest's extra archive: our testpmd, its libraries, /init -------------------------
R=$WORK/root
mkdir -p "$R/bin"
objcopy --strip-debug "$TESTPMD" "$R/bin/testpmd"
for lib in $(ldd "$TESTPMD" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    mkdir -p "$R$(dirname "$lib")"
    cp -L "$lib" "$R$lib"
done
install -m 755 tests/qemu/pvp-vm-guest.sh "$R/init"
# uio and uio_pci_generic for the virtio-pci mode, from the harness's kernel tree.
mkdir -p "$R/lib/modules"
for m in uio uio_pci_generic; do
    ko=$(find "$CACHE/kernel-$KVER" -name "$m.ko" 2>/dev/null | head -1)
    if [ -n "$ko" ]; then cp "$ko" "$R/lib/modules/"; fi
done
(cd "$R" && find . | LC_ALL=C sort | busybox cpio -o -H newc -R 0:0 2>/dev/null) | gzip -1 >"$WORK/extra.cpio.gz"
cat "$INITRD" "$WORK/extra.cpio.gz" >"$WORK/initrd.gz"

# ---- host: testpmd io on genA, vnf0, genB, vnf1 --------------------------------------------
S=$WORK
if [ -n "$VNF_ONLY" ]; then
    VNF0_SOCK=$VNF0 VNF1_SOCK=$VNF1
else
    VNF0_SOCK=$S/vnf0.sock VNF1_SOCK=$S/vnf1.sock
    "$TESTPMD" --no-telemetry --lcores "0@$HOST_CPU,1@$HOST_CPU" \
        --vdev "net_vhost0,iface=$S/genA.sock" --vdev "net_vhost1,iface=$S/vnf0.sock" \
        --vdev "net_vhost2,iface=$S/genB.sock" --vdev "net_vhost3,iface=$S/vnf1.sock" \
        -- --forward-mode=io --stats-period 60 --rxd=1024 --txd=1024 \
        </dev/null >"$WORK/host.log" 2>&1 &
    HPID=$!
    for s in genA vnf0 genB vnf1; do
        i=0
        while [ ! -S "$S/$s.sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        if [ ! -S "$S/$s.sock" ]; then
            echo "FAIL pvp-vm: the host testpmd did not create $s.sock"
            tail -20 "$WORK/host.log" | sed 's/^/    host: /'
            exit 1
        fi
    done
    echo "pvp-vm: host testpmd (io, genA vnf0 genB vnf1) up at $(since) s"
fi

# ---- guest ---------------------------------------------------------------------------------
# The serial console's input is a fifo we hold open on fd 3: one line on it ends the guest's
# run (pv.hold bounds the wait otherwise).
: >"$WORK/console.log"
mkfifo "$WORK/console.in"
exec 3<>"$WORK/console.in"
HOLD=$((TIMEOUT - 20))
QEMU=(qemu-system-x86_64 -accel tcg -cpu max -M pc -smp "$SMP" -m "${MEM}M"
    -object "memory-backend-memfd,id=mem,size=${MEM}M,share=on" -numa node,memdev=mem
    -nodefaults -display none -no-reboot -monitor none -serial stdio
    -kernel "$KERNEL" -initrd "$WORK/initrd.gz"
    -append "console=ttyS0 panic=-1 loglevel=4 pv.hold=$HOLD pv.mode=${PV_GUEST_MODE:-macswap} pv.pmd=${PV_GUEST_PMD:-virtio-pci}"
    -chardev "socket,id=vu0,path=$VNF0_SOCK" -netdev vhost-user,id=net0,chardev=vu0
    -device virtio-net-pci,netdev=net0,mac=52:54:00:00:00:10,vectors=0,addr=0x4,rx_queue_size=1024,tx_queue_size=1024
    -chardev "socket,id=vu1,path=$VNF1_SOCK" -netdev vhost-user,id=net1,chardev=vu1
    -device virtio-net-pci,netdev=net1,mac=52:54:00:00:00:11,vectors=0,addr=0x5,rx_queue_size=1024,tx_queue_size=1024)
echo "pvp-vm: ${QEMU[*]}"
$(pin "$VM_CPU") timeout --kill-after=5 "$TIMEOUT" "${QEMU[@]}" <&3 >"$WORK/console.log" 2>&1 &
QPID=$!
console() { tr -d '\r' <"$WORK/console.log"; }
i=0
while ! console | grep -q '^PV-READY' && kill -0 "$QPID" 2>/dev/null && [ $i -lt 900 ]; do
    sleep 0.1
    i=$((i + 1))
done
if ! console | grep -q '^PV-READY'; then
    echo "FAIL pvp-vm: the guest's testpmd did not come up within $(since) s; console tail:"
    console | tail -30 | sed 's/^/    /'
    exit 2
fi
console | grep -E '^PV: ' | sed 's/^PV: /  guest: /'
echo "pvp-vm: guest forwarding at $(since) s"
if [ -n "$VNF_ONLY" ]; then
    echo "PV-READY"
    while kill -0 "$QPID" 2>/dev/null; do sleep 0.2; done
    echo "pvp-vm: the guest stopped on its own; console tail:"
    console | tail -20 | sed 's/^/    /'
    exit 1
fi

# ---- generator -----------------------------------------------------------------------------
GEN=("$PKTGEN" --port "net_virtio_user0,path=$S/genA.sock,queue_size=1024"
    --port "net_virtio_user1,path=$S/genB.sock,queue_size=1024"
    --bidir --rate "$RATE" --size "$SIZE" --duration "$DURATION" --warmup "$WARMUP" --verify --quiet --json -)
echo "pvp-vm: ${GEN[*]}"
GRC=0
$(pin "$GEN_CPU") timeout --kill-after=5 $((60 + ${DURATION%.*} + ${WARMUP%.*})) "${GEN[@]}" \
    >"$WORK/pktgen.out" 2>"$WORK/pktgen.err" &
GPID=$!
wait "$GPID" || GRC=$?
GPID=
sed '/^{/,$d' "$WORK/pktgen.out" | sed 's/^/  pktgen: /'
sed -n '/^{/,$p' "$WORK/pktgen.out" >"$WORK/pktgen.json"

# ---- stop the guest, collect its counters --------------------------------------------------
echo stop >&3
QRC=0
wait "$QPID" || QRC=$?
QPID=
# testpmd's closing statistics, one line per port
port_totals() { # names...
    awk -v names="$*" 'BEGIN { n = split(names, nm, " ") }
        /Forward statistics for port/ { p = $6; l = "port " p " (" nm[p + 1] ")" }
        /Accumulated forward statistics/ { l = "all ports" }
        /RX-packets:/ { rx = $2; rd = $4 }
        /TX-packets:/ { print l ": rx=" rx " rx_dropped=" rd " tx=" $2 " tx_dropped=" $4 }'
}
console | sed -n '/^PV-READY/,$p' | grep -E '^PV: ' | grep -v 'testpmd:' | sed 's/^PV: /  guest: /' || true
if [ "${PV_GUEST_PMD:-virtio-pci}" = virtio-pci ]; then gnames="00:04.0 00:05.0"; else gnames="eth0 eth1"; fi
# shellcheck disable=SC2086
console | sed -n '/^PV-READY/,$p' | sed -n 's/^PV: *testpmd: //p' | port_totals $gnames |
    sed 's/^/  guest testpmd /'
# (af_packet only: the kernel's interfaces; with virtio-pci the kernel has none)
console | grep -E '^PV-STATS ' | sed 's/^PV-STATS /  guest kernel /' || true
stop_pid "$HPID" INT
HPID=
port_totals genA vnf0 genB vnf1 <"$WORK/host.log" | tail -5 | sed 's/^/  host testpmd /'

# ---- verdict -------------------------------------------------------------------------------
fails=0
if [ "$GRC" != 0 ] || [ ! -s "$WORK/pktgen.json" ]; then
    echo "FAIL pvp-vm generator: exit $GRC, no JSON"
    sed 's/^/    pktgen: /' "$WORK/pktgen.err" | tail -10
    exit 1
fi
python3 - "$WORK/pktgen.json" "$RATE" "$DURATION" "$MAX_LOSS" <<'EOF' || fails=$((fails + 1))
import json, re, sys
path, rate, duration, max_loss = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
t = json.load(open(path))["trials"][0]
m = re.fullmatch(r"([0-9.]+)(k|M)?pps", rate)
want = float(m.group(1)) * {"k": 1e3, "M": 1e6, None: 1}[m.group(2)] * duration if m else 0
us = lambda ns: f"{ns / 1000:.0f} us"
ok = True
names = {0: "A->B", 1: "B->A"}
for i, s in enumerate(t["streams"]):
    l = s["latency"]
    bad = []
    if s["sent"] == 0:
        bad.append("nothing sent")
    if s["lost"] > max_loss or s["received"] + s["lost"] != s["sent"]:
        bad.append(f"lost {s['lost']} > {max_loss}")
    if s["duplicates"]:
        bad.append(f"{s['duplicates']} duplicates")
    # --verify: every byte of every frame that came back, headers and payload (MACs aside,
    # as the guest swaps them), matched what was sent.
    if s.get("corrupt", 0):
        bad.append(f"{s['corrupt']} frames corrupt")
    if want and s["sent"] < 0.9 * want:
        # The generator shares its CPU here; loss is still counted exactly on what it sent.
        print(f"NOTE pvp-vm stream {names.get(i, i)}: sent {s['sent']} of the {want:.0f} requested"
              " (the generator did not get its whole CPU)")
    print(("FAIL" if bad else "PASS") +
          f" pvp-vm stream {names.get(i, i)}: sent={s['sent']} received={s['received']}"
          f" lost={s['lost']} duplicates={s['duplicates']} reordered={s['reordered']}"
          f" corrupt={s.get('corrupt', 0)}"
          f" latency p50={us(l['p50_ns'])} p99={us(l['p99_ns'])} max={us(l['max_ns'])}"
          + (f"  ({'; '.join(bad)})" if bad else ""))
    ok = ok and not bad
l = t["latency"]
print(("PASS" if ok else "FAIL") +
      f" pvp-vm total ({t['size']} B, {rate} per stream, {duration:g} s): sent={t['sent']}"
      f" received={t['received']} lost={t['lost']} tx={t['tx_pps']:.0f} pps rx={t['rx_pps']:.0f} pps"
      f" latency p50={us(l['p50_ns'])} p99={us(l['p99_ns'])} p99.9={us(l['p999_ns'])}")
sys.exit(0 if ok else 1)
EOF
if ! console | grep -q '^PV-DONE rc=0'; then
    echo "FAIL pvp-vm guest: $(console | grep '^PV-DONE' || echo "no PV-DONE line (qemu exit $QRC)")"
    fails=$((fails + 1))
fi

# ---- ferrovia-pvp --vnf vm: the NDR/PDR search against the same guest, in its shortest form --
PVP=$ROOT/target/release/ferrovia-pvp
if [ "${PV_PVP:-1}" = 1 ] && [ -x "$PVP" ]; then
    PCMD=("$PVP" --vnf vm --vm-script "$ROOT/tests/qemu/pvp-vm.sh" --testpmd "$TESTPMD"
        --host-cpu "$HOST_CPU" --sizes "$SIZE" --phases 1 --initial-duration 1 --final-duration 1
        --width 0.2 --latency-duration 1 --json "$WORK/pvp.json")
    echo "pvp-vm: ${PCMD[*]}"
    PRC=0
    timeout --kill-after=10 240 "${PCMD[@]}" >"$WORK/pvp.out" 2>"$WORK/pvp.err" || PRC=$?
    if [ "$PRC" != 0 ] || ! python3 - "$WORK/pvp.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
ndr, pdr = r["goals"][0], r["goals"][1]
lat = ", ".join(f"{l['latency']['p50_ns'] / 1e3:.0f}/{l['latency']['p99_ns'] / 1e3:.0f} us"
                f" at {l['percent_of_ndr']} %" for l in r["latency"])
# The figures are not judged (1-s trials on a shared 2-CPU machine are noisy; a trial the
# generator could not fully send counts as lost): only that the search and the three latency
# runs ran, and that some trial carried its whole load without loss.
clean = [t for t in r["trials"] if t["sent"] > 0 and t["received"] == t["sent"]]
ok = (len(r["goals"]) == 2 and len(r["latency"]) == 3 and clean
      and all(l["latency"]["count"] > 0 for l in r["latency"]))
print(("PASS" if ok else "FAIL") +
      f" pvp-vm ferrovia-pvp --vnf vm ({r['size']} B, 1-s trials): NDR {ndr['lower_bound'] / 1e3:.1f} kpps,"
      f" PDR {pdr['lower_bound'] / 1e3:.1f} kpps (both directions), {len(r['trials'])} trials,"
      f" {len(clean)} without loss;"
      f" latency p50/p99 {lat}")
sys.exit(0 if ok else 1)
EOF
    then
        echo "FAIL pvp-vm ferrovia-pvp --vnf vm (exit $PRC)"
        tail -10 "$WORK/pvp.err" | sed 's/^/    ferrovia-pvp: /'
        fails=$((fails + 1))
    fi
fi
echo "pvp-vm: $fails failure(s), $(since) s in all"
[ "$fails" = 0 ]
