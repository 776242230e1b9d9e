//! IPv4 headers: validation, checksums, TTL decrement (RFC 1624 incremental update) and ICMP
//! echo request → reply in place.
//!
//! Every function takes the whole frame and `l3`, the offset of the IPv4 header in it (see
//! [`crate::eth::l3_offset`]); none panics, whatever the bytes.

use std::net::Ipv4Addr;

/// The length of an IPv4 header without options.
pub const IPV4_MIN_HLEN: usize = 20;
/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// The TTL [`icmp_echo_reply`] gives its reply.
pub const REPLY_TTL: u8 = 64;
/// ICMP type of an echo request.
pub const ICMP_ECHO_REQUEST: u8 = 8;
/// ICMP type of an echo reply.
pub const ICMP_ECHO_REPLY: u8 = 0;
/// The length of an ICMP echo header (type, code, checksum, identifier, sequence).
pub const ICMP_ECHO_HLEN: usize = 8;

/// Why bytes are not a valid IPv4 header (or a TTL cannot be decremented).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ipv4Error {
    /// Fewer bytes after `l3` than the header needs.
    #[error("IPv4 header truncated: {have} bytes after the L3 offset, {need} needed")]
    Truncated {
        /// Bytes available from the L3 offset to the end of the frame.
        have: usize,
        /// Bytes the header needs (20, or IHL × 4).
        need: usize,
    },
    /// The version field is not 4.
    #[error("IP version {0}, expected 4")]
    BadVersion(u8),
    /// The IHL field is below 5 (a header is at least 20 bytes).
    #[error("IPv4 IHL {0} is below 5")]
    BadIhl(u8),
    /// The total length is below the header length.
    #[error("IPv4 total length {total} is shorter than its header ({header_len} bytes)")]
    TotalLengthTooShort {
        /// The total length field.
        total: u16,
        /// IHL × 4.
        header_len: usize,
    },
    /// The total length goes beyond the end of the frame.
    #[error("IPv4 total length {total} goes beyond the frame ({have} bytes from the L3 offset)")]
    TotalLengthBeyondFrame {
        /// The total length field.
        total: u16,
        /// Bytes available from the L3 offset to the end of the frame.
        have: usize,
    },
    /// The header checksum is wrong.
    #[error("IPv4 header checksum {found:#06x} is wrong (expected {expected:#06x})")]
    BadChecksum {
        /// The checksum field.
        found: u16,
        /// What it should be.
        expected: u16,
    },
    /// The TTL is 0 or 1: the packet must not be forwarded (answer ICMP time exceeded).
    #[error("TTL {0} expired: the packet must not be forwarded")]
    TtlExpired(u8),
}

/// Why a frame could not be answered by [`icmp_echo_reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IcmpError {
    /// The IPv4 header is invalid.
    #[error(transparent)]
    Ip(#[from] Ipv4Error),
    /// The IP protocol is not ICMP.
    #[error("IP protocol {0} is not ICMP")]
    NotIcmp(u8),
    /// The packet is a fragment: its ICMP checksum cannot be checked alone.
    #[error("fragmented ICMP (offset {offset}, more fragments {more}) is not answered")]
    Fragment {
        /// The fragment offset, in 8-byte units.
        offset: u16,
        /// The MF flag.
        more: bool,
    },
    /// The ICMP message is shorter than an echo header (8 bytes).
    #[error("ICMP message of {0} bytes is shorter than an echo header (8)")]
    Truncated(usize),
    /// Not an echo request.
    #[error("ICMP type {ty} code {code} is not an echo request (8/0)")]
    NotEchoRequest {
        /// The ICMP type.
        ty: u8,
        /// The ICMP code.
        code: u8,
    },
    /// The ICMP checksum is wrong.
    #[error("ICMP checksum {found:#06x} is wrong (expected {expected:#06x})")]
    BadChecksum {
        /// The checksum field.
        found: u16,
        /// What it should be.
        expected: u16,
    },
}

