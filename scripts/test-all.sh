#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit/property/integration tests, the interop tests
# against DPDK 22.11 and our own testpmd, the QEMU guest tests when available, and (as root) the
# switch's tests with real peers (tests/vswitch/run.sh; FERROVIA_VSWITCH_TESTS=0 skips them).
#
# As root it first installs the peers (scripts/setup-peers.sh); otherwise it runs what it can
# and the DPDK tests say they are skipped (set FERROVIA_REQUIRE_DPDK=1 to make that a failure).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
    scripts/setup-peers.sh
fi

step() { echo; echo "==> $*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "no import cycles between sibling modules"
python3 scripts/check-module-cycles.py

step "cargo test (release; unit, property, loopback, interop, how-to)"
cargo test --workspace --release

step "Debian package: man pages and completions match the binaries, the package installs"
scripts/build-deb.sh --check

step "loom models (ring, mempool caches, quiesce handshake)"
scripts/loom.sh

if [ -x tests/qemu/run.sh ] && [ "${FERROVIA_QEMU_TESTS:-1}" = 1 ]; then
    step "QEMU guest tests"
    tests/qemu/run.sh
fi

if [ -x tests/vswitch/run.sh ] && [ "${FERROVIA_VSWITCH_TESTS:-1}" = 1 ]; then
    if [ "$(id -u)" = 0 ]; then
        step "vswitch tests with real peers (our testpmd, DPDK testpmd, QEMU guest, network namespaces)"
        tests/vswitch/run.sh
    else
        echo
        echo "==> vswitch tests skipped: they need root (network namespaces, veth pairs, hugepages)"
    fi
fi

if [ "$(id -u)" = 0 ]; then
    step "CNI plugin end to end (switch daemon, two pods in network namespaces, host-local IPAM)"
    tests/cni/run.sh
fi

echo
echo "test-all.sh: all tests passed"
