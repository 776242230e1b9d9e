#!/usr/bin/env python3
"""Kernel-interface ports against DPDK's: net_af_packet and net_tap forwarding throughput, ours
and DPDK 22.11's testpmd, on the same topology, interleaved in rounds (a benchmark, not a test).

Topologies (all on this machine; the generator is the same in every cell):

  af_packet:  [ns fkp-gen] fkg0 ==veth== fkd0 -> DUT io -> fkd1 ==veth== fks1 [ns fkp-gen]
              generator: our testpmd txonly on net_af_packet over fkg0 (CPU 1)
              sink: the kernel's rx_packets counter of fks1
  tap:        generator: our testpmd txonly on net_af_packet over tap fkta (the kernel transmits
              out of fkta, which the DUT reads) -> DUT io -> tap fktb (the DUT writes, the
              kernel receives) ; sink: fktb's rx_packets counter

DUT = testpmd io on CPU 0 (`--lcores 0@0,1@0`), ours or dpdk-testpmd, with the same devargs.
The figure is the sink's packet rate over the window, after a warm-up; the generator's offered
rate is printed beside it. Each round runs every (driver, size) pair for both DUTs, in a fresh
random order, and the ratio ours/DPDK is taken within the round; the median over rounds is
reported. Writes bench-out/kernel-ports.json.

  sudo scripts/bench-kernel-ports.py [--rounds 3] [--duration 5] [--warmup 2] [--sizes 64,1518]
                                     [--drivers af_packet,tap]
"""
import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = os.path.join(ROOT, "target", "release", "testpmd")
NS = "fkp-gen"
CYCLES = re.compile(r"CPU cycles/packet=([0-9.]+)")


def sh(cmd, check=False):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit(f"bench-kernel-ports: `{cmd}` failed: {r.stderr.strip()}")
    return r


def counter(dev, field, ns=None):
    pre = f"ip -n {ns} " if ns else "ip "
    r = sh(f"{pre}-j -s link show dev {dev}")
    if r.returncode != 0:
        return None
    st = json.loads(r.stdout)[0]["stats64"]
    return st[field]["packets"]


def setup_veth():
    teardown()
    sh(f"ip netns add {NS}", check=True)
    sh(f"ip link add fkg0 type veth peer name fkd0", check=True)
    sh(f"ip link add fkd1 type veth peer name fks1", check=True)
    sh(f"ip link set fkg0 netns {NS}", check=True)
    sh(f"ip link set fks1 netns {NS}", check=True)
    for d in ("fkd0", "fkd1"):
        sh(f"sysctl -qw net.ipv6.conf.{d}.disable_ipv6=1")
        sh(f"ip link set {d} up", check=True)
    for d in ("fkg0", "fks1"):
        sh(f"ip netns exec {NS} sysctl -qw net.ipv6.conf.{d}.disable_ipv6=1")
        sh(f"ip -n {NS} link set {d} up", check=True)


def teardown():
    sh(f"ip netns del {NS}")
    for d in ("fkd0", "fkd1", "fkta", "fktb"):
        sh(f"ip link del {d}")


def dut_cmd(impl, driver, prefix):
    if driver == "af_packet":
        vdevs = ["net_af_packet0,iface=fkd0", "net_af_packet1,iface=fkd1"]
    else:
        vdevs = ["net_tap0,iface=fkta", "net_tap1,iface=fktb"]
    app = ["--forward-mode=io", "--stats-period", "1", "--burst=32", "--record-core-cycles"]
    if impl == "dpdk":
        eal = ["dpdk-testpmd", "--lcores", "0@0,1@0", "--no-pci", "--in-memory",
               "--single-file-segments", f"--file-prefix={prefix}"]
        app += ["--total-num-mbufs=32768"]
    else:
        eal = [OURS, "--lcores", "0@0,1@0", "--no-telemetry"]
    for v in vdevs:
        eal.append(f"--vdev={v}")
    return eal + ["--"] + app


def gen_cmd(iface, size):
    cmd = [OURS, "--lcores", "0@1,1@1", "--no-telemetry", f"--vdev=net_af_packet9,iface={iface}",
           "--", "--forward-mode=txonly", f"--txpkts={size}", "--port-topology=loop",
           "--stats-period", "60", "--burst=32"]
    if iface == "fkg0":
        cmd = ["ip", "netns", "exec", NS] + cmd
    return cmd


def wait_for(pred, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.05)
    return False


