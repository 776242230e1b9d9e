#!/usr/bin/env bash
# vSwitch comparison: two generator ports on CPU 0 feed a switch on CPU 1 through vhost-user.
#
#   CPU 0: l2_gen (crates/ferrovia/examples/l2_gen.rs), two virtio-user ports;
#          port 0 sends MAC_A→MAC_B, port 1 MAC_B→MAC_A, both drain what comes back
#   CPU 1: the switch under test, one polling thread
#
# Candidates, interleaved in short windows (round r runs every candidate at every size,
# the candidate order rotating from round to round):
#   ovs-normal  OVS-DPDK 3.1 (Debian's openvswitch-switch-dpdk), br0 with actions=NORMAL
#               (MAC learning)
#   ovs-direct  the same with fail_mode=secure and in_port=1→2, in_port=2→1 flows
#   testpmd-io  our testpmd --forward-mode=io between two net_vhost ports: the ceiling
#   ferrovia    ferrovia-switch (start_ferrovia_switch below; skipped while the binary is
#               missing)
#   eswitch-vf  the software SR-IOV NIC (crates/eswitch, examples/eswitch_host.rs): the two
#               ports are VF 0 (MAC_A) and VF 1 (MAC_B), switched VF to VF inside the NIC
#               (tx_loopback on), every policy on: MAC and VLAN anti-spoofing, access VLAN 10
#               inserted on send and stripped on receive, broadcast/multicast receive modes,
#               a rate limit (at the 100 Gbit/s line rate, so checked but not binding)
#   eswitch-up  the same NIC with port 0 as its uplink and port 1 as VF 0 (MAC_B): VF <->
#               uplink, the same policies without the VLAN (the generator sends untagged)
#
# Each window launches the switch afresh, measures start-up (launch → first packet forwarded
# in both directions, as the generator saw it), forwards for WARMUP + DURATION seconds, then
# reads VmRSS/VmHWM/HugetlbPages of the switch process and stops it. Prints a markdown table
# of medians, with ratios taken per round (median of cand/ovs-normal and cand/testpmd-io over
# the rounds, never of two medians), and leaves the raw results in OUT_DIR.
#
# Usage: scripts/bench-vswitch.sh [options]     (root; installs what is missing)
#   --rounds N          rounds (default 3)
#   --duration S        measured seconds per window (default 10)
#   --warmup S          seconds sent but not counted after both links are up (default 3)
#   --sizes "64 1518"   frame sizes without FCS (default "64 1518")
#   --candidates "..."  subset of: ovs-normal ovs-direct testpmd-io ferrovia (default all)
#   --socket-mode M     switch-client (default): the generator listens (virtio-user
#                       server=1) and the switch connects (OVS dpdkvhostuserclient, net_vhost
#                       client=1); switch-server: the switch listens (OVS dpdkvhostuser) and
#                       the generator connects
#   --gen-cpu N / --switch-cpu N   (default 0 / 1)
#   --out DIR           where raw results go (default /tmp/bench-vswitch-<date>)
#   --no-build          do not run cargo build
#   ESWITCH_VF_EXTRA    (environment) devargs added to the eswitch candidates' VF ports; by
#                       default ",ctrl-vq=1", each VF with its control queue served (as the
#                       daemon's VFs are); "" for none
set -euo pipefail
export LC_ALL=C # EPOCHREALTIME with a "." (bash 5)

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=3
DURATION=10
WARMUP=3
SIZES="64 1518"
CANDIDATES="ovs-normal ovs-direct testpmd-io ferrovia eswitch-vf eswitch-up"
SOCKET_MODE=switch-client
GEN_CPU=0
SWITCH_CPU=1
OUT_DIR=""
BUILD=1
VF_EXTRA=${ESWITCH_VF_EXTRA-,ctrl-vq=1}
LINK_TIMEOUT=30
QUEUE_SIZE=1024

die() { echo "bench-vswitch.sh: $*" >&2; exit 1; }
log() { echo "bench-vswitch.sh: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --sizes) SIZES=$2; shift 2 ;;
        --candidates) CANDIDATES=$2; shift 2 ;;
        --socket-mode) SOCKET_MODE=$2; shift 2 ;;
        --gen-cpu) GEN_CPU=$2; shift 2 ;;
        --switch-cpu) SWITCH_CPU=$2; shift 2 ;;
        --out) OUT_DIR=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
