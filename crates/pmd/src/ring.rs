//! `net_ring`: an in-memory loopback port. What queue `q` transmits, queue `q` receives, through
//! a lock-free ring (so Rx and Tx may run on different threads). Devargs: `size` (ring slots,
//! default 1024), `mac` (see [`DRIVER`]).

use std::sync::Arc;

use ferrovia_ethdev::{
    Burst, Devargs, DriverSpec, ErrorCause, KeySpec, Link, MacAddr, Offloads, Port, PortConf,
    PortInfo, PortStats, QueueStats, Result, RxOffloads, RxQueue, TxOffloads, TxQueue,
};
use ferrovia_memory::{LcoreCaches, Mbuf, ObjRing};

use crate::shared::{RunState, Taken, TakenGuard};

struct MbufRing(ObjRing);

impl Drop for MbufRing {
    fn drop(&mut self) {
        let mut out = [0usize; 64];
        loop {
            let n = self.0.dequeue_burst(&mut out);
            if n == 0 {
                break;
            }
            for &p in &out[..n] {
                // SAFETY: the ring only holds pointers from Mbuf::into_raw, each once.
                drop(unsafe { Mbuf::from_raw(std::ptr::NonNull::new_unchecked(p as *mut _)) });
            }
        }
    }
}

/// The devargs keys of `net_ring`.
const KEYS: &[KeySpec] = &[
    KeySpec::number("size", 2, 1 << 20, "slots of each queue's ring").default_value("1024"),
    KeySpec::MAC,
];

/// The `net_ring` driver, for the registry.
pub static DRIVER: DriverSpec = DriverSpec {
    name: "net_ring",
    aliases: &["eth_ring"],
    summary: "in-memory loopback: what queue q transmits, queue q receives",
    keys: KEYS,
    open: |d, c| Ok(Box::new(RingPort::open(d, c)?)),
};

/// The ring port.
pub struct RingPort {
    name: String,
    mac: MacAddr,
    conf: PortConf,
    nq: u16,
    rings: Vec<Arc<MbufRing>>,
    state: Arc<RunState>,
    rx_stats: Vec<Arc<QueueStats>>,
    tx_stats: Vec<Arc<QueueStats>>,
    rx_taken: Taken,
    tx_taken: Taken,
}

impl RingPort {
    /// Opens a ring port.
    pub fn open(d: &Devargs, conf: &PortConf) -> Result<RingPort> {
        d.check_keys(KEYS)?;
        let size = d.number("size", 1024, 2, 1 << 20)? as usize;
        let mac = d.mac_or_derived(conf.port_id)?;
        let nq = conf.nb_rxq.max(conf.nb_txq).max(1);
        Ok(RingPort {
            name: d.name.clone(),
            mac,
            conf: conf.clone(),
            nq,
            rings: (0..nq)
                .map(|_| Arc::new(MbufRing(ObjRing::new(size))))
                .collect(),
            state: Arc::default(),
            rx_stats: (0..nq).map(|_| Arc::default()).collect(),
            tx_stats: (0..nq).map(|_| Arc::default()).collect(),
            rx_taken: Taken::new(nq),
            tx_taken: Taken::new(nq),
        })
    }
}

impl Port for RingPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "net_ring",
            name: self.name.clone(),
            mac: self.mac,
            nb_rx_queues: self.nq,
            nb_tx_queues: self.nq,
            max_queues: 1024,
            nb_rxd: self.conf.nb_rxd,
            nb_txd: self.conf.nb_txd,
            max_frame_size: self.conf.max_rx_pktlen,
            // Chains pass through the ring as they were sent.
            offloads: Offloads {
                rx: RxOffloads::SCATTER,
                tx: TxOffloads::MULTI_SEGS,
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
        Ok(Box::new(RingRx {
            _guard: guard,
            ring: self.rings[q as usize].clone(),
            port_id: self.conf.port_id,
            state: self.state.clone(),
            stats: self.rx_stats[q as usize].clone(),
        }))
    }
    fn tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>> {
        let guard = self.tx_taken.take(&self.name, "tx", q)?;
        Ok(Box::new(RingTx {
            _guard: guard,
            ring: self.rings[q as usize].clone(),
            state: self.state.clone(),
            stats: self.tx_stats[q as usize].clone(),
        }))
    }
}

struct RingRx {
    _guard: TakenGuard,
    ring: Arc<MbufRing>,
    port_id: u16,
    state: Arc<RunState>,
    stats: Arc<QueueStats>,
}

impl RxQueue for RingRx {
    fn rx_burst(&mut self, _caches: &mut LcoreCaches, pkts: &mut Burst, max: usize) -> usize {
        if !self.state.started() {
            return 0;
        }
        let mut out = [0usize; 64];
        let want = max.min(pkts.remaining_capacity()).min(64);
        let n = self.ring.0.dequeue_burst(&mut out[..want]);
        let mut bytes = 0;
        for &p in &out[..n] {
            // SAFETY: the ring only holds pointers from Mbuf::into_raw, each once.
            let mut m = unsafe { Mbuf::from_raw(std::ptr::NonNull::new_unchecked(p as *mut _)) };
            m.set_port(self.port_id);
            bytes += m.pkt_len();
            pkts.push(m);
        }
        self.stats.add(n as u64, bytes as u64);
        n
    }
}

struct RingTx {
    _guard: TakenGuard,
    ring: Arc<MbufRing>,
    state: Arc<RunState>,
    stats: Arc<QueueStats>,
}

impl TxQueue for RingTx {
    fn tx_burst(&mut self, _caches: &mut LcoreCaches, pkts: &mut Burst) -> usize {
        if !self.state.started() || pkts.is_empty() {
            return 0;
        }
        // This handle is the ring's only producer, so the free space can only grow between
        // this check and the enqueue: every pointer taken below fits.
        let free = self.ring.0.capacity() - self.ring.0.len();
        let n = pkts.len().min(64).min(free);
        let mut ptrs = [0usize; 64];
        let mut bytes = 0;
        for (i, m) in pkts.drain(..n).enumerate() {
            bytes += m.pkt_len();
            ptrs[i] = m.into_raw().as_ptr() as usize;
        }
        let done = self.ring.0.enqueue_burst(&ptrs[..n]);
        debug_assert_eq!(done, n);
        self.stats.add(done as u64, bytes as u64);
        if n == 0 {
            self.stats.error(ErrorCause::RingFull, 1);
        }
        done
    }
}
