//! A hostile vhost-user frontend against the control queue of a `net_vhost` port opened with
//! `ctrl-vq=1`: short chains, a missing or read-only ack byte, descriptors outside the guest's
//! memory, loops, heads out of range, oversize MAC tables, unknown classes, bad indirect
//! tables. Each chain is handed to the judge as what it is (a request, malformed bytes, or an
//! unreadable chain), acked `VIRTIO_NET_ERR` where it has an ack byte, returned to the guest,
//! and nothing panics or ends the session: a good request is served after all of them.

mod support;

use ferrovia_ethdev::MacAddr;
use ferrovia_ethdev::ctrl::{CtrlError, CtrlInput, CtrlRequest, MAX_CTRL_BYTES, RxMode};
use support::evil_frontend::{
    EvilFrontend, F_INDIRECT, F_NEXT, F_WRITE, GuestMem, SplitLayout, feat,
};
use support::{VhostUnderTest, temp_dir, xstat};

const GPA: u64 = 0x1000_0000;
const MEM: usize = 1 << 20;
const QSZ: u16 = 64;
/// Command buffers in region 0.
const BUF: usize = 0x40000;
const END: u64 = GPA + MEM as u64;
const CTRL: u64 = 1 << 17 | 1 << 18 | 1 << 19 | 1 << 23;

struct Guest {
    _fe: EvilFrontend,
    mem: GuestMem,
    cvq: SplitLayout,
}

fn connect(sock: &str) -> Guest {
    let mut fe = EvilFrontend::connect(sock);
    let offered = fe.handshake(
        feat::V1 | feat::INDIRECT | feat::PROTOCOL | CTRL,
        feat::P_REPLY_ACK,
    );
    assert_eq!(
        offered & CTRL,
        CTRL,
        "ctrl-vq=1 offers the control features"
    );
    let mem = GuestMem::new(GPA, &[MEM]);
    assert!(fe.set_mem_table(&mem).unwrap());
    let rxr = SplitLayout::new(&mem, 0, 0, QSZ);
    let txr = SplitLayout::new(&mem, 0, 0x10000, QSZ);
    let cvq = SplitLayout::new(&mem, 0, 0x20000, QSZ);
    fe.setup_vring(0, &rxr, true);
    fe.setup_vring(1, &txr, true);
    fe.setup_vring(2, &cvq, true);
    Guest { _fe: fe, mem, cvq }
}

/// Writes `bytes` at `off` of the command area; returns its guest address.
fn put(g: &Guest, off: usize, bytes: &[u8]) -> u64 {
    g.mem.write(0, BUF + off, bytes);
    g.mem.gpa(0, BUF + off)
}

/// The ack byte's place for case `k`.
fn ack_at(k: usize) -> usize {
    0x8000 + k * 16
}

#[derive(Debug, PartialEq)]
enum Want {
    Request(CtrlRequest),
    Malformed(CtrlError),
    Bad,
}