[ "${BASH_VERSINFO[0]}" -ge 5 ] || die "needs bash 5 (EPOCHREALTIME)"
for v in ROUNDS DURATION WARMUP GEN_CPU SWITCH_CPU; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
done
[ "$DURATION" -ge 2 ] || die "--duration must be at least 2 s"
case "$SOCKET_MODE" in switch-client|switch-server) ;; *) die "--socket-mode must be switch-client or switch-server" ;; esac
for c in $CANDIDATES; do
    case "$c" in ovs-normal|ovs-direct|testpmd-io|ferrovia|eswitch-vf|eswitch-up) ;; *) die "unknown candidate $c" ;; esac
done
[ "$(id -u)" = 0 ] || die "must run as root (hugepages, OVS-DPDK)"
[ "$(nproc)" -gt "$(( GEN_CPU > SWITCH_CPU ? GEN_CPU : SWITCH_CPU ))" ] || die "needs CPUs $GEN_CPU and $SWITCH_CPU"

OVS_VSWITCHD_DPDK=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
OVS_SCHEMA=/usr/share/openvswitch/vswitch.ovsschema
TESTPMD=$ROOT/target/release/testpmd
GEN=$ROOT/target/release/examples/l2_gen
FERROVIA_SWITCH=$ROOT/target/release/ferrovia-switch
PLACEMENT=$ROOT/target/release/ferrovia-placement
ESWITCH=$ROOT/target/release/examples/eswitch_host

# ---------------------------------------------------------------------------------------------
# Prerequisites: OVS-DPDK, python3 (for the summary), hugepages, our binaries.
# ---------------------------------------------------------------------------------------------
want_ovs=0
case " $CANDIDATES " in *" ovs-"*) want_ovs=1 ;; esac
need=()
if [ $want_ovs = 1 ] && [ ! -x "$OVS_VSWITCHD_DPDK" ]; then need+=(openvswitch-switch-dpdk); fi
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ $want_ovs = 1 ]; then
    [ -x "$OVS_VSWITCHD_DPDK" ] || die "ovs-vswitchd-dpdk not found: apt-get install openvswitch-switch-dpdk"
    for t in ovsdb-server ovsdb-tool ovs-vsctl ovs-ofctl ovs-appctl; do
        command -v $t >/dev/null 2>&1 || die "$t not found: apt-get install openvswitch-switch-dpdk"
    done
    # Make the system's ovs-vswitchd the DPDK build too (Debian's alternative); this script
    # runs the DPDK binary by its path either way and never uses the system service.
    if [ "$(readlink -f /usr/sbin/ovs-vswitchd 2>/dev/null)" != "$OVS_VSWITCHD_DPDK" ]; then
        update-alternatives --set ovs-vswitchd "$OVS_VSWITCHD_DPDK" >/dev/null
    fi
    "$OVS_VSWITCHD_DPDK" --version | grep -q 'DPDK' || die "$OVS_VSWITCHD_DPDK is not a DPDK build"
    # Hugepages for OVS's DPDK (ours needs none).
    if [ "$(cat /proc/sys/vm/nr_hugepages)" -lt 512 ]; then echo 512 > /proc/sys/vm/nr_hugepages; fi
    mkdir -p /dev/hugepages
    mountpoint -q /dev/hugepages || mount -t hugetlbfs none /dev/hugepages
    free=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
    [ "$free" -ge 256 ] || die "only $free free 2 MB hugepages; OVS-DPDK needs 256 (dpdk-socket-mem=512)"
fi
if [ $BUILD = 1 ]; then
    log "building testpmd and the l2_gen example (release)"
    (cd "$ROOT" && cargo build --release -q -p ferrovia-testpmd --bins && cargo build --release -q -p ferrovia --example l2_gen \
        && cargo build --release -q -p ferrovia-eswitch --example eswitch_host) \
        || die "cargo build failed"
fi
[ -x "$GEN" ] || die "$GEN missing: cargo build --release -p ferrovia --example l2_gen"
case " $CANDIDATES " in *" testpmd-io "*) [ -x "$TESTPMD" ] || die "$TESTPMD missing: cargo build --release -p ferrovia-testpmd" ;; esac
case " $CANDIDATES " in *" eswitch-"*) [ -x "$ESWITCH" ] || die "$ESWITCH missing: cargo build --release -p ferrovia-eswitch --example eswitch_host" ;; esac

