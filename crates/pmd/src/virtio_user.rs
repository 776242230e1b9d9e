//! `net_virtio_user` / `virtio_user`: a virtio-net driver in this process, talking to a vhost
//! device: a vhost-user backend over a unix socket, or the kernel's vhost-net with a tap
//! interface (the exception path).
//!
//! Devargs: `path` (required: a vhost-user socket, or a vhost-net character device such as
//! `/dev/vhost-net`), `queues` (1..=128, default 1), `queue_size` (power of two, default 256),
//! `server` (vhost-user only; 1: listen on `path` and accept the backend, again after each
//! disconnection; 0: connect, and reconnect if the backend restarts), `mrg_rxbuf` (default 1),
//! `in_order` (default 1), `mac`, `cq` (default 0; 1: the control queue, see below),
//! `packed_vq` (default 0; 1: packed ring, vhost-user only), `speed`, `vectorized` (accepted,
//! ignored), `iface` (vhost-kernel only: the tap's name, default `tap%d`, the kernel choosing
//! the number). The keys, with types and docs, are in [`DRIVER`].
//!
//! The rings and every mempool live in memfd-backed shared memory. Which device drives them
//! is the port's backend (`virtio_user/backend.rs`), picked by `path`: for vhost-user the
//! process's control loop owns the socket (`virtio_user/ctl.rs`); on a disconnection it pauses
//! the queues, and on the next connection it renegotiates and resumes every ring where the old
//! backend stopped. For vhost-kernel (`virtio_user/kernel.rs`) the port opens one vhost-net fd
//! and one tap queue per queue pair and hands the kernel the rings when it opens. Link and
//! queue changes go to `PortConf::events` (vhost-kernel: link up once, when the port opens).
//! With a vhost-user backend that offers `VIRTIO_NET_F_STATUS`, `CONFIG` and `BACKEND_REQ`,
//! the link also follows the device's config space: read during the handshake and again on
//! each `CONFIG_CHANGE_MSG` on the backend channel.
//!
//! With `cq=1` (vhost-user, split rings) the port negotiates the control queue and
//! `Port::set_mac`, `set_promisc`, `set_allmulti` and `vlan_filter` send its commands, one at
//! a time, waiting up to 1 s for the device's ack ([`VirtioUserPort`]'s `ctrl_command`); the
//! device's refusal (`VIRTIO_NET_ERR`) is the error.

use std::cell::UnsafeCell;
use std::fs::File;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, mpsc};

use ferrovia_ethdev::ctrl::{self, ACK_OK, CtrlRequest, RxMode};
use ferrovia_ethdev::{
    Burst, Devargs, DriverSpec, Error, KeyKind, KeySpec, Link, MacAddr, Offloads, Port, PortConf,
    PortInfo, PortStats, QueueStats, Result, RxOffloads, RxQueue, TxQueue, VirtioFeatures,
};
use ferrovia_memory::arena::{self, ArenaSlice};
use ferrovia_memory::{LcoreCaches, Mempool};
use ferrovia_transport::socket;
use ferrovia_transport::vhost_kernel::DEFAULT_TAP_NAME;
use ferrovia_virtqueue::driver::{DriverOptions, DriverQueue};
use ferrovia_virtqueue::layout::{bit, feature, net_hdr_len, valid_queue_size};
use ferrovia_virtqueue::net_hdr::{HdrAccept, RxPolicy};
use ferrovia_virtqueue::quiesce::{Entered, Quiesce, QuiesceReader};
use ferrovia_virtqueue::split::{CTRL_BUF_LEN, CtrlDriver, CtrlPostError};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::offload;
use crate::shared::{RunState, Taken, TakenGuard};
use crate::sink::StatsSink;
use backend::{Backend, BackendKind};
use ctl::{UserBackend, VirtioUserSource};
use kernel::KernelBackend;

mod backend;
mod ctl;
mod kernel;

/// Largest packet received with LRO on (a 64 KiB IP packet plus its Ethernet header and
/// VLAN tags).
const LRO_MAX_PKT: usize = 65535 + 14 + 8;

