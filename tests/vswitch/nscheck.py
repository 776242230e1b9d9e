#!/usr/bin/env python3
"""Raw-frame sender and checker for tests/vswitch/run.sh, run inside a network namespace.

Every frame it sends carries ethertype 0x88B5, the magic b"FVSI", a run id, a sequence number,
its length and a payload pattern derived from the sequence number, so an echo can be checked
byte for byte.

  nscheck.py echo IFACE DSTMAC [--count N] [--timeout S]
      sends N frames (sizes cycling through 60..1514) to DSTMAC one at a time, and expects each
      back from a MAC-swapping reflector: dst = our MAC, src = DSTMAC, every other byte equal.
      Prints "NSCHECK sent=.. back=.. intact=.. corrupt=.. macswapped=.. rtt_ms_min/avg/max=..";
      exit 0 only if every frame came back intact and MAC-swapped. Gives up after --give-up
      frames lost in a row.

  nscheck.py stream IFACE DSTMAC --stop-file F [--rate R] [--max S] [--tail S] [--status F]
      sends R frames/s to DSTMAC until F exists, then for --tail more seconds; checks every echo.
      Prints "STREAM sent=.. back=.. intact=.. corrupt=.. lost=.. outages=.. longest_outage_ms=..
      tail_sent=.. tail_back=.."; exit 0 if nothing came back corrupt, every frame sent in the
      tail came back, and something was lost (the test kills the reflector) — i.e. traffic
      stopped and resumed. --status F: the file gets "sent back" once a second.

  nscheck.py flood IFACE --count N [--ethertype 0x88b6]
      sends N broadcast and N unknown-unicast frames (dst 02:00:00:ee:XX:NN, XX = --uuc-byte).

  nscheck.py send IFACE SRCMAC DSTMAC [--count N]
      sends N frames with a given source address (for FDB learning and MAC moves).
"""
import argparse
import os
import select
import socket
import struct
import sys
import threading
import time

ETH_P_ALL = 0x0003
ETYPE = 0x88B5
MAGIC = b"FVSI"
SIZES = [60, 64, 128, 256, 512, 1024, 1500, 1514]
PACKET_OUTGOING = 4


def mac_bytes(s):
    return bytes(int(x, 16) for x in s.split(":"))


def mac_str(b):
    return ":".join("%02x" % x for x in b)


def open_sock(iface):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    return s


def our_mac(iface):
    with open("/sys/class/net/%s/address" % iface) as f:
        return mac_bytes(f.read().strip())


