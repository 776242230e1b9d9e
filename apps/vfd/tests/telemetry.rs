//! DPDK's `dpdk-telemetry.py` against the daemon's telemetry v2 socket: the uplink and the VFs
//! as ethdev ports, the per-cause drop counters in a VF's xstats, and
//! `/ferrovia/eswitch/vf,<vfid>` as `iplex show <vfid>` answers it.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Container, dropped, frame, start, telemetry_py, wait_until};
use serde_json::{Value, json};

/// Runs `dpdk-telemetry.py -f <prefix>` with `cmds`, one reply each.
fn ask(py: &str, prefix: &str, cmds: &[&str]) -> Vec<Value> {
    let mut c = Command::new("python3")
        .args([py, "-f", prefix])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all((cmds.join("\n") + "\n").as_bytes())
        .unwrap();
    let o = c.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let v: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        v.len(),
        cmds.len(),
        "{text} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    v
}

#[test]
fn dpdk_telemetry_reads_the_eswitch() {
    let Some(py) = telemetry_py() else {
        if std::env::var("FERROVIA_REQUIRE_DPDK").as_deref() == Ok("1") {
            panic!("dpdk-telemetry.py is not installed (apt-get install -y dpdk)");
        }
        eprintln!("skipped: dpdk-telemetry.py is not installed (apt-get install -y dpdk)");
        return;
    };
    let _s = common::serial();
    let prefix = format!("fvfd-telemetry-{}", std::process::id());
    let c0 = r#"{"name":"c0","vfid":0,"macs":["02:00:00:00:f0:00"]}"#;
    let d = start(
        "telemetry",
        &[("c0", c0)],
        &["--telemetry", "--file-prefix", &prefix],
    );
    // One spoofed frame from VF 0, so a per-cause drop counter is not zero.
    let mut c = Container::attach(&d.vf_sock(0));
    c.send(&frame([2, 0, 0, 0, 0xee, 1], [2, 0, 0, 0, 0x99, 0x99], 1));
    wait_until("the spoofed frame counted", || {
        dropped(&d.show(0), "tx", "mac_spoof") == 1
    });
    let r = ask(
        py,
        &prefix,
        &[
            "/ethdev/list",
            "/ethdev/stats,1",
            "/ethdev/xstats,1",
            "/ethdev/info,0",
            "/ethdev/info,1",
            "/ethdev/link_status,0",
            "/ethdev/link_status,1",
            "/ferrovia/eswitch/vf,0",
            "/ferrovia/eswitch/status",
            "/ethdev/stats,9",
            "/ferrovia/eswitch/vf,9",
        ],
    );
    assert_eq!(r[0]["/ethdev/list"], json!([0, 1, 2, 3, 4]));
    assert!(
        r[1]["/ethdev/stats"]["ipackets"].as_u64().unwrap() >= 1,
        "{}",
        r[1]
    );
    let x = &r[2]["/ethdev/xstats"];
    assert_eq!(x["vf_tx_dropped_mac_spoof"], 1, "{x}");
    assert_eq!(x["vf_tx_packets"], 0, "{x}");
    for cause in ["vlan_spoof", "disabled", "rate_limited", "queue_full"] {
        assert!(x[format!("vf_rx_dropped_{cause}")].is_u64(), "{cause}: {x}");
    }
    assert_eq!(r[3]["/ethdev/info"]["name"], "net_null0");
    assert_eq!(r[4]["/ethdev/info"]["name"], "net_vhost1");
    assert_eq!(r[5]["/ethdev/link_status"]["status"], "UP");
    assert_eq!(
        r[6]["/ethdev/link_status"]["status"], "UP",
        "VF 0 has a container"
    );
    let vf = &r[7]["/ferrovia/eswitch/vf"];
    let shown = d.show(0);
    assert_eq!(vf["name"], "c0");
    assert_eq!(vf["policy"], shown["policy"]);
    assert_eq!(dropped(vf, "tx", "mac_spoof"), 1);
    assert_eq!(r[8]["/ferrovia/eswitch/status"]["num_vfs"], 4);
    assert_eq!(r[9], json!({"/ethdev/stats": null}));
    assert_eq!(r[10], json!({"/ferrovia/eswitch/vf": null}));
}
