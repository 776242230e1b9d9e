//! The driver side of a virtio-net packed queue (virtio-user with `packed_vq=1`).
//!
//! As with the split driver, the device is not trusted: buffer ids, descriptor counts, posted
//! lengths and in-flight mbufs are private; every used id must be in flight and every used
//! length no larger than what was posted. A used descriptor with an unknown id cannot be
//! skipped safely (its chain length is unknown), so it stops the queue until the next
//! connection, and is counted.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{Ordering, fence};

use ferrovia_memory::{Burst, Mbuf, MbufCache};

use crate::error::{ErrorSink, QueueError, RingError};
use crate::layout::{
    HDR_CELL, NET_HDR_NUM_BUFFERS_OFF, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, align, bit, feature,
    net_hdr_len,
};
use crate::net_hdr::{HdrAccept, clear_tx_hdr, tx_hdr, write_tx_hdr};
use crate::options::{DriverOptions, TX_RECLAIM_AT};
use crate::prefetch::prefetch;
use crate::ring::packed::{
    EVENT_AREA_SIZE, EVENT_FLAGS_DISABLE, PackedDesc, PackedRing, Pos, RING_LINE_SLOTS,
    avail_flags, is_used, packed_ring_size,
};

/// Where each part of one packed queue sits inside its memory area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedLayout {
    /// Descriptor ring offset.
    pub desc: usize,
    /// Driver event suppression area offset.
    pub driver_event: usize,
    /// Device event suppression area offset.
    pub device_event: usize,
    /// Header cells offset.
    pub hdrs: usize,
    /// Total bytes (a multiple of 4096).
    pub total: usize,
}

impl PackedLayout {
    /// Layout for a ring of `size` entries.
    pub fn new(size: u16) -> PackedLayout {
        let desc = 0;
        let driver_event = align(packed_ring_size(size), 64);
        let device_event = driver_event + 64;
        let hdrs = device_event + 64;
        let _ = EVENT_AREA_SIZE;
        let total = align(hdrs + HDR_CELL * size as usize, 4096);
        PackedLayout {
            desc,
            driver_event,
            device_event,
            hdrs,
            total,
        }
    }
}

#[derive(Default)]
struct Inflight {
    mbuf: Option<Mbuf>,
    count: u16,
    posted: u32,
}

/// Driver-side state of one packed queue, owned by one polling thread.
pub struct PackedDriver {
    ring: PackedRing,
    hdr_cells: *mut u8,
    size: u16,
    avail: Pos,
    used: Pos,
    num_free: u16,
    free_ids: Vec<u16>,
    inflight: Box<[Inflight]>,
    /// Buffer ids in the order they were posted (used with IN_ORDER, where a device may
    /// complete a whole batch with one used descriptor carrying the last buffer's id).
    order: std::collections::VecDeque<u16>,
    /// The device completes buffers in order (VIRTIO_F_IN_ORDER).
    in_order: bool,
    /// In-order layout: a buffer's id is the ring slot of its first descriptor, so no free
    /// id list or posting-order queue is kept (chosen when IN_ORDER is negotiated on an empty
    /// ring).
    io: bool,
    hdr_len: usize,
    /// Transmit headers carry the mbufs' offload requests (the device negotiated CSUM or
    /// HOST_TSO); otherwise they are zero.
    ol_tx: bool,
    mrg: bool,
    rx_chain: u16,
    max_rx_pkt: usize,
    kick: Option<File>,
    broken: bool,
    /// The first descriptor written in the current burst and its flags, held back until
    /// [`Self::publish`] so the device sees the whole burst at once.
    pending_head: Option<(u16, u16)>,
}

/// Transmitted descriptors are handed to the device whenever the ring position reaches a
/// multiple of this many (two 64-byte lines, one aligned 128-byte pair), so the device can
/// start copying the first packets of a burst while the rest are posted, without reading a
/// pair of lines whose second half the driver is still writing (the adjacent-line prefetcher
/// moves them together); receive buffers are handed over once per refill.
const TX_PUBLISH_SLOTS: u16 = 8;

// SAFETY: the pointers refer to the queue's own shared area, kept mapped by the owner; the
// queue is used by one thread at a time.
unsafe impl Send for PackedDriver {}

