//! Ethernet framing: ethertypes and the offset of the L3 header behind VLAN tags.

/// Length of an untagged Ethernet header (destination, source, ethertype).
pub const ETH_HLEN: usize = 14;
/// Length of one 802.1Q / 802.1ad tag (TPID and TCI).
pub const VLAN_HLEN: usize = 4;
/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethertype of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// TPID of an 802.1Q (customer) VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// TPID of an 802.1ad (service, QinQ outer) VLAN tag.
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
/// The broadcast MAC address.
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// Where the L3 header of `frame` starts and its ethertype, skipping up to two VLAN tags
/// (802.1Q `0x8100` or 802.1ad `0x88a8`): `(14, type)` untagged, `(18, type)` with one tag,
/// `(22, type)` with two. `None` when the frame ends inside the Ethernet header or its tags,
/// or has more than two tags.
pub fn l3_offset(frame: &[u8]) -> Option<(usize, u16)> {
    let mut off = ETH_HLEN - 2;
    for _ in 0..3 {
        let b = frame.get(off..off + 2)?;
        let ty = u16::from_be_bytes([b[0], b[1]]);
        if ty != ETHERTYPE_VLAN && ty != ETHERTYPE_QINQ {
            return Some((off + 2, ty));
        }
        off += VLAN_HLEN;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        let mut f = vec![0u8; 30];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        assert_eq!(l3_offset(&f), Some((14, ETHERTYPE_IPV4)));
        f[12..14].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        f[16..18].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        assert_eq!(l3_offset(&f), Some((18, ETHERTYPE_ARP)));
        f[12..14].copy_from_slice(&ETHERTYPE_QINQ.to_be_bytes());
        f[16..18].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        f[20..22].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        assert_eq!(l3_offset(&f), Some((22, ETHERTYPE_IPV4)));
        f[20..22].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        assert_eq!(l3_offset(&f), None);
        assert_eq!(l3_offset(&f[..13]), None);
        assert_eq!(l3_offset(&f[..17]), None);
    }
}
