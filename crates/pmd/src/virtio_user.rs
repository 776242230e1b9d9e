//! `net_virtio_user` / `virtio_user`: a virtio-net driver in this process, talking vhost-user to
//! a backend over a unix socket.
//!
//! Devargs: `path` (required), `queues` (1..=128, default 1), `queue_size` (power of two,
//! default 256), `server` (1: listen on `path` and accept the backend, again after each
//! disconnection; 0: connect, and reconnect if the backend restarts), `mrg_rxbuf` (default 1),
//! `in_order` (default 1), `mac`, `cq` (0 only), `packed_vq` (default 0; 1: packed ring), `speed`,
//! `vectorized` (accepted, ignored), `iface` (vhost-kernel only).
//!
//! The rings and every mempool live in memfd-backed shared memory whose fds go to the backend,
//! so neither root nor hugepages are needed. A control thread owns the socket; on a
//! disconnection it pauses the queues, and on the next connection it renegotiates and resumes
//! every ring where the old backend stopped.

use std::cell::UnsafeCell;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferrovia_ethdev::{
    Burst, Devargs, Error, Link, MacAddr, Port, PortConf, PortInfo, PortStats, QueueStats, Result,
    RxQueue, TxQueue,
};
use ferrovia_memory::{LcoreCaches, Mempool, RegionBacking, SharedRegion, registry};
use ferrovia_transport::frontend::{self, VringSpec};
use ferrovia_transport::socket;
use ferrovia_virtqueue::driver::DriverOptions;
use ferrovia_virtqueue::driver_any::AnyDriverQueue;
use ferrovia_virtqueue::layout::{bit, feature, valid_queue_size};
use ferrovia_virtqueue::quiesce::{Entered, Quiesce, QuiesceReader};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::shared::{RunState, Taken, TakenGuard};
use crate::sink::StatsSink;

const KEYS: &[&str] = &[
    "path",
    "queues",
    "queue_size",
    "server",
    "mrg_rxbuf",
    "in_order",
    "mac",
    "cq",
    "packed_vq",
    "speed",
    "vectorized",
    "iface",
];

/// What a queue needs from the current connection.
#[derive(Debug)]
struct LinkCfg {
    features: u64,
    kick: Option<File>,
}

/// Per-vring state shared by the control thread and the queue's owner.
///
/// The driver queue itself is reached through an `UnsafeCell`; the quiesce protocol makes the
/// accesses exclusive: the queue handle touches it only inside a burst entered with a live
/// configuration, and the control thread only after `cfg.publish(None)` returned (no burst in
/// progress, and none can start until the next `publish(Some)`), or before any handle exists.
struct VringShared {
    cfg: Quiesce<LinkCfg>,
    queue: UnsafeCell<AnyDriverQueue>,
}

// SAFETY: see the type's documentation: access to `queue` is serialised by the quiesce
// protocol; everything else is Sync.
unsafe impl Sync for VringShared {}

impl VringShared {
    /// # Safety
    /// The caller must hold exclusive access per the quiesce protocol (see the type's docs).
    #[allow(clippy::mut_from_ref)]
    unsafe fn queue(&self) -> &mut AnyDriverQueue {
        // SAFETY: exclusivity is the caller's obligation.
        unsafe { &mut *self.queue.get() }
    }
}

/// Options fixed at open.
#[derive(Debug, Clone)]
struct Opts {
    path: String,
    server: bool,
    queues: u16,
    want: u64,
    max_rx_pkt: usize,
    packed: bool,
}

/// The virtio-user port.
pub struct VirtioUserPort {
    name: String,
    opts: Opts,
    queue_size: u16,
    mac: MacAddr,
    conf: PortConf,
    vrings: Arc<Vec<Arc<VringShared>>>,
    link_up: Arc<AtomicBool>,
    negotiated: Arc<Mutex<Option<u64>>>,
    state: Arc<RunState>,
    rx_stats: Vec<Arc<QueueStats>>,
    tx_stats: Vec<Arc<QueueStats>>,
    rx_taken: Taken,
    tx_taken: Taken,
    stop_ctl: Arc<AtomicBool>,
    ctl: Option<JoinHandle<()>>,
    // Declared (and so dropped) before the area it describes.
    _registration: registry::Registration,
    _area: Arc<SharedRegion>,
}

