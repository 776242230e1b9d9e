//! testpmd's telemetry: the DPDK telemetry v2 socket (on by default, `--no-telemetry`,
//! `--file-prefix`) and the Prometheus endpoint (`--metrics ADDR:PORT`).
//!
//! Ports are shared with the telemetry threads through [`SharedPort`]: a lock around the
//! port's control side only. Forwarding threads own their queue handles and never take it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ferrovia_ethdev::capture::params::PortRef;
use ferrovia_ethdev::{Link, Port, PortInfo, PortStats, PortTap, RxQueue, TxQueue};
use ferrovia_telemetry::{
    CaptureControl, CaptureTarget, Commands, MetricsServer, PortSnapshot, PortSource,
    TelemetryConfig, TelemetryServer, port_families, version_string,
};

/// A port whose control side the main thread and the telemetry threads share.
#[derive(Clone)]
pub struct SharedPort {
    port: Arc<Mutex<Box<dyn Port>>>,
    started: Arc<AtomicBool>,
}

impl SharedPort {
    /// Wraps an opened port.
    pub fn new(port: Box<dyn Port>) -> SharedPort {
        SharedPort {
            port: Arc::new(Mutex::new(port)),
            started: Arc::default(),
        }
    }
    fn lock(&self) -> MutexGuard<'_, Box<dyn Port>> {
        self.port.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// [`Port::info`].
    pub fn info(&self) -> PortInfo {
        self.lock().info()
    }
    /// [`Port::start`].
    pub fn start(&self) -> ferrovia_ethdev::Result<()> {
        self.lock().start()?;
        self.started.store(true, Ordering::Relaxed);
        Ok(())
    }
    /// [`Port::stop`].
    pub fn stop(&self) -> ferrovia_ethdev::Result<()> {
        self.lock().stop()?;
        self.started.store(false, Ordering::Relaxed);
        Ok(())
    }
    /// [`Port::set_link_up`] or [`Port::set_link_down`].
    pub fn set_link(&self, up: bool) -> ferrovia_ethdev::Result<()> {
        let mut p = self.lock();
        if up {
            p.set_link_up()
        } else {
            p.set_link_down()
        }
    }
    /// Runs a control call on the port (`set promisc`, `mac_addr set`, `rx_vlan add` on a
    /// port: [`Port::set_promisc`], [`Port::set_mac`], [`Port::vlan_filter`], ...).
    pub fn with_port<T>(&self, f: impl FnOnce(&mut dyn Port) -> T) -> T {
        f(&mut **self.lock())
    }
    /// [`Port::vf_control`].
    pub fn vf_control(&self) -> Option<Arc<dyn ferrovia_ethdev::VfControl>> {
        self.lock().vf_control()
    }
    /// [`Port::link`].
    pub fn link(&self) -> Link {
        self.lock().link()
    }
    /// [`Port::stats`].
    pub fn stats(&self) -> PortStats {
        self.lock().stats()
    }
    /// [`Port::xstats`].
    pub fn xstats(&self) -> Vec<(String, u64)> {
        self.lock().xstats()
    }
    /// [`Port::reset_stats`].
    pub fn reset_stats(&self) {
        self.lock().reset_stats()
    }
    /// [`Port::rx_queue`].
    pub fn rx_queue(&self, q: u16) -> ferrovia_ethdev::Result<Box<dyn RxQueue>> {
        self.lock().rx_queue(q)
    }
    /// [`Port::tx_queue`].
    pub fn tx_queue(&self, q: u16) -> ferrovia_ethdev::Result<Box<dyn TxQueue>> {
        self.lock().tx_queue(q)
    }
    /// Closes the port and opens it again with `open` (testpmd applies a changed offload
    /// configuration this way). The old port is dropped first (its socket is free again);
    /// if `open` fails, the slot holds a closed port whose every operation fails, and the
    /// error is returned.
    pub fn reopen(
        &self,
        open: impl FnOnce() -> ferrovia_ethdev::Result<Box<dyn Port>>,
    ) -> ferrovia_ethdev::Result<()> {
        let mut g = self.lock();
        let info = g.info();
        drop(std::mem::replace(&mut *g, Box::new(Closed(info))));
        self.started.store(false, Ordering::Relaxed);
        *g = open()?;
        Ok(())
    }
    /// [`Port::capture_point`].
    pub fn capture_point(&self) -> Option<Arc<PortTap>> {
        self.lock().capture_point()
    }
    fn snapshot(&self) -> PortSnapshot {
        let p = self.lock();
        let stats = p.stats();
        PortSnapshot {
            info: p.info(),
            link: p.link(),
            xstats: p.xstats(),
            stats,
            started: self.started.load(Ordering::Relaxed),
        }
    }
}

/// What a port slot holds while its port is being opened again, or after that failed.
struct Closed(PortInfo);

