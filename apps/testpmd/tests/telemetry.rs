//! testpmd's telemetry: DPDK's `dpdk-telemetry.py` against our socket, compared with
//! testpmd's own counters, and a Prometheus scrape.

use std::io::{Read, Write};
use std::time::Duration;

use ferrovia_testkit::Interactive;
use ferrovia_testkit::dpdk::{telemetry_ask as ask, telemetry_py};

const TESTPMD: &str = env!("CARGO_BIN_EXE_testpmd");

/// testpmd driven through its prompt (stderr to the test's).
struct Testpmd(Interactive);

impl Testpmd {
    fn start(args: &[&str]) -> Testpmd {
        Testpmd(Interactive::start_stdout(TESTPMD, args))
    }

    fn send(&mut self, line: &str) {
        self.0.send(line);
    }

    /// Waits until the output holds `what` `count` times; returns the output.
    fn wait_for(&self, what: &str, count: usize) -> String {
        self.0.wait_for(what, count)
    }

    fn quit(mut self) -> String {
        self.send("quit");
        let (_, out) = self.0.wait();
        assert!(out.contains("Bye"), "testpmd did not say Bye:\n{out}");
        out
    }
}

/// The number after `label` in the last NIC statistics block of port `port`.
fn nic(out: &str, port: u16, label: &str) -> u64 {
    let block = out
        .rsplit(&format!("NIC statistics for port {port} "))
        .next()
        .unwrap();
    let rest = block.split(label).nth(1).unwrap();
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn dpdk_telemetry_py_reads_our_counters() {
    let Some(py) = telemetry_py("dpdk_telemetry_py_reads_our_counters") else {
        return;
    };
    let prefix = format!("ferrovia-it-{}", std::process::id());
    let mut t = Testpmd::start(&[
        "-l",
        "0-1",
        "--no-pci",
        "--file-prefix",
        &prefix,
        "--vdev",
        "net_null0",
        "--vdev",
        "net_null1",
        "--",
        "-i",
        "--metrics",
        "127.0.0.1:0",
    ]);
    t.wait_for("testpmd> ", 1);
    t.wait_for("Prometheus metrics on http://", 1);
    t.send("start");
    std::thread::sleep(Duration::from_millis(300));
    t.send("stop");
    t.wait_for("Done.", 1);
    t.send("show port stats 0");
    t.send("show port stats 1");
    let out = t.wait_for("NIC statistics for port 1 ", 1);

    let r = ask(
        &py,
        &prefix,
        &[
            "/ethdev/list",
            "/ethdev/stats,0",
            "/ethdev/stats,1",
            "/ethdev/xstats,1",
            "/ethdev/link_status,0",
            "/ethdev/info,1",
            "/ethdev/stats,9",
            "/nope",
        ],
    );
    assert_eq!(r[0]["/ethdev/list"], serde_json::json!([0, 1]));
    for p in 0..2u16 {
        let s = &r[1 + p as usize]["/ethdev/stats"];
        assert!(nic(&out, p, "RX-packets:") > 0);
        assert_eq!(s["ipackets"], nic(&out, p, "RX-packets:"), "port {p}: {s}");
        assert_eq!(s["opackets"], nic(&out, p, "TX-packets:"), "port {p}: {s}");
        assert_eq!(s["ibytes"], nic(&out, p, "RX-bytes:"), "port {p}: {s}");
        assert_eq!(s["obytes"], nic(&out, p, "TX-bytes:"), "port {p}: {s}");
        assert_eq!(s["ierrors"], nic(&out, p, "RX-errors:"), "port {p}: {s}");
        assert_eq!(s["oerrors"], nic(&out, p, "TX-errors:"), "port {p}: {s}");
        assert_eq!(s["rx_nombuf"], nic(&out, p, "RX-nombuf:"), "port {p}: {s}");
        assert_eq!(s["q_ipackets"][0], s["ipackets"]);
    }
    assert_eq!(
        r[3]["/ethdev/xstats"]["rx_good_packets"],
        r[2]["/ethdev/stats"]["ipackets"]
    );
    assert_eq!(r[4]["/ethdev/link_status"]["status"], "UP");
    assert_eq!(r[5]["/ethdev/info"]["name"], "net_null1");
    assert_eq!(r[6], serde_json::json!({"/ethdev/stats": null}));
    assert_eq!(r[7], serde_json::json!({"/nope": null}));

    // The same counters in a Prometheus scrape.
    let addr = out
        .split("Prometheus metrics on http://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    let mut found = 0;
    for line in body.lines() {
        if line.starts_with('#') || !line.starts_with("ferrovia_") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap();
        for p in 0..2u16 {
            if series
                == format!("ferrovia_port_rx_packets_total{{port=\"{p}\",name=\"net_null{p}\"}}")
            {
                assert_eq!(value as u64, nic(&out, p, "RX-packets:"));
                found += 1;
            }
        }
    }
    assert_eq!(found, 2, "{body}");

    let dir = std::path::PathBuf::from(if is_root() {
        "/var/run".to_string()
    } else {
        std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into())
    })
    .join("dpdk")
    .join(&prefix);
    let sock = dir.join("dpdk_telemetry.v2");
    assert!(sock.exists(), "{} while testpmd runs", sock.display());
    t.quit();
    assert!(!sock.exists(), "{} removed at exit", sock.display());
    let _ = std::fs::remove_dir(&dir);
}

/// Whether we run as root (from /proc, to keep this test free of unsafe code).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        .unwrap_or(false)
}

#[test]
fn no_telemetry_makes_no_socket() {
    let prefix = format!("ferrovia-it-none-{}", std::process::id());
    let t = Testpmd::start(&[
        "-l",
        "0-1",
        "--no-telemetry",
        "--file-prefix",
        &prefix,
        "--vdev",
        "net_null0",
        "--",
        "-i",
    ]);
    t.wait_for("testpmd> ", 1);
    let root = is_root();
    let base = if root {
        "/var/run".to_string()
    } else {
        std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into())
    };
    let sock = std::path::Path::new(&base)
        .join("dpdk")
        .join(&prefix)
        .join("dpdk_telemetry.v2");
    assert!(!sock.exists());
    t.quit();
}