impl std::fmt::Debug for VirtioUserPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioUserPort")
            .field("name", &self.name)
            .field("path", &self.opts.path)
            .finish()
    }
}

fn eventfd(what: &str) -> Result<EventFd> {
    EventFd::new(EFD_NONBLOCK).map_err(|e| Error::io(format!("cannot create {what} eventfd"), e))
}

impl VirtioUserPort {
    /// Opens the port. In client mode (default) the first connection is made here and the
    /// call fails with an explanation if the backend is not there; in server mode the socket
    /// is created here and the backend may connect at any time.
    pub fn open(d: &Devargs, conf: &PortConf) -> Result<VirtioUserPort> {
        d.check_keys(KEYS)?;
        let path = d.required("path", "the vhost-user socket path")?;
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
        if d.flag("cq", false)? {
            return Err(Error::Unsupported(format!(
                "{}: cq=1: the control queue is not supported; remove cq or set cq=0",
                d.name
            )));
        }
        if path.starts_with("/dev/vhost") || d.get("iface").is_some() {
            return Err(Error::Unsupported(format!(
                "{}: path={path}: the vhost-kernel exception path is not implemented yet (and this host has no /dev/vhost-net); use a vhost-user socket path",
                d.name
            )));
        }
        let mac = match d.get("mac") {
            Some(m) => m
                .parse::<MacAddr>()
                .map_err(|e| Error::Devargs(format!("{}: mac: {e}", d.name)))?,
            None => MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, conf.port_id as u8]),
        };
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
        let opts = Opts {
            path: path.clone(),
            server,
            queues,
            want,
            max_rx_pkt: conf.max_rx_pktlen as usize,
            packed,
        };

        // Rings: one shared area for all vrings, registered so the backend can map it.
        let qbytes = AnyDriverQueue::area_size(queue_size, packed);
        let nvr = queues as usize * 2;
        let area = Arc::new(
            SharedRegion::new(
                &format!("{}-rings", d.name),
                qbytes * nvr,
                RegionBacking::Memfd,
            )
            .map_err(|e| Error::io(format!("{}: ring memory", d.name), e))?,
        );
        let registration =
            registry::Registration::new(area.base() as u64, area.len() as u64, area.fd());
        let mut cache = conf.pool.cache();
        let mut vrings = Vec::with_capacity(nvr);
        for i in 0..nvr {
            let dopts = DriverOptions {
                features: want,
                max_rx_pkt: opts.max_rx_pkt,
            };
            // SAFETY: each vring gets its own `qbytes` of the area, which is kept alive by the
            // port (and by every queue handle through `_area`).
            let mut q = unsafe {
                AnyDriverQueue::new(area.base().add(i * qbytes), queue_size, packed, dopts)
            }
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
        let kicks: Vec<EventFd> = (0..nvr).map(|_| eventfd("kick")).collect::<Result<_>>()?;
        let calls: Vec<EventFd> = (0..nvr).map(|_| eventfd("call")).collect::<Result<_>>()?;
        let link_up = Arc::new(AtomicBool::new(false));
        let negotiated = Arc::new(Mutex::new(None));
        let stop_ctl = Arc::new(AtomicBool::new(false));
        let handshake_err: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));

        let first = if server {
            Endpoint::Listen(socket::listen(&path).map_err(|e| Error::io(d.name.clone(), e))?)
        } else {
            Endpoint::Connected(
                socket::connect(&path, "vhost-user backend", "server=1")
                    .map_err(|e| Error::io(d.name.clone(), e))?,
            )
        };
        let ctl = {
            let c = Control {
                name: d.name.clone(),
                opts: opts.clone(),
                pool: conf.pool.clone(),
                qbytes,
                area_base: area.base() as u64,
                queue_size,
                vrings: vrings.clone(),
                kicks,
                calls,
                link_up: link_up.clone(),
                negotiated: negotiated.clone(),
                stop: stop_ctl.clone(),
                first_error: handshake_err.clone(),
            };
            std::thread::Builder::new()
                .name(format!("{}-ctl", d.name))
                .spawn(move || c.run(first))
                .map_err(|e| Error::io("cannot start the virtio-user control thread", e))?
        };
        let mut port = VirtioUserPort {
            name: d.name.clone(),
            opts,
            queue_size,
            mac,
            conf: conf.clone(),
            vrings,
            link_up,
            negotiated,
            state: Arc::default(),
            rx_stats: (0..queues).map(|_| Arc::default()).collect(),
            tx_stats: (0..queues).map(|_| Arc::default()).collect(),
            rx_taken: Taken::new(queues),
            tx_taken: Taken::new(queues),
            stop_ctl,
            ctl: Some(ctl),
            _registration: registration,
            _area: area,
        };
        if !server {
            // Like DPDK, a client port is usable as soon as it is created: wait for the first
            // handshake and report its failure here.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !port.link_up.load(Ordering::Acquire) && Instant::now() < deadline {
                if let Some(e) = handshake_err
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                {
                    port.shutdown();
                    return Err(Error::Protocol(e));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(port)
    }

    fn shutdown(&mut self) {
        self.stop_ctl.store(true, Ordering::Release);
        if let Some(h) = self.ctl.take() {
            let _ = h.join();
        }
        // The control thread paused every vring before exiting.
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

enum Endpoint {
    Listen(UnixListener),
    Connected(UnixStream),
}

/// The control thread's state.
struct Control {
    name: String,
    opts: Opts,
    pool: ferrovia_memory::Mempool,
    qbytes: usize,
    area_base: u64,
    queue_size: u16,
    vrings: Arc<Vec<Arc<VringShared>>>,
    kicks: Vec<EventFd>,
    calls: Vec<EventFd>,
    link_up: Arc<AtomicBool>,
    negotiated: Arc<Mutex<Option<u64>>>,
    stop: Arc<AtomicBool>,
    first_error: Arc<Mutex<Option<String>>>,
}

impl Control {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn run(self, first: Endpoint) {
        let listener = match first {
            Endpoint::Listen(l) => {
                let _ = l.set_nonblocking(true);
                Some(l)
            }
            Endpoint::Connected(s) => {
                self.session(s, true);
                None
            }
        };
        let mut warned = false;
        while !self.stopped() {
            let stream = match &listener {
                Some(l) => match l.accept() {
                    Ok((s, _)) => s,
                    Err(_) => {
                        socket::poll_fd(l, Duration::from_millis(100));
                        continue;
                    }
                },
                None => match socket::connect(&self.opts.path, "vhost-user backend", "server=1") {
                    Ok(s) => {
                        warned = false;
                        s
                    }
                    Err(e) => {
                        if !warned {
                            log::warn!("{}: {e}; retrying every 500 ms", self.name);
                            warned = true;
                        }
                        self.sleep(Duration::from_millis(500));
                        continue;
                    }
                },
            };
            let _ = stream.set_nonblocking(false);
            self.session(stream, false);
        }
        self.pause_all();
    }

    fn sleep(&self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end && !self.stopped() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pause_all(&self) {
        self.link_up.store(false, Ordering::Release);
        for v in self.vrings.iter() {
            v.cfg.publish(None);
        }
    }

    /// Runs one connection from handshake to hang-up.
    fn session(&self, stream: UnixStream, first: bool) {
        match self.handshake(stream) {
            Ok(sess) => {
                log::info!(
                    "{}: connected to vhost-user backend at {} (features {:#x})",
                    self.name,
                    self.opts.path,
                    sess.features
                );
                self.link_up.store(true, Ordering::Release);
                let fd = sess.raw_fd();
                // SAFETY: fd belongs to `sess`, alive for this borrow; we only poll it.
                let watch = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                while !self.stopped() {
                    let (_r, hup) = socket::poll_fd(&watch, Duration::from_millis(100));
                    if hup {
                        break;
                    }
                    let _ = _r;
                }
                self.pause_all();
                drop(sess);
                if !self.stopped() {
                    log::warn!(
                        "{}: vhost-user backend at {} went away; link down, waiting for it to come back",
                        self.name,
                        self.opts.path
                    );
                }
            }
            Err(e) => {
                log::error!("{}: {e}", self.name);
                if first {
                    *self.first_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    self.stop.store(true, Ordering::Release);
                } else {
                    self.sleep(Duration::from_millis(500));
                }
            }
        }
    }

    fn handshake(&self, stream: UnixStream) -> std::result::Result<frontend::Session, String> {
        let mut sess =
            frontend::negotiate(stream, &self.opts.path, self.opts.want, self.opts.queues)?;
        {
            let mut n = self.negotiated.lock().unwrap_or_else(|p| p.into_inner());
            match *n {
                Some(prev) if prev != sess.features => {
                    return Err(format!(
                        "{}: the backend now negotiates features {:#x}, but buffers in flight were set up for {prev:#x}; restart this port",
                        self.opts.path, sess.features
                    ));
                }
                _ => *n = Some(sess.features),
            }
        }
        self.pause_all();
        let mut specs = Vec::with_capacity(self.vrings.len());
        let mut cache = self.pool.cache();
        for (i, v) in self.vrings.iter().enumerate() {
            // SAFETY: every vring was paused by pause_all just above.
            let q = unsafe { v.queue() };
            let base = q.prepare_connect(&mut cache, i % 2 == 0, &ferrovia_virtqueue::NoSink);
            let start = self.area_base + (i * self.qbytes) as u64;
            let a = AnyDriverQueue::addrs(start, self.queue_size, self.opts.packed);
            specs.push(VringSpec {
                size: self.queue_size,
                desc: a.desc,
                avail: a.avail,
                used: a.used,
                base,
            });
        }
        drop(cache);
        let regions = registry::snapshot_owned()
            .map_err(|e| format!("cannot duplicate memory region fds: {e}"))?;
        let infos: Vec<_> = regions.iter().map(|(r, _)| *r).collect();
        sess.setup(&infos, &specs, &self.kicks, &self.calls)?;
        drop(regions);
        for (i, v) in self.vrings.iter().enumerate() {
            // SAFETY: dup of our own eventfd; the File owns the duplicate.
            let kick = unsafe { libc::dup(self.kicks[i].as_raw_fd()) };
            let kick = (kick >= 0).then(|| {
                // SAFETY: kick is a fresh fd from dup.
                unsafe { File::from_raw_fd(kick) }
            });
            v.cfg.publish(Some(Arc::new(LinkCfg {
                features: sess.features,
                kick,
            })));
        }
        Ok(sess)
    }
}

impl Port for VirtioUserPort {
    fn info(&self) -> PortInfo {
        let f = self
            .negotiated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or(0);
        PortInfo {
            driver: "net_virtio_user",
            name: self.name.clone(),
            mac: self.mac,
            nb_rx_queues: self.opts.queues,
            nb_tx_queues: self.opts.queues,
            max_queues: self.opts.queues,
            nb_rxd: self.queue_size,
            nb_txd: self.queue_size,
            max_rx_pktlen: self.opts.max_rx_pkt as u32,
            features: format!(
                "path={} mode={} ring={} negotiated={f:#x} mrg_rxbuf={} in_order={} event_idx={}",
                self.opts.path,
                if self.opts.server { "server" } else { "client" },
                if self.opts.packed { "packed" } else { "split" },
                f & bit(feature::NET_F_MRG_RXBUF) != 0,
                f & bit(feature::F_IN_ORDER) != 0,
                f & bit(feature::RING_F_EVENT_IDX) != 0,
            ),
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
            up: self.link_up.load(Ordering::Acquire),
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
    _area: Arc<SharedRegion>,
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
        let (n, bytes) = q.receive(
            caches.for_pool(&self.pool),
            pkts,
            max,
            self.port_id,
            &StatsSink(&self.stats),
        );
        self.exit();
        self.stats.add(n as u64, bytes as u64);
        n
    }
}

impl TxQueue for VuQueue {
    fn tx_burst(&mut self, caches: &mut LcoreCaches, pkts: &mut Burst) -> usize {
        if !self.state.started() || pkts.is_empty() || !self.enter() {
            return 0;
        }
        // SAFETY: inside a burst entered with a live configuration.
        let q = unsafe { self.shared.queue() };
        let (n, bytes) = q.transmit(caches.for_pool(&self.pool), pkts, &StatsSink(&self.stats));
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