/// The ones' complement sum of `data` as big-endian 16-bit words (an odd last byte is padded
/// with zero), folded to 16 bits (RFC 1071). `0` only when every byte is zero.
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut chunks = data.chunks_exact(2);
    let mut s: u64 = chunks
        .by_ref()
        .map(|c| u64::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    if let [b] = chunks.remainder() {
        s += u64::from(*b) << 8;
    }
    fold(s)
}

fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The Internet checksum of `data` (RFC 1071): the complement of its ones' complement sum.
/// For a message whose checksum field is zero, the value to put in the field; a message with
/// its checksum in place is intact when this is 0.
pub fn internet_checksum(data: &[u8]) -> u16 {
    !ones_complement_sum(data)
}

/// The checksum an IPv4 header should carry: the Internet checksum of `header` (the IHL × 4
/// header bytes) with its checksum field (bytes 10..12) counted as zero. A slice shorter than
/// 12 bytes is summed as it is (no panic; the value is then meaningless).
pub fn header_checksum(header: &[u8]) -> u16 {
    if header.len() < 12 {
        return internet_checksum(header);
    }
    let s = u64::from(ones_complement_sum(&header[..10]))
        + u64::from(ones_complement_sum(&header[12..]));
    !fold(s)
}

/// The checksum `hc` updated for one 16-bit word of the summed data changing from `old` to
/// `new`, by RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`. It equals a full recomputation except
/// when all the data summed becomes zero (the full computation then gives `0xffff`, this
/// gives `0x0000`); an IPv4 header never is all zero (its version is 4).
pub fn checksum_adjust(hc: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!hc) + u64::from(!old) + u64::from(new))
}

/// A validated view of an IPv4 header and its packet: version 4, IHL ≥ 5, the header and the
/// total length inside the frame, header checksum correct.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Header<'a> {
    /// From the header's first byte to the end of the packet (total length).
    b: &'a [u8],
}

impl<'a> Ipv4Header<'a> {
    /// Validates the IPv4 header at offset `l3` of `frame`. Bytes after the total length
    /// (Ethernet padding) are ignored.
    pub fn parse(frame: &'a [u8], l3: usize) -> Result<Self, Ipv4Error> {
        let b = frame.get(l3..).unwrap_or_default();
        if b.len() < IPV4_MIN_HLEN {
            return Err(Ipv4Error::Truncated {
                have: b.len(),
                need: IPV4_MIN_HLEN,
            });
        }
        let version = b[0] >> 4;
        if version != 4 {
            return Err(Ipv4Error::BadVersion(version));
        }
        let ihl = b[0] & 0x0f;
        if ihl < 5 {
            return Err(Ipv4Error::BadIhl(ihl));
        }
        let header_len = usize::from(ihl) * 4;
        if b.len() < header_len {
            return Err(Ipv4Error::Truncated {
                have: b.len(),
                need: header_len,
            });
        }
        let total = u16::from_be_bytes([b[2], b[3]]);
        if usize::from(total) < header_len {
            return Err(Ipv4Error::TotalLengthTooShort { total, header_len });
        }
        if usize::from(total) > b.len() {
            return Err(Ipv4Error::TotalLengthBeyondFrame {
                total,
                have: b.len(),
            });
        }
        let hdr = &b[..header_len];
        if ones_complement_sum(hdr) != 0xffff {
            return Err(Ipv4Error::BadChecksum {
                found: u16::from_be_bytes([b[10], b[11]]),
                expected: header_checksum(hdr),
            });
        }
        Ok(Ipv4Header {
            b: &b[..usize::from(total)],
        })
    }

