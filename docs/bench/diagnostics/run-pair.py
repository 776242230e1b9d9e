#!/usr/bin/env python3
"""run-pair.py FE BE RING MRG SIZE [EXTRA]: one loopback run of one pair (diagnostic).

FE, BE: "dpdk" or the path of a testpmd binary of ours (FE "x" with BE a path: the same
binary on both sides). Runs the vhost side on CPU 0 and the virtio-user side on CPU 1 with
scripts/bench-loopback.py's command lines, waits W seconds (env, default 5), probes the
placement three times inside the window with `ferrovia-placement --rt`, then stops both.
Logs go to $AB_DIR (default /tmp/ferrovia-ab): vh.log, vu.log, inprobe.txt. Needs root."""
import importlib.util, sys, os, subprocess, time, signal
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
spec = importlib.util.spec_from_file_location("bl", os.path.join(ROOT, "scripts", "bench-loopback.py"))
bl = importlib.util.module_from_spec(spec); spec.loader.exec_module(bl)
fe, be, ring, mrg, size = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", int(sys.argv[5])
extra = sys.argv[6].split() if len(sys.argv) > 6 else []
if be != "dpdk":
    bl.OURS = be
elif fe != "dpdk":
    bl.OURS = fe
work = os.environ.get("AB_DIR", "/tmp/ferrovia-ab")
os.makedirs(work, exist_ok=True)
sock = os.path.join(work, "sock")
if os.path.exists(sock):
    os.unlink(sock)
vh = subprocess.Popen(bl.side_cmd("ours" if be != "dpdk" else "dpdk", "vhost", sock, ring, mrg, size, "bv", 0) + extra,
                      stdin=subprocess.PIPE, stdout=open(os.path.join(work, "vh.log"), "w"), stderr=subprocess.STDOUT)
for _ in range(300):
    if os.path.exists(sock):
        break
    time.sleep(0.02)
vu = subprocess.Popen(bl.side_cmd(fe if fe == "dpdk" else "ours", "virtio", sock, ring, mrg, size, "bu", 1) + extra,
                      stdin=subprocess.PIPE, stdout=open(os.path.join(work, "vu.log"), "w"), stderr=subprocess.STDOUT)
W = float(os.environ.get("W", "5"))
time.sleep(W - 1.5)
probe = os.path.join(ROOT, "target", "release", "ferrovia-placement")
pr = []
for _ in range(3):
    pr.append(subprocess.run([probe, "--rt", "0", "1", "3000"], capture_output=True, text=True).stdout.strip())
    time.sleep(0.3)
open(os.path.join(work, "inprobe.txt"), "w").write(",".join(pr))
time.sleep(0.6)
for p in (vu, vh):
    p.send_signal(signal.SIGINT)
for p in (vu, vh):
    p.wait(timeout=15)
