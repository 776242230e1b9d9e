//! The port abstraction.

use std::sync::Arc;

use ferrovia_memory::{LcoreCaches, Mempool};

use crate::burst::Burst;
use crate::caps::{Offloads, RxOffloads, TxOffloads, VirtioFeatures};
use crate::error::{Error, Result};
use crate::events::EventSink;
use crate::stats::PortStats;
use crate::tap::PortTap;
use crate::vf::VfControl;

pub use crate::mac::MacAddr;

/// Link state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// True when the peer is attached and the port can move packets.
    pub up: bool,
    /// Speed in Mbps.
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

/// Static facts about a port: identity, sizes and typed capabilities.
///
/// `Display` writes one `label: value` line per fact (what testpmd's `show port info` shows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Driver name, as DPDK names it (`net_vhost`, `net_virtio_user`, ...).
    pub driver: &'static str,
    /// The devargs name (`net_vhost0`).
    pub name: String,
    /// MAC address.
    pub mac: MacAddr,
    /// Rx queues configured.
    pub nb_rx_queues: u16,
    /// Tx queues configured.
    pub nb_tx_queues: u16,
    /// Most queues (of each direction) the port can have.
    pub max_queues: u16,
    /// Rx ring size configured (0: the driver's default).
    pub nb_rxd: u16,
    /// Tx ring size configured (0: the driver's default).
    pub nb_txd: u16,
    /// Largest frame the port accepts (DPDK's `max_rx_pktlen`); larger ones are dropped and
    /// counted.
    pub max_frame_size: u32,
    /// Offload capabilities (DPDK's `rx_offload_capa` and `tx_offload_capa`).
    pub offloads: Offloads,
    /// Virtio features negotiated with the peer; `None` for a port that is not virtio, before
    /// the first negotiation, or where the driver does not know them (vhost, for now).
    pub virtio_features: Option<VirtioFeatures>,
    /// Virtio features the port offers (a device) or asks for (a driver); `None` for a port
    /// that is not virtio.
    pub virtio_offered: Option<VirtioFeatures>,
    /// The switch domain the port belongs to (ports of one domain, such as a PF and its VF
    /// representors, can switch packets between them); `None` for a standalone port.
    pub switch_domain: Option<u16>,
}

impl std::fmt::Display for PortInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Device name: {}", self.name)?;
        writeln!(f, "Driver name: {}", self.driver)?;
        writeln!(f, "MAC address: {}", self.mac)?;
        writeln!(
            f,
            "Queues: {} rx, {} tx (max {})",
            self.nb_rx_queues, self.nb_tx_queues, self.max_queues
        )?;
        writeln!(f, "Descriptors: {} rx, {} tx", self.nb_rxd, self.nb_txd)?;
        writeln!(f, "Maximum frame size: {}", self.max_frame_size)?;
        self.write_capabilities(f)
    }
}

impl PortInfo {
    /// Writes the capability lines of `Display` (offloads, virtio features, switch domain),
    /// for callers that print the other facts their own way.
    pub fn write_capabilities(&self, f: &mut impl std::fmt::Write) -> std::fmt::Result {
        writeln!(f, "Rx offload capabilities: {}", self.offloads.rx)?;
        writeln!(f, "Tx offload capabilities: {}", self.offloads.tx)?;
        if let Some(v) = self.virtio_offered {
            writeln!(f, "Virtio features offered: {v}")?;
        }
        if let Some(v) = self.virtio_features {
            writeln!(f, "Virtio features negotiated: {v}")?;
        }
        match self.switch_domain {
            Some(d) => writeln!(f, "Switch domain: {d}"),
            None => writeln!(f, "Switch domain: none"),
        }
    }

    /// The capability lines of [`PortInfo::write_capabilities`] as a string.
    pub fn describe_capabilities(&self) -> String {
        let mut s = String::new();
        let _ = self.write_capabilities(&mut s);
        s
    }
}

