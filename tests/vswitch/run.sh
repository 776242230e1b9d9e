#!/usr/bin/env bash
# The switch with real peers: ferrovia-switch (release) with bridge br0 joining
#   c1  - vhost-user (client=1) to container 1: our testpmd, net_virtio_user server=1, macswap
#   c2  - vhost-user (client=1) to container 2: DPDK 22.11 dpdk-testpmd, virtio-user server=1, macswap
#   vm  - vhost-user (client=1) to a QEMU guest (QEMU listens: run-guest.sh server)
#   ns  - net_af_packet on a veth pair; the other end in netns A (192.0.2.2/24, 02:00:00:00:00:02)
#   nsb - net_af_packet on a veth pair; the other end in netns B (198.51.100.2/24)
# and bridge br1 (aging 3 s) with ag0/ag1, af_packet ports on veths whose other ends are in A.
#
# Home VLANs (access): c1 10, c2 20, vm 30, ns 30, nsb 10. Each macswap container sits on a VLAN
# with no other reflector, so a flooded frame is echoed by one container only (two reflectors on
# one VLAN would both echo it, and the switch would learn one container's MAC on the other's
# port). Checks, each printing PASS/FAIL:
#   1. bytes:   guest (qg-pktcheck) -> c1 and -> c2, netns A (nscheck.py echo) -> c1 and -> c2:
#               every frame back intact and MAC-swapped
#   2. ping:    guest -> netns A (the namespace kernel answers)
#   3. fdb:     learned addresses on br0; on br1 learning, a MAC move and aging
#   4. vlan:    broadcast + unknown unicast on VLAN 10 reach VLAN-10 ports only (counters and a
#               tcpdump capture on a VLAN-20 port; then the same capture once that port is moved
#               to VLAN 10 sees them)
#   5. restart: both containers killed (SIGKILL) and restarted under traffic; ferrovia-switch
#               stopped (SIGTERM) and restarted while the guest pings and a stream runs
#   6. router:  netns A <-> netns B across two router interfaces (TTL 64 -> 63, checksums checked
#               by tcpdump -vv), and ping of a router address
#
# Needs root (netns, veth, hugepages for DPDK), dpdk-testpmd (scripts/setup-peers.sh), QEMU and
# the guest harness (../shared/tools/qemu-guest; QG_TOOLS overrides), python3, tcpdump
# (installed when missing). Everything it starts is stopped, and every netns, veth and socket
# removed, on exit.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }
since() { # start_ms [decimals]: seconds since start_ms
    local d=$(($(now_ms) - $1))
    if [ "${2:-1}" = 2 ]; then printf '%d.%02d' $((d / 1000)) $((d % 1000 / 10)); else printf '%d.%d' $((d / 1000)) $((d % 1000 / 100)); fi
}
T0=$(now_ms)
say() { printf '[vswitch %6s] %s\n' "$(since "$T0")" "$*"; }

if [ "$(id -u)" != 0 ]; then
    echo "vswitch tests: must run as root (network namespaces, veth pairs, hugepages)" >&2
    exit 1
fi
QG=${QG_TOOLS:-}
if [ -z "$QG" ]; then
    for d in "$ROOT/../shared/tools/qemu-guest" /work/shared/tools/qemu-guest; do
        if [ -x "$d/run-guest.sh" ]; then QG=$d; break; fi
    done
fi
if [ ! -x "$QG/run-guest.sh" ]; then
    echo "vswitch tests: guest harness not found at '$QG' (set QG_TOOLS)" >&2
    exit 1
fi
need=()
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v dpdk-testpmd >/dev/null || need+=(dpdk dpdk-dev)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    echo "vswitch tests: installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
PING=(ping) # iputils' ping, else busybox's (the guest harness installs busybox-static)
command -v ping >/dev/null || PING=(busybox ping)
"$QG/build-initramfs.sh" >/dev/null 2>&1 || { echo "vswitch tests: build-initramfs.sh failed" >&2; exit 1; }
cargo build --release -q -p ferrovia-switch -p ferrovia-testpmd || exit 1
BIN=$ROOT/target/release
SWITCH=$BIN/ferrovia-switch
CTL_BIN=$BIN/ferrovia-ctl
TESTPMD=$BIN/testpmd
CHECK=$ROOT/tests/vswitch/nscheck.py

