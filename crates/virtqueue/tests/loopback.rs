//! Driver side and device side of the same rings in one process, the device seeing the
//! driver's memory only through the fds it would receive over vhost-user.

use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::Arc;

use ferrovia_memory::{Burst, Mempool, MempoolConfig, RegionBacking, SharedRegion};
use ferrovia_virtqueue::device::{ActiveVring, DeviceVring, RingView};
use ferrovia_virtqueue::driver::{DriverOptions, DriverQueue, QueueLayout};
use ferrovia_virtqueue::error::CountingSink;
use ferrovia_virtqueue::guest_mem::{GuestMemory, RegionSpec};
use ferrovia_virtqueue::layout::{bit, feature};
use ferrovia_virtqueue::split::SplitRing;

fn dup(fd: i32) -> File {
    // SAFETY: duplicating a valid fd; the new fd is owned by the File.
    unsafe { File::from_raw_fd(libc::dup(fd)) }
}

struct Rig {
    pool: Mempool,
    _area: SharedRegion,
    tx: DriverQueue,
    rx: DriverQueue,
    dev_tx: DeviceVring,
    dev_rx: DeviceVring,
}

fn rig(features: u64, size: u16) -> Rig {
    let pool = Mempool::new(MempoolConfig {
        name: "lb".into(),
        count: 4096,
        cache_size: 64,
        ..Default::default()
    })
    .unwrap();
    let l = QueueLayout::new(size);
    let area = SharedRegion::new("rings", l.total * 2, RegionBacking::Memfd).unwrap();
    let opts = DriverOptions {
        features,
        max_rx_pkt: 9728,
    };
    // SAFETY: area holds two layouts and outlives the queues (both live in the Rig).
    let mut rx = unsafe { DriverQueue::new(area.base(), size, opts) }.unwrap();
    // SAFETY: as above, second half.
    let tx = unsafe { DriverQueue::new(area.base().add(l.total), size, opts) }.unwrap();
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
        DeviceVring::new(act, 0, 0)
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
