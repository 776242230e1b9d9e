//! What happens to one frame: the L2 switching decision and the VLAN edits on output.
//!
//! [`Pipeline`] is the per-PMD-thread state (flow cache, output batches, learning filter) and
//! [`Pipeline::process`] switches one received burst. Nothing here allocates, locks or makes a
//! system call.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use ferrovia_memory::{LcoreCaches, Mbuf, Mempool};

use crate::counters::{DropCause, MAX_PORTS, PmdCounters};
use crate::emc::{Action, Emc, FlowKey};
use crate::fdb::FdbKey;
use crate::frame::copy_mbuf;
use crate::frame::{self, FrameError};
pub use crate::learn::LearnRequest;
use crate::router::{self, ArpLimiter, RouteCtx, RouteResult};
use crate::snapshot::{BridgeView, PortView, Snapshot};
use crate::vlan::{Egress, Ingress};
use ferrovia_ethdev::Burst;

/// Frames waiting to leave through one port, flushed after each received burst.
#[derive(Debug, Default)]
pub struct OutBatch {
    /// The frames.
    pub pkts: Burst,
    /// Their bytes.
    pub bytes: u64,
    /// True while the slot is listed in [`Pipeline::dirty`] (so it is listed once, even when
    /// its batch was flushed mid-burst and refilled).
    pub listed: bool,
}

/// What a frame needs on its way out of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Nothing.
    None,
    /// Remove its tag.
    Pop,
    /// Add a tag with this VLAN.
    Push(u16),
    /// Rewrite its tag's VLAN.
    SetVid(u16),
    /// Drop it, counted on the egress port.
    Drop(DropCause),
}

/// How a frame of `vlan` that arrived with tag `vid` leaves port `slot` of `bridge`.
#[inline]
fn egress_edit(
    cx: BurstCtx<'_>,
    bridge: &BridgeView,
    slot: u16,
    vlan: u16,
    vid: Option<u16>,
) -> Edit {
    let Some(outp) = cx.snap.port(slot).filter(|p| p.bridge == bridge.id) else {
        return Edit::Drop(DropCause::PortGone);
    };
    match (outp.vlan.egress(vlan), vid) {
        (Egress::NotAllowed, _) => Edit::Drop(DropCause::VlanEgress),
        (Egress::Untagged, None) => Edit::None,
        (Egress::Untagged, Some(_)) => Edit::Pop,
        (Egress::Tagged, None) => Edit::Push(vlan),
        (Egress::Tagged, Some(v)) if v != vlan => Edit::SetVid(vlan),
        (Egress::Tagged, Some(_)) => Edit::None,
    }
}

/// Output batch size: a batch this full is flushed at once.
pub const OUT_BATCH: usize = 32;

const RECENT: usize = 256;

/// The per-PMD switching state.
pub struct Pipeline {
    /// The flow cache.
    pub emc: Emc,
    /// Output batches by port slot (allocated when a port is added).
    pub out: Vec<Option<Box<OutBatch>>>,
    /// Slots with frames in `out`.
    pub dirty: Vec<u16>,
    /// Learning requests to the control thread.
    pub learn: Arc<ArrayQueue<LearnRequest>>,
    /// Requests sent this second, to send each at most once a second.
    recent: Box<[(u64, u32)]>,
    /// Pool for flooded copies and router-made frames.
    pub pool: Mempool,
    /// ARP request rate limiter of the router.
    pub arp: ArpLimiter,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

/// Per-burst inputs that do not change within the burst.
#[derive(Clone, Copy)]
pub struct BurstCtx<'a> {
    /// The configuration.
    pub snap: &'a Snapshot,
    /// The flow-cache generation.
    pub generation: u64,
    /// The FDB clock.
    pub now: u32,
    /// This thread's counters.
    pub counters: &'a PmdCounters,
}

impl Pipeline {
    /// A pipeline that queues learning requests on `learn` and copies into `pool`.
    pub fn new(learn: Arc<ArrayQueue<LearnRequest>>, pool: Mempool) -> Pipeline {
        Pipeline {
            emc: Emc::default(),
            out: (0..MAX_PORTS).map(|_| None).collect(),
            dirty: Vec::with_capacity(MAX_PORTS),
            learn,
            recent: vec![(0, u32::MAX); RECENT].into_boxed_slice(),
            pool,
            arp: ArpLimiter::default(),
        }
    }