impl Closed {
    fn err(&self) -> ferrovia_ethdev::Error {
        ferrovia_ethdev::Error::State(format!(
            "{}: the port is closed (reopening it failed); fix its configuration and run 'port start' again",
            self.0.name
        ))
    }
}

impl Port for Closed {
    fn info(&self) -> PortInfo {
        self.0.clone()
    }
    fn start(&mut self) -> ferrovia_ethdev::Result<()> {
        Err(self.err())
    }
    fn stop(&mut self) -> ferrovia_ethdev::Result<()> {
        Ok(())
    }
    fn link(&self) -> Link {
        Link {
            up: false,
            speed_mbps: 0,
            full_duplex: true,
        }
    }
    fn stats(&self) -> PortStats {
        PortStats::default()
    }
    fn reset_stats(&self) {}
    fn rx_queue(&mut self, _q: u16) -> ferrovia_ethdev::Result<Box<dyn RxQueue>> {
        Err(self.err())
    }
    fn tx_queue(&mut self, _q: u16) -> ferrovia_ethdev::Result<Box<dyn TxQueue>> {
        Err(self.err())
    }
}

/// testpmd's ports as the telemetry sees them: empty until [`Ports::set`], and again after
/// [`Ports::clear`] (the ports are closing).
#[derive(Default)]
pub struct Ports(Mutex<Vec<SharedPort>>);

impl Ports {
    /// Publishes the opened ports (port id = index).
    pub fn set(&self, ports: Vec<SharedPort>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = ports;
    }
    /// Forgets the ports, so that closing them is not delayed by telemetry.
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
    fn get(&self, id: u16) -> Option<SharedPort> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id as usize)
            .cloned()
    }
}

impl PortSource for Ports {
    fn port_ids(&self) -> Vec<u16> {
        let n = self.0.lock().unwrap_or_else(|p| p.into_inner()).len();
        (0..n as u16).collect()
    }
    fn port(&self, id: u16) -> Option<PortSnapshot> {
        Some(self.get(id)?.snapshot())
    }
}

impl CaptureTarget for Ports {
    fn capture_point(&self, port: &PortRef) -> Result<Arc<PortTap>, String> {
        let ports = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let found = match port {
            PortRef::Id(i) => ports.get(*i as usize).cloned().ok_or_else(|| {
                format!(
                    "no port {i}: there are {} ports (0..{})",
                    ports.len(),
                    ports.len().saturating_sub(1)
                )
            })?,
            PortRef::Name(n) => {
                let names: Vec<String> = ports.iter().map(|p| p.info().name).collect();
                let i = names
                    .iter()
                    .position(|x| x == n)
                    .ok_or_else(|| format!("no port named {n} (ports: {})", names.join(", ")))?;
                ports[i].clone()
            }
        };
        found.capture_point().ok_or_else(|| {
            format!("{port} cannot be captured (it was not opened through the driver registry)")
        })
    }
}

/// The running servers; dropping it stops them and removes the socket.
#[derive(Default)]
pub struct Telemetry {
    /// The telemetry v2 socket, unless `--no-telemetry` or it could not be created.
    pub socket: Option<TelemetryServer>,
    /// The metrics endpoint, with `--metrics`.
    pub metrics: Option<MetricsServer>,
}

/// Starts the telemetry socket (unless `no_telemetry`) and the metrics endpoint (when
/// `metrics` is given). A telemetry socket that cannot be created is a warning (testpmd runs
/// on); a metrics address that cannot be bound is an error.
pub fn start(
    file_prefix: &str,
    no_telemetry: bool,
    metrics: Option<&str>,
    ports: Arc<Ports>,
    capture: &Arc<CaptureControl>,
) -> Result<Telemetry, String> {
    let mut t = Telemetry::default();
    if !no_telemetry {
        let mut commands = Commands::with_ethdev(
            version_string(env!("CARGO_PKG_VERSION")),
            ports.clone() as Arc<dyn PortSource>,
        );
        capture
            .register(&mut commands, ports.clone() as Arc<dyn CaptureTarget>)
            .map_err(|e| e.to_string())?;
        match TelemetryServer::start(&TelemetryConfig::new(file_prefix), Arc::new(commands)) {
            Ok(s) => t.socket = Some(s),
            Err(e) => println!("Warning: telemetry disabled: {e}"),
        }
    }
    if let Some(addr) = metrics {
        let p = ports.clone();
        let c = capture.clone();
        let m = MetricsServer::start(
            addr,
            Arc::new(move || {
                let mut f = port_families(&*p);
                f.extend(ferrovia_telemetry::capture_families(&c));
                f
            }),
        )
        .map_err(|e| e.to_string())?;
        println!("Prometheus metrics on http://{}/metrics", m.local_addr());
        t.metrics = Some(m);
    }
    Ok(t)
}
