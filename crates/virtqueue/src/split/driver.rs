//! The driver side of a virtio-net split queue (what virtio-user runs).
//!
//! The rings live in this process's shared memory; the device (the vhost-user backend) reads
//! the descriptors and writes used entries. The device is not trusted: the chain structure,
//! posted lengths and in-flight mbufs are kept in private arrays, and every used id and length
//! is checked against them, so a hostile backend can at worst lose packets, never corrupt this
//! process.
//!
//! * Tx: [`SplitDriver::transmit`] prepends the virtio-net header in the mbuf's headroom (or
//!   uses a per-descriptor header cell when there is none) and posts one descriptor per
//!   segment; mbufs are freed when the device returns them.
//! * Rx: [`SplitDriver::refill`] posts empty mbufs (one per descriptor; chains of several when
//!   mergeable buffers are off and frames may exceed one mbuf); [`SplitDriver::receive`]
//!   collects completed packets, merging buffers by `num_buffers`.

use std::fs::File;
use std::sync::atomic::{Ordering, fence};

use ferrovia_memory::{Burst, Mbuf, MbufCache};

use crate::error::{ErrorSink, QueueError, RingError};
use crate::layout::{
    Desc, HDR_CELL, NET_HDR_NUM_BUFFERS_OFF, VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC_F_NEXT,
    VRING_DESC_F_WRITE, VRING_USED_F_NO_NOTIFY, align, avail_ring_size, bit, desc_table_size,
    feature, need_event, net_hdr_len, used_ring_size,
};
use crate::net_hdr::{HdrAccept, clear_tx_hdr, tx_hdr, write_tx_hdr};
use crate::notify::Kick;
use crate::options::{DriverOptions, TX_RECLAIM_AT};
use crate::ring::split::SplitRing;

const NONE: u16 = u16::MAX;
/// Transmitted chains are made visible to the device every this many packets (one store of
/// `avail.idx`) rather than once per burst, so it can start copying the first packets while
/// the driver posts the rest.
const TX_PUBLISH_EVERY: u16 = 8;

/// Where each part of one queue sits inside its memory area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitLayout {
    /// Descriptor table offset.
    pub desc: usize,
    /// Avail ring offset.
    pub avail: usize,
    /// Used ring offset.
    pub used: usize,
    /// Header cells offset.
    pub hdrs: usize,
    /// Total bytes (a multiple of 4096).
    pub total: usize,
}

impl SplitLayout {
    /// Layout for a ring of `size` entries.
    pub fn new(size: u16) -> SplitLayout {
        let desc = 0;
        let avail = align(desc + desc_table_size(size), 64);
        let used = align(avail + avail_ring_size(size), 64);
        let hdrs = align(used + used_ring_size(size), 64);
        let total = align(hdrs + HDR_CELL * size as usize, 4096);
        SplitLayout {
            desc,
            avail,
            used,
            hdrs,
            total,
        }
    }
}

/// The avail index a new device should start from after a reconnection, given what the old
/// device completed (`used.idx` in ring memory) and the driver's own `last_used` and
/// `avail_idx`. Repairs `used.idx` if the old device left it outside that window. Must run
/// while no burst is in progress on the queue.
pub fn resume_base(ring: &SplitRing, last_used: u16, avail_idx: u16) -> u16 {
    let used = ring.used_idx();
    let completed = used.wrapping_sub(last_used);
    let posted = avail_idx.wrapping_sub(last_used);
    if completed <= posted {
        used
    } else {
        ring.set_used_idx(last_used);
        last_used
    }
}

/// Driver-side state of one queue. Owned by one polling thread.
pub struct SplitDriver {
    ring: SplitRing,
    hdr_cells: *mut u8,
    mask: u16,
    free_head: u16,
    num_free: u16,
    next: Box<[u16]>,
    chain_len: Box<[u16]>,
    slots: Box<[Option<Mbuf>]>,
    posted: Box<[u32]>,
    avail_idx: u16,
    last_used: u16,
    hdr_len: usize,
    /// Transmit headers carry the mbufs' offload requests (the device negotiated CSUM or
    /// HOST_TSO); otherwise they are zero.
    ol_tx: bool,
    mrg: bool,
    event_idx: bool,
    rx_chain: u16,
    max_rx_pkt: usize,
    kick: Option<Kick>,
    /// Added (wrapping) to the virtual address of every mbuf buffer written into a
    /// descriptor: the device's address of the byte. 0 for virtio-user (the backend maps our
    /// memory at our addresses); for a virtio-pci device, the physically contiguous pool's
    /// physical minus virtual address.
    mbuf_iova: u64,
    /// The same for the header cells of this queue's area (the area's own delta).
    cell_iova: u64,
    broken: bool,
    /// VIRTIO_F_IN_ORDER layout: descriptors are handed out in table order and come back in
    /// that order, so no free list is walked and used ids need no lookup.
    in_order: bool,
    /// In-order layout: free-running position of the next descriptor to hand out.
    next_pos: u16,
    /// In-order layout: free-running position of the oldest descriptor still posted.
    done_pos: u16,
}

