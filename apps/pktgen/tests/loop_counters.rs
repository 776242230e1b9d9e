//! The generator's counters against loops whose behaviour is known exactly: a ring port that
//! returns every frame (nothing lost, nothing reordered, latency monotone and plausible), a
//! queue that drops every tenth frame on purpose (loss counted exactly), a queue that
//! duplicates and reorders, and the command line's refusals of impossible requests.

use std::process::Command;
use std::time::Duration;

use ferrovia_ethdev::{Burst, PortConf, TxQueue};
use ferrovia_memory::{LcoreCaches, Mempool, MempoolConfig};
use ferrovia_pktgen::clock::Clock;
use ferrovia_pktgen::frame::SizePattern;
use ferrovia_pktgen::trial::{GenPort, StreamSpec, TrialSpec, WhenFull, run_trial};

fn pool() -> Mempool {
    Mempool::new(MempoolConfig {
        count: 8192,
        ..Default::default()
    })
    .unwrap()
}

fn ring_port(pool: &Mempool, n: u16) -> GenPort {
    let mut port = ferrovia_pmd::open(
        &format!("net_ring{n},size=4096"),
        &PortConf::new(n, pool.clone()),
    )
    .unwrap();
    port.start().unwrap();
    let rx = port.rx_queue(0).unwrap();
    let tx = port.tx_queue(0).unwrap();
    GenPort {
        port,
        rx,
        tx,
        name: format!("net_ring{n}"),
    }
}

fn spec(pps: Option<f64>, count: u64, sizes: SizePattern) -> TrialSpec {
    TrialSpec {
        streams: vec![StreamSpec {
            port: 0,
            src: [2, 0, 0, 0, 0, 1],
            dst: [2, 0, 0, 0, 0, 2],
        }],
        sizes,
        pps,
        flows: 64,
        warmup: 0.2,
        duration: 60.0,
        count: Some(count),
        drain: 0.2,
        burst: 32,
        verify: true,
        when_full: WhenFull::Retry,
        stop: None,
    }
}

#[test]
fn ring_loop_is_exact() {
    let pool = pool();
    let mut ports = vec![ring_port(&pool, 0)];
    let clock = Clock::calibrate(Duration::from_millis(20));
    let mut caches = LcoreCaches::new();
    for (pps, sizes) in [
        (Some(200_000.0), SizePattern::fixed(60)),
        (None, SizePattern::imix()),
    ] {
        let r = run_trial(
            &mut ports,
            &pool,
            &mut caches,
            &clock,
            &spec(pps, 20_000, sizes),
            |_| {},
            &mut |_| {},
        );
        assert_eq!(r.sent, 20_000, "{r:?}");
        assert_eq!(r.received, 20_000, "{r:?}");
        assert_eq!(r.lost, 0);
        assert_eq!(r.corrupt, 0, "every byte checked");
        assert_eq!(r.streams[0].duplicates, 0);
        assert_eq!(r.streams[0].reordered, 0);
        let l = &r.latency;
        assert_eq!(l.count, 20_000);
        assert!(l.min_ns <= l.p50_ns && l.p50_ns <= l.p99_ns, "{l:?}");
        assert!(l.p99_ns <= l.p999_ns && l.p999_ns <= l.max_ns, "{l:?}");
        assert!(l.min_ns > 0 && l.max_ns < 1_000_000_000, "{l:?}");
        if let Some(p) = pps {
            // The pacer's rate is a property of the code, not a timing of the machine: the
            // measured phase cannot be much shorter than count / rate.
            assert!(r.seconds >= 20_000.0 / p * 0.95, "{r:?}");
        }
    }
    // The ring's mbufs all came back to the pool.
    drop(ports);
    drop(caches);
    assert_eq!(pool.available(), 8192);
}

