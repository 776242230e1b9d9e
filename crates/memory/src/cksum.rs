//! Internet checksums (RFC 1071) and the header lengths that checksum and segmentation
//! offloads need, on byte slices and mbuf chains.
//!
//! Everything here reads packet bytes, which may come from a peer: every offset is checked
//! against the data it indexes, and a packet too short or of a kind not handled gives `None`
//! or `false`, never a panic.

use crate::mbuf::{Mbuf, OL_TX_IP_CKSUM, OL_TX_L4_MASK, OL_TX_OFFLOAD_MASK, OL_TX_TCP_SEG};

/// EtherType of IPv4.
pub const ETH_P_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// EtherType of an 802.1Q VLAN tag.
pub const ETH_P_VLAN: u16 = 0x8100;
/// EtherType of an 802.1ad (QinQ) service tag.
pub const ETH_P_QINQ: u16 = 0x88a8;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// Offset of the checksum field in a TCP header.
pub const TCP_CSUM_OFF: usize = 16;
/// Offset of the checksum field in a UDP header.
pub const UDP_CSUM_OFF: usize = 6;

/// Ones'-complement sum of `data` as big-endian 16-bit words (an odd last byte is padded
/// with zero), not folded.
pub fn raw_sum(data: &[u8]) -> u64 {
    let mut sum = 0u64;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        sum += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let mut rest = words.remainder().chunks_exact(2);
    for w in &mut rest {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = rest.remainder() {
        sum += u64::from(*b) << 8;
    }
    sum
}

/// Folds a sum to 16 bits (not complemented).
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Ones'-complement sum of `len` bytes of the chain `m` from byte `off`, or None when the
/// chain holds fewer bytes.
pub fn mbuf_sum(m: &Mbuf, off: usize, len: usize) -> Option<u64> {
    let end = off.checked_add(len)?;
    if end > m.pkt_len() {
        return None;
    }
    let mut pos = 0usize;
    let mut sum = 0u64;
    // Bytes summed so far: a piece starting at an odd count is summed byte-swapped.
    let mut done = 0usize;
    for s in m.segments() {
        let (a, b) = (pos, pos + s.len());
        pos = b;
        let lo = a.max(off);
        let hi = b.min(end);
        if lo >= hi {
            if a >= end {
                break;
            }
            continue;
        }
        let part = u64::from(fold(raw_sum(&s[lo - a..hi - a])));
        sum += if done % 2 == 1 {
            u64::from((part as u16).swap_bytes())
        } else {
            part
        };
        done += hi - lo;
    }
    Some(sum)
}

/// The network layer of a parsed frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L3 {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

/// Header lengths and protocols of an Ethernet / IP / TCP-or-UDP frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layers {
    /// Ethernet header with its VLAN tags.
    pub l2_len: usize,
    /// IP header with (IPv6) its extension headers.
    pub l3_len: usize,
    /// TCP or UDP header (0 when the L4 protocol is neither).
    pub l4_len: usize,
    /// IPv4 or IPv6.
    pub l3: L3,
    /// IP protocol of the L4 header ([`IPPROTO_TCP`], [`IPPROTO_UDP`] or another).
    pub l4_proto: u8,
    /// The L3 packet is a fragment: its L4 header is not (all) in this frame.
    pub fragment: bool,
    /// Where the IP packet ends (its length field; Ethernet padding after it is not part
    /// of the L4 checksum).
    pub l3_end: usize,
}

impl Layers {
    /// Offset of the L4 header.
    pub fn l4_off(&self) -> usize {
        self.l2_len + self.l3_len
    }
    /// Offset of the L4 checksum field inside the L4 header (TCP or UDP).
    pub fn l4_csum_off(&self) -> Option<usize> {
        match self.l4_proto {
            IPPROTO_TCP => Some(TCP_CSUM_OFF),
            IPPROTO_UDP => Some(UDP_CSUM_OFF),
            _ => None,
        }
    }
}

/// Parses the Ethernet (up to two VLAN tags), IP and TCP/UDP headers at the start of
/// `frame`. None when the frame is not IP or is too short for the headers it announces.
pub fn parse(frame: &[u8]) -> Option<Layers> {
    parse_headers(frame, frame.len())
}

