//! The telemetry socket and the metrics endpoint, with a raw SEQPACKET client and a raw HTTP
//! client.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferrovia_ethdev::{
    Link, MacAddr, Offloads, PortInfo, PortStats, QueueStatsSnapshot, RxOffloads, TxOffloads,
};
use ferrovia_telemetry::{
    Commands, Data, MetricsServer, PortSnapshot, PortSource, TelemetryConfig, TelemetryError,
    TelemetryServer, port_families, version_string,
};
use serde_json::Value;

struct Fake;

impl PortSource for Fake {
    fn port_ids(&self) -> Vec<u16> {
        vec![0, 1]
    }
    fn port(&self, id: u16) -> Option<PortSnapshot> {
        if id > 1 {
            return None;
        }
        let q = QueueStatsSnapshot {
            packets: 10 + id as u64,
            bytes: 640,
            errors: Default::default(),
        };
        let stats = PortStats {
            rx_queues: vec![q],
            tx_queues: vec![q, q],
        };
        Some(PortSnapshot {
            info: PortInfo {
                driver: "net_null",
                name: format!("net_null{id}"),
                mac: MacAddr([2, 0, 0, 0, 0, id as u8]),
                nb_rx_queues: 1,
                nb_tx_queues: 2,
                max_queues: 2,
                nb_rxd: 0,
                nb_txd: 0,
                max_frame_size: 1518,
                offloads: Offloads {
                    rx: RxOffloads::empty(),
                    tx: TxOffloads::empty(),
                },
                virtio_features: None,
                virtio_offered: None,
                switch_domain: None,
            },
            link: Link {
                up: id == 0,
                speed_mbps: 10000,
                full_duplex: true,
            },
            xstats: stats.xstats(),
            stats,
            started: true,
        })
    }
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ferrovia-telem-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn server(name: &str, max: usize) -> TelemetryServer {
    let mut c = Commands::with_ethdev(version_string("test"), Arc::new(Fake));
    c.register("/ferrovia/echo", "Echoes. Parameters: string", |p| {
        Some(Data::Str(p?.to_string()))
    })
    .unwrap();
    let mut cfg = TelemetryConfig::new(name);
    cfg.dir = Some(dir(name));
    cfg.max_clients = max;
    TelemetryServer::start(&cfg, Arc::new(c)).unwrap()
}

struct Client(OwnedFd);

impl Client {
    fn connect(path: &Path) -> Client {
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: plain socket call.
        let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0) };
        assert!(fd >= 0);
        // SAFETY: fd is new and ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: zeroed sockaddr_un is valid.
        let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        sun.sun_family = libc::AF_UNIX as _;
        for (d, s) in sun.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
            *d = *s as _;
        }
        // SAFETY: valid address of the given size.
        let r = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&raw const sun).cast(),
                std::mem::size_of_val(&sun) as _,
            )
        };
        assert_eq!(r, 0, "connect {}", path.display());
        Client(fd)
    }

    /// One message, or None at end of stream.
    fn recv(&self) -> Option<String> {
        let mut buf = vec![0u8; 65536];
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        (n > 0).then(|| String::from_utf8(buf[..n as usize].to_vec()).unwrap())
    }

    fn ask(&self, req: &str) -> Value {
        // SAFETY: req is valid for its length.
        let n = unsafe { libc::send(self.0.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
        assert_eq!(n as usize, req.len());
        serde_json::from_str(&self.recv().unwrap()).unwrap()
    }
}

#[test]
fn greeting_commands_and_bad_params() {
    let s = server("cmds", 10);
    assert!(s.path().ends_with("dpdk_telemetry.v2"));
    let c = Client::connect(s.path());
    let hello: Value = serde_json::from_str(&c.recv().unwrap()).unwrap();
    assert_eq!(hello["pid"], std::process::id());
    assert_eq!(hello["max_output_len"], 16384);
    assert!(hello["version"].as_str().unwrap().starts_with("DPDK 22.11"));

    let list = c.ask("/");
    for cmd in [
        "/",
        "/info",
        "/help",
        "/ethdev/list",
        "/ethdev/stats",
        "/ethdev/xstats",
        "/ethdev/info",
        "/ethdev/link_status",
        "/ferrovia/echo",
    ] {
        assert!(
            list["/"].as_array().unwrap().iter().any(|v| v == cmd),
            "{cmd} in {list}"
        );
    }
    assert_eq!(
        c.ask("/ethdev/list")["/ethdev/list"],
        serde_json::json!([0, 1])
    );
    let st = c.ask("/ethdev/stats,1");
    let st = &st["/ethdev/stats"];
    assert_eq!(st["ipackets"], 11);
    assert_eq!(st["opackets"], 22);
    assert_eq!(st["ibytes"], 640);
    assert_eq!(st["imissed"], 0);
    assert_eq!(st["rx_nombuf"], 0);
    assert_eq!(st["q_ipackets"].as_array().unwrap().len(), 16);
    assert_eq!(st["q_opackets"][1], 11);
    let x = c.ask("/ethdev/xstats,0");
    assert_eq!(x["/ethdev/xstats"]["rx_good_packets"], 10);
    assert_eq!(
        c.ask("/ethdev/link_status,0")["/ethdev/link_status"],
        serde_json::json!({"status": "UP", "speed": 10000, "duplex": "full-duplex"})
    );
    assert_eq!(
        c.ask("/ethdev/link_status,1")["/ethdev/link_status"],
        serde_json::json!({"status": "DOWN"})
    );
    let info = c.ask("/ethdev/info,0");
    assert_eq!(info["/ethdev/info"]["name"], "net_null0");
    assert_eq!(info["/ethdev/info"]["mac_addr"], "02:00:00:00:00:00");
    assert_eq!(
        c.ask("/help,/ethdev/stats")["/help"]["/ethdev/stats"],
        "Returns the common stats for a port. Parameters: int port_id"
    );
    assert_eq!(c.ask("/ferrovia/echo,hi")["/ferrovia/echo"], "hi");

    // Bad parameters and unknown commands: {"<cmd>": null}, and the client stays connected.
    for (req, key) in [
        ("/ethdev/stats", "/ethdev/stats"),
        ("/ethdev/stats,", "/ethdev/stats"),
        ("/ethdev/stats,abc", "/ethdev/stats"),
        ("/ethdev/stats,-1", "/ethdev/stats"),
        ("/ethdev/stats,2", "/ethdev/stats"),
        ("/ethdev/stats,99999999", "/ethdev/stats"),
        ("/ethdev/xstats,7", "/ethdev/xstats"),
        ("/ethdev/info,x", "/ethdev/info"),
        ("/ethdev/link_status", "/ethdev/link_status"),
        ("/nope", "/nope"),
        ("/help,/nope", "/help"),
        ("/ferrovia/echo", "/ferrovia/echo"),
    ] {
        let r = c.ask(req);
        assert_eq!(r, serde_json::json!({ key: null }), "{req}");
    }
    let long = format!("/{}", "x".repeat(200));
    let r = c.ask(&long);
    assert!(r.as_object().unwrap().values().all(Value::is_null), "{r}");
    assert_eq!(c.ask("/ethdev/stats,0")["/ethdev/stats"]["ipackets"], 10);
}

#[test]
fn too_many_clients_are_refused_with_a_message() {
    let s = server("many", 2);
    let a = Client::connect(s.path());
    let b = Client::connect(s.path());
    assert!(a.recv().unwrap().contains("max_output_len"));
    assert!(b.recv().unwrap().contains("max_output_len"));
    let c = Client::connect(s.path());
    let msg = c.recv().unwrap();
    assert!(msg.contains("too many telemetry clients"), "{msg}");
    assert_eq!(c.recv(), None, "the refused client is closed");
    drop(a);
    // Once one leaves, a new one is served.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let d = Client::connect(s.path());
        if d.recv().unwrap().contains("max_output_len") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never served again");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        b.ask("/ethdev/list")["/ethdev/list"],
        serde_json::json!([0, 1])
    );
}

