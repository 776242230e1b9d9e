//! The kernel PF backend: one VF's policy ([`VfConfig`]) applied to a real kernel SR-IOV PF
//! through rtnetlink, and the PF's VF state read back.
//!
//! What is sent: one `RTM_SETLINK` on the PF's ifindex, with `NLM_F_ACK`, carrying
//! `IFLA_VFINFO_LIST` → `IFLA_VF_INFO` → the attributes below, built with the
//! `netlink-packet-route` crate (which has every VF attribute we need, so there is no
//! hand-written encoder on the sending side). What is read: `RTM_GETLINK` with
//! `IFLA_EXT_MASK = RTEXT_FILTER_VF`, whose reply is parsed by our own bounds-checked parser
//! ([`parse_link_reply`], [`parse_vfinfo_list`]), which treats the kernel's bytes as untrusted:
//! every length is checked, a malformed attribute is an error, nothing panics.
//!
//! The layouts come from the kernel's uapi headers: `linux/netlink.h` (`nlmsghdr`, `nlmsgerr`,
//! `nlattr`), `linux/rtnetlink.h` (`ifinfomsg`, `RTEXT_FILTER_VF`) and `linux/if_link.h`
//! (`IFLA_*`, `IFLA_VF_*`, `struct ifla_vf_mac`, `ifla_vf_vlan_info`, `ifla_vf_rate`,
//! `ifla_vf_spoofchk`, `ifla_vf_trust`, `ifla_vf_link_state`).
//!
//! # The mapping
//!
//! | VFd key | kernel (`IFLA_VF_*`) | notes |
//! |---|---|---|
//! | `macs` / `mac` / `vm_mac` | `MAC` | the first address; none: the MAC is left as it is; more than one is unsupported |
//! | `vlans` + `strip_stag` | `VLAN_LIST` (one `VLAN_INFO`, 802.1Q, qos 0) | one VLAN with `strip_stag: true` is the VF's port VLAN (the NIC inserts it on transmit, strips it on receive); no VLAN clears the port VLAN (vlan 0); several VLANs are always refused; one VLAN without `strip_stag` is unsupported |
//! | `allow_untagged` | — | unsupported with a port VLAN (the NIC tags everything); meaningless without one |
//! | `mac_anti_spoof` | `SPOOFCHK` | drivers apply this one switch to the source MAC and, where they filter VLANs, to the VLAN too |
//! | `vlan_anti_spoof` | (`SPOOFCHK`, port VLAN) | honoured when it equals `mac_anti_spoof`, or when it is true with a port VLAN (the VF cannot choose its VLAN); otherwise unsupported |
//! | `rate` / `min_rate` | `RATE` (`max_tx_rate` / `min_tx_rate`, Mbit/s) | absent: 0 (no limit / no guarantee); a fraction of a Mbit/s is unsupported (with [`OnUnsupported::Warn`]: `rate` rounds down, at least 1, `min_rate` up, at most `rate`) |
//! | `allow_mcast`, `allow_un_ucast` | `TRUST` | trust on when either is true: the kernel lets only a trusted VF turn on all-multicast or promiscuous mode (ixgbe, i40e, ice); off otherwise. A trusted VF may also change its own MAC on some drivers |
//! | `allow_bcast` | — | the kernel always delivers broadcast to a VF: `false` is unsupported |
//! | `link_status` `on`/`off`/`auto` | `LINK_STATE` `ENABLE`/`DISABLE`/`AUTO` | |
//! | `strip_ctag: true` | — | unsupported |
//! | `queues` (not empty) | — | unsupported: no per-VF traffic classes in the VF API |
//! | `mirror` (not `off`) | — | unsupported |
//! | `name`, `pciid`, `vfid`, `start_cb`, `stop_cb` | — | `vfid` is the VF number; the others are not policy and are ignored (the PF is named by its interface) |
//!
//! "Unsupported" means the policy asks for something the kernel's VF API cannot express. With
//! [`OnUnsupported::Refuse`] (the default) such a policy is refused before anything is sent,
//! with one error naming every such key, why, and the fix. With [`OnUnsupported::Warn`] the
//! keys are skipped and listed in [`Plan::skipped`], for the caller to print.
//!
//! Applying is declarative: every setting but the MAC is sent each time, so a key left out
//! resets it (no VLAN clears the port VLAN, no rate removes the limit). The kernel applies the
//! attributes one after another (`do_setvfinfo`): when one fails, those before it in the list
//! stay applied. The order is MAC, VLAN, rate, spoof check, link state, trust. A driver that
//! lacks one of these operations refuses with `EOPNOTSUPP`; the error then reads the PF's VF
//! count to tell that apart from a device without SR-IOV ([`explain_set_vf`]).
//!
//! # Example
//!
//! ```no_run
//! use ferrovia_eswitch::kernel_pf::{KernelPf, OnUnsupported};
//! use ferrovia_eswitch::vfconfig::{Limits, VfConfig};
//!
//! let limits = Limits { max_vfs: 8, line_rate_mbps: 25_000.0 };
//! let cfg = VfConfig::parse(
//!     r#"{"name":"vnf1","vfid":3,"vlans":[10],"strip_stag":true,"allow_bcast":true,
//!         "macs":["02:00:00:00:03:01"],"rate":1000,"link_status":"auto"}"#,
//!     "vf3.json",
//!     &limits,
//! )?;
//! let pf = KernelPf::open("enp1s0f0").map_err(|e| e.to_string())?;
//! let plan = pf.apply(&cfg, OnUnsupported::Refuse).map_err(|e| e.to_string())?;
//! for s in &plan.skipped {
//!     eprintln!("warning: {s}");
//! }
//! let vf = pf.vf(3).map_err(|e| e.to_string())?;
//! assert_eq!(vf.vlan, 10);
//! # Ok::<(), String>(())
//! ```

use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use ferrovia_ethdev::MacAddr;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    LinkAttribute, LinkExtentMask, LinkMessage, LinkVfInfo, VfInfo, VfInfoLinkState, VfInfoMac,
    VfInfoRate, VfInfoSpoofCheck, VfInfoTrust, VfLinkState, VfVlan, VfVlanInfo, VlanProtocol,
};

use crate::vfconfig::{LinkStatus, MirrorDirection, VfConfig};

/// `NLMSG_ERROR` (linux/netlink.h).
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE` (linux/netlink.h).
pub const NLMSG_DONE: u16 = 3;
/// `RTM_NEWLINK` (linux/rtnetlink.h).
pub const RTM_NEWLINK: u16 = 16;
/// `RTM_GETLINK` (linux/rtnetlink.h).
pub const RTM_GETLINK: u16 = 18;
/// `RTM_SETLINK` (linux/rtnetlink.h).
pub const RTM_SETLINK: u16 = 19;
/// `IFLA_IFNAME` (linux/if_link.h).
pub const IFLA_IFNAME: u16 = 3;
/// `IFLA_NUM_VF` (linux/if_link.h).
pub const IFLA_NUM_VF: u16 = 21;
/// `IFLA_VFINFO_LIST` (linux/if_link.h).
pub const IFLA_VFINFO_LIST: u16 = 22;
/// `IFLA_EXT_MASK` (linux/if_link.h).
pub const IFLA_EXT_MASK: u16 = 29;
/// `IFLA_VF_INFO`, the one attribute inside `IFLA_VFINFO_LIST` (linux/if_link.h).
pub const IFLA_VF_INFO: u16 = 1;
/// `IFLA_VF_MAC`: `struct ifla_vf_mac { __u32 vf; __u8 mac[32]; }`.
pub const IFLA_VF_MAC: u16 = 1;
/// `IFLA_VF_VLAN`: `struct ifla_vf_vlan { __u32 vf, vlan, qos; }`.
pub const IFLA_VF_VLAN: u16 = 2;
/// `IFLA_VF_TX_RATE`: `struct ifla_vf_tx_rate { __u32 vf, rate; }` (old; the max rate).
pub const IFLA_VF_TX_RATE: u16 = 3;
/// `IFLA_VF_SPOOFCHK`: `struct ifla_vf_spoofchk { __u32 vf, setting; }`.
pub const IFLA_VF_SPOOFCHK: u16 = 4;
/// `IFLA_VF_LINK_STATE`: `struct ifla_vf_link_state { __u32 vf, link_state; }`.
pub const IFLA_VF_LINK_STATE: u16 = 5;
/// `IFLA_VF_RATE`: `struct ifla_vf_rate { __u32 vf, min_tx_rate, max_tx_rate; }` (Mbit/s).
pub const IFLA_VF_RATE: u16 = 6;
/// `IFLA_VF_TRUST`: `struct ifla_vf_trust { __u32 vf, setting; }`.
pub const IFLA_VF_TRUST: u16 = 9;
/// `IFLA_VF_VLAN_LIST`: nested `IFLA_VF_VLAN_INFO` entries.
pub const IFLA_VF_VLAN_LIST: u16 = 12;
/// `IFLA_VF_VLAN_INFO`: `struct ifla_vf_vlan_info { __u32 vf, vlan, qos; __be16 vlan_proto; }`
/// (16 bytes with the tail padding).
pub const IFLA_VF_VLAN_INFO: u16 = 1;
/// `RTEXT_FILTER_VF` (linux/rtnetlink.h): ask `RTM_GETLINK` for the VF list.
pub const RTEXT_FILTER_VF: u32 = 1;
/// `ETH_P_8021Q`.
pub const ETH_P_8021Q: u16 = 0x8100;

/// `sizeof(struct nlmsghdr)`.
const NLMSG_HDRLEN: usize = 16;
/// `sizeof(struct ifinfomsg)`.
const IFINFOMSG_LEN: usize = 16;
/// `sizeof(struct nlattr)`.
const NLA_HDRLEN: usize = 4;
/// `NLA_TYPE_MASK`: the type bits of `nla_type` (without `NLA_F_NESTED`,
/// `NLA_F_NET_BYTEORDER`).
const NLA_TYPE_MASK: u16 = 0x3fff;
/// `NLM_F_CAPPED` on an `NLMSG_ERROR`: the request's payload is not echoed.
const NLM_F_CAPPED: u16 = 0x100;
/// `NLM_F_ACK_TLVS` on an `NLMSG_ERROR`: extended-ack attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG`: the kernel's error text.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// What to do with a key whose value the kernel's VF API cannot express.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnUnsupported {
    /// Refuse the whole policy before sending anything (the default).
    #[default]
    Refuse,
    /// Skip those keys, listing them in [`Plan::skipped`].
    Warn,
}

