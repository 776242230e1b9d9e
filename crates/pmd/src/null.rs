//! `net_null`: Rx produces packets of a fixed size (zero-filled), Tx frees what it gets.
//! Devargs: `size` (default 64), `copy` (accepted, ignored), `no-rx` (1: Rx produces nothing),
//! `mac` (see [`DRIVER`]).

use std::sync::Arc;

use ferrovia_ethdev::{
    Burst, Devargs, DriverSpec, ErrorCause, KeySpec, Link, MacAddr, Offloads, Port, PortConf,
    PortInfo, PortStats, QueueStats, Result, RxQueue, TxOffloads, TxQueue,
};
use ferrovia_memory::{LcoreCaches, Mempool};

use crate::shared::{RunState, Taken, TakenGuard};

/// The devargs keys of `net_null`.
const KEYS: &[KeySpec] = &[
    KeySpec::number("size", 14, 9728, "length of the frames Rx produces").default_value("64"),
    KeySpec::flag("copy", "accepted for DPDK compatibility, no effect").default_value("0"),
    KeySpec::flag("no-rx", "1: Rx produces nothing (a pure sink)").default_value("0"),
    KeySpec::MAC,
];

/// The `net_null` driver, for the registry.
pub static DRIVER: DriverSpec = DriverSpec {
    name: "net_null",
    aliases: &["eth_null"],
    summary: "packet source and sink: Rx produces zero-filled frames, Tx frees what it gets",
    keys: KEYS,
    open: |d, c| Ok(Box::new(NullPort::open(d, c)?)),
};

/// The null port.
#[derive(Debug)]
pub struct NullPort {
    name: String,
    mac: MacAddr,
    conf: PortConf,
    size: usize,
    no_rx: bool,
    nq: u16,
    state: Arc<RunState>,
    rx_stats: Vec<Arc<QueueStats>>,
    tx_stats: Vec<Arc<QueueStats>>,
    rx_taken: Taken,
    tx_taken: Taken,
}

impl NullPort {
    /// Opens a null port.
    pub fn open(d: &Devargs, conf: &PortConf) -> Result<NullPort> {
        d.check_keys(KEYS)?;
        let size = d.number("size", 64, 14, 9728)? as usize;
        let no_rx = d.flag("no-rx", false)?;
        let mac = d.mac_or_derived(conf.port_id)?;
        let nq = conf.nb_rxq.max(conf.nb_txq).max(1);
        Ok(NullPort {
            name: d.name.clone(),
            mac,
            conf: conf.clone(),
            size,
            no_rx,
            nq,
            state: Arc::default(),
            rx_stats: (0..nq).map(|_| Arc::default()).collect(),
            tx_stats: (0..nq).map(|_| Arc::default()).collect(),
            rx_taken: Taken::new(nq),
            tx_taken: Taken::new(nq),
        })
    }
}

impl Port for NullPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "net_null",
            name: self.name.clone(),
            mac: self.mac,
            nb_rx_queues: self.nq,
            nb_tx_queues: self.nq,
            max_queues: 1024,
            nb_rxd: self.conf.nb_rxd,
            nb_txd: self.conf.nb_txd,
            max_frame_size: self.conf.max_rx_pktlen,
            offloads: Offloads {
                tx: TxOffloads::MULTI_SEGS,
                ..Offloads::default()
            },
            virtio_features: None,
            virtio_offered: None,
            switch_domain: None,
        }
    }
    fn start(&mut self) -> Result<()> {
        self.state.set(true);
        Ok(())
    }
    fn stop(&mut self) -> Result<()> {
        self.state.set(false);
        Ok(())
    }
    fn link(&self) -> Link {
        Link {
            up: self.state.started(),
            speed_mbps: 10_000,
            full_duplex: true,
        }
    }
    fn stats(&self) -> PortStats {
        PortStats::collect(
            self.rx_stats.iter().map(|s| &**s),
            self.tx_stats.iter().map(|s| &**s),
        )
    }
    fn reset_stats(&self) {
        self.rx_stats
            .iter()
            .chain(&self.tx_stats)
            .for_each(|s| s.reset());
    }
    fn rx_queue(&mut self, q: u16) -> Result<Box<dyn RxQueue>> {
        let guard = self.rx_taken.take(&self.name, "rx", q)?;
        Ok(Box::new(NullRx {
            _guard: guard,
            pool: self.conf.pool.clone(),
            size: if self.no_rx { 0 } else { self.size },
            port_id: self.conf.port_id,
            state: self.state.clone(),
            stats: self.rx_stats[q as usize].clone(),
        }))
    }
    fn tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>> {
        let guard = self.tx_taken.take(&self.name, "tx", q)?;
        Ok(Box::new(NullTx {
            _guard: guard,
            state: self.state.clone(),
            stats: self.tx_stats[q as usize].clone(),
        }))
    }
}

struct NullRx {
    _guard: TakenGuard,
    pool: Mempool,
    size: usize,
    port_id: u16,
    state: Arc<RunState>,
    stats: Arc<QueueStats>,
}

impl RxQueue for NullRx {
    fn rx_burst(&mut self, caches: &mut LcoreCaches, pkts: &mut Burst, max: usize) -> usize {
        if !self.state.started() || self.size == 0 {
            return 0;
        }
        let cache = caches.for_pool(&self.pool);
        let n = max.min(pkts.remaining_capacity());
        let mut got = 0;
        for _ in 0..n {
            let Some(mut m) = cache.alloc() else {
                self.stats.error(ErrorCause::NoMbuf, 1);
                break;
            };
            match m.append(self.size) {
                Some(d) => d.fill(0),
                None => {
                    self.stats.error(ErrorCause::TooLong, 1);
                    cache.free(m);
                    break;
                }
            }
            m.set_port(self.port_id);
            pkts.push(m);
            got += 1;
        }
        self.stats.add(got as u64, (got * self.size) as u64);
        got
    }
}

struct NullTx {
    _guard: TakenGuard,
    state: Arc<RunState>,
    stats: Arc<QueueStats>,
}

impl TxQueue for NullTx {
    fn tx_burst(&mut self, caches: &mut LcoreCaches, pkts: &mut Burst) -> usize {
        if !self.state.started() {
            return 0;
        }
        let n = pkts.len();
        let bytes: usize = pkts.iter().map(|m| m.pkt_len()).sum();
        caches.free_all(pkts.drain(..));
        self.stats.add(n as u64, bytes as u64);
        n
    }
}
