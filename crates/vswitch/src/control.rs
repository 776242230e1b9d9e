//! The switch: bridges and ports, the PMD threads, and the control thread that learns, ages
//! and publishes configuration snapshots.
//!
//! Every control operation takes the state lock (the packet path never does), changes the
//! state, and publishes a new [`Snapshot`] to the PMD threads. Port removal waits until every
//! PMD thread has dropped the port's queues before the port is stopped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use ferrovia_ethdev::capture::params::PortRef;
use ferrovia_ethdev::{CaptureSpec, CaptureStatus, MacAddr, Port, PortConf, PortTap};
use ferrovia_memory::{Mempool, MempoolConfig};
use ferrovia_telemetry::{CaptureControl, CaptureTarget};
use serde::Serialize;

use crate::config::{BridgeConfig, PortConfig, RxqAssign, SwitchConfig};
use crate::counters::{MAX_PORTS, PmdCounters, PortTotals};
use crate::emc::FlowDump;
use crate::error::{SwitchError, SwitchResult};
use crate::fdb::{FdbWriter, Learned};
use crate::pipeline::{LearnRequest, Pipeline};
use crate::pmd::{Pmd, PmdCommand, PmdControl, RxqCycles, RxqHandle, TxHandle, command_queue};
use crate::router::RouterState;
use crate::snapshot::{BridgeView, PortView, Shared, Snapshot};
use crate::vlan::{VlanConfig, VlanMode};

/// Most bridges.
pub const MAX_BRIDGES: usize = 256;
/// Learning requests a PMD thread can queue before the control thread takes them.
const LEARN_QUEUE: usize = 8192;
/// Frames a port's mailbox holds.
const MAILBOX: usize = 4096;
/// How often the control thread takes learning requests.
const LEARN_EVERY: Duration = Duration::from_millis(1);
/// Longest wait for a PMD thread to apply a command.
const PMD_REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Learning and aging counters of one bridge.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BridgeCounters {
    /// Addresses learned.
    pub learned: u64,
    /// Addresses that moved to another port.
    pub moved: u64,
    /// Addresses aged out.
    pub aged: u64,
    /// Addresses not learned because the FDB was at its limit.
    pub fdb_full: u64,
}

struct Bridge {
    name: String,
    fdb: FdbWriter,
    aging: u32,
    counters: BridgeCounters,
}

struct RxqPlace {
    queue: u16,
    pmd: usize,
    cycles: Arc<RxqCycles>,
}

struct SwitchPort {
    cfg: PortConfig,
    bridge: u16,
    vlan: VlanMode,
    max_frame: u32,
    port: Box<dyn Port>,
    rxqs: Vec<RxqPlace>,
    base: PortTotals,
    link_up: bool,
}

struct State {
    bridges: Vec<Option<Bridge>>,
    ports: Vec<Option<SwitchPort>>,
    router: RouterState,
}

struct PmdThread {
    control: PmdControl,
    counters: Arc<PmdCounters>,
    learn: Arc<ArrayQueue<LearnRequest>>,
    cpu: Option<usize>,
    join: Mutex<Option<JoinHandle<()>>>,
}

/// A running switch.
pub struct Switch {
    state: Mutex<State>,
    shared: Arc<Shared>,
    pmds: Vec<PmdThread>,
    pool: Mempool,
    rxq_assign: Mutex<RxqAssign>,
    stop: AtomicBool,
    control_thread: Mutex<Option<JoinHandle<()>>>,
    started: Instant,
    capture: Arc<CaptureControl>,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch")
            .field("pmds", &self.pmds.len())
            .finish_non_exhaustive()
    }
}

/// A port as `show ports` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PortStatus {
    /// Name.
    pub name: String,
    /// Bridge name.
    pub bridge: String,
    /// Slot (the port number in flows and FDB entries).
    pub slot: u16,
    /// Devargs.
    pub devargs: String,
    /// Driver.
    pub driver: String,
    /// MAC address of the port itself.
    pub mac: String,
    /// Link up.
    pub link_up: bool,
    /// VLAN settings.
    pub vlan: VlanConfig,
    /// Rx queue → PMD thread.
    pub rxqs: Vec<(u16, usize)>,
    /// Switch counters.
    pub stats: PortTotals,
}

/// A port as the ethdev layer sees it (for telemetry): the driver's counters, not the
/// switch's.
#[derive(Clone, Debug)]
pub struct PortEthdev {
    /// The switch's name for the port.
    pub name: String,
    /// The driver's facts.
    pub info: ferrovia_ethdev::PortInfo,
    /// Link state.
    pub link: ferrovia_ethdev::Link,
    /// The driver's counters.
    pub stats: ferrovia_ethdev::PortStats,
    /// The driver's extended counters.
    pub xstats: Vec<(String, u64)>,
}

/// One FDB entry as `show fdb` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct FdbRow {
    /// Port name.
    pub port: String,
    /// VLAN.
    pub vlan: u16,
    /// MAC address.
    pub mac: String,
    /// Seconds since last seen.
    pub age: u32,
}