/// The devargs keys of `net_virtio_user`.
const KEYS: &[KeySpec] = &[
    KeySpec::path(
        "path",
        "the vhost-user socket path, or the vhost-net device (/dev/vhost-net) for the exception path",
    )
    .required(),
    KeySpec::number(
        "queues",
        1,
        128,
        "queue pairs; more than 1 needs a vhost-user backend offering VIRTIO_NET_F_MQ, or with vhost-kernel a multi-queue tap",
    )
    .default_value("1"),
    KeySpec::number("queue_size", 2, 32768, "ring size, a power of two").default_value("256"),
    KeySpec::flag(
        "server",
        "vhost-user only; 1: listen on path (the backend may come and go); 0: connect, reconnecting if it restarts",
    )
    .default_value("0"),
    KeySpec::flag("mrg_rxbuf", "offer mergeable Rx buffers").default_value("1"),
    KeySpec::flag("in_order", "offer VIRTIO_F_IN_ORDER").default_value("1"),
    KeySpec::flag(
        "packed_vq",
        "1: use the packed virtqueue layout (vhost-user only)",
    )
    .default_value("0"),
    KeySpec::MAC,
    KeySpec::flag(
        "cq",
        "1: negotiate the control queue (CTRL_VQ, with CTRL_RX, CTRL_VLAN and CTRL_MAC_ADDR when offered; vhost-user, split ring), so that set_mac, promisc, allmulti and the VLAN filter ask the device; 0: none",
    )
    .default_value("0"),
    KeySpec::number(
        "speed",
        0,
        u32::MAX as u64,
        "link speed in Mbps; accepted, no effect",
    ),
    KeySpec::flag("vectorized", "accepted, no effect"),
    KeySpec::new(
        "iface",
        KeyKind::Text,
        "vhost-kernel only: the tap interface to create or attach to (%d: the kernel picks the number)",
    )
    .default_value("tap%d"),
];

/// The `net_virtio_user` driver, for the registry.
pub static DRIVER: DriverSpec = DriverSpec {
    name: "net_virtio_user",
    aliases: &["virtio_user"],
    summary: "virtio-net driver in this process, talking to a vhost-user backend or to vhost-net and a tap",
    keys: KEYS,
    open: |d, c| Ok(Box::new(VirtioUserPort::open(d, c)?)),
};

/// What a queue needs from the current connection.
#[derive(Debug)]
pub(crate) struct LinkCfg {
    pub(crate) features: u64,
    pub(crate) kick: Option<File>,
}

/// Per-vring state shared by the control thread and the queue's owner.
///
/// The driver queue itself is reached through an `UnsafeCell`; the quiesce protocol makes the
/// accesses exclusive: the queue handle touches it only inside a burst entered with a live
/// configuration, and the control thread only after `cfg.publish(None)` returned (no burst in
/// progress, and none can start until the next `publish(Some)`), or before any handle exists.
pub(crate) struct VringShared {
    pub(crate) cfg: Quiesce<LinkCfg>,
    queue: UnsafeCell<DriverQueue>,
}

// SAFETY: see the type's documentation: access to `queue` is serialised by the quiesce
// protocol; everything else is Sync.
unsafe impl Sync for VringShared {}

impl VringShared {
    /// # Safety
    /// The caller must hold exclusive access per the quiesce protocol (see the type's docs).
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn queue(&self) -> &mut DriverQueue {
        // SAFETY: exclusivity is the caller's obligation.
        unsafe { &mut *self.queue.get() }
    }
}

/// Options fixed at open.
#[derive(Debug, Clone)]
pub(crate) struct Opts {
    pub(crate) path: String,
    pub(crate) server: bool,
    pub(crate) queues: u16,
    pub(crate) want: u64,
    pub(crate) max_rx_pkt: usize,
    pub(crate) packed: bool,
}

/// The virtio-user port.
pub struct VirtioUserPort {
    name: String,
    opts: Opts,
    queue_size: u16,
    mac: MacAddr,
    conf: PortConf,
    vrings: Arc<Vec<Arc<VringShared>>>,
    backend: Box<dyn Backend>,
    negotiated: Arc<Mutex<Option<u64>>>,
    state: Arc<RunState>,
    rx_stats: Vec<Arc<QueueStats>>,
    tx_stats: Vec<Arc<QueueStats>>,
    rx_taken: Taken,
    tx_taken: Taken,
    /// The control queue (`cq=1`).
    ctrl: Option<Arc<CtrlVq>>,
    _area: Arc<ArenaSlice>,
}

