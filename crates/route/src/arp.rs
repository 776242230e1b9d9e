//! ARP for Ethernet and IPv4 (RFC 826): parsing, request → reply in place, request and
//! gratuitous ARP frames.
//!
//! Functions that read a frame take `l3`, the offset of the ARP packet in it: 14 untagged, 18
//! behind one 802.1Q tag (see [`crate::eth::l3_offset`]). The Ethernet addresses are at
//! bytes 0..12 of the frame; a VLAN tag between them and `l3` is left as it is.

use std::net::Ipv4Addr;

use crate::eth::{BROADCAST, ETH_HLEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_VLAN, VLAN_HLEN};

/// A MAC address.
pub type Mac = [u8; 6];

/// The length of an Ethernet/IPv4 ARP packet.
pub const ARP_LEN: usize = 28;
/// The minimum Ethernet frame length without FCS; shorter frames are padded to it (64 with
/// an 802.1Q tag).
pub const MIN_FRAME_LEN: usize = 60;

/// The operation of an ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOp {
    /// 1: who has `target_ip`? tell `sender_ip`.
    Request,
    /// 2: `sender_ip` is at `sender_mac`.
    Reply,
}

/// An Ethernet/IPv4 ARP packet, copied out of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket {
    /// Request or reply.
    pub op: ArpOp,
    /// Sender hardware address.
    pub sender_mac: Mac,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address (zero in requests).
    pub target_mac: Mac,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

impl ArpPacket {
    /// Whether this is a gratuitous ARP (an announcement: sender and target address equal).
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip == self.target_ip
    }
}

/// Why bytes are not an Ethernet/IPv4 ARP packet, or a frame cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArpError {
    /// Fewer than 28 bytes after `l3`.
    #[error("ARP packet truncated: {have} bytes after the L3 offset, 28 needed")]
    Truncated {
        /// Bytes from `l3` to the end of the frame.
        have: usize,
    },
    /// The hardware type is not Ethernet (1).
    #[error("ARP hardware type {0} is not Ethernet (1)")]
    BadHardwareType(u16),
    /// The protocol type is not IPv4 (0x0800).
    #[error("ARP protocol type {0:#06x} is not IPv4 (0x0800)")]
    BadProtocolType(u16),
    /// The hardware address length is not 6.
    #[error("ARP hardware address length {0} is not 6")]
    BadHardwareLen(u8),
    /// The protocol address length is not 4.
    #[error("ARP protocol address length {0} is not 4")]
    BadProtocolLen(u8),
    /// The operation is neither request (1) nor reply (2).
    #[error("ARP operation {0} is neither request (1) nor reply (2)")]
    BadOp(u16),
    /// `l3` leaves no room for the Ethernet addresses and type (it must be at least 14).
    #[error("L3 offset {0} leaves no room for an Ethernet header (at least 14)")]
    BadL3Offset(usize),
    /// The buffer cannot hold the frame to build.
    #[error("buffer of {have} bytes cannot hold the {need}-byte ARP frame")]
    BufferTooSmall {
        /// The frame's length.
        need: usize,
        /// The buffer's length.
        have: usize,
    },
}

/// Parses the Ethernet/IPv4 ARP packet at offset `l3` of `frame`.
pub fn parse(frame: &[u8], l3: usize) -> Result<ArpPacket, ArpError> {
    let b = frame.get(l3..).unwrap_or_default();
    let Some(b) = b.get(..ARP_LEN) else {
        return Err(ArpError::Truncated { have: b.len() });
    };
    let htype = u16::from_be_bytes([b[0], b[1]]);
    if htype != 1 {
        return Err(ArpError::BadHardwareType(htype));
    }
    let ptype = u16::from_be_bytes([b[2], b[3]]);
    if ptype != ETHERTYPE_IPV4 {
        return Err(ArpError::BadProtocolType(ptype));
    }
    if b[4] != 6 {
        return Err(ArpError::BadHardwareLen(b[4]));
    }
    if b[5] != 4 {
        return Err(ArpError::BadProtocolLen(b[5]));
    }
    let op = match u16::from_be_bytes([b[6], b[7]]) {
        1 => ArpOp::Request,
        2 => ArpOp::Reply,
        n => return Err(ArpError::BadOp(n)),
    };
    let mac = |at: usize| -> Mac { b[at..at + 6].try_into().expect("6 bytes") };
    let ip = |at: usize| Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]);
    Ok(ArpPacket {
        op,
        sender_mac: mac(8),
        sender_ip: ip(14),
        target_mac: mac(18),
        target_ip: ip(24),
    })
}

