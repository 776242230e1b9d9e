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
use ferrovia_virtqueue::driver::{DriverOptions, DriverQueue, QueueLayout};
use ferrovia_virtqueue::guest_mem::{GuestMemory, RegionSpec};
use ferrovia_virtqueue::layout::{bit, feature};
use ferrovia_virtqueue::packed::PackedRing;
use ferrovia_virtqueue::split::SplitRing;
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

/// Feeds `data` as a stream of vhost-user messages to our backend request handler (through
/// rust-vmm's parser) until the stream ends or the session is refused.
pub fn vhost_user_messages(data: &[u8]) {
    let (mut a, b) = UnixStream::pair().expect("socketpair");
    let shared = DeviceShared::new(2);
    let handler = Arc::new(Mutex::new(BackendHandler::new("fuzz", shared)));
    let mut req = BackendReqHandler::from_stream(b, handler.clone());
    // The peer writes everything then hangs up; the backend reads until it fails.
    let _ = a.write_all(data);
    let _ = a.shutdown(std::net::Shutdown::Write);
    for _ in 0..1024 {
        if req.handle_request().is_err() {
            break;
        }
    }
    handler.lock().unwrap_or_else(|p| p.into_inner()).reset();
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
    let size: u16 = if packed {
        (ctl[1] as u16 % 64) + 1
    } else {
        1 << (ctl[1] % 7)
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
        // SAFETY: as above: desc 16*size <= 1 KiB, avail and used small, all inside.
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
    for i in 0..4 {
        let Some(mut m) = cache.alloc() else { break };
        let len = [60usize, 1514, 9000, 2000][i];
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

/// The driver side reads a used ring a hostile device wrote: post Tx packets and Rx buffers,
/// then let the fuzz bytes overwrite the used ring and run reclaim/receive.
pub fn driver_used(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let size = 16u16;
    let mrg = data[0] & 1 != 0;
    let mut features = bit(feature::F_VERSION_1);
    if mrg {
        features |= bit(feature::NET_F_MRG_RXBUF);
    }
    let l = QueueLayout::new(size);
    let area = SharedRegion::new("fuzz-drv", l.total * 2, RegionBacking::Memfd).expect("memfd");
    let opts = DriverOptions {
        features,
        max_rx_pkt: 9018,
    };
    // SAFETY: the area holds two layouts and outlives both queues (dropped at the end).
    let mut rx = unsafe { DriverQueue::new(area.base(), size, opts) }.expect("rx");
    // SAFETY: as above.
    let mut tx = unsafe { DriverQueue::new(area.base().add(l.total), size, opts) }.expect("tx");
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
    // The device's writes: used idx and elements of both rings, from the fuzz bytes.
    for (q, off) in [(&rx, 0usize), (&tx, l.total)] {
        let used = (area.base() as usize + off + l.used) as *mut u8;
        let n = (6 + 8 * size as usize).min(data.len() - 1);
        // SAFETY: the used ring of `size` entries is 6 + 8*size bytes inside the area.
        unsafe { std::ptr::copy_nonoverlapping(data[1..].as_ptr(), used, n) };
        let _ = q;
    }
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
