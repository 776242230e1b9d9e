//! DPDK's `dpdk-telemetry.py` against the daemon's telemetry v2 socket: the uplink and the VFs
//! as ethdev ports, the per-cause drop counters in a VF's xstats, and
//! `/ferrovia/eswitch/vf,<vfid>` as `iplex show <vfid>` answers it.

mod common;

use common::{Container, dropped, frame, start, wait_until};
use ferrovia_testkit::dpdk::{telemetry_ask as ask, telemetry_py};
use serde_json::json;

#[test]
fn dpdk_telemetry_reads_the_eswitch() {
    let Some(py) = telemetry_py("dpdk_telemetry_reads_the_eswitch") else {
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
    c.send_one(&frame([2, 0, 0, 0, 0xee, 1], [2, 0, 0, 0, 0x99, 0x99], 1));
    wait_until("the spoofed frame counted", || {
        dropped(&d.show(0), "tx", "mac_spoof") == 1
    });
    let r = ask(
        &py,
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