// SAFETY: the raw pointers refer to the queue's own shared area, which the owner keeps mapped;
// the queue is used by one thread at a time.
unsafe impl Send for SplitDriver {}

impl std::fmt::Debug for SplitDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitDriver")
            .field("size", &(self.mask as u32 + 1))
            .field("num_free", &self.num_free)
            .field("avail_idx", &self.avail_idx)
            .field("last_used", &self.last_used)
            .finish()
    }
}

impl SplitDriver {
    /// Initialises a queue in `area` (laid out by [`SplitLayout::new`]`(size)`).
    ///
    /// # Safety
    /// `area` must point to at least `SplitLayout::new(size).total` bytes of 4096-aligned
    /// writable memory that stays mapped while this queue (or a copy of [`Self::ring`]) is used.
    pub unsafe fn new(
        area: *mut u8,
        size: u16,
        opts: DriverOptions,
    ) -> Result<SplitDriver, QueueError> {
        let l = SplitLayout::new(size);
        // SAFETY: the caller guarantees `area` holds the whole layout.
        let ring = unsafe {
            std::ptr::write_bytes(area, 0, l.total);
            SplitRing::new(area.add(l.desc), area.add(l.avail), area.add(l.used), size)
        }
        .map_err(|source| QueueError::SplitRing { size, source })?;
        let n = size as usize;
        let mut q = SplitDriver {
            ring,
            // SAFETY: inside the area per the layout.
            hdr_cells: unsafe { area.add(l.hdrs) },
            mask: size - 1,
            free_head: 0,
            num_free: size,
            next: (0..n)
                .map(|i| if i + 1 < n { (i + 1) as u16 } else { NONE })
                .collect(),
            chain_len: vec![0; n].into_boxed_slice(),
            slots: (0..n).map(|_| None).collect(),
            posted: vec![0; n].into_boxed_slice(),
            avail_idx: 0,
            last_used: 0,
            hdr_len: 12,
            ol_tx: false,
            mrg: false,
            event_idx: false,
            rx_chain: 1,
            max_rx_pkt: opts.max_rx_pkt,
            kick: None,
            mbuf_iova: 0,
            cell_iova: 0,
            broken: false,
            in_order: false,
            next_pos: 0,
            done_pos: 0,
        };
        q.apply_options(opts);
        Ok(q)
    }

    /// Applies negotiated options (after a (re)connection; features must not change while
    /// buffers are in flight).
    pub fn apply_options(&mut self, opts: DriverOptions) {
        self.hdr_len = net_hdr_len(opts.features);
        self.ol_tx = HdrAccept::device_reads(opts.features).any();
        self.mrg = opts.features & bit(feature::NET_F_MRG_RXBUF) != 0;
        self.event_idx = opts.features & bit(feature::RING_F_EVENT_IDX) != 0;
        self.max_rx_pkt = opts.max_rx_pkt;
        self.set_in_order(opts.features & bit(feature::F_IN_ORDER) != 0);
        if self.event_idx {
            self.ring
                .set_used_event(self.last_used.wrapping_add(0x8000));
        } else {
            self.ring.set_avail_flags(VRING_AVAIL_F_NO_INTERRUPT);
        }
    }

    /// Sets the eventfd used to kick the device (None: never kick).
    pub fn set_kick(&mut self, kick: Option<File>) {
        self.kick = kick.map(Kick::Fd);
    }

    /// Sets how the device is kicked (an eventfd or a virtio-pci notification register).
    pub fn set_notify(&mut self, kick: Option<Kick>) {
        self.kick = kick;
    }

    /// Sets the device's view of our addresses: descriptors carry an mbuf buffer's virtual
    /// address plus `mbuf_iova` and a header cell's plus `area_iova` (wrapping). Both are 0
    /// (the default) when the device sees our virtual addresses (virtio-user). Set before any
    /// buffer is posted.
    pub fn set_iova(&mut self, mbuf_iova: u64, area_iova: u64) {
        self.mbuf_iova = mbuf_iova;
        self.cell_iova = area_iova;
    }

    /// A copy of the ring view (for the control plane).
    pub fn ring(&self) -> SplitRing {
        self.ring
    }

    /// Index of the next used entry this queue will read.
    pub fn last_used(&self) -> u16 {
        self.last_used
    }

    /// Descriptors currently posted to the device.
    pub fn in_flight(&self) -> u16 {
        self.mask.wrapping_add(1).wrapping_sub(self.num_free)
    }

    /// Index of the next avail entry this queue will write.
    pub fn avail_idx(&self) -> u16 {
        self.avail_idx
    }

    /// After a reconnection: forgets a previous peer's corruption and follows the new
    /// negotiated options and kick fd.
    pub fn on_reconnect(&mut self, opts: DriverOptions, kick: Option<File>) {
        self.broken = false;
        self.apply_options(opts);
        self.kick = kick.map(Kick::Fd);
    }

