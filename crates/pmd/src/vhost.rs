//! `net_vhost` / `eth_vhost`: a vhost-user backend port (the device side).
//!
//! Devargs: `iface` (socket path, required), `queues` (queue pairs, 1..=128, default 1),
//! `client` (0: listen on `iface`; 1: connect to it and reconnect whenever the peer goes away),
//! and DPDK's `iommu-support`, `postcopy-support`, `tso`, `linear-buffer`, `ext-buffer`
//! (accepted when 0; see the user guide), `max-mem` (MiB of peer memory a session may map,
//! default 65536), `link-events` (default 1: offer `VIRTIO_NET_F_STATUS` with the `CONFIG` and
//! `BACKEND_REQ` protocol features), `ctrl-vq` (default 0; 1: offer a control queue whose
//! requests the port's owner serves through `Port::ctrl_queue`), `mac`. The keys, with types
//! and docs, are in [`DRIVER`].
//!
//! The link can be set administratively down or up at run time ([`VhostLinkAdmin`], through
//! `Port::link_admin` or `Port::set_link_down/up`): the config space's status follows and a
//! frontend with a backend channel gets `CONFIG_CHANGE_MSG`.
//!
//! The process's control thread (the reactor) owns the socket and serves vhost-user messages
//! (`vhost/ctl.rs`); polling threads own the queue handles and see ring changes through the
//! quiesce handshake, never a lock per burst. Link and vring changes go to
//! `PortConf::events`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ferrovia_ethdev::ctrl::{
    ACK_ERR, ACK_OK, CtrlError, CtrlInput, CtrlQueue, CtrlRequest, MAX_CTRL_BYTES,
};
use ferrovia_ethdev::{
    Burst, Devargs, DriverSpec, Error, KeySpec, Link, LinkAdmin, MacAddr, Offloads, Port, PortConf,
    PortEventKind, PortInfo, PortStats, QueueStats, Result, RxOffloads, RxQueue, TxOffloads,
    TxQueue, VirtioFeatures,
};
use ferrovia_memory::{LcoreCaches, Mempool};
use ferrovia_transport::backend::{
    CTRL_FEATURES, DEFAULT_MAX_MEM, DeviceEvent, DeviceShared, Notify, VringCtl, offered_features,
};
use ferrovia_transport::reactor::{Reactor, SourceId};
use ferrovia_transport::socket;
use ferrovia_virtqueue::device::DeviceQueue;
use ferrovia_virtqueue::layout::net_hdr_len;
use ferrovia_virtqueue::net_hdr::{HdrAccept, OFFLOAD_FEATURES, RxPolicy};
use ferrovia_virtqueue::quiesce::{Entered, QuiesceReader};

use crate::offload;
use crate::shared::{RunState, Taken, TakenGuard};
use crate::sink::StatsSink;
use ctl::VhostSource;

mod ctl;

/// Largest frame accepted from a guest (bigger chains are refused and counted).
const MAX_FRAME: usize = 65535;

/// Largest frame accepted from a guest with LRO on: a 64 KiB GSO packet plus its Ethernet
/// header and two VLAN tags.
const MAX_LRO_FRAME: usize = 65535 + 14 + 8;

/// The vhost port.
pub struct VhostPort {
    name: String,
    mac: MacAddr,
    iface: String,
    client: bool,
    queues: u16,
    conf: PortConf,
    shared: Arc<DeviceShared>,
    state: Arc<RunState>,
    rx_stats: Vec<Arc<QueueStats>>,
    tx_stats: Vec<Arc<QueueStats>>,
    rx_taken: Taken,
    tx_taken: Taken,
    /// The control queue was handed out with `ctrl_queue` (or the port has none).
    ctrl_taken: bool,
    /// Control chains that could not be read or had no ack byte (xstat `vhost_ctrl_bad_chains`).
    ctrl_bad: Arc<AtomicU64>,
    source: SourceId,
}

impl std::fmt::Debug for VhostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VhostPort")
            .field("name", &self.name)
            .field("iface", &self.iface)
            .finish()
    }
}

