#!/usr/bin/env bash
# Runs each cargo-fuzz target for SECONDS (default 60) and prints executions and findings.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); Rust 1.95 is stable, so nightly-only flags are
# enabled with RUSTC_BOOTSTRAP=1 and the sanitizer is off (-s none): coverage guidance still
# works, and out-of-bounds accesses are caught by our own checks and debug assertions.
# New crashes land in fuzz/artifacts/<target>/; copy them into fuzz/corpus/<target>/ so the
# replay test (cargo test -p ferrovia-fuzz-harness) keeps them as regressions.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
TARGETS=${2:-"vhost_user_messages device_walk driver_used driver_packed_used"}
export RUSTC_BOOTSTRAP=1
# The fuzz crate is its own workspace with its own target directory (fuzz/target).
unset CARGO_TARGET_DIR
for t in $TARGETS; do
    echo "== $t (${SECS}s)"
    mkdir -p "fuzz/corpus/$t"
    work=$(mktemp -d)
    cp -r "fuzz/corpus/$t/." "$work/"
    set +e
    cargo fuzz run -s none --debug-assertions "$t" "$work" -- -max_total_time="$SECS" -rss_limit_mb=2048 \
        > "fuzz/$t.log" 2>&1
    rc=$?
    set -e
    grep -E "^#[0-9]+.*(DONE|pulse)" "fuzz/$t.log" | tail -1 || true
    runs=$(grep -oE "Done [0-9]+ runs" "fuzz/$t.log" | tail -1 | grep -oE "[0-9]+" || echo "?")
    cov=$(grep -E "^#[0-9]+" "fuzz/$t.log" | tail -1 | grep -oE "cov: [0-9]+" || true)
    corp=$(grep -E "^#[0-9]+" "fuzz/$t.log" | tail -1 | grep -oE "corp: [0-9]+" || true)
    echo "   executions: $runs  $cov  $corp"
    if [ $rc -ne 0 ]; then
        echo "   FINDING: exit $rc, see fuzz/$t.log and fuzz/artifacts/$t/"
    else
        echo "   no finding"
    fi
    rm -rf "$work"
done
