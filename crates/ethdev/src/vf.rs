//! Control of a PF port's virtual functions: what testpmd's `set vf ...` commands (DPDK's
//! `rte_pmd_*_set_vf_*` calls) ask of a NIC with SR-IOV, for ports that have VFs (our
//! software NIC's PF port, `net_eswitch`).

use crate::{MacAddr, Result};

/// A receive-mode flag of a VF, as `set port P vf V rxmode ...` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxModeFlag {
    /// `AUPE`: accept untagged packets.
    Aupe,
    /// `ROPE`: accept packets that match no MAC filter (unicast promiscuous).
    Rope,
    /// `BAM`: accept broadcast.
    Bam,
    /// `MPE`: accept all multicast.
    Mpe,
}

impl RxModeFlag {
    /// Parses `AUPE`, `ROPE`, `BAM` or `MPE`.
    pub fn parse(s: &str) -> Option<RxModeFlag> {
        match s {
            "AUPE" => Some(RxModeFlag::Aupe),
            "ROPE" => Some(RxModeFlag::Rope),
            "BAM" => Some(RxModeFlag::Bam),
            "MPE" => Some(RxModeFlag::Mpe),
            _ => None,
        }
    }
}

/// What the PF does with a VF's requests over its control queue (MAC, VLAN filter, receive
/// modes): the NIC mailbox's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VfRequestPolicy {
    /// Applied to the VF's policy and acked OK.
    Allow,
    /// Refused (`VIRTIO_NET_ERR`), the policy unchanged.
    Deny,
    /// Applied as with `Allow`, and written to the PF's log.
    Log,
}

impl VfRequestPolicy {
    /// Parses `allow`, `deny` or `log`.
    pub fn parse(s: &str) -> Option<VfRequestPolicy> {
        match s {
            "allow" => Some(VfRequestPolicy::Allow),
            "deny" => Some(VfRequestPolicy::Deny),
            "log" => Some(VfRequestPolicy::Log),
            _ => None,
        }
    }
}

/// One change to one VF's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VfSetting {
    /// The VF's MAC address (`set vf mac addr`): replaces its first MAC.
    Mac(MacAddr),
    /// One more MAC the VF owns (`mac_addr add port P vf V MAC`).
    AddMac(MacAddr),
    /// MAC anti-spoofing (`set vf mac anti-spoof`).
    MacAntiSpoof(bool),
    /// VLAN anti-spoofing (`set vf vlan anti-spoof`).
    VlanAntiSpoof(bool),
    /// The VLAN inserted on what the VF sends and stripped from what it receives (`set vf
    /// vlan insert`; None: off).
    VlanInsert(Option<u16>),
    /// Strip the inner (customer) tag on receive (`set vf vlan stripq`).
    VlanStrip(bool),
    /// Admit (or no longer admit) a VLAN (`rx_vlan add|rm VLAN port P vf MASK`).
    VlanFilter {
        /// The VLAN, 1 to 4094.
        vlan: u16,
        /// Added (true) or removed.
        on: bool,
    },
    /// A receive-mode flag (`set port P vf V rxmode`, `set vf broadcast|allmulti|promisc`).
    RxMode(RxModeFlag, bool),
    /// Receive enable (`set port P vf V rx on|off`).
    Rx(bool),
    /// Transmit enable (`set port P vf V tx on|off`).
    Tx(bool),
    /// Transmit rate limit in Mbit/s (`set vf tx max-bandwidth`; 0: none).
    MaxBandwidthMbps(u32),
    /// Traffic classes (`set vf tc tx min-bandwidth P V (bw1,bw2,...)`): TC `i` is transmit
    /// queue `i`, of strict priority `i` (TC 0 first), guaranteed `shares[i]` % of the VF's
    /// rate; `count` classes (0: none).
    TcMinBandwidth {
        /// The guaranteed shares in percent, the first `count` used.
        shares: [u8; 8],
        /// How many classes.
        count: u8,
    },
    /// What the PF does with the VF's control-queue requests (`set vf request P V
    /// allow|deny|log`).
    Requests(VfRequestPolicy),
}

/// A VF's counters since its last reset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VfStats {
    /// Frames delivered to the VF.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames to the VF that were dropped (its policy, a full queue).
    pub rx_dropped: u64,
    /// Frames the VF sent that were forwarded.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Frames from the VF that were dropped (its policy, its rate limit).
    pub tx_dropped: u64,
    /// Requests the VF sent over its control queue.
    pub requests: u64,
    /// Of them, granted and applied.
    pub req_allowed: u64,
    /// Of them, refused by the PF's policy.
    pub req_denied: u64,
    /// Of them, refused because the VF sent too many.
    pub req_rate_limited: u64,
    /// Of them, malformed (not a request, or an unreadable chain).
    pub req_malformed: u64,
}

/// The VF side of a PF port. Every call is checked: an unknown VF or a value out of range is
/// an error that names it, and changes nothing.
pub trait VfControl: Send + Sync {
    /// How many VFs the PF has (VF numbers are 0 to this minus 1).
    fn num_vfs(&self) -> u16;
    /// Applies one setting to VF `vf`; the next frame meets it.
    fn vf_set(&self, vf: u16, setting: VfSetting) -> Result<()>;
    /// Frames between two VFs stay inside the NIC (on) or go out of its uplink (`set tx
    /// loopback`).
    fn set_tx_loopback(&self, on: bool) -> Result<()>;
    /// VF `vf`'s counters (`show vf stats`).
    fn vf_stats(&self, vf: u16) -> Result<VfStats>;
    /// Zeroes VF `vf`'s counters (`clear vf stats`).
    fn vf_stats_reset(&self, vf: u16) -> Result<()>;
}
