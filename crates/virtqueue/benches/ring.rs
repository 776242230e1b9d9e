//! Single-thread cost of the data path: driver Tx → device dequeue → device enqueue → driver
//! Rx, over rings and memory shared exactly as with a real peer. Prints ns per packet for each
//! side and feature set; run with `cargo bench -p ferrovia-virtqueue --bench ring`.

use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::time::Instant;

use ferrovia_memory::{Burst, Mempool, MempoolConfig, RegionBacking, SharedRegion};
use ferrovia_virtqueue::NoSink;
use ferrovia_virtqueue::device::{ActiveVring, DeviceQueue, RingView};
use ferrovia_virtqueue::driver::{DriverOptions, DriverQueue};
use ferrovia_virtqueue::guest_mem::{GuestMemory, RegionSpec};
use ferrovia_virtqueue::layout::{bit, feature};
use ferrovia_virtqueue::packed::PackedRing;
use ferrovia_virtqueue::split::SplitRing;

fn dup(fd: i32) -> File {
    // SAFETY: duplicating a valid fd; the File owns the duplicate.
    unsafe { File::from_raw_fd(libc::dup(fd)) }
}

fn bench(name: &str, packed: bool, features: u64, size: usize, iters: usize) {
    let pool = Mempool::new(MempoolConfig {
        name: "bench".into(),
        count: 8192,
        cache_size: 256,
        ..Default::default()
    })
    .unwrap();
    let qs = 1024u16;
    let total = DriverQueue::area_size(qs, packed);
    let area = SharedRegion::new("bench-rings", total * 2, RegionBacking::Memfd).unwrap();
    let opts = DriverOptions {
        features,
        max_rx_pkt: 9728,
    };
    // SAFETY: the area holds two layouts and outlives both queues.
    let mut rx = unsafe { DriverQueue::new(area.base(), qs, packed, opts) }.unwrap();
    // SAFETY: as above.
    let mut tx = unsafe { DriverQueue::new(area.base().add(total), qs, packed, opts) }.unwrap();
    let (pbase, plen) = pool.region();
    let pfd = ferrovia_memory::registry::snapshot()
        .into_iter()
        .find(|r| r.addr == pbase as u64)
        .unwrap()
        .fd;
    let mem = Arc::new(
        GuestMemory::map(vec![
            RegionSpec {
                guest_phys_addr: pbase as u64,
                size: plen as u64,
                user_addr: pbase as u64,
                mmap_offset: 0,
                file: dup(pfd),
            },
            RegionSpec {
                guest_phys_addr: area.base() as u64,
                size: area.len() as u64,
                user_addr: area.base() as u64,
                mmap_offset: 0,
                file: dup(area.fd()),
            },
        ])
        .unwrap(),
    );
    let dev = |off: usize| {
        let a = DriverQueue::addrs(area.base() as u64 + off as u64, qs, packed);
        let ring = if packed {
            // SAFETY: translated parts lie in the mapped ring region.
            RingView::Packed(
                unsafe {
                    PackedRing::new(
                        mem.translate_uva(a.desc, 16 * qs as u64).unwrap(),
                        mem.translate_uva(a.avail, 4).unwrap(),
                        mem.translate_uva(a.used, 4).unwrap(),
                        qs,
                    )
                }
                .unwrap(),
            )
        } else {
            // SAFETY: translated parts lie in the mapped ring region.
            RingView::Split(
                unsafe {
                    SplitRing::new(
                        mem.translate_uva(a.desc, 16 * qs as u64).unwrap(),
                        mem.translate_uva(a.avail, 6 + 2 * qs as u64).unwrap(),
                        mem.translate_uva(a.used, 6 + 8 * qs as u64).unwrap(),
                        qs,
                    )
                }
                .unwrap(),
            )
        };
        let a = Arc::new(ActiveVring {
            ring,
            mem: mem.clone(),
            features,
            base: 0,
            call: None,
        });
        a.init_notifications();
        DeviceQueue::new(
            a,
            if packed { 0x8000 } else { 0 },
            if packed { 0x8000 } else { 0 },
        )
    };
    let mut dev_rx = dev(0);
    let mut dev_tx = dev(total);
    let mut cache = pool.cache();
    rx.set_rx_chain_for(1518, 2048);
    rx.refill(&mut cache, &NoSink);
    let (mut t_tx, mut t_deq, mut t_enq, mut t_rx) = (0u128, 0u128, 0u128, 0u128);
    let mut b = Burst::new();
    let mut n = 0usize;
    for _ in 0..iters {
        for _ in 0..32 {
            let mut m = cache.alloc().unwrap();
            m.append(size).unwrap()[..12].fill(1);
            b.push(m);
        }
        let t0 = Instant::now();
        tx.transmit(&mut cache, &mut b, &NoSink);
        let t1 = Instant::now();
        let mut got = Burst::new();
        dev_tx.dequeue_burst(&mut cache, &mut got, 32, 9728, 0, &NoSink);
        let t2 = Instant::now();
        dev_rx.enqueue_burst(&mut cache, &mut got, &NoSink);
        let t3 = Instant::now();
        let mut r = Burst::new();
        let k = rx.receive(&mut cache, &mut r, 32, 0, &NoSink).0;
        let t4 = Instant::now();
        n += k;
        cache.free_all(r.drain(..));
        cache.free_all(got.drain(..));
        cache.free_all(b.drain(..));
        t_tx += (t1 - t0).as_nanos();
        t_deq += (t2 - t1).as_nanos();
        t_enq += (t3 - t2).as_nanos();
        t_rx += (t4 - t3).as_nanos();
    }
    let per = |t: u128| t as f64 / n as f64;
    println!(
        "{name:<28} {size:>5} B  driver-tx {:>6.1}  device-dequeue {:>6.1}  device-enqueue {:>6.1}  driver-rx {:>6.1}  ns/pkt  (total {:>6.1})",
        per(t_tx),
        per(t_deq),
        per(t_enq),
        per(t_rx),
        per(t_tx + t_deq + t_enq + t_rx)
    );
    rx.drain(&mut cache);
}

fn main() {
    let iters = std::env::var("ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let v1 = bit(feature::F_VERSION_1);
    let mrg = bit(feature::NET_F_MRG_RXBUF);
    let ino = bit(feature::F_IN_ORDER);
    let packed = bit(feature::F_RING_PACKED);
    let only = std::env::var("RING").unwrap_or_default();
    for size in [64, 1518] {
        if only != "packed" {
            bench("split mrg in_order", false, v1 | mrg | ino, size, iters);
            bench("split mrg", false, v1 | mrg, size, iters);
            bench("split no-mrg", false, v1, size, iters);
        }
        if only != "split" {
            bench(
                "packed mrg in_order",
                true,
                v1 | packed | mrg | ino,
                size,
                iters,
            );
            bench("packed mrg", true, v1 | packed | mrg, size, iters);
            bench("packed no-mrg", true, v1 | packed, size, iters);
        }
    }
}
