//! Shared helpers of the malicious-peer tests: counters, waiting, fd counts and a
//! well-behaved client that proves a port still serves after an attack.
#![allow(dead_code)]

pub mod evil_backend;
pub mod evil_frontend;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferrovia_ethdev::{Burst, Port, PortConf, RxQueue, TxQueue};
use ferrovia_memory::{LcoreCaches, Mempool, MempoolConfig};

/// One xstat by name (panics if the port has no such counter).
pub fn xstat(p: &dyn Port, name: &str) -> u64 {
    p.xstats()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no xstat {name}"))
}

/// All xstats as a map.
pub fn snapshot(p: &dyn Port) -> BTreeMap<String, u64> {
    p.xstats().into_iter().collect()
}

/// Asserts that, from `before` to now, exactly the counters in `expect` moved, each by the
/// amount given. The aggregates `rx_errors` and `tx_errors` are left out (they sum the
/// per-cause counters).
pub fn assert_moved(
    p: &dyn Port,
    before: &BTreeMap<String, u64>,
    expect: &[(&str, u64)],
    case: &str,
) {
    let now = snapshot(p);
    let mut moved: BTreeMap<&str, u64> = BTreeMap::new();
    for (k, v) in &now {
        let b = before.get(k).copied().unwrap_or(0);
        if *v != b && k != "rx_errors" && k != "tx_errors" {
            moved.insert(k, v.wrapping_sub(b));
        }
    }
    let want: BTreeMap<&str, u64> = expect.iter().copied().filter(|(_, n)| *n != 0).collect();
    assert_eq!(moved, want, "{case}: counters that moved");
}

/// Polls `f` until it holds; panics after 10 s (a liveness bound, not a timing assertion).
pub fn wait<F: FnMut() -> bool>(what: &str, mut f: F) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Open fds of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A unique temporary directory for a test's sockets.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ferrovia-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A mempool for one test.
pub fn pool(name: &str) -> Mempool {
    Mempool::new(MempoolConfig {
        name: name.into(),
        count: 2048,
        ..Default::default()
    })
    .unwrap()
}

/// A started `net_vhost` server port at `sock` with its queue 0 handles.
pub struct VhostUnderTest {
    /// The port.
    pub port: Box<dyn Port>,
    /// Its Rx queue 0 (packets the guest transmits on vring 1).
    pub rx: Box<dyn RxQueue>,
    /// Its Tx queue 0 (packets into the guest's receive vring 0).
    pub tx: Box<dyn TxQueue>,
    /// The pool.
    pub pool: Mempool,
    /// The mbuf caches of the test thread, passed to every burst.
    pub caches: LcoreCaches,
    /// The socket path.
    pub sock: String,
}

impl VhostUnderTest {
    /// Opens and starts `net_vhost0,iface=<dir>/<tag>.sock`.
    pub fn new(dir: &std::path::Path, tag: &str) -> VhostUnderTest {
        Self::with_args(dir, tag, "")
    }

    /// Opens and starts `net_vhost0,iface=<dir>/<tag>.sock<extra>` (`extra`: more devargs,
    /// each starting with a comma).
    pub fn with_args(dir: &std::path::Path, tag: &str, extra: &str) -> VhostUnderTest {
        let sock = dir.join(format!("{tag}.sock")).display().to_string();
        let pool = pool(tag);
        let mut port = ferrovia_pmd::open(
            &format!("net_vhost0,iface={sock}{extra}"),
            &PortConf::new(0, pool.clone()),
        )
        .unwrap();
        port.start().unwrap();
        let rx = port.rx_queue(0).unwrap();
        let tx = port.tx_queue(0).unwrap();
        VhostUnderTest {
            port,
            rx,
            tx,
            pool,
            caches: LcoreCaches::new(),
            sock,
        }
    }

    /// (sessions, sessions_failed, bad_messages).
    pub fn sessions(&self) -> (u64, u64, u64) {
        (
            xstat(&*self.port, "vhost_sessions"),
            xstat(&*self.port, "vhost_sessions_failed"),
            xstat(&*self.port, "vhost_bad_messages"),
        )
    }

    /// Polls the Rx queue `n` times.
    pub fn poll(&mut self, n: usize) -> Burst {
        let mut b = Burst::new();
        for _ in 0..n {
            self.rx.rx_burst(&mut self.caches, &mut b, 32);
        }
        b
    }

    /// A real `net_virtio_user` client connects and moves 8 numbered packets each way with
    /// payload checks, then disconnects; returns once the session is over (link down).
    pub fn serve_good_client(&mut self) {
        let pool = &self.pool;
        let mut vu = ferrovia_pmd::open(
            &format!("net_virtio_user0,path={}", self.sock),
            &PortConf::new(1, pool.clone()),
        )
        .unwrap();
        vu.start().unwrap();
        let mut vtx = vu.tx_queue(0).unwrap();
        let mut vrx = vu.rx_queue(0).unwrap();
        wait("good client: link up", || self.port.link().up);
        let mut b = Burst::new();
        for i in 0..8u8 {
            let mut m = pool.alloc().unwrap();
            m.append(100).unwrap().fill(i);
            b.push(m);
        }
        wait("good client: tx", || {
            vtx.tx_burst(&mut self.caches, &mut b);
            b.is_empty()
        });
        let mut got = Burst::new();
        wait("good client: 8 packets to the vhost port", || {
            self.rx.rx_burst(&mut self.caches, &mut got, 32);
            got.len() >= 8
        });
        assert_eq!(got.len(), 8);
        for (i, m) in got.iter().enumerate() {
            assert_eq!(m.data_len(), 100);
            assert!(m.data().iter().all(|&x| x == i as u8), "payload {i}");
        }
        let mut back = Burst::new();
        for i in 0..8u8 {
            let mut m = pool.alloc().unwrap();
            m.append(200).unwrap().fill(0x80 + i);
            back.push(m);
        }
        let mut seen = Burst::new();
        wait("good client: 8 packets from the vhost port", || {
            self.tx.tx_burst(&mut self.caches, &mut back);
            vrx.rx_burst(&mut self.caches, &mut seen, 32);
            seen.len() >= 8
        });
        for (i, m) in seen.iter().enumerate() {
            assert_eq!(m.data_len(), 200);
            assert!(m.data().iter().all(|&x| x == 0x80 + i as u8), "payload {i}");
        }
        drop((got, seen, vtx, vrx, vu));
        wait("good client: link down", || !self.port.link().up);
    }
}
