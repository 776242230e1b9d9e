//! Fuzzing entry points. Each takes arbitrary bytes from a peer's point of view and drives the
//! code that parses them; none may panic, hang or touch memory outside what the peer shared.
//! Used by the cargo-fuzz targets in `fuzz/` and by the corpus replay test of this crate.

use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, OnceLock};

use ferrovia_memory::{Burst, Mempool, MempoolConfig, RegionBacking, SharedRegion};
use ferrovia_transport::backend::{BackendHandler, DeviceShared};
use ferrovia_virtqueue::NoSink;
use ferrovia_virtqueue::device::{ActiveVring, DeviceQueue, RingView};
use ferrovia_virtqueue::driver::{DriverOptions, DriverQueue};
use ferrovia_virtqueue::guest_mem::{GuestMemory, RegionSpec};
use ferrovia_virtqueue::layout::{bit, feature};
use ferrovia_virtqueue::packed::PackedRing;
use ferrovia_virtqueue::split::{SplitLayout, SplitRing};
use vhost::vhost_user::BackendReqHandler;

fn pool() -> &'static Mempool {
    static P: OnceLock<Mempool> = OnceLock::new();
    P.get_or_init(|| {
        Mempool::new(MempoolConfig {
            name: "fuzz".into(),
            count: 2048,
            cache_size: 64,
            ..Default::default()
        })
        .expect("fuzz pool")
    })
}

/// First byte that selects the chunked form of [`vhost_user_messages`] (with fds).
pub const WITH_FDS: u8 = 0xfd;

/// Feeds `data` as a stream of vhost-user messages to our backend request handler (through
/// rust-vmm's parser) until the stream ends or the session is refused.
///
/// Two input forms:
/// * raw: the bytes are the stream, sent without fds;
/// * chunked, when the first byte is [`WITH_FDS`]: then a sequence of chunks
///   `[ctl: u8][len: u16 le][len bytes]`, each sent with one `sendmsg` carrying `ctl & 3`
///   fds: memfds of `4096 << ((ctl >> 2) & 7)` bytes, or pipes when `ctl & 0x20` is set. This
///   reaches SET_MEM_TABLE, ADD_MEM_REG and the ring address checks, which need fds.
///
/// Returns how many messages were handled before the session ended.
pub fn vhost_user_messages(data: &[u8]) -> usize {
    let (a, b) = UnixStream::pair().expect("socketpair");
    let shared = DeviceShared::new(2);
    let handler = Arc::new(Mutex::new(BackendHandler::new("fuzz", shared)));
    let mut req = BackendReqHandler::from_stream(b, handler.clone());
    // The peer writes everything then hangs up; the backend reads until it fails.
    match data.split_first() {
        Some((&WITH_FDS, mut rest)) => {
            while rest.len() >= 3 {
                let ctl = rest[0];
                let len = (u16::from_le_bytes([rest[1], rest[2]]) as usize).min(rest.len() - 3);
                let (chunk, tail) = rest[3..].split_at(len);
                rest = tail;
                let fds: Vec<std::os::fd::OwnedFd> = (0..ctl & 3)
                    .map(|_| {
                        if ctl & 0x20 != 0 {
                            pipe_fd()
                        } else {
                            memfd(4096 << ((ctl >> 2) & 7))
                        }
                    })
                    .collect();
                if send_with_fds(&a, chunk, &fds).is_err() {
                    break;
                }
            }
        }
        _ => {
            let _ = (&a).write_all(data);
        }
    }
    let _ = a.shutdown(std::net::Shutdown::Write);
    let mut handled = 0;
    while handled < 1024 && req.handle_request().is_ok() {
        handled += 1;
    }
    handler.lock().unwrap_or_else(|p| p.into_inner()).reset();
    handled
}

fn memfd(len: usize) -> std::os::fd::OwnedFd {
    let r = SharedRegion::new("fuzz-msg", len, RegionBacking::Memfd).expect("memfd");
    // SAFETY: dup of a valid fd; the duplicate is owned by the OwnedFd.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(libc::dup(r.fd())) }
}

fn pipe_fd() -> std::os::fd::OwnedFd {
    let mut p = [0; 2];
    // SAFETY: p has room for two fds.
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    // SAFETY: both fds are fresh and ours; the write end is closed at once.
    unsafe {
        drop(std::os::fd::OwnedFd::from_raw_fd(p[1]));
        std::os::fd::OwnedFd::from_raw_fd(p[0])
    }
}

