//! Incremental checksum updates (TTL decrement, echo reply) equal full recomputations,
//! including the 0x0000 / 0xffff edge.

use ferrovia_route::ipv4::{
    Ipv4Header, REPLY_TTL, decrement_ttl, header_checksum, icmp_echo_reply, internet_checksum,
    ones_complement_sum,
};
use proptest::prelude::*;

/// Sets the 16-bit word at `at` of `data` so that the Internet checksum of `data` (with the
/// checksum field at `csum` counted as zero) becomes `target` (not 0xffff).
fn steer(data: &mut [u8], at: usize, csum: usize, target: u16) {
    data[at..at + 2].fill(0);
    let saved = [data[csum], data[csum + 1]];
    data[csum..csum + 2].fill(0);
    let s = ones_complement_sum(data);
    // w = ~target - S in ones' complement arithmetic.
    let mut w = u32::from(!target) + u32::from(!s);
    w = (w & 0xffff) + (w >> 16);
    w = (w & 0xffff) + (w >> 16);
    data[at..at + 2].copy_from_slice(&(w as u16).to_be_bytes());
    data[csum..csum + 2].copy_from_slice(&saved);
}

/// Checksum targets worth steering to, or `None` to keep the random one.
fn target() -> impl Strategy<Value = Option<u16>> {
    prop_oneof![
        3 => Just(None),
        1 => prop::sample::select(vec![0x0000u16, 0x0001, 0x00ff, 0x0100, 0xfeff, 0xfffe])
            .prop_map(Some),
    ]
}

/// A frame (14 bytes of Ethernet, untagged) with a random IPv4 header of IHL `ihl` and no
/// payload; the checksum is left zero.
fn header(ihl: u8, fields: [u8; 20], options: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    let mut h = fields.to_vec();
    h[0] = 0x40 | ihl;
    h.extend_from_slice(&options[..(usize::from(ihl) - 5) * 4]);
    let hl = h.len() as u16;
    h[2..4].copy_from_slice(&hl.to_be_bytes());
    h[10..12].fill(0);
    f.extend(h);
    f
}

fn set_checksum(f: &mut [u8], l3: usize) {
    let hl = usize::from(f[l3] & 0x0f) * 4;
    f[l3 + 10..l3 + 12].fill(0);
    let c = header_checksum(&f[l3..l3 + hl]);
    f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn ttl_decrement_equals_full_recompute(
        ihl in 5u8..=15,
        fields in any::<[u8; 20]>(),
        options in prop::collection::vec(any::<u8>(), 40),
        ttl in 2u8..=255,
        before in target(),
        after in target(),
        noncanonical_zero in any::<bool>(),
    ) {
        let l3 = 14;
        let mut f = header(ihl, fields, &options);
        if let Some(t) = after {
            // Steer the checksum of the header *after* the decrement.
            f[l3 + 8] = ttl - 1;
            steer(&mut f[l3..], 4, 10, t);
        } else if let Some(t) = before {
            f[l3 + 8] = ttl;
            steer(&mut f[l3..], 4, 10, t);
        }
        f[l3 + 8] = ttl;
        set_checksum(&mut f, l3);
        if noncanonical_zero && f[l3 + 10..l3 + 12] == [0, 0] {
            // 0xffff is the other representation of zero; a header carrying it is valid.
            f[l3 + 10..l3 + 12].copy_from_slice(&[0xff, 0xff]);
        }
        prop_assert!(Ipv4Header::parse(&f, l3).is_ok());
        if let Some(t) = after {
            let mut g = f.clone();
            g[l3 + 8] = ttl - 1;
            set_checksum(&mut g, l3);
            prop_assert_eq!(u16::from_be_bytes([g[l3 + 10], g[l3 + 11]]), t);
        }

        let mut inc = f.clone();
        prop_assert_eq!(decrement_ttl(&mut inc, l3), Ok(ttl - 1));
        let mut full = f.clone();
        full[l3 + 8] = ttl - 1;
        set_checksum(&mut full, l3);
        prop_assert_eq!(&inc, &full);
        prop_assert!(Ipv4Header::parse(&inc, l3).is_ok());
    }

    #[test]
    fn echo_reply_equals_full_recompute(
        fields in any::<[u8; 20]>(),
        id_seq in any::<[u8; 4]>(),
        data in prop::collection::vec(any::<u8>(), 0..64),
        zero_data in any::<bool>(),
        icmp_target in target(),
        tagged in any::<bool>(),
    ) {
        let l3 = if tagged { 18 } else { 14 };
        let mut f = vec![0u8; l3];
        let mut ip = fields.to_vec();
        ip[0] = 0x45;
        ip[6] &= 0x40; // DF may be set; not a fragment.
        ip[7] = 0;
        ip[9] = 1;
        let mut icmp = vec![8, 0, 0, 0];
        if zero_data {
            icmp.extend([0u8; 4]);
        } else {
            icmp.extend(id_seq);
            icmp.extend(&data);
        }
        if let Some(t) = icmp_target.filter(|_| !zero_data) {
            // Steer the reply's checksum (type 0) through the identifier.
            icmp[0] = 0;
            steer(&mut icmp, 4, 2, t);
            icmp[0] = 8;
        }
        let c = internet_checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let total = (20 + icmp.len()) as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        f.extend(ip);
        f.extend(&icmp);
        set_checksum(&mut f, l3);

        let mut reply = f.clone();
        prop_assert_eq!(icmp_echo_reply(&mut reply, l3), Ok(()));

        let mut full = f.clone();
        let (src, dst) = (full[l3 + 12..l3 + 16].to_vec(), full[l3 + 16..l3 + 20].to_vec());
        full[l3 + 12..l3 + 16].copy_from_slice(&dst);
        full[l3 + 16..l3 + 20].copy_from_slice(&src);
        full[l3 + 8] = REPLY_TTL;
        set_checksum(&mut full, l3);
        let m = l3 + 20;
        full[m] = 0;
        full[m + 2..m + 4].fill(0);
        let c = internet_checksum(&full[m..]);
        full[m + 2..m + 4].copy_from_slice(&c.to_be_bytes());
        prop_assert_eq!(&reply, &full);
        if zero_data {
            prop_assert_eq!(&reply[m..], &[0, 0, 0xff, 0xff, 0, 0, 0, 0][..]);
        }
        if let Some(t) = icmp_target.filter(|_| !zero_data) {
            prop_assert_eq!(u16::from_be_bytes([reply[m + 2], reply[m + 3]]), t);
        }
        let h = Ipv4Header::parse(&reply, l3).unwrap();
        prop_assert_eq!(internet_checksum(h.payload()), 0);
    }
}
