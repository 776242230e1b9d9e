//! The device side of a virtio-net split queue (what a vhost backend runs).
//!
//! [`SplitDevice`] is owned by one polling thread. It walks the descriptor chains the driver
//! (the peer) published, translating every address through
//! [`GuestMemory`](crate::guest_mem::GuestMemory), and:
//! * [`SplitDevice::dequeue_burst`] copies packets the driver transmitted into mbufs;
//! * [`SplitDevice::enqueue_burst`] copies mbufs into the driver's receive buffers, merging
//!   several buffers for one packet when `VIRTIO_NET_F_MRG_RXBUF` was negotiated.
//!
//! Used entries are written as they are produced and `used.idx` is published once per burst;
//! the call eventfd is written at most once per burst, and only when the driver asked for it.

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
    Desc, UsedElem, VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT,
    VRING_DESC_F_WRITE, bit, feature, need_event, net_hdr_len,
};
use crate::net_hdr::{HdrAccept, tx_hdr, write_rx_hdr, write_rx_hdr_ol};
use crate::prefetch::prefetch;
use crate::ring::ActiveVring;
use crate::ring::split::SplitRing;

/// Device → driver completions on a split ring are made visible every this many used entries
/// (one cache line of the used ring) rather than once per burst, so the driver can start on the
/// first packets while the device copies the rest.
const RX_PUBLISH_EVERY: u16 = 8;

/// How many available entries ahead of the one being filled the device prefetches the
/// receive header's line (see `enqueue_impl`).
const RX_HDR_PREFETCH_AHEAD: u16 = 4;

/// Rings of at least this many entries get that prefetch. Their posted buffers (16 MiB and
/// more at 2 KiB each) outgrow the caches, so the header line is a miss. PVP with
/// 32768-entry rings, 1514 B frames: NDR 1.12x with it (4 rounds, paired A/B). Where buffers
/// stay cache-hot (the 1024-entry loopback, 32 packets circulating) the look-ahead's extra
/// avail, descriptor and translate work cost 12-13 % instead (docs/performance.md, "PVP").
const RX_HDR_PREFETCH_MIN_RING: u16 = 8192;

/// One poller's state for one split vring.
#[derive(Debug)]
pub struct SplitDevice {
    active: Arc<ActiveVring>,
    ring: SplitRing,
    last_avail: u16,
    used_idx: u16,
    hdr_len: usize,
    /// Bytes of the driver's transmit header kept in front of a dequeued packet's data
    /// (`hdr_len` when offloads the driver may ask for were negotiated, else 0): the port
    /// checks it and turns it into offload flags after the burst.
    keep_hdr: usize,
    /// Receive headers carry the mbufs' offload requests (the driver negotiated
    /// GUEST_CSUM/GUEST_TSO); otherwise they are zero.
    ol_rx: bool,
    /// `used.idx` before the first mid-burst exposure of the current burst, if any.
    exposed_from: Option<u16>,
    mrg: bool,
    event_idx: bool,
    indirect: bool,
    broken: bool,
}

impl SplitDevice {
    /// Starts polling a configured vring at the given avail and used indexes (the vring's
    /// `base` for a fresh configuration, or where the previous poller stopped).
    pub fn new(active: Arc<ActiveVring>, last_avail: u16, used_idx: u16) -> SplitDevice {
        let f = active.features;
        SplitDevice {
            ring: active.split(),
            last_avail,
            used_idx,
            hdr_len: net_hdr_len(f),
            keep_hdr: if HdrAccept::device_reads(f).any() {
                net_hdr_len(f)
            } else {
                0
            },
            ol_rx: HdrAccept::driver_reads(f).any(),
            exposed_from: None,
            mrg: f & bit(feature::NET_F_MRG_RXBUF) != 0,
            event_idx: f & bit(feature::RING_F_EVENT_IDX) != 0,
            indirect: f & bit(feature::RING_F_INDIRECT_DESC) != 0,
            broken: false,
            active,
        }
    }

    /// The next avail index to process (what GET_VRING_BASE reports).
    pub fn last_avail(&self) -> u16 {
        self.last_avail
    }

    /// The next used index this poller will write.
    pub fn used_idx(&self) -> u16 {
        self.used_idx
    }

