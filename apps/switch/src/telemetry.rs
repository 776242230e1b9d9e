//! The switch's telemetry: DPDK telemetry v2 (its ports as ethdev ids in slot order, plus
//! `/ferrovia/switch/...`) and the Prometheus endpoint, both from `[telemetry]`.

use std::sync::Arc;

use ferrovia_telemetry::{
    Commands, Data, MetricFamily, MetricKind, MetricsServer, PortSnapshot, PortSource,
    TelemetryConfig, TelemetryServer, port_families, version_string,
};
use ferrovia_vswitch::Switch;
use ferrovia_vswitch::config::TelemetrySettings;

struct Ports(Arc<Switch>);

impl PortSource for Ports {
    fn port_ids(&self) -> Vec<u16> {
        self.0.port_slots()
    }
    fn port(&self, id: u16) -> Option<PortSnapshot> {
        let p = self.0.port_ethdev(id)?;
        Some(PortSnapshot {
            info: p.info,
            link: p.link,
            stats: p.stats,
            xstats: p.xstats,
            started: true,
        })
    }
}

/// The running servers; dropping them stops them (and removes the socket).
pub struct Telemetry {
    /// The telemetry v2 socket.
    pub socket: Option<TelemetryServer>,
    /// The metrics endpoint.
    pub metrics: Option<MetricsServer>,
}

/// The telemetry commands: DPDK's, the ethdev ones, and the switch's, which answer what the
/// control socket's `show-ports`, `show-pmd-stats` and `show-bridges` answer.
pub fn commands(sw: &Arc<Switch>) -> Commands {
    let mut c = Commands::with_ethdev(
        version_string(env!("CARGO_PKG_VERSION")),
        Arc::new(Ports(sw.clone())),
    );
    for (cmd, method, help) in [
        (
            "/ferrovia/switch/ports",
            "show-ports",
            "Returns the switch's ports with their counters (ferrovia-ctl show-ports). Takes no parameters",
        ),
        (
            "/ferrovia/switch/pmd_stats",
            "show-pmd-stats",
            "Returns the PMD threads' counters (ferrovia-ctl show-pmd-stats). Takes no parameters",
        ),
        (
            "/ferrovia/switch/bridges",
            "show-bridges",
            "Returns the bridges (ferrovia-ctl show-bridges). Takes no parameters",
        ),
    ] {
        let sw = sw.clone();
        c.register(cmd, help, move |_| {
            ferrovia_vswitch::rpc::call(&sw, method, serde_json::Value::Null)
                .ok()
                .map(Data::Json)
        })
        .expect("valid command names");
    }
    sw.captures()
        .register(
            &mut c,
            sw.clone() as Arc<dyn ferrovia_telemetry::CaptureTarget>,
        )
        .expect("valid command names");
    c
}

/// The metric families: the ports' driver counters (`ferrovia_port_*`) and the switch's own
/// (`ferrovia_switch_*`).
pub fn families(sw: &Arc<Switch>) -> Vec<MetricFamily> {
    use MetricKind::Counter;
    let mut f = port_families(&Ports(sw.clone()));
    let mut rx = MetricFamily::new(
        "ferrovia_switch_port_rx_packets_total",
        "Frames the switch received on the port.",
        Counter,
    );
    let mut tx = MetricFamily::new(
        "ferrovia_switch_port_tx_packets_total",
        "Frames the switch sent on the port.",
        Counter,
    );
    let mut rxb = MetricFamily::new(
        "ferrovia_switch_port_rx_bytes_total",
        "Bytes the switch received on the port.",
        Counter,
    );
    let mut txb = MetricFamily::new(
        "ferrovia_switch_port_tx_bytes_total",
        "Bytes the switch sent on the port.",
        Counter,
    );
    let mut flood = MetricFamily::new(
        "ferrovia_switch_port_rx_flooded_total",
        "Frames received on the port that were flooded.",
        Counter,
    );
    let mut drops = MetricFamily::new(
        "ferrovia_switch_port_drops_total",
        "Frames dropped, by cause (only causes that occurred).",
        Counter,
    );
    for p in sw.ports() {
        let slot = p.slot.to_string();
        let l = [
            ("port", slot.as_str()),
            ("name", p.name.as_str()),
            ("bridge", p.bridge.as_str()),
        ];
        rx.push(&l, p.stats.rx_packets as f64);
        tx.push(&l, p.stats.tx_packets as f64);
        rxb.push(&l, p.stats.rx_bytes as f64);
        txb.push(&l, p.stats.tx_bytes as f64);
        flood.push(&l, p.stats.rx_flooded as f64);
        for (cause, n) in &p.stats.drops {
            drops.push(&[l[0], l[1], l[2], ("cause", cause.as_str())], *n as f64);
        }
    }
    let mut pkts = MetricFamily::new(
        "ferrovia_switch_pmd_packets_total",
        "Frames a PMD thread received.",
        Counter,
    );
    let mut hits = MetricFamily::new(
        "ferrovia_switch_pmd_emc_hits_total",
        "Flow-cache hits of a PMD thread.",
        Counter,
    );
    let mut misses = MetricFamily::new(
        "ferrovia_switch_pmd_emc_misses_total",
        "Flow-cache misses of a PMD thread.",
        Counter,
    );
    let mut busy = MetricFamily::new(
        "ferrovia_switch_pmd_busy_percent",
        "Share of a PMD thread's cycles spent moving frames.",
        MetricKind::Gauge,
    );
    for p in sw.pmd_stats() {
        let id = p.id.to_string();
        let l = [("pmd", id.as_str())];
        pkts.push(&l, p.packets as f64);
        hits.push(&l, p.emc_hits as f64);
        misses.push(&l, p.emc_misses as f64);
        busy.push(&l, p.busy_pct);
    }
    f.extend([rx, tx, rxb, txb, flood, drops, pkts, hits, misses, busy]);
    f.extend(ferrovia_telemetry::capture_families(sw.captures()));
    f
}

/// Starts what `[telemetry]` asks for. The socket failing is a warning (the switch runs on);
/// a metrics address that cannot be bound is an error.
pub fn start(sw: &Arc<Switch>, t: &TelemetrySettings) -> Result<Telemetry, String> {
    let mut out = Telemetry {
        socket: None,
        metrics: None,
    };
    if t.enabled {
        let mut cfg = TelemetryConfig::new(&t.file_prefix);
        cfg.in_use_hint = "set another file_prefix in [telemetry], or enabled = false".into();
        match TelemetryServer::start(&cfg, Arc::new(commands(sw))) {
            Ok(s) => {
                log::info!(
                    "telemetry on {} (dpdk-telemetry.py -f {})",
                    s.path().display(),
                    t.file_prefix
                );
                out.socket = Some(s);
            }
            Err(e) => log::warn!("telemetry disabled: {e}"),
        }
    }
    if let Some(addr) = &t.metrics {
        let sw = sw.clone();
        let m = MetricsServer::start(addr, Arc::new(move || families(&sw)))
            .map_err(|e| format!("[telemetry] metrics: {e}"))?;
        log::info!("metrics on http://{}/metrics", m.local_addr());
        out.metrics = Some(m);
    }
    Ok(out)
}
