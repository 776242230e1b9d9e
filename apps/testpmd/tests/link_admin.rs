//! testpmd's `set link-up|link-down port N` (DPDK's `rte_eth_dev_set_link_up/down`): a vhost
//! port's peer, a container's virtio-user port, sees its link go down and up; a driver that
//! cannot tell its peer, and a port that does not exist, get their messages.

mod harness;

use std::time::{Duration, Instant};

use ferrovia_testkit::{Container, Interactive, TempDir};
use harness::{TESTPMD, serial};

/// Waits (up to 20 s: testpmd, the container and the vhost session share two CPUs) for `ok`.
fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < Duration::from_secs(20), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn set_link_down_and_up_reach_the_peer() {
    let _g = serial();
    let dir = TempDir::new("linkadm");
    let vdev = format!("net_vhost0,iface={}", dir.sock("v").display());
    let mut tp = Interactive::start(
        TESTPMD,
        &[
            "-l",
            "0-1",
            "--no-pci",
            "--vdev",
            &vdev,
            "--vdev",
            "net_null0",
            "--",
            "-i",
        ],
    );
    tp.wait_for("testpmd> ", 1);
    let c = Container::attach(&dir.sock("v"));
    let mut prompts = 1;
    let mut cmd = |tp: &mut Interactive, line: &str| -> String {
        let before = tp.output().len();
        tp.send(line);
        prompts += 1;
        tp.wait_for("testpmd> ", prompts)[before..].to_string()
    };
    cmd(&mut tp, "set link-down port 0");
    wait_for("the container's link down", || !c.port.link().up);
    let info = cmd(&mut tp, "show port info 0");
    assert!(info.contains("Link status: down"), "{info}");
    cmd(&mut tp, "set link-up port 0");
    wait_for("the container's link up", || c.port.link().up);
    let info = cmd(&mut tp, "show port info 0");
    assert!(info.contains("Link status: up"), "{info}");
    let out = cmd(&mut tp, "set link-down port 1");
    assert!(out.contains("cannot set its link down"), "{out}");
    let out = cmd(&mut tp, "set link-down port 7");
    assert!(out.contains('7'), "{out}");
    let out = cmd(&mut tp, "set link-down port x");
    assert!(out.contains("is not a port number"), "{out}");
    tp.send("quit");
    let (_, out) = tp.wait();
    assert!(out.contains("Bye"), "{out}");
}
