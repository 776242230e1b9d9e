//! The device side of a virtio-net packed queue (what a vhost backend runs when
//! `VIRTIO_F_RING_PACKED` is negotiated).
//!
//! Same contract as the split side (`split::SplitDevice`): every descriptor comes from a
//! hostile driver and is checked (ownership bits, chain length bounded by the ring size,
//! translation of every buffer as a whole, indirect tables negotiated and well formed). A chain
//! that cannot even be delimited (longer than the ring, or ending in a descriptor the driver has
//! not made available) marks the queue broken until it is reconfigured.

use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};

use arrayvec::ArrayVec;
use ferrovia_memory::{Burst, MbufCache};

use crate::chain::{
    BurstResult, MAX_CHAIN_DESCS, MAX_INDIRECT_DESCS, MAX_SEGS, Seg, copy_into_mbufs, push_seg,
    write_merged,
};
use crate::error::{ErrorSink, RingError};
use crate::layout::{
    VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, bit, feature, net_hdr_len,
};
use crate::net_hdr::{HdrAccept, tx_hdr, write_rx_hdr, write_rx_hdr_ol};
use crate::prefetch::{prefetch, prefetch_for_write};
use crate::ring::packed::{
    DESC_F_AVAIL, DESC_F_USED, EVENT_FLAGS_DISABLE, PackedDesc, PackedRing, Pos,
    RING_LINE_SLOTS as BATCH, avail_flags, is_avail,
};
use crate::ring::{ActiveVring, RingView};

/// One poller's state for one packed vring.
#[derive(Debug)]
pub struct PackedDevice {
    active: Arc<ActiveVring>,
    ring: PackedRing,
    avail: Pos,
    used: Pos,
    hdr_len: usize,
    /// As `SplitDevice`: transmit header bytes kept in front of dequeued data (0 without
    /// offloads).
    keep_hdr: usize,
    /// As `SplitDevice`: receive headers carry the mbufs' offload requests.
    ol_rx: bool,
    mrg: bool,
    indirect: bool,
    in_order: bool,
    broken: bool,
    /// Used descriptors of the current burst, not yet written to the ring.
    shadow: UsedShadow,
}

/// Used descriptors collected during a burst and written to the ring together at its end
/// (or when full), with the first one's flags stored last: the driver then sees the whole
/// batch at once instead of pulling the cache line back for every descriptor.
#[derive(Debug, Default)]
struct UsedShadow {
    /// (buffer id, bytes written, descriptors in the chain), in ring order.
    entries: ArrayVec<(u16, u32, u16), SHADOW_MAX>,
}

/// Used descriptors held back at most before they are written out.
const SHADOW_MAX: usize = 64;

/// Device → driver completions are written out whenever the ring position reaches a multiple
/// of this many descriptors (four 64-byte lines, two aligned 128-byte pairs) rather than once
/// per burst, so the driver can start on the first packets of a burst while the device copies
/// the rest. Whole pairs, never a single line: the CPU's adjacent-line prefetcher moves lines
/// in pairs, and handing the driver one line while the device still writes its neighbour made
/// the two cores trade the pair back and forth (one line: DPDK's virtio-user → our vhost
/// 18.8–19 Mpps and ours↔ours ~22; one pair: 20.5–21.4 and ~24). Two pairs against one, in the
/// same rounds and the same vCPU placement: DPDK's virtio-user → our vhost 1.04–1.07× in both
/// placements, ours↔ours 0.99× (docs/performance.md).
const PUBLISH_SLOTS: u16 = 16;

/// Plain packets checked in one first pass of [`PackedDevice::dequeue_plain`]: a whole burst.
const PLAIN_MAX: usize = 32;

/// How many ring lines ahead of its reads the first pass of [`PackedDevice::dequeue_plain`]
/// requests the next one. Across caches each line of transmit descriptors is a transfer from
/// the driver's core; requesting the line two further on whenever the pass enters a new line
/// keeps about two transfers in flight. Measured against the start-of-burst look-ahead alone
/// (the partner line, in [`PackedDevice::dequeue_burst`]; 8–12-round A/B, packed 64 B):
/// DPDK's virtio-user → our vhost 1.05–1.07× cross-cache and 1.04–1.06× shared, ours↔ours
/// 1.055× cross-cache; three lines read 0.99× and four 0.94× against two. A line not yet
/// written is only read early, never consumed.
const DEQUEUE_LOOKAHEAD_LINES: u16 = 2;

