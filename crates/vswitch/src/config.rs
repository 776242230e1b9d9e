//! The switch's configuration file (TOML) and the request types the control socket shares
//! with it.
//!
//! ```toml
//! [switch]
//! control_socket = "/run/ferrovia/switch.sock"
//! pmd_threads = 1           # polling threads
//! pmd_cpus = [1]            # optional: pin them
//! rxq_assign = "roundrobin" # or "cycles"
//! mbufs = 32768
//!
//! [[bridge]]
//! name = "br0"
//! fdb_limit = 8192
//! aging_secs = 300
//!
//! [[port]]
//! name = "vhu0"
//! bridge = "br0"
//! devargs = "net_vhost0,iface=/run/ferrovia/vhu0.sock"
//! tag = 10                  # access VLAN; or trunks = [10, 20] and native = 1
//!
//! [[router_interface]]
//! name = "gw10"
//! bridge = "br0"
//! vlan = 10
//! address = "10.0.10.1/24"
//!
//! [[route]]
//! prefix = "10.2.0.0/16"
//! via = "10.0.10.254"
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::vlan::VlanConfig;

/// How Rx queues are spread over PMD threads (OVS's `pmd-rxq-assign`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RxqAssign {
    /// In turn, to the thread with the fewest queues.
    #[default]
    Roundrobin,
    /// By measured cycles: the busiest queues first, each to the least loaded thread.
    Cycles,
}

/// The `[switch]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Global {
    /// Path of the JSON-RPC control socket.
    #[serde(default = "default_control_socket")]
    pub control_socket: PathBuf,
    /// Number of PMD (polling) threads.
    #[serde(default = "one")]
    pub pmd_threads: usize,
    /// CPUs to pin PMD threads to, one per thread (empty: not pinned).
    #[serde(default)]
    pub pmd_cpus: Vec<usize>,
    /// How Rx queues are spread over PMD threads.
    #[serde(default)]
    pub rxq_assign: RxqAssign,
    /// Mbufs in the switch's pool.
    #[serde(default = "default_mbufs")]
    pub mbufs: usize,
}

impl Default for Global {
    fn default() -> Global {
        Global {
            control_socket: default_control_socket(),
            pmd_threads: 1,
            pmd_cpus: Vec::new(),
            rxq_assign: RxqAssign::default(),
            mbufs: default_mbufs(),
        }
    }
}

/// A bridge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Name.
    pub name: String,
    /// Most FDB entries (learning stops at the limit; frames to unknown addresses flood).
    #[serde(default = "default_fdb_limit")]
    pub fdb_limit: usize,
    /// Seconds an FDB entry lives without traffic from its address.
    #[serde(default = "default_aging")]
    pub aging_secs: u32,
}

/// A port on a bridge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// Name (unique in the switch).
    pub name: String,
    /// The bridge it joins.
    pub bridge: String,
    /// The port, as a devargs string (`net_vhost0,iface=/tmp/vhu0.sock`, `net_tap0,iface=t0`).
    pub devargs: String,
    /// Access VLAN (see [`VlanConfig::tag`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<u16>,
    /// Trunk VLANs (see [`VlanConfig::trunks`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trunks: Vec<u16>,
    /// Native VLAN of a trunk (see [`VlanConfig::native`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native: Option<u16>,
    /// Largest frame accepted, without CRC (default 1518 + 4 for a tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_frame: Option<u32>,
}

impl PortConfig {
    /// The port's VLAN settings.
    pub fn vlan(&self) -> VlanConfig {
        VlanConfig {
            tag: self.tag,
            trunks: self.trunks.clone(),
            native: self.native,
        }
    }
}

/// A router interface: an IPv4 address on a bridge's VLAN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterInterfaceConfig {
    /// Name.
    pub name: String,
    /// The bridge it sits on.
    pub bridge: String,
    /// The VLAN on that bridge (0 for untagged/native).
    #[serde(default)]
    pub vlan: u16,
    /// Address and prefix length, `10.0.1.1/24`.
    pub address: String,
    /// MAC address (default: derived from the interface's index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// A static route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Destination prefix, `10.2.0.0/16`.
    pub prefix: String,
    /// Gateway address, on a connected subnet.
    pub via: String,
}

