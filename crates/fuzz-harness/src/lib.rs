//! Fuzzing entry points. Each takes arbitrary bytes from a peer's point of view and drives the
//! code that parses them; none may panic, hang or touch memory outside what the peer shared.
//! Used by the cargo-fuzz targets in `fuzz/` and by the corpus replay test of this crate.

use std::fs::File;
use std::io::{Read, Write};
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
use ferrovia_virtqueue::packed::{PackedRing, Pos};
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
    // The peer writes everything then hangs up; the backend reads until it fails. The peer's
    // writes never wait: many small messages with fds fill the socket's queue before the
    // backend reads any (a blocking send then waited forever: the harness hung, found by the
    // fuzzer), so what does not fit is simply not sent.
    a.set_nonblocking(true).expect("non-blocking socketpair");
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
/// ring layout, size, features and start positions; the rest is the guest memory. The ring is
/// dequeued from, enqueued to, and (split) served as a virtio-net control queue.
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
    let mut q = DeviceQueue::new(active.clone(), base, base);
    let mut pk = Burst::new();
    // Four one-segment frames first (the device's batched line path), then a mix.
    for len in [60usize, 1514, 64, 128, 9000, 2000, 60, 60] {
        let Some(m) = frame_of(&mut cache, len) else {
            break;
        };
        pk.push(m);
    }
    q.enqueue_burst(&mut cache, &mut pk, &NoSink);
    cache.free_all(pk.drain(..));
    // And the same ring as a control queue (split rings only): every chain taken, parsed
    // and answered.
    if let DeviceQueue::Split(mut d) = DeviceQueue::new(active, base, base) {
        let mut buf = [0u8; ferrovia_ethdev::ctrl::MAX_CTRL_BYTES];
        for _ in 0..64 {
            let Some(c) = d.ctrl_pop(&mut buf, &NoSink) else {
                break;
            };
            assert!(c.len <= buf.len());
            let _ = ferrovia_ethdev::ctrl::CtrlRequest::parse(&buf[..c.len]);
            d.ctrl_complete(c, ferrovia_ethdev::ctrl::ACK_ERR, &NoSink);
        }
    }
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

/// Packed descriptor flag bits the hostile driver sets (virtio 1.1).
const PK_NEXT: u16 = 1;
const PK_WRITE: u16 = 2;
const PK_INDIRECT: u16 = 4;
const PK_AVAIL: u16 = 1 << 7;
const PK_USED: u16 = 1 << 15;
/// Offsets of the packed layout of [`device_walk_packed`] inside its guest region.
const PK_DRIVER_EVENT: usize = 0x2000;
const PK_DEVICE_EVENT: usize = 0x2004;
const PK_TABLES: usize = 0x3000;
const PK_BUFS: usize = 0x8000;

/// One packed descriptor (or indirect table entry) decoded from 8 fuzz bytes: the address is
/// chosen among the buffer area, the indirect table area, an edge of the region (straddling
/// it) and raw bytes; flags carry NEXT/WRITE/INDIRECT and the avail/used bits, which follow
/// the expected wrap counter unless the input flips them.
fn packed_desc_from(b: &[u8; 8], wrap: bool) -> (u64, u32, u16, u16) {
    let sel = b[0];
    let off = u16::from_le_bytes([b[1], b[2]]) as u64;
    let addr = match sel >> 6 {
        0 => GPA + PK_BUFS as u64 + off % (MEM - PK_BUFS) as u64,
        1 => GPA + PK_TABLES as u64 + ((off % 0x5000) & !0xf) + ((sel as u64 >> 5) & 1),
        2 => GPA + MEM as u64 - (off & 0xff),
        _ => u64::from_le_bytes([b[1], b[2], b[1], b[2], b[3], b[4], b[5], b[6]]),
    };
    let len = match sel >> 4 & 3 {
        0 => u16::from_le_bytes([b[3], b[4]]) as u32 % 2048,
        1 => u16::from_le_bytes([b[3], b[4]]) as u32 & !0xf,
        2 => 0,
        _ => u32::from_le_bytes([b[3], b[4], b[5], b[6]]),
    };
    let id = u16::from_le_bytes([b[5], b[6]]) % 600;
    let mut flags = (sel & 7) as u16 & (PK_NEXT | PK_WRITE | PK_INDIRECT);
    let avail = wrap ^ (b[7] & 1 != 0);
    let used = !wrap ^ (b[7] & 2 != 0);
    if avail {
        flags |= PK_AVAIL;
    }
    if used {
        flags |= PK_USED;
    }
    (addr, len, id, flags)
}

