//! Restarts under traffic: the switch connects to the containers (its ports have client=1,
//! the containers' virtio-user listens with server=1), so a switch restart and a container
//! restart both end with every port forwarding again.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn client_port(dir: &TempDir, name: &str, i: usize) -> ferrovia_vswitch::config::PortConfig {
    let mut p = vhost_port(dir, "br0", name, i);
    p.devargs.push_str(",client=1");
    p
}

/// Sends broadcasts from `a` until `b` receives one (or 10 s pass).
fn flows(a: &mut Container, b: &mut Container, seq: u32) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        let f = frame(BCAST, mac(1), None, 60, seq);
        a.send(std::slice::from_ref(&f));
        if b.recv_for(Duration::from_millis(20)).contains(&f) {
            return true;
        }
    }
    false
}

#[test]
fn switch_and_container_restarts() {
    let dir = TempDir::new("restart");
    let mut c0 = Container::listen(&dir.sock("p0"));
    let mut c1 = Container::listen(&dir.sock("p1"));
    let ports = || vec![client_port(&dir, "p0", 0), client_port(&dir, "p1", 1)];
    let sw = switch(ports(), |_| {});
    c0.wait_link();
    c1.wait_link();
    assert!(flows(&mut c0, &mut c1, 1));
    // Switch restart: stop it, start a new one on the same configuration.
    for round in 0..2u32 {
        let t0 = Instant::now();
        sw_restart(&sw);
        let sw2 = switch(ports(), |_| {});
        assert!(
            flows(&mut c0, &mut c1, 10 + round),
            "no traffic after switch restart {round}"
        );
        assert!(
            flows(&mut c1, &mut c0, 20 + round),
            "no traffic back after switch restart {round}"
        );
        eprintln!(
            "switch restart {round}: forwarding again after {:?}",
            t0.elapsed()
        );
        assert!(sw2.ports().iter().all(|p| p.link_up), "a port stayed down");
        // Container restart: c1 goes away and comes back on the same socket.
        drop(c1);
        std::thread::sleep(Duration::from_millis(100));
        c1 = Container::listen(&dir.sock("p1"));
        c1.wait_link();
        assert!(
            flows(&mut c0, &mut c1, 30 + round),
            "no traffic after container restart {round}"
        );
        sw2.shutdown();
    }
    drop(sw);
}

fn sw_restart(sw: &ferrovia_vswitch::Switch) {
    sw.shutdown();
}
