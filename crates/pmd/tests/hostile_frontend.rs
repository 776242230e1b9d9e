//! A hostile vhost-user frontend against our vhost port: malformed messages and bad
//! descriptors are counted or end the session, never crash the backend, and the next
//! well-behaved client is served.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use ferrovia_ethdev::{Burst, Port, PortConf, RxQueue};
use ferrovia_memory::{Mempool, MempoolConfig, RegionBacking, SharedRegion};
use vhost::vhost_user::Frontend;
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vmm_sys_util::eventfd::EventFd;

const GPA: u64 = 0x1000_0000;
const MEM: usize = 1 << 20;
const QSZ: u16 = 16;
const V1: u64 = 1 << 32;

fn xstat(p: &dyn Port, name: &str) -> u64 {
    p.xstats()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no xstat {name}"))
}

fn wait<F: FnMut() -> bool>(what: &str, mut f: F) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Our guest: one memfd region holding two split rings (vring 0 and 1) and packet buffers.
struct EvilGuest {
    /// Kept so the session stays open.
    _fe: Frontend,
    mem: SharedRegion,
    _kick: EventFd,
    _call: EventFd,
}

impl EvilGuest {
    fn ring_off(v: usize) -> usize {
        v * 0x4000
    }
    fn base(&self) -> *mut u8 {
        self.mem.base()
    }
    fn gpa_of(&self, off: usize) -> u64 {
        GPA + off as u64
    }
    fn connect(sock: &str) -> EvilGuest {
        let s = UnixStream::connect(sock).unwrap();
        let fe = Frontend::from_stream(s, 64);
        let mem = SharedRegion::new("evil", MEM, RegionBacking::Memfd).unwrap();
        fe.set_owner().unwrap();
        let f = fe.get_features().unwrap();
        assert!(f & V1 != 0);
        fe.set_features(V1).unwrap();
        fe.set_mem_table(&[VhostUserMemoryRegionInfo {
            guest_phys_addr: GPA,
            memory_size: MEM as u64,
            userspace_addr: mem.base() as u64,
            mmap_offset: 0,
            mmap_handle: mem.fd(),
        }])
        .unwrap();
        let kick = EventFd::new(0).unwrap();
        let call = EventFd::new(0).unwrap();
        for v in 0..2 {
            let o = mem.base() as u64 + Self::ring_off(v) as u64;
            fe.set_vring_num(v, QSZ).unwrap();
            fe.set_vring_base(v, 0).unwrap();
            fe.set_vring_addr(
                v,
                &VringConfigData {
                    queue_max_size: QSZ,
                    queue_size: QSZ,
                    flags: 0,
                    desc_table_addr: o,
                    used_ring_addr: o + 0x2000,
                    avail_ring_addr: o + 0x1000,
                    log_addr: None,
                },
            )
            .unwrap();
            fe.set_vring_call(v, &call).unwrap();
            fe.set_vring_kick(v, &kick).unwrap();
        }
        EvilGuest {
            _fe: fe,
            mem,
            _kick: kick,
            _call: call,
        }
    }
    /// Writes descriptor `i` of the guest's Tx vring (vring 1).
    fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let p = unsafe_ptr(self.base(), Self::ring_off(1) + 16 * i as usize);
        // SAFETY: inside our 1 MiB region.
        unsafe {
            (p as *mut u64).write_volatile(addr);
            (p.add(8) as *mut u32).write_volatile(len);
            (p.add(12) as *mut u16).write_volatile(flags);
            (p.add(14) as *mut u16).write_volatile(next);
        }
    }
    /// Makes `head` available at avail slot `slot` and publishes avail.idx = `idx`.
    fn avail(&self, slot: u16, head: u16, idx: u16) {
        let a = unsafe_ptr(self.base(), Self::ring_off(1) + 0x1000);
        // SAFETY: inside our region; avail ring of 16 entries.
        unsafe {
            (a.add(4 + 2 * (slot % QSZ) as usize) as *mut u16).write_volatile(head);
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            (a.add(2) as *mut u16).write_volatile(idx);
        }
    }
    fn used_idx(&self) -> u16 {
        let u = unsafe_ptr(self.base(), Self::ring_off(1) + 0x2000);
        // SAFETY: inside our region.
        unsafe { (u.add(2) as *const u16).read_volatile() }
    }
}

fn unsafe_ptr(base: *mut u8, off: usize) -> *mut u8 {
    assert!(off < MEM);
    // SAFETY: off < MEM, the region's size.
    unsafe { base.add(off) }
}

fn poll(rx: &mut dyn RxQueue, n: usize) -> Burst {
    let mut b = Burst::new();
    for _ in 0..n {
        rx.rx_burst(&mut b, 32);
    }
    b
}