/// [`parse`] for a packet of `pkt_len` bytes whose first bytes are `frame` (the first
/// segment of a chain): the headers must lie in `frame`, the IP packet in `pkt_len`.
pub fn parse_headers(frame: &[u8], pkt_len: usize) -> Option<Layers> {
    let pkt_len = pkt_len.max(frame.len());
    let mut off = 12;
    let mut et = u16::from_be_bytes(frame.get(off..off + 2)?.try_into().ok()?);
    off += 2;
    for _ in 0..2 {
        if et == ETH_P_VLAN || et == ETH_P_QINQ {
            et = u16::from_be_bytes(frame.get(off + 2..off + 4)?.try_into().ok()?);
            off += 4;
        }
    }
    let l2_len = off;
    let (l3, l3_len, mut proto, fragment, l3_end) = match et {
        ETH_P_IPV4 => {
            let ip = frame.get(off..off + 20)?;
            if ip[0] >> 4 != 4 {
                return None;
            }
            let ihl = usize::from(ip[0] & 0xf) * 4;
            if ihl < 20 || frame.len() < off + ihl {
                return None;
            }
            let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            if total < ihl || pkt_len < off + total {
                return None;
            }
            (L3::Ipv4, ihl, ip[9], frag, off + total)
        }
        ETH_P_IPV6 => {
            let ip = frame.get(off..off + 40)?;
            if ip[0] >> 4 != 6 {
                return None;
            }
            let mut next = ip[6];
            let mut len = 40;
            let mut frag = false;
            // Hop-by-hop, routing and destination options headers are skipped; a fragment
            // header ends the walk.
            for _ in 0..8 {
                match next {
                    0 | 43 | 60 => {
                        let h = frame.get(off + len..off + len + 2)?;
                        next = h[0];
                        len += (usize::from(h[1]) + 1) * 8;
                    }
                    44 => {
                        let h = frame.get(off + len..off + len + 8)?;
                        next = h[0];
                        len += 8;
                        frag = true;
                        break;
                    }
                    _ => break,
                }
            }
            let total = 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            if frame.len() < off + len || total < len || pkt_len < off + total {
                return None;
            }
            (L3::Ipv6, len, next, frag, off + total)
        }
        _ => return None,
    };
    let l4 = off + l3_len;
    let l4_len = match proto {
        _ if fragment => 0,
        IPPROTO_TCP => {
            let doff = usize::from(*frame.get(l4 + 12)? >> 4) * 4;
            if doff < 20 || l3_end < l4 + doff {
                return None;
            }
            doff
        }
        IPPROTO_UDP => {
            if l3_end < l4 + 8 {
                return None;
            }
            8
        }
        _ => 0,
    };
    if fragment {
        proto = 0xff;
    }
    Some(Layers {
        l2_len,
        l3_len,
        l4_len,
        l3,
        l4_proto: proto,
        fragment,
        l3_end,
    })
}

/// The IPv4 header checksum of `hdr` (the field itself is taken as zero).
pub fn ipv4_hdr_cksum(hdr: &[u8]) -> u16 {
    let n = hdr.len();
    if n < 20 {
        return 0;
    }
    !fold(raw_sum(&hdr[..10]) + raw_sum(&hdr[12..]))
}

/// The pseudo-header sum (folded, not complemented) of the IP header `l3` for protocol
/// `proto` and `l4_len` bytes of L4 data, as DPDK's `rte_ipv4_phdr_cksum`/`rte_ipv6_phdr_cksum`
/// compute it: with TCP segmentation the length is left out (pass 0). None when `l3` is
/// too short for its addresses.
pub fn phdr_cksum(l3: &[u8], ip: L3, proto: u8, l4_len: usize) -> Option<u16> {
    let addrs = match ip {
        L3::Ipv4 => l3.get(12..20)?,
        L3::Ipv6 => l3.get(8..40)?,
    };
    let sum = raw_sum(addrs) + u64::from(proto) + l4_len as u64;
    Some(fold(sum))
}

/// True when the L4 (TCP or UDP) checksum of `frame`, parsed as `l`, is correct. A UDP/IPv4
/// checksum of zero (none) counts as correct.
pub fn l4_cksum_ok(frame: &[u8], l: &Layers) -> bool {
    let Some(off) = l.l4_csum_off() else {
        return true;
    };
    let Some(seg) = frame.get(l.l4_off()..l.l3_end) else {
        return false;
    };
    let Some(ip) = frame.get(l.l2_len..l.l4_off()) else {
        return false;
    };
    if l.l4_proto == IPPROTO_UDP && l.l3 == L3::Ipv4 && seg.get(off..off + 2) == Some(&[0, 0]) {
        return true;
    }
    let Some(ph) = phdr_cksum(ip, l.l3, l.l4_proto, seg.len()) else {
        return false;
    };
    fold(u64::from(ph) + raw_sum(seg)) == 0xffff
}