    /// Switches between the free-list and the in-order descriptor layouts. Turning in-order
    /// off rebuilds the free list from the free positions, keeping what is in flight; turning
    /// it on needs an empty ring (otherwise the free list stays, which an in-order device
    /// also serves: it only needs each chain's used entry to be written).
    fn set_in_order(&mut self, on: bool) {
        if on == self.in_order {
            return;
        }
        if on {
            if self.num_free != self.mask.wrapping_add(1) {
                return;
            }
            self.next_pos = 0;
            self.done_pos = 0;
            self.in_order = true;
            return;
        }
        // In-order -> free list: the free descriptors are the `num_free` positions from
        // `next_pos` on; chains in flight keep their `next` links and lengths. The free-list
        // layout takes a non-zero `chain_len` as "head of a chain in flight" when it checks a
        // used id, and the in-order layout leaves old lengths behind, so clear every position
        // that is not such a head.
        let mut p = self.done_pos;
        while p != self.next_pos {
            let n = self.chain_len[(p & self.mask) as usize].max(1);
            for k in 1..n {
                self.chain_len[(p.wrapping_add(k) & self.mask) as usize] = 0;
            }
            p = p.wrapping_add(n);
        }
        let mut link = NONE;
        for k in (0..self.num_free).rev() {
            let p = self.next_pos.wrapping_add(k) & self.mask;
            self.next[p as usize] = link;
            self.chain_len[p as usize] = 0;
            link = p;
        }
        self.free_head = link;
        self.in_order = false;
    }

    /// Takes `n` descriptors for one chain, linked through `next`; returns the head.
    #[inline]
    fn alloc_descs<const IO: bool>(&mut self, n: u16) -> u16 {
        debug_assert!(n >= 1 && n <= self.num_free);
        let head;
        if IO {
            head = self.next_pos & self.mask;
            for k in 0..n - 1 {
                let p = head.wrapping_add(k) & self.mask;
                self.next[p as usize] = (p + 1) & self.mask;
            }
            self.next[(head.wrapping_add(n - 1) & self.mask) as usize] = NONE;
            self.next_pos = self.next_pos.wrapping_add(n);
        } else {
            head = self.free_head;
            let mut last = head;
            for _ in 1..n {
                last = self.next[last as usize];
            }
            self.free_head = self.next[last as usize];
            self.next[last as usize] = NONE;
        }
        self.num_free -= n;
        self.chain_len[head as usize] = n;
        head
    }

    /// `alloc_descs(1)` without the walk (17 instructions per packet less on the fast paths,
    /// callgrind).
    #[inline]
    fn alloc_one<const IO: bool>(&mut self) -> u16 {
        debug_assert!(self.num_free >= 1);
        let head;
        if IO {
            head = self.next_pos & self.mask;
            self.next_pos = self.next_pos.wrapping_add(1);
        } else {
            head = self.free_head;
            self.free_head = self.next[head as usize];
            self.next[head as usize] = NONE;
        }
        self.num_free -= 1;
        self.chain_len[head as usize] = 1;
        head
    }

    /// Returns the chain at `head` to the free descriptors. In-order: `head` is the oldest
    /// chain posted (the callers take chains in order).
    #[inline]
    fn free_chain<const IO: bool>(&mut self, head: u16) {
        let n = self.chain_len[head as usize];
        if IO {
            debug_assert_eq!(head, self.done_pos & self.mask);
            self.done_pos = self.done_pos.wrapping_add(n);
        } else {
            let mut last = head;
            for _ in 1..n {
                last = self.next[last as usize];
            }
            self.next[last as usize] = self.free_head;
            self.free_head = head;
            self.chain_len[head as usize] = 0;
        }
        self.num_free += n;
    }

    /// Gives back the chain just taken by `alloc_descs` (a refill that ran out of mbufs).
    fn unalloc_newest<const IO: bool>(&mut self, head: u16) {
        if IO {
            let n = self.chain_len[head as usize];
            self.next_pos = self.next_pos.wrapping_sub(n);
            self.num_free += n;
        } else {
            self.free_chain::<false>(head);
        }
    }

    /// Stores avail ring entry `avail_idx` as `head`. In-order with single descriptors the
    /// entry already holds that value from the previous lap; leaving it unwritten keeps the
    /// device's cached copy of the line valid.
    #[inline]
    fn push_avail<const IO: bool>(&mut self, head: u16) {
        if !IO || self.ring.avail_ring(self.avail_idx) != head {
            self.ring.set_avail_ring(self.avail_idx, head);
        }
        self.avail_idx = self.avail_idx.wrapping_add(1);
    }

    #[inline]
    fn publish_avail(&mut self, old: u16) {
        if old == self.avail_idx {
            return;
        }
        if self.ring.avail_idx() != self.avail_idx {
            self.ring.set_avail_idx(self.avail_idx);
        }
        let Some(kick) = &self.kick else { return };
        fence(Ordering::SeqCst);
        let kick_needed = if self.event_idx {
            need_event(self.ring.avail_event(), self.avail_idx, old)
        } else {
            self.ring.used_flags() & VRING_USED_F_NO_NOTIFY == 0
        };
        if kick_needed {
            kick.notify();
        }
    }

