#!/usr/bin/env bash
# Runs each cargo-fuzz target for SECONDS (default 60) and prints executions and findings.
#   scripts/fuzz.sh [--asan] [SECONDS] [TARGETS]
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`, 0.13.2 works with Rust 1.95); Rust
# 1.95 is stable, so nightly-only flags are enabled with RUSTC_BOOTSTRAP=1. Without --asan the
# sanitizer is off (-s none, --debug-assertions): coverage guidance still works, and
# out-of-bounds accesses are caught by our own checks and debug assertions. With --asan the
# targets are built with AddressSanitizer (-s address; its own build directory), which also
# catches out-of-bounds reads and writes of the process's own heap and stack.
# New crashes land in fuzz/artifacts/<target>/; minimise them (cargo fuzz tmin) and copy them
# into fuzz/corpus/<target>/ so the replay test (cargo test -p ferrovia-fuzz-harness) keeps
# them as regressions.
set -euo pipefail
cd "$(dirname "$0")/.."
SAN=(-s none --debug-assertions)
MODE=none
if [ "${1:-}" = "--asan" ]; then
    SAN=(-s address --debug-assertions --target-dir fuzz/target/asan)
    MODE=asan
    shift
fi
SECS=${1:-60}
TARGETS=${2:-"vhost_user_messages vhost_user_sequence device_walk device_walk_packed driver_used driver_packed_used l3_parse switch_frames kernel_vfinfo ctrl_request"}
export RUSTC_BOOTSTRAP=1
# The fuzz crate is its own workspace with its own target directory (fuzz/target).
unset CARGO_TARGET_DIR
for t in $TARGETS; do
    echo "== $t ($MODE, ${SECS}s)"
    mkdir -p "fuzz/corpus/$t"
    work=$(mktemp -d)
    cp -r "fuzz/corpus/$t/." "$work/"
    set +e
    cargo fuzz run "${SAN[@]}" "$t" "$work" -- -max_total_time="$SECS" -rss_limit_mb=4096 \
        > "fuzz/$t.$MODE.log" 2>&1
    rc=$?
    set -e
    grep -E "^#[0-9]+.*(DONE|pulse)" "fuzz/$t.$MODE.log" | tail -1 || true
    runs=$(grep -oE "Done [0-9]+ runs" "fuzz/$t.$MODE.log" | tail -1 | grep -oE "[0-9]+" || echo "?")
    cov=$(grep -E "^#[0-9]+" "fuzz/$t.$MODE.log" | tail -1 | grep -oE "cov: [0-9]+" || true)
    corp=$(grep -E "^#[0-9]+" "fuzz/$t.$MODE.log" | tail -1 | grep -oE "corp: [0-9]+" || true)
    echo "   executions: $runs  $cov  $corp"
    if [ $rc -ne 0 ]; then
        echo "   FINDING: exit $rc, see fuzz/$t.$MODE.log and fuzz/artifacts/$t/"
    else
        echo "   no finding"
    fi
    rm -rf "$work"
done
