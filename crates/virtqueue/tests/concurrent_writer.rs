//! A hostile peer that rewrites shared ring memory while we poll: a thread overwrites
//! descriptors, lengths, flags, avail/used indexes and buffers at random, without any
//! ordering, while the device side (split and packed) or the driver side (split and packed)
//! polls for a few seconds. Nothing may panic or hang (a hang guard only, no timing
//! assertion); every packet that comes out is within bounds; the error counters only grow;
//! every mbuf is back in its pool at the end.

use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferrovia_memory::{Burst, Mempool, MempoolConfig, RegionBacking, SharedRegion};
use ferrovia_virtqueue::device::{ActiveVring, DeviceQueue, RingView};
use ferrovia_virtqueue::driver::{DriverOptions, DriverQueue};
use ferrovia_virtqueue::error::{ErrorSink, RingError};
use ferrovia_virtqueue::guest_mem::{GuestMemory, RegionSpec};
use ferrovia_virtqueue::layout::{bit, feature};
use ferrovia_virtqueue::packed::PackedRing;
use ferrovia_virtqueue::split::SplitRing;

const MEM: usize = 256 * 1024;
const GPA: u64 = 0x2000_0000;
const QSZ: u16 = 64;
/// How long each side polls under attack (not asserted: it only bounds the test).
const RUN: Duration = Duration::from_secs(2);
const MAX_PKT: usize = 9728;

/// Counts reports in atomics; `total` never goes down.
#[derive(Default)]
struct Counters(AtomicU64);

impl ErrorSink for Counters {
    fn ring_error(&self, _e: RingError, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

fn pool(name: &str) -> Mempool {
    Mempool::new(MempoolConfig {
        name: name.into(),
        count: 2048,
        cache_size: 64,
        ..Default::default()
    })
    .unwrap()
}

/// A writer thread that rewrites `[base, base + len)` until `stop`, as a hostile peer
/// racing the poller: half the time a descriptor-shaped 16-byte write at a 16-aligned offset
/// inside one of the `tables` (offset, bytes) (an address inside the guest at `gpa`, past
/// the first `rings` bytes, a small length, random flags with random ownership bits, a small
/// next/id), a quarter of the time a small index (u16) at an even offset among the first
/// `rings` bytes (avail/used indexes, ids, lengths), the rest raw bytes anywhere. Returns how
/// many writes it made.
fn scribbler(
    base: usize,
    len: usize,
    rings: usize,
    tables: Vec<(usize, usize)>,
    gpa: u64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut x = 0x243f_6a88_85a3_08d3u64 ^ base as u64;
        let mut writes = 0u64;
        while !stop.load(Ordering::Relaxed) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let r = x.rotate_left(29);
            let (off, bytes): (usize, Vec<u8>) = match x % 4 {
                0 | 1 => {
                    let mut d = Vec::with_capacity(16);
                    let a = gpa + rings as u64 + (r % (len - rings - 4096) as u64);
                    d.extend(a.to_le_bytes());
                    d.extend(((r >> 20) as u32 % 3000).to_le_bytes());
                    let flags = (r >> 40) as u16 & (7 | 1 << 7 | 1 << 15);
                    let next = (r >> 48) as u16 % (QSZ + 2);
                    // Split: flags then next; packed: id then flags.
                    if x & 16 == 0 {
                        d.extend(flags.to_le_bytes());
                        d.extend(next.to_le_bytes());
                    } else {
                        d.extend(next.to_le_bytes());
                        d.extend(flags.to_le_bytes());
                    }
                    let (t, n) = tables[(x as usize >> 5) % tables.len()];
                    (t + (x as usize >> 8) % (n / 16) * 16, d)
                }
                2 => (
                    (x as usize >> 8) % (rings / 2) * 2,
                    ((r >> 32) as u16 % 80).to_le_bytes().to_vec(),
                ),
                _ => ((x as usize >> 8) % (len - 8), r.to_le_bytes().to_vec()),
            };
            // SAFETY: off + bytes.len() <= len (rings <= len - 4096), inside the shared area
            // this test owns; racing the poller is the point.
            unsafe {
                let p = (base + off) as *mut u8;
                for (i, b) in bytes.iter().enumerate() {
                    p.add(i).write_volatile(*b);
                }
            }
            writes += 1;
            if writes.is_multiple_of(4096) {
                std::thread::yield_now();
            }
        }
        writes
    })
}

/// Runs `f` in a thread; panics if it does not finish within a generous bound (a hang
/// guard, not a timing assertion).
fn guarded(name: &'static str, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    if rx.recv_timeout(Duration::from_secs(120)).is_err() && !t.is_finished() {
        panic!("{name}: hung");
    }
    if let Err(e) = t.join() {
        std::panic::resume_unwind(e);
    }
}