/// Why [`PackedDevice::dequeue_plain`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PlainStop {
    /// It took as many packets as it was asked for.
    Limit,
    /// The next descriptor is not available yet.
    Empty,
    /// The next descriptor is available but needs the per-chain path (chained, indirect,
    /// writable, badly sized, not translatable, or larger than one mbuf).
    NotPlain,
    /// The mbuf pool ran dry.
    NoMbuf,
}

/// A delimited chain.
struct Chain {
    id: u16,
    count: u16,
    total: u64,
    err: Option<RingError>,
}

impl PackedDevice {
    /// Starts polling at the given positions (vhost-user base encoding: bit 15 = wrap).
    pub fn new(active: Arc<ActiveVring>, last_avail: u16, used_idx: u16) -> PackedDevice {
        let ring = match active.ring {
            RingView::Packed(r) => r,
            RingView::Split(_) => unreachable!("packed queue built on a split ring"),
        };
        let size = ring.size();
        let f = active.features;
        PackedDevice {
            avail: Pos::decode(last_avail, size).unwrap_or(Pos::START),
            used: Pos::decode(used_idx, size).unwrap_or(Pos::START),
            hdr_len: net_hdr_len(f),
            keep_hdr: if HdrAccept::device_reads(f).any() {
                net_hdr_len(f)
            } else {
                0
            },
            ol_rx: HdrAccept::driver_reads(f).any(),
            mrg: f & bit(feature::NET_F_MRG_RXBUF) != 0,
            indirect: f & bit(feature::RING_F_INDIRECT_DESC) != 0,
            in_order: f & bit(feature::F_IN_ORDER) != 0,
            broken: false,
            shadow: UsedShadow::default(),
            ring,
            active,
        }
    }

    /// Next avail position, encoded.
    pub fn last_avail(&self) -> u16 {
        self.avail.encode()
    }

    /// Next used position, encoded.
    pub fn used_idx(&self) -> u16 {
        self.used.encode()
    }

    /// Delimits and translates the chain at `self.avail` (which must be available). Ok(None)
    /// means the chain could not be delimited (the queue is then broken).
    fn collect(&self, writable: bool, segs: &mut ArrayVec<Seg, MAX_SEGS>) -> Option<Chain> {
        let size = self.ring.size();
        let mut pos = self.avail;
        let mut count = 0u16;
        let mut total = 0u64;
        let mut err = None;
        loop {
            if count >= size {
                return None;
            }
            let flags = self.ring.flags(pos.idx);
            if !is_avail(flags, pos.wrap) {
                return None;
            }
            let d = self.ring.desc(pos.idx);
            count += 1;
            // Past the cap the walk goes on only to delimit the chain: each slot it visits is
            // consumed with the chain, so the ring's size bounds the work.
            if err.is_none() && count as u32 > MAX_CHAIN_DESCS {
                err = Some(RingError::DescLen);
            }
            if err.is_none() {
                if flags & VRING_DESC_F_INDIRECT != 0 {
                    if !self.indirect || count > 1 || flags & VRING_DESC_F_NEXT != 0 {
                        err = Some(RingError::Indirect);
                    } else {
                        match self.collect_indirect(d.addr, d.len, writable, segs) {
                            Ok(t) => total += t,
                            Err(e) => err = Some(e),
                        }
                    }
                } else {
                    match push_seg(&self.active.mem, d.addr, d.len, flags, writable, segs) {
                        Ok(()) => total += d.len as u64,
                        Err(e) => err = Some(e),
                    }
                }
            }
            if flags & VRING_DESC_F_NEXT == 0 {
                return Some(Chain {
                    id: d.id,
                    count,
                    total,
                    err,
                });
            }
            pos.advance(1, size);
        }
    }