/// The devargs keys of `net_vhost`.
const KEYS: &[KeySpec] = &[
    KeySpec::path("iface", "the vhost-user socket path").required(),
    KeySpec::number("queues", 1, 128, "queue pairs").default_value("1"),
    KeySpec::flag(
        "client",
        "1: connect to iface, reconnecting whenever the peer goes away; 0: listen on it",
    )
    .default_value("0"),
    KeySpec::flag("iommu-support", "DPDK's IOMMU support; only 0 is accepted").default_value("0"),
    KeySpec::flag(
        "postcopy-support",
        "DPDK's postcopy migration; only 0 is accepted",
    )
    .default_value("0"),
    KeySpec::flag(
        "tso",
        "1: offer TCP segmentation both ways (HOST_TSO4/6, GUEST_TSO4/6, with CSUM and GUEST_CSUM) and deliver the guest's large packets with the LRO flag",
    )
    .default_value("0"),
    KeySpec::flag(
        "linear-buffer",
        "accepted; frames larger than one mbuf arrive as mbuf chains",
    )
    .default_value("0"),
    KeySpec::flag(
        "ext-buffer",
        "accepted; frames larger than one mbuf arrive as mbuf chains",
    )
    .default_value("0"),
    KeySpec::flag(
        "dequeue-zero-copy",
        "DPDK's zero-copy dequeue; only 0 is accepted",
    )
    .default_value("0"),
    KeySpec::number(
        "max-mem",
        1,
        1 << 30,
        "most MiB of the peer's memory a session may map (its memory table's regions, file offsets included); larger tables are refused",
    )
    .default_value("65536"),
    KeySpec::flag(
        "link-events",
        "1: offer VIRTIO_NET_F_STATUS with the CONFIG and BACKEND_REQ protocol features, so that a frontend sees the link set down or up (set_link_down/up); 0: offer none of them",
    )
    .default_value("1"),
    KeySpec::flag(
        "ctrl-vq",
        "1: offer a virtio-net control queue (CTRL_VQ, CTRL_RX, CTRL_VLAN, CTRL_RX_EXTRA, CTRL_MAC_ADDR) whose requests the port's owner serves (the eswitch's VF ports); 0: none",
    )
    .default_value("0"),
    KeySpec::MAC,
];

/// The `net_vhost` driver, for the registry.
pub static DRIVER: DriverSpec = DriverSpec {
    name: "net_vhost",
    aliases: &["eth_vhost"],
    summary: "vhost-user backend (the device side) on a unix socket",
    keys: KEYS,
    open: |d, c| Ok(Box::new(VhostPort::open(d, c)?)),
};

