//! Port VLAN modes: access (one VLAN, untagged on the wire) and trunk (a set of tagged VLANs,
//! optionally one native VLAN carried untagged), the OVS model.

use serde::{Deserialize, Serialize};

/// Largest VLAN id (4095 is reserved).
pub const MAX_VID: u16 = 4094;

/// A set of VLAN ids, one bit each.
#[derive(Clone, PartialEq, Eq)]
pub struct VlanSet([u64; 64]);

impl VlanSet {
    /// No VLAN.
    pub const fn empty() -> VlanSet {
        VlanSet([0; 64])
    }
    /// Every VLAN 0..=4094.
    pub fn all() -> VlanSet {
        let mut s = VlanSet([u64::MAX; 64]);
        s.0[63] &= !(1 << 63); // 4095 is reserved
        s
    }
    /// Adds `vid`.
    pub fn insert(&mut self, vid: u16) {
        self.0[(vid as usize >> 6) & 63] |= 1 << (vid & 63);
    }
    /// True when `vid` is in the set.
    #[inline]
    pub fn contains(&self, vid: u16) -> bool {
        self.0[(vid as usize >> 6) & 63] & (1 << (vid & 63)) != 0
    }
    /// The ids in the set, in order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..=MAX_VID).filter(|&v| self.contains(v))
    }
}

impl std::fmt::Debug for VlanSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// How a port carries VLANs, as configured.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VlanConfig {
    /// Access VLAN: untagged frames on the wire belong to this VLAN; tagged ones are dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<u16>,
    /// Trunk VLANs carried tagged (empty: every VLAN, as OVS does).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trunks: Vec<u16>,
    /// On a trunk, the VLAN that untagged frames belong to (and that leaves untagged).
    /// Without it untagged frames on a trunk belong to VLAN 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native: Option<u16>,
}

/// Why a VLAN configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VlanConfigError {
    /// A VLAN id out of 0..=4094 (or 1..=4094 for an access tag).
    #[error("VLAN id {0} is out of range (use 1..=4094)")]
    BadVid(u16),
    /// Both an access tag and trunks were given.
    #[error("a port is either an access port (tag) or a trunk (trunks): not both")]
    TagAndTrunks,
}

/// A port's VLAN behaviour, compiled for the data path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VlanMode {
    /// Untagged on the wire, one VLAN inside.
    Access(u16),
    /// Tagged VLANs in `allowed`; untagged frames belong to `native`, which leaves untagged.
    Trunk {
        /// VLANs the port carries.
        allowed: Box<VlanSet>,
        /// VLAN of untagged frames.
        native: u16,
    },
}

/// What to do with a frame arriving on a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingress {
    /// The frame belongs to this VLAN.
    Vlan(u16),
    /// The port does not carry the frame's VLAN.
    NotAllowed,
}

/// How a frame of some VLAN leaves a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Egress {
    /// Untagged.
    Untagged,
    /// Tagged with the VLAN id.
    Tagged,
    /// The port does not carry this VLAN.
    NotAllowed,
}

impl VlanMode {
    /// Checks and compiles a configuration.
    pub fn from_config(c: &VlanConfig) -> Result<VlanMode, VlanConfigError> {
        if c.tag.is_some() && (!c.trunks.is_empty() || c.native.is_some()) {
            return Err(VlanConfigError::TagAndTrunks);
        }
        if let Some(t) = c.tag {
            if t == 0 || t > MAX_VID {
                return Err(VlanConfigError::BadVid(t));
            }
            return Ok(VlanMode::Access(t));
        }
        let mut allowed = if c.trunks.is_empty() {
            VlanSet::all()
        } else {
            VlanSet::empty()
        };
        for &v in &c.trunks {
            if v > MAX_VID {
                return Err(VlanConfigError::BadVid(v));
            }
            allowed.insert(v);
        }
        let native = c.native.unwrap_or(0);
        if native > MAX_VID {
            return Err(VlanConfigError::BadVid(native));
        }
        allowed.insert(native);
        Ok(VlanMode::Trunk {
            allowed: Box::new(allowed),
            native,
        })
    }

    /// The VLAN a frame with tag `vid` (None: untagged; Some(0): priority-tagged) belongs to.
    #[inline]
    pub fn ingress(&self, vid: Option<u16>) -> Ingress {
        match (self, vid) {
            (VlanMode::Access(v), None | Some(0)) => Ingress::Vlan(*v),
            (VlanMode::Access(_), Some(_)) => Ingress::NotAllowed,
            (VlanMode::Trunk { native, .. }, None | Some(0)) => Ingress::Vlan(*native),
            (VlanMode::Trunk { allowed, .. }, Some(v)) if allowed.contains(v) => Ingress::Vlan(v),
            (VlanMode::Trunk { .. }, Some(_)) => Ingress::NotAllowed,
        }
    }

    /// How a frame of `vlan` leaves this port.
    #[inline]
    pub fn egress(&self, vlan: u16) -> Egress {
        match self {
            VlanMode::Access(v) if *v == vlan => Egress::Untagged,
            VlanMode::Access(_) => Egress::NotAllowed,
            VlanMode::Trunk { native, .. } if *native == vlan => Egress::Untagged,
            VlanMode::Trunk { allowed, .. } if allowed.contains(vlan) => Egress::Tagged,
            VlanMode::Trunk { .. } => Egress::NotAllowed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_port() {
        let m = VlanMode::from_config(&VlanConfig {
            tag: Some(10),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(m.ingress(None), Ingress::Vlan(10));
        assert_eq!(m.ingress(Some(0)), Ingress::Vlan(10));
        assert_eq!(m.ingress(Some(10)), Ingress::NotAllowed);
        assert_eq!(m.egress(10), Egress::Untagged);
        assert_eq!(m.egress(20), Egress::NotAllowed);
    }

    #[test]
    fn trunk_port() {
        let m = VlanMode::from_config(&VlanConfig {
            trunks: vec![10, 20],
            native: Some(5),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(m.ingress(None), Ingress::Vlan(5));
        assert_eq!(m.ingress(Some(20)), Ingress::Vlan(20));
        assert_eq!(m.ingress(Some(30)), Ingress::NotAllowed);
        assert_eq!(m.egress(5), Egress::Untagged);
        assert_eq!(m.egress(10), Egress::Tagged);
        assert_eq!(m.egress(30), Egress::NotAllowed);
        let all = VlanMode::from_config(&VlanConfig::default()).unwrap();
        assert_eq!(all.ingress(Some(4094)), Ingress::Vlan(4094));
        assert_eq!(all.egress(0), Egress::Untagged);
        assert_eq!(all.egress(7), Egress::Tagged);
    }

    #[test]
    fn bad_configs() {
        let c = |tag, trunks: Vec<u16>| VlanConfig {
            tag,
            trunks,
            native: None,
        };
        assert_eq!(
            VlanMode::from_config(&c(Some(0), vec![])),
            Err(VlanConfigError::BadVid(0))
        );
        assert_eq!(
            VlanMode::from_config(&c(Some(4095), vec![])),
            Err(VlanConfigError::BadVid(4095))
        );
        assert_eq!(
            VlanMode::from_config(&c(Some(1), vec![2])),
            Err(VlanConfigError::TagAndTrunks)
        );
        assert_eq!(
            VlanMode::from_config(&c(None, vec![5000])),
            Err(VlanConfigError::BadVid(5000))
        );
    }
}