impl std::fmt::Debug for PackedDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedDriver")
            .field("size", &self.size)
            .field("num_free", &self.num_free)
            .field("avail", &self.avail)
            .field("used", &self.used)
            .finish()
    }
}

impl PackedDriver {
    /// Initialises a queue in `area` (laid out by [`PackedLayout::new`]`(size)`).
    ///
    /// # Safety
    /// `area` must point to at least `PackedLayout::new(size).total` bytes of 4096-aligned
    /// writable memory that stays mapped while this queue (or a copy of [`Self::ring`]) is used.
    pub unsafe fn new(
        area: *mut u8,
        size: u16,
        opts: DriverOptions,
    ) -> Result<PackedDriver, QueueError> {
        let l = PackedLayout::new(size);
        // SAFETY: the caller guarantees the area holds the whole layout.
        let ring = unsafe {
            std::ptr::write_bytes(area, 0, l.total);
            PackedRing::new(
                area.add(l.desc),
                area.add(l.driver_event),
                area.add(l.device_event),
                size,
            )
        }
        .map_err(|source| QueueError::PackedRing { size, source })?;
        let mut q = PackedDriver {
            ring,
            // SAFETY: inside the area per the layout.
            hdr_cells: unsafe { area.add(l.hdrs) },
            size,
            avail: Pos::START,
            used: Pos::START,
            num_free: size,
            free_ids: (0..size).rev().collect(),
            inflight: (0..size).map(|_| Inflight::default()).collect(),
            order: std::collections::VecDeque::with_capacity(size as usize),
            in_order: false,
            io: false,
            hdr_len: 12,
            ol_tx: false,
            mrg: false,
            rx_chain: 1,
            max_rx_pkt: opts.max_rx_pkt,
            kick: None,
            broken: false,
            pending_head: None,
        };
        q.apply_options(opts);
        Ok(q)
    }

    /// Applies negotiated options.
    pub fn apply_options(&mut self, opts: DriverOptions) {
        self.hdr_len = net_hdr_len(opts.features);
        self.ol_tx = HdrAccept::device_reads(opts.features).any();
        self.mrg = opts.features & bit(feature::NET_F_MRG_RXBUF) != 0;
        self.in_order = opts.features & bit(feature::F_IN_ORDER) != 0;
        if self.in_order && !self.io && self.in_flight() == 0 {
            self.io = true;
            self.order.clear();
        } else if !self.in_order && self.io {
            // Back to free ids: every id not in flight (ids in flight keep their slots).
            self.io = false;
            self.free_ids = (0..self.size)
                .rev()
                .filter(|&i| self.inflight[i as usize].count == 0)
                .collect();
        }
        self.max_rx_pkt = opts.max_rx_pkt;
        // We poll: no interrupts, please.
        self.ring.set_driver_event(0, EVENT_FLAGS_DISABLE);
    }

    /// After a reconnection.
    pub fn on_reconnect(&mut self, opts: DriverOptions, kick: Option<File>) {
        self.broken = false;
        self.apply_options(opts);
        self.kick = kick;
    }

    /// The ring view.
    pub fn ring(&self) -> PackedRing {
        self.ring
    }

    /// Next slot to read a used descriptor from (encoded like a vhost-user base).
    pub fn used_pos(&self) -> u16 {
        self.used.encode()
    }

    /// Next slot to make available (encoded).
    pub fn avail_pos(&self) -> u16 {
        self.avail.encode()
    }

    /// Descriptors currently posted.
    pub fn in_flight(&self) -> u16 {
        self.size - self.num_free
    }

    /// Sets how many descriptors each Rx buffer chain has, so that a frame of `max_frame` bytes
    /// fits without mergeable buffers (as the split driver does). Call before the first refill.
    pub fn set_rx_chain_for(&mut self, max_frame: usize, seg_room: usize) {
        self.rx_chain = if self.mrg {
            1
        } else {
            (max_frame + self.hdr_len)
                .div_ceil(seg_room.max(1))
                .clamp(1, 64) as u16
        }
        .min(self.size);
    }