/// The device side walks a packed ring a hostile driver built: the first 6 bytes pick the ring
/// size (1 to 512), the features (mergeable, indirect, event idx, in-order) and the start
/// position with its wrap counter; each following 8 bytes become one descriptor slot (see
/// `packed_desc_from`), then indirect table entries; the guest memory behind them is filled
/// with the input. `dequeue_burst` (the driver's transmit ring) then `enqueue_burst` (its
/// receive ring) run on it, twice each so that positions move on across a wrap.
pub fn device_walk_packed(data: &[u8]) {
    if data.len() < 6 {
        return;
    }
    let (ctl, rest) = data.split_at(6);
    let size = u16::from_le_bytes([ctl[0], ctl[1]]) % 512 + 1;
    let mut features = bit(feature::F_VERSION_1) | bit(feature::F_RING_PACKED);
    for (i, f) in [
        feature::NET_F_MRG_RXBUF,
        feature::RING_F_INDIRECT_DESC,
        feature::RING_F_EVENT_IDX,
        feature::F_IN_ORDER,
    ]
    .into_iter()
    .enumerate()
    {
        if ctl[2] & (1 << i) != 0 {
            features |= bit(f);
        }
    }
    let start = Pos {
        idx: u16::from_le_bytes([ctl[3], ctl[4]]) % size,
        wrap: ctl[5] & 1 == 0,
    };
    let (r, mem) = guest(rest);
    let b = r.base();
    let mut chunks = rest.chunks_exact(8);
    // Ring slots from the start position on (so the first ones are what the device reads).
    let mut pos = start;
    for _ in 0..size {
        let Some(c) = chunks.next() else { break };
        let (addr, len, id, flags) = packed_desc_from(c.try_into().expect("8 bytes"), pos.wrap);
        write_packed(b, pos.idx as usize * 16, addr, len, id, flags);
        pos.advance(1, size);
    }
    // Then indirect table entries (flags' avail/used bits do not matter there).
    for (i, c) in chunks.take((0x5000) / 16).enumerate() {
        let (addr, len, id, flags) = packed_desc_from(c.try_into().expect("8 bytes"), true);
        write_packed(b, PK_TABLES + 16 * i, addr, len, id, flags);
    }
    // SAFETY: the descriptor table (16 * 512 bytes at most) and both event areas lie inside
    // the 64 KiB region, which outlives the queue.
    let ring = unsafe { PackedRing::new(b, b.add(PK_DRIVER_EVENT), b.add(PK_DEVICE_EVENT), size) };
    let Ok(ring) = ring else { return };
    let base = start.encode();
    let active = Arc::new(ActiveVring {
        ring: RingView::Packed(ring),
        mem,
        features,
        base,
        call: None,
    });
    let mut cache = pool().cache();
    let mut q = DeviceQueue::new(active.clone(), base, base);
    let mut out = Burst::new();
    for _ in 0..2 {
        q.dequeue_burst(&mut cache, &mut out, 64, 9728, 0, &NoSink);
        for m in out.iter() {
            assert!(m.pkt_len() <= 9728, "a frame over the maximum came out");
        }
        cache.free_all(out.drain(..));
    }
    let mut q = DeviceQueue::new(active, base, base);
    for _ in 0..2 {
        let mut pk = Burst::new();
        for len in [60usize, 1514, 64, 128, 9000, 2000, 60, 60] {
            if let Some(m) = frame_of(&mut cache, len) {
                pk.push(m);
            }
        }
        q.enqueue_burst(&mut cache, &mut pk, &NoSink);
        cache.free_all(pk.drain(..));
    }
}

/// A frame of `len` bytes in as many mbufs as it takes (fewer if the pool runs dry).
fn frame_of(cache: &mut ferrovia_memory::MbufCache, len: usize) -> Option<ferrovia_memory::Mbuf> {
    let mut m = cache.alloc()?;
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
    Some(m)
}

/// Writes one 16-byte packed descriptor at `off` of the region at `base` (flags last).
fn write_packed(base: *mut u8, off: usize, addr: u64, len: u32, id: u16, flags: u16) {
    assert!(off + 16 <= MEM);
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&len.to_le_bytes());
    d[12..14].copy_from_slice(&id.to_le_bytes());
    d[14..].copy_from_slice(&flags.to_le_bytes());
    // SAFETY: off + 16 <= MEM, checked above; the region is ours.
    unsafe { std::ptr::copy_nonoverlapping(d.as_ptr(), base.add(off), 16) };
}

/// vhost-user request codes that [`vhost_user_sequence`] encodes.
mod code {
    pub const SET_OWNER: u32 = 3;
    pub const GET_FEATURES: u32 = 1;
    pub const SET_FEATURES: u32 = 2;
    pub const RESET_OWNER: u32 = 4;
    pub const SET_MEM_TABLE: u32 = 5;
    pub const SET_VRING_NUM: u32 = 8;
    pub const SET_VRING_ADDR: u32 = 9;
    pub const SET_VRING_BASE: u32 = 10;
    pub const GET_VRING_BASE: u32 = 11;
    pub const SET_VRING_KICK: u32 = 12;
    pub const SET_VRING_CALL: u32 = 13;
    pub const SET_VRING_ERR: u32 = 14;
    pub const GET_PROTOCOL_FEATURES: u32 = 15;
    pub const SET_PROTOCOL_FEATURES: u32 = 16;
    pub const GET_QUEUE_NUM: u32 = 17;
    pub const SET_VRING_ENABLE: u32 = 18;
    pub const GET_MAX_MEM_SLOTS: u32 = 36;
    pub const ADD_MEM_REG: u32 = 37;
    pub const REM_MEM_REG: u32 = 38;
}

