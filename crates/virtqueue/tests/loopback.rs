//! Driver side and device side of the same rings in one process, the device seeing the
//! driver's memory only through the fds it would receive over vhost-user.

use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::Arc;

use ferrovia_memory::{Burst, Mempool, MempoolConfig, RegionBacking, SharedRegion};
use ferrovia_virtqueue::device::{ActiveVring, RingView};
use ferrovia_virtqueue::driver::DriverOptions;
use ferrovia_virtqueue::error::CountingSink;
use ferrovia_virtqueue::guest_mem::{GuestMemory, RegionSpec};
use ferrovia_virtqueue::layout::{bit, feature};
use ferrovia_virtqueue::split::{SplitDevice, SplitDriver, SplitLayout, SplitRing};

fn dup(fd: i32) -> File {
    // SAFETY: duplicating a valid fd; the new fd is owned by the File.
    unsafe { File::from_raw_fd(libc::dup(fd)) }
}

struct Rig {
    pool: Mempool,
    _area: SharedRegion,
    tx: SplitDriver,
    rx: SplitDriver,
    dev_tx: SplitDevice,
    dev_rx: SplitDevice,
}

fn rig(features: u64, size: u16) -> Rig {
    let pool = Mempool::new(MempoolConfig {
        name: "lb".into(),
        count: 4096,
        cache_size: 64,
        ..Default::default()
    })
    .unwrap();
    let l = SplitLayout::new(size);
    let area = SharedRegion::new("rings", l.total * 2, RegionBacking::Memfd).unwrap();
    let opts = DriverOptions {
        features,
        max_rx_pkt: 9728,
    };
    // SAFETY: area holds two layouts and outlives the queues (both live in the Rig).
    let mut rx = unsafe { SplitDriver::new(area.base(), size, opts) }.unwrap();
    // SAFETY: as above, second half.
    let tx = unsafe { SplitDriver::new(area.base().add(l.total), size, opts) }.unwrap();
    let (pbase, plen) = pool.region();
    let mem = Arc::new(
        GuestMemory::map(vec![
            RegionSpec {
                guest_phys_addr: pbase as u64,
                size: plen as u64,
                user_addr: pbase as u64,
                mmap_offset: 0,
                file: dup(region_fd(&pool)),
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
        // Translate the driver's ring addresses exactly as a backend would.
        let base = area.base() as u64 + off as u64;
        let (d, a, u) = (base, base + l.avail as u64, base + l.used as u64);
        // SAFETY: translate_uva checked each part lies in the mapped ring region.
        let ring = unsafe {
            SplitRing::new(
                mem.translate_uva(d, 4096).unwrap(),
                mem.translate_uva(a, 64).unwrap(),
                mem.translate_uva(u, 64).unwrap(),
                size,
            )
        }
        .unwrap();
        let act = Arc::new(ActiveVring {
            ring: RingView::Split(ring),
            mem: mem.clone(),
            features,
            base: 0,
            call: None,
        });
        act.init_notifications();
        SplitDevice::new(act, 0, 0)
    };
    let dev_rx = dev(0);
    let dev_tx = dev(l.total);
    let mut cache = pool.cache();
    rx.set_rx_chain_for(9018, 2048);
    rx.refill(&mut cache, &CountingSink::default());
    drop(cache);
    Rig {
        pool,
        _area: area,
        tx,
        rx,
        dev_tx,
        dev_rx,
    }
}

fn region_fd(pool: &Mempool) -> i32 {
    let (base, _) = pool.region();
    ferrovia_memory::registry::snapshot()
        .into_iter()
        .find(|r| r.addr == base as u64)
        .unwrap()
        .fd
}

fn payload(seq: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + seq * 13) as u8).collect()
}

fn make(pool: &Mempool, data: &[u8]) -> ferrovia_memory::Mbuf {
    let mut head = pool.alloc().unwrap();
    let mut rest = data;
    let k = rest.len().min(head.tailroom());
    head.append(k).unwrap().copy_from_slice(&rest[..k]);
    rest = &rest[k..];
    while !rest.is_empty() {
        let mut m = pool.alloc().unwrap();
        let k = rest.len().min(m.tailroom());
        m.append(k).unwrap().copy_from_slice(&rest[..k]);
        rest = &rest[k..];
        head.chain(m);
    }
    head
}

fn run(features: u64, sizes: &[usize]) {
    let mut r = rig(features, 256);
    let sink = CountingSink::default();
    let mut cache = r.pool.cache();
    // Driver Tx -> device dequeue.
    let mut burst = Burst::new();
    for (i, &s) in sizes.iter().enumerate() {
        burst.push(make(&r.pool, &payload(i, s)));
    }
    let (sent, _) = r.tx.transmit(&mut cache, &mut burst, &sink);
    assert_eq!(sent, sizes.len());
    let mut got = Burst::new();
    let res = r
        .dev_tx
        .dequeue_burst(&mut cache, &mut got, 64, 9728, 3, &sink);
    assert_eq!(res.packets, sizes.len(), "errors: {}", sink.total());
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.to_vec(), payload(i, sizes[i]), "tx packet {i}");
        assert_eq!(m.port(), 3);
    }
    r.tx.reclaim(&mut cache, &sink);
    assert_eq!(r.tx.in_flight(), 0);
    // Device enqueue -> driver Rx.
    let n = got.len();
    let res = r.dev_rx.enqueue_burst(&mut cache, &mut got, &sink);
    assert_eq!(res.packets, n, "errors: {}", sink.total());
    assert!(got.is_empty());
    let mut rx = Burst::new();
    let (k, _) = r.rx.receive(&mut cache, &mut rx, 64, 7, &sink);
    assert_eq!(k, n, "errors: {}", sink.total());
    for (i, m) in rx.iter().enumerate() {
        assert_eq!(m.to_vec(), payload(i, sizes[i]), "rx packet {i}");
    }
    assert_eq!(sink.total(), 0);
    drop(rx);
    r.rx.drain(&mut cache);
    drop(cache);
    assert_eq!(r.pool.available(), r.pool.count(), "no mbuf leaked");
}