/// Drops every tenth frame handed to it (accepting it, as a port that loses frames does).
struct Dropper {
    inner: Box<dyn TxQueue>,
    n: u64,
    dup: bool,
    pool: Mempool,
    swaps: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl TxQueue for Dropper {
    fn tx_burst(&mut self, caches: &mut LcoreCaches, pkts: &mut Burst) -> usize {
        let total = pkts.len();
        let mut keep = Burst::new();
        let mut extra = Burst::new();
        for m in pkts.drain(..) {
            self.n += 1;
            if self.dup {
                // Every 100th frame is sent twice, and every 50th swaps with the next.
                if self.n.is_multiple_of(100) {
                    let mut c = caches.for_pool(&self.pool).alloc().unwrap();
                    c.append(m.data_len()).unwrap().copy_from_slice(m.data());
                    extra.push(c);
                }
                keep.push(m);
                if self.n.is_multiple_of(50) && keep.len() >= 2 {
                    let l = keep.len();
                    keep.swap(l - 1, l - 2);
                    self.swaps
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            } else if self.n.is_multiple_of(10) {
                caches.free(m);
            } else {
                keep.push(m);
            }
        }
        for m in extra.drain(..) {
            if keep.try_push(m).is_err() {
                break;
            }
        }
        while !keep.is_empty() {
            self.inner.tx_burst(caches, &mut keep);
        }
        total
    }
}

#[test]
fn deliberate_drops_are_counted_exactly() {
    let pool = pool();
    let mut p = ring_port(&pool, 1);
    let inner = std::mem::replace(&mut p.tx, Box::new(NullTx));
    p.tx = Box::new(Dropper {
        inner,
        n: 0,
        dup: false,
        pool: pool.clone(),
        swaps: Default::default(),
    });
    let mut ports = vec![p];
    let clock = Clock::calibrate(Duration::from_millis(20));
    let mut caches = LcoreCaches::new();
    let mut s = spec(Some(300_000.0), 10_000, SizePattern::fixed(128));
    s.warmup = 0.0; // the drop pattern then lines up with the measured frames
    let r = run_trial(
        &mut ports,
        &pool,
        &mut caches,
        &clock,
        &s,
        |_| {},
        &mut |_| {},
    );
    assert_eq!(r.sent, 10_000);
    assert_eq!(r.lost, 1_000, "{r:?}");
    assert_eq!(r.received, 9_000);
    assert!((r.loss_ratio - 0.1).abs() < 1e-12);
    assert_eq!(r.streams[0].duplicates, 0);
}

#[test]
fn duplicates_and_reordering_are_counted() {
    let pool = pool();
    let mut p = ring_port(&pool, 2);
    let swaps = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let inner = std::mem::replace(&mut p.tx, Box::new(NullTx));
    p.tx = Box::new(Dropper {
        inner,
        n: 0,
        dup: true,
        pool: pool.clone(),
        swaps: swaps.clone(),
    });
    let mut ports = vec![p];
    let clock = Clock::calibrate(Duration::from_millis(20));
    let mut caches = LcoreCaches::new();
    // Unpaced: full bursts, so the swaps happen.
    let mut s = spec(None, 10_000, SizePattern::fixed(60));
    s.warmup = 0.0;
    let r = run_trial(
        &mut ports,
        &pool,
        &mut caches,
        &clock,
        &s,
        |_| {},
        &mut |_| {},
    );
    assert_eq!(r.sent, 10_000);
    assert_eq!(r.lost, 0, "{r:?}");
    assert_eq!(r.streams[0].duplicates, 100, "{r:?}");
    // Each swap puts one frame after a later-numbered one.
    let swaps = swaps.load(std::sync::atomic::Ordering::Relaxed);
    assert!(swaps > 0);
    assert_eq!(r.streams[0].reordered, swaps, "{r:?}");
}

struct NullTx;
impl TxQueue for NullTx {
    fn tx_burst(&mut self, _: &mut LcoreCaches, _: &mut Burst) -> usize {
        0
    }
}

fn pktgen(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrovia-pktgen"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn impossible_requests_are_refused_clearly() {
    for (args, word) in [
        (vec!["--port", "net_ring0", "--size", "59"], "below 60"),
        (vec!["--port", "net_ring0", "--size", "20000"], "above 9728"),
        (
            vec![
                "--port",
                "net_ring0",
                "--rate",
                "20Mpps",
                "--line-rate",
                "10Gbps",
            ],
            "above the line rate",
        ),
        (vec!["--port", "net_ring0", "--rate", "50%"], "--line-rate"),
        (vec!["--port", "net_ring0", "--rate", "fast"], "give a unit"),
        (vec!["--size", "64"], "at least one --port"),
        (
            vec![
                "--port",
                "net_ring0",
                "--port",
                "net_ring1",
                "--port",
                "net_ring2",
            ],
            "at most two",
        ),
        (
            vec![
                "--port",
                "net_virtio_user0,path=/nonexistent/sock",
                "--duration",
                "1",
            ],
            "/nonexistent/sock",
        ),
        (vec!["--port", "net_ring0", "--flows", "0"], "--flows"),
        (
            vec!["--port", "net_ring0", "--frobnicate"],
            "unknown option",
        ),
    ] {
        let (ok, out) = pktgen(&args);
        assert!(!ok, "{args:?} succeeded: {out}");
        assert!(out.contains(word), "{args:?}: {out}");
    }
    // The happy path: JSON on stdout.
    let (ok, out) = pktgen(&[
        "--port",
        "net_ring0",
        "--count",
        "5000",
        "--rate",
        "100kpps",
        "--warmup",
        "0",
        "--quiet",
        "--json",
        "-",
    ]);
    assert!(ok, "{out}");
    let json_start = out.find('{').unwrap();
    let v: serde_json::Value = serde_json::from_str(&out[json_start..]).unwrap();
    assert_eq!(v["trials"][0]["sent"], 5000);
    assert_eq!(v["trials"][0]["received"], 5000);
}

/// Takes only the first half of every third burst, as a port whose ring is full does.
struct HalfFull {
    inner: Box<dyn TxQueue>,
    calls: u64,
}

impl TxQueue for HalfFull {
    fn tx_burst(&mut self, caches: &mut LcoreCaches, pkts: &mut Burst) -> usize {
        self.calls += 1;
        let take = if self.calls.is_multiple_of(3) {
            pkts.len() / 2
        } else {
            pkts.len()
        };
        let mut part: Burst = pkts.drain(..take).collect();
        while !part.is_empty() {
            self.inner.tx_burst(caches, &mut part);
        }
        take
    }
}

fn refusing_trial(when_full: WhenFull) -> ferrovia_pktgen::trial::TrialReport {
    let pool = pool();
    let mut p = ring_port(&pool, 3);
    let inner = std::mem::replace(&mut p.tx, Box::new(NullTx));
    p.tx = Box::new(HalfFull { inner, calls: 0 });
    let mut ports = vec![p];
    let clock = Clock::calibrate(Duration::from_millis(20));
    let mut caches = LcoreCaches::new();
    let mut s = spec(None, 9_600, SizePattern::fixed(64));
    s.warmup = 0.0;
    s.burst = 32;
    s.when_full = when_full;
    let r = run_trial(
        &mut ports,
        &pool,
        &mut caches,
        &clock,
        &s,
        |_| {},
        &mut |_| {},
    );
    drop(ports);
    drop(caches);
    assert_eq!(
        pool.available(),
        8192,
        "every refused frame went back to the pool"
    );
    r
}

#[test]
fn refused_frames_are_retried_or_counted_lost() {
    // Retry: the port's back-pressure slows the generator; nothing is lost.
    let r = refusing_trial(WhenFull::Retry);
    assert_eq!(r.sent, 9_600);
    assert_eq!(r.received, 9_600);
    assert_eq!(r.lost, 0);
    assert!(r.tx_full_retries > 0, "{r:?}");
    assert_eq!(r.tx_full_dropped, 0);
    // Drop: every refused frame is sent and lost, exactly.
    let r = refusing_trial(WhenFull::Drop);
    assert_eq!(r.sent, 9_600);
    assert!(r.tx_full_dropped > 0, "{r:?}");
    assert_eq!(r.lost, r.tx_full_dropped, "{r:?}");
    assert_eq!(r.received + r.lost, r.sent);
    assert_eq!(r.tx_full_retries, 0);
    assert_eq!(r.streams[0].duplicates, 0);
}