/// A key of the policy the kernel cannot honour, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    /// The VFd key.
    pub key: &'static str,
    /// Why, and what to change.
    pub why: String,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.why)
    }
}

/// A VF's link reporting as the kernel knows it (`IFLA_VF_LINK_STATE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelLinkState {
    /// `IFLA_VF_LINK_STATE_AUTO` (0): follows the PF's link.
    Auto,
    /// `IFLA_VF_LINK_STATE_ENABLE` (1): always up.
    Enable,
    /// `IFLA_VF_LINK_STATE_DISABLE` (2): always down.
    Disable,
    /// A value this code does not know (a newer kernel).
    Other(u32),
}

impl KernelLinkState {
    /// The uapi value.
    pub fn raw(self) -> u32 {
        match self {
            KernelLinkState::Auto => 0,
            KernelLinkState::Enable => 1,
            KernelLinkState::Disable => 2,
            KernelLinkState::Other(v) => v,
        }
    }

    /// From the uapi value.
    pub fn from_raw(v: u32) -> KernelLinkState {
        match v {
            0 => KernelLinkState::Auto,
            1 => KernelLinkState::Enable,
            2 => KernelLinkState::Disable,
            v => KernelLinkState::Other(v),
        }
    }
}

impl From<LinkStatus> for KernelLinkState {
    fn from(l: LinkStatus) -> KernelLinkState {
        match l {
            LinkStatus::On => KernelLinkState::Enable,
            LinkStatus::Off => KernelLinkState::Disable,
            LinkStatus::Auto => KernelLinkState::Auto,
        }
    }
}

/// What the kernel is asked to set on one VF: the translation of a [`VfConfig`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VfSettings {
    /// The VF number.
    pub vf: u32,
    /// Its MAC (`None`: left as it is).
    pub mac: Option<MacAddr>,
    /// The port VLAN, 1..4094, or 0 for none (clears one set before).
    pub vlan: u16,
    /// Spoof checking (`IFLA_VF_SPOOFCHK`).
    pub spoofchk: bool,
    /// Trusted mode (`IFLA_VF_TRUST`).
    pub trust: bool,
    /// Link reporting.
    pub link_state: KernelLinkState,
    /// Guaranteed transmit rate, Mbit/s (0: none).
    pub min_tx_rate: u32,
    /// Maximum transmit rate, Mbit/s (0: unlimited).
    pub max_tx_rate: u32,
}

/// A translated policy: what will be set, and what was skipped (only with
/// [`OnUnsupported::Warn`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The settings sent to the kernel.
    pub settings: VfSettings,
    /// Keys the kernel cannot honour, skipped.
    pub skipped: Vec<Unsupported>,
}

/// Translates a policy into the kernel's VF settings (see the [module docs](self) for the
/// mapping). Several VLANs are always refused; other keys the kernel cannot express are
/// refused or skipped as `on_unsupported` says. Errors name the VF, the key and the fix.
pub fn plan(cfg: &VfConfig, on_unsupported: OnUnsupported) -> Result<Plan, String> {
    let vf = cfg.vfid;
    if cfg.vlans.len() > 1 {
        return Err(format!(
            "VF {vf}: vlans lists {} VLANs, but the kernel's VF API sets one port VLAN per VF \
             (IFLA_VF_VLAN_LIST takes a single entry) and cannot filter a trunk: keep one VLAN \
             with strip_stag true, or use the software eswitch",
            cfg.vlans.len()
        ));
    }
    let mut un = Vec::new();
    let mut skip = |key: &'static str, why: String| un.push(Unsupported { key, why });

    let mac = cfg.macs.first().copied();
    if cfg.macs.len() > 1 {
        skip(
            "macs",
            format!(
                "{} MACs, but the kernel sets one MAC per VF (IFLA_VF_MAC): keep one; the first is used",
                cfg.macs.len()
            ),
        );
    }
    let mut vlan = 0;
    if let Some(&v) = cfg.vlans.first() {
        if cfg.strip_stag {
            vlan = v;
        } else {
            skip(
                "vlans",
                format!(
                    "VLAN {v} with strip_stag false asks for a tagged VF, but the kernel's only VLAN \
                     setting is a port VLAN that the NIC inserts and strips: set strip_stag true"
                ),
            );
        }
        if cfg.allow_untagged {
            skip(
                "allow_untagged",
                "untagged frames cannot reach a VF that has a port VLAN: set allow_untagged false"
                    .into(),
            );
        }
    }
    if cfg.vlan_anti_spoof != cfg.mac_anti_spoof && !(cfg.vlan_anti_spoof && vlan != 0) {
        skip(
            "vlan_anti_spoof",
            format!(
                "vlan_anti_spoof {} differs from mac_anti_spoof {}, but the kernel has one spoof \
                 check (IFLA_VF_SPOOFCHK) for both: set them the same",
                cfg.vlan_anti_spoof, cfg.mac_anti_spoof
            ),
        );
    }
    if cfg.strip_ctag {
        skip(
            "strip_ctag",
            "the kernel's VF API cannot strip an inner tag: set strip_ctag false".into(),
        );
    }
    if !cfg.allow_bcast {
        skip(
            "allow_bcast",
            "the kernel always delivers broadcast to a VF and cannot block it: set allow_bcast true"
                .into(),
        );
    }
    if !cfg.queues.is_empty() {
        skip(
            "queues",
            "the kernel's VF API has no per-VF traffic classes: remove queues".into(),
        );
    }
    if let Some(m) = &cfg.mirror
        && m.direction != MirrorDirection::Off
    {
        skip(
            "mirror",
            format!(
                "the kernel's VF API cannot mirror a VF (to VF {}): remove mirror, or use the software eswitch",
                m.target
            ),
        );
    }
    let whole = |r: f64| r.fract() == 0.0;
    let max_tx_rate = match cfg.rate_mbps {
        None => 0,
        Some(r) => {
            if !whole(r) {
                skip(
                    "rate",
                    format!(
                        "{r} Mbit/s: the kernel takes whole Mbit/s; rounded down to {}",
                        (r.floor() as u32).max(1)
                    ),
                );
            }
            (r.floor().min(u32::MAX as f64) as u32).max(1)
        }
    };
    let min_tx_rate = match cfg.min_rate_mbps {
        None => 0,
        Some(r) => {
            let mut m = r.ceil().min(u32::MAX as f64) as u32;
            if max_tx_rate != 0 {
                m = m.min(max_tx_rate);
            }
            if !whole(r) {
                skip(
                    "min_rate",
                    format!("{r} Mbit/s: the kernel takes whole Mbit/s; rounded to {m}"),
                );
            }
            m
        }
    };
    if on_unsupported == OnUnsupported::Refuse && !un.is_empty() {
        let list: Vec<String> = un.iter().map(|u| u.to_string()).collect();
        return Err(format!(
            "VF {vf}: the kernel's VF API cannot apply this policy: {} (or apply it with warnings, \
             skipping these keys)",
            list.join("; ")
        ));
    }
    Ok(Plan {
        settings: VfSettings {
            vf,
            mac,
            vlan,
            spoofchk: cfg.mac_anti_spoof,
            trust: cfg.allow_mcast || cfg.allow_un_ucast,
            link_state: cfg.link_status.into(),
            min_tx_rate,
            max_tx_rate,
        },
        skipped: un,
    })
}