const V1: u64 = bit(feature::F_VERSION_1);
const MRG: u64 = bit(feature::NET_F_MRG_RXBUF);
const EVT: u64 = bit(feature::RING_F_EVENT_IDX);

#[test]
fn mergeable_all_sizes() {
    run(V1 | MRG, &[64, 1518, 9000, 60, 2048, 4000]);
}

#[test]
fn non_mergeable_all_sizes() {
    run(V1, &[64, 1518, 9000, 60, 2048, 4000]);
}

#[test]
fn event_idx_all_sizes() {
    run(V1 | MRG | EVT, &[64, 1518, 9000]);
}

const IN_ORDER: u64 = bit(feature::F_IN_ORDER);

#[test]
fn in_order_mergeable_all_sizes() {
    run(V1 | MRG | IN_ORDER, &[64, 1518, 9000, 60, 2048, 4000]);
}

#[test]
fn in_order_non_mergeable_all_sizes() {
    run(V1 | IN_ORDER, &[64, 1518, 9000, 60, 2048, 4000]);
}

#[test]
fn in_order_event_idx_all_sizes() {
    run(V1 | MRG | EVT | IN_ORDER, &[64, 1518, 9000]);
}

/// Many bursts through a 256-entry ring, so descriptor positions wrap many times, with chains
/// (multi-segment Tx, 5-buffer Rx chains without mergeable buffers) crossing the table's end.
fn rounds(features: u64) {
    let mut r = rig(features, 256);
    let sink = CountingSink::default();
    let mut cache = r.pool.cache();
    let sizes = [64usize, 9000, 1518, 60, 3000, 64, 64, 4000];
    let mut seq = 0;
    for round in 0..60 {
        let mut burst = Burst::new();
        let first = seq;
        for k in 0..(5 + round % 7) {
            burst.push(make(
                &r.pool,
                &payload(seq, sizes[(round + k) % sizes.len()]),
            ));
            seq += 1;
        }
        let n = burst.len();
        let (sent, _) = r.tx.transmit(&mut cache, &mut burst, &sink);
        assert_eq!(sent, n, "round {round}");
        let mut got = Burst::new();
        let res = r
            .dev_tx
            .dequeue_burst(&mut cache, &mut got, 64, 9728, 3, &sink);
        assert_eq!(res.packets, n, "round {round}: errors {}", sink.total());
        let res = r.dev_rx.enqueue_burst(&mut cache, &mut got, &sink);
        assert_eq!(res.packets, n, "round {round}: errors {}", sink.total());
        let mut rx = Burst::new();
        let (k, _) = r.rx.receive(&mut cache, &mut rx, 64, 7, &sink);
        assert_eq!(k, n, "round {round}: errors {}", sink.total());
        for (i, m) in rx.iter().enumerate() {
            let len = m.pkt_len();
            assert_eq!(
                m.to_vec(),
                payload(first + i, len),
                "round {round} packet {i}"
            );
        }
        cache.free_all(rx.drain(..));
    }
    r.tx.reclaim(&mut cache, &sink);
    assert_eq!(r.tx.in_flight(), 0);
    assert_eq!(sink.total(), 0);
    r.rx.drain(&mut cache);
    drop(cache);
    assert_eq!(r.pool.available(), r.pool.count(), "no mbuf leaked");
}

#[test]
fn wrapping_rounds_free_list() {
    rounds(V1);
    rounds(V1 | MRG);
}

#[test]
fn wrapping_rounds_in_order() {
    rounds(V1 | IN_ORDER);
    rounds(V1 | MRG | IN_ORDER);
}

