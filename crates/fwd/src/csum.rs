//! `csum`: DPDK's checksum forwarding mode. Each packet's Ethernet, IPv4/IPv6 and TCP/UDP
//! headers are parsed; its Rx checksum state is counted (a bad IP or L4 checksum, from the
//! port's offload flags, or checked in software when the port did not say); then its
//! checksums are redone for the Tx port as [`CsumConf`] says: in hardware (Tx offload flags,
//! header lengths and, for L4, the pseudo-header checksum in the field, as DPDK requires of
//! an application) or in software; with `tso set` TCP packets larger than the segment size
//! are marked for segmentation. MAC addresses are rewritten as in `mac` mode.

use ferrovia_memory::cksum::{self, L3, Layers, TCP_CSUM_OFF, UDP_CSUM_OFF};
use ferrovia_memory::mbuf::{
    OL_RX_IP_CKSUM_BAD, OL_RX_IP_CKSUM_MASK, OL_RX_L4_CKSUM_BAD, OL_RX_L4_CKSUM_MASK,
    OL_TX_IP_CKSUM, OL_TX_IPV4, OL_TX_IPV6, OL_TX_TCP_CKSUM, OL_TX_TCP_SEG, OL_TX_UDP_CKSUM,
};
use ferrovia_memory::{LcoreCaches, Mbuf};

use crate::pkt::set_macs;
use crate::{Engine, Stream, StreamCounters};

/// What the csum engine does for packets sent on one port (testpmd's `csum set` and
/// `tso set`): each checksum in hardware (the port's Tx offload) or in software.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CsumConf {
    /// IPv4 header checksum by the port.
    pub ip_hw: bool,
    /// UDP checksum by the port.
    pub udp_hw: bool,
    /// TCP checksum by the port.
    pub tcp_hw: bool,
    /// TCP segment size for TSO (0: off).
    pub tso_segsz: u16,
}

/// The csum engine.
#[derive(Debug, Default)]
pub struct Csum;

impl Engine for Csum {
    fn name(&self) -> &'static str {
        "csum"
    }
    #[inline]
    fn forward(&mut self, caches: &mut LcoreCaches, s: &mut Stream) {
        if s.receive(caches) == 0 {
            return;
        }
        let conf = s.params.csum;
        let (dst, src) = (s.params.peer_mac.0, s.params.tx_mac.0);
        let (mut bad_ip, mut bad_l4) = (0, 0);
        for m in s.burst.iter_mut() {
            let (ip, l4) = process(m, &conf);
            bad_ip += u64::from(!ip);
            bad_l4 += u64::from(!l4);
            set_macs(m.data_mut(), &dst, &src);
        }
        StreamCounters::bump(&s.counters.rx_bad_ip_csum, bad_ip);
        StreamCounters::bump(&s.counters.rx_bad_l4_csum, bad_l4);
        s.send(caches);
    }
}

/// Checks and redoes the checksums of one packet; returns whether its IP and L4 checksums
/// were good on receive. A packet that does not parse as IP with whole headers in its first
/// segment is forwarded untouched (its flags cleared); an IP packet spanning a chain (an LRO
/// packet) has its headers in the first segment and is handled like any other.
pub fn process(m: &mut Mbuf, conf: &CsumConf) -> (bool, bool) {
    let rx = m.ol_flags();
    m.set_ol_flags(0);
    let Some(l) = cksum::parse_headers(m.data(), m.pkt_len()) else {
        return (true, true);
    };
    let whole = m.nb_segs() == 1;
    let ip_ok = match rx & OL_RX_IP_CKSUM_MASK {
        OL_RX_IP_CKSUM_BAD => false,
        0 => cksum::ip_cksum_ok(m.data(), &l),
        _ => true,
    };
    let l4_ok = match rx & OL_RX_L4_CKSUM_MASK {
        OL_RX_L4_CKSUM_BAD => false,
        // Only a packet in one segment is checked in software.
        0 => !whole || cksum::l4_cksum_ok(m.data(), &l),
        _ => true,
    };
    tx_checksums(m, &l, conf);
    (ip_ok, l4_ok)
}

