#!/usr/bin/env python3
"""ab-placed.py ROUNDS "label|ENV=V,...|FE BE RING MRG SIZE" ... (diagnostic A/B).

Runs every cell once per round, in a fresh random order each round (run-pair.py), and prints
one line per run: the vhost side's median Rx-pps (first window dropped), the per-window
figures, both sides' CPU cycles per packet (--record-core-cycles) and the three in-window
placement probes. Feed the output to ab-by-placement.py for per-placement medians and paired
ratios. W (env) sets the seconds per run."""
import subprocess, sys, re, os, random, statistics
here = os.path.dirname(os.path.abspath(__file__))
work = os.environ.get("AB_DIR", "/tmp/ferrovia-ab")
n = int(sys.argv[1]); cells = [c.split("|") for c in sys.argv[2:]]
for r in range(n):
    order = cells[:]; random.shuffle(order)
    for label, envs, c in order:
        env = dict(os.environ, W=os.environ.get("W", "6"))
        for kv in envs.split(","):
            if kv:
                k, v = kv.split("=", 1); env[k] = v
        subprocess.run(["python3", os.path.join(here, "run-pair.py")] + c.split() + ["--record-core-cycles"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=90)
        vh = open(os.path.join(work, "vh.log")).read(); vu = open(os.path.join(work, "vu.log")).read()
        pps = [int(x) / 1e6 for x in re.findall(r"Rx-pps:\s+(\d+)", vh)]
        pps = [x for x in pps if x > 0][1:]
        med = statistics.median(pps) if pps else 0
        cyc = lambda t: (re.findall(r"CPU cycles/packet=([\d.]+)", t) or ["nan"])[-1]
        probes = open(os.path.join(work, "inprobe.txt")).read()
        print(f"{r} {label:<12} Mpps {med:5.1f} {[round(x, 1) for x in pps]} | vh {cyc(vh)} | vu {cyc(vu)} | in {probes}", flush=True)
