//! A hostile vhost-user frontend against a real `net_vhost` port over PACKED rings: the bug
//! classes of `hostile_frontend.rs` (loops and zero-length chains, addresses outside or
//! straddling regions, addr + len overflow, short chains, indirect table abuse, oversized
//! frames and chains, ids out of range) written into packed descriptor rings. Each case runs
//! on a fresh port and session, in its own thread under a hang guard, and asserts exactly
//! which xstats moved, that no packet came out, whether a used descriptor came back; then a
//! well-behaved client is served, and the fd count and free mbufs return to where they were.

mod support;

use std::sync::mpsc;
use std::time::Duration;

use ferrovia_ethdev::Burst;
use support::evil_frontend::{
    EvilFrontend, F_INDIRECT, F_NEXT, F_RING_PACKED, F_WRITE, GuestMem, PackedLayout, feat,
};
use support::{VhostUnderTest, assert_moved, fd_count, snapshot, temp_dir};

const GPA: u64 = 0x1000_0000;
/// Each of the two guest regions (adjacent in guest physical space; 2 MiB, so that one
/// holds an indirect table of more than 65536 entries).
const MEM: usize = 2 << 20;
const QSZ: u16 = 256;
const HDR: usize = 12;
/// Where packet buffers start in region 0 (rings are below).
const BUF: usize = 0x40000;
/// The first guest physical address past both regions.
const END: u64 = GPA + 2 * MEM as u64;
/// The buffer id every case uses for its chain.
const ID: u16 = 7;

/// A guest with both packed vrings set up: vring 0 (receive) and vring 1 (transmit).
struct Guest {
    /// Kept so that the session stays open.
    _fe: EvilFrontend,
    mem: GuestMem,
    rxr: PackedLayout,
    txr: PackedLayout,
}

impl Guest {
    fn connect(sock: &str) -> Guest {
        let mut fe = EvilFrontend::connect(sock);
        fe.handshake(
            feat::V1 | feat::INDIRECT | feat::PROTOCOL | F_RING_PACKED,
            feat::P_REPLY_ACK,
        );
        let mem = GuestMem::new(GPA, &[MEM, MEM]);
        assert!(fe.set_mem_table(&mem).unwrap());
        let rxr = PackedLayout::new(&mem, 0, 0, QSZ);
        let txr = PackedLayout::new(&mem, 0, 0x10000, QSZ);
        fe.setup_packed_vring(0, &rxr, true);
        fe.setup_packed_vring(1, &txr, true);
        Guest {
            _fe: fe,
            mem,
            rxr,
            txr,
        }
    }
}

/// A 72-byte frame (header + 60 bytes of `fill`) at `off` in region 0; returns its address.
fn frame(g: &Guest, off: usize, fill: u8) -> u64 {
    let mut b = vec![0u8; HDR];
    b.extend(std::iter::repeat_n(fill, 60));
    g.mem.write(0, BUF + off, &b);
    g.mem.gpa(0, BUF + off)
}

/// Writes an indirect table of packed descriptors `(addr, len, flags)` at `off` in region 0
/// (ids 0); returns its address.
fn table(g: &Guest, off: usize, descs: &[(u64, u32, u16)]) -> u64 {
    let mut b = Vec::new();
    for &(a, l, f) in descs {
        b.extend(a.to_le_bytes());
        b.extend(l.to_le_bytes());
        b.extend(0u16.to_le_bytes());
        b.extend(f.to_le_bytes());
    }
    g.mem.write(0, BUF + off, &b);
    g.mem.gpa(0, BUF + off)
}

/// The chain a case makes available: `(addr, len, flags)` per slot, flags without the
/// ownership bits.
type Chain = fn(&Guest) -> Vec<(u64, u32, u16)>;

/// What a bad chain must do.
#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    chain: Chain,
    /// The only counter that moves (by one); empty: none moves.
    counter: &'static str,
    /// Whether a used descriptor (buffer id, length 0) comes back to the guest.
    returned: bool,
    /// The buffer id the chain carries.
    id: u16,
}

