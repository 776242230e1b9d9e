//! A VF's policy compiled for the data path, and the decisions it makes on each frame: what
//! may leave the VF (anti-spoofing, VLAN insertion) and what may reach it (VLAN filter and
//! strip, receive modes).
//!
//! The compiled form holds the VLANs as a 4096-bit set and at most [`MAX_MACS`] addresses, so
//! a decision is a few loads and compares: no allocation, no lock.

use ferrovia_ethdev::MacAddr;

use crate::vfconfig::VfConfig;

/// Most MAC addresses one VF may own.
pub const MAX_MACS: usize = 16;

const TPID_CTAG: u16 = 0x8100;
const TPID_STAG: u16 = 0x88a8;

/// Why a frame was dropped: one counter each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropCause {
    /// Shorter than an Ethernet header.
    Runt,
    /// From the VF with a source MAC it does not own.
    MacSpoof,
    /// From the VF with a VLAN it may not use (or tagged when its tag is inserted for it).
    VlanSpoof,
    /// Untagged where the policy wants a tag.
    Untagged,
    /// To the VF on a VLAN it is not in.
    VlanFilter,
    /// Broadcast to a VF that does not accept broadcast.
    Broadcast,
    /// Multicast to a VF that does not accept multicast.
    Multicast,
    /// Unicast to an address the VF does not own, without promiscuous unicast.
    UnknownUnicast,
    /// The VF's transmit or receive is disabled.
    Disabled,
}

/// What to do with a frame that passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagAction {
    /// Forward as it is.
    Keep,
    /// Insert an 802.1Q tag with this VLAN (frames leaving a VF with `strip_stag`).
    Insert(u16),
    /// Remove the outer tag (frames to a VF with `strip_stag`); with `and_inner`, a second
    /// (customer) tag too.
    Strip {
        /// Also remove an inner tag (`strip_ctag`).
        and_inner: bool,
    },
}

/// A VF's policy, compiled.
#[derive(Clone, Debug)]
pub struct VfPolicy {
    macs: [[u8; 6]; MAX_MACS],
    nb_macs: usize,
    vlans: Box<[u64; 64]>,
    first_vlan: Option<u16>,
    any_vlan: bool,
    strip_stag: bool,
    strip_ctag: bool,
    allow_untagged: bool,
    allow_bcast: bool,
    allow_mcast: bool,
    allow_un_ucast: bool,
    mac_anti_spoof: bool,
    vlan_anti_spoof: bool,
    /// Transmit enabled (the VF may send).
    pub tx_enabled: bool,
    /// Receive enabled (frames may reach the VF).
    pub rx_enabled: bool,
}

/// A frame's outer tag, if any: (VLAN, bytes of tags counted from offset 12).
fn outer_tag(f: &[u8]) -> Option<u16> {
    let tpid = u16::from_be_bytes([f[12], f[13]]);
    if (tpid == TPID_CTAG || tpid == TPID_STAG) && f.len() >= 18 {
        Some(u16::from_be_bytes([f[14], f[15]]) & 0x0fff)
    } else {
        None
    }
}

impl VfPolicy {
    /// Compiles a checked configuration. `default_mac` is the VF's address when the file
    /// lists none. Extra MACs beyond [`MAX_MACS`] are refused.
    pub fn compile(c: &VfConfig, default_mac: MacAddr) -> Result<VfPolicy, String> {
        let list: Vec<MacAddr> = if c.macs.is_empty() {
            vec![default_mac]
        } else {
            c.macs.clone()
        };
        if list.len() > MAX_MACS {
            return Err(format!(
                "VF {}: {} MACs, at most {MAX_MACS}",
                c.vfid,
                list.len()
            ));
        }
        let mut macs = [[0u8; 6]; MAX_MACS];
        for (slot, m) in macs.iter_mut().zip(&list) {
            *slot = m.0;
        }
        let mut vlans = Box::new([0u64; 64]);
        for &v in &c.vlans {
            vlans[usize::from(v) / 64] |= 1 << (v % 64);
        }
        Ok(VfPolicy {
            macs,
            nb_macs: list.len(),
            vlans,
            first_vlan: c.vlans.first().copied(),
            any_vlan: c.vlans.is_empty(),
            strip_stag: c.strip_stag,
            strip_ctag: c.strip_ctag,
            allow_untagged: c.allow_untagged || c.vlans.is_empty(),
            allow_bcast: c.allow_bcast,
            allow_mcast: c.allow_mcast,
            allow_un_ucast: c.allow_un_ucast,
            mac_anti_spoof: c.mac_anti_spoof,
            vlan_anti_spoof: c.vlan_anti_spoof,
            tx_enabled: true,
            rx_enabled: true,
        })
    }

