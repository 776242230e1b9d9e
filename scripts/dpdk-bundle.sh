#!/usr/bin/env bash
# Packs Debian's DPDK 22.11 dpdk-testpmd with everything it loads (its libraries, glibc's
# loader, and the mempool_ring, net_vhost and net_virtio drivers) into one folder, with a
# `bin/dpdk-testpmd` wrapper that runs it from there. For benchmarking against DPDK on a
# machine that has neither DPDK nor a package mirror (scripts/bench-pvp-dedicated.sh puts
# DIR/bin on PATH when PVP_DPDK_BUNDLE=DIR).
#
# Usage: scripts/dpdk-bundle.sh DIR      (on a machine with `apt-get install dpdk` done)
set -euo pipefail
DIR=${1:?usage: scripts/dpdk-bundle.sh DIR (the folder to create)}
SRC=$(command -v dpdk-testpmd) || {
    echo "dpdk-bundle: dpdk-testpmd is not installed here (apt-get install dpdk, then rerun)" >&2
    exit 1
}
PMDS=$(ls -d /usr/lib/x86_64-linux-gnu/dpdk/pmds-* 2>/dev/null | head -1)
[[ -n $PMDS ]] || { echo "dpdk-bundle: no DPDK driver folder under /usr/lib/x86_64-linux-gnu/dpdk (is the dpdk package complete?)" >&2; exit 1; }
rm -rf "$DIR"
mkdir -p "$DIR/bin" "$DIR/lib"
cp -L "$SRC" "$DIR/dpdk-testpmd.real"
drivers=()
for d in librte_mempool_ring librte_net_vhost librte_net_virtio; do
    f=$(ls "$PMDS/$d".so.* | head -1)
    cp -L "$f" "$DIR/lib/"
    drivers+=("$(basename "$f")")
done
# Every library the binary and the drivers need, and the loader that matches them.
for f in "$SRC" "$DIR"/lib/*.so.*; do
    ldd "$f" | awk '$3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'
done | sort -u | while read -r l; do cp -Ln "$l" "$DIR/lib/" 2>/dev/null || true; done
loader=$(basename "$(ldd "$SRC" | awk '$1 ~ /^\/.*ld-linux/ {print $1}')")
[[ -f $DIR/lib/$loader ]] || { echo "dpdk-bundle: could not find the loader of $SRC" >&2; exit 1; }
{
    echo '#!/bin/bash'
    echo '# DPDK testpmd run with its own loader and libraries (made by scripts/dpdk-bundle.sh).'
    echo 'D=$(cd "$(dirname "$0")/.." && pwd)'
    printf 'exec "$D/lib/%s" --library-path "$D/lib" "$D/dpdk-testpmd.real"' "$loader"
    for d in "${drivers[@]}"; do printf ' -d "$D/lib/%s"' "$d"; done
    echo ' "$@"'
} > "$DIR/bin/dpdk-testpmd"
chmod +x "$DIR/bin/dpdk-testpmd"
echo "dpdk-bundle: $DIR ($(du -sh "$DIR" | cut -f1)); put $DIR/bin on PATH"
