//! Device → driver on a split ring deep enough (8192 entries) that the device prefetches
//! receive headers ahead of the buffer it fills: hostile avail entries among the posted
//! receive buffers (a head past the ring, a buffer outside the driver's memory, a buffer that
//! starts inside it and runs past its end) are counted and skipped, the look-ahead over them
//! faults nothing, and every other packet lands intact with its header.

use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::Arc;

use ferrovia_memory::{Burst, Mempool, MempoolConfig, RegionBacking, SharedRegion};
use ferrovia_virtqueue::RingError;
use ferrovia_virtqueue::device::{ActiveVring, DeviceQueue, RingView};
use ferrovia_virtqueue::error::CountingSink;
use ferrovia_virtqueue::guest_mem::{GuestMemory, RegionSpec};
use ferrovia_virtqueue::layout::{Desc, VRING_DESC_F_WRITE, bit, feature};
use ferrovia_virtqueue::split::SplitRing;

const GPA: u64 = 0x100_0000;
const AREA: usize = 4 << 20;
const SIZE: u16 = 8192;
/// Descriptors 128 KiB, avail 16 KiB + 6, used 64 KiB + 6: ring parts at these offsets.
const DESC: u64 = 0;
const AVAIL: u64 = 0x2_0000;
const USED: u64 = 0x3_0000;
/// Receive buffers, 2 KiB each.
const BUFS: u64 = 0x10_0000;
const BUF_LEN: u32 = 2048;
/// The virtio 1.x header (with num_buffers) the device writes before each frame.
const HDR: usize = 12;
const FRAME: usize = 1514;

fn dup(fd: i32) -> File {
    // SAFETY: duplicating a valid fd; the File owns the duplicate.
    unsafe { File::from_raw_fd(libc::dup(fd)) }
}

fn payload(seq: usize) -> Vec<u8> {
    (0..FRAME).map(|i| (i * 7 + seq * 13) as u8).collect()
}

/// What the driver posts at one avail slot.
#[derive(Clone, Copy, Debug)]
enum Post {
    /// Buffer `n` of the buffer area, in descriptor `n`.
    Good(u16),
    /// An avail entry naming a descriptor past the ring.
    HeadPastRing,
    /// A descriptor whose address is outside the driver's memory.
    Outside(u16),
    /// A descriptor that starts 8 bytes before the end of the driver's memory (its header
    /// would translate, the frame does not).
    RunsPastEnd(u16),
}

#[test]
fn hostile_buffers_among_prefetched_ones_are_counted_and_skipped() {
    let area = SharedRegion::new("deep-guest", AREA, RegionBacking::Memfd).unwrap();
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
    let t = |off: u64, len: u64| mem.translate(GPA + off, len).unwrap();
    // SAFETY: the three ring parts, translated with their sizes, lie inside the mapping the
    // ActiveVring keeps alive.
    let ring = unsafe {
        SplitRing::new(
            t(DESC, 16 * SIZE as u64),
            t(AVAIL, 6 + 2 * SIZE as u64),
            t(USED, 6 + 8 * SIZE as u64),
            SIZE,
        )
    }
    .unwrap();
    let active = Arc::new(ActiveVring {
        ring: RingView::Split(ring),
        mem: mem.clone(),
        features: bit(feature::F_VERSION_1),
        base: 0,
        call: None,
    });
    active.init_notifications();
    let mut dev = DeviceQueue::new(active, 0, 0);
    // SAFETY: the driver's view of the same ring parts, through its own mapping of the area,
    // which outlives the view.
    let drv = unsafe {
        SplitRing::new(
            area.base().add(DESC as usize),
            area.base().add(AVAIL as usize),
            area.base().add(USED as usize),
            SIZE,
        )
    }
    .unwrap();

    // 40 posted buffers, three of them hostile, the bad ones inside the look-ahead's reach of
    // each other and of the burst's start.
    let mut posts: Vec<Post> = (0..40).map(Post::Good).collect();
    posts[1] = Post::HeadPastRing;
    posts[3] = Post::Outside(3);
    posts[4] = Post::RunsPastEnd(4);
    for (slot, p) in posts.iter().enumerate() {
        let (head, addr) = match *p {
            Post::Good(n) => (n, GPA + BUFS + n as u64 * BUF_LEN as u64),
            Post::HeadPastRing => (SIZE + 5, 0),
            Post::Outside(n) => (n, GPA + AREA as u64 + 0x1000),
            Post::RunsPastEnd(n) => (n, GPA + AREA as u64 - 8),
        };
        if head < SIZE {
            drv.set_desc(
                head,
                Desc {
                    addr,
                    len: BUF_LEN,
                    flags: VRING_DESC_F_WRITE,
                    next: 0,
                },
            );
        }
        drv.set_avail_ring(slot as u16, head);
    }
    drv.set_avail_idx(posts.len() as u16);

    let pool = Mempool::new(MempoolConfig {
        name: "deep".into(),
        count: 256,
        cache_size: 32,
        ..Default::default()
    })
    .unwrap();
    let mut cache = pool.cache();
    let mut burst = Burst::new();
    for seq in 0..32 {
        let mut m = cache.alloc().unwrap();
        m.append(FRAME).unwrap().copy_from_slice(&payload(seq));
        burst.push(m);
    }
    let sink = CountingSink::default();
    let r = dev.enqueue_burst(&mut cache, &mut burst, &sink);

    // Without mergeable buffers each bad buffer costs its packet: 32 packets, 3 dropped.
    assert_eq!(r.packets, 29, "errors: {}", sink.total());
    assert!(
        burst.is_empty(),
        "every packet handled, none left for a retry"
    );
    assert_eq!(
        sink.count(RingError::DescIndex),
        1,
        "the head past the ring"
    );
    assert_eq!(
        sink.count(RingError::DescAddr),
        2,
        "the two buffers outside memory"
    );
    assert_eq!(sink.total(), 3, "nothing else counted");

    // Used entries: one per buffer with a valid head (31), the bad ones with length 0; the
    // packets land in order on the good buffers.
    assert_eq!(drv.used_idx(), 31);
    let mut seq = 0;
    let mut used_slot = 0u16;
    for p in &posts[..32] {
        match *p {
            Post::HeadPastRing => {
                seq += 1; // its packet was dropped; no used entry
            }
            Post::Outside(n) | Post::RunsPastEnd(n) => {
                let e = drv.used_elem(used_slot);
                assert_eq!(
                    (e.id, e.len),
                    (n as u32, 0),
                    "bad buffer {n} given back empty"
                );
                used_slot += 1;
                seq += 1;
            }
            Post::Good(n) => {
                let e = drv.used_elem(used_slot);
                assert_eq!(
                    (e.id, e.len),
                    (n as u32, (HDR + FRAME) as u32),
                    "buffer {n}"
                );
                let off = (BUFS + n as u64 * BUF_LEN as u64) as usize;
                // SAFETY: buffer n lies inside the area (BUFS + 40 * 2 KiB < 4 MiB).
                let got = unsafe { std::slice::from_raw_parts(area.base().add(off), HDR + FRAME) };
                let mut want_hdr = [0u8; HDR];
                want_hdr[10] = 1; // num_buffers = 1, little-endian
                assert_eq!(&got[..HDR], &want_hdr, "buffer {n}: header");
                assert!(
                    got[HDR..] == payload(seq)[..],
                    "buffer {n}: frame of packet {seq}"
                );
                used_slot += 1;
                seq += 1;
            }
        }
    }
    assert_eq!(seq, 32);
}
