//! A hostile vhost-user frontend sending malformed, out-of-range, repeated and out-of-order
//! messages, and missing, extra or wrong fds, to a real `net_vhost` port. Each case asserts the
//! exact outcome: the session refused (`vhost_sessions_failed` +1, and `vhost_bad_messages` +1
//! when our handler refused a value rust-vmm's parser let through), closed without a protocol
//! error, or kept (checked from the peer's side). After every case a real virtio-user client is
//! served with payload checks, and this process's fd count is back to its steady value.
//!
//! The tests of this binary hold one lock: fd counts are per process.

mod support;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

use support::evil_frontend::{
    EvilFrontend, FLAG_NEED_REPLY, FLAG_REPLY, FLAG_VERSION, GuestMem, RegionDesc, SplitLayout,
    VRING_NOFD, feat, mem_table_payload, req, single_region_payload, vring_addr, vring_state,
};
use support::{Bystander, VhostUnderTest, fd_count, temp_dir, wait};

static LOCK: Mutex<()> = Mutex::new(());

const GPA: u64 = 0x1000_0000;
const MEM: usize = 1 << 20;
const QSZ: u16 = 256;
/// The vhost port under test has one queue pair: vrings 0 and 1.
const NVRINGS: u32 = 2;
/// Features of a modern frontend with REPLY_ACK, so that every request is acknowledged.
const FEATURES: u64 = feat::V1 | feat::PROTOCOL;
const PROTOCOL: u64 = feat::P_REPLY_ACK | feat::P_MEM_SLOTS;

/// What a case must do to the session.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    /// Ended as a protocol error; `handler`: refused by our handler (counted in
    /// `vhost_bad_messages`), not by rust-vmm's parser.
    Refused { handler: bool },
    /// Ended without a protocol error (the peer hung up in the middle of a message).
    Closed,
    /// The session goes on (the attack checks it from the peer's side).
    Kept,
}
use Outcome::*;

/// An attack: returns the connection when the backend must close it.
type Attack = Box<dyn Fn(&mut VhostUnderTest) -> Option<EvilFrontend>>;

/// The harness: a port, the fd count it steadies at once a client was served, and the cases.
struct Harness {
    v: VhostUnderTest,
    steady: usize,
    // Dropped before the directory is removed (declared first).
    by: Bystander,
    dir: std::path::PathBuf,
}

impl Harness {
    fn new(tag: &str) -> Harness {
        ferrovia_pmd::start_control_plane().unwrap();
        let dir = temp_dir(tag);
        let by = Bystander::start(&dir);
        let mut v = VhostUnderTest::new(&dir, tag);
        v.serve_good_client();
        let steady = fd_count();
        Harness { v, steady, by, dir }
    }