/// If the frame holds an ARP request for an address `is_ours` accepts, turns it into the
/// reply in place and returns `Ok(true)`: Ethernet destination = the requester, source =
/// `our_mac`; ARP operation reply, sender = (`our_mac`, the address asked for), target = the
/// requester. The frame keeps its length and its VLAN tag; send it back where it came from.
///
/// Returns `Ok(false)`, with the frame unchanged, for a valid ARP packet that is not such a
/// request (a reply, a gratuitous ARP, a request for another address), and an error for a
/// malformed one.
pub fn reply_in_place(
    frame: &mut [u8],
    l3: usize,
    our_mac: Mac,
    is_ours: impl Fn(Ipv4Addr) -> bool,
) -> Result<bool, ArpError> {
    let p = parse(frame, l3)?;
    if p.op != ArpOp::Request || p.is_gratuitous() || !is_ours(p.target_ip) {
        return Ok(false);
    }
    if l3 < ETH_HLEN {
        return Err(ArpError::BadL3Offset(l3));
    }
    frame[0..6].copy_from_slice(&p.sender_mac);
    frame[6..12].copy_from_slice(&our_mac);
    let a = &mut frame[l3..l3 + ARP_LEN];
    a[6..8].copy_from_slice(&2u16.to_be_bytes());
    a[8..14].copy_from_slice(&our_mac);
    a[14..18].copy_from_slice(&p.target_ip.octets());
    a[18..24].copy_from_slice(&p.sender_mac);
    a[24..28].copy_from_slice(&p.sender_ip.octets());
    Ok(true)
}

/// Writes into `buf` a broadcast ARP request "who has `target_ip`? tell `our_ip`" from
/// `our_mac`, with an 802.1Q tag of TCI `vlan_tci` when given, padded with zeros to the
/// minimum frame length (60 bytes, 64 tagged). Returns the frame's length.
pub fn build_request(
    buf: &mut [u8],
    vlan_tci: Option<u16>,
    our_mac: Mac,
    our_ip: Ipv4Addr,
    target_ip: Ipv4Addr,
) -> Result<usize, ArpError> {
    build(buf, vlan_tci, our_mac, our_ip, target_ip)
}

/// Writes into `buf` a gratuitous ARP (an announcement, RFC 5227: a broadcast request whose
/// sender and target address are both `our_ip`), as [`build_request`] does. Sent when an
/// address comes up or moves, so that neighbours update their caches.
pub fn build_gratuitous(
    buf: &mut [u8],
    vlan_tci: Option<u16>,
    our_mac: Mac,
    our_ip: Ipv4Addr,
) -> Result<usize, ArpError> {
    build(buf, vlan_tci, our_mac, our_ip, our_ip)
}

