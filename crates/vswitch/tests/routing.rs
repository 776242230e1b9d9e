//! The vRouter between two subnets on two VLANs of one bridge: ARP for the router, ICMP echo
//! on its address, next-hop resolution, TTL decrement with a correct checksum, static routes,
//! and the drops (TTL expired, no route, bad header) counted.

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use ferrovia_route::{arp, ipv4};
use ferrovia_vswitch::config::RouterInterfaceConfig;
use support::*;

const W: Duration = Duration::from_millis(400);
const GW10: [u8; 6] = [0x02, 0xfe, 0, 0, 0, 0x10];
const GW20: [u8; 6] = [0x02, 0xfe, 0, 0, 0, 0x20];

fn ip(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().unwrap().octets()
}

/// An IPv4 frame (untagged) with protocol `proto`, TTL `ttl` and `payload`.
fn ipv4_frame(
    dst: [u8; 6],
    src: [u8; 6],
    sip: &str,
    dip: &str,
    ttl: u8,
    proto: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(dst);
    f.extend(src);
    f.extend(0x0800u16.to_be_bytes());
    let total = 20 + payload.len();
    let mut h = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0x12,
        0x34,
        0x40,
        0,
        ttl,
        proto,
        0,
        0,
    ];
    h.extend(ip(sip));
    h.extend(ip(dip));
    let c = ipv4::header_checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend(h);
    f.extend(payload);
    while f.len() < 60 {
        f.push(0);
    }
    f
}

fn udp(n: u32) -> Vec<u8> {
    let mut p = vec![0x30, 0x39, 0x30, 0x3a, 0, 16, 0, 0]; // ports 12345 → 12346, no checksum
    p.extend(n.to_be_bytes());
    p.extend([0xde, 0xad, 0xbe, 0xef]);
    p
}