    fn case(&mut self, name: &str, outcome: Outcome, attack: Attack) {
        let (s0, f0, b0) = self.v.sessions();
        let by0 = self.by.moved();
        let fe = attack(&mut self.v);
        if let Refused { .. } = outcome {
            wait(&format!("{name}: session refused"), || {
                self.v.sessions().1 > f0
            });
            if let Some(fe) = fe {
                fe.expect_closed();
            }
        } else {
            drop(fe);
        }
        self.v.serve_good_client();
        let (s1, f1, b1) = self.v.sessions();
        let want = match outcome {
            Refused { handler } => (2, 1, handler as u64),
            Closed | Kept => (2, 0, 0),
        };
        assert_eq!(
            (s1 - s0, f1 - f0, b1 - b0),
            want,
            "{name}: (sessions, sessions_failed, bad_messages) moved by"
        );
        self.by
            .assert_forwarded_since(by0, &format!("{name}: a second port meanwhile"));
        let steady = self.steady;
        wait(&format!("{name}: fd count back to {steady}"), || {
            fd_count() == steady
        });
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Connects and negotiates [`FEATURES`] and [`PROTOCOL`].
fn negotiated(v: &VhostUnderTest) -> EvilFrontend {
    let mut fe = EvilFrontend::connect(&v.sock);
    fe.handshake(FEATURES, PROTOCOL);
    fe
}

/// A guest whose two vrings are up.
struct Guest {
    fe: EvilFrontend,
    mem: GuestMem,
    rxr: SplitLayout,
    txr: SplitLayout,
}

fn guest_up(v: &VhostUnderTest) -> Guest {
    let fe = negotiated(v);
    let mem = GuestMem::new(GPA, &[MEM]);
    assert!(fe.set_mem_table(&mem).unwrap());
    let rxr = SplitLayout::new(&mem, 0, 0, QSZ);
    let txr = SplitLayout::new(&mem, 0, 0x10000, QSZ);
    fe.setup_vring(0, &rxr, true);
    fe.setup_vring(1, &txr, true);
    wait("link up", || v.port.link().up);
    Guest { fe, mem, rxr, txr }
}

/// The guest transmits one frame of 60 bytes of `fill`; the port must receive it intact.
fn guest_sends(v: &mut VhostUnderTest, mem: &GuestMem, txr: &mut SplitLayout, fill: u8) {
    let off = 0x40000 + 0x100 * (txr.avail_idx % QSZ) as usize;
    let mut b = vec![0u8; 12];
    b.extend([fill; 60]);
    mem.write(0, off, &b);
    let head = txr.avail_idx % QSZ;
    txr.desc(head, mem.gpa(0, off), 72, 0, 0);
    txr.push(head);
    let mut got = ferrovia_ethdev::Burst::new();
    wait("guest frame", || {
        v.rx.rx_burst(&mut v.caches, &mut got, 32);
        !got.is_empty()
    });
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data(), &[fill; 60][..]);
}

fn memfd(len: u64) -> OwnedFd {
    // SAFETY: a plain syscall with a NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c"evil".as_ptr(), 0) };
    assert!(fd >= 0);
    // SAFETY: fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: resizing our own memfd.
    assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), len as i64) }, 0);
    fd
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut p = [0; 2];
    // SAFETY: p has room for two fds.
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    // SAFETY: fresh fds we own.
    unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) }
}

fn region(gpa: u64, size: u64) -> RegionDesc {
    RegionDesc {
        gpa,
        size,
        uva: 0x7f00_0000_0000u64.wrapping_add(gpa),
        offset: 0,
    }
}

/// An attack of one message after negotiation, refused by the session.
fn after_negotiation(r: u32, payload: Vec<u8>) -> Attack {
    Box::new(move |v| {
        let fe = negotiated(v);
        let _ = fe.send(r, &payload, &[]);
        Some(fe)
    })
}

