#!/usr/bin/env bash
# Model-checks the lock-free structures with loom (all interleavings within loom's bounds):
# the MPMC object ring, the mempool's per-thread caches flushing into and refilling from it,
# and the control/poller quiesce handshake. The non-loom build is unaffected: these test files
# are `#![cfg(loom)]` and the library uses loom's atomics only under `--cfg loom`.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom"
# A separate directory: the loom flags would otherwise invalidate the normal build.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}/loom
export LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-3}
cargo test --release -p ferrovia-memory --test loom_ring --test loom_mempool
cargo test --release -p ferrovia-virtqueue --test loom_quiesce