    fn collect_indirect(
        &self,
        addr: u64,
        len: u32,
        writable: bool,
        segs: &mut ArrayVec<Seg, MAX_SEGS>,
    ) -> Result<u64, RingError> {
        if len == 0 || !len.is_multiple_of(16) || len / 16 > MAX_INDIRECT_DESCS {
            return Err(RingError::Indirect);
        }
        let n = len / 16;
        // Every entry of a packed indirect table belongs to the chain (with its one ring
        // descriptor), zero-length ones included.
        if n >= MAX_CHAIN_DESCS {
            return Err(RingError::DescLen);
        }
        let table = self
            .active
            .mem
            .translate(addr, len as u64)
            .ok_or(RingError::DescAddr)?;
        // Descriptors are 8-byte aligned structures; refused like the split device does.
        if !(table as usize).is_multiple_of(8) {
            return Err(RingError::Indirect);
        }
        let mut total = 0u64;
        for i in 0..n as usize {
            // SAFETY: i < n and the whole table of n 16-byte entries was translated.
            let (a, l, f) = unsafe {
                let e = table.add(i * 16);
                (
                    (e as *const u64).read_unaligned(),
                    (e.add(8) as *const u32).read_unaligned(),
                    (e.add(14) as *const u16).read_unaligned(),
                )
            };
            if f & VRING_DESC_F_INDIRECT != 0 {
                return Err(RingError::Indirect);
            }
            push_seg(&self.active.mem, a, l, f, writable, segs)?;
            total += l as u64;
        }
        Ok(total)
    }

    #[inline]
    fn head_avail(&self) -> bool {
        is_avail(self.ring.flags(self.avail.idx), self.avail.wrap)
    }

    /// Queues a used descriptor; written out by [`Self::flush_used`].
    #[inline]
    fn put_used(&mut self, id: u16, len: u32, count: u16) {
        if self.shadow.entries.is_full() {
            self.flush_used();
        }
        self.shadow.entries.push((id, len, count));
    }

    /// Queues the completion of a driver → device chain. With IN_ORDER the device may
    /// complete a run of buffers with one used descriptor carrying the last buffer's id and
    /// skip the ring forward by the run's length (virtio 1.1, 2.7.9), so consecutive
    /// completions merge into one entry.
    #[inline]
    fn put_used_tx(&mut self, id: u16, count: u16) {
        if self.in_order
            && let Some(last) = self.shadow.entries.last_mut()
            && last.1 == 0
            && let Some(sum) = last.2.checked_add(count)
            && sum < self.ring.size()
        {
            *last = (id, 0, sum);
            return;
        }
        self.put_used(id, 0, count);
    }

    /// Writes the queued used descriptors: every field first, then the flags of all but the
    /// first, then (release) the first one's flags, which hands the batch to the driver.
    fn flush_used(&mut self) {
        let Some(&(id0, len0, count0)) = self.shadow.entries.first() else {
            return;
        };
        let size = self.ring.size();
        let head = self.used;
        let mut pos = head;
        pos.advance(count0, size);
        for &(id, len, count) in &self.shadow.entries[1..] {
            self.ring.write_used(pos.idx, id, len, pos.wrap);
            pos.advance(count, size);
        }
        self.ring.write_used(head.idx, id0, len0, head.wrap);
        self.used = pos;
        self.shadow.entries.clear();
    }

    /// Whether the device → driver completions queued so far end on a publishing boundary
    /// ([`PUBLISH_SLOTS`]). On the enqueue path every consumed descriptor gets its used entry
    /// in order, so the shadow ends where the avail position is.
    #[inline(always)]
    fn publish_due(&self) -> bool {
        self.avail.idx.is_multiple_of(PUBLISH_SLOTS)
    }

    fn notify(&self, any: bool, sink: &impl ErrorSink) {
        if !any || self.active.call.is_none() {
            return;
        }
        fence(Ordering::SeqCst);
        if self.ring.driver_event_flags() != EVENT_FLAGS_DISABLE && !self.active.signal_call() {
            sink.ring_error(RingError::CallSkipped, 1);
        }
    }

