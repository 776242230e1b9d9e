//! VF requests through the daemon: `vf_requests` in a VF's file decides what the VF's own
//! control-queue requests get; `iplex update` changes it; `iplex show` counts them.

mod common;

use common::{Container, frame, start, wait_until};
use ferrovia_ethdev::MacAddr;

const NEW: [u8; 6] = [2, 0, 0, 0, 0xf0, 0x42];
const MAC1: [u8; 6] = [2, 0, 0, 0, 0xf0, 1];

#[test]
fn vf_requests_from_the_file_and_iplex() {
    let _s = common::serial();
    let c0 = r#"{"name":"c0","vfid":0,"macs":["02:00:00:00:f0:00"]}"#;
    let c1 = r#"{"name":"c1","vfid":1,"macs":["02:00:00:00:f0:01"]}"#;
    let d = start("vfreq", &[("c0", c0), ("c1", c1)], &[]);
    assert_eq!(d.show(0)["policy"]["vf_requests"], "deny", "the default");
    let mut v0 = Container::open(&d.vf_sock(0), ",cq=1");
    v0.wait_link();
    let mut v1 = Container::attach(&d.vf_sock(1));
    // Denied: the error at the VF, the policy unchanged, counted.
    let e = v0.port.set_mac(MacAddr(NEW)).unwrap_err().to_string();
    assert!(e.contains("VIRTIO_NET_ERR"), "{e}");
    let r = &d.show(0)["counters"]["requests"];
    assert_eq!(
        (r["total"].as_u64(), r["denied"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(d.show(0)["policy"]["macs"][0], "02:00:00:00:F0:00");
    // Allowed by the file, applied with iplex update: the VF's new MAC passes anti-spoof.
    d.write_config(
        "c0",
        r#"{"name":"c0","vfid":0,"macs":["02:00:00:00:f0:00"],"vf_requests":"allow"}"#,
    );
    let o = d.iplex(&["update", "c0"]);
    assert!(o.ok, "{o:?}");
    v0.port.set_mac(MacAddr(NEW)).expect("allowed");
    assert_eq!(d.show(0)["policy"]["macs"][0], "02:00:00:00:F0:42");
    let f = frame(MAC1, NEW, 1);
    v0.send_one(&f);
    assert_eq!(v1.recv_one(common::DEADLINE), Some(f));
    wait_until("the allowed request counted", || {
        d.show(0)["counters"]["requests"]["allowed"].as_u64() == Some(1)
    });
    let o = d.iplex(&["show", "0"]);
    assert!(
        o.stdout.contains("vf_requests allow")
            && o.stdout.contains("requests 2  allowed 1  denied 1"),
        "{}",
        o.stdout
    );
}
