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

/// A second, well-behaved port pair in the same process (a `net_vhost` port and our
/// `net_virtio_user` on it) forwarding in its own thread, to show that an attack on another
/// port does not stall or disturb it. Every frame is checked.
pub struct Bystander {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    moved: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
    ports: Option<(Box<dyn Port>, Box<dyn Port>)>,
    pool: Mempool,
}

impl Bystander {
    /// Opens the pair at `<dir>/bystander.sock` and starts forwarding (virtio-user → vhost)
    /// once its link is up. Call before taking fd baselines.
    pub fn start(dir: &std::path::Path) -> Bystander {
        use std::sync::atomic::Ordering;
        let sock = dir.join("bystander.sock").display().to_string();
        let pool = pool("bystander");
        let mut vh = ferrovia_pmd::open(
            &format!("net_vhost9,iface={sock}"),
            &PortConf::new(9, pool.clone()),
        )
        .unwrap();
        vh.start().unwrap();
        let mut vu = ferrovia_pmd::open(
            &format!("net_virtio_user9,path={sock}"),
            &PortConf::new(10, pool.clone()),
        )
        .unwrap();
        vu.start().unwrap();
        wait("bystander: link up", || vh.link().up && vu.link().up);
        let (mut tx, mut rx) = (vu.tx_queue(0).unwrap(), vh.rx_queue(0).unwrap());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let moved = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let thread = {
            let (stop, moved, pool) = (stop.clone(), moved.clone(), pool.clone());
            std::thread::spawn(move || {
                let mut caches = LcoreCaches::new();
                let mut seq = 0u64;
                let mut expect = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut b = Burst::new();
                    while b.len() < 8 && seq - expect < 64 {
                        let Some(mut m) = caches.for_pool(&pool).alloc() else {
                            break;
                        };
                        m.append(64).unwrap().fill(seq as u8);
                        m.data_mut()[..8].copy_from_slice(&seq.to_le_bytes());
                        b.push(m);
                        seq += 1;
                    }
                    let unsent = b.len() - tx.tx_burst(&mut caches, &mut b);
                    seq -= unsent as u64;
                    caches.free_all(b.drain(..));
                    let mut r = Burst::new();
                    rx.rx_burst(&mut caches, &mut r, 32);
                    for m in r.drain(..) {
                        let d = m.data();
                        let got = u64::from_le_bytes(d[..8].try_into().unwrap());
                        assert_eq!(got, expect, "bystander: frame lost or out of order");
                        assert!(d[8..].iter().all(|&x| x == got as u8), "bystander: corrupt");
                        expect += 1;
                        moved.fetch_add(1, Ordering::Relaxed);
                        caches.free(m);
                    }
                    // Gentle: the tests beside it need the CPUs more than it needs speed.
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        };
        let by = Bystander {
            stop,
            moved,
            thread: Some(thread),
            ports: Some((vh, vu)),
            pool,
        };
        by.wait_moved(64, "bystander: first frames");
        by
    }

    /// Frames delivered so far.
    pub fn moved(&self) -> u64 {
        self.moved.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until `n` more frames than now have been delivered (fails after 10 s).
    pub fn wait_moved(&self, n: u64, what: &str) {
        let start = self.moved();
        wait(what, || self.moved() >= start + n);
    }

    /// Asserts the pair kept forwarding (at least `n` frames since `since`) and is still up.
    pub fn assert_forwarded_since(&self, since: u64, what: &str) {
        self.wait_moved(32, what);
        assert!(
            self.moved() > since,
            "{what}: the bystander pair forwarded nothing during the attack"
        );
        let (vh, vu) = self.ports.as_ref().unwrap();
        assert!(
            vh.link().up && vu.link().up,
            "{what}: bystander link went down"
        );
    }
}

impl Bystander {
    /// Stops the pair and asserts every mbuf of its pool came back.
    pub fn finish(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("bystander thread");
        }
        self.ports = None;
        assert_eq!(
            self.pool.available(),
            self.pool.count(),
            "bystander: mbufs leaked"
        );
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.ports = None;
    }
}
