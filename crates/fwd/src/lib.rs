//! Forwarding engines, one file each, behind one small trait (as DPDK testpmd's
//! `struct fwd_engine`).
//!
//! An engine forwards one burst on one [`Stream`] per call: receive up to `burst` packets from
//! the stream's Rx queue, transform them, send them on its Tx queue and free what could not be
//! sent (counted as dropped). No engine allocates, locks, logs or makes a system call per
//! packet. Mbufs come from and go back to the forwarding thread's [`LcoreCaches`], which the
//! thread passes to every call, whatever stream it polls.

pub mod burst_stats;
pub mod csum;
pub mod flowgen;
pub mod io;
pub mod mac;
pub mod macswap;
pub mod pkt;
pub mod rxonly;
pub mod txonly;

use std::sync::atomic::{AtomicU64, Ordering};

use ferrovia_ethdev::{Burst, MacAddr, RxQueue, TxQueue};
use ferrovia_memory::{LcoreCaches, Mempool};

/// Counters of one stream, written by its forwarding thread only.
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// Packets received.
    pub rx_packets: AtomicU64,
    /// Packets sent.
    pub tx_packets: AtomicU64,
    /// Packets dropped because the Tx queue had no room.
    pub fwd_dropped: AtomicU64,
    /// Packets received with a bad IPv4 header checksum (csum engine; DPDK's `Bad-ipcsum`).
    pub rx_bad_ip_csum: AtomicU64,
    /// Packets received with a bad TCP/UDP checksum (csum engine; DPDK's `Bad-l4csum`).
    pub rx_bad_l4_csum: AtomicU64,
    /// CPU cycles (time-stamp counter ticks) spent in bursts that moved packets, counted by
    /// the forwarding loop when asked to (`--record-core-cycles`).
    pub busy_cycles: AtomicU64,
    /// Sizes of Rx bursts, counted when [`StreamParams::record_burst_stats`] is set.
    pub rx_bursts: burst_stats::BurstSpread,
    /// Sizes of Tx bursts (packets accepted), counted likewise.
    pub tx_bursts: burst_stats::BurstSpread,
}

impl StreamCounters {
    /// Adds `n` to a counter this thread alone writes.
    #[inline]
    pub fn bump(c: &AtomicU64, n: u64) {
        if n != 0 {
            c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        }
    }
    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Per-stream settings.
#[derive(Debug, Clone)]
pub struct StreamParams {
    /// Packets per burst.
    pub burst: usize,
    /// Segment lengths of generated frames (`--txpkts`); their sum is the frame length.
    pub txpkts: Vec<u16>,
    /// MAC address of the Tx port (source for mac/txonly/flowgen).
    pub tx_mac: MacAddr,
    /// Destination MAC for the Tx port (`--eth-peer`).
    pub peer_mac: MacAddr,
    /// Count burst sizes (`--record-burst-stats`).
    pub record_burst_stats: bool,
    /// What the csum engine does for the Tx port (`csum set`, `tso set`).
    pub csum: csum::CsumConf,
}

/// One forwarding stream: an Rx queue feeding a Tx queue.
pub struct Stream {
    /// Receive side.
    pub rx: Box<dyn RxQueue>,
    /// Transmit side.
    pub tx: Box<dyn TxQueue>,
    /// Rx port id.
    pub rx_port: u16,
    /// Rx queue id.
    pub rx_queue: u16,
    /// Tx port id.
    pub tx_port: u16,
    /// Tx queue id.
    pub tx_queue: u16,
    /// Counters, shared with the statistics reader.
    pub counters: std::sync::Arc<StreamCounters>,
    /// Settings.
    pub params: StreamParams,
    /// Pool that generated frames (txonly, flowgen) are allocated from, through the
    /// forwarding thread's cache of it.
    pub pool: Mempool,
    /// Scratch burst.
    pub burst: Burst,
}

impl Stream {
    /// Receives up to `params.burst` packets into `self.burst`; returns how many.
    #[inline]
    pub fn receive(&mut self, caches: &mut LcoreCaches) -> usize {
        let n = self.rx.rx_burst(caches, &mut self.burst, self.params.burst);
        StreamCounters::bump(&self.counters.rx_packets, n as u64);
        if self.params.record_burst_stats {
            self.counters.rx_bursts.record(n);
        }
        n
    }

    /// Sends `self.burst`, frees (to `caches`) and counts what did not fit.
    #[inline]
    pub fn send(&mut self, caches: &mut LcoreCaches) {
        if self.burst.is_empty() {
            return;
        }
        let n = self.tx.tx_burst(caches, &mut self.burst);
        StreamCounters::bump(&self.counters.tx_packets, n as u64);
        if self.params.record_burst_stats {
            self.counters.tx_bursts.record(n);
        }
        let left = self.burst.len();
        if left > 0 {
            StreamCounters::bump(&self.counters.fwd_dropped, left as u64);
            caches.free_all(self.burst.drain(..));
        }
    }
}

/// A forwarding mode.
pub trait Engine: Send {
    /// The name used by `--forward-mode` and `set fwd`.
    fn name(&self) -> &'static str;
    /// Forwards one burst on `s`, with the mbuf caches of the calling thread.
    fn forward(&mut self, caches: &mut LcoreCaches, s: &mut Stream);
}

/// Every mode's name.
pub const MODES: &[&str] = &[
    "io", "mac", "macswap", "rxonly", "txonly", "flowgen", "csum",
];

/// Creates the engine for a mode name.
pub fn engine(name: &str) -> Option<Box<dyn Engine>> {
    Some(match name {
        "io" => Box::new(io::Io),
        "mac" => Box::new(mac::Mac),
        "macswap" => Box::new(macswap::MacSwap),
        "rxonly" => Box::new(rxonly::RxOnly),
        "txonly" => Box::new(txonly::TxOnly::default()),
        "flowgen" => Box::new(flowgen::FlowGen::default()),
        "csum" => Box::new(csum::Csum),
        _ => return None,
    })
}
