//! Telemetry for Ferrovia applications, read-only and off the data path.
//!
//! - [`TelemetryServer`]: a server that speaks DPDK 22.11's telemetry v2 protocol on
//!   `<runtime dir>/dpdk/<file-prefix>/dpdk_telemetry.v2` (an `AF_UNIX` `SOCK_SEQPACKET`
//!   socket), so DPDK's `dpdk-telemetry.py -f <file-prefix>` and other v2 clients work
//!   unchanged. It answers DPDK's built-in commands (`/`, `/info`, `/help`) and its ethdev ones
//!   (`/ethdev/list`, `/ethdev/stats`, `/ethdev/xstats`, `/ethdev/info`,
//!   `/ethdev/link_status`), plus whatever an application registers in its [`Commands`].
//! - [`MetricsServer`]: Prometheus text exposition (`GET /metrics`) on a small HTTP/1.1
//!   server ([`metrics`]).
//!
//! Neither knows the application: ports come from a [`PortSource`] the application implements,
//! which returns copies of counters ([`PortSnapshot`]). Nothing here touches a queue.

pub mod capture;
pub mod client;
pub mod commands;
pub mod metrics;
pub mod server;

use std::path::PathBuf;

pub use capture::{CaptureControl, CaptureTarget, capture_families, status_json};
pub use client::TelemetryClient;
pub use commands::{Commands, Data, Handler, MAX_CMD_LEN, MAX_OUTPUT_LEN, version_string};
pub use metrics::{
    Collector, MetricFamily, MetricKind, MetricsServer, Sample, port_families, render,
};
pub use server::{MAX_CLIENTS, SOCKET_NAME, TelemetryConfig, TelemetryServer, runtime_dir};

use ferrovia_ethdev::{Link, PortInfo, PortStats};

/// What the telemetry reads about one port: copies of its facts and counters.
#[derive(Clone, Debug)]
pub struct PortSnapshot {
    /// Static facts (name, driver, MAC, queues, ...).
    pub info: PortInfo,
    /// Link state.
    pub link: Link,
    /// Counters.
    pub stats: PortStats,
    /// Extended counters, named as DPDK names them.
    pub xstats: Vec<(String, u64)>,
    /// Whether the port is started.
    pub started: bool,
}

/// Where the telemetry finds ports. Implemented by the application; called from the telemetry
/// threads, so it must only read (counters, link, facts) and never block on the data path.
pub trait PortSource: Send + Sync {
    /// The ethdev port ids, in order.
    fn port_ids(&self) -> Vec<u16>;
    /// One port, or `None` when there is no port `id`.
    fn port(&self, id: u16) -> Option<PortSnapshot>;
}

/// Why telemetry could not start or a command could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// Another live process answers on the socket.
    #[error(
        "cannot create {}: another process uses file prefix {prefix} ({hint})",
        path.display()
    )]
    InUse {
        /// The socket path.
        path: PathBuf,
        /// The file prefix.
        prefix: String,
        /// How to fix it, in the application's words.
        hint: String,
    },
    /// A file system or socket call failed.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// What was being done (`create directory`, `bind`, ...).
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The socket path does not fit in `sun_path`.
    #[error(
        "cannot create {}: the path is longer than a unix socket path may be (108 bytes); choose a shorter file prefix",
        path.display()
    )]
    PathTooLong {
        /// The path.
        path: PathBuf,
    },
    /// A file prefix that is empty or has a `/`.
    #[error("invalid file prefix {prefix:?}: it must be non-empty and have no '/'")]
    BadPrefix {
        /// The prefix.
        prefix: String,
    },
    /// A command that cannot be registered.
    #[error("cannot register telemetry command {cmd:?}: {why}")]
    BadCommand {
        /// The command.
        cmd: String,
        /// Why.
        why: &'static str,
    },
    /// The metrics address could not be bound.
    #[error("cannot listen for metrics on {addr}: {source} (choose another address:port)")]
    MetricsBind {
        /// The address asked for.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
}