    /// Returns completed entries' ids, validated; stops at the first incomplete merge.
    #[inline]
    fn used_pending(&mut self, sink: &impl ErrorSink) -> u16 {
        if self.broken {
            return 0;
        }
        let used = self.ring.used_idx();
        let pending = used.wrapping_sub(self.last_used);
        if pending > self.in_flight_entries() {
            sink.ring_error(RingError::UsedId, 1);
            self.broken = true;
            return 0;
        }
        pending
    }

    #[inline]
    fn in_flight_entries(&self) -> u16 {
        self.avail_idx.wrapping_sub(self.last_used)
    }

    /// Takes the used entry at `last_used`, validating its id. None (counted) if bogus.
    /// In-order: the id must be the oldest chain posted; a device that breaks the order is
    /// counted and the queue stops (until a reconnection), leaving the entry unread.
    #[inline]
    fn take_used<const IO: bool>(&mut self, sink: &impl ErrorSink) -> Option<(u16, u32)> {
        let e = self.ring.used_elem(self.last_used);
        let id = e.id;
        if IO {
            if id != (self.done_pos & self.mask) as u32 {
                sink.ring_error(RingError::UsedId, 1);
                self.broken = true;
                return None;
            }
            self.last_used = self.last_used.wrapping_add(1);
            return Some((id as u16, e.len));
        }
        self.last_used = self.last_used.wrapping_add(1);
        if id > self.mask as u32
            || self.chain_len[id as usize] == 0
            || self.slots[id as usize].is_none()
        {
            sink.ring_error(RingError::UsedId, 1);
            return None;
        }
        Some((id as u16, e.len))
    }

    /// Tx: frees mbufs of transmissions the device completed.
    pub fn reclaim(&mut self, cache: &mut MbufCache, sink: &impl ErrorSink) {
        if self.in_order {
            self.reclaim_impl::<true>(cache, sink)
        } else {
            self.reclaim_impl::<false>(cache, sink)
        }
    }

    #[inline]
    fn reclaim_impl<const IO: bool>(&mut self, cache: &mut MbufCache, sink: &impl ErrorSink) {
        let pending = self.used_pending(sink);
        if IO {
            // The device completes chains in the order they were posted, and may write only
            // the last used entry of a batch: the count is all that is needed.
            for _ in 0..pending {
                let head = self.done_pos & self.mask;
                if let Some(m) = self.slots[head as usize].take() {
                    cache.free(m);
                }
                self.free_chain::<true>(head);
            }
            self.last_used = self.last_used.wrapping_add(pending);
            return;
        }
        for _ in 0..pending {
            if let Some((id, _len)) = self.take_used::<false>(sink) {
                if let Some(m) = self.slots[id as usize].take() {
                    cache.free(m);
                }
                self.free_chain::<false>(id);
            }
        }
    }

    /// Tx: posts packets from the front of `pkts`; removes the ones posted. Returns how many
    /// were posted and their bytes.
    pub fn transmit(
        &mut self,
        cache: &mut MbufCache,
        pkts: &mut Burst,
        sink: &impl ErrorSink,
    ) -> (usize, usize) {
        // Layout and offloads chosen once per burst, each combination its own fast path.
        match (self.in_order, self.ol_tx) {
            (true, false) => self.transmit_impl::<true, false>(cache, pkts, sink),
            (false, false) => self.transmit_impl::<false, false>(cache, pkts, sink),
            (true, true) => self.transmit_impl::<true, true>(cache, pkts, sink),
            (false, true) => self.transmit_impl::<false, true>(cache, pkts, sink),
        }
    }

    #[inline]
    fn transmit_impl<const IO: bool, const OL: bool>(
        &mut self,
        cache: &mut MbufCache,
        pkts: &mut Burst,
        sink: &impl ErrorSink,
    ) -> (usize, usize) {
        if self.num_free < 32 || self.in_flight_entries() >= TX_RECLAIM_AT {
            self.reclaim_impl::<IO>(cache, sink);
        }
        let mut sent = self.fits(pkts);
        if sent < pkts.len() {
            self.reclaim_impl::<IO>(cache, sink);
            sent = self.fits(pkts);
        }
        let old = self.avail_idx;
        let mut bytes = 0;
        for mut m in pkts.drain(..sent) {
            bytes += m.pkt_len();
            let push_hdr = m.headroom() >= self.hdr_len;
            let head = if push_hdr && m.nb_segs() == 1 {
                // Fast path: header pushed into the headroom, one descriptor.
                let head = self.alloc_one::<IO>();
                self.put_tx_hdr::<OL>(&mut m);
                self.ring.set_desc(
                    head,
                    Desc {
                        addr: m.data_addr().wrapping_add(self.mbuf_iova),
                        len: m.data_len() as u32,
                        flags: 0,
                        next: 0,
                    },
                );
                head
            } else {
                let need = m.nb_segs() as u16 + u16::from(!push_hdr);
                let head = self.alloc_descs::<IO>(need);
                self.post_chain(head, &mut m, push_hdr);
                head
            };
            self.slots[head as usize] = Some(m);
            self.push_avail::<IO>(head);
            if self
                .avail_idx
                .wrapping_sub(old)
                .is_multiple_of(TX_PUBLISH_EVERY)
            {
                // Let the device start on these while the rest are posted.
                self.ring.set_avail_idx(self.avail_idx);
            }
        }
        self.publish_avail(old);
        (sent, bytes)
    }

