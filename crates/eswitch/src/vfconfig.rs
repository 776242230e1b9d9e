//! One VF's configuration file, in AT&T VFd's JSON form, read and checked.
//!
//! ```json
//! {
//!   "name": "vnf1/eth1", "pciid": "pf0", "vfid": 3,
//!   "strip_stag": true, "strip_ctag": false, "allow_untagged": false,
//!   "allow_bcast": true, "allow_mcast": true, "allow_un_ucast": false,
//!   "mac_anti_spoof": true, "vlan_anti_spoof": true,
//!   "vlans": [10], "macs": ["02:00:00:00:03:01"],
//!   "rate": 1000.0, "min_rate": 100.0,
//!   "link_status": "auto",
//!   "queues": [ { "priority": 0, "share": "40%" }, { "priority": 1, "share": "60%" } ],
//!   "mirror": { "target": 5, "direction": "all" }
//! }
//! ```
//!
//! Two rules come from VFd:
//! - `strip_stag` implies inserting the tag on the VF's transmit side; there is no separate
//!   insert key.
//! - More than one VLAN requires `strip_stag: false`, because a stripped frame could not say
//!   which VLAN it came from.
//!
//! Our units: `rate` (the VF's maximum transmit rate) and `min_rate` (its guaranteed share)
//! are in Mbit/s. Each is above 0 and at most the line rate. An absent `rate` means
//! unlimited. `start_cb` and `stop_cb` are accepted and kept, but never run.

use std::collections::BTreeSet;

use ferrovia_ethdev::MacAddr;
use serde::Deserialize;

/// When the VF hears about the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkStatus {
    /// Always up, whatever the uplink does.
    On,
    /// Always down: the VF is cut off.
    Off,
    /// Follows the uplink.
    Auto,
}

/// Which traffic a mirror copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MirrorDirection {
    /// Frames going to the VF.
    In,
    /// Frames leaving the VF.
    Out,
    /// Both.
    All,
    /// No mirroring.
    Off,
}

/// A mirror of this VF's traffic to another VF.
#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// The VF that receives the copies.
    pub target: u32,
    /// Which frames.
    pub direction: MirrorDirection,
}

/// A transmit queue's traffic class: a strict priority and a minimum share of the VF's
/// bandwidth.
#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueShare {
    /// Strict priority, 0 (highest) to 7.
    pub priority: u8,
    /// Minimum share of the VF's bandwidth: `"40%"` or `40`.
    pub share: Share,
}

/// A percentage given as `"40%"` or as a number.
#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum Share {
    /// `40`.
    Number(f64),
    /// `"40%"`.
    Text(String),
}

impl Share {
    pub(crate) fn percent(&self) -> Result<f64, String> {
        let v = match self {
            Share::Number(n) => *n,
            Share::Text(t) => t
                .trim()
                .trim_end_matches('%')
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("share {t:?} is not a percentage like \"40%\""))?,
        };
        if !(0.0..=100.0).contains(&v) || !v.is_finite() {
            return Err(format!("share {v} is outside 0..100 %"));
        }
        Ok(v)
    }
}

/// The file as written, VFd's keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVf {
    name: String,
    #[serde(default)]
    pciid: Option<String>,
    vfid: u32,
    #[serde(default)]
    strip_stag: bool,
    #[serde(default)]
    strip_ctag: bool,
    #[serde(default)]
    allow_untagged: bool,
    #[serde(default)]
    allow_bcast: bool,
    #[serde(default)]
    allow_mcast: bool,
    #[serde(default)]
    allow_un_ucast: bool,
    #[serde(default = "yes")]
    mac_anti_spoof: bool,
    #[serde(default = "yes")]
    vlan_anti_spoof: bool,
    #[serde(default)]
    vlans: Vec<i64>,
    #[serde(default)]
    macs: Vec<String>,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    vm_mac: Option<String>,
    #[serde(default)]
    rate: Option<f64>,
    #[serde(default)]
    min_rate: Option<f64>,
    #[serde(default = "auto")]
    link_status: LinkStatus,
    #[serde(default)]
    queues: Vec<QueueShare>,
    #[serde(default)]
    mirror: Option<Mirror>,
    #[serde(default)]
    start_cb: Option<String>,
    #[serde(default)]
    stop_cb: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    vf_requests: RequestPolicy,
    #[serde(default = "default_request_rate")]
    vf_request_rate: f64,
}