    fn mark_broken(&mut self, sink: &impl ErrorSink) {
        if !self.broken {
            sink.ring_error(RingError::DescLoop, 1);
            self.broken = true;
        }
    }

    /// The four descriptors of the ring line at `self.avail` when the line starts there and
    /// all four are available plain writable buffers (exactly AVAIL/USED for this lap and
    /// WRITE among AVAIL, USED, NEXT, WRITE and INDIRECT: one receive buffer per packet);
    /// None otherwise, with nothing consumed. Reading the line's four flags together takes
    /// the line from the driver once.
    #[inline(always)]
    fn writable_line(&self) -> Option<[PackedDesc; BATCH as usize]> {
        let idx = self.avail.idx;
        if !idx.is_multiple_of(BATCH) || idx + BATCH > self.ring.size() {
            return None;
        }
        const MASK: u16 = DESC_F_AVAIL
            | DESC_F_USED
            | VRING_DESC_F_NEXT
            | VRING_DESC_F_WRITE
            | VRING_DESC_F_INDIRECT;
        let want = VRING_DESC_F_WRITE | avail_flags(self.avail.wrap);
        let f = [0, 1, 2, 3].map(|k| self.ring.flags(idx + k) & MASK);
        if f != [want; BATCH as usize] {
            return None;
        }
        Some([0, 1, 2, 3].map(|k| self.ring.desc(idx + k)))
    }