/// A bridge as `show bridges` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct BridgeStatus {
    /// Name.
    pub name: String,
    /// Port names.
    pub ports: Vec<String>,
    /// FDB entries.
    pub fdb_entries: usize,
    /// FDB limit.
    pub fdb_limit: usize,
    /// Aging seconds.
    pub aging_secs: u32,
    /// Learning counters.
    pub counters: BridgeCounters,
    /// Sum of the ports' counters.
    pub stats: PortTotals,
}

/// A PMD thread as `show pmd-stats` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PmdStatus {
    /// Index.
    pub id: usize,
    /// Pinned CPU.
    pub cpu: Option<usize>,
    /// (port name, queue, share of this thread's busy cycles in %).
    pub rxqs: Vec<(String, u16, f64)>,
    /// Loop iterations.
    pub iterations: u64,
    /// Frames received.
    pub packets: u64,
    /// Busy share of cycles, %.
    pub busy_pct: f64,
    /// Cycles per frame (busy cycles / frames).
    pub cycles_per_packet: f64,
    /// Flow-cache hits.
    pub emc_hits: u64,
    /// Flow-cache misses.
    pub emc_misses: u64,
    /// Learning requests lost to a full queue.
    pub learn_queue_full: u64,
    /// Frames passed to another thread's mailbox.
    pub mailbox_tx: u64,
}