/// How to set a port up.
#[derive(Clone, Debug)]
pub struct PortConf {
    /// Port id (used to tag received mbufs).
    pub port_id: u16,
    /// Rx queues wanted (0 = as the devargs say).
    pub nb_rxq: u16,
    /// Tx queues wanted (0 = as the devargs say).
    pub nb_txq: u16,
    /// Rx descriptors (0 = the driver's default).
    pub nb_rxd: u16,
    /// Tx descriptors (0 = the driver's default).
    pub nb_txd: u16,
    /// Pool that received packets are allocated from.
    pub pool: Mempool,
    /// Largest frame to receive; larger frames are dropped and counted.
    pub max_rx_pktlen: u32,
    /// Where link and queue state events go (none: only [`Port::link`] tells).
    pub events: Option<EventSink>,
    /// Receive offloads the application enables (DPDK's `rxmode.offloads`): with
    /// checksum offloads the port reports checksum state in `ol_flags` instead of
    /// completing partial checksums; with `TCP_LRO` it delivers large coalesced packets.
    /// Offloads the port cannot do are ignored (the application checks
    /// [`PortInfo::offloads`]).
    pub rx_offloads: RxOffloads,
    /// Transmit offloads the application enables (DPDK's `txmode.offloads`): only then may
    /// it set the matching Tx `ol_flags` on the packets it sends.
    pub tx_offloads: TxOffloads,
}

impl PortConf {
    /// A configuration with driver defaults for everything but the pool.
    pub fn new(port_id: u16, pool: Mempool) -> PortConf {
        PortConf {
            port_id,
            nb_rxq: 0,
            nb_txq: 0,
            nb_rxd: 0,
            nb_txd: 0,
            pool,
            max_rx_pktlen: 9728,
            events: None,
            rx_offloads: RxOffloads::empty(),
            tx_offloads: TxOffloads::empty(),
        }
    }
}

/// A handle that sets a port's link administratively up or down from any thread (the control
/// path only), also after the port itself has moved to a polling thread. Taken with
/// [`Port::link_admin`].
pub trait LinkAdmin: Send + Sync {
    /// Sets the link administratively up (`true`) or down. While down the port's
    /// [`Port::link`] says down and the peer is told (a vhost port: the virtio-net status
    /// in its config space, and a config-change message when the peer gave a backend channel).
    fn set_link(&self, up: bool) -> Result<()>;
    /// The administrative state last set (true until it is first set down).
    fn admin_up(&self) -> bool;
}

/// A port: control operations. Data moves through queue handles taken with
/// [`Port::rx_queue`] and [`Port::tx_queue`].
pub trait Port: Send {
    /// Static information.
    fn info(&self) -> PortInfo;
    /// Starts the port: after this, queues move packets once the link is up.
    fn start(&mut self) -> Result<()>;
    /// Stops the port: queues return 0 until it is started again.
    fn stop(&mut self) -> Result<()>;
    /// Current link state.
    fn link(&self) -> Link;
    /// Statistics summed over all queues since the last reset.
    fn stats(&self) -> PortStats;
    /// Extended statistics, named as DPDK names them.
    fn xstats(&self) -> Vec<(String, u64)> {
        self.stats().xstats()
    }
    /// Zeroes the statistics.
    fn reset_stats(&self);
    /// Takes the handle of Rx queue `q`. Each queue can be held by one owner at a time; give
    /// it back by dropping it... or keep it for the life of the port.
    fn rx_queue(&mut self, q: u16) -> Result<Box<dyn RxQueue>>;
    /// Takes the handle of Tx queue `q`.
    fn tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>>;
    /// Enables or disables promiscuous mode (a no-op for virtual ports that accept everything).
    fn set_promisc(&mut self, _on: bool) -> Result<()> {
        Ok(())
    }
    /// Enables or disables all-multicast receive. Virtual ports that accept everything
    /// ignore it (the default); a virtio-user port with a control queue asks its device.
    fn set_allmulti(&mut self, _on: bool) -> Result<()> {
        Ok(())
    }
    /// Sets the port's MAC address (DPDK's `rte_eth_dev_default_mac_addr_set`). The default
    /// refuses; a virtio-user port with a control queue asks its device, which may refuse.
    fn set_mac(&mut self, _mac: MacAddr) -> Result<()> {
        Err(Error::Unsupported(format!(
            "{}: this driver cannot change the port's MAC address",
            self.info().name
        )))
    }
    /// Adds (`on`) or removes a VLAN from the port's receive filter (DPDK's
    /// `rte_eth_dev_vlan_filter`). The default refuses; a virtio-user port with a control
    /// queue asks its device.
    fn vlan_filter(&mut self, vlan: u16, _on: bool) -> Result<()> {
        Err(Error::Unsupported(format!(
            "{}: this driver has no VLAN filter (VLAN {vlan})",
            self.info().name
        )))
    }
    /// The device side of the port's virtio-net control queue, for the port's owner to serve
    /// (the eswitch's PF judges its VFs' requests); `None` when the port has none (the
    /// default). It can be taken once.
    fn ctrl_queue(&mut self) -> Option<Box<dyn crate::ctrl::CtrlQueue>> {
        None
    }
    /// The handle that sets this port's link administratively up or down; `None` for a driver
    /// that cannot (the default).
    fn link_admin(&self) -> Option<Arc<dyn LinkAdmin>> {
        None
    }
    /// Sets the link administratively up (DPDK's `rte_eth_dev_set_link_up`), through
    /// [`Port::link_admin`]; [`Error::Unsupported`] for a driver without one.
    fn set_link_up(&mut self) -> Result<()> {
        set_link_via_admin(self.link_admin(), &self.info().name, true)
    }
    /// Sets the link administratively down (DPDK's `rte_eth_dev_set_link_down`): the port's
    /// [`Port::link`] then says down and its peer sees the link go down. Through
    /// [`Port::link_admin`]; [`Error::Unsupported`] for a driver without one.
    fn set_link_down(&mut self) -> Result<()> {
        set_link_via_admin(self.link_admin(), &self.info().name, false)
    }
    /// The port's capture points, when it wears the capture wrapper
    /// ([`capture::wrap`](crate::capture::wrap); every port the registry opens does).
    fn capture_point(&self) -> Option<Arc<PortTap>> {
        None
    }
    /// The control of this port's virtual functions, when it is a PF that has them.
    fn vf_control(&self) -> Option<Arc<dyn VfControl>> {
        None
    }
}