fn build(
    buf: &mut [u8],
    vlan_tci: Option<u16>,
    our_mac: Mac,
    our_ip: Ipv4Addr,
    target_ip: Ipv4Addr,
) -> Result<usize, ArpError> {
    let tag = if vlan_tci.is_some() { VLAN_HLEN } else { 0 };
    let len = MIN_FRAME_LEN + tag;
    let have = buf.len();
    let Some(f) = buf.get_mut(..len) else {
        return Err(ArpError::BufferTooSmall { need: len, have });
    };
    f.fill(0);
    f[0..6].copy_from_slice(&BROADCAST);
    f[6..12].copy_from_slice(&our_mac);
    if let Some(tci) = vlan_tci {
        f[12..14].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        f[14..16].copy_from_slice(&tci.to_be_bytes());
    }
    let l3 = ETH_HLEN + tag;
    f[l3 - 2..l3].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    let a = &mut f[l3..l3 + ARP_LEN];
    a[0..2].copy_from_slice(&1u16.to_be_bytes());
    a[2..4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    a[4] = 6;
    a[5] = 4;
    a[6..8].copy_from_slice(&1u16.to_be_bytes());
    a[8..14].copy_from_slice(&our_mac);
    a[14..18].copy_from_slice(&our_ip.octets());
    // Target MAC stays zero.
    a[24..28].copy_from_slice(&target_ip.octets());
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eth::l3_offset;

    const US: Mac = [0x02, 0, 0, 0, 0, 1];
    const THEM: Mac = [0x02, 0, 0, 0, 0, 2];

    fn ip(a: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, a)
    }

    #[test]
    fn request_then_reply_untagged_and_tagged() {
        for tci in [None, Some(0x2064)] {
            let mut f = [0u8; 80];
            let n = build_request(&mut f, tci, THEM, ip(2), ip(1)).unwrap();
            assert_eq!(n, if tci.is_some() { 64 } else { 60 });
            let mut f = f[..n].to_vec();
            let (l3, ty) = l3_offset(&f).unwrap();
            assert_eq!(
                (l3, ty),
                (if tci.is_some() { 18 } else { 14 }, ETHERTYPE_ARP)
            );
            let p = parse(&f, l3).unwrap();
            assert_eq!(
                p,
                ArpPacket {
                    op: ArpOp::Request,
                    sender_mac: THEM,
                    sender_ip: ip(2),
                    target_mac: [0; 6],
                    target_ip: ip(1)
                }
            );
            assert_eq!(&f[..6], &BROADCAST);
            // Not ours: unchanged.
            let before = f.clone();
            assert_eq!(reply_in_place(&mut f, l3, US, |a| a == ip(9)), Ok(false));
            assert_eq!(f, before);
            assert_eq!(reply_in_place(&mut f, l3, US, |a| a == ip(1)), Ok(true));
            assert_eq!(&f[..6], &THEM);
            assert_eq!(&f[6..12], &US);
            assert_eq!(&f[12..l3], &before[12..l3], "tag and type kept");
            let r = parse(&f, l3).unwrap();
            assert_eq!(
                r,
                ArpPacket {
                    op: ArpOp::Reply,
                    sender_mac: US,
                    sender_ip: ip(1),
                    target_mac: THEM,
                    target_ip: ip(2)
                }
            );
            // A reply is not answered.
            assert_eq!(reply_in_place(&mut f, l3, US, |_| true), Ok(false));
        }
    }

    #[test]
    fn gratuitous() {
        let mut f = [0u8; 60];
        assert_eq!(build_gratuitous(&mut f, None, US, ip(1)), Ok(60));
        let p = parse(&f, 14).unwrap();
        assert!(p.is_gratuitous());
        assert_eq!(reply_in_place(&mut f, 14, THEM, |_| true), Ok(false));
        assert_eq!(
            build_gratuitous(&mut f, Some(1), US, ip(1)),
            Err(ArpError::BufferTooSmall { need: 64, have: 60 })
        );
    }

    #[test]
    fn each_failure_has_its_error() {
        let mut good = [0u8; 60];
        build_request(&mut good, None, THEM, ip(2), ip(1)).unwrap();
        assert_eq!(
            parse(&good[..41], 14),
            Err(ArpError::Truncated { have: 27 })
        );
        assert_eq!(parse(&good, 61), Err(ArpError::Truncated { have: 0 }));
        let with = |at: usize, v: u8| {
            let mut f = good;
            f[14 + at] = v;
            parse(&f, 14)
        };
        assert_eq!(with(1, 6), Err(ArpError::BadHardwareType(6)));
        assert_eq!(with(2, 0x86), Err(ArpError::BadProtocolType(0x8600)));
        assert_eq!(with(4, 8), Err(ArpError::BadHardwareLen(8)));
        assert_eq!(with(5, 16), Err(ArpError::BadProtocolLen(16)));
        assert_eq!(with(7, 3), Err(ArpError::BadOp(3)));
        // An ARP packet at offset 0 has no Ethernet header to rewrite.
        let mut f = good[14..].to_vec();
        assert_eq!(
            reply_in_place(&mut f, 0, US, |_| true),
            Err(ArpError::BadL3Offset(0))
        );
    }
}
