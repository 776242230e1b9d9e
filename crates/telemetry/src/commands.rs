//! The command table: DPDK's built-in and ethdev commands, and the ones an application adds.
//!
//! A request is `"<cmd>"` or `"<cmd>,<params>"`; the reply is one JSON object
//! `{"<cmd>": <data>}`, with `null` as the data for an unknown command or bad parameters (as
//! DPDK 22.11 answers).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::Value;

use crate::{PortSource, TelemetryError};

/// Longest command name plus one (DPDK's `MAX_CMD_LEN`).
pub const MAX_CMD_LEN: usize = 56;
/// Longest help text plus one (DPDK's `MAX_HELP_LEN`).
pub const MAX_HELP_LEN: usize = 128;
/// Longest reply, in bytes (DPDK's `MAX_OUTPUT_LEN`), announced in the greeting.
pub const MAX_OUTPUT_LEN: usize = 16 * 1024;
/// Queue counters DPDK reports per port (`RTE_ETHDEV_QUEUE_STAT_CNTRS`).
pub const QUEUE_STAT_CNTRS: usize = 16;

/// A command's answer: JSON, with dictionaries kept in the order they were built (DPDK's
/// order for the ethdev commands).
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// A number.
    U64(u64),
    /// A string.
    Str(String),
    /// A list.
    List(Vec<Data>),
    /// A dictionary, in order.
    Dict(Vec<(String, Data)>),
    /// Any JSON value (what application commands usually return).
    Json(Value),
}

impl Data {
    fn write(&self, out: &mut String) {
        match self {
            Data::U64(n) => {
                let _ = write!(out, "{n}");
            }
            Data::Str(s) => out.push_str(&Value::from(s.as_str()).to_string()),
            Data::List(v) => {
                out.push('[');
                for (i, d) in v.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    d.write(out);
                }
                out.push(']');
            }
            Data::Dict(v) => {
                out.push('{');
                for (i, (k, d)) in v.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&Value::from(k.as_str()).to_string());
                    out.push_str(": ");
                    d.write(out);
                }
                out.push('}');
            }
            Data::Json(v) => out.push_str(&v.to_string()),
        }
    }

    /// Drops the last entry of a list or dictionary; false when there is nothing to drop.
    fn shrink(&mut self) -> bool {
        match self {
            Data::List(v) => v.pop().is_some(),
            Data::Dict(v) => v.pop().is_some(),
            Data::Json(Value::Array(v)) => v.pop().is_some(),
            _ => false,
        }
    }
}

/// A command handler: gets the parameters (the text after the first `,`, `None` when there is
/// none or it is empty) and returns the data, or `None` for bad parameters (the reply's data is
/// then `null`, as DPDK answers).
pub type Handler = Arc<dyn Fn(Option<&str>) -> Option<Data> + Send + Sync>;

#[derive(Clone)]
enum Kind {
    List,
    Info,
    Help,
    User(Handler),
}

#[derive(Clone)]
struct Entry {
    help: String,
    kind: Kind,
}

/// The commands a [`TelemetryServer`](crate::TelemetryServer) answers.
#[derive(Clone)]
pub struct Commands {
    version: String,
    table: BTreeMap<String, Entry>,
}

