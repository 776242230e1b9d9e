//! testpmd's state: ports, forwarding configuration, and starting/stopping the forwarding
//! lcores.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::cycles::format_cycles;
use ferrovia_ethdev::{MacAddr, Port, PortConf, PortStats, RxOffloads, TxOffloads};
use ferrovia_fwd::burst_stats::format_spread;
use ferrovia_fwd::csum::CsumConf;
use ferrovia_fwd::{Stream, StreamCounters, StreamParams};
use ferrovia_memory::{LcoreCaches, Mempool, MempoolConfig, RegionBacking};

use crate::eal::EalOpts;
use crate::lcore::{Lcore, allowed_cpus, pin, placement};
use crate::opts::{AppOpts, Topology};
use crate::stats::{FwdStats, LastShow, print_fwd_port, print_fwd_total, print_nic};
use crate::telemetry::SharedPort;

/// One opened port.
pub struct PortSlot {
    /// The port (its control side, shared with the telemetry threads).
    pub port: SharedPort,
    /// Its devargs.
    pub devargs: String,
    /// Started by us.
    pub started: bool,
    /// For throughput lines.
    pub last_show: Option<LastShow>,
    /// Last link state printed.
    pub link_up: bool,
    /// Rx offloads configured on the port.
    pub rx_offloads: RxOffloads,
    /// Tx offloads configured on the port.
    pub tx_offloads: TxOffloads,
    /// The offloads changed since the port was opened: `port start` opens it again.
    pub reconfigure: bool,
    /// What the csum engine does for packets sent on this port.
    pub csum: CsumConf,
}

/// Where a stream reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSpec {
    /// Rx port.
    pub rx_port: u16,
    /// Rx queue.
    pub rx_queue: u16,
    /// Tx port.
    pub tx_port: u16,
    /// Tx queue.
    pub tx_queue: u16,
}

struct Running {
    /// Counter and clock at start, for the counter's rate (`--record-core-cycles`).
    started: crate::cycles::Mark,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    counters: Vec<(StreamSpec, Arc<StreamCounters>)>,
    start_stats: Vec<PortStats>,
}

/// Why an [`App`] method failed. The messages are what testpmd prints (DPDK's wording where
/// DPDK has one).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No `--vdev` or `-a` was given.
    #[error(
        "no ports: add at least one --vdev, e.g. --vdev net_vhost0,iface=/tmp/sock0, or -a PCI_ADDRESS"
    )]
    NoPorts,
    /// `--mbuf-size` leaves no data room after the headroom.
    #[error("--mbuf-size {size} leaves no room for data after 128 bytes of headroom")]
    MbufSize {
        /// The size given.
        size: u32,
    },
    /// The mbuf pool could not be created.
    #[error("cannot create the mbuf pool: {source}")]
    Pool {
        /// The OS error.
        source: std::io::Error,
    },
    /// A `--vdev` could not be opened.
    #[error("cannot open port {port} ({devargs}): {source}{}", devargs_hint(.source))]
    Open {
        /// The port id it would have had.
        port: u16,
        /// Its devargs.
        devargs: String,
        /// What the driver said.
        source: ferrovia_ethdev::Error,
    },
    /// Starting or stopping a port failed.
    #[error("port {port}: {source}")]
    Port {
        /// The port.
        port: u16,
        /// What the driver said.
        source: ferrovia_ethdev::Error,
    },
    /// A port number out of range.
    #[error("Invalid port {port}: there are {count} ports (0..{})", .count.saturating_sub(1))]
    InvalidPort {
        /// The port asked for.
        port: u16,
        /// Ports opened.
        count: usize,
    },
    /// A port cannot be stopped while forwarding runs.
    #[error("Please stop forwarding first")]
    Forwarding,
    /// `start` while forwarding runs.
    #[error("Packet forwarding already started")]
    AlreadyStarted,
    /// `stop` while forwarding is stopped.
    #[error("Packet forwarding not started")]
    NotStarted,
    /// The configured forwarding mode has no engine.
    #[error("unknown forwarding mode {mode}")]
    UnknownMode {
        /// The mode configured.
        mode: String,
    },
    /// A stream's Rx or Tx queue could not be taken from its port.
    #[error("{source}")]
    Queue {
        /// The port.
        port: u16,
        /// The queue.
        queue: u16,
        /// What the driver said.
        source: ferrovia_ethdev::Error,
    },
    /// An offload configuration change on a started port.
    #[error("Please stop port {port} first")]
    PortStarted {
        /// The port.
        port: u16,
    },
    /// An offload name testpmd does not know.
    #[error("Bad arguments: unknown offload '{name}'; use one of {known}")]
    UnknownOffload {
        /// The name given.
        name: String,
        /// The names accepted.
        known: String,
    },
    /// Hardware mode for an offload the port cannot do.
    #[error("port {port} does not support {what} offload (see 'show port info {port}')")]
    OffloadUnsupported {
        /// The port.
        port: u16,
        /// The offload.
        what: String,
    },
    /// A forwarding thread could not be spawned.
    #[error("cannot start a forwarding thread: {source}")]
    Thread {
        /// The OS error.
        source: std::io::Error,
    },
}