/// The device side polls a transmit ring (dequeue) and a receive ring (enqueue) in a guest
/// memory the writer thread rewrites.
fn device_under_attack(packed: bool) {
    let pool = pool(if packed { "cw-dev-pk" } else { "cw-dev-split" });
    let region = SharedRegion::new("cw-guest", MEM, RegionBacking::Memfd).unwrap();
    // SAFETY: dup of a valid fd, owned by the File.
    let file = unsafe { File::from_raw_fd(libc::dup(region.fd())) };
    let mem = Arc::new(
        GuestMemory::map(vec![RegionSpec {
            guest_phys_addr: GPA,
            size: MEM as u64,
            user_addr: region.base() as u64,
            mmap_offset: 0,
            file,
        }])
        .unwrap(),
    );
    let b = region.base();
    let mut features = bit(feature::F_VERSION_1)
        | bit(feature::NET_F_MRG_RXBUF)
        | bit(feature::RING_F_INDIRECT_DESC)
        | bit(feature::RING_F_EVENT_IDX);
    if packed {
        features |= bit(feature::F_RING_PACKED);
    }
    // Two rings at 0 and 0x4000 (each 16 KiB of room); buffers above.
    let ring = |off: usize| -> RingView {
        // SAFETY: each ring's parts lie inside its 16 KiB slot of the region, which outlives
        // the queues.
        unsafe {
            let r = b.add(off);
            if packed {
                RingView::Packed(PackedRing::new(r, r.add(0x2000), r.add(0x2004), QSZ).unwrap())
            } else {
                RingView::Split(SplitRing::new(r, r.add(0x1000), r.add(0x2000), QSZ).unwrap())
            }
        }
    };
    let base = if packed { 0x8000 } else { 0 };
    let make = |off: usize| {
        let a = Arc::new(ActiveVring {
            ring: ring(off),
            mem: mem.clone(),
            features,
            base,
            call: None,
        });
        DeviceQueue::new(a, base, base)
    };
    let (mut txq, mut rxq) = (make(0), make(0x4000));
    // Sanity check of the set-up, before the attack: one good descriptor comes out as one
    // packet (a 100-byte frame behind a 12-byte header at the start of the buffer area).
    let buf = GPA + 0x8000;
    let mut d = Vec::new();
    d.extend(buf.to_le_bytes());
    d.extend(112u32.to_le_bytes());
    if packed {
        d.extend(0u16.to_le_bytes());
        d.extend((1u16 << 7).to_le_bytes());
    } else {
        d.extend(0u32.to_le_bytes());
    }
    // SAFETY: slot 0 of the transmit ring (and, split, avail ring slot 0 and avail.idx), inside
    // the region; nobody else writes yet.
    unsafe {
        std::ptr::copy_nonoverlapping(d.as_ptr(), b, 16);
        if !packed {
            b.add(0x1002).cast::<u16>().write_volatile(1);
        }
    }
    let sink = Counters::default();
    let mut cache = pool.cache();
    let mut out = Burst::new();
    txq.dequeue_burst(&mut cache, &mut out, 32, MAX_PKT, 0, &sink);
    assert_eq!(out.len(), 1, "the good descriptor before the attack");
    assert_eq!(out[0].pkt_len(), 100);
    cache.free_all(out.drain(..));
    let stop = Arc::new(AtomicBool::new(false));
    let tables = vec![(0, 16 * QSZ as usize), (0x4000, 16 * QSZ as usize)];
    let w = scribbler(b as usize, MEM, 0x8000, tables, GPA, stop.clone());
    let mut total = sink.0.load(Ordering::Relaxed);
    let mut packets = 0u64;
    let t = Instant::now();
    let mut polls = 0u32;
    while t.elapsed() < RUN {
        // A broken queue stays broken until reconfigured: start over now and then, as a new
        // session would, so that the walk keeps meeting fresh states.
        polls += 1;
        if polls.is_multiple_of(256) {
            (txq, rxq) = (make(0), make(0x4000));
        }
        txq.dequeue_burst(&mut cache, &mut out, 32, MAX_PKT, 0, &sink);
        for m in out.iter() {
            assert!(m.pkt_len() <= MAX_PKT, "a frame over the maximum came out");
            assert_eq!(m.to_vec().len(), m.pkt_len(), "segments add up");
        }
        packets += out.len() as u64;
        // Send what came out back into the receive ring.
        let mut pk = Burst::new();
        pk.extend(out.drain(..));
        rxq.enqueue_burst(&mut cache, &mut pk, &sink);
        cache.free_all(pk.drain(..));
        let now = sink.0.load(Ordering::Relaxed);
        assert!(now >= total, "error counters only grow");
        total = now;
    }
    stop.store(true, Ordering::Relaxed);
    let writes = w.join().unwrap();
    drop((txq, rxq, cache));
    eprintln!(
        "device {}: {writes} hostile writes, {packets} packets out, {total} errors counted",
        if packed { "packed" } else { "split" }
    );
    assert_eq!(pool.available(), pool.count(), "every mbuf back");
}

