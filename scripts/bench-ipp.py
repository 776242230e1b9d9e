#!/usr/bin/env python3
"""Instructions per forwarded packet, ours against DPDK 22.11's, same path, on either side.

The side under measurement runs under valgrind's callgrind, io forwarding; its peer is our
testpmd running natively, also io forwarding, which once the link is up injects `--inflight`
bursts of 32 packets (`start tx_first N` at its prompt). With 512 packets circulating and the
peer ~50x faster, the slowed side finds a full burst of 32 at every poll. (With a single burst
circulating it does not: the burst breaks up into pieces of 8 or 16 and most polls come back
empty; DPDK's --record-burst-stats showed 87 % empty polls, so the figure measured the polling
loop as much as the packets.)

- vhost side: the measured testpmd (ours, or dpdk-testpmd with --no-huge: its vhost port shares
  no memory) listens; the peer is our virtio-user testpmd.
- virtio-user side: the peer is our vhost testpmd, listening; the measured testpmd connects
  (ours, or dpdk-testpmd with --no-huge: DPDK 22.11 backs --no-huge memory with a memfd, which
  it can share with the vhost side; with hugepages its EAL reserves tens of GiB of address space
  for memseg lists and valgrind 3.19 refuses that mmap with EINVAL).

Each configuration runs twice, for a short and a long time; the difference of the two
instruction totals divided by the difference of the packets the measured side received cancels
start-up and shutdown, leaving the steady-state cost of one packet: taking it from the ring
(vhost: a copy out of the driver's memory into an mbuf; virtio-user: the used entry, the buffer
refill), the io engine, putting it on the ring (vhost: a copy into the driver's memory), mbuf
alloc and free, and the polling loop around them. No hardware counters are needed (this machine
has none). A benchmark, not a test.

    sudo scripts/bench-ipp.py                       # both sides x split+packed x 64, 1518 B
    sudo scripts/bench-ipp.py --sides vhost --rings split --sizes 64 --short 10 --long 20
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
PEER_RX = re.compile(r"RX-packets:\s+(\d+)\s+RX-missed")
RXBURSTS = re.compile(r"RX-bursts : .*")


def measured_cmd(side, impl, sock, ring, size, burst_stats):
    """The command line of the testpmd under measurement (io forwarding)."""
    app = ["--forward-mode=io", "--stats-period", "1", f"--txpkts={size}", "--burst=32"]
    if side == "vhost":
        vdev = f"net_vhost0,iface={sock}"
    else:
        vdev = f"net_virtio_user0,path={sock},queue_size=1024" + (",packed_vq=1" if ring == "packed" else "")
    if impl == "dpdk":
        extra = ["--record-burst-stats"] if burst_stats else []
        return ["dpdk-testpmd", "--lcores", "0@0,1@0", "--no-pci", "--no-huge", "-m", "512",
                f"--vdev={vdev}", "--", "--total-num-mbufs=8192"] + app + extra
    return [OURS, "--lcores", "0@0,1@0", f"--vdev={vdev}", "--"] + app


def peer_cmd(side, sock, ring, size):
    """Our testpmd on the other side, natively on CPU1, interactive (it injects the traffic)."""
    if side == "vhost":
        vdev = f"net_virtio_user0,path={sock},queue_size=1024" + (",packed_vq=1" if ring == "packed" else "")
    else:
        vdev = f"net_vhost0,iface={sock}"
    return [OURS, "--lcores", "0@1,1@1", f"--vdev={vdev}", "--", "-i", "--forward-mode=io", f"--txpkts={size}"]


def wait_for(pred, secs):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def one_run(side, impl, ring, size, secs, inflight, tmp, burst_stats=False):
    """One run of `secs` seconds; returns (instructions, packets received by the measured side)."""
    sock = os.path.join(tmp, "sock")
    if os.path.exists(sock):
        os.unlink(sock)
    out = os.path.join(tmp, "cg.out")
    log = open(os.path.join(tmp, "measured.log"), "w+")
    plog_path = os.path.join(tmp, "peer.log")
    plog = open(plog_path, "w")
    valgrind = ["timeout", "-s", "INT", str(secs), "valgrind", "--tool=callgrind", "--fair-sched=yes",
                f"--callgrind-out-file={out}"]
    measured = valgrind + measured_cmd(side, impl, sock, ring, size, burst_stats)

    def start_measured():
        return subprocess.Popen(measured, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def start_peer():
        return subprocess.Popen(peer_cmd(side, sock, ring, size), stdout=plog, stderr=subprocess.STDOUT,
                                stdin=subprocess.PIPE, text=True)

    if side == "vhost":
        # The measured side listens; the peer connects once the socket is there.
        m = start_measured()
        wait_for(lambda: os.path.exists(sock), 30)
        time.sleep(0.5)
        peer = start_peer()
    else:
        peer = start_peer()
        wait_for(lambda: os.path.exists(sock), 10)
        m = start_measured()

    peers = [peer]

    def send(cmd):
        # A peer that exited (a virtio-user that found the socket before the slowed vhost
        # accepted on it) must not end the whole benchmark with a broken pipe.
        try:
            peers[-1].stdin.write(cmd + "\n")
            peers[-1].stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        time.sleep(0.2)
        with open(plog_path) as f:
            return f.read()

    def link_up():
        if m.poll() is not None:
            return True
        if side == "vhost" and peers[-1].poll() is not None and len(peers) < 4:
            time.sleep(0.5)
            peers.append(start_peer())
            return False
        return "Link status: up" in send("show port info 0")

    def circulating():
        # The peer's Rx counter moves once the measured side forwards what was injected.
        time.sleep(1)
        got = PEER_RX.findall(send("show port stats 0"))
        return bool(got) and int(got[-1]) > 0

    # Inject once the link is up; a side slowed by valgrind may not have posted its receive
    # buffers yet when the link comes up (everything injected is then dropped), so inject again
    # until traffic comes back.
    injected = wait_for(link_up, secs) and m.poll() is None
    if injected:
        for _ in range(10):
            send(f"start tx_first {inflight}")
            if m.poll() is not None or circulating():
                break
            send("stop")
    m.wait()
    for peer in peers:
        try:
            if peer.poll() is None:
                peer.stdin.write("quit\n")
                peer.stdin.flush()
            peer.wait(timeout=15)
        except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
            peer.kill()
            peer.wait()
    plog.close()
    log.seek(0)
    text = log.read()
    ir = IR.findall(text)
    rx = RXFWD.findall(text)
    if not injected or not ir or not rx:
        with open(plog_path) as f:
            ptail = f.read()[-800:]
        print(f"  {side} {impl} {ring} {size} B {secs} s: no result (link up: {injected}); log tail:\n"
              f"{text[-1500:]}\n--- peer ---\n{ptail}", file=sys.stderr)
        return None
    if int(rx[-1]) == 0:
        # Nothing came round (the injected bursts were dropped before the slowed side had
        # posted its buffers): start-up would not cancel out, so this run gives no figure.
        print(f"  {side} {impl} {ring} {size} B {secs} s: no packets forwarded; no result", file=sys.stderr)
        return None
    if burst_stats:
        for line in RXBURSTS.findall(text)[-1:]:
            print(f"    {side} {impl} {ring} {size} B: {line.strip()}", flush=True)
    return int(ir[-1].replace(",", "")), int(rx[-1])


def main():
    global OURS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sides", default="vhost,virtio", help="which side is measured: vhost, virtio (virtio-user)")
    ap.add_argument("--rings", default="split,packed")
    ap.add_argument("--sizes", default="64,1518")
    ap.add_argument("--impls", default="ours,dpdk")
    ap.add_argument("--short", type=int, default=15, help="seconds of the short run")
    ap.add_argument("--long", type=int, default=30, help="seconds of the long run")
    ap.add_argument("--inflight", type=int, default=16, help="bursts of 32 packets the peer injects")
    ap.add_argument("--burst-stats", action="store_true",
                    help="DPDK's side also records and prints its Rx burst sizes (adds a little work per burst)")
    ap.add_argument("--testpmd", default=OURS, help="our testpmd binary (default: built here with cargo)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-out", "ipp.json"))
    a = ap.parse_args()
    for tool in ("valgrind", "dpdk-testpmd"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install valgrind dpdk dpdk-dev (scripts/setup-peers.sh)")
    if a.testpmd == OURS:
        if subprocess.run(["cargo", "build", "--release", "-q", "-p", "ferrovia-testpmd"], cwd=ROOT).returncode:
            sys.exit("cargo build failed")
    else:
        OURS = os.path.abspath(a.testpmd)
    tmp = tempfile.mkdtemp(prefix="ferrovia-ipp-")
    rows = []
    for side in a.sides.split(","):
        if side not in ("vhost", "virtio"):
            sys.exit(f"unknown side {side}: vhost or virtio")
        for ring in a.rings.split(","):
            for size in [int(s) for s in a.sizes.split(",")]:
                for impl in a.impls.split(","):
                    r1 = r2 = None
                    for _ in range(3):
                        r1 = r1 or one_run(side, impl, ring, size, a.short, a.inflight, tmp, a.burst_stats)
                        r2 = r2 or one_run(side, impl, ring, size, a.long, a.inflight, tmp, a.burst_stats)
                        if r1 and r2:
                            break
                    ipp = None
                    if r1 and r2 and r2[1] > r1[1]:
                        ipp = (r2[0] - r1[0]) / (r2[1] - r1[1])
                    row = {"side": side, "impl": impl, "ring": ring, "size": size, "short": r1, "long": r2,
                           "instructions_per_packet": round(ipp) if ipp else None}
                    rows.append(row)
                    print(f"  {impl:>4} {side:<6} {ring:<6} {size:>5} B: "
                          f"{row['instructions_per_packet'] or 'n/a'} instructions/packet "
                          f"(runs: {r1} {r2} = (Ir, packets))", flush=True)
    print(f"\n{'side':<6} {'impl':>5} {'ring':<6} {'size':>5} {'Ir/pkt':>8} {'ours/DPDK':>10}")
    for row in rows:
        ref = next((x for x in rows if x["impl"] == "dpdk" and x["side"] == row["side"]
                    and x["ring"] == row["ring"] and x["size"] == row["size"]), None)
        ratio = (row["instructions_per_packet"] / ref["instructions_per_packet"]
                 if ref and ref["instructions_per_packet"] and row["instructions_per_packet"] else None)
        print(f"{row['side']:<6} {row['impl']:>5} {row['ring']:<6} {row['size']:>5} "
              f"{row['instructions_per_packet'] or 'n/a':>8} {('%.2f' % ratio) if ratio else '':>10}")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"method": "measured testpmd under callgrind (difference of a short and a long run, "
                             f"{a.short} s and {a.long} s), peer: our testpmd natively, io forwarding, injecting "
                             f"{a.inflight} bursts of 32 once the link is up; side 'virtio' is virtio-user",
                   "rows": rows}, f, indent=1)
    print(f"\nJSON written to {a.out}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
