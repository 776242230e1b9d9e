//! Ethernet and 802.1Q header parsing and tag edits, on the first segment of an mbuf.
//!
//! Every frame a peer sends is parsed here before the switch trusts any field of it: a frame
//! shorter than an Ethernet header, one whose tag is cut short, or one with a second tag (QinQ
//! or a stacked 802.1Q tag, which this switch does not carry) is rejected with a [`FrameError`].

use ferrovia_memory::{LcoreCaches, Mbuf, Mempool};

/// Length of an untagged Ethernet header.
pub const ETH_HLEN: usize = 14;
/// Length of an 802.1Q tag.
pub const VLAN_HLEN: usize = 4;
/// EtherType of an 802.1Q tag.
pub const ETH_P_8021Q: u16 = 0x8100;
/// EtherType of an 802.1ad (QinQ service) tag.
pub const ETH_P_8021AD: u16 = 0x88a8;
/// EtherType of IPv4.
pub const ETH_P_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// Smallest frame accepted (an Ethernet header; shorter frames are runts).
pub const MIN_FRAME: usize = ETH_HLEN;

/// Why a frame was rejected before switching.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than an Ethernet header (or than its 802.1Q tag).
    #[error("runt frame: shorter than its Ethernet header")]
    Runt,
    /// A second tag, or an 802.1ad outer tag: stacked VLANs are not carried.
    #[error("stacked VLAN tags (QinQ or double 802.1Q) are not carried")]
    StackedVlan,
    /// The source address is a multicast or broadcast address.
    #[error("multicast source MAC address")]
    MulticastSource,
}

/// What the switch needs from a frame's L2 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2Header {
    /// Destination MAC address.
    pub dst: [u8; 6],
    /// Source MAC address.
    pub src: [u8; 6],
    /// The 802.1Q VLAN id of the tag, if the frame carries one (VID 0 is a priority tag).
    pub vid: Option<u16>,
    /// The EtherType after any tag.
    pub ethertype: u16,
    /// Offset of the L3 header (14, or 18 when tagged).
    pub l3_offset: usize,
}

impl L2Header {
    /// True when the destination is a group (multicast or broadcast) address.
    #[inline]
    pub fn dst_is_group(&self) -> bool {
        self.dst[0] & 1 != 0
    }
}

/// Parses the L2 header of `frame` (the first segment's bytes).
#[inline]
pub fn parse(frame: &[u8]) -> Result<L2Header, FrameError> {
    if frame.len() < ETH_HLEN {
        return Err(FrameError::Runt);
    }
    let dst: [u8; 6] = frame[0..6].try_into().expect("6 bytes");
    let src: [u8; 6] = frame[6..12].try_into().expect("6 bytes");
    if src[0] & 1 != 0 {
        return Err(FrameError::MulticastSource);
    }
    let outer = u16::from_be_bytes([frame[12], frame[13]]);
    match outer {
        ETH_P_8021AD => Err(FrameError::StackedVlan),
        ETH_P_8021Q => {
            if frame.len() < ETH_HLEN + VLAN_HLEN {
                return Err(FrameError::Runt);
            }
            let tci = u16::from_be_bytes([frame[14], frame[15]]);
            let inner = u16::from_be_bytes([frame[16], frame[17]]);
            if inner == ETH_P_8021Q || inner == ETH_P_8021AD {
                return Err(FrameError::StackedVlan);
            }
            Ok(L2Header {
                dst,
                src,
                vid: Some(tci & 0x0fff),
                ethertype: inner,
                l3_offset: ETH_HLEN + VLAN_HLEN,
            })
        }
        et => Ok(L2Header {
            dst,
            src,
            vid: None,
            ethertype: et,
            l3_offset: ETH_HLEN,
        }),
    }
}