fn tx_cases() -> Vec<Case> {
    vec![
        Case {
            name: "address above every region",
            chain: |_| vec![(END + 4096, 100, 0)],
            counter: "rx_q0_bad_desc_addr",
            returned: true,
            id: ID,
        },
        Case {
            name: "address below every region",
            chain: |_| vec![(0x1000, 100, 0)],
            counter: "rx_q0_bad_desc_addr",
            returned: true,
            id: ID,
        },
        Case {
            name: "buffer straddling the end of the last region",
            chain: |_| vec![(END - 10, 100, 0)],
            counter: "rx_q0_bad_desc_addr",
            returned: true,
            id: ID,
        },
        Case {
            name: "buffer straddling two regions adjacent in guest memory",
            chain: |g| vec![(g.mem.gpa(1, 0) - 50, 100, 0)],
            counter: "rx_q0_bad_desc_addr",
            returned: true,
            id: ID,
        },
        Case {
            name: "addr + len overflows u64",
            chain: |_| vec![(u64::MAX - 5, 100, 0)],
            counter: "rx_q0_bad_desc_addr",
            returned: true,
            id: ID,
        },
        Case {
            name: "length u32::MAX at a valid address",
            chain: |g| vec![(g.mem.gpa(0, BUF), u32::MAX, 0)],
            counter: "rx_q0_bad_desc_addr",
            returned: true,
            id: ID,
        },
        Case {
            name: "second descriptor of a chain outside memory",
            chain: |g| vec![(frame(g, 0, 1), 12, F_NEXT), (END + 4096, 60, 0)],
            counter: "rx_q0_bad_desc_addr",
            returned: true,
            id: ID,
        },
        Case {
            name: "chain shorter than the virtio-net header",
            chain: |g| vec![(frame(g, 0, 1), 6, 0)],
            counter: "rx_q0_desc_chain_too_short",
            returned: true,
            id: ID,
        },
        Case {
            name: "header split over two descriptors, no frame after it",
            chain: |g| {
                let a = frame(g, 0, 1);
                vec![(a, 6, F_NEXT), (a + 6, 6, 0)]
            },
            counter: "rx_q0_desc_chain_too_short",
            returned: true,
            id: ID,
        },
        Case {
            name: "frame longer than 64 KiB",
            chain: |g| {
                let a = g.mem.gpa(0, BUF);
                vec![(a, 40000, F_NEXT), (a + 40000, 40000, 0)]
            },
            counter: "rx_q0_oversize_frames",
            returned: true,
            id: ID,
        },
        Case {
            name: "chain of more segments than one packet may span (65)",
            chain: |g| {
                let a = frame(g, 0, 1);
                (0..65)
                    .map(|i| (a, 20, if i < 64 { F_NEXT } else { 0 }))
                    .collect()
            },
            counter: "rx_q0_bad_desc_len",
            returned: true,
            id: ID,
        },
        Case {
            name: "zero-length chain through the whole ring",
            chain: |g| {
                let a = frame(g, 0, 1);
                (0..QSZ).map(|_| (a, 0, F_NEXT)).collect()
            },
            counter: "rx_q0_desc_chain_loop",
            // A chain that cannot be delimited: nothing to return, the queue is broken.
            returned: false,
            id: ID,
        },
        Case {
            name: "nested indirect table",
            chain: |g| {
                let a = frame(g, 0, 1);
                let inner = table(g, 0x2000, &[(a, 72, 0)]);
                let t = table(g, 0x1000, &[(inner, 16, F_INDIRECT)]);
                vec![(t, 16, F_INDIRECT)]
            },
            counter: "rx_q0_bad_indirect_desc",
            returned: true,
            id: ID,
        },
        Case {
            name: "indirect table length not a multiple of 16",
            chain: |g| {
                let a = frame(g, 0, 1);
                vec![(table(g, 0x1000, &[(a, 72, 0)]), 24, F_INDIRECT)]
            },
            counter: "rx_q0_bad_indirect_desc",
            returned: true,
            id: ID,
        },
        Case {
            name: "indirect table of length 0",
            chain: |g| vec![(g.mem.gpa(0, BUF + 0x1000), 0, F_INDIRECT)],
            counter: "rx_q0_bad_indirect_desc",
            returned: true,
            id: ID,
        },
        Case {
            name: "indirect table outside memory",
            chain: |_| vec![(END, 32, F_INDIRECT)],
            counter: "rx_q0_bad_desc_addr",
            returned: true,
            id: ID,
        },
        Case {
            name: "indirect table straddling two regions",
            chain: |g| vec![(g.mem.gpa(1, 0) - 16, 32, F_INDIRECT)],
            counter: "rx_q0_bad_desc_addr",
            returned: true,
            id: ID,
        },
        Case {
            name: "indirect descriptor with NEXT set",
            chain: |g| {
                let a = frame(g, 0, 1);
                let t = table(g, 0x1000, &[(a, 72, 0)]);
                vec![(t, 16, F_INDIRECT | F_NEXT), (a, 72, 0)]
            },
            counter: "rx_q0_bad_indirect_desc",
            returned: true,
            id: ID,
        },
        Case {
            name: "indirect descriptor in the middle of a chain",
            chain: |g| {
                let a = frame(g, 0, 1);
                let t = table(g, 0x1000, &[(a + 12, 60, 0)]);
                vec![(a, 12, F_NEXT), (t, 16, F_INDIRECT)]
            },
            counter: "rx_q0_bad_indirect_desc",
            returned: true,
            id: ID,
        },
        Case {
            name: "indirect entry outside memory",
            chain: |g| {
                let a = frame(g, 0, 1);
                let t = table(g, 0x1000, &[(a, 12, F_NEXT), (END - 8, 60, 0)]);
                vec![(t, 32, F_INDIRECT)]
            },
            counter: "rx_q0_bad_desc_addr",
            returned: true,
            id: ID,
        },
        Case {
            name: "descriptor with both ownership bits set (not available)",
            chain: |g| vec![(frame(g, 0, 1), 72, support::evil_frontend::PK_USED)],
            counter: "",
            returned: false,
            id: ID,
        },
        Case {
            name: "buffer id 0xffff on a bad chain",
            chain: |g| vec![(frame(g, 0, 1), 6, 0)],
            counter: "rx_q0_desc_chain_too_short",
            returned: true,
            id: 0xffff,
        },
    ]
}

