#!/usr/bin/env bash
# Installs and prepares what the interop tests need on a fresh Debian 12 machine: DPDK 22.11
# (dpdk-testpmd is in dpdk-dev), iproute2, util-linux (setpriv), QEMU for the guest tests, tcpdump
# for the switch's tests with real peers, tshark for the capture tests, containernetworking-plugins
# (host-local IPAM for the CNI plugin's test), groff-base (the man page check), and hugepages for
# the DPDK peer. Ferrovia itself needs none of this. Idempotent; run as root.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "setup-peers.sh: must run as root to install packages and reserve hugepages" >&2
    exit 1
fi

need=()
command -v dpdk-testpmd >/dev/null 2>&1 || need+=(dpdk dpdk-dev)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
if [ "${FERROVIA_QEMU_TESTS:-1}" = 1 ]; then
    command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
    command -v busybox >/dev/null 2>&1 || need+=(busybox-static)
fi
if [ "${FERROVIA_VSWITCH_TESTS:-1}" = 1 ]; then
    command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
    command -v python3 >/dev/null 2>&1 || need+=(python3)
fi
# The CNI plugin's test delegates to a real IPAM plugin (host-local); the package check
# renders the man pages with groff.
[ -x /usr/lib/cni/host-local ] || need+=(containernetworking-plugins)
command -v groff >/dev/null 2>&1 || need+=(groff-base)
# tshark reads back the packet captures (the capture tests skip its checks without it).
command -v tshark >/dev/null 2>&1 || need+=(tshark)
if [ ${#need[@]} -gt 0 ]; then
    echo "setup-peers.sh: installing ${need[*]}"
    # tshark's package asks whether non-root users may capture: answer no, without a prompt.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Hugepages for the DPDK peer only.
cur=$(cat /proc/sys/vm/nr_hugepages)
if [ "$cur" -lt 512 ]; then
    echo 512 > /proc/sys/vm/nr_hugepages
fi
mkdir -p /dev/hugepages
mountpoint -q /dev/hugepages || mount -t hugetlbfs none /dev/hugepages
free=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
echo "setup-peers.sh: dpdk-testpmd $(command -v dpdk-testpmd), hugepages free: $free"
if [ "$free" -lt 256 ]; then
    echo "setup-peers.sh: fewer than 256 free hugepages; the DPDK peer tests will fail" >&2
    exit 1
fi