/// The `[telemetry]` table: DPDK's telemetry v2 socket and the Prometheus endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// Serve DPDK telemetry v2 on `<runtime dir>/dpdk/<file_prefix>/dpdk_telemetry.v2`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The directory name under `<runtime dir>/dpdk/` (`dpdk-telemetry.py -f <file_prefix>`).
    #[serde(default = "default_file_prefix")]
    pub file_prefix: String,
    /// `ADDR:PORT` to serve Prometheus metrics on (`GET /metrics`); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
}

fn yes() -> bool {
    true
}

fn default_file_prefix() -> String {
    "ferrovia-switch".into()
}

impl Default for TelemetrySettings {
    fn default() -> TelemetrySettings {
        TelemetrySettings {
            enabled: true,
            file_prefix: default_file_prefix(),
            metrics: None,
        }
    }
}

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchConfig {
    /// Global settings.
    #[serde(default)]
    pub switch: Global,
    /// Bridges.
    #[serde(default)]
    pub bridge: Vec<BridgeConfig>,
    /// Ports.
    #[serde(default)]
    pub port: Vec<PortConfig>,
    /// Router interfaces.
    #[serde(default)]
    pub router_interface: Vec<RouterInterfaceConfig>,
    /// Static routes.
    #[serde(default)]
    pub route: Vec<RouteConfig>,
    /// Telemetry and metrics.
    #[serde(default)]
    pub telemetry: TelemetrySettings,
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not parse or does not match the schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line.
        message: String,
    },
    /// A value is inconsistent.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
}

fn one() -> usize {
    1
}
fn default_mbufs() -> usize {
    32768
}
fn default_fdb_limit() -> usize {
    8192
}
fn default_aging() -> u32 {
    300
}

/// Directory of the default sockets: `$FERROVIA_RUN_DIR`, else `$XDG_RUNTIME_DIR/ferrovia`,
/// else `/tmp/ferrovia-<uid>`.
pub fn run_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FERROVIA_RUN_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(d).join("ferrovia");
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    PathBuf::from(format!("/tmp/ferrovia-{uid}"))
}

fn default_control_socket() -> PathBuf {
    run_dir().join("switch.sock")
}

impl SwitchConfig {
    /// The built-in default: bridge `br0` with two vhost-user server ports, `vhu0` and
    /// `vhu1`, whose sockets are in [`run_dir`]; one PMD thread.
    pub fn builtin() -> SwitchConfig {
        let dir = run_dir();
        let port = |i: usize| PortConfig {
            name: format!("vhu{i}"),
            bridge: "br0".into(),
            devargs: format!(
                "net_vhost{i},iface={}",
                dir.join(format!("vhu{i}.sock")).display()
            ),
            tag: None,
            trunks: Vec::new(),
            native: None,
            max_frame: None,
        };
        SwitchConfig {
            switch: Global::default(),
            bridge: vec![BridgeConfig {
                name: "br0".into(),
                fdb_limit: default_fdb_limit(),
                aging_secs: default_aging(),
            }],
            port: vec![port(0), port(1)],
            router_interface: Vec::new(),
            route: Vec::new(),
            telemetry: TelemetrySettings::default(),
        }
    }