/// Prepares `m`'s checksums for transmission as `conf` says.
fn tx_checksums(m: &mut Mbuf, l: &Layers, conf: &CsumConf) {
    if !m.set_header_lens(l.l2_len, l.l3_len, l.l4_len) {
        return;
    }
    let mut tx = 0;
    match l.l3 {
        L3::Ipv4 => {
            tx |= OL_TX_IPV4;
            let Some(h) = m.first_seg_range_mut(l.l2_len, l.l3_len) else {
                return;
            };
            h[10..12].fill(0);
            if conf.ip_hw {
                tx |= OL_TX_IP_CKSUM;
            } else {
                let c = cksum::ipv4_hdr_cksum(h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
        }
        L3::Ipv6 => tx |= OL_TX_IPV6,
    }
    let Some(off) = l.l4_csum_off() else {
        m.set_ol_flags(tx);
        return;
    };
    let l4 = l.l4_off();
    let l4_bytes = l.l3_end - l4;
    let payload = l4_bytes - l.l4_len;
    let tso = off == TCP_CSUM_OFF && conf.tso_segsz != 0 && payload > conf.tso_segsz as usize;
    let hw = tso
        || match off {
            TCP_CSUM_OFF => conf.tcp_hw,
            UDP_CSUM_OFF => conf.udp_hw,
            _ => false,
        };
    // The pseudo-header checksum: what hardware offload needs in the field, and the start of
    // the software sum (segmentation leaves the length out).
    // The addresses are in the first 40 bytes of the IP header (IPv6: exactly those).
    let mut ip = [0u8; 40];
    let n = l.l3_len.min(40);
    ip[..n].copy_from_slice(&m.data()[l.l2_len..l.l2_len + n]);
    let len = if tso { 0 } else { l4_bytes };
    let Some(ph) = cksum::phdr_cksum(&ip[..n], l.l3, l.l4_proto, len) else {
        return;
    };
    let Some(f) = m.first_seg_range_mut(l4 + off, 2) else {
        return;
    };
    f.copy_from_slice(&ph.to_be_bytes());
    if tso {
        tx |= OL_TX_TCP_SEG | OL_TX_TCP_CKSUM;
        m.set_tso_segsz(conf.tso_segsz);
    } else if hw {
        tx |= if off == TCP_CSUM_OFF {
            OL_TX_TCP_CKSUM
        } else {
            OL_TX_UDP_CKSUM
        };
    } else {
        cksum::complete_partial(m, l4, off);
    }
    m.set_ol_flags(tx);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pkt::FrameTemplate;
    use ferrovia_memory::mbuf::{OL_RX_L4_CKSUM_GOOD, OL_RX_L4_CKSUM_NONE};
    use ferrovia_memory::{Mempool, MempoolConfig};

    fn udp_frame(len: usize) -> Vec<u8> {
        FrameTemplate::udp4(&[2, 0, 0, 0, 0, 1], &[2, 0, 0, 0, 0, 2], len, 3)
            .bytes()
            .to_vec()
    }

    #[test]
    fn software_and_hardware_modes() {
        let p = Mempool::new(MempoolConfig {
            count: 8,
            ..Default::default()
        })
        .unwrap();
        let good = udp_frame(300);
        let mut m = p.alloc().unwrap();
        m.append(good.len()).unwrap().copy_from_slice(&good);
        // Software everywhere: the frame stays correct, no flags.
        assert_eq!(process(&mut m, &CsumConf::default()), (true, true));
        assert_eq!(m.to_vec(), good);
        assert_eq!(m.ol_flags(), OL_TX_IPV4);
        // Hardware: flags, lengths, IPv4 checksum zero, pseudo-header in the UDP field.
        let hw = CsumConf {
            ip_hw: true,
            udp_hw: true,
            tcp_hw: true,
            tso_segsz: 0,
        };
        assert_eq!(process(&mut m, &hw), (true, true));
        assert_eq!(m.ol_flags(), OL_TX_IPV4 | OL_TX_IP_CKSUM | OL_TX_UDP_CKSUM);
        assert_eq!((m.l2_len(), m.l3_len(), m.l4_len()), (14, 20, 8));
        // What a port does with those flags gives back the original frame.
        assert!(cksum::tx_offload_sw(&mut m));
        assert_eq!(m.to_vec(), good);
        // A corrupted payload is counted bad when the port said nothing ...
        m.set_ol_flags(0);
        m.data_mut()[100] ^= 0xff;
        assert_eq!(process(&mut m, &CsumConf::default()), (true, false));
        // ... and trusted when the port checked it (GOOD) or vouched for the data (NONE).
        for f in [OL_RX_L4_CKSUM_GOOD, OL_RX_L4_CKSUM_NONE] {
            m.data_mut()[100] ^= 0xff;
            m.set_ol_flags(f);
            assert_eq!(process(&mut m, &CsumConf::default()), (true, true));
        }
        // A bad IPv4 header checksum.
        m.set_ol_flags(0);
        m.data_mut()[24] ^= 1;
        assert!(!process(&mut m, &CsumConf::default()).0);
    }

    /// A TCP/IPv4 frame of `payload` bytes with correct checksums.
    fn tcp_frame(payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20 + payload];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let tot = (20 + 20 + payload) as u16;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&tot.to_be_bytes());
        f[22] = 64;
        f[23] = cksum::IPPROTO_TCP;
        f[26..30].copy_from_slice(&[10, 9, 3, 1]);
        f[30..34].copy_from_slice(&[10, 9, 3, 2]);
        f[34 + 12] = 5 << 4;
        f[34 + 13] = 0x18;
        for (i, b) in f[54..].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        let c = cksum::ipv4_hdr_cksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        let ph = cksum::phdr_cksum(&f[14..34], L3::Ipv4, cksum::IPPROTO_TCP, 20 + payload).unwrap();
        f[34 + 16..34 + 18].copy_from_slice(&ph.to_be_bytes());
        let c = crate::pkt::csum_fold(crate::pkt::csum_add(0, &f[34..]));
        f[34 + 16..34 + 18].copy_from_slice(&c.to_be_bytes());
        f
    }

    /// An LRO packet (a chain of segments, its checksum vouched for by the port): its headers
    /// are found in the first segment, and it is marked for segmentation, or its checksum
    /// redone over the whole chain in software.
    #[test]
    fn a_chained_lro_packet_is_segmented_or_checksummed() {
        let p = Mempool::new(MempoolConfig {
            count: 16,
            ..Default::default()
        })
        .unwrap();
        let frame = tcp_frame(5000);
        let chain = |f: &[u8]| {
            let mut head = p.alloc().unwrap();
            for (i, part) in f.chunks(1500).enumerate() {
                if i == 0 {
                    head.append(part.len()).unwrap().copy_from_slice(part);
                } else {
                    let mut seg = p.alloc().unwrap();
                    seg.append(part.len()).unwrap().copy_from_slice(part);
                    head.chain(seg);
                }
            }
            head.set_ol_flags(OL_RX_L4_CKSUM_NONE);
            head
        };
        let mut m = chain(&frame);
        assert!(m.nb_segs() > 1);
        let tso = CsumConf {
            tso_segsz: 1448,
            ..CsumConf::default()
        };
        assert_eq!(process(&mut m, &tso), (true, true));
        assert_eq!(
            m.ol_flags(),
            OL_TX_IPV4 | OL_TX_TCP_SEG | OL_TX_TCP_CKSUM,
            "marked for TSO"
        );
        assert_eq!(m.tso_segsz(), 1448);
        assert_eq!((m.l2_len(), m.l3_len(), m.l4_len()), (14, 20, 20));
        // Without TSO the checksum is completed in software over the whole chain.
        let mut m = chain(&frame);
        m.first_seg_range_mut(34 + 16, 2).unwrap().fill(0xab);
        assert_eq!(process(&mut m, &CsumConf::default()), (true, true));
        assert_eq!(m.ol_flags(), OL_TX_IPV4);
        assert!(
            m.to_vec() == frame,
            "the chain's checksums are not the original's"
        );
        assert!(cksum::l4_cksum_ok(&frame, &cksum::parse(&frame).unwrap()));
    }
}
