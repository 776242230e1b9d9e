//! Caps on what a hostile driver sizes, on both ring layouts, device side in process: the
//! descriptors of one chain (zero-length ones and indirect entries included) and the entries
//! of one indirect table. Each case asserts the one counter that moved and that a good packet
//! still goes through afterwards.

use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::Arc;

use ferrovia_memory::{Burst, Mempool, MempoolConfig, RegionBacking, SharedRegion};
use ferrovia_virtqueue::RingError;
use ferrovia_virtqueue::chain::{MAX_CHAIN_DESCS, MAX_INDIRECT_DESCS};
use ferrovia_virtqueue::device::{ActiveVring, DeviceQueue, RingView};
use ferrovia_virtqueue::error::CountingSink;
use ferrovia_virtqueue::guest_mem::{GuestMemory, RegionSpec};
use ferrovia_virtqueue::layout::{Desc, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, bit, feature};
use ferrovia_virtqueue::packed::{PackedDesc, PackedRing, Pos, avail_flags};
use ferrovia_virtqueue::split::SplitRing;

const GPA: u64 = 0x100_0000;
const AREA: usize = 4 << 20;
const SIZE: u16 = 2048;
/// Where the ring parts, the indirect table and the packet buffer live in the area.
const RING: u64 = 0;
const TABLE: u64 = 0x10_0000;
const BUF: u64 = 0x8_0000;

fn dup(fd: i32) -> File {
    // SAFETY: duplicating a valid fd; the File owns the duplicate.
    unsafe { File::from_raw_fd(libc::dup(fd)) }
}

/// A guest area, the device's mapping of it, and a device queue on a ring of [`SIZE`].
struct Rig {
    area: SharedRegion,
    dev: DeviceQueue,
    pool: Mempool,
    packed: bool,
    /// The driver's position: next slot to fill (and, packed, its wrap bit is always set).
    next: u16,
}

impl Rig {
    fn new(packed: bool) -> Rig {
        let area = SharedRegion::new("caps-guest", AREA, RegionBacking::Memfd).unwrap();
        let mem = Arc::new(
            GuestMemory::map(vec![RegionSpec {
                guest_phys_addr: GPA,
                size: AREA as u64,
                user_addr: area.base() as u64,
                mmap_offset: 0,
                file: dup(area.fd()),
            }])
            .unwrap(),
        );
        let t = |off: u64, len: u64| mem.translate(GPA + RING + off, len).unwrap();
        let mut features = bit(feature::F_VERSION_1) | bit(feature::RING_F_INDIRECT_DESC);
        let ring = if packed {
            features |= bit(feature::F_RING_PACKED);
            // SAFETY: 2048 descriptors (32 KiB) and two event areas, translated with their
            // sizes inside the mapping the ActiveVring keeps alive.
            RingView::Packed(unsafe {
                PackedRing::new(t(0, 0x8000), t(0x8000, 4), t(0x8100, 4), SIZE).unwrap()
            })
        } else {
            // SAFETY: as above: descriptors 32 KiB, avail 4 KiB + 6, used 16 KiB + 6.
            RingView::Split(unsafe {
                SplitRing::new(t(0, 0x8000), t(0x8000, 0x1006), t(0x10000, 0x4006), SIZE).unwrap()
            })
        };
        let base = if packed { Pos::START.encode() } else { 0 };
        let active = Arc::new(ActiveVring {
            ring,
            mem,
            features,
            base,
            call: None,
        });
        active.init_notifications();
        let pool = Mempool::new(MempoolConfig {
            name: "caps".into(),
            count: 256,
            cache_size: 16,
            ..Default::default()
        })
        .unwrap();
        Rig {
            area,
            dev: DeviceQueue::new(active, base, base),
            pool,
            packed,
            next: 0,
        }
    }

    fn at(&self, off: u64) -> *mut u8 {
        assert!((off as usize) < AREA);
        // SAFETY: inside the area, checked above.
        unsafe { self.area.base().add(off as usize) }
    }

    /// The driver's view of the ring (through its own mapping of the area).
    fn split(&self) -> SplitRing {
        // SAFETY: the ring parts at RING inside the area, which outlives the view.
        unsafe {
            SplitRing::new(
                self.at(RING),
                self.at(RING + 0x8000),
                self.at(RING + 0x10000),
                SIZE,
            )
        }
        .unwrap()
    }

    fn packed_ring(&self) -> PackedRing {
        // SAFETY: as above.
        unsafe {
            PackedRing::new(
                self.at(RING),
                self.at(RING + 0x8000),
                self.at(RING + 0x8100),
                SIZE,
            )
        }
        .unwrap()
    }

    /// Writes indirect table entry `i` (addr, len, flags, next), as both layouts lay it out.
    fn table_entry(&self, i: u32, d: Desc) {
        let p = self.at(TABLE + i as u64 * 16);
        // SAFETY: 16 bytes inside the area.
        unsafe {
            (p as *mut u64).write_unaligned(d.addr);
            (p.add(8) as *mut u32).write_unaligned(d.len);
            (p.add(12) as *mut u16).write_unaligned(d.flags);
            (p.add(14) as *mut u16).write_unaligned(d.next);
        }
    }