/// A vring index out of range in every message that carries one, with the index just past
/// the last vring and at the top of its field; and SET_VRING_ENABLE both before SET_FEATURES
/// (QEMU's order, handled outside rust-vmm) and after it.
#[test]
fn vring_index_out_of_range_in_every_per_vring_message() {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Harness::new("idx");
    for idx in [NVRINGS, 255, u32::MAX] {
        let u32_msgs: [(&str, u32, Vec<u8>); 5] = [
            ("SET_VRING_NUM", req::SET_VRING_NUM, vring_state(idx, 256)),
            ("SET_VRING_BASE", req::SET_VRING_BASE, vring_state(idx, 0)),
            ("GET_VRING_BASE", req::GET_VRING_BASE, vring_state(idx, 0)),
            (
                "SET_VRING_ENABLE",
                req::SET_VRING_ENABLE,
                vring_state(idx, 1),
            ),
            (
                "SET_VRING_ADDR",
                req::SET_VRING_ADDR,
                vring_addr(idx, 0, 0x1000, 0x3000, 0x2000, 0),
            ),
        ];
        for (name, r, payload) in u32_msgs {
            h.case(
                &format!("{name} vring {idx}"),
                Refused { handler: true },
                after_negotiation(r, payload),
            );
        }
        if idx > 255 {
            continue; // KICK/CALL/ERR carry the index in 8 bits
        }
        for (name, r) in [
            ("SET_VRING_KICK", req::SET_VRING_KICK),
            ("SET_VRING_CALL", req::SET_VRING_CALL),
            ("SET_VRING_ERR", req::SET_VRING_ERR),
        ] {
            h.case(
                &format!("{name} vring {idx} (no fd)"),
                Refused { handler: true },
                after_negotiation(r, (idx as u64 | VRING_NOFD).to_le_bytes().to_vec()),
            );
            // With an eventfd attached: refused, and the fd is closed (checked by the harness).
            h.case(
                &format!("{name} vring {idx} with an fd"),
                Refused { handler: true },
                Box::new(move |v| {
                    let fe = negotiated(v);
                    let efd = vmm_sys_util::eventfd::EventFd::new(0).unwrap();
                    let _ = fe.send(r, &(idx as u64).to_le_bytes(), &[efd.as_raw_fd()]);
                    Some(fe)
                }),
            );
        }
        h.case(
            &format!("SET_VRING_ENABLE vring {idx} before SET_FEATURES"),
            Refused { handler: true },
            Box::new(move |v| {
                let fe = EvilFrontend::connect(&v.sock);
                fe.send(req::SET_OWNER, &[], &[]).unwrap();
                fe.barrier().unwrap();
                let _ = fe.send(req::SET_VRING_ENABLE, &vring_state(idx, 1), &[]);
                Some(fe)
            }),
        );
    }
}

/// Ring sizes: 0, not a power of two, larger than 32768 (including sizes whose low 16 bits
/// look valid) are refused; 32768 is accepted; a split ring base above 65535 is refused.
#[test]
fn bad_ring_sizes_and_bases() {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Harness::new("num");
    for num in [0u32, 100, 255, 32769, 65536, 65536 + 256, u32::MAX] {
        h.case(
            &format!("SET_VRING_NUM {num}"),
            Refused { handler: true },
            after_negotiation(req::SET_VRING_NUM, vring_state(1, num)),
        );
    }
    h.case(
        "SET_VRING_NUM 32768 and 1",
        Kept,
        Box::new(|v| {
            let fe = negotiated(v);
            assert!(
                fe.call(req::SET_VRING_NUM, &vring_state(1, 32768), &[])
                    .unwrap()
            );
            assert!(
                fe.call(req::SET_VRING_NUM, &vring_state(0, 1), &[])
                    .unwrap()
            );
            None
        }),
    );
    h.case(
        "SET_VRING_BASE 0x10000 on a split ring",
        Refused { handler: true },
        after_negotiation(req::SET_VRING_BASE, vring_state(1, 0x10000)),
    );
    h.case(
        "SET_VRING_ENABLE with a state that is neither 0 nor 1",
        Refused { handler: false },
        after_negotiation(req::SET_VRING_ENABLE, vring_state(1, 2)),
    );
    h.case(
        "SET_VRING_ENABLE state 2 before SET_FEATURES",
        Refused { handler: true },
        Box::new(|v| {
            let fe = EvilFrontend::connect(&v.sock);
            fe.barrier().unwrap();
            let _ = fe.send(req::SET_VRING_ENABLE, &vring_state(0, 2), &[]);
            Some(fe)
        }),
    );
    h.case(
        "SET_FEATURES with features never offered",
        Refused { handler: true },
        Box::new(|v| {
            let fe = EvilFrontend::connect(&v.sock);
            let _ = fe.send(req::SET_FEATURES, &u64::MAX.to_le_bytes(), &[]);
            Some(fe)
        }),
    );
    h.case(
        "SET_PROTOCOL_FEATURES never offered",
        Refused { handler: true },
        Box::new(|v| {
            let mut fe = EvilFrontend::connect(&v.sock);
            fe.handshake(FEATURES, 0);
            let _ = fe.send(req::SET_PROTOCOL_FEATURES, &(1u64 << 40).to_le_bytes(), &[]);
            Some(fe)
        }),
    );
    h.case(
        "SET_VRING_ADDR with an unknown flag",
        Refused { handler: false },
        after_negotiation(
            req::SET_VRING_ADDR,
            vring_addr(1, 2, 0x1000, 0x3000, 0x2000, 0),
        ),
    );
}

