//! Test helpers: a switch with vhost-user ports in a temporary directory, and "containers"
//! (virtio-user ports in this process) attached to them.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrovia_vswitch::Switch;
use ferrovia_vswitch::config::{BridgeConfig, PortConfig, SwitchConfig};

// Not every test file uses both.
#[allow(unused_imports)]
pub use ferrovia_testkit::{Container, TempDir};

/// A port config for a vhost-user server port `name` with socket in `dir`.
pub fn vhost_port(dir: &TempDir, bridge: &str, name: &str, idx: usize) -> PortConfig {
    PortConfig {
        name: name.into(),
        bridge: bridge.into(),
        devargs: format!("net_vhost{idx},iface={}", dir.sock(name).display()),
        tag: None,
        trunks: Vec::new(),
        native: None,
        max_frame: None,
    }
}

pub fn bridge(name: &str) -> BridgeConfig {
    BridgeConfig {
        name: name.into(),
        fdb_limit: 1024,
        aging_secs: 300,
    }
}

/// A switch with one bridge `br0` and the given ports (already configured).
pub fn switch(ports: Vec<PortConfig>, extra: impl FnOnce(&mut SwitchConfig)) -> Arc<Switch> {
    let mut c = SwitchConfig::default();
    c.switch.mbufs = 8192;
    c.bridge.push(bridge("br0"));
    c.port = ports;
    extra(&mut c);
    Switch::start(&c).expect("switch starts")
}

pub fn mac(n: u8) -> [u8; 6] {
    [0x02, 0xaa, 0, 0, 0, n]
}

/// An Ethernet frame (optionally 802.1Q-tagged) of `len` bytes with a recognisable payload.
pub fn frame(dst: [u8; 6], src: [u8; 6], vid: Option<u16>, len: usize, seq: u32) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend(dst);
    f.extend(src);
    if let Some(v) = vid {
        f.extend(0x8100u16.to_be_bytes());
        f.extend(v.to_be_bytes());
    }
    f.extend(0x88b5u16.to_be_bytes()); // local experimental EtherType
    f.extend(seq.to_be_bytes());
    while f.len() < len {
        f.push((f.len() as u8).wrapping_mul(7) ^ seq as u8);
    }
    f
}

/// `f` with its 802.1Q tag removed.
pub fn untag(f: &[u8]) -> Vec<u8> {
    let mut v = f[..12].to_vec();
    v.extend(&f[16..]);
    v
}

/// `f` with an 802.1Q tag for `vid` inserted.
pub fn tag(f: &[u8], vid: u16) -> Vec<u8> {
    let mut v = f[..12].to_vec();
    v.extend(0x8100u16.to_be_bytes());
    v.extend(vid.to_be_bytes());
    v.extend(&f[12..]);
    v
}

pub const BCAST: [u8; 6] = [0xff; 6];

/// Waits until the switch sees every one of its vhost-user ports up (the container's side
/// may report its link before the switch's side has applied the last setup message).
pub fn wait_links(sw: &Switch) {
    let t0 = Instant::now();
    while !sw
        .ports()
        .iter()
        .filter(|p| p.driver == "net_vhost")
        .all(|p| p.link_up)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "switch ports never all came up"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
