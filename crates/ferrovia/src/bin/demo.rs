//! `ferrovia-demo`: the container-networking picture in one process, with no root, no
//! hugepages and no configuration.
//!
//! A vhost-user backend port (the vSwitch side) echoes every packet it receives; a virtio-user
//! port (the container side) connected to it over a unix socket sends 64-byte frames as fast as
//! it can and checks each one that comes back. Live throughput is printed every second.
//!
//! Options: `--seconds N` (default 5), `--size BYTES` (default 64), `--queue-size N`
//! (default 1024), `--socket PATH` (default: a fresh temporary path).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferrovia::{Burst, LcoreCaches, Mempool, MempoolConfig, PortConf};

struct Args {
    seconds: u64,
    size: usize,
    queue_size: u16,
    socket: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        seconds: 5,
        size: 64,
        queue_size: 1024,
        socket: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or(format!("{k} needs a value"));
        match k.as_str() {
            "--seconds" => a.seconds = v()?.parse().map_err(|_| "--seconds: not a number")?,
            "--size" => a.size = v()?.parse().map_err(|_| "--size: not a number")?,
            "--queue-size" => {
                a.queue_size = v()?.parse().map_err(|_| "--queue-size: not a number")?
            }
            "--socket" => a.socket = Some(v()?),
            "-h" | "--help" => {
                println!(
                    "usage: ferrovia-demo [--seconds N] [--size BYTES] [--queue-size N] [--socket PATH]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other} (try --help)")),
        }
    }
    if !(60..=9000).contains(&a.size) {
        return Err(format!("--size {}: must be 60..=9000", a.size));
    }
    Ok(a)
}

const MAGIC: u32 = 0xF3_0D_1A_00;

fn main() {
    if let Err(e) = run() {
        eprintln!("ferrovia-demo: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let a = parse()?;
    let dir = std::env::temp_dir().join(format!("ferrovia-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sock = a
        .socket
        .clone()
        .unwrap_or_else(|| dir.join("vhost.sock").display().to_string());
    let pool = Mempool::new(MempoolConfig {
        name: "demo".into(),
        count: 16384,
        ..Default::default()
    })?;
    let conf = PortConf::new(0, pool.clone());
    let mut vhost = ferrovia::open(&format!("net_vhost0,iface={sock}"), &conf)?;
    let mut conf1 = conf.clone();
    conf1.port_id = 1;
    let mut vu = ferrovia::open(
        &format!("net_virtio_user0,path={sock},queue_size={}", a.queue_size),
        &conf1,
    )?;
    vhost.start()?;
    vu.start()?;
    println!(
        "ferrovia-demo: vhost-user backend on {sock} <-> virtio-user; {}-byte frames for {} s (memfd memory, no hugepages, uid {})",
        a.size,
        a.seconds,
        // SAFETY: getuid has no preconditions.
        unsafe { libc::getuid() }
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let back = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));

    // The vSwitch side: echo.
    let (mut hrx, mut htx) = (vhost.rx_queue(0)?, vhost.tx_queue(0)?);
    let stop1 = stop.clone();
    let echo = std::thread::spawn(move || {
        let mut caches = LcoreCaches::new();
        let mut b = Burst::new();
        while !stop1.load(Ordering::Relaxed) {
            if hrx.rx_burst(&mut caches, &mut b, 32) > 0 {
                htx.tx_burst(&mut caches, &mut b);
                caches.free_all(b.drain(..));
            }
        }
    });

    // The container side: send and check.
    let (mut vrx, mut vtx) = (vu.rx_queue(0)?, vu.tx_queue(0)?);
    let (stop2, sent2, back2, bad2, size) = (
        stop.clone(),
        sent.clone(),
        back.clone(),
        bad.clone(),
        a.size,
    );
    let app = std::thread::spawn(move || {
        let mut caches = LcoreCaches::new();
        let mut b = Burst::new();
        let mut r = Burst::new();
        let mut seq = 0u32;
        while !stop2.load(Ordering::Relaxed) {
            let cache = caches.for_pool(&pool);
            while b.len() < 32 {
                let Some(mut m) = cache.alloc() else { break };
                let Some(d) = m.append(size) else { break };
                d[..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2]);
                d[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
                d[14..18].copy_from_slice(&MAGIC.to_be_bytes());
                d[18..22].copy_from_slice(&seq.to_be_bytes());
                seq = seq.wrapping_add(1);
                b.push(m);
            }
            let n = vtx.tx_burst(&mut caches, &mut b);
            sent2.fetch_add(n as u64, Ordering::Relaxed);
            let k = vrx.rx_burst(&mut caches, &mut r, 32);
            if k > 0 {
                let ok = r
                    .iter()
                    .filter(|m| m.data().get(14..18) == Some(&MAGIC.to_be_bytes()[..]))
                    .count();
                back2.fetch_add(ok as u64, Ordering::Relaxed);
                bad2.fetch_add((k - ok) as u64, Ordering::Relaxed);
                caches.free_all(r.drain(..));
            }
        }
        caches.free_all(b.drain(..));
    });

    let t0 = Instant::now();
    let mut last = (0u64, t0);
    for _ in 0..a.seconds {
        std::thread::sleep(Duration::from_secs(1));
        let now = Instant::now();
        let b = back.load(Ordering::Relaxed);
        let pps = (b - last.0) as f64 / now.duration_since(last.1).as_secs_f64();
        println!(
            "  t={:>3.0}s  Rx-pps: {:>10.0}  ({:.2} Mpps, {:.2} Gbit/s)  link={}",
            now.duration_since(t0).as_secs_f64(),
            pps,
            pps / 1e6,
            pps * (a.size as f64 + 24.0) * 8.0 / 1e9,
            if vu.link().up { "up" } else { "down" }
        );
        last = (b, now);
    }
    stop.store(true, Ordering::Relaxed);
    echo.join().map_err(|_| "echo thread panicked")?;
    app.join().map_err(|_| "app thread panicked")?;
    let (s, b, x) = (
        sent.load(Ordering::Relaxed),
        back.load(Ordering::Relaxed),
        bad.load(Ordering::Relaxed),
    );
    println!(
        "done: sent {s}, came back intact {b}, corrupt {x}, in flight or dropped at stop {}",
        s.saturating_sub(b + x)
    );
    drop(vu);
    drop(vhost);
    let _ = std::fs::remove_dir_all(&dir);
    if x > 0 || b == 0 {
        return Err("traffic check failed".into());
    }
    Ok(())
}