/// Number of operation kinds [`vhost_user_sequence`] decodes (the first byte of each
/// operation, modulo this).
pub const SEQ_OPS: u8 = 20;

/// Reads fuzz bytes for [`vhost_user_sequence`]; zeros once the input is used up.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        self.u32() as u64 | (self.u32() as u64) << 32
    }
}

/// Frontend address of memory slot `s` (the fuzzer's regions live at these addresses).
fn seq_uva(s: u8) -> u64 {
    0x7f00_0000_0000 + (s as u64 & 3) * 0x1000_0000
}

/// One region of a SET_MEM_TABLE / ADD_MEM_REG / REM_MEM_REG: the 32-byte descriptor and
/// the fd to attach (None: no fd).
fn seq_region(c: &mut Cursor) -> ([u8; 32], Option<std::os::fd::OwnedFd>) {
    let s = c.u8();
    let k = c.u8();
    let size: u64 = [0x10000, 0x40000, 0x100000, 0][(k & 3) as usize];
    let gpa = match k >> 2 & 3 {
        0 => (s as u64 & 3) * 0x1000_0000,
        1 => 0,
        2 => u64::MAX - 0xfff,
        _ => c.u64(),
    };
    let offset = match k >> 4 & 3 {
        0 => 0,
        1 => 0x1000,
        2 => size,
        _ => c.u64(),
    };
    let fd = match k >> 6 {
        0 | 1 => Some(memfd(
            (size.saturating_add(offset) as usize).clamp(4096, 4 << 20),
        )),
        2 => Some(memfd(4096)),
        _ => {
            if s & 0x80 != 0 {
                Some(pipe_fd())
            } else {
                None
            }
        }
    };
    let mut d = [0u8; 32];
    for (i, x) in [gpa, size, seq_uva(s), offset].into_iter().enumerate() {
        d[8 * i..8 * i + 8].copy_from_slice(&x.to_le_bytes());
    }
    (d, fd)
}

/// A vring index: mostly 0 or 1 (the fuzzer's device has 2 queue pairs: 0 to 3 valid).
fn seq_index(c: &mut Cursor) -> u32 {
    let b = c.u8();
    match b >> 6 {
        0 | 1 => (b & 3) as u32,
        2 => (b & 7) as u32,
        _ => c.u32(),
    }
}