/// Entries of the control queue's ring (one command is in flight at a time).
pub(crate) const CTRL_QUEUE_SIZE: u16 = 64;

/// How long a control command waits for the device's ack.
const CTRL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

/// The features `cq=1` asks for.
const CTRL_WANT: u64 = 1 << ctrl::F_CTRL_VQ
    | 1 << ctrl::F_CTRL_RX
    | 1 << ctrl::F_CTRL_VLAN
    | 1 << ctrl::F_CTRL_MAC_ADDR;

/// A virtio-user port's control queue (`cq=1`): its ring, sent to the backend as vring
/// `2 * queues` when the backend agreed to `CTRL_VQ`, and the driver that posts commands.
#[derive(Debug)]
pub(crate) struct CtrlVq {
    pub(crate) addrs: ferrovia_virtqueue::driver::RingAddrs,
    pub(crate) drv: Mutex<CtrlDriver>,
    kick: EventFd,
}

impl std::fmt::Debug for VirtioUserPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioUserPort")
            .field("name", &self.name)
            .field("path", &self.opts.path)
            .field("backend", &self.backend.kind().as_str())
            .finish()
    }
}

fn eventfd(what: &str) -> Result<EventFd> {
    EventFd::new(EFD_NONBLOCK).map_err(|e| Error::io(format!("cannot create {what} eventfd"), e))
}

