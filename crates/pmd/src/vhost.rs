//! `net_vhost` / `eth_vhost`: a vhost-user backend port (the device side).
//!
//! Devargs: `iface` (socket path, required), `queues` (queue pairs, 1..=128, default 1),
//! `client` (0: listen on `iface`; 1: connect to it and reconnect whenever the peer goes away),
//! and DPDK's `iommu-support`, `postcopy-support`, `tso`, `linear-buffer`, `ext-buffer`
//! (accepted when 0; see the user guide).
//!
//! A control thread owns the socket and serves vhost-user messages; polling threads own the
//! queue handles and see ring changes through the quiesce handshake, never a lock per burst.

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ferrovia_ethdev::{
    Burst, Devargs, Error, Link, MacAddr, Port, PortConf, PortInfo, PortStats, QueueStats, Result,
    RxQueue, TxQueue,
};
use ferrovia_memory::{LcoreCaches, Mempool};
use ferrovia_transport::backend::{BackendHandler, DeviceShared, VringCtl, offered_features};
use ferrovia_transport::socket;
use ferrovia_virtqueue::device::DeviceQueue;
use ferrovia_virtqueue::quiesce::{Entered, QuiesceReader};
use vhost::vhost_user::BackendReqHandler;
use vhost::vhost_user::Error as VuError;

use crate::shared::{RunState, Taken, TakenGuard};
use crate::sink::StatsSink;

/// Largest frame accepted from a guest (bigger chains are refused and counted).
const MAX_FRAME: usize = 65535;

/// The vhost port.
pub struct VhostPort {
    name: String,
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
    stop_ctl: Arc<AtomicBool>,
    ctl: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for VhostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VhostPort")
            .field("name", &self.name)
            .field("iface", &self.iface)
            .finish()
    }
}

const KEYS: &[&str] = &[
    "iface",
    "queues",
    "client",
    "iommu-support",
    "postcopy-support",
    "tso",
    "linear-buffer",
    "ext-buffer",
    "dequeue-zero-copy",
];

