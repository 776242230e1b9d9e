#!/usr/bin/env python3
"""A/B of two builds of our testpmd as PVP's host: one ferrovia-pvp NDR/PDR search per build
per round, the builds' order alternating (ABBA), the same topology for both (generator and
in-process VNF on CPU 1, host on CPU 0 unless options say otherwise). Reports each round,
the medians and the per-round ratios B/A. A benchmark, not a test; run it on a quiet machine.

    scripts/ab-pvp.py --a /tmp/base/target/release/testpmd --b target/release/testpmd \\
        --rounds 4 --size 1514 --min-load 0.4Mpps --max-load 1.2Mpps -- --queue-size 32768
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="testpmd binary A (the baseline)")
    ap.add_argument("--b", required=True, help="testpmd binary B (the change)")
    ap.add_argument("--pvp", default=os.path.join(HERE, "..", "target", "release", "ferrovia-pvp"))
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--size", default="1514", help="frame size without FCS")
    ap.add_argument("--min-load", default="0.4Mpps")
    ap.add_argument("--max-load", default="1.2Mpps")
    ap.add_argument("extra", nargs="*", help="more ferrovia-pvp options, after --")
    a = ap.parse_args()
    for path in (a.a, a.b, a.pvp):
        if not os.access(path, os.X_OK):
            sys.exit(f"ab-pvp: {path} is not an executable (build it: cargo build --release -p ferrovia-testpmd -p ferrovia-pktgen)")
    bins = {"A": a.a, "B": a.b}
    ndr = {"A": [], "B": []}
    for r in range(a.rounds):
        for k in (["A", "B"] if r % 2 == 0 else ["B", "A"]):
            t = time.time()
            cmd = [a.pvp, "--host", "ours", "--testpmd", bins[k], "--sizes", a.size,
                   "--line-rate", "40Gbps", "--min-load", a.min_load, "--max-load", a.max_load,
                   "--initial-duration", "0.5", "--final-duration", "1", "--phases", "2",
                   "--width", "0.01", "--latency-duration", "0.1"] + a.extra
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            m = re.search(r"Result: ([\d.]+) Mpps NDR, ([\d.]+) Mpps PDR", p.stdout)
            if p.returncode != 0 or not m:
                sys.exit(f"ab-pvp: ferrovia-pvp failed (status {p.returncode}):\n{p.stderr[-2000:]}")
            ndr[k].append(float(m.group(1)))
            print(f"round {r + 1} {k}: NDR {m.group(1)} PDR {m.group(2)} Mpps ({time.time() - t:.0f} s)", flush=True)
    ratios = [b / x for x, b in zip(ndr["A"], ndr["B"])]
    print(f"NDR medians: A {statistics.median(ndr['A']):.3f}, B {statistics.median(ndr['B']):.3f} Mpps; "
          f"B/A per round {', '.join(f'{x:.3f}' for x in ratios)} (median {statistics.median(ratios):.3f}, "
          f"B >= A in {sum(x >= 1 for x in ratios)}/{len(ratios)})")


if __name__ == "__main__":
    main()