W=$(mktemp -d /tmp/ferrovia-vsit.XXXXXX)
SFX=$(printf '%04x' $((RANDOM % 65536)))
NSA=vsit-a-$SFX
NSB=vsit-b-$SFX
HA=vs${SFX}a HB=vs${SFX}b HG0=vs${SFX}g0 HG1=vs${SFX}g1 # host ends (<= 15 characters)
C1=02:00:00:00:01:01
C2=02:00:00:00:01:02
MA=02:00:00:00:00:02
MB=02:00:00:00:00:0b
GUEST=52:54:00:12:34:56
SW_PID="" C1_PID="" C2_PID=""
BG=() # process groups started in the background (setsid), killed on exit

fails=0
passes=0
pass() { passes=$((passes + 1)); say "PASS $*"; }
fail() { fails=$((fails + 1)); say "FAIL $*"; }

kill_group() { # pid [signal]
    [ -n "$1" ] || return 0
    kill "-${2:-TERM}" -- "-$1" 2>/dev/null || kill "-${2:-TERM}" "$1" 2>/dev/null || true
}

cleanup() {
    local p
    set +e
    for p in "${BG[@]}" $SW_PID $C1_PID $C2_PID; do kill_group "$p" TERM; done
    sleep 0.5
    for p in "${BG[@]}" $SW_PID $C1_PID $C2_PID; do kill_group "$p" KILL; done
    wait 2>/dev/null
    ip netns del "$NSA" 2>/dev/null
    ip netns del "$NSB" 2>/dev/null
    for p in $HA $HB $HG0 $HG1; do ip link del "$p" 2>/dev/null; done
    if [ -n "${KEEP_LOGS:-}" ]; then echo "logs kept in $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

tails() { # log files: print their last lines
    local f
    for f in "$@"; do
        [ -f "$f" ] || continue
        echo "    --- last lines of $(basename "$f") ---"
        tail -n "${TAIL_LINES:-15}" "$f" | sed 's/^/    | /'
    done
}

ctl() { "$CTL_BIN" --socket "$W/ctl.sock" "$@"; }

# ports.json -> "field" of port NAME (dotted path into the JSON), or for drops the sum
pfield() { # name field (rx_packets|tx_packets|link_up|tx_attempts)
    ctl --json show ports | python3 -c '
import json, sys
name, field = sys.argv[1], sys.argv[2]
for p in json.load(sys.stdin):
    if p["name"] != name:
        continue
    st = p["stats"]
    if field == "link_up":
        print(1 if p["link_up"] else 0)
    elif field == "tx_attempts":  # frames sent or dropped on the way out of this port
        d = st["drops"]
        print(st["tx_packets"] + sum(d.get(k, 0) for k in ("tx_full", "port_gone", "vlan_egress")))
    else:
        print(st[field])
' "$1" "$2"
}

wait_links() { # seconds port...: wait until every port's link is up
    local t=$1 p ok
    shift
    for _ in $(seq 1 $((t * 10))); do
        ok=1
        for p in "$@"; do [ "$(pfield "$p" link_up 2>/dev/null)" = 1 ] || { ok=0; break; }; done
        [ $ok = 1 ] && return 0
        sleep 0.1
    done
    return 1
}

# --- network namespaces and veth pairs ------------------------------------------------------
mkns() { # ns host-end ns-end mac ip/len
    ip link add "$2" type veth peer name "${2}p" || return 1
    sysctl -qw "net.ipv6.conf.$2.disable_ipv6=1"
    ip link set "${2}p" netns "$1" || return 1
    ip netns exec "$1" ip link set "${2}p" name "$3" || return 1
    ip netns exec "$1" sysctl -qw "net.ipv6.conf.$3.disable_ipv6=1"
    ip netns exec "$1" ip link set "$3" address "$4"
    [ -n "$5" ] && ip netns exec "$1" ip addr add "$5" dev "$3"
    ip netns exec "$1" ip link set "$3" up
    ip link set "$2" up
}
setup_netns() {
    ip netns add "$NSA" && ip netns add "$NSB" || return 1
    for n in $NSA $NSB; do
        ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
        ip netns exec "$n" ip link set lo up
    done
    mkns "$NSA" "$HA" eth0 $MA 192.0.2.2/24 &&
        mkns "$NSB" "$HB" eth0 $MB 198.51.100.2/24 &&
        mkns "$NSA" "$HG0" ag0 02:00:00:00:0a:00 "" &&
        mkns "$NSA" "$HG1" ag1 02:00:00:00:0a:01 ""
}

# --- the switch and the containers ----------------------------------------------------------
write_config() {
    cat > "$W/switch.toml" <<EOF
[switch]
control_socket = "$W/ctl.sock"
pmd_threads = 1
mbufs = 16384

[[bridge]]
name = "br0"

[[bridge]]
name = "br1"
aging_secs = 3

[[port]]
name = "c1"
bridge = "br0"
devargs = "net_vhost0,iface=$W/c1.sock,client=1"
tag = 10

[[port]]
name = "c2"
bridge = "br0"
devargs = "net_vhost1,iface=$W/c2.sock,client=1"
tag = 20

[[port]]
name = "vm"
bridge = "br0"
devargs = "net_vhost2,iface=$W/vm.sock,client=1"
tag = 30

[[port]]
name = "ns"
bridge = "br0"
devargs = "net_af_packet0,iface=$HA"
tag = 30

[[port]]
name = "nsb"
bridge = "br0"
devargs = "net_af_packet1,iface=$HB"
tag = 10

[[port]]
name = "ag0"
bridge = "br1"
devargs = "net_af_packet2,iface=$HG0"

[[port]]
name = "ag1"
bridge = "br1"
devargs = "net_af_packet3,iface=$HG1"
EOF
}

start_switch() {
    setsid env RUST_LOG="${VSIT_SWITCH_LOG:-info}" "$SWITCH" --config "$W/switch.toml" >> "$W/switch.log" 2>&1 &
    SW_PID=$!
    for _ in $(seq 1 100); do
        ctl show >/dev/null 2>&1 && return 0
        kill -0 "$SW_PID" 2>/dev/null || break
        sleep 0.1
    done
    return 1
}

stop_switch() { # SIGTERM, wait up to 10 s; sets SW_STOP (seconds it took, or "stuck") and SW_RC
    local t
    t=$(now_ms)
    kill -TERM "$SW_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$SW_PID" 2>/dev/null || break; sleep 0.05; done
    SW_STOP=$(since "$t" 2)
    if kill -0 "$SW_PID" 2>/dev/null; then
        SW_STOP=stuck
        kill -KILL "$SW_PID"
    fi
    SW_RC=0
    wait "$SW_PID" 2>/dev/null || SW_RC=$?
    SW_PID=""
}

start_c1() { # our testpmd: virtio-user server=1, macswap
    setsid "$TESTPMD" -l 0-1 --vdev "net_virtio_user0,path=$W/c1.sock,server=1,mac=$C1" \
        -- --forward-mode=macswap --stats-period 5 >> "$W/c1.log" 2>&1 &
    C1_PID=$!
}

start_c2() { # DPDK's testpmd: virtio-user server=1 (it waits in accept() for the switch), macswap
    rm -f "$W/c2.sock"
    setsid timeout 900 dpdk-testpmd -l 0-1 --no-pci --in-memory --single-file-segments \
        --file-prefix="vsit-c2-$SFX" --vdev "net_virtio_user0,path=$W/c2.sock,server=1,mac=$C2" \
        -- --forward-mode=macswap --total-num-mbufs=8192 --stats-period 5 -a \
        < /dev/null >> "$W/c2.log" 2>&1 &
    C2_PID=$!
}

# --- the guest ------------------------------------------------------------------------------
guest_bg() { # name tests peermac count: boots the guest against the vm port (QEMU listens); sets GP
    setsid env QG_LOG="$W/$1.console" QG_TESTS="$2" QG_EXPECT="${2%%,*}" QG_PEERMAC="$3" \
        QG_COUNT="$4" QG_TIMEOUT=150 "$QG/run-guest.sh" "$W/vm.sock" server > "$W/$1.guest.log" 2>&1 &
    GP=$!
    BG+=("$GP")
}
guest() { # the same, waiting for it; returns run-guest.sh's status
    guest_bg "$@"
    wait "$GP"
}

guest_pkt() { # name peermac what
    local rc=0 line
    guest "$1" pkt "$2" 20 || rc=$?
    line=$(grep -a 'QG-PKT summary' "$W/$1.console" | tail -1 | sed 's/.*summary //')
    if [ $rc = 0 ] && echo "$line" | grep -q "sent=20 back=20 intact=20 corrupt=0 macswapped=20 "; then
        pass "bytes guest -> $3: $line"
    else
        fail "bytes guest -> $3 (run-guest rc=$rc): ${line:-no summary}"
        tails "$W/$1.guest.log" "$W/switch.log"
    fi
}

nscheck() { # ns args...
    ip netns exec "$1" python3 "$CHECK" "${@:2}"
}

echo_check() { # ns iface dstmac what
    local out rc=0
    out=$(nscheck "$1" echo "$2" "$3" --count 24 2>&1) || rc=$?
    if [ $rc = 0 ]; then
        pass "bytes $4: $(echo "$out" | tail -1)"
    else
        fail "bytes $4: $(echo "$out" | tail -3 | tr '\n' ' ')"
        tails "$W/switch.log"
    fi
}

# =============================================================================================
say "work dir $W; netns $NSA $NSB; host veth ends $HA $HB $HG0 $HG1"
setup_netns || { fail "setting up network namespaces"; exit 1; }
write_config
start_c1
start_c2
start_switch || { fail "ferrovia-switch did not start"; tails "$W/switch.log"; exit 1; }
if wait_links 60 c1 c2 ns nsb ag0 ag1; then
    pass "topology up: c1 (our testpmd), c2 (DPDK testpmd), ns, nsb, ag0, ag1 links up"
else
    fail "topology: not every link came up"
    ctl show
    tails "$W/switch.log" "$W/c1.log" "$W/c2.log"
    exit 1
fi
ctl show

# --- 1. byte for byte ------------------------------------------------------------------------
say "== 1. frames byte for byte through the switch"
ctl set-port vm tag=10
guest_pkt g-c1 $C1 "c1 (our testpmd), VLAN 10"
ctl set-port vm tag=20
guest_pkt g-c2 $C2 "c2 (DPDK testpmd), VLAN 20"
ctl set-port vm tag=30
ctl set-port ns tag=10
echo_check "$NSA" eth0 $C1 "netns A -> c1 (our testpmd), VLAN 10"
ctl set-port ns tag=20
echo_check "$NSA" eth0 $C2 "netns A -> c2 (DPDK testpmd), VLAN 20"
ctl set-port ns tag=30

# --- 2. ping from the guest to the namespace ------------------------------------------------
say "== 2. guest pings netns A (192.0.2.1 -> 192.0.2.2, VLAN 30)"
rc=0
guest g-ping ping $MA 20 || rc=$?
line=$(grep -a 'packets transmitted' "$W/g-ping.console" | sed 's/.*ping: //')
rtt=$(grep -a 'round-trip' "$W/g-ping.console" | sed 's/.*ping: //')
if [ $rc = 0 ] && echo "$line" | grep -q "20 packets transmitted, 20 packets received"; then
    pass "ping guest -> netns A: $line; $rtt"
else
    fail "ping guest -> netns A (run-guest rc=$rc): ${line:-no ping summary}"
    tails "$W/g-ping.guest.log" "$W/switch.log"
fi

# --- 3. learning, MAC move, aging -----------------------------------------------------------
say "== 3. FDB: learning on br0; learning, move and aging on br1 (aging 3 s)"
ctl show fdb br0 > "$W/fdb0.txt"
cat "$W/fdb0.txt"
want_fdb() { # file port vlan mac
    awk -v p="$2" -v v="$3" -v m="$4" '$1 == p && $2 == v && tolower($3) == tolower(m) { f = 1 } END { exit !f }' "$1"
}
miss=""
# (set-port flushed vm's and ns's VLAN-10/20 entries when they went back to VLAN 30)
for e in "c1 10 $C1" "c2 20 $C2" "vm 30 $GUEST" "ns 30 $MA"; do
    # shellcheck disable=SC2086
    want_fdb "$W/fdb0.txt" $e || miss+=" [$e]"
done
if [ -z "$miss" ]; then
    pass "fdb br0: containers, guest and netns A learned on their ports and VLANs"
else
    fail "fdb br0: missing entries:$miss"
fi
M=02:00:00:00:aa:01
nscheck "$NSA" send ag0 $M 02:00:00:00:aa:99 --count 3
sleep 0.3
ctl show fdb br1 > "$W/fdb1a.txt"
nscheck "$NSA" send ag1 $M 02:00:00:00:aa:99 --count 3
sleep 0.3
ctl show fdb br1 > "$W/fdb1b.txt"
moved=$(ctl --json show bridges | python3 -c 'import json,sys; print([b for b in json.load(sys.stdin) if b["name"]=="br1"][0]["counters"]["moved"])')
if want_fdb "$W/fdb1a.txt" ag0 0 $M && want_fdb "$W/fdb1b.txt" ag1 0 $M && [ "$moved" -ge 1 ]; then
    pass "fdb br1: $M learned on ag0, moved to ag1 (bridge counter moved=$moved)"
else
    fail "fdb br1 learning/move: before the move, after it, moved=$moved:"
    cat "$W/fdb1a.txt" "$W/fdb1b.txt"
fi
aged=""
# The FDB clock counts whole seconds: an entry last seen in second s goes when the clock passes
# s + aging_secs, so 2..4 s after its last frame with aging_secs = 3.
for i in $(seq 1 80); do
    if ! ctl show fdb br1 | grep -qi "$M"; then aged=$(((i + 3) / 10)).$(((i + 3) % 10)); break; fi
    sleep 0.1
done
if [ -n "$aged" ] && [ "${aged%.*}" -ge 2 ] && [ "${aged%.*}" -lt 5 ]; then
    pass "fdb br1: $M aged out about ${aged} s after its last frame (aging_secs 3); $(ctl show bridges | grep '^br1' | sed 's/.*; learned/learned/')"
else
    fail "fdb br1: $M not aged out 2..5 s after its last frame (aging_secs 3): gone after ${aged:-more than 8} s"
    ctl show fdb br1
fi

# --- 4. VLAN isolation ------------------------------------------------------------------------
say "== 4. VLAN isolation: ns and c1 on VLAN 10, nsb and c2 on VLAN 20"
ctl set-port ns tag=10
ctl set-port nsb tag=20
# (-s 256: in immediate mode libpcap sizes each ring slot by the snapshot length, so with the
# default 262144 its buffer holds a handful of frames and a burst is dropped)
capture() { # ns file: start tcpdump in ns on eth0 for ethertype 0x88b6; sets CAP_PID
    setsid ip netns exec "$1" tcpdump -i eth0 -n --immediate-mode -s 256 -B 4096 -U -w "$2" ether proto 0x88b6 > "$2.err" 2>&1 &
    CAP_PID=$!
    BG+=("$CAP_PID")
    for _ in $(seq 1 50); do grep -q listening "$2.err" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}
stop_capture() { # file: stop tcpdump, print the frames it captured
    sleep 0.5
    kill_group "$CAP_PID" INT
    wait "$CAP_PID" 2>/dev/null
    grep -h 'dropped by kernel' "$1.err" | grep -v '^0 ' | sed 's/^/    tcpdump: /' >&2
    tcpdump -n -r "$1" 2>/dev/null | grep -c '^[0-9]' # one line per frame (hex dumps follow)
}
snap() { # ports... -> "port=tx_attempts ..."
    local p
    for p in "$@"; do echo -n "$p=$(pfield "$p" tx_attempts) "; done
}
delta() { # before after port
    local a b
    a=$(echo "$1" | tr ' ' '\n' | sed -n "s/^$3=//p")
    b=$(echo "$2" | tr ' ' '\n' | sed -n "s/^$3=//p")
    echo $((b - a))
}
N=50
capture "$NSB" "$W/vlan20.pcap" || fail "tcpdump did not start in $NSB"
before=$(snap c1 c2 nsb vm)
nscheck "$NSA" flood eth0 --count $N --uuc-byte 1
got=$(stop_capture "$W/vlan20.pcap")
after=$(snap c1 c2 nsb vm)
d_c1=$(delta "$before" "$after" c1)
d_c2=$(delta "$before" "$after" c2)
d_nsb=$(delta "$before" "$after" nsb)
d_vm=$(delta "$before" "$after" vm)
say "flood of $N broadcast + $N unknown-unicast frames on VLAN 10 from ns: frames out of c1 +$d_c1, c2 +$d_c2, nsb +$d_nsb, vm +$d_vm; captured in netns B (VLAN 20): $got"
if [ "$d_c1" -ge $((2 * N)) ] && [ "$d_c2" = 0 ] && [ "$d_nsb" = 0 ] && [ "$d_vm" = 0 ] && [ "$got" = 0 ]; then
    pass "vlan: VLAN-10 flood reached c1 (VLAN 10, +$d_c1) and no VLAN-20/30 port (c2 +0, nsb +0, vm +0; capture on nsb: 0 frames)"
else
    fail "vlan: VLAN-10 flood: c1 +$d_c1 (want >= $((2 * N))), c2 +$d_c2, nsb +$d_nsb, vm +$d_vm, nsb capture $got (want 0)"
fi
# the same capture sees the flood once nsb is on VLAN 10 (the capture works; isolation is the VLAN)
ctl set-port nsb tag=10
capture "$NSB" "$W/vlan10.pcap" || fail "tcpdump did not start in $NSB"
before=$(snap c1 c2 nsb)
nscheck "$NSA" flood eth0 --count $N --uuc-byte 2
got=$(stop_capture "$W/vlan10.pcap")
after=$(snap c1 c2 nsb)
d_c1=$(delta "$before" "$after" c1)
d_c2=$(delta "$before" "$after" c2)
d_nsb=$(delta "$before" "$after" nsb)
if [ "$got" = $((2 * N)) ] && [ "$d_nsb" = $((2 * N)) ] && [ "$d_c2" = 0 ] && [ "$d_c1" -ge $((2 * N)) ]; then
    pass "vlan: nsb moved to VLAN 10 at run time gets the same flood (capture $got frames, nsb +$d_nsb, c1 +$d_c1, c2 +0)"
else
    fail "vlan: after set-port nsb tag=10: capture $got (want $((2 * N))), nsb +$d_nsb, c1 +$d_c1, c2 +$d_c2 (want 0)"
fi
tcpdump -n -r "$W/vlan10.pcap" 2>/dev/null | head -2 | sed 's/^/    /'
ctl set-port ns tag=30

# --- 5a. container restarts under traffic ----------------------------------------------------
say "== 5a. containers killed (SIGKILL) and restarted under traffic"
ctl set-port ns tag=20 # ns streams to c2 on VLAN 20, nsb to c1 on VLAN 10
rm -f "$W/stop5a"
setsid ip netns exec "$NSB" python3 "$CHECK" stream eth0 $C1 --stop-file "$W/stop5a" --rate 100 \
    --max 40 --status "$W/s1.status" --expect-loss > "$W/stream-c1.log" 2>&1 &
S1=$!
BG+=("$S1")
setsid ip netns exec "$NSA" python3 "$CHECK" stream eth0 $C2 --stop-file "$W/stop5a" --rate 100 \
    --max 40 --status "$W/s2.status" --expect-loss > "$W/stream-c2.log" 2>&1 &
S2=$!
BG+=("$S2")
sleep 2
say "streams before the kill: c1 $(cat "$W/s1.status" 2>/dev/null) c2 $(cat "$W/s2.status" 2>/dev/null) (sent back)"
kill_group "$C1_PID" KILL
kill_group "$C2_PID" KILL
wait "$C1_PID" "$C2_PID" 2>/dev/null
tk=$(now_ms)
sleep 1
echo "---- restart ----" >> "$W/c1.log"
echo "---- restart ----" >> "$W/c2.log"
start_c1
start_c2
if wait_links 60 c1 c2; then
    say "c1 and c2 links up again $(since "$tk") s after the kill (1 s of it before the restart)"
else
    fail "restart: c1/c2 links not up 60 s after the containers restarted"
    tails "$W/switch.log" "$W/c1.log" "$W/c2.log"
fi
sleep 1
touch "$W/stop5a"
stream_verdict() { # pid log what
    if wait "$1" 2>/dev/null; then
        pass "$3: $(grep STREAM "$2" | tail -1)"
    else
        fail "$3: $(grep STREAM "$2" | tail -2 | tr '\n' ' ')"
        tails "$W/switch.log" "$W/c1.log" "$W/c2.log"
    fi
}
stream_verdict $S1 "$W/stream-c1.log" "restart of c1 (our testpmd) under a 100 frames/s stream from netns B"
stream_verdict $S2 "$W/stream-c2.log" "restart of c2 (DPDK testpmd) under a 100 frames/s stream from netns A"
ctl set-port ns tag=30

# --- 5b. switch restart under traffic ------------------------------------------------------
say "== 5b. ferrovia-switch stopped (SIGTERM) and restarted while the guest pings netns A and netns B streams to c1"
rm -f "$W/stop5b"
setsid ip netns exec "$NSB" python3 "$CHECK" stream eth0 $C1 --stop-file "$W/stop5b" --rate 100 \
    --max 60 --status "$W/s3.status" --expect-loss > "$W/stream-sw.log" 2>&1 &
S3=$!
BG+=("$S3")
PCOUNT=60 # pings at 0.2 s: 12 s
guest_bg g-restart ping $MA $PCOUNT
for _ in $(seq 1 600); do grep -aq 'QG: eth0 up' "$W/g-restart.console" 2>/dev/null && break; sleep 0.1; done
sleep 2.5 # about 12 pings answered before the switch goes
if ! wait_links 1 vm; then fail "switch restart: vm link not up while the guest pings"; fi
stop_switch
say "ferrovia-switch stopped in $SW_STOP s (exit status $SW_RC) after SIGTERM; starting it again"
[ "$SW_STOP" = stuck ] && fail "switch restart: ferrovia-switch did not stop within 10 s of SIGTERM"
[ "$SW_RC" = 0 ] || fail "switch restart: ferrovia-switch exited with status $SW_RC after SIGTERM"
echo "---- restart ----" >> "$W/switch.log"
tr=$(now_ms)
if start_switch && wait_links 30 c1 c2 vm ns nsb ag0 ag1; then
    pass "switch restart: every port's link up again $(since "$tr") s after the restart (c1, c2, vm, ns, nsb, ag0, ag1)"
else
    fail "switch restart: not every link came back"
    ctl show
    tails "$W/switch.log" "$W/c1.log" "$W/c2.log"
fi
ctl show
sleep 1
touch "$W/stop5b"
stream_verdict $S3 "$W/stream-sw.log" "switch restart: stream netns B -> c1 resumed"
wait $GP
seqs=$(grep -a 'bytes from 192.0.2.2: seq=' "$W/g-restart.console" | sed 's/.*seq=\([0-9]*\).*/\1/' | tr '\n' ' ')
nrx=$(echo $seqs | wc -w)
last_ok=1
for q in $(seq $((PCOUNT - 20)) $((PCOUNT - 1))); do
    echo " $seqs " | grep -q " $q " || last_ok=0
done
first_ok=0
echo " $seqs " | grep -q " 0 " && first_ok=1
if [ $first_ok = 1 ] && [ $last_ok = 1 ]; then
    pass "switch restart: guest ping across the restart: $nrx of $PCOUNT answered, the first and the last 20 included ($(grep -a 'round-trip' "$W/g-restart.console" | sed 's/.*ping: //'))"
else
    fail "switch restart: guest ping: answered seqs: $seqs"
    tails "$W/g-restart.guest.log"
fi
# every port carries traffic after the restart
ctl set-port nsb tag=20
echo_check "$NSB" eth0 $C2 "after the switch restart: netns B -> c2 (DPDK testpmd), VLAN 20"
ctl set-port nsb tag=10
nscheck "$NSA" send ag0 02:00:00:00:aa:02 02:00:00:00:aa:99 --count 2
nscheck "$NSA" send ag1 02:00:00:00:aa:03 02:00:00:00:aa:99 --count 2
sleep 0.3
if ctl show fdb br1 | grep -qi '^ag0 .* 02:00:00:00:aa:02' && ctl show fdb br1 | grep -qi '^ag1 .* 02:00:00:00:aa:03'; then
    pass "after the switch restart: br1's ag0 and ag1 receive (their sources learned)"
else
    fail "after the switch restart: br1 did not learn from ag0/ag1"
    ctl show fdb br1
fi

# --- 6. routing ------------------------------------------------------------------------------
say "== 6. routing: netns A 192.0.2.2/24 (VLAN 30) <-> netns B 198.51.100.2/24 (VLAN 40)"
ctl set-port nsb tag=40
ctl add-ri gw-a br0 192.0.2.254/24 vlan=30 || fail "add-ri gw-a"
ctl add-ri gw-b br0 198.51.100.1/24 vlan=40 || fail "add-ri gw-b"
ctl show routes
ip netns exec "$NSA" ip route add 198.51.100.0/24 via 192.0.2.254
ip netns exec "$NSB" ip route add default via 198.51.100.1
setsid ip netns exec "$NSB" tcpdump -i eth0 -n --immediate-mode -s 256 -B 4096 -vv -l icmp > "$W/route-b.txt" 2> "$W/route-b.err" &
CAPB=$!
BG+=("$CAPB")
setsid ip netns exec "$NSA" tcpdump -i eth0 -n --immediate-mode -s 256 -B 4096 -vv -l icmp > "$W/route-a.txt" 2> "$W/route-a.err" &
CAPA=$!
BG+=("$CAPA")
for _ in $(seq 1 50); do grep -q listening "$W/route-a.err" && grep -q listening "$W/route-b.err" && break; sleep 0.1; done
# The router drops a packet whose next hop is not resolved yet (and sends an ARP request; the drop
# is counted as arp_miss): one warm-up echo resolves 198.51.100.2 before the counted pings.
arp0=$(ctl --json show ports | python3 -c 'import json,sys; print(sum(p["stats"]["drops"].get("arp_miss", 0) for p in json.load(sys.stdin)))')
ip netns exec "$NSA" "${PING[@]}" -c 2 -i 0.5 -W 1 198.51.100.2 > "$W/ping-warm.txt" 2>&1
arp1=$(ctl --json show ports | python3 -c 'import json,sys; print(sum(p["stats"]["drops"].get("arp_miss", 0) for p in json.load(sys.stdin)))')
say "warm-up: $(grep -a 'packets transmitted' "$W/ping-warm.txt"); arp_miss drops $arp0 -> $arp1"
ip netns exec "$NSA" "${PING[@]}" -c 10 -i 0.2 -W 1 198.51.100.2 > "$W/ping-ab.txt" 2>&1
ip netns exec "$NSB" "${PING[@]}" -c 5 -i 0.2 -W 1 192.0.2.2 > "$W/ping-ba.txt" 2>&1
ip netns exec "$NSA" "${PING[@]}" -c 5 -i 0.2 -W 1 192.0.2.254 > "$W/ping-gw.txt" 2>&1
ip netns exec "$NSB" "${PING[@]}" -c 5 -i 0.2 -W 1 192.0.2.254 > "$W/ping-gw2.txt" 2>&1
sleep 0.5
kill_group "$CAPA" INT
kill_group "$CAPB" INT
wait "$CAPA" "$CAPB" 2>/dev/null
cat "$W/ping-ab.txt" | sed 's/^/    /'
summ() { grep -a 'packets transmitted' "$1"; }
ttls() { sed -n 's/.* ttl=\([0-9]*\).*/\1/p' "$1" | sort -u | tr '\n' ' '; }
if grep -q ' 0% packet loss' "$W/ping-ab.txt" && [ "$(ttls "$W/ping-ab.txt")" = "63 " ]; then
    pass "route: netns A -> 198.51.100.2 across the router: $(summ "$W/ping-ab.txt"), reply ttl=63 (64 - 1); $(grep -aE 'rtt|round-trip' "$W/ping-ab.txt")"
else
    fail "route: netns A -> 198.51.100.2: $(summ "$W/ping-ab.txt"); ttls seen: $(ttls "$W/ping-ab.txt")"
    ctl show routes
    ctl show ports
fi
if grep -q ' 0% packet loss' "$W/ping-ba.txt" && [ "$(ttls "$W/ping-ba.txt")" = "63 " ]; then
    pass "route: netns B -> 192.0.2.2 across the router: $(summ "$W/ping-ba.txt"), reply ttl=63"
else
    fail "route: netns B -> 192.0.2.2: $(summ "$W/ping-ba.txt"); ttls seen: $(ttls "$W/ping-ba.txt")"
fi
# What the receivers saw (tcpdump -vv checks the IP header and ICMP checksums and flags bad
# ones): A's requests arrive in B with ttl 63, B's replies arrive in A with ttl 63.
routed() { # capture "src > dst: ICMP echo request|reply": the ttls of those packets
    grep -B1 -F "$2" "$1" | grep -o 'ttl [0-9]*' | sort | uniq -c | sed 's/^ *//' | tr '\n' ';'
}
req_b=$(routed "$W/route-b.txt" "192.0.2.2 > 198.51.100.2: ICMP echo request")
rep_a=$(routed "$W/route-a.txt" "198.51.100.2 > 192.0.2.2: ICMP echo reply")
bad=$(cat "$W/route-a.txt" "$W/route-b.txt" | grep -ci 'bad cksum\|wrong icmp cksum\|wrong cksum' || true)
n_req=$(echo "$req_b" | sed -n 's/^\([0-9]*\) ttl 63;$/\1/p')
n_rep=$(echo "$rep_a" | sed -n 's/^\([0-9]*\) ttl 63;$/\1/p')
if [ "${n_req:-0}" -ge 10 ] && [ "${n_rep:-0}" -ge 10 ] && [ "$bad" = 0 ]; then
    pass "route: tcpdump -vv: $n_req requests A->B seen in B and $n_rep replies B->A seen in A, all with ttl 63, no bad IP or ICMP checksum"
else
    fail "route: tcpdump -vv: requests A->B in B by ttl: '$req_b'; replies B->A in A by ttl: '$rep_a' (want only ttl 63, >= 10 each); bad checksums: $bad"
    head -8 "$W/route-b.txt" | sed 's/^/    /'
fi
if grep -q ' 0% packet loss' "$W/ping-gw.txt" && grep -q ' 0% packet loss' "$W/ping-gw2.txt"; then
    pass "route: the router answers ICMP echo on 192.0.2.254 from its subnet ($(summ "$W/ping-gw.txt"); ttl $(ttls "$W/ping-gw.txt")) and from netns B through the router ($(summ "$W/ping-gw2.txt"))"
else
    fail "route: ping of the router address 192.0.2.254: from A: $(summ "$W/ping-gw.txt"); from B: $(summ "$W/ping-gw2.txt")"
fi
ctl show routes

# --- end ----------------------------------------------------------------------------------
stop_switch
[ "$SW_RC" = 0 ] || fail "ferrovia-switch exited with status $SW_RC on the final SIGTERM"
say "vswitch tests: $passes passed, $fails failed in $(since "$T0") s"
[ "$fails" = 0 ]