    /// Parses TOML text (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<SwitchConfig, ConfigError> {
        let c: SwitchConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        c.check().map_err(|message| ConfigError::Invalid {
            path: path.into(),
            message,
        })?;
        Ok(c)
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<SwitchConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        SwitchConfig::parse(&text, path)
    }

    /// Checks what the schema cannot: names unique, references resolve.
    pub fn check(&self) -> Result<(), String> {
        if self.switch.pmd_threads == 0 || self.switch.pmd_threads > 64 {
            return Err(format!(
                "[switch] pmd_threads = {} (use 1..=64)",
                self.switch.pmd_threads
            ));
        }
        if !self.switch.pmd_cpus.is_empty() && self.switch.pmd_cpus.len() != self.switch.pmd_threads
        {
            return Err(format!(
                "[switch] pmd_cpus lists {} CPUs for {} PMD threads (give one per thread, or none)",
                self.switch.pmd_cpus.len(),
                self.switch.pmd_threads
            ));
        }
        let t = &self.telemetry;
        if t.file_prefix.is_empty() || t.file_prefix.contains('/') {
            return Err(format!(
                "[telemetry] file_prefix = {:?}: give a non-empty name without '/' (the socket is <runtime dir>/dpdk/<file_prefix>/dpdk_telemetry.v2)",
                t.file_prefix
            ));
        }
        if let Some(m) = &t.metrics
            && m.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(format!(
                "[telemetry] metrics = {m:?}: give ADDR:PORT, e.g. metrics = \"127.0.0.1:9464\""
            ));
        }
        let mut names = std::collections::HashSet::new();
        for b in &self.bridge {
            if !names.insert(&b.name) {
                return Err(format!("bridge {} is defined twice", b.name));
            }
        }
        let mut ports = std::collections::HashSet::new();
        for p in &self.port {
            if !ports.insert(&p.name) {
                return Err(format!("port {} is defined twice", p.name));
            }
            if !names.contains(&p.bridge) {
                return Err(format!(
                    "port {} is on bridge {}, which is not defined (add a [[bridge]] with name = \"{}\")",
                    p.name, p.bridge, p.bridge
                ));
            }
        }
        for r in &self.router_interface {
            if !names.contains(&r.bridge) {
                return Err(format!(
                    "router interface {} is on bridge {}, which is not defined",
                    r.name, r.bridge
                ));
            }
        }
        Ok(())
    }
}

/// The configuration as TOML text (`ferrovia-switch --print-config`).
pub fn to_toml(c: &SwitchConfig) -> Result<String, String> {
    toml::to_string_pretty(c).map_err(|e| format!("cannot write the configuration as TOML: {e}"))
}

/// The directory of the unix socket a vhost-user or virtio-user devargs string names
/// (`iface=` or `path=`), if any.
pub fn socket_dir_of(devargs: &str) -> Option<PathBuf> {
    devargs.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "iface" || k == "path")
            .then(|| Path::new(v).parent().map(Path::to_path_buf))
            .flatten()
            .filter(|d| !d.as_os_str().is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file() {
        let c = SwitchConfig::parse(
            r#"
[switch]
pmd_threads = 2
rxq_assign = "cycles"
[[bridge]]
name = "br0"
[[port]]
name = "a"
bridge = "br0"
devargs = "net_ring0"
tag = 10
[[port]]
name = "b"
bridge = "br0"
devargs = "net_ring1"
trunks = [10, 20]
native = 1
[[router_interface]]
name = "gw"
bridge = "br0"
vlan = 10
address = "10.0.0.1/24"
[[route]]
prefix = "10.2.0.0/16"
via = "10.0.0.254"
"#,
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(c.switch.pmd_threads, 2);
        assert_eq!(c.switch.rxq_assign, RxqAssign::Cycles);
        assert_eq!(c.port[0].tag, Some(10));
        assert_eq!(c.port[1].trunks, vec![10, 20]);
        assert_eq!(c.bridge[0].fdb_limit, 8192);
    }

    #[test]
    fn errors_name_the_problem() {
        let e = SwitchConfig::parse(
            "[[port]]\nname='a'\nbridge='x'\ndevargs='net_null0'\n",
            Path::new("f.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bridge x, which is not defined"), "{e}");
        let e = SwitchConfig::parse("[switch]\npmd_thread = 2\n", Path::new("f.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `pmd_thread`"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = SwitchConfig::parse(
            "[[bridge]]\nname='b'\n[[bridge]]\nname='b'\n",
            Path::new("f"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("defined twice"), "{e}");
    }

    #[test]
    fn builtin_is_valid() {
        let c = SwitchConfig::builtin();
        c.check().unwrap();
        assert_eq!(c.port.len(), 2);
    }
}