def stop(p):
    if p.poll() is None:
        p.send_signal(2)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_cell(impl, driver, size, args, tmp, n):
    if driver == "af_packet":
        setup_veth()
    else:
        teardown()
    log = open(os.path.join(tmp, f"dut-{n}.log"), "w")
    dut = subprocess.Popen(dut_cmd(impl, driver, f"fkp{n}"), stdout=log, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL)
    gen = None
    try:
        if driver == "tap":
            if not wait_for(lambda: counter("fktb", "rx") is not None and counter("fkta", "rx") is not None, 30):
                return {"error": "the DUT did not create its taps"}
            for d in ("fkta", "fktb"):
                sh(f"sysctl -qw net.ipv6.conf.{d}.disable_ipv6=1")
                sh(f"ip link set {d} up")
            sink, sink_ns, src = "fktb", None, "fkta"
        else:
            sink, sink_ns, src = "fks1", NS, "fkg0"
        # The DUT forwards once its ports are up; give DPDK's start-up time.
        time.sleep(3 if impl == "dpdk" else 1)
        glog = open(os.path.join(tmp, f"gen-{n}.log"), "w")
        gen = subprocess.Popen(gen_cmd(src, size), stdout=glog, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
        time.sleep(args.warmup)
        if dut.poll() is not None or gen.poll() is not None:
            return {"error": "a testpmd exited early (logs in %s)" % tmp}
        src_ns = NS if src == "fkg0" else None
        s0, o0, t0 = counter(sink, "rx", sink_ns), counter(src, "tx", src_ns), time.time()
        time.sleep(args.duration)
        s1, o1, t1 = counter(sink, "rx", sink_ns), counter(src, "tx", src_ns), time.time()
        res = {"pps": (s1 - s0) / (t1 - t0), "offered_pps": (o1 - o0) / (t1 - t0)}
    finally:
        if gen:
            stop(gen)
        stop(dut)
        teardown()
    # Both testpmds print the forwarding lcore's busy cycles per packet at stop: the DUT's
    # cost per packet, meaningful even when the generator, not the DUT, sets the rate.
    log.close()
    m = CYCLES.findall(open(log.name).read())
    if m:
        res["cycles_per_packet"] = float(m[-1])
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--sizes", default="64,1518")
    ap.add_argument("--drivers", default="af_packet,tap")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench-kernel-ports: run as root (network namespaces, veth, tap)")
    if not shutil.which("dpdk-testpmd"):
        sys.exit("bench-kernel-ports: dpdk-testpmd not found (scripts/setup-peers.sh installs DPDK 22.11)")
    r = subprocess.run(["cargo", "build", "--release", "-q", "-p", "ferrovia-testpmd", "--bins"], cwd=ROOT)
    if r.returncode != 0:
        sys.exit("cargo build failed")
    sizes = [int(s) for s in args.sizes.split(",")]
    drivers = args.drivers.split(",")
    rng = random.Random(args.seed)
    tmp = os.path.join(ROOT, "bench-out", "kernel-ports-logs")
    os.makedirs(tmp, exist_ok=True)
    rows = []
    n = 0
    for rnd in range(args.rounds):
        pairs = [(d, s) for d in drivers for s in sizes]
        rng.shuffle(pairs)
        for d, s in pairs:
            impls = ["ours", "dpdk"]
            rng.shuffle(impls)
            res = {}
            for impl in impls:
                n += 1
                res[impl] = run_cell(impl, d, s, args, tmp, n)
                r_ = res[impl]
                print(f"round {rnd + 1} {d:9} {s:5} B {impl:4}: "
                      + (f"{r_['pps'] / 1e6:6.3f} Mpps (offered {r_['offered_pps'] / 1e6:.3f}), "
                         f"{r_.get('cycles_per_packet', float('nan')):.0f} cycles/packet"
                         if "pps" in r_ else r_["error"]), flush=True)
            rows.append({"round": rnd + 1, "driver": d, "size": s, **{k: v for k, v in res.items()}})
    print()
    print(f"{'driver':10} {'size':>5}  {'ours Mpps':>10} {'DPDK Mpps':>10} {'ours/DPDK':>10}"
          f"  {'ours cyc/pkt':>12} {'DPDK cyc/pkt':>12}  rounds")
    summary = []
    for d in drivers:
        for s in sizes:
            cell = [r for r in rows if r["driver"] == d and r["size"] == s
                    and "pps" in r["ours"] and "pps" in r["dpdk"] and r["dpdk"]["pps"] > 0]
            if not cell:
                print(f"{d:10} {s:5}  no complete round")
                continue
            o = statistics.median(r["ours"]["pps"] for r in cell)
            p = statistics.median(r["dpdk"]["pps"] for r in cell)
            ratios = sorted(r["ours"]["pps"] / r["dpdk"]["pps"] for r in cell)
            ratio = statistics.median(ratios)
            def cyc(impl):
                v = [r[impl]["cycles_per_packet"] for r in cell if "cycles_per_packet" in r[impl]]
                return statistics.median(v) if v else float("nan")
            co, cp = cyc("ours"), cyc("dpdk")
            print(f"{d:10} {s:5}  {o / 1e6:10.3f} {p / 1e6:10.3f} {ratio:10.2f}  {co:12.0f} {cp:12.0f}"
                  f"  {len(cell)} (ratios {', '.join(f'{x:.2f}' for x in ratios)})")
            summary.append({"driver": d, "size": s, "ours_mpps": o / 1e6, "dpdk_mpps": p / 1e6,
                            "ratio_median": ratio, "ratios": ratios,
                            "ours_cycles_per_packet": co, "dpdk_cycles_per_packet": cp})
    out = os.path.join(ROOT, "bench-out", "kernel-ports.json")
    with open(out, "w") as f:
        json.dump({"args": vars(args), "rows": rows, "summary": summary}, f, indent=1)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
