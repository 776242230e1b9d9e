//! The daemon's DPDK telemetry v2 commands: the uplink (ethdev 0) and the VFs (ethdev
//! `1 + vfid`) as ethdev ports, each VF's eswitch counters in its xstats (`vf_*`, drops by
//! cause), and `/ferrovia/eswitch/vf,<vfid>` and `/ferrovia/eswitch/status` (what
//! `iplex show <vfid>` and `iplex status` answer).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ferrovia_eswitch::veb::CAUSE_NAMES;
use ferrovia_telemetry::commands::parse_port_id;
use ferrovia_telemetry::{Commands, Data, PortSnapshot, PortSource, version_string};

use crate::Vfd;

struct Ports(Arc<Vfd>);

/// The eswitch's counters of ethdev port `id`, named for xstats.
fn eswitch_xstats(vfd: &Vfd, id: u16) -> Vec<(String, u64)> {
    let sw = vfd.eswitch();
    if id == 0 {
        let (tx, rx, dropped) = sw.uplink_counts();
        return vec![
            ("eswitch_uplink_tx_packets".into(), tx),
            ("eswitch_uplink_rx_packets".into(), rx),
            ("eswitch_uplink_dropped_queue_full".into(), dropped),
        ];
    }
    let Some(c) = sw.counters(u32::from(id) - 1) else {
        return Vec::new();
    };
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut x = vec![
        ("vf_tx_packets".to_string(), load(&c.tx_packets)),
        ("vf_tx_bytes".to_string(), load(&c.tx_bytes)),
        ("vf_rx_packets".to_string(), load(&c.rx_packets)),
        ("vf_rx_bytes".to_string(), load(&c.rx_bytes)),
        ("vf_requests".to_string(), load(&c.requests)),
        ("vf_requests_allowed".to_string(), load(&c.req_allowed)),
        ("vf_requests_denied".to_string(), load(&c.req_denied)),
        (
            "vf_requests_rate_limited".to_string(),
            load(&c.req_rate_limited),
        ),
        ("vf_requests_malformed".to_string(), load(&c.req_malformed)),
    ];
    for (dir, counters) in [("tx", &c.tx_dropped), ("rx", &c.rx_dropped)] {
        for (name, a) in CAUSE_NAMES.iter().zip(counters.iter()) {
            x.push((format!("vf_{dir}_dropped_{name}"), load(a)));
        }
    }
    x
}

impl PortSource for Ports {
    fn port_ids(&self) -> Vec<u16> {
        (0..=self.0.eswitch().num_vfs() as u16).collect()
    }

    fn port(&self, id: u16) -> Option<PortSnapshot> {
        let r = self.0.eswitch().port_report(usize::from(id))?;
        let mut xstats = r.xstats;
        xstats.extend(eswitch_xstats(&self.0, id));
        Some(PortSnapshot {
            info: r.info,
            link: r.link,
            stats: r.stats,
            xstats,
            started: true,
        })
    }
}

/// DPDK's built-in and ethdev commands over the eswitch's ports, plus `/ferrovia/eswitch/vf`
/// and `/ferrovia/eswitch/status`.
pub fn commands(vfd: &Arc<Vfd>) -> Commands {
    let mut c = Commands::with_ethdev(
        version_string(env!("CARGO_PKG_VERSION")),
        Arc::new(Ports(vfd.clone())),
    );
    let v = vfd.clone();
    c.register(
        "/ferrovia/eswitch/vf",
        "Returns a VF's policy and counters (iplex show <vfid>). Parameters: int vfid",
        move |p| {
            let id = parse_port_id(p?)?;
            v.vf_json(u32::from(id)).map(Data::Json)
        },
    )
    .expect("a valid command name");
    let v = vfd.clone();
    c.register(
        "/ferrovia/eswitch/status",
        "Returns the daemon's uplink and configured VFs (iplex status). Takes no parameters",
        move |_| Some(Data::Json(v.status())),
    )
    .expect("a valid command name");
    c
}