/// Cases the packed device mishandles today (kept as ignored tests, see below).
fn tx_bug_cases() -> Vec<Case> {
    vec![
        Case {
            name: "indirect table not 8-byte aligned",
            chain: |g| {
                let a = frame(g, 0, 1);
                table(g, 0x1001, &[(a, 72, 0)]);
                vec![(g.mem.gpa(0, BUF + 0x1001), 16, F_INDIRECT)]
            },
            counter: "rx_q0_bad_indirect_desc",
            returned: true,
            id: ID,
        },
        Case {
            name: "indirect table of more than 65536 entries",
            chain: |g| vec![(g.mem.gpa(1, 0), 16 * 65537, F_INDIRECT)],
            counter: "rx_q0_bad_indirect_desc",
            returned: true,
            id: ID,
        },
    ]
}

fn rx_cases() -> Vec<Case> {
    vec![
        Case {
            name: "read-only receive buffer",
            chain: |g| vec![(g.mem.gpa(0, BUF), 2048, 0)],
            counter: "tx_q0_bad_desc_len",
            returned: true,
            id: ID,
        },
        Case {
            name: "receive buffer outside memory",
            chain: |_| vec![(END - 100, 2048, F_WRITE)],
            counter: "tx_q0_bad_desc_addr",
            returned: true,
            id: ID,
        },
        Case {
            name: "receive buffer too small for the packet",
            chain: |g| vec![(g.mem.gpa(0, BUF), 64, F_WRITE)],
            counter: "tx_q0_desc_chain_too_short",
            returned: true,
            id: ID,
        },
        Case {
            name: "receive chain with its second buffer outside memory",
            chain: |g| {
                vec![
                    (g.mem.gpa(0, BUF), 12, F_WRITE | F_NEXT),
                    (END, 2048, F_WRITE),
                ]
            },
            counter: "tx_q0_bad_desc_addr",
            returned: true,
            id: ID,
        },
    ]
}

/// One test at a time opens ports in this binary, so that fd baselines hold.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Closes the port: every mbuf back in its pool, the fd count back to `fds`.
fn finish(v: VhostUnderTest, fds: usize) {
    let pool = v.pool.clone();
    drop(v);
    assert_eq!(pool.available(), pool.count(), "every mbuf back");
    drop(pool);
    support::wait("fds back to the baseline", || fd_count() == fds);
}

/// The counters a case expects to move.
fn expect(c: &Case) -> Vec<(&'static str, u64)> {
    if c.counter.is_empty() {
        vec![]
    } else {
        vec![(c.counter, 1)]
    }
}