fn default_request_rate() -> f64 {
    DEFAULT_REQUEST_RATE
}

/// Control-queue requests a VF may make per second by default (`vf_request_rate`), after a
/// burst of [`REQUEST_BURST`].
pub const DEFAULT_REQUEST_RATE: f64 = 100.0;

/// Requests a VF may make at once before `vf_request_rate` paces it.
pub const REQUEST_BURST: f64 = 64.0;

/// What the PF does with a VF's requests over its virtio-net control queue (MAC, VLAN filter,
/// receive modes): `vf_requests` in the VF's file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestPolicy {
    /// Applied to the VF's policy, acked OK (the VF is trusted).
    Allow,
    /// Refused: acked `VIRTIO_NET_ERR`, the policy unchanged (the default: VFd trusts nothing).
    #[default]
    Deny,
    /// Applied as with `allow`, and each request written to the PF's log with the policy it
    /// changed (an audit trail).
    Log,
}

impl RequestPolicy {
    /// `allow`, `deny` or `log`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestPolicy::Allow => "allow",
            RequestPolicy::Deny => "deny",
            RequestPolicy::Log => "log",
        }
    }
}

impl std::str::FromStr for RequestPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "allow" => Ok(RequestPolicy::Allow),
            "deny" => Ok(RequestPolicy::Deny),
            "log" => Ok(RequestPolicy::Log),
            _ => Err(format!(
                "VF request policy {s:?} is not one of allow, deny, log"
            )),
        }
    }
}

fn yes() -> bool {
    true
}
fn auto() -> LinkStatus {
    LinkStatus::Auto
}

/// A checked VF policy.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct VfConfig {
    /// The creator's name for the VF (not used by the switch).
    pub name: String,
    /// The PF it belongs to, if named.
    pub pciid: Option<String>,
    /// The VF number.
    pub vfid: u32,
    /// Remove the outer VLAN tag before frames reach the VF, and insert `vlans[0]` on what it
    /// sends.
    pub strip_stag: bool,
    /// Remove an inner (customer) tag too.
    pub strip_ctag: bool,
    /// Untagged frames may come from and go to the VF (when `vlans` is not empty).
    pub allow_untagged: bool,
    /// Broadcast reaches the VF.
    pub allow_bcast: bool,
    /// Multicast reaches the VF.
    pub allow_mcast: bool,
    /// Unicast to addresses not its own reaches the VF (promiscuous unicast).
    pub allow_un_ucast: bool,
    /// Frames from the VF must come from one of its MACs.
    pub mac_anti_spoof: bool,
    /// Frames from the VF must carry one of its VLANs (or be untagged, when allowed).
    pub vlan_anti_spoof: bool,
    /// The VLANs (1..4094), sorted, no duplicates.
    pub vlans: Vec<u16>,
    /// The VF's MACs; the first is its primary address.
    #[serde(serialize_with = "macs_as_text")]
    pub macs: Vec<MacAddr>,
    /// Maximum transmit rate, Mbit/s (`None`: unlimited).
    pub rate_mbps: Option<f64>,
    /// Guaranteed rate, Mbit/s.
    pub min_rate_mbps: Option<f64>,
    /// Link reporting.
    pub link_status: LinkStatus,
    /// Traffic classes.
    pub queues: Vec<QueueShare>,
    /// Mirroring.
    pub mirror: Option<Mirror>,
    /// Accepted, never run.
    pub start_cb: Option<String>,
    /// Accepted, never run.
    pub stop_cb: Option<String>,
    /// What the PF does with the VF's control-queue requests.
    pub vf_requests: RequestPolicy,
    /// Requests per second the VF may make (after a burst of [`REQUEST_BURST`]); beyond it
    /// they are refused and counted as `rate_limited`.
    pub vf_request_rate: f64,
}

fn macs_as_text<S: serde::Serializer>(m: &[MacAddr], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(m.iter().map(|a| a.to_string()))
}

/// Limits the file is checked against: the NIC's.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// VFs on the PF (vfid < this).
    pub max_vfs: u32,
    /// Line rate, Mbit/s.
    pub line_rate_mbps: f64,
}