    /// The configuration this state was built from.
    pub fn active(&self) -> &Arc<ActiveVring> {
        &self.active
    }

    /// How many avail entries are pending, or None (counted) if the driver's index is corrupt.
    #[inline]
    fn pending(&mut self, sink: &impl ErrorSink) -> Option<u16> {
        let r = &self.ring;
        let avail = r.avail_idx();
        let pending = avail.wrapping_sub(self.last_avail);
        if pending > r.size() {
            if !self.broken {
                sink.ring_error(RingError::AvailIdx, 1);
                self.broken = true;
            }
            return None;
        }
        self.broken = false;
        Some(pending)
    }

    /// Walks the chain starting at `head`, appending validated buffers to `segs`. Returns the
    /// total length. `writable` selects which direction the buffers must have.
    fn collect_chain(
        &self,
        head: u16,
        writable: bool,
        segs: &mut ArrayVec<Seg, MAX_SEGS>,
    ) -> Result<u64, RingError> {
        let r = &self.ring;
        let size = r.size();
        if head >= size {
            return Err(RingError::DescIndex);
        }
        let mut d = r.desc(head);
        if d.flags & VRING_DESC_F_INDIRECT != 0 {
            if !self.indirect || d.flags & VRING_DESC_F_NEXT != 0 {
                return Err(RingError::Indirect);
            }
            return self.collect_indirect(d, writable, segs);
        }
        let mut total = 0u64;
        let mut steps = 0u32;
        // Set once the chain has more buffers than one packet may span: the walk goes on
        // (bounded by the ring size) only to tell a loop from a chain that is merely too long.
        let mut too_many = false;
        loop {
            steps += 1;
            if steps > size as u32 {
                return Err(RingError::DescLoop);
            }
            if steps > MAX_CHAIN_DESCS {
                return Err(RingError::DescLen);
            }
            if d.flags & VRING_DESC_F_INDIRECT != 0 {
                return Err(RingError::Indirect);
            }
            if segs.is_full() && d.len != 0 {
                too_many = true;
            } else if !too_many {
                self.push_seg(d, writable, segs)?;
                total += d.len as u64;
            }
            if d.flags & VRING_DESC_F_NEXT == 0 {
                return if too_many {
                    Err(RingError::DescLen)
                } else {
                    Ok(total)
                };
            }
            if d.next >= size {
                return Err(RingError::DescIndex);
            }
            d = r.desc(d.next);
        }
    }

    fn collect_indirect(
        &self,
        d: Desc,
        writable: bool,
        segs: &mut ArrayVec<Seg, MAX_SEGS>,
    ) -> Result<u64, RingError> {
        let len = d.len as u64;
        if len == 0 || !len.is_multiple_of(16) || len / 16 > MAX_INDIRECT_DESCS as u64 {
            return Err(RingError::Indirect);
        }
        let n = (len / 16) as u32;
        let table = self
            .active
            .mem
            .translate(d.addr, len)
            .ok_or(RingError::DescAddr)?;
        if !(table as usize).is_multiple_of(8) {
            return Err(RingError::Indirect);
        }
        let table = table as *const Desc;
        let mut i = 0u32;
        let mut total = 0u64;
        let mut steps = 0u32;
        // As in `collect_chain`: too many buffers is told apart from a loop.
        let mut too_many = false;
        loop {
            steps += 1;
            if steps > n {
                return Err(RingError::DescLoop);
            }
            if steps > MAX_CHAIN_DESCS {
                return Err(RingError::DescLen);
            }
            // SAFETY: i < n and the table of n descriptors was translated as one range.
            let e = unsafe { table.add(i as usize).read_volatile() };
            if e.flags & VRING_DESC_F_INDIRECT != 0 {
                return Err(RingError::Indirect);
            }
            if segs.is_full() && e.len != 0 {
                too_many = true;
            } else if !too_many {
                self.push_seg(e, writable, segs)?;
                total += e.len as u64;
            }
            if e.flags & VRING_DESC_F_NEXT == 0 {
                return if too_many {
                    Err(RingError::DescLen)
                } else {
                    Ok(total)
                };
            }
            if e.next as u32 >= n {
                return Err(RingError::DescIndex);
            }
            i = e.next as u32;
        }
    }

