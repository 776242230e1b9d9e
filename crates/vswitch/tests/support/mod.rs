//! Test helpers: a switch with vhost-user ports in a temporary directory, and "containers"
//! (virtio-user ports in this process) attached to them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrovia_ethdev::{Burst, Port, PortConf, RxQueue, TxQueue};
use ferrovia_memory::{LcoreCaches, Mempool, MempoolConfig};
use ferrovia_vswitch::Switch;
use ferrovia_vswitch::config::{BridgeConfig, PortConfig, SwitchConfig};

/// A unique temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("fvsw-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    pub fn sock(&self, name: &str) -> PathBuf {
        self.0.join(format!("{name}.sock"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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

/// A container: a virtio-user port in this process on the switch's socket.
pub struct Container {
    pub port: Box<dyn Port>,
    pub rx: Box<dyn RxQueue>,
    pub tx: Box<dyn TxQueue>,
    pub caches: LcoreCaches,
    pub pool: Mempool,
}

static NEXT_VU: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(100);

impl Container {
    pub fn attach(sock: &Path) -> Container {
        let c = Container::open(sock, false);
        c.wait_link();
        c
    }

    /// A container whose virtio-user listens (server=1): the switch connects to it (the
    /// switch's port has client=1), so either side can restart.
    pub fn listen(sock: &Path) -> Container {
        Container::open(sock, true)
    }

    pub fn wait_link(&self) {
        let t0 = Instant::now();
        while !self.port.link().up {
            assert!(t0.elapsed() < Duration::from_secs(10), "link never came up");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn open(sock: &Path, server: bool) -> Container {
        let pool = Mempool::new(MempoolConfig {
            count: 2048,
            ..Default::default()
        })
        .unwrap();
        let n = NEXT_VU.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut port = ferrovia_pmd::open(
            &format!(
                "net_virtio_user{n},path={}{}",
                sock.display(),
                if server { ",server=1" } else { "" }
            ),
            &PortConf::new(n as u16, pool.clone()),
        )
        .expect("virtio-user opens");
        port.start().unwrap();
        let rx = port.rx_queue(0).unwrap();
        let tx = port.tx_queue(0).unwrap();
        Container {
            port,
            rx,
            tx,
            caches: LcoreCaches::new(),
            pool,
        }
    }

    /// Sends frames (each one mbuf); panics unless all go within 2 s.
    pub fn send(&mut self, frames: &[Vec<u8>]) {
        let mut b = Burst::new();
        for f in frames {
            let mut m = self.caches.for_pool(&self.pool).alloc().expect("mbuf");
            m.append(f.len()).expect("room").copy_from_slice(f);
            b.push(m);
        }
        let t0 = Instant::now();
        while !b.is_empty() {
            self.tx.tx_burst(&mut self.caches, &mut b);
            assert!(t0.elapsed() < Duration::from_secs(2), "tx stuck");
        }
    }

    /// Receives for `wait`, returning every frame's bytes.
    pub fn recv_for(&mut self, wait: Duration) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut b = Burst::new();
        let t0 = Instant::now();
        while t0.elapsed() < wait {
            if self.rx.rx_burst(&mut self.caches, &mut b, 32) == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
            for m in b.drain(..) {
                out.push(m.to_vec());
                self.caches.free(m);
            }
        }
        out
    }

    /// Receives until `n` frames came or `wait` passed.
    pub fn recv_n(&mut self, n: usize, wait: Duration) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut b = Burst::new();
        let t0 = Instant::now();
        while out.len() < n && t0.elapsed() < wait {
            if self.rx.rx_burst(&mut self.caches, &mut b, 32) == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
            for m in b.drain(..) {
                out.push(m.to_vec());
                self.caches.free(m);
            }
        }
        out
    }
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
