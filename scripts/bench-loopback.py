#!/usr/bin/env python3
"""Loopback benchmark: a vhost-side testpmd and a virtio-user-side testpmd, one core each,
io forwarding started with tx_first, Rx-pps measured on the vhost side.

Every cell of the matrix  frontend (virtio-user) in {ours, dpdk} x backend (vhost) in
{ours, dpdk} x ring in {split, packed} x mergeable in {on, off} x frame size  runs in short
windows, once per round. The host moves the two vCPUs and every cell's throughput drops 2-3x
when it does, for minutes at a time, so the order matters. By default (--order grouped) each
round runs the configurations (ring, mrg, size) in a fresh random order and, inside each, its
four frontend x backend pairs back to back in a fresh random order: a pair and DPDK<->DPDK of
the same configuration then run within half a minute of each other, under the same placement
in most rounds, and their per-round ratio compares like with like. --order shuffled mixes all
cells of a round instead (the earlier method). Reported per cell: the median Rx-pps over all
windows; the median, over rounds, of the ratio to DPDK<->DPDK of the same round (the paired
ratio, with its quartiles and how many rounds met the target); the same ratio split by where
the host had put the two vCPUs during the measurement (sharing a last-level cache or not,
from a cache-line probe run at real-time priority inside the window, see ferrovia-placement);
and a fast-mode reading. Prints a table and writes JSON. This is a benchmark, not a test.

    sudo scripts/bench-loopback.py                      # split+packed, mrg on, 64 and 1518 B
    sudo scripts/bench-loopback.py --full               # also mrg off
    sudo scripts/bench-loopback.py --rings split --rounds 5
"""
import argparse
import json
import os
import re
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = os.path.join(ROOT, "target", "release", "testpmd")


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True)


def ensure_built():
    r = subprocess.run(["cargo", "build", "--release", "-q", "-p", "ferrovia-testpmd", "--bins"], cwd=ROOT)
    if r.returncode != 0:
        sys.exit("cargo build failed")


def side_cmd(impl, role, sock, ring, mrg, size, prefix, cpu):
    """Command line for one side. role: 'vhost' or 'virtio'."""
    lcores = f"0@{cpu},1@{cpu}"
    if role == "vhost":
        vdev = f"net_vhost0,iface={sock}"
    else:
        vdev = f"net_virtio_user0,path={sock},queue_size=1024,mrg_rxbuf={1 if mrg else 0}"
        if ring == "packed":
            vdev += ",packed_vq=1"
    app = ["--forward-mode=io", "--stats-period", "1", f"--txpkts={size}", "--burst=32"]
    if role == "virtio":
        app.append("--tx-first")
    if impl == "dpdk":
        eal = ["dpdk-testpmd", "--lcores", lcores, "--no-pci", "--in-memory", "--single-file-segments",
               f"--file-prefix={prefix}", f"--vdev={vdev}"]
        app += ["--total-num-mbufs=32768", "--rxd=1024", "--txd=1024"]
    else:
        eal = [OURS, "--lcores", lcores, f"--vdev={vdev}"]
    return eal + ["--"] + app


PPS = re.compile(r"Rx-pps:\s+(\d+)")


PROBE = os.path.join(ROOT, "target", "release", "ferrovia-placement")
# Round trip of one cache line between CPU 0 and CPU 1 below this: the two vCPUs share a
# last-level cache (measured inside the windows: 50-90 ns when they do, 290-410 ns when not).
SAME_LLC_NS = 150.0
# Round trips per in-window probe: well under a millisecond taken from the two loops.
PROBE_ROUND_TRIPS = "3000"
# Whether the probe may run at real-time priority (root); found out on first use.
PROBE_RT = [True]


def placement_probe():
    """Nanoseconds per cache-line round trip between CPUs 0 and 1, measured now (None if the
    probe failed). Inside a window both CPUs run a busy forwarding loop; at real-time priority
    the probe preempts them both at once for the fraction of a millisecond it takes."""
    for rt in ([True, False] if PROBE_RT[0] else [False]):
        cmd = [PROBE] + (["--rt"] if rt else []) + ["0", "1", PROBE_ROUND_TRIPS]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
        except subprocess.TimeoutExpired:
            continue
        try:
            return float(r.stdout.strip())
        except ValueError:
            if rt:
                PROBE_RT[0] = False
                print(f"  placement probe at real-time priority failed ({r.stderr.strip()}); "
                      "probing at normal priority, which reads high under load", file=sys.stderr)
    return None