def pattern(seq, n):
    # a cheap per-frame pattern: differs per sequence number and per offset
    base = bytes(((seq * 7 + i * 13) & 0xFF) for i in range(256))
    return (base * (n // 256 + 1))[:n]


def frame(dst, src, run, seq, size):
    hdr = dst + src + struct.pack("!H", ETYPE) + MAGIC + struct.pack("!III", run, seq, size)
    return hdr + pattern(seq, size - len(hdr))


def parse(data, run):
    """(seq, size) of one of our frames of this run, else None."""
    if len(data) < 30 or data[12:14] != struct.pack("!H", ETYPE) or data[14:18] != MAGIC:
        return None
    r, seq, size = struct.unpack("!III", data[18:30])
    if r != run:
        return None
    return seq, size


def check_echo(data, dst, src, run, seq, size):
    """'ok', 'corrupt' or 'notswapped' for the echo of frame seq."""
    want = frame(src, dst, run, seq, size)  # MACs swapped, the rest equal
    if data == want:
        return "ok"
    if len(data) == size and data[12:] == want[12:]:
        return "notswapped"
    return "corrupt"


def cmd_echo(a):
    s = open_sock(a.iface)
    dst, src = mac_bytes(a.dstmac), our_mac(a.iface)
    run = (os.getpid() << 8 | int(time.time())) & 0xFFFFFFFF
    sent = back = intact = corrupt = swapped = 0
    rtts = []
    lost_run = 0
    for seq in range(a.count):
        if lost_run >= a.give_up:
            print("NSCHECK giving up after %d frames lost in a row" % lost_run)
            break
        size = SIZES[seq % len(SIZES)]
        t0 = time.monotonic()
        s.send(frame(dst, src, run, seq, size))
        sent += 1
        deadline = t0 + a.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                print("NSCHECK lost seq=%d size=%d" % (seq, size))
                lost_run += 1
                break
            if not select.select([s], [], [], left)[0]:
                continue
            data, addr = s.recvfrom(65535)
            if addr[2] == PACKET_OUTGOING:
                continue
            p = parse(data, run)
            if p is None or p[0] != seq:
                continue
            rtts.append((time.monotonic() - t0) * 1e3)
            back += 1
            lost_run = 0
            r = check_echo(data, dst, src, run, seq, size)
            if r == "ok":
                intact += 1
                swapped += 1
            elif r == "notswapped":
                intact += 1
                print("NSCHECK seq=%d came back intact but not MAC-swapped: dst=%s src=%s"
                      % (seq, mac_str(data[0:6]), mac_str(data[6:12])))
            else:
                corrupt += 1
                print("NSCHECK seq=%d size=%d came back CORRUPT (len %d)" % (seq, size, len(data)))
            break
    line = "NSCHECK sent=%d back=%d intact=%d corrupt=%d macswapped=%d" % (
        sent, back, intact, corrupt, swapped)
    if rtts:
        line += " rtt_ms_min/avg/max=%.2f/%.2f/%.2f" % (min(rtts), sum(rtts) / len(rtts), max(rtts))
    print(line, flush=True)
    ok = sent == a.count and sent == back == intact == swapped and corrupt == 0
    return 0 if ok else 1


def cmd_stream(a):
    s = open_sock(a.iface)
    dst, src = mac_bytes(a.dstmac), our_mac(a.iface)
    run = (os.getpid() << 8 | int(time.time())) & 0xFFFFFFFF
    sent_at = {}  # seq -> send time
    got = {}  # seq -> 'ok' | 'corrupt' | 'notswapped'
    stop = threading.Event()
    lock = threading.Lock()

    def receiver():
        while not stop.is_set():
            if not select.select([s], [], [], 0.1)[0]:
                continue
            data, addr = s.recvfrom(65535)
            if addr[2] == PACKET_OUTGOING:
                continue
            p = parse(data, run)
            if p is None:
                continue
            seq, size = p
            with lock:
                if seq not in got:
                    got[seq] = check_echo(data, dst, src, run, seq, size)

    th = threading.Thread(target=receiver, daemon=True)
    th.start()
    gap = 1.0 / a.rate
    t_start = time.monotonic()
    t_stop = None
    next_t = t_start
    next_status = t_start + 1
    seq = 0
    tail_first = None
    while True:
        now = time.monotonic()
        if t_stop is None and (os.path.exists(a.stop_file) or now - t_start > a.max):
            t_stop = now
            tail_first = seq
        if t_stop is not None and now - t_stop >= a.tail:
            break
        size = SIZES[seq % len(SIZES)]
        sent_at[seq] = now
        try:
            s.send(frame(dst, src, run, seq, size))
        except OSError as e:  # e.g. ENOBUFS while the link flaps; counted as lost
            print("STREAM send seq=%d: %s" % (seq, e))
        seq += 1
        if a.status and now >= next_status:
            with lock:
                nb = len(got)
            with open(a.status + ".tmp", "w") as f:
                f.write("%d %d\n" % (seq, nb))
            os.replace(a.status + ".tmp", a.status)
            next_status = now + 1
        next_t += gap
        d = next_t - time.monotonic()
        if d > 0:
            time.sleep(d)
        else:
            next_t = time.monotonic()
    time.sleep(0.5)  # late echoes
    stop.set()
    th.join()
    sent = seq
    with lock:
        res = dict(got)
    back = len(res)
    intact = sum(1 for v in res.values() if v == "ok")
    corrupt = sum(1 for v in res.values() if v == "corrupt")
    notswapped = sum(1 for v in res.values() if v == "notswapped")
    lost = [q for q in range(sent) if q not in res]
    # outages: runs of consecutive lost frames
    outages, longest, run_start = 0, 0.0, None
    for q in range(sent + 1):
        if q < sent and q not in res:
            if run_start is None:
                run_start = q
        elif run_start is not None:
            outages += 1
            end = sent_at.get(q, sent_at[q - 1])
            longest = max(longest, (end - sent_at[run_start]) * 1e3)
            run_start = None
    tail = range(tail_first if tail_first is not None else sent, sent)
    tail_back = sum(1 for q in tail if res.get(q) == "ok")
    print("STREAM sent=%d back=%d intact=%d corrupt=%d notswapped=%d lost=%d outages=%d "
          "longest_outage_ms=%.0f tail_sent=%d tail_back=%d duration_s=%.1f" % (
              sent, back, intact, corrupt, notswapped, len(lost), outages, longest,
              len(tail), tail_back, time.monotonic() - t_start), flush=True)
    ok = corrupt == 0 and notswapped == 0 and len(tail) > 0 and tail_back == len(tail)
    if a.expect_loss and not lost:
        print("STREAM no frame was lost: the reflector was not interrupted during the stream")
        ok = False
    return 0 if ok else 1


def cmd_flood(a):
    s = open_sock(a.iface)
    src = our_mac(a.iface)
    et = struct.pack("!H", int(a.ethertype, 0))
    for i in range(a.count):
        pay = b"FLOOD-BCAST %d " % i
        s.send(b"\xff" * 6 + src + et + pay.ljust(46, b"."))
        time.sleep(0.001)
    for i in range(a.count):
        pay = b"FLOOD-UUC %d " % i
        s.send(bytes([2, 0, 0, 0xEE, a.uuc_byte, i & 0xFF]) + src + et + pay.ljust(46, b"."))
        time.sleep(0.001)
    print("FLOOD sent %d broadcast + %d unknown-unicast frames, ethertype %s" % (
        a.count, a.count, a.ethertype))
    return 0


def cmd_send(a):
    s = open_sock(a.iface)
    et = struct.pack("!H", 0x88B6)
    for i in range(a.count):
        s.send(mac_bytes(a.dstmac) + mac_bytes(a.srcmac) + et + (b"LEARN %d " % i).ljust(46, b"."))
        time.sleep(0.01)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("echo")
    e.add_argument("iface")
    e.add_argument("dstmac")
    e.add_argument("--count", type=int, default=24)
    e.add_argument("--timeout", type=float, default=1.0)
    e.add_argument("--give-up", type=int, default=4, help="stop after this many losses in a row")
    st = sub.add_parser("stream")
    st.add_argument("iface")
    st.add_argument("dstmac")
    st.add_argument("--stop-file", required=True)
    st.add_argument("--rate", type=float, default=100)
    st.add_argument("--max", type=float, default=60)
    st.add_argument("--tail", type=float, default=2)
    st.add_argument("--status")
    st.add_argument("--expect-loss", action="store_true")
    f = sub.add_parser("flood")
    f.add_argument("iface")
    f.add_argument("--count", type=int, default=50)
    f.add_argument("--ethertype", default="0x88b6")
    f.add_argument("--uuc-byte", type=int, default=0xEE,
                   help="fifth byte of the unknown-unicast destinations (02:00:00:ee:XX:NN)")
    sd = sub.add_parser("send")
    sd.add_argument("iface")
    sd.add_argument("srcmac")
    sd.add_argument("dstmac")
    sd.add_argument("--count", type=int, default=3)
    a = p.parse_args()
    return {"echo": cmd_echo, "stream": cmd_stream, "flood": cmd_flood, "send": cmd_send}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