    /// Driver → device, plain packets (one descriptor holding header and frame, fitting one
    /// mbuf) from the head of the ring, in two passes. The first reads every available
    /// descriptor up to `limit` (and at most [`PLAIN_MAX`]), checks it and starts loading its
    /// frame; the second copies the frames. Across caches each frame line is a transfer from
    /// the driver's core whenever the driver's side has read the frame (DPDK's virtio-user
    /// does, for its statistics), and this way the transfers of a whole burst overlap instead
    /// of following each other four at a time (docs/performance.md, "Two-pass dequeue").
    ///
    /// Stops at the first descriptor that is not available or not plain (chained, indirect,
    /// writable, badly sized or not translatable), leaving the latter to the per-chain path,
    /// which reports whatever is wrong with it. Returns the packets taken and why it stopped.
    #[inline]
    fn dequeue_plain<const KEEP: bool>(
        &mut self,
        cache: &mut MbufCache,
        out: &mut Burst,
        limit: usize,
        max_pkt: usize,
        port: u16,
        res: &mut BurstResult,
    ) -> (usize, PlainStop) {
        let size = self.ring.size();
        let hdr = self.hdr_len;
        // With offloads the header is copied too and kept in front of the data.
        let keep = if KEEP { hdr } else { 0 };
        // (frame, frame length, buffer id) of each descriptor checked in the first pass.
        let mut frames: ArrayVec<(*const u8, u32, u16), PLAIN_MAX> = ArrayVec::new();
        let mut pos = self.avail;
        let mut stop = PlainStop::Limit;
        while frames.len() < limit.min(PLAIN_MAX) {
            if pos.idx.is_multiple_of(BATCH) {
                // Keep the ring's transfers ahead of the reads: each new line requests the
                // line two further on (docs/performance.md, "Moving look-ahead").
                prefetch(
                    self.ring
                        .slot_addr(pos.idx + DEQUEUE_LOOKAHEAD_LINES * BATCH),
                );
            }
            let flags = self.ring.flags(pos.idx);
            if !is_avail(flags, pos.wrap) {
                stop = PlainStop::Empty;
                break;
            }
            stop = PlainStop::NotPlain;
            if flags & (VRING_DESC_F_NEXT | VRING_DESC_F_INDIRECT | VRING_DESC_F_WRITE) != 0 {
                break;
            }
            let d = self.ring.desc(pos.idx);
            let len = d.len as usize;
            if len <= hdr || len - hdr > max_pkt {
                break;
            }
            let Some(p) = self.active.mem.translate(d.addr, d.len as u64) else {
                break;
            };
            stop = PlainStop::Limit;
            // SAFETY: the translation covers len > hdr bytes.
            let frame = unsafe { p.add(hdr) };
            prefetch(frame);
            frames.push((frame, (len - hdr) as u32, d.id));
            pos.advance(1, size);
        }
        if frames.is_empty() {
            return (0, stop);
        }
        let start = out.len();
        if !cache.alloc_bulk(frames.len(), out) {
            while out.len() - start < frames.len() {
                let Some(m) = cache.alloc() else {
                    stop = PlainStop::NoMbuf;
                    break;
                };
                out.push(m);
            }
        }
        let mut done = 0;
        for (m, &(frame, plen, id)) in out[start..].iter_mut().zip(&frames) {
            let Some(dst) = m.append(plen as usize + keep) else {
                // Larger than an mbuf: the per-chain path spreads it over a chain of mbufs.
                stop = PlainStop::NotPlain;
                break;
            };
            // SAFETY: frame spans plen bytes of translated guest memory and the keep <= hdr
            // bytes before it are the rest of the same translated buffer; dst is plen + keep
            // bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    frame.sub(keep),
                    dst.as_mut_ptr(),
                    plen as usize + keep,
                )
            };
            if KEEP {
                m.adj(keep);
            }
            m.set_port(port);
            res.bytes += plen as usize;
            self.put_used_tx(id, 1);
            done += 1;
        }
        cache.free_all(out.drain(start + done..));
        res.packets += done;
        self.avail.advance(done as u16, size);
        (done, stop)
    }

    /// Batched device → driver path: four one-segment packets into the four one-descriptor
    /// writable buffers of one ring line, checked together, destination data lines prefetched
    /// for writing together, copied, and completed with the line (written out at each
    /// [`PUBLISH_SLOTS`] boundary). Returns false with nothing
    /// consumed when the line or the packets do not qualify.
    #[inline]
    fn enqueue_line<const OL: bool>(
        &mut self,
        pkts: &[ferrovia_memory::Mbuf],
        res: &mut BurstResult,
    ) -> bool {
        const N: usize = BATCH as usize;
        if pkts.iter().any(|m| m.nb_segs() != 1) {
            return false;
        }
        let Some(descs) = self.writable_line() else {
            return false;
        };
        let hdr_len = self.hdr_len;
        let mut dsts = [std::ptr::null_mut::<u8>(); N];
        for ((dst, d), m) in dsts.iter_mut().zip(&descs).zip(pkts) {
            // Translated and copied below: the same bytes (the segment's data).
            let need = (hdr_len + m.data_len()) as u64;
            if (d.len as u64) < need {
                return false;
            }
            match self.active.mem.translate(d.addr, need) {
                Some(p) => *dst = p,
                None => return false,
            }
        }
        for &dst in &dsts {
            // The data line only: the header line is usually left as it is (write_rx_hdr
            // stores only what changed), and taking it for writing would cost the driver a miss.
            // SAFETY: each translation covers hdr_len + data_len bytes; hdr_len is in range.
            prefetch_for_write(unsafe { dst.add(hdr_len) });
        }
        for ((&dst, d), m) in dsts.iter().zip(&descs).zip(pkts) {
            let data = m.data();
            // SAFETY: dst spans hdr_len + data.len() bytes of guest memory, translated as one.
            unsafe {
                if OL {
                    write_rx_hdr_ol(dst, hdr_len, 1, &tx_hdr(m).to_bytes());
                } else {
                    write_rx_hdr(dst, hdr_len, 1);
                }
                std::ptr::copy_nonoverlapping(data.as_ptr(), dst.add(hdr_len), data.len());
            }
            self.put_used(d.id, (hdr_len + data.len()) as u32, 1);
            res.bytes += data.len();
        }
        res.packets += N;
        self.avail.advance(BATCH, self.ring.size());
        if self.publish_due() {
            self.flush_used();
        }
        true
    }

    /// Driver → device, as `SplitDevice::dequeue_burst` on a split ring.
    pub fn dequeue_burst(
        &mut self,
        cache: &mut MbufCache,
        out: &mut Burst,
        max: usize,
        max_pkt: usize,
        port: u16,
        sink: &impl ErrorSink,
    ) -> BurstResult {
        // Chosen once per burst: without offloads the header is skipped at no cost.
        if self.keep_hdr == 0 {
            self.dequeue_impl::<false>(cache, out, max, max_pkt, port, sink)
        } else {
            self.dequeue_impl::<true>(cache, out, max, max_pkt, port, sink)
        }
    }

    #[inline]
    fn dequeue_impl<const KEEP: bool>(
        &mut self,
        cache: &mut MbufCache,
        out: &mut Burst,
        max: usize,
        max_pkt: usize,
        port: u16,
        sink: &impl ErrorSink,
    ) -> BurstResult {
        let mut res = BurstResult::default();
        if self.broken {
            return res;
        }
        if self.head_avail() {
            // The driver has handed over at least the head's line. Ours hands transmit
            // descriptors over two lines at a time (an aligned 128-byte pair), so start the
            // next line's transfer now, before the first pass reads the head's line: across
            // caches the two transfers then overlap (docs/performance.md, "Ring
            // look-ahead"). A line not yet written is only read early, never consumed.
            prefetch(self.ring.slot_addr((self.avail.idx & !(BATCH - 1)) + BATCH));
        }
        let n = max.min(out.remaining_capacity());
        let mut any = false;
        let mut segs: ArrayVec<Seg, MAX_SEGS> = ArrayVec::new();
        let mut taken = 0;
        while taken < n {
            let limit = (n - taken).min(PLAIN_MAX);
            let (k, stop) = self.dequeue_plain::<KEEP>(cache, out, limit, max_pkt, port, &mut res);
            taken += k;
            any |= k > 0;
            match stop {
                PlainStop::Limit => continue,
                // Not read again before the next burst: a driver that is writing that line
                // now would have to take it back once more.
                PlainStop::Empty => break,
                PlainStop::NoMbuf => {
                    sink.ring_error(RingError::NoMbuf, 1);
                    break;
                }
                PlainStop::NotPlain => {}
            }
            // The head is available but not plain: one chain by the general path.
            taken += 1;
            segs.clear();
            let Some(c) = self.collect(false, &mut segs) else {
                self.mark_broken(sink);
                break;
            };
            let hdr = self.hdr_len as u64;
            let err = c.err.or(if c.total <= hdr {
                Some(RingError::ChainShort)
            } else if c.total - hdr > max_pkt as u64 {
                Some(RingError::TooLong)
            } else {
                None
            });
            if let Some(e) = err {
                sink.ring_error(e, 1);
            } else {
                let Some(m) = copy_into_mbufs(
                    cache,
                    &segs,
                    self.hdr_len,
                    if KEEP { self.hdr_len } else { 0 },
                    port,
                ) else {
                    sink.ring_error(RingError::NoMbuf, 1);
                    break;
                };
                res.packets += 1;
                res.bytes += (c.total - hdr) as usize;
                out.push(m);
            }
            self.avail.advance(c.count, self.ring.size());
            self.put_used_tx(c.id, c.count);
            any = true;
        }
        self.flush_used();
        self.notify(any, sink);
        res
    }

    /// Device → driver, as `SplitDevice::enqueue_burst` on a split ring.
    pub fn enqueue_burst(
        &mut self,
        cache: &mut MbufCache,
        pkts: &mut Burst,
        sink: &impl ErrorSink,
    ) -> BurstResult {
        // Chosen once per burst: without offloads the headers stay zero at no cost.
        if self.ol_rx {
            self.enqueue_impl::<true>(cache, pkts, sink)
        } else {
            self.enqueue_impl::<false>(cache, pkts, sink)
        }
    }

    #[inline]
    fn enqueue_impl<const OL: bool>(
        &mut self,
        cache: &mut MbufCache,
        pkts: &mut Burst,
        sink: &impl ErrorSink,
    ) -> BurstResult {
        let mut res = BurstResult::default();
        if self.broken {
            return res;
        }
        let size = self.ring.size();
        let mut processed = 0usize;
        let mut any = false;
        let mut segs: ArrayVec<Seg, MAX_SEGS> = ArrayVec::new();
        // (id, count, capacity) of each buffer reserved for the packet.
        let mut bufs: ArrayVec<(u16, u16, u64), MAX_SEGS> = ArrayVec::new();
        let total = pkts.len();
        'pkts: while processed < total {
            if total - processed >= BATCH as usize
                && self.enqueue_line::<OL>(&pkts[processed..processed + BATCH as usize], &mut res)
            {
                processed += BATCH as usize;
                any = true;
                continue;
            }
            let m = &pkts[processed];
            let need = self.hdr_len as u64 + m.pkt_len() as u64;
            // Fast path: a single-segment packet into one plain writable descriptor.
            if m.nb_segs() == 1 {
                let flags = self.ring.flags(self.avail.idx);
                if is_avail(flags, self.avail.wrap)
                    && flags & (VRING_DESC_F_NEXT | VRING_DESC_F_INDIRECT | VRING_DESC_F_WRITE)
                        == VRING_DESC_F_WRITE
                {
                    let d = self.ring.desc(self.avail.idx);
                    // Translated and copied: the same bytes (the segment's data).
                    let data = m.data();
                    let need = self.hdr_len as u64 + data.len() as u64;
                    if d.len as u64 >= need
                        && let Some(dst) = self.active.mem.translate(d.addr, need)
                    {
                        // SAFETY: dst spans `need` bytes of guest memory, translated as one.
                        unsafe {
                            if OL {
                                write_rx_hdr_ol(dst, self.hdr_len, 1, &tx_hdr(m).to_bytes());
                            } else {
                                write_rx_hdr(dst, self.hdr_len, 1);
                            }
                            std::ptr::copy_nonoverlapping(
                                data.as_ptr(),
                                dst.add(self.hdr_len),
                                data.len(),
                            );
                        }
                        self.avail.advance(1, size);
                        self.put_used(d.id, need as u32, 1);
                        if self.publish_due() {
                            self.flush_used();
                        }
                        any = true;
                        res.packets += 1;
                        res.bytes += data.len();
                        processed += 1;
                        continue;
                    }
                }
            }
            let start = self.avail;
            segs.clear();
            bufs.clear();
            let mut cap = 0u64;
            while cap < need {
                if !self.head_avail() || bufs.is_full() {
                    self.avail = start;
                    sink.ring_error(RingError::RingFull, 1);
                    break 'pkts;
                }
                let first = segs.len();
                let Some(c) = self.collect(true, &mut segs) else {
                    self.avail = start;
                    self.mark_broken(sink);
                    break 'pkts;
                };
                self.avail.advance(c.count, size);
                if let Some(e) = c.err {
                    // Used descriptors become visible at once in a packed ring, so nothing
                    // consumed may be rolled back: drop the packet and return every buffer
                    // reserved for it, plus the bad one, empty.
                    segs.truncate(first);
                    sink.ring_error(e, 1);
                    for &(id, count, _) in &bufs {
                        self.put_used(id, 0, count);
                    }
                    self.put_used(c.id, 0, c.count);
                    any = true;
                    processed += 1;
                    continue 'pkts;
                }
                bufs.push((c.id, c.count, c.total));
                cap += c.total;
                if !self.mrg && cap < need {
                    sink.ring_error(RingError::ChainShort, 1);
                    let (id, count, _) = bufs[0];
                    self.put_used(id, 0, count);
                    any = true;
                    processed += 1;
                    continue 'pkts;
                }
            }
            write_merged(
                &segs,
                self.hdr_len,
                OL,
                m,
                need,
                &bufs,
                |(_, _, c)| c,
                |(id, count, _), wrote| self.put_used(id, wrote, count),
            );
            if self.publish_due() {
                self.flush_used();
            }
            any = true;
            res.packets += 1;
            res.bytes += m.pkt_len();
            processed += 1;
        }
        cache.free_all(pkts.drain(..processed));
        self.flush_used();
        self.notify(any, sink);
        res
    }
}
