//! A hostile vhost-user frontend truncates the memfd it shared with a real `net_vhost` port
//! while the port polls its rings. Without protection the port's next access raises SIGBUS and
//! the whole process dies. Asserted: the process survives, `vhost_memory_faults` moves by one,
//! the session is ended (`vhost_sessions_failed` +1, link down, socket closed), a real
//! virtio-user client is then served on the same port with payload checks, a second vhost port
//! in the same process keeps forwarding with its own virtio-user client through the attack, and
//! the fd count and free mbufs are back to their starting values.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ferrovia_ethdev::{Burst, PortConf};
use support::evil_frontend::{EvilFrontend, GuestMem, SplitLayout, feat};
use support::{VhostUnderTest, fd_count, temp_dir, wait, xstat};

const GPA: u64 = 0x1000_0000;
const MEM: usize = 1 << 20;
const QSZ: u16 = 256;
const HDR: usize = 12;
/// Where packet buffers start in the region (rings are below).
const BUF: usize = 0x40000;

/// Port B and its own virtio-user client, forwarding 8 numbered frames at a time (payload
/// checked) until `stop`; `frames` counts what port B received.
fn forward_on_port_b(
    dir: std::path::PathBuf,
    frames: Arc<AtomicU64>,
    ready: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> (usize, usize) {
    let mut b = VhostUnderTest::new(&dir, "trunc-b");
    let mut vu = ferrovia_pmd::open(
        &format!("net_virtio_user0,path={}", b.sock),
        &PortConf::new(1, b.pool.clone()),
    )
    .unwrap();
    vu.start().unwrap();
    let mut vtx = vu.tx_queue(0).unwrap();
    wait("port B: link up", || b.port.link().up);
    ready.store(true, Ordering::SeqCst);
    let mut round = 0u8;
    while !stop.load(Ordering::SeqCst) {
        let mut out = Burst::new();
        for i in 0..8u8 {
            let mut m = b.pool.alloc().unwrap();
            m.append(64).unwrap().fill(round.wrapping_add(i));
            out.push(m);
        }
        wait("port B: tx", || {
            vtx.tx_burst(&mut b.caches, &mut out);
            out.is_empty()
        });
        let mut got = Burst::new();
        wait("port B: 8 frames", || {
            b.rx.rx_burst(&mut b.caches, &mut got, 32);
            got.len() >= 8
        });
        assert_eq!(got.len(), 8);
        for (i, m) in got.iter().enumerate() {
            assert!(
                m.data().iter().all(|&x| x == round.wrapping_add(i as u8)),
                "port B payload {i}"
            );
        }
        assert!(b.port.link().up, "port B kept its link through the attack");
        frames.fetch_add(got.len() as u64, Ordering::SeqCst);
        round = round.wrapping_add(8);
    }
    drop((vtx, vu));
    wait("port B: link down", || !b.port.link().up);
    let pool = b.pool.clone();
    drop(b);
    (pool.available(), pool.count())
}

/// A 72-byte frame (header + 60 bytes of `fill`) in buffer slot `i`; returns its address.
fn frame(mem: &GuestMem, i: usize, fill: u8) -> u64 {
    let mut b = vec![0u8; HDR];
    b.extend(std::iter::repeat_n(fill, 60));
    mem.write(0, BUF + i * 128, &b);
    mem.gpa(0, BUF + i * 128)
}

#[test]
fn frontend_truncating_its_memory_ends_only_its_session() {
    ferrovia_pmd::start_control_plane().unwrap();
    let dir = temp_dir("truncate");
    let fds0 = fd_count();

    let frames = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let port_b = {
        let (dir, frames, ready, stop) = (dir.clone(), frames.clone(), ready.clone(), stop.clone());
        std::thread::spawn(move || forward_on_port_b(dir, frames, ready, stop))
    };
    wait("port B ready", || ready.load(Ordering::SeqCst));

    let mut a = VhostUnderTest::new(&dir, "trunc-a");
    let (s0, f0, b0) = a.sessions();
    assert_eq!(xstat(&*a.port, "vhost_memory_faults"), 0);

    // The evil guest: one unsealed memfd region with both rings and the packet buffers.
    let mut fe = EvilFrontend::connect(&a.sock);
    fe.handshake(feat::V1 | feat::PROTOCOL, feat::P_REPLY_ACK);
    let mem = GuestMem::new(GPA, &[MEM]);
    assert!(fe.set_mem_table(&mem).unwrap());
    let rxr = SplitLayout::new(&mem, 0, 0, QSZ);
    let mut txr = SplitLayout::new(&mem, 0, 0x10000, QSZ);
    fe.setup_vring(0, &rxr, true);
    fe.setup_vring(1, &txr, true);
    wait("port A: link up with the evil guest", || a.port.link().up);

    // Honest traffic first: 8 frames, payload checked.
    for i in 0..8u16 {
        txr.desc(i, frame(&mem, i as usize, i as u8 + 1), 72, 0, 0);
        txr.push(i);
    }
    let mut got = Burst::new();
    wait("port A: 8 frames from the evil guest", || {
        a.rx.rx_burst(&mut a.caches, &mut got, 32);
        got.len() >= 8
    });
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.data_len(), 60);
        assert!(m.data().iter().all(|&x| x == i as u8 + 1), "payload {i}");
    }
    drop(got);
    // More frames made available, then the attack while the port polls.
    for i in 8..16u16 {
        txr.desc(i, frame(&mem, i as usize, 0xee), 72, 0, 0);
        txr.push(i);
    }
    let b_before = frames.load(Ordering::SeqCst);
    mem.regions[0].mem.truncate(0);
    // From here on neither the test nor the guest touches `mem`: it is beyond the file's end.
    wait("port A: the fault is recovered and counted", || {
        drop(a.poll(1)); // garbage read from zero pages, if any, is dropped
        xstat(&*a.port, "vhost_memory_faults") == 1
    });
    wait("port A: the session ends", || {
        drop(a.poll(1));
        a.sessions().1 == f0 + 1 && !a.port.link().up
    });
    fe.expect_closed();
    assert_eq!(a.sessions(), (s0 + 1, f0 + 1, b0), "one failed session");
    assert_eq!(xstat(&*a.port, "vhost_memory_faults"), 1);
    drop((rxr, txr, fe, mem));

    // Port B forwarded through the attack and goes on.
    wait("port B keeps forwarding", || {
        frames.load(Ordering::SeqCst) >= b_before + 64
    });

    // The same port serves a well-behaved client.
    a.serve_good_client();
    assert_eq!(a.sessions(), (s0 + 2, f0 + 1, b0));
    assert_eq!(xstat(&*a.port, "vhost_memory_faults"), 1);

    stop.store(true, Ordering::SeqCst);
    let (b_free, b_count) = port_b.join().unwrap();
    assert_eq!(b_free, b_count, "port B's mbufs all back in its pool");
    let pool = a.pool.clone();
    drop(a);
    assert_eq!(pool.available(), pool.count(), "port A's mbufs all back");
    drop(pool);
    wait("fd count back to its start", || fd_count() == fds0);
    let _ = std::fs::remove_dir_all(&dir);
}
