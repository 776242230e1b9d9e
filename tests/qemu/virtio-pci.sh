#!/usr/bin/env bash
# net_virtio_pci on a real device without traffic: the QEMU guest of ../shared/tools/qemu-guest
# with one virtio-net-pci device (user networking) runs tests/qemu/virtio-pci-guest.sh as
# /init, which starts our testpmd with -a on it in each failure case (no hugepages, device
# still bound to virtio-pci, not a virtio device, no such device) and then, bound to
# uio_pci_generic, through a port stop/start cycle. This script checks each case's message.
# (Traffic through the driver: tests/qemu/pvp-vm.sh.)
# Exit status: 0 pass (or SKIP: no QEMU or harness), 1 fail. Env: PV_NO_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
skip() { echo "SKIP virtio-pci: $*"; exit 0; }
QG=${QG_TOOLS:-}
for d in "$ROOT/../shared/tools/qemu-guest" /work/shared/tools/qemu-guest; do
    if [ -z "$QG" ] && [ -x "$d/build-initramfs.sh" ]; then QG=$d; fi
done
[ -n "$QG" ] || skip "the QEMU guest harness is not there (set QG_TOOLS)"
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed"
CACHE=${QG_CACHE:-/var/tmp/qemu-guest}
QG_CACHE=$CACHE "$QG/build-initramfs.sh" >/dev/null 2>&1 || skip "the harness could not build its initramfs"
# shellcheck disable=SC1091
. "$CACHE/guest.env"
[ "${PV_NO_BUILD:-0}" = 1 ] || cargo build --release -q -p ferrovia-testpmd
TESTPMD=$ROOT/target/release/testpmd
WORK=$(mktemp -d /tmp/ferrovia-vpci.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
R=$WORK/root
mkdir -p "$R/bin" "$R/lib/modules"
objcopy --strip-debug "$TESTPMD" "$R/bin/testpmd"
for lib in $(ldd "$TESTPMD" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    mkdir -p "$R$(dirname "$lib")"
    cp -L "$lib" "$R$lib"
done
for m in uio uio_pci_generic; do
    ko=$(find "$CACHE/kernel-$KVER" -name "$m.ko" 2>/dev/null | head -1)
    if [ -n "$ko" ]; then cp "$ko" "$R/lib/modules/"; fi
done
install -m 755 tests/qemu/virtio-pci-guest.sh "$R/init"
(cd "$R" && find . | LC_ALL=C sort | busybox cpio -o -H newc -R 0:0 2>/dev/null) | gzip -1 >"$WORK/extra.cpio.gz"
cat "$INITRD" "$WORK/extra.cpio.gz" >"$WORK/initrd.gz"
timeout 240 qemu-system-x86_64 -accel tcg -cpu max -M pc -smp 1 -m 512M -nodefaults \
    -display none -no-reboot -monitor none -serial stdio -kernel "$KERNEL" -initrd "$WORK/initrd.gz" \
    -append "console=ttyS0 panic=-1 loglevel=4" -netdev user,id=n0 \
    -device virtio-net-pci,netdev=n0,vectors=0,addr=0x4,mac=52:54:00:00:00:10 \
    </dev/null 2>&1 | tr -d '\r' >"$WORK/console.log" || true
fails=0
case_out() { sed -n "/^VP-CASE $1\$/,/^VP-\(CASE\|DONE\)/p" "$WORK/console.log"; }
check() { # case, extended regexp that must appear in its output
    if case_out "$1" | grep -Eq "$2"; then
        echo "PASS virtio-pci $1: $(case_out "$1" | grep -Eo "$2" | head -1)"
    else
        echo "FAIL virtio-pci $1: no /$2/ in:"
        case_out "$1" | tail -8 | sed 's/^/    /'
        fails=$((fails + 1))
    fi
}
grep -q '^VP-DONE' "$WORK/console.log" || { echo "FAIL virtio-pci: the guest did not finish"; tail -20 "$WORK/console.log"; exit 1; }
check no-hugepages 'no free hugepages\? echo 64 > /proc/sys/vm/nr_hugepages'
check bound-to-virtio-pci '0000:00:04.0 is bound to virtio-pci; unbind it or bind it to uio_pci_generic'
check not-virtio '0000:00:01.0: not a virtio-net device \(vendor 0x8086 device 0x7000\)'
check no-such-device '0000:00:09.0: no such PCI device'
check stop-start 'Port 0 is stopped'
n=$(case_out stop-start | grep -c 'Link status: up' || true)
if [ "$n" = 2 ] && ! case_out stop-start | grep -qiE 'error|fail'; then
    echo "PASS virtio-pci stop-start: link up before the stop and after the start, no error"
else
    echo "FAIL virtio-pci stop-start: link up $n time(s) of 2, or an error:"
    case_out stop-start | tail -20 | sed 's/^/    /'
    fails=$((fails + 1))
fi
echo "virtio-pci: $fails failure(s)"
[ "$fails" = 0 ]