    /// Pushes the transmit header into `m`'s headroom (checked by the caller): zero, or
    /// with offloads negotiated what `m`'s Tx flags ask for.
    #[inline(always)]
    fn put_tx_hdr<const OL: bool>(&self, m: &mut Mbuf) {
        if OL {
            let ol = tx_hdr(m).to_bytes();
            write_tx_hdr(m.prepend(self.hdr_len).expect("headroom checked"), &ol);
        } else {
            clear_tx_hdr(m.prepend(self.hdr_len).expect("headroom checked"));
        }
    }

    /// How many packets from the front of `pkts` the free descriptors hold.
    #[inline]
    fn fits(&self, pkts: &Burst) -> usize {
        let mut budget = self.num_free;
        let mut n = 0;
        for m in pkts.iter() {
            let need = m.nb_segs() as u16 + u16::from(m.headroom() < self.hdr_len);
            if need > budget {
                break;
            }
            budget -= need;
            n += 1;
        }
        n
    }

    /// Tx slow path: writes the descriptor chain of `m` (header cell first when it has no
    /// headroom for the header, then one descriptor per segment) into the chain at `head`.
    #[inline(never)]
    fn post_chain(&mut self, head: u16, m: &mut Mbuf, push_hdr: bool) {
        let mut id = head;
        if push_hdr {
            if self.ol_tx {
                self.put_tx_hdr::<true>(m);
            } else {
                self.put_tx_hdr::<false>(m);
            }
        } else {
            // SAFETY: id < size and each cell is HDR_CELL bytes inside the area.
            let cell = unsafe { self.hdr_cells.add(id as usize * HDR_CELL) };
            // SAFETY: as above.
            unsafe { std::ptr::write_bytes(cell, 0, self.hdr_len) };
            if self.ol_tx {
                // SAFETY: as above; hdr_len >= 10.
                unsafe { std::ptr::copy_nonoverlapping(tx_hdr(m).to_bytes().as_ptr(), cell, 10) };
            }
            let nxt = self.next[id as usize];
            self.ring.set_desc(
                id,
                Desc {
                    addr: (cell as u64).wrapping_add(self.cell_iova),
                    len: self.hdr_len as u32,
                    flags: VRING_DESC_F_NEXT,
                    next: nxt,
                },
            );
            id = nxt;
        }
        let mut segs = m.segments().peekable();
        while let Some(s) = segs.next() {
            let more = segs.peek().is_some();
            let nxt = self.next[id as usize];
            // Device address = our virtual address plus the iova delta (the header was
            // prepended into the first segment's data when it fit).
            self.ring.set_desc(
                id,
                Desc {
                    addr: (s.as_ptr() as u64).wrapping_add(self.mbuf_iova),
                    len: s.len() as u32,
                    flags: if more { VRING_DESC_F_NEXT } else { 0 },
                    next: if more { nxt } else { 0 },
                },
            );
            if more {
                id = nxt;
            }
        }
    }

    /// Rx: posts fresh buffers into every free slot.
    pub fn refill(&mut self, cache: &mut MbufCache, sink: &impl ErrorSink) {
        if self.in_order {
            self.refill_impl::<true>(cache, sink)
        } else {
            self.refill_impl::<false>(cache, sink)
        }
    }

    #[inline]
    fn refill_impl<const IO: bool>(&mut self, cache: &mut MbufCache, sink: &impl ErrorSink) {
        let old = self.avail_idx;
        // Fast path: one descriptor per receive buffer (mergeable buffers, or frames that fit).
        while self.rx_chain == 1 && self.num_free > 0 {
            let Some(m) = cache.alloc() else {
                sink.ring_error(RingError::NoMbuf, 1);
                break;
            };
            let head = self.alloc_one::<IO>();
            let len = (m.tailroom() + self.hdr_len) as u32;
            self.ring.set_desc(
                head,
                Desc {
                    addr: (m.data_addr() - self.hdr_len as u64).wrapping_add(self.mbuf_iova),
                    len,
                    flags: VRING_DESC_F_WRITE,
                    next: 0,
                },
            );
            self.posted[head as usize] = len;
            self.slots[head as usize] = Some(m);
            self.push_avail::<IO>(head);
        }
        while self.rx_chain > 1 && self.num_free >= self.rx_chain {
            let head = self.alloc_descs::<IO>(self.rx_chain);
            let mut id = head;
            let mut ok = true;
            for k in 0..self.rx_chain {
                let Some(m) = cache.alloc() else {
                    ok = false;
                    break;
                };
                // Buffers after the first of a chain carry no header.
                let room = if k == 0 { self.hdr_len } else { 0 };
                let addr = (m.data_addr() - room as u64).wrapping_add(self.mbuf_iova);
                let len = (m.tailroom() + room) as u32;
                let nxt = self.next[id as usize];
                let last = k + 1 == self.rx_chain;
                self.ring.set_desc(
                    id,
                    Desc {
                        addr,
                        len,
                        flags: VRING_DESC_F_WRITE | if last { 0 } else { VRING_DESC_F_NEXT },
                        next: if last { 0 } else { nxt },
                    },
                );
                self.posted[id as usize] = len;
                self.slots[id as usize] = Some(m);
                id = nxt;
            }
            if !ok {
                sink.ring_error(RingError::NoMbuf, 1);
                self.drop_chain_slots(head, cache);
                self.unalloc_newest::<IO>(head);
                break;
            }
            self.push_avail::<IO>(head);
        }
        if self.event_idx {
            self.ring
                .set_used_event(self.last_used.wrapping_add(0x8000));
        }
        self.publish_avail(old);
    }