fn serialize(header: NetlinkHeader, msg: RouteNetlinkMessage) -> Vec<u8> {
    let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    m.finalize();
    let mut buf = vec![0u8; m.buffer_len()];
    m.serialize(&mut buf);
    buf
}

fn header(flags: u16, seq: u32) -> NetlinkHeader {
    let mut h = NetlinkHeader::default();
    h.flags = flags;
    h.sequence_number = seq;
    h
}

/// The `RTM_SETLINK` request (with `NLM_F_ACK`) that applies `s` to VF `s.vf` of the PF with
/// index `ifindex`: one `IFLA_VFINFO_LIST` → `IFLA_VF_INFO` holding, in this order,
/// `IFLA_VF_MAC` (when a MAC is set), `IFLA_VF_VLAN_LIST`, `IFLA_VF_RATE`, `IFLA_VF_SPOOFCHK`,
/// `IFLA_VF_LINK_STATE`, `IFLA_VF_TRUST`.
pub fn setlink_request(ifindex: u32, s: &VfSettings, seq: u32) -> Vec<u8> {
    let vf = s.vf;
    let mut info = Vec::new();
    if let Some(m) = s.mac {
        info.push(VfInfo::Mac(VfInfoMac::new(vf, &m.0)));
    }
    info.push(VfInfo::VlanList(vec![VfVlan::Info(VfVlanInfo::new(
        vf,
        s.vlan.into(),
        0,
        VlanProtocol::Ieee8021Q,
    ))]));
    info.push(VfInfo::Rate(VfInfoRate::new(
        vf,
        s.min_tx_rate,
        s.max_tx_rate,
    )));
    info.push(VfInfo::SpoofCheck(VfInfoSpoofCheck::new(vf, s.spoofchk)));
    info.push(VfInfo::LinkState(VfInfoLinkState::new(
        vf,
        VfLinkState::from(s.link_state.raw()),
    )));
    info.push(VfInfo::Trust(VfInfoTrust::new(vf, s.trust)));
    let mut msg = LinkMessage::default();
    msg.header.index = ifindex;
    msg.attributes
        .push(LinkAttribute::VfInfoList(vec![LinkVfInfo(info)]));
    serialize(
        header(NLM_F_REQUEST | NLM_F_ACK, seq),
        RouteNetlinkMessage::SetLink(msg),
    )
}

/// Which link a `RTM_GETLINK` asks for.
#[derive(Clone, Copy, Debug)]
pub enum LinkRef<'a> {
    /// By interface index.
    Index(u32),
    /// By name (`IFLA_IFNAME`, index 0): the kernel resolves it, or answers `ENODEV`.
    Name(&'a str),
}

/// The `RTM_GETLINK` request for one link, with `IFLA_EXT_MASK = RTEXT_FILTER_VF` so that the
/// reply carries `IFLA_NUM_VF` and `IFLA_VFINFO_LIST`.
pub fn getlink_request(link: LinkRef<'_>, seq: u32) -> Vec<u8> {
    let mut msg = LinkMessage::default();
    match link {
        LinkRef::Index(i) => msg.header.index = i,
        LinkRef::Name(n) => msg.attributes.push(LinkAttribute::IfName(n.to_string())),
    }
    msg.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Vf]));
    serialize(
        header(NLM_F_REQUEST, seq),
        RouteNetlinkMessage::GetLink(msg),
    )
}

/// One VF's state as the kernel reports it in `IFLA_VF_INFO`. A field is `None` when the
/// kernel did not send it or sent the "unknown" value (`-1` for spoof check and trust).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VfState {
    /// The VF number.
    pub vf: u32,
    /// Its MAC (`None` when all zeros: not set).
    pub mac: Option<MacAddr>,
    /// Its port VLAN (0: none).
    pub vlan: u16,
    /// The port VLAN's priority.
    pub qos: u8,
    /// The port VLAN's ethertype (from `IFLA_VF_VLAN_LIST`, e.g. 0x8100).
    pub vlan_proto: Option<u16>,
    /// Spoof checking.
    pub spoofchk: Option<bool>,
    /// Trusted mode.
    pub trust: Option<bool>,
    /// Link reporting.
    pub link_state: Option<KernelLinkState>,
    /// Guaranteed transmit rate, Mbit/s.
    pub min_tx_rate: Option<u32>,
    /// Maximum transmit rate, Mbit/s.
    pub max_tx_rate: Option<u32>,
}

/// A link and its VFs, from an `RTM_NEWLINK` reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkVfs {
    /// The interface index.
    pub ifindex: u32,
    /// Its name (`IFLA_IFNAME`).
    pub name: Option<String>,
    /// `IFLA_NUM_VF`: the VFs enabled (absent on a device without SR-IOV).
    pub num_vf: Option<u32>,
    /// The VFs (`IFLA_VFINFO_LIST`), in the kernel's order.
    pub vfs: Vec<VfState>,
}

/// Walks netlink attributes (`struct nlattr` TLVs, 4-byte aligned). Each item is
/// `(type without flag bits, value)` or an error for a length that does not fit.
struct Attrs<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<(u16, &'a [u8]), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = self.rest;
        let (Some(len), Some(ty)) = (ne16(r, 0), ne16(r, 2)) else {
            self.rest = &[];
            return Some(Err(format!(
                "{}: {} trailing bytes, shorter than an attribute header",
                self.what,
                r.len()
            )));
        };
        let len = len as usize;
        if len < NLA_HDRLEN || len > r.len() {
            self.rest = &[];
            return Some(Err(format!(
                "{}: attribute {ty} says {len} bytes, but {} are left (at least 4)",
                self.what,
                r.len()
            )));
        }
        let value = &r[NLA_HDRLEN..len];
        let next = align4(len).min(r.len());
        self.rest = &r[next..];
        Some(Ok((ty & NLA_TYPE_MASK, value)))
    }
}

fn attrs<'a>(b: &'a [u8], what: &'static str) -> Attrs<'a> {
    Attrs { rest: b, what }
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

fn ne16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes([s[0], s[1]]))
}

fn ne32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

/// Reads `n` u32 fields from an attribute value of exactly the uapi struct's size (or longer:
/// a newer kernel may extend it).
fn fields<const N: usize>(v: &[u8], min_len: usize, name: &str) -> Result<[u32; N], String> {
    if v.len() < min_len {
        return Err(format!(
            "{name} is {} bytes, shorter than its uapi struct ({min_len})",
            v.len()
        ));
    }
    let mut out = [0u32; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = ne32(v, i * 4).ok_or_else(|| format!("{name} is too short"))?;
    }
    Ok(out)
}