fn set_link_via_admin(admin: Option<Arc<dyn LinkAdmin>>, name: &str, up: bool) -> Result<()> {
    match admin {
        Some(a) => a.set_link(up),
        None => Err(Error::Unsupported(format!(
            "{name}: this driver cannot set its link {}; only ports that can tell their peer \
             (net_vhost) support it",
            if up { "up" } else { "down" }
        ))),
    }
}

/// The receive side of one queue, owned by one polling thread.
///
/// Queues keep no mbuf cache of their own: the thread passes its [`LcoreCaches`] to every
/// burst, so a thread polling many queues holds one cache per pool, not one per queue.
pub trait RxQueue: Send {
    /// Receives up to `max` packets, appending them to `pkts` (never beyond its capacity),
    /// taking fresh mbufs from (and freeing dropped ones to) the caller's `caches`.
    /// Returns how many were added.
    fn rx_burst(&mut self, caches: &mut LcoreCaches, pkts: &mut Burst, max: usize) -> usize;
}

/// The transmit side of one queue, owned by one polling thread.
pub trait TxQueue: Send {
    /// Transmits packets from the front of `pkts` and removes the ones sent; those that could
    /// not be sent stay in `pkts` for the caller to retry or free. Mbufs the queue is done
    /// with (sent, or copied out) are freed to the caller's `caches`. Returns how many were
    /// sent.
    fn tx_burst(&mut self, caches: &mut LcoreCaches, pkts: &mut Burst) -> usize;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_every_fact() {
        let i = PortInfo {
            driver: "net_virtio_user",
            name: "net_virtio_user0".into(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            nb_rx_queues: 2,
            nb_tx_queues: 2,
            max_queues: 2,
            nb_rxd: 256,
            nb_txd: 256,
            max_frame_size: 1518,
            offloads: Offloads {
                rx: RxOffloads::SCATTER,
                tx: TxOffloads::MULTI_SEGS,
            },
            virtio_features: Some(VirtioFeatures::VERSION_1),
            virtio_offered: Some(VirtioFeatures::VERSION_1 | VirtioFeatures::IN_ORDER),
            switch_domain: None,
        };
        assert_eq!(
            i.to_string(),
            "Device name: net_virtio_user0\n\
             Driver name: net_virtio_user\n\
             MAC address: 02:00:00:00:00:01\n\
             Queues: 2 rx, 2 tx (max 2)\n\
             Descriptors: 256 rx, 256 tx\n\
             Maximum frame size: 1518\n\
             Rx offload capabilities: SCATTER\n\
             Tx offload capabilities: MULTI_SEGS\n\
             Virtio features offered: VERSION_1 IN_ORDER (0x900000000)\n\
             Virtio features negotiated: VERSION_1 (0x100000000)\n\
             Switch domain: none\n"
        );
    }
}