def placement_of(probes):
    """'same' when every probe of a window read under SAME_LLC_NS, 'cross' when every one read
    above, 'moved' otherwise (the host moved a vCPU during the window, or a probe failed)."""
    if not probes or any(p is None for p in probes):
        return "moved"
    if all(p < SAME_LLC_NS for p in probes):
        return "same"
    if all(p >= SAME_LLC_NS for p in probes):
        return "cross"
    return "moved"


def run_cell(cell, window, tmp):
    fe, be, ring, mrg, size = cell
    sock = os.path.join(tmp, f"s-{fe}-{be}-{ring}-{mrg}-{size}")
    if os.path.exists(sock):
        os.unlink(sock)
    vlog = open(os.path.join(tmp, "vhost.log"), "w+")
    ulog = open(os.path.join(tmp, "virtio.log"), "w+")
    t_start = time.monotonic()
    vh = subprocess.Popen(side_cmd(be, "vhost", sock, ring, mrg, size, "bv", 0), stdin=subprocess.PIPE,
                          stdout=vlog, stderr=subprocess.STDOUT)
    for _ in range(300):
        if os.path.exists(sock):
            break
        time.sleep(0.02)
    vu = subprocess.Popen(side_cmd(fe, "virtio", sock, ring, mrg, size, "bu", 1), stdin=subprocess.PIPE,
                          stdout=ulog, stderr=subprocess.STDOUT)
    # Measure from the first stats period that saw traffic, not from launch: DPDK's testpmd
    # takes 1-3 s to start (hugepage set-up), and counting from launch gave its cells fewer
    # full periods and kept the partial first one (a ramp at about half the steady rate),
    # which made every cell with a DPDK virtio-user look ~25% slower than it is.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and vu.poll() is None and vh.poll() is None:
        with open(vlog.name) as f:
            if any(int(x) > 0 for x in PPS.findall(f.read())):
                break
        time.sleep(0.05)
    # The window plus the partial first period, with a placement probe about once a second
    # inside it (the last one just before the end).
    probes = []
    t_end = time.monotonic() + window + 1.2
    n_probes = max(2, int(window))
    for k in range(n_probes):
        time.sleep(max(0.0, t_end - time.monotonic() - (n_probes - k - 0.5) * (window / n_probes)))
        probes.append(placement_probe())
    time.sleep(max(0.0, t_end - time.monotonic()))
    mem = {"vhost": proc_mem(vh.pid), "virtio": proc_mem(vu.pid)}
    for p in (vu, vh):
        p.send_signal(signal.SIGINT)
    for p in (vu, vh):
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    vlog.seek(0)
    text = vlog.read()
    samples = [int(x) for x in PPS.findall(text)]
    # One port per side, so one Rx-pps per stats period. The first period with traffic is
    # partial (forwarding began part-way through it), so it is dropped too.
    first = next((i for i, s in enumerate(samples) if s > 0), len(samples))
    samples = [s for s in samples[first + 1:] if s > 0]
    ok = bool(samples)
    if not ok:
        ulog.seek(0)
        tail = (text[-800:] + "\n--- virtio side ---\n" + ulog.read()[-800:])
        print(f"  cell {cell} produced no traffic; logs:\n{tail}", file=sys.stderr)
    return samples, time.monotonic() - t_start, mem, probes


def round_order(cells, how, rng):
    """One round's cell order: all cells shuffled, or the configurations shuffled with each
    one's frontend x backend pairs shuffled and kept together."""
    if how == "shuffled":
        order = cells[:]
        rng.shuffle(order)
        return order
    groups = {}
    for c in cells:
        groups.setdefault(c[2:], []).append(c)
    keys = list(groups)
    rng.shuffle(keys)
    order = []
    for k in keys:
        pairs = groups[k][:]
        rng.shuffle(pairs)
        order += pairs
    return order


def quartiles(vals):
    """(first quartile, third quartile) of a list with at least two values, else None."""
    if len(vals) < 2:
        return None
    q = statistics.quantiles(vals, n=4, method="inclusive")
    return round(q[0], 3), round(q[2], 3)


