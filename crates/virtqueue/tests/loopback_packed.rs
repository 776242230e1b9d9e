//! Packed ring: driver side and device side of the same rings in one process, the device
//! seeing the driver's memory only through fds, payloads checked end to end.

use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::Arc;

use ferrovia_memory::{Burst, Mbuf, Mempool, MempoolConfig, RegionBacking, SharedRegion};
use ferrovia_virtqueue::device::{ActiveVring, DeviceQueue, RingView};
use ferrovia_virtqueue::driver::DriverOptions;
use ferrovia_virtqueue::error::CountingSink;
use ferrovia_virtqueue::guest_mem::{GuestMemory, RegionSpec};
use ferrovia_virtqueue::layout::{bit, feature};
use ferrovia_virtqueue::packed::{PackedDriver, PackedLayout};
use ferrovia_virtqueue::packed::{PackedRing, Pos};

fn dup(fd: i32) -> File {
    // SAFETY: duplicating a valid fd; the File owns the duplicate.
    unsafe { File::from_raw_fd(libc::dup(fd)) }
}

fn payload(seq: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 5 + seq * 11 + 3) as u8).collect()
}

fn make(pool: &Mempool, data: &[u8]) -> Mbuf {
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

/// A 256-mbuf pool for the tests that drive one or two queues by hand.
fn small_pool(name: &str) -> Mempool {
    Mempool::new(MempoolConfig {
        name: name.into(),
        count: 256,
        cache_size: 16,
        ..Default::default()
    })
    .unwrap()
}

fn run(features: u64, size: u16, sizes: &[usize], rounds: usize) {
    let features = features | bit(feature::F_RING_PACKED);
    let pool = Mempool::new(MempoolConfig {
        name: "pk".into(),
        count: 4096,
        cache_size: 64,
        ..Default::default()
    })
    .unwrap();
    let l = PackedLayout::new(size);
    let area = SharedRegion::new("pk-rings", l.total * 2, RegionBacking::Memfd).unwrap();
    let opts = DriverOptions {
        features,
        max_rx_pkt: 9728,
    };
    // SAFETY: the area holds two layouts and outlives both queues.
    let mut rx = unsafe { PackedDriver::new(area.base(), size, opts) }.unwrap();
    // SAFETY: as above.
    let mut tx = unsafe { PackedDriver::new(area.base().add(l.total), size, opts) }.unwrap();
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
        let b = area.base() as u64 + off as u64;
        // SAFETY: each part is translated inside the mapped ring region.
        let ring = unsafe {
            PackedRing::new(
                mem.translate_uva(b, 16 * size as u64).unwrap(),
                mem.translate_uva(b + l.driver_event as u64, 4).unwrap(),
                mem.translate_uva(b + l.device_event as u64, 4).unwrap(),
                size,
            )
        }
        .unwrap();
        let a = Arc::new(ActiveVring {
            ring: RingView::Packed(ring),
            mem: mem.clone(),
            features,
            base: Pos::START.encode(),
            call: None,
        });
        a.init_notifications();
        DeviceQueue::new(a, Pos::START.encode(), Pos::START.encode())
    };
    let mut dev_rx = dev(0);
    let mut dev_tx = dev(l.total);
    let sink = CountingSink::default();
    let mut cache = pool.cache();
    rx.set_rx_chain_for(9018, 2048);
    rx.refill(&mut cache, &sink);
    for round in 0..rounds {
        let seq0 = round * sizes.len();
        let mut b = Burst::new();
        for (i, &s) in sizes.iter().enumerate() {
            b.push(make(&pool, &payload(seq0 + i, s)));
        }
        let (sent, _) = tx.transmit(&mut cache, &mut b, &sink);
        assert_eq!(sent, sizes.len(), "round {round}");
        let mut got = Burst::new();
        let r = dev_tx.dequeue_burst(&mut cache, &mut got, 64, 9728, 0, &sink);
        assert_eq!(
            r.packets,
            sizes.len(),
            "round {round} errors {}",
            sink.total()
        );
        for (i, m) in got.iter().enumerate() {
            assert!(
                m.to_vec() == payload(seq0 + i, sizes[i]),
                "tx packet {i} round {round}"
            );
        }
        let n = got.len();
        let r = dev_rx.enqueue_burst(&mut cache, &mut got, &sink);
        assert_eq!(r.packets, n, "round {round} errors {}", sink.total());
        let mut out = Burst::new();
        let (k, _) = rx.receive(&mut cache, &mut out, 64, 0, &sink);
        assert_eq!(k, n, "round {round} errors {}", sink.total());
        for (i, m) in out.iter().enumerate() {
            assert!(
                m.to_vec() == payload(seq0 + i, sizes[i]),
                "rx packet {i} round {round}"
            );
        }
        cache.free_all(out.drain(..));
        tx.reclaim(&mut cache, &sink);
        assert_eq!(tx.in_flight(), 0);
    }
    assert_eq!(sink.total(), 0);
    rx.drain(&mut cache);
    drop(cache);
    assert_eq!(pool.available(), pool.count(), "no mbuf leaked");
}

