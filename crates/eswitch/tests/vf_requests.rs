//! VF → PF requests over the virtio-net control queue, proven on traffic: containers
//! (virtio-user ports with `cq=1` in this process) on VF sockets opened with `ctrl-vq=1` ask
//! for a MAC, receive modes and VLANs; the PF's `vf_requests` policy grants or refuses them,
//! and what the VFs send and receive shows which.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ferrovia_eswitch::policy::DropCause;
use ferrovia_eswitch::veb::{Eswitch, EswitchConfig, VfSpec, cause_index};
use ferrovia_eswitch::vfconfig::{Limits, RequestPolicy, VfConfig};
use ferrovia_ethdev::MacAddr;
use ferrovia_testkit::{Container, TempDir};

const MAC0: [u8; 6] = [2, 0, 0, 0, 0xf0, 0];
const MAC1: [u8; 6] = [2, 0, 0, 0, 0xf0, 1];
const NEW0: [u8; 6] = [2, 0, 0, 0, 0xf0, 0x99];
const REMOTE: [u8; 6] = [2, 0, 0, 0, 0xee, 1];
const UNKNOWN: [u8; 6] = [2, 0, 0, 0, 0xdd, 1];
const MCAST: [u8; 6] = [1, 0, 0x5e, 0, 0, 7];
/// How long a negative check waits for a frame that must not come.
const T: Duration = Duration::from_millis(200);

fn frame(dst: [u8; 6], src: [u8; 6], vid: Option<u16>, seq: u8) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(dst);
    f.extend(src);
    if let Some(v) = vid {
        f.extend(0x8100u16.to_be_bytes());
        f.extend(v.to_be_bytes());
    }
    f.extend(0x88b5u16.to_be_bytes());
    f.push(seq);
    f.resize(if vid.is_some() { 104 } else { 100 }, seq);
    f
}

fn vf(json: &str) -> VfConfig {
    VfConfig::parse(
        json,
        "test",
        &Limits {
            max_vfs: 4,
            line_rate_mbps: 10_000.0,
        },
    )
    .unwrap()
}

/// One test at a time: each switch thread polls without pause (2 shared cores).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct World {
    _serial: std::sync::MutexGuard<'static, ()>,
    _dir: TempDir,
    sw: Eswitch,
    uplink: Container,
    vfs: Vec<Container>,
}

fn world(tag: &str, configs: &[&str]) -> World {
    let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = TempDir::new(tag);
    let cfg = EswitchConfig {
        uplink: format!("net_vhost0,iface={}", dir.sock("uplink").display()),
        vfs: configs
            .iter()
            .enumerate()
            .map(|(i, c)| VfSpec {
                devargs: format!(
                    "net_vhost{},iface={},ctrl-vq=1",
                    i + 1,
                    dir.sock(&format!("vf{i}")).display()
                ),
                config: vf(c),
                enabled: true,
            })
            .collect(),
        tx_loopback: true,
        mbufs: 8192,
    };
    let sw = Eswitch::start(&cfg).unwrap();
    let uplink = Container::attach(&dir.sock("uplink"));
    let vfs = (0..configs.len())
        .map(|i| {
            let c = Container::open(&dir.sock(&format!("vf{i}")), ",cq=1");
            c.wait_link();
            c
        })
        .collect();
    World {
        _serial: serial,
        _dir: dir,
        sw,
        uplink,
        vfs,
    }
}

