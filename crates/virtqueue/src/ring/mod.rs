//! Raw rings in memory, both layouts, and the vring a device poller runs on.
//!
//! * [`split`]: raw, bounds-safe access to a split ring (virtio 1.0).
//! * [`packed`]: raw, bounds-safe access to a packed ring (virtio 1.1).
//!
//! These two are the only modules that dereference ring pointers. Both the driver sides
//! ([`crate::split::driver`], [`crate::packed::driver`]) and the device sides build on them;
//! [`ActiveVring`] names both layouts, so it lives here, below every queue.

use std::fs::File;
use std::sync::Arc;

pub use crate::error::RingAddrError;
use crate::guest_mem::GuestMemory;
use crate::layout::{VRING_USED_F_NO_NOTIFY, bit, feature};

pub mod packed;
pub mod split;

use packed::{EVENT_FLAGS_DISABLE, PackedRing};
use split::SplitRing;

/// Which ring layout a vring uses, with its pointers.
#[derive(Debug, Clone, Copy)]
pub enum RingView {
    /// Split ring (virtio 1.0).
    Split(SplitRing),
    /// Packed ring (virtio 1.1).
    Packed(PackedRing),
}

/// A vring as configured by the control plane, ready for a poller.
#[derive(Debug)]
pub struct ActiveVring {
    /// Ring pointers (into `mem`).
    pub ring: RingView,
    /// The memory the ring and its buffers live in; kept alive while in use.
    pub mem: Arc<GuestMemory>,
    /// Negotiated virtio features.
    pub features: u64,
    /// Where to resume: the avail index to process next (also the used index).
    pub base: u16,
    /// Eventfd to signal the driver, if any.
    pub call: Option<Arc<File>>,
}

impl ActiveVring {
    /// Prepares the ring for polling: tells the driver not to kick us (we poll).
    pub fn init_notifications(&self) {
        match self.ring {
            RingView::Split(r) => {
                if self.features & bit(feature::RING_F_EVENT_IDX) == 0 {
                    r.set_used_flags(VRING_USED_F_NO_NOTIFY);
                } else {
                    r.set_avail_event(self.base.wrapping_add(0x8000));
                }
            }
            RingView::Packed(r) => r.set_device_event(0, EVENT_FLAGS_DISABLE),
        }
    }

    /// The split ring view; panics for packed rings (callers dispatch on [`RingView`] first).
    pub(crate) fn split(&self) -> SplitRing {
        match self.ring {
            RingView::Split(r) => r,
            RingView::Packed(_) => unreachable!("split queue built on a packed ring"),
        }
    }
}