fn icmp_echo(id: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![8, 0, 0, 0];
    p.extend(id.to_be_bytes());
    p.extend(seq.to_be_bytes());
    p.extend(b"ferrovia-ping-payload");
    let c = ipv4::internet_checksum(&p);
    p[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

fn arp_request(src: [u8; 6], sip: &str, tip: &str) -> Vec<u8> {
    let mut b = [0u8; 64];
    let n = arp::build_request(
        &mut b,
        None,
        src,
        sip.parse().unwrap(),
        tip.parse().unwrap(),
    )
    .unwrap();
    b[..n].to_vec()
}

fn arp_reply(src: [u8; 6], sip: &str, dst: [u8; 6], dip: &str) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(dst);
    f.extend(src);
    f.extend(0x0806u16.to_be_bytes());
    f.extend([0, 1, 8, 0, 6, 4, 0, 2]);
    f.extend(src);
    f.extend(ip(sip));
    f.extend(dst);
    f.extend(ip(dip));
    while f.len() < 60 {
        f.push(0);
    }
    f
}

fn drops(sw: &ferrovia_vswitch::Switch, port: &str, cause: &str) -> u64 {
    sw.ports()
        .into_iter()
        .find(|p| p.name == port)
        .and_then(|p| p.stats.drops.get(cause).copied())
        .unwrap_or(0)
}

#[test]
fn routes_between_two_vlans() {
    let dir = TempDir::new("route");
    let mut a = vhost_port(&dir, "br0", "a", 0);
    a.tag = Some(10);
    let mut b = vhost_port(&dir, "br0", "b", 1);
    b.tag = Some(20);
    let sw = switch(vec![a, b], |c| {
        for (name, vlan, addr, mac) in [
            ("gw10", 10, "10.0.1.1/24", GW10),
            ("gw20", 20, "10.0.2.1/24", GW20),
        ] {
            c.router_interface.push(RouterInterfaceConfig {
                name: name.into(),
                bridge: "br0".into(),
                vlan,
                address: addr.into(),
                mac: Some(ferrovia_ethdev::MacAddr(mac).to_string()),
            });
        }
        c.route.push(ferrovia_vswitch::config::RouteConfig {
            prefix: "10.9.0.0/16".into(),
            via: "10.0.2.2".into(),
        });
    });
    let (ha, hb) = (mac(1), mac(2));
    let mut ca = Container::attach(&dir.sock("a"));
    let mut cb = Container::attach(&dir.sock("b"));
    wait_links(&sw);

    // 1. ARP for the gateway: answered by the router, field by field.
    ca.send(&[arp_request(ha, "10.0.1.2", "10.0.1.1")]);
    let r = ca.recv_n(1, W);
    assert_eq!(r.len(), 1, "no ARP reply");
    let p = arp::parse(&r[0], 14).unwrap();
    assert_eq!(p.op, arp::ArpOp::Reply);
    assert_eq!(
        (p.sender_mac, p.sender_ip),
        (GW10, "10.0.1.1".parse().unwrap())
    );
    assert_eq!(
        (p.target_mac, p.target_ip),
        (ha, "10.0.1.2".parse().unwrap())
    );
    assert_eq!(&r[0][0..12], &[ha, GW10].concat()[..]);
    // The request was flooded on VLAN 10 only: b (VLAN 20) saw nothing.
    assert!(cb.recv_for(Duration::from_millis(100)).is_empty());

    // 2. ICMP echo to the router's address.
    let echo = icmp_echo(7, 1);
    ca.send(&[ipv4_frame(GW10, ha, "10.0.1.2", "10.0.1.1", 64, 1, &echo)]);
    let r = ca.recv_n(1, W);
    assert_eq!(r.len(), 1, "no echo reply");
    let h = ipv4::Ipv4Header::parse(&r[0], 14).expect("valid IP header and checksum");
    assert_eq!(
        (h.src_addr(), h.dst_addr()),
        ("10.0.1.1".parse().unwrap(), "10.0.1.2".parse().unwrap())
    );
    let icmp = h.payload();
    assert_eq!(icmp[0], 0, "echo reply type");
    assert_eq!(ipv4::internet_checksum(icmp), 0, "ICMP checksum verifies");
    assert_eq!(&icmp[4..], &echo[4..], "id, seq and payload kept");
    assert_eq!(&r[0][0..12], &[ha, GW10].concat()[..]);

    // 3. A → B across the router: the first packet makes the router ARP for B.
    let pkt = ipv4_frame(GW10, ha, "10.0.1.2", "10.0.2.2", 64, 17, &udp(1));
    ca.send(std::slice::from_ref(&pkt));
    let r = cb.recv_n(1, W);
    assert_eq!(r.len(), 1, "no ARP request towards B");
    let q = arp::parse(&r[0], 14).unwrap();
    assert_eq!(q.op, arp::ArpOp::Request);
    assert_eq!(
        (q.sender_mac, q.target_ip),
        (GW20, "10.0.2.2".parse().unwrap())
    );
    assert_eq!(drops(&sw, "a", "arp_miss"), 1);
    cb.send(&[arp_reply(hb, "10.0.2.2", GW20, "10.0.2.1")]);
    std::thread::sleep(Duration::from_millis(50));
    ca.send(std::slice::from_ref(&pkt));
    let r = cb.recv_n(1, W);
    assert_eq!(r.len(), 1, "routed packet did not arrive");
    let got = &r[0];
    assert_eq!(
        &got[0..12],
        &[hb, GW20].concat()[..],
        "MACs rewritten for the next hop"
    );
    let h =
        ipv4::Ipv4Header::parse(got, 14).expect("valid header and checksum after TTL decrement");
    assert_eq!(h.ttl(), 63);
    assert_eq!(got[23], pkt[23], "protocol kept");
    assert_eq!(&got[14..22], &pkt[14..22]);
    assert_eq!(&got[26..], &pkt[26..], "addresses and payload kept");

    // The way back was gleaned from A's packet: B → A works at once, TTL 64 → 63.
    let back = ipv4_frame(GW20, hb, "10.0.2.2", "10.0.1.2", 64, 17, &udp(2));
    cb.send(std::slice::from_ref(&back));
    let r = ca.recv_n(1, W);
    assert_eq!(r.len(), 1, "return path");
    assert_eq!(ipv4::Ipv4Header::parse(&r[0], 14).unwrap().ttl(), 63);

    // 4. A static route through B.
    ca.send(&[ipv4_frame(
        GW10,
        ha,
        "10.0.1.2",
        "10.9.3.4",
        64,
        17,
        &udp(3),
    )]);
    let r = cb.recv_n(1, W);
    assert_eq!(r.len(), 1, "static route");
    assert_eq!(&r[0][0..6], &hb);
    let routes = sw.routes();
    assert_eq!(routes["routes"].as_array().unwrap().len(), 3, "{routes}");
    assert!(
        routes["neighbours"].as_array().unwrap().len() >= 2,
        "{routes}"
    );

    // 5. Drops: TTL 1, no route, bad header checksum; nothing reaches B.
    ca.send(&[ipv4_frame(GW10, ha, "10.0.1.2", "10.0.2.2", 1, 17, &udp(4))]);
    ca.send(&[ipv4_frame(
        GW10,
        ha,
        "10.0.1.2",
        "192.168.7.7",
        64,
        17,
        &udp(5),
    )]);
    let mut bad = ipv4_frame(GW10, ha, "10.0.1.2", "10.0.2.2", 64, 17, &udp(6));
    bad[24] ^= 0xff;
    ca.send(&[bad]);
    assert!(cb.recv_for(Duration::from_millis(150)).is_empty());
    assert_eq!(drops(&sw, "a", "ttl_expired"), 1);
    assert_eq!(drops(&sw, "a", "no_route"), 1);
    assert_eq!(drops(&sw, "a", "bad_l3"), 1);

    // 6. Routes change at run time: deleting the static route stops it.
    sw.del_route("10.9.0.0/16").unwrap();
    ca.send(&[ipv4_frame(
        GW10,
        ha,
        "10.0.1.2",
        "10.9.3.4",
        64,
        17,
        &udp(7),
    )]);
    assert!(cb.recv_for(Duration::from_millis(150)).is_empty());
    assert_eq!(drops(&sw, "a", "no_route"), 2);
    let e = sw
        .add_route("10.8.0.1/16", "10.0.2.2")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("host bits set") && e.contains("10.8.0.0/16"),
        "{e}"
    );
    let e = sw
        .add_route("10.8.0.0/16", "172.16.0.1")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not on the subnet of any router interface"),
        "{e}"
    );
    sw.shutdown();
}
