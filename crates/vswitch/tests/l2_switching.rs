//! L2 switching through ferrovia-switch's engine, with containers (virtio-user ports in this
//! process) on vhost-user ports: learning, flooding, unicast, VLAN access/trunk with tag
//! push/pop and isolation, MAC moves, aging, the FDB limit, malformed frames, and ports added
//! and removed under traffic.

mod support;

use std::time::Duration;

use support::*;

const W: Duration = Duration::from_millis(300);

fn drops(sw: &ferrovia_vswitch::Switch, port: &str, cause: &str) -> u64 {
    sw.ports()
        .into_iter()
        .find(|p| p.name == port)
        .and_then(|p| p.stats.drops.get(cause).copied())
        .unwrap_or(0)
}

#[test]
fn learning_flooding_and_unicast() {
    let dir = TempDir::new("l2");
    let sw = switch(
        (0..3)
            .map(|i| vhost_port(&dir, "br0", &format!("p{i}"), i))
            .collect(),
        |_| {},
    );
    let mut c: Vec<Container> = (0..3)
        .map(|i| Container::attach(&dir.sock(&format!("p{i}"))))
        .collect();
    wait_links(&sw);
    // Unknown destination: flooded to p1 and p2, byte for byte.
    let f = frame(mac(2), mac(1), None, 60, 1);
    c[0].send(std::slice::from_ref(&f));
    assert_eq!(c[1].recv_n(1, W), vec![f.clone()]);
    assert_eq!(c[2].recv_n(1, W), vec![f.clone()]);
    assert!(
        c[0].recv_for(Duration::from_millis(50)).is_empty(),
        "never back to the sender"
    );
    // mac(2) answers: unicast to p0 only (mac(1) was learned).
    let r = frame(mac(1), mac(2), None, 1514, 2);
    std::thread::sleep(Duration::from_millis(20)); // learning is applied within ~1 ms
    c[1].send(std::slice::from_ref(&r));
    assert_eq!(c[0].recv_n(1, W), vec![r]);
    assert!(
        c[2].recv_for(Duration::from_millis(100)).is_empty(),
        "p2 must not see unicast to mac(1)"
    );
    // Now both are learned: a burst of 64 from p0 to mac(2) all arrive at p1 only, in order.
    std::thread::sleep(Duration::from_millis(20));
    let burst: Vec<Vec<u8>> = (0..64)
        .map(|i| frame(mac(2), mac(1), None, 60 + i, 100 + i as u32))
        .collect();
    c[0].send(&burst);
    assert_eq!(c[1].recv_n(64, W), burst);
    assert!(c[2].recv_for(Duration::from_millis(100)).is_empty());
    // Broadcast floods.
    let b = frame(BCAST, mac(3), None, 60, 7);
    c[2].send(std::slice::from_ref(&b));
    assert_eq!(c[0].recv_n(1, W), vec![b.clone()]);
    assert_eq!(c[1].recv_n(1, W), vec![b]);
    std::thread::sleep(Duration::from_millis(20));
    let fdb = sw.fdb("br0").unwrap();
    assert_eq!(fdb.len(), 3, "{fdb:?}");
    let br = &sw.bridges()[0];
    assert_eq!(br.counters.learned, 3);
    // With every address learned the generation stays put: a burst fills the flow cache.
    c[0].send(&burst[..8]);
    assert_eq!(c[1].recv_n(8, W).len(), 8);
    let flows = sw.dump_flows();
    assert!(
        flows[0]
            .1
            .iter()
            .any(|f| f.action == "output:1" && f.hits > 0),
        "the p0→mac(2) flow is cached: {flows:?}"
    );
    let p0 = sw.ports().into_iter().find(|p| p.name == "p0").unwrap();
    assert_eq!(p0.stats.rx_packets, 73);
    assert_eq!(p0.stats.rx_flooded, 1);
    sw.shutdown();
}