/// An fd for SET_VRING_KICK/CALL/ERR: an eventfd, a pipe, a memfd, or none (with or without
/// the no-fd flag, chosen by the caller).
fn seq_event_fd(k: u8) -> Option<std::os::fd::OwnedFd> {
    match k & 3 {
        0 | 1 => {
            // SAFETY: eventfd returns a fresh fd or -1.
            let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            // SAFETY: a fresh fd we own.
            (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
        }
        2 => Some(pipe_fd()),
        _ => None,
    }
}

/// Encodes one operation: (request, flags, payload, fds); None for the end of the input.
fn seq_op(c: &mut Cursor) -> Option<(u32, u32, Vec<u8>, Vec<std::os::fd::OwnedFd>)> {
    if c.0.is_empty() {
        return None;
    }
    let op = c.u8();
    // Version 1, and NEED_REPLY when the high bit is set.
    let flags = 1 | if op & 0x80 != 0 { 0x8 } else { 0 };
    let mut p = Vec::new();
    let mut fds = Vec::new();
    let state = |p: &mut Vec<u8>, i: u32, n: u32| {
        p.extend(i.to_le_bytes());
        p.extend(n.to_le_bytes());
    };
    let kind = (op & 0x7f) % SEQ_OPS;
    let req = match kind {
        0 => code::SET_OWNER,
        1 => code::GET_FEATURES,
        2 => {
            // Offered bits mostly; sometimes one never offered.
            let sel = c.u16();
            let bits = [0u32, 15, 28, 29, 30, 32, 34, 35, 22, 5, 63];
            let mut f = 0u64;
            for (i, b) in bits.iter().enumerate() {
                if sel & (1 << i) != 0 {
                    f |= 1 << b;
                }
            }
            p.extend(f.to_le_bytes());
            code::SET_FEATURES
        }
        3 => code::GET_PROTOCOL_FEATURES,
        4 => {
            let sel = c.u8();
            let bits = [0u32, 3, 15, 16, 1, 17];
            let mut f = 0u64;
            for (i, b) in bits.iter().enumerate() {
                if sel & (1 << i) != 0 {
                    f |= 1 << b;
                }
            }
            p.extend(f.to_le_bytes());
            code::SET_PROTOCOL_FEATURES
        }
        5 => {
            let n = c.u8() % 4;
            p.extend((n as u32).to_le_bytes());
            p.extend(0u32.to_le_bytes());
            for _ in 0..n {
                let (d, fd) = seq_region(c);
                p.extend(d);
                fds.extend(fd);
            }
            code::SET_MEM_TABLE
        }
        6 | 7 => {
            let (d, fd) = seq_region(c);
            p.extend(0u64.to_le_bytes());
            p.extend(d);
            fds.extend(fd);
            if kind == 6 {
                code::ADD_MEM_REG
            } else {
                code::REM_MEM_REG
            }
        }
        8 => {
            let i = seq_index(c);
            let k = c.u8();
            let num = match k & 7 {
                0 => 256,
                1 => 16,
                2 => 1,
                3 => 32768,
                4 => 0,
                5 => 255,
                6 => 32769,
                _ => c.u32(),
            };
            state(&mut p, i, num);
            code::SET_VRING_NUM
        }
        9 => {
            let i = seq_index(c);
            let k = c.u8();
            let num = if k & 1 == 0 { (k >> 1) as u32 } else { c.u32() };
            state(&mut p, i, num);
            code::SET_VRING_BASE
        }
        10 => {
            let i = seq_index(c);
            let k = c.u8();
            p.extend(i.to_le_bytes());
            p.extend((if k & 0x80 != 0 { 1u32 } else { 0 }).to_le_bytes());
            // desc, used, avail: inside a slot's region (aligned or not) or raw.
            for _ in 0..3 {
                let s = c.u8();
                let a = match s >> 6 {
                    0 | 1 => seq_uva(s) + (c.u16() as u64 & !0xf),
                    2 => seq_uva(s) + c.u16() as u64,
                    _ => c.u64(),
                };
                p.extend(a.to_le_bytes());
            }
            p.extend(0u64.to_le_bytes());
            code::SET_VRING_ADDR
        }
        11 => {
            let i = seq_index(c);
            state(&mut p, i, 0);
            code::GET_VRING_BASE
        }
        12..=14 => {
            let i = seq_index(c);
            let k = c.u8();
            let fd = seq_event_fd(k);
            let nofd = if fd.is_none() == (k & 4 == 0) {
                0x100
            } else {
                0
            };
            p.extend((i as u64 | nofd).to_le_bytes());
            fds.extend(fd);
            [
                code::SET_VRING_KICK,
                code::SET_VRING_CALL,
                code::SET_VRING_ERR,
            ][(kind - 12) as usize]
        }
        15 => {
            let i = seq_index(c);
            let k = c.u8();
            state(&mut p, i, (k % 3) as u32);
            code::SET_VRING_ENABLE
        }
        16 => code::GET_QUEUE_NUM,
        17 => code::GET_MAX_MEM_SLOTS,
        18 => code::RESET_OWNER,
        _ => {
            // Any request code with a short raw payload.
            let r = c.u8() as u32;
            let n = c.u8() % 24;
            p.extend((0..n).map(|_| c.u8()));
            r
        }
    };
    Some((req, flags, p, fds))
}

/// Drives our backend request handler through a sequence of well-formed vhost-user messages
/// decoded from `data`, one at a time: each operation is a request (its first byte's low 7 bits,
/// modulo [`SEQ_OPS`]; the high bit asks for a REPLY_ACK) with fields chosen from values that matter
/// (offered and never-offered features, vring indexes in and out of range, ring sizes,
/// memory regions of memfds of the right size or too short, pipes or no fd, overlapping or
/// overflowing guest addresses, ring addresses inside a region, misaligned or raw, eventfds or
/// pipes for kick/call/err), so that SET_MEM_TABLE, ADD/REM_MEM_REG and SET_VRING_* are
/// reached in every order. Like the serving loop, SET_VRING_ENABLE before SET_FEATURES goes to
/// the early path. After the sequence, every vring the handler published is walked by the
/// device side (both directions), which must stay inside what was mapped. Returns how many
/// messages were accepted before the session ended.
pub fn vhost_user_sequence(data: &[u8]) -> usize {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).expect("nonblocking");
    let shared = DeviceShared::new(2);
    let handler = Arc::new(Mutex::new(BackendHandler::new("fuzz-seq", shared.clone())));
    let mut req = BackendReqHandler::from_stream(b, handler.clone());
    let mut c = Cursor(data);
    let mut handled = 0;
    let mut reply = [0u8; 4096];
    while handled < 256 {
        let Some((code, flags, payload, fds)) = seq_op(&mut c) else {
            break;
        };
        // As transport/session.rs: only an 8-byte SET_VRING_ENABLE takes the early path.
        let bypass = code == code::SET_VRING_ENABLE
            && payload.len() == 8
            && handler
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .enable_needs_bypass();
        let ok = if bypass {
            let w = |i: usize| u32::from_le_bytes(payload[i..i + 4].try_into().expect("4 bytes"));
            handler
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .early_vring_enable(w(0), w(4))
                .is_ok()
        } else {
            let mut msg = Vec::with_capacity(12 + payload.len());
            msg.extend(code.to_le_bytes());
            msg.extend(flags.to_le_bytes());
            msg.extend((payload.len() as u32).to_le_bytes());
            msg.extend(&payload);
            if send_with_fds(&a, &msg, &fds).is_err() {
                break;
            }
            drop(fds);
            let r = req.handle_request();
            if std::env::var_os("FUZZ_SEQ_DEBUG").is_some() {
                eprintln!("request {code} flags {flags:#x}: {r:?}");
            }
            r.is_ok()
        };
        // Discard replies so that the socket never fills up.
        while matches!((&a).read(&mut reply), Ok(n) if n > 0) {}
        if !ok {
            break;
        }
        handled += 1;
    }
    // Whatever the handler published must be safe to walk.
    let mut cache = pool().cache();
    for (i, v) in shared.vrings.iter().enumerate() {
        let Some(active) = v.cfg.current() else {
            continue;
        };
        let base = active.base;
        let mut q = DeviceQueue::new(active, base, base);
        if i % 2 == 1 {
            let mut out = Burst::new();
            q.dequeue_burst(&mut cache, &mut out, 32, 9728, 0, &NoSink);
            cache.free_all(out.drain(..));
        } else {
            let mut pk = Burst::new();
            if let Some(m) = frame_of(&mut cache, 60) {
                pk.push(m);
            }
            q.enqueue_burst(&mut cache, &mut pk, &NoSink);
            cache.free_all(pk.drain(..));
        }
    }
    handler.lock().unwrap_or_else(|p| p.into_inner()).reset();
    handled
}