fn pin_to(cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; zeroed is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: CPU_SET writes one bit of `set`, in bounds for cpu < CPU_SETSIZE (checked).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 is this thread.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn port_max_frame(cfg: &PortConfig) -> u32 {
    cfg.max_frame.unwrap_or(1522)
}

impl Switch {
    /// Starts the PMD and control threads and applies `cfg`. On error nothing keeps running.
    pub fn start(cfg: &SwitchConfig) -> SwitchResult<Arc<Switch>> {
        cfg.check().map_err(SwitchError::Invalid)?;
        let g = &cfg.switch;
        let pool = Mempool::new(MempoolConfig {
            name: "switch".into(),
            count: g.mbufs,
            ..Default::default()
        })
        .map_err(|e| {
            SwitchError::System(format!(
                "cannot make the mbuf pool ({} mbufs): {e}",
                g.mbufs
            ))
        })?;
        ferrovia_pmd::start_control_plane().map_err(|e| {
            SwitchError::System(format!("cannot start the vhost-user control loop: {e}"))
        })?;
        let shared = Arc::new(Shared::default());
        let mut pmds = Vec::new();
        for i in 0..g.pmd_threads {
            let (control, commands, pending) = command_queue();
            let counters = Arc::new(PmdCounters::default());
            let learn = Arc::new(ArrayQueue::new(LEARN_QUEUE));
            let cpu = g.pmd_cpus.get(i).copied();
            let pmd = Pmd::new(
                Pipeline::new(learn.clone(), pool.clone()),
                shared.clone(),
                counters.clone(),
                commands,
                pending,
            );
            let (ready_tx, ready_rx) = mpsc::channel();
            let join = std::thread::Builder::new()
                .name(format!("pmd-{i}"))
                .spawn(move || {
                    let r = cpu.map(pin_to).transpose();
                    let ok = r.is_ok();
                    let _ = ready_tx.send(r.map(|_| ()));
                    if ok {
                        pmd.run();
                    }
                })
                .map_err(|e| SwitchError::System(format!("cannot start PMD thread {i}: {e}")))?;
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(SwitchError::Invalid(format!(
                        "cannot pin PMD thread {i} to CPU {}: {e} (check pmd_cpus against `nproc` and the process's affinity)",
                        cpu.unwrap_or(0)
                    )));
                }
                Err(_) => return Err(SwitchError::System(format!("PMD thread {i} died at start"))),
            }
            pmds.push(PmdThread {
                control,
                counters,
                learn,
                cpu,
                join: Mutex::new(Some(join)),
            });
        }
        let sw = Arc::new(Switch {
            state: Mutex::new(State {
                bridges: Vec::new(),
                ports: Vec::new(),
                router: RouterState::default(),
            }),
            shared,
            pmds,
            pool,
            rxq_assign: Mutex::new(g.rxq_assign),
            stop: AtomicBool::new(false),
            control_thread: Mutex::new(None),
            started: Instant::now(),
            capture: Arc::default(),
        });
        let weak = Arc::downgrade(&sw);
        let t = std::thread::Builder::new()
            .name("switch-ctl".into())
            .spawn(move || control_loop(weak))
            .map_err(|e| SwitchError::System(format!("cannot start the control thread: {e}")))?;
        *sw.control_thread.lock().unwrap() = Some(t);
        let applied = (|| {
            for b in &cfg.bridge {
                sw.add_bridge(b)?;
            }
            for p in &cfg.port {
                sw.add_port(p)?;
            }
            sw.apply_router_config(cfg)
        })();
        if let Err(e) = applied {
            sw.shutdown();
            return Err(e);
        }
        Ok(sw)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seconds since start (the FDB clock).
    pub fn now(&self) -> u32 {
        self.started.elapsed().as_secs() as u32
    }

    /// The switch's mbuf pool.
    pub fn pool(&self) -> &Mempool {
        &self.pool
    }

    /// Number of PMD threads.
    pub fn pmd_threads(&self) -> usize {
        self.pmds.len()
    }

    /// Stops every thread and port. Idempotent.
    pub fn shutdown(&self) {
        if self.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.capture.stop(None);
        if let Some(t) = self.control_thread.lock().unwrap().take()
            && t.thread().id() != std::thread::current().id()
        {
            let _ = t.join();
        }
        for p in &self.pmds {
            p.control.send(PmdCommand::Stop);
            if let Some(j) = p.join.lock().unwrap().take() {
                let _ = j.join();
            }
        }
        let mut st = self.lock();
        for p in st.ports.iter_mut().filter_map(Option::take) {
            let mut port = p.port;
            let _ = port.stop();
        }
    }

    /// Adds a bridge.
    pub fn add_bridge(&self, cfg: &BridgeConfig) -> SwitchResult<()> {
        if cfg.name.is_empty() || cfg.name.len() > 64 {
            return Err(SwitchError::Invalid(format!(
                "bridge name {:?} must be 1 to 64 characters",
                cfg.name
            )));
        }
        if cfg.fdb_limit == 0 || cfg.fdb_limit > 1 << 20 {
            return Err(SwitchError::Invalid(format!(
                "bridge {}: fdb_limit {} is out of range (use 1..=1048576)",
                cfg.name, cfg.fdb_limit
            )));
        }
        let mut st = self.lock();
        if find_bridge(&st, &cfg.name).is_some() {
            return Err(SwitchError::Exists {
                kind: "bridge",
                name: cfg.name.clone(),
            });
        }
        let id = match st.bridges.iter().position(Option::is_none) {
            Some(i) => i,
            None if st.bridges.len() < MAX_BRIDGES => {
                st.bridges.push(None);
                st.bridges.len() - 1
            }
            None => {
                return Err(SwitchError::Full(format!(
                    "the switch has {MAX_BRIDGES} bridges already (delete one first)"
                )));
            }
        };
        st.bridges[id] = Some(Bridge {
            name: cfg.name.clone(),
            fdb: FdbWriter::new(cfg.fdb_limit),
            aging: cfg.aging_secs,
            counters: BridgeCounters::default(),
        });
        self.publish_sync(&st);
        log::info!("bridge {} added", cfg.name);
        Ok(())
    }

    /// Deletes a bridge (it must have no ports and no router interfaces).
    pub fn del_bridge(&self, name: &str) -> SwitchResult<()> {
        let mut st = self.lock();
        let id = bridge_id(&st, name)?;
        let ports: Vec<&str> = st
            .ports
            .iter()
            .flatten()
            .filter(|p| p.bridge == id)
            .map(|p| p.cfg.name.as_str())
            .collect();
        if !ports.is_empty() {
            return Err(SwitchError::Invalid(format!(
                "bridge {name} still has ports ({}): delete them first",
                ports.join(", ")
            )));
        }
        if st.router.on_bridge(id) {
            return Err(SwitchError::Invalid(format!(
                "bridge {name} still has router interfaces: delete them first"
            )));
        }
        st.bridges[id as usize] = None;
        self.publish_sync(&st);
        log::info!("bridge {name} deleted");
        Ok(())
    }

    /// Adds a port: opens and starts it, then gives its queues to the PMD threads.
    pub fn add_port(&self, cfg: &PortConfig) -> SwitchResult<()> {
        let vlan = VlanMode::from_config(&cfg.vlan())
            .map_err(|e| SwitchError::Invalid(format!("port {}: {e}", cfg.name)))?;
        let max_frame = port_max_frame(cfg);
        if !(64..=9728).contains(&max_frame) {
            return Err(SwitchError::Invalid(format!(
                "port {}: max_frame {max_frame} is out of range (use 64..=9728)",
                cfg.name
            )));
        }
        let mut st = self.lock();
        let bridge = bridge_id(&st, &cfg.bridge)?;
        if find_port(&st, &cfg.name).is_some() {
            return Err(SwitchError::Exists {
                kind: "port",
                name: cfg.name.clone(),
            });
        }
        if let Some(other) = st
            .ports
            .iter()
            .flatten()
            .find(|p| p.cfg.devargs == cfg.devargs)
        {
            return Err(SwitchError::Invalid(format!(
                "port {}: port {} already uses devargs {:?}",
                cfg.name, other.cfg.name, cfg.devargs
            )));
        }
        let slot = match st.ports.iter().position(Option::is_none) {
            Some(i) => i,
            None if st.ports.len() < MAX_PORTS => {
                st.ports.push(None);
                st.ports.len() - 1
            }
            None => {
                return Err(SwitchError::Full(format!(
                    "the switch has {MAX_PORTS} ports already (delete one first)"
                )));
            }
        } as u16;
        let mut conf = PortConf::new(slot, self.pool.clone());
        conf.max_rx_pktlen = max_frame.max(1518);
        let perr = |source| SwitchError::Port {
            name: cfg.name.clone(),
            source,
        };
        let mut port = ferrovia_pmd::open(&cfg.devargs, &conf).map_err(perr)?;
        port.start().map_err(perr)?;
        let info = port.info();
        let n_pmd = self.pmds.len();
        // Rx queues to PMD threads.
        let mut rxqs = Vec::new();
        let mut handles = Vec::new();
        for q in 0..info.nb_rx_queues {
            let pmd = self.pick_pmd(&st, &rxqs);
            let cycles = Arc::new(RxqCycles::default());
            let rxq = port.rx_queue(q).map_err(perr)?;
            handles.push((
                pmd,
                RxqHandle {
                    slot,
                    queue: q,
                    rxq,
                    cycles: cycles.clone(),
                },
            ));
            rxqs.push(RxqPlace {
                queue: q,
                pmd,
                cycles,
            });
        }
        // Tx: a queue per PMD thread when the port has enough, else one home thread and a
        // mailbox for the others.
        let mailbox = Arc::new(ArrayQueue::new(MAILBOX));
        let home = rxqs.first().map_or(slot as usize % n_pmd, |r| r.pmd);
        let mut txs = Vec::new();
        for i in 0..n_pmd {
            let txq = if info.nb_tx_queues as usize >= n_pmd {
                Some(port.tx_queue(i as u16).map_err(perr)?)
            } else if i == home && info.nb_tx_queues > 0 {
                Some(port.tx_queue(0).map_err(perr)?)
            } else {
                None
            };
            txs.push(TxHandle {
                txq,
                mailbox: mailbox.clone(),
                drains_mailbox: i == home && (info.nb_tx_queues as usize) < n_pmd,
            });
        }
        let base = PortTotals::sum(
            self.pmds.iter().map(|p| &*p.counters),
            slot,
            &PortTotals::default(),
        );
        st.ports[slot as usize] = Some(SwitchPort {
            cfg: cfg.clone(),
            bridge,
            vlan,
            max_frame,
            port,
            rxqs,
            base,
            link_up: false,
        });
        for (i, tx) in txs.into_iter().enumerate() {
            self.pmds[i].control.send(PmdCommand::AddTx { slot, tx });
        }
        self.publish(&st);
        for (pmd, h) in handles {
            self.pmds[pmd].control.send(PmdCommand::AddRxq(h));
        }
        // Return once every PMD thread switches to and from the port.
        self.barrier();
        log::info!(
            "port {} ({}) added to bridge {} as port {slot}",
            cfg.name,
            cfg.devargs,
            cfg.bridge
        );
        Ok(())
    }

    /// The PMD thread for a new Rx queue.
    fn pick_pmd(&self, st: &State, pending: &[RxqPlace]) -> usize {
        let mut load = vec![0u64; self.pmds.len()];
        let by_cycles = *self.rxq_assign.lock().unwrap() == RxqAssign::Cycles;
        let placed = st.ports.iter().flatten().flat_map(|p| p.rxqs.iter());
        for r in placed.chain(pending) {
            {
                load[r.pmd] += if by_cycles {
                    r.cycles.cycles.load(Ordering::Relaxed)
                } else {
                    1
                };
            }
        }
        (0..load.len()).min_by_key(|&i| load[i]).unwrap_or(0)
    }

    /// Deletes a port: no PMD thread touches it once this returns; then it is stopped.
    pub fn del_port(&self, name: &str) -> SwitchResult<()> {
        let mut st = self.lock();
        let slot = port_slot(&st, name)?;
        // Its captures end first, so their files are complete.
        for c in self.capture.stop_port(slot) {
            log::info!(
                "capture {} of port {name} stopped: {} packets written to {}",
                c.id,
                c.written,
                c.spec.path.display()
            );
        }
        let p = st.ports[slot as usize].take().expect("slot found");
        self.publish(&st);
        let mut waits = Vec::new();
        for pmd in &self.pmds {
            let (tx, rx) = mpsc::channel();
            pmd.control.send(PmdCommand::RemovePort { slot, done: tx });
            waits.push(rx);
        }
        for (i, w) in waits.into_iter().enumerate() {
            if w.recv_timeout(PMD_REPLY_TIMEOUT).is_err() {
                log::error!(
                    "PMD thread {i} did not release port {name} within {PMD_REPLY_TIMEOUT:?}"
                );
            }
        }
        if let Some(b) = st.bridges[p.bridge as usize].as_mut() {
            b.fdb.flush_port(slot);
        }
        self.shared.bump();
        drop(st);
        let mut port = p.port;
        let _ = port.stop();
        drop(port);
        log::info!("port {name} deleted");
        Ok(())
    }

    /// The switch's captures (the telemetry's `/ferrovia/capture/*` commands use them too).
    pub fn captures(&self) -> &Arc<CaptureControl> {
        &self.capture
    }

    /// Starts a capture on the port named `port` (its switch name, its devargs name, or its
    /// number as `show ports` lists it).
    pub fn capture_start(&self, port: &str, spec: CaptureSpec) -> SwitchResult<CaptureStatus> {
        let r = {
            let st = self.lock();
            match port.parse::<u16>() {
                Ok(n) if find_port(&st, port).is_none() => PortRef::Id(n),
                _ => PortRef::Name(port.to_string()),
            }
        };
        self.capture
            .start_spec(self, &r, spec)
            .map_err(SwitchError::Invalid)
    }

    /// Stops capture `id`, or every capture (`None`); returns their final counters.
    pub fn capture_stop(&self, id: Option<u32>) -> SwitchResult<Vec<CaptureStatus>> {
        self.capture.stop(id).map_err(SwitchError::Invalid)
    }

    /// The running captures with their counters.
    pub fn capture_list(&self) -> Vec<CaptureStatus> {
        self.capture.list()
    }

    /// Changes a port's VLAN settings.
    pub fn set_port_vlan(&self, name: &str, vlan: &VlanConfig) -> SwitchResult<()> {
        let mode = VlanMode::from_config(vlan)
            .map_err(|e| SwitchError::Invalid(format!("port {name}: {e}")))?;
        let mut st = self.lock();
        let slot = port_slot(&st, name)?;
        let p = st.ports[slot as usize].as_mut().expect("slot found");
        p.vlan = mode;
        p.cfg.tag = vlan.tag;
        p.cfg.trunks = vlan.trunks.clone();
        p.cfg.native = vlan.native;
        let bridge = p.bridge;
        if let Some(b) = st.bridges[bridge as usize].as_mut() {
            b.fdb.flush_port(slot);
        }
        self.publish_sync(&st);
        Ok(())
    }

    /// Publishes `st` and waits until every PMD thread switches by it: when a control
    /// request returns, its change is in effect for every frame received after.
    fn publish_sync(&self, st: &State) {
        self.publish(st);
        self.barrier();
    }

    /// Builds and sends a snapshot of `st` to every PMD thread; invalidates flow caches.
    fn publish(&self, st: &State) {
        let snap = Arc::new(self.snapshot(st));
        for p in &self.pmds {
            p.control.send(PmdCommand::Snapshot(snap.clone()));
        }
        self.shared.bump();
    }

    fn snapshot(&self, st: &State) -> Snapshot {
        let ports = st
            .ports
            .iter()
            .enumerate()
            .map(|(slot, p)| {
                p.as_ref().map(|p| PortView {
                    slot: slot as u16,
                    bridge: p.bridge,
                    vlan: p.vlan.clone(),
                    max_frame: p.max_frame,
                })
            })
            .collect();
        let bridges = st
            .bridges
            .iter()
            .enumerate()
            .map(|(id, b)| {
                b.as_ref().map(|b| BridgeView {
                    id: id as u16,
                    fdb: b.fdb.table(),
                    members: st
                        .ports
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| p.as_ref().is_some_and(|p| p.bridge == id as u16))
                        .map(|(s, _)| s as u16)
                        .collect(),
                    router: st.router.view_for(id as u16),
                })
            })
            .collect();
        Snapshot { ports, bridges }
    }

    /// Every port, with counters.
    pub fn ports(&self) -> Vec<PortStatus> {
        let st = self.lock();
        st.ports
            .iter()
            .enumerate()
            .filter_map(|(slot, p)| p.as_ref().map(|p| (slot as u16, p)))
            .map(|(slot, p)| {
                let info = p.port.info();
                PortStatus {
                    name: p.cfg.name.clone(),
                    bridge: bridge_name(&st, p.bridge),
                    slot,
                    devargs: p.cfg.devargs.clone(),
                    driver: info.driver.to_string(),
                    mac: MacAddr(info.mac.0).to_string(),
                    link_up: p.port.link().up,
                    vlan: p.cfg.vlan(),
                    rxqs: p.rxqs.iter().map(|r| (r.queue, r.pmd)).collect(),
                    stats: self.port_totals(slot, &p.base),
                }
            })
            .collect()
    }

    /// The slots that hold a port, in order (the ethdev port ids the telemetry reports).
    pub fn port_slots(&self) -> Vec<u16> {
        let st = self.lock();
        st.ports
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_some())
            .map(|(slot, _)| slot as u16)
            .collect()
    }

    /// The ethdev view of the port in `slot` (driver counters, link, facts), or `None` when
    /// the slot is empty. Reads counters only.
    pub fn port_ethdev(&self, slot: u16) -> Option<PortEthdev> {
        let st = self.lock();
        let p = st.ports.get(slot as usize)?.as_ref()?;
        Some(PortEthdev {
            name: p.cfg.name.clone(),
            info: p.port.info(),
            link: p.port.link(),
            stats: p.port.stats(),
            xstats: p.port.xstats(),
        })
    }

    fn port_totals(&self, slot: u16, base: &PortTotals) -> PortTotals {
        PortTotals::sum(self.pmds.iter().map(|p| &*p.counters), slot, base)
    }

    /// Zeroes every port's counters.
    pub fn reset_stats(&self) {
        let mut st = self.lock();
        for (slot, p) in st.ports.iter_mut().enumerate() {
            if let Some(p) = p {
                p.base = PortTotals::sum(
                    self.pmds.iter().map(|p| &*p.counters),
                    slot as u16,
                    &PortTotals::default(),
                );
            }
        }
    }

    /// Every bridge.
    pub fn bridges(&self) -> Vec<BridgeStatus> {
        let st = self.lock();
        st.bridges
            .iter()
            .enumerate()
            .filter_map(|(id, b)| b.as_ref().map(|b| (id as u16, b)))
            .map(|(id, b)| {
                let mut stats = PortTotals::default();
                let mut ports = Vec::new();
                for (slot, p) in st.ports.iter().enumerate() {
                    let Some(p) = p.as_ref().filter(|p| p.bridge == id) else {
                        continue;
                    };
                    ports.push(p.cfg.name.clone());
                    let t = self.port_totals(slot as u16, &p.base);
                    stats.rx_packets += t.rx_packets;
                    stats.rx_bytes += t.rx_bytes;
                    stats.tx_packets += t.tx_packets;
                    stats.tx_bytes += t.tx_bytes;
                    stats.rx_flooded += t.rx_flooded;
                    for (k, v) in t.drops {
                        *stats.drops.entry(k).or_default() += v;
                    }
                }
                BridgeStatus {
                    name: b.name.clone(),
                    ports,
                    fdb_entries: b.fdb.len(),
                    fdb_limit: b.fdb.limit(),
                    aging_secs: b.aging,
                    counters: b.counters.clone(),
                    stats,
                }
            })
            .collect()
    }

    /// The FDB of a bridge.
    pub fn fdb(&self, bridge: &str) -> SwitchResult<Vec<FdbRow>> {
        let st = self.lock();
        let id = bridge_id(&st, bridge)?;
        let now = self.shared.now.load(Ordering::Relaxed);
        let b = st.bridges[id as usize].as_ref().expect("found");
        let mut rows: Vec<FdbRow> = b
            .fdb
            .entries()
            .into_iter()
            .map(|e| FdbRow {
                port: st
                    .ports
                    .get(e.port as usize)
                    .and_then(Option::as_ref)
                    .map_or_else(|| format!("#{}", e.port), |p| p.cfg.name.clone()),
                vlan: e.key.vlan(),
                mac: MacAddr(e.key.mac()).to_string(),
                age: now.saturating_sub(e.seen),
            })
            .collect();
        rows.sort_by(|a, b| (a.vlan, &a.mac).cmp(&(b.vlan, &b.mac)));
        Ok(rows)
    }

    /// Empties a bridge's FDB.
    pub fn fdb_flush(&self, bridge: &str) -> SwitchResult<usize> {
        let mut st = self.lock();
        let id = bridge_id(&st, bridge)?;
        let n = st.bridges[id as usize].as_mut().expect("found").fdb.flush();
        self.shared.bump();
        Ok(n)
    }

    /// The PMD threads' counters.
    pub fn pmd_stats(&self) -> Vec<PmdStatus> {
        let st = self.lock();
        self.pmds
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let o = &p.counters.own;
                let busy = o.busy_cycles.get();
                let total = busy + o.idle_cycles.get();
                let mut rxqs = Vec::new();
                for q in st.ports.iter().flatten() {
                    for r in q.rxqs.iter().filter(|r| r.pmd == i) {
                        let c = r.cycles.cycles.load(Ordering::Relaxed);
                        rxqs.push((
                            q.cfg.name.clone(),
                            r.queue,
                            if busy > 0 {
                                100.0 * c as f64 / busy as f64
                            } else {
                                0.0
                            },
                        ));
                    }
                }
                let packets = o.packets.get();
                PmdStatus {
                    id: i,
                    cpu: p.cpu,
                    rxqs,
                    iterations: o.iterations.get(),
                    packets,
                    busy_pct: if total > 0 {
                        100.0 * busy as f64 / total as f64
                    } else {
                        0.0
                    },
                    cycles_per_packet: if packets > 0 {
                        busy as f64 / packets as f64
                    } else {
                        0.0
                    },
                    emc_hits: o.emc_hits.get(),
                    emc_misses: o.emc_misses.get(),
                    learn_queue_full: o.learn_queue_full.get(),
                    mailbox_tx: o.mailbox_tx.get(),
                }
            })
            .collect()
    }

    /// The flow caches, per PMD thread.
    pub fn dump_flows(&self) -> Vec<(usize, Vec<FlowDump>)> {
        let mut out = Vec::new();
        let waits: Vec<_> = self
            .pmds
            .iter()
            .map(|p| {
                let (tx, rx) = mpsc::channel();
                p.control.send(PmdCommand::DumpFlows(tx));
                rx
            })
            .collect();
        for (i, w) in waits.into_iter().enumerate() {
            out.push((i, w.recv_timeout(PMD_REPLY_TIMEOUT).unwrap_or_default()));
        }
        out
    }

    /// Spreads the Rx queues over the PMD threads again, by measured cycles (busiest first,
    /// each to the least loaded thread). Returns the moves made as (port, queue, from, to).
    pub fn rebalance(&self) -> SwitchResult<Vec<(String, u16, usize, usize)>> {
        let mut st = self.lock();
        let mut all: Vec<(u16, usize, u64)> = Vec::new();
        for (slot, p) in st.ports.iter().enumerate() {
            if let Some(p) = p {
                for (i, r) in p.rxqs.iter().enumerate() {
                    all.push((slot as u16, i, r.cycles.cycles.load(Ordering::Relaxed)));
                }
            }
        }
        all.sort_by_key(|a| std::cmp::Reverse(a.2));
        let mut load = vec![0u64; self.pmds.len()];
        let mut moves = Vec::new();
        for (slot, i, c) in all {
            let to = (0..load.len()).min_by_key(|&k| load[k]).unwrap_or(0);
            load[to] += c.max(1);
            let p = st.ports[slot as usize].as_mut().expect("listed");
            let from = p.rxqs[i].pmd;
            if from == to {
                continue;
            }
            let queue = p.rxqs[i].queue;
            let (tx, rx) = mpsc::channel();
            self.pmds[from].control.send(PmdCommand::TakeRxq {
                slot,
                queue,
                reply: tx,
            });
            match rx.recv_timeout(PMD_REPLY_TIMEOUT) {
                Ok(Some(h)) => {
                    self.pmds[to].control.send(PmdCommand::AddRxq(h));
                    p.rxqs[i].pmd = to;
                    moves.push((p.cfg.name.clone(), queue, from, to));
                }
                _ => {
                    return Err(SwitchError::System(format!(
                        "PMD thread {from} did not give back {} queue {queue}",
                        p.cfg.name
                    )));
                }
            }
        }
        Ok(moves)
    }

    /// Sets how new Rx queues are placed.
    pub fn set_rxq_assign(&self, a: RxqAssign) {
        *self.rxq_assign.lock().unwrap() = a;
    }

    /// Waits until every PMD thread has applied every command sent so far.
    pub fn barrier(&self) {
        let waits: Vec<_> = self
            .pmds
            .iter()
            .map(|p| {
                let (tx, rx) = mpsc::channel();
                p.control.send(PmdCommand::Barrier(tx));
                rx
            })
            .collect();
        for w in waits {
            let _ = w.recv_timeout(PMD_REPLY_TIMEOUT);
        }
    }

    /// One pass of the control thread: learning requests, clock, aging, link changes.
    fn tick(&self, last_age: &mut u32) {
        let now = self.now();
        self.shared.now.store(now, Ordering::Relaxed);
        let mut st = self.lock();
        let mut changed = false;
        let mut neighbours_changed = false;
        for p in &self.pmds {
            while let Some(req) = p.learn.pop() {
                let (bridge, key, port) = match req {
                    LearnRequest::Mac { bridge, key, port } => (bridge, key, port),
                    LearnRequest::Neighbour { ip, mac } => {
                        neighbours_changed |= st.router.learn_neighbour(ip, mac);
                        continue;
                    }
                };
                let on_bridge = st
                    .ports
                    .get(port as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|p| p.bridge == bridge);
                let Some(b) = st.bridges.get_mut(bridge as usize).and_then(Option::as_mut) else {
                    continue;
                };
                if !on_bridge {
                    continue;
                }
                match b.fdb.learn(key, port, now) {
                    Learned::New => {
                        b.counters.learned += 1;
                        changed = true;
                    }
                    Learned::Moved { .. } => {
                        b.counters.moved += 1;
                        changed = true;
                    }
                    Learned::Refreshed => {}
                    Learned::Full => b.counters.fdb_full += 1,
                }
            }
        }
        if now != *last_age {
            *last_age = now;
            for b in st.bridges.iter_mut().flatten() {
                let n = b.fdb.age(now, b.aging);
                if n > 0 {
                    b.counters.aged += n as u64;
                    changed = true;
                }
            }
            for p in st.ports.iter_mut().flatten() {
                let up = p.port.link().up;
                if up != p.link_up {
                    p.link_up = up;
                    log::info!(
                        "port {}: link {}",
                        p.cfg.name,
                        if up { "up" } else { "down" }
                    );
                }
            }
        }
        if neighbours_changed {
            self.publish(&st);
        } else if changed {
            self.shared.bump();
        }
    }
}