/// Ring addresses outside, straddling or misaligned in the memory table.
#[test]
fn bad_ring_addresses() {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Harness::new("addr");
    // (name, desc, avail, used) as offsets from the region's frontend address, and whether
    // our handler (rather than rust-vmm's parser, which checks alignment) refuses them.
    let cases: [(&str, i64, i64, i64, bool); 5] = [
        (
            "descriptor table outside memory",
            0x20_0000,
            0x1000,
            0x2000,
            true,
        ),
        (
            "used ring straddling the end of memory",
            0,
            0x1000,
            MEM as i64 - 8,
            true,
        ),
        ("avail ring before memory", 0, -4096, 0x2000, true),
        ("misaligned descriptor table", 8, 0x2000, 0x3000, false),
        ("misaligned used ring", 0, 0x2000, 0x3002, false),
    ];
    for (name, d, a, u, handler) in cases {
        h.case(
            name,
            Refused { handler },
            Box::new(move |v| {
                let fe = negotiated(v);
                let mem = GuestMem::new(GPA, &[MEM]);
                assert!(fe.set_mem_table(&mem).unwrap());
                let base = mem.regions[0].mem.base() as i64;
                assert!(
                    fe.call(req::SET_VRING_NUM, &vring_state(1, 256), &[])
                        .unwrap()
                );
                let k = (1 | VRING_NOFD).to_le_bytes();
                assert!(fe.call(req::SET_VRING_KICK, &k, &[]).unwrap());
                assert!(
                    fe.call(req::SET_VRING_ENABLE, &vring_state(1, 1), &[])
                        .unwrap()
                );
                let addr = |o: i64| (base + o) as u64;
                let _ = fe.call(
                    req::SET_VRING_ADDR,
                    &vring_addr(1, 0, addr(d), addr(u), addr(a), 0),
                    &[],
                );
                drop(mem);
                Some(fe)
            }),
        );
    }
}