impl VirtioUserPort {
    /// Opens the port. With vhost-user in client mode (default) the first connection is made
    /// here and the call fails with an explanation if the backend is not there; in server mode
    /// the socket is created here and the backend may connect at any time. With vhost-kernel
    /// the devices and the tap are set up here, and any refusal is the error.
    pub fn open(d: &Devargs, conf: &PortConf) -> Result<VirtioUserPort> {
        d.check_keys(KEYS)?;
        let path = d.required(
            "path",
            "the vhost-user socket path, or /dev/vhost-net for vhost-kernel",
        )?;
        let queues = d.number("queues", 1, 1, 128)? as u16;
        let queue_size = d.number("queue_size", 256, 2, 32768)? as u16;
        if !valid_queue_size(queue_size as u32) {
            return Err(Error::Devargs(format!(
                "{}: queue_size={queue_size} must be a power of two (e.g. 256, 1024)",
                d.name
            )));
        }
        let server = d.flag("server", false)?;
        let mrg = d.flag("mrg_rxbuf", true)?;
        let in_order = d.flag("in_order", true)?;
        let packed = d.flag("packed_vq", false)?;
        let cq = d.flag("cq", false)?;
        let kind = BackendKind::of(&path);
        if cq && kind == BackendKind::VhostKernel {
            return Err(Error::Unsupported(format!(
                "{}: cq=1: vhost-net has no control queue; remove cq to use {path}",
                d.name
            )));
        }
        if cq && packed {
            return Err(Error::Unsupported(format!(
                "{}: cq=1 with packed_vq=1: the control queue is on split rings only; remove packed_vq or cq",
                d.name
            )));
        }
        match kind {
            BackendKind::VhostKernel => {
                if server {
                    return Err(Error::Devargs(format!(
                        "{}: server=1 is for vhost-user sockets; path={path} is a vhost-kernel device, remove server",
                        d.name
                    )));
                }
                if packed {
                    return Err(Error::Unsupported(format!(
                        "{}: packed_vq=1: vhost-net has no packed ring; remove packed_vq to use {path}",
                        d.name
                    )));
                }
            }
            BackendKind::VhostUser => {
                if d.get("iface").is_some() {
                    return Err(Error::Devargs(format!(
                        "{}: iface= names the tap of a vhost-kernel port, but path={path} is not a vhost-net device (e.g. /dev/vhost-net); remove iface",
                        d.name
                    )));
                }
            }
        }
        if !conf.pool.shareable() {
            return Err(Error::Config(format!(
                "{}: the mbuf pool cannot be shared with a vhost backend: its hugepages were reordered to be physically contiguous for net_virtio_pci ports; run virtio-user ports in a process without PCI ports",
                d.name
            )));
        }
        let mac = d.mac_or_derived(conf.port_id)?;
        let nq = queues.max(conf.nb_rxq).max(conf.nb_txq);
        if nq > queues {
            return Err(Error::Config(format!(
                "{}: {nq} queues requested but the port was created with queues={queues}; add queues={nq} to its devargs",
                d.name
            )));
        }
        let mut want = bit(feature::F_VERSION_1)
            | bit(feature::VHOST_USER_F_PROTOCOL_FEATURES)
            | bit(feature::RING_F_EVENT_IDX);
        if mrg {
            want |= bit(feature::NET_F_MRG_RXBUF);
        }
        if in_order {
            want |= bit(feature::F_IN_ORDER);
        }
        if queues > 1 {
            want |= bit(feature::NET_F_MQ);
        }
        if packed {
            want |= bit(feature::F_RING_PACKED);
        }
        if cq {
            want |= CTRL_WANT;
        }
        // Offloads: asked for only when the application enables them, so that by default the
        // headers stay zero and the data path is the one without offloads.
        want |= offload::driver_features(
            conf.rx_offloads & offload::RX_CAPA,
            conf.tx_offloads & offload::TX_CAPA,
        );
        // The link status (vhost-user only: vhost-net has no config space): with a backend
        // that also offers CONFIG and BACKEND_REQ, the link follows what it reports.
        if kind == BackendKind::VhostUser {
            want |= bit(feature::NET_F_STATUS);
        }
        let lro = conf.rx_offloads.contains(RxOffloads::TCP_LRO);
        // vhost-kernel: the devices and taps are opened first, so that the rings are built for
        // the features the kernel agreed to.
        let mut kernel = None;
        if kind == BackendKind::VhostKernel {
            let iface = d.get("iface").unwrap_or(DEFAULT_TAP_NAME);
            let k = KernelBackend::open(&d.name, &path, iface, queues, want)?;
            want = k.features();
            kernel = Some(k);
        }
        let opts = Opts {
            path: path.clone(),
            server,
            queues,
            want,
            // LRO packets are up to 64 KiB whatever the MTU.
            max_rx_pkt: if lro {
                (conf.max_rx_pktlen as usize).max(LRO_MAX_PKT)
            } else {
                conf.max_rx_pktlen as usize
            },
            packed,
        };

        // Rings: one slice of the process's ring arena (shared memory every backend can map)
        // for all vrings of the port.
        let qbytes = DriverQueue::area_size(queue_size, packed);
        let nvr = queues as usize * 2;
        // With cq=1 the control queue's split ring and its command buffer follow the vrings.
        let cq_bytes = if cq {
            DriverQueue::area_size(CTRL_QUEUE_SIZE, false) + CTRL_BUF_LEN
        } else {
            0
        };
        let area = Arc::new(
            arena::alloc(qbytes * nvr + cq_bytes)
                .map_err(|e| Error::io(format!("{}: ring memory", d.name), e))?,
        );
        let ctrl = if cq {
            let base = area.base() as u64 + (qbytes * nvr) as u64;
            let a = DriverQueue::addrs(base, CTRL_QUEUE_SIZE, false);
            let buf = base + DriverQueue::area_size(CTRL_QUEUE_SIZE, false) as u64;
            // SAFETY: the addresses lie in this port's slice of the ring arena (zeroed shared
            // memory the backend maps), laid out for a split ring of CTRL_QUEUE_SIZE, with
            // CTRL_BUF_LEN bytes after it; the port and the source keep `area` alive.
            let drv = unsafe {
                CtrlDriver::new(
                    a.desc as *mut u8,
                    a.avail as *mut u8,
                    a.used as *mut u8,
                    CTRL_QUEUE_SIZE,
                    buf as *mut u8,
                    0,
                )
            }
            .map_err(|e| Error::Config(format!("{}: control queue: {e:?}", d.name)))?;
            Some(Arc::new(CtrlVq {
                addrs: a,
                drv: Mutex::new(drv),
                kick: eventfd("control queue kick")?,
            }))
        } else {
            None
        };
        let mut cache = conf.pool.cache();
        let mut vrings = Vec::with_capacity(nvr);
        for i in 0..nvr {
            let dopts = DriverOptions {
                features: want,
                max_rx_pkt: opts.max_rx_pkt,
            };
            // SAFETY: each vring gets its own `qbytes` of the area, which is kept alive by the
            // port (and by every queue handle through `_area`).
            let mut q =
                unsafe { DriverQueue::new(area.base().add(i * qbytes), queue_size, packed, dopts) }
                    .map_err(|e| Error::Config(format!("{}: {e}", d.name)))?;
            if i % 2 == 0 {
                let room = conf.pool.config().data_room as usize;
                q.set_rx_chain_for(if mrg { 0 } else { opts.max_rx_pkt }, room);
                q.refill(&mut cache, &ferrovia_virtqueue::NoSink);
            }
            vrings.push(Arc::new(VringShared {
                cfg: Quiesce::default(),
                queue: UnsafeCell::new(q),
            }));
        }
        drop(cache);
        let vrings = Arc::new(vrings);
        let nfd = nvr + cq as usize;
        let mut kicks: Vec<EventFd> = (0..nvr).map(|_| eventfd("kick")).collect::<Result<_>>()?;
        if let Some(c) = &ctrl {
            kicks.push(
                c.kick
                    .try_clone()
                    .map_err(|e| Error::io(format!("{}: control queue kick", d.name), e))?,
            );
        }
        let calls: Vec<EventFd> = (0..nfd).map(|_| eventfd("call")).collect::<Result<_>>()?;
        let negotiated = Arc::new(Mutex::new(None));
        let mut first_rx = None;
        let backend: Box<dyn Backend> = if let Some(mut k) = kernel {
            let rings = kernel::Rings {
                vrings: &vrings,
                kicks: &kicks,
                calls: &calls,
                area_base: area.base() as u64,
                qbytes,
                queue_size,
                pool: &conf.pool,
            };
            let events = conf.events.clone().map(|s| (s, conf.port_id));
            if let Err(e) = k.start(rings, &negotiated, events.as_ref()) {
                k.shutdown();
                let mut cache = conf.pool.cache();
                for v in vrings.iter() {
                    // SAFETY: paused by shutdown; no queue handle exists (the port was never
                    // returned) and the kernel's devices are closed.
                    unsafe { v.queue() }.drain(&mut cache);
                }
                return Err(e);
            }
            log::info!("{}: link up on tap {}", d.name, k.tap_name());
            Box::new(k)
        } else {
            let (listener, first) = if server {
                let l = socket::listen(&path).map_err(|e| Error::io(d.name.clone(), e))?;
                (Some(l), None)
            } else {
                let s = socket::connect_nonblocking(&path, "vhost-user backend", "server=1")
                    .map_err(|e| Error::io(d.name.clone(), e))?;
                let (tx, rx) = mpsc::channel();
                first_rx = Some(rx);
                (None, Some((s, tx)))
            };
            let mut source = VirtioUserSource::new(
                d.name.clone(),
                opts.clone(),
                conf.pool.clone(),
                qbytes,
                area.base() as u64,
                queue_size,
                vrings.clone(),
                kicks,
                calls,
                Arc::new(AtomicBool::new(false)),
                negotiated.clone(),
                listener,
                first,
                conf.events.clone().map(|s| (s, conf.port_id)),
            );
            source.ctrl = ctrl.clone();
            Box::new(UserBackend::add(source))
        };
        let mut port = VirtioUserPort {
            name: d.name.clone(),
            opts,
            queue_size,
            mac,
            conf: conf.clone(),
            vrings,
            backend,
            negotiated,
            state: Arc::default(),
            rx_stats: (0..queues).map(|_| Arc::default()).collect(),
            tx_stats: (0..queues).map(|_| Arc::default()).collect(),
            rx_taken: Taken::new(queues),
            tx_taken: Taken::new(queues),
            ctrl,
            _area: area,
        };
        if let Some(rx) = first_rx {
            // Like DPDK, a client port is usable as soon as it is created: wait for the first
            // handshake (each reply has its own deadline) and report its failure here.
            match rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    port.shutdown();
                    return Err(Error::Protocol(e));
                }
                Err(_) => {
                    port.shutdown();
                    return Err(Error::Protocol(format!(
                        "{}: the control loop dropped the first connection",
                        d.name
                    )));
                }
            }
        }
        Ok(port)
    }

    fn shutdown(&mut self) {
        // Returns once the device no longer uses the rings, every vring paused.
        self.backend.shutdown();
    }
}

