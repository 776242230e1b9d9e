//! Shared layouts of the split virtqueue and virtio-net, feature bits, and the layout helpers
//! both driver sides use for their queue areas.

/// Descriptor continues via `next`.
pub const VRING_DESC_F_NEXT: u16 = 1;
/// Buffer is device-writable.
pub const VRING_DESC_F_WRITE: u16 = 2;
/// Buffer holds an indirect descriptor table.
pub const VRING_DESC_F_INDIRECT: u16 = 4;
/// Driver: do not interrupt me (avail.flags).
pub const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Device: do not kick me (used.flags).
pub const VRING_USED_F_NO_NOTIFY: u16 = 1;

/// Feature bit numbers used here.
pub mod feature {
    /// The device handles packets with a partial checksum (driver → device headers).
    pub const NET_F_CSUM: u32 = 0;
    /// The driver handles packets with a partial checksum (device → driver headers).
    pub const NET_F_GUEST_CSUM: u32 = 1;
    /// The driver takes TCPv4 segments coalesced into large packets.
    pub const NET_F_GUEST_TSO4: u32 = 7;
    /// The driver takes TCPv6 segments coalesced into large packets.
    pub const NET_F_GUEST_TSO6: u32 = 8;
    /// The device segments large TCPv4 packets.
    pub const NET_F_HOST_TSO4: u32 = 11;
    /// The device segments large TCPv6 packets.
    pub const NET_F_HOST_TSO6: u32 = 12;
    /// Device has a MAC address in config space.
    pub const NET_F_MAC: u32 = 5;
    /// Mergeable receive buffers.
    pub const NET_F_MRG_RXBUF: u32 = 15;
    /// Device status in config space.
    pub const NET_F_STATUS: u32 = 16;
    /// Control virtqueue.
    pub const NET_F_CTRL_VQ: u32 = 17;
    /// Multiqueue.
    pub const NET_F_MQ: u32 = 22;
    /// Indirect descriptors.
    pub const RING_F_INDIRECT_DESC: u32 = 28;
    /// used_event / avail_event.
    pub const RING_F_EVENT_IDX: u32 = 29;
    /// vhost-user protocol features (bit 30).
    pub const VHOST_USER_F_PROTOCOL_FEATURES: u32 = 30;
    /// Virtio 1.0.
    pub const F_VERSION_1: u32 = 32;
    /// Packed ring.
    pub const F_RING_PACKED: u32 = 34;
    /// Buffers are used in the order they are made available.
    pub const F_IN_ORDER: u32 = 35;
}

/// Bit mask for a feature number.
pub const fn bit(f: u32) -> u64 {
    1u64 << f
}

/// Size of a split descriptor.
pub const DESC_SIZE: usize = 16;

/// One split-ring descriptor as laid out in shared memory.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Desc {
    /// Buffer address (peer address space).
    pub addr: u64,
    /// Buffer length.
    pub len: u32,
    /// `VRING_DESC_F_*`.
    pub flags: u16,
    /// Next descriptor when `NEXT` is set.
    pub next: u16,
}

/// One used-ring element.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsedElem {
    /// Head id of the chain.
    pub id: u32,
    /// Bytes written by the device.
    pub len: u32,
}

/// Bytes of the descriptor table for `n` entries.
pub const fn desc_table_size(n: u16) -> usize {
    DESC_SIZE * n as usize
}
/// Bytes of the avail ring (flags, idx, ring, used_event).
pub const fn avail_ring_size(n: u16) -> usize {
    6 + 2 * n as usize
}
/// Bytes of the used ring (flags, idx, ring, avail_event).
pub const fn used_ring_size(n: u16) -> usize {
    6 + 8 * n as usize
}

/// Largest ring size virtio allows.
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// True when `n` is a valid split ring size (a power of two, 1..=32768).
pub const fn valid_queue_size(n: u32) -> bool {
    n != 0 && n <= MAX_QUEUE_SIZE as u32 && n.is_power_of_two()
}

/// The virtio event-index test: should the other side be notified, given that the index moved
/// from `old` to `new` and the other side asked for an event at `event`?
#[inline]
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// Length of the virtio-net header for the negotiated features: 12 bytes with VERSION_1 or
/// MRG_RXBUF (it carries `num_buffers`), 10 bytes otherwise.
pub const fn net_hdr_len(features: u64) -> usize {
    if features & (bit(feature::F_VERSION_1) | bit(feature::NET_F_MRG_RXBUF)) != 0 {
        12
    } else {
        10
    }
}

/// Offset of `num_buffers` in the 12-byte header.
pub const NET_HDR_NUM_BUFFERS_OFF: usize = 10;

/// Bytes of one header cell in a driver queue's area (split or packed): where a transmitted
/// packet's virtio-net header goes when its mbuf has no headroom for it.
pub(crate) const HDR_CELL: usize = 16;

/// `v` rounded up to a multiple of `a` (laying out driver queue areas).
pub(crate) fn align(v: usize, a: usize) -> usize {
    v.div_ceil(a) * a
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_and_validity() {
        assert_eq!(std::mem::size_of::<Desc>(), 16);
        assert_eq!(std::mem::size_of::<UsedElem>(), 8);
        assert!(valid_queue_size(256));
        assert!(!valid_queue_size(0));
        assert!(!valid_queue_size(255));
        assert!(!valid_queue_size(65536));
    }

    proptest! {
        /// need_event fires exactly when `event` lies in the half-open window (old, new].
        #[test]
        fn need_event_matches_window(old in any::<u16>(), step in 0u16..1024, off in 0u16..2048) {
            let new = old.wrapping_add(step);
            let event = old.wrapping_add(off);
            let in_window = off < step; // event in [old, new)
            prop_assert_eq!(need_event(event, new, old), in_window);
        }
    }
}