/// Parses one `IFLA_VF_INFO`'s value. Every sub-attribute must name the same VF.
pub fn parse_vf_info(value: &[u8]) -> Result<VfState, String> {
    let mut st = VfState::default();
    let mut vf: Option<u32> = None;
    let mut same = |v: u32, name: &str| -> Result<(), String> {
        match vf {
            None => {
                vf = Some(v);
                Ok(())
            }
            Some(w) if w == v => Ok(()),
            Some(w) => Err(format!("{name} names VF {v} inside the entry of VF {w}")),
        }
    };
    for a in attrs(value, "IFLA_VF_INFO") {
        let (ty, v) = a?;
        match ty {
            IFLA_VF_MAC => {
                let [id] = fields::<1>(v, 36, "IFLA_VF_MAC")?;
                same(id, "IFLA_VF_MAC")?;
                let mut m = [0u8; 6];
                m.copy_from_slice(&v[4..10]);
                st.mac = (m != [0; 6]).then_some(MacAddr(m));
            }
            IFLA_VF_VLAN => {
                let [id, vlan, qos] = fields::<3>(v, 12, "IFLA_VF_VLAN")?;
                same(id, "IFLA_VF_VLAN")?;
                (st.vlan, st.qos) = vlan_qos(vlan, qos, "IFLA_VF_VLAN")?;
            }
            IFLA_VF_VLAN_LIST => {
                for e in attrs(v, "IFLA_VF_VLAN_LIST") {
                    let (t, e) = e?;
                    if t != IFLA_VF_VLAN_INFO {
                        continue;
                    }
                    let [id, vlan, qos] = fields::<3>(e, 14, "IFLA_VF_VLAN_INFO")?;
                    same(id, "IFLA_VF_VLAN_INFO")?;
                    (st.vlan, st.qos) = vlan_qos(vlan, qos, "IFLA_VF_VLAN_INFO")?;
                    st.vlan_proto = Some(u16::from_be_bytes([e[12], e[13]]));
                }
            }
            IFLA_VF_TX_RATE => {
                let [id, rate] = fields::<2>(v, 8, "IFLA_VF_TX_RATE")?;
                same(id, "IFLA_VF_TX_RATE")?;
                st.max_tx_rate.get_or_insert(rate);
            }
            IFLA_VF_RATE => {
                let [id, min, max] = fields::<3>(v, 12, "IFLA_VF_RATE")?;
                same(id, "IFLA_VF_RATE")?;
                st.min_tx_rate = Some(min);
                st.max_tx_rate = Some(max);
            }
            IFLA_VF_SPOOFCHK => {
                let [id, s] = fields::<2>(v, 8, "IFLA_VF_SPOOFCHK")?;
                same(id, "IFLA_VF_SPOOFCHK")?;
                st.spoofchk = setting(s);
            }
            IFLA_VF_TRUST => {
                let [id, s] = fields::<2>(v, 8, "IFLA_VF_TRUST")?;
                same(id, "IFLA_VF_TRUST")?;
                st.trust = setting(s);
            }
            IFLA_VF_LINK_STATE => {
                let [id, s] = fields::<2>(v, 8, "IFLA_VF_LINK_STATE")?;
                same(id, "IFLA_VF_LINK_STATE")?;
                st.link_state = Some(KernelLinkState::from_raw(s));
            }
            _ => {} // stats, GUIDs, broadcast, RSS query: not kept.
        }
    }
    st.vf = vf.ok_or("IFLA_VF_INFO names no VF (no IFLA_VF_MAC, VLAN, rate, ...)")?;
    Ok(st)
}

fn vlan_qos(vlan: u32, qos: u32, name: &str) -> Result<(u16, u8), String> {
    if vlan > 4095 || qos > 7 {
        return Err(format!("{name}: VLAN {vlan} qos {qos} out of range"));
    }
    Ok((vlan as u16, qos as u8))
}

fn setting(s: u32) -> Option<bool> {
    match s {
        u32::MAX => None,
        0 => Some(false),
        _ => Some(true),
    }
}

/// Parses an `IFLA_VFINFO_LIST` attribute's value: one [`VfState`] per `IFLA_VF_INFO`.
pub fn parse_vfinfo_list(value: &[u8]) -> Result<Vec<VfState>, String> {
    let mut out = Vec::new();
    for a in attrs(value, "IFLA_VFINFO_LIST") {
        let (ty, v) = a?;
        if ty != IFLA_VF_INFO {
            return Err(format!(
                "IFLA_VFINFO_LIST holds attribute {ty}, not IFLA_VF_INFO"
            ));
        }
        out.push(parse_vf_info(v).map_err(|e| format!("VF entry {}: {e}", out.len()))?);
    }
    Ok(out)
}

/// What a reply buffer said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// An `RTM_NEWLINK` with the link's VFs.
    Link(LinkVfs),
    /// An `NLMSG_ERROR` with error 0: the request was applied.
    Ack,
    /// An `NLMSG_ERROR` with an error: the positive errno and the kernel's text, if any
    /// (extended ack).
    Error(i32, Option<String>),
}

/// Parses the first netlink message in `buf` whose sequence number is `seq` (others are
/// skipped): an `RTM_NEWLINK` with its `IFLA_VFINFO_LIST`, or an ack/error. The bytes are
/// untrusted: every length is checked; a malformed message is an error, never a panic.
pub fn parse_reply(buf: &[u8], seq: u32) -> Result<Option<Reply>, String> {
    let mut rest = buf;
    while !rest.is_empty() {
        let len = ne32(rest, 0).ok_or_else(|| {
            format!(
                "{} trailing bytes, shorter than a netlink header",
                rest.len()
            )
        })? as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(format!(
                "netlink message says {len} bytes, {} left (at least 16)",
                rest.len()
            ));
        }
        let msg = &rest[..len];
        rest = &rest[align4(len).min(rest.len())..];
        let ty = ne16(msg, 4).unwrap_or(0);
        let flags = ne16(msg, 6).unwrap_or(0);
        if ne32(msg, 8) != Some(seq) {
            continue;
        }
        let body = &msg[NLMSG_HDRLEN..];
        return Ok(Some(match ty {
            NLMSG_ERROR => parse_error(body, flags)?,
            RTM_NEWLINK => Reply::Link(parse_link_body(body)?),
            NLMSG_DONE => return Err("the kernel ended the reply without the link".into()),
            t => return Err(format!("unexpected netlink message type {t}")),
        }));
    }
    Ok(None)
}

/// Parses a buffer holding one `RTM_NEWLINK` message (any sequence number) into the link and
/// its VFs. This is the entry point for recorded replies and the fuzzer.
pub fn parse_link_reply(buf: &[u8]) -> Result<LinkVfs, String> {
    let seq = ne32(buf, 8).ok_or("shorter than a netlink header")?;
    match parse_reply(buf, seq)? {
        Some(Reply::Link(l)) => Ok(l),
        Some(Reply::Error(e, m)) => Err(format!(
            "the kernel answered {}{}",
            errno_name(e),
            m.map(|m| format!(": {m}")).unwrap_or_default()
        )),
        Some(Reply::Ack) => Err("an ack, not a link".into()),
        None => Err("no message".into()),
    }
}

fn parse_error(body: &[u8], flags: u16) -> Result<Reply, String> {
    let err = ne32(body, 0).ok_or("NLMSG_ERROR shorter than its error code")? as i32;
    if err == 0 {
        return Ok(Reply::Ack);
    }
    let mut text = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        // struct nlmsgerr: error, then the request's header (and its payload unless capped).
        let echoed = if flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            align4(ne32(body, 4).unwrap_or(0) as usize).max(NLMSG_HDRLEN)
        };
        if let Some(tlvs) = body.get(4usize.saturating_add(echoed)..) {
            for a in attrs(tlvs, "extended ack").flatten() {
                if a.0 == NLMSGERR_ATTR_MSG {
                    let s = a.1.split(|&b| b == 0).next().unwrap_or(&[]);
                    text = Some(String::from_utf8_lossy(s).into_owned());
                }
            }
        }
    }
    Ok(Reply::Error(
        err.unsigned_abs().min(i32::MAX as u32) as i32,
        text,
    ))
}

fn parse_link_body(body: &[u8]) -> Result<LinkVfs, String> {
    if body.len() < IFINFOMSG_LEN {
        return Err(format!(
            "RTM_NEWLINK body is {} bytes, shorter than struct ifinfomsg (16)",
            body.len()
        ));
    }
    let mut l = LinkVfs {
        ifindex: ne32(body, 4).unwrap_or(0),
        ..LinkVfs::default()
    };
    for a in attrs(&body[IFINFOMSG_LEN..], "RTM_NEWLINK") {
        let (ty, v) = a?;
        match ty {
            IFLA_IFNAME => {
                let s = v.split(|&b| b == 0).next().unwrap_or(&[]);
                l.name = Some(String::from_utf8_lossy(s).into_owned());
            }
            IFLA_NUM_VF => {
                l.num_vf = Some(ne32(v, 0).ok_or("IFLA_NUM_VF is shorter than 4 bytes")?);
            }
            IFLA_VFINFO_LIST => l.vfs = parse_vfinfo_list(v)?,
            _ => {}
        }
    }
    Ok(l)
}

