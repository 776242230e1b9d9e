//! Capture control for applications: start, stop and list captures
//! ([`ferrovia_ethdev::Captures`]) from the parameters users type, as JSON, and the
//! `/ferrovia/capture/*` telemetry commands that `ferrovia-pdump` speaks.

use std::sync::Arc;

use ferrovia_ethdev::capture::params::{PortRef, parse_pdump};
use ferrovia_ethdev::{CaptureSpec, CaptureStatus, Captures, PortTap};
use serde_json::{Value, json};

use crate::TelemetryError;
use crate::commands::{Commands, Data};
use crate::metrics::{MetricFamily, MetricKind};

/// Where an application's ports' capture points are found.
pub trait CaptureTarget: Send + Sync {
    /// The capture points of the port `port` names, or a message saying why there are none
    /// (naming the ports there are).
    fn capture_point(&self, port: &PortRef) -> Result<Arc<PortTap>, String>;
}

/// An application's captures. The ports they may target are given to each call (a
/// [`CaptureTarget`]), so an application can keep this inside the object that owns its ports.
#[derive(Default)]
pub struct CaptureControl {
    caps: Captures,
}

impl std::fmt::Debug for CaptureControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.caps, f)
    }
}

/// A capture's status as JSON: `id`, `port`, `name`, `queue` (a number or `"*"`), `dir`,
/// `snaplen`, `file`, `state`, `captured`, `drops`, `written`, `bytes`.
pub fn status_json(s: &CaptureStatus) -> Value {
    json!({
        "id": s.id,
        "port": s.port,
        "name": s.port_name,
        "queue": s.spec.queue.map_or(json!("*"), |q| json!(q)),
        "dir": s.spec.dir_name(),
        "snaplen": s.spec.snaplen,
        "file": s.spec.path.display().to_string(),
        "state": s.state,
        "captured": s.captured,
        "drops": s.drops,
        "written": s.written,
        "bytes": s.bytes,
    })
}

impl CaptureControl {
    /// No capture running.
    pub fn new() -> CaptureControl {
        CaptureControl::default()
    }

    /// Starts one capture on the port of `target` that `port` names.
    pub fn start_spec(
        &self,
        target: &dyn CaptureTarget,
        port: &PortRef,
        spec: CaptureSpec,
    ) -> Result<CaptureStatus, String> {
        let tap = target.capture_point(port)?;
        self.caps.start(&tap, spec).map_err(|e| e.to_string())
    }

    /// Starts the captures of one dpdk-pdump style parameter string
    /// (`port=0,queue=*,rx-dev=...,tx-dev=...`): all of them, or none.
    pub fn start(
        &self,
        target: &dyn CaptureTarget,
        params: &str,
    ) -> Result<Vec<CaptureStatus>, String> {
        let req = parse_pdump(params).map_err(|e| e.to_string())?;
        let mut started = Vec::new();
        for spec in req.captures {
            match self.start_spec(target, &req.port, spec) {
                Ok(s) => started.push(s),
                Err(e) => {
                    for s in &started {
                        let _ = self.caps.stop(s.id);
                    }
                    return Err(e);
                }
            }
        }
        Ok(started)
    }

    /// Stops the captures on port `port` (an application calls this before it closes the
    /// port, so the files are complete).
    pub fn stop_port(&self, port: u16) -> Vec<CaptureStatus> {
        self.caps.stop_port(port)
    }

    /// Stops capture `id`, or all of them (`None`); returns their final counters.
    pub fn stop(&self, id: Option<u32>) -> Result<Vec<CaptureStatus>, String> {
        match id {
            Some(i) => self
                .caps
                .stop(i)
                .map(|s| vec![s])
                .map_err(|e| e.to_string()),
            None => Ok(self.caps.stop_all()),
        }
    }

    /// The running captures.
    pub fn list(&self) -> Vec<CaptureStatus> {
        self.caps.list()
    }

    /// Registers `/ferrovia/capture/start,<params>`, `/ferrovia/capture/stop[,<id>]` and
    /// `/ferrovia/capture/list`, on the ports of `target`. Replies are `{"captures": [...]}`
    /// or `{"error": "..."}`.
    pub fn register(
        self: &Arc<Self>,
        cmds: &mut Commands,
        target: Arc<dyn CaptureTarget>,
    ) -> Result<(), TelemetryError> {
        let reply = |r: Result<Vec<CaptureStatus>, String>| {
            Some(Data::Json(match r {
                Ok(v) => json!({ "captures": v.iter().map(status_json).collect::<Vec<_>>() }),
                Err(e) => json!({ "error": e }),
            }))
        };
        let c = self.clone();
        cmds.register(
            "/ferrovia/capture/start",
            "Starts a capture. Params: port=N|device_id=NAME,queue=N|*,rx-dev=F,tx-dev=F|dev=F,dir=rx|tx|both,snaplen=N",
            move |p| reply(c.start(&*target, p.unwrap_or(""))),
        )?;
        let c = self.clone();
        cmds.register(
            "/ferrovia/capture/stop",
            "Stops a capture and returns its final counters. Params: capture id (none: all)",
            move |p| {
                let id = match p.map(str::trim) {
                    None | Some("all") => None,
                    Some(s) => match s.parse::<u32>() {
                        Ok(i) => Some(i),
                        Err(_) => {
                            return reply(Err(format!(
                                "bad capture id '{s}': give the id that list shows, or none for all"
                            )));
                        }
                    },
                };
                reply(c.stop(id))
            },
        )?;
        let c = self.clone();
        cmds.register(
            "/ferrovia/capture/list",
            "Lists running captures with their counters (captured, drops, written). No params",
            move |_| reply(Ok(c.list())),
        )?;
        Ok(())
    }
}

