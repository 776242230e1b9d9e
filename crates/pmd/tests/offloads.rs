//! Checksum and segmentation offloads through the virtio-net header: our virtio-user and our
//! vhost over a real socket (split and packed rings), with offloads enabled on one side, both
//! or neither; and a hostile frontend whose malformed headers must be dropped and counted.

mod support;

use std::time::{Duration, Instant};

use ferrovia_ethdev::{Burst, Port, PortConf, RxOffloads, RxQueue, TxOffloads, TxQueue};
use ferrovia_memory::cksum::{self, IPPROTO_TCP, IPPROTO_UDP, L3};
use ferrovia_memory::mbuf::{
    OL_RX_L4_CKSUM_GOOD, OL_RX_L4_CKSUM_MASK, OL_RX_L4_CKSUM_NONE, OL_RX_LRO, OL_TX_IP_CKSUM,
    OL_TX_IPV4, OL_TX_TCP_CKSUM, OL_TX_TCP_SEG, OL_TX_UDP_CKSUM,
};
use ferrovia_memory::{LcoreCaches, Mbuf, Mempool};
use support::evil_frontend::{EvilFrontend, GuestMem, SplitLayout, feat};
use support::{assert_moved, snapshot, temp_dir, wait};

/// An Ethernet/IPv4/TCP-or-UDP frame as an application hands it to Tx checksum offload:
/// the IPv4 checksum zero, the L4 checksum field holding the pseudo-header checksum (without
/// the length when `tso`).
fn partial_frame(tcp: bool, payload: usize, seed: u8, tso: bool) -> Vec<u8> {
    let l4_len = if tcp { 20 } else { 8 };
    let mut b = vec![0u8; 14 + 20 + l4_len + payload];
    b[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    b[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    b[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    b[14] = 0x45;
    let tot = (b.len() - 14) as u16;
    b[16..18].copy_from_slice(&tot.to_be_bytes());
    b[22] = 64;
    b[23] = if tcp { IPPROTO_TCP } else { IPPROTO_UDP };
    b[26..30].copy_from_slice(&[10, 1, 0, 1]);
    b[30..34].copy_from_slice(&[10, 1, 0, 2]);
    b[34..36].copy_from_slice(&4000u16.to_be_bytes());
    b[36..38].copy_from_slice(&5001u16.to_be_bytes());
    if tcp {
        b[46] = 5 << 4;
        b[47] = 0x18;
    } else {
        b[38..40].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    }
    for (i, x) in b[34 + l4_len..].iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(13).wrapping_add(seed);
    }
    let len = if tso { 0 } else { b.len() - 34 };
    let ph = cksum::phdr_cksum(&b[14..34], L3::Ipv4, b[23], len).unwrap();
    let off = 34 + if tcp { 16 } else { 6 };
    b[off..off + 2].copy_from_slice(&ph.to_be_bytes());
    b
}

/// `b` with its checksums completed in software (what must arrive without Rx offload).
fn completed(b: &[u8]) -> Vec<u8> {
    let mut b = b.to_vec();
    let c = cksum::ipv4_hdr_cksum(&b[14..34]);
    b[24..26].copy_from_slice(&c.to_be_bytes());
    let off = 34 + if b[23] == IPPROTO_TCP { 16 } else { 6 };
    b[off..off + 2].fill(0);
    let ph = cksum::phdr_cksum(&b[14..34], L3::Ipv4, b[23], b.len() - 34).unwrap();
    let mut c = !cksum::fold(u64::from(ph) + cksum::raw_sum(&b[34..]));
    if c == 0 && b[23] == IPPROTO_UDP {
        c = 0xffff;
    }
    b[off..off + 2].copy_from_slice(&c.to_be_bytes());
    b
}

fn make(pool: &Mempool, data: &[u8], flags: u64, l4_len: usize, segsz: u16) -> Mbuf {
    let mut head = pool.alloc().unwrap();
    let mut rest = data;
    let k = rest.len().min(head.tailroom());
    head.append(k).unwrap().copy_from_slice(&rest[..k]);
    rest = &rest[k..];
    while !rest.is_empty() {
        let mut m = pool.alloc().unwrap();
        let k = rest.len().min(m.tailroom());
        m.append(k).unwrap().copy_from_slice(&rest[..k]);
        rest = &rest[k..];
        head.chain(m);
    }
    head.set_ol_flags(flags);
    assert!(head.set_header_lens(14, 20, l4_len));
    head.set_tso_segsz(segsz);
    head
}

fn wait_up(p: &dyn Port) {
    let t = Instant::now();
    while !p.link().up {
        assert!(t.elapsed() < Duration::from_secs(10), "link never came up");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `pkts` on `tx` and returns what arrives on `rx` (as many packets).
fn send_recv(
    caches: &mut LcoreCaches,
    tx: &mut dyn TxQueue,
    rx: &mut dyn RxQueue,
    pkts: Vec<Mbuf>,
) -> Vec<(Vec<u8>, u64, u16)> {
    let n = pkts.len();
    let mut b = Burst::new();
    b.extend(pkts);
    let mut got = Vec::new();
    let t = Instant::now();
    while got.len() < n {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "only {} of {n} arrived",
            got.len()
        );
        tx.tx_burst(caches, &mut b);
        let mut r = Burst::new();
        rx.rx_burst(caches, &mut r, 32);
        for m in r.drain(..) {
            got.push((m.to_vec(), m.ol_flags(), m.tso_segsz()));
        }
    }
    got
}

/// A vhost port and a virtio-user port connected, each with its own offload configuration.
struct Pair {
    vhost: Box<dyn Port>,
    vu: Box<dyn Port>,
    pool: Mempool,
    caches: LcoreCaches,
    dir: std::path::PathBuf,
}

impl Pair {
    fn new(
        tag: &str,
        vu_extra: &str,
        vhost_ol: (RxOffloads, TxOffloads),
        vu_ol: (RxOffloads, TxOffloads),
    ) -> Pair {
        let _ = env_logger::builder().is_test(true).try_init();
        let dir = temp_dir(&format!("ol-{tag}"));
        let sock = dir.join("sock");
        let pool = support::pool(tag);
        let mut conf = PortConf::new(0, pool.clone());
        (conf.rx_offloads, conf.tx_offloads) = vhost_ol;
        let mut vhost =
            ferrovia_pmd::open(&format!("net_vhost0,iface={}", sock.display()), &conf).unwrap();
        conf.port_id = 1;
        (conf.rx_offloads, conf.tx_offloads) = vu_ol;
        let mut vu = ferrovia_pmd::open(
            &format!("net_virtio_user0,path={}{vu_extra}", sock.display()),
            &conf,
        )
        .unwrap();
        vhost.start().unwrap();
        vu.start().unwrap();
        wait_up(&*vu);
        wait_up(&*vhost);
        Pair {
            vhost,
            vu,
            pool,
            caches: LcoreCaches::new(),
            dir,
        }
    }

    /// virtio-user → vhost.
    fn up(&mut self, pkts: Vec<Mbuf>) -> Vec<(Vec<u8>, u64, u16)> {
        let mut tx = self.vu.tx_queue(0).unwrap();
        let mut rx = self.vhost.rx_queue(0).unwrap();
        send_recv(&mut self.caches, &mut *tx, &mut *rx, pkts)
    }

    /// vhost → virtio-user.
    fn down(&mut self, pkts: Vec<Mbuf>) -> Vec<(Vec<u8>, u64, u16)> {
        let mut tx = self.vhost.tx_queue(0).unwrap();
        let mut rx = self.vu.rx_queue(0).unwrap();
        send_recv(&mut self.caches, &mut *tx, &mut *rx, pkts)
    }

    fn negotiated(&self) -> u64 {
        self.vu.info().virtio_features.unwrap().bits()
    }

    fn errors(&self) -> u64 {
        let (v, h) = (self.vu.stats(), self.vhost.stats());
        v.ierrors() + v.oerrors() + h.ierrors() + h.oerrors()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const CKSUM_RX: RxOffloads = RxOffloads::TCP_CKSUM.union(RxOffloads::UDP_CKSUM);
const CKSUM_TX: TxOffloads = TxOffloads::IPV4_CKSUM
    .union(TxOffloads::TCP_CKSUM)
    .union(TxOffloads::UDP_CKSUM);
const NONE: (RxOffloads, TxOffloads) = (RxOffloads::empty(), TxOffloads::empty());
/// CSUM, GUEST_CSUM, GUEST_TSO4/6, HOST_TSO4/6.
const OFFLOAD_BITS: u64 = (1 << 0) | (1 << 1) | (1 << 7) | (1 << 8) | (1 << 11) | (1 << 12);

fn l4_flags(tcp: bool) -> u64 {
    OL_TX_IPV4
        | OL_TX_IP_CKSUM
        | if tcp {
            OL_TX_TCP_CKSUM
        } else {
            OL_TX_UDP_CKSUM
        }
}

/// Partial checksums cross in both directions: the receiving application that enabled Rx
/// checksum offload gets `L4_CKSUM_NONE` and the pseudo-header checksum untouched (the IPv4
/// header checksum is made in software by the sender: the header has no field for it).
fn checksum_offload_both_ways(tag: &str, vu_extra: &str) {
    let ol = (CKSUM_RX, CKSUM_TX);
    let mut p = Pair::new(tag, vu_extra, ol, ol);
    assert_eq!(
        p.negotiated() & 0b11,
        0b11,
        "CSUM and GUEST_CSUM negotiated"
    );
    for tcp in [true, false] {
        let frames: Vec<Vec<u8>> = (0..8)
            .map(|i| partial_frame(tcp, 50 + i * 150, i as u8, false))
            .collect();
        let l4 = if tcp { 20 } else { 8 };
        for dir in 0..2 {
            let pkts = frames
                .iter()
                .map(|f| make(&p.pool, f, l4_flags(tcp), l4, 0))
                .collect();
            let got = if dir == 0 { p.up(pkts) } else { p.down(pkts) };
            for (f, (g, fl, _)) in frames.iter().zip(&got) {
                // The IPv4 checksum was made by the sender; the L4 field is still partial.
                let mut want = f.clone();
                let c = cksum::ipv4_hdr_cksum(&want[14..34]);
                want[24..26].copy_from_slice(&c.to_be_bytes());
                assert_eq!(g, &want, "dir {dir} tcp {tcp}: bytes");
                assert_eq!(fl & OL_RX_L4_CKSUM_MASK, OL_RX_L4_CKSUM_NONE, "dir {dir}");
            }
        }
    }
    assert_eq!(p.errors(), 0);
}

#[test]
fn checksum_offload_both_ways_split() {
    checksum_offload_both_ways("cs", "");
}

#[test]
fn checksum_offload_both_ways_packed() {
    checksum_offload_both_ways("cp", ",packed_vq=1");
}

#[test]
fn checksum_offload_both_ways_split_no_mrg_no_in_order() {
    checksum_offload_both_ways("cn", ",mrg_rxbuf=0,in_order=0");
}

/// A receiver that negotiated partial checksums (for LRO) but did not enable Rx checksum
/// offload gets them completed in software: correct checksums, `L4_CKSUM_GOOD`.
fn software_completion(tag: &str, vu_extra: &str) {
    let ol = (RxOffloads::TCP_LRO, CKSUM_TX);
    let mut p = Pair::new(tag, vu_extra, ol, ol);
    for tcp in [true, false] {
        let frames: Vec<Vec<u8>> = (0..6)
            .map(|i| partial_frame(tcp, 1 + i * 333, i as u8, false))
            .collect();
        let l4 = if tcp { 20 } else { 8 };
        for dir in 0..2 {
            let pkts = frames
                .iter()
                .map(|f| make(&p.pool, f, l4_flags(tcp), l4, 0))
                .collect();
            let got = if dir == 0 { p.up(pkts) } else { p.down(pkts) };
            for (f, (g, fl, _)) in frames.iter().zip(&got) {
                assert_eq!(g, &completed(f), "dir {dir} tcp {tcp}: checksums completed");
                let l = cksum::parse(g).unwrap();
                assert!(cksum::l4_cksum_ok(g, &l) && cksum::ip_cksum_ok(g, &l));
                assert_eq!(fl & OL_RX_L4_CKSUM_MASK, OL_RX_L4_CKSUM_GOOD);
            }
        }
    }
    assert_eq!(p.errors(), 0);
}

#[test]
fn software_completion_split() {
    software_completion("ss", "");
}

#[test]
fn software_completion_packed() {
    software_completion("sp", ",packed_vq=1,in_order=0");
}

/// A sender with Tx checksum offload whose peer did not offer partial checksums computes
/// them itself: the packets arrive complete and the features stay off.
#[test]
fn peer_without_offloads_gets_software_checksums() {
    let mut p = Pair::new("sw", "", NONE, (RxOffloads::empty(), CKSUM_TX));
    assert_eq!(p.negotiated() & OFFLOAD_BITS, 0);
    let frames: Vec<Vec<u8>> = (0..4)
        .map(|i| partial_frame(i % 2 == 0, 100 + i * 200, i as u8, false))
        .collect();
    let pkts = frames
        .iter()
        .map(|f| {
            make(
                &p.pool,
                f,
                l4_flags(f[23] == IPPROTO_TCP),
                if f[23] == IPPROTO_TCP { 20 } else { 8 },
                0,
            )
        })
        .collect();
    let got = p.up(pkts);
    for (f, (g, fl, _)) in frames.iter().zip(&got) {
        assert_eq!(g, &completed(f));
        assert_eq!(*fl, 0, "no Rx offload flags without Rx offloads");
    }
    assert_eq!(p.errors(), 0);
}

/// Without any offload configured nothing is negotiated (the default data path).
#[test]
fn no_offloads_negotiate_nothing() {
    let p = Pair::new("none", "", NONE, NONE);
    assert_eq!(p.negotiated() & OFFLOAD_BITS, 0);
    let offered = p.vhost.info().virtio_offered.unwrap().bits();
    assert_eq!(offered & OFFLOAD_BITS, 0);
}

/// TSO one way, LRO the other: a 20 000-byte TCP packet crosses as one GSO packet and
/// arrives flagged LRO with its segment size; a peer that did not negotiate TSO gets
/// nothing (dropped, counted `offload_unsupported`).
fn tso_lro(tag: &str, vu_extra: &str) {
    let ol = (
        RxOffloads::TCP_LRO | CKSUM_RX,
        CKSUM_TX | TxOffloads::TCP_TSO,
    );
    let mut p = Pair::new(tag, vu_extra, ol, ol);
    let f = partial_frame(true, 20_000, 9, true);
    for dir in 0..2 {
        let pkts = vec![make(
            &p.pool,
            &f,
            OL_TX_IPV4 | OL_TX_IP_CKSUM | OL_TX_TCP_CKSUM | OL_TX_TCP_SEG,
            20,
            1448,
        )];
        let got = if dir == 0 { p.up(pkts) } else { p.down(pkts) };
        let (g, fl, segsz) = &got[0];
        assert_eq!(g.len(), f.len());
        assert_eq!(&g[34..], &f[34..], "dir {dir}: TCP header and payload");
        assert_ne!(fl & OL_RX_LRO, 0, "dir {dir}: LRO flag");
        assert_eq!(*segsz, 1448);
    }
    assert_eq!(p.errors(), 0);
}

#[test]
fn tso_lro_split() {
    tso_lro("ts", "");
}

#[test]
fn tso_lro_packed() {
    tso_lro("tp", ",packed_vq=1");
}

#[test]
fn tso_without_peer_support_is_dropped_and_counted() {
    let mut p = Pair::new("tn", "", NONE, (RxOffloads::empty(), TxOffloads::TCP_TSO));
    let f = partial_frame(true, 3000, 1, true);
    let before = snapshot(&*p.vu);
    let mut tx = p.vu.tx_queue(0).unwrap();
    let mut b = Burst::new();
    b.push(make(
        &p.pool,
        &f,
        OL_TX_IPV4 | OL_TX_TCP_SEG | OL_TX_TCP_CKSUM,
        20,
        1000,
    ));
    assert_eq!(tx.tx_burst(&mut p.caches, &mut b), 0);
    assert!(b.is_empty(), "the refused packet is consumed");
    assert_moved(
        &*p.vu,
        &before,
        &[("tx_q0_offload_unsupported", 1)],
        "TSO refused",
    );
}

// ---- a hostile frontend's headers ----

const GPA: u64 = 0x1000_0000;
const MEM: usize = 1 << 20;
const QSZ: u16 = 256;
const BUF: usize = 0x40000;
/// VIRTIO_NET_F_CSUM and HOST_TSO4.
const F_CSUM: u64 = 1 << 0;
const F_HOST_TSO4: u64 = 1 << 11;

/// Header + frame written at `off`; returns (address, length).
fn guest_frame(mem: &GuestMem, off: usize, hdr: [u8; 10], frame: &[u8]) -> (u64, u32) {
    let mut b = hdr.to_vec();
    b.extend([0, 0]);
    b.extend_from_slice(frame);
    mem.write(0, BUF + off, &b);
    (mem.gpa(0, BUF + off), b.len() as u32)
}

fn hdr(flags: u8, gso: u8, hdr_len: u16, gso_size: u16, start: u16, off: u16) -> [u8; 10] {
    let mut h = [0u8; 10];
    h[0] = flags;
    h[1] = gso;
    h[2..4].copy_from_slice(&hdr_len.to_le_bytes());
    h[4..6].copy_from_slice(&gso_size.to_le_bytes());
    h[6..8].copy_from_slice(&start.to_le_bytes());
    h[8..10].copy_from_slice(&off.to_le_bytes());
    h
}

/// Malformed headers from a guest that negotiated CSUM and HOST_TSO4 are dropped and counted
/// (`rx_q0_bad_virtio_net_hdr`), never delivered; the buffer goes back to the guest; a valid
/// partial checksum in between is completed and delivered.
#[test]
fn malformed_headers_from_a_hostile_frontend_are_dropped_and_counted() {
    let _ = env_logger::builder().is_test(true).try_init();
    let dir = temp_dir("ol-evil");
    let sock = dir.join("evil.sock").display().to_string();
    let pool = support::pool("ol-evil");
    let mut conf = PortConf::new(0, pool.clone());
    conf.rx_offloads = RxOffloads::TCP_LRO;
    let mut port = ferrovia_pmd::open(&format!("net_vhost0,iface={sock}"), &conf).unwrap();
    port.start().unwrap();
    let mut rx = port.rx_queue(0).unwrap();
    let mut caches = LcoreCaches::new();
    let mut fe = EvilFrontend::connect(&sock);
    let offered = fe.handshake(
        feat::V1 | feat::PROTOCOL | F_CSUM | F_HOST_TSO4,
        feat::P_REPLY_ACK,
    );
    assert_eq!(offered & (F_CSUM | F_HOST_TSO4), F_CSUM | F_HOST_TSO4);
    let mem = GuestMem::new(GPA, &[MEM]);
    assert!(fe.set_mem_table(&mem).unwrap());
    let rxr = SplitLayout::new(&mem, 0, 0, QSZ);
    let mut txr = SplitLayout::new(&mem, 0, 0x10000, QSZ);
    fe.setup_vring(0, &rxr, true);
    fe.setup_vring(1, &txr, true);
    wait("link up", || port.link().up);
    let frame = partial_frame(true, 100, 3, false); // 154 bytes
    let n = frame.len() as u16;
    let cases: Vec<(&str, [u8; 10])> = vec![
        (
            "checksum field beyond the packet",
            hdr(1, 0, 0, 0, 34, n - 35),
        ),
        ("csum_start beyond the packet", hdr(1, 0, 0, 0, n, 0)),
        (
            "csum_start + csum_offset overflow",
            hdr(1, 0, 0, 0, 0xffff, 0xffff),
        ),
        ("gso_size 0 with TCPV4", hdr(1, 1, 54, 0, 34, 16)),
        ("unknown gso_type", hdr(1, 2, 54, 1000, 34, 16)),
        (
            "UDP fragmentation (not negotiated)",
            hdr(1, 3, 42, 1000, 34, 6),
        ),
        ("TCPV6 (not negotiated)", hdr(1, 4, 74, 1000, 34, 16)),
        ("hdr_len beyond the packet", hdr(1, 1, n + 1, 1000, 34, 16)),
        ("GSO without NEEDS_CSUM", hdr(0, 1, 54, 1000, 34, 16)),
    ];
    for (i, (name, h)) in cases.iter().enumerate() {
        let before = snapshot(&*port);
        let used0 = txr.used_idx();
        let (a, l) = guest_frame(&mem, i * 0x400, *h, &frame);
        txr.desc(i as u16, a, l, 0, 0);
        txr.push(i as u16);
        let mut b = Burst::new();
        for _ in 0..4 {
            rx.rx_burst(&mut caches, &mut b, 32);
        }
        assert_eq!(b.len(), 0, "{name}: no packet may come out");
        assert_moved(&*port, &before, &[("rx_q0_bad_virtio_net_hdr", 1)], name);
        assert_eq!(
            txr.used_idx(),
            used0.wrapping_add(1),
            "{name}: buffer returned"
        );
    }
    // A valid partial checksum: completed in software (Rx checksum offload is off).
    let before = snapshot(&*port);
    let (a, l) = guest_frame(&mem, 0x8000, hdr(1, 0, 0, 0, 34, 16), &frame);
    txr.desc(100, a, l, 0, 0);
    txr.push(100);
    let mut b = Burst::new();
    wait("valid packet", || {
        rx.rx_burst(&mut caches, &mut b, 32);
        !b.is_empty()
    });
    assert_eq!(b[0].to_vec(), {
        let mut w = completed(&frame);
        w[24..26].copy_from_slice(&frame[24..26]); // the IPv4 checksum is the guest's business
        w
    });
    assert_moved(
        &*port,
        &before,
        &[
            ("rx_good_packets", 1),
            ("rx_good_bytes", frame.len() as u64),
            ("rx_q0_packets", 1),
            ("rx_q0_bytes", frame.len() as u64),
        ],
        "valid",
    );
    drop(b);
    drop(rx);
    drop(port);
    let _ = std::fs::remove_dir_all(&dir);
}