/// Runs one case on a fresh port in its own thread; panics if it does not finish (a hang
/// guard, not a timing assertion) or if any of its assertions fails.
fn run(tag: &str, c: Case, transmit: bool) {
    let dir = temp_dir(&format!("evil-pk-{tag}"));
    let (done, wait) = mpsc::channel();
    let t = std::thread::spawn(move || {
        let mut v = VhostUnderTest::new(&dir, "pk");
        let pool = v.pool.clone();
        let mut g = Guest::connect(&v.sock);
        support::wait("link up", || v.port.link().up);
        let before = snapshot(&*v.port);
        let chain = (c.chain)(&g);
        if transmit {
            let head = g.txr.avail.0;
            let n = g.txr.push_chain(&chain, c.id);
            let posted = g.txr.read(head);
            let got = v.poll(4);
            assert_eq!(got.len(), 0, "{}: no packet may come out", c.name);
            drop(got);
            assert_moved(&*v.port, &before, &expect(&c), c.name);
            if c.returned {
                assert_eq!(g.txr.take_used(n), Some((c.id, 0)), "{}: returned", c.name);
            } else {
                assert_eq!(g.txr.read(head), posted, "{}: nothing returned", c.name);
            }
        } else {
            g.mem.write(0, BUF, &[0xee; 4096]);
            let n = g.rxr.push_chain(&chain, c.id);
            let mut b = Burst::new();
            let mut m = v.pool.alloc().unwrap();
            m.append(200).unwrap().fill(0x42);
            b.push(m);
            assert_eq!(v.tx.tx_burst(&mut v.caches, &mut b), 0, "{}", c.name);
            assert!(b.is_empty(), "{}: dropped, not retried", c.name);
            assert_moved(&*v.port, &before, &expect(&c), c.name);
            assert!(
                g.mem.read(0, BUF, 4096).iter().all(|&x| x == 0xee),
                "{}: guest memory untouched",
                c.name
            );
            let used = g.rxr.take_used(n);
            assert_eq!(
                used,
                c.returned.then_some((c.id, 0)),
                "{}: returned",
                c.name
            );
        }
        drop(g);
        support::wait("link down", || !v.port.link().up);
        let (_, failed, bad) = v.sessions();
        assert_eq!(
            (failed, bad),
            (0, 0),
            "{}: bad descriptors never end a session",
            c.name
        );
        v.serve_good_client();
        drop(v);
        assert_eq!(
            pool.available(),
            pool.count(),
            "{}: every mbuf back",
            c.name
        );
        let _ = std::fs::remove_dir_all(&dir);
        let _ = done.send(());
    });
    let r = wait.recv_timeout(Duration::from_secs(30));
    if r.is_err() && !t.is_finished() {
        panic!("{}: hung (no result after 30 s)", c.name);
    }
    if let Err(e) = t.join() {
        std::panic::resume_unwind(e);
    }
}

/// Every bad packed transmit chain and receive buffer is dropped and counted under exactly
/// one cause, the buffer id comes back with length 0, nothing is written to guest memory, the
/// session survives, a real client is then served, and fds and mbufs return to their values.
#[test]
fn bad_packed_chains_are_counted_and_dropped() {
    let _serial = serial();
    ferrovia_pmd::start_control_plane().unwrap();
    let fds = fd_count();
    for (i, c) in tx_cases().into_iter().enumerate() {
        run(&format!("tx{i}"), c, true);
    }
    for (i, c) in rx_cases().into_iter().enumerate() {
        run(&format!("rx{i}"), c, false);
    }
    support::wait("fds back to the baseline", || fd_count() == fds);
}

/// An indirect table that is not 8-byte aligned is refused with `rx_q0_bad_indirect_desc`, as
/// the split device does (`hostile_frontend`). (Found by this suite: the packed device used to
/// accept it.)
#[test]
fn packed_indirect_table_not_8_byte_aligned() {
    run("bug-mis", tx_bug_cases()[0], true);
}

/// A packed indirect table of more than 65536 entries is refused (`rx_q0_bad_indirect_desc`
/// +1), as on split rings. (Found by this suite: the packed device had no cap.)
#[test]
fn packed_indirect_table_over_65536_entries() {
    run("bug-ind", tx_bug_cases()[1], true);
}