impl VhostPort {
    /// Opens the port: starts listening (or connecting) at once, so a frontend may attach
    /// before the port is started.
    pub fn open(d: &Devargs, conf: &PortConf) -> Result<VhostPort> {
        d.check_keys(KEYS)?;
        let iface = d.required("iface", "the vhost-user socket path")?;
        let queues = d.number("queues", 1, 1, 128)? as u16;
        let client = d.flag("client", false)?;
        for k in [
            "iommu-support",
            "postcopy-support",
            "tso",
            "dequeue-zero-copy",
        ] {
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
        let shared = DeviceShared::new(queues);
        let stop_ctl = Arc::new(AtomicBool::new(false));
        let listener = if client {
            None
        } else {
            Some(socket::listen(&iface).map_err(|e| Error::io(d.name.clone(), e))?)
        };
        let ctl = {
            let (name, iface, shared, stop) = (
                d.name.clone(),
                iface.clone(),
                shared.clone(),
                stop_ctl.clone(),
            );
            std::thread::Builder::new()
                .name(format!("{}-ctl", d.name))
                .spawn(move || control_loop(&name, &iface, listener, &shared, &stop))
                .map_err(|e| Error::io("cannot start the vhost control thread", e))?
        };
        Ok(VhostPort {
            name: d.name.clone(),
            iface,
            client,
            queues,
            conf: conf.clone(),
            shared,
            state: Arc::default(),
            rx_stats: (0..queues).map(|_| Arc::default()).collect(),
            tx_stats: (0..queues).map(|_| Arc::default()).collect(),
            rx_taken: Taken::new(queues),
            tx_taken: Taken::new(queues),
            stop_ctl,
            ctl: Some(ctl),
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

fn control_loop(
    name: &str,
    iface: &str,
    listener: Option<std::os::unix::net::UnixListener>,
    shared: &Arc<DeviceShared>,
    stop: &AtomicBool,
) {
    if let Some(l) = &listener {
        let _ = l.set_nonblocking(true);
    }
    let mut warned = false;
    while !stop.load(Ordering::Acquire) {
        let stream = match &listener {
            Some(l) => match l.accept() {
                Ok((s, _)) => s,
                Err(_) => {
                    socket::poll_fd(l, Duration::from_millis(100));
                    continue;
                }
            },
            None => match socket::connect(
                iface,
                "vhost-user frontend (QEMU or virtio-user server=1)",
                "client=0",
            ) {
                Ok(s) => {
                    warned = false;
                    s
                }
                Err(e) => {
                    if !warned {
                        log::warn!("{name}: {e}; retrying every 500 ms");
                        warned = true;
                    }
                    sleep_unless(stop, Duration::from_millis(500));
                    continue;
                }
            },
        };
        let _ = stream.set_nonblocking(false);
        shared.sessions.fetch_add(1, Ordering::Relaxed);
        log::info!("{name}: vhost-user frontend connected on {iface}");
        serve(name, stream, shared, stop);
        log::info!("{name}: vhost-user session on {iface} ended; link down");
    }
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let step = Duration::from_millis(20);
    let mut left = d;
    while !left.is_zero() && !stop.load(Ordering::Acquire) {
        std::thread::sleep(step.min(left));
        left = left.saturating_sub(step);
    }
}

fn serve(name: &str, stream: UnixStream, shared: &Arc<DeviceShared>, stop: &AtomicBool) {
    let watch = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            log::error!("{name}: cannot duplicate the session socket: {e}");
            return;
        }
    };
    let handler = Arc::new(Mutex::new(BackendHandler::new(name, shared.clone())));
    let mut req = BackendReqHandler::from_stream(stream, handler.clone());
    // rust-vmm retries a reply forever while the peer's receive buffer is full, so a peer that
    // stops reading would pin this thread. A watchdog shuts the socket down when one request
    // takes longer than REQUEST_LIMIT, which ends the session.
    const REQUEST_LIMIT: Duration = Duration::from_secs(2);
    let busy_since = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let session_over = Arc::new(AtomicBool::new(false));
    let epoch = std::time::Instant::now();
    let watchdog = {
        let (busy, over, sock) = (busy_since.clone(), session_over.clone(), watch.try_clone());
        std::thread::Builder::new()
            .name(format!("{name}-wd"))
            .spawn(move || {
                let Ok(sock) = sock else { return };
                while !over.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(50));
                    let since = busy.load(Ordering::Acquire);
                    if since != 0
                        && epoch.elapsed().as_millis() as u64
                            > since + REQUEST_LIMIT.as_millis() as u64
                    {
                        let _ = sock.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                }
            })
            .ok()
    };
    while !stop.load(Ordering::Acquire) {
        let (readable, hup) = socket::poll_fd(&watch, Duration::from_millis(100));
        if !readable && !hup {
            continue;
        }
        // From here a message is being read and must complete within REQUEST_LIMIT, whichever
        // path reads it (a peer that stalls in the middle of one would otherwise pin this
        // thread, and the port could not even be dropped).
        busy_since.store(epoch.elapsed().as_millis() as u64 + 1, Ordering::Release);
        match early_enable(name, &watch, &handler) {
            Ok(true) => {
                busy_since.store(0, Ordering::Release);
                continue;
            }
            Ok(false) => {}
            Err(e) => {
                shared.sessions_failed.fetch_add(1, Ordering::Relaxed);
                log::error!("{name}: vhost-user protocol error: {e}; closing the session");
                break;
            }
        }
        let r = req.handle_request();
        busy_since.store(0, Ordering::Release);
        match r {
            Ok(()) => {}
            Err(VuError::Disconnected) | Err(VuError::PartialMessage) => break,
            Err(VuError::SocketBroken(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break;
            }
            Err(e) => {
                shared.sessions_failed.fetch_add(1, Ordering::Relaxed);
                log::error!("{name}: vhost-user protocol error: {e}; closing the session");
                break;
            }
        }
    }
    session_over.store(true, Ordering::Release);
    if let Some(w) = watchdog {
        let _ = w.join();
    }
    handler.lock().unwrap_or_else(|p| p.into_inner()).reset();
}

/// QEMU sends `SET_VRING_ENABLE` before `SET_FEATURES`; rust-vmm's request handler refuses
/// that (it checks the acked features). When the next message is such a request, it is read
/// and applied here instead. Returns true if it consumed a message.
fn early_enable(
    name: &str,
    sock: &UnixStream,
    handler: &Mutex<BackendHandler>,
) -> std::result::Result<bool, String> {
    use std::io::{Read, Write};
    const SET_VRING_ENABLE: u32 = 18;
    const HDR_FLAG_VERSION: u32 = 0x1;
    const HDR_FLAG_REPLY: u32 = 0x4;
    const HDR_FLAG_NEED_REPLY: u32 = 0x8;
    let mut h = [0u8; 12];
    let n = loop {
        // SAFETY: peeking into a 12-byte buffer we own.
        let r = unsafe {
            libc::recv(
                std::os::fd::AsRawFd::as_raw_fd(sock),
                h.as_mut_ptr().cast(),
                h.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    if n != 12 {
        return Ok(false);
    }
    let word = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes"));
    let (req, flags, size) = (word(0), word(4), word(8));
    let mut g = handler.lock().unwrap_or_else(|p| p.into_inner());
    if req != SET_VRING_ENABLE || size != 8 || !g.enable_needs_bypass() {
        return Ok(false);
    }
    let mut msg = [0u8; 20];
    let mut s = sock;
    s.read_exact(&mut msg)
        .map_err(|e| format!("reading SET_VRING_ENABLE: {e}"))?;
    let index = u32::from_le_bytes(msg[12..16].try_into().expect("4 bytes"));
    let num = u32::from_le_bytes(msg[16..20].try_into().expect("4 bytes"));
    let res = g.early_vring_enable(index, num);
    if flags & HDR_FLAG_NEED_REPLY != 0 && g.reply_ack() {
        let mut reply = Vec::with_capacity(20);
        reply.extend(SET_VRING_ENABLE.to_le_bytes());
        reply.extend((HDR_FLAG_VERSION | HDR_FLAG_REPLY).to_le_bytes());
        reply.extend(8u32.to_le_bytes());
        reply.extend(u64::from(res.is_err()).to_le_bytes());
        s.write_all(&reply)
            .map_err(|e| format!("replying to SET_VRING_ENABLE: {e}"))?;
    }
    log::debug!("{name}: early SET_VRING_ENABLE handled");
    res.map(|_| true).map_err(|e| e.to_string())
}

impl Drop for VhostPort {
    fn drop(&mut self) {
        self.stop_ctl.store(true, Ordering::Release);
        if let Some(h) = self.ctl.take() {
            let _ = h.join();
        }
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
            mac: MacAddr([0x56, 0x48, 0x4f, 0x53, 0x54, self.conf.port_id as u8]),
            nb_rx_queues: self.queues,
            nb_tx_queues: self.queues,
            max_queues: self.queues,
            nb_rxd: self.conf.nb_rxd,
            nb_txd: self.conf.nb_txd,
            max_rx_pktlen: MAX_FRAME as u32,
            features: format!(
                "iface={} mode={} offered={:#x}",
                self.iface,
                if self.client { "client" } else { "server" },
                offered_features(self.queues)
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
            up: self.shared.link_up.load(Ordering::Acquire),
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
        v
    }
    fn reset_stats(&self) {
        self.rx_stats
            .iter()
            .chain(&self.tx_stats)
            .for_each(|s| s.reset());
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
        let res = dev.dequeue_burst(
            caches.for_pool(&self.pool),
            pkts,
            max,
            MAX_FRAME,
            self.port_id,
            &StatsSink(&self.stats),
        );
        self.exit();
        self.stats.add(res.packets as u64, res.bytes as u64);
        res.packets
    }
}

impl TxQueue for VhostQueue {
    fn tx_burst(&mut self, caches: &mut LcoreCaches, pkts: &mut Burst) -> usize {
        if !self.state.started() || pkts.is_empty() || !self.enter() {
            return 0;
        }
        let dev = self.dev.as_mut().expect("entered");
        let res = dev.enqueue_burst(caches.for_pool(&self.pool), pkts, &StatsSink(&self.stats));
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