/// Points devargs mistakes at `--vdev help`.
fn devargs_hint(e: &ferrovia_ethdev::Error) -> &'static str {
    match e {
        ferrovia_ethdev::Error::UnknownDriver { .. }
        | ferrovia_ethdev::Error::UnknownKey { .. }
        | ferrovia_ethdev::Error::BadValue { .. }
        | ferrovia_ethdev::Error::Devargs(_) => " (--vdev help lists the drivers and their keys)",
        _ => "",
    }
}

/// The application.
pub struct App {
    /// App options (mutable by prompt commands).
    pub opts: AppOpts,
    pool: Mempool,
    /// Ports in vdev order.
    pub ports: Vec<PortSlot>,
    /// Forwarding ports, in the order streams are built (`set portlist`).
    pub portlist: Vec<u16>,
    fwd_lcores: Vec<Lcore>,
    /// The CPU each forwarding lcore's thread is pinned to (None: unpinned).
    fwd_cpus: Vec<Option<u32>>,
    running: Option<Running>,
    /// Run-time captures (the `capture` prompt commands and the telemetry's), once set.
    pub capture: Option<(
        std::sync::Arc<ferrovia_telemetry::CaptureControl>,
        std::sync::Arc<crate::telemetry::Ports>,
    )>,
}

impl App {
    /// Creates the pool and opens every `-a` PCI device and every `--vdev`.
    pub fn new(eal: EalOpts, opts: AppOpts) -> Result<App, AppError> {
        let devices = eal.devices();
        if devices.is_empty() {
            return Err(AppError::NoPorts);
        }
        let main = eal.main_lcore.unwrap_or(eal.lcores[0].id);
        let mut fwd_lcores: Vec<Lcore> = eal
            .lcores
            .iter()
            .copied()
            .filter(|l| l.id != main)
            .collect();
        if fwd_lcores.is_empty() {
            println!("Warning: only the main lcore was given; forwarding runs on it too");
            fwd_lcores = eal.lcores.clone();
        }
        let (fwd_cpus, warnings) = placement(&fwd_lcores, &allowed_cpus());
        for w in warnings {
            println!("{w}");
        }
        let nports = devices.len();
        let rxd = if opts.rxd == 0 {
            1024
        } else {
            opts.rxd as usize
        };
        let txd = if opts.txd == 0 {
            1024
        } else {
            opts.txd as usize
        };
        let per_port = opts.rxq as usize * rxd + opts.txq as usize * txd;
        let count = opts
            .total_num_mbufs
            .unwrap_or((nports * per_port * 2 + fwd_lcores.len() * 1024 + 4096).max(16384));
        let data_room = match opts.mbuf_size {
            Some(s) if s > 128 + 64 => (s - 128).min(u16::MAX as u32) as u16,
            Some(s) => {
                return Err(AppError::MbufSize { size: s });
            }
            None => 2048,
        };
        // A PCI device reads and writes the buffers by physical address: the pool then goes
        // in physically contiguous hugepages.
        let pci = devices
            .iter()
            .any(|d| d.starts_with("net_virtio_pci") || d.starts_with("virtio_pci"));
        let backing = if pci {
            RegionBacking::HugetlbDma
        } else {
            RegionBacking::Memfd
        };
        let pool = Mempool::new(MempoolConfig {
            name: "mb_pool_0".into(),
            count,
            data_room,
            cache_size: 256,
            backing,
            ..Default::default()
        })
        .map_err(|source| AppError::Pool { source })?;
        println!(
            "testpmd: create a new mbuf pool <mb_pool_0>: n={count}, size={}, {}",
            data_room as u32 + 128,
            if pci {
                "physically contiguous hugepages (PCI devices)"
            } else {
                "memfd (no hugepages)"
            }
        );
        let mut ports = Vec::new();
        let rx_ol = RxOffloads::from_bits_retain(opts.rx_offloads);
        let tx_ol = TxOffloads::from_bits_retain(opts.tx_offloads);
        for (i, d) in devices.iter().enumerate() {
            println!("Configuring Port {i} (socket 0)");
            let port = open_port(&opts, &pool, i as u16, d, rx_ol, tx_ol).map_err(|source| {
                AppError::Open {
                    port: i as u16,
                    devargs: d.clone(),
                    source,
                }
            })?;
            ports.push(PortSlot {
                port: SharedPort::new(port),
                devargs: d.clone(),
                started: false,
                last_show: None,
                link_up: false,
                rx_offloads: rx_ol,
                tx_offloads: tx_ol,
                reconfigure: false,
                csum: csum_from_offloads(tx_ol),
            });
        }
        let portlist = match opts.portmask {
            Some(m) => (0..nports as u16).filter(|p| m & (1 << p) != 0).collect(),
            None => (0..nports as u16).collect(),
        };
        let mut app = App {
            opts,
            pool,
            ports,
            portlist,
            fwd_lcores,
            fwd_cpus,
            running: None,
            capture: None,
        };
        for p in 0..app.ports.len() as u16 {
            app.start_port(p)?;
        }
        println!("Checking link statuses...");
        // Up to 500 ms for the links, looked at every millisecond: a vhost port in client mode
        // or a virtio-user port in server mode comes up a few ms after start, and forwarding
        // (the first packet) waits for this loop.
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
        while std::time::Instant::now() < deadline && !app.ports.iter().all(|p| p.port.link().up) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        for s in &mut app.ports {
            s.link_up = s.port.link().up;
        }
        println!("Done");
        Ok(app)
    }