impl std::fmt::Debug for Commands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commands")
            .field("version", &self.version)
            .field("commands", &self.table.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The version string of the greeting and `/info`.
pub fn version_string(app_version: &str) -> String {
    format!("DPDK 22.11.x-compatible ferrovia {app_version}")
}

impl Commands {
    /// DPDK's built-in commands (`/`, `/info`, `/help`); `version` is the greeting's
    /// version string (see [`version_string`]).
    pub fn new(version: impl Into<String>) -> Commands {
        let mut c = Commands {
            version: version.into(),
            table: BTreeMap::new(),
        };
        let builtin = [
            (
                "/",
                "Returns list of available commands, Takes no parameters",
                Kind::List,
            ),
            (
                "/info",
                "Returns DPDK Telemetry information. Takes no parameters",
                Kind::Info,
            ),
            (
                "/help",
                "Returns help text for a command. Parameters: string command",
                Kind::Help,
            ),
        ];
        for (cmd, help, kind) in builtin {
            c.table.insert(
                cmd.into(),
                Entry {
                    help: help.into(),
                    kind,
                },
            );
        }
        c
    }

    /// The built-in commands plus DPDK's ethdev commands, answered from `ports`.
    pub fn with_ethdev(version: impl Into<String>, ports: Arc<dyn PortSource>) -> Commands {
        let mut c = Commands::new(version);
        c.add_ethdev(ports);
        c
    }

    /// The version string.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The greeting a client gets on connecting, and `/info`'s data.
    pub fn greeting(&self) -> String {
        format!(
            "{{\"version\": {}, \"pid\": {}, \"max_output_len\": {}}}",
            Value::from(self.version.as_str()),
            std::process::id(),
            MAX_OUTPUT_LEN
        )
    }

    /// Adds `/ethdev/list`, `/ethdev/stats`, `/ethdev/xstats`, `/ethdev/info` and
    /// `/ethdev/link_status`, answered from `ports`.
    pub fn add_ethdev(&mut self, ports: Arc<dyn PortSource>) {
        let p = ports.clone();
        self.insert(
            "/ethdev/list",
            "Returns list of available ethdev ports. Takes no parameters",
            Arc::new(move |_| {
                Some(Data::List(
                    p.port_ids()
                        .into_iter()
                        .map(|i| Data::U64(i as u64))
                        .collect(),
                ))
            }),
        );
        type PortFn = fn(u16, &crate::PortSnapshot) -> Data;
        let per_port: [(&str, &str, PortFn); 4] = [
            (
                "/ethdev/stats",
                "Returns the common stats for a port. Parameters: int port_id",
                ethdev_stats,
            ),
            (
                "/ethdev/xstats",
                "Returns the extended stats for a port. Parameters: int port_id",
                ethdev_xstats,
            ),
            (
                "/ethdev/info",
                "Returns the device info for a port. Parameters: int port_id",
                ethdev_info,
            ),
            (
                "/ethdev/link_status",
                "Returns the link status for a port. Parameters: int port_id",
                ethdev_link_status,
            ),
        ];
        for (cmd, help, f) in per_port {
            let p = ports.clone();
            self.insert(
                cmd,
                help,
                Arc::new(move |params| {
                    let id = parse_port_id(params?)?;
                    let snap = p.port(id)?;
                    Some(f(id, &snap))
                }),
            );
        }
    }

    fn insert(&mut self, cmd: &str, help: &str, f: Handler) {
        self.table.insert(
            cmd.into(),
            Entry {
                help: help.into(),
                kind: Kind::User(f),
            },
        );
    }

    /// Registers an application command (`/ferrovia/...`). The name must start with `/`, be
    /// shorter than [`MAX_CMD_LEN`], hold only letters, digits, `_` and `/`, and be new; the
    /// help text must be shorter than [`MAX_HELP_LEN`].
    pub fn register(
        &mut self,
        cmd: &str,
        help: &str,
        f: impl Fn(Option<&str>) -> Option<Data> + Send + Sync + 'static,
    ) -> Result<(), TelemetryError> {
        let bad = |why| {
            Err(TelemetryError::BadCommand {
                cmd: cmd.into(),
                why,
            })
        };
        if !cmd.starts_with('/') {
            return bad("a command starts with '/'");
        }
        if cmd.len() >= MAX_CMD_LEN {
            return bad("a command is at most 55 bytes long");
        }
        if !cmd
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'/')
        {
            return bad("a command holds only letters, digits, '_' and '/'");
        }
        if help.len() >= MAX_HELP_LEN {
            return bad("its help text is longer than 127 bytes");
        }
        if self.table.contains_key(cmd) {
            return bad("it is registered already");
        }
        self.insert(cmd, help, Arc::new(f));
        Ok(())
    }

    /// The registered command names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.table.keys().cloned().collect()
    }

    /// Answers one request (`"/cmd"` or `"/cmd,params"`; a trailing newline is ignored).
    pub fn handle(&self, request: &str) -> String {
        let request = request.trim_end_matches(['\n', '\r', '\0']);
        let (cmd, params) = match request.split_once(',') {
            Some((c, p)) => (c, Some(p).filter(|p| !p.is_empty())),
            None => (request, None),
        };
        let data = if cmd.len() < MAX_CMD_LEN {
            self.table.get(cmd).and_then(|e| self.run(cmd, e, params))
        } else {
            None
        };
        let cmd: String = cmd.chars().take(MAX_CMD_LEN).collect();
        reply(&cmd, data)
    }

    fn run(&self, cmd: &str, e: &Entry, params: Option<&str>) -> Option<Data> {
        match &e.kind {
            Kind::List => Some(Data::List(
                self.table.keys().map(|k| Data::Str(k.clone())).collect(),
            )),
            Kind::Info => Some(Data::Dict(vec![
                ("version".into(), Data::Str(self.version.clone())),
                ("pid".into(), Data::U64(std::process::id() as u64)),
                ("max_output_len".into(), Data::U64(MAX_OUTPUT_LEN as u64)),
            ])),
            Kind::Help => match params {
                None => Some(Data::Str(self.table.get(cmd)?.help.clone())),
                Some(p) => {
                    let h = &self.table.get(p)?.help;
                    Some(Data::Dict(vec![(p.to_string(), Data::Str(h.clone()))]))
                }
            },
            Kind::User(f) => f(params),
        }
    }
}