impl Drop for VirtioUserPort {
    fn drop(&mut self) {
        self.shutdown();
        let mut cache = self.conf.pool.cache();
        for v in self.vrings.iter() {
            v.cfg.publish(None);
            // SAFETY: paused just above; queue handles (which may outlive the port) never touch
            // the queue while paused, and the control thread has exited.
            unsafe { v.queue() }.drain(&mut cache);
        }
        if self.opts.server {
            let _ = std::fs::remove_file(&self.opts.path);
        }
    }
}

impl Port for VirtioUserPort {
    fn info(&self) -> PortInfo {
        let f = *self.negotiated.lock().unwrap_or_else(|p| p.into_inner());
        PortInfo {
            driver: "net_virtio_user",
            name: self.name.clone(),
            mac: self.mac,
            nb_rx_queues: self.opts.queues,
            nb_tx_queues: self.opts.queues,
            max_queues: self.opts.queues,
            nb_rxd: self.queue_size,
            nb_txd: self.queue_size,
            max_frame_size: self.opts.max_rx_pkt as u32,
            offloads: Offloads {
                rx: offload::RX_CAPA,
                tx: offload::TX_CAPA,
            },
            virtio_features: f.map(VirtioFeatures::from_bits_retain),
            virtio_offered: Some(VirtioFeatures::from_bits_retain(self.opts.want)),
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
            up: self.backend.link_up(),
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
        v.push((
            "virtio_user_bad_messages".into(),
            self.backend.bad_messages(),
        ));
        v
    }
    fn reset_stats(&self) {
        self.rx_stats
            .iter()
            .chain(&self.tx_stats)
            .for_each(|s| s.reset());
    }
    fn set_promisc(&mut self, on: bool) -> Result<()> {
        self.ctrl_command(&CtrlRequest::Rx {
            mode: RxMode::Promisc,
            on,
        })
    }
    fn set_allmulti(&mut self, on: bool) -> Result<()> {
        self.ctrl_command(&CtrlRequest::Rx {
            mode: RxMode::AllMulti,
            on,
        })
    }
    fn set_mac(&mut self, mac: MacAddr) -> Result<()> {
        if self.ctrl.is_none() {
            // Without a control queue the MAC is ours alone (as DPDK's virtio-user).
            self.mac = mac;
            return Ok(());
        }
        self.ctrl_command(&CtrlRequest::MacAddrSet(mac))?;
        self.mac = mac;
        Ok(())
    }
    fn vlan_filter(&mut self, vlan: u16, on: bool) -> Result<()> {
        if vlan > 4095 {
            return Err(Error::Config(format!(
                "{}: VLAN {vlan} is outside 0..4095",
                self.name
            )));
        }
        self.ctrl_command(&if on {
            CtrlRequest::VlanAdd(vlan)
        } else {
            CtrlRequest::VlanDel(vlan)
        })
    }
    fn rx_queue(&mut self, q: u16) -> Result<Box<dyn RxQueue>> {
        let guard = self.rx_taken.take(&self.name, "rx", q)?;
        Ok(Box::new(self.queue(
            guard,
            q as usize * 2,
            self.rx_stats[q as usize].clone(),
        )))
    }
    fn tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>> {
        let guard = self.tx_taken.take(&self.name, "tx", q)?;
        Ok(Box::new(self.queue(
            guard,
            q as usize * 2 + 1,
            self.tx_stats[q as usize].clone(),
        )))
    }
}

impl VirtioUserPort {
    /// Sends one control command and waits for the device's ack (at most [`CTRL_DEADLINE`]).
    /// Without `cq=1`, receive-mode commands succeed at once (a virtio-user port receives what
    /// its device sends) and the others are refused.
    fn ctrl_command(&mut self, req: &CtrlRequest) -> Result<()> {
        let what = req.describe();
        let Some(c) = &self.ctrl else {
            return match req {
                CtrlRequest::Rx { .. } => Ok(()),
                _ => Err(Error::Unsupported(format!(
                    "{}: {what}: this port has no control queue; open it with cq=1",
                    self.name
                ))),
            };
        };
        let f = self
            .negotiated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or(0);
        let need = match req {
            CtrlRequest::Rx { .. } => ctrl::F_CTRL_RX,
            CtrlRequest::MacAddrSet(_) => ctrl::F_CTRL_MAC_ADDR,
            CtrlRequest::VlanAdd(_) | CtrlRequest::VlanDel(_) => ctrl::F_CTRL_VLAN,
            _ => ctrl::F_CTRL_VQ,
        };
        if f & (1 << ctrl::F_CTRL_VQ) == 0 || f & (1 << need) == 0 {
            return Err(Error::Unsupported(format!(
                "{}: {what}: the vhost-user backend at {} {} (features {f:#x}); a device that takes VF requests (an eswitch VF port) offers it",
                self.name,
                self.opts.path,
                if f == 0 {
                    "is not connected".to_string()
                } else if f & (1 << ctrl::F_CTRL_VQ) == 0 {
                    "did not offer a control queue (VIRTIO_NET_F_CTRL_VQ)".to_string()
                } else {
                    format!("did not offer the feature for this command (bit {need})")
                }
            )));
        }
        let mut cmd = Vec::with_capacity(16);
        req.encode(&mut cmd);
        let mut drv = c.drv.lock().unwrap_or_else(|p| p.into_inner());
        let t0 = std::time::Instant::now();
        loop {
            match drv.post(&cmd) {
                Ok(()) => break,
                Err(CtrlPostError::TooLong) => {
                    return Err(Error::Config(format!(
                        "{}: {what}: the command is longer than the control buffer",
                        self.name
                    )));
                }
                // An earlier command that timed out is still in flight: wait for it.
                Err(CtrlPostError::Busy) if t0.elapsed() < CTRL_DEADLINE => {
                    std::thread::sleep(std::time::Duration::from_micros(100));
                }
                Err(CtrlPostError::Busy) => {
                    return Err(Error::Protocol(format!(
                        "{}: {what}: an earlier control command is still unanswered after {} ms; is the vhost-user backend at {} serving its control queue?",
                        self.name,
                        CTRL_DEADLINE.as_millis(),
                        self.opts.path
                    )));
                }
            }
        }
        let _ = c.kick.write(1);
        let t0 = std::time::Instant::now();
        loop {
            if let Some(ack) = drv.ack() {
                return if ack == ACK_OK {
                    Ok(())
                } else {
                    Err(Error::Protocol(format!(
                        "{}: {what}: the vhost-user backend refused the request (VIRTIO_NET_ERR{}); for an eswitch VF, the PF's policy for VF requests (vf_requests) denies it or the VF sent too many: see `show vf stats` on the PF",
                        self.name,
                        if ack == ctrl::ACK_ERR {
                            String::new()
                        } else {
                            format!(", ack byte {ack}")
                        }
                    )))
                };
            }
            if t0.elapsed() > CTRL_DEADLINE {
                return Err(Error::Protocol(format!(
                    "{}: {what}: no answer from the vhost-user backend at {} within {} ms (it does not serve its control queue, or it is overloaded)",
                    self.name,
                    self.opts.path,
                    CTRL_DEADLINE.as_millis()
                )));
            }
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }

    fn queue(&self, guard: TakenGuard, vr: usize, stats: Arc<QueueStats>) -> VuQueue {
        VuQueue {
            _guard: guard,
            shared: self.vrings[vr].clone(),
            reader: QuiesceReader::default(),
            pool: self.conf.pool.clone(),
            stats,
            state: self.state.clone(),
            port_id: self.conf.port_id,
            max_rx_pkt: self.opts.max_rx_pkt,
            is_rx: vr.is_multiple_of(2),
            rx_pol: offload::rx_policy(&self.conf),
            tx_ol: offload::tx_enabled(&self.conf),
            acc: HdrAccept::default(),
            hdr_len: 12,
            _area: self._area.clone(),
        }
    }
}

/// One vring's driver queue, owned by a polling thread.
struct VuQueue {
    _guard: TakenGuard,
    shared: Arc<VringShared>,
    reader: QuiesceReader<LinkCfg>,
    /// The pool Rx buffers are allocated from (its cache is the caller's).
    pool: Mempool,
    stats: Arc<QueueStats>,
    state: Arc<RunState>,
    port_id: u16,
    max_rx_pkt: usize,
    /// An Rx vring (even index); Tx otherwise.
    is_rx: bool,
    /// The application's Rx offload choices.
    rx_pol: RxPolicy,
    /// The application may set Tx offload flags (a pass before each burst handles them).
    tx_ol: bool,
    /// What the connection's headers may carry in this queue's direction (Rx: what we
    /// accept from the device; Tx: what the device accepts from us).
    acc: HdrAccept,
    /// The connection's virtio-net header length.
    hdr_len: usize,
    _area: Arc<ArenaSlice>,
}

impl VuQueue {
    /// Enters a burst; on true the caller may use the queue until `exit`.
    #[inline]
    fn enter(&mut self) -> bool {
        match self.reader.enter(&self.shared.cfg) {
            Entered::Paused => {
                self.reader.exit(&self.shared.cfg);
                false
            }
            Entered::Changed(c) => {
                let kick = c.kick.as_ref().and_then(|k| k.try_clone().ok());
                let opts = DriverOptions {
                    features: c.features,
                    max_rx_pkt: self.max_rx_pkt,
                };
                // Rx queues read the device's headers, Tx queues write headers it reads.
                self.acc = if self.is_rx {
                    HdrAccept::driver_reads(c.features)
                } else {
                    HdrAccept::device_reads(c.features)
                };
                self.hdr_len = net_hdr_len(c.features);
                // SAFETY: inside a burst entered with a live configuration.
                unsafe { self.shared.queue() }.on_reconnect(opts, kick);
                true
            }
            Entered::Same(_) => true,
        }
    }