/// One `sendmsg` of `bytes` with `fds` attached (`SCM_RIGHTS`).
fn send_with_fds(
    sock: &UnixStream,
    bytes: &[u8],
    fds: &[std::os::fd::OwnedFd],
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let fd_bytes = std::mem::size_of_val(raw.as_slice()) as u32;
    let space = if raw.is_empty() {
        0
    } else {
        // SAFETY: CMSG_SPACE is a pure computation.
        (unsafe { libc::CMSG_SPACE(fd_bytes) }) as usize
    };
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: msghdr is plain data; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !raw.is_empty() {
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer has room for one cmsg with `raw`.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(fd_bytes) as _;
            std::ptr::copy_nonoverlapping(raw.as_ptr(), libc::CMSG_DATA(c).cast(), raw.len());
        }
    }
    // SAFETY: msg describes valid buffers.
    if unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

const MEM: usize = 64 * 1024;
const GPA: u64 = 0x4000_0000;

/// Guest memory holding `data` (repeated), mapped the way a backend maps a peer's region.
fn guest(data: &[u8]) -> (SharedRegion, Arc<GuestMemory>) {
    let r = SharedRegion::new("fuzz-guest", MEM, RegionBacking::Memfd).expect("memfd");
    // SAFETY: the region is MEM bytes and ours.
    let s = unsafe { std::slice::from_raw_parts_mut(r.base(), MEM) };
    if !data.is_empty() {
        for (i, b) in s.iter_mut().enumerate() {
            *b = data[i % data.len()];
        }
    }
    // SAFETY: dup of a valid fd, owned by the File.
    let f = unsafe { File::from_raw_fd(libc::dup(r.fd())) };
    let m = GuestMemory::map(vec![RegionSpec {
        guest_phys_addr: GPA,
        size: MEM as u64,
        user_addr: r.base() as u64,
        mmap_offset: 0,
        file: f,
    }])
    .expect("map guest");
    (r, Arc::new(m))
}

/// The device side walks rings and chains a hostile driver wrote: the first bytes pick the
/// ring layout, size, features and start positions; the rest is the guest memory.
pub fn device_walk(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let (ctl, rest) = data.split_at(8);
    let packed = ctl[0] & 1 != 0;
    // Split rings up to 256 entries, so that chains longer than MAX_SEGS (64) buffers and
    // loops through them are reachable.
    let size: u16 = if packed {
        (ctl[1] as u16 % 64) + 1
    } else {
        1 << (ctl[1] % 9)
    };
    let mut features = bit(feature::F_VERSION_1);
    if ctl[2] & 1 != 0 {
        features |= bit(feature::NET_F_MRG_RXBUF);
    }
    if ctl[2] & 2 != 0 {
        features |= bit(feature::RING_F_INDIRECT_DESC);
    }
    if ctl[2] & 4 != 0 {
        features |= bit(feature::RING_F_EVENT_IDX);
    }
    if packed {
        features |= bit(feature::F_RING_PACKED);
    }
    let base = u16::from_le_bytes([ctl[3], ctl[4]]);
    let (_r, mem) = guest(rest);
    // Rings at fixed offsets; buffers anywhere the descriptors point.
    let b = _r.base();
    let ring = if packed {
        // SAFETY: offsets 0, 0x2000, 0x2100 plus their sizes lie inside the 64 KiB region.
        unsafe { PackedRing::new(b, b.add(0x2000), b.add(0x2100), size) }.map(RingView::Packed)
    } else {
        // SAFETY: as above: desc 16*size <= 4 KiB, avail and used small, all inside.
        unsafe { SplitRing::new(b, b.add(0x2000), b.add(0x3000), size) }.map(RingView::Split)
    };
    let Ok(ring) = ring else { return };
    let active = Arc::new(ActiveVring {
        ring,
        mem,
        features,
        base,
        call: None,
    });
    let mut q = DeviceQueue::new(active.clone(), base, base);
    let mut cache = pool().cache();
    let mut out = Burst::new();
    q.dequeue_burst(&mut cache, &mut out, 64, 9728, 0, &NoSink);
    cache.free_all(out.drain(..));
    // And the other direction on the same ring: deliver frames into the guest's buffers.
    let mut q = DeviceQueue::new(active, base, base);
    let mut pk = Burst::new();
    // Four one-segment frames first (the device's batched line path), then a mix.
    for len in [60usize, 1514, 64, 128, 9000, 2000, 60, 60] {
        let Some(mut m) = cache.alloc() else { break };
        let mut left = len;
        let k = left.min(m.tailroom());
        m.append(k);
        left -= k;
        while left > 0 {
            let Some(mut s) = cache.alloc() else { break };
            let k = left.min(s.tailroom());
            s.append(k);
            left -= k;
            m.chain(s);
        }
        pk.push(m);
    }
    q.enqueue_burst(&mut cache, &mut pk, &NoSink);
    cache.free_all(pk.drain(..));
}