impl VhostPort {
    /// Opens the port: starts listening (or connecting) at once, so a frontend may attach
    /// before the port is started.
    pub fn open(d: &Devargs, conf: &PortConf) -> Result<VhostPort> {
        d.check_keys(KEYS)?;
        let iface = d.required("iface", "the vhost-user socket path")?;
        let queues = d.number("queues", 1, 1, 128)? as u16;
        let client = d.flag("client", false)?;
        let max_mem = d.number("max-mem", DEFAULT_MAX_MEM >> 20, 1, 1 << 30)?;
        let mac = d.mac_or_derived(conf.port_id)?;
        let tso = d.flag("tso", false)?;
        let link_events = d.flag("link-events", true)?;
        let ctrl_vq = d.flag("ctrl-vq", false)?;
        for k in ["iommu-support", "postcopy-support", "dequeue-zero-copy"] {
            if d.flag(k, false)? {
                return Err(Error::Unsupported(format!(
                    "{}: {k}=1 is not supported by this vhost port; remove it or set {k}=0",
                    d.name
                )));
            }
        }
        for k in ["linear-buffer", "ext-buffer"] {
            if d.flag(k, false)? {
                log::info!(
                    "{}: {k}=1 accepted; packets larger than one mbuf are delivered as chains",
                    d.name
                );
            }
        }
        let nq = queues.max(conf.nb_rxq).max(conf.nb_txq);
        if nq > queues {
            return Err(Error::Config(format!(
                "{}: {nq} queues requested but the port was created with queues={queues}; add queues={nq} to its devargs",
                d.name
            )));
        }
        let notify: Option<Notify> = conf.events.clone().map(|sink| {
            let port_id = conf.port_id;
            Arc::new(move |e: DeviceEvent| match e {
                DeviceEvent::Link(up) => sink.emit(
                    port_id,
                    if up {
                        PortEventKind::LinkUp
                    } else {
                        PortEventKind::LinkDown
                    },
                ),
                // Even vrings are the guest's Rx (our Tx queue), odd ones its Tx (our Rx).
                DeviceEvent::Vring { index, ready } => sink.emit(
                    port_id,
                    PortEventKind::QueueState {
                        queue: index / 2,
                        rx: index % 2 == 1,
                        enabled: ready,
                    },
                ),
            }) as Notify
        });
        // The control queue's vring (index 2 * queues) is no queue of the port: its changes
        // are not reported.
        let cvq = queues * 2;
        let notify = notify.map(|n| {
            Arc::new(move |e: DeviceEvent| {
                if !matches!(e, DeviceEvent::Vring { index, .. } if index == cvq) {
                    n(e)
                }
            }) as Notify
        });
        let shared = DeviceShared::with_ctrl(queues, notify, ctrl_vq);
        shared.max_mem.store(max_mem << 20, Ordering::Relaxed);
        shared.link_events.store(link_events, Ordering::Relaxed);
        let mut mac8 = [0u8; 8];
        mac8[..6].copy_from_slice(&mac.0);
        shared
            .config_mac
            .store(u64::from_le_bytes(mac8), Ordering::Relaxed);
        // Offloads: offered only when the application enables them (or tso=1), so that by
        // default guests send and take zero headers and the data path is the plain one.
        let mut conf = conf.clone();
        if tso {
            conf.rx_offloads |= RxOffloads::TCP_LRO;
            conf.tx_offloads |= TxOffloads::TCP_TSO;
        }
        shared.offload_features.store(
            offload::device_features(
                conf.rx_offloads & offload::RX_CAPA,
                conf.tx_offloads & offload::TX_CAPA,
            ),
            Ordering::Relaxed,
        );
        let listener = if client {
            None
        } else {
            Some(socket::listen(&iface).map_err(|e| Error::io(d.name.clone(), e))?)
        };
        let source = Reactor::global().add(Box::new(VhostSource::new(
            d.name.clone(),
            iface.clone(),
            listener,
            shared.clone(),
        )));
        Ok(VhostPort {
            name: d.name.clone(),
            mac,
            iface,
            client,
            queues,
            conf,
            shared,
            state: Arc::default(),
            rx_stats: (0..queues).map(|_| Arc::default()).collect(),
            tx_stats: (0..queues).map(|_| Arc::default()).collect(),
            rx_taken: Taken::new(queues),
            tx_taken: Taken::new(queues),
            ctrl_taken: !ctrl_vq,
            ctrl_bad: Arc::default(),
            source,
        })
    }

    /// Sessions accepted so far, sessions ended by protocol errors, and refused messages.
    pub fn session_counters(&self) -> (u64, u64, u64) {
        (
            self.shared.sessions.load(Ordering::Relaxed),
            self.shared.sessions_failed.load(Ordering::Relaxed),
            self.shared.bad_messages.load(Ordering::Relaxed),
        )
    }
}

/// The [`LinkAdmin`] of a vhost port: sets the link administratively up or down from any
/// thread. The virtio-net status in the config space follows, the port's own link reports it,
/// and a frontend that acked `CONFIG` and `BACKEND_REQ` gets `CONFIG_CHANGE_MSG` (so a
/// virtio-user or guest driver sees its link go down or up). Frontends without them see no
/// change (they read no config space from us).
#[derive(Debug)]
pub struct VhostLinkAdmin {
    name: String,
    shared: Arc<DeviceShared>,
}

impl LinkAdmin for VhostLinkAdmin {
    fn set_link(&self, up: bool) -> Result<()> {
        let told = self.shared.set_admin_link(up);
        log::info!(
            "{}: link set administratively {}{}",
            self.name,
            if up { "up" } else { "down" },
            if told { "; the frontend was told" } else { "" }
        );
        Ok(())
    }
    fn admin_up(&self) -> bool {
        self.shared.admin_up.load(Ordering::Acquire)
    }
}

impl Drop for VhostPort {
    fn drop(&mut self) {
        Reactor::global().remove(self.source);
        if !self.client {
            let _ = std::fs::remove_file(&self.iface);
        }
    }
}

