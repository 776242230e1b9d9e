#!/bin/sh
# /init of the guest of tests/qemu/virtio-pci.sh (busybox sh, PID 1): net_virtio_pci's
# probing errors and a port stop/start cycle on a real virtio-net-pci device (0000:00:04.0,
# QEMU user networking, no traffic). Each case prints "VP-CASE name" then testpmd's output
# (the host script judges it); "VP-DONE" ends the run.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
    failover net_failover virtio_net uio uio_pci_generic; do
    insmod /lib/modules/$m.ko 2>/dev/null
done
i=0
while [ ! -e /sys/bus/pci/devices/0000:00:04.0/driver ] && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); done
A=0000:00:04.0
D=/sys/bus/pci/devices/$A
tp() { /bin/testpmd --no-telemetry -l 0 "$@" 2>&1; }
echo "VP-CASE no-hugepages"
tp -a $A -- --total-num-mbufs=4096 </dev/null
echo 32 >/proc/sys/vm/nr_hugepages
echo "VP-CASE bound-to-virtio-pci"
tp -a $A -- --total-num-mbufs=4096 </dev/null
echo "VP-CASE not-virtio"
tp -a 0000:00:01.0 -- --total-num-mbufs=4096 </dev/null
echo "VP-CASE no-such-device"
tp -a 0000:00:09.0 -- --total-num-mbufs=4096 </dev/null
echo $A >$D/driver/unbind
echo uio_pci_generic >$D/driver_override
echo $A >/sys/bus/pci/drivers/uio_pci_generic/bind
echo "VP-CASE stop-start"
printf 'show port info 0\nport stop all\nport start all\nshow port info 0\nquit\n' |
    tp -a $A -- -i --total-num-mbufs=4096
echo "VP-DONE"
poweroff -f
