#!/usr/bin/env python3
"""A/B of two builds of our testpmd on the ours<->ours loopback of bench-loopback.py (vhost side
on CPU 0, virtio-user side on CPU 1, io forwarding, tx_first, Rx-pps read on the vhost side).

Each round runs every configuration (ring x frame size) with binary A and binary B back to back
in a random order, so both see the same host conditions; reported per configuration: the median
Mpps of each and the median over rounds of the per-round ratio B/A, with its quartiles and how
many rounds B was at least as fast. Needs root (the placement probe) and a release build of this
tree (for target/release/ferrovia-placement). This is a benchmark, not a test.

    sudo scripts/ab-loopback.py --a /tmp/base/target/release/testpmd --b target/release/testpmd
"""
import argparse
import importlib.util
import json
import os
import random
import statistics
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("bench_loopback", os.path.join(HERE, "bench-loopback.py"))
bl = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bl)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="testpmd binary A (the baseline)")
    ap.add_argument("--b", required=True, help="testpmd binary B (the change)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--window", type=float, default=3.0, help="seconds measured per cell per round")
    ap.add_argument("--rings", default="split,packed")
    ap.add_argument("--sizes", default="64,1518")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", default=None, help="JSON file for the per-round figures")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    cfgs = [(ring, int(size)) for ring in a.rings.split(",") for size in a.sizes.split(",")]
    tmp = tempfile.mkdtemp(prefix="ferrovia-ab-")
    res = {c: {"A": [], "B": [], "placement": []} for c in cfgs}
    for r in range(a.rounds):
        order = cfgs[:]
        rng.shuffle(order)
        for c in order:
            ab = ["A", "B"]
            rng.shuffle(ab)
            for w in ab:
                bl.OURS = a.a if w == "A" else a.b
                s, _secs, _mem, probes = bl.run_cell(("ours", "ours", c[0], True, c[1]), a.window, tmp)
                m = statistics.median(s) if s else 0
                res[c][w].append(m)
                res[c]["placement"].append(bl.placement_of(probes))
                print(f"round {r + 1} {c[0]:6} {c[1]:5} B {w}: {m / 1e6:6.2f} Mpps "
                      f"({len(s)} windows, placement {bl.placement_of(probes)})", flush=True)
    print()
    out = {}
    for c in cfgs:
        xa, xb = res[c]["A"], res[c]["B"]
        ratios = [y / x for x, y in zip(xa, xb) if x > 0 and y > 0]
        q = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else None
        print(f"{c[0]:6} {c[1]:5} B: A {statistics.median(xa) / 1e6:6.2f} Mpps, B {statistics.median(xb) / 1e6:6.2f} Mpps, "
              f"B/A per round: median {statistics.median(ratios) if ratios else float('nan'):.3f}"
              + (f" [{q[0]:.3f}-{q[2]:.3f}]" if q else "")
              + f", B >= A in {sum(1 for x in ratios if x >= 1)}/{len(ratios)} rounds")
        out[f"{c[0]}-{c[1]}"] = {
            "a_mpps": [round(x / 1e6, 3) for x in xa],
            "b_mpps": [round(x / 1e6, 3) for x in xb],
            "b_over_a": [round(x, 3) for x in ratios],
            "placement": res[c]["placement"],
        }
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