    #[inline]
    fn kick_if_needed(&self, posted: bool) {
        if !posted {
            return;
        }
        let Some(kick) = &self.kick else { return };
        fence(Ordering::SeqCst);
        if self.ring.device_event_flags() != EVENT_FLAGS_DISABLE {
            let _ = (&*kick).write(&1u64.to_ne_bytes());
        }
    }

    /// Writes a chain of buffers as one available descriptor chain with buffer id `id`. The
    /// flags of the burst's first descriptor are held back until [`Self::publish`]; every
    /// later descriptor is published at once, which the device cannot reach before the first.
    #[inline]
    fn post(&mut self, id: u16, bufs: &[(u64, u32)], write: bool) {
        let size = self.size;
        let mut pos = self.avail;
        let base = avail_flags(pos.wrap);
        let last = bufs.len() - 1;
        for (k, &(addr, len)) in bufs.iter().enumerate() {
            let flags = if pos.wrap == self.avail.wrap {
                base
            } else {
                avail_flags(pos.wrap)
            } | if k < last { VRING_DESC_F_NEXT } else { 0 }
                | if write { VRING_DESC_F_WRITE } else { 0 };
            self.write_desc(pos.idx, PackedDesc { addr, len, id }, flags);
            pos.advance(1, size);
        }
        self.avail = pos;
        self.num_free -= bufs.len() as u16;
    }

    /// Writes one descriptor: published at once, unless it is the first of the burst, whose
    /// flags wait for [`Self::publish`].
    #[inline]
    fn write_desc(&mut self, idx: u16, d: PackedDesc, flags: u16) {
        if self.pending_head.is_none() {
            self.ring.write_fields(idx, d);
            self.pending_head = Some((idx, flags));
        } else {
            self.ring.write(idx, d, flags);
        }
    }

    /// [`Self::post`] for a chain of one buffer.
    #[inline]
    fn post_one(&mut self, id: u16, addr: u64, len: u32, write: bool) {
        let pos = self.avail;
        let flags = avail_flags(pos.wrap) | if write { VRING_DESC_F_WRITE } else { 0 };
        self.write_desc(pos.idx, PackedDesc { addr, len, id }, flags);
        self.avail.advance(1, self.size);
        self.num_free -= 1;
    }

    /// Remembers a transmitted buffer's position in posting order (IN_ORDER completions).
    #[inline]
    fn track_order(&mut self, id: u16) {
        if self.in_order && !self.io && self.order.len() < self.size as usize {
            self.order.push_back(id);
        }
    }

    /// Hands the descriptors written since the last call to the device (release store of the
    /// burst's first flags). Returns whether anything was posted.
    #[inline]
    fn publish(&mut self) -> bool {
        match self.pending_head.take() {
            Some((idx, flags)) => {
                self.ring.set_flags(idx, flags);
                true
            }
            None => false,
        }
    }

    /// Reads the used descriptor at `pos`: Some((id, len)) if used and its id is in flight;
    /// None if not used yet; Err if used with a bogus id.
    #[inline]
    fn peek_used(&self, pos: Pos) -> Result<Option<(u16, u32)>, ()> {
        if !is_used(self.ring.flags(pos.idx), pos.wrap) {
            return Ok(None);
        }
        let d = self.ring.desc(pos.idx);
        if d.id >= self.size || self.inflight[d.id as usize].count == 0 {
            return Err(());
        }
        Ok(Some((d.id, d.len)))
    }

    #[inline(always)]
    fn finish<const IO: bool>(&mut self, id: u16) -> Mbuf {
        if !IO && let Some(&front) = self.order.front() {
            if front == id {
                self.order.pop_front();
            } else if let Some(p) = self.order.iter().position(|&x| x == id) {
                self.order.remove(p);
            }
        }
        let e = &mut self.inflight[id as usize];
        let count = e.count;
        e.count = 0;
        let m = e.mbuf.take().expect("in-flight id has an mbuf");
        self.num_free += count;
        if !IO {
            self.free_ids.push(id);
        }
        self.used.advance(count, self.size);
        m
    }

    /// The id for the next buffer posted: the slot of its first descriptor (in-order
    /// layout) or a free id (the caller checked one is left).
    #[inline(always)]
    fn next_id<const IO: bool>(&mut self) -> Option<u16> {
        if IO {
            Some(self.avail.idx)
        } else {
            self.free_ids.pop()
        }
    }

