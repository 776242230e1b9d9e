//! The switch's `[telemetry]`: DPDK's `dpdk-telemetry.py` against its socket (ports as
//! ethdev ids, `/ferrovia/switch/...` as the control socket answers) and a Prometheus scrape.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrovia_testkit::dpdk::{telemetry_ask as ask, telemetry_py};
use ferrovia_vswitch::rpc::RpcClient;
use serde_json::{Value, json};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn switch_telemetry_and_metrics() {
    let dir = std::env::temp_dir().join(format!("fsw-telem-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("ctl.sock");
    let prefix = format!("fsw-telem-{}", std::process::id());
    let metrics = format!("127.0.0.1:{}", free_port());
    let config = dir.join("sw.toml");
    std::fs::write(
        &config,
        format!(
            "[switch]\ncontrol_socket = \"{}\"\n\n[telemetry]\nfile_prefix = \"{prefix}\"\nmetrics = \"{metrics}\"\n\n\
             [[bridge]]\nname = \"br0\"\n\n\
             [[port]]\nname = \"n0\"\nbridge = \"br0\"\ndevargs = \"net_null0\"\n\n\
             [[port]]\nname = \"n1\"\nbridge = \"br0\"\ndevargs = \"net_null1\"\n",
            sock.display()
        ),
    )
    .unwrap();
    let _d = Daemon(
        Command::new(env!("CARGO_BIN_EXE_ferrovia-switch"))
            .args(["--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t0 = Instant::now();
    let mut body = String::new();
    while t0.elapsed() < Duration::from_secs(10) {
        if sock.exists() && std::net::TcpStream::connect(&metrics).is_ok() {
            body = scrape(&metrics);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(body.starts_with("HTTP/1.1 200 OK"), "no metrics: {body}");
    for series in [
        "ferrovia_port_rx_packets_total{port=\"0\",name=\"net_null0\"}",
        "ferrovia_port_tx_packets_total{port=\"1\",name=\"net_null1\"}",
        "ferrovia_switch_port_rx_packets_total{port=\"0\",name=\"n0\",bridge=\"br0\"}",
        "ferrovia_switch_pmd_packets_total{pmd=\"0\"}",
    ] {
        let line = body
            .lines()
            .find(|l| l.starts_with(&format!("{series} ")))
            .unwrap_or_else(|| panic!("no {series} in {body}"));
        let v: f64 = line.rsplit_once(' ').unwrap().1.parse().unwrap();
        assert!(v >= 0.0);
    }
    assert!(body.contains("# TYPE ferrovia_switch_port_drops_total counter"));

    let Some(py) = telemetry_py("switch telemetry") else {
        return;
    };
    let r = ask(
        &py,
        &prefix,
        &[
            "/ethdev/list",
            "/ethdev/stats,1",
            "/ethdev/info,0",
            "/ethdev/link_status,1",
            "/ferrovia/switch/ports",
            "/ferrovia/switch/bridges",
            "/ferrovia/switch/pmd_stats",
            "/ethdev/stats,5",
        ],
    );
    assert_eq!(r[0]["/ethdev/list"], json!([0, 1]));
    assert!(r[1]["/ethdev/stats"]["ipackets"].is_u64());
    assert_eq!(r[2]["/ethdev/info"]["name"], "net_null0");
    assert_eq!(r[3]["/ethdev/link_status"]["status"], "UP");
    assert_eq!(r[7], json!({"/ethdev/stats": null}));

    // The same JSON as the control socket (names, slots, bridges: counters move on).
    let mut c = RpcClient::connect(&sock).unwrap();
    let ports = c.call("show-ports", Value::Null).unwrap().unwrap();
    let pick = |v: &Value| -> Vec<(Value, Value, Value, Value)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].clone(),
                    p["slot"].clone(),
                    p["bridge"].clone(),
                    p["devargs"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(pick(&r[4]["/ferrovia/switch/ports"]), pick(&ports));
    let bridges = c.call("show-bridges", Value::Null).unwrap().unwrap();
    assert_eq!(
        r[5]["/ferrovia/switch/bridges"][0]["ports"],
        bridges[0]["ports"]
    );
    let pmds = c.call("show-pmd-stats", Value::Null).unwrap().unwrap();
    assert_eq!(
        r[6]["/ferrovia/switch/pmd_stats"].as_array().unwrap().len(),
        pmds.as_array().unwrap().len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_telemetry_keys_are_refused() {
    let dir = std::env::temp_dir().join(format!("fsw-telem-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bad.toml");
    std::fs::write(&config, "[telemetry]\nenable = true\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ferrovia-switch"))
        .args(["--config", config.to_str().unwrap(), "--print-config"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("enable"), "{err}");
    std::fs::write(&config, "[telemetry]\nmetrics = \"nowhere\"\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ferrovia-switch"))
        .args(["--config", config.to_str().unwrap(), "--print-config"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ADDR:PORT"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