    /// Makes a chain of `descs` ring descriptors available (each `NEXT` but the last).
    fn post(&mut self, descs: &[(u64, u32, u16)]) {
        let head = self.next;
        let n = descs.len() as u16;
        if self.packed {
            let r = self.packed_ring();
            // Flags written last to first so the head becomes available last.
            for (k, &(addr, len, flags)) in descs.iter().enumerate().rev() {
                let next = if k + 1 < descs.len() {
                    VRING_DESC_F_NEXT
                } else {
                    0
                };
                r.write(
                    head + k as u16,
                    PackedDesc {
                        addr,
                        len,
                        id: head,
                    },
                    flags | next | avail_flags(true),
                );
            }
        } else {
            let r = self.split();
            for (k, &(addr, len, flags)) in descs.iter().enumerate() {
                let next = if k + 1 < descs.len() {
                    VRING_DESC_F_NEXT
                } else {
                    0
                };
                r.set_desc(
                    head + k as u16,
                    Desc {
                        addr,
                        len,
                        flags: flags | next,
                        next: head + k as u16 + 1,
                    },
                );
            }
            let idx = r.avail_idx();
            r.set_avail_ring(idx, head);
            r.set_avail_idx(idx.wrapping_add(1));
        }
        self.next += n;
    }

    /// Runs one dequeue burst; returns the packets and the counters.
    fn burst(&mut self) -> (usize, CountingSink) {
        let sink = CountingSink::default();
        let mut cache = self.pool.cache();
        let mut out = Burst::new();
        let r = self
            .dev
            .dequeue_burst(&mut cache, &mut out, 32, 9728, 0, &sink);
        assert_eq!(r.packets, out.len());
        cache.free_all(out.drain(..));
        (r.packets, sink)
    }

    /// A good 12 + 60-byte frame in one descriptor goes through.
    fn good_packet_flows(&mut self) {
        self.post(&[(GPA + BUF, 72, 0)]);
        let (n, sink) = self.burst();
        assert_eq!((n, sink.total()), (1, 0), "a good packet after the attack");
    }
}

fn layouts() -> [(bool, &'static str); 2] {
    [(false, "split"), (true, "packed")]
}

/// A chain of more than [`MAX_CHAIN_DESCS`] zero-length ring descriptors (no loop, in a ring
/// large enough to hold it) is refused as too long: it used to cost a walk of the whole chain
/// per burst and be taken as a header-less chain.
#[test]
fn chain_of_zero_length_descriptors_is_capped() {
    for (packed, name) in layouts() {
        let mut rig = Rig::new(packed);
        let chain = vec![(GPA + BUF, 0u32, 0u16); MAX_CHAIN_DESCS as usize + 1];
        rig.post(&chain);
        let (n, sink) = rig.burst();
        assert_eq!(n, 0, "{name}");
        assert_eq!(sink.count(RingError::DescLen), 1, "{name}: bad_desc_len");
        assert_eq!(sink.total(), 1, "{name}: nothing else counted");
        rig.good_packet_flows();
    }
}

/// A chain of exactly [`MAX_CHAIN_DESCS`] descriptors (zero-length ones, then the frame) is
/// still taken.
#[test]
fn chain_at_the_cap_is_taken() {
    for (packed, name) in layouts() {
        let mut rig = Rig::new(packed);
        let mut chain = vec![(GPA + BUF, 0u32, 0u16); MAX_CHAIN_DESCS as usize - 1];
        chain.push((GPA + BUF, 72, 0));
        rig.post(&chain);
        let (n, sink) = rig.burst();
        assert_eq!((n, sink.total()), (1, 0), "{name}");
    }
}

/// An indirect table of more than [`MAX_CHAIN_DESCS`] zero-length entries is refused as too
/// long; one of more than [`MAX_INDIRECT_DESCS`] entries as a bad indirect descriptor (packed
/// rings had no cap but the region's size).
#[test]
fn indirect_tables_are_capped() {
    for (packed, name) in layouts() {
        let mut rig = Rig::new(packed);
        let n = MAX_CHAIN_DESCS + 1;
        for i in 0..n {
            let last = i + 1 == n;
            rig.table_entry(
                i,
                Desc {
                    addr: GPA + BUF,
                    len: if last { 72 } else { 0 },
                    flags: if last || packed { 0 } else { VRING_DESC_F_NEXT },
                    next: (i + 1) as u16,
                },
            );
        }
        rig.post(&[(GPA + TABLE, n * 16, VRING_DESC_F_INDIRECT)]);
        let (got, sink) = rig.burst();
        assert_eq!(got, 0, "{name}");
        assert_eq!(sink.count(RingError::DescLen), 1, "{name}: bad_desc_len");
        assert_eq!(sink.total(), 1, "{name}: nothing else counted");

        rig.post(&[(
            GPA + TABLE,
            (MAX_INDIRECT_DESCS + 1) * 16,
            VRING_DESC_F_INDIRECT,
        )]);
        let (got, sink) = rig.burst();
        assert_eq!(got, 0, "{name}");
        assert_eq!(
            sink.count(RingError::Indirect),
            1,
            "{name}: bad_indirect_desc"
        );
        assert_eq!(sink.total(), 1, "{name}: nothing else counted");
        rig.good_packet_flows();
    }
}
