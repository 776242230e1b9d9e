//! A hostile vhost-user frontend against a real `net_vhost` port: bad descriptors, chains,
//! indirect tables and avail indexes written into a guest memory the frontend shares. Every
//! case asserts exactly which counters moved, that no packet comes out of a bad chain, and
//! whether the head was returned to the guest; the port then serves a real virtio-user client.

mod support;

use ferrovia_ethdev::Burst;
use support::evil_frontend::{
    EvilFrontend, F_INDIRECT, F_NEXT, F_WRITE, GuestMem, SplitLayout, feat,
};
use support::{VhostUnderTest, assert_moved, snapshot, temp_dir};

const GPA: u64 = 0x1000_0000;
/// Each of the two guest regions (adjacent in guest physical space).
const MEM: usize = 1 << 20;
const QSZ: u16 = 256;
const HDR: usize = 12;
/// Where packet buffers start in region 0 (rings are below).
const BUF: usize = 0x40000;
/// The first guest physical address past both regions.
const END: u64 = GPA + 2 * MEM as u64;

/// A guest with both vrings set up: vring 0 (receive) and vring 1 (transmit) in region 0.
struct Guest {
    /// Kept so that the session stays open.
    _fe: EvilFrontend,
    mem: GuestMem,
    rxr: SplitLayout,
    txr: SplitLayout,
}

impl Guest {
    fn connect(sock: &str) -> Guest {
        let mut fe = EvilFrontend::connect(sock);
        fe.handshake(
            feat::V1 | feat::INDIRECT | feat::PROTOCOL,
            feat::P_REPLY_ACK,
        );
        let mem = GuestMem::new(GPA, &[MEM, MEM]);
        assert!(fe.set_mem_table(&mem).unwrap());
        let rxr = SplitLayout::new(&mem, 0, 0, QSZ);
        let txr = SplitLayout::new(&mem, 0, 0x10000, QSZ);
        fe.setup_vring(0, &rxr, true);
        fe.setup_vring(1, &txr, true);
        Guest {
            _fe: fe,
            mem,
            rxr,
            txr,
        }
    }
}

/// Writes descriptors (and tables) into a guest; returns the head to make available.
type Setup = fn(&Guest) -> u16;

/// What a bad transmit chain must do.
struct TxCase {
    name: &'static str,
    /// Writes the chain.
    setup: Setup,
    /// The only counter that moves (by one).
    counter: &'static str,
    /// Whether the head is returned in the used ring (false: it was out of range).
    returned: bool,
}

/// A 72-byte frame (header + 60 bytes of `fill`) at `off` in region 0; returns its address.
fn frame(g: &Guest, off: usize, fill: u8) -> u64 {
    let mut b = vec![0u8; HDR];
    b.extend(std::iter::repeat_n(fill, 60));
    g.mem.write(0, BUF + off, &b);
    g.mem.gpa(0, BUF + off)
}

/// Writes an indirect table of `descs` at `off` in region 0; returns its address.
fn table(g: &Guest, off: usize, descs: &[(u64, u32, u16, u16)]) -> u64 {
    let mut b = Vec::new();
    for &(a, l, f, n) in descs {
        b.extend(a.to_le_bytes());
        b.extend(l.to_le_bytes());
        b.extend(f.to_le_bytes());
        b.extend(n.to_le_bytes());
    }
    g.mem.write(0, BUF + off, &b);
    g.mem.gpa(0, BUF + off)
}