    fn drop_chain_slots(&mut self, head: u16, cache: &mut MbufCache) {
        let mut id = head;
        for _ in 0..self.chain_len[head as usize] {
            if let Some(m) = self.slots[id as usize].take() {
                cache.free(m);
            }
            id = self.next[id as usize];
            if id == NONE {
                break;
            }
        }
    }

    /// Sets how many descriptors each Rx buffer chain has, so that a frame of `max_frame` bytes
    /// fits without mergeable buffers. Call before the first refill.
    pub fn set_rx_chain_for(&mut self, max_frame: usize, seg_room: usize) {
        self.rx_chain = if self.mrg {
            1
        } else {
            (max_frame + self.hdr_len)
                .div_ceil(seg_room.max(1))
                .clamp(1, 64) as u16
        };
        if self.rx_chain > self.mask.wrapping_add(1) {
            self.rx_chain = 1;
        }
    }

    /// Rx: collects up to `max` completed packets into `out`, then refills. Returns packets and
    /// bytes received.
    pub fn receive(
        &mut self,
        cache: &mut MbufCache,
        out: &mut Burst,
        max: usize,
        port: u16,
        sink: &impl ErrorSink,
    ) -> (usize, usize) {
        if self.in_order {
            self.receive_impl::<true>(cache, out, max, port, sink)
        } else {
            self.receive_impl::<false>(cache, out, max, port, sink)
        }
    }

    #[inline]
    fn receive_impl<const IO: bool>(
        &mut self,
        cache: &mut MbufCache,
        out: &mut Burst,
        max: usize,
        port: u16,
        sink: &impl ErrorSink,
    ) -> (usize, usize) {
        let mut pending = self.used_pending(sink);
        let max = max.min(out.remaining_capacity());
        let mut got = 0;
        let mut bytes = 0;
        if IO && self.rx_chain == 1 {
            // In-order fast path: the next used entry belongs to the oldest buffer posted, a
            // whole packet in one buffer. Anything else (a merged packet, a wrong id or
            // length, a frame too long) is left to the general loop below, which counts it.
            while pending > 0 && got < max {
                let pos = self.done_pos & self.mask;
                let e = self.ring.used_elem(self.last_used);
                let len = e.len as usize;
                if e.id != pos as u32
                    || len > self.posted[pos as usize] as usize
                    || len < self.hdr_len
                    || len - self.hdr_len > self.max_rx_pkt
                {
                    break;
                }
                let single = match self.slots[pos as usize].as_ref() {
                    Some(m) => !self.mrg || self.rx_num_buffers(m) == 1,
                    None => false,
                };
                if !single {
                    break;
                }
                let Some(mut m) = self.slots[pos as usize].take() else {
                    break;
                };
                self.last_used = self.last_used.wrapping_add(1);
                self.free_chain::<true>(pos);
                pending -= 1;
                let data = len - self.hdr_len;
                m.set_data_len(data);
                m.set_pkt_len(data);
                m.set_port(port);
                bytes += data;
                out.push(m);
                got += 1;
            }
        }
        while pending > 0 && got < max && !(IO && self.broken) {
            if self.mrg {
                // Peek the header of the first buffer to learn how many buffers follow.
                let e = self.ring.used_elem(self.last_used);
                let nb = self.peek_num_buffers(e.id, e.len);
                let nb = match nb {
                    Some(n) if n >= 1 && n <= pending => n,
                    Some(n) if n >= 1 && n <= self.mask.wrapping_add(1) => break, // incomplete
                    Some(_) => {
                        // num_buffers 0, or more buffers than the ring holds: the device lied
                        // about the packet's extent. Counted and dropped (as the packed
                        // driver does), never delivered as a one-buffer packet.
                        pending -= 1;
                        if let Some(m) = self.take_single::<IO>(cache, sink) {
                            sink.ring_error(RingError::UsedLen, 1);
                            cache.free(m);
                        }
                        continue;
                    }
                    None => 1, // bogus id or length: the first take_used/len check counts it
                };
                pending -= nb;
                if nb == 1 {
                    if let Some(m) = self.take_single::<IO>(cache, sink) {
                        bytes += m.pkt_len();
                        self.deliver(m, port, out, &mut got, sink, cache);
                    }
                    continue;
                }
                if let Some(m) = self.take_merged::<IO>(nb, cache, sink) {
                    bytes += m.pkt_len();
                    self.deliver(m, port, out, &mut got, sink, cache);
                }
            } else {
                pending -= 1;
                let m = if self.rx_chain == 1 {
                    self.take_single::<IO>(cache, sink)
                } else {
                    self.take_chain::<IO>(cache, sink)
                };
                if let Some(m) = m {
                    bytes += m.pkt_len();
                    self.deliver(m, port, out, &mut got, sink, cache);
                }
            }
        }
        self.refill_impl::<IO>(cache, sink);
        (got, bytes)
    }

