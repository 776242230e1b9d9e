//! Packed virtqueues (virtio 1.1, `VIRTIO_F_RING_PACKED`): both sides.
//!
//! * [`driver`]: [`PackedDriver`], the driver side (virtio-user with `packed_vq=1`).
//! * [`device`]: [`PackedDevice`], the device side (the vhost backend).
//!
//! Both build on the raw ring in [`crate::ring::packed`] (re-exported here) and on the shared
//! modules; nothing here uses the split side.

pub mod device;
pub mod driver;

pub use crate::ring::packed::{
    DESC_F_AVAIL, DESC_F_USED, EVENT_AREA_SIZE, EVENT_FLAGS_DESC, EVENT_FLAGS_DISABLE,
    EVENT_FLAGS_ENABLE, PackedDesc, PackedRing, Pos, avail_flags, is_avail, is_used,
    packed_ring_size, used_flags,
};
pub use device::PackedDevice;
pub use driver::{PackedDriver, PackedLayout};