    /// The VF's primary MAC.
    pub fn primary_mac(&self) -> MacAddr {
        MacAddr(self.macs[0])
    }

    /// Whether the VF owns `mac` (one of its addresses).
    #[inline]
    pub fn owns_mac(&self, mac: &[u8]) -> bool {
        self.owns(mac)
    }

    #[inline]
    fn owns(&self, mac: &[u8]) -> bool {
        self.macs[..self.nb_macs].iter().any(|m| m[..] == *mac)
    }

    #[inline]
    fn in_vlan(&self, vid: u16) -> bool {
        self.any_vlan || self.vlans[usize::from(vid) / 64] & (1 << (vid % 64)) != 0
    }

    /// Judges a frame the VF sends. On success, what to do to its tag before switching.
    #[inline]
    pub fn egress(&self, f: &[u8]) -> Result<TagAction, DropCause> {
        if f.len() < 14 {
            return Err(DropCause::Runt);
        }
        if !self.tx_enabled {
            return Err(DropCause::Disabled);
        }
        if self.mac_anti_spoof && !self.owns(&f[6..12]) {
            return Err(DropCause::MacSpoof);
        }
        let tag = outer_tag(f);
        if self.strip_stag {
            // The switch tags for the VF; a VF choosing its own VLAN is spoofing.
            return match (tag, self.first_vlan) {
                (Some(_), _) if self.vlan_anti_spoof => Err(DropCause::VlanSpoof),
                (Some(_), _) => Ok(TagAction::Keep),
                (None, Some(v)) => Ok(TagAction::Insert(v)),
                (None, None) => Ok(TagAction::Keep),
            };
        }
        match tag {
            Some(v) if self.vlan_anti_spoof && !self.in_vlan(v) => Err(DropCause::VlanSpoof),
            None if self.vlan_anti_spoof && !self.allow_untagged => Err(DropCause::Untagged),
            _ => Ok(TagAction::Keep),
        }
    }