    #[inline(always)]
    fn deliver(
        &mut self,
        mut m: Mbuf,
        port: u16,
        out: &mut Burst,
        got: &mut usize,
        sink: &impl ErrorSink,
        cache: &mut MbufCache,
    ) {
        if m.pkt_len() > self.max_rx_pkt {
            sink.ring_error(RingError::TooLong, 1);
            cache.free(m);
            return;
        }
        m.set_port(port);
        out.push(m);
        *got += 1;
    }

    /// Before a new device takes over a mergeable receive ring: if the old device completed
    /// only the first buffers of a packet (its `num_buffers` promised more than it used), or
    /// left an entry whose `num_buffers` is bogus, `used.idx` is moved back to the start of
    /// that packet. The new device then starts there and overwrites those buffers, instead of
    /// its buffers completing the old device's packet. Complete packets before it stay and
    /// are delivered. Must run while no burst is in progress.
    pub fn roll_back_incomplete_rx(&mut self) {
        if !self.mrg || self.broken || self.hdr_len != 12 {
            return;
        }
        let used = self.ring.used_idx();
        let mut rem = used.wrapping_sub(self.last_used);
        if rem > self.in_flight_entries() {
            return; // `resume_base` repairs a used index outside the window
        }
        let mut pos = self.last_used;
        while rem > 0 {
            let e = self.ring.used_elem(pos);
            match self.peek_num_buffers(e.id, e.len) {
                Some(n) if n >= 1 && n <= rem => {
                    pos = pos.wrapping_add(n);
                    rem -= n;
                }
                _ => break,
            }
        }
        if rem > 0 {
            self.ring.set_used_idx(pos);
        }
    }

    fn peek_num_buffers(&self, id: u32, len: u32) -> Option<u16> {
        if id > self.mask as u32 || len < self.hdr_len as u32 || self.hdr_len != 12 {
            return None;
        }
        let m = self.slots[id as usize].as_ref()?;
        Some(self.rx_num_buffers(m))
    }

    /// `num_buffers` of the header the device wrote in front of posted Rx buffer `m` (a
    /// 12-byte header: mergeable buffers negotiated).
    #[inline(always)]
    fn rx_num_buffers(&self, m: &Mbuf) -> u16 {
        debug_assert_eq!(self.hdr_len, 12);
        // The header sits just before the data start in the headroom we posted.
        let p = (m.data_addr() - self.hdr_len as u64 + NET_HDR_NUM_BUFFERS_OFF as u64) as *const u8;
        // SAFETY: the mbuf is ours and was posted with hdr_len bytes of headroom in front of
        // its data, inside its buffer.
        let b = unsafe { [p.read_volatile(), p.add(1).read_volatile()] };
        u16::from_le_bytes(b)
    }

    /// One used buffer of one descriptor holding a whole packet (the common case).
    #[inline]
    fn take_single<const IO: bool>(
        &mut self,
        cache: &mut MbufCache,
        sink: &impl ErrorSink,
    ) -> Option<Mbuf> {
        let (id, len) = self.take_used::<IO>(sink)?;
        let m = self.slots[id as usize].take();
        let posted = self.posted[id as usize];
        self.free_chain::<IO>(id);
        let mut m = m?;
        if len > posted || (len as usize) < self.hdr_len {
            sink.ring_error(RingError::UsedLen, 1);
            cache.free(m);
            return None;
        }
        let data = len as usize - self.hdr_len;
        m.set_data_len(data);
        m.set_pkt_len(data);
        Some(m)
    }

    fn take_merged<const IO: bool>(
        &mut self,
        nb: u16,
        cache: &mut MbufCache,
        sink: &impl ErrorSink,
    ) -> Option<Mbuf> {
        let mut head: Option<Mbuf> = None;
        let mut bad = false;
        for k in 0..nb {
            let Some((id, len)) = self.take_used::<IO>(sink) else {
                bad = true;
                if IO {
                    break;
                }
                continue;
            };
            let m = self.slots[id as usize].take();
            let posted = self.posted[id as usize];
            self.free_chain::<IO>(id);
            let Some(mut m) = m else {
                bad = true;
                continue;
            };
            if len > posted || (k == 0 && (len as usize) < self.hdr_len) {
                sink.ring_error(RingError::UsedLen, 1);
                cache.free(m);
                bad = true;
                continue;
            }
            if k == 0 {
                m.set_data_len(len as usize - self.hdr_len);
                m.set_pkt_len(len as usize - self.hdr_len);
            } else {
                // Continuation buffers were posted from data_addr - hdr_len with no header.
                let off = m.headroom() - self.hdr_len;
                m.set_data_off(off);
                m.set_data_len(len as usize);
                m.set_pkt_len(len as usize);
            }
            match head.as_mut() {
                None => head = Some(m),
                Some(h) => h.chain(m),
            }
        }
        if bad {
            if let Some(h) = head {
                cache.free(h);
            }
            return None;
        }
        head
    }

