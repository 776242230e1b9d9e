//! `net_af_packet` on a veth pair and `net_tap` against the kernel's own stack, with frames
//! checked byte for byte in both directions.
//!
//! These tests need root (CAP_NET_ADMIN to make interfaces, CAP_NET_RAW for packet sockets)
//! and the `ip` tool; without them each prints `skipped: <why>` and passes. Interfaces get
//! names unique to the process (`fv<pid>a`, ...) and are deleted by a guard, even when a test
//! fails.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use ferrovia_ethdev::{Burst, ErrorCause, Port, PortConf, RxQueue};
use ferrovia_memory::{LcoreCaches, Mbuf, Mempool, MempoolConfig};

/// The EtherType of the test frames (IEEE local experimental), to tell them from the IPv6
/// chatter the kernel sends on a fresh interface.
const ETH_TEST: [u8; 2] = [0x88, 0xb5];

fn pool(name: &str) -> Mempool {
    Mempool::new(MempoolConfig {
        name: name.into(),
        count: 4096,
        ..Default::default()
    })
    .unwrap()
}

/// Why the tests cannot run here, if they cannot.
fn cannot_run() -> Option<String> {
    // SAFETY: geteuid has no memory effects.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (these tests make interfaces and open packet sockets)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("the `ip` tool (iproute2) is not installed".into()),
    }
}

macro_rules! need_root {
    () => {
        if let Some(why) = cannot_run() {
            println!("skipped: {why}");
            return;
        }
    };
}

fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if !o.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(())
}

/// Turns IPv6 off on an interface (less chatter on it); best effort.
fn quiet(ifname: &str) {
    let _ = std::fs::write(
        format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"),
        "1",
    );
}

fn exists(ifname: &str) -> bool {
    std::path::Path::new(&format!("/sys/class/net/{ifname}")).exists()
}

fn hwaddr(ifname: &str) -> [u8; 6] {
    let s = std::fs::read_to_string(format!("/sys/class/net/{ifname}/address")).unwrap();
    let v: Vec<u8> = s
        .trim()
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

/// Deletes an interface when dropped.
struct IfGuard(String);

impl Drop for IfGuard {
    fn drop(&mut self) {
        if exists(&self.0) {
            let _ = ip(&["link", "del", &self.0]);
        }
    }
}

/// A veth pair `<a>`/`<b>`, both up, deleted when dropped. None (with the reason printed as
/// a skip) when the kernel has no veth.
fn veth(tag: &str) -> Option<(IfGuard, String, String)> {
    let a = format!("fv{}{tag}a", std::process::id());
    let b = format!("fv{}{tag}b", std::process::id());
    if let Err(e) = ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]) {
        println!("skipped: cannot create a veth pair ({e})");
        return None;
    }
    let g = IfGuard(a.clone());
    for i in [&a, &b] {
        quiet(i);
        ip(&["link", "set", i, "up"]).unwrap();
    }
    Some((g, a, b))
}

/// A raw AF_PACKET socket of the test itself, bound to one interface.
struct RawSock(OwnedFd);