    /// Judges a frame the switch would deliver to the VF (its tags as on the wire). On
    /// success, what to do to its tag before delivery.
    #[inline]
    pub fn ingress(&self, f: &[u8]) -> Result<TagAction, DropCause> {
        if f.len() < 14 {
            return Err(DropCause::Runt);
        }
        if !self.rx_enabled {
            return Err(DropCause::Disabled);
        }
        let tag = outer_tag(f);
        match tag {
            Some(v) if !self.in_vlan(v) => return Err(DropCause::VlanFilter),
            None if !self.allow_untagged => return Err(DropCause::Untagged),
            _ => {}
        }
        let dst = &f[0..6];
        if dst == [0xff; 6] {
            if !self.allow_bcast {
                return Err(DropCause::Broadcast);
            }
        } else if dst[0] & 1 != 0 {
            if !self.allow_mcast {
                return Err(DropCause::Multicast);
            }
        } else if !self.allow_un_ucast && !self.owns(dst) {
            return Err(DropCause::UnknownUnicast);
        }
        Ok(match tag {
            Some(_) if self.strip_stag => TagAction::Strip {
                and_inner: self.strip_ctag,
            },
            _ => TagAction::Keep,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfconfig::{Limits, VfConfig};
    use proptest::prelude::*;

    const L: Limits = Limits {
        max_vfs: 8,
        line_rate_mbps: 10_000.0,
    };
    const OWN: [u8; 6] = [2, 0, 0, 0, 3, 1];
    const OTHER: [u8; 6] = [2, 0, 0, 0, 9, 9];

    fn policy(json: &str) -> VfPolicy {
        let c = VfConfig::parse(json, "t", &L).unwrap();
        VfPolicy::compile(&c, MacAddr([2, 0, 0, 0, 0, 0xee])).unwrap()
    }

    fn frame(dst: [u8; 6], src: [u8; 6], vid: Option<u16>) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend(dst);
        f.extend(src);
        if let Some(v) = vid {
            f.extend(0x8100u16.to_be_bytes());
            f.extend(v.to_be_bytes());
        }
        f.extend(0x0800u16.to_be_bytes());
        f.resize(60, 0);
        f
    }

    #[test]
    fn mac_anti_spoof() {
        let p = policy(r#"{"name":"a","vfid":1,"macs":["02:00:00:00:03:01"]}"#);
        assert_eq!(p.egress(&frame(OTHER, OWN, None)), Ok(TagAction::Keep));
        assert_eq!(p.egress(&frame(OWN, OTHER, None)), Err(DropCause::MacSpoof));
        let p =
            policy(r#"{"name":"a","vfid":1,"macs":["02:00:00:00:03:01"],"mac_anti_spoof":false}"#);
        assert_eq!(p.egress(&frame(OWN, OTHER, None)), Ok(TagAction::Keep));
        // No MACs listed: the VF owns its default address only.
        let p = policy(r#"{"name":"a","vfid":1}"#);
        assert_eq!(p.primary_mac(), MacAddr([2, 0, 0, 0, 0, 0xee]));
        assert_eq!(p.egress(&frame(OTHER, OWN, None)), Err(DropCause::MacSpoof));
    }

    #[test]
    fn vlan_insert_strip_and_anti_spoof() {
        let p = policy(
            r#"{"name":"a","vfid":1,"macs":["02:00:00:00:03:01"],"vlans":[10],"strip_stag":true,"allow_bcast":true}"#,
        );
        // Untagged from the VF: tagged 10 for it. Tagged by the VF: spoofing.
        assert_eq!(
            p.egress(&frame(OTHER, OWN, None)),
            Ok(TagAction::Insert(10))
        );
        assert_eq!(
            p.egress(&frame(OTHER, OWN, Some(10))),
            Err(DropCause::VlanSpoof)
        );
        // To the VF: VLAN 10 stripped, other VLANs and untagged filtered.
        assert_eq!(
            p.ingress(&frame(OWN, OTHER, Some(10))),
            Ok(TagAction::Strip { and_inner: false })
        );
        assert_eq!(
            p.ingress(&frame(OWN, OTHER, Some(11))),
            Err(DropCause::VlanFilter)
        );
        assert_eq!(
            p.ingress(&frame(OWN, OTHER, None)),
            Err(DropCause::Untagged)
        );
        // Trunk VF: two VLANs, tags kept, anything else spoofing.
        let p = policy(r#"{"name":"a","vfid":1,"macs":["02:00:00:00:03:01"],"vlans":[10,20]}"#);
        assert_eq!(p.egress(&frame(OTHER, OWN, Some(20))), Ok(TagAction::Keep));
        assert_eq!(
            p.egress(&frame(OTHER, OWN, Some(30))),
            Err(DropCause::VlanSpoof)
        );
        assert_eq!(p.egress(&frame(OTHER, OWN, None)), Err(DropCause::Untagged));
        assert_eq!(p.ingress(&frame(OWN, OTHER, Some(20))), Ok(TagAction::Keep));
        let p = policy(
            r#"{"name":"a","vfid":1,"macs":["02:00:00:00:03:01"],"vlans":[10,20],"allow_untagged":true}"#,
        );
        assert_eq!(p.egress(&frame(OTHER, OWN, None)), Ok(TagAction::Keep));
        assert_eq!(p.ingress(&frame(OWN, OTHER, None)), Ok(TagAction::Keep));
    }

    #[test]
    fn receive_modes() {
        let bc = [0xff; 6];
        let mc = [0x01, 0, 0x5e, 0, 0, 1];
        let strict = policy(r#"{"name":"a","vfid":1,"macs":["02:00:00:00:03:01"]}"#);
        assert_eq!(
            strict.ingress(&frame(bc, OTHER, None)),
            Err(DropCause::Broadcast)
        );
        assert_eq!(
            strict.ingress(&frame(mc, OTHER, None)),
            Err(DropCause::Multicast)
        );
        assert_eq!(
            strict.ingress(&frame(OTHER, OTHER, None)),
            Err(DropCause::UnknownUnicast)
        );
        assert_eq!(
            strict.ingress(&frame(OWN, OTHER, None)),
            Ok(TagAction::Keep)
        );
        let open = policy(
            r#"{"name":"a","vfid":1,"macs":["02:00:00:00:03:01"],"allow_bcast":true,"allow_mcast":true,"allow_un_ucast":true}"#,
        );
        for d in [bc, mc, OTHER, OWN] {
            assert_eq!(open.ingress(&frame(d, OTHER, None)), Ok(TagAction::Keep));
        }
    }

    #[test]
    fn disabled_vf_neither_sends_nor_receives() {
        let mut p = policy(r#"{"name":"a","vfid":1,"macs":["02:00:00:00:03:01"]}"#);
        p.tx_enabled = false;
        p.rx_enabled = false;
        assert_eq!(p.egress(&frame(OTHER, OWN, None)), Err(DropCause::Disabled));
        assert_eq!(
            p.ingress(&frame(OWN, OTHER, None)),
            Err(DropCause::Disabled)
        );
    }

    proptest! {
        #[test]
        fn never_panics(f in proptest::collection::vec(any::<u8>(), 0..80), vid in 1u16..4095) {
            let p = policy(&format!(
                r#"{{"name":"a","vfid":1,"macs":["02:00:00:00:03:01"],"vlans":[{vid}],"strip_stag":true}}"#
            ));
            let _ = p.egress(&f);
            let _ = p.ingress(&f);
        }
    }
}