impl Drop for Switch {
    /// Stops the threads and ports if [`Switch::shutdown`] was not called.
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn control_loop(sw: std::sync::Weak<Switch>) {
    let mut last_age = 0;
    loop {
        let Some(s) = sw.upgrade() else { return };
        if s.stop.load(Ordering::Acquire) {
            return;
        }
        s.tick(&mut last_age);
        drop(s);
        std::thread::sleep(LEARN_EVERY);
    }
}

fn find_bridge(st: &State, name: &str) -> Option<u16> {
    st.bridges
        .iter()
        .position(|b| b.as_ref().is_some_and(|b| b.name == name))
        .map(|i| i as u16)
}

fn bridge_id(st: &State, name: &str) -> SwitchResult<u16> {
    find_bridge(st, name).ok_or_else(|| SwitchError::NotFound {
        kind: "bridge",
        name: name.into(),
        hint: list_hint(
            st.bridges.iter().flatten().map(|b| b.name.as_str()),
            "add-br",
        ),
    })
}

fn bridge_name(st: &State, id: u16) -> String {
    st.bridges
        .get(id as usize)
        .and_then(Option::as_ref)
        .map_or_else(|| format!("#{id}"), |b| b.name.clone())
}

fn find_port(st: &State, name: &str) -> Option<u16> {
    st.ports
        .iter()
        .position(|p| p.as_ref().is_some_and(|p| p.cfg.name == name))
        .map(|i| i as u16)
}

fn port_slot(st: &State, name: &str) -> SwitchResult<u16> {
    find_port(st, name).ok_or_else(|| SwitchError::NotFound {
        kind: "port",
        name: name.into(),
        hint: list_hint(
            st.ports.iter().flatten().map(|p| p.cfg.name.as_str()),
            "add-port",
        ),
    })
}

fn list_hint<'a>(names: impl Iterator<Item = &'a str>, add: &str) -> String {
    let v: Vec<&str> = names.collect();
    if v.is_empty() {
        format!("there are none; create one with {add}")
    } else {
        format!("there are: {}", v.join(", "))
    }
}

