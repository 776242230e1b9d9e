//! The port abstraction.

use ferrovia_memory::{LcoreCaches, Mempool};

use crate::burst::Burst;
use crate::error::Result;
use crate::stats::PortStats;

/// An Ethernet MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl std::str::FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(format!(
                "bad MAC address '{s}': expected six hex bytes like 02:00:00:00:00:01"
            ));
        }
        let mut m = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            m[i] = u8::from_str_radix(p, 16)
                .map_err(|_| format!("bad MAC address '{s}': '{p}' is not a hex byte"))?;
        }
        Ok(MacAddr(m))
    }
}

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

/// Static facts about a port.
#[derive(Clone, Debug)]
pub struct PortInfo {
    /// Driver name, as DPDK names it (`net_vhost`, `net_virtio_user`, ...).
    pub driver: &'static str,
    /// The devargs name (`net_vhost0`).
    pub name: String,
    /// MAC address.
    pub mac: MacAddr,
    /// Queues configured.
    pub nb_rx_queues: u16,
    /// Queues configured.
    pub nb_tx_queues: u16,
    /// Maximum queues the driver supports.
    pub max_queues: u16,
    /// Ring size configured.
    pub nb_rxd: u16,
    /// Ring size configured.
    pub nb_txd: u16,
    /// Largest frame the port accepts.
    pub max_rx_pktlen: u32,
    /// Negotiated or configured features, as text for `show port info`.
    pub features: String,
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
        }
    }
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