    /// The header length in bytes (IHL × 4, 20..=60).
    pub fn header_len(&self) -> usize {
        usize::from(self.b[0] & 0x0f) * 4
    }
    /// The header bytes, options included.
    pub fn header(&self) -> &'a [u8] {
        &self.b[..self.header_len()]
    }
    /// The options (empty when IHL is 5).
    pub fn options(&self) -> &'a [u8] {
        &self.b[IPV4_MIN_HLEN..self.header_len()]
    }
    /// The payload: from the end of the header to the total length.
    pub fn payload(&self) -> &'a [u8] {
        &self.b[self.header_len()..]
    }
    /// The DSCP and ECN byte (former TOS).
    pub fn tos(&self) -> u8 {
        self.b[1]
    }
    /// The total length field (header and payload).
    pub fn total_len(&self) -> u16 {
        u16::from_be_bytes([self.b[2], self.b[3]])
    }
    /// The identification field.
    pub fn id(&self) -> u16 {
        u16::from_be_bytes([self.b[4], self.b[5]])
    }
    /// The DF (don't fragment) flag.
    pub fn dont_fragment(&self) -> bool {
        self.b[6] & 0x40 != 0
    }
    /// The MF (more fragments) flag.
    pub fn more_fragments(&self) -> bool {
        self.b[6] & 0x20 != 0
    }
    /// The fragment offset, in 8-byte units.
    pub fn fragment_offset(&self) -> u16 {
        u16::from_be_bytes([self.b[6], self.b[7]]) & 0x1fff
    }
    /// Whether this is a fragment (MF set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.more_fragments() || self.fragment_offset() != 0
    }
    /// The time to live.
    pub fn ttl(&self) -> u8 {
        self.b[8]
    }
    /// The protocol of the payload (1 ICMP, 6 TCP, 17 UDP...).
    pub fn protocol(&self) -> u8 {
        self.b[9]
    }
    /// The header checksum field.
    pub fn checksum(&self) -> u16 {
        u16::from_be_bytes([self.b[10], self.b[11]])
    }
    /// The source address in host byte order (as [`crate::lpm`] wants it).
    pub fn src(&self) -> u32 {
        u32::from_be_bytes([self.b[12], self.b[13], self.b[14], self.b[15]])
    }
    /// The destination address in host byte order (as [`crate::lpm`] wants it).
    pub fn dst(&self) -> u32 {
        u32::from_be_bytes([self.b[16], self.b[17], self.b[18], self.b[19]])
    }
    /// The source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src())
    }
    /// The destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst())
    }
}

/// Decrements the TTL of the IPv4 header at `l3` and updates its checksum incrementally
/// (RFC 1624), as a router does before forwarding. Returns the new TTL. Meant for a header
/// already validated by [`Ipv4Header::parse`]; it only checks that the 20 bytes are there.
/// A TTL of 0 or 1 is refused ([`Ipv4Error::TtlExpired`]) and the frame left unchanged.
pub fn decrement_ttl(frame: &mut [u8], l3: usize) -> Result<u8, Ipv4Error> {
    let have = frame.len().saturating_sub(l3);
    let Some(h) = frame.get_mut(l3..l3.saturating_add(IPV4_MIN_HLEN)) else {
        return Err(Ipv4Error::Truncated {
            have,
            need: IPV4_MIN_HLEN,
        });
    };
    let ttl = h[8];
    if ttl <= 1 {
        return Err(Ipv4Error::TtlExpired(ttl));
    }
    let old = u16::from_be_bytes([ttl, h[9]]);
    let new = u16::from_be_bytes([ttl - 1, h[9]]);
    let hc = checksum_adjust(u16::from_be_bytes([h[10], h[11]]), old, new);
    h[8] = ttl - 1;
    h[10..12].copy_from_slice(&hc.to_be_bytes());
    Ok(ttl - 1)
}