/// Helpers for the router's control side.
impl Switch {
    fn apply_router_config(&self, cfg: &SwitchConfig) -> SwitchResult<()> {
        for r in &cfg.router_interface {
            self.add_router_interface(r)?;
        }
        for r in &cfg.route {
            self.add_route(&r.prefix, &r.via)?;
        }
        Ok(())
    }

    /// Adds a router interface.
    pub fn add_router_interface(
        &self,
        cfg: &crate::config::RouterInterfaceConfig,
    ) -> SwitchResult<()> {
        let mut st = self.lock();
        let bridge = bridge_id(&st, &cfg.bridge)?;
        st.router.add_interface(cfg, bridge)?;
        self.publish_routes(&mut st)
    }

    /// Deletes a router interface.
    pub fn del_router_interface(&self, name: &str) -> SwitchResult<()> {
        let mut st = self.lock();
        st.router.del_interface(name)?;
        self.publish_routes(&mut st)
    }

    /// Adds a static route.
    pub fn add_route(&self, prefix: &str, via: &str) -> SwitchResult<()> {
        let mut st = self.lock();
        st.router.add_route(prefix, via)?;
        self.publish_routes(&mut st)
    }

    /// Deletes a static route.
    pub fn del_route(&self, prefix: &str) -> SwitchResult<()> {
        let mut st = self.lock();
        st.router.del_route(prefix)?;
        self.publish_routes(&mut st)
    }