def proc_mem(pid):
    """Resident memory of a running process in MiB: VmRSS (anonymous + file + shmem pages
    mapped) and HugetlbPages (hugepage mappings, which VmRSS does not count)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "HugetlbPages"):
                    out[k] = round(int(v.split()[0]) / 1024, 1)
    except OSError:
        pass
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window", type=float, default=3.0, help="seconds measured per cell per round")
    ap.add_argument("--rings", default="split,packed")
    ap.add_argument("--sizes", default="64,1518")
    ap.add_argument("--full", action="store_true", help="also mergeable buffers off")
    ap.add_argument("--impls", default="ours,dpdk")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-out", "loopback.json"))
    ap.add_argument("--seed", type=int, default=None, help="seed of the per-round cell order (default: random)")
    ap.add_argument("--order", choices=["grouped", "shuffled"], default="grouped",
                    help="grouped: each configuration's pairs back to back (default); shuffled: all cells mixed")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)
    if shutil.which("dpdk-testpmd") is None and "dpdk" in a.impls:
        sys.exit("dpdk-testpmd not found: apt-get install dpdk dpdk-dev (scripts/setup-peers.sh)")
    ensure_built()
    impls = a.impls.split(",")
    mrgs = [True, False] if a.full else [True]
    cells = [(fe, be, ring, mrg, int(size))
             for ring in a.rings.split(",") for mrg in mrgs for size in a.sizes.split(",")
             for fe in impls for be in impls]
    tmp = tempfile.mkdtemp(prefix="ferrovia-bench-")
    samples = {c: [] for c in cells}
    places = {c: [] for c in cells}
    probes = {c: [] for c in cells}
    per_round = {c: [] for c in cells}
    mems = {c: None for c in cells}
    for r in range(a.rounds):
        # A fresh random order each round: a fixed order let a cell's position in the cycle
        # (what ran just before it, where the host had put the vCPUs) bias it by up to 2x.
        order = round_order(cells, a.order, rng)
        print(f"round {r + 1}/{a.rounds} (order seed {seed})", flush=True)
        for c in order:
            s, secs, mem, inside = run_cell(c, a.window, tmp)
            probes[c].append(inside)
            where = placement_of(inside)
            places[c].append(where)
            mems[c] = mem
            samples[c] += s
            per_round[c].append(statistics.median(s) if s else 0)
            print(f"  {c[0]:>4} virtio-user -> {c[1]:>4} vhost  {c[2]:<6} mrg={'on ' if c[3] else 'off'} {c[4]:>5} B: "
                  f"{(statistics.median(s) / 1e6 if s else 0):6.2f} Mpps ({len(s)} windows, {secs:.1f} s; "
                  f"placement {where}: probe {', '.join('n/a' if p is None else f'{p:.0f}' for p in inside)} ns)", flush=True)
    def fast_mode(vals):
        """Per-round medians in the cell's fast mode: within 25 % of its best round. Every cell is
        bimodal with vCPU placement (fast and slow levels 2-3x apart), and a window the host
        moved mid-way ('moved') counts in neither placement; the fast mode compares the two
        implementations at their best whatever the probe read."""
        vals = [v for v in vals if v > 0]
        if not vals:
            return None, 0
        top = max(vals)
        fast = [v for v in vals if v >= 0.75 * top]
        return statistics.median(fast), len(fast)

    rows = []
    for c in cells:
        fe, be, ring, mrg, size = c
        ref = (("dpdk", "dpdk", ring, mrg, size))
        ratios = [x / y for x, y in zip(per_round[c], per_round.get(ref, [])) if y > 0]
        target = 1.2 if (fe, be) == ("ours", "ours") else 1.0
        by_place = {}
        for where in ("same", "cross"):
            mine = [x for x, w in zip(per_round[c], places[c]) if w == where and x > 0]
            # Paired within the placement: rounds in which both this cell and DPDK<->DPDK ran
            # there.
            rs = [x / y for x, y, w, wr in zip(per_round[c], per_round.get(ref, []), places[c],
                                                places.get(ref, []))
                  if w == where and wr == where and x > 0 and y > 0]
            by_place[where] = {
                "mpps": round(statistics.median(mine) / 1e6, 3) if mine else None,
                "rounds": len(mine),
                "ratio": round(statistics.median(rs), 3) if rs else None,
                "rounds_paired": len(rs),
                "rounds_paired_meeting_target": sum(1 for x in rs if x >= target),
            }
        fm, fm_n = fast_mode(per_round[c])
        fm_ref, _ = fast_mode(per_round.get(ref, []))
        rows.append({
            "frontend": fe, "backend": be, "ring": ring, "mrg_rxbuf": mrg, "size": size,
            "ratio_paired_quartiles": quartiles(ratios),
            "rounds_paired_meeting_target": sum(1 for x in ratios if x >= target),
            "target": target,
            "mpps_fast_mode": round(fm / 1e6, 3) if fm else None,
            "rounds_fast_mode": fm_n,
            "ratio_vs_dpdk_dpdk_fast_mode": round(fm / fm_ref, 3) if fm and fm_ref else None,
            "mpps_median": round(statistics.median(samples[c]) / 1e6, 3) if samples[c] else None,
            "windows": len(samples[c]),
            "ratio_vs_dpdk_dpdk": round(statistics.median(ratios), 3) if ratios else None,
            "same_llc": by_place["same"],
            "cross_llc": by_place["cross"],
            "placement_per_round": places[c],
            "placement_probe_ns": probes[c],
            "per_round_mpps": [round(x / 1e6, 3) for x in per_round[c]],
            "memory_mib": mems[c],
        })
    print()
    print("Mpps: all windows; paired: median over rounds of the ratio to DPDK<->DPDK of the same round, [quartiles],")
    print("rounds meeting the target (1.2x ours<->ours, 1.0x mixed) of all rounds; same LLC / cross LLC: the rounds")
    print(f"in which the in-window placement probe read under / over {SAME_LLC_NS:.0f} ns every time (the two vCPUs")
    print("sharing a last-level cache or not): median Mpps, and the paired ratio over the rounds in which this cell")
    print("and DPDK<->DPDK both ran there (rounds meeting the target / rounds paired); fast: per-round medians")
    print("within 25 % of the cell's best round (rounds counted).")
    print(f"{'virtio-user':>11} {'vhost':>6} {'ring':<6} {'mrg':<4} {'size':>5} {'Mpps':>7} {'paired x DPDK [q1-q3] met':>28}"
          f" {'same-LLC Mpps':>13} {'x DPDK met':>12} {'cross-LLC Mpps':>14} {'x DPDK met':>12}"
          f" {'fast Mpps':>14} {'fast x DPDK':>12} {'RSS MiB (hugetlb) virtio-user / vhost':>40}")

    def fmt(x):
        return "n/a" if x is None else f"{x:.2f}"

    def paired(row):
        r, q = row["ratio_vs_dpdk_dpdk"], row["ratio_paired_quartiles"]
        if not r:
            return "n/a"
        spread = f" [{q[0]:.2f}-{q[1]:.2f}]" if q else ""
        return f"{r:.2f}{spread} {row['rounds_paired_meeting_target']}/{len(row['per_round_mpps'])}"

    def placed(p):
        if p["ratio"] is None:
            return "n/a"
        return f"{p['ratio']:.2f} {p['rounds_paired_meeting_target']}/{p['rounds_paired']}"

    def rss(m):
        if not m:
            return "n/a"
        return f"{m.get('VmRSS', 0):.0f} ({m.get('HugetlbPages', 0):.0f})"

    for row in rows:
        m = row["mpps_median"]
        mem = row["memory_mib"] or {}
        print(f"{row['frontend']:>11} {row['backend']:>6} {row['ring']:<6} {'on' if row['mrg_rxbuf'] else 'off':<4} "
              f"{row['size']:>5} {('%.2f' % m) if m is not None else 'n/a':>7} {paired(row):>28}"
              f" {fmt(row['same_llc']['mpps']) + ' (' + str(row['same_llc']['rounds']) + ')':>13} {placed(row['same_llc']):>12}"
              f" {fmt(row['cross_llc']['mpps']) + ' (' + str(row['cross_llc']['rounds']) + ')':>14} {placed(row['cross_llc']):>12}"
              f" {fmt(row['mpps_fast_mode']) + ' (' + str(row['rounds_fast_mode']) + '/' + str(len(row['per_round_mpps'])) + ')':>14}"
              f" {fmt(row['ratio_vs_dpdk_dpdk_fast_mode']):>12}"
              f" {rss(mem.get('virtio')) + ' / ' + rss(mem.get('vhost')):>40}")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"cpu": sh("grep -m1 'model name' /proc/cpuinfo").stdout.strip(),
                   "rounds": a.rounds, "window_s": a.window, "order_seed": seed, "order": a.order,
                   "method": "vhost side CPU0, virtio-user side CPU1, io forwarding, tx_first, Rx-pps on the vhost side; "
                             "cells interleaved per round in a random order (order_seed; order grouped: each configuration's four pairs back to back, "
                             "so ratio_vs_dpdk_dpdk is the median of per-round paired ratios); memory_mib from /proc/PID/status at the end of the "
                             "cell's last window (VmRSS excludes HugetlbPages); placement_per_round: 'same' when every ferrovia-placement --rt probe (cache-line "
                             f"round trip CPU0<->CPU1, run at real-time priority about once a second inside the window) read under {SAME_LLC_NS:.0f} ns, 'cross' when every one read "
                             "over, 'moved' otherwise; same_llc / cross_llc: median Mpps over the rounds placed there, and the paired ratio over the rounds in which "
                             "the cell and DPDK<->DPDK were both placed there; *_fast_mode: per-round medians within 25 % of the "
                             "cell's best round, the ratio taken against DPDK<->DPDK's fast mode",
                   "cells": rows}, f, indent=1)
    print(f"\nJSON written to {a.out}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