const V1: u64 = bit(feature::F_VERSION_1);
const MRG: u64 = bit(feature::NET_F_MRG_RXBUF);

#[test]
fn packed_mergeable_wraps_many_times() {
    run(V1 | MRG, 64, &[64, 1518, 9000, 60, 2048], 100);
}

#[test]
fn packed_non_mergeable_wraps_many_times() {
    run(V1, 64, &[64, 1518, 9000, 60, 2048], 100);
}

#[test]
fn packed_odd_ring_size() {
    run(V1 | MRG, 100, &[64, 1518, 60], 200);
}

/// With IN_ORDER a device may complete a batch with one used descriptor carrying the last
/// buffer's id (DPDK's vhost does); every earlier buffer is complete too.
#[test]
fn in_order_batch_completion_frees_the_whole_batch() {
    let pool = small_pool("pk-io");
    let size = 16u16;
    let l = PackedLayout::new(size);
    let area = SharedRegion::new("pk-io-rings", l.total, RegionBacking::Memfd).unwrap();
    let opts = DriverOptions {
        features: V1 | bit(feature::F_RING_PACKED) | bit(feature::F_IN_ORDER),
        max_rx_pkt: 1518,
    };
    // SAFETY: the area holds one layout and outlives the queue.
    let mut tx = unsafe { PackedDriver::new(area.base(), size, opts) }.unwrap();
    let sink = CountingSink::default();
    let mut cache = pool.cache();
    let mut wrap = true;
    let mut pos = 0u16;
    for round in 0..10 {
        let mut b = Burst::new();
        for i in 0..5 {
            b.push(make(&pool, &payload(i, 64)));
        }
        assert_eq!(tx.transmit(&mut cache, &mut b, &sink).0, 5, "round {round}");
        // The last of the five buffers posted has this id:
        let last_id = tx.ring().desc((pos + 4) % size).id;
        tx.ring().write_used(pos, last_id, 0, wrap);
        tx.reclaim(&mut cache, &sink);
        assert_eq!(tx.in_flight(), 0, "round {round}");
        pos += 5;
        if pos >= size {
            pos -= size;
            wrap = !wrap;
        }
    }
    assert_eq!(sink.total(), 0);
    drop(cache);
    assert_eq!(pool.available(), pool.count());
}

const IN_ORDER: u64 = bit(feature::F_IN_ORDER);

/// With IN_ORDER our device completes each transmit burst with one used descriptor and skips
/// the ring forward; our driver must free the whole run, across wraps and at odd ring sizes.
#[test]
fn packed_in_order_device_batches_wrap_many_times() {
    run(V1 | MRG | IN_ORDER, 64, &[64, 1518, 9000, 60, 2048], 100);
    run(V1 | IN_ORDER, 100, &[64, 1518, 60], 200);
}

