#!/bin/sh
# /init of the PVP VM (busybox sh, PID 1), appended by tests/qemu/pvp-vm.sh to the harness's
# initramfs. The guest is the VNF of the PVP loop: it has two virtio-net-pci devices on
# vhost-user (eth0 on the host's vnf0 port, eth1 on vnf1) and runs our testpmd in macswap mode
# on them. pv.pmd= on the kernel command line picks how:
#   virtio-pci (default): as DPDK's guide does, the two PCI functions are unbound from the
#     kernel's virtio-pci and bound to uio_pci_generic, 2 MiB hugepages are reserved, and
#     testpmd drives them itself with net_virtio_pci (-a ADDR; polling, no interrupts);
#   af_packet: the kernel's virtio_net keeps them and testpmd uses net_af_packet on eth0/eth1
#     (the "kernel-side macswap" first step of issue 20).
#
# Console protocol with the host script (lines start at column 0):
#   "PV: ..."        information
#   "PV-READY ..."   testpmd forwards; the host may start the generator
#   "PV-STATS ..."   testpmd's per-port totals after it stopped
#   "PV-DONE rc=N"   last line before poweroff
# The host ends the run by writing a line to the serial console (our stdin); pv.hold=<s> on
# the kernel command line bounds the wait when it never does; pv.mode=<forward mode> replaces
# macswap (rxonly makes a VNF that loses everything, to see the host script fail).

export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /tmp /var/run
up() { cut -d' ' -f1 /proc/uptime; }
say() { echo "PV: $*"; }
done_() {
    echo "PV-DONE rc=$1 uptime=$(up)"
    sync
    poweroff -f
    echo o >/proc/sysrq-trigger
    sleep 5
}
say "init running uptime=$(up) cpus=$(nproc)"

HOLD=90
MBUFS=8192
MODE=macswap
PMD=virtio-pci
for a in $(cat /proc/cmdline); do
    case "$a" in
        pv.hold=*) HOLD=${a#*=} ;;
        pv.mbufs=*) MBUFS=${a#*=} ;;
        pv.mode=*) MODE=${a#*=} ;;
        pv.pmd=*) PMD=${a#*=} ;;
    esac
done
case "$PMD" in
    virtio-pci | af_packet) ;;
    *) say "ERROR pv.pmd=$PMD: expected virtio-pci or af_packet"; done_ 2 ;;
esac

for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
    failover net_failover virtio_net; do
    insmod /lib/modules/$m.ko 2>&1 | sed "s/^/PV: insmod $m: /"
done
i=0
while { [ ! -e /sys/class/net/eth0 ] || [ ! -e /sys/class/net/eth1 ]; } && [ $i -lt 100 ]; do
    usleep 50000
    i=$((i + 1))
done
for n in eth0 eth1; do
    if [ ! -e /sys/class/net/$n ]; then
        say "ERROR $n did not appear: $(ls /sys/class/net | tr '\n' ' ')"
        done_ 2
    fi
    # keep the links quiet (no IPv6 autoconf, DAD or MLD frames) and take every frame
    echo 1 >/proc/sys/net/ipv6/conf/$n/disable_ipv6 2>/dev/null
    ip link set $n promisc on
    ip link set $n up
    i=0
    while [ "$(cat /sys/class/net/$n/carrier 2>/dev/null)" != 1 ] && [ $i -lt 50 ]; do
        usleep 100000
        i=$((i + 1))
    done
    say "$n mac=$(cat /sys/class/net/$n/address) features=$(cat /sys/class/net/$n/device/features 2>/dev/null) $(ip -o link show $n | grep -o '<[^>]*>')"
done
ip link set lo up

if [ "$PMD" = virtio-pci ]; then
    # DPDK's way: hand the two functions from virtio-pci to uio_pci_generic (it claims no
    # BAR, so testpmd can map them through sysfs), and reserve hugepages for the DMA memory.
    for m in uio uio_pci_generic; do
        insmod /lib/modules/$m.ko 2>&1 | sed "s/^/PV: insmod $m: /"
    done
    PCI=
    for n in eth0 eth1; do
        a=$(basename "$(dirname "$(readlink -f /sys/class/net/$n/device)")")
        PCI="$PCI $a"
    done
    for a in $PCI; do
        d=/sys/bus/pci/devices/$a
        echo "$a" >"$d/driver/unbind"
        echo uio_pci_generic >"$d/driver_override"
        echo "$a" >/sys/bus/pci/drivers/uio_pci_generic/bind ||
            say "$a: uio_pci_generic did not bind; testpmd drives it with no driver"
        say "$a vendor=$(cat $d/vendor) device=$(cat $d/device) driver=$(basename "$(readlink $d/driver 2>/dev/null)" 2>/dev/null)"
    done
    echo 32 >/proc/sys/vm/nr_hugepages
    say "hugepages: $(grep -E 'HugePages_(Total|Free)' /proc/meminfo | tr -s ' ' | tr '\n' ' ')"
    set --
    for a in $PCI; do set -- "$@" -a "$a"; done
else
    set -- --vdev net_af_packet0,iface=eth0 --vdev net_af_packet1,iface=eth1
fi
say "testpmd ports: $*"

# One vCPU: the main lcore and the forwarding lcore share it.
/bin/testpmd --no-telemetry --lcores 0@0,1@0 "$@" \
    -- --forward-mode="$MODE" --stats-period 3600 --total-num-mbufs="$MBUFS" \
    </dev/null >/tmp/testpmd.log 2>&1 &
TP=$!
i=0
while ! grep -q -i "forwarding" /tmp/testpmd.log && kill -0 $TP 2>/dev/null && [ $i -lt 200 ]; do
    usleep 100000
    i=$((i + 1))
done
if ! kill -0 $TP 2>/dev/null; then
    say "ERROR testpmd exited:"
    sed 's/^/PV:   testpmd: /' /tmp/testpmd.log | tail -20
    done_ 1
fi
grep -i -E "port [01]|forwarding" /tmp/testpmd.log | head -8 | sed 's/^/PV:   testpmd: /'
echo "PV-READY uptime=$(up)"

read -r -t "$HOLD" line || say "no stop line from the host within ${HOLD}s"
kill -INT $TP
i=0
while kill -0 $TP 2>/dev/null && [ $i -lt 100 ]; do usleep 100000; i=$((i + 1)); done
kill -0 $TP 2>/dev/null && kill -KILL $TP
wait $TP
rc=$?
sed -n '/statistics for port\|Accumulated forward statistics\|Forward statistics\|RX-packets\|TX-packets\|RX-dropped\|TX-dropped/p' /tmp/testpmd.log |
    tail -20 | sed 's/^/PV:   testpmd: /'
for n in eth0 eth1; do
    s=/sys/class/net/$n/statistics
    [ -d "$s" ] || continue
    echo "PV-STATS $n rx_packets=$(cat $s/rx_packets) tx_packets=$(cat $s/tx_packets) rx_dropped=$(cat $s/rx_dropped) tx_dropped=$(cat $s/tx_dropped) rx_errors=$(cat $s/rx_errors) tx_errors=$(cat $s/tx_errors)"
done
done_ "$rc"
