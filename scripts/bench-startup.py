#!/usr/bin/env python3
"""Start-up time to the first forwarded packet: our testpmd, and DPDK 22.11's from outside.

Two cases, each with the side under measurement started against a peer that is already waiting:

- virtio-user: the peer is our vhost testpmd, already listening; the measured virtio-user
  testpmd connects, starts io forwarding with --tx-first, and its first received packet is its
  own burst forwarded back by the peer.
- vhost: the peer is our virtio-user testpmd with server=1, already listening and forwarding;
  the measured vhost testpmd connects with client=1 and --tx-first.

Two figures per run:

- own: what our testpmd prints, 'First packet received N ms after start' (time since its main()
  began, read by its main thread polling the port counters; the forwarding threads do no extra
  work). Only for ours: dpdk-testpmd prints no such line.
- outside (approximate): from the exec of the measured testpmd to the first packet reaching
  the peer, taken from the peer's own 'First packet received' line and the peer's start time
  (our testpmd is always the peer, so this works for ours and DPDK's alike). It leaves out the
  peer's exec-to-main() time (~1 ms), and it ends at the first packet the measured side sends,
  one forwarding step earlier than 'own'. DPDK's side runs as in scripts/bench-loopback.py
  (hugepages, --in-memory --single-file-segments); its testpmd polls link status every 100 ms
  before it starts forwarding, which is part of its figure.

Runs are interleaved (ours, DPDK, ours, ...) and repeated; prints min/median/max and writes
JSON. No root needed for ours; DPDK's side needs hugepages. A benchmark, not a test.

    sudo scripts/bench-startup.py
    sudo scripts/bench-startup.py --runs 11 --rings split --impls ours
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRST = re.compile(r"First packet received ([\d.]+) ms after start")


def virtio_vdev(sock, ring, server):
    vdev = f"net_virtio_user0,path={sock},queue_size=1024"
    if ring == "packed":
        vdev += ",packed_vq=1"
    if server:
        vdev += ",server=1"
    return vdev


def cmd(testpmd, impl, vdev, cpu, tx_first, prefix):
    """A batch-mode io-forwarding testpmd on one CPU."""
    app = ["--forward-mode=io", "--stats-period", "1"] + (["--tx-first"] if tx_first else [])
    if impl == "dpdk":
        return (["dpdk-testpmd", "--lcores", f"0@{cpu},1@{cpu}", "--no-pci", "--in-memory",
                 "--single-file-segments", f"--file-prefix={prefix}", f"--vdev={vdev}", "--"]
                + app + ["--total-num-mbufs=32768", "--rxd=1024", "--txd=1024"])
    return [testpmd, "--lcores", f"0@{cpu},1@{cpu}", f"--vdev={vdev}", "--"] + app


def wait_for(pred, secs):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.005)
    return False


def read(path):
    with open(path) as f:
        return f.read()


def one_run(testpmd, case, impl, ring, tmp, n):
    """Returns (own ms or None, outside ms or None)."""
    sock = os.path.join(tmp, f"s{n}")
    plog, mlog = os.path.join(tmp, f"peer{n}.log"), os.path.join(tmp, f"measured{n}.log")
    if case == "virtio":
        peer_vdev = f"net_vhost0,iface={sock}"
        measured_vdev = virtio_vdev(sock, ring, server=False)
    else:
        peer_vdev = virtio_vdev(sock, ring, server=True)
        measured_vdev = f"net_vhost0,iface={sock},client=1"
    with open(plog, "w") as pf:
        t_peer = time.monotonic()
        peer = subprocess.Popen(cmd(testpmd, "ours", peer_vdev, 0, False, "sp"), stdout=pf,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    # The peer is waiting once its socket exists and it has started forwarding (after its
    # 500 ms wait for a link) and so polls for its first packet.
    ok = wait_for(lambda: os.path.exists(sock) and "packet forwarding - ports=" in read(plog), 10)
    time.sleep(0.1)
    with open(mlog, "w") as mf:
        t_measured = time.monotonic()
        m = subprocess.Popen(cmd(testpmd, impl, measured_vdev, 1, True, f"sm{n}"), stdout=mf,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    own_ok = impl != "ours" or wait_for(lambda: FIRST.search(read(mlog)), 10)
    wait_for(lambda: FIRST.search(read(plog)), 10)
    time.sleep(0.2)
    for p in (m, peer):
        p.send_signal(2)
    for p in (m, peer):
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    own = FIRST.search(read(mlog)) if impl == "ours" else None
    peer_first = FIRST.search(read(plog))
    outside = None
    if ok and peer_first:
        outside = (t_peer - t_measured) * 1e3 + float(peer_first.group(1))
    if not ok or not peer_first or not own_ok:
        print(f"  {case} {impl} {ring}: no first packet; logs:\n{read(mlog)[-1000:]}\n--- peer ---\n"
              f"{read(plog)[-600:]}", file=sys.stderr)
    return (float(own.group(1)) if own else None), outside


def summary(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"min": round(min(xs), 1), "median": round(statistics.median(xs), 1), "max": round(max(xs), 1),
            "runs": len(xs)}


def fmt(s):
    return f"{s['median']:.1f} ({s['min']:.1f}-{s['max']:.1f})" if s else "n/a"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="virtio,vhost",
                    help="virtio: virtio-user side started against a listening vhost; "
                         "vhost: vhost side (client=1) started against a waiting virtio-user (server=1)")
    ap.add_argument("--rings", default="split,packed")
    ap.add_argument("--impls", default="ours,dpdk")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--testpmd", default=os.path.join(ROOT, "target", "release", "testpmd"),
                    help="our testpmd binary (default: built here with cargo)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-out", "startup.json"))
    a = ap.parse_args()
    impls = a.impls.split(",")
    if "dpdk" in impls and shutil.which("dpdk-testpmd") is None:
        sys.exit("dpdk-testpmd not found: scripts/setup-peers.sh installs DPDK 22.11")
    if a.testpmd == os.path.join(ROOT, "target", "release", "testpmd"):
        if subprocess.run(["cargo", "build", "--release", "-q", "-p", "ferrovia-testpmd"], cwd=ROOT).returncode:
            sys.exit("cargo build failed")
    tmp = tempfile.mkdtemp(prefix="ferrovia-startup-")
    res = {}
    n = 0
    for r in range(a.runs):
        for case in a.cases.split(","):
            for ring in a.rings.split(","):
                for impl in impls:
                    n += 1
                    own, outside = one_run(a.testpmd, case, impl, ring, tmp, n)
                    res.setdefault((case, ring, impl), []).append((own, outside))
                    o = f"{own:.1f}" if own is not None else "-"
                    x = f"{outside:.1f}" if outside is not None else "n/a"
                    print(f"  run {r + 1}: {case:<6} {ring:<6} {impl:>4}: own {o} ms, outside {x} ms", flush=True)
    rows = []
    for (case, ring, impl), runs in res.items():
        rows.append({"measured": "virtio-user" if case == "virtio" else "vhost (client=1)", "ring": ring,
                     "impl": impl, "own_ms": summary([x[0] for x in runs]),
                     "outside_ms": summary([x[1] for x in runs]), "runs": runs})
    print(f"\n{'measured side':<17} {'ring':<6} {'impl':>4}  {'own ms: median (min-max)':>26}  "
          f"{'outside ms (approximate)':>26}")
    for row in rows:
        print(f"{row['measured']:<17} {row['ring']:<6} {row['impl']:>4}  {fmt(row['own_ms']):>26}  "
              f"{fmt(row['outside_ms']):>26}")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"method": "measured side started against a waiting peer (our testpmd); own: our testpmd's "
                             "'First packet received' line; outside: measured exec to first packet at the peer, "
                             "from the peer's line and start time (approximate)",
                   "runs_per_cell": a.runs, "rows": rows}, f, indent=1)
    print(f"\nJSON written to {a.out}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
