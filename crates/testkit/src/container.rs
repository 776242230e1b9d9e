//! A container: a virtio-user port in the test's process.

use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use ferrovia_ethdev::{Burst, Port, PortConf, RxQueue, TxQueue};
use ferrovia_memory::{LcoreCaches, Mempool, MempoolConfig};

/// Port ids for containers, apart from those the tests give their switches.
static NEXT_ID: AtomicU16 = AtomicU16::new(1000);

/// A virtio-user port with queue pair 0 and its own pool, sending and receiving whole
/// frames (one mbuf each).
pub struct Container {
    /// The port.
    pub port: Box<dyn Port>,
    /// Its receive queue 0.
    pub rx: Box<dyn RxQueue>,
    /// Its transmit queue 0.
    pub tx: Box<dyn TxQueue>,
    /// The thread caches used with it.
    pub caches: LcoreCaches,
    /// Its pool.
    pub pool: Mempool,
}

impl Container {
    /// Connects to the vhost-user socket `sock` and waits (up to 10 s) for the link.
    pub fn attach(sock: &Path) -> Container {
        let c = Container::open(sock, "");
        c.wait_link();
        c
    }

    /// Listens on `sock` (`server=1`): the backend connects to it, so either side may
    /// restart. The link comes up once it did ([`Container::wait_link`]).
    pub fn listen(sock: &Path) -> Container {
        Container::open(sock, ",server=1")
    }

    /// Opens `net_virtio_user<n>,path=<sock><extra>` with a 2048-mbuf pool and starts it.
    pub fn open(sock: &Path, extra: &str) -> Container {
        let pool = Mempool::new(MempoolConfig {
            count: 2048,
            ..Default::default()
        })
        .expect("a container's pool");
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let devargs = format!("net_virtio_user{n},path={}{extra}", sock.display());
        let mut port = ferrovia_pmd::open(&devargs, &PortConf::new(n, pool.clone()))
            .unwrap_or_else(|e| panic!("{devargs}: {e}"));
        port.start().unwrap_or_else(|e| panic!("{devargs}: {e}"));
        let rx = port.rx_queue(0).expect("rx queue 0");
        let tx = port.tx_queue(0).expect("tx queue 0");
        Container {
            port,
            rx,
            tx,
            caches: LcoreCaches::new(),
            pool,
        }
    }

    /// Waits up to 10 s for the link to come up; panics if it does not.
    pub fn wait_link(&self) {
        let t0 = Instant::now();
        while !self.port.link().up {
            assert!(t0.elapsed() < Duration::from_secs(10), "link never came up");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends `frames`; panics unless the port takes all of them within 2 s.
    pub fn send(&mut self, frames: &[Vec<u8>]) {
        for chunk in frames.chunks(32) {
            let mut b = Burst::new();
            for f in chunk {
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
    }

    /// Sends one frame.
    pub fn send_one(&mut self, frame: &[u8]) {
        self.send(&[frame.to_vec()]);
    }

    /// Receives for up to `wait`; returns the first frame of the first burst that came
    /// (the rest of that burst is dropped), if any.
    pub fn recv_one(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let mut b = Burst::new();
        let t0 = Instant::now();
        while t0.elapsed() < wait {
            if self.rx.rx_burst(&mut self.caches, &mut b, 32) == 0 {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            let first = b.first().map(|m| m.to_vec());
            for m in b.drain(..) {
                self.caches.free(m);
            }
            return first;
        }
        None
    }

    /// Receives for `wait`, returning every frame's bytes.
    pub fn recv_for(&mut self, wait: Duration) -> Vec<Vec<u8>> {
        self.recv_until(usize::MAX, wait)
    }

    /// Receives until `n` frames came or `wait` passed.
    pub fn recv_n(&mut self, n: usize, wait: Duration) -> Vec<Vec<u8>> {
        self.recv_until(n, wait)
    }

    /// Receives until `n` frames came (at most 5 s), then 50 ms more for any extra.
    pub fn expect(&mut self, n: usize) -> Vec<Vec<u8>> {
        let mut out = self.recv_until(n, Duration::from_secs(5));
        out.extend(self.recv_for(Duration::from_millis(50)));
        out
    }

    fn recv_until(&mut self, n: usize, wait: Duration) -> Vec<Vec<u8>> {
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