/// Turns the ICMP echo request at `l3` into its echo reply in place: swaps the source and
/// destination addresses, sets the TTL to [`REPLY_TTL`] and recomputes the IP header checksum,
/// turns type 8 into 0 and updates the ICMP checksum incrementally. Checks first that the IP
/// header is valid, that the packet is an unfragmented ICMP echo request (code 0) and that
/// its ICMP checksum is correct; on any error the frame is unchanged.
///
/// IP options and the payload are kept as they are; the Ethernet header is the caller's
/// (swap the MACs or fill them from the neighbour table).
pub fn icmp_echo_reply(frame: &mut [u8], l3: usize) -> Result<(), IcmpError> {
    let h = Ipv4Header::parse(frame, l3)?;
    if h.protocol() != PROTO_ICMP {
        return Err(IcmpError::NotIcmp(h.protocol()));
    }
    if h.is_fragment() {
        return Err(IcmpError::Fragment {
            offset: h.fragment_offset(),
            more: h.more_fragments(),
        });
    }
    let (hl, total) = (h.header_len(), usize::from(h.total_len()));
    let msg = h.payload();
    if msg.len() < ICMP_ECHO_HLEN {
        return Err(IcmpError::Truncated(msg.len()));
    }
    if msg[0] != ICMP_ECHO_REQUEST || msg[1] != 0 {
        return Err(IcmpError::NotEchoRequest {
            ty: msg[0],
            code: msg[1],
        });
    }
    if ones_complement_sum(msg) != 0xffff {
        return Err(IcmpError::BadChecksum {
            found: u16::from_be_bytes([msg[2], msg[3]]),
            expected: !fold(
                u64::from(ones_complement_sum(&msg[..2]))
                    + u64::from(ones_complement_sum(&msg[4..])),
            ),
        });
    }
    // Validated: l3 + total <= frame.len().
    let ip = &mut frame[l3..l3 + total];
    let (hdr, msg) = ip.split_at_mut(hl);
    let (src, dst) = hdr[12..20].split_at_mut(4);
    src.swap_with_slice(dst);
    hdr[8] = REPLY_TTL;
    hdr[10..12].fill(0);
    let hc = header_checksum(hdr);
    hdr[10..12].copy_from_slice(&hc.to_be_bytes());

    let old = u16::from_be_bytes([msg[0], msg[1]]);
    msg[0] = ICMP_ECHO_REPLY;
    let new = u16::from_be_bytes([msg[0], msg[1]]);
    let mut c = checksum_adjust(u16::from_be_bytes([msg[2], msg[3]]), old, new);
    if c == 0 {
        // Either a true 0x0000, or a message that became all zero, whose full checksum is
        // 0xffff (RFC 1624 eqn. 3's one exception). Rare (1 in 65536): recompute.
        msg[2..4].fill(0);
        c = internet_checksum(msg);
    }
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet frame (untagged) with an IPv4 ICMP echo request.
    pub(crate) fn echo_request(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let total = (20 + 8 + payload.len()) as u16;
        let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 17, PROTO_ICMP, 0, 0];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend([10, 0, 0, 1, 10, 0, 0, 2]);
        let c = header_checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut icmp = vec![8, 0, 0, 0, 0xbe, 0xef, 0, 1];
        icmp.extend_from_slice(payload);
        let c = internet_checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        f.extend(ip);
        f.extend(icmp);
        f
    }

    #[test]
    fn known_header_checksum() {
        // The example of many textbooks.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(header_checksum(&h), 0xb861);
        assert_eq!(internet_checksum(&h), 0);
        let mut f = h.to_vec();
        f.resize(0x73, 0);
        let v = Ipv4Header::parse(&f, 0).unwrap();
        assert_eq!(v.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(v.dst(), 0xc0a8_00c7);
        assert_eq!((v.ttl(), v.protocol(), v.total_len()), (64, 17, 0x73));
        assert!(v.dont_fragment() && !v.is_fragment());
        assert_eq!(v.payload().len(), 0x73 - 20);
    }

    #[test]
    fn each_failure_has_its_error() {
        let good = echo_request(b"abcd");
        assert!(Ipv4Header::parse(&good, 14).is_ok());
        assert_eq!(
            Ipv4Header::parse(&good[..30], 14).unwrap_err(),
            Ipv4Error::Truncated { have: 16, need: 20 }
        );
        assert_eq!(
            Ipv4Header::parse(&good, 100).unwrap_err(),
            Ipv4Error::Truncated { have: 0, need: 20 }
        );
        let mut f = good.clone();
        f[14] = 0x65;
        assert_eq!(
            Ipv4Header::parse(&f, 14).unwrap_err(),
            Ipv4Error::BadVersion(6)
        );
        f[14] = 0x44;
        assert_eq!(Ipv4Header::parse(&f, 14).unwrap_err(), Ipv4Error::BadIhl(4));
        f[14] = 0x4f;
        assert_eq!(
            Ipv4Header::parse(&f, 14).unwrap_err(),
            Ipv4Error::Truncated { have: 32, need: 60 }
        );
        let mut f = good.clone();
        f[16..18].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Ipv4Header::parse(&f, 14).unwrap_err(),
            Ipv4Error::TotalLengthTooShort {
                total: 19,
                header_len: 20
            }
        );
        f[16..18].copy_from_slice(&33u16.to_be_bytes());
        assert_eq!(
            Ipv4Header::parse(&f, 14).unwrap_err(),
            Ipv4Error::TotalLengthBeyondFrame {
                total: 33,
                have: 32
            }
        );
        let mut f = good.clone();
        f[22] = 5;
        let e = Ipv4Header::parse(&f, 14).unwrap_err();
        assert!(matches!(e, Ipv4Error::BadChecksum { .. }), "{e}");
        // Ethernet padding after the total length is ignored.
        let mut f = good.clone();
        f.extend([0u8; 10]);
        assert_eq!(Ipv4Header::parse(&f, 14).unwrap().payload().len(), 12);
    }

    #[test]
    fn ttl() {
        let mut f = echo_request(b"");
        assert_eq!(decrement_ttl(&mut f, 14), Ok(16));
        assert!(Ipv4Header::parse(&f, 14).is_ok());
        f[22] = 1;
        let before = f.clone();
        assert_eq!(decrement_ttl(&mut f, 14), Err(Ipv4Error::TtlExpired(1)));
        assert_eq!(f, before);
        assert!(matches!(
            decrement_ttl(&mut f[..20], 14),
            Err(Ipv4Error::Truncated { have: 6, .. })
        ));
        assert!(decrement_ttl(&mut [], usize::MAX).is_err());
    }

    #[test]
    fn echo_reply() {
        let mut f = echo_request(b"hello, router");
        icmp_echo_reply(&mut f, 14).unwrap();
        let h = Ipv4Header::parse(&f, 14).unwrap();
        assert_eq!((h.src(), h.dst(), h.ttl()), (0x0a00_0002, 0x0a00_0001, 64));
        assert_eq!(h.payload()[0], 0);
        assert_eq!(internet_checksum(h.payload()), 0);
        assert_eq!(&h.payload()[8..], b"hello, router");
        // A reply is not answered; nor a corrupted request.
        assert_eq!(
            icmp_echo_reply(&mut f, 14),
            Err(IcmpError::NotEchoRequest { ty: 0, code: 0 })
        );
        let mut f = echo_request(b"x");
        f[14 + 20 + 8] ^= 1;
        let before = f.clone();
        assert!(matches!(
            icmp_echo_reply(&mut f, 14),
            Err(IcmpError::BadChecksum { .. })
        ));
        assert_eq!(f, before);
    }

    #[test]
    fn echo_reply_to_an_all_zero_request_gets_0xffff() {
        // id 0, seq 0, no data: the reply is all zero, its checksum must be 0xffff.
        let mut f = echo_request(b"");
        f[14 + 24..14 + 28].fill(0);
        let c = internet_checksum(&[8, 0, 0, 0]);
        f[14 + 22..14 + 24].copy_from_slice(&c.to_be_bytes());
        icmp_echo_reply(&mut f, 14).unwrap();
        assert_eq!(&f[14 + 20..], &[0, 0, 0xff, 0xff, 0, 0, 0, 0]);
    }
}
