//! A two-port L2 traffic generator for switch benchmarks: both ports transmit fixed-size
//! UDP/IPv4 frames as fast as they can and drain what comes back, from one thread.
//!
//! Port 0 sends `src=MAC_A dst=MAC_B` and port 1 sends `src=MAC_B dst=MAC_A`, so a learning
//! switch between them forwards 0→1 and 1→0 once it has seen both addresses (before that it
//! floods, which on a two-port bridge is the same thing). What each port receives is what the
//! switch forwarded; the sum is the switch's forwarding rate.
//!
//! ```text
//! taskset -c 0 cargo run --release -p ferrovia --example l2_gen -- \
//!     --port0 'net_virtio_user0,path=/tmp/vs0,server=1,queue_size=1024' \
//!     --port1 'net_virtio_user1,path=/tmp/vs1,server=1,queue_size=1024' \
//!     --size 64 --warmup 2 --duration 10
//! ```
//!
//! It waits (up to `--link-timeout` seconds) for both links to come up, then sends for
//! `--warmup` seconds without counting, then counts for `--duration` seconds, and prints one
//! JSON line on stdout:
//! `{"size":64,"duration_s":10.0,"tx_pps":[..,..],"rx_pps":[..,..],"fwd_mpps":..,
//!   "link_up_unix_s":[..,..],"first_rx_unix_s":[..,..],"per_s_rx_mpps":[..]}`.
//! `first_rx_unix_s` (wall clock of the first received packet per port) lets a caller
//! measure how long a switch took from its launch to forwarding. With `--per-second`, a
//! line per second goes to stderr.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferrovia::{Burst, LcoreCaches, Mempool, MempoolConfig, PortConf};

const MAC_A: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0b];

struct Opts {
    devargs: [String; 2],
    size: usize,
    duration: f64,
    warmup: f64,
    link_timeout: f64,
    burst: usize,
    per_second: bool,
}

const USAGE: &str = "usage: l2_gen --port0 DEVARGS --port1 DEVARGS [--size 64] [--duration 10] \
[--warmup 2] [--link-timeout 30] [--burst 32] [--per-second]";

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        devargs: [String::new(), String::new()],
        size: 64,
        duration: 10.0,
        warmup: 2.0,
        link_timeout: 30.0,
        burst: 32,
        per_second: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--per-second" {
            o.per_second = true;
            continue;
        }
        if a == "-h" || a == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let v = args
            .next()
            .ok_or_else(|| format!("{a} needs a value\n{USAGE}"))?;
        let num = |v: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .map_err(|_| format!("{a}: not a number: {v}"))
        };
        match a.as_str() {
            "--port0" => o.devargs[0] = v,
            "--port1" => o.devargs[1] = v,
            "--size" => o.size = num(&v)? as usize,
            "--duration" => o.duration = num(&v)?,
            "--warmup" => o.warmup = num(&v)?,
            "--link-timeout" => o.link_timeout = num(&v)?,
            "--burst" => o.burst = num(&v)? as usize,
            _ => return Err(format!("unknown option {a}\n{USAGE}")),
        }
    }
    if o.devargs.iter().any(String::is_empty) {
        return Err(format!("--port0 and --port1 are required\n{USAGE}"));
    }
    if !(60..=1518).contains(&o.size) {
        return Err(format!(
            "--size {} out of range 60..=1518 (without FCS)",
            o.size
        ));
    }
    if o.burst == 0 || o.burst > ferrovia::MAX_BURST {
        return Err(format!("--burst must be 1..={}", ferrovia::MAX_BURST));
    }
    Ok(o)
}

