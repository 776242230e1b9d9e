#!/usr/bin/env bash
# Model-checks the lock-free structures with loom (all interleavings within loom's bounds):
# the MPMC object ring behind the mempool, and the control/poller quiesce handshake.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/loom}
export LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-3}
cargo test --release -p ferrovia-memory --test loom_ring
cargo test --release -p ferrovia-virtqueue --test loom_quiesce