    /// Applies route changes: the route table, then a snapshot with the new next hops; once
    /// every PMD thread has it, memory the table released is reused.
    fn publish_routes(&self, st: &mut State) -> SwitchResult<()> {
        let r = st.router.sync_table();
        self.publish(st);
        self.barrier();
        st.router.reclaim();
        r
    }

    /// The routing table, interfaces and neighbours.
    pub fn routes(&self) -> serde_json::Value {
        let st = self.lock();
        st.router.show(&|id| bridge_name(&st, id))
    }
}

impl CaptureTarget for Switch {
    fn capture_point(&self, port: &PortRef) -> Result<Arc<PortTap>, String> {
        let st = self.lock();
        let found = match port {
            PortRef::Id(n) => st.ports.get(*n as usize).and_then(Option::as_ref),
            PortRef::Name(n) => st
                .ports
                .iter()
                .flatten()
                .find(|p| p.cfg.name == *n || p.port.info().name == *n),
        };
        let p = found.ok_or_else(|| {
            let names: Vec<&str> = st
                .ports
                .iter()
                .flatten()
                .map(|p| p.cfg.name.as_str())
                .collect();
            format!(
                "no port {} on the switch (ports: {}; ferrovia-ctl show ports lists them)",
                match port {
                    PortRef::Id(n) => n.to_string(),
                    PortRef::Name(n) => n.clone(),
                },
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )
        })?;
        p.port
            .capture_point()
            .ok_or_else(|| format!("port {} cannot be captured", p.cfg.name))
    }
}