impl Port for VhostPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "net_vhost",
            name: self.name.clone(),
            mac: self.mac,
            nb_rx_queues: self.queues,
            nb_tx_queues: self.queues,
            max_queues: self.queues,
            nb_rxd: self.conf.nb_rxd,
            nb_txd: self.conf.nb_txd,
            max_frame_size: MAX_FRAME as u32,
            offloads: Offloads {
                rx: offload::RX_CAPA,
                tx: offload::TX_CAPA,
            },
            // What the current frontend acked (None while no frontend has set features).
            virtio_features: match self.shared.acked_features.load(Ordering::Relaxed) {
                0 => None,
                f => Some(VirtioFeatures::from_bits_retain(f)),
            },
            virtio_offered: Some(VirtioFeatures::from_bits_retain({
                let f = offered_features(self.queues)
                    | (self.shared.offload_features.load(Ordering::Relaxed) & OFFLOAD_FEATURES);
                let f = if self.shared.ctrl_vq {
                    f | CTRL_FEATURES
                } else {
                    f
                };
                if self.shared.link_events.load(Ordering::Relaxed) {
                    f
                } else {
                    f & !VirtioFeatures::NET_STATUS.bits()
                }
            })),
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
            up: self.shared.link_effective(),
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
    fn xstats(&self) -> Vec<(String, u64)> {
        let mut v = self.stats().xstats();
        let (s, f, b) = self.session_counters();
        v.push(("vhost_sessions".into(), s));
        v.push(("vhost_sessions_failed".into(), f));
        v.push(("vhost_bad_messages".into(), b));
        v.push((
            "vhost_memory_faults".into(),
            self.shared.memory_faults.faults(),
        ));
        v.push((
            "vhost_config_notified".into(),
            self.shared.config_notified.load(Ordering::Relaxed),
        ));
        v.push((
            "vhost_config_notify_failed".into(),
            self.shared.config_notify_failed.load(Ordering::Relaxed),
        ));
        if self.shared.ctrl_vq {
            v.push((
                "vhost_ctrl_bad_chains".into(),
                self.ctrl_bad.load(Ordering::Relaxed),
            ));
        }
        v
    }
    fn reset_stats(&self) {
        self.rx_stats
            .iter()
            .chain(&self.tx_stats)
            .for_each(|s| s.reset());
    }
    fn link_admin(&self) -> Option<Arc<dyn LinkAdmin>> {
        Some(Arc::new(VhostLinkAdmin {
            name: self.name.clone(),
            shared: self.shared.clone(),
        }))
    }
    fn ctrl_queue(&mut self) -> Option<Box<dyn CtrlQueue>> {
        if self.ctrl_taken {
            return None;
        }
        self.ctrl_taken = true;
        Some(Box::new(VhostCtrlQueue {
            name: self.name.clone(),
            ctl: self.shared.vrings[self.queues as usize * 2].clone(),
            reader: QuiesceReader::default(),
            dev: None,
            bad: self.ctrl_bad.clone(),
            packed_told: false,
            buf: [0; MAX_CTRL_BYTES],
        }))
    }
    fn rx_queue(&mut self, q: u16) -> Result<Box<dyn RxQueue>> {
        let guard = self.rx_taken.take(&self.name, "rx", q)?;
        Ok(Box::new(VhostQueue {
            _guard: guard,
            ctl: self.shared.vrings[q as usize * 2 + 1].clone(),
            reader: QuiesceReader::default(),
            dev: None,
            pool: self.conf.pool.clone(),
            stats: self.rx_stats[q as usize].clone(),
            state: self.state.clone(),
            port_id: self.conf.port_id,
            is_rx: true,
            rx_pol: offload::rx_policy(&self.conf),
            tx_ol: offload::tx_enabled(&self.conf),
            acc: HdrAccept::default(),
            hdr_len: 12,
        }))
    }
    fn tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>> {
        let guard = self.tx_taken.take(&self.name, "tx", q)?;
        Ok(Box::new(VhostQueue {
            _guard: guard,
            ctl: self.shared.vrings[q as usize * 2].clone(),
            reader: QuiesceReader::default(),
            dev: None,
            pool: self.conf.pool.clone(),
            stats: self.tx_stats[q as usize].clone(),
            state: self.state.clone(),
            port_id: self.conf.port_id,
            is_rx: false,
            rx_pol: offload::rx_policy(&self.conf),
            tx_ol: offload::tx_enabled(&self.conf),
            acc: HdrAccept::default(),
            hdr_len: 12,
        }))
    }
}