fn allow(vfid: u32) -> String {
    format!(
        r#"{{"name":"v{vfid}","vfid":{vfid},"macs":["02:00:00:00:f0:0{vfid}"],"vf_requests":"allow"}}"#
    )
}
fn deny(vfid: u32) -> String {
    format!(r#"{{"name":"v{vfid}","vfid":{vfid},"macs":["02:00:00:00:f0:0{vfid}"]}}"#)
}

fn count(w: &World, vf: u32) -> (u64, u64, u64, u64, u64) {
    let c = w.sw.counters(vf).unwrap();
    (
        c.requests.load(Ordering::Relaxed),
        c.req_allowed.load(Ordering::Relaxed),
        c.req_denied.load(Ordering::Relaxed),
        c.req_rate_limited.load(Ordering::Relaxed),
        c.req_malformed.load(Ordering::Relaxed),
    )
}

#[test]
fn allowed_mac_change_moves_anti_spoof_and_delivery() {
    let (a, d) = (allow(0), deny(1));
    let mut w = world("rq-allow", &[&a, &d]);
    // Before: frames from NEW0 are spoofed.
    w.vfs[0].send(&[frame(REMOTE, NEW0, None, 1)]);
    assert!(w.uplink.recv_for(T).is_empty());
    w.vfs[0].port.set_mac(MacAddr(NEW0)).expect("allowed");
    assert_eq!(w.vfs[0].port.info().mac, MacAddr(NEW0));
    assert_eq!(w.sw.config(0).unwrap().macs, vec![MacAddr(NEW0)]);
    assert_eq!(count(&w, 0), (1, 1, 0, 0, 0));
    // Now frames from NEW0 pass anti-spoof, frames from the old MAC do not.
    let f = frame(REMOTE, NEW0, None, 2);
    w.vfs[0].send(&[f.clone(), frame(REMOTE, MAC0, None, 3)]);
    assert_eq!(w.uplink.expect(1), vec![f]);
    // Frames to NEW0 reach VF 0 (from the uplink and from VF 1).
    let g = frame(NEW0, REMOTE, None, 4);
    w.uplink.send(std::slice::from_ref(&g));
    assert_eq!(w.vfs[0].expect(1), vec![g]);
    let h = frame(NEW0, MAC1, None, 5);
    w.vfs[1].send(std::slice::from_ref(&h));
    assert_eq!(w.vfs[0].expect(1), vec![h]);
}

#[test]
fn denied_mac_change_leaves_the_policy_unchanged() {
    let d = deny(0);
    let mut w = world("rq-deny", &[&d]);
    let before = w.sw.config(0).unwrap();
    let mac_before = w.vfs[0].port.info().mac;
    assert_eq!(before.vf_requests, RequestPolicy::Deny);
    let e = w.vfs[0]
        .port
        .set_mac(MacAddr(NEW0))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("refused the request (VIRTIO_NET_ERR)") && e.contains("MAC_ADDR_SET"),
        "{e}"
    );
    assert_eq!(w.vfs[0].port.info().mac, mac_before, "the VF keeps its MAC");
    assert_eq!(
        w.sw.config(0).unwrap(),
        before,
        "the PF's policy is unchanged"
    );
    assert_eq!(count(&w, 0), (1, 0, 1, 0, 0));
    // Frames from the requested MAC are still spoofed, and counted.
    let spoofed = w.sw.counters(0).unwrap().tx_dropped[cause_index(DropCause::MacSpoof)]
        .load(Ordering::Relaxed);
    w.vfs[0].send(&[frame(REMOTE, NEW0, None, 1)]);
    assert!(w.uplink.recv_for(T).is_empty());
    let t0 = Instant::now();
    while w.sw.counters(0).unwrap().tx_dropped[cause_index(DropCause::MacSpoof)]
        .load(Ordering::Relaxed)
        != spoofed + 1
    {
        assert!(t0.elapsed() < Duration::from_secs(5), "spoof not counted");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Its own MAC still works.
    let f = frame(REMOTE, MAC0, None, 2);
    w.vfs[0].send(std::slice::from_ref(&f));
    assert_eq!(w.uplink.expect(1), vec![f]);
}

/// Promiscuous, all-multicast and a VLAN asked for over the control queue: granted, they
/// change what arrives; denied, nothing changes.
fn rx_modes(tag: &str, cfg: &str, granted: bool) {
    let mut w = world(tag, &[cfg]);
    let before = w.sw.config(0).unwrap();
    let probe = |w: &mut World, seq: u8| -> (bool, bool, bool) {
        let u = frame(UNKNOWN, REMOTE, None, seq);
        let m = frame(MCAST, REMOTE, None, seq + 1);
        let v = frame(MAC0, REMOTE, Some(10), seq + 2);
        w.uplink.send(&[u.clone(), m.clone(), v.clone()]);
        let got = w.vfs[0].recv_for(Duration::from_millis(400));
        (got.contains(&u), got.contains(&m), got.contains(&v))
    };
    assert_eq!(probe(&mut w, 1), (false, false, false));
    let results = [
        w.vfs[0].port.set_promisc(true),
        w.vfs[0].port.set_allmulti(true),
        w.vfs[0].port.vlan_filter(10, true),
    ];
    for r in &results {
        assert_eq!(r.is_ok(), granted, "{r:?}");
    }
    if granted {
        assert_eq!(probe(&mut w, 10), (true, true, true));
        assert_eq!(count(&w, 0), (3, 3, 0, 0, 0));
        // And off again.
        w.vfs[0].port.set_promisc(false).unwrap();
        w.vfs[0].port.set_allmulti(false).unwrap();
        w.vfs[0].port.vlan_filter(10, false).unwrap();
        assert_eq!(probe(&mut w, 20), (false, false, false));
        // Untagged traffic kept flowing throughout.
        let f = frame(MAC0, REMOTE, None, 30);
        w.uplink.send(std::slice::from_ref(&f));
        assert_eq!(w.vfs[0].expect(1), vec![f]);
    } else {
        assert_eq!(probe(&mut w, 10), (false, false, false));
        assert_eq!(count(&w, 0), (3, 0, 3, 0, 0));
        assert_eq!(w.sw.config(0).unwrap(), before);
    }
}

/// A VF on VLAN 20 that also takes untagged frames (so VLAN 10 is filtered until added).
fn vlan20(policy: &str) -> String {
    format!(
        r#"{{"name":"v0","vfid":0,"macs":["02:00:00:00:f0:00"],"vlans":[20],"allow_untagged":true,"vf_requests":"{policy}"}}"#
    )
}

#[test]
fn allowed_rx_modes_and_vlan_change_what_arrives() {
    rx_modes("rq-rx-allow", &vlan20("allow"), true);
}

#[test]
fn denied_rx_modes_and_vlan_change_nothing() {
    rx_modes("rq-rx-deny", &vlan20("deny"), false);
}

#[test]
fn log_policy_applies_requests() {
    let cfg = r#"{"name":"v0","vfid":0,"macs":["02:00:00:00:f0:00"],"vf_requests":"log"}"#;
    let mut w = world("rq-log", &[cfg]);
    w.vfs[0].port.set_mac(MacAddr(NEW0)).unwrap();
    assert_eq!(w.sw.config(0).unwrap().macs, vec![MacAddr(NEW0)]);
    assert_eq!(count(&w, 0), (1, 1, 0, 0, 0));
}

#[test]
fn a_flooding_vf_is_rate_limited_and_others_lose_nothing() {
    let (a, d) = (allow(0), deny(1));
    let mut w = world("rq-flood", &[&a, &d]);
    let before1 = w.sw.config(1).unwrap();
    let mut refused = 0u64;
    let mut granted = 0u64;
    let mut sent = Vec::new();
    let mut got = Vec::new();
    let t0 = Instant::now();
    for i in 0..3000u32 {
        match w.vfs[0].port.set_promisc(i % 2 == 0) {
            Ok(()) => granted += 1,
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("VIRTIO_NET_ERR"), "{e}");
                refused += 1;
            }
        }
        // VF 1's traffic at a moderate rate meanwhile, both ways.
        if i % 20 == 0 {
            let seq = (i / 20) as u8;
            let f = frame(MAC1, REMOTE, None, seq);
            w.uplink.send(std::slice::from_ref(&f));
            sent.push(f);
            got.extend(w.vfs[1].recv_for(Duration::from_millis(1)));
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    got.extend(w.vfs[1].recv_n(sent.len() - got.len(), Duration::from_secs(5)));
    assert_eq!(got, sent, "VF 1 lost nothing");
    let (req, ok, denied, limited, bad) = count(&w, 0);
    assert_eq!(req, 3000);
    assert_eq!((ok, limited, denied, bad), (granted, refused, 0, 0));
    assert!(
        limited > 0,
        "a flood of 3000 in {secs:.1} s was never limited"
    );
    // At most the burst plus the rate over the time taken (generous: no timing asserted
    // beyond the bucket's own bound).
    assert!(
        (ok as f64) <= 64.0 + 100.0 * (secs + 1.0),
        "{ok} granted in {secs:.1} s"
    );
    assert_eq!(count(&w, 1), (0, 0, 0, 0, 0));
    assert_eq!(w.sw.config(1).unwrap(), before1, "VF 1's policy unchanged");
    let c1 = w.sw.counters(1).unwrap();
    let drops: u64 = c1
        .rx_dropped
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum();
    assert_eq!(drops, 0);
}