/// Feeds `data`, as an Ethernet frame, to the L3 parsers and in-place rewriters of
/// `ferrovia-route` (IPv4 header, TTL decrement, ICMP echo reply, ARP parse and reply, ARP
/// frame building) at the offset the Ethernet header gives and at 14 and 18. None may panic;
/// what a rewriter produces must parse again:
/// * a TTL decrement of a valid header leaves a valid header;
/// * an echo reply is a valid IPv4 ICMP echo reply with a correct ICMP checksum;
/// * an ARP reply parses as the reply to the request.
pub fn l3_parse(data: &[u8]) {
    use ferrovia_route::{arp, eth, ipv4};
    const MAC: arp::Mac = [0x02, 0, 0, 0, 0, 0x99];

    let mut offsets = vec![eth::ETH_HLEN, eth::ETH_HLEN + eth::VLAN_HLEN];
    if let Some((l3, _)) = eth::l3_offset(data) {
        offsets.push(l3);
    }
    let _ = ipv4::internet_checksum(data);
    let _ = ipv4::header_checksum(data);
    for l3 in offsets {
        let valid = ipv4::Ipv4Header::parse(data, l3).ok();
        if let Some(h) = valid {
            let _ = (
                h.options(),
                h.payload(),
                h.src_addr(),
                h.dst_addr(),
                h.is_fragment(),
            );
            assert_eq!(ipv4::internet_checksum(h.header()), 0);
        }
        let mut f = data.to_vec();
        match ipv4::decrement_ttl(&mut f, l3) {
            Ok(ttl) if valid.is_some() => {
                let h = ipv4::Ipv4Header::parse(&f, l3).expect("valid after a TTL decrement");
                assert_eq!(h.ttl(), ttl);
            }
            Ok(_) => {}
            Err(_) => assert_eq!(f, data, "frame changed by a refused TTL decrement"),
        }
        let mut f = data.to_vec();
        match ipv4::icmp_echo_reply(&mut f, l3) {
            Ok(()) => {
                let h = ipv4::Ipv4Header::parse(&f, l3).expect("echo reply is valid IPv4");
                let req = valid.expect("answered a packet that did not parse");
                assert_eq!((h.src(), h.dst()), (req.dst(), req.src()));
                assert_eq!(h.protocol(), ipv4::PROTO_ICMP);
                assert_eq!(h.payload()[0], ipv4::ICMP_ECHO_REPLY);
                assert_eq!(ipv4::internet_checksum(h.payload()), 0, "ICMP checksum");
            }
            Err(_) => assert_eq!(f, data, "frame changed by a refused echo reply"),
        }
        let req = arp::parse(data, l3);
        let mut f = data.to_vec();
        match arp::reply_in_place(&mut f, l3, MAC, |a| a.octets()[3] & 1 == 0) {
            Ok(true) => {
                let req = req.expect("answered an ARP packet that did not parse");
                let rep = arp::parse(&f, l3).expect("ARP reply parses");
                assert_eq!(rep.op, arp::ArpOp::Reply);
                assert_eq!((rep.sender_mac, rep.sender_ip), (MAC, req.target_ip));
                assert_eq!(
                    (rep.target_mac, rep.target_ip),
                    (req.sender_mac, req.sender_ip)
                );
                assert_eq!(f.len(), data.len());
            }
            Ok(false) | Err(_) => assert_eq!(f, data, "frame changed without a reply"),
        }
    }
    // Building into a buffer of any size either fits or says so.
    let mut buf = vec![0u8; data.len() % 80];
    let tci = data.first().map(|&b| u16::from(b) << 4);
    let ip = |i: usize| {
        std::net::Ipv4Addr::from(
            data.get(i..i + 4)
                .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        )
    };
    if let Ok(n) = arp::build_request(&mut buf, tci, MAC, ip(1), ip(5)) {
        let (l3, ty) = eth::l3_offset(&buf[..n]).expect("built frame has an L3 offset");
        assert_eq!(ty, eth::ETHERTYPE_ARP);
        let p = arp::parse(&buf[..n], l3).expect("built request parses");
        assert_eq!((p.op, p.target_ip), (arp::ArpOp::Request, ip(5)));
    }
    if let Ok(n) = arp::build_gratuitous(&mut buf, None, MAC, ip(1)) {
        assert!(
            arp::parse(&buf[..n], 14)
                .expect("gratuitous parses")
                .is_gratuitous()
        );
    }
}

