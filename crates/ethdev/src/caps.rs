//! Typed port capabilities: virtio feature bits and offload capabilities.
//!
//! The offload flags carry DPDK's names and bit values (`RTE_ETH_RX_OFFLOAD_*`,
//! `RTE_ETH_TX_OFFLOAD_*`), so masks such as testpmd's `--tx-offloads=0x8000` mean the same
//! here. A port declares only what it really does.

use bitflags::bitflags;

bitflags! {
    /// Virtio feature bits (virtio 1.2, section 6 and 5.1.3), as negotiated with or offered to
    /// the peer. Bits without a name here are kept (see [`VirtioFeatures::from_bits_retain`]).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct VirtioFeatures: u64 {
        /// `VIRTIO_NET_F_CSUM`: the device handles packets with partial checksum.
        const NET_CSUM = 1 << 0;
        /// `VIRTIO_NET_F_GUEST_CSUM`: the driver handles packets with partial checksum.
        const NET_GUEST_CSUM = 1 << 1;
        /// `VIRTIO_NET_F_MTU`: the device reports a maximum MTU.
        const NET_MTU = 1 << 3;
        /// `VIRTIO_NET_F_MAC`: the device has a MAC address.
        const NET_MAC = 1 << 5;
        /// `VIRTIO_NET_F_GUEST_TSO4`: the driver can receive TSOv4.
        const NET_GUEST_TSO4 = 1 << 7;
        /// `VIRTIO_NET_F_GUEST_TSO6`: the driver can receive TSOv6.
        const NET_GUEST_TSO6 = 1 << 8;
        /// `VIRTIO_NET_F_HOST_TSO4`: the device can receive TSOv4.
        const NET_HOST_TSO4 = 1 << 11;
        /// `VIRTIO_NET_F_HOST_TSO6`: the device can receive TSOv6.
        const NET_HOST_TSO6 = 1 << 12;
        /// `VIRTIO_NET_F_MRG_RXBUF`: the driver can merge receive buffers.
        const NET_MRG_RXBUF = 1 << 15;
        /// `VIRTIO_NET_F_STATUS`: the configuration status field is available.
        const NET_STATUS = 1 << 16;
        /// `VIRTIO_NET_F_CTRL_VQ`: a control channel is available.
        const NET_CTRL_VQ = 1 << 17;
        /// `VIRTIO_NET_F_MQ`: multiqueue with automatic receive steering.
        const NET_MQ = 1 << 22;
        /// `VIRTIO_F_NOTIFY_ON_EMPTY` (legacy).
        const NOTIFY_ON_EMPTY = 1 << 24;
        /// `VIRTIO_F_ANY_LAYOUT` (legacy).
        const ANY_LAYOUT = 1 << 27;
        /// `VIRTIO_F_RING_INDIRECT_DESC`: indirect descriptors.
        const RING_INDIRECT_DESC = 1 << 28;
        /// `VIRTIO_F_RING_EVENT_IDX`: used/avail event index notification suppression.
        const RING_EVENT_IDX = 1 << 29;
        /// `VHOST_USER_F_PROTOCOL_FEATURES`: vhost-user protocol features are negotiated.
        const PROTOCOL_FEATURES = 1 << 30;
        /// `VIRTIO_F_VERSION_1`: virtio 1.0 or later (modern device).
        const VERSION_1 = 1 << 32;
        /// `VIRTIO_F_ACCESS_PLATFORM`: the device goes through an IOMMU.
        const ACCESS_PLATFORM = 1 << 33;
        /// `VIRTIO_F_RING_PACKED`: the packed virtqueue layout.
        const RING_PACKED = 1 << 34;
        /// `VIRTIO_F_IN_ORDER`: buffers are used in the order they were made available.
        const IN_ORDER = 1 << 35;
        /// `VIRTIO_F_ORDER_PLATFORM`: platform memory ordering.
        const ORDER_PLATFORM = 1 << 36;
        /// `VIRTIO_F_NOTIFICATION_DATA`: extra data in driver notifications.
        const NOTIFICATION_DATA = 1 << 38;
    }
}