/// Removes the 802.1Q tag of a tagged frame in place (the MAC addresses move 4 bytes on).
/// False, changing nothing, when the first segment does not hold a whole tagged header.
#[inline]
pub fn pop_vlan(m: &mut Mbuf) -> bool {
    if m.data_len() < ETH_HLEN + VLAN_HLEN {
        return false;
    }
    let d = m.data_mut();
    d.copy_within(0..12, VLAN_HLEN);
    m.adj(VLAN_HLEN)
}

/// Inserts an 802.1Q tag with `vid` (priority 0) after the MAC addresses. False, changing
/// nothing, when the mbuf has no headroom for it or is shorter than the MAC addresses.
#[inline]
pub fn push_vlan(m: &mut Mbuf, vid: u16) -> bool {
    if m.data_len() < 12 || m.headroom() < VLAN_HLEN {
        return false;
    }
    m.prepend(VLAN_HLEN).expect("headroom checked");
    let d = m.data_mut();
    d.copy_within(VLAN_HLEN..VLAN_HLEN + 12, 0);
    d[12..14].copy_from_slice(&ETH_P_8021Q.to_be_bytes());
    d[14..16].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
    true
}

/// Rewrites the VLAN id of a tagged frame, keeping its priority bits.
#[inline]
pub fn set_vid(m: &mut Mbuf, vid: u16) {
    let d = m.data_mut();
    let tci = u16::from_be_bytes([d[14], d[15]]);
    d[14..16].copy_from_slice(&((tci & 0xf000) | (vid & 0x0fff)).to_be_bytes());
}

/// Copies a frame (every segment) into a fresh single-segment mbuf chain from `pool`.
pub fn copy_mbuf(caches: &mut LcoreCaches, pool: &Mempool, m: &Mbuf) -> Option<Mbuf> {
    let cache = caches.for_pool(pool);
    let mut head: Option<Mbuf> = None;
    for seg in m.segments() {
        let mut c = cache.alloc()?;
        let dst = c.append(seg.len())?;
        dst.copy_from_slice(seg);
        match head.as_mut() {
            Some(h) => h.chain(c),
            None => head = Some(c),
        }
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tags: &[(u16, u16)], et: u16, payload: usize) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        for &(tpid, tci) in tags {
            f.extend(tpid.to_be_bytes());
            f.extend(tci.to_be_bytes());
        }
        f.extend(et.to_be_bytes());
        f.extend(std::iter::repeat_n(0xab, payload));
        f
    }

    #[test]
    fn parses_untagged_and_tagged() {
        let h = parse(&frame(&[], ETH_P_IPV4, 46)).unwrap();
        assert_eq!((h.vid, h.ethertype, h.l3_offset), (None, ETH_P_IPV4, 14));
        let h = parse(&frame(&[(ETH_P_8021Q, 0x2000 | 10)], ETH_P_ARP, 42)).unwrap();
        assert_eq!((h.vid, h.ethertype, h.l3_offset), (Some(10), ETH_P_ARP, 18));
        assert_eq!(h.src, [2, 0, 0, 0, 0, 1]);
        assert!(!h.dst_is_group());
    }

    #[test]
    fn rejects_runts_stacks_and_group_sources() {
        assert_eq!(parse(&[0; 13]), Err(FrameError::Runt));
        let t = frame(&[(ETH_P_8021Q, 10)], ETH_P_IPV4, 0);
        assert_eq!(parse(&t[..17]), Err(FrameError::Runt));
        let qinq = frame(&[(ETH_P_8021AD, 10), (ETH_P_8021Q, 20)], ETH_P_IPV4, 40);
        assert_eq!(parse(&qinq), Err(FrameError::StackedVlan));
        let dbl = frame(&[(ETH_P_8021Q, 10), (ETH_P_8021Q, 20)], ETH_P_IPV4, 40);
        assert_eq!(parse(&dbl), Err(FrameError::StackedVlan));
        let mut bad_src = frame(&[], ETH_P_IPV4, 46);
        bad_src[6] = 0x01;
        assert_eq!(parse(&bad_src), Err(FrameError::MulticastSource));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = parse(&bytes);
        }
    }
}