fn tx_cases() -> Vec<TxCase> {
    vec![
        TxCase {
            name: "address above every region",
            setup: |g| {
                g.txr.desc(0, END + 4096, 100, 0, 0);
                0
            },
            counter: "rx_q0_bad_desc_addr",
            returned: true,
        },
        TxCase {
            name: "address below every region",
            setup: |g| {
                g.txr.desc(0, 0x1000, 100, 0, 0);
                0
            },
            counter: "rx_q0_bad_desc_addr",
            returned: true,
        },
        TxCase {
            name: "buffer straddling the end of the last region",
            setup: |g| {
                g.txr.desc(0, END - 10, 100, 0, 0);
                0
            },
            counter: "rx_q0_bad_desc_addr",
            returned: true,
        },
        TxCase {
            name: "buffer straddling two regions adjacent in guest memory",
            setup: |g| {
                g.txr.desc(0, g.mem.gpa(1, 0) - 50, 100, 0, 0);
                0
            },
            counter: "rx_q0_bad_desc_addr",
            returned: true,
        },
        TxCase {
            name: "addr + len overflows u64",
            setup: |g| {
                g.txr.desc(0, u64::MAX - 5, 100, 0, 0);
                0
            },
            counter: "rx_q0_bad_desc_addr",
            returned: true,
        },
        TxCase {
            name: "length u32::MAX at a valid address",
            setup: |g| {
                g.txr.desc(0, g.mem.gpa(0, BUF), u32::MAX, 0, 0);
                0
            },
            counter: "rx_q0_bad_desc_addr",
            returned: true,
        },
        TxCase {
            name: "second descriptor of a chain outside memory",
            setup: |g| {
                g.txr.desc(0, frame(g, 0, 1), 12, F_NEXT, 1);
                g.txr.desc(1, END + 4096, 60, 0, 0);
                0
            },
            counter: "rx_q0_bad_desc_addr",
            returned: true,
        },
        TxCase {
            name: "chain loop 1 -> 2 -> 1",
            setup: |g| {
                let a = frame(g, 0, 1);
                g.txr.desc(1, a, 40, F_NEXT, 2);
                g.txr.desc(2, a, 40, F_NEXT, 1);
                1
            },
            counter: "rx_q0_desc_chain_loop",
            returned: true,
        },
        TxCase {
            name: "zero-length self loop",
            setup: |g| {
                g.txr.desc(3, frame(g, 0, 1), 0, F_NEXT, 3);
                3
            },
            counter: "rx_q0_desc_chain_loop",
            returned: true,
        },
        TxCase {
            name: "zero-length loop through the whole ring",
            setup: |g| {
                let a = frame(g, 0, 1);
                for i in 0..QSZ {
                    g.txr.desc(i, a, 0, F_NEXT, (i + 1) % QSZ);
                }
                0
            },
            counter: "rx_q0_desc_chain_loop",
            returned: true,
        },
        TxCase {
            name: "next >= ring size",
            setup: |g| {
                g.txr.desc(4, frame(g, 0, 1), 40, F_NEXT, QSZ);
                4
            },
            counter: "rx_q0_bad_desc_index",
            returned: true,
        },
        TxCase {
            name: "head >= ring size",
            setup: |_| 0xffff,
            counter: "rx_q0_bad_desc_index",
            returned: false,
        },
        TxCase {
            name: "chain shorter than the virtio-net header",
            setup: |g| {
                g.txr.desc(5, frame(g, 0, 1), 6, 0, 0);
                5
            },
            counter: "rx_q0_desc_chain_too_short",
            returned: true,
        },
        TxCase {
            name: "header split over two descriptors, no frame after it",
            setup: |g| {
                let a = frame(g, 0, 1);
                g.txr.desc(5, a, 6, F_NEXT, 6);
                g.txr.desc(6, a + 6, 6, 0, 0);
                5
            },
            counter: "rx_q0_desc_chain_too_short",
            returned: true,
        },
        TxCase {
            name: "frame longer than 64 KiB",
            setup: |g| {
                let a = g.mem.gpa(0, BUF);
                g.txr.desc(7, a, 40000, F_NEXT, 8);
                g.txr.desc(8, a + 40000, 40000, 0, 0);
                7
            },
            counter: "rx_q0_oversize_frames",
            returned: true,
        },
        TxCase {
            name: "chain of more segments than one packet may span (65)",
            setup: |g| {
                let a = frame(g, 0, 1);
                for i in 0..65u16 {
                    g.txr
                        .desc(10 + i, a, 20, if i < 64 { F_NEXT } else { 0 }, 11 + i);
                }
                10
            },
            counter: "rx_q0_bad_desc_len",
            returned: true,
        },
        TxCase {
            name: "indirect table loop 0 -> 1 -> 0",
            setup: |g| {
                let a = frame(g, 0, 1);
                let t = table(g, 0x1000, &[(a, 12, F_NEXT, 1), (a + 12, 60, F_NEXT, 0)]);
                g.txr.desc(0, t, 32, F_INDIRECT, 0);
                0
            },
            counter: "rx_q0_desc_chain_loop",
            returned: true,
        },
        TxCase {
            name: "indirect zero-length self loop",
            setup: |g| {
                let a = frame(g, 0, 1);
                let t = table(g, 0x1000, &[(a, 0, F_NEXT, 0)]);
                g.txr.desc(0, t, 16, F_INDIRECT, 0);
                0
            },
            counter: "rx_q0_desc_chain_loop",
            returned: true,
        },
        TxCase {
            name: "nested indirect table",
            setup: |g| {
                let a = frame(g, 0, 1);
                let inner = table(g, 0x2000, &[(a, 72, 0, 0)]);
                let t = table(g, 0x1000, &[(inner, 16, F_INDIRECT, 0)]);
                g.txr.desc(0, t, 16, F_INDIRECT, 0);
                0
            },
            counter: "rx_q0_bad_indirect_desc",
            returned: true,
        },
        TxCase {
            name: "indirect table length not a multiple of 16",
            setup: |g| {
                let a = frame(g, 0, 1);
                let t = table(g, 0x1000, &[(a, 72, 0, 0)]);
                g.txr.desc(0, t, 24, F_INDIRECT, 0);
                0
            },
            counter: "rx_q0_bad_indirect_desc",
            returned: true,
        },
        TxCase {
            name: "indirect table of length 0",
            setup: |g| {
                g.txr.desc(0, g.mem.gpa(0, BUF + 0x1000), 0, F_INDIRECT, 0);
                0
            },
            counter: "rx_q0_bad_indirect_desc",
            returned: true,
        },
        TxCase {
            name: "indirect table of more than 65536 entries",
            setup: |g| {
                g.txr.desc(0, g.mem.gpa(0, 0), 16 * 65537, F_INDIRECT, 0);
                0
            },
            counter: "rx_q0_bad_indirect_desc",
            returned: true,
        },
        TxCase {
            name: "indirect table outside memory",
            setup: |g| {
                g.txr.desc(0, END, 32, F_INDIRECT, 0);
                0
            },
            counter: "rx_q0_bad_desc_addr",
            returned: true,
        },
        TxCase {
            name: "indirect table straddling two regions",
            setup: |g| {
                g.txr.desc(0, g.mem.gpa(1, 0) - 16, 32, F_INDIRECT, 0);
                0
            },
            counter: "rx_q0_bad_desc_addr",
            returned: true,
        },
        TxCase {
            name: "indirect table not 8-byte aligned",
            setup: |g| {
                let a = frame(g, 0, 1);
                table(g, 0x1001, &[(a, 72, 0, 0)]);
                g.txr.desc(0, g.mem.gpa(0, BUF + 0x1001), 16, F_INDIRECT, 0);
                0
            },
            counter: "rx_q0_bad_indirect_desc",
            returned: true,
        },
        TxCase {
            name: "indirect descriptor with NEXT set",
            setup: |g| {
                let a = frame(g, 0, 1);
                let t = table(g, 0x1000, &[(a, 72, 0, 0)]);
                g.txr.desc(0, t, 16, F_INDIRECT | F_NEXT, 1);
                g.txr.desc(1, a, 72, 0, 0);
                0
            },
            counter: "rx_q0_bad_indirect_desc",
            returned: true,
        },
        TxCase {
            name: "indirect descriptor in the middle of a chain",
            setup: |g| {
                let a = frame(g, 0, 1);
                let t = table(g, 0x1000, &[(a + 12, 60, 0, 0)]);
                g.txr.desc(0, a, 12, F_NEXT, 1);
                g.txr.desc(1, t, 16, F_INDIRECT, 0);
                0
            },
            counter: "rx_q0_bad_indirect_desc",
            returned: true,
        },
        TxCase {
            name: "indirect entry next >= table size",
            setup: |g| {
                let a = frame(g, 0, 1);
                let t = table(g, 0x1000, &[(a, 12, F_NEXT, 2), (a + 12, 60, 0, 0)]);
                g.txr.desc(0, t, 32, F_INDIRECT, 0);
                0
            },
            counter: "rx_q0_bad_desc_index",
            returned: true,
        },
        TxCase {
            name: "indirect entry outside memory",
            setup: |g| {
                let a = frame(g, 0, 1);
                let t = table(g, 0x1000, &[(a, 12, F_NEXT, 1), (END - 8, 60, 0, 0)]);
                g.txr.desc(0, t, 32, F_INDIRECT, 0);
                0
            },
            counter: "rx_q0_bad_desc_addr",
            returned: true,
        },
    ]
}