bitflags! {
    /// Receive offload capabilities, with DPDK's names and bits (`RTE_ETH_RX_OFFLOAD_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct RxOffloads: u64 {
        /// Strips the VLAN tag.
        const VLAN_STRIP = 1 << 0;
        /// Checks IPv4 header checksums.
        const IPV4_CKSUM = 1 << 1;
        /// Checks UDP checksums.
        const UDP_CKSUM = 1 << 2;
        /// Checks TCP checksums.
        const TCP_CKSUM = 1 << 3;
        /// Large receive offload: coalesces TCP segments.
        const TCP_LRO = 1 << 4;
        /// Receives frames larger than one mbuf as mbuf chains.
        const SCATTER = 1 << 13;
    }
}

bitflags! {
    /// Transmit offload capabilities, with DPDK's names and bits (`RTE_ETH_TX_OFFLOAD_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct TxOffloads: u64 {
        /// Inserts a VLAN tag.
        const VLAN_INSERT = 1 << 0;
        /// Computes IPv4 header checksums.
        const IPV4_CKSUM = 1 << 1;
        /// Computes UDP checksums.
        const UDP_CKSUM = 1 << 2;
        /// Computes TCP checksums.
        const TCP_CKSUM = 1 << 3;
        /// TCP segmentation offload.
        const TCP_TSO = 1 << 5;
        /// UDP segmentation offload.
        const UDP_TSO = 1 << 6;
        /// Transmits mbuf chains (packets of several segments).
        const MULTI_SEGS = 1 << 15;
    }
}

/// A port's offload capabilities, receive and transmit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Offloads {
    /// What the port can do on receive.
    pub rx: RxOffloads,
    /// What the port can do on transmit.
    pub tx: TxOffloads,
}

/// Writes the names of the set flags separated by spaces, then any unnamed bits in hex, or
/// `none` when no bit is set.
fn write_names<F: bitflags::Flags<Bits = u64>>(
    f: &mut std::fmt::Formatter<'_>,
    flags: &F,
) -> std::fmt::Result {
    let mut first = true;
    let mut sep = |f: &mut std::fmt::Formatter<'_>| {
        let s = if first { "" } else { " " };
        first = false;
        f.write_str(s)
    };
    for (name, _) in flags.iter_names() {
        sep(f)?;
        f.write_str(name)?;
    }
    let named = flags.iter_names().fold(0u64, |acc, (_, v)| acc | v.bits());
    let rest = flags.bits() & !named;
    if rest != 0 {
        sep(f)?;
        write!(f, "{rest:#x}")?;
    }
    if first {
        f.write_str("none")?;
    }
    Ok(())
}

impl std::fmt::Display for VirtioFeatures {
    /// `VERSION_1 NET_MRG_RXBUF ... (0x...)`: the names, then the whole mask in hex.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_names(f, self)?;
        write!(f, " ({:#x})", self.bits())
    }
}

impl std::fmt::Display for RxOffloads {
    /// `SCATTER`, or `none`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_names(f, self)
    }
}

impl std::fmt::Display for TxOffloads {
    /// `MULTI_SEGS`, or `none`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_names(f, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_and_unknown_bits() {
        let f = VirtioFeatures::VERSION_1 | VirtioFeatures::NET_MRG_RXBUF;
        assert_eq!(f.to_string(), "NET_MRG_RXBUF VERSION_1 (0x100008000)");
        let f = VirtioFeatures::from_bits_retain((1 << 32) | (1 << 50));
        assert_eq!(f.to_string(), "VERSION_1 0x4000000000000 (0x4000100000000)");
        assert_eq!(VirtioFeatures::empty().to_string(), "none (0x0)");
        assert_eq!(RxOffloads::empty().to_string(), "none");
        assert_eq!(
            (TxOffloads::MULTI_SEGS | TxOffloads::TCP_TSO).to_string(),
            "TCP_TSO MULTI_SEGS"
        );
        // DPDK's bit values.
        assert_eq!(TxOffloads::MULTI_SEGS.bits(), 0x8000);
        assert_eq!(RxOffloads::SCATTER.bits(), 0x2000);
    }
}