#[test]
fn a_live_socket_is_not_taken_over_and_a_stale_one_is() {
    let s = server("inuse", 10);
    let mut cfg = TelemetryConfig::new("inuse");
    cfg.dir = Some(s.path().parent().unwrap().to_path_buf());
    let e = TelemetryServer::start(&cfg, Arc::new(Commands::new("x"))).unwrap_err();
    assert!(matches!(e, TelemetryError::InUse { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("another process uses file prefix inuse")
            && msg.contains("--file-prefix")
            && msg.contains("--no-telemetry"),
        "{msg}"
    );
    let path = s.path().to_path_buf();
    drop(s);
    assert!(!path.exists(), "the socket is removed on drop");
    // A stale socket file (nobody listening) is replaced.
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale);
    assert!(path.exists());
    let s = TelemetryServer::start(&cfg, Arc::new(Commands::new("x"))).unwrap();
    let c = Client::connect(s.path());
    assert!(c.recv().unwrap().contains("\"pid\""));
}

fn http(addr: std::net::SocketAddr, req: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn prometheus_scrape() {
    let m = MetricsServer::start("127.0.0.1:0", Arc::new(|| port_families(&Fake))).unwrap();
    let r = http(m.local_addr(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let mut seen = 0;
    let mut typed = std::collections::HashSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(kind == "counter" || kind == "gauge");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap();
        let name = series.split('{').next().unwrap();
        assert!(typed.contains(name), "{name} has a TYPE line before it");
        if series == "ferrovia_port_rx_packets_total{port=\"1\",name=\"net_null1\"}" {
            assert_eq!(value, 11.0);
            seen += 1;
        }
        if series == "ferrovia_port_tx_packets_total{port=\"0\",name=\"net_null0\"}" {
            assert_eq!(value, 20.0);
            seen += 1;
        }
    }
    assert_eq!(seen, 2, "{body}");
    assert!(http(m.local_addr(), "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(http(m.local_addr(), "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    let big = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20000));
    let mut s = std::net::TcpStream::connect(m.local_addr()).unwrap();
    let _ = s.write_all(big.as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    // A client that sends nothing is timed out, and the server still answers afterwards.
    let idle = std::net::TcpStream::connect(m.local_addr()).unwrap();
    let t = std::time::Instant::now();
    let mut out = String::new();
    let _ = (&idle).read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    assert!(http(m.local_addr(), "GET /metrics HTTP/1.0\r\n\r\n").contains("200 OK"));
}