/// Legal but unusual packed chains are delivered intact, one after the other on one ring:
/// the header split over three descriptors, the header in twelve 1-byte descriptors, an
/// indirect table with a split header; each buffer id comes back; then a real client is
/// served.
#[test]
fn legal_packed_chains_are_delivered_intact() {
    let _serial = serial();
    ferrovia_pmd::start_control_plane().unwrap();
    let fds = fd_count();
    let dir = temp_dir("evil-pk-legal");
    let mut v = VhostUnderTest::new(&dir, "pk-legal");
    let mut g = Guest::connect(&v.sock);
    support::wait("link up", || v.port.link().up);
    let legal: [(&str, Chain); 3] = [
        ("header split over three descriptors", |g| {
            let a = frame(g, 0x3000, 0xa1);
            vec![(a, 5, F_NEXT), (a + 5, 7, F_NEXT), (a + 12, 60, 0)]
        }),
        ("header in twelve 1-byte descriptors", |g| {
            let a = frame(g, 0x3000, 0xa2);
            let mut c: Vec<_> = (0..12).map(|i| (a + i, 1, F_NEXT)).collect();
            c.push((a + 12, 60, 0));
            c
        }),
        ("indirect table with a split header", |g| {
            let a = frame(g, 0x3000, 0xa3);
            let t = table(
                g,
                0x1000,
                &[(a, 4, F_NEXT), (a + 4, 8, F_NEXT), (a + 12, 60, 0)],
            );
            vec![(t, 48, F_INDIRECT)]
        }),
    ];
    for (i, (name, chain)) in legal.into_iter().enumerate() {
        let before = snapshot(&*v.port);
        let c = chain(&g);
        let n = g.txr.push_chain(&c, 40 + i as u16);
        let got = v.poll(4);
        assert_eq!(got.len(), 1, "{name}: delivered");
        assert_eq!(got[0].data_len(), 60, "{name}");
        assert!(
            got[0].data().iter().all(|&b| b == 0xa1 + i as u8),
            "{name}: payload"
        );
        drop(got);
        assert_moved(
            &*v.port,
            &before,
            &[
                ("rx_q0_packets", 1),
                ("rx_q0_bytes", 60),
                ("rx_good_packets", 1),
                ("rx_good_bytes", 60),
            ],
            name,
        );
        assert_eq!(
            g.txr.take_used(n),
            Some((40 + i as u16, 0)),
            "{name}: returned"
        );
    }
    drop(g);
    support::wait("link down", || !v.port.link().up);
    v.serve_good_client();
    finish(v, fds);
    let _ = std::fs::remove_dir_all(&dir);
}

/// SET_VRING_BASE with a packed position outside the ring (index = ring size, wrap bit set):
/// the vring is never published; the message that would complete it is refused, the session
/// ends (`vhost_sessions_failed` +1) and the refusal is counted as ours (`vhost_bad_messages`
/// +1); the port then serves a real client.
#[test]
fn packed_base_outside_the_ring_is_refused() {
    use support::evil_frontend::{req, vring_addr, vring_state};
    let _serial = serial();
    ferrovia_pmd::start_control_plane().unwrap();
    let fds = fd_count();
    let dir = temp_dir("evil-pk-base");
    let mut v = VhostUnderTest::new(&dir, "pk-base");
    let (_, failed0, bad0) = v.sessions();
    {
        let mut fe = EvilFrontend::connect(&v.sock);
        fe.handshake(feat::V1 | feat::PROTOCOL | F_RING_PACKED, feat::P_REPLY_ACK);
        let mem = GuestMem::new(GPA, &[MEM]);
        assert!(fe.set_mem_table(&mem).unwrap());
        let r = PackedLayout::new(&mem, 0, 0, QSZ);
        let nofd = |i: u64| (i | support::evil_frontend::VRING_NOFD).to_le_bytes();
        let steps: Vec<(u32, Vec<u8>)> = vec![
            (req::SET_VRING_NUM, vring_state(1, QSZ as u32)),
            (req::SET_VRING_BASE, vring_state(1, 0x8000 | QSZ as u32)),
            (
                req::SET_VRING_ADDR,
                vring_addr(1, 0, r.desc_uva(), r.device_uva(), r.driver_uva(), 0),
            ),
            (req::SET_VRING_CALL, nofd(1).to_vec()),
            (req::SET_VRING_KICK, nofd(1).to_vec()),
            (req::SET_VRING_ENABLE, vring_state(1, 1)),
        ];
        let mut refused = 0;
        for (code, payload) in steps {
            match fe.call(code, &payload, &[]) {
                Ok(true) => {}
                Ok(false) | Err(_) => {
                    refused += 1;
                    break;
                }
            }
        }
        assert_eq!(refused, 1, "one message refused");
        assert!(v.poll(2).is_empty(), "no packet");
    }
    support::wait("session over", || !v.port.link().up);
    let (_, failed, bad) = v.sessions();
    eprintln!(
        "packed base outside: failed +{}, bad +{}",
        failed - failed0,
        bad - bad0
    );
    assert_eq!(bad - bad0, 1, "counted as ours");
    v.serve_good_client();
    finish(v, fds);
    let _ = std::fs::remove_dir_all(&dir);
}