OUT_DIR=${OUT_DIR:-/tmp/bench-vswitch-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT_DIR"
RESULTS=$OUT_DIR/results.jsonl
: > "$RESULTS"
WORK=$(mktemp -d /tmp/bench-vswitch-run.XXXXXX)
SOCK_DIR=$WORK/sock
mkdir -p "$SOCK_DIR"

# ---------------------------------------------------------------------------------------------
# Process bookkeeping and clean-up: every process we start is recorded by pid and ended on exit.
# ---------------------------------------------------------------------------------------------
PIDS=()
SWITCH_PID=""    # the process whose memory is reported
EXTRA_MEM_PID="" # OVS: ovsdb-server, reported apart
GEN_PID=""

stop_pid() { # pid [grace seconds]
    local p=$1 grace=${2:-5} i
    [ -n "$p" ] || return 0
    kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null || true; return 0; }
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < grace * 20; i++)); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.05
    done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}

stop_all() {
    local p
    [ -n "$GEN_PID" ] && stop_pid "$GEN_PID"
    GEN_PID=""
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    PIDS=()
    SWITCH_PID=""
    EXTRA_MEM_PID=""
    rm -f "$SOCK_DIR"/* 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_all
    if [ $rc != 0 ] && [ -d "$WORK" ]; then
        rm -rf "$OUT_DIR/logs-on-failure"
        cp -r "$WORK" "$OUT_DIR/logs-on-failure" 2>/dev/null || true
        log "failed; the switch and generator logs are in $OUT_DIR/logs-on-failure"
    fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { echo "$EPOCHREALTIME"; }
now_us() { echo "${EPOCHREALTIME/./}"; }

# Blocks until a unix socket exists (the switch listens), or fails.
wait_socket() { # path timeout_s
    local i
    for ((i = 0; i < $2 * 20; i++)); do
        [ -S "$1" ] && return 0
        sleep 0.05
    done
    return 1
}

mem_of() { # pid -> "rss_kb hwm_kb huge_kb"
    awk '/^VmRSS:/ {r=$2} /^VmHWM:/ {h=$2} /^HugetlbPages:/ {g=$2}
         END {printf "%d %d %d", r, h, g}' "/proc/$1/status" 2>/dev/null || echo "0 0 0"
}

# ---------------------------------------------------------------------------------------------
# The switches. Each start_* launches the switch with ports on $SOCK_DIR/vs0 and vs1, sets
# SWITCH_PID (and appends every pid it starts to PIDS), and returns at once; the generator
# tells when forwarding starts.
# ---------------------------------------------------------------------------------------------
# OVS's run dir is $WORK itself: vhost-sock-dir is relative to it and may not contain "..",
# so that the sockets of both modes are in $SOCK_DIR = $WORK/sock. Its db, logs and pid files
# are in $OVS_RUN.
OVS_RUN=$WORK/ovs
ovs_vsctl() { ovs-vsctl --db="unix:$OVS_RUN/db.sock" "$@"; }
ovs_ofctl() { OVS_RUNDIR=$WORK ovs-ofctl "$@"; }

start_ovs() { # normal|direct
    local flows=$1
    rm -rf "$OVS_RUN" "$WORK"/br0.*
    mkdir -p "$OVS_RUN"
    export OVS_RUNDIR=$WORK OVS_DBDIR=$OVS_RUN OVS_LOGDIR=$OVS_RUN OVS_SYSCONFDIR=$OVS_RUN
    ovsdb-tool create "$OVS_RUN/conf.db" "$OVS_SCHEMA" >/dev/null
    # ovsdb-server and ovs-vswitchd run in the foreground as our children (no --detach) so that
    # we own their pids; ovsdb-server on the generator's CPU (it is idle while forwarding).
    taskset -c "$GEN_CPU" ovsdb-server "$OVS_RUN/conf.db" --remote="punix:$OVS_RUN/db.sock" \
        --pidfile="$OVS_RUN/ovsdb-server.pid" --unixctl="$OVS_RUN/ovsdb-server.ctl" \
        --log-file="$OVS_RUN/ovsdb-server.log" >/dev/null 2>&1 &
    PIDS+=($!)
    EXTRA_MEM_PID=$!
    wait_socket "$OVS_RUN/db.sock" 10 || die "ovsdb-server did not start (see $OVS_RUN/ovsdb-server.log)"
    local lmask pmask ptype p0 p1 fail_mode=standalone
    lmask=$(printf '0x%x' $((1 << GEN_CPU)))
    pmask=$(printf '0x%x' $((1 << SWITCH_CPU)))
    [ "$flows" = direct ] && fail_mode=secure
    if [ "$SOCKET_MODE" = switch-client ]; then
        ptype=dpdkvhostuserclient
        p0="options:vhost-server-path=$SOCK_DIR/vs0"
        p1="options:vhost-server-path=$SOCK_DIR/vs1"
    else
        # dpdkvhostuser: OVS makes the socket <vhost-sock-dir>/<port name>.
        ptype=dpdkvhostuser
        p0="" p1=""
    fi
    ovs_vsctl --no-wait init
    ovs_vsctl --no-wait set Open_vSwitch . \
        other_config:dpdk-init=true \
        other_config:dpdk-lcore-mask="$lmask" \
        other_config:pmd-cpu-mask="$pmask" \
        other_config:dpdk-socket-mem=512 \
        "other_config:dpdk-extra=--no-pci --in-memory" \
        other_config:vhost-sock-dir=sock
    ovs_vsctl --no-wait add-br br0 -- set bridge br0 datapath_type=netdev fail_mode=$fail_mode
    ovs_vsctl --no-wait add-port br0 vs0 -- set Interface vs0 type=$ptype ofport_request=1 $p0
    ovs_vsctl --no-wait add-port br0 vs1 -- set Interface vs1 type=$ptype ofport_request=2 $p1
    "$OVS_VSWITCHD_DPDK" "unix:$OVS_RUN/db.sock" --pidfile="$OVS_RUN/ovs-vswitchd.pid" \
        --unixctl="$OVS_RUN/ovs-vswitchd.ctl" --log-file="$OVS_RUN/ovs-vswitchd.log" \
        >"$OVS_RUN/ovs-vswitchd.out" 2>&1 &
    PIDS+=($!)
    SWITCH_PID=$!
    # Flows: NORMAL is the default table of a standalone bridge; add it explicitly anyway.
    # Wait for br0's OpenFlow socket, then install.
    local i
    for ((i = 0; i < 600; i++)); do
        [ -S "$WORK/br0.mgmt" ] && break
        kill -0 "$SWITCH_PID" 2>/dev/null || die "ovs-vswitchd exited (see $OVS_RUN/ovs-vswitchd.log)"
        sleep 0.02
    done
    [ -S "$WORK/br0.mgmt" ] || die "ovs-vswitchd: br0 did not come up (see $OVS_RUN/ovs-vswitchd.log)"
    if [ "$flows" = normal ]; then
        ovs_ofctl add-flow br0 actions=NORMAL
    else
        ovs_ofctl del-flows br0
        ovs_ofctl add-flow br0 in_port=1,actions=output:2
        ovs_ofctl add-flow br0 in_port=2,actions=output:1
    fi
}

after_ovs() { # normal|direct: record what the flows saw, then check it
    ovs_ofctl dump-flows br0 >"$WORK/flows.txt" 2>&1 || true
    cp "$WORK/flows.txt" "$OUT_DIR/last-flows-ovs-$1.txt"
    if [ "$1" = direct ] && grep -q NORMAL "$WORK/flows.txt"; then
        die "ovs-direct: a NORMAL flow is present: $(cat "$WORK/flows.txt")"
    fi
}

start_testpmd_io() {
    local client=1
    [ "$SOCKET_MODE" = switch-server ] && client=0
    "$TESTPMD" --lcores "0@$SWITCH_CPU,1@$SWITCH_CPU" \
        --vdev "net_vhost0,iface=$SOCK_DIR/vs0,client=$client" \
        --vdev "net_vhost1,iface=$SOCK_DIR/vs1,client=$client" \
        -- --forward-mode=io --burst=32 --stats-period 60 >"$WORK/testpmd.log" 2>&1 &
    PIDS+=($!)
    SWITCH_PID=$!
}

# ==== FERROVIA-SWITCH ============================================
# Start ferrovia-switch with two ports whose vhost-user sockets are $SOCK_DIR/vs0 and
# $SOCK_DIR/vs1, MAC learning on, its polling thread on CPU $SWITCH_CPU. $SOCKET_MODE says
# who listens: switch-client = the generator listens (virtio-user server=1) and the switch
# connects as a vhost-user client; switch-server = the switch makes server sockets at exactly
# those paths and the generator connects to them. Set SWITCH_PID and append it to PIDS; return
# at once (the generator measures when forwarding starts). The TOML below is a guess at the
# schema: replace it with the real one.
ferrovia_switch_available() { [ -x "$FERROVIA_SWITCH" ]; }
start_ferrovia_switch() {
    local conf=$WORK/ferrovia-switch.toml client=1
    [ "$SOCKET_MODE" = switch-server ] && client=0
    cat >"$conf" <<EOF
# Written by scripts/bench-vswitch.sh: one bridge with MAC learning, two vhost-user ports,
# one PMD thread on the switch CPU.
[switch]
control_socket = "$WORK/ferrovia-switch.ctl"
pmd_threads = 1
pmd_cpus = [$SWITCH_CPU]

[[bridge]]
name = "br0"

[[port]]
name = "vs0"
bridge = "br0"
devargs = "net_vhost0,iface=$SOCK_DIR/vs0,client=$client,queues=1"

[[port]]
name = "vs1"
bridge = "br0"
devargs = "net_vhost1,iface=$SOCK_DIR/vs1,client=$client,queues=1"
EOF
    # The control threads may run anywhere; the PMD thread pins itself to the switch CPU.
    RUST_LOG=warn "$FERROVIA_SWITCH" --config "$conf" >"$WORK/ferrovia-switch.log" 2>&1 &
    PIDS+=($!)
    SWITCH_PID=$!
}
# ==== END FERROVIA-SWITCH =====================================================================

# The software NIC: eswitch-vf (both ports VFs) or eswitch-up (port 0 the uplink, port 1 a VF).
start_eswitch() { # vf|up
    local client=1 mode=$1
    [ "$SOCKET_MODE" = switch-server ] && client=0
    local p0="iface=$SOCK_DIR/vs0,client=$client,queues=1" p1="iface=$SOCK_DIR/vs1,client=$client,queues=1"
    local common='"mac_anti_spoof":true,"vlan_anti_spoof":true,"allow_bcast":true,"allow_mcast":true,"rate":100000'
    if [ "$mode" = vf ]; then
        echo "{\"name\":\"vf-a\",\"vfid\":0,\"macs\":[\"02:00:00:00:00:0a\"],\"vlans\":[10],\"strip_stag\":true,$common}" >"$WORK/vf0.json"
        echo "{\"name\":\"vf-b\",\"vfid\":1,\"macs\":[\"02:00:00:00:00:0b\"],\"vlans\":[10],\"strip_stag\":true,$common}" >"$WORK/vf1.json"
        taskset -c "$SWITCH_CPU" "$ESWITCH" --uplink net_null0,no-rx=1 \
            --vf "net_vhost0,$p0$VF_EXTRA" --vf-config "$WORK/vf0.json" \
            --vf "net_vhost1,$p1$VF_EXTRA" --vf-config "$WORK/vf1.json" \
            --tx-loopback on >"$WORK/eswitch.log" 2>&1 &
    else
        echo "{\"name\":\"vf-b\",\"vfid\":0,\"macs\":[\"02:00:00:00:00:0b\"],$common}" >"$WORK/vf0.json"
        taskset -c "$SWITCH_CPU" "$ESWITCH" --uplink "net_vhost0,$p0" \
            --vf "net_vhost1,$p1$VF_EXTRA" --vf-config "$WORK/vf0.json" >"$WORK/eswitch.log" 2>&1 &
    fi
    PIDS+=($!)
    SWITCH_PID=$!
}

# ---------------------------------------------------------------------------------------------
# One window: generator + switch, both freshly started; appends one JSON line to RESULTS.
# ---------------------------------------------------------------------------------------------
start_gen() { # size
    local server=1
    [ "$SOCKET_MODE" = switch-server ] && server=0
    local a0="net_virtio_user0,path=$SOCK_DIR/vs0,server=$server,queue_size=$QUEUE_SIZE"
    local a1="net_virtio_user1,path=$SOCK_DIR/vs1,server=$server,queue_size=$QUEUE_SIZE"
    taskset -c "$GEN_CPU" "$GEN" --port0 "$a0" --port1 "$a1" --size "$1" \
        --warmup "$WARMUP" --duration "$DURATION" --link-timeout "$LINK_TIMEOUT" \
        >"$WORK/gen.json" 2>"$WORK/gen.err" &
    GEN_PID=$!
}

probe() { # ns per cache-line round trip between the two CPUs now, or "null"
    local v
    if [ -x "$PLACEMENT" ] && v=$(timeout 5 "$PLACEMENT" --rt "$GEN_CPU" "$SWITCH_CPU" 3000 2>/dev/null) \
        && [[ "$v" =~ ^[0-9.]+$ ]]; then
        echo "$v"
    else
        echo null
    fi
}

run_window() { # round candidate size
    local round=$1 cand=$2 size=$3 t_launch p_mid=null mem extra="0 0 0" gen_rc=0 probed=0
    rm -f "$SOCK_DIR"/* 2>/dev/null || true
    if [ "$SOCKET_MODE" = switch-client ]; then
        start_gen "$size"
        # The generator listens first; wait for its sockets so the switch finds them.
        wait_socket "$SOCK_DIR/vs0" 10 && wait_socket "$SOCK_DIR/vs1" 10 \
            || die "l2_gen did not create its sockets: $(cat "$WORK/gen.err")"
    fi
    t_launch=$(now)
    case "$cand" in
        ovs-normal) start_ovs normal ;;
        ovs-direct) start_ovs direct ;;
        testpmd-io) start_testpmd_io ;;
        ferrovia) start_ferrovia_switch ;;
        eswitch-vf) start_eswitch vf ;;
        eswitch-up) start_eswitch up ;;
    esac
    if [ "$SOCKET_MODE" = switch-server ]; then
        wait_socket "$SOCK_DIR/vs0" 60 && wait_socket "$SOCK_DIR/vs1" 60 \
            || die "$cand did not create $SOCK_DIR/vs0 and vs1"
        start_gen "$size"
    fi
    # Wait for the generator; if the switch dies first, stop it. Probe the CPU placement once,
    # in the middle of the measured part of the window (start-up taken as about 1 s).
    local probe_at
    probe_at=$(( ${t_launch/./} + (1 + WARMUP) * 1000000 + DURATION * 500000 ))
    while kill -0 "$GEN_PID" 2>/dev/null; do
        if [ $probed = 0 ] && [ "$(now_us)" -ge $probe_at ]; then
            p_mid=$(probe)
            probed=1
        fi
        if ! kill -0 "$SWITCH_PID" 2>/dev/null; then
            stop_pid "$GEN_PID"
            die "$cand exited during the window"
        fi
        sleep 0.2
    done
    wait "$GEN_PID" || gen_rc=$?
    GEN_PID=""
    [ $gen_rc = 0 ] || die "l2_gen failed for $cand $size B: $(tail -3 "$WORK/gen.err")"
    mem=$(mem_of "$SWITCH_PID")
    [ -n "$EXTRA_MEM_PID" ] && extra=$(mem_of "$EXTRA_MEM_PID")
    case "$cand" in ovs-normal) after_ovs normal ;; ovs-direct) after_ovs direct ;; esac
    stop_all
    python3 - "$WORK/gen.json" "$round" "$cand" "$size" "$t_launch" "$mem" "$extra" \
        "$p_mid" >>"$RESULTS" <<'EOF'
import json, sys
g = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
rnd, cand, size, t_launch = int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
rss, hwm, huge = (int(x) for x in sys.argv[6].split())
xrss, xhwm, _ = (int(x) for x in sys.argv[7].split())
probe = None if sys.argv[8] == "null" else float(sys.argv[8])
first = max(g["first_rx_unix_s"])
print(json.dumps({
    "round": rnd, "candidate": cand, "size": size, "fwd_mpps": g["fwd_mpps"],
    "tx_pps": g["tx_pps"], "rx_pps": g["rx_pps"], "per_s_rx_mpps": g["per_s_rx_mpps"],
    "startup_s": first - t_launch if first > 0 else None,
    "vm_rss_kb": rss, "vm_hwm_kb": hwm, "hugetlb_kb": huge,
    "aux_rss_kb": xrss, "aux_hwm_kb": xhwm,
    "probe_ns": probe,
}))
EOF
    tail -1 "$RESULTS" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read())
print("  round %d %-10s %4d B: %6.2f Mpps fwd, start-up %.2f s, RSS %d MiB (HWM %d MiB, hugetlb %d MiB)" % (
    r["round"], r["candidate"], r["size"], r["fwd_mpps"], r["startup_s"] or -1,
    r["vm_rss_kb"] >> 10, r["vm_hwm_kb"] >> 10, r["hugetlb_kb"] >> 10))' >&2
}

# ---------------------------------------------------------------------------------------------
# Main: rounds × candidates (rotating order) × sizes.
# ---------------------------------------------------------------------------------------------
cands=()
for c in $CANDIDATES; do
    if [ "$c" = ferrovia ] && ! ferrovia_switch_available; then
        log "ferrovia-switch: $FERROVIA_SWITCH not built; skipping that candidate"
        continue
    fi
    cands+=("$c")
done
[ ${#cands[@]} -gt 0 ] || die "no candidate to run"
n=${#cands[@]}
log "candidates: ${cands[*]}; sizes: $SIZES; $ROUNDS rounds of ${WARMUP}+${DURATION} s windows;" \
    "socket mode $SOCKET_MODE; generator CPU $GEN_CPU, switch CPU $SWITCH_CPU; raw results: $RESULTS"
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -r), $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "socket mode: $SOCKET_MODE, rounds $ROUNDS, warmup $WARMUP s, duration $DURATION s"
    [ $want_ovs = 1 ] && "$OVS_VSWITCHD_DPDK" --version | tr '\n' ' ' && echo
    echo "ferrovia: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
} >"$OUT_DIR/meta.txt"
for ((r = 1; r <= ROUNDS; r++)); do
    for ((k = 0; k < n; k++)); do
        cand=${cands[$(( (k + r - 1) % n ))]}
        for size in $SIZES; do
            run_window "$r" "$cand" "$size"
        done
    done
done

python3 - "$RESULTS" <<'EOF' | tee "$OUT_DIR/summary.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cands = list(dict.fromkeys(r["candidate"] for r in rows))
sizes = sorted({r["size"] for r in rows})
by = {(r["round"], r["candidate"], r["size"]): r for r in rows}
rounds = sorted({r["round"] for r in rows})
med = lambda xs: statistics.median(xs) if xs else None
def ratio(c, base, s):
    xs = [by[(k, c, s)]["fwd_mpps"] / by[(k, base, s)]["fwd_mpps"] for k in rounds
          if (k, c, s) in by and (k, base, s) in by and by[(k, base, s)]["fwd_mpps"] > 0]
    return med(xs)
f = lambda x, p=2: "–" if x is None else f"{x:.{p}f}"
print("| switch | size | fwd Mpps (median) | min–max | × OVS NORMAL | × testpmd io |")
print("|---|---:|---:|---:|---:|---:|")
for c in cands:
    for s in sizes:
        xs = [by[(k, c, s)]["fwd_mpps"] for k in rounds if (k, c, s) in by]
        print(f"| {c} | {s} B | {f(med(xs))} | {f(min(xs))}–{f(max(xs))} | "
              f"{f(ratio(c, 'ovs-normal', s))} | {f(ratio(c, 'testpmd-io', s))} |")
print()
print("| switch | start-up s (median) | VmRSS MiB | VmHWM MiB | hugetlb MiB | ovsdb-server RSS MiB |")
print("|---|---:|---:|---:|---:|---:|")
for c in cands:
    rs = [r for r in rows if r["candidate"] == c]
    st = [r["startup_s"] for r in rs if r["startup_s"] is not None]
    m = lambda key: med([r[key] / 1024 for r in rs])
    aux = m("aux_rss_kb")
    print(f"| {c} | {f(med(st))} | {f(m('vm_rss_kb'), 1)} | {f(m('vm_hwm_kb'), 1)} | "
          f"{f(m('hugetlb_kb'), 0)} | {f(aux, 1) if aux else '–'} |")
probes = [r["probe_ns"] for r in rows if r["probe_ns"] is not None]
if probes:
    same = sum(p < 150 for p in probes)
    print()
    print(f"CPU placement probe in mid-window (cache-line round trip between the generator's and the switch's CPU): "
          f"{min(probes):.0f}–{max(probes):.0f} ns; {same} of {len(probes)} windows under 150 ns "
          f"(the two vCPUs sharing a last-level cache), {len(probes) - same} above.")
EOF
log "raw results in $OUT_DIR"