/// True when the IPv4 header checksum of `frame`, parsed as `l`, is correct (IPv6 has none:
/// true).
pub fn ip_cksum_ok(frame: &[u8], l: &Layers) -> bool {
    match l.l3 {
        L3::Ipv6 => true,
        L3::Ipv4 => frame
            .get(l.l2_len..l.l4_off())
            .is_some_and(|h| fold(raw_sum(h)) == 0xffff),
    }
}

/// Completes a partial checksum the way a virtio device does for `NEEDS_CSUM`: sums the
/// chain from `start` to its end (the checksum field holds the pseudo-header sum) and stores
/// the complement at `start + offset`. A UDP checksum (`offset` 6) that comes out zero is
/// stored as `0xffff`. False, changing nothing, when the field is not inside the first
/// segment or `start` is beyond the packet.
pub fn complete_partial(m: &mut Mbuf, start: usize, offset: usize) -> bool {
    let Some(at) = start.checked_add(offset) else {
        return false;
    };
    if m.first_seg_range_mut(at, 2).is_none() || start > m.pkt_len() {
        return false;
    }
    let Some(sum) = mbuf_sum(m, start, m.pkt_len() - start) else {
        return false;
    };
    let mut c = !fold(sum);
    if c == 0 && offset == UDP_CSUM_OFF {
        c = 0xffff;
    }
    if let Some(f) = m.first_seg_range_mut(at, 2) {
        f.copy_from_slice(&c.to_be_bytes());
    }
    true
}