/// The switch's packet path against arbitrary frames from its ports.
mod switch_env {
    use std::sync::Arc;

    use crossbeam_queue::ArrayQueue;
    use ferrovia_ethdev::Burst;
    use ferrovia_memory::{LcoreCaches, Mempool, MempoolConfig};
    use ferrovia_vswitch::config::RouterInterfaceConfig;
    use ferrovia_vswitch::counters::PmdCounters;
    use ferrovia_vswitch::fdb::FdbWriter;
    use ferrovia_vswitch::pipeline::{BurstCtx, LearnRequest, Pipeline};
    use ferrovia_vswitch::router::RouterState;
    use ferrovia_vswitch::snapshot::{BridgeView, PortView, Snapshot};
    use ferrovia_vswitch::vlan::{VlanConfig, VlanMode};

    /// Ports of the fuzzed bridge: an access port on VLAN 10, another on VLAN 20, a trunk of
    /// 10 and 20 with native VLAN 1, and a trunk of everything.
    pub const PORTS: u16 = 4;

    pub struct Env {
        pub pool: Mempool,
        pub caches: LcoreCaches,
        pub pipeline: Pipeline,
        pub learn: Arc<ArrayQueue<LearnRequest>>,
        pub fdb: FdbWriter,
        pub router: RouterState,
        pub counters: PmdCounters,
        pub generation: u64,
    }

    impl Env {
        pub fn new() -> Env {
            let pool = Mempool::new(MempoolConfig {
                name: "fuzz-switch".into(),
                count: 1024,
                cache_size: 32,
                ..Default::default()
            })
            .expect("pool");
            let learn = Arc::new(ArrayQueue::new(64));
            let mut router = RouterState::default();
            for (name, vlan, addr) in [("a", 10, "10.0.1.1/24"), ("b", 20, "10.0.2.1/24")] {
                router
                    .add_interface(
                        &RouterInterfaceConfig {
                            name: name.into(),
                            bridge: "br0".into(),
                            vlan,
                            address: addr.into(),
                            mac: None,
                        },
                        0,
                    )
                    .expect("interface");
            }
            router.add_route("10.9.0.0/16", "10.0.2.7").expect("route");
            router.sync_table().expect("table");
            Env {
                pipeline: Pipeline::new(learn.clone(), pool.clone()),
                pool,
                caches: LcoreCaches::new(),
                learn,
                fdb: FdbWriter::new(32),
                router,
                counters: PmdCounters::default(),
                generation: 0,
            }
        }

        /// Forgets what earlier cases learned.
        pub fn reset(&mut self) {
            self.fdb = FdbWriter::new(32);
            self.pipeline = Pipeline::new(self.learn.clone(), self.pool.clone());
            self.router.clear_neighbours();
            while self.learn.pop().is_some() {}
            self.generation += 1;
        }

        pub fn snapshot(&self) -> Snapshot {
            let modes = [
                VlanConfig {
                    tag: Some(10),
                    ..Default::default()
                },
                VlanConfig {
                    tag: Some(20),
                    ..Default::default()
                },
                VlanConfig {
                    trunks: vec![10, 20],
                    native: Some(1),
                    ..Default::default()
                },
                VlanConfig::default(),
            ];
            Snapshot {
                ports: modes
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        Some(PortView {
                            slot: i as u16,
                            bridge: 0,
                            vlan: VlanMode::from_config(m).expect("valid"),
                            max_frame: 1522,
                        })
                    })
                    .collect(),
                bridges: vec![Some(BridgeView {
                    id: 0,
                    fdb: self.fdb.table(),
                    members: (0..PORTS).collect(),
                    router: self.router.view_for(0),
                })],
            }
        }
    }

    pub fn drain(env: &mut Env) -> usize {
        let mut n = 0;
        for slot in std::mem::take(&mut env.pipeline.dirty) {
            if let Some(b) = env.pipeline.out[slot as usize].as_mut() {
                b.listed = false;
                n += b.pkts.len();
                env.caches.free_all(b.pkts.drain(..));
            }
        }
        n
    }

    pub fn run(env: &mut Env, data: &[u8]) {
        let snap = env.snapshot();
        for s in 0..PORTS {
            env.pipeline.out[s as usize].get_or_insert_with(Default::default);
        }
        let mut rest = data;
        let mut burst = Burst::new();
        let mut now = 0u32;
        while rest.len() >= 3 {
            let in_slot = u16::from(rest[0]) % PORTS;
            let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])) % 1600;
            rest = &rest[3..];
            let take = len.min(rest.len());
            let Some(mut m) = env.caches.for_pool(&env.pool).alloc() else {
                break;
            };
            let room = take.min(m.tailroom());
            m.append(room).expect("room").copy_from_slice(&rest[..room]);
            rest = &rest[take..];
            burst.push(m);
            if burst.len() == 8 || rest.len() < 3 {
                let cx = BurstCtx {
                    snap: &snap,
                    generation: env.generation,
                    now,
                    counters: &env.counters,
                };
                env.pipeline.process(
                    cx,
                    &mut env.caches,
                    in_slot,
                    &mut burst,
                    &mut |p, c, slot| {
                        if let Some(b) = p.out[slot as usize].as_mut() {
                            c.free_all(b.pkts.drain(..));
                        }
                    },
                );
                drain(env);
                // The control thread's part: apply what was learned.
                while let Some(r) = env.learn.pop() {
                    match r {
                        LearnRequest::Mac { key, port, .. } => {
                            env.fdb.learn(key, port, now);
                        }
                        LearnRequest::Neighbour { ip, mac } => {
                            env.router.learn_neighbour(ip, mac);
                        }
                    }
                    env.generation += 1;
                }
                now += 1;
                env.fdb.age(now, 3);
            }
        }
        assert!(burst.is_empty());
    }
}