impl Drop for CaptureControl {
    fn drop(&mut self) {
        self.caps.stop_all();
    }
}

/// The captures' counters as Prometheus families: `ferrovia_capture_packets_total`
/// (copied into the capture rings), `ferrovia_capture_drops_total` (found a ring full),
/// `ferrovia_capture_written_total` (written to the file), labels `id`, `port`, `name`, `dir`.
pub fn capture_families(c: &CaptureControl) -> Vec<MetricFamily> {
    let list = c.list();
    let mut fams = [
        (
            "ferrovia_capture_packets_total",
            "Packets copied into a capture's rings",
        ),
        (
            "ferrovia_capture_drops_total",
            "Packets a capture dropped because its ring was full",
        ),
        (
            "ferrovia_capture_written_total",
            "Packets a capture wrote to its file",
        ),
    ]
    .map(|(n, h)| MetricFamily::new(n, h, MetricKind::Counter));
    for s in &list {
        let (id, port) = (s.id.to_string(), s.port.to_string());
        let labels = [
            ("id", id.as_str()),
            ("port", port.as_str()),
            ("name", s.port_name.as_str()),
            ("dir", s.spec.dir_name()),
        ];
        fams[0].push(&labels, s.captured as f64);
        fams[1].push(&labels, s.drops as f64);
        fams[2].push(&labels, s.written as f64);
    }
    fams.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct OnePort(Arc<PortTap>);

    impl CaptureTarget for OnePort {
        fn capture_point(&self, port: &PortRef) -> Result<Arc<PortTap>, String> {
            match port {
                PortRef::Id(0) => Ok(self.0.clone()),
                p => Err(format!("no {p}")),
            }
        }
    }

    #[test]
    fn telemetry_commands_and_metrics() {
        let tap = Arc::new(PortTap::new(0, "net_test0", 1518, 2, 2));
        let target = Arc::new(OnePort(tap.clone()));
        let cc = Arc::new(CaptureControl::new());
        let mut cmds = Commands::new("test");
        cc.register(&mut cmds, target).unwrap();
        let dir = std::env::temp_dir().join(format!("ferrovia-tcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("t.pcapng");
        let ask = |req: &str| -> Value {
            let r: Value = serde_json::from_str(&cmds.handle(req)).unwrap();
            r[req.split(',').next().unwrap()].clone()
        };
        let v = ask(&format!(
            "/ferrovia/capture/start,port=0,queue=1,dev={},dir=tx,snaplen=96",
            f.display()
        ));
        let c = &v["captures"][0];
        assert_eq!(
            (
                c["id"].as_u64(),
                c["queue"].as_u64(),
                c["dir"].as_str(),
                c["snaplen"].as_u64()
            ),
            (Some(1), Some(1), Some("tx"), Some(96)),
            "{v}"
        );
        assert!(tap.tx(1).unwrap().armed() && !tap.tx(0).unwrap().armed());
        let fams = capture_families(&cc);
        let text = crate::metrics::render(&fams);
        assert!(
            text.contains(
                r#"ferrovia_capture_drops_total{id="1",port="0",name="net_test0",dir="tx"} 0"#
            ),
            "{text}"
        );
        for (req, want) in [
            ("/ferrovia/capture/start,port=3,dev=/tmp/x", "no port 3"),
            (
                "/ferrovia/capture/start,port=0,dev=/tmp/x,snaplen=0",
                "bad snaplen 0",
            ),
            ("/ferrovia/capture/start", "no port given"),
            ("/ferrovia/capture/stop,abc", "bad capture id 'abc'"),
            ("/ferrovia/capture/stop,7", "no capture 7 is running"),
        ] {
            let v = ask(req);
            assert!(
                v["error"].as_str().unwrap_or("").contains(want),
                "{req}: {v}"
            );
        }
        assert_eq!(
            ask("/ferrovia/capture/list")["captures"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let v = ask("/ferrovia/capture/stop,1");
        assert_eq!(v["captures"][0]["state"], "stopped", "{v}");
        assert!(!tap.tx(1).unwrap().armed());
        assert!(
            ask("/ferrovia/capture/list")["captures"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