/// The driver side: an Rx queue refilled and a Tx queue transmitting, in an area the writer
/// thread rewrites (used rings, device-written descriptors, headers in posted buffers are
/// private to the pool and not reachable, as with a real device).
fn driver_under_attack(packed: bool) {
    let pool = pool(if packed { "cw-drv-pk" } else { "cw-drv-split" });
    let mut features = bit(feature::F_VERSION_1) | bit(feature::NET_F_MRG_RXBUF);
    if packed {
        features |= bit(feature::F_RING_PACKED);
    }
    let qbytes = DriverQueue::area_size(QSZ, packed);
    // One spare page at the end keeps the scribbler's arithmetic simple.
    let area = SharedRegion::new("cw-drv", qbytes * 2 + 8192, RegionBacking::Memfd).unwrap();
    let opts = DriverOptions {
        features,
        max_rx_pkt: MAX_PKT,
    };
    // SAFETY: the area holds two queue areas and outlives both queues.
    let mut rx = unsafe { DriverQueue::new(area.base(), QSZ, packed, opts) }.unwrap();
    // SAFETY: as above.
    let mut tx = unsafe { DriverQueue::new(area.base().add(qbytes), QSZ, packed, opts) }.unwrap();
    rx.set_rx_chain_for(0, 2048);
    let stop = Arc::new(AtomicBool::new(false));
    // The driver's areas hold no buffers: descriptor-shaped writes point anywhere.
    let w = scribbler(
        area.base() as usize,
        qbytes * 2 + 8192,
        qbytes * 2,
        vec![(0, qbytes * 2)],
        0,
        stop.clone(),
    );
    let sink = Counters::default();
    let mut cache = pool.cache();
    let mut out = Burst::new();
    let (mut total, mut packets) = (0u64, 0u64);
    let t = Instant::now();
    let mut polls = 0u32;
    while t.elapsed() < RUN {
        // A used index jump stops a queue until the next connection: start over now and then
        // (drain, and new queues on the same area, as a new connection would).
        polls += 1;
        if polls.is_multiple_of(256) {
            rx.drain(&mut cache);
            tx.drain(&mut cache);
            // SAFETY: as above; the old queues are replaced (and dropped) here.
            rx = unsafe { DriverQueue::new(area.base(), QSZ, packed, opts) }.unwrap();
            // SAFETY: as above.
            tx = unsafe { DriverQueue::new(area.base().add(qbytes), QSZ, packed, opts) }.unwrap();
            rx.set_rx_chain_for(0, 2048);
        }
        rx.refill(&mut cache, &sink);
        rx.receive(&mut cache, &mut out, 32, 0, &sink);
        for m in out.iter() {
            assert!(m.pkt_len() <= MAX_PKT, "a frame over the maximum came out");
            assert_eq!(m.to_vec().len(), m.pkt_len(), "segments add up");
        }
        packets += out.len() as u64;
        cache.free_all(out.drain(..));
        let mut b = Burst::new();
        for _ in 0..8 {
            if let Some(mut m) = cache.alloc() {
                m.append(100);
                b.push(m);
            }
        }
        tx.transmit(&mut cache, &mut b, &sink);
        cache.free_all(b.drain(..));
        tx.reclaim(&mut cache, &sink);
        let now = sink.0.load(Ordering::Relaxed);
        assert!(now >= total, "error counters only grow");
        total = now;
    }
    stop.store(true, Ordering::Relaxed);
    let writes = w.join().unwrap();
    rx.drain(&mut cache);
    tx.drain(&mut cache);
    drop((rx, tx, cache));
    eprintln!(
        "driver {}: {writes} hostile writes, {packets} packets out, {total} errors counted",
        if packed { "packed" } else { "split" }
    );
    assert_eq!(pool.available(), pool.count(), "every mbuf back");
}

#[test]
fn device_split_under_concurrent_writer() {
    guarded("device split", || device_under_attack(false));
}

#[test]
fn device_packed_under_concurrent_writer() {
    guarded("device packed", || device_under_attack(true));
}

#[test]
fn driver_split_under_concurrent_writer() {
    guarded("driver split", || driver_under_attack(false));
}

#[test]
fn driver_packed_under_concurrent_writer() {
    guarded("driver packed", || driver_under_attack(true));
}