    #[inline]
    fn push_seg(
        &self,
        d: Desc,
        writable: bool,
        segs: &mut ArrayVec<Seg, MAX_SEGS>,
    ) -> Result<(), RingError> {
        push_seg(&self.active.mem, d.addr, d.len, d.flags, writable, segs)
    }

    #[inline]
    fn put_used(&mut self, k: u16, id: u16, len: u32) {
        self.ring.set_used_elem(
            self.used_idx.wrapping_add(k),
            UsedElem { id: id as u32, len },
        );
    }

    /// Makes `n` more used entries visible mid-burst, without signalling.
    #[inline]
    fn expose_used(&mut self, n: u16) {
        if self.exposed_from.is_none() {
            self.exposed_from = Some(self.used_idx);
        }
        self.used_idx = self.used_idx.wrapping_add(n);
        self.ring.set_used_idx(self.used_idx);
    }

    /// Publishes `n` new used entries and signals the driver if it asked to be told (`exposed`:
    /// entries were already made visible earlier in this burst by [`Self::expose_used`]).
    #[inline]
    fn publish_used(&mut self, n: u16, exposed: bool, sink: &impl ErrorSink) {
        if n == 0 && !exposed {
            return;
        }
        let old = self.exposed_from.take().unwrap_or(self.used_idx);
        self.used_idx = self.used_idx.wrapping_add(n);
        let r = &self.ring;
        r.set_used_idx(self.used_idx);
        if self.event_idx {
            r.set_avail_event(self.last_avail.wrapping_add(0x8000));
        }
        if self.active.call.is_none() {
            return;
        }
        fence(Ordering::SeqCst);
        let signal = if self.event_idx {
            need_event(r.used_event(), self.used_idx, old)
        } else {
            r.avail_flags() & VRING_AVAIL_F_NO_INTERRUPT == 0
        };
        if signal && !self.active.signal_call() {
            sink.ring_error(RingError::CallSkipped, 1);
        }
    }