#[test]
fn vlan_access_and_trunk_isolation() {
    let dir = TempDir::new("vlan");
    let mut a10 = vhost_port(&dir, "br0", "a10", 0);
    a10.tag = Some(10);
    let mut b10 = vhost_port(&dir, "br0", "b10", 1);
    b10.tag = Some(10);
    let mut a20 = vhost_port(&dir, "br0", "a20", 2);
    a20.tag = Some(20);
    let mut trunk = vhost_port(&dir, "br0", "trunk", 3);
    trunk.trunks = vec![10, 20];
    let sw = switch(vec![a10, b10, a20, trunk], |_| {});
    let mut c: Vec<Container> = ["a10", "b10", "a20", "trunk"]
        .iter()
        .map(|n| Container::attach(&dir.sock(n)))
        .collect();
    wait_links(&sw);
    // A broadcast on VLAN 10 (access port a10): b10 gets it untagged, the trunk tagged 10,
    // a20 (VLAN 20) nothing.
    let f = frame(BCAST, mac(1), None, 60, 1);
    c[0].send(std::slice::from_ref(&f));
    assert_eq!(c[1].recv_n(1, W), vec![f.clone()]);
    assert_eq!(c[3].recv_n(1, W), vec![tag(&f, 10)]);
    assert!(
        c[2].recv_for(Duration::from_millis(150)).is_empty(),
        "VLAN 10 leaked to VLAN 20"
    );
    // From the trunk tagged 20: a20 gets it untagged; a10/b10 nothing.
    let g = frame(BCAST, mac(4), Some(20), 64, 2);
    c[3].send(std::slice::from_ref(&g));
    assert_eq!(c[2].recv_n(1, W), vec![untag(&g)]);
    assert!(c[0].recv_for(Duration::from_millis(100)).is_empty());
    assert!(c[1].recv_for(Duration::from_millis(50)).is_empty());
    // The same MAC on two VLANs is two FDB entries: unicast to mac(1) on VLAN 20 floods
    // within VLAN 20 only (mac(1) is known on VLAN 10 only).
    let h = frame(mac(1), mac(4), Some(20), 64, 3);
    c[3].send(std::slice::from_ref(&h));
    assert_eq!(c[2].recv_n(1, W), vec![untag(&h)]);
    assert!(c[0].recv_for(Duration::from_millis(100)).is_empty());
    // Tagged frames on an access port, and VLANs a trunk does not carry, are dropped and counted.
    c[0].send(&[frame(BCAST, mac(1), Some(10), 64, 4)]);
    c[3].send(&[frame(BCAST, mac(4), Some(30), 64, 5)]);
    std::thread::sleep(Duration::from_millis(100));
    assert!(c[1].recv_for(Duration::from_millis(50)).is_empty());
    assert!(c[2].recv_for(Duration::from_millis(50)).is_empty());
    assert_eq!(drops(&sw, "a10", "vlan_ingress"), 1);
    assert_eq!(drops(&sw, "trunk", "vlan_ingress"), 1);
    // Counters prove isolation: a20 sent nothing it was not meant to.
    let a20 = sw.ports().into_iter().find(|p| p.name == "a20").unwrap();
    assert_eq!(
        a20.stats.tx_packets, 2,
        "a20 received exactly the two VLAN-20 frames"
    );
    // Changing a port's VLAN at run time: a20 joins VLAN 10 and now gets its broadcasts.
    sw.set_port_vlan(
        "a20",
        &ferrovia_vswitch::vlan::VlanConfig {
            tag: Some(10),
            ..Default::default()
        },
    )
    .unwrap();
    sw.barrier();
    c[0].send(std::slice::from_ref(&f));
    assert_eq!(c[2].recv_n(1, W), vec![f]);
    sw.shutdown();
}