/// Feeds arbitrary frames to the vSwitch's packet path (`ferrovia_vswitch::pipeline`): a
/// bridge with access ports on VLANs 10 and 20, two trunks, MAC learning with a 32-entry FDB
/// and aging, and a router with an interface on each VLAN and a static route. The input is a
/// sequence of `[ingress port][length: u16 LE][bytes]`. Nothing may panic, and every mbuf must
/// come back to the pool: the pipeline frees or queues each frame exactly once.
pub fn switch_frames(data: &[u8]) {
    thread_local! {
        // The pool and the router's 64 MiB table are made once per thread; each case starts
        // with an empty FDB, flow cache and neighbour table.
        static ENV: std::cell::RefCell<Option<switch_env::Env>> = const { std::cell::RefCell::new(None) };
    }
    ENV.with(|cell| {
        let mut slot = cell.borrow_mut();
        let env = slot.get_or_insert_with(switch_env::Env::new);
        env.reset();
        switch_env::run(env, data);
        switch_env::drain(env);
        env.caches.clear();
        assert_eq!(
            env.pool.available(),
            env.pool.count(),
            "the switch lost or kept mbufs"
        );
    });
}

/// A virtio-net header from a peer, then what our side does with it; and Tx offload metadata
/// an application set, then the header we would write. Layout: byte 0 selects what was
/// negotiated and accepted (bit 0 checksum, 1 TSOv4, 2 TSOv6, 3 the application's Rx checksum
/// offload, 4 its LRO, 5 the packet spread over 64-byte segments); bytes 1..11 the header;
/// bytes 11..27 Tx metadata (ol_flags, then l2/l3/l4 lengths and the segment size); the rest
/// the packet. Nothing may panic; a header that is applied must have been valid, and a
/// partial checksum completed in software must verify; a Tx request that is prepared must
/// give a header the same peer accepts.
pub fn net_hdr(data: &[u8]) {
    use ferrovia_memory::cksum;
    use ferrovia_memory::mbuf::OL_TX_OFFLOAD_MASK;
    use ferrovia_virtqueue::net_hdr::{
        HdrAccept, NetHdr, RxPolicy, VIRTIO_NET_HDR_F_NEEDS_CSUM, check_hdr, rx_apply, tx_hdr,
        tx_prepare,
    };
    static SMALL: OnceLock<Mempool> = OnceLock::new();
    let small = SMALL.get_or_init(|| {
        Mempool::new(MempoolConfig {
            name: "fuzz-small".into(),
            count: 256,
            data_room: 64,
            cache_size: 0,
            ..Default::default()
        })
        .expect("fuzz pool")
    });
    if data.len() < 27 {
        return;
    }
    let sel = data[0];
    let acc = HdrAccept {
        csum: sel & 1 != 0,
        tso4: sel & 2 != 0,
        tso6: sel & 4 != 0,
    };
    let pol = RxPolicy {
        csum: sel & 8 != 0,
        lro: sel & 16 != 0,
    };
    let h = NetHdr::from_bytes(data[1..11].try_into().expect("10 bytes"));
    let meta = &data[11..27];
    let pkt = &data[27..data.len().min(27 + 2000)];
    let (p, cut) = if sel & 32 != 0 {
        (small, 64)
    } else {
        (pool(), 2048)
    };
    let build = || {
        let mut head = p.alloc()?;
        for (i, c) in pkt.chunks(cut).enumerate() {
            if i == 0 {
                head.append(c.len())?.copy_from_slice(c);
            } else {
                let mut s = p.alloc()?;
                s.append(c.len())?.copy_from_slice(c);
                head.chain(s);
            }
        }
        Some(head)
    };
    if let Some(mut m) = build() {
        let res = rx_apply(&mut m, &h, acc, pol);
        if res.is_ok() {
            assert!(check_hdr(&h, pkt.len(), acc).is_ok());
            if h.gso_type == 0 && h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 && !pol.csum {
                let start = h.csum_start as usize;
                let v = m.to_vec();
                assert_eq!(
                    cksum::fold(cksum::raw_sum(&v[start..])),
                    0xffff,
                    "completed checksum verifies"
                );
            }
        }
    }
    if let Some(mut m) = build() {
        let w = |i: usize| u16::from_le_bytes([meta[i], meta[i + 1]]);
        let flags = u64::from_le_bytes(meta[..8].try_into().expect("8 bytes"));
        m.set_ol_flags(flags & (OL_TX_OFFLOAD_MASK | (3 << 55)));
        m.set_header_lens(
            usize::from(meta[8] & 0x7f),
            usize::from(w(9) & 0x1ff),
            usize::from(meta[11]),
        );
        m.set_tso_segsz(w(12));
        if tx_prepare(&mut m, acc).is_ok() {
            let th = tx_hdr(&m);
            if th.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
                assert!(acc.csum, "partial checksum asked of a peer without CSUM");
            }
            if th.gso_type != 0 {
                assert!(check_hdr(&th, m.pkt_len(), acc).is_ok());
            }
        }
    }
}