    /// Starts port `p`; first opens it again when its offloads changed (`port config`).
    pub fn start_port(&mut self, p: u16) -> Result<(), AppError> {
        let (opts, pool) = (self.opts.clone(), self.pool.clone());
        let running = self.running.is_some();
        let s = self.slot(p)?;
        if s.reconfigure {
            if running {
                return Err(AppError::Forwarding);
            }
            println!("Configuring Port {p} (socket 0)");
            let (d, rx, tx) = (s.devargs.clone(), s.rx_offloads, s.tx_offloads);
            s.port
                .reopen(|| open_port(&opts, &pool, p, &d, rx, tx))
                .map_err(|source| AppError::Open {
                    port: p,
                    devargs: d.clone(),
                    source,
                })?;
            s.reconfigure = false;
        }
        s.port
            .start()
            .map_err(|source| AppError::Port { port: p, source })?;
        s.started = true;
        println!("Port {p}: {}", s.port.info().mac);
        Ok(())
    }

    /// Stops port `p`.
    pub fn stop_port(&mut self, p: u16) -> Result<(), AppError> {
        if self.running.is_some() {
            return Err(AppError::Forwarding);
        }
        let s = self.slot(p)?;
        s.port
            .stop()
            .map_err(|source| AppError::Port { port: p, source })?;
        s.started = false;
        println!("Stopping ports...\nDone");
        Ok(())
    }