#[test]
fn mac_move_aging_and_fdb_limit() {
    let dir = TempDir::new("move");
    let sw = switch(
        (0..3)
            .map(|i| vhost_port(&dir, "br0", &format!("p{i}"), i))
            .collect(),
        |c| {
            c.bridge[0].fdb_limit = 50;
            c.bridge[0].aging_secs = 1;
        },
    );
    let mut c: Vec<Container> = (0..3)
        .map(|i| Container::attach(&dir.sock(&format!("p{i}"))))
        .collect();
    wait_links(&sw);
    c[0].send(&[frame(BCAST, mac(1), None, 60, 1)]);
    c[1].recv_n(1, W);
    c[2].recv_n(1, W);
    std::thread::sleep(Duration::from_millis(20));
    // mac(1) moves from p0 to p1: traffic to mac(1) follows it.
    c[1].send(&[frame(BCAST, mac(1), None, 60, 2)]);
    c[0].recv_n(1, W);
    c[2].recv_n(1, W);
    std::thread::sleep(Duration::from_millis(20));
    let u = frame(mac(1), mac(9), None, 60, 3);
    c[2].send(std::slice::from_ref(&u));
    assert_eq!(c[1].recv_n(1, W), vec![u]);
    assert!(
        c[0].recv_for(Duration::from_millis(100)).is_empty(),
        "stale entry used after the move"
    );
    assert_eq!(sw.bridges()[0].counters.moved, 1);
    // A flood of random sources: the FDB stops at its limit; forwarding goes on.
    let flood: Vec<Vec<u8>> = (0..2000u32)
        .map(|i| {
            let b = i.to_be_bytes();
            frame(mac(1), [0x02, 0xbb, b[0], b[1], b[2], b[3]], None, 60, i)
        })
        .collect();
    for chunk in flood.chunks(64) {
        c[0].send(chunk);
        c[1].recv_for(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(50));
    c[1].recv_for(Duration::from_millis(200));
    let br = &sw.bridges()[0];
    assert_eq!(br.fdb_entries, 50, "the limit holds");
    assert!(br.counters.fdb_full > 0);
    // Aging: with aging_secs = 1, everything goes within ~3 s of silence.
    let t0 = std::time::Instant::now();
    while sw.bridges()[0].fdb_entries > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "entries never aged out"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(sw.bridges()[0].counters.aged >= 50);
    sw.shutdown();
}

#[test]
fn malformed_frames_are_counted_and_harmless() {
    let dir = TempDir::new("bad");
    let sw = switch(
        (0..2)
            .map(|i| vhost_port(&dir, "br0", &format!("p{i}"), i))
            .collect(),
        |_| {},
    );
    let mut c: Vec<Container> = (0..2)
        .map(|i| Container::attach(&dir.sock(&format!("p{i}"))))
        .collect();
    wait_links(&sw);
    let mut qinq = frame(BCAST, mac(1), Some(10), 64, 1);
    qinq[12..14].copy_from_slice(&0x88a8u16.to_be_bytes());
    let dbl = tag(&frame(BCAST, mac(1), Some(10), 64, 2), 20);
    let mut mcast_src = frame(BCAST, mac(1), None, 60, 3);
    mcast_src[6] |= 1;
    c[0].send(&[
        vec![0xff; 10],                      // runt
        frame(BCAST, mac(1), None, 1600, 4), // oversize for a 1522-byte port
        qinq,
        dbl,
        mcast_src,
    ]);
    std::thread::sleep(Duration::from_millis(100));
    assert!(c[1].recv_for(Duration::from_millis(100)).is_empty());
    assert_eq!(drops(&sw, "p0", "runt"), 1);
    assert_eq!(drops(&sw, "p0", "oversize"), 1);
    assert_eq!(drops(&sw, "p0", "stacked_vlan"), 2);
    assert_eq!(drops(&sw, "p0", "multicast_source"), 1);
    // And the switch still works.
    let ok = frame(BCAST, mac(1), None, 60, 9);
    c[0].send(std::slice::from_ref(&ok));
    assert_eq!(c[1].recv_n(1, W), vec![ok]);
    sw.shutdown();
}

#[test]
fn ports_added_and_removed_under_traffic() {
    let dir = TempDir::new("hot");
    let sw = switch(
        (0..2)
            .map(|i| vhost_port(&dir, "br0", &format!("p{i}"), i))
            .collect(),
        |_| {},
    );
    let mut c0 = Container::attach(&dir.sock("p0"));
    let mut c1 = Container::attach(&dir.sock("p1"));
    wait_links(&sw);
    for round in 0..5u32 {
        let name = format!("x{round}");
        sw.add_port(&vhost_port(&dir, "br0", &name, 10 + round as usize))
            .unwrap();
        let mut cx = Container::attach(&dir.sock(&name));
        wait_links(&sw);
        // Traffic p0 → broadcast reaches p1 and the new port while it exists.
        let f = frame(BCAST, mac(1), None, 60, round);
        c0.send(std::slice::from_ref(&f));
        assert_eq!(c1.recv_n(1, W), vec![f.clone()]);
        assert_eq!(cx.recv_n(1, W), vec![f], "round {round}: {:#?}", sw.ports());
        cx.send(&[frame(BCAST, mac(50 + round as u8), None, 60, round)]);
        c0.recv_n(1, W);
        c1.recv_n(1, W);
        sw.del_port(&name).unwrap();
        drop(cx);
        assert!(
            sw.fdb("br0").unwrap().iter().all(|e| e.port != name),
            "FDB entries of a deleted port go"
        );
    }
    assert_eq!(sw.ports().len(), 2);
    let e = sw.del_port("nope").unwrap_err().to_string();
    assert!(
        e.contains("no port named nope") && e.contains("p0, p1"),
        "{e}"
    );
    let e = sw
        .add_port(&vhost_port(&dir, "br9", "y", 30))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no bridge named br9"), "{e}");
    let e = sw.del_bridge("br0").unwrap_err().to_string();
    assert!(e.contains("still has ports (p0, p1)"), "{e}");
    // Every mbuf comes back to the switch's pool once the ports are gone and the PMD threads
    // have returned their caches.
    sw.del_port("p0").unwrap();
    sw.del_port("p1").unwrap();
    drop((c0, c1));
    sw.shutdown();
    let pool = sw.pool();
    assert_eq!(pool.available(), pool.count(), "mbufs leaked");
}