/// The symbolic name of an errno, for messages.
pub fn errno_name(e: i32) -> String {
    let n = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ERANGE => "ERANGE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::ENOSPC => "ENOSPC",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::EAGAIN => "EAGAIN",
        _ => return format!("errno {e} ({})", std::io::Error::from_raw_os_error(e)),
    };
    n.to_string()
}

/// An error of the kernel PF backend: what failed, on which PF and VF, and the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelPfError {
    /// The errno, when the kernel (or a system call) gave one.
    pub errno: Option<i32>,
    /// The whole message.
    pub message: String,
}

impl fmt::Display for KernelPfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for KernelPfError {}

/// Explains an errno from the kernel for `what` ("set VF 3 of eth0"), with the likely fix.
pub fn explain(
    what: &str,
    pf: &str,
    vf: Option<u32>,
    errno: i32,
    ktext: Option<&str>,
) -> KernelPfError {
    refusal(what, errno, ktext, hint_for(pf, vf, errno))
}

/// The likely cause and fix of an errno from the kernel.
fn hint_for(pf: &str, vf: Option<u32>, errno: i32) -> String {
    match errno {
        libc::EOPNOTSUPP => {
            "the device has no SR-IOV VF configuration; is it a PF with sriov_numvfs > 0?"
                .to_string()
        }
        libc::ENODEV => format!("there is no interface {pf}; `ip link` lists them"),
        libc::EPERM | libc::EACCES => {
            "this needs CAP_NET_ADMIN: run as root or grant the capability".into()
        }
        libc::EINVAL | libc::ERANGE => match vf {
            Some(vf) => format!(
                "VF {vf} may be beyond the PF's VFs (see /sys/class/net/{pf}/device/sriov_numvfs), or the driver refused a value"
            ),
            None => "the kernel refused the request".into(),
        },
        libc::EPROTONOSUPPORT => "the driver does not support this VLAN protocol".into(),
        libc::EBUSY => {
            "the device is busy (a VF driver or another tool holds it); try again".into()
        }
        _ => "see the driver's documentation".into(),
    }
}

/// "cannot {what}: the kernel says {ERRNO}, "{kernel text}" ({hint})".
fn refusal(what: &str, errno: i32, ktext: Option<&str>, hint: String) -> KernelPfError {
    let k = ktext
        .filter(|t| !t.is_empty())
        .map(|t| format!(", \"{t}\""))
        .unwrap_or_default();
    KernelPfError {
        errno: Some(errno),
        message: format!(
            "cannot {what}: the kernel says {}{k} ({hint})",
            errno_name(errno)
        ),
    }
}

/// Explains the kernel's refusal to set VF `vf` of `pf`, knowing the PF's VF count when it
/// could be read (`num_vf`, `IFLA_NUM_VF`): an `EOPNOTSUPP` from a PF that has VFs means the
/// driver lacks one of the operations, not SR-IOV; an `EINVAL`/`ERANGE` for a VF at or beyond
/// the count says so. Otherwise as [`explain`].
pub fn explain_set_vf(
    pf: &str,
    vf: u32,
    errno: i32,
    ktext: Option<&str>,
    num_vf: Option<u32>,
) -> KernelPfError {
    let what = format!("set VF {vf} of {pf}");
    let hint = match (errno, num_vf) {
        (libc::EOPNOTSUPP, Some(n)) if n > 0 => format!(
            "{pf} has {n} VFs, so its driver lacks one of the VF settings sent: MAC, VLAN, rate, \
             spoof check, link state or trust; `ip link set {pf} vf {vf} ...` one at a time shows which"
        ),
        (libc::EINVAL | libc::ERANGE, Some(n)) if vf >= n => format!(
            "VF {vf} does not exist: {pf} has {n} VFs (VFs 0..{}); raise /sys/class/net/{pf}/device/sriov_numvfs or pick another vfid",
            n.saturating_sub(1)
        ),
        _ => hint_for(pf, Some(vf), errno),
    };
    refusal(&what, errno, ktext, hint)
}

/// A `NETLINK_ROUTE` socket (libc directly; the only unsafe code of this module).
struct RtSocket {
    fd: OwnedFd,
}

impl RtSocket {
    fn new() -> std::io::Result<RtSocket> {
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let s = RtSocket { fd };
        // Best effort: the kernel's error text (extended ack), and no echo of our request.
        s.setsockopt(libc::SOL_NETLINK, libc::NETLINK_EXT_ACK, &1i32);
        s.setsockopt(libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, &1i32);
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        s.setsockopt(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv);
        Ok(s)
    }

    fn setsockopt<T>(&self, level: i32, name: i32, v: &T) -> bool {
        // SAFETY: `v` points to a live `T` of `size_of::<T>()` bytes for the call's duration;
        // the fd is open.
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (v as *const T).cast(),
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        };
        r == 0
    }

    fn send(&self, msg: &[u8]) -> std::io::Result<()> {
        // SAFETY: `msg` is a live slice of `msg.len()` bytes; an unconnected netlink socket
        // sends to the kernel (port 0).
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if n as usize != msg.len() {
            return Err(std::io::Error::other("short netlink send"));
        }
        Ok(())
    }

    /// Receives one datagram whole (its size is peeked first, so nothing is truncated).
    fn recv(&self) -> std::io::Result<Vec<u8>> {
        let mut probe = [0u8; 1];
        // SAFETY: `probe` is a live 1-byte buffer; MSG_PEEK|MSG_TRUNC leaves the datagram
        // queued and returns its full length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                probe.as_mut_ptr().cast(),
                probe.len(),
                libc::MSG_PEEK | libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut buf = vec![0u8; (n as usize).max(1)];
        // SAFETY: `buf` is a live buffer of `buf.len()` bytes.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        buf.truncate(n as usize);
        Ok(buf)
    }

    /// Sends `req` (whose sequence number is `seq`) and returns the kernel's answer to it.
    fn request(&self, req: &[u8], seq: u32) -> Result<Reply, String> {
        self.send(req)
            .map_err(|e| format!("netlink send failed: {e}"))?;
        for _ in 0..64 {
            let buf = self.recv().map_err(|e| format!("no netlink reply: {e}"))?;
            if let Some(r) = parse_reply(&buf, seq)? {
                return Ok(r);
            }
        }
        Err("no netlink reply with our sequence number".into())
    }
}

/// A kernel SR-IOV PF, by interface name, with an open `NETLINK_ROUTE` socket.
pub struct KernelPf {
    sock: RtSocket,
    name: String,
    ifindex: u32,
    seq: std::cell::Cell<u32>,
}

impl fmt::Debug for KernelPf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelPf")
            .field("name", &self.name)
            .field("ifindex", &self.ifindex)
            .finish()
    }
}