/// Repeated and out-of-order messages: legal orders work, illegal ones are refused.
#[test]
fn repeated_and_out_of_order_messages() {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Harness::new("order");
    h.case(
        "ring set up before SET_MEM_TABLE, SET_OWNER twice: works once the table arrives",
        Kept,
        Box::new(|v| {
            let fe = negotiated(v);
            fe.send(req::SET_OWNER, &[], &[]).unwrap();
            let mem = GuestMem::new(GPA, &[MEM]);
            let rxr = SplitLayout::new(&mem, 0, 0, QSZ);
            let mut txr = SplitLayout::new(&mem, 0, 0x10000, QSZ);
            fe.setup_vring(0, &rxr, true);
            fe.setup_vring(1, &txr, true);
            assert!(!v.port.link().up, "no link without memory");
            assert!(fe.set_mem_table(&mem).unwrap());
            wait("link up", || v.port.link().up);
            guest_sends(v, &mem, &mut txr, 0x31);
            None
        }),
    );
    h.case(
        "ring addresses before a SET_MEM_TABLE that does not contain them",
        Refused { handler: true },
        Box::new(|v| {
            let fe = negotiated(v);
            let mem = GuestMem::new(GPA, &[MEM]);
            let other = GuestMem::new(GPA, &[MEM]);
            let rxr = SplitLayout::new(&other, 0, 0, QSZ);
            fe.setup_vring(0, &rxr, true);
            let _ = fe.set_mem_table(&mem);
            Some(fe)
        }),
    );
    h.case(
        "SET_MEM_TABLE 20 times while running: traffic goes on, no fd or mapping piles up",
        Kept,
        Box::new(|v| {
            let mut g = guest_up(v);
            guest_sends(v, &g.mem, &mut g.txr, 1);
            let fds = fd_count();
            for i in 0..20u8 {
                assert!(g.fe.set_mem_table(&g.mem).unwrap());
                guest_sends(v, &g.mem, &mut g.txr, i + 2);
                assert_eq!(fd_count(), fds, "SET_MEM_TABLE #{i}: fds");
            }
            None
        }),
    );
    h.case(
        "a second SET_MEM_TABLE while running that no longer holds the rings",
        Refused { handler: true },
        Box::new(|v| {
            let mut g = guest_up(v);
            guest_sends(v, &g.mem, &mut g.txr, 1);
            let other = GuestMem::new(GPA, &[MEM]);
            let _ = g.fe.set_mem_table(&other);
            Some(g.fe)
        }),
    );
    h.case(
        "GET_VRING_BASE on never-started vrings",
        Kept,
        Box::new(|v| {
            let fe = negotiated(v);
            for i in 0..NVRINGS {
                let r = fe.get(req::GET_VRING_BASE, &vring_state(i, 0)).unwrap();
                assert_eq!(r.body, vring_state(i, 0), "vring {i}");
            }
            fe.barrier().unwrap();
            None
        }),
    );
    h.case(
        "GET_VRING_BASE while running stops the ring at the right index; a kick restarts it",
        Kept,
        Box::new(|v| {
            let mut g = guest_up(v);
            for i in 0..3 {
                guest_sends(v, &g.mem, &mut g.txr, i);
            }
            let r = g.fe.get(req::GET_VRING_BASE, &vring_state(1, 0)).unwrap();
            assert_eq!(r.body, vring_state(1, 3));
            wait("link down after GET_VRING_BASE", || !v.port.link().up);
            assert!(
                g.fe.call(req::SET_VRING_KICK, &(1 | VRING_NOFD).to_le_bytes(), &[])
                    .unwrap()
            );
            wait("link up after the kick", || v.port.link().up);
            guest_sends(v, &g.mem, &mut g.txr, 9);
            None
        }),
    );
    h.case(
        "SET_FEATURES changing features while running",
        Refused { handler: true },
        Box::new(|v| {
            let g = guest_up(v);
            let _ = g.fe.send(
                req::SET_FEATURES,
                &(FEATURES | feat::MRG_RXBUF).to_le_bytes(),
                &[],
            );
            Some(g.fe)
        }),
    );
    h.case(
        "RESET_OWNER while running, then a new setup on the same connection",
        Kept,
        Box::new(|v| {
            let mut g = guest_up(v);
            g.fe.send(req::RESET_OWNER, &[], &[]).unwrap();
            g.fe.barrier().unwrap();
            wait("link down after RESET_OWNER", || !v.port.link().up);
            assert!(g.fe.set_mem_table(&g.mem).unwrap());
            g.fe.setup_vring(0, &g.rxr, true);
            g.fe.setup_vring(1, &g.txr, true);
            wait("link up again", || v.port.link().up);
            // After the reset the backend starts from base 0 again: restart the guest's ring.
            g.txr = SplitLayout::new(&g.mem, 0, 0x10000, QSZ);
            guest_sends(v, &g.mem, &mut g.txr, 0x77);
            None
        }),
    );
    h.case(
        "SET_VRING_CALL and SET_VRING_KICK with real eventfds, 50 times each: no fd piles up",
        Kept,
        Box::new(|v| {
            let mut g = guest_up(v);
            guest_sends(v, &g.mem, &mut g.txr, 4);
            let fds = fd_count();
            for _ in 0..50 {
                for (r, i) in [(req::SET_VRING_CALL, 0u64), (req::SET_VRING_KICK, 1)] {
                    let e = vmm_sys_util::eventfd::EventFd::new(0).unwrap();
                    assert!(g.fe.call(r, &i.to_le_bytes(), &[e.as_raw_fd()]).unwrap());
                }
            }
            guest_sends(v, &g.mem, &mut g.txr, 5);
            // The backend holds exactly one call fd for vring 0 (kick fds are closed at once).
            assert_eq!(fd_count(), fds + 1);
            None
        }),
    );
    h.case(
        "REM_MEM_REG of a region never added",
        Refused { handler: true },
        Box::new(|v| {
            let g = guest_up(v);
            let _ = g.fe.send(
                req::REM_MEM_REG,
                &single_region_payload(&region(0x9000_0000, 4096)),
                &[],
            );
            Some(g.fe)
        }),
    );
    h.case(
        "ADD_MEM_REG of the same region twice (QEMU does), then REM_MEM_REG twice",
        Kept,
        Box::new(|v| {
            let fe = negotiated(v);
            let mem = GuestMem::new(GPA, &[MEM]);
            let d = single_region_payload(&mem.descs()[0]);
            let fd = mem.regions[0].mem.fd();
            assert!(fe.call(req::ADD_MEM_REG, &d, &[fd]).unwrap());
            assert!(fe.call(req::ADD_MEM_REG, &d, &[fd]).unwrap());
            assert!(fe.call(req::REM_MEM_REG, &d, &[]).unwrap());
            assert!(fe.call(req::REM_MEM_REG, &d, &[]).unwrap());
            None
        }),
    );
    h.case(
        "ADD_MEM_REG without CONFIGURE_MEM_SLOTS negotiated",
        Refused { handler: false },
        Box::new(|v| {
            let mut fe = EvilFrontend::connect(&v.sock);
            fe.handshake(FEATURES, feat::P_REPLY_ACK);
            let mem = GuestMem::new(GPA, &[MEM]);
            let d = single_region_payload(&mem.descs()[0]);
            let _ = fe.send(req::ADD_MEM_REG, &d, &[mem.regions[0].mem.fd()]);
            Some(fe)
        }),
    );
}

