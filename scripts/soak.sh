#!/usr/bin/env bash
# Soak (not a test): full-rate traffic with the backend restarted every 30 s; prints RSS, fds
# and free mbufs over time and fails on any leak. Usage: scripts/soak.sh [seconds] [reconnect-every]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -q -p ferrovia --example soak -- --seconds "${1:-600}" --reconnect-every "${2:-30}" --report-every 10