#[test]
fn hostile_control_chains_are_counted_and_refused() {
    let dir = temp_dir("hctrl");
    let mut v = VhostUnderTest::with_args(&dir, "hctrl", ",ctrl-vq=1");
    let mut cq = v
        .port
        .ctrl_queue()
        .expect("ctrl-vq=1 gives a control queue");
    assert!(v.port.ctrl_queue().is_none(), "taken once");
    let mut g = connect(&v.sock);

    let mac = [2, 0, 0, 0, 0, 7];
    let mut mac_cmd = vec![1u8, 1];
    mac_cmd.extend(mac);
    let ack_byte = 0xee;
    // Each case: writes its descriptors (ring slots 2k, 2k+1) and returns the head, the
    // expected judgement and whether an ack byte is written.
    type Case = (&'static str, Box<dyn Fn(&Guest, usize) -> u16>, Want, bool);
    let d = |g: &Guest, i: usize, addr: u64, len: u32, flags: u16, next: u16| {
        g.cvq.desc(i as u16, addr, len, flags, next)
    };
    let cmd_then_ack = |bytes: Vec<u8>| {
        Box::new(move |g: &Guest, k: usize| {
            let a = put(g, k * 0x800, &bytes);
            let ack = put(g, ack_at(k), &[ack_byte]);
            d(g, 2 * k, a, bytes.len() as u32, F_NEXT, (2 * k + 1) as u16);
            d(g, 2 * k + 1, ack, 1, F_WRITE, 0);
            (2 * k) as u16
        }) as Box<dyn Fn(&Guest, usize) -> u16>
    };
    let mut big_table = vec![1u8, 0];
    big_table.extend(1000u32.to_le_bytes());
    big_table.extend(vec![0u8; 6 * 100]);
    let cases: Vec<Case> = vec![
        (
            "a good MAC_ADDR_SET",
            cmd_then_ack(mac_cmd.clone()),
            Want::Request(CtrlRequest::MacAddrSet(MacAddr(mac))),
            true,
        ),
        (
            "an unknown class",
            cmd_then_ack(vec![9, 0, 1]),
            Want::Malformed(CtrlError::UnknownClass(9)),
            true,
        ),
        (
            "a short chain (1 header byte)",
            cmd_then_ack(vec![0]),
            Want::Malformed(CtrlError::NoHeader),
            true,
        ),
        (
            "a MAC table of 1000 entries",
            cmd_then_ack(big_table),
            Want::Malformed(CtrlError::TableTooLarge(1000)),
            true,
        ),
        (
            "no ack descriptor",
            Box::new(move |g: &Guest, k: usize| {
                let a = put(g, k * 0x800, &[0, 0, 1]);
                d(g, 2 * k, a, 3, 0, 0);
                (2 * k) as u16
            }),
            Want::Bad,
            false,
        ),
        (
            "a read-only ack",
            Box::new(move |g: &Guest, k: usize| {
                let a = put(g, k * 0x800, &[0, 0, 1]);
                let ack = put(g, ack_at(k), &[ack_byte]);
                d(g, 2 * k, a, 3, F_NEXT, (2 * k + 1) as u16);
                d(g, 2 * k + 1, ack, 1, 0, 0);
                (2 * k) as u16
            }),
            Want::Bad,
            false,
        ),
        (
            "a command outside the guest's memory",
            Box::new(move |g: &Guest, k: usize| {
                let ack = put(g, ack_at(k), &[ack_byte]);
                d(g, 2 * k, END - 1, 8, F_NEXT, (2 * k + 1) as u16);
                d(g, 2 * k + 1, ack, 1, F_WRITE, 0);
                (2 * k) as u16
            }),
            Want::Bad,
            false,
        ),
        (
            "a descriptor loop",
            Box::new(move |g: &Guest, k: usize| {
                let a = put(g, k * 0x800, &[0, 0, 1]);
                d(g, 2 * k, a, 3, F_NEXT, (2 * k + 1) as u16);
                d(g, 2 * k + 1, a, 3, F_NEXT, (2 * k) as u16);
                (2 * k) as u16
            }),
            Want::Bad,
            false,
        ),
        (
            "a head out of range",
            Box::new(|_g: &Guest, _k: usize| 999),
            Want::Bad,
            false,
        ),
        (
            "a readable buffer after the ack",
            Box::new(move |g: &Guest, k: usize| {
                let a = put(g, k * 0x800, &[0, 0]);
                let ack = put(g, ack_at(k), &[ack_byte]);
                let tail = put(g, k * 0x800 + 0x100, &[1]);
                d(g, 2 * k, a, 2, F_NEXT, (2 * k + 1) as u16);
                d(g, 2 * k + 1, ack, 1, F_WRITE | F_NEXT, 60);
                d(g, 60, tail, 1, 0, 0);
                (2 * k) as u16
            }),
            Want::Bad,
            true,
        ),
        (
            "more command bytes than any request",
            Box::new(move |g: &Guest, k: usize| {
                let a = put(g, k * 0x800, &vec![1u8; MAX_CTRL_BYTES + 10]);
                let ack = put(g, ack_at(k), &[ack_byte]);
                d(
                    g,
                    2 * k,
                    a,
                    MAX_CTRL_BYTES as u32 + 10,
                    F_NEXT,
                    (2 * k + 1) as u16,
                );
                d(g, 2 * k + 1, ack, 1, F_WRITE, 0);
                (2 * k) as u16
            }),
            Want::Malformed(CtrlError::TooLong),
            true,
        ),
        (
            "an indirect table outside the guest's memory",
            Box::new(move |g: &Guest, k: usize| {
                d(g, 2 * k, END, 32, F_INDIRECT, 0);
                (2 * k) as u16
            }),
            Want::Bad,
            false,
        ),
        (
            "an indirect table holding a good PROMISC on",
            Box::new(move |g: &Guest, k: usize| {
                let a = put(g, k * 0x800, &[0, 0, 1]);
                let ack = put(g, ack_at(k), &[ack_byte]);
                let mut t = Vec::new();
                for (addr, len, flags, next) in [(a, 3u32, F_NEXT, 1u16), (ack, 1, F_WRITE, 0)] {
                    t.extend(addr.to_le_bytes());
                    t.extend(len.to_le_bytes());
                    t.extend(flags.to_le_bytes());
                    t.extend(next.to_le_bytes());
                }
                let ta = put(g, k * 0x800 + 0x400, &t);
                d(g, 2 * k, ta, 32, F_INDIRECT, 0);
                (2 * k) as u16
            }),
            Want::Request(CtrlRequest::Rx {
                mode: RxMode::Promisc,
                on: true,
            }),
            true,
        ),
    ];
    for (k, (name, setup, want, acked)) in cases.iter().enumerate() {
        put(&g, ack_at(k), &[ack_byte]);
        let head = setup(&g, k);
        g.cvq.push(head);
        let mut got = Vec::new();
        // The judge refuses requests (so an ack, where written, is ERR) except the last.
        let answer = matches!(want, Want::Request(CtrlRequest::Rx { .. }));
        let t0 = std::time::Instant::now();
        while got.is_empty() {
            cq.serve(8, &mut |i| {
                got.push(i);
                answer
            });
            assert!(t0.elapsed().as_secs() < 5, "{name}: never served");
        }
        assert_eq!(got.len(), 1, "{name}: one chain, one judgement");
        let seen = match got.pop().unwrap() {
            CtrlInput::Request(r) => Want::Request(r),
            CtrlInput::Malformed(e) => Want::Malformed(e),
            CtrlInput::BadChain(_) => Want::Bad,
        };
        assert_eq!(&seen, want, "{name}");
        assert_eq!(
            g.cvq.used_idx(),
            (k + 1) as u16,
            "{name}: returned to the guest"
        );
        let (id, len) = g.cvq.used_elem(k as u16);
        assert_eq!(id, head as u32, "{name}: used id");
        assert_eq!(len, *acked as u32, "{name}: used length");
        let ack = g.mem.read(0, BUF + ack_at(k), 1)[0];
        let expect = if !*acked {
            ack_byte
        } else if answer {
            0
        } else {
            1
        };
        assert_eq!(ack, expect, "{name}: ack byte");
    }
    assert!(xstat(&*v.port, "vhost_ctrl_bad_chains") >= 6);
    let (sessions, failed, bad) = v.sessions();
    assert_eq!((sessions, failed, bad), (1, 0, 0), "the session survives");
    drop(g);
    drop(cq);
    v.serve_good_client();
}

/// A frontend that posts a ring's worth of requests at once: each `serve` call takes at most
/// the number asked for (the eswitch asks for 8 per VF per round), and every chain is answered.
#[test]
fn a_burst_of_requests_is_served_a_bounded_number_at_a_time() {
    let dir = temp_dir("hctrl-burst");
    let v = VhostUnderTest::with_args(&dir, "hctrl-burst", ",ctrl-vq=1");
    let mut port = v.port;
    let mut cq = port.ctrl_queue().expect("a control queue");
    let mut g = connect(&v.sock);
    let n = QSZ / 2;
    for k in 0..n as usize {
        let a = put(&g, k * 8, &[0, 1, 1]); // ALLMULTI on
        let ack = put(&g, ack_at(k), &[0xee]);
        g.cvq.desc((2 * k) as u16, a, 3, F_NEXT, (2 * k + 1) as u16);
        g.cvq.desc((2 * k + 1) as u16, ack, 1, F_WRITE, 0);
    }
    for k in 0..n {
        g.cvq.push(2 * k);
    }
    let mut served = 0usize;
    let t0 = std::time::Instant::now();
    while served < n as usize {
        let mut calls = 0;
        let got = cq.serve(8, &mut |i| {
            calls += 1;
            matches!(i, CtrlInput::Request(CtrlRequest::Rx { .. }))
        });
        assert!(got <= 8 && got == calls, "served {got} in one call");
        served += got;
        assert!(t0.elapsed().as_secs() < 5, "only {served} served");
    }
    assert_eq!(g.cvq.used_idx(), n);
    for k in 0..n as usize {
        assert_eq!(
            g.mem.read(0, BUF + ack_at(k), 1)[0],
            0,
            "chain {k} acked OK"
        );
    }
}