    fn take_chain<const IO: bool>(
        &mut self,
        cache: &mut MbufCache,
        sink: &impl ErrorSink,
    ) -> Option<Mbuf> {
        let (id, len) = self.take_used::<IO>(sink)?;
        let n = self.chain_len[id as usize];
        let mut total_posted = 0u64;
        let mut d = id;
        for _ in 0..n {
            total_posted += self.posted[d as usize] as u64;
            d = self.next[d as usize];
            if d == NONE {
                break;
            }
        }
        if len as u64 > total_posted || (len as usize) < self.hdr_len {
            sink.ring_error(RingError::UsedLen, 1);
            self.drop_chain_slots(id, cache);
            self.free_chain::<IO>(id);
            return None;
        }
        let mut left = len as usize;
        let mut head: Option<Mbuf> = None;
        let mut d = id;
        for k in 0..n {
            let Some(mut m) = self.slots[d as usize].take() else {
                break;
            };
            let posted = self.posted[d as usize] as usize;
            let nxt = self.next[d as usize];
            let take = left.min(posted);
            left -= take;
            let data = if k == 0 { take - self.hdr_len } else { take };
            if k > 0 && data == 0 {
                cache.free(m);
            } else {
                m.set_data_len(data);
                m.set_pkt_len(data);
                match head.as_mut() {
                    None => head = Some(m),
                    Some(h) => h.chain(m),
                }
            }
            d = nxt;
            if d == NONE {
                break;
            }
        }
        self.free_chain::<IO>(id);
        head
    }
    /// Frees every mbuf still posted (port close).
    pub fn drain(&mut self, cache: &mut MbufCache) {
        for s in self.slots.iter_mut() {
            if let Some(m) = s.take() {
                cache.free(m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrovia_memory::{Mempool, MempoolConfig, RegionBacking, SharedRegion};

    /// After in-order traffic has moved chain heads around the table, leaving the in-order
    /// layout keeps `chain_len` non-zero exactly at the heads of the chains in flight (what
    /// the free-list layout's used-id check relies on).
    #[test]
    fn leaving_in_order_keeps_only_in_flight_heads() {
        let pool = Mempool::new(MempoolConfig {
            name: "drv-io".into(),
            count: 1024,
            cache_size: 32,
            ..Default::default()
        })
        .unwrap();
        let size = 64u16;
        let l = SplitLayout::new(size);
        let area = SharedRegion::new("drv-io", l.total, RegionBacking::Memfd).unwrap();
        let v1 = bit(feature::F_VERSION_1);
        let opts = |f| DriverOptions {
            features: f,
            max_rx_pkt: 9018,
        };
        // SAFETY: the area holds one layout and outlives the queue.
        let mut q =
            unsafe { SplitDriver::new(area.base(), size, opts(v1 | bit(feature::F_IN_ORDER))) }
                .unwrap();
        assert!(q.in_order);
        let mut cache = pool.cache();
        let sink = crate::NoSink;
        // Chains of 5: heads land on different positions lap after lap. The "device" completes
        // the oldest 3 chains each round.
        q.set_rx_chain_for(9018, 2048);
        assert_eq!(q.rx_chain, 5);
        for _ in 0..40 {
            q.refill(&mut cache, &sink);
            let ring = q.ring();
            for k in 0..3u16 {
                let slot = q.last_used.wrapping_add(k);
                let head = q.done_pos.wrapping_add(5 * k) & q.mask;
                ring.set_used_elem(
                    slot,
                    crate::layout::UsedElem {
                        id: head as u32,
                        len: 100,
                    },
                );
            }
            ring.set_used_idx(q.last_used.wrapping_add(3));
            let mut out = Burst::new();
            assert_eq!(q.receive(&mut cache, &mut out, 32, 0, &sink).0, 3);
            cache.free_all(out.drain(..));
        }
        q.refill(&mut cache, &sink);
        let mut heads = vec![false; size as usize];
        let mut p = q.done_pos;
        while p != q.next_pos {
            heads[(p & q.mask) as usize] = true;
            p = p.wrapping_add(5);
        }
        q.on_reconnect(opts(v1), None);
        assert!(!q.in_order);
        for (i, &head) in heads.iter().enumerate() {
            assert_eq!(q.chain_len[i] != 0, head, "position {i}");
        }
        // The free list holds exactly the free descriptors.
        let mut n = 0;
        let mut f = q.free_head;
        while f != NONE {
            assert!(!heads[f as usize]);
            f = q.next[f as usize];
            n += 1;
        }
        assert_eq!(n, q.num_free);
        q.drain(&mut cache);
    }
}
