//! How fast a capture runs: a thread receives bursts of 32 from a `net_null` port (which makes
//! frames as fast as it is asked) for a few seconds, first with no capture, then with a
//! capture of its Rx queue into a pcapng file (on tmpfs by default). Prints, for each
//! snap length, the data path's rate and what the capture kept: packets written per second
//! (the writer thread's sustained rate) and the share dropped because the ring was full.
//!
//! It first compares, in alternating rounds, the Rx rate of a `net_null` port opened without
//! the capture wrapper (the driver alone) and through the registry (wrapped, capture off):
//! the cost of the hook when off.
//!
//! ```sh
//! cargo run --release -p ferrovia-pmd --example capture_bench -- [seconds, default 2] [dir, default /dev/shm]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrovia_ethdev::{Burst, CaptureSpec, Captures, Port, PortConf};
use ferrovia_memory::{LcoreCaches, Mempool, MempoolConfig};

/// Receives for `secs` seconds; returns packets per second.
fn receive(port: &mut Box<dyn Port>, secs: f64) -> f64 {
    let mut rx = port.rx_queue(0).expect("rx queue");
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let t = std::thread::spawn(move || {
        let mut caches = LcoreCaches::new();
        let mut b = Burst::new();
        let mut n = 0u64;
        let t0 = Instant::now();
        while !s.load(Ordering::Relaxed) {
            n += rx.rx_burst(&mut caches, &mut b, 32) as u64;
            caches.free_all(b.drain(..));
        }
        n as f64 / t0.elapsed().as_secs_f64()
    });
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    t.join().expect("receiver")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let dir = args.get(1).cloned().unwrap_or_else(|| "/dev/shm".into());
    let pool = Mempool::new(MempoolConfig {
        name: "capbench".into(),
        count: 8192,
        ..Default::default()
    })
    .expect("pool");
    // The hook's cost when off: the driver alone against the wrapped port, alternating.
    let d = ferrovia_ethdev::Devargs::parse("net_null0,size=64").expect("devargs");
    let (mut bare_r, mut wrapped_r) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let mut bare: Box<dyn Port> = Box::new(
            ferrovia_pmd::null::NullPort::open(&d, &PortConf::new(0, pool.clone())).expect("null"),
        );
        bare.start().expect("start");
        bare_r.push(receive(&mut bare, secs / 2.0) / 1e6);
        let mut wrapped =
            ferrovia_pmd::open("net_null0,size=64", &PortConf::new(0, pool.clone())).expect("null");
        wrapped.start().expect("start");
        wrapped_r.push(receive(&mut wrapped, secs / 2.0) / 1e6);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "capture off, 64 B null Rx: driver alone {:.2} Mpps, wrapped {:.2} Mpps (medians of 3; rounds {:?} / {:?})",
        med(&mut bare_r),
        med(&mut wrapped_r),
        bare_r,
        wrapped_r
    );
    println!(
        "{:>6} {:>8} {:>12} {:>14} {:>10}",
        "frame", "snaplen", "rx Mpps", "written Mpps", "dropped"
    );
    for size in [64usize, 1518] {
        let mut port = ferrovia_pmd::open(
            &format!("net_null0,size={size}"),
            &PortConf::new(0, pool.clone()),
        )
        .expect("net_null port");
        port.start().expect("start");
        let off = receive(&mut port, secs);
        println!(
            "{size:>6} {:>8} {:>12.2} {:>14} {:>10}",
            "off",
            off / 1e6,
            "-",
            "-"
        );
        let tap = port.capture_point().expect("capture point");
        for snaplen in [64u32, 128, 1518] {
            if snaplen as usize > size && snaplen != 1518 {
                continue;
            }
            let caps = Captures::new();
            let path = std::path::Path::new(&dir)
                .join(format!("ferrovia-capbench-{}.pcapng", std::process::id()));
            let st = caps
                .start(
                    &tap,
                    CaptureSpec {
                        rx: true,
                        tx: false,
                        snaplen,
                        ..CaptureSpec::new(&path)
                    },
                )
                .unwrap_or_else(|e| panic!("{e}"));
            let t0 = Instant::now();
            let on = receive(&mut port, secs);
            let fin = caps.stop(st.id).expect("stop");
            let el = t0.elapsed().as_secs_f64();
            println!(
                "{size:>6} {snaplen:>8} {:>12.2} {:>14.2} {:>9.1}%",
                on / 1e6,
                fin.written as f64 / el / 1e6,
                100.0 * fin.drops as f64 / (fin.drops + fin.captured).max(1) as f64
            );
            let _ = std::fs::remove_file(&path);
        }
    }
}
