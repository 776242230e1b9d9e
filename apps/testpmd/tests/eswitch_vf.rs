//! testpmd as the application on a VF of the software NIC (`crates/eswitch`): DPDK's
//! dpdk-testpmd and ours, each on virtio-user on the VF's vhost-user socket in mac mode, with
//! the same checks: the VF's VLAN (stripped on the way in, inserted on the way out) and MAC
//! anti-spoofing apply to either application's traffic alike.

mod harness;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ferrovia_eswitch::policy::DropCause;
use ferrovia_eswitch::veb::{Eswitch, EswitchConfig, VfSpec, cause_index};
use ferrovia_eswitch::vfconfig::{Limits, VfConfig};
use ferrovia_testkit::{Container, TempDir};
use harness::{Proc, dpdk_cmd, dpdk_ready, ours_cmd, serial, wait_for_path};

const MAC0: [u8; 6] = [2, 0, 0, 0, 0xf0, 0];
const MAC2: [u8; 6] = [2, 0, 0, 0, 0xf0, 2];
const REMOTE: [u8; 6] = [2, 0, 0, 0, 0xee, 1];
const N: usize = 64;

/// A VLAN-tagged frame of `len` bytes with a payload that names `seq`.
fn frame(dst: [u8; 6], src: [u8; 6], vid: u16, len: usize, seq: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend(dst);
    f.extend(src);
    f.extend(0x8100u16.to_be_bytes());
    f.extend(vid.to_be_bytes());
    f.extend(0x88b5u16.to_be_bytes());
    f.push(seq);
    f.resize(len, seq ^ 0x5a);
    f
}

fn vf(json: &str) -> VfConfig {
    VfConfig::parse(
        json,
        "test",
        &Limits {
            max_vfs: 2,
            line_rate_mbps: 10_000.0,
        },
    )
    .unwrap()
}

/// VF 0: MAC0, access VLAN 10 (stripped towards the VF, inserted from it), anti-spoof on.
const VF0: &str =
    r#"{"name":"app","vfid":0,"macs":["02:00:00:00:f0:00"],"vlans":[10],"strip_stag":true}"#;
/// The same VF with another MAC: the application's MAC0 is now spoofed.
const VF0_MOVED: &str =
    r#"{"name":"app","vfid":0,"macs":["02:00:00:00:f0:02"],"vlans":[10],"strip_stag":true}"#;

/// Runs the checks with the application `start` launches on VF 0's socket.
fn vf_application(tag: &str, start: impl FnOnce(&str) -> Command) {
    let dir = TempDir::new(&format!("esw-{tag}"));
    let vf_sock = dir.sock("vf0");
    let sw = Eswitch::start(&EswitchConfig {
        uplink: format!("net_vhost0,iface={}", dir.sock("uplink").display()),
        vfs: vec![VfSpec {
            // As the daemon and net_eswitch open VFs: with a control queue offered.
            devargs: format!("net_vhost1,iface={},ctrl-vq=1", vf_sock.display()),
            config: vf(VF0),
            enabled: true,
        }],
        tx_loopback: true,
        mbufs: 8192,
    })
    .unwrap();
    let mut uplink = Container::attach(&dir.sock("uplink"));
    assert!(wait_for_path(&vf_sock, Duration::from_secs(10)));
    let vdev = format!(
        "net_virtio_user0,path={},mac=02:00:00:00:f0:00",
        vf_sock.display()
    );
    let app = Proc::spawn(tag, start(&vdev), &dir.0.join(format!("{tag}.log")), None);

    // In: tagged 10 on the wire, untagged to the application; out: the application's frame
    // (dst = its --eth-peer, src = its MAC) tagged 10 again. The VF's link comes up when the
    // application has connected: send until the first frame comes back.
    let sent: Vec<Vec<u8>> = (0..N as u8)
        .map(|i| frame(MAC0, REMOTE, 10, 128, i))
        .collect();
    let want: Vec<Vec<u8>> = (0..N as u8)
        .map(|i| frame(REMOTE, MAC0, 10, 128, i))
        .collect();
    let t0 = Instant::now();
    let mut back = Vec::new();
    while back.is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{tag}: nothing came back through the VF application; its log:\n{}",
            app.output()
        );
        uplink.send(&sent[..1]);
        back = uplink.recv_for(Duration::from_millis(200));
    }
    assert_eq!(back[0], want[0], "{tag}: the first frame");
    uplink.send(&sent);
    let got = uplink.recv_n(N, Duration::from_secs(20));
    let extra = uplink.recv_for(Duration::from_millis(200));
    assert!(
        got.len() == N && extra.iter().all(|f| f == &want[0]),
        "{tag}: {} of {N} frames back (and {} extra); log:\n{}",
        got.len(),
        extra.len(),
        app.output()
    );
    assert_eq!(
        got, want,
        "{tag}: VLAN stripped on the way in, inserted on the way out"
    );

    // The VF's MAC moves to MAC2: frames to MAC2 reach the application, whose replies (from
    // MAC0) are spoofed: dropped and counted, none on the wire.
    sw.set_policy(vf(VF0_MOVED)).unwrap();
    let spoof = &sw.counters(0).unwrap().tx_dropped[cause_index(DropCause::MacSpoof)];
    let before = spoof.load(Ordering::Relaxed);
    let to_mac2: Vec<Vec<u8>> = (0..N as u8)
        .map(|i| frame(MAC2, REMOTE, 10, 128, i))
        .collect();
    uplink.send(&to_mac2);
    let t0 = Instant::now();
    while spoof.load(Ordering::Relaxed) < before + N as u64 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{tag}: {} of {N} spoofed replies counted",
            spoof.load(Ordering::Relaxed) - before
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        uplink.recv_for(Duration::from_millis(300)).is_empty(),
        "{tag}: a spoofed frame reached the wire"
    );
    drop(app);
}

fn mac_mode(extra: &[&'static str]) -> Vec<&'static str> {
    let mut a = vec![
        "--forward-mode=mac",
        "--eth-peer=0,02:00:00:00:ee:01",
        "--port-topology=loop",
        "--stats-period",
        "1",
    ];
    a.extend_from_slice(extra);
    a
}

#[test]
fn our_testpmd_as_vf_application() {
    let _g = serial();
    vf_application("ours", |vdev| ours_cmd(vdev, &mac_mode(&[])));
}

#[test]
fn dpdk_testpmd_as_vf_application() {
    let _g = serial();
    if !dpdk_ready("dpdk_testpmd_as_vf_application") {
        return;
    }
    vf_application("dpdk", |vdev| dpdk_cmd("eswvf", vdev, &mac_mode(&[])));
}
