#!/usr/bin/env python3
"""Instructions per forwarded packet on the vhost side, ours against DPDK 22.11's, same path.

The vhost-side testpmd (ours, or dpdk-testpmd with --no-huge: its vhost port shares no memory)
runs under valgrind's callgrind, io forwarding; the peer is our virtio-user testpmd running
natively with --tx-first, so the valgrind-slowed side always finds full bursts. Each
configuration runs twice, for a short and a long time; the difference of the two instruction
totals divided by the difference of the packets the vhost side received cancels start-up and
shutdown, leaving the steady-state cost of one packet: Rx from the ring (copy out of guest
memory into an mbuf), the io engine, Tx into the ring (copy into guest memory), mbuf alloc and
free, and the polling loop around them. No hardware counters are needed (this machine has
none). A benchmark, not a test.

    sudo scripts/bench-ipp.py                       # split+packed x 64, 1518 B
    sudo scripts/bench-ipp.py --rings split --sizes 64 --short 10 --long 20
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = os.path.join(ROOT, "target", "release", "testpmd")
IR = re.compile(r"I\s+refs:\s+([\d,]+)")
RXFWD = re.compile(r"Forward statistics for port 0.*?RX-packets:\s+(\d+)", re.S)


def vhost_cmd(impl, sock, size):
    app = ["--forward-mode=io", "--stats-period", "1", f"--txpkts={size}", "--burst=32"]
    if impl == "dpdk":
        return ["dpdk-testpmd", "--lcores", "0@0,1@0", "--no-pci", "--no-huge", "-m", "512",
                f"--vdev=net_vhost0,iface={sock}", "--", "--total-num-mbufs=8192"] + app
    return [OURS, "--lcores", "0@0,1@0", f"--vdev=net_vhost0,iface={sock}", "--"] + app


def one_run(impl, ring, size, secs, tmp):
    sock = os.path.join(tmp, "sock")
    if os.path.exists(sock):
        os.unlink(sock)
    out = os.path.join(tmp, "cg.out")
    log = open(os.path.join(tmp, "vhost.log"), "w+")
    vh = subprocess.Popen(["timeout", "-s", "INT", str(secs), "valgrind", "--tool=callgrind", "--fair-sched=yes",
                           f"--callgrind-out-file={out}"] + vhost_cmd(impl, sock, size),
                          stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    for _ in range(600):
        if os.path.exists(sock):
            break
        time.sleep(0.05)
    time.sleep(1)
    vdev = f"net_virtio_user0,path={sock},queue_size=1024" + (",packed_vq=1" if ring == "packed" else "")
    vu = subprocess.Popen([OURS, "--lcores", "0@1,1@1", f"--vdev={vdev}", "--", "--forward-mode=io",
                           "--tx-first", "--stats-period", "1", f"--txpkts={size}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    vh.wait()
    vu.send_signal(2)
    try:
        vu.wait(timeout=15)
    except subprocess.TimeoutExpired:
        vu.kill()
    log.seek(0)
    text = log.read()
    ir = IR.findall(text)
    rx = RXFWD.findall(text)
    if not ir or not rx:
        print(f"  {impl} {ring} {size} B {secs} s: no result; log tail:\n{text[-1500:]}", file=sys.stderr)
        return None
    return int(ir[-1].replace(",", "")), int(rx[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rings", default="split,packed")
    ap.add_argument("--sizes", default="64,1518")
    ap.add_argument("--impls", default="ours,dpdk")
    ap.add_argument("--short", type=int, default=15, help="seconds of the short run")
    ap.add_argument("--long", type=int, default=30, help="seconds of the long run")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-out", "ipp.json"))
    a = ap.parse_args()
    for tool in ("valgrind", "dpdk-testpmd"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install valgrind dpdk dpdk-dev (scripts/setup-peers.sh)")
    if subprocess.run(["cargo", "build", "--release", "-q", "-p", "ferrovia-testpmd"], cwd=ROOT).returncode:
        sys.exit("cargo build failed")
    tmp = tempfile.mkdtemp(prefix="ferrovia-ipp-")
    rows = []
    for ring in a.rings.split(","):
        for size in [int(s) for s in a.sizes.split(",")]:
            for impl in a.impls.split(","):
                r1 = one_run(impl, ring, size, a.short, tmp)
                r2 = one_run(impl, ring, size, a.long, tmp)
                ipp = None
                if r1 and r2 and r2[1] > r1[1]:
                    ipp = (r2[0] - r1[0]) / (r2[1] - r1[1])
                row = {"vhost": impl, "ring": ring, "size": size, "short": r1, "long": r2,
                       "instructions_per_packet": round(ipp) if ipp else None}
                rows.append(row)
                print(f"  {impl:>4} vhost {ring:<6} {size:>5} B: "
                      f"{row['instructions_per_packet'] or 'n/a'} instructions/packet "
                      f"(runs: {r1} {r2} = (Ir, packets))", flush=True)
    print(f"\n{'vhost':>5} {'ring':<6} {'size':>5} {'Ir/pkt':>8} {'ours/DPDK':>10}")
    for row in rows:
        ref = next((x for x in rows if x["vhost"] == "dpdk" and x["ring"] == row["ring"]
                    and x["size"] == row["size"]), None)
        ratio = (row["instructions_per_packet"] / ref["instructions_per_packet"]
                 if ref and ref["instructions_per_packet"] and row["instructions_per_packet"] else None)
        print(f"{row['vhost']:>5} {row['ring']:<6} {row['size']:>5} {row['instructions_per_packet'] or 'n/a':>8} "
              f"{('%.2f' % ratio) if ratio else '':>10}")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"method": "vhost-side testpmd under callgrind (difference of a short and a long run), "
                             "peer: our virtio-user testpmd natively, io forwarding, tx_first",
                   "rows": rows}, f, indent=1)
    print(f"\nJSON written to {a.out}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
