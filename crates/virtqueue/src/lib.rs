//! Virtqueues for virtio-net, written for the data path.
//!
//! Layered bottom-up; no module uses one above it, and [`split`] and [`packed`] never use each
//! other (scripts/check-module-cycles.py checks it):
//!
//! * Shared:
//!   * [`error`]: the crate's errors: those counted on the data path ([`RingError`]) and those
//!     the control path returns ([`MemError`], [`QueueError`], [`RingAddrError`]).
//!   * [`layout`]: the split ring's shared layout, feature bits and the virtio-net header.
//!   * [`ring`]: raw, bounds-safe access to a ring of either layout laid in memory (the only
//!     place that dereferences ring pointers), and the [`ActiveVring`](ring::ActiveVring) a
//!     device poller runs on.
//!   * [`peer_fault`]: the SIGBUS handler and lock-free range table that survive a peer
//!     truncating memory it shared with us.
//!   * [`guest_mem`]: a peer's memory table, mapped, with checked address translation.
//!   * [`chain`]: what both device sides share: validated guest buffers of a chain, copies
//!     between them and mbufs, and the multi-buffer write step.
//!   * [`options`]: the negotiated options both driver sides follow.
//!   * [`notify`]: how a driver queue kicks its device (an eventfd, or a virtio-pci
//!     notification register).
//!   * [`net_hdr`]: virtio-net headers written only where they change.
//!   * [`quiesce`]: the lock-free handshake that lets the control thread change what a polling
//!     thread sees without taking a lock per burst.
//! * Per layout, each with a driver side (used by virtio-user: posts buffers, reaps used ones)
//!   and a device side (used by the vhost backend: walks descriptor chains the peer wrote and
//!   copies packets in and out of guest memory):
//!   * [`split`] holds [`SplitDriver`](split::SplitDriver) and
//!     [`SplitDevice`](split::SplitDevice).
//!   * [`packed`] holds [`PackedDriver`](packed::PackedDriver) and
//!     [`PackedDevice`](packed::PackedDevice).
//! * Dispatch over both layouts:
//!   * [`driver`] holds [`DriverQueue`](driver::DriverQueue).
//!   * [`device`] holds [`DeviceQueue`](device::DeviceQueue).
//!
//! Every index, address, length and chain coming from the peer is validated; a bad one is
//! reported through an [`ErrorSink`] and never causes a panic, a hang or an out-of-bounds
//! access.

pub mod call_fd;
pub mod chain;
pub mod device;
pub mod driver;
pub mod error;
pub mod guest_mem;
pub mod layout;
pub mod net_hdr;
pub mod notify;
pub mod options;
pub mod packed;
pub mod peer_fault;
mod prefetch;
pub mod quiesce;
pub mod ring;
pub mod split;

pub use error::{ErrorSink, MemError, NoSink, QueueError, RingAddrError, RingError};