#[test]
fn bad_descriptors_are_counted_and_skipped() {
    let dir = std::env::temp_dir().join(format!("ferrovia-evil-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("d.sock").display().to_string();
    let pool = Mempool::new(MempoolConfig {
        name: "evil".into(),
        count: 1024,
        ..Default::default()
    })
    .unwrap();
    let mut port = ferrovia_pmd::open(
        &format!("net_vhost0,iface={sock}"),
        &PortConf::new(0, pool.clone()),
    )
    .unwrap();
    port.start().unwrap();
    let mut rx = port.rx_queue(0).unwrap();
    let g = EvilGuest::connect(&sock);
    wait("link up", || port.link().up);
    let buf = 0x10000usize;
    let good = g.gpa_of(buf);
    // A good 72-byte frame (12-byte header + 60 bytes) to prove the ring still works.
    // SAFETY: inside our region.
    unsafe { std::ptr::write_bytes(unsafe_ptr(g.base(), buf), 0xab, 72) };
    let mut idx = 0u16;
    let mut step =
        |d: &dyn Fn(), head: u16, counter: &str, rx: &mut dyn RxQueue, port: &dyn Port| {
            let before = xstat(port, counter);
            d();
            idx += 1;
            g.avail(idx - 1, head, idx);
            let got = poll(rx, 4);
            assert_eq!(
                got.len(),
                0,
                "{counter}: no packet may come out of a bad chain"
            );
            assert_eq!(
                xstat(port, counter),
                before + 1,
                "{counter} must count the bad chain"
            );
        };
    // Address outside the region.
    step(
        &|| g.desc(0, GPA + 2 * MEM as u64, 100, 0, 0),
        0,
        "rx_q0_bad_desc_addr",
        &mut *rx,
        &*port,
    );
    // Straddling the end of the region.
    step(
        &|| g.desc(0, GPA + MEM as u64 - 10, 100, 0, 0),
        0,
        "rx_q0_bad_desc_addr",
        &mut *rx,
        &*port,
    );
    // addr + len overflows u64.
    step(
        &|| g.desc(0, u64::MAX - 5, 100, 0, 0),
        0,
        "rx_q0_bad_desc_addr",
        &mut *rx,
        &*port,
    );
    // A chain loop 1 -> 2 -> 1.
    step(
        &|| {
            g.desc(1, good, 40, 1, 2);
            g.desc(2, good, 40, 1, 1);
        },
        1,
        "rx_q0_desc_chain_loop",
        &mut *rx,
        &*port,
    );
    // A zero-length self loop.
    step(
        &|| g.desc(3, good, 0, 1, 3),
        3,
        "rx_q0_desc_chain_loop",
        &mut *rx,
        &*port,
    );
    // next out of range.
    step(
        &|| g.desc(4, good, 40, 1, 999),
        4,
        "rx_q0_bad_desc_index",
        &mut *rx,
        &*port,
    );
    // Head out of range (nothing to return: skipped).
    step(&|| {}, 77, "rx_q0_bad_desc_index", &mut *rx, &*port);
    // A chain too short for the virtio-net header.
    step(
        &|| g.desc(5, good, 6, 0, 0),
        5,
        "rx_q0_desc_chain_too_short",
        &mut *rx,
        &*port,
    );
    // Indirect descriptor without the feature.
    step(
        &|| g.desc(6, good, 32, 4, 0),
        6,
        "rx_q0_bad_indirect_desc",
        &mut *rx,
        &*port,
    );
    // Every bad chain with a valid head was returned as used (the guest gets its buffer back).
    assert_eq!(
        g.used_idx(),
        idx - 1,
        "all valid heads returned, the out-of-range one skipped"
    );
    // Header split over two descriptors is legal: 6 + 66 bytes.
    g.desc(7, good, 6, 1, 8);
    g.desc(8, good + 6, 66, 0, 0);
    idx += 1;
    g.avail(idx - 1, 7, idx);
    let got = poll(&mut *rx, 4);
    assert_eq!(got.len(), 1, "a legal split-header chain is delivered");
    assert_eq!(got[0].data_len(), 60);
    assert!(got[0].data().iter().all(|&b| b == 0xab));
    drop(got);
    // An avail index jump larger than the ring.
    let before = xstat(&*port, "rx_q0_bad_avail_idx");
    g.avail(idx, 0, idx.wrapping_add(1000));
    assert_eq!(poll(&mut *rx, 4).len(), 0);
    assert_eq!(
        xstat(&*port, "rx_q0_bad_avail_idx"),
        before + 1,
        "counted once, not per poll"
    );
    // The backend survives and serves the next, well-behaved client.
    drop(g);
    wait("link down", || !port.link().up);
    serve_good_client(&sock, &pool, &mut *rx);
    drop(rx);
    drop(port);
    let _ = std::fs::remove_dir_all(&dir);
}

fn serve_good_client(sock: &str, pool: &Mempool, rx: &mut dyn RxQueue) {
    let mut vu = ferrovia_pmd::open(
        &format!("net_virtio_user0,path={sock}"),
        &PortConf::new(1, pool.clone()),
    )
    .unwrap();
    vu.start().unwrap();
    let mut tx = vu.tx_queue(0).unwrap();
    let mut b = Burst::new();
    for i in 0..8u8 {
        let mut m = pool.alloc().unwrap();
        m.append(100).unwrap().fill(i);
        b.push(m);
    }
    wait("good client traffic", || {
        tx.tx_burst(&mut b);
        b.is_empty()
    });
    let mut got = Burst::new();
    wait("8 packets", || {
        rx.rx_burst(&mut got, 32);
        got.len() >= 8
    });
    for (i, m) in got.iter().enumerate() {
        assert!(m.data().iter().all(|&x| x == i as u8) && m.data_len() == 100);
    }
}

/// Malformed messages end the session with a counter; the port then serves a good client.
#[test]
fn malformed_messages_end_the_session_and_the_backend_keeps_serving() {
    let dir = std::env::temp_dir().join(format!("ferrovia-evil-msg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("m.sock").display().to_string();
    let pool = Mempool::new(MempoolConfig {
        name: "evil-msg".into(),
        count: 1024,
        ..Default::default()
    })
    .unwrap();
    let mut port = ferrovia_pmd::open(
        &format!("net_vhost0,iface={sock}"),
        &PortConf::new(0, pool.clone()),
    )
    .unwrap();
    port.start().unwrap();
    let mut rx = port.rx_queue(0).unwrap();
    let fds_before = std::fs::read_dir("/proc/self/fd").unwrap().count();
    let failed = |p: &dyn Port| xstat(p, "vhost_sessions_failed");
    let bad = |p: &dyn Port| xstat(p, "vhost_bad_messages");

    type Attack = Box<dyn Fn(&mut Frontend)>;
    let attacks: Vec<(&str, Attack, bool)> = vec![
        (
            "vring index out of range",
            Box::new(|fe: &mut Frontend| {
                fe.set_owner().unwrap();
                let _ = fe.set_vring_num(40, 16);
            }),
            true,
        ),
        (
            "ring size 0",
            Box::new(|fe: &mut Frontend| {
                let _ = fe.set_vring_num(0, 0);
            }),
            true,
        ),
        (
            "ring size not a power of two",
            Box::new(|fe: &mut Frontend| {
                let _ = fe.set_vring_num(1, 100);
            }),
            true,
        ),
        (
            "features never offered",
            Box::new(|fe: &mut Frontend| {
                let _ = fe.set_features(u64::MAX);
            }),
            true,
        ),
        (
            "ring addresses outside memory",
            Box::new(|fe: &mut Frontend| {
                let mem = SharedRegion::new("evil2", 65536, RegionBacking::Memfd).unwrap();
                fe.set_mem_table(&[VhostUserMemoryRegionInfo {
                    guest_phys_addr: 0,
                    memory_size: 65536,
                    userspace_addr: mem.base() as u64,
                    mmap_offset: 0,
                    mmap_handle: mem.fd(),
                }])
                .unwrap();
                fe.set_vring_num(1, 16).unwrap();
                let k = EventFd::new(0).unwrap();
                let _ = fe.set_vring_kick(1, &k);
                let _ = fe.set_vring_addr(
                    1,
                    &VringConfigData {
                        queue_max_size: 16,
                        queue_size: 16,
                        flags: 0,
                        desc_table_addr: 0xdead_0000,
                        used_ring_addr: 0xdead_2000,
                        avail_ring_addr: 0xdead_1000,
                        log_addr: None,
                    },
                );
            }),
            true,
        ),
        (
            "memory region larger than its file",
            Box::new(|fe: &mut Frontend| {
                let mem = SharedRegion::new("evil3", 4096, RegionBacking::Memfd).unwrap();
                let _ = fe.set_mem_table(&[VhostUserMemoryRegionInfo {
                    guest_phys_addr: 0,
                    memory_size: 1 << 30,
                    userspace_addr: mem.base() as u64,
                    mmap_offset: 0,
                    mmap_handle: mem.fd(),
                }]);
            }),
            true,
        ),
    ];
    for (name, attack, ends) in attacks {
        let (f0, b0) = (failed(&*port), bad(&*port));
        let s = UnixStream::connect(&sock).unwrap();
        let mut fe = Frontend::from_stream(s, 64);
        attack(&mut fe);
        drop(fe);
        if ends {
            wait(name, || failed(&*port) > f0);
            assert!(bad(&*port) > b0 || failed(&*port) > f0, "{name}: counted");
        }
        serve_good_client(&sock, &pool, &mut *rx);
    }
    // Raw garbage: an unknown request code with an absurd size field, then a truncated header.
    for garbage in [
        {
            let mut v = 9999u32.to_le_bytes().to_vec();
            v.extend(1u32.to_le_bytes());
            v.extend(u32::MAX.to_le_bytes());
            v
        },
        vec![1, 0, 0],
    ] {
        let f0 = failed(&*port);
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(&garbage).unwrap();
        drop(s);
        wait("garbage session end", || {
            failed(&*port) > f0 || !port.link().up
        });
        serve_good_client(&sock, &pool, &mut *rx);
    }
    // Nothing leaked: every fd the attacks sent was closed (give the control thread a moment).
    wait("fds back to the start", || {
        std::fs::read_dir("/proc/self/fd").unwrap().count() <= fds_before + 2
    });
    drop(rx);
    drop(port);
    let _ = std::fs::remove_dir_all(&dir);
}
