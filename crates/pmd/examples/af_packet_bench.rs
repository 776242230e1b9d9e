//! Pushes 64-byte frames over a veth pair with a `net_af_packet` port on each end (one sending,
//! one receiving, each on its own thread) and prints the Tx and Rx rates in Mpps, for each
//! direction in turn.
//!
//! ```sh
//! sudo cargo run --release -p ferrovia-pmd --example af_packet_bench -- [seconds per direction, default 3]
//! ```
//!
//! Needs root (it creates the veth pair `fvb<pid>a`/`fvb<pid>b` and deletes it at the end).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrovia_ethdev::{Burst, Port, PortConf};
use ferrovia_memory::{LcoreCaches, Mempool, MempoolConfig};

const FRAME: usize = 64;
const BURST: usize = 32;

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

struct Veth(String);

impl Drop for Veth {
    fn drop(&mut self) {
        ip(&["link", "del", &self.0]);
    }
}

fn pool(name: &str) -> Mempool {
    Mempool::new(MempoolConfig {
        name: name.into(),
        count: 16384,
        ..Default::default()
    })
    .expect("mempool")
}

/// Sends from `tx_if` to `rx_if` for `secs`; returns (sent, received, elapsed).
fn run(tx_port: &mut dyn Port, rx_port: &mut dyn Port, secs: f64) -> (u64, u64, f64) {
    let mut txq = tx_port.tx_queue(0).expect("tx queue");
    let mut rxq = rx_port.rx_queue(0).expect("rx queue");
    let dst = rx_port.info().mac.0;
    let src = tx_port.info().mac.0;
    let tx_pool = pool("bench_tx");
    let stop = Arc::new(AtomicBool::new(false));
    let rx_stop = stop.clone();
    let receiver = std::thread::spawn(move || {
        let mut caches = LcoreCaches::new();
        let mut b = Burst::new();
        let mut n = 0u64;
        // Drain for a moment after the sender stops, so frames in flight count.
        let mut quiet_since: Option<Instant> = None;
        loop {
            let got = rxq.rx_burst(&mut caches, &mut b, BURST);
            n += got as u64;
            caches.free_all(b.drain(..));
            if rx_stop.load(Ordering::Relaxed) {
                if got == 0 {
                    let q = *quiet_since.get_or_insert_with(Instant::now);
                    if q.elapsed() > Duration::from_millis(50) {
                        break;
                    }
                } else {
                    quiet_since = None;
                }
            }
        }
        n
    });
    let mut caches = LcoreCaches::new();
    let mut frame = [0u8; FRAME];
    frame[..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
    frame[12..14].copy_from_slice(&[0x88, 0xb5]);
    let mut b = Burst::new();
    let mut sent = 0u64;
    let t0 = Instant::now();
    let end = Duration::from_secs_f64(secs);
    while t0.elapsed() < end {
        let cache = caches.for_pool(&tx_pool);
        while b.len() < BURST {
            let Some(mut m) = cache.alloc() else { break };
            m.append(FRAME)
                .expect("room for 64 bytes")
                .copy_from_slice(&frame);
            b.push(m);
        }
        sent += txq.tx_burst(&mut caches, &mut b) as u64;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    caches.free_all(b.drain(..));
    stop.store(true, Ordering::Relaxed);
    let received = receiver.join().expect("receiver thread");
    (sent, received, elapsed)
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    // SAFETY: geteuid has no memory effects.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: af_packet_bench needs root (it creates a veth pair)");
        return;
    }
    let a = format!("fvb{}a", std::process::id());
    let b = format!("fvb{}b", std::process::id());
    if !ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]) {
        println!("skipped: cannot create a veth pair");
        return;
    }
    let _g = Veth(a.clone());
    for i in [&a, &b] {
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{i}/disable_ipv6"), "1");
        ip(&["link", "set", i, "up"]);
    }
    let args = "qdisc_bypass=1,framecnt=4096";
    let mut pa = ferrovia_pmd::open(
        &format!("net_af_packet0,iface={a},{args}"),
        &PortConf::new(0, pool("bench_a")),
    )
    .expect("port on a");
    let mut pb = ferrovia_pmd::open(
        &format!("net_af_packet1,iface={b},{args}"),
        &PortConf::new(1, pool("bench_b")),
    )
    .expect("port on b");
    pa.start().expect("start a");
    pb.start().expect("start b");
    let t = Instant::now();
    while !(pa.link().up && pb.link().up) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "af_packet over veth {a} <-> {b}: {FRAME}-byte frames, bursts of {BURST}, {secs} s per direction ({args})"
    );
    let report = |name: String, (sent, got, el): (u64, u64, f64)| {
        println!(
            "{name}: tx {:.3} Mpps, rx {:.3} Mpps ({sent} sent, {got} received, {:.1}% lost in the kernel)",
            sent as f64 / el / 1e6,
            got as f64 / el / 1e6,
            if sent > 0 {
                100.0 * sent.saturating_sub(got) as f64 / sent as f64
            } else {
                0.0
            }
        );
    };
    report(format!("{a} -> {b}"), run(&mut *pa, &mut *pb, secs));
    report(format!("{b} -> {a}"), run(&mut *pb, &mut *pa, secs));
}
