//! Virtqueues for virtio-net, written for the data path.
//!
//! * [`layout`]: the split ring's shared layout, feature bits and the virtio-net header.
//! * [`split`]: raw, bounds-safe access to a split ring laid in memory (the only place that
//!   dereferences ring pointers).
//! * [`guest_mem`]: a peer's memory table, mapped, with checked address translation.
//! * [`driver`]: the driver side (used by virtio-user): posts buffers, reaps used ones.
//! * [`device`]: the device side (used by the vhost backend): walks descriptor chains the peer
//!   wrote and copies packets in and out of guest memory.
//! * [`net_hdr`]: virtio-net headers written only where they change.
//! * [`quiesce`]: the lock-free handshake that lets the control thread change what a polling
//!   thread sees without taking a lock per burst.
//!
//! Every index, address, length and chain coming from the peer is validated; a bad one is
//! reported through an [`ErrorSink`] and never causes a panic, a hang or an out-of-bounds
//! access.

pub mod device;
pub mod device_packed;
pub mod driver;
pub mod driver_any;
pub mod driver_packed;
pub mod error;
pub mod guest_mem;
pub mod layout;
pub mod net_hdr;
pub mod packed;
mod prefetch;
pub mod quiesce;
pub mod split;

pub use error::{ErrorSink, NoSink, RingError};