    /// True when the batch of `slot` should be flushed before more is added.
    #[inline]
    pub fn batch_full(&self, slot: u16) -> bool {
        self.out
            .get(slot as usize)
            .and_then(Option::as_ref)
            .is_some_and(|b| b.pkts.len() >= OUT_BATCH)
    }

    /// Switches every frame of `burst`, received on port `in_slot`. Frames end up in the
    /// output batches (see [`Pipeline::dirty`]) or freed and counted. `flush` is called for a
    /// slot whose batch is full, mid-burst.
    pub fn process(
        &mut self,
        cx: BurstCtx<'_>,
        caches: &mut LcoreCaches,
        in_slot: u16,
        burst: &mut Burst,
        flush: &mut dyn FnMut(&mut Pipeline, &mut LcoreCaches, u16),
    ) {
        let Some(inp) = cx.snap.port(in_slot) else {
            caches.free_all(burst.drain(..));
            return;
        };
        let Some(bridge) = cx.snap.bridge(inp.bridge) else {
            caches.free_all(burst.drain(..));
            return;
        };
        let pc = &cx.counters.ports[in_slot as usize];
        let mut bytes = 0u64;
        let n = burst.len() as u64;
        let (mut hits, mut misses) = (0u64, 0u64);
        let mut last: Option<(FlowKey, Action)> = None;
        let mut last_edit: Option<(u16, u16, Option<u16>, Edit)> = None;
        // The first 16 bytes (MACs, EtherType or tag) of the last frame switched to a port,
        // with where it went: a frame that starts with the same 16 bytes from the same port
        // in the same burst gets the same decision, VLAN edit included.
        let mut same: Option<([u8; 16], u16, Edit, FlowKey)> = None;
        let mut same_run = 0u64;
        for m in burst.drain(..) {
            let len = m.pkt_len();
            bytes += len as u64;
            if len > inp.max_frame as usize {
                pc.drop(DropCause::Oversize, 1);
                caches.free(m);
                continue;
            }
            let head: Option<&[u8; 16]> = m.data().first_chunk::<16>();
            if let (Some((prev, p, edit, _)), Some(hd)) = (same, head)
                && prev == *hd
            {
                hits += 1;
                same_run += 1;
                // The common case inline: no tag edit and room in the batch.
                if edit == Edit::None
                    && let Some(b) = self.out.get_mut(p as usize).and_then(Option::as_mut)
                    && b.pkts.len() < OUT_BATCH
                {
                    if !b.listed {
                        b.listed = true;
                        self.dirty.push(p);
                    }
                    b.bytes += len as u64;
                    b.pkts.push(m);
                    continue;
                }
                self.emit(cx, caches, p, edit, m, flush);
                continue;
            }
            let h = match frame::parse(m.data()) {
                Ok(h) => h,
                Err(e) => {
                    pc.drop(
                        match e {
                            FrameError::Runt => DropCause::Runt,
                            FrameError::StackedVlan => DropCause::StackedVlan,
                            FrameError::MulticastSource => DropCause::MulticastSource,
                        },
                        1,
                    );
                    caches.free(m);
                    continue;
                }
            };
            let vlan = match inp.vlan.ingress(h.vid) {
                Ingress::Vlan(v) => v,
                Ingress::NotAllowed => {
                    pc.drop(DropCause::VlanIngress, 1);
                    caches.free(m);
                    continue;
                }
            };
            let dst_key = FdbKey::new(&h.dst, vlan);
            let src_key = FdbKey::new(&h.src, vlan);
            let fk = FlowKey {
                dst: dst_key.raw(),
                src: (src_key.raw() & 0xffff_ffff_ffff) | ((in_slot as u64) << 48),
            };
            // Frames of one flow usually come in runs: the previous frame's decision (and its
            // egress edit) is reused without a cache lookup.
            let action = if last.is_some_and(|(k, _)| k == fk) {
                hits += 1;
                last.map_or(Action::Flood, |(_, a)| a)
            } else {
                let a = match self.emc.lookup(fk, cx.generation) {
                    Some((a, src_slot)) => {
                        hits += 1;
                        bridge.fdb.touch(src_slot, cx.now);
                        a
                    }
                    None => {
                        misses += 1;
                        let a = self.decide(cx, bridge, &h.dst, dst_key, vlan, in_slot);
                        match bridge.fdb.lookup(src_key) {
                            Some(hit) if hit.port == in_slot => {
                                bridge.fdb.touch(hit.slot, cx.now);
                                self.emc.insert(fk, cx.generation, a, hit.slot);
                            }
                            _ => self.request_learn(cx, inp, src_key),
                        }
                        a
                    }
                };
                last = Some((fk, a));
                a
            };
            match action {
                Action::Output(p) => {
                    let edit = match last_edit {
                        Some((q, v, vid, e)) if q == p && v == vlan && vid == h.vid => e,
                        _ => {
                            let e = egress_edit(cx, bridge, p, vlan, h.vid);
                            last_edit = Some((p, vlan, h.vid, e));
                            e
                        }
                    };
                    if let Some((_, _, _, k)) = same {
                        self.emc
                            .add_hits(k, cx.generation, std::mem::take(&mut same_run));
                    }
                    same = head.map(|hd| (*hd, p, edit, fk));
                    self.emit(cx, caches, p, edit, m, flush);
                }
                Action::Flood => {
                    pc.rx_flooded.add(1);
                    if h.ethertype == frame::ETH_P_ARP
                        && let Some(r) = bridge.router.as_ref()
                    {
                        let mut rc = RouteCtx {
                            now: cx.now,
                            counters: cx.counters,
                            bridge: bridge.id,
                            in_slot,
                            vlan,
                            pool: &self.pool,
                            arp: &mut self.arp,
                            learn: &self.learn,
                        };
                        if let Some(reply) = router::arp_snoop(r, &mut rc, caches, &m, &h) {
                            self.output(cx, caches, bridge, in_slot, vlan, h.vid, reply, flush);
                        }
                    }
                    self.flood(cx, caches, bridge, in_slot, vlan, h.vid, m, flush);
                }
                Action::Hairpin => {
                    pc.drop(DropCause::Hairpin, 1);
                    caches.free(m);
                }
                Action::Route => {
                    let Some(r) = bridge.router.as_ref() else {
                        pc.drop(DropCause::RouterUnhandled, 1);
                        caches.free(m);
                        continue;
                    };
                    let mut rc = RouteCtx {
                        now: cx.now,
                        counters: cx.counters,
                        bridge: bridge.id,
                        in_slot,
                        vlan,
                        pool: &self.pool,
                        arp: &mut self.arp,
                        learn: &self.learn,
                    };
                    match router::route(r, &mut rc, caches, m, &h) {
                        RouteResult::Forward {
                            m,
                            bridge: b,
                            vlan: v,
                            dst,
                        } => {
                            self.forward_routed(cx, caches, b, v, &dst, m, flush);
                        }
                        RouteResult::Reply { m } => {
                            self.output(cx, caches, bridge, in_slot, vlan, h.vid, m, flush);
                        }
                        RouteResult::Dropped(cause) => pc.drop(cause, 1),
                    }
                }
            }
        }
        if let Some((_, _, _, k)) = same {
            self.emc.add_hits(k, cx.generation, same_run);
        }
        pc.rx_packets.add(n);
        pc.rx_bytes.add(bytes);
        cx.counters.own.emc_hits.add(hits);
        cx.counters.own.emc_misses.add(misses);
    }