impl RawSock {
    fn open(ifname: &str) -> RawSock {
        // SAFETY: plain socket call, checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: fresh fd.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let one: i32 = 1;
        // SAFETY: valid option value of the size given.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_IGNORE_OUTGOING,
                (&one as *const i32).cast(),
                4,
            )
        };
        let name = std::ffi::CString::new(ifname).unwrap();
        // SAFETY: valid C string.
        let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert!(idx > 0, "no interface {ifname}");
        // SAFETY: all-zero sockaddr_ll is valid.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sa.sll_ifindex = idx as i32;
        // SAFETY: valid sockaddr of the size given.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        RawSock(fd)
    }

    fn send(&self, f: &[u8]) {
        loop {
            // SAFETY: f is a live slice.
            let r = unsafe { libc::send(self.0.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
            if r == f.len() as isize {
                return;
            }
            let e = std::io::Error::last_os_error();
            assert!(
                matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOBUFS)),
                "send {}: {e}",
                f.len()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The next frame of EtherType 0x88b5 received within `t`.
    fn recv_test(&self, t: Duration) -> Option<Vec<u8>> {
        let end = Instant::now() + t;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < end {
            // SAFETY: buf is writable for its length.
            let r =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if r < 0 {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            let f = &buf[..r as usize];
            if f.len() >= 14 && f[12..14] == ETH_TEST {
                return Some(f.to_vec());
            }
        }
        None
    }
}

/// A test frame: dst, src, EtherType 0x88b5, then a pattern that depends on `seq`.
fn frame(dst: [u8; 6], src: [u8; 6], seq: usize, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETH_TEST);
    f.extend((14..len).map(|i| (i * 31 + seq * 7 + 1) as u8));
    f
}

/// UDP destination port of the test's IPv4 frames.
const UDP_TEST_PORT: u16 = 47_999;

/// An IPv4/UDP frame from 192.0.2.1:`sport` to 192.0.2.2:47999 (a flow of its own per
/// source port), padded with a pattern to `len` bytes.
fn udp_frame(dst: [u8; 6], src: [u8; 6], sport: u16, len: usize) -> Vec<u8> {
    let ip_len = (len - 14) as u16;
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
    f.extend_from_slice(&ip_len.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&UDP_TEST_PORT.to_be_bytes());
    f.extend_from_slice(&(ip_len - 20).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend((f.len()..len).map(|i| (i as u16 ^ sport) as u8));
    f
}

fn is_test_udp(v: &[u8]) -> bool {
    v.len() >= 38 && v[12..14] == [0x08, 0x00] && v[36..38] == UDP_TEST_PORT.to_be_bytes()
}

/// An mbuf (a chain of `segs` segments when `segs` > 1) holding `data`.
fn mbuf(pool: &Mempool, data: &[u8], segs: usize) -> Mbuf {
    let per = data.len().div_ceil(segs);
    let mut chunks = data.chunks(per);
    let first = chunks.next().unwrap();
    let mut head = pool.alloc().unwrap();
    head.append(first.len()).unwrap().copy_from_slice(first);
    for c in chunks {
        let mut m = pool.alloc().unwrap();
        m.append(c.len()).unwrap().copy_from_slice(c);
        head.chain(m);
    }
    head
}

/// Receives until `want` test frames (EtherType 0x88b5) arrived on any of `rxs`, or 5 s.
fn rx_test_frames(
    caches: &mut LcoreCaches,
    rxs: &mut [&mut Box<dyn RxQueue>],
    want: usize,
) -> Vec<Vec<u8>> {
    rx_frames(caches, rxs, want, |v| {
        v.len() >= 14 && v[12..14] == ETH_TEST
    })
}

/// Receives until `want` frames that `keep` accepts arrived on any of `rxs`, or 5 s.
fn rx_frames(
    caches: &mut LcoreCaches,
    rxs: &mut [&mut Box<dyn RxQueue>],
    want: usize,
    keep: impl Fn(&[u8]) -> bool,
) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    let mut b = Burst::new();
    while got.len() < want && Instant::now() < end {
        for rx in rxs.iter_mut() {
            rx.rx_burst(caches, &mut b, 32);
            for m in b.drain(..) {
                let v = m.to_vec();
                caches.free(m);
                if keep(&v) {
                    got.push(v);
                }
            }
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    got
}

fn wait_link(p: &dyn Port, up: bool) {
    let end = Instant::now() + Duration::from_secs(5);
    while p.link().up != up {
        assert!(
            Instant::now() < end,
            "link never went {}",
            if up { "up" } else { "down" }
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn af_packet_moves_frames_both_ways_byte_for_byte() {
    need_root!();
    let Some((_g, a, b)) = veth("p") else { return };
    let pool = pool("afp");
    let mut p = ferrovia_pmd::open(
        &format!("net_af_packet0,iface={a}"),
        &PortConf::new(0, pool.clone()),
    )
    .unwrap();
    let info = p.info();
    assert_eq!(info.driver, "net_af_packet");
    assert_eq!(
        info.mac.0,
        hwaddr(&a),
        "the port takes the interface's address"
    );
    assert_eq!((info.nb_rx_queues, info.nb_rxd), (1, 512));
    p.start().unwrap();
    wait_link(&*p, true);
    let mut rx = p.rx_queue(0).unwrap();
    let mut tx = p.tx_queue(0).unwrap();
    let peer = RawSock::open(&b);
    let mut caches = LcoreCaches::new();
    let (ours, theirs) = (hwaddr(&a), hwaddr(&b));
    let sizes = [60, 64, 65, 128, 511, 1000, 1513, 1514];

    // Peer -> our Rx, more frames than fit in one burst, each checked in order.
    let mut sent = Vec::new();
    for round in 0..3 {
        for (i, &n) in sizes.iter().enumerate() {
            let f = frame(ours, theirs, round * 100 + i, n);
            peer.send(&f);
            sent.push(f);
        }
    }
    let got = rx_test_frames(&mut caches, &mut [&mut rx], sent.len());
    assert_eq!(got.len(), sent.len(), "frames lost on Rx");
    for (g, s) in got.iter().zip(&sent) {
        assert_eq!(g, s, "Rx frame of {} bytes differs", s.len());
    }

    // Our Tx -> peer, single mbufs and chains; one oversize frame in the middle is dropped
    // and counted while the rest of the burst goes.
    let mut b_ = Burst::new();
    let mut want = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let f = frame(theirs, ours, 500 + i, n);
        b_.push(mbuf(&pool, &f, 1 + i % 3));
        want.push(f);
        if i == 3 {
            b_.push(mbuf(&pool, &frame(theirs, ours, 999, 1515), 1));
            b_.push(mbuf(&pool, &frame(theirs, ours, 998, 9000), 5));
        }
    }
    let total = b_.len();
    let mut n = 0;
    let end = Instant::now() + Duration::from_secs(5);
    while !b_.is_empty() {
        assert!(Instant::now() < end, "Tx never took the burst");
        n += tx.tx_burst(&mut caches, &mut b_);
    }
    assert_eq!(n, total - 2);
    for w in &want {
        let g = peer
            .recv_test(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("frame of {} bytes never reached the peer", w.len()));
        assert_eq!(&g, w, "Tx frame of {} bytes differs", w.len());
    }
    assert!(
        peer.recv_test(Duration::from_millis(100)).is_none(),
        "an oversize frame went out"
    );

    let st = p.stats();
    assert_eq!(st.ipackets(), sent.len() as u64);
    assert_eq!(
        st.ibytes(),
        sent.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    assert_eq!(st.opackets(), want.len() as u64);
    assert_eq!(
        st.obytes(),
        want.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    assert_eq!(st.tx_queues[0].error(ErrorCause::TooLong), 2);
    assert_eq!(st.oerrors(), 2);
    assert_eq!(st.ierrors(), 0);

    // Link follows the interface: the peer going down takes the carrier away.
    ip(&["link", "set", &b, "down"]).unwrap();
    wait_link(&*p, false);
    ip(&["link", "set", &b, "up"]).unwrap();
    wait_link(&*p, true);
    p.stop().unwrap();
    assert!(!p.link().up);
    drop((rx, tx));
    caches.clear();
    drop(p);
    assert_eq!(pool.available(), pool.count(), "mbufs leaked");
}

#[test]
fn af_packet_drops_and_counts_rx_frames_over_max_rx_pktlen() {
    need_root!();
    let Some((_g, a, b)) = veth("m") else { return };
    let pool = pool("afpmax");
    let mut conf = PortConf::new(1, pool.clone());
    conf.max_rx_pktlen = 1000;
    let mut p =
        ferrovia_pmd::open(&format!("eth_af_packet1,iface={a},framecnt=64"), &conf).unwrap();
    p.start().unwrap();
    let mut rx = p.rx_queue(0).unwrap();
    let peer = RawSock::open(&b);
    let (ours, theirs) = (hwaddr(&a), hwaddr(&b));
    let mut caches = LcoreCaches::new();
    let big = frame(ours, theirs, 1, 1001);
    let small = frame(ours, theirs, 2, 1000);
    peer.send(&big);
    peer.send(&small);
    let got = rx_test_frames(&mut caches, &mut [&mut rx], 1);
    assert_eq!(got, vec![small]);
    let st = p.stats();
    assert_eq!(st.rx_queues[0].error(ErrorCause::TooLong), 1);
    assert_eq!(st.ierrors(), 1);
    assert_eq!(st.ipackets(), 1);
}

#[test]
fn af_packet_two_queue_pairs_share_the_traffic() {
    need_root!();
    let Some((_g, a, b)) = veth("q") else { return };
    let pool = pool("afpq");
    let mut p = ferrovia_pmd::open(
        &format!("net_af_packet2,iface={a},qpairs=2,qdisc_bypass=1"),
        &PortConf::new(2, pool.clone()),
    )
    .unwrap();
    assert_eq!(p.info().nb_rx_queues, 2);
    p.start().unwrap();
    let mut rx0 = p.rx_queue(0).unwrap();
    let mut rx1 = p.rx_queue(1).unwrap();
    let mut tx0 = p.tx_queue(0).unwrap();
    let mut tx1 = p.tx_queue(1).unwrap();
    let peer = RawSock::open(&b);
    let (ours, theirs) = (hwaddr(&a), hwaddr(&b));
    let mut caches = LcoreCaches::new();

    // 64 UDP flows (the kernel's flow hash covers addresses and ports, not MACs): every
    // frame arrives once, on one queue or the other.
    let mut sent = Vec::new();
    for i in 0..64usize {
        let f = udp_frame(ours, theirs, 10_000 + i as u16, 60 + i);
        peer.send(&f);
        sent.push(f);
    }
    let mut got = rx_frames(
        &mut caches,
        &mut [&mut rx0, &mut rx1],
        sent.len(),
        is_test_udp,
    );
    got.sort();
    sent.sort();
    assert_eq!(got, sent);
    let st = p.stats();
    let (q0, q1) = (st.rx_queues[0].packets, st.rx_queues[1].packets);
    assert_eq!(q0 + q1, 64);
    assert!(
        q0 > 0 && q1 > 0,
        "fanout put every flow on one queue: {q0}/{q1}"
    );

    // Both Tx queues send.
    for (q, tx) in [&mut tx0, &mut tx1].into_iter().enumerate() {
        let f = frame(theirs, ours, 700 + q, 200);
        let mut bu = Burst::new();
        bu.push(mbuf(&pool, &f, 1));
        assert_eq!(tx.tx_burst(&mut caches, &mut bu), 1);
        assert_eq!(peer.recv_test(Duration::from_secs(5)).as_ref(), Some(&f));
    }
    // The queue count a configuration asks for cannot exceed qpairs.
    let mut conf = PortConf::new(3, pool.clone());
    conf.nb_rxq = 3;
    let e = ferrovia_pmd::open(&format!("net_af_packet3,iface={a},qpairs=2"), &conf)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("3 queues asked for") && e.contains("qpairs=3"),
        "{e}"
    );
}

#[test]
fn af_packet_errors_name_the_interface_and_the_fix() {
    need_root!();
    let pool = pool("afperr");
    let e = ferrovia_pmd::open(
        "net_af_packet0,iface=fvnosuch9",
        &PortConf::new(0, pool.clone()),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.starts_with("net_af_packet0: interface fvnosuch9 does not exist (create it first, e.g. `ip link add fvnosuch9 type veth"),
        "{e}"
    );
}

/// The tap's IPv4 address and a neighbour's, in a /24 unique enough to this process.
fn tap_subnet() -> ([u8; 4], [u8; 4]) {
    let pid = std::process::id();
    let (x, y) = (200 + (pid % 50) as u8, ((pid / 50) % 250) as u8);
    ([10, x, y, 1], [10, x, y, 2])
}

#[test]
fn tap_answers_arp_and_delivers_kernel_frames() {
    need_root!();
    if !std::path::Path::new("/dev/net/tun").exists() {
        println!("skipped: /dev/net/tun is missing (no tun module)");
        return;
    }
    let ifname = format!("fvt{}", std::process::id());
    let _g = IfGuard(ifname.clone());
    let pool = pool("tap");
    let mut p = ferrovia_pmd::open(
        &format!("net_tap0,iface={ifname},mac=02:00:00:00:aa:01"),
        &PortConf::new(0, pool.clone()),
    )
    .unwrap();
    assert!(exists(&ifname));
    quiet(&ifname);
    p.start().unwrap();
    wait_link(&*p, true);
    let (kip, our_ip) = tap_subnet();
    let kip_s = format!("{}.{}.{}.{}/24", kip[0], kip[1], kip[2], kip[3]);
    ip(&["addr", "add", &kip_s, "dev", &ifname]).unwrap();
    let ours = p.info().mac.0;
    let kmac = hwaddr(&ifname);
    let mut rx = p.rx_queue(0).unwrap();
    let mut tx = p.tx_queue(0).unwrap();
    let mut caches = LcoreCaches::new();

    // ARP request for the kernel's address, from ours.
    let mut arp = Vec::new();
    arp.extend_from_slice(&[0xff; 6]);
    arp.extend_from_slice(&ours);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&ours);
    arp.extend_from_slice(&our_ip);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&kip);
    arp.resize(60, 0);
    let mut reply = None;
    let end = Instant::now() + Duration::from_secs(10);
    let mut b = Burst::new();
    let mut last_ask = Instant::now() - Duration::from_secs(1);
    while reply.is_none() {
        assert!(Instant::now() < end, "no ARP reply from the kernel");
        if last_ask.elapsed() > Duration::from_millis(500) {
            let mut bu = Burst::new();
            bu.push(mbuf(&pool, &arp, 2));
            assert_eq!(tx.tx_burst(&mut caches, &mut bu), 1);
            last_ask = Instant::now();
        }
        rx.rx_burst(&mut caches, &mut b, 32);
        for m in b.drain(..) {
            let v = m.to_vec();
            caches.free(m);
            if v.len() >= 42 && v[12..14] == [0x08, 0x06] && v[20..22] == [0, 2] {
                reply = Some(v);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let r = reply.unwrap();
    assert_eq!(&r[0..6], &ours, "reply to our MAC");
    assert_eq!(&r[6..12], &kmac, "from the tap's MAC");
    assert_eq!(&r[14..20], &[0, 1, 0x08, 0, 6, 4]);
    assert_eq!(&r[22..28], &kmac, "sender hardware address");
    assert_eq!(&r[28..32], &kip, "sender IP: the kernel's");
    assert_eq!(&r[32..38], &ours, "target hardware address: ours");
    assert_eq!(&r[38..42], &our_ip, "target IP: ours");

    // A frame the kernel sends out of the tap (from a packet socket on it) arrives whole.
    let sock = RawSock::open(&ifname);
    let sizes = [60, 333, 1514];
    let frames: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| frame(ours, kmac, 40 + i, n))
        .collect();
    for f in &frames {
        sock.send(f);
    }
    let got = rx_test_frames(&mut caches, &mut [&mut rx], frames.len());
    assert_eq!(got, frames);
    // And our frames reach the packet socket on the tap.
    let f = frame(kmac, ours, 77, 1514);
    let mut bu = Burst::new();
    bu.push(mbuf(&pool, &f, 3));
    assert_eq!(tx.tx_burst(&mut caches, &mut bu), 1);
    assert_eq!(sock.recv_test(Duration::from_secs(5)).as_ref(), Some(&f));
    // Too short: dropped and counted.
    let mut bu = Burst::new();
    bu.push(mbuf(&pool, &[1, 2, 3], 1));
    assert_eq!(tx.tx_burst(&mut caches, &mut bu), 0);
    assert!(bu.is_empty());
    assert_eq!(p.stats().tx_queues[0].error(ErrorCause::DescLen), 1);

    p.stop().unwrap();
    assert!(!p.link().up);
    drop((rx, tx, sock));
    drop(p);
    // Not persistent: closing the port removed the interface.
    let end = Instant::now() + Duration::from_secs(5);
    while exists(&ifname) {
        assert!(Instant::now() < end, "{ifname} outlived its port");
        std::thread::sleep(Duration::from_millis(10));
    }
    caches.clear();
    assert_eq!(pool.available(), pool.count(), "mbufs leaked");
}

#[test]
fn tap_persist_keeps_the_interface_and_queues_are_multi() {
    need_root!();
    if !std::path::Path::new("/dev/net/tun").exists() {
        println!("skipped: /dev/net/tun is missing (no tun module)");
        return;
    }
    let ifname = format!("fvp{}", std::process::id());
    let _g = IfGuard(ifname.clone());
    let pool = pool("tapp");
    let mut conf = PortConf::new(4, pool.clone());
    conf.nb_rxq = 2;
    conf.nb_txq = 2;
    let mut p = ferrovia_pmd::open(&format!("eth_tap4,iface={ifname},persist=1"), &conf).unwrap();
    assert_eq!(p.info().nb_rx_queues, 2);
    p.start().unwrap();
    let flags = std::fs::read_to_string(format!("/sys/class/net/{ifname}/tun_flags")).unwrap();
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
    assert_ne!(
        flags & libc::IFF_MULTI_QUEUE as u32,
        0,
        "tun_flags {flags:#x}"
    );
    let _q = (p.rx_queue(1).unwrap(), p.tx_queue(1).unwrap());
    // The same name cannot be opened as a single-queue tap meanwhile.
    let e = ferrovia_pmd::open(
        &format!("net_tap5,iface={ifname}"),
        &PortConf::new(5, pool.clone()),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.starts_with(&format!("net_tap5: TUNSETIFF for tap {ifname} failed")),
        "{e}"
    );
    drop(_q);
    drop(p);
    std::thread::sleep(Duration::from_millis(50));
    assert!(exists(&ifname), "persist=1 should keep {ifname}");
}

/// A VLAN-tagged frame keeps its tag through net_af_packet in both directions, even when the
/// kernel takes the tag off into metadata (VLAN offload on veth): a switch's trunk port over
/// af_packet must see the VLAN.
#[test]
fn af_packet_keeps_vlan_tags() {
    need_root!();
    let Some((_g, a, b)) = veth("v") else { return };
    let pool = pool("afpvlan");
    let mut p = ferrovia_pmd::open(
        &format!("net_af_packet5,iface={a}"),
        &PortConf::new(5, pool.clone()),
    )
    .unwrap();
    p.start().unwrap();
    let mut rx = p.rx_queue(0).unwrap();
    let mut tx = p.tx_queue(0).unwrap();
    let peer = RawSock::open(&b);
    let (ours, theirs) = (hwaddr(&a), hwaddr(&b));
    let mut caches = LcoreCaches::new();
    let tagged = |seq: usize, vid: u16, dst: [u8; 6], src: [u8; 6]| {
        let f = frame(dst, src, seq, 100);
        let mut t = f[..12].to_vec();
        t.extend(0x8100u16.to_be_bytes());
        t.extend(((3u16 << 13) | vid).to_be_bytes());
        t.extend(&f[12..]);
        t
    };
    // Peer → us: the tag arrives in the frame.
    let f = tagged(1, 10, ours, theirs);
    peer.send(&f);
    let got = rx_frames(&mut caches, &mut [&mut rx], 1, |v| {
        v.len() >= 18 && v[16..18] == ETH_TEST
    });
    assert_eq!(
        got,
        vec![f],
        "the 802.1Q tag (priority 3, VLAN 10) survives receive"
    );
    // Us → peer: a tagged frame we send is tagged on the wire.
    let g = tagged(2, 20, theirs, ours);
    let mut b = Burst::new();
    b.push(mbuf(&pool, &g, 1));
    while !b.is_empty() {
        tx.tx_burst(&mut caches, &mut b);
    }
    let end = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 4096];
    let mut seen = None;
    while Instant::now() < end && seen.is_none() {
        // SAFETY: buf is writable for its length; msg structures point into live locals.
        let r = unsafe { libc::recv(peer.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if r > 0 {
            let v = &buf[..r as usize];
            if v.len() >= 18 && v[16..18] == ETH_TEST || v.len() >= 14 && v[12..14] == ETH_TEST {
                seen = Some(v.to_vec());
            }
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    // A plain recv on the peer gets the frame without its tag when the kernel offloads it;
    // what matters is that it was sent tagged: check the length and the payload.
    let v = seen.expect("the tagged frame reached the peer");
    assert!(
        v == g || v == [&g[..12], &g[16..]].concat(),
        "peer got {v:02x?}"
    );
}

/// With checksum offloads on, the tap carries virtio-net headers: a UDP datagram the kernel
/// sends with a partial checksum arrives complete (LRO on, Rx checksum offload off: completed
/// in software, `L4_CKSUM_GOOD`); one we send with a partial checksum (`OL_TX_UDP_CKSUM`, the
/// pseudo-header checksum in the field) is completed by the kernel and reaches a socket.
#[test]
fn tap_offloads_through_the_vnet_header() {
    use ferrovia_ethdev::{RxOffloads, TxOffloads};
    use ferrovia_memory::cksum;
    use ferrovia_memory::mbuf::{
        OL_RX_L4_CKSUM_GOOD, OL_RX_L4_CKSUM_MASK, OL_TX_IP_CKSUM, OL_TX_IPV4, OL_TX_UDP_CKSUM,
    };
    use std::net::{Ipv4Addr, UdpSocket};
    need_root!();
    if !std::path::Path::new("/dev/net/tun").exists() {
        println!("skipped: /dev/net/tun is missing (no tun module)");
        return;
    }
    let ifname = format!("fvo{}", std::process::id());
    let _g = IfGuard(ifname.clone());
    let pool = pool("tapo");
    let mut conf = PortConf::new(0, pool.clone());
    conf.rx_offloads = RxOffloads::TCP_LRO;
    conf.tx_offloads = TxOffloads::UDP_CKSUM | TxOffloads::IPV4_CKSUM;
    let mut p = ferrovia_pmd::open(
        &format!("net_tap0,iface={ifname},mac=02:00:00:00:ab:01"),
        &conf,
    )
    .unwrap();
    quiet(&ifname);
    p.start().unwrap();
    wait_link(&*p, true);
    let (kip, our_ip) = tap_subnet();
    let s4 = |a: [u8; 4]| format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]);
    ip(&["addr", "add", &format!("{}/24", s4(kip)), "dev", &ifname]).unwrap();
    let ours = p.info().mac.0;
    let mac_s = ours
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    ip(&[
        "neigh",
        "replace",
        &s4(our_ip),
        "lladdr",
        &mac_s,
        "dev",
        &ifname,
    ])
    .unwrap();
    let kmac = hwaddr(&ifname);
    let mut rx = p.rx_queue(0).unwrap();
    let mut tx = p.tx_queue(0).unwrap();
    let mut caches = LcoreCaches::new();

    // Kernel → us.
    let sock = UdpSocket::bind((Ipv4Addr::from(kip), 0)).unwrap();
    let payload: Vec<u8> = (0..700u32).map(|i| (i * 7) as u8).collect();
    let end = Instant::now() + Duration::from_secs(10);
    let mut got = None;
    let mut b = Burst::new();
    while got.is_none() {
        assert!(Instant::now() < end, "no datagram from the kernel");
        sock.send_to(&payload, (Ipv4Addr::from(our_ip), 5555))
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        rx.rx_burst(&mut caches, &mut b, 32);
        for m in b.drain(..) {
            let v = m.to_vec();
            if v.len() > 42 && v[12..14] == [8, 0] && v[23] == 17 && v[36..38] == [0x15, 0xb3] {
                got = Some((v, m.ol_flags()));
            }
            caches.free(m);
        }
    }
    let (v, flags) = got.unwrap();
    let l = cksum::parse(&v).unwrap();
    assert!(cksum::l4_cksum_ok(&v, &l), "UDP checksum completed");
    assert_eq!(&v[42..], &payload[..]);
    assert_eq!(
        flags & OL_RX_L4_CKSUM_MASK,
        OL_RX_L4_CKSUM_GOOD,
        "the kernel sent a partial checksum, completed here"
    );

    // Us → kernel: a partial checksum the kernel completes.
    let rs = UdpSocket::bind((Ipv4Addr::from(kip), 0)).unwrap();
    rs.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let dport = rs.local_addr().unwrap().port();
    let body = b"offloaded through the tap".to_vec();
    let mut f = Vec::new();
    f.extend_from_slice(&kmac);
    f.extend_from_slice(&ours);
    f.extend_from_slice(&[8, 0, 0x45, 0]);
    f.extend_from_slice(&((28 + body.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&our_ip);
    f.extend_from_slice(&kip);
    f.extend_from_slice(&4444u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
    let ph = cksum::phdr_cksum(&f[14..34], cksum::L3::Ipv4, 17, 8 + body.len()).unwrap();
    f.extend_from_slice(&ph.to_be_bytes());
    f.extend_from_slice(&body);
    let mut m = mbuf(&pool, &f, 1);
    m.set_ol_flags(OL_TX_IPV4 | OL_TX_IP_CKSUM | OL_TX_UDP_CKSUM);
    m.set_header_lens(14, 20, 8);
    let mut bu = Burst::new();
    bu.push(m);
    assert_eq!(tx.tx_burst(&mut caches, &mut bu), 1);
    let mut buf = [0u8; 2048];
    let (n, from) = rs
        .recv_from(&mut buf)
        .expect("the kernel delivered our datagram");
    assert_eq!(&buf[..n], &body[..]);
    assert_eq!(from.port(), 4444);
    assert_eq!(p.stats().ierrors() + p.stats().oerrors(), 0);
    p.stop().unwrap();
    drop((rx, tx));
    drop(p);
}
