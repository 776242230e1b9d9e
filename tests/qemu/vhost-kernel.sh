#!/usr/bin/env bash
# virtio-user over vhost-kernel (the exception path), tested inside the QEMU guest, whose Debian
# kernel has the vhost_net and tun modules (this host has no /dev/vhost-net).
#
# It appends a second cpio archive to the harness's initramfs (the kernel unpacks concatenated
# archives in order, later files replacing earlier ones) holding our testpmd with the shared
# libraries it links, the tun/tap/vhost/vhost_net modules of the guest kernel, and
# tests/qemu/vhost-kernel-guest.sh as /init; boots it under TCG with no NIC at all (every
# frame stays inside the guest: kernel stack -> tap -> vhost-net -> our rings -> testpmd and
# back); and relays the guest's "VK: PASS/FAIL" lines. See vhost-kernel-guest.sh for the cases.
#
# Exit status: 0 when every case passed, 1 otherwise (2 when the guest gave no result).
# Env: QG_TOOLS (harness), VK_TIMEOUT (QEMU wall-clock limit, default 240 s), VK_MB (TCP
# payload in MiB, default 4), VK_ONLY (cases: errors,raw,io,mq,offload), VK_SMP (guest CPUs, default 2),
# VK_KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
QG=${QG_TOOLS:-}
if [ -z "$QG" ]; then
    for d in "$ROOT/../shared/tools/qemu-guest" /work/shared/tools/qemu-guest; do
        if [ -x "$d/run-guest.sh" ]; then QG=$d; break; fi
    done
fi
if [ ! -x "$QG/build-initramfs.sh" ]; then
    echo "vhost-kernel tests: harness not found at $QG (set QG_TOOLS)" >&2
    exit 1
fi
CACHE=${QG_CACHE:-/var/tmp/qemu-guest}
QG_CACHE=$CACHE "$QG/build-initramfs.sh" >/dev/null 2>&1
# shellcheck disable=SC1091
. "$CACHE/guest.env"
cargo build --release -q -p ferrovia-testpmd
TESTPMD=$ROOT/target/release/testpmd

WORK=$(mktemp -d /tmp/ferrovia-vk.XXXXXX)
QPID=
cleanup() {
    if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then kill -KILL "$QPID" 2>/dev/null || true; fi
    if [ "${VK_KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# ---- the extra archive ----------------------------------------------------------------------
R=$WORK/root
mkdir -p "$R/bin" "$R/lib/modules/vk"
objcopy --strip-debug "$TESTPMD" "$R/bin/testpmd"
# the shared libraries (and loader) testpmd links, at the same paths
for lib in $(ldd "$TESTPMD" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    mkdir -p "$R$(dirname "$lib")"
    cp -L "$lib" "$R$lib"
done
MODROOT=$CACHE/kernel-$KVER/lib/modules/$KVER
[ -d "$MODROOT" ] || MODROOT=$CACHE/kernel-$KVER/usr/lib/modules/$KVER
for m in tun vhost_iotlb vhost tap vhost_net; do
    f=$(find "$MODROOT/kernel" \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" \) | head -1)
    if [ -z "$f" ]; then
        echo "vhost-kernel tests: module $m not found under $MODROOT" >&2
        exit 1
    fi
    case "$f" in
        *.xz) xz -dc "$f" >"$R/lib/modules/vk/$m.ko" ;;
        *.zst) zstd -qdc "$f" >"$R/lib/modules/vk/$m.ko" ;;
        *) cp "$f" "$R/lib/modules/vk/$m.ko" ;;
    esac
done
install -m 755 tests/qemu/vhost-kernel-guest.sh "$R/init"
(cd "$R" && find . | LC_ALL=C sort | busybox cpio -o -H newc -R 0:0 2>/dev/null) | gzip -1 >"$WORK/extra.cpio.gz"
cat "$INITRD" "$WORK/extra.cpio.gz" >"$WORK/initrd.gz"

# ---- boot -----------------------------------------------------------------------------------
MEM=512
APPEND="console=ttyS0 panic=-1 loglevel=4 vk.mb=${VK_MB:-4} vk.only=${VK_ONLY:-errors,raw,io,mq,offload}"
QEMU=(qemu-system-x86_64 -accel tcg -cpu max -M pc -smp "${VK_SMP:-2}" -m "${MEM}M"
    -nodefaults -display none -no-reboot -monitor none -serial stdio
    -kernel "$KERNEL" -initrd "$WORK/initrd.gz" -append "$APPEND")
echo "vhost-kernel tests: ${QEMU[*]}"
T0=$(date +%s)
timeout --kill-after=5 "${VK_TIMEOUT:-240}" "${QEMU[@]}" </dev/null >"$WORK/console.log" 2>&1 &
QPID=$!
QRC=0
wait "$QPID" || QRC=$?
QPID=
T1=$(date +%s)

tr -d '\r' <"$WORK/console.log" >"$WORK/console.txt"
grep -E '^VK: ' "$WORK/console.txt" | sed 's/^VK: //' | grep -v -E '^(PASS|FAIL) ' | sed 's/^/  guest: /' || true
grep -E '^VK: (PASS|FAIL) ' "$WORK/console.txt" | sed 's/^VK: //' || true
done_line=$(grep -m1 '^VK-DONE' "$WORK/console.txt" || true)
if [ -z "$done_line" ]; then
    echo "FAIL vhost-kernel: no result from the guest (qemu exit $QRC after $((T1 - T0)) s); console tail:"
    tail -30 "$WORK/console.txt" | sed 's/^/    /'
    exit 2
fi
fails=$(echo "$done_line" | sed -n 's/.*fails=\([0-9]*\).*/\1/p')
passes=$(grep -c '^VK: PASS ' "$WORK/console.txt" || true)
echo "vhost-kernel tests: $passes passed, $fails failed, guest run $((T1 - T0)) s"
[ "$fails" = 0 ] && [ "$passes" -gt 0 ]