/// Does in software what `m`'s Tx offload flags ask of a port, following DPDK's contract
/// (`l2_len`/`l3_len` set; with an L4 checksum request the field already holds the
/// pseudo-header checksum): the IPv4 header checksum, then the TCP or UDP checksum; clears
/// those flags. False, changing nothing, when the lengths do not fit the packet's first
/// segment. TCP segmentation ([`OL_TX_TCP_SEG`]) is not done here: the caller decides.
pub fn tx_offload_sw(m: &mut Mbuf) -> bool {
    let f = m.ol_flags();
    let (l2, l3) = (m.l2_len(), m.l3_len());
    let l4 = l2 + l3;
    if f & OL_TX_IP_CKSUM != 0 && (l3 < 20 || m.first_seg_range_mut(l2, l3).is_none()) {
        return false;
    }
    let l4_off = match f & OL_TX_L4_MASK {
        0 => None,
        x if x == crate::mbuf::OL_TX_TCP_CKSUM => Some(TCP_CSUM_OFF),
        x if x == crate::mbuf::OL_TX_UDP_CKSUM => Some(UDP_CSUM_OFF),
        _ => return false, // SCTP: not handled
    };
    if let Some(o) = l4_off
        && m.first_seg_range_mut(l4 + o, 2).is_none()
    {
        return false;
    }
    if f & OL_TX_IP_CKSUM != 0
        && let Some(h) = m.first_seg_range_mut(l2, l3)
    {
        let c = ipv4_hdr_cksum(h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
    }
    if let Some(o) = l4_off {
        complete_partial(m, l4, o);
    }
    m.set_ol_flags(f & !(OL_TX_OFFLOAD_MASK & !OL_TX_TCP_SEG));
    true
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::mbuf::{OL_TX_IPV4, OL_TX_TCP_CKSUM, OL_TX_UDP_CKSUM};
    use crate::{Mempool, MempoolConfig};
    use proptest::prelude::*;

    /// Ethernet + IPv4 + TCP or UDP with `payload`, all checksums correct.
    fn frame(tcp: bool, payload: &[u8]) -> Vec<u8> {
        let l4_len = if tcp { 20 } else { 8 };
        let mut b = vec![0u8; 14 + 20 + l4_len];
        b[12..14].copy_from_slice(&ETH_P_IPV4.to_be_bytes());
        let tot = (20 + l4_len + payload.len()) as u16;
        b[14] = 0x45;
        b[16..18].copy_from_slice(&tot.to_be_bytes());
        b[22] = 64;
        b[23] = if tcp { IPPROTO_TCP } else { IPPROTO_UDP };
        b[26..30].copy_from_slice(&[10, 0, 0, 1]);
        b[30..34].copy_from_slice(&[10, 0, 0, 2]);
        let c = ipv4_hdr_cksum(&b[14..34]);
        b[24..26].copy_from_slice(&c.to_be_bytes());
        b[34..36].copy_from_slice(&1234u16.to_be_bytes());
        b[36..38].copy_from_slice(&80u16.to_be_bytes());
        if tcp {
            b[46] = 5 << 4;
        } else {
            b[38..40].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        }
        b.extend_from_slice(payload);
        let l = parse(&b).unwrap();
        let off = l.l4_off() + l.l4_csum_off().unwrap();
        let ph = phdr_cksum(&b[14..34], L3::Ipv4, l.l4_proto, b.len() - 34).unwrap();
        let mut c = !fold(u64::from(ph) + raw_sum(&b[34..]));
        if c == 0 && !tcp {
            c = 0xffff;
        }
        b[off..off + 2].copy_from_slice(&c.to_be_bytes());
        b
    }

    #[test]
    fn parse_and_verify() {
        for tcp in [true, false] {
            let b = frame(tcp, b"hello, checksums");
            let l = parse(&b).unwrap();
            assert_eq!((l.l2_len, l.l3_len), (14, 20));
            assert_eq!(l.l4_len, if tcp { 20 } else { 8 });
            assert!(ip_cksum_ok(&b, &l));
            assert!(l4_cksum_ok(&b, &l));
            let mut bad = b.clone();
            *bad.last_mut().unwrap() ^= 1;
            assert!(!l4_cksum_ok(&bad, &l));
        }
        assert!(parse(&[0u8; 13]).is_none());
        assert!(parse(&[0u8; 60]).is_none());
    }

    #[test]
    fn software_tx_offload_matches_reference() {
        let p = Mempool::new(MempoolConfig {
            count: 4,
            data_room: 64,
            ..Default::default()
        })
        .unwrap();
        for tcp in [true, false] {
            let good = frame(tcp, &[7u8; 101]);
            let l = parse(&good).unwrap();
            // What an application does with Tx checksum offload: zero the IP checksum, put
            // the pseudo-header checksum in the L4 field.
            let mut b = good.clone();
            b[24..26].fill(0);
            let ph = phdr_cksum(&b[14..34], L3::Ipv4, l.l4_proto, b.len() - 34).unwrap();
            let off = l.l4_off() + l.l4_csum_off().unwrap();
            b[off..off + 2].copy_from_slice(&ph.to_be_bytes());
            // Spread over a chain of 64-byte segments.
            let mut m = p.alloc().unwrap();
            for (i, c) in b.chunks(64).enumerate() {
                if i == 0 {
                    m.append(c.len()).unwrap().copy_from_slice(c);
                } else {
                    let mut s = p.alloc().unwrap();
                    s.append(c.len()).unwrap().copy_from_slice(c);
                    m.chain(s);
                }
            }
            m.set_header_lens(14, 20, l.l4_len);
            m.set_ol_flags(
                OL_TX_IPV4
                    | OL_TX_IP_CKSUM
                    | if tcp {
                        OL_TX_TCP_CKSUM
                    } else {
                        OL_TX_UDP_CKSUM
                    },
            );
            assert!(tx_offload_sw(&mut m));
            assert_eq!(m.to_vec(), good);
            assert_eq!(m.ol_flags(), OL_TX_IPV4);
        }
    }

    proptest! {
        /// The chain sum equals the flat sum whatever the split points and offsets.
        #[test]
        fn chain_sum_matches_flat(data in proptest::collection::vec(any::<u8>(), 1..300),
                                  cut in 1usize..64, off in 0usize..50, len in 0usize..300) {
            let p = Mempool::new(MempoolConfig { count: 512, data_room: 64, ..Default::default() }).unwrap();
            let mut m = p.alloc().unwrap();
            for (i, c) in data.chunks(cut).enumerate() {
                if i == 0 {
                    m.append(c.len()).unwrap().copy_from_slice(c);
                } else {
                    let mut s = p.alloc().unwrap();
                    s.append(c.len()).unwrap().copy_from_slice(c);
                    m.chain(s);
                }
            }
            let got = mbuf_sum(&m, off, len).map(fold);
            let want = data.get(off..off.saturating_add(len)).map(|s| fold(raw_sum(s)));
            prop_assert_eq!(got, want);
        }

        /// Parsing arbitrary bytes never panics, and what it returns lies inside the frame.
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some(l) = parse(&data) {
                prop_assert!(l.l4_off() + l.l4_len <= l.l3_end && l.l3_end <= data.len());
                let _ = l4_cksum_ok(&data, &l);
                let _ = ip_cksum_ok(&data, &l);
            }
        }
    }
}
