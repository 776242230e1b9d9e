//! Frame helpers: MAC rewrites, a UDP/IPv4 frame template and checksums.

use ferrovia_memory::{LcoreCaches, Mbuf, MbufCache};

use crate::Stream;

/// Writes destination and source MAC addresses (frames shorter than 12 bytes are left alone).
#[inline]
pub fn set_macs(frame: &mut [u8], dst: &[u8; 6], src: &[u8; 6]) {
    if frame.len() >= 12 {
        frame[..6].copy_from_slice(dst);
        frame[6..12].copy_from_slice(src);
    }
}

/// Swaps destination and source MAC addresses.
#[inline]
pub fn swap_macs(frame: &mut [u8]) {
    if frame.len() >= 12 {
        let (d, s) = frame.split_at_mut(6);
        d.swap_with_slice(&mut s[..6]);
    }
}

/// Internet checksum (RFC 1071) of `data`, starting from `sum`.
pub fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [b] = chunks.remainder() {
        sum += (*b as u32) << 8;
    }
    sum
}

/// Folds a 32-bit sum into the final one's-complement checksum.
pub fn csum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A prebuilt frame copied into each generated packet.
#[derive(Debug, Clone)]
pub struct FrameTemplate {
    bytes: Vec<u8>,
}

impl FrameTemplate {
    /// Ethernet + IPv4 (198.18.0.1 → 198.18.0.2 + `flow`) + UDP 9 → 9, `len` bytes in all,
    /// with valid IPv4 and UDP checksums.
    pub fn udp4(src: &[u8; 6], dst: &[u8; 6], len: usize, flow: u32) -> FrameTemplate {
        let len = len.max(42);
        let mut b = vec![0u8; len];
        b[..6].copy_from_slice(dst);
        b[6..12].copy_from_slice(src);
        b[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip_len = (len - 14) as u16;
        let ip = &mut b[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[198, 18, 0, 1]);
        let dst_ip = u32::from_be_bytes([198, 18, 0, 2]).wrapping_add(flow);
        ip[16..20].copy_from_slice(&dst_ip.to_be_bytes());
        let c = csum_fold(csum_add(0, ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let udp_len = (len - 34) as u16;
        b[34..36].copy_from_slice(&9u16.to_be_bytes());
        b[36..38].copy_from_slice(&9u16.to_be_bytes());
        b[38..40].copy_from_slice(&udp_len.to_be_bytes());
        for (i, x) in b[42..].iter_mut().enumerate() {
            *x = i as u8;
        }
        let c = udp4_checksum(&b[14..34], &b[34..]);
        b[40..42].copy_from_slice(&c.to_be_bytes());
        FrameTemplate { bytes: b }
    }

    /// The frame bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// UDP checksum over an IPv4 pseudo header (`ip` is the IPv4 header, `udp` header + payload,
/// with its checksum field as found).
pub fn udp4_checksum(ip: &[u8], udp: &[u8]) -> u16 {
    let mut s = csum_add(0, &ip[12..20]);
    s += 17 + udp.len() as u32;
    s = csum_add(s, &udp[..6]);
    s = csum_add(s, &udp[8..]);
    let c = csum_fold(s);
    if c == 0 { 0xffff } else { c }
}

/// True when the frame's IPv4 header checksum (and UDP/TCP checksum, when present and not
/// zero for UDP) are correct; non-IPv4 frames count as correct.
pub fn check_l3_l4(f: &[u8]) -> bool {
    if f.len() < 34 || f[12..14] != [0x08, 0x00] {
        return true;
    }
    let ihl = ((f[14] & 0x0f) as usize) * 4;
    if ihl < 20 || f.len() < 14 + ihl {
        return false;
    }
    let ip = &f[14..14 + ihl];
    if csum_fold(csum_add(0, ip)) != 0 {
        return false;
    }
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    if total < ihl || f.len() < 14 + total {
        return false;
    }
    let l4 = &f[14 + ihl..14 + total];
    let proto = ip[9];
    if !(proto == 17 || proto == 6) {
        return true;
    }
    if proto == 17 && (l4.len() < 8 || l4[6..8] == [0, 0]) {
        return l4.len() >= 8;
    }
    let mut s = csum_add(0, &ip[12..20]);
    s += proto as u32 + l4.len() as u32;
    s = csum_add(s, l4);
    csum_fold(s) == 0
}

/// Allocates up to `burst` frames from the thread's cache of the stream's pool, copies the
/// template (chained in `--txpkts` segments when several are given) and leaves them in
/// `s.burst`.
#[inline]
pub fn fill_burst(caches: &mut LcoreCaches, s: &mut Stream, tpl: &FrameTemplate) {
    let want = s.params.burst.min(s.burst.remaining_capacity());
    let segs = s.params.txpkts.len().max(1);
    let cache = caches.for_pool(&s.pool);
    for _ in 0..want {
        let Some(m) = build(cache, &s.params.txpkts, tpl, segs) else {
            break;
        };
        s.burst.push(m);
    }
}

fn build(cache: &mut MbufCache, txpkts: &[u16], tpl: &FrameTemplate, segs: usize) -> Option<Mbuf> {
    let bytes = tpl.bytes();
    if segs == 1 {
        let mut m = cache.alloc()?;
        match m.append(bytes.len()) {
            Some(d) => d.copy_from_slice(bytes),
            None => {
                cache.free(m);
                return None;
            }
        }
        return Some(m);
    }
    let mut head: Option<Mbuf> = None;
    let mut off = 0;
    for (i, &l) in txpkts.iter().enumerate() {
        let l = if i + 1 == segs {
            bytes.len() - off
        } else {
            (l as usize).min(bytes.len() - off)
        };
        let Some(mut m) = cache.alloc() else {
            if let Some(h) = head {
                cache.free(h);
            }
            return None;
        };
        match m.append(l) {
            Some(d) => d.copy_from_slice(&bytes[off..off + l]),
            None => {
                cache.free(m);
                if let Some(h) = head {
                    cache.free(h);
                }
                return None;
            }
        }
        off += l;
        match head.as_mut() {
            None => head = Some(m),
            Some(h) => h.chain(m),
        }
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn template_has_valid_checksums() {
        let t = FrameTemplate::udp4(&[2, 0, 0, 0, 0, 1], &[2, 0, 0, 0, 0, 2], 64, 0);
        assert_eq!(t.bytes().len(), 64);
        assert!(check_l3_l4(t.bytes()));
        let mut bad = t.bytes().to_vec();
        bad[50] ^= 1;
        assert!(!check_l3_l4(&bad));
        let mut bad = t.bytes().to_vec();
        bad[22] ^= 1; // TTL
        assert!(!check_l3_l4(&bad));
    }

    #[test]
    fn macswap_swaps() {
        let mut f = [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 8, 0];
        swap_macs(&mut f);
        assert_eq!(&f[..12], &[2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1]);
        let mut short = [1u8; 5];
        swap_macs(&mut short);
        assert_eq!(short, [1; 5]);
    }

    proptest! {
        #[test]
        fn any_length_and_flow_is_valid(len in 42usize..9000, flow in any::<u32>()) {
            let t = FrameTemplate::udp4(&[2, 0, 0, 0, 0, 1], &[2, 0, 0, 0, 0, 2], len, flow);
            prop_assert_eq!(t.bytes().len(), len);
            prop_assert!(check_l3_l4(t.bytes()));
        }

        #[test]
        fn swap_twice_is_identity(f in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut g = f.clone();
            swap_macs(&mut g);
            swap_macs(&mut g);
            prop_assert_eq!(f, g);
        }
    }
}