/// SET_MEM_TABLE with missing, extra and wrong fds, and bad region tables; every fd the peer
/// sent is closed.
#[test]
fn memory_tables_with_missing_extra_or_wrong_fds() {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Harness::new("fds");
    // (name, regions, fds to attach, refused by our handler)
    type FdCase = (&'static str, Vec<RegionDesc>, fn() -> Vec<OwnedFd>, bool);
    let two = vec![region(0, 65536), region(65536, 65536)];
    let one = vec![region(0, 65536)];
    let cases: Vec<FdCase> = vec![
        ("no fd for one region", one.clone(), Vec::new, false),
        (
            "one fd for two regions",
            two.clone(),
            || vec![memfd(65536)],
            false,
        ),
        (
            "two fds for one region",
            one.clone(),
            || vec![memfd(65536), memfd(65536)],
            false,
        ),
        (
            "33 fds for one region (more than a message may carry)",
            one.clone(),
            || (0..33).map(|_| memfd(4096)).collect(),
            false,
        ),
        ("a pipe as region fd", one.clone(), || vec![pipe().0], true),
        (
            "a socket as region fd",
            one.clone(),
            || vec![OwnedFd::from(UnixStream::pair().unwrap().0)],
            true,
        ),
        (
            "a directory as region fd",
            one.clone(),
            || vec![OwnedFd::from(std::fs::File::open("/").unwrap())],
            true,
        ),
        (
            "a memfd smaller than its region",
            one.clone(),
            || vec![memfd(4096)],
            true,
        ),
        (
            "a region past the end of its memfd (offset)",
            vec![RegionDesc {
                offset: 8192,
                ..region(0, 65536)
            }],
            || vec![memfd(65536)],
            true,
        ),
        (
            "overlapping regions",
            vec![region(0, 65536), region(4096, 65536)],
            || vec![memfd(65536), memfd(65536)],
            true,
        ),
        (
            "a region whose end overflows the guest address space",
            vec![region(u64::MAX - 4095, 65536)],
            || vec![memfd(65536)],
            false,
        ),
        (
            "a region of size 0",
            vec![region(0, 0)],
            || vec![memfd(65536)],
            false,
        ),
        ("no region", vec![], Vec::new, false),
        (
            "33 regions",
            (0..33).map(|i| region(i * 4096, 4096)).collect(),
            || (0..32).map(|_| memfd(4096)).collect(),
            false,
        ),
    ];
    for (name, regions, fds, handler) in cases {
        h.case(
            name,
            Refused { handler },
            Box::new(move |v| {
                let fe = negotiated(v);
                let fds = fds();
                let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
                let _ = fe.send(req::SET_MEM_TABLE, &mem_table_payload(&regions), &raw);
                Some(fe)
            }),
        );
    }
    h.case(
        "SET_VRING_KICK with an fd and the no-fd flag",
        Refused { handler: false },
        Box::new(|v| {
            let fe = negotiated(v);
            let e = vmm_sys_util::eventfd::EventFd::new(0).unwrap();
            let _ = fe.send(
                req::SET_VRING_KICK,
                &(1 | VRING_NOFD).to_le_bytes(),
                &[e.as_raw_fd()],
            );
            Some(fe)
        }),
    );
    h.case(
        "SET_VRING_CALL without fd nor the no-fd flag",
        Refused { handler: false },
        after_negotiation(req::SET_VRING_CALL, 1u64.to_le_bytes().to_vec()),
    );
    h.case(
        "SET_VRING_CALL with two fds",
        Refused { handler: false },
        Box::new(|v| {
            let fe = negotiated(v);
            let (a, b) = pipe();
            let _ = fe.send(
                req::SET_VRING_CALL,
                &1u64.to_le_bytes(),
                &[a.as_raw_fd(), b.as_raw_fd()],
            );
            Some(fe)
        }),
    );
    h.case(
        "GET_FEATURES carrying three fds",
        Refused { handler: false },
        Box::new(|v| {
            let fe = EvilFrontend::connect(&v.sock);
            let m = memfd(4096);
            let _ = fe.send(req::GET_FEATURES, &[], &[m.as_raw_fd(); 3]);
            Some(fe)
        }),
    );
    h.case(
        "SET_VRING_ENABLE before SET_FEATURES carrying an fd: fd dropped, session kept",
        Kept,
        Box::new(|v| {
            let fe = EvilFrontend::connect(&v.sock);
            let m = memfd(4096);
            fe.send(req::SET_VRING_ENABLE, &vring_state(1, 1), &[m.as_raw_fd()])
                .unwrap();
            fe.barrier().unwrap();
            None
        }),
    );
}

/// Headers and sizes: oversized, inconsistent and truncated messages, bad flags, unknown codes,
/// a peer that stalls in the middle of a message and a peer that never reads its replies.
#[test]
fn malformed_truncated_and_stalled_messages() {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Harness::new("msg");
    // (name, request, flags, size field, payload)
    let raw: Vec<(&str, u32, u32, u32, Vec<u8>)> = vec![
        (
            "SET_OWNER with a 300-byte payload",
            req::SET_OWNER,
            FLAG_VERSION,
            300,
            vec![0; 300],
        ),
        (
            "size field u32::MAX",
            req::SET_FEATURES,
            FLAG_VERSION,
            u32::MAX,
            vec![0; 8],
        ),
        (
            "size field 4097 (over the 4 KiB limit)",
            req::SET_MEM_TABLE,
            FLAG_VERSION,
            4097,
            vec![0; 4097],
        ),
        (
            "SET_VRING_NUM with a 4-byte payload",
            req::SET_VRING_NUM,
            FLAG_VERSION,
            4,
            vec![1, 0, 0, 0],
        ),
        (
            "SET_FEATURES with a 16-byte payload",
            req::SET_FEATURES,
            FLAG_VERSION,
            16,
            vec![0; 16],
        ),
        (
            "SET_MEM_TABLE whose size disagrees with its region count",
            req::SET_MEM_TABLE,
            FLAG_VERSION,
            8 + 32,
            {
                let mut p = mem_table_payload(&[region(0, 4096), region(4096, 4096)]);
                p.truncate(40);
                p
            },
        ),
        ("unknown request 9999", 9999, FLAG_VERSION, 0, vec![]),
        ("request 0", 0, FLAG_VERSION, 0, vec![]),
        ("version 0 in the flags", req::GET_FEATURES, 0, 0, vec![]),
        ("version 2 in the flags", req::GET_FEATURES, 2, 0, vec![]),
        (
            "reserved flag bits",
            req::GET_FEATURES,
            FLAG_VERSION | 0x100,
            0,
            vec![],
        ),
        (
            "a reply sent as a request",
            req::GET_FEATURES,
            FLAG_VERSION | FLAG_REPLY,
            0,
            vec![],
        ),
    ];
    for (name, r, flags, size, payload) in raw {
        h.case(
            name,
            Refused { handler: false },
            Box::new(move |v| {
                let fe = EvilFrontend::connect(&v.sock);
                let _ = fe.send_raw(r, flags, size, &payload, &[]);
                Some(fe)
            }),
        );
    }
    h.case(
        "NEED_REPLY without REPLY_ACK negotiated is simply not acknowledged",
        Kept,
        Box::new(|v| {
            let fe = EvilFrontend::connect(&v.sock);
            fe.send_raw(req::SET_OWNER, FLAG_VERSION | FLAG_NEED_REPLY, 0, &[], &[])
                .unwrap();
            let f = fe.barrier().unwrap();
            assert_ne!(f, 0);
            None
        }),
    );
    h.case(
        "3 bytes of a header, then hang up",
        Closed,
        Box::new(|v| {
            let fe = EvilFrontend::connect(&v.sock);
            fe.send_bytes(&[2, 0, 0], &[]).unwrap();
            None
        }),
    );
    h.case(
        "a header announcing 8 bytes, 4 sent, then hang up",
        Refused { handler: false },
        Box::new(|v| {
            let fe = EvilFrontend::connect(&v.sock);
            fe.send_raw(req::SET_FEATURES, FLAG_VERSION, 8, &[0; 4], &[])
                .unwrap();
            fe.socket().shutdown(std::net::Shutdown::Write).unwrap();
            Some(fe)
        }),
    );
    for (name, r) in [
        (
            "a header announcing 8 bytes, 4 sent, then silence",
            req::SET_FEATURES,
        ),
        (
            "SET_VRING_ENABLE before SET_FEATURES, 4 of 8 bytes, then silence",
            req::SET_VRING_ENABLE,
        ),
    ] {
        h.case(
            name,
            Refused { handler: false },
            Box::new(move |v| {
                let fe = EvilFrontend::connect(&v.sock);
                fe.send_raw(r, FLAG_VERSION, 8, &[0; 4], &[]).unwrap();
                // The backend must give up on its own: the watchdog ends the session.
                Some(fe)
            }),
        );
    }
    h.case(
        "a peer that floods requests and never reads the replies",
        Refused { handler: false },
        Box::new(|v| {
            let fe = EvilFrontend::connect(&v.sock);
            fe.socket().set_nonblocking(true).unwrap();
            let f0 = v.sessions().1;
            // Send GET_FEATURES until our socket is full: the backend is then stuck writing
            // replies nobody reads, until its watchdog ends the session.
            loop {
                match fe.send(req::GET_FEATURES, &[], &[]) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if v.sessions().1 > f0 {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(_) => break,
                }
            }
            fe.socket().set_nonblocking(false).unwrap();
            Some(fe)
        }),
    );
}