/// Bursts that are not a multiple of the device's and driver's hand-over groups (4), so
/// groups are flushed mid-burst and at the end, with the ring wrapping inside a group.
#[test]
fn packed_partial_groups_and_wraps() {
    let sizes: Vec<usize> = (0..13).map(|i| [64, 1518, 60, 300][i % 4]).collect();
    run(V1 | MRG | IN_ORDER, 30, &sizes, 150);
    run(V1 | MRG, 31, &sizes, 150);
}

fn lone_queue(features: u64, size: u16) -> (Mempool, SharedRegion, PackedDriver) {
    let pool = small_pool("pk-lone");
    let l = PackedLayout::new(size);
    let area = SharedRegion::new("pk-lone-rings", l.total, RegionBacking::Memfd).unwrap();
    let opts = DriverOptions {
        features: V1 | bit(feature::F_RING_PACKED) | features,
        max_rx_pkt: 1518,
    };
    // SAFETY: the area holds one layout and is returned with the queue, which the callers
    // drop first (tuple order is irrelevant: the area is only unmapped when it is dropped,
    // after the test stops using the queue).
    let q = unsafe { PackedDriver::new(area.base(), size, opts) }.unwrap();
    (pool, area, q)
}

/// In-order layout (ids are slots) with buffers in flight, then the options lose IN_ORDER: the
/// driver goes back to free ids without reusing one in flight, and every buffer completes.
#[test]
fn in_order_layout_to_free_ids_with_buffers_in_flight() {
    let (pool, _area, mut tx) = lone_queue(IN_ORDER, 16);
    let sink = CountingSink::default();
    let mut cache = pool.cache();
    let mut b = Burst::new();
    for i in 0..6 {
        b.push(make(&pool, &payload(i, 64)));
    }
    assert_eq!(tx.transmit(&mut cache, &mut b, &sink).0, 6);
    let first_ids: Vec<u16> = (0..6).map(|i| tx.ring().desc(i).id).collect();
    assert_eq!(
        first_ids,
        vec![0, 1, 2, 3, 4, 5],
        "in-order layout: id = slot"
    );
    tx.on_reconnect(
        DriverOptions {
            features: V1 | bit(feature::F_RING_PACKED),
            max_rx_pkt: 1518,
        },
        None,
    );
    for i in 0..6 {
        b.push(make(&pool, &payload(i, 64)));
    }
    assert_eq!(tx.transmit(&mut cache, &mut b, &sink).0, 6);
    let new_ids: Vec<u16> = (6..12).map(|i| tx.ring().desc(i).id).collect();
    for id in &new_ids {
        assert!(!first_ids.contains(id), "id {id} reused while in flight");
    }
    // The device completes all twelve, one used descriptor each, out of order within none.
    for (slot, &id) in first_ids.iter().chain(new_ids.iter()).enumerate() {
        tx.ring().write_used(slot as u16, id, 0, true);
    }
    tx.reclaim(&mut cache, &sink);
    assert_eq!(tx.in_flight(), 0);
    assert_eq!(sink.total(), 0);
    drop(cache);
    assert_eq!(pool.available(), pool.count());
}

/// In-order layout on receive: a used descriptor whose id is not the slot it was posted at is
/// counted and stops the queue; nothing panics or leaks.
#[test]
fn in_order_layout_receive_wrong_id_counted() {
    let (pool, _area, mut rx) = lone_queue(IN_ORDER | MRG, 16);
    let sink = CountingSink::default();
    let mut cache = pool.cache();
    rx.set_rx_chain_for(0, 2048);
    rx.refill(&mut cache, &sink);
    assert_eq!(rx.in_flight(), 16);
    rx.ring().write_used(0, 3, 100, true);
    let mut out = Burst::new();
    assert_eq!(rx.receive(&mut cache, &mut out, 32, 0, &sink).0, 0);
    assert_eq!(sink.total(), 1);
    assert_eq!(rx.receive(&mut cache, &mut out, 32, 0, &sink).0, 0);
    assert_eq!(sink.total(), 1, "counted once; the queue stays stopped");
    rx.drain(&mut cache);
    drop(cache);
    assert_eq!(pool.available(), pool.count());
}