    /// Reads the used descriptor at `pos` for the in-order layout, where a used buffer's id
    /// must be the slot it was posted at (`pos` itself, for receive).
    #[inline(always)]
    fn peek_used_at_own_slot(&self, pos: Pos) -> Result<Option<(u16, u32)>, ()> {
        match self.peek_used(pos) {
            Ok(Some((id, len))) if id == pos.idx => Ok(Some((id, len))),
            Ok(Some(_)) | Err(()) => Err(()),
            Ok(None) => Ok(None),
        }
    }

    fn break_queue(&mut self, sink: &impl ErrorSink) {
        if !self.broken {
            sink.ring_error(RingError::UsedId, 1);
            self.broken = true;
        }
    }

    /// Tx: frees mbufs of completed transmissions. With IN_ORDER, a used descriptor for
    /// buffer `id` also completes every buffer posted before it.
    pub fn reclaim(&mut self, cache: &mut MbufCache, sink: &impl ErrorSink) {
        if self.io {
            self.reclaim_io(cache, sink)
        } else {
            self.reclaim_ids(cache, sink)
        }
    }

    /// In-order layout: a used descriptor for buffer `id` completes every buffer from the
    /// oldest in flight up to `id`, whose ids are the slots they start at.
    #[inline]
    fn reclaim_io(&mut self, cache: &mut MbufCache, sink: &impl ErrorSink) {
        while !self.broken {
            match self.peek_used(self.used) {
                Ok(Some((id, _))) => loop {
                    let head = self.used.idx;
                    if self.inflight[head as usize].count == 0 {
                        // `id` is in flight, so walking from the oldest buffer must reach it
                        // before a free slot; if not, the queue is inconsistent: stop it.
                        self.break_queue(sink);
                        break;
                    }
                    let m = self.finish::<true>(head);
                    cache.free(m);
                    if head == id {
                        break;
                    }
                },
                Ok(None) => break,
                Err(()) => self.break_queue(sink),
            }
        }
    }

    #[inline]
    fn reclaim_ids(&mut self, cache: &mut MbufCache, sink: &impl ErrorSink) {
        while !self.broken {
            match self.peek_used(self.used) {
                Ok(Some((id, _))) => {
                    if self.in_order && self.order.front() != Some(&id) {
                        // Every in-flight transmit id is in `order` (track_order), and
                        // peek_used checked that `id` is in flight, so the walk finds it; if
                        // it did not, the queue would be inconsistent: stop it.
                        let mut found = false;
                        while let Some(&f) = self.order.front() {
                            let m = self.finish::<false>(f);
                            cache.free(m);
                            if f == id {
                                found = true;
                                break;
                            }
                        }
                        if !found {
                            self.break_queue(sink);
                            break;
                        }
                        continue;
                    }
                    let m = self.finish::<false>(id);
                    cache.free(m);
                }
                Ok(None) => break,
                Err(()) => self.break_queue(sink),
            }
        }
    }