    /// The switching decision for a frame not in the flow cache.
    #[inline]
    fn decide(
        &self,
        _cx: BurstCtx<'_>,
        bridge: &BridgeView,
        dst: &[u8; 6],
        dst_key: FdbKey,
        vlan: u16,
        in_slot: u16,
    ) -> Action {
        if let Some(r) = &bridge.router
            && r.owns_mac(bridge.id, dst, vlan)
        {
            return Action::Route;
        }
        if dst[0] & 1 != 0 {
            return Action::Flood;
        }
        match bridge.fdb.lookup(dst_key) {
            Some(hit) if hit.port == in_slot => Action::Hairpin,
            Some(hit) => Action::Output(hit.port),
            None => Action::Flood,
        }
    }

    fn request_learn(&mut self, cx: BurstCtx<'_>, inp: &PortView, key: FdbKey) {
        let tag = key.raw() ^ ((inp.slot as u64) << 60);
        let r = &mut self.recent[(tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize];
        if *r == (tag, cx.now) {
            return;
        }
        *r = (tag, cx.now);
        let req = LearnRequest::Mac {
            bridge: inp.bridge,
            key,
            port: inp.slot,
        };
        if self.learn.push(req).is_err() {
            cx.counters.own.learn_queue_full.add(1);
        }
    }

    /// Sends `m` (of `vlan`, arriving with tag `vid`) out of port `slot` of `bridge`, fixing
    /// its tag for that port.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn output(
        &mut self,
        cx: BurstCtx<'_>,
        caches: &mut LcoreCaches,
        bridge: &BridgeView,
        slot: u16,
        vlan: u16,
        vid: Option<u16>,
        m: Mbuf,
        flush: &mut dyn FnMut(&mut Pipeline, &mut LcoreCaches, u16),
    ) {
        let edit = egress_edit(cx, bridge, slot, vlan, vid);
        self.emit(cx, caches, slot, edit, m, flush);
    }