/// `{"<cmd>": data}`, cut to [`MAX_OUTPUT_LEN`] by dropping the last entries of a list or
/// dictionary that does not fit (`null` if even that cannot make it fit).
fn reply(cmd: &str, data: Option<Data>) -> String {
    let head = format!("{{{}: ", Value::from(cmd));
    let Some(mut d) = data else {
        return format!("{head}null}}");
    };
    loop {
        let mut out = head.clone();
        d.write(&mut out);
        out.push('}');
        if out.len() <= MAX_OUTPUT_LEN {
            return out;
        }
        if !d.shrink() {
            return format!("{head}null}}");
        }
    }
}

/// A port id as DPDK reads it: starts with a digit, `strtoul(.., 0)` (decimal, `0x` hex or
/// `0` octal); text after the number is ignored, as DPDK ignores it (with a notice).
pub fn parse_port_id(params: &str) -> Option<u16> {
    let p = params.trim_start_matches(' ');
    if !p.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or(p.strip_prefix("0X")) {
        (h, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    if end == 0 {
        // "0x" or "0" followed by a non-digit: strtoul reads the "0".
        return Some(0);
    }
    if end < digits.len() {
        log::info!("telemetry: extra parameters {params:?} passed to an ethdev command, ignoring");
    }
    u16::try_from(u64::from_str_radix(&digits[..end], radix).ok()?).ok()
}

fn dict(v: Vec<(&str, Data)>) -> Data {
    Data::Dict(v.into_iter().map(|(k, d)| (k.to_string(), d)).collect())
}

fn queue_array(v: impl Iterator<Item = u64>) -> Data {
    let mut a: Vec<Data> = v.take(QUEUE_STAT_CNTRS).map(Data::U64).collect();
    a.resize(QUEUE_STAT_CNTRS, Data::U64(0));
    Data::List(a)
}

/// `/ethdev/stats`: DPDK 22.11's `rte_eth_stats` fields.
fn ethdev_stats(_id: u16, p: &crate::PortSnapshot) -> Data {
    let s = &p.stats;
    dict(vec![
        ("ipackets", Data::U64(s.ipackets())),
        ("opackets", Data::U64(s.opackets())),
        ("ibytes", Data::U64(s.ibytes())),
        ("obytes", Data::U64(s.obytes())),
        ("imissed", Data::U64(0)),
        ("ierrors", Data::U64(s.ierrors())),
        ("oerrors", Data::U64(s.oerrors())),
        ("rx_nombuf", Data::U64(s.rx_nombuf())),
        (
            "q_ipackets",
            queue_array(s.rx_queues.iter().map(|q| q.packets)),
        ),
        (
            "q_opackets",
            queue_array(s.tx_queues.iter().map(|q| q.packets)),
        ),
        ("q_ibytes", queue_array(s.rx_queues.iter().map(|q| q.bytes))),
        ("q_obytes", queue_array(s.tx_queues.iter().map(|q| q.bytes))),
        (
            "q_errors",
            queue_array(s.rx_queues.iter().map(|q| q.total_errors())),
        ),
    ])
}

/// `/ethdev/xstats`: name → value, in the port's order.
fn ethdev_xstats(_id: u16, p: &crate::PortSnapshot) -> Data {
    Data::Dict(
        p.xstats
            .iter()
            .map(|(k, v)| (k.clone(), Data::U64(*v)))
            .collect(),
    )
}

/// `/ethdev/link_status`: `status` "UP"/"DOWN"; speed and duplex only when up (as DPDK).
fn ethdev_link_status(_id: u16, p: &crate::PortSnapshot) -> Data {
    let l = p.link;
    if !l.up {
        return dict(vec![("status", Data::Str("DOWN".into()))]);
    }
    dict(vec![
        ("status", Data::Str("UP".into())),
        ("speed", Data::U64(l.speed_mbps as u64)),
        (
            "duplex",
            Data::Str(
                if l.full_duplex {
                    "full-duplex"
                } else {
                    "half-duplex"
                }
                .into(),
            ),
        ),
    ])
}

/// `/ethdev/info`: the `rte_eth_dev_info`/`rte_eth_dev_data` fields DPDK 22.11 reports that
/// mean something here, plus `driver_name`.
fn ethdev_info(id: u16, p: &crate::PortSnapshot) -> Data {
    let i = &p.info;
    let qstate = |n: u16| {
        let state = if p.started { 1 } else { 0 };
        Data::List((0..n).map(|_| Data::U64(state)).collect())
    };
    dict(vec![
        ("name", Data::Str(i.name.clone())),
        ("driver_name", Data::Str(i.driver.to_string())),
        ("state", Data::U64(1)),
        ("nb_rx_queues", Data::U64(i.nb_rx_queues as u64)),
        ("nb_tx_queues", Data::U64(i.nb_tx_queues as u64)),
        ("port_id", Data::U64(id as u64)),
        (
            "mtu",
            Data::U64(i.max_frame_size.saturating_sub(18).min(1500) as u64),
        ),
        ("rx_mbuf_alloc_fail", Data::U64(p.stats.rx_nombuf())),
        ("mac_addr", Data::Str(i.mac.to_string())),
        ("promiscuous", Data::U64(1)),
        ("dev_started", Data::U64(p.started as u64)),
        ("dev_configured", Data::U64(1)),
        ("rxq_state", qstate(i.nb_rx_queues)),
        ("txq_state", qstate(i.nb_tx_queues)),
        ("numa_node", Data::U64(0)),
        ("max_rx_pktlen", Data::U64(i.max_frame_size as u64)),
        ("rx_offloads", Data::Str(format!("{}", i.offloads.rx))),
        ("tx_offloads", Data::Str(format!("{}", i.offloads.tx))),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ids_like_strtoul() {
        assert_eq!(parse_port_id("0"), Some(0));
        assert_eq!(parse_port_id("12"), Some(12));
        assert_eq!(parse_port_id("0x10"), Some(16));
        assert_eq!(parse_port_id("010"), Some(8));
        assert_eq!(parse_port_id("3,extra"), Some(3));
        assert_eq!(parse_port_id("x"), None);
        assert_eq!(parse_port_id("-1"), None);
        assert_eq!(parse_port_id("70000"), None);
    }

    #[test]
    fn builtins_and_unknown() {
        let mut c = Commands::new("v");
        c.register("/ferrovia/x", "X. Takes no parameters", |_| {
            Some(Data::Json(serde_json::json!({"a": 1})))
        })
        .unwrap();
        assert!(c.register("/ferrovia/x", "again", |_| None).is_err());
        assert!(c.register("ferrovia", "no slash", |_| None).is_err());
        assert!(c.register("/a b", "space", |_| None).is_err());
        assert_eq!(
            c.handle("/"),
            r#"{"/": ["/", "/ferrovia/x", "/help", "/info"]}"#
        );
        assert_eq!(c.handle("/ferrovia/x"), r#"{"/ferrovia/x": {"a":1}}"#);
        assert_eq!(c.handle("/nope"), r#"{"/nope": null}"#);
        assert_eq!(
            c.handle("/help,/ferrovia/x"),
            r#"{"/help": {"/ferrovia/x": "X. Takes no parameters"}}"#
        );
        assert_eq!(c.handle("/help,/nope"), r#"{"/help": null}"#);
        assert!(c.handle("/info").contains("\"max_output_len\": 16384"));
    }

    #[test]
    fn long_replies_are_cut() {
        let mut c = Commands::new("v");
        c.register("/big", "big", |_| {
            Some(Data::List((0..10_000).map(Data::U64).collect()))
        })
        .unwrap();
        let r = c.handle("/big");
        assert!(r.len() <= MAX_OUTPUT_LEN);
        let v: Value = serde_json::from_str(&r).unwrap();
        assert!(v["/big"].as_array().unwrap().len() > 1000);
    }
}