    /// Tx: posts packets from the front of `pkts`, removing those posted. Returns packets and
    /// bytes posted.
    pub fn transmit(
        &mut self,
        cache: &mut MbufCache,
        pkts: &mut Burst,
        sink: &impl ErrorSink,
    ) -> (usize, usize) {
        // Layout and offloads chosen once per burst, each combination its own fast path.
        match (self.io, self.ol_tx) {
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
        if self.broken {
            return (0, 0);
        }
        let need: usize = pkts
            .iter()
            .map(|m| m.nb_segs() + usize::from(m.headroom() < self.hdr_len))
            .sum();
        if (self.num_free as usize) < need.max(32) || self.in_flight() >= TX_RECLAIM_AT {
            self.reclaim(cache, sink);
        }
        let mut budget = self.num_free;
        let mut ids = if IO { usize::MAX } else { self.free_ids.len() };
        let mut sent = 0;
        for m in pkts.iter() {
            let need = m.nb_segs() as u16 + u16::from(m.headroom() < self.hdr_len);
            if need > budget || ids == 0 || need > 64 {
                break;
            }
            budget -= need;
            ids -= 1;
            sent += 1;
        }
        let mut bytes = 0;
        let mut bufs: arrayvec::ArrayVec<(u64, u32), 65> = arrayvec::ArrayVec::new();
        for mut m in pkts.drain(..sent) {
            bytes += m.pkt_len();
            let id = self.next_id::<IO>().expect("ids counted");
            if !IO {
                self.track_order(id);
            }
            // The offload fields (with OL only: without, the header is zero).
            let ol = if OL { tx_hdr(&m).to_bytes() } else { [0; 10] };
            if m.nb_segs() == 1
                && let Some(h) = m.prepend(self.hdr_len)
            {
                // Fast path: header pushed into the headroom, one descriptor.
                if OL {
                    write_tx_hdr(h, &ol);
                } else {
                    clear_tx_hdr(h);
                }
                let (addr, len) = (m.data_addr(), m.data_len() as u32);
                self.post_one(id, addr, len, false);
                self.inflight[id as usize] = Inflight {
                    mbuf: Some(m),
                    count: 1,
                    posted: 0,
                };
                if self.avail.idx.is_multiple_of(TX_PUBLISH_SLOTS) {
                    self.publish();
                }
                continue;
            }
            bufs.clear();
            if m.headroom() >= self.hdr_len {
                let h = m.prepend(self.hdr_len).expect("headroom checked");
                if OL {
                    write_tx_hdr(h, &ol);
                } else {
                    clear_tx_hdr(h);
                }
            } else {
                // SAFETY: id < size; each cell is HDR_CELL bytes inside the area.
                let cell = unsafe { self.hdr_cells.add(id as usize * HDR_CELL) };
                // SAFETY: as above.
                unsafe { std::ptr::write_bytes(cell, 0, self.hdr_len) };
                if OL {
                    // SAFETY: as above; hdr_len >= 10.
                    unsafe { std::ptr::copy_nonoverlapping(ol.as_ptr(), cell, 10) };
                }
                bufs.push((cell as u64, self.hdr_len as u32));
            }
            for s in m.segments() {
                bufs.push((s.as_ptr() as u64, s.len() as u32));
            }
            let count = bufs.len() as u16;
            self.post(id, &bufs, false);
            self.inflight[id as usize] = Inflight {
                mbuf: Some(m),
                count,
                posted: 0,
            };
        }
        self.publish();
        self.kick_if_needed(sent > 0);
        (sent, bytes)
    }

    /// Rx: posts fresh buffers into the free slots.
    pub fn refill(&mut self, cache: &mut MbufCache, sink: &impl ErrorSink) {
        if self.io {
            self.refill_impl::<true>(cache, sink)
        } else {
            self.refill_impl::<false>(cache, sink)
        }
    }

    #[inline]
    fn refill_impl<const IO: bool>(&mut self, cache: &mut MbufCache, sink: &impl ErrorSink) {
        if self.broken {
            return;
        }
        let mut bufs: arrayvec::ArrayVec<(u64, u32), 65> = arrayvec::ArrayVec::new();
        while self.rx_chain == 1 && self.num_free > 0 {
            // Fast path: one mbuf per buffer, the header in front of its data room.
            let Some(id) = self.next_id::<IO>() else {
                break;
            };
            let Some(m) = cache.alloc() else {
                if !IO {
                    self.free_ids.push(id);
                }
                sink.ring_error(RingError::NoMbuf, 1);
                break;
            };
            let len = (m.tailroom() + self.hdr_len) as u32;
            self.post_one(id, m.data_addr() - self.hdr_len as u64, len, true);
            self.inflight[id as usize] = Inflight {
                mbuf: Some(m),
                count: 1,
                posted: len,
            };
        }
        while self.rx_chain > 1
            && self.num_free >= self.rx_chain
            && (IO || !self.free_ids.is_empty())
        {
            let Some(mut head) = cache.alloc() else {
                sink.ring_error(RingError::NoMbuf, 1);
                break;
            };
            let mut ok = true;
            for _ in 1..self.rx_chain {
                match cache.alloc() {
                    Some(m) => head.chain(m),
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            if !ok {
                sink.ring_error(RingError::NoMbuf, 1);
                cache.free(head);
                break;
            }
            bufs.clear();
            let mut total = 0u32;
            // Every segment is empty: its data room starts at its data address; the first
            // one also takes the header in front.
            let mut first = true;
            for (addr, room) in seg_rooms(&head) {
                let (a, l) = if first {
                    (addr - self.hdr_len as u64, room + self.hdr_len as u32)
                } else {
                    (addr, room)
                };
                first = false;
                total += l;
                bufs.push((a, l));
            }
            let id = self.next_id::<IO>().expect("checked non-empty");
            let count = bufs.len() as u16;
            self.post(id, &bufs, true);
            self.inflight[id as usize] = Inflight {
                mbuf: Some(head),
                count,
                posted: total,
            };
        }
        let posted = self.publish();
        self.kick_if_needed(posted);
    }

    /// Starts the transfer of the three ring lines after the one holding the next used
    /// descriptor. A device hands receive completions back in runs (ours in aligned runs of
    /// 16 slots, four lines), and the run's later lines are written before its first one is
    /// seen; reading them one after another costs one line transfer each across caches, so
    /// they are requested together as soon as the run's first descriptor is found
    /// (docs/performance.md, "Ring look-ahead"). A line not yet written is only read early.
    #[inline(always)]
    fn prefetch_used_ahead(&self) {
        let line = self.used.idx & !(RING_LINE_SLOTS - 1);
        for k in 1..4 {
            prefetch(self.ring.slot_addr(line + k * RING_LINE_SLOTS));
        }
    }

    /// Rx: collects up to `max` packets, then refills.
    pub fn receive(
        &mut self,
        cache: &mut MbufCache,
        out: &mut Burst,
        max: usize,
        port: u16,
        sink: &impl ErrorSink,
    ) -> (usize, usize) {
        if self.io {
            self.receive_impl::<true>(cache, out, max, port, sink)
        } else {
            self.receive_impl::<false>(cache, out, max, port, sink)
        }
    }

    /// [`Self::peek_used`] for the layout in use.
    #[inline(always)]
    fn peek_rx<const IO: bool>(&self, pos: Pos) -> Result<Option<(u16, u32)>, ()> {
        if IO {
            self.peek_used_at_own_slot(pos)
        } else {
            self.peek_used(pos)
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
        let max = max.min(out.remaining_capacity());
        let mut got = 0;
        let mut bytes = 0;
        while got < max && !self.broken {
            let (id, len) = match self.peek_rx::<IO>(self.used) {
                Ok(Some(u)) => {
                    if got == 0 {
                        self.prefetch_used_ahead();
                    }
                    u
                }
                Ok(None) => break,
                Err(()) => {
                    self.break_queue(sink);
                    break;
                }
            };
            let nb = if self.mrg && len as usize >= self.hdr_len && self.hdr_len == 12 {
                let m = self.inflight[id as usize].mbuf.as_ref().expect("in flight");
                let p = (m.data_addr() - self.hdr_len as u64 + NET_HDR_NUM_BUFFERS_OFF as u64)
                    as *const u8;
                // SAFETY: the mbuf is ours; the header lies in the headroom posted in front of
                // its data, inside its buffer.
                u16::from_le_bytes(unsafe { [p.read_volatile(), p.add(1).read_volatile()] })
            } else {
                1
            };
            if nb == 1 {
                // Fast path: the whole packet in one buffer.
                let posted = self.inflight[id as usize].posted;
                let mut m = self.finish::<IO>(id);
                if len > posted || (len as usize) < self.hdr_len {
                    sink.ring_error(RingError::UsedLen, 1);
                    cache.free(m);
                    continue;
                }
                let data = len as usize - self.hdr_len;
                if m.nb_segs() == 1 {
                    if !m.set_data_len(data) {
                        sink.ring_error(RingError::UsedLen, 1);
                        cache.free(m);
                        continue;
                    }
                    m.set_pkt_len(data);
                } else {
                    fill_lengths(&mut m, data, cache);
                }
                if data > self.max_rx_pkt {
                    sink.ring_error(RingError::TooLong, 1);
                    cache.free(m);
                    continue;
                }
                m.set_port(port);
                bytes += data;
                out.push(m);
                got += 1;
                continue;
            }
            if nb == 0 || nb > self.size {
                sink.ring_error(RingError::UsedLen, 1);
                let m = self.finish::<IO>(id);
                cache.free(m);
                continue;
            }
            // All buffers of the packet must be used before any is taken.
            let mut pos = self.used;
            let mut ok = true;
            for k in 0..nb {
                match self.peek_rx::<IO>(pos) {
                    Ok(Some((i, _))) => pos.advance(self.inflight[i as usize].count, self.size),
                    Ok(None) => {
                        ok = false;
                        break;
                    }
                    Err(()) => {
                        if k > 0 {
                            ok = false;
                            self.break_queue(sink);
                        }
                        break;
                    }
                }
            }
            if !ok {
                break;
            }
            let mut pkt: Option<Mbuf> = None;
            let mut bad = false;
            for k in 0..nb {
                let Ok(Some((i, l))) = self.peek_rx::<IO>(self.used) else {
                    bad = true;
                    break;
                };
                let posted = self.inflight[i as usize].posted;
                let mut m = self.finish::<IO>(i);
                if l > posted || (k == 0 && (l as usize) < self.hdr_len) {
                    sink.ring_error(RingError::UsedLen, 1);
                    cache.free(m);
                    bad = true;
                    continue;
                }
                let data = if k == 0 {
                    l as usize - self.hdr_len
                } else {
                    l as usize
                };
                if k > 0 {
                    let off = m.headroom() - self.hdr_len;
                    m.set_data_off(off);
                }
                fill_lengths(&mut m, data, cache);
                match pkt.as_mut() {
                    None => pkt = Some(m),
                    Some(h) => h.chain(m),
                }
            }
            let Some(mut m) = pkt else { continue };
            if bad {
                cache.free(m);
                continue;
            }
            if m.pkt_len() > self.max_rx_pkt {
                sink.ring_error(RingError::TooLong, 1);
                cache.free(m);
                continue;
            }
            m.set_port(port);
            bytes += m.pkt_len();
            out.push(m);
            got += 1;
        }
        self.refill_impl::<IO>(cache, sink);
        (got, bytes)
    }

    /// Forgets everything in flight (freeing the mbufs) and starts the ring afresh at index 0,
    /// wrap counter 1: what a new device will expect after a reconnection. Must run while no
    /// device is attached and no burst is in progress.
    pub fn reset(&mut self, cache: &mut MbufCache) {
        self.drain(cache);
        for i in 0..self.size {
            self.ring.write(i, PackedDesc::default(), 0);
        }
        self.avail = Pos::START;
        self.used = Pos::START;
        self.num_free = self.size;
        self.free_ids = (0..self.size).rev().collect();
        self.order.clear();
        self.io = self.in_order;
        self.broken = false;
        self.pending_head = None;
    }

    /// Frees every mbuf still posted.
    pub fn drain(&mut self, cache: &mut MbufCache) {
        for e in self.inflight.iter_mut() {
            if let Some(m) = e.mbuf.take() {
                cache.free(m);
            }
            e.count = 0;
        }
    }
}

/// (data address, room) of each segment of a fresh, empty chain from one pool (all segments
/// share the first one's geometry).
fn seg_rooms(m: &Mbuf) -> arrayvec::ArrayVec<(u64, u32), 64> {
    let room = m.tailroom() as u32;
    m.segments()
        .take(64)
        .map(|s| (s.as_ptr() as u64, room))
        .collect()
}

/// Spreads `len` bytes of received data over a posted (possibly chained) mbuf, segment by
/// segment, and frees segments that received nothing.
fn fill_lengths(m: &mut Mbuf, len: usize, cache: &mut MbufCache) {
    let mut segs: arrayvec::ArrayVec<Mbuf, 64> = arrayvec::ArrayVec::new();
    let mut rest = m.split_off_next();
    while let Some(mut r) = rest {
        rest = r.split_off_next();
        if segs.try_push(r).is_err() {
            break;
        }
    }
    let room0 = m.tailroom() + m.data_len();
    let k0 = len.min(room0);
    m.set_data_len(k0);
    m.set_pkt_len(k0);
    let mut left = len - k0;
    for mut s in segs {
        if left == 0 {
            cache.free(s);
            continue;
        }
        let room = s.tailroom() + s.data_len();
        let k = left.min(room);
        s.set_data_len(k);
        s.set_pkt_len(k);
        left -= k;
        m.chain(s);
    }
}