impl VfConfig {
    /// Reads a VF file's text; `origin` names it in errors (a path).
    pub fn parse(text: &str, origin: &str, limits: &Limits) -> Result<VfConfig, String> {
        let raw: RawVf = serde_json::from_str(text).map_err(|e| {
            format!(
                "{origin}: not a valid VF configuration: {e} (the keys are VFd's: name, vfid, vlans, macs, strip_stag, ...)"
            )
        })?;
        let _ = &raw.comment;
        let err = |m: String| Err(format!("{origin}: {m}"));
        if raw.vfid >= limits.max_vfs {
            return err(format!(
                "vfid {} does not exist (this PF has VFs 0..{})",
                raw.vfid,
                limits.max_vfs.saturating_sub(1)
            ));
        }
        let mut vlans = BTreeSet::new();
        for &v in &raw.vlans {
            if !(1..=4094).contains(&v) {
                return err(format!("VLAN {v} is outside 1..4094"));
            }
            if !vlans.insert(v as u16) {
                return err(format!("VLAN {v} is listed twice"));
            }
        }
        let vlans: Vec<u16> = vlans.into_iter().collect();
        if vlans.len() > 1 && raw.strip_stag {
            return err(format!(
                "{} VLANs with strip_stag true: a stripped frame could not say which VLAN it belongs to (set strip_stag false, or keep one VLAN)",
                vlans.len()
            ));
        }
        if raw.strip_stag && vlans.is_empty() {
            return err("strip_stag needs a VLAN to insert on transmit (add one to vlans)".into());
        }
        let mut macs = Vec::new();
        for s in raw
            .mac
            .iter()
            .chain(raw.macs.iter())
            .chain(raw.vm_mac.iter())
        {
            let m: MacAddr = s.parse().map_err(|_| {
                format!("{origin}: MAC {s:?} is not an address like 02:00:00:00:00:01")
            })?;
            if m.is_zero() {
                return err(format!("MAC {s} is all zeros"));
            }
            if !macs.contains(&m) {
                macs.push(m);
            }
        }
        for (key, r) in [("rate", raw.rate), ("min_rate", raw.min_rate)] {
            if let Some(r) = r
                && !(r > 0.0 && r <= limits.line_rate_mbps)
            {
                return err(format!(
                    "{key} {r} Mbit/s is outside (0, {}] (above 0, at most the line rate; leave it out for no limit)",
                    limits.line_rate_mbps
                ));
            }
        }
        if !(raw.vf_request_rate > 0.0 && raw.vf_request_rate <= 1e6) {
            return err(format!(
                "vf_request_rate {} is outside (0, 1000000] requests per second",
                raw.vf_request_rate
            ));
        }
        if let (Some(max), Some(min)) = (raw.rate, raw.min_rate)
            && min > max
        {
            return err(format!("min_rate {min} is above rate {max}"));
        }
        let mut total = 0.0;
        let mut prios = BTreeSet::new();
        for q in &raw.queues {
            if q.priority > 7 {
                return err(format!("queue priority {} is outside 0..7", q.priority));
            }
            if !prios.insert(q.priority) {
                return err(format!("queue priority {} is listed twice", q.priority));
            }
            total += q.share.percent().map_err(|e| format!("{origin}: {e}"))?;
        }
        if total > 100.0 + 1e-9 {
            return err(format!("queue shares add up to {total} %, above 100 %"));
        }
        if let Some(m) = &raw.mirror
            && m.direction != MirrorDirection::Off
        {
            if m.target == raw.vfid {
                return err("a VF cannot mirror to itself".into());
            }
            if m.target >= limits.max_vfs {
                return err(format!("mirror target VF {} does not exist", m.target));
            }
        }
        Ok(VfConfig {
            name: raw.name,
            pciid: raw.pciid,
            vfid: raw.vfid,
            strip_stag: raw.strip_stag,
            strip_ctag: raw.strip_ctag,
            allow_untagged: raw.allow_untagged,
            allow_bcast: raw.allow_bcast,
            allow_mcast: raw.allow_mcast,
            allow_un_ucast: raw.allow_un_ucast,
            mac_anti_spoof: raw.mac_anti_spoof,
            vlan_anti_spoof: raw.vlan_anti_spoof,
            vlans,
            macs,
            rate_mbps: raw.rate,
            min_rate_mbps: raw.min_rate,
            link_status: raw.link_status,
            queues: raw.queues,
            mirror: raw.mirror,
            start_cb: raw.start_cb,
            stop_cb: raw.stop_cb,
            vf_requests: raw.vf_requests,
            vf_request_rate: raw.vf_request_rate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        max_vfs: 8,
        line_rate_mbps: 10_000.0,
    };

    fn parse(s: &str) -> Result<VfConfig, String> {
        VfConfig::parse(s, "vf.json", &L)
    }

    #[test]
    fn full_file() {
        let c = parse(
            r#"{ "name": "vnf1/eth1", "pciid": "pf0", "vfid": 3,
                 "strip_stag": true, "allow_bcast": true, "allow_mcast": true,
                 "vlans": [10], "macs": ["02:00:00:00:03:01", "02:00:00:00:03:02"],
                 "rate": 1000, "min_rate": 100.5, "link_status": "on",
                 "queues": [ {"priority": 0, "share": "40%"}, {"priority": 1, "share": 60} ],
                 "mirror": {"target": 5, "direction": "all"},
                 "start_cb": "/bin/true", "stop_cb": "/bin/true" }"#,
        )
        .unwrap();
        assert_eq!(c.vfid, 3);
        assert_eq!(c.vlans, vec![10]);
        assert_eq!(c.macs.len(), 2);
        assert!(
            c.mac_anti_spoof && c.vlan_anti_spoof,
            "anti-spoof defaults on"
        );
        assert!(!c.allow_un_ucast);
        assert_eq!(c.rate_mbps, Some(1000.0));
        assert_eq!(c.link_status, LinkStatus::On);
        assert_eq!(c.mirror.unwrap().direction, MirrorDirection::All);
        // "mac" (one address) and "vm_mac" work too.
        let c = parse(r#"{"name":"x","vfid":0,"mac":"02:00:00:00:00:09"}"#).unwrap();
        assert_eq!(c.macs[0].to_string(), "02:00:00:00:00:09");
        assert_eq!(c.link_status, LinkStatus::Auto);
    }

    #[test]
    fn refusals_name_the_problem() {
        for (json, word) in [
            ("{", "not a valid VF configuration"),
            (r#"{"name":"x","vfid":0,"colour":"red"}"#, "unknown field"),
            (r#"{"name":"x","vfid":8}"#, "vfid 8 does not exist"),
            (
                r#"{"name":"x","vfid":0,"vlans":[0]}"#,
                "VLAN 0 is outside 1..4094",
            ),
            (r#"{"name":"x","vfid":0,"vlans":[4095]}"#, "VLAN 4095"),
            (r#"{"name":"x","vfid":0,"vlans":[5,5]}"#, "listed twice"),
            (
                r#"{"name":"x","vfid":0,"vlans":[5,6],"strip_stag":true}"#,
                "strip_stag",
            ),
            (r#"{"name":"x","vfid":0,"strip_stag":true}"#, "needs a VLAN"),
            (r#"{"name":"x","vfid":0,"macs":["zz"]}"#, "not an address"),
            (
                r#"{"name":"x","vfid":0,"macs":["00:00:00:00:00:00"]}"#,
                "all zeros",
            ),
            (r#"{"name":"x","vfid":0,"rate":0}"#, "rate 0"),
            (r#"{"name":"x","vfid":0,"rate":20000}"#, "line rate"),
            (
                r#"{"name":"x","vfid":0,"rate":100,"min_rate":200}"#,
                "above rate",
            ),
            (
                r#"{"name":"x","vfid":0,"queues":[{"priority":9,"share":10}]}"#,
                "priority 9",
            ),
            (
                r#"{"name":"x","vfid":0,"queues":[{"priority":0,"share":"70%"},{"priority":1,"share":"40%"}]}"#,
                "above 100",
            ),
            (
                r#"{"name":"x","vfid":0,"queues":[{"priority":0,"share":"lots"}]}"#,
                "not a percentage",
            ),
            (
                r#"{"name":"x","vfid":2,"mirror":{"target":2,"direction":"in"}}"#,
                "itself",
            ),
            (
                r#"{"name":"x","vfid":0,"mirror":{"target":99,"direction":"in"}}"#,
                "target VF 99",
            ),
            (
                r#"{"name":"x","vfid":0,"link_status":"maybe"}"#,
                "unknown variant",
            ),
        ] {
            let e = parse(json).unwrap_err();
            assert!(e.starts_with("vf.json: "), "{e}");
            assert!(e.contains(word), "{json}: {e}");
        }
    }
}
