//! A hostile vhost-user frontend against the limits a real `net_vhost` port puts on what a
//! peer sizes or hands over: refused memory swaps must not leak fds, the call fd must be an
//! eventfd, a call that cannot be delivered never blocks the poller, and the mapped memory of a
//! session is capped (`max-mem`).
//!
//! The tests of this binary hold one lock: fd counts are per process.

mod support;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

use support::evil_frontend::{
    EvilFrontend, GuestMem, SplitLayout, feat, req, single_region_payload,
};
use support::{Bystander, VhostUnderTest, fd_count, temp_dir, wait, xstat};

static LOCK: Mutex<()> = Mutex::new(());

const GPA: u64 = 0x1000_0000;
const MEM: usize = 1 << 20;
const QSZ: u16 = 256;
const FEATURES: u64 = feat::V1 | feat::PROTOCOL;
const PROTOCOL: u64 = feat::P_REPLY_ACK | feat::P_MEM_SLOTS;

fn negotiated(v: &VhostUnderTest) -> EvilFrontend {
    let mut fe = EvilFrontend::connect(&v.sock);
    fe.handshake(FEATURES, PROTOCOL);
    fe
}

/// A guest whose two vrings run, and one frame it sent that the port received.
fn guest_up(v: &mut VhostUnderTest) -> (EvilFrontend, GuestMem, SplitLayout, SplitLayout) {
    let fe = negotiated(v);
    let mem = GuestMem::new(GPA, &[MEM]);
    assert!(fe.set_mem_table(&mem).unwrap());
    let rxr = SplitLayout::new(&mem, 0, 0, QSZ);
    let mut txr = SplitLayout::new(&mem, 0, 0x10000, QSZ);
    fe.setup_vring(0, &rxr, true);
    fe.setup_vring(1, &txr, true);
    for i in 0..2u64 {
        let call = eventfd(0, libc::EFD_NONBLOCK);
        assert!(
            fe.call(req::SET_VRING_CALL, &i.to_le_bytes(), &[call.as_raw_fd()])
                .unwrap()
        );
        let kick = eventfd(0, libc::EFD_NONBLOCK);
        assert!(
            fe.call(req::SET_VRING_KICK, &i.to_le_bytes(), &[kick.as_raw_fd()])
                .unwrap()
        );
    }
    wait("link up", || v.port.link().up);
    guest_sends(v, &mem, &mut txr, 7);
    (fe, mem, rxr, txr)
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

/// An eventfd of this process with `initval` and `flags`.
fn eventfd(initval: u32, flags: i32) -> OwnedFd {
    // SAFETY: a plain syscall.
    let fd = unsafe { libc::eventfd(initval, flags) };
    assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh fd we own.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn refused(v: &VhostUnderTest, fe: EvilFrontend, failed_before: u64, what: &str) {
    wait(&format!("{what}: session refused"), || {
        v.sessions().1 > failed_before
    });
    fe.expect_closed();
}

/// A frontend swaps the memory table while its rings run, with a table that no longer holds
/// the rings (SET_MEM_TABLE) or a region that overlaps the running one (ADD_MEM_REG), 200
/// times each: every swap is refused, and this process's fd count comes back to its baseline.
#[test]
fn refused_memory_swaps_while_running_leak_no_fd() {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    ferrovia_pmd::start_control_plane().unwrap();
    let dir = temp_dir("swapleak");
    let mut v = VhostUnderTest::new(&dir, "swapleak");
    v.serve_good_client();
    let base = fd_count();
    for i in 0..200 {
        let (s0, f0, b0) = v.sessions();
        let (fe, mem, _rxr, _txr) = guest_up(&mut v);
        let other = GuestMem::new(GPA, &[MEM]);
        if i % 2 == 0 {
            let _ = fe.set_mem_table(&other);
        } else {
            let d = other.descs();
            let _ = fe.send(
                req::ADD_MEM_REG,
                &single_region_payload(&d[0]),
                &[other.regions[0].mem.fd()],
            );
        }
        refused(&v, fe, f0, &format!("swap #{i}"));
        drop((mem, other));
        let (s1, f1, b1) = v.sessions();
        assert_eq!((s1 - s0, f1 - f0, b1 - b0), (1, 1, 1), "swap #{i}");
        if i < 5 || i % 50 == 0 {
            eprintln!("swap #{i}: fds {} base {base}", fd_count());
        }
    }
    v.serve_good_client();
    wait(&format!("fd count back to {base}"), || fd_count() == base);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Aborts the process if `done` is not set within 10 s: a poller blocked in a syscall cannot
/// be timed out from its own thread (a liveness bound, not a timing assertion).
fn hang_guard(what: &'static str) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        let t = std::time::Instant::now();
        while !d.load(std::sync::atomic::Ordering::Acquire) {
            if t.elapsed() > std::time::Duration::from_secs(10) {
                eprintln!("hang guard: {what} did not finish in 10 s");
                std::process::abort();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    });
    done
}

/// The call fd must be an eventfd: a pipe is refused (its writer blocks once the reader
/// stops reading). A blocking eventfd whose counter is one below its limit, with `O_NONBLOCK`
/// cleared again after the port set it, cannot stall the poller: both directions still move
/// packets, each skipped call is counted, and the port serves the next client.
#[test]
fn call_fd_must_be_an_eventfd_and_never_blocks_the_poller() {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    ferrovia_pmd::start_control_plane().unwrap();
    let dir = temp_dir("callfd");
    let by = Bystander::start(&dir);
    let mut v = VhostUnderTest::new(&dir, "callfd");
    v.serve_good_client();
    let base = fd_count();
    let by0 = by.moved();

    // (a) a pipe as the call fd.
    let (_s0, f0, b0) = v.sessions();
    let fe = negotiated(&v);
    let mut p = [0; 2];
    // SAFETY: p has room for two fds.
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    // SAFETY: fresh fds we own.
    let (pr, pw) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
    let _ = fe.send(req::SET_VRING_CALL, &0u64.to_le_bytes(), &[pw.as_raw_fd()]);
    refused(&v, fe, f0, "pipe as call fd");
    assert_eq!(v.sessions().2 - b0, 1, "pipe as call fd: bad_messages");
    drop((pr, pw));

    // (b) a full, blocking eventfd on both vrings.
    let fe = negotiated(&v);
    let mem = GuestMem::new(GPA, &[MEM]);
    assert!(fe.set_mem_table(&mem).unwrap());
    let mut rxr = SplitLayout::new(&mem, 0, 0, QSZ);
    let mut txr = SplitLayout::new(&mem, 0, 0x10000, QSZ);
    fe.setup_vring(0, &rxr, true);
    fe.setup_vring(1, &txr, true);
    let calls: Vec<OwnedFd> = (0..2u64)
        .map(|i| {
            let call = eventfd(0, 0);
            let full = 0xffff_ffff_ffff_fffeu64.to_ne_bytes();
            assert_eq!(
                // SAFETY: writes 8 bytes from a live buffer to our eventfd.
                unsafe { libc::write(call.as_raw_fd(), full.as_ptr().cast(), 8) },
                8
            );
            assert!(
                fe.call(req::SET_VRING_CALL, &i.to_le_bytes(), &[call.as_raw_fd()])
                    .unwrap()
            );
            // The port made it non-blocking; clear that again on the shared description.
            // SAFETY: fcntl on our own fd.
            unsafe {
                let fl = libc::fcntl(call.as_raw_fd(), libc::F_GETFL);
                assert!(fl & libc::O_NONBLOCK != 0, "the port sets O_NONBLOCK");
                assert_eq!(
                    libc::fcntl(call.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK),
                    0
                );
            }
            call
        })
        .collect();
    wait("link up", || v.port.link().up);
    let done = hang_guard("bursts with a full blocking call eventfd");
    let skipped0 = (
        xstat(&*v.port, "rx_q0_call_skipped"),
        xstat(&*v.port, "tx_q0_call_skipped"),
    );
    for i in 0..4u8 {
        guest_sends(&mut v, &mem, &mut txr, i);
    }
    // Guest receive buffers, then packets from the port into them.
    for i in 0..4u16 {
        rxr.desc(i, mem.gpa(0, 0x80000 + 0x800 * i as usize), 0x800, 2, 0); // WRITE
        rxr.push(i);
    }
    let mut b = ferrovia_ethdev::Burst::new();
    for i in 0..4u8 {
        let mut m = v.pool.alloc().unwrap();
        m.append(100).unwrap().fill(0x40 + i);
        b.push(m);
    }
    wait("packets into the guest", || {
        v.tx.tx_burst(&mut v.caches, &mut b);
        b.is_empty() && rxr.used_idx() == 4
    });
    done.store(true, std::sync::atomic::Ordering::Release);
    let skipped = (
        xstat(&*v.port, "rx_q0_call_skipped") - skipped0.0,
        xstat(&*v.port, "tx_q0_call_skipped") - skipped0.1,
    );
    assert!(
        skipped.0 >= 1 && skipped.1 >= 1,
        "calls skipped (rx, tx): {skipped:?}"
    );
    assert_eq!(
        xstat(&*v.port, "rx_errors"),
        0,
        "a skipped call is no packet error"
    );
    drop(fe);
    wait("link down", || !v.port.link().up);
    drop((calls, mem));
    v.serve_good_client();
    by.assert_forwarded_since(by0, "blocking call fds on another port");
    wait(&format!("fd count back to {base}"), || fd_count() == base);
    by.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `max-mem=1` (MiB): a table of 1 MiB runs traffic; a SET_MEM_TABLE of two 1 MiB regions,
/// and an ADD_MEM_REG of a second 1 MiB region next to a running one, are refused by our
/// handler (`vhost_bad_messages` +1), and no fd is left behind.
#[test]
fn memory_tables_larger_than_max_mem_are_refused() {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    ferrovia_pmd::start_control_plane().unwrap();
    let dir = temp_dir("maxmem");
    let mut v = VhostUnderTest::with_args(&dir, "maxmem", ",max-mem=1");
    let base = fd_count();

    let (fe, mem, _rxr, _txr) = guest_up(&mut v);
    drop(fe);
    wait("link down", || !v.port.link().up);
    drop(mem);

    let (_s0, f0, b0) = v.sessions();
    let fe = negotiated(&v);
    let two = GuestMem::new(GPA, &[MEM, MEM]);
    let _ = fe.set_mem_table(&two);
    refused(&v, fe, f0, "SET_MEM_TABLE of 2 MiB");
    assert_eq!(
        v.sessions().2 - b0,
        1,
        "SET_MEM_TABLE of 2 MiB: bad_messages"
    );

    let (_s0, f0, b0) = v.sessions();
    let (fe, mem, _rxr, _txr) = guest_up(&mut v);
    let d = two.descs();
    let _ = fe.send(
        req::ADD_MEM_REG,
        &single_region_payload(&d[1]),
        &[two.regions[1].mem.fd()],
    );
    refused(&v, fe, f0, "ADD_MEM_REG past 1 MiB");
    assert_eq!(
        v.sessions().2 - b0,
        1,
        "ADD_MEM_REG past 1 MiB: bad_messages"
    );
    drop((mem, two));
    // The retired configuration goes at the queues' next bursts.
    v.poll(1);
    let mut b = ferrovia_ethdev::Burst::new();
    v.tx.tx_burst(&mut v.caches, &mut b);
    wait(&format!("fd count back to {base}"), || fd_count() == base);
    let _ = std::fs::remove_dir_all(&dir);
}
