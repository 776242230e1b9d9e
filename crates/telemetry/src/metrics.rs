//! Prometheus text exposition (format 0.0.4) on a minimal HTTP/1.1 server.
//!
//! `GET /metrics` answers the families a collector returns; every other path is 404 and every
//! other method 405. Requests are read with a timeout and a size limit, one connection at a
//! time, and the connection is closed after the answer.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{PortSource, TelemetryError};

/// Longest request head read; longer ones get 431.
pub const MAX_REQUEST: usize = 8192;
/// How long a client may take to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// A metric's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (names end in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One sample: labels and a value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Label names and values.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// A metric family: `# HELP`, `# TYPE` and its samples.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricFamily {
    /// Name (`ferrovia_port_rx_packets_total`).
    pub name: String,
    /// Help text.
    pub help: String,
    /// Type.
    pub kind: MetricKind,
    /// Samples.
    pub samples: Vec<Sample>,
}

impl MetricFamily {
    /// An empty family.
    pub fn new(name: impl Into<String>, help: impl Into<String>, kind: MetricKind) -> Self {
        MetricFamily {
            name: name.into(),
            help: help.into(),
            kind,
            samples: Vec::new(),
        }
    }

    /// Adds a sample.
    pub fn push(&mut self, labels: &[(&str, &str)], value: f64) {
        self.samples.push(Sample {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        });
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// The text exposition of `families`.
pub fn render(families: &[MetricFamily]) -> String {
    let mut out = String::new();
    for f in families {
        let kind = match f.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(&f.help));
        let _ = writeln!(out, "# TYPE {} {kind}", f.name);
        for s in &f.samples {
            out.push_str(&f.name);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", s.value);
        }
    }
    out
}

/// The per-port families (`ferrovia_port_*`), labelled `port` (the ethdev id) and `name`.
pub fn port_families(ports: &dyn PortSource) -> Vec<MetricFamily> {
    use MetricKind::{Counter, Gauge};
    let mut fams = vec![
        MetricFamily::new(
            "ferrovia_port_rx_packets_total",
            "Packets received (ipackets).",
            Counter,
        ),
        MetricFamily::new(
            "ferrovia_port_tx_packets_total",
            "Packets sent (opackets).",
            Counter,
        ),
        MetricFamily::new(
            "ferrovia_port_rx_bytes_total",
            "Bytes received (ibytes).",
            Counter,
        ),
        MetricFamily::new(
            "ferrovia_port_tx_bytes_total",
            "Bytes sent (obytes).",
            Counter,
        ),
        MetricFamily::new(
            "ferrovia_port_rx_errors_total",
            "Receive errors (ierrors).",
            Counter,
        ),
        MetricFamily::new(
            "ferrovia_port_tx_errors_total",
            "Transmit errors (oerrors).",
            Counter,
        ),
        MetricFamily::new(
            "ferrovia_port_rx_nombuf_total",
            "Receives that failed for lack of mbufs (rx_nombuf).",
            Counter,
        ),
        MetricFamily::new(
            "ferrovia_port_link_up",
            "1 when the link is up, else 0.",
            Gauge,
        ),
        MetricFamily::new(
            "ferrovia_port_link_speed_mbps",
            "Link speed in Mbit/s (0 when down).",
            Gauge,
        ),
    ];
    for id in ports.port_ids() {
        let Some(p) = ports.port(id) else { continue };
        let s = &p.stats;
        let port = id.to_string();
        let labels = [("port", port.as_str()), ("name", p.info.name.as_str())];
        let up = p.link.up;
        let values = [
            s.ipackets() as f64,
            s.opackets() as f64,
            s.ibytes() as f64,
            s.obytes() as f64,
            s.ierrors() as f64,
            s.oerrors() as f64,
            s.rx_nombuf() as f64,
            up as u8 as f64,
            if up { p.link.speed_mbps as f64 } else { 0.0 },
        ];
        for (f, v) in fams.iter_mut().zip(values) {
            f.push(&labels, v);
        }
    }
    fams
}

/// What the metrics server calls for every scrape.
pub type Collector = Arc<dyn Fn() -> Vec<MetricFamily> + Send + Sync>;

/// A running metrics endpoint. Dropping it stops the thread and closes the socket.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` (`127.0.0.1:9464`; port 0 picks a free one) and answers
    /// `GET /metrics` with what `collect` returns.
    pub fn start(addr: &str, collect: Collector) -> Result<MetricsServer, TelemetryError> {
        let bind_err = |source| TelemetryError::MetricsBind {
            addr: addr.to_string(),
            source,
        };
        let listener = TcpListener::bind(addr).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((c, _)) => {
                            if let Err(e) = answer(c, &collect) {
                                log::debug!("metrics: a client failed: {e}");
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
            .map_err(bind_err)?;
        log::info!("metrics: serving Prometheus metrics on http://{local}/metrics");
        Ok(MetricsServer {
            addr: local,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn respond(
    c: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &str,
    head: bool,
) -> std::io::Result<()> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head {
        r.push_str(body);
    }
    c.write_all(r.as_bytes())?;
    c.flush()
}

fn answer(mut c: TcpStream, collect: &Collector) -> std::io::Result<()> {
    c.set_nonblocking(false)?;
    c.set_write_timeout(Some(READ_TIMEOUT))?;
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let text = "text/plain; charset=utf-8";
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        if buf.len() >= MAX_REQUEST {
            return respond(
                &mut c,
                "431 Request Header Fields Too Large",
                text,
                "request too large\n",
                false,
            );
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return respond(
                &mut c,
                "408 Request Timeout",
                text,
                "request timeout\n",
                false,
            );
        }
        c.set_read_timeout(Some(left))?;
        match c.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return respond(
                    &mut c,
                    "408 Request Timeout",
                    text,
                    "request timeout\n",
                    false,
                );
            }
            Err(e) => return Err(e),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let is_head = method == "HEAD";
    if method != "GET" && !is_head {
        return respond(&mut c, "405 Method Not Allowed", text, "only GET\n", false);
    }
    if path != "/metrics" {
        return respond(
            &mut c,
            "404 Not Found",
            text,
            "not found; try /metrics\n",
            is_head,
        );
    }
    let body = render(&collect());
    respond(
        &mut c,
        "200 OK",
        "text/plain; version=0.0.4; charset=utf-8",
        &body,
        is_head,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_help_type_and_escaped_labels() {
        let mut f = MetricFamily::new("x_total", "An \\ x.", MetricKind::Counter);
        f.push(&[("port", "0"), ("name", "a\"b\nc")], 3.0);
        assert_eq!(
            render(&[f]),
            "# HELP x_total An \\\\ x.\n# TYPE x_total counter\nx_total{port=\"0\",name=\"a\\\"b\\nc\"} 3\n"
        );
    }
}
