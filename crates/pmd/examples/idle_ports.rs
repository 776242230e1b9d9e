//! Idle cost of the control plane: opens N vhost-user ports and N virtio-user ports connected
//! pairwise in this process, leaves them idle, and prints the CPU time the control thread
//! (`ferrovia-ctl`) used over the window, the process's thread count and the resident memory
//! per port.
//!
//! `cargo run --release -p ferrovia-pmd --example idle_ports -- [pairs] [seconds]`
//! (defaults: 256 pairs, 10 s).

use std::time::{Duration, Instant};

use ferrovia_ethdev::{Port, PortConf};
use ferrovia_memory::{Mempool, MempoolConfig};

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU ticks (utime + stime) of the thread named `name`.
fn thread_ticks(name: &str) -> Option<u64> {
    for t in std::fs::read_dir("/proc/self/task").ok()? {
        let p = t.ok()?.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let stat = std::fs::read_to_string(p.join("stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            return Some(f[11].parse::<u64>().ok()? + f[12].parse::<u64>().ok()?);
        }
    }
    None
}

fn main() {
    let mut args = std::env::args().skip(1);
    let pairs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(256);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
    }
    let dir = std::env::temp_dir().join(format!("ferrovia-idle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let pool = |name: &str, count| {
        Mempool::new(MempoolConfig {
            name: name.into(),
            count,
            cache_size: 64,
            ..Default::default()
        })
        .expect("mempool")
    };
    let vu_pool = pool("idle-vu", (pairs * 64 + 4096).next_power_of_two());
    let vh_pool = pool("idle-vh", 4096);
    let rss0 = rss_kib();
    let t0 = Instant::now();
    let mut ports: Vec<Box<dyn Port>> = Vec::new();
    for i in 0..pairs {
        let sock = dir.join(format!("p{i}.sock")).display().to_string();
        let mut vh = ferrovia_pmd::open(
            &format!("net_vhost{i},iface={sock}"),
            &PortConf::new(i as u16, vh_pool.clone()),
        )
        .expect("vhost port");
        vh.start().expect("start");
        let mut vu = ferrovia_pmd::open(
            &format!("net_virtio_user{i},path={sock},queue_size=64"),
            &PortConf::new((pairs + i) as u16, vu_pool.clone()),
        )
        .expect("virtio-user port");
        vu.start().expect("start");
        ports.push(vh);
        ports.push(vu);
    }
    while !ports.iter().all(|p| p.link().up) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let opened = t0.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let rss1 = rss_kib();
    let hz = 100.0; // USER_HZ on Linux
    let c0 = thread_ticks("ferrovia-ctl").unwrap_or(0);
    let w0 = ferrovia_transport::reactor::Reactor::global()
        .counters()
        .wakeups
        .load(std::sync::atomic::Ordering::Relaxed);
    let w = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let el = w.elapsed().as_secs_f64();
    let c1 = thread_ticks("ferrovia-ctl").unwrap_or(0);
    let w1 = ferrovia_transport::reactor::Reactor::global()
        .counters()
        .wakeups
        .load(std::sync::atomic::Ordering::Relaxed);
    let threads = std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0);
    let cpu = (c1 - c0) as f64 / hz / el * 100.0;
    println!(
        "{{\"pairs\": {pairs}, \"ports\": {}, \"open_and_link_ms\": {}, \"idle_window_s\": {el:.1}, \"control_cpu_percent\": {cpu:.3}, \"control_wakeups_per_s\": {:.2}, \"threads\": {threads}, \"rss_kib_before\": {rss0}, \"rss_kib_after\": {rss1}, \"rss_kib_per_port\": {:.1}}}",
        pairs * 2,
        opened.as_millis(),
        (w1 - w0) as f64 / el,
        (rss1.saturating_sub(rss0)) as f64 / (pairs * 2) as f64
    );
    drop(ports);
    let _ = std::fs::remove_dir_all(&dir);
}