impl KernelPf {
    /// Opens the PF `name`: resolves its index through `RTM_GETLINK` (an unknown name gives
    /// the `ENODEV` error).
    pub fn open(name: &str) -> Result<KernelPf, KernelPfError> {
        let sock = RtSocket::new().map_err(|e| KernelPfError {
            errno: e.raw_os_error(),
            message: format!("cannot open a NETLINK_ROUTE socket for {name}: {e}"),
        })?;
        let pf = KernelPf {
            sock,
            name: name.to_string(),
            ifindex: 0,
            seq: std::cell::Cell::new(1),
        };
        let l = pf.get(LinkRef::Name(name), &format!("read interface {name}"))?;
        Ok(KernelPf {
            ifindex: l.ifindex,
            ..pf
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    fn next_seq(&self) -> u32 {
        let s = self.seq.get().wrapping_add(1).max(1);
        self.seq.set(s);
        s
    }

    fn get(&self, link: LinkRef<'_>, what: &str) -> Result<LinkVfs, KernelPfError> {
        let seq = self.next_seq();
        let plain = |m: String| KernelPfError {
            errno: None,
            message: format!("cannot {what}: {m}"),
        };
        match self
            .sock
            .request(&getlink_request(link, seq), seq)
            .map_err(plain)?
        {
            Reply::Link(l) => Ok(l),
            Reply::Error(e, t) => Err(explain(what, &self.name, None, e, t.as_deref())),
            Reply::Ack => Err(plain("the kernel acked instead of answering".into())),
        }
    }

    /// Reads the PF's VFs (`RTM_GETLINK` with `RTEXT_FILTER_VF`).
    pub fn vfs(&self) -> Result<LinkVfs, KernelPfError> {
        self.get(
            LinkRef::Index(self.ifindex),
            &format!("read the VFs of {}", self.name),
        )
    }

    /// Reads one VF's state.
    pub fn vf(&self, vf: u32) -> Result<VfState, KernelPfError> {
        let l = self.vfs()?;
        l.vfs.into_iter().find(|s| s.vf == vf).ok_or_else(|| KernelPfError {
            errno: None,
            message: format!(
                "{} has no VF {vf} (it reports {} VFs; see /sys/class/net/{}/device/sriov_numvfs)",
                self.name,
                l.num_vf.unwrap_or(0),
                self.name
            ),
        })
    }

    /// Sends `s` to the kernel and waits for its ack.
    pub fn set_vf(&self, s: &VfSettings) -> Result<(), KernelPfError> {
        let what = format!("set VF {} of {}", s.vf, self.name);
        let seq = self.next_seq();
        match self
            .sock
            .request(&setlink_request(self.ifindex, s, seq), seq)
            .map_err(|m| KernelPfError {
                errno: None,
                message: format!("cannot {what}: {m}"),
            })? {
            Reply::Ack => Ok(()),
            Reply::Error(e, t) => {
                // Read the VF count to tell "no SR-IOV" from "driver lacks an operation", and a
                // VF beyond the count from a refused value.
                let num_vf = match e {
                    libc::EOPNOTSUPP | libc::EINVAL | libc::ERANGE => {
                        self.vfs().ok().and_then(|l| l.num_vf)
                    }
                    _ => None,
                };
                Err(explain_set_vf(&self.name, s.vf, e, t.as_deref(), num_vf))
            }
            Reply::Link(_) => Err(KernelPfError {
                errno: None,
                message: format!("cannot {what}: the kernel answered a link instead of an ack"),
            }),
        }
    }

    /// Translates `cfg` ([`plan`]) and applies it to VF `cfg.vfid`. Returns the plan, whose
    /// `skipped` lists keys that were not applied (only with [`OnUnsupported::Warn`]).
    pub fn apply(
        &self,
        cfg: &VfConfig,
        on_unsupported: OnUnsupported,
    ) -> Result<Plan, KernelPfError> {
        let p = plan(cfg, on_unsupported).map_err(|m| KernelPfError {
            errno: None,
            message: format!("{}: {m}", self.name),
        })?;
        self.set_vf(&p.settings)?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    //! Requests and replies are checked against byte layouts written here from the kernel's
    //! uapi headers (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h), and cross-checked
    //! with netlink-packet-route's own parser. No SR-IOV device is involved.

    use super::*;
    use crate::vfconfig::Limits;
    use netlink_packet_route::link::LinkAttribute as LA;
    use proptest::prelude::*;

    const L: Limits = Limits {
        max_vfs: 8,
        line_rate_mbps: 10_000.0,
    };

    fn cfg(json: &str) -> VfConfig {
        VfConfig::parse(json, "vf.json", &L).unwrap()
    }

    // --- uapi layout builders -------------------------------------------------------------

    /// `struct nlattr` + value, padded to 4 bytes (NLA_ALIGN).
    fn nla(ty: u16, value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(value);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    fn u32s(xs: &[u32]) -> Vec<u8> {
        xs.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }

    /// `struct ifla_vf_mac { __u32 vf; __u8 mac[32]; }`.
    fn vf_mac(vf: u32, mac: [u8; 6]) -> Vec<u8> {
        let mut v = u32s(&[vf]);
        let mut m = [0u8; 32];
        m[..6].copy_from_slice(&mac);
        v.extend_from_slice(&m);
        nla(IFLA_VF_MAC, &v)
    }

    /// `IFLA_VF_VLAN_LIST` with one `struct ifla_vf_vlan_info { __u32 vf, vlan, qos;
    /// __be16 vlan_proto; }` (16 bytes: 2 of tail padding).
    fn vf_vlan_list(vf: u32, vlan: u32, qos: u32) -> Vec<u8> {
        let mut info = u32s(&[vf, vlan, qos]);
        info.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
        info.extend_from_slice(&[0, 0]);
        nla(IFLA_VF_VLAN_LIST, &nla(IFLA_VF_VLAN_INFO, &info))
    }

    /// `struct nlmsghdr` + body.
    fn nlmsg(ty: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut v = u32s(&[(16 + body.len()) as u32]);
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&u32s(&[seq, 0]));
        v.extend_from_slice(body);
        v
    }

    /// `struct ifinfomsg { u8 family, pad; u16 type; i32 index; u32 flags, change; }`.
    fn ifinfomsg(index: u32) -> Vec<u8> {
        let mut v = vec![0u8, 0, 0, 0];
        v.extend_from_slice(&u32s(&[index, 0, 0]));
        v
    }

    // --- the translation ------------------------------------------------------------------

    #[test]
    fn plan_maps_each_key() {
        let p = plan(
            &cfg(
                r#"{"name":"a","vfid":3,"vlans":[10],"strip_stag":true,"allow_bcast":true,
                     "macs":["02:00:00:00:03:01"],"rate":1000,"min_rate":100,"link_status":"on"}"#,
            ),
            OnUnsupported::Refuse,
        )
        .unwrap();
        assert!(p.skipped.is_empty());
        assert_eq!(
            p.settings,
            VfSettings {
                vf: 3,
                mac: Some(MacAddr([2, 0, 0, 0, 3, 1])),
                vlan: 10,
                spoofchk: true,
                trust: false,
                link_state: KernelLinkState::Enable,
                min_tx_rate: 100,
                max_tx_rate: 1000,
            }
        );
        // No VLAN clears the port VLAN; no rate is 0 (unlimited); promiscuous needs trust.
        let p = plan(
            &cfg(
                r#"{"name":"a","vfid":0,"allow_bcast":true,"allow_un_ucast":true,
                     "mac_anti_spoof":false,"vlan_anti_spoof":false,"link_status":"off"}"#,
            ),
            OnUnsupported::Refuse,
        )
        .unwrap();
        let s = p.settings;
        assert_eq!((s.vlan, s.min_tx_rate, s.max_tx_rate), (0, 0, 0));
        assert!(s.trust && !s.spoofchk && s.mac.is_none());
        assert_eq!(s.link_state, KernelLinkState::Disable);
        let s = plan(
            &cfg(r#"{"name":"a","vfid":0,"allow_bcast":true,"allow_mcast":true}"#),
            OnUnsupported::Refuse,
        )
        .unwrap()
        .settings;
        assert!(s.trust, "all-multicast needs trust");
        assert_eq!(s.link_state, KernelLinkState::Auto);
    }

    #[test]
    fn several_vlans_are_always_refused() {
        let c = cfg(r#"{"name":"a","vfid":2,"vlans":[10,20],"allow_bcast":true}"#);
        for mode in [OnUnsupported::Refuse, OnUnsupported::Warn] {
            let e = plan(&c, mode).unwrap_err();
            assert!(e.starts_with("VF 2: vlans lists 2 VLANs"), "{e}");
            assert!(e.contains("one port VLAN per VF"), "{e}");
        }
    }

    #[test]
    fn unsupported_keys_refused_or_skipped() {
        let c = cfg(
            r#"{"name":"a","vfid":1,"vlans":[10],"strip_ctag":true,"allow_untagged":true,
                        "macs":["02:00:00:00:00:01","02:00:00:00:00:02"],"rate":100.5,
                        "min_rate":10.2,"queues":[{"priority":0,"share":50}],
                        "mirror":{"target":2,"direction":"in"}}"#,
        );
        let e = plan(&c, OnUnsupported::Refuse).unwrap_err();
        for key in [
            "macs:",
            "vlans: VLAN 10 with strip_stag false",
            "allow_untagged:",
            "strip_ctag:",
            "allow_bcast:",
            "queues:",
            "mirror:",
            "rate:",
            "min_rate:",
        ] {
            assert!(e.contains(key), "{key} missing from {e}");
        }
        assert!(e.starts_with("VF 1: the kernel's VF API cannot apply this policy"));
        let p = plan(&c, OnUnsupported::Warn).unwrap();
        let keys: Vec<&str> = p.skipped.iter().map(|u| u.key).collect();
        assert_eq!(
            keys,
            [
                "macs",
                "vlans",
                "allow_untagged",
                "strip_ctag",
                "allow_bcast",
                "queues",
                "mirror",
                "rate",
                "min_rate"
            ]
        );
        let s = p.settings;
        assert_eq!(s.vlan, 0, "a tagged VLAN is not a port VLAN");
        assert_eq!((s.min_tx_rate, s.max_tx_rate), (11, 100));
        assert_eq!(s.mac, Some(MacAddr([2, 0, 0, 0, 0, 1])));
        // mac and vlan anti-spoof differing cannot be one switch...
        let e = plan(
            &cfg(r#"{"name":"a","vfid":0,"allow_bcast":true,"mac_anti_spoof":false}"#),
            OnUnsupported::Refuse,
        )
        .unwrap_err();
        assert!(
            e.contains("vlan_anti_spoof true differs from mac_anti_spoof false"),
            "{e}"
        );
        // ...but a port VLAN enforces the VLAN by itself.
        plan(
            &cfg(
                r#"{"name":"a","vfid":0,"allow_bcast":true,"mac_anti_spoof":false,
                     "vlans":[5],"strip_stag":true}"#,
            ),
            OnUnsupported::Refuse,
        )
        .unwrap();
        // A mirror that is off is no mirror.
        plan(
            &cfg(r#"{"name":"a","vfid":0,"allow_bcast":true,"mirror":{"target":1,"direction":"off"}}"#),
            OnUnsupported::Refuse,
        )
        .unwrap();
    }

    // --- the request ------------------------------------------------------------------------

    fn settings() -> VfSettings {
        VfSettings {
            vf: 3,
            mac: Some(MacAddr([2, 0, 0, 0, 3, 1])),
            vlan: 10,
            spoofchk: true,
            trust: false,
            link_state: KernelLinkState::Auto,
            min_tx_rate: 100,
            max_tx_rate: 1000,
        }
    }

    #[test]
    fn setlink_request_is_byte_exact() {
        let req = setlink_request(7, &settings(), 42);
        let mut info = Vec::new();
        info.extend(vf_mac(3, [2, 0, 0, 0, 3, 1]));
        info.extend(vf_vlan_list(3, 10, 0));
        info.extend(nla(IFLA_VF_RATE, &u32s(&[3, 100, 1000])));
        info.extend(nla(IFLA_VF_SPOOFCHK, &u32s(&[3, 1])));
        info.extend(nla(IFLA_VF_LINK_STATE, &u32s(&[3, 0])));
        info.extend(nla(IFLA_VF_TRUST, &u32s(&[3, 0])));
        let mut body = ifinfomsg(7);
        body.extend(nla(IFLA_VFINFO_LIST, &nla(IFLA_VF_INFO, &info)));
        let want = nlmsg(RTM_SETLINK, 1 | 4, 42, &body);
        assert_eq!(req, want);
        // Sizes from the uapi structs: 4+36, 4+4+16, 4+12, then three of 4+8.
        assert_eq!(info.len(), 40 + 24 + 16 + 3 * 12);
    }

    #[test]
    fn setlink_request_decodes_with_netlink_packet_route() {
        let mut s = settings();
        s.mac = None;
        s.trust = true;
        s.link_state = KernelLinkState::Disable;
        let req = setlink_request(9, &s, 5);
        let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&req).unwrap();
        assert_eq!(m.header.flags, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(m.header.sequence_number, 5);
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::SetLink(l)) = m.payload else {
            panic!("not a SetLink: {:?}", m.payload);
        };
        assert_eq!(l.header.index, 9);
        let [LA::VfInfoList(list)] = &l.attributes[..] else {
            panic!("{:?}", l.attributes)
        };
        let [LinkVfInfo(info)] = &list[..] else {
            panic!("{list:?}")
        };
        assert_eq!(info.len(), 5, "no MAC attribute without a MAC: {info:?}");
        for a in info {
            match a {
                VfInfo::VlanList(v) => {
                    let [VfVlan::Info(i)] = &v[..] else {
                        panic!("{v:?}")
                    };
                    assert_eq!((i.vf_id, i.vlan_id, i.qos), (3, 10, 0));
                    assert_eq!(i.protocol, VlanProtocol::Ieee8021Q);
                }
                VfInfo::Rate(r) => {
                    assert_eq!((r.vf_id, r.min_tx_rate, r.max_tx_rate), (3, 100, 1000))
                }
                VfInfo::SpoofCheck(c) => assert_eq!((c.vf_id, c.enabled), (3, true)),
                VfInfo::LinkState(c) => {
                    assert_eq!((c.vf_id, c.state), (3, VfLinkState::Disable))
                }
                VfInfo::Trust(t) => assert_eq!((t.vf_id, t.enabled), (3, true)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn getlink_request_asks_for_vfs() {
        let want = {
            let mut b = ifinfomsg(4);
            b.extend(nla(IFLA_EXT_MASK, &u32s(&[RTEXT_FILTER_VF])));
            nlmsg(RTM_GETLINK, 1, 8, &b)
        };
        assert_eq!(getlink_request(LinkRef::Index(4), 8), want);
        let by_name = getlink_request(LinkRef::Name("eth0"), 9);
        let mut b = ifinfomsg(0);
        b.extend(nla(IFLA_IFNAME, b"eth0\0"));
        b.extend(nla(IFLA_EXT_MASK, &u32s(&[RTEXT_FILTER_VF])));
        assert_eq!(by_name, nlmsg(RTM_GETLINK, 1, 9, &b));
    }

    // --- the reply --------------------------------------------------------------------------

    /// An `IFLA_VF_INFO` as rtnl_fill_vfinfo() writes it (kernel 6.x order).
    /// `flags` is (spoofchk, link state, trust) as the kernel writes them.
    fn recorded_vf(
        vf: u32,
        mac: [u8; 6],
        (vlan, qos): (u32, u32),
        rates: (u32, u32),
        (spoof, link, trust): (u32, u32, u32),
    ) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(vf_mac(vf, mac));
        v.extend(nla(IFLA_VF_BROADCAST, &[0xff; 32]));
        v.extend(nla(IFLA_VF_VLAN, &u32s(&[vf, vlan, qos])));
        v.extend(vf_vlan_list(vf, vlan, qos));
        v.extend(nla(IFLA_VF_TX_RATE, &u32s(&[vf, rates.1])));
        v.extend(nla(IFLA_VF_RATE, &u32s(&[vf, rates.0, rates.1])));
        v.extend(nla(IFLA_VF_SPOOFCHK, &u32s(&[vf, spoof])));
        v.extend(nla(IFLA_VF_LINK_STATE, &u32s(&[vf, link])));
        v.extend(nla(IFLA_VF_RSS_QUERY_EN, &u32s(&[vf, u32::MAX])));
        v.extend(nla(IFLA_VF_TRUST, &u32s(&[vf, trust])));
        // IFLA_VF_STATS (nested, NLA_F_NESTED set), one IFLA_VF_STATS_RX_PACKETS (u64).
        v.extend(nla(IFLA_VF_STATS | 0x8000, &nla(0, &7u64.to_ne_bytes())));
        nla(IFLA_VF_INFO, &v)
    }

    const IFLA_VF_BROADCAST: u16 = 13;
    const IFLA_VF_RSS_QUERY_EN: u16 = 7;
    const IFLA_VF_STATS: u16 = 8;

    /// A recorded `RTM_NEWLINK` for PF `pf0` (ifindex 5) with two VFs.
    fn recorded_reply() -> Vec<u8> {
        let mut list = recorded_vf(0, [2, 0, 0, 0, 0, 0xa], (10, 3), (100, 1000), (1, 0, 0));
        list.extend(recorded_vf(1, [0; 6], (0, 0), (0, 0), (u32::MAX, 2, 1)));
        let mut body = ifinfomsg(5);
        body.extend(nla(IFLA_IFNAME, b"pf0\0"));
        body.extend(nla(IFLA_NUM_VF, &u32s(&[2])));
        body.extend(nla(IFLA_VFINFO_LIST | 0x8000, &list));
        nlmsg(RTM_NEWLINK, 0, 77, &body)
    }

    #[test]
    fn parses_recorded_reply_with_two_vfs() {
        let buf = recorded_reply();
        let l = parse_link_reply(&buf).unwrap();
        assert_eq!(l.ifindex, 5);
        assert_eq!(l.name.as_deref(), Some("pf0"));
        assert_eq!(l.num_vf, Some(2));
        assert_eq!(
            l.vfs,
            vec![
                VfState {
                    vf: 0,
                    mac: Some(MacAddr([2, 0, 0, 0, 0, 0xa])),
                    vlan: 10,
                    qos: 3,
                    vlan_proto: Some(0x8100),
                    spoofchk: Some(true),
                    trust: Some(false),
                    link_state: Some(KernelLinkState::Auto),
                    min_tx_rate: Some(100),
                    max_tx_rate: Some(1000),
                },
                VfState {
                    vf: 1,
                    mac: None,
                    vlan: 0,
                    qos: 0,
                    vlan_proto: Some(0x8100),
                    spoofchk: None,
                    trust: Some(true),
                    link_state: Some(KernelLinkState::Disable),
                    min_tx_rate: Some(0),
                    max_tx_rate: Some(0),
                },
            ]
        );
        assert_eq!(
            parse_reply(&buf, 78).unwrap(),
            None,
            "another sequence number"
        );
        // netlink-packet-route reads the same recorded bytes the same way.
        let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf).unwrap();
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(lm)) = m.payload else {
            panic!("not a NewLink")
        };
        let list = lm
            .attributes
            .iter()
            .find_map(|a| match a {
                LA::VfInfoList(v) => Some(v),
                _ => None,
            })
            .unwrap();
        assert_eq!(list.len(), 2);
        let mac = list[0]
            .0
            .iter()
            .find_map(|a| match a {
                VfInfo::Mac(m) => Some(m.mac),
                _ => None,
            })
            .unwrap();
        assert_eq!(mac[..6], [2, 0, 0, 0, 0, 0xa]);
    }

    #[test]
    fn malformed_replies_are_errors() {
        let good = recorded_reply();
        // Truncated anywhere: an error, not a panic, not a silent success.
        for n in 0..good.len() {
            assert!(parse_link_reply(&good[..n]).is_err(), "prefix {n}");
        }
        // An IFLA_VF_SPOOFCHK one byte short of its struct.
        let bad = nla(IFLA_VF_INFO, &nla(IFLA_VF_SPOOFCHK, &u32s(&[0])[..]));
        let e = parse_vfinfo_list(&bad).unwrap_err();
        assert!(e.contains("IFLA_VF_SPOOFCHK is 4 bytes"), "{e}");
        // Sub-attributes that disagree on the VF.
        let mut v = vf_mac(0, [2, 0, 0, 0, 0, 1]);
        v.extend(nla(IFLA_VF_TRUST, &u32s(&[1, 1])));
        let e = parse_vfinfo_list(&nla(IFLA_VF_INFO, &v)).unwrap_err();
        assert!(e.contains("names VF 1 inside the entry of VF 0"), "{e}");
        // An attribute whose length runs past its container.
        let mut over = nla(IFLA_VF_INFO, &vf_mac(0, [2, 0, 0, 0, 0, 1]));
        over[0] = 200;
        assert!(
            parse_vfinfo_list(&over)
                .unwrap_err()
                .contains("says 200 bytes")
        );
        // A VLAN out of range, and something else than IFLA_VF_INFO in the list.
        let e = parse_vfinfo_list(&nla(IFLA_VF_INFO, &nla(IFLA_VF_VLAN, &u32s(&[0, 5000, 0]))))
            .unwrap_err();
        assert!(e.contains("VLAN 5000"), "{e}");
        assert!(
            parse_vfinfo_list(&nla(2, &[]))
                .unwrap_err()
                .contains("not IFLA_VF_INFO")
        );
        assert!(
            parse_vfinfo_list(&nla(IFLA_VF_INFO, &[]))
                .unwrap_err()
                .contains("names no VF")
        );
    }

    #[test]
    fn error_replies_carry_errno_and_kernel_text() {
        // NLMSG_ERROR, capped, with NLMSGERR_ATTR_MSG: struct nlmsgerr { int error;
        // struct nlmsghdr msg; } then the TLVs.
        let mut body = (-libc::EOPNOTSUPP).to_ne_bytes().to_vec();
        body.extend(nlmsg(RTM_SETLINK, 5, 3, &[])[..16].to_vec());
        body.extend(nla(NLMSGERR_ATTR_MSG, b"no VFs here\0"));
        let buf = nlmsg(NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS, 3, &body);
        assert_eq!(
            parse_reply(&buf, 3).unwrap(),
            Some(Reply::Error(libc::EOPNOTSUPP, Some("no VFs here".into())))
        );
        // Not capped: the request is echoed whole before the TLVs.
        let req = setlink_request(1, &settings(), 3);
        let mut body = (-libc::EINVAL).to_ne_bytes().to_vec();
        body.extend(&req);
        body.extend(nla(NLMSGERR_ATTR_MSG, b"bad vf\0"));
        let buf = nlmsg(NLMSG_ERROR, NLM_F_ACK_TLVS, 3, &body);
        assert_eq!(
            parse_reply(&buf, 3).unwrap(),
            Some(Reply::Error(libc::EINVAL, Some("bad vf".into())))
        );
        // The plain ack.
        let buf = nlmsg(NLMSG_ERROR, NLM_F_CAPPED, 3, &[0; 20]);
        assert_eq!(parse_reply(&buf, 3).unwrap(), Some(Reply::Ack));
    }

    #[test]
    fn errors_name_the_pf_the_vf_and_the_fix() {
        assert_eq!(
            explain("set VF 3 of eth0", "eth0", Some(3), libc::EOPNOTSUPP, None).message,
            "cannot set VF 3 of eth0: the kernel says EOPNOTSUPP (the device has no SR-IOV VF \
             configuration; is it a PF with sriov_numvfs > 0?)"
        );
        let e = explain("read interface nope0", "nope0", None, libc::ENODEV, None);
        assert_eq!(e.errno, Some(libc::ENODEV));
        assert!(
            e.message.contains("ENODEV (there is no interface nope0"),
            "{e}"
        );
        let e = explain("set VF 0 of eth0", "eth0", Some(0), libc::EPERM, None);
        assert!(e.message.contains("EPERM (this needs CAP_NET_ADMIN"), "{e}");
        for errno in [libc::EINVAL, libc::ERANGE] {
            let e = explain(
                "set VF 9 of eth0",
                "eth0",
                Some(9),
                errno,
                Some("VF out of range"),
            );
            assert!(
                e.message.contains("\"VF out of range\" (VF 9 may be beyond the PF's VFs (see /sys/class/net/eth0/device/sriov_numvfs)"),
                "{e}"
            );
        }
    }

    #[test]
    fn set_vf_errors_use_the_vf_count() {
        // No VF count (not a PF): the plain "no SR-IOV" message.
        let plain = explain_set_vf("eth0", 3, libc::EOPNOTSUPP, None, None);
        assert_eq!(
            plain,
            explain("set VF 3 of eth0", "eth0", Some(3), libc::EOPNOTSUPP, None)
        );
        assert_eq!(
            explain_set_vf("eth0", 3, libc::EOPNOTSUPP, None, Some(0)),
            plain
        );
        // A PF with VFs: the driver lacks an operation.
        let e = explain_set_vf("eth0", 3, libc::EOPNOTSUPP, None, Some(8));
        assert_eq!(e.errno, Some(libc::EOPNOTSUPP));
        assert!(
            e.message.starts_with(
                "cannot set VF 3 of eth0: the kernel says EOPNOTSUPP (eth0 has 8 VFs, so its driver lacks one of the VF settings sent"
            ),
            "{e}"
        );
        // A VF beyond the count.
        let e = explain_set_vf("eth0", 9, libc::EINVAL, Some("bad vf"), Some(4));
        assert_eq!(
            e.message,
            "cannot set VF 9 of eth0: the kernel says EINVAL, \"bad vf\" (VF 9 does not exist: \
             eth0 has 4 VFs (VFs 0..3); raise /sys/class/net/eth0/device/sriov_numvfs or pick \
             another vfid)"
        );
        // A VF within the count: the driver refused a value.
        let e = explain_set_vf("eth0", 2, libc::ERANGE, None, Some(4));
        assert!(e.message.contains("or the driver refused a value"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_link_reply(&b);
            let _ = parse_vfinfo_list(&b);
            let _ = parse_vf_info(&b);
            let _ = parse_reply(&b, 0);
        }

        #[test]
        fn mutated_recorded_reply_never_panics(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut b = recorded_reply();
            for (at, v) in edits {
                let n = b.len();
                b[at % n] = v;
            }
            let n = b.len();
            b.truncate(cut % (n + 1));
            let _ = parse_link_reply(&b);
            let _ = parse_vfinfo_list(b.get(36..).unwrap_or(&[]));
        }
    }
}