/// Bursts of small one-descriptor packets take the device's four-per-line batched paths in
/// both directions; odd ring sizes put a partial line before the wrap, where the per-packet
/// path must take over without losing or reordering anything.
#[test]
fn packed_small_packets_take_line_batches_across_wraps() {
    run(V1 | MRG | IN_ORDER, 64, &[64; 32], 60);
    run(V1 | MRG, 64, &[60; 32], 60);
    run(V1 | MRG, 30, &[64; 24], 60);
    run(V1 | MRG | IN_ORDER, 22, &[61; 13], 60);
    // Without mergeable buffers our driver posts 5-descriptor receive chains (9018-byte
    // frames in 2 KiB buffers): transmit takes the two-pass plain path, receive the
    // per-packet one.
    run(V1, 64, &[64; 12], 60);
}

/// A hostile driver fills whole ring lines, one descriptor in each bad: a transmit buffer
/// outside guest memory, a receive buffer too short. The batched path must leave such a line
/// to the per-packet path, which delivers the good packets in order, counts the bad one and
/// completes every descriptor.
#[test]
fn bad_descriptor_inside_a_line_is_counted_and_the_rest_delivered() {
    use ferrovia_virtqueue::packed::{PackedDesc, avail_flags, is_used};
    const GPA: u64 = 0x10_0000;
    let pool = small_pool("pk-hostile");
    let size = 16u16;
    let area = SharedRegion::new("pk-hostile-guest", 0x10000, RegionBacking::Memfd).unwrap();
    let mem = Arc::new(
        GuestMemory::map(vec![RegionSpec {
            guest_phys_addr: GPA,
            size: 0x10000,
            user_addr: area.base() as u64,
            mmap_offset: 0,
            file: dup(area.fd()),
        }])
        .unwrap(),
    );
    // A ring at `off` in the guest: the driver's view through the area, the device's through
    // its own mapping of the same memory.
    let rings = |off: u64| {
        // SAFETY: 16 descriptors and two event areas at off, off+0x800, off+0x900, all inside
        // the 64 KiB area, which outlives both views.
        let drv = unsafe {
            let b = area.base().add(off as usize);
            PackedRing::new(b, b.add(0x800), b.add(0x900), size)
        }
        .unwrap();
        // SAFETY: the same ranges, translated through the device's mapping.
        let dev_ring = unsafe {
            PackedRing::new(
                mem.translate(GPA + off, 256).unwrap(),
                mem.translate(GPA + off + 0x800, 4).unwrap(),
                mem.translate(GPA + off + 0x900, 4).unwrap(),
                size,
            )
        }
        .unwrap();
        let a = Arc::new(ActiveVring {
            ring: RingView::Packed(dev_ring),
            mem: mem.clone(),
            features: V1 | bit(feature::F_RING_PACKED),
            base: Pos::START.encode(),
            call: None,
        });
        a.init_notifications();
        (
            drv,
            DeviceQueue::new(a, Pos::START.encode(), Pos::START.encode()),
        )
    };
    let buf = |i: u64| 0x4000 + i * 0x100;
    let sink = CountingSink::default();
    let mut cache = pool.cache();

    // Driver -> device: four 12 + 64-byte frames, the third one's address outside memory.
    let (drv, mut dev) = rings(0);
    for i in 0..4u16 {
        let off = buf(i as u64);
        // SAFETY: inside the area.
        let dst = unsafe { std::slice::from_raw_parts_mut(area.base().add(off as usize + 12), 64) };
        dst.copy_from_slice(&payload(i as usize, 64));
        let addr = if i == 2 { 0xdead_0000 } else { GPA + off };
        drv.write(
            i,
            PackedDesc {
                addr,
                len: 76,
                id: i,
            },
            avail_flags(true),
        );
    }
    let mut got = Burst::new();
    let r = dev.dequeue_burst(&mut cache, &mut got, 32, 9728, 0, &sink);
    assert_eq!(r.packets, 3);
    assert_eq!(sink.total(), 1, "the bad descriptor is counted");
    for (m, seq) in got.iter().zip([0, 1, 3]) {
        assert_eq!(m.to_vec(), payload(seq, 64));
    }
    for i in 0..4 {
        assert!(is_used(drv.flags(i), true), "descriptor {i} completed");
    }

    // Device -> driver: four writable buffers, the second too short for its frame.
    let (drv, mut dev) = rings(0x1000);
    for i in 0..4u16 {
        let len = if i == 1 { 20 } else { 0x100 };
        let d = PackedDesc {
            addr: GPA + buf(8 + i as u64),
            len,
            id: i,
        };
        drv.write(i, d, avail_flags(true) | 2 /* VRING_DESC_F_WRITE */);
    }
    let r = dev.enqueue_burst(&mut cache, &mut got, &sink);
    // Three frames (0, 1, 3) for four buffers: frame 0 into buffer 0, frame 1 meets the short
    // buffer 1 and is dropped, frame 3 goes into buffer 2; buffer 3 stays available.
    assert_eq!(r.packets, 2);
    assert_eq!(sink.total(), 2);
    let written: Vec<u32> = (0..3).map(|i| drv.desc(i).len).collect();
    assert_eq!(
        written,
        vec![76, 0, 76],
        "the short buffer is returned empty"
    );
    for i in 0..3 {
        assert!(is_used(drv.flags(i), true), "buffer {i} completed");
    }
    assert!(!is_used(drv.flags(3), true), "buffer 3 unused");
    for (slot, seq) in [(0u64, 0usize), (2, 3)] {
        // SAFETY: inside the area; the device wrote header and frame there.
        let frame =
            unsafe { std::slice::from_raw_parts(area.base().add(buf(8 + slot) as usize + 12), 64) };
        assert_eq!(frame, &payload(seq, 64)[..], "buffer {slot}");
    }
    assert!(
        got.is_empty(),
        "every frame was consumed (delivered or dropped)"
    );

    // Driver -> device: one plain descriptor between two others whose frame (3000 bytes) is
    // larger than one mbuf. The two-pass plain path leaves it to the per-chain path, which
    // spreads it over a chain of mbufs; the packets keep their order.
    let (drv, mut dev) = rings(0x2000);
    let big = payload(7, 3000);
    for (i, frame) in [payload(5, 64), big.clone(), payload(6, 64)]
        .iter()
        .enumerate()
    {
        let off = 0x8000 + i as u64 * 0x1000;
        // SAFETY: inside the area (0x8000 + 2 * 0x1000 + 12 + 3000 < 0x10000).
        let dst = unsafe {
            std::slice::from_raw_parts_mut(area.base().add(off as usize + 12), frame.len())
        };
        dst.copy_from_slice(frame);
        let d = PackedDesc {
            addr: GPA + off,
            len: 12 + frame.len() as u32,
            id: i as u16,
        };
        drv.write(i as u16, d, avail_flags(true));
    }
    let before = sink.total();
    let r = dev.dequeue_burst(&mut cache, &mut got, 32, 9728, 0, &sink);
    assert_eq!(r.packets, 3);
    assert_eq!(sink.total(), before, "nothing wrong with any of them");
    let frames: Vec<Vec<u8>> = got.iter().map(|m| m.to_vec()).collect();
    assert_eq!(frames, vec![payload(5, 64), big, payload(6, 64)]);
    assert!(got[1].nb_segs() > 1, "the large frame spans a chain");
    for i in 0..3 {
        assert!(is_used(drv.flags(i), true), "descriptor {i} completed");
    }
    cache.free_all(got.drain(..));
    drop(cache);
    assert_eq!(pool.available(), pool.count(), "no mbuf leaked");
}
