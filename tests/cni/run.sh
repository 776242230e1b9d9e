#!/usr/bin/env bash
# ferrovia-cni end to end, with real processes: the ferrovia-switch daemon, the plugin run the
# way a container runtime runs it for two pods (network namespaces), and in the pods our
# testpmd (macswap) and ferrovia-pktcheck, each on the virtio-user socket its device-info file
# names. Every frame pktcheck sends must come back intact through the switch. Then DEL both
# pods (and once more: DEL is idempotent) and check the switch has no port left.
#
# Needs root (network namespaces). Uses Debian's host-local IPAM when installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
[ "$(id -u)" = 0 ] || { echo "cni tests: skipped (need root for network namespaces)"; exit 0; }
cargo build --release -q -p ferrovia-testpmd -p ferrovia-switch -p ferrovia-cni
BIN=$ROOT/target/release
W=$(mktemp -d /tmp/ferrovia-cni.XXXXXX)
PODS=(p1-fcni-$$ p2-fcni-$$)
SW_PID=
cleanup() {
    pkill -INT -f "$W" 2>/dev/null || true
    sleep 0.5
    pkill -KILL -f "$W" 2>/dev/null || true
    [ -n "$SW_PID" ] && { kill "$SW_PID" 2>/dev/null || true; wait "$SW_PID" 2>/dev/null || true; }
    for p in "${PODS[@]}"; do ip netns del "$p" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; for f in "$W"/*.log; do echo "--- $f"; tail -n 20 "$f"; done >&2; exit 1; }

cat > "$W/switch.toml" <<EOF
[switch]
control_socket = "$W/switch.sock"
pmd_threads = 1
mbufs = 16384
[[bridge]]
name = "br0"
EOF
"$BIN/ferrovia-switch" --config "$W/switch.toml" > "$W/switch.log" 2>&1 &
SW_PID=$!
for _ in $(seq 100); do [ -S "$W/switch.sock" ] && break; sleep 0.05; done
[ -S "$W/switch.sock" ] || fail "the switch did not open its control socket"

IPAM='"ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/24"}]], "dataDir": "'$W'/ipam"},'
[ -x /usr/lib/cni/host-local ] || { IPAM=''; echo "note: no /usr/lib/cni/host-local, running without IPAM"; }
cat > "$W/net.conf" <<EOF
{
  "cniVersion": "1.0.0", "name": "fcni-test", "type": "ferrovia-cni",
  "bridge": "br0", "controlSocket": "$W/switch.sock", "sharedDir": "$W/shared",
  "deviceInfoDir": "$W/devinfo", "stateDir": "$W/state", $IPAM
  "vhostMode": "server"
}
EOF
cid() { echo "${1//[^0-9a-z]/}0000000000000000"; } # a container ID from the pod's name
cni() { # COMMAND POD
    CNI_COMMAND=$1 CNI_CONTAINERID="$(cid "$2")" CNI_NETNS="/var/run/netns/$2" \
        CNI_IFNAME=net1 CNI_PATH=/usr/lib/cni "$BIN/ferrovia-cni" < "$W/net.conf"
}
sock_of() { # POD -> the socket its device-info names
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["type"]=="vhost-user" and d["vhost-user"]["mode"]=="client"; print(d["vhost-user"]["path"])' \
        "$W/devinfo/fcni-test-$(cid "$1")-net1-device-info.json"
}

for p in "${PODS[@]}"; do
    ip netns add "$p"
    cni ADD "$p" > "$W/$p.result" || fail "ADD $p: $(cat "$W/$p.result")"
    echo "ADD $p: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["interfaces"][0]["name"], [i["address"] for i in r["ips"]])' "$W/$p.result")"
done
cni ADD "${PODS[0]}" > "$W/again.result" && fail "a repeated ADD succeeded"
grep -q '"code": 101' "$W/again.result" || fail "a repeated ADD: $(cat "$W/again.result")"
echo "PASS repeated ADD refused: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["msg"][:80])' "$W/again.result")..."
cni CHECK "${PODS[0]}" || fail "CHECK ${PODS[0]}"

S1=$(sock_of "${PODS[0]}")
S2=$(sock_of "${PODS[1]}")
ip netns exec "${PODS[0]}" "$BIN/testpmd" -l 0-1 --no-telemetry --vdev "net_virtio_user0,path=$S1" \
    -- --forward-mode=macswap --stats-period 60 > "$W/pod1-testpmd.log" 2>&1 &
ip netns exec "${PODS[1]}" "$BIN/ferrovia-pktcheck" --vdev "net_virtio_user0,path=$S2" \
    --count 3000 --sizes 64,512,1518 --timeout 30 > "$W/pktcheck.log" 2>&1 \
    || fail "pktcheck through the switch: $(tail -n 3 "$W/pktcheck.log")"
echo "PASS pod to pod through ferrovia-switch: $(grep PKTCHECK "$W/pktcheck.log")"
pkill -INT -f "path=$S1" || true
sleep 0.5

for p in "${PODS[@]}"; do
    cni DEL "$p" || fail "DEL $p"
    cni DEL "$p" || fail "a repeated DEL of $p"
done
PORTS=$("$BIN/ferrovia-ctl" --socket "$W/switch.sock" --json show ports)
[ "$PORTS" = "[]" ] || fail "ports left on the switch after DEL: $PORTS"
[ -z "$(ls -A "$W/devinfo")" ] || fail "device-info files left: $(ls "$W/devinfo")"
echo "PASS DEL (twice per pod): no port, socket or device-info file left"
echo "cni tests: all passed"
