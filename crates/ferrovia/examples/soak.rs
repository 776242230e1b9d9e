//! Soak: full-rate traffic between a virtio-user port and a vhost port in one process, with
//! the vhost side torn down and reopened periodically (the virtio-user reconnects). Prints RSS,
//! open fds and free mbufs over time; fails if fds or mbufs leak or RSS keeps growing.
//!
//! ```text
//! cargo run --release --example soak -- --seconds 600 --reconnect-every 30   # scripts/soak.sh
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferrovia::{Burst, LcoreCaches, Mempool, MempoolConfig, PortConf};

fn arg(name: &str, default: u64) -> u64 {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: not a number")))
        .unwrap_or(default)
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Total resident memory. It moves with the backend's second mapping of the shared pool (up
/// while a backend is attached), so leaks are judged on anonymous memory instead.
fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// Resident anonymous memory (heap, stacks): what a leak would grow.
fn anon_kib() -> u64 {
    status_kib("RssAnon:")
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn main() {
    let seconds = arg("--seconds", 600);
    let every = arg("--reconnect-every", 30).max(1);
    let report = arg("--report-every", 5).max(1);
    let dir = std::env::temp_dir().join(format!("ferrovia-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("soak.sock").display().to_string();
    // Process-wide resources that live as long as the process (the control loop's epoll fd and
    // eventfd, the ring arena's first chunk) are made before counting.
    ferrovia::pmd::start_control_plane().expect("control plane");
    let fds0 = fds();
    let pool = Mempool::new(MempoolConfig {
        name: "soak".into(),
        count: 16384,
        ..Default::default()
    })
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));

    // The vhost side, reopened every `every` seconds by its own thread.
    let (vstop, vsock, vpool) = (stop.clone(), sock.clone(), pool.clone());
    let reconnects = Arc::new(AtomicU64::new(0));
    let vrec = reconnects.clone();
    let vhost_thread = std::thread::spawn(move || {
        // One set of caches for the thread's life, whichever port it polls now.
        let mut caches = LcoreCaches::new();
        while !vstop.load(Ordering::Relaxed) {
            let mut port = ferrovia::open(
                &format!("net_vhost0,iface={vsock}"),
                &PortConf::new(0, vpool.clone()),
            )
            .unwrap();
            port.start().unwrap();
            let (mut rx, mut tx) = (port.rx_queue(0).unwrap(), port.tx_queue(0).unwrap());
            let until = Instant::now() + Duration::from_secs(every);
            let mut b = Burst::new();
            while Instant::now() < until && !vstop.load(Ordering::Relaxed) {
                if rx.rx_burst(&mut caches, &mut b, 32) > 0 {
                    tx.tx_burst(&mut caches, &mut b);
                    caches.free_all(b.drain(..));
                }
            }
            drop((rx, tx, port));
            vrec.fetch_add(1, Ordering::Relaxed);
        }
    });
    // Give the first backend a moment to listen, then the surviving virtio-user side.
    std::thread::sleep(Duration::from_millis(200));
    let mut vu = ferrovia::open(
        &format!("net_virtio_user0,path={sock}"),
        &PortConf::new(1, pool.clone()),
    )
    .unwrap();
    vu.start().unwrap();
    let (mut vrx, mut vtx) = (vu.rx_queue(0).unwrap(), vu.tx_queue(0).unwrap());
    let (astop, adel, apool) = (stop.clone(), delivered.clone(), pool.clone());
    let app = std::thread::spawn(move || {
        let mut caches = LcoreCaches::new();
        let mut b = Burst::new();
        let mut r = Burst::new();
        while !astop.load(Ordering::Relaxed) {
            let cache = caches.for_pool(&apool);
            while b.len() < 32 {
                let Some(mut m) = cache.alloc() else { break };
                if let Some(d) = m.append(64) {
                    d.fill(0x5a);
                }
                b.push(m);
            }
            vtx.tx_burst(&mut caches, &mut b);
            let n = vrx.rx_burst(&mut caches, &mut r, 32);
            if n > 0 {
                adel.fetch_add(n as u64, Ordering::Relaxed);
                caches.free_all(r.drain(..));
            }
        }
        caches.free_all(b.drain(..));
        drop((vrx, vtx));
    });

    println!(
        "soak: {seconds} s, backend restarted every {every} s; time  Mpps  RSS(KiB)  anon(KiB)  fds  free-mbufs  reconnects"
    );
    let t0 = Instant::now();
    let mut last = (0u64, t0);
    let mut rss_first = 0;
    let mut rss_max = 0;
    while t0.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(report));
        let now = Instant::now();
        let d = delivered.load(Ordering::Relaxed);
        let mpps = (d - last.0) as f64 / now.duration_since(last.1).as_secs_f64() / 1e6;
        last = (d, now);
        let rss = rss_kib();
        let anon = anon_kib();
        if rss_first == 0 {
            rss_first = anon;
        }
        rss_max = rss_max.max(anon);
        println!(
            "soak: {:>5.0} s  {mpps:5.2}  {rss:>8}  {anon:>9}  {:>4}  {:>10}  {:>3}",
            now.duration_since(t0).as_secs_f64(),
            fds(),
            pool.available(),
            reconnects.load(Ordering::Relaxed)
        );
    }
    stop.store(true, Ordering::Relaxed);
    app.join().unwrap();
    vhost_thread.join().unwrap();
    drop(vu);
    let free = pool.available();
    let total = pool.count();
    drop(pool);
    std::thread::sleep(Duration::from_millis(200));
    let fds_end = fds();
    println!(
        "soak: delivered {} frames, {} reconnects; free mbufs at the end {free}/{total}; fds {fds_end} (start {fds0}); anonymous RSS first {rss_first} KiB, max {rss_max} KiB",
        delivered.load(Ordering::Relaxed),
        reconnects.load(Ordering::Relaxed)
    );
    let _ = std::fs::remove_dir_all(&dir);
    let mut ok = true;
    if free != total {
        println!("soak: FAIL: {} mbufs leaked", total - free);
        ok = false;
    }
    if fds_end != fds0 {
        println!("soak: FAIL: fd count {fds_end} != {fds0}");
        ok = false;
    }
    if rss_max > rss_first + 8 * 1024 {
        println!(
            "soak: FAIL: anonymous RSS grew by {} KiB",
            rss_max - rss_first
        );
        ok = false;
    }
    if delivered.load(Ordering::Relaxed) == 0 {
        println!("soak: FAIL: no traffic");
        ok = false;
    }
    std::process::exit(if ok { 0 } else { 1 });
}