/// One direction of one queue pair, owned by a polling thread.
struct VhostQueue {
    _guard: TakenGuard,
    ctl: Arc<VringCtl>,
    reader: QuiesceReader<ferrovia_virtqueue::device::ActiveVring>,
    dev: Option<DeviceQueue>,
    /// The pool received packets are allocated from (its cache is the caller's).
    pool: Mempool,
    stats: Arc<QueueStats>,
    state: Arc<RunState>,
    port_id: u16,
    /// Our Rx (the guest's Tx vring); Tx otherwise.
    is_rx: bool,
    /// The application's Rx offload choices.
    rx_pol: RxPolicy,
    /// The application may set Tx offload flags (a pass before each burst handles them).
    tx_ol: bool,
    /// What the session's headers may carry in this queue's direction (Rx: what the guest
    /// may ask of us; Tx: what the guest accepts).
    acc: HdrAccept,
    /// The session's virtio-net header length.
    hdr_len: usize,
}

impl VhostQueue {
    /// Enters a burst; returns false (after exiting) if the vring is not usable now.
    #[inline]
    fn enter(&mut self) -> bool {
        match self.reader.enter(&self.ctl.cfg) {
            Entered::Paused => {
                self.dev = None;
                self.reader.exit(&self.ctl.cfg);
                false
            }
            Entered::Changed(a) => {
                let (avail, used) = (
                    self.ctl.last_avail.load(Ordering::Acquire),
                    self.ctl.used_idx.load(Ordering::Acquire),
                );
                self.acc = if self.is_rx {
                    HdrAccept::device_reads(a.features)
                } else {
                    HdrAccept::driver_reads(a.features)
                };
                self.hdr_len = net_hdr_len(a.features);
                self.dev = Some(DeviceQueue::new(a.clone(), avail, used));
                true
            }
            Entered::Same(_) => true,
        }
    }

    #[inline]
    fn exit(&mut self) {
        if let Some(d) = &self.dev {
            self.ctl.last_avail.store(d.last_avail(), Ordering::Relaxed);
            self.ctl.used_idx.store(d.used_idx(), Ordering::Relaxed);
        }
        self.reader.exit(&self.ctl.cfg);
    }
}

impl RxQueue for VhostQueue {
    fn rx_burst(&mut self, caches: &mut LcoreCaches, pkts: &mut Burst, max: usize) -> usize {
        if !self.state.started() || !self.enter() {
            return 0;
        }
        let dev = self.dev.as_mut().expect("entered");
        let start = pkts.len();
        let cache = caches.for_pool(&self.pool);
        let mut res = dev.dequeue_burst(
            cache,
            pkts,
            max,
            if self.rx_pol.lro {
                MAX_LRO_FRAME
            } else {
                MAX_FRAME
            },
            self.port_id,
            &StatsSink(&self.stats),
        );
        self.exit();
        if self.acc.any() && res.packets > 0 {
            // The device kept each packet's header in front of its data (a private copy:
            // the guest cannot change it after this check).
            let (k, b) = offload::rx_pass(
                pkts,
                start,
                self.hdr_len,
                self.acc,
                self.rx_pol,
                cache,
                &self.stats,
            );
            res.packets -= k;
            res.bytes -= b;
        }
        self.stats.add(res.packets as u64, res.bytes as u64);
        res.packets
    }
}

impl TxQueue for VhostQueue {
    fn tx_burst(&mut self, caches: &mut LcoreCaches, pkts: &mut Burst) -> usize {
        if !self.state.started() || pkts.is_empty() || !self.enter() {
            return 0;
        }
        let cache = caches.for_pool(&self.pool);
        if self.tx_ol {
            offload::tx_pass(pkts, self.acc, cache, &self.stats);
        }
        let dev = self.dev.as_mut().expect("entered");
        let res = dev.enqueue_burst(cache, pkts, &StatsSink(&self.stats));
        self.exit();
        self.stats.add(res.packets as u64, res.bytes as u64);
        res.packets
    }
}