    /// Driver → device: takes up to `max` packets the driver transmitted, copying each into an
    /// mbuf (chained when larger than one mbuf). Frames longer than `max_pkt` are dropped.
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
        let keep = if KEEP { self.hdr_len } else { 0 };
        let Some(pending) = self.pending(sink) else {
            return BurstResult::default();
        };
        let n = (pending as usize).min(max).min(out.remaining_capacity());
        let mut res = BurstResult::default();
        let mut used = 0u16;
        let mut segs: ArrayVec<Seg, MAX_SEGS> = ArrayVec::new();
        for _ in 0..n {
            let head = self.ring.avail_ring(self.last_avail);
            // Fast path: header and frame in one plain descriptor that fits one mbuf.
            if head < self.ring.size() {
                let d = self.ring.desc(head);
                let hdr = self.hdr_len as u32;
                if d.flags & (VRING_DESC_F_NEXT | VRING_DESC_F_INDIRECT) == 0
                    && d.len > hdr
                    && ((d.len - hdr) as usize) <= max_pkt
                    && let Some(src) = self.active.mem.translate(d.addr, d.len as u64)
                {
                    let plen = (d.len - hdr) as usize;
                    let Some(mut m) = cache.alloc() else {
                        sink.ring_error(RingError::NoMbuf, 1);
                        break;
                    };
                    // With offloads, the header is copied too and kept in front of the data.
                    if let Some(dst) = m.append(plen + keep) {
                        // SAFETY: src spans d.len = hdr + plen bytes inside guest memory,
                        // keep <= hdr; dst is plen + keep bytes of our mbuf.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                src.add(hdr as usize - keep),
                                dst.as_mut_ptr(),
                                plen + keep,
                            )
                        };
                        if KEEP {
                            m.adj(keep);
                        }
                        m.set_port(port);
                        res.packets += 1;
                        res.bytes += plen;
                        out.push(m);
                        self.put_used(used, head, 0);
                        used += 1;
                        self.last_avail = self.last_avail.wrapping_add(1);
                        continue;
                    }
                    cache.free(m); // larger than one mbuf: take the general path
                }
            }
            segs.clear();
            let chain = self.collect_chain(head, false, &mut segs);
            let total = match chain {
                Err(RingError::DescIndex) if head >= self.ring.size() => {
                    // No valid id to return: skip the entry.
                    sink.ring_error(RingError::DescIndex, 1);
                    self.last_avail = self.last_avail.wrapping_add(1);
                    continue;
                }
                Err(e) => {
                    sink.ring_error(e, 1);
                    self.put_used(used, head, 0);
                    used += 1;
                    self.last_avail = self.last_avail.wrapping_add(1);
                    continue;
                }
                Ok(t) => t,
            };
            let hdr = self.hdr_len as u64;
            if total <= hdr || total - hdr > max_pkt as u64 {
                sink.ring_error(
                    if total <= hdr {
                        RingError::ChainShort
                    } else {
                        RingError::TooLong
                    },
                    1,
                );
                self.put_used(used, head, 0);
                used += 1;
                self.last_avail = self.last_avail.wrapping_add(1);
                continue;
            }
            let Some(m) = copy_into_mbufs(cache, &segs, self.hdr_len, keep, port) else {
                sink.ring_error(RingError::NoMbuf, 1);
                break; // retry this entry on the next burst
            };
            res.packets += 1;
            res.bytes += (total - hdr) as usize;
            out.push(m);
            self.put_used(used, head, 0);
            used += 1;
            self.last_avail = self.last_avail.wrapping_add(1);
        }
        self.publish_used(used, false, sink);
        res
    }

    /// Starts loading the first line of the buffer the driver made available at avail index
    /// `idx` (the receive header's line). A hint: a bad head or address from the peer is
    /// skipped here and counted when the buffer is used.
    #[inline(always)]
    fn prefetch_rx_hdr(&self, idx: u16) {
        let head = self.ring.avail_ring(idx);
        if head < self.ring.size() {
            let d = self.ring.desc(head);
            if let Some(dst) = self.active.mem.translate(d.addr, self.hdr_len as u64) {
                prefetch(dst);
            }
        }
    }

    /// Device → driver: copies packets from the front of `pkts` into the driver's receive
    /// buffers and removes (and frees) the ones delivered. Packets left in `pkts` found no room.
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
        let Some(mut pending) = self.pending(sink) else {
            return BurstResult::default();
        };
        let mut res = BurstResult::default();
        let mut used = 0u16;
        // Whether some of this burst's used entries were already made visible.
        let mut exposed = false;
        // Packets handled from the front of `pkts`: delivered, or dropped for a bad buffer.
        let mut processed = 0usize;
        let mut segs: ArrayVec<Seg, MAX_SEGS> = ArrayVec::new();
        // (head, writable capacity, first seg index) of each buffer used by the packet.
        let mut bufs: ArrayVec<(u16, u64, usize), MAX_SEGS> = ArrayVec::new();
        // The receive header sits in the line before the frame's first (drivers post
        // `data - hdr_len`), and write_rx_hdr loads it to store only what differs: on deep
        // rings that load was the one stall in the host's profile at 1514 B (perf, PVP).
        // Loading it RX_HDR_PREFETCH_AHEAD packets early hides the miss behind the copies
        // between. A plain prefetch, not one for writing: the header usually needs no store,
        // and taking the line would make the driver's next read of it miss.
        let deep = self.ring.size() >= RX_HDR_PREFETCH_MIN_RING;
        if deep {
            let ahead = pending.min(RX_HDR_PREFETCH_AHEAD);
            for k in 0..ahead {
                self.prefetch_rx_hdr(self.last_avail.wrapping_add(k));
            }
        }
        'pkts: for m in pkts.iter() {
            let need = self.hdr_len as u64 + m.pkt_len() as u64;
            if deep && pending > RX_HDR_PREFETCH_AHEAD {
                self.prefetch_rx_hdr(self.last_avail.wrapping_add(RX_HDR_PREFETCH_AHEAD));
            }
            // Fast path: one single-segment packet into one plain writable descriptor.
            if pending > 0 && m.nb_segs() == 1 {
                let head = self.ring.avail_ring(self.last_avail);
                // Translated and copied: the same bytes (the segment's data).
                let data = m.data();
                let need = self.hdr_len as u64 + data.len() as u64;
                if head < self.ring.size() {
                    let d = self.ring.desc(head);
                    if d.flags & (VRING_DESC_F_NEXT | VRING_DESC_F_INDIRECT | VRING_DESC_F_WRITE)
                        == VRING_DESC_F_WRITE
                        && d.len as u64 >= need
                        && let Some(dst) = self.active.mem.translate(d.addr, need)
                    {
                        // SAFETY: dst spans `need` = hdr_len + data.len() bytes of guest
                        // memory, translated as one range.
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
                        self.put_used(used, head, need as u32);
                        used += 1;
                        if used >= RX_PUBLISH_EVERY {
                            self.expose_used(used);
                            exposed = true;
                            used = 0;
                        }
                        self.last_avail = self.last_avail.wrapping_add(1);
                        pending -= 1;
                        res.packets += 1;
                        res.bytes += data.len();
                        processed += 1;
                        continue;
                    }
                }
            }
            let start_avail = self.last_avail;
            let start_used = used;
            segs.clear();
            bufs.clear();
            let mut cap = 0u64;
            while cap < need {
                if pending == 0 || bufs.is_full() {
                    // Not enough buffers: undo this packet's reservations and stop.
                    self.last_avail = start_avail;
                    used = start_used;
                    sink.ring_error(RingError::RingFull, 1);
                    break 'pkts;
                }
                let head = self.ring.avail_ring(self.last_avail);
                self.last_avail = self.last_avail.wrapping_add(1);
                pending -= 1;
                let first = segs.len();
                match self.collect_chain(head, true, &mut segs) {
                    Ok(c) => {
                        bufs.push((head, c, first));
                        cap += c;
                    }
                    Err(e) => {
                        segs.truncate(first);
                        sink.ring_error(e, 1);
                        if head < self.ring.size() {
                            self.put_used(used, head, 0);
                            used += 1;
                        }
                        if !self.mrg {
                            processed += 1; // the packet is dropped with its buffer
                            continue 'pkts;
                        }
                        continue;
                    }
                }
                if !self.mrg && cap < need {
                    // One chain per packet and it is too small: drop the packet.
                    sink.ring_error(RingError::ChainShort, 1);
                    let (h, _, _) = bufs[0];
                    self.put_used(used, h, 0);
                    used += 1;
                    processed += 1;
                    continue 'pkts;
                }
            }
            // Copy header + data across the reserved segments.
            write_merged(
                &segs,
                self.hdr_len,
                OL,
                m,
                need,
                &bufs,
                |(_, c, _)| c,
                |(head, _, _), wrote| {
                    self.put_used(used, head, wrote);
                    used += 1;
                },
            );
            res.packets += 1;
            res.bytes += m.pkt_len();
            processed += 1;
            if used >= RX_PUBLISH_EVERY {
                self.expose_used(used);
                exposed = true;
                used = 0;
            }
        }
        cache.free_all(pkts.drain(..processed));
        self.publish_used(used, exposed, sink);
        res
    }

    /// Control queue: takes the next chain the driver made available, if any. Its
    /// device-readable bytes (the command) are copied into `buf` (at most `buf.len()`;
    /// [`CtrlChain::truncated`] says there were more) and its first device-writable byte is
    /// kept as the ack slot. Every descriptor is checked as on the data path (index, loop,
    /// length, address inside the driver's memory, indirect table); a chain that fails is
    /// still taken (so the queue moves on) with [`CtrlChain::error`] set and no ack slot.
    /// Give every chain taken back with [`Self::ctrl_complete`].
    pub fn ctrl_pop(&mut self, buf: &mut [u8], sink: &impl ErrorSink) -> Option<CtrlChain> {
        if self.pending(sink)? == 0 {
            return None;
        }
        let head = self.ring.avail_ring(self.last_avail);
        self.last_avail = self.last_avail.wrapping_add(1);
        let mut c = CtrlChain {
            id: head,
            len: 0,
            truncated: false,
            ack: None,
            readable_after_ack: false,
            error: None,
        };
        if let Err(e) = self.ctrl_walk(head, buf, &mut c) {
            sink.ring_error(e, 1);
            c.error = Some(e);
            c.ack = None;
        }
        Some(c)
    }

    fn ctrl_walk(&self, head: u16, buf: &mut [u8], c: &mut CtrlChain) -> Result<(), RingError> {
        let r = &self.ring;
        let size = r.size();
        if head >= size {
            return Err(RingError::DescIndex);
        }
        let first = r.desc(head);
        let mem = &self.active.mem;
        // Where the descriptors are: the ring's table, or one indirect table.
        let (table, n, mut i) = if first.flags & VRING_DESC_F_INDIRECT != 0 {
            let len = first.len as u64;
            if !self.indirect
                || first.flags & VRING_DESC_F_NEXT != 0
                || len == 0
                || !len.is_multiple_of(16)
                || len / 16 > MAX_INDIRECT_DESCS as u64
            {
                return Err(RingError::Indirect);
            }
            let t = mem.translate(first.addr, len).ok_or(RingError::DescAddr)?;
            if !(t as usize).is_multiple_of(8) {
                return Err(RingError::Indirect);
            }
            (Some(t as *const Desc), (len / 16) as u32, 0u32)
        } else {
            (None, size as u32, head as u32)
        };
        let mut steps = 0u32;
        let mut seen_write = false;
        loop {
            steps += 1;
            if steps > n {
                return Err(RingError::DescLoop);
            }
            if steps > MAX_CHAIN_DESCS {
                return Err(RingError::DescLen);
            }
            let d = match table {
                // SAFETY: i < n and the table of n descriptors was translated as one range.
                Some(t) => unsafe { t.add(i as usize).read_volatile() },
                None => r.desc(i as u16),
            };
            if d.flags & VRING_DESC_F_INDIRECT != 0 {
                return Err(RingError::Indirect);
            }
            if d.len > 0 {
                let p = mem
                    .translate(d.addr, d.len as u64)
                    .ok_or(RingError::DescAddr)?;
                if d.flags & VRING_DESC_F_WRITE != 0 {
                    seen_write = true;
                    if c.ack.is_none() {
                        c.ack = Some(p);
                    }
                } else {
                    if seen_write {
                        // The spec puts every device-readable buffer first.
                        c.readable_after_ack = true;
                    }
                    let k = (d.len as usize).min(buf.len() - c.len);
                    // SAFETY: [p, p + d.len) was translated as a whole and k <= d.len; the
                    // destination has k bytes left. The driver may change the bytes while
                    // we copy: we parse our copy only.
                    unsafe {
                        std::ptr::copy_nonoverlapping(p, buf[c.len..].as_mut_ptr(), k);
                    }
                    c.len += k;
                    if k < d.len as usize {
                        c.truncated = true;
                    }
                }
            }
            if d.flags & VRING_DESC_F_NEXT == 0 {
                return Ok(());
            }
            if d.next as u32 >= n {
                return Err(RingError::DescIndex);
            }
            i = d.next as u32;
        }
    }

    /// Control queue: writes `ack` into `c`'s ack slot (if it has one), returns the chain to
    /// the driver as used (length 1 with an ack, else 0) and signals it if it asked.
    pub fn ctrl_complete(&mut self, c: CtrlChain, ack: u8, sink: &impl ErrorSink) {
        let mut len = 0;
        if let Some(p) = c.ack {
            // SAFETY: `p` is the start of a device-writable buffer of at least one byte,
            // translated inside the driver's memory, which `self.active` keeps mapped.
            unsafe { p.write_volatile(ack) };
            len = 1;
        }
        self.put_used(0, c.id, len);
        self.publish_used(1, false, sink);
    }
}

/// One control-queue chain taken by [`SplitDevice::ctrl_pop`].
#[derive(Debug)]
pub struct CtrlChain {
    id: u16,
    /// Device-readable bytes copied.
    pub len: usize,
    /// The chain had more device-readable bytes than the buffer took.
    pub truncated: bool,
    ack: Option<*mut u8>,
    /// A device-readable buffer came after a device-writable one (the spec puts them first).
    pub readable_after_ack: bool,
    /// Why the chain could not be read (counted on the sink already); no ack is written.
    pub error: Option<RingError>,
}

// SAFETY: the ack pointer is into the driver's memory, kept mapped by the queue the chain
// came from; a chain is completed on the thread that owns that queue.
unsafe impl Send for CtrlChain {}

impl CtrlChain {
    /// Whether the chain has a device-writable byte for the ack.
    pub fn has_ack(&self) -> bool {
        self.ack.is_some()
    }
}