/// An in-order device may complete a batch of transmissions by writing only the batch's last
/// used entry and moving `used.idx` by the batch size: the driver frees them all.
#[test]
fn in_order_tx_batch_with_one_used_entry() {
    let mut r = rig(V1 | MRG | IN_ORDER, 256);
    let sink = CountingSink::default();
    let mut cache = r.pool.cache();
    let mut burst = Burst::new();
    for i in 0..10 {
        burst.push(make(&r.pool, &payload(i, 100)));
    }
    assert_eq!(r.tx.transmit(&mut cache, &mut burst, &sink).0, 10);
    let ring = r.tx.ring();
    // Stale garbage in the skipped entries, the real id in the last one.
    for slot in 0..9 {
        ring.set_used_elem(
            slot,
            ferrovia_virtqueue::layout::UsedElem { id: 999, len: 7 },
        );
    }
    ring.set_used_elem(9, ferrovia_virtqueue::layout::UsedElem { id: 9, len: 0 });
    ring.set_used_idx(10);
    r.tx.reclaim(&mut cache, &sink);
    assert_eq!(r.tx.in_flight(), 0);
    assert_eq!(sink.total(), 0);
    r.rx.drain(&mut cache);
    drop(cache);
    assert_eq!(r.pool.available(), r.pool.count(), "no mbuf leaked");
}

/// A device that breaks the order on receive (or writes a bogus id) is counted and the queue
/// stops delivering; nothing panics or leaks, and a reconnection resumes it.
#[test]
fn in_order_rx_wrong_id_counted() {
    let mut r = rig(V1 | MRG | IN_ORDER, 256);
    let sink = CountingSink::default();
    let mut cache = r.pool.cache();
    let ring = r.rx.ring();
    for bogus in [5u32, 70000, 255] {
        ring.set_used_elem(
            0,
            ferrovia_virtqueue::layout::UsedElem { id: bogus, len: 60 },
        );
        ring.set_used_idx(1);
        let mut rx = Burst::new();
        let (k, _) = r.rx.receive(&mut cache, &mut rx, 32, 0, &sink);
        assert_eq!(k, 0);
        assert!(sink.total() >= 1);
        // Stays stopped without reading further.
        let (k, _) = r.rx.receive(&mut cache, &mut rx, 32, 0, &sink);
        assert_eq!(k, 0);
        r.rx.on_reconnect(
            ferrovia_virtqueue::driver::DriverOptions {
                features: V1 | MRG | IN_ORDER,
                max_rx_pkt: 9728,
            },
            None,
        );
    }
    // The right id, with a sane header, is delivered after the reconnection.
    ring.set_used_elem(
        0,
        ferrovia_virtqueue::layout::UsedElem {
            id: 0,
            len: 12 + 60,
        },
    );
    let mut rx = Burst::new();
    let (k, _) = r.rx.receive(&mut cache, &mut rx, 32, 0, &sink);
    // num_buffers in the header was never written by a device: 0 is bogus and counted, or
    // the buffer is taken as one; either way no panic and the ring stays consistent.
    assert!(k <= 1);
    cache.free_all(rx.drain(..));
    r.rx.drain(&mut cache);
    drop(cache);
    assert_eq!(r.pool.available(), r.pool.count(), "no mbuf leaked");
}

/// Buffers posted in the in-order layout are completed after a reconnection to a device
/// without IN_ORDER: the driver rebuilds its free list and loses nothing.
#[test]
fn in_order_to_free_list_with_buffers_in_flight() {
    let mut r = rig(V1 | MRG | IN_ORDER, 256);
    let sink = CountingSink::default();
    let mut cache = r.pool.cache();
    let mut burst = Burst::new();
    for i in 0..20 {
        burst.push(make(
            &r.pool,
            &payload(i, if i % 3 == 0 { 5000 } else { 200 }),
        ));
    }
    assert_eq!(r.tx.transmit(&mut cache, &mut burst, &sink).0, 20);
    let opts = ferrovia_virtqueue::driver::DriverOptions {
        features: V1 | MRG,
        max_rx_pkt: 9728,
    };
    r.tx.on_reconnect(opts, None);
    r.rx.on_reconnect(opts, None);
    let mut got = Burst::new();
    let res = r
        .dev_tx
        .dequeue_burst(&mut cache, &mut got, 64, 9728, 3, &sink);
    assert_eq!(res.packets, 20);
    r.tx.reclaim(&mut cache, &sink);
    assert_eq!(r.tx.in_flight(), 0);
    // And the free list works for new traffic both ways.
    for round in 0..20 {
        let n = got.len();
        let res = r.dev_rx.enqueue_burst(&mut cache, &mut got, &sink);
        assert_eq!(res.packets, n);
        let mut rx = Burst::new();
        assert_eq!(r.rx.receive(&mut cache, &mut rx, 64, 0, &sink).0, n);
        assert_eq!(
            r.tx.transmit(&mut cache, &mut rx, &sink).0,
            n,
            "round {round}"
        );
        r.dev_tx
            .dequeue_burst(&mut cache, &mut got, 64, 9728, 3, &sink);
        assert_eq!(got.len(), n);
    }
    assert_eq!(sink.total(), 0);
    cache.free_all(got.drain(..));
    r.tx.reclaim(&mut cache, &sink);
    r.rx.drain(&mut cache);
    drop(cache);
    assert_eq!(r.pool.available(), r.pool.count(), "no mbuf leaked");
}