    /// Applies `edit` to `m` and queues it on `slot` (or drops it, counted).
    #[inline]
    fn emit(
        &mut self,
        cx: BurstCtx<'_>,
        caches: &mut LcoreCaches,
        slot: u16,
        edit: Edit,
        mut m: Mbuf,
        flush: &mut dyn FnMut(&mut Pipeline, &mut LcoreCaches, u16),
    ) {
        let ok = match edit {
            Edit::None => true,
            Edit::Pop => frame::pop_vlan(&mut m),
            Edit::Push(v) => frame::push_vlan(&mut m, v),
            Edit::SetVid(v) => {
                frame::set_vid(&mut m, v);
                true
            }
            Edit::Drop(cause) => {
                cx.counters.ports[slot as usize % MAX_PORTS].drop(cause, 1);
                caches.free(m);
                return;
            }
        };
        if !ok {
            cx.counters.ports[slot as usize % MAX_PORTS].drop(DropCause::NoMbuf, 1);
            caches.free(m);
            return;
        }
        let Some(b) = self.out.get_mut(slot as usize).and_then(Option::as_mut) else {
            cx.counters.ports[slot as usize % MAX_PORTS].drop(DropCause::PortGone, 1);
            caches.free(m);
            return;
        };
        if b.pkts.len() >= OUT_BATCH {
            flush(self, caches, slot);
        }
        // The flush leaves the batch in place (empty); only the queueing is left.
        let Some(b) = self.out.get_mut(slot as usize).and_then(Option::as_mut) else {
            caches.free(m);
            return;
        };
        if !b.listed {
            b.listed = true;
            self.dirty.push(slot);
        }
        b.bytes += m.pkt_len() as u64;
        b.pkts.push(m);
    }

    /// Floods `m` to every port of `bridge` carrying `vlan` but `in_slot`: a copy each, the
    /// original to the last.
    #[allow(clippy::too_many_arguments)]
    fn flood(
        &mut self,
        cx: BurstCtx<'_>,
        caches: &mut LcoreCaches,
        bridge: &BridgeView,
        in_slot: u16,
        vlan: u16,
        vid: Option<u16>,
        m: Mbuf,
        flush: &mut dyn FnMut(&mut Pipeline, &mut LcoreCaches, u16),
    ) {
        let mut targets = bridge.members.iter().copied().filter(|&s| {
            s != in_slot
                && cx
                    .snap
                    .port(s)
                    .is_some_and(|p| p.vlan.egress(vlan) != Egress::NotAllowed)
        });
        let Some(mut cur) = targets.next() else {
            caches.free(m);
            return;
        };
        for next in targets {
            match copy_mbuf(caches, &self.pool, &m) {
                Some(c) => self.output(cx, caches, bridge, cur, vlan, vid, c, flush),
                None => cx.counters.ports[cur as usize].drop(DropCause::NoMbuf, 1),
            }
            cur = next;
        }
        self.output(cx, caches, bridge, cur, vlan, vid, m, flush);
    }

    /// Switches a frame the router rewrote onto `bridge`'s `vlan` towards `dst`.
    #[allow(clippy::too_many_arguments)]
    fn forward_routed(
        &mut self,
        cx: BurstCtx<'_>,
        caches: &mut LcoreCaches,
        bridge_id: u16,
        vlan: u16,
        dst: &[u8; 6],
        m: Mbuf,
        flush: &mut dyn FnMut(&mut Pipeline, &mut LcoreCaches, u16),
    ) {
        let Some(bridge) = cx.snap.bridge(bridge_id) else {
            caches.free(m);
            return;
        };
        // Routed frames leave the router untagged; the egress port adds its tag.
        match bridge.fdb.lookup(FdbKey::new(dst, vlan)) {
            Some(hit) => self.output(cx, caches, bridge, hit.port, vlan, None, m, flush),
            None => self.flood(cx, caches, bridge, u16::MAX, vlan, None, m, flush),
        }
    }
}