    /// `port config N rx_offload|tx_offload NAME on|off`: changes the port's offload
    /// configuration; the port must be stopped, and takes it at its next `port start`.
    pub fn config_offload(
        &mut self,
        p: u16,
        rx: bool,
        name: &str,
        on: bool,
    ) -> Result<(), AppError> {
        let flag = name.to_ascii_uppercase();
        let s = self.slot(p)?;
        if s.started {
            return Err(AppError::PortStarted { port: p });
        }
        if rx {
            let f = RxOffloads::from_name(&flag).ok_or_else(|| AppError::UnknownOffload {
                name: name.to_string(),
                known: RxOffloads::all()
                    .iter_names()
                    .map(|(n, _)| n.to_ascii_lowercase())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
            s.rx_offloads.set(f, on);
        } else {
            let f = TxOffloads::from_name(&flag).ok_or_else(|| AppError::UnknownOffload {
                name: name.to_string(),
                known: TxOffloads::all()
                    .iter_names()
                    .map(|(n, _)| n.to_ascii_lowercase())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
            s.tx_offloads.set(f, on);
            s.csum = CsumConf {
                tso_segsz: s.csum.tso_segsz,
                ..csum_from_offloads(s.tx_offloads)
            };
        }
        s.reconfigure = true;
        Ok(())
    }

    /// `csum set ip|udp|tcp hw|sw N`: where the csum engine computes that checksum for
    /// packets sent on port N. `hw` needs the port's Tx offload, which it enables (the
    /// port must be stopped; it takes the change at its next `port start`).
    pub fn csum_set(&mut self, p: u16, what: &str, hw: bool) -> Result<(), AppError> {
        let s = self.slot(p)?;
        let (f, field) = match what {
            "ip" => (TxOffloads::IPV4_CKSUM, &mut s.csum.ip_hw),
            "udp" => (TxOffloads::UDP_CKSUM, &mut s.csum.udp_hw),
            "tcp" => (TxOffloads::TCP_CKSUM, &mut s.csum.tcp_hw),
            _ => {
                return Err(AppError::UnknownOffload {
                    name: what.to_string(),
                    known: "ip, udp, tcp".into(),
                });
            }
        };
        if hw && !s.port.info().offloads.tx.contains(f) {
            return Err(AppError::OffloadUnsupported {
                port: p,
                what: format!("{what} checksum"),
            });
        }
        *field = hw;
        if hw && !s.tx_offloads.contains(f) {
            if s.started {
                return Err(AppError::PortStarted { port: p });
            }
            s.tx_offloads |= f;
            s.reconfigure = true;
        }
        Ok(())
    }

    /// `tso set SIZE N`: TCP segment size for packets the csum engine sends on port N (0:
    /// off); enables the port's TSO offload like `csum set ... hw`.
    pub fn tso_set(&mut self, p: u16, size: u16) -> Result<(), AppError> {
        let s = self.slot(p)?;
        if size != 0 && !s.port.info().offloads.tx.contains(TxOffloads::TCP_TSO) {
            return Err(AppError::OffloadUnsupported {
                port: p,
                what: "TSO".into(),
            });
        }
        if size != 0 && !s.tx_offloads.contains(TxOffloads::TCP_TSO) {
            if s.started {
                return Err(AppError::PortStarted { port: p });
            }
            s.tx_offloads |= TxOffloads::TCP_TSO;
            s.reconfigure = true;
        }
        s.csum.tso_segsz = size;
        Ok(())
    }

    /// `csum show N` / `tso show N`.
    pub fn csum_show(&mut self, p: u16) -> Result<(), AppError> {
        let s = self.slot(p)?;
        let hs = |b: bool| if b { "hw" } else { "sw" };
        println!("Parse tunnel is off");
        println!("IP checksum offload is {}", hs(s.csum.ip_hw));
        println!("UDP checksum offload is {}", hs(s.csum.udp_hw));
        println!("TCP checksum offload is {}", hs(s.csum.tcp_hw));
        if s.csum.tso_segsz == 0 {
            println!("TSO for non-tunneled packets is disabled");
        } else {
            println!(
                "TSO segment size for non-tunneled packets is {}",
                s.csum.tso_segsz
            );
        }
        println!("Rx offloads: {}", s.rx_offloads);
        println!("Tx offloads: {}", s.tx_offloads);
        if s.reconfigure {
            println!("(applied at the next 'port start {p}')");
        }
        Ok(())
    }

    fn slot(&mut self, p: u16) -> Result<&mut PortSlot, AppError> {
        let count = self.ports.len();
        self.ports
            .get_mut(p as usize)
            .ok_or(AppError::InvalidPort { port: p, count })
    }

    /// The streams the current configuration makes.
    pub fn stream_specs(&self) -> Vec<StreamSpec> {
        let ports = &self.portlist;
        let n = ports.len();
        let nq = self.opts.rxq.min(self.opts.txq).max(1);
        let peer = |i: usize| -> u16 {
            match self.opts.topology {
                Topology::Loop => ports[i],
                Topology::Chained => ports[(i + 1) % n],
                Topology::Paired => {
                    if n == 1 {
                        ports[i]
                    } else if i.is_multiple_of(2) {
                        if i + 1 < n { ports[i + 1] } else { ports[i] }
                    } else {
                        ports[i - 1]
                    }
                }
            }
        };
        let mut v = Vec::new();
        for q in 0..nq {
            for (i, &rx_port) in ports.iter().enumerate() {
                v.push(StreamSpec {
                    rx_port,
                    rx_queue: q,
                    tx_port: peer(i),
                    tx_queue: q,
                });
            }
        }
        v
    }

    fn nb_cores(&self, streams: usize) -> usize {
        let want = self
            .opts
            .nb_cores
            .map(|c| c as usize)
            .unwrap_or(self.fwd_lcores.len());
        want.min(self.fwd_lcores.len()).min(streams).max(1)
    }

    fn peer_mac(&self, port: u16) -> MacAddr {
        self.opts
            .eth_peers
            .iter()
            .rev()
            .find(|(p, _)| *p == port)
            .map(|(_, m)| *m)
            .unwrap_or_else(|| default_peer_mac(port))
    }

    /// Prints the forwarding configuration (`show config fwd`).
    pub fn show_config_fwd(&self) {
        let specs = self.stream_specs();
        let cores = self.nb_cores(specs.len());
        println!(
            "{} packet forwarding - ports={} - cores={cores} - streams={} - NUMA support disabled, MP allocation mode: native",
            self.opts.mode,
            self.portlist.len(),
            specs.len()
        );
        for (c, chunk) in chunks(&specs, cores).into_iter().enumerate() {
            println!(
                "Logical Core {} (socket 0) forwards packets on {} streams:",
                self.fwd_lcores[c].id,
                chunk.len()
            );
            for s in chunk {
                println!(
                    "  RX P={}/Q={} (socket 0) -> TX P={}/Q={} (socket 0) peer={}",
                    s.rx_port,
                    s.rx_queue,
                    s.tx_port,
                    s.tx_queue,
                    self.peer_mac(s.tx_port)
                );
            }
        }
        println!();
    }

    /// Starts forwarding; `tx_first` bursts of txonly traffic are sent on every stream first.
    pub fn start(&mut self, tx_first: usize) -> Result<(), AppError> {
        if self.running.is_some() {
            return Err(AppError::AlreadyStarted);
        }
        if ferrovia_fwd::engine(&self.opts.mode).is_none() {
            return Err(AppError::UnknownMode {
                mode: self.opts.mode.clone(),
            });
        }
        let specs = self.stream_specs();
        let cores = self.nb_cores(specs.len());
        let mut streams = Vec::new();
        for s in &specs {
            let tx_mac = self.ports[s.tx_port as usize].port.info().mac;
            let peer_mac = self.peer_mac(s.tx_port);
            let rx = self.ports[s.rx_port as usize]
                .port
                .rx_queue(s.rx_queue)
                .map_err(|source| AppError::Queue {
                    port: s.rx_port,
                    queue: s.rx_queue,
                    source,
                })?;
            let tx = self.ports[s.tx_port as usize]
                .port
                .tx_queue(s.tx_queue)
                .map_err(|source| AppError::Queue {
                    port: s.tx_port,
                    queue: s.tx_queue,
                    source,
                })?;
            streams.push(Stream {
                rx,
                tx,
                rx_port: s.rx_port,
                rx_queue: s.rx_queue,
                tx_port: s.tx_port,
                tx_queue: s.tx_queue,
                counters: Arc::default(),
                params: StreamParams {
                    burst: self.opts.burst,
                    txpkts: self.opts.txpkts.clone(),
                    tx_mac,
                    peer_mac,
                    record_burst_stats: self.opts.record_burst_stats,
                    csum: self.ports[s.tx_port as usize].csum,
                },
                pool: self.pool.clone(),
                burst: Default::default(),
            });
        }
        self.show_config_fwd();
        let counters = specs
            .iter()
            .zip(&streams)
            .map(|(s, st)| (*s, st.counters.clone()))
            .collect();
        let start_stats = self.ports.iter().map(|p| p.port.stats()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut per_core: Vec<Vec<Stream>> = (0..cores).map(|_| Vec::new()).collect();
        let sizes: Vec<usize> = chunks(&specs, cores).iter().map(|c| c.len()).collect();
        let mut it = streams.into_iter();
        for (c, n) in sizes.iter().enumerate() {
            per_core[c].extend(it.by_ref().take(*n));
        }
        for (c, mut mine) in per_core.into_iter().enumerate() {
            let lc = self.fwd_lcores[c];
            let cpu = self.fwd_cpus[c];
            let mode = self.opts.mode.clone();
            let record_cycles = self.opts.record_core_cycles;
            let stop = stop.clone();
            let h = std::thread::Builder::new()
                .name(format!("lcore-{}", lc.id))
                .spawn(move || {
                    if let Some(cpu) = cpu
                        && !pin(cpu)
                    {
                        log::warn!(
                            "lcore {}: cannot pin its forwarding thread to CPU {cpu}; it runs unpinned",
                            lc.id
                        );
                    }
                    let mut engine = ferrovia_fwd::engine(&mode).expect("mode checked");
                    // The thread's mbuf caches, one per pool, shared by every stream it polls;
                    // dropped (everything back to the pools) when the thread ends.
                    let mut caches = LcoreCaches::new();
                    if tx_first > 0 {
                        let mut tx = ferrovia_fwd::engine("txonly").expect("txonly exists");
                        for _ in 0..tx_first {
                            for s in mine.iter_mut() {
                                tx.forward(&mut caches, s);
                            }
                        }
                    }
                    // Two monomorphised loops: without the option, the loop has no extra work.
                    if record_cycles {
                        poll_until(&stop, &mut caches, &mut mine, |c, s| {
                            forward_counting_cycles(engine.as_mut(), c, s)
                        });
                    } else {
                        poll_until(&stop, &mut caches, &mut mine, |c, s| engine.forward(c, s));
                    }
                    for s in mine.iter_mut() {
                        caches.free_all(s.burst.drain(..));
                    }
                })
                .map_err(|source| AppError::Thread { source })?;
            threads.push(h);
        }
        self.running = Some(Running {
            started: crate::cycles::Mark::take(),
            stop,
            threads,
            counters,
            start_stats,
        });
        Ok(())
    }

    /// Stops forwarding and prints the forward statistics.
    pub fn stop(&mut self) -> Result<(), AppError> {
        let Some(r) = self.running.take() else {
            return Err(AppError::NotStarted);
        };
        println!("Telling cores to stop...");
        r.stop.store(true, Ordering::Relaxed);
        println!("Waiting for lcores to finish...");
        for t in r.threads {
            let _ = t.join();
        }
        let mut total = FwdStats::default();
        for p in &self.portlist {
            let mut s = FwdStats::default();
            for (spec, c) in &r.counters {
                if spec.rx_port == *p {
                    s.rx += StreamCounters::get(&c.rx_packets);
                }
                if spec.tx_port == *p {
                    s.tx += StreamCounters::get(&c.tx_packets);
                    s.tx_dropped += StreamCounters::get(&c.fwd_dropped);
                }
                if spec.rx_port == *p && self.opts.mode == "csum" {
                    let (ip, l4) = s.bad_csum.unwrap_or((0, 0));
                    s.bad_csum = Some((
                        ip + StreamCounters::get(&c.rx_bad_ip_csum),
                        l4 + StreamCounters::get(&c.rx_bad_l4_csum),
                    ));
                }
            }
            let now = self.ports[*p as usize].port.stats();
            let before = &r.start_stats[*p as usize];
            s.rx_dropped = now.rx_nombuf().saturating_sub(before.rx_nombuf());
            let spreads = if self.opts.record_burst_stats {
                burst_spreads(*p, &r.counters)
            } else {
                Vec::new()
            };
            print_fwd_port(*p, &s, &spreads);
            total.rx += s.rx;
            total.tx += s.tx;
            total.rx_dropped += s.rx_dropped;
            total.tx_dropped += s.tx_dropped;
        }
        print_fwd_total(&total);
        if self.opts.record_core_cycles {
            let hz = r
                .started
                .hz_until(&crate::cycles::Mark::take())
                .unwrap_or(1e9);
            let cycles: u64 = r
                .counters
                .iter()
                .map(|(_, c)| StreamCounters::get(&c.busy_cycles))
                .sum();
            // DPDK counts received packets, or sent ones for the modes that receive nothing.
            let packets = if total.rx > 0 { total.rx } else { total.tx };
            if let Some(line) = format_cycles(&self.opts.mode, cycles, packets, hz) {
                println!();
                println!("{line}");
            }
        }
        println!();
        println!("Done.");
        Ok(())
    }

    /// `show port stats N`.
    pub fn show_port_stats(&mut self, p: u16) -> Result<(), AppError> {
        let s = self.slot(p)?;
        let st = s.port.stats();
        s.last_show = Some(print_nic(p, &st, s.last_show));
        Ok(())
    }

    /// Whether forwarding is running.
    pub fn forwarding(&self) -> bool {
        self.running.is_some()
    }

    /// Packets received so far on all ports (for the start-up measurement).
    pub fn total_rx_packets(&self) -> u64 {
        self.ports.iter().map(|s| s.port.stats().ipackets()).sum()
    }

    /// `clear port stats N`.
    pub fn clear_port_stats(&mut self, p: u16) -> Result<(), AppError> {
        let s = self.slot(p)?;
        s.port.reset_stats();
        s.last_show = None;
        println!("\n  NIC statistics for port {p} cleared");
        Ok(())
    }

    /// `show port xstats N`.
    pub fn show_port_xstats(&mut self, p: u16) -> Result<(), AppError> {
        let s = self.slot(p)?;
        println!("###### NIC extended statistics for port {p}");
        for (k, v) in s.port.xstats() {
            println!("{k}: {v}");
        }
        Ok(())
    }

    /// `set link-up|link-down port N`: the port's link administratively up or down (its
    /// peer sees it), as DPDK's `rte_eth_dev_set_link_up/down`.
    pub fn set_link(&mut self, p: u16, up: bool) -> Result<(), String> {
        let s = self.slot(p).map_err(|e| e.to_string())?;
        s.port.set_link(up).map_err(|e| e.to_string())
    }

    /// A port control command (`set promisc P on`, `set allmulti P on`, `mac_addr set P
    /// MAC`, `rx_vlan add|rm VLAN P`): runs `f` on port `p`; a refusal (a virtio-user port's
    /// device answering `VIRTIO_NET_ERR`, a timeout) is the error, quoted as the device gave it.
    pub fn port_control(
        &mut self,
        p: u16,
        f: impl FnOnce(&mut dyn ferrovia_ethdev::Port) -> ferrovia_ethdev::Result<()>,
    ) -> Result<(), String> {
        let s = self.slot(p).map_err(|e| e.to_string())?;
        s.port.with_port(f).map_err(|e| e.to_string())
    }

    /// The VF control of PF port `p` (`set vf ...` commands).
    pub fn vf_control(
        &mut self,
        p: u16,
    ) -> Result<std::sync::Arc<dyn ferrovia_ethdev::VfControl>, String> {
        let s = self.slot(p).map_err(|e| e.to_string())?;
        s.port.vf_control().ok_or_else(|| {
            format!(
                "port {p} ({}) has no VFs: VF commands need a PF port (e.g. --vdev net_eswitch0,vfs=4)",
                s.port.info().driver
            )
        })
    }

    /// `show port info N`.
    pub fn show_port_info(&mut self, p: u16) -> Result<(), AppError> {
        let s = self.slot(p)?;
        let i = s.port.info();
        let l = s.port.link();
        println!();
        println!("********************* Infos for port {p}  *********************");
        println!("MAC address: {}", i.mac);
        println!("Device name: {}", i.name);
        println!("Driver name: {}", i.driver);
        println!("Devargs: {}", s.devargs);
        println!("Link status: {}", if l.up { "up" } else { "down" });
        println!("Link speed: {} Mbps", l.speed_mbps);
        println!(
            "Link duplex: {}",
            if l.full_duplex {
                "full-duplex"
            } else {
                "half-duplex"
            }
        );
        println!("MTU: 1500");
        println!(
            "Maximum configurable length of RX packet: {}",
            i.max_frame_size
        );
        println!("Current number of RX queues: {}", i.nb_rx_queues);
        println!("Max possible RX queues: {}", i.max_queues);
        println!("Current number of TX queues: {}", i.nb_tx_queues);
        println!("Max possible TX queues: {}", i.max_queues);
        print!("{}", i.describe_capabilities());
        Ok(())
    }

    /// Prints a line for each port whose link changed since the last call.
    pub fn poll_link_events(&mut self) {
        for (i, s) in self.ports.iter_mut().enumerate() {
            let up = s.port.link().up;
            if up != s.link_up {
                s.link_up = up;
                println!(
                    "\nPort {i}: link state change event ({})",
                    if up { "up" } else { "down" }
                );
            }
        }
    }

    /// Stops forwarding (if needed) and closes every port.
    pub fn close(&mut self) {
        if self.running.is_some() {
            let _ = self.stop();
        }
        println!("Stopping port(s)...");
        for (i, s) in self.ports.iter_mut().enumerate() {
            let _ = s.port.stop();
            println!("Port {i} is stopped");
        }
        println!("Closing ports...");
        let n = self.ports.len();
        self.ports.clear();
        for i in 0..n {
            println!("Port {i} is closed");
        }
        println!("Done");
    }

    /// The ports' control sides, in port id order (for the telemetry).
    pub fn shared_ports(&self) -> Vec<SharedPort> {
        self.ports.iter().map(|s| s.port.clone()).collect()
    }

    /// Number of ports.
    pub fn nb_ports(&self) -> usize {
        self.ports.len()
    }
}

/// Opens port `i` from devargs `d` with testpmd's configuration and offloads `rx`/`tx`;
/// offloads the port cannot do are named in a warning and left off.
fn open_port(
    opts: &crate::opts::AppOpts,
    pool: &Mempool,
    i: u16,
    d: &str,
    rx: RxOffloads,
    tx: TxOffloads,
) -> ferrovia_ethdev::Result<Box<dyn Port>> {
    let mut conf = PortConf::new(i, pool.clone());
    conf.nb_rxq = opts.rxq;
    conf.nb_txq = opts.txq;
    conf.nb_rxd = opts.rxd;
    conf.nb_txd = opts.txd;
    conf.max_rx_pktlen = opts.max_pkt_len.unwrap_or(1518);
    conf.rx_offloads = rx;
    conf.tx_offloads = tx;
    let port = ferrovia_pmd::open(d, &conf)?;
    let capa = port.info().offloads;
    let (rx_no, tx_no) = (rx.difference(capa.rx), tx.difference(capa.tx));
    if !rx_no.is_empty() || !tx_no.is_empty() {
        println!(
            "Warning: port {i} does not support Rx offloads {rx_no:#x} ({rx_no}) / Tx offloads {tx_no:#x} ({tx_no}); they stay off",
            rx_no = rx_no.bits(),
            tx_no = tx_no.bits(),
        );
    }
    Ok(port)
}

/// The csum engine's default for a port: hardware for the checksums its Tx offloads
/// enable (`--tx-offloads`), software for the rest.
fn csum_from_offloads(tx: TxOffloads) -> CsumConf {
    CsumConf {
        ip_hw: tx.contains(TxOffloads::IPV4_CKSUM),
        udp_hw: tx.contains(TxOffloads::UDP_CKSUM),
        tcp_hw: tx.contains(TxOffloads::TCP_CKSUM),
        tso_segsz: 0,
    }
}

/// DPDK's default peer address of port `port` (`--eth-peer` overrides it):
/// 02:00:00:00:00:<port>, with the port id's high byte in the fifth byte so that every one of
/// the 65536 port ids has its own.
pub fn default_peer_mac(port: u16) -> MacAddr {
    let [hi, lo] = port.to_be_bytes();
    MacAddr([0x02, 0, 0, 0, hi, lo])
}

/// Runs `forward` on every stream of this core, round and round, with the core's mbuf caches,
/// until `stop` is set.
#[inline]
fn poll_until(
    stop: &AtomicBool,
    caches: &mut LcoreCaches,
    streams: &mut [Stream],
    mut forward: impl FnMut(&mut LcoreCaches, &mut Stream),
) {
    while !stop.load(Ordering::Relaxed) {
        for s in streams.iter_mut() {
            forward(caches, s);
        }
    }
}

/// Forwards one burst and, if it moved packets, adds the cycles it took to the stream's
/// `busy_cycles` (`--record-core-cycles`); empty polls are not counted, as in DPDK.
#[inline]
fn forward_counting_cycles(
    engine: &mut dyn ferrovia_fwd::Engine,
    caches: &mut LcoreCaches,
    s: &mut Stream,
) {
    let moved = |s: &Stream| {
        StreamCounters::get(&s.counters.rx_packets) + StreamCounters::get(&s.counters.tx_packets)
    };
    let before = moved(s);
    let t0 = crate::cycles::now();
    engine.forward(caches, s);
    if moved(s) != before {
        let dt = crate::cycles::now().wrapping_sub(t0);
        StreamCounters::bump(&s.counters.busy_cycles, dt);
    }
}

/// Splits `v` into `n` contiguous chunks as evenly as possible (first ones larger).
pub fn chunks<T: Copy>(v: &[T], n: usize) -> Vec<Vec<T>> {
    let n = n.max(1);
    let base = v.len() / n;
    let extra = v.len() % n;
    let mut out = Vec::new();
    let mut i = 0;
    for c in 0..n {
        let k = base + usize::from(c < extra);
        out.push(v[i..i + k].to_vec());
        i += k;
    }
    out
}

/// The Rx burst spread of the streams reading port `p` and the Tx spread of those writing it
/// (`--record-burst-stats`), summed over queues, as lines to print.
fn burst_spreads(p: u16, counters: &[(StreamSpec, Arc<StreamCounters>)]) -> Vec<String> {
    // Every spread has the same length (MAX_BURST + 1), so they add element by element.
    let sum = |spreads: Vec<Vec<u64>>| {
        spreads
            .into_iter()
            .reduce(|mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            })
            .unwrap_or_default()
    };
    let rx = sum(counters
        .iter()
        .filter(|(s, _)| s.rx_port == p)
        .map(|(_, c)| c.rx_bursts.snapshot())
        .collect());
    let tx = sum(counters
        .iter()
        .filter(|(s, _)| s.tx_port == p)
        .map(|(_, c)| c.tx_bursts.snapshot())
        .collect());
    [format_spread("RX", &rx), format_spread("TX", &tx)]
        .into_iter()
        .flatten()
        .collect()
}
