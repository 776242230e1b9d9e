//! The device side of a virtio-net queue (what a vhost backend runs), either layout: the
//! dispatch over [`SplitDevice`] and [`PackedDevice`], chosen from the vring's [`RingView`].

use std::sync::Arc;

use ferrovia_memory::{Burst, MbufCache};

use crate::error::ErrorSink;
use crate::packed::PackedDevice;
use crate::split::SplitDevice;

pub use crate::chain::{BurstResult, MAX_SEGS};
pub use crate::ring::{ActiveVring, RingView, prepare_call_fd};

/// The device side of one vring, split or packed, owned by a polling thread.
#[derive(Debug)]
// One per polled queue, kept inline so the burst functions need no pointer chase; the packed
// variant carries its shadow used ring.
#[allow(clippy::large_enum_variant)]
pub enum DeviceQueue {
    /// Split ring.
    Split(SplitDevice),
    /// Packed ring.
    Packed(PackedDevice),
}

impl DeviceQueue {
    /// Starts polling `active` at the given positions (vhost-user base encoding for packed).
    pub fn new(active: Arc<ActiveVring>, last_avail: u16, used_idx: u16) -> DeviceQueue {
        match active.ring {
            RingView::Split(_) => {
                DeviceQueue::Split(SplitDevice::new(active, last_avail, used_idx))
            }
            RingView::Packed(_) => {
                DeviceQueue::Packed(PackedDevice::new(active, last_avail, used_idx))
            }
        }
    }

    /// Next avail position (vhost-user base encoding).
    #[inline]
    pub fn last_avail(&self) -> u16 {
        match self {
            DeviceQueue::Split(q) => q.last_avail(),
            DeviceQueue::Packed(q) => q.last_avail(),
        }
    }

    /// Next used position (vhost-user base encoding).
    #[inline]
    pub fn used_idx(&self) -> u16 {
        match self {
            DeviceQueue::Split(q) => q.used_idx(),
            DeviceQueue::Packed(q) => q.used_idx(),
        }
    }

    /// See [`SplitDevice::dequeue_burst`].
    #[inline]
    pub fn dequeue_burst(
        &mut self,
        cache: &mut MbufCache,
        out: &mut Burst,
        max: usize,
        max_pkt: usize,
        port: u16,
        sink: &impl ErrorSink,
    ) -> BurstResult {
        match self {
            DeviceQueue::Split(q) => q.dequeue_burst(cache, out, max, max_pkt, port, sink),
            DeviceQueue::Packed(q) => q.dequeue_burst(cache, out, max, max_pkt, port, sink),
        }
    }

    /// See [`SplitDevice::enqueue_burst`].
    #[inline]
    pub fn enqueue_burst(
        &mut self,
        cache: &mut MbufCache,
        pkts: &mut Burst,
        sink: &impl ErrorSink,
    ) -> BurstResult {
        match self {
            DeviceQueue::Split(q) => q.enqueue_burst(cache, pkts, sink),
            DeviceQueue::Packed(q) => q.enqueue_burst(cache, pkts, sink),
        }
    }
}