    #[inline]
    fn exit(&mut self) {
        self.reader.exit(&self.shared.cfg);
    }
}

impl RxQueue for VuQueue {
    fn rx_burst(&mut self, caches: &mut LcoreCaches, pkts: &mut Burst, max: usize) -> usize {
        if !self.state.started() || !self.enter() {
            return 0;
        }
        // SAFETY: inside a burst entered with a live configuration.
        let q = unsafe { self.shared.queue() };
        let start = pkts.len();
        let cache = caches.for_pool(&self.pool);
        let (mut n, mut bytes) = q.receive(cache, pkts, max, self.port_id, &StatsSink(&self.stats));
        self.exit();
        if self.acc.any() && n > 0 {
            let (k, b) = offload::rx_pass(
                pkts,
                start,
                self.hdr_len,
                self.acc,
                self.rx_pol,
                cache,
                &self.stats,
            );
            n -= k;
            bytes -= b;
        }
        self.stats.add(n as u64, bytes as u64);
        n
    }
}

impl TxQueue for VuQueue {
    fn tx_burst(&mut self, caches: &mut LcoreCaches, pkts: &mut Burst) -> usize {
        if !self.state.started() || pkts.is_empty() || !self.enter() {
            return 0;
        }
        let cache = caches.for_pool(&self.pool);
        if self.tx_ol {
            offload::tx_pass(pkts, self.acc, cache, &self.stats);
        }
        // SAFETY: inside a burst entered with a live configuration.
        let q = unsafe { self.shared.queue() };
        let (n, bytes) = q.transmit(cache, pkts, &StatsSink(&self.stats));
        self.exit();
        self.stats.add(n as u64, bytes as u64);
        n
    }
}

impl Drop for VuQueue {
    fn drop(&mut self) {
        self.reader.release();
    }
}