/// A hostile device against our driver queues: an Rx queue refilled and a Tx queue with 6
/// packets posted, in `area` (two queue areas), `data[0]` choosing mergeable buffers (bit 0)
/// and IN_ORDER (bit 1); `device_writes` then overwrites what a device writes in both rings
/// (given the Rx and Tx queues and the start address of each one's area), and
/// receive/reclaim run.
fn driver_against_hostile_device(
    data0: u8,
    packed: bool,
    device_writes: impl FnOnce([(&DriverQueue, usize); 2]),
) {
    let size = 16u16;
    let mrg = data0 & 1 != 0;
    let mut features = bit(feature::F_VERSION_1);
    if packed {
        features |= bit(feature::F_RING_PACKED);
    }
    if mrg {
        features |= bit(feature::NET_F_MRG_RXBUF);
    }
    if data0 & 2 != 0 {
        // The in-order layouts trust the order more than the ids: fuzz them too.
        features |= bit(feature::F_IN_ORDER);
    }
    let qbytes = DriverQueue::area_size(size, packed);
    let area = SharedRegion::new("fuzz-drv", qbytes * 2, RegionBacking::Memfd).expect("memfd");
    let opts = DriverOptions {
        features,
        max_rx_pkt: 9018,
    };
    // SAFETY: the area holds two queue areas and outlives both queues (dropped at the end).
    let mut rx = unsafe { DriverQueue::new(area.base(), size, packed, opts) }.expect("rx");
    // SAFETY: as above.
    let mut tx =
        unsafe { DriverQueue::new(area.base().add(qbytes), size, packed, opts) }.expect("tx");
    let mut cache = pool().cache();
    rx.set_rx_chain_for(if mrg { 0 } else { 9018 }, 2048);
    rx.refill(&mut cache, &NoSink);
    let mut b = Burst::new();
    for _ in 0..6 {
        if let Some(mut m) = cache.alloc() {
            m.append(100);
            b.push(m);
        }
    }
    tx.transmit(&mut cache, &mut b, &NoSink);
    cache.free_all(b.drain(..));
    let base = area.base() as usize;
    device_writes([(&rx, base), (&tx, base + qbytes)]);
    let mut out = Burst::new();
    for _ in 0..3 {
        rx.receive(&mut cache, &mut out, 32, 0, &NoSink);
        for m in out.iter() {
            // Whatever came out must be a well-formed chain within the pool's buffers.
            assert!(m.pkt_len() <= 9018 + 12);
            let _ = m.to_vec();
        }
        cache.free_all(out.drain(..));
        tx.reclaim(&mut cache, &NoSink);
    }
    rx.drain(&mut cache);
    tx.drain(&mut cache);
}

/// The split driver reads a used ring a hostile device wrote: the fuzz bytes after the first
/// overwrite both used rings (flags, idx, elements).
pub fn driver_used(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let l = SplitLayout::new(16);
    driver_against_hostile_device(data[0], false, |queues| {
        for (_, start) in queues {
            let used = (start + l.used) as *mut u8;
            let n = (6 + 8 * 16).min(data.len() - 1);
            // SAFETY: the used ring of 16 entries is 6 + 8*16 bytes inside the queue's area.
            unsafe { std::ptr::copy_nonoverlapping(data[1..].as_ptr(), used, n) };
        }
    });
}

/// The packed driver reads descriptors a hostile device wrote: the fuzz bytes after the
/// first become the id, length and wrap bit of every descriptor slot of both rings.
pub fn driver_packed_used(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    driver_against_hostile_device(data[0], true, |queues| {
        let mut bytes = data[1..].iter().copied().cycle();
        for (q, _) in queues {
            let DriverQueue::Packed(q) = q else {
                unreachable!("packed queues")
            };
            for i in 0..16u16 {
                let mut v = [0u8; 8];
                for b in v.iter_mut() {
                    *b = bytes.next().unwrap_or(0);
                }
                let id = u16::from_le_bytes([v[0], v[1]]) % 20;
                let len = u32::from_le_bytes([v[2], v[3], v[4], v[5]]) % 20000;
                q.ring().write_used(i, id, len, v[6] & 1 != 0);
            }
        }
    });
}