/// Ethernet + IPv4 (198.18.0.1 → 198.18.0.2) + UDP 9 → 9, `len` bytes, IPv4 checksum set,
/// UDP checksum 0 (none).
fn frame(src: &[u8; 6], dst: &[u8; 6], len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    b[..6].copy_from_slice(dst);
    b[6..12].copy_from_slice(src);
    b[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut b[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((len - 14) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[198, 18, 0, 1]);
    ip[16..20].copy_from_slice(&[198, 18, 0, 2]);
    let mut sum: u32 = ip
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    b[34..36].copy_from_slice(&9u16.to_be_bytes());
    b[36..38].copy_from_slice(&9u16.to_be_bytes());
    b[38..40].copy_from_slice(&((len - 34) as u16).to_be_bytes());
    b
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn json_list(v: &[f64], prec: usize) -> String {
    let items: Vec<String> = v.iter().map(|x| format!("{x:.prec$}")).collect();
    format!("[{}]", items.join(","))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = parse()?;
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let pool = Mempool::new(MempoolConfig {
        count: 16384,
        ..MempoolConfig::default()
    })?;
    let mut ports = Vec::new();
    for (i, d) in o.devargs.iter().enumerate() {
        let mut p = ferrovia::open(d, &PortConf::new(i as u16, pool.clone()))?;
        p.start()?;
        ports.push(p);
    }
    let mut rxq = Vec::new();
    let mut txq = Vec::new();
    for p in ports.iter_mut() {
        rxq.push(p.rx_queue(0)?);
        txq.push(p.tx_queue(0)?);
    }
    let tpl = [frame(&MAC_A, &MAC_B, o.size), frame(&MAC_B, &MAC_A, o.size)];

    // Wait for both links; the switch may start after us (we may be the listening side).
    let t0 = Instant::now();
    let mut link_up = [0.0f64; 2];
    while link_up.contains(&0.0) {
        for (i, p) in ports.iter().enumerate() {
            if link_up[i] == 0.0 && p.link().up {
                link_up[i] = unix_now();
            }
        }
        if t0.elapsed().as_secs_f64() > o.link_timeout {
            return Err(format!(
                "links not up after {} s (port0 {}, port1 {})",
                o.link_timeout,
                if link_up[0] > 0.0 { "up" } else { "down" },
                if link_up[1] > 0.0 { "up" } else { "down" },
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }

    let mut caches = LcoreCaches::new();
    let mut burst = Burst::new();
    let mut tx = [0u64; 2];
    let mut rx = [0u64; 2];
    let mut first_rx = [0.0f64; 2];
    let mut per_s: Vec<f64> = Vec::new();
    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(o.warmup);
    let end = warm_end + Duration::from_secs_f64(o.duration);
    let mut counting = false;
    let mut next_tick = warm_end + Duration::from_secs(1);
    let mut tick_rx = 0u64;
    let mut iter = 0u32;
    loop {
        for i in 0..2 {
            // Transmit one burst of prebuilt frames.
            let cache = caches.for_pool(&pool);
            let bytes = &tpl[i];
            for _ in 0..o.burst {
                let Some(mut m) = cache.alloc() else { break };
                match m.append(bytes.len()) {
                    Some(d) => d.copy_from_slice(bytes),
                    None => {
                        cache.free(m);
                        break;
                    }
                }
                burst.push(m);
            }
            tx[i] += txq[i].tx_burst(&mut caches, &mut burst) as u64;
            caches.free_all(burst.drain(..)); // what the ring had no room for
            // Drain what came back.
            let n = rxq[i].rx_burst(&mut caches, &mut burst, ferrovia::MAX_BURST);
            if n > 0 {
                if first_rx[i] == 0.0 {
                    first_rx[i] = unix_now();
                }
                rx[i] += n as u64;
                caches.free_all(burst.drain(..));
            }
        }
        iter = iter.wrapping_add(1);
        if !iter.is_multiple_of(64) {
            continue;
        }
        let now = Instant::now();
        if !counting && now >= warm_end {
            counting = true;
            tx = [0; 2];
            rx = [0; 2];
            tick_rx = 0;
        }
        if counting && now >= next_tick {
            let r = rx[0] + rx[1];
            per_s.push((r - tick_rx) as f64 / 1e6);
            if o.per_second {
                eprintln!(
                    "l2_gen: rx {:.3} Mpps (port0 {} port1 {} so far)",
                    (r - tick_rx) as f64 / 1e6,
                    rx[0],
                    rx[1]
                );
            }
            tick_rx = r;
            next_tick += Duration::from_secs(1);
        }
        if now >= end {
            break;
        }
    }
    let secs = (Instant::now() - warm_end).as_secs_f64();
    let pps = |v: [u64; 2]| [v[0] as f64 / secs, v[1] as f64 / secs];
    println!(
        "{{\"size\":{},\"duration_s\":{:.3},\"tx_pps\":{},\"rx_pps\":{},\"fwd_mpps\":{:.4},\
         \"link_up_unix_s\":{},\"first_rx_unix_s\":{},\"per_s_rx_mpps\":{}}}",
        o.size,
        secs,
        json_list(&pps(tx), 0),
        json_list(&pps(rx), 0),
        (rx[0] + rx[1]) as f64 / secs / 1e6,
        json_list(&link_up, 6),
        json_list(&first_rx, 6),
        json_list(&per_s, 3),
    );
    drop((rxq, txq));
    for p in ports.iter_mut() {
        let _ = p.stop();
    }
    Ok(())
}
