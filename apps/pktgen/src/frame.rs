//! The generator's frames: Ethernet, IPv4 (RFC 2544's benchmark range 198.18.0.0/15), UDP,
//! and an 18-byte signature: a 16-bit magic that also names the stream, a 64-bit sequence
//! number and the 64-bit tick at which the burst was sent. The smallest frame (60 bytes, the
//! Ethernet minimum without FCS) holds exactly the headers and the signature.

/// Ethernet + IPv4 + UDP.
pub const HDRS: usize = 14 + 20 + 8;
/// Signature bytes after the headers.
pub const SIG: usize = 2 + 8 + 8;
/// The smallest frame: headers plus signature (the Ethernet minimum without FCS).
pub const MIN_FRAME: usize = HDRS + SIG;
/// The magic's high byte; the low byte is the stream number.
const MAGIC_HI: u8 = 0xFE;

/// One stream's constant header fields; flows vary the source address and UDP source port.
#[derive(Clone, Debug)]
pub struct Template {
    hdr: [u8; HDRS],
    stream: u8,
    flows: u32,
}

impl Template {
    /// A stream from `src` to `dst` MAC with `flows` flows (1..=65536).
    pub fn new(stream: u8, src: [u8; 6], dst: [u8; 6], flows: u32) -> Template {
        let mut h = [0u8; HDRS];
        h[0..6].copy_from_slice(&dst);
        h[6..12].copy_from_slice(&src);
        h[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        h[14] = 0x45; // IPv4, 20-byte header
        h[22] = 64; // TTL
        h[23] = 17; // UDP
        h[26..30].copy_from_slice(&[198, 18, stream, 1]);
        h[30..34].copy_from_slice(&[198, 19, stream, 1]);
        h[36..38].copy_from_slice(&5001u16.to_be_bytes()); // UDP destination port
        Template {
            hdr: h,
            stream,
            flows: flows.max(1),
        }
    }

    /// Writes frame `seq` of `len` bytes (at least [`MIN_FRAME`]) into `buf`, stamped `tick`.
    #[inline]
    pub fn write(&self, buf: &mut [u8], seq: u64, tick: u64) {
        let len = buf.len();
        debug_assert!(len >= MIN_FRAME);
        buf[..HDRS].copy_from_slice(&self.hdr);
        let flow = (seq % u64::from(self.flows)) as u32;
        let ip_len = (len - 14) as u16;
        buf[16..18].copy_from_slice(&ip_len.to_be_bytes());
        buf[18..20].copy_from_slice(&(seq as u16).to_be_bytes()); // IP identification
        // Flow: source address 198.18.<stream>.<1 + flow % 250>, UDP source port 1024 + flow.
        buf[29] = 1 + (flow % 250) as u8;
        buf[34..36].copy_from_slice(&(1024 + (flow % 64_000) as u16).to_be_bytes());
        buf[38..40].copy_from_slice(&((len - 34) as u16).to_be_bytes()); // UDP length
        // UDP checksum 0: none, allowed over IPv4.
        let c = ipv4_checksum(&buf[14..34]);
        buf[24..26].copy_from_slice(&c.to_be_bytes());
        buf[HDRS] = MAGIC_HI;
        buf[HDRS + 1] = self.stream;
        buf[HDRS + 2..HDRS + 10].copy_from_slice(&seq.to_le_bytes());
        buf[HDRS + 10..HDRS + 18].copy_from_slice(&tick.to_le_bytes());
    }

    /// Like [`Template::write`], then fills the rest of the frame with a pattern derived from
    /// `seq`, so that the receiver can check every byte ([`Template::verify`]).
    #[inline]
    pub fn write_patterned(&self, buf: &mut [u8], seq: u64, tick: u64) {
        self.write(buf, seq, tick);
        fill_pattern(&mut buf[MIN_FRAME..], seq);
    }

    /// Whether `f`, a frame of this stream stamped `seq` and `tick`, arrived with every byte
    /// as [`Template::write_patterned`] wrote it, the MAC addresses aside (a reflector swaps
    /// them). `scratch` must hold at least `f.len()` bytes.
    pub fn verify(&self, f: &[u8], seq: u64, tick: u64, scratch: &mut [u8]) -> bool {
        if f.len() < MIN_FRAME || scratch.len() < f.len() {
            return false;
        }
        let s = &mut scratch[..f.len()];
        self.write_patterned(s, seq, tick);
        s[12..] == f[12..]
    }
}

/// The payload pattern of frame `seq`.
#[inline]
fn fill_pattern(p: &mut [u8], seq: u64) {
    let base = (seq as u8).wrapping_mul(31);
    for (i, b) in p.iter_mut().enumerate() {
        *b = base.wrapping_add(i as u8);
    }
}

/// The IPv4 header checksum of `h` (its checksum field is skipped).
#[inline]
pub fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum = 0u32;
    for (i, w) in h.chunks_exact(2).enumerate() {
        if i != 5 {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What a received frame carried, if it is one of ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The stream.
    pub stream: u8,
    /// The sequence number.
    pub seq: u64,
    /// The send tick.
    pub tick: u64,
}

/// Reads the signature of `f`, or `None` if it is not one of our frames.
#[inline]
pub fn parse(f: &[u8]) -> Option<Stamp> {
    if f.len() < MIN_FRAME || f[12..14] != [0x08, 0x00] || f[14] != 0x45 || f[23] != 17 {
        return None;
    }
    if f[HDRS] != MAGIC_HI {
        return None;
    }
    let seq = u64::from_le_bytes(f[HDRS + 2..HDRS + 10].try_into().ok()?);
    let tick = u64::from_le_bytes(f[HDRS + 10..HDRS + 18].try_into().ok()?);
    Some(Stamp {
        stream: f[HDRS + 1],
        seq,
        tick,
    })
}

/// Frame sizes: one size, or a repeating pattern (IMIX).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizePattern(Vec<u16>);

impl SizePattern {
    /// One size.
    pub fn fixed(n: u16) -> SizePattern {
        SizePattern(vec![n])
    }

    /// Simple IMIX, 7:4:1 of 60, 590 and 1514 bytes (64, 594 and 1518 with FCS), interleaved.
    pub fn imix() -> SizePattern {
        let mut v = Vec::new();
        for i in 0..12 {
            v.push(match i {
                3 | 6 | 9 | 11 => 590,
                5 => 1514,
                _ => 60,
            });
        }
        SizePattern(v)
    }

    /// The size of frame `seq`.
    #[inline]
    pub fn size(&self, seq: u64) -> usize {
        usize::from(self.0[(seq % self.0.len() as u64) as usize])
    }

    /// The mean size.
    pub fn mean(&self) -> f64 {
        self.0.iter().map(|&s| f64::from(s)).sum::<f64>() / self.0.len() as f64
    }

    /// The largest size.
    pub fn max(&self) -> usize {
        usize::from(*self.0.iter().max().expect("not empty"))
    }

    /// A label for reports: `64` or `imix`.
    pub fn label(&self) -> String {
        if self.0.len() == 1 {
            self.0[0].to_string()
        } else {
            "imix".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn imix_proportions() {
        let p = SizePattern::imix();
        let n = |s| (0..12).filter(|&i| p.size(i) == s).count();
        assert_eq!((n(60), n(590), n(1514)), (7, 4, 1));
    }

    proptest! {
        #[test]
        fn write_then_parse(stream: u8, seq: u64, tick: u64, flows in 1u32..70_000, len in MIN_FRAME..2000usize) {
            let t = Template::new(stream, [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], flows);
            let mut buf = vec![0u8; len];
            t.write(&mut buf, seq, tick);
            prop_assert_eq!(parse(&buf), Some(Stamp { stream, seq, tick }));
            // A valid IPv4 header: the checksum over the whole header folds to 0xffff.
            let mut sum = 0u32;
            for w in buf[14..34].chunks_exact(2) {
                sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
            }
            while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16); }
            prop_assert_eq!(sum, 0xffff);
            prop_assert_eq!(usize::from(u16::from_be_bytes([buf[16], buf[17]])), len - 14);
            // Patterned frames verify; one flipped byte anywhere after the MACs does not.
            t.write_patterned(&mut buf, seq, tick);
            let mut scratch = vec![0u8; 2000];
            prop_assert!(t.verify(&buf, seq, tick, &mut scratch));
            let i = 12 + (seq as usize % (len - 12));
            buf[i] ^= 0x40;
            prop_assert!(!t.verify(&buf, seq, tick, &mut scratch));
        }

        #[test]
        fn parse_never_panics(f in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = parse(&f);
        }
    }
}