/// Every bad transmit chain is dropped and counted under exactly one cause; the head goes back
/// to the guest when it is a valid index; legal but unusual chains (header split over several
/// descriptors, indirect tables) are delivered intact; an avail index jump is counted once and
/// the ring works again once the guest repairs it. Then a real client is served.
#[test]
fn bad_transmit_chains_are_counted_and_dropped() {
    let dir = temp_dir("evil-tx");
    let mut v = VhostUnderTest::new(&dir, "tx");
    let mut g = Guest::connect(&v.sock);
    support::wait("link up", || v.port.link().up);
    for c in tx_cases() {
        let before = snapshot(&*v.port);
        let used0 = g.txr.used_idx();
        let head = (c.setup)(&g);
        g.txr.push(head);
        let got = v.poll(4);
        assert_eq!(got.len(), 0, "{}: no packet may come out", c.name);
        assert_moved(&*v.port, &before, &[(c.counter, 1)], c.name);
        if c.returned {
            assert_eq!(
                g.txr.used_idx(),
                used0.wrapping_add(1),
                "{}: returned",
                c.name
            );
            assert_eq!(
                g.txr.used_elem(used0),
                (head as u32, 0),
                "{}: the head comes back with length 0",
                c.name
            );
        } else {
            assert_eq!(g.txr.used_idx(), used0, "{}: nothing to return", c.name);
        }
    }
    // Legal chains: the header split over three descriptors; twelve 1-byte header pieces; a
    // valid indirect table with a split header.
    let legal: [(&str, Setup); 3] = [
        ("header split over three descriptors", |g| {
            let a = frame(g, 0x3000, 0xa1);
            g.txr.desc(20, a, 5, F_NEXT, 21);
            g.txr.desc(21, a + 5, 7, F_NEXT, 22);
            g.txr.desc(22, a + 12, 60, 0, 0);
            20
        }),
        ("header in twelve 1-byte descriptors", |g| {
            let a = frame(g, 0x3000, 0xa2);
            for i in 0..12u16 {
                g.txr.desc(30 + i, a + i as u64, 1, F_NEXT, 31 + i);
            }
            g.txr.desc(42, a + 12, 60, 0, 0);
            30
        }),
        ("indirect table with a split header", |g| {
            let a = frame(g, 0x3000, 0xa3);
            let t = table(
                g,
                0x1000,
                &[(a, 4, F_NEXT, 2), (a + 12, 60, 0, 0), (a + 4, 8, F_NEXT, 1)],
            );
            g.txr.desc(50, t, 48, F_INDIRECT, 0);
            50
        }),
    ];
    for (i, (name, setup)) in legal.into_iter().enumerate() {
        let before = snapshot(&*v.port);
        let head = setup(&g);
        g.txr.push(head);
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
    }
    // An avail index more than a ring ahead: counted once, however often the queue is polled.
    let before = snapshot(&*v.port);
    g.txr.set_avail_idx(g.txr.avail_idx.wrapping_add(QSZ + 1));
    assert_eq!(v.poll(8).len(), 0);
    assert_moved(
        &*v.port,
        &before,
        &[("rx_q0_bad_avail_idx", 1)],
        "avail idx jump",
    );
    // The guest repairs its index: the ring works again.
    g.txr.set_avail_idx(g.txr.avail_idx);
    let a = frame(&g, 0x3000, 0x55);
    g.txr.desc(60, a, 72, 0, 0);
    g.txr.push(60);
    let got = v.poll(2);
    assert_eq!(got.len(), 1, "after the jump is repaired");
    assert!(got[0].data().iter().all(|&b| b == 0x55));
    drop(got);
    drop(g);
    support::wait("link down", || !v.port.link().up);
    let (_, failed, bad) = v.sessions();
    assert_eq!((failed, bad), (0, 0), "bad descriptors never end a session");
    v.serve_good_client();
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a bad receive buffer must do when the port transmits one packet into it.
struct RxCase {
    name: &'static str,
    setup: Setup,
    counter: &'static str,
    returned: bool,
}

/// Receive buffers (vring 0, filled by the port's Tx queue): read-only, unmapped, looping,
/// too small or out-of-range buffers drop the packet with exactly one counter; nothing is
/// written outside the guest's buffer; a good buffer then gets the packet intact.
#[test]
fn bad_receive_buffers_are_counted_and_never_written() {
    let dir = temp_dir("evil-rx");
    let mut v = VhostUnderTest::new(&dir, "rx");
    let mut g = Guest::connect(&v.sock);
    support::wait("link up", || v.port.link().up);
    let cases = vec![
        RxCase {
            name: "read-only receive buffer",
            setup: |g| {
                g.rxr.desc(0, g.mem.gpa(0, BUF), 2048, 0, 0);
                0
            },
            counter: "tx_q0_bad_desc_len",
            returned: true,
        },
        RxCase {
            name: "receive buffer outside memory",
            setup: |g| {
                g.rxr.desc(0, END - 100, 2048, F_WRITE, 0);
                0
            },
            counter: "tx_q0_bad_desc_addr",
            returned: true,
        },
        RxCase {
            name: "receive chain loop",
            setup: |g| {
                let a = g.mem.gpa(0, BUF);
                g.rxr.desc(1, a, 0, F_WRITE | F_NEXT, 2);
                g.rxr.desc(2, a, 0, F_WRITE | F_NEXT, 1);
                1
            },
            counter: "tx_q0_desc_chain_loop",
            returned: true,
        },
        RxCase {
            name: "receive buffer too small for the packet",
            setup: |g| {
                g.rxr.desc(3, g.mem.gpa(0, BUF), 64, F_WRITE, 0);
                3
            },
            counter: "tx_q0_desc_chain_too_short",
            returned: true,
        },
        RxCase {
            name: "receive head >= ring size",
            setup: |_| QSZ,
            counter: "tx_q0_bad_desc_index",
            returned: false,
        },
        RxCase {
            name: "receive next >= ring size",
            setup: |g| {
                g.rxr.desc(4, g.mem.gpa(0, BUF), 12, F_WRITE | F_NEXT, 1000);
                4
            },
            counter: "tx_q0_bad_desc_index",
            returned: true,
        },
    ];
    for c in cases {
        let head = (c.setup)(&g);
        // Fill the buffer area with a marker to prove nothing was written.
        g.mem.write(0, BUF, &[0xee; 4096]);
        let before = snapshot(&*v.port);
        let used0 = g.rxr.used_idx();
        g.rxr.push(head);
        let mut b = Burst::new();
        let mut m = v.pool.alloc().unwrap();
        m.append(200).unwrap().fill(0x42);
        b.push(m);
        assert_eq!(
            v.tx.tx_burst(&mut v.caches, &mut b),
            0,
            "{}: not delivered",
            c.name
        );
        assert!(
            b.is_empty(),
            "{}: the packet is dropped, not retried",
            c.name
        );
        assert_moved(&*v.port, &before, &[(c.counter, 1)], c.name);
        assert!(
            g.mem.read(0, BUF, 4096).iter().all(|&x| x == 0xee),
            "{}: guest memory untouched",
            c.name
        );
        if c.returned {
            assert_eq!(g.rxr.used_idx(), used0.wrapping_add(1), "{}", c.name);
            assert_eq!(g.rxr.used_elem(used0), (head as u32, 0), "{}", c.name);
        } else {
            assert_eq!(g.rxr.used_idx(), used0, "{}", c.name);
        }
    }
    // A good buffer split header/data over two descriptors receives the packet intact.
    let before = snapshot(&*v.port);
    let used0 = g.rxr.used_idx();
    g.rxr.desc(10, g.mem.gpa(0, BUF), 12, F_WRITE | F_NEXT, 11);
    g.rxr.desc(11, g.mem.gpa(0, BUF + 12), 2048, F_WRITE, 0);
    g.rxr.push(10);
    let mut b = Burst::new();
    let mut m = v.pool.alloc().unwrap();
    m.append(200).unwrap().fill(0x42);
    b.push(m);
    assert_eq!(v.tx.tx_burst(&mut v.caches, &mut b), 1);
    assert_eq!(g.rxr.used_elem(used0), (10, 212));
    assert!(g.mem.read(0, BUF + 12, 200).iter().all(|&x| x == 0x42));
    assert_moved(
        &*v.port,
        &before,
        &[
            ("tx_q0_packets", 1),
            ("tx_q0_bytes", 200),
            ("tx_good_packets", 1),
            ("tx_good_bytes", 200),
        ],
        "good receive buffer",
    );
    drop(g);
    support::wait("link down", || !v.port.link().up);
    v.serve_good_client();
    let _ = std::fs::remove_dir_all(&dir);
}
