//! The driver side of a virtio-net queue (what virtio-user runs), either layout: the dispatch
//! over [`SplitDriver`] and [`PackedDriver`], chosen at start from the negotiated features.

use std::fs::File;

use ferrovia_memory::{Burst, MbufCache};

use crate::error::{ErrorSink, QueueError};
use crate::notify::Kick;
use crate::packed::{PackedDriver, PackedLayout, Pos};
use crate::split::{SplitDriver, SplitLayout, resume_base};

pub use crate::options::DriverOptions;

/// Ring addresses to hand to the device (our virtual addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingAddrs {
    /// Descriptor table / ring.
    pub desc: u64,
    /// Avail ring (split) or driver event area (packed).
    pub avail: u64,
    /// Used ring (split) or device event area (packed).
    pub used: u64,
}

/// A split or packed driver queue.
#[derive(Debug)]
pub enum DriverQueue {
    /// Split ring.
    Split(SplitDriver),
    /// Packed ring.
    Packed(PackedDriver),
}

macro_rules! each {
    ($self:ident, $q:ident => $e:expr) => {
        match $self {
            DriverQueue::Split($q) => $e,
            DriverQueue::Packed($q) => $e,
        }
    };
}

impl DriverQueue {
    /// Bytes of memory one queue needs.
    pub fn area_size(size: u16, packed: bool) -> usize {
        if packed {
            PackedLayout::new(size).total
        } else {
            SplitLayout::new(size).total
        }
    }

    /// The addresses of a queue laid at `base`.
    pub fn addrs(base: u64, size: u16, packed: bool) -> RingAddrs {
        if packed {
            let l = PackedLayout::new(size);
            RingAddrs {
                desc: base + l.desc as u64,
                avail: base + l.driver_event as u64,
                used: base + l.device_event as u64,
            }
        } else {
            let l = SplitLayout::new(size);
            RingAddrs {
                desc: base + l.desc as u64,
                avail: base + l.avail as u64,
                used: base + l.used as u64,
            }
        }
    }

    /// Creates a queue in `area`.
    ///
    /// # Safety
    /// As [`SplitDriver::new`] / [`PackedDriver::new`]: `area` holds
    /// [`Self::area_size`] bytes, 4096-aligned, mapped for the queue's life.
    pub unsafe fn new(
        area: *mut u8,
        size: u16,
        packed: bool,
        opts: DriverOptions,
    ) -> Result<Self, QueueError> {
        // SAFETY: forwarded from the caller.
        unsafe {
            if packed {
                PackedDriver::new(area, size, opts).map(DriverQueue::Packed)
            } else {
                SplitDriver::new(area, size, opts).map(DriverQueue::Split)
            }
        }
    }

    /// Tx: posts packets (see [`SplitDriver::transmit`]).
    #[inline]
    pub fn transmit(
        &mut self,
        cache: &mut MbufCache,
        pkts: &mut Burst,
        sink: &impl ErrorSink,
    ) -> (usize, usize) {
        each!(self, q => q.transmit(cache, pkts, sink))
    }

    /// Rx: receives packets (see [`SplitDriver::receive`]).
    #[inline]
    pub fn receive(
        &mut self,
        cache: &mut MbufCache,
        out: &mut Burst,
        max: usize,
        port: u16,
        sink: &impl ErrorSink,
    ) -> (usize, usize) {
        each!(self, q => q.receive(cache, out, max, port, sink))
    }

    /// Tx: frees completed transmissions.
    pub fn reclaim(&mut self, cache: &mut MbufCache, sink: &impl ErrorSink) {
        each!(self, q => q.reclaim(cache, sink))
    }

    /// Rx: posts fresh buffers.
    pub fn refill(&mut self, cache: &mut MbufCache, sink: &impl ErrorSink) {
        each!(self, q => q.refill(cache, sink))
    }

    /// Sizes Rx chains for frames of `max_frame` bytes without mergeable buffers.
    pub fn set_rx_chain_for(&mut self, max_frame: usize, seg_room: usize) {
        each!(self, q => q.set_rx_chain_for(max_frame, seg_room))
    }

    /// Follows a new connection's options and kick fd.
    pub fn on_reconnect(&mut self, opts: DriverOptions, kick: Option<File>) {
        each!(self, q => q.on_reconnect(opts, kick))
    }

    /// For a device that does not see our virtual addresses (virtio-pci): kicks go to `kick`,
    /// and descriptors carry mbuf addresses plus `mbuf_iova` and header-cell addresses plus
    /// `area_iova` (see [`SplitDriver::set_iova`]). Split rings only: false (nothing set) for
    /// a packed queue. Set before any buffer is posted.
    pub fn set_device_access(&mut self, kick: Kick, mbuf_iova: u64, area_iova: u64) -> bool {
        match self {
            DriverQueue::Split(q) => {
                q.set_iova(mbuf_iova, area_iova);
                q.set_notify(Some(kick));
                true
            }
            DriverQueue::Packed(_) => false,
        }
    }

    /// Frees every mbuf still posted.
    pub fn drain(&mut self, cache: &mut MbufCache) {
        each!(self, q => q.drain(cache))
    }

    /// Descriptors posted now.
    pub fn in_flight(&self) -> u16 {
        each!(self, q => q.in_flight())
    }

    /// Before (re)connecting a device: returns the vhost-user base to send. A split ring
    /// resumes where the old device stopped; a packed ring is reset (in-flight buffers freed;
    /// an Rx ring is refilled with `refill`) as DPDK does, because where an old packed device
    /// stopped cannot be told from ring memory alone. Must run while no burst is in progress.
    pub fn prepare_connect(
        &mut self,
        cache: &mut MbufCache,
        refill: bool,
        sink: &impl ErrorSink,
    ) -> u16 {
        match self {
            DriverQueue::Split(q) => {
                if refill {
                    q.roll_back_incomplete_rx();
                }
                resume_base(&q.ring(), q.last_used(), q.avail_idx())
            }
            DriverQueue::Packed(q) => {
                if q.in_flight() > 0 || refill {
                    q.reset(cache);
                    if refill {
                        q.refill(cache, sink);
                    }
                }
                Pos::START.encode()
            }
        }
    }
}