/// Bytes as the kernel's answer to the kernel PF backend (`ferrovia_eswitch::kernel_pf`): the
/// whole buffer as a reply (`RTM_NEWLINK` with `IFLA_VFINFO_LIST`, or `NLMSG_ERROR`), and the
/// same bytes as a bare `IFLA_VFINFO_LIST` value. Nothing may panic, and every VF the parser
/// returns must hold values in range (VLAN at most 4095, priority at most 7).
pub fn kernel_vfinfo(data: &[u8]) {
    use ferrovia_eswitch::kernel_pf::{VfState, parse_link_reply, parse_reply, parse_vfinfo_list};
    let check = |vfs: &[VfState]| {
        for v in vfs {
            assert!(v.vlan <= 4095 && v.qos <= 7, "{v:?}");
        }
    };
    if let Ok(l) = parse_link_reply(data) {
        check(&l.vfs);
    }
    let seq = data
        .get(8..12)
        .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or(0);
    let _ = parse_reply(data, seq);
    if let Ok(vfs) = parse_vfinfo_list(data) {
        check(&vfs);
    }
}

/// Feeds `data` to the parsers of what a vhost-user backend sends our virtio-user driver
/// after its handshake: the first byte splits the rest into the backend channel's stream
/// (`CONFIG_CHANGE_MSG`s, parsed one after another as the driver does) and a GET_CONFIG
/// reply body. Returns how many backend-channel messages were accepted.
pub fn frontend_link_messages(data: &[u8]) -> usize {
    use ferrovia_transport::frontend::{parse_backend_message, parse_config_reply, status_link_up};
    let Some((&split, rest)) = data.split_first() else {
        return 0;
    };
    let (mut chan, reply) = rest.split_at((split as usize).min(rest.len()));
    let mut n = 0;
    while let Ok(Some((_, used))) = parse_backend_message(chan) {
        assert!(
            used > 0 && used <= chan.len(),
            "a message uses what it parsed"
        );
        chan = &chan[used..];
        n += 1;
    }
    if let Ok(Some(c)) = parse_config_reply(reply) {
        let _ = status_link_up(c);
    }
    n
}

/// Feeds `data` as the device-readable bytes of one virtio-net control chain to the parser
/// ([`ferrovia_ethdev::ctrl::CtrlRequest::parse`]) and what parses to the eswitch's mapping
/// of a VF request onto a policy ([`ferrovia_eswitch::mailbox::requested`]). Nothing may
/// panic; a parsed request encodes back to bytes that parse to the same request.
pub fn ctrl_request(data: &[u8]) {
    use ferrovia_eswitch::vfconfig::{Limits, VfConfig};
    use ferrovia_ethdev::ctrl::CtrlRequest;
    static CFGS: OnceLock<Vec<VfConfig>> = OnceLock::new();
    let cfgs = CFGS.get_or_init(|| {
        let limits = Limits {
            max_vfs: 4,
            line_rate_mbps: 10_000.0,
        };
        [
            r#"{"name":"a","vfid":1}"#,
            r#"{"name":"a","vfid":1,"macs":["02:00:00:00:00:01"],"vlans":[10],"strip_stag":true}"#,
            r#"{"name":"a","vfid":1,"macs":["02:00:00:00:00:01"],"vlans":[10,20]}"#,
        ]
        .iter()
        .map(|j| VfConfig::parse(j, "fuzz", &limits).expect("fuzz config"))
        .collect()
    });
    let Ok(r) = CtrlRequest::parse(data) else {
        return;
    };
    let mut b = Vec::new();
    r.encode(&mut b);
    assert_eq!(CtrlRequest::parse(&b).as_ref(), Ok(&r));
    for c in cfgs {
        if let Ok(n) = ferrovia_eswitch::mailbox::requested(c, &r) {
            assert!(n.macs.len() <= ferrovia_eswitch::policy::MAX_MACS);
            assert!(n.vlans.iter().all(|v| (1..=4094).contains(v)));
        }
    }
}