impl Drop for VhostQueue {
    fn drop(&mut self) {
        self.dev = None;
        self.reader.release();
    }
}

/// The device side of a vhost port's control queue (`ctrl-vq=1`), served by the port's owner
/// off the data path. Split rings only: a frontend that negotiated the packed ring has its
/// control queue left unserved (logged once).
struct VhostCtrlQueue {
    name: String,
    ctl: Arc<VringCtl>,
    reader: QuiesceReader<ferrovia_virtqueue::device::ActiveVring>,
    dev: Option<DeviceQueue>,
    bad: Arc<AtomicU64>,
    packed_told: bool,
    buf: [u8; MAX_CTRL_BYTES],
}

/// Counts the ring errors a control chain met (the chain itself is reported to the judge).
struct CountSink<'a>(&'a AtomicU64);

impl ferrovia_virtqueue::ErrorSink for CountSink<'_> {
    fn ring_error(&self, _e: ferrovia_virtqueue::RingError, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

fn ring_error_text(e: ferrovia_virtqueue::RingError) -> &'static str {
    use ferrovia_virtqueue::RingError as E;
    match e {
        E::DescAddr => "a descriptor outside the driver's memory",
        E::DescLoop => "a descriptor loop",
        E::DescIndex => "a descriptor index out of range",
        E::DescLen => "a chain too long",
        E::Indirect => "a bad indirect descriptor table",
        _ => "a malformed chain",
    }
}

impl CtrlQueue for VhostCtrlQueue {
    fn serve(&mut self, max: usize, judge: &mut dyn FnMut(CtrlInput) -> bool) -> usize {
        match self.reader.enter(&self.ctl.cfg) {
            Entered::Paused => {
                self.dev = None;
                self.reader.exit(&self.ctl.cfg);
                return 0;
            }
            Entered::Changed(a) => {
                let (avail, used) = (
                    self.ctl.last_avail.load(Ordering::Acquire),
                    self.ctl.used_idx.load(Ordering::Acquire),
                );
                self.dev = Some(DeviceQueue::new(a.clone(), avail, used));
            }
            Entered::Same(_) => {}
        }
        let mut served = 0;
        match self.dev.as_mut() {
            Some(DeviceQueue::Split(d)) => {
                let sink = CountSink(&self.bad);
                while served < max {
                    let Some(c) = d.ctrl_pop(&mut self.buf, &sink) else {
                        break;
                    };
                    let input = if let Some(e) = c.error {
                        CtrlInput::BadChain(ring_error_text(e))
                    } else if !c.has_ack() {
                        self.bad.fetch_add(1, Ordering::Relaxed);
                        CtrlInput::BadChain("no device-writable ack byte")
                    } else if c.readable_after_ack {
                        self.bad.fetch_add(1, Ordering::Relaxed);
                        CtrlInput::BadChain("a device-readable buffer after the ack")
                    } else if c.truncated {
                        CtrlInput::Malformed(CtrlError::TooLong)
                    } else {
                        match CtrlRequest::parse(&self.buf[..c.len]) {
                            Ok(r) => CtrlInput::Request(r),
                            Err(e) => CtrlInput::Malformed(e),
                        }
                    };
                    let ok = judge(input);
                    d.ctrl_complete(c, if ok { ACK_OK } else { ACK_ERR }, &sink);
                    served += 1;
                }
                self.ctl.last_avail.store(d.last_avail(), Ordering::Relaxed);
                self.ctl.used_idx.store(d.used_idx(), Ordering::Relaxed);
            }
            Some(DeviceQueue::Packed(_)) if !self.packed_told => {
                self.packed_told = true;
                log::warn!(
                    "{}: the frontend uses the packed ring; its control queue is served on split rings only (open it with packed_vq=0)",
                    self.name
                );
            }
            Some(DeviceQueue::Packed(_)) | None => {}
        }
        self.reader.exit(&self.ctl.cfg);
        served
    }
}

impl Drop for VhostCtrlQueue {
    fn drop(&mut self) {
        self.dev = None;
        self.reader.release();
    }
}
