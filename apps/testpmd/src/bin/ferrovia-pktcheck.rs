//! `ferrovia-pktcheck`: send numbered frames through a port and check every one that comes back.
//!
//! The port (any devargs) faces a reflector, typically a testpmd (ours or DPDK's) in macswap or
//! io mode. Each frame carries a magic number, a sequence number, its queue, its length, a
//! payload derived from the sequence number and a checksum. A frame that comes back is checked
//! byte for byte; duplicates, corruption and losses are counted. At most `--window` frames are
//! in flight, so a lossless path loses nothing.
//!
//! ```text
//! ferrovia-pktcheck --vdev net_vhost0,iface=/tmp/s --count 10000 --sizes 64,1518,9000 --queues 2
//! ```
//! Prints one summary line `PKTCHECK sent=.. received=.. intact=.. corrupt=.. lost=.. dup=..
//! macswapped=.. unchanged=..` (and JSON with `--json`); exits 0 only if every frame came back
//! intact (or losses stay within `--max-loss`).

use std::time::{Duration, Instant};

use ferrovia_ethdev::{Burst, PortConf};
use ferrovia_memory::{LcoreCaches, Mbuf, MbufCache, Mempool, MempoolConfig};

const MAGIC: u32 = 0xFE55_C0DE;
const HDR: usize = 14 + 4 + 8 + 2 + 2; // eth + magic + seq + queue + len
const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

struct Args {
    vdev: String,
    count: u64,
    sizes: Vec<usize>,
    queues: u16,
    window: u64,
    timeout: Duration,
    link_timeout: Duration,
    max_loss: u64,
    json: bool,
    max_pkt_len: u32,
}

fn usage() -> ! {
    eprintln!(
        "usage: ferrovia-pktcheck --vdev DEVARGS [--count N] [--sizes 64,1518,9000] [--queues Q] \
         [--window W] [--timeout SECS] [--link-timeout SECS] [--max-loss N] [--max-pkt-len N] [--json]"
    );
    std::process::exit(2);
}

fn parse() -> Args {
    let mut a = Args {
        vdev: String::new(),
        count: 10_000,
        sizes: vec![64, 1518],
        queues: 1,
        window: 256,
        timeout: Duration::from_secs(5),
        link_timeout: Duration::from_secs(30),
        max_loss: 0,
        json: false,
        max_pkt_len: 9728,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let (k, inline) = match args[i].split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.to_string())),
            _ => (args[i].clone(), None),
        };
        let mut val = || -> String {
            if let Some(v) = &inline {
                return v.clone();
            }
            i += 1;
            args.get(i).cloned().unwrap_or_else(|| {
                eprintln!("{k} needs a value");
                usage()
            })
        };
        let bad = |k: &str, v: &str| -> ! {
            eprintln!("invalid value '{v}' for {k}");
            usage()
        };
        match k.as_str() {
            "--vdev" => a.vdev = val(),
            "--count" => {
                let v = val();
                a.count = v.parse().unwrap_or_else(|_| bad(&k, &v));
            }
            "--sizes" => {
                let v = val();
                a.sizes = v
                    .split(',')
                    .map(|s| {
                        s.parse()
                            .ok()
                            .filter(|&n: &usize| (HDR + 4..=9728).contains(&n))
                    })
                    .collect::<Option<Vec<_>>>()
                    .unwrap_or_else(|| bad(&k, &v));
            }
            "--queues" => {
                let v = val();
                a.queues = v
                    .parse()
                    .ok()
                    .filter(|&q| q >= 1)
                    .unwrap_or_else(|| bad(&k, &v));
            }
            "--window" => {
                let v = val();
                a.window = v
                    .parse()
                    .ok()
                    .filter(|&w| w >= 1)
                    .unwrap_or_else(|| bad(&k, &v));
            }
            "--timeout" => {
                let v = val();
                a.timeout = Duration::from_secs_f64(v.parse().unwrap_or_else(|_| bad(&k, &v)));
            }
            "--link-timeout" => {
                let v = val();
                a.link_timeout = Duration::from_secs_f64(v.parse().unwrap_or_else(|_| bad(&k, &v)));
            }
            "--max-loss" => {
                let v = val();
                a.max_loss = v.parse().unwrap_or_else(|_| bad(&k, &v));
            }
            "--max-pkt-len" => {
                let v = val();
                a.max_pkt_len = v.parse().unwrap_or_else(|_| bad(&k, &v));
            }
            "--json" => a.json = true,
            "-h" | "--help" => usage(),
            other => {
                eprintln!("unknown option {other}");
                usage()
            }
        }
        i += 1;
    }
    if a.vdev.is_empty() {
        eprintln!("--vdev is required");
        usage();
    }
    a
}

fn byte_at(seq: u64, i: usize) -> u8 {
    (seq.wrapping_mul(0x9E37_79B9).wrapping_add(i as u64 * 131) >> 3) as u8
}

fn fnv(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in data {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Magic number of the readiness probes (not counted as test frames).
const PROBE_MAGIC: u32 = 0xFE55_0B0E;

/// A 64-byte readiness probe for queue `q`.
fn probe(cache: &mut MbufCache, q: u16) -> Option<Mbuf> {
    let mut m = cache.alloc()?;
    let f = m.append(64)?;
    f.fill(0);
    f[..6].copy_from_slice(&DST);
    f[6..12].copy_from_slice(&SRC);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f[14..18].copy_from_slice(&PROBE_MAGIC.to_be_bytes());
    f[26..28].copy_from_slice(&q.to_be_bytes());
    Some(m)
}

/// Sends a probe on each queue every 50 ms until one comes back on every queue (or `limit`
/// passes: then the run goes on and the losses, if any, show in the summary). Returned probes
/// and anything else received meanwhile are dropped.
fn wait_until_reflecting(
    caches: &mut LcoreCaches,
    pool: &Mempool,
    rxs: &mut [Box<dyn ferrovia_ethdev::RxQueue>],
    txs: &mut [Box<dyn ferrovia_ethdev::TxQueue>],
    limit: Duration,
) {
    let t0 = Instant::now();
    let mut back = vec![false; rxs.len()];
    let mut last_sent: Option<Instant> = None;
    let mut rxb = Burst::new();
    while back.iter().any(|b| !b) {
        if t0.elapsed() > limit {
            eprintln!(
                "pktcheck: no probe came back within {:.1} s; starting anyway",
                limit.as_secs_f64()
            );
            return;
        }
        if last_sent.is_none_or(|t| t.elapsed() > Duration::from_millis(50)) {
            for (q, tx) in txs.iter_mut().enumerate() {
                let mut b = Burst::new();
                if let Some(m) = probe(caches.for_pool(pool), q as u16) {
                    b.push(m);
                }
                tx.tx_burst(caches, &mut b);
                caches.free_all(b.drain(..));
            }
            last_sent = Some(Instant::now());
        }
        for rx in rxs.iter_mut() {
            rx.rx_burst(caches, &mut rxb, 32);
            for m in rxb.drain(..) {
                let f = m.to_vec();
                if f.len() >= 28 && f[14..18] == PROBE_MAGIC.to_be_bytes() {
                    // Marked by the queue it was sent on, whichever queue reflected it.
                    let q = u16::from_be_bytes([f[26], f[27]]) as usize;
                    if let Some(b) = back.get_mut(q) {
                        *b = true;
                    }
                }
                caches.free(m);
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    // Probes still in flight come back within a few ms; let them go by.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_millis(100) {
        for rx in rxs.iter_mut() {
            rx.rx_burst(caches, &mut rxb, 32);
            caches.free_all(rxb.drain(..));
        }
    }
}

/// Builds frame `seq` of `len` bytes for queue `q` as an mbuf chain.
fn build(cache: &mut MbufCache, seq: u64, q: u16, len: usize) -> Option<Mbuf> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&DST);
    f[6..12].copy_from_slice(&SRC);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f[14..18].copy_from_slice(&MAGIC.to_be_bytes());
    f[18..26].copy_from_slice(&seq.to_be_bytes());
    f[26..28].copy_from_slice(&q.to_be_bytes());
    f[28..30].copy_from_slice(&(len as u16).to_be_bytes());
    for (i, b) in f[HDR..len - 4].iter_mut().enumerate() {
        *b = byte_at(seq, i);
    }
    let c = fnv(&f[12..len - 4]);
    f[len - 4..].copy_from_slice(&c.to_be_bytes());
    let mut head: Option<Mbuf> = None;
    let mut rest = &f[..];
    while !rest.is_empty() {
        let mut m = cache.alloc()?;
        let k = rest.len().min(m.tailroom());
        m.append(k)?.copy_from_slice(&rest[..k]);
        rest = &rest[k..];
        match head.as_mut() {
            None => head = Some(m),
            Some(h) => h.chain(m),
        }
    }
    head
}

#[derive(Default)]
struct Tally {
    sent: u64,
    received: u64,
    intact: u64,
    corrupt: u64,
    dup: u64,
    macswapped: u64,
    unchanged: u64,
    foreign: u64,
}

/// Checks one returned frame; Some(seq) if it is one of ours.
fn check(f: &[u8], t: &mut Tally, seen: &mut [u8], q: u16, count: u64) {
    if f.len() < HDR + 4 || f[12..14] != [0x88, 0xb5] || f[14..18] != MAGIC.to_be_bytes() {
        t.foreign += 1;
        return;
    }
    t.received += 1;
    let seq = u64::from_be_bytes(f[18..26].try_into().unwrap());
    let fq = u16::from_be_bytes([f[26], f[27]]);
    let len = u16::from_be_bytes([f[28], f[29]]) as usize;
    if seq >= count {
        t.corrupt += 1;
        return;
    }
    let ok = len == f.len()
        && fq == q
        && fnv(&f[12..len - 4]).to_be_bytes() == f[len - 4..len]
        && f[HDR..len - 4]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == byte_at(seq, i));
    if f[..6] == SRC && f[6..12] == DST {
        t.macswapped += 1;
    } else if f[..6] == DST && f[6..12] == SRC {
        t.unchanged += 1;
    }
    let s = &mut seen[seq as usize];
    if *s != 0 {
        t.dup += 1;
        return;
    }
    *s = 1;
    if ok {
        t.intact += 1;
    } else {
        t.corrupt += 1;
    }
}

fn main() {
    let a = parse();
    if std::env::var("RUST_LOG").is_ok() {
        // Library logs go to stderr through a minimal logger.
        struct L;
        impl log::Log for L {
            fn enabled(&self, _: &log::Metadata) -> bool {
                true
            }
            fn log(&self, r: &log::Record) {
                eprintln!("{}: {}", r.level(), r.args());
            }
            fn flush(&self) {}
        }
        let _ = log::set_logger(&L);
        log::set_max_level(log::LevelFilter::Info);
    }
    let pool = Mempool::new(MempoolConfig {
        name: "pktcheck".into(),
        count: 32768,
        ..Default::default()
    })
    .unwrap_or_else(|e| {
        eprintln!("cannot create the mbuf pool: {e}");
        std::process::exit(1)
    });
    let mut conf = PortConf::new(0, pool.clone());
    conf.nb_rxq = a.queues;
    conf.nb_txq = a.queues;
    conf.max_rx_pktlen = a.max_pkt_len;
    let mut port = ferrovia_pmd::open(&a.vdev, &conf).unwrap_or_else(|e| {
        eprintln!("cannot open {}: {e}", a.vdev);
        std::process::exit(1)
    });
    port.start().unwrap_or_else(|e| {
        eprintln!("cannot start {}: {e}", a.vdev);
        std::process::exit(1)
    });
    let t0 = Instant::now();
    while !port.link().up {
        if t0.elapsed() > a.link_timeout {
            eprintln!(
                "link of {} did not come up within {:.1} s (is the peer running?)",
                a.vdev,
                a.link_timeout.as_secs_f64()
            );
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut rxs: Vec<_> = (0..a.queues)
        .map(|q| port.rx_queue(q).expect("rx queue"))
        .collect();
    let mut txs: Vec<_> = (0..a.queues)
        .map(|q| port.tx_queue(q).expect("tx queue"))
        .collect();
    let mut caches = LcoreCaches::new();
    // The link comes up before the peer forwards: DPDK's testpmd drains (and drops) whatever
    // sits in its Rx queues when forwarding starts. Probe until a frame comes back on every
    // queue, so the numbered frames are only sent to a peer that reflects them.
    wait_until_reflecting(&mut caches, &pool, &mut rxs, &mut txs, a.link_timeout);
    let mut t = Tally::default();
    let mut seen = vec![0u8; a.count as usize];
    let mut pending: Vec<Burst> = (0..a.queues).map(|_| Burst::new()).collect();
    let mut last_progress = Instant::now();
    let started = Instant::now();
    let mut rxb = Burst::new();
    while t.intact + t.corrupt + t.dup < a.count || t.sent < a.count {
        let mut progress = false;
        for q in 0..a.queues as usize {
            // Send while the window allows.
            while t.sent < a.count
                && t.sent - (t.intact + t.corrupt) < a.window
                && pending[q].len() < 32
            {
                let len = a.sizes[(t.sent % a.sizes.len() as u64) as usize];
                match build(caches.for_pool(&pool), t.sent, q as u16, len) {
                    Some(m) => {
                        pending[q].push(m);
                        t.sent += 1;
                    }
                    None => break,
                }
            }
            if !pending[q].is_empty() && txs[q].tx_burst(&mut caches, &mut pending[q]) > 0 {
                progress = true;
            }
            let n = rxs[q].rx_burst(&mut caches, &mut rxb, 32);
            if n > 0 {
                progress = true;
                for m in rxb.drain(..) {
                    let f = m.to_vec();
                    check(&f, &mut t, &mut seen, q as u16, a.count);
                    caches.free(m);
                }
            }
        }
        if progress {
            last_progress = Instant::now();
        } else if last_progress.elapsed() > a.timeout {
            break;
        }
        if t.sent >= a.count && t.intact + t.corrupt + t.dup >= a.count {
            break;
        }
    }
    // Frames still queued locally never left: they are losses.
    let unsent: u64 = pending.iter().map(|p| p.len() as u64).sum();
    let lost = a.count - (t.intact + t.corrupt);
    let secs = started.elapsed().as_secs_f64();
    let stats = port.stats();
    println!(
        "PKTCHECK sent={} received={} intact={} corrupt={} lost={} dup={} macswapped={} unchanged={} foreign={} unsent={} port_rx_errors={} port_tx_errors={} seconds={:.3}",
        t.sent - unsent,
        t.received,
        t.intact,
        t.corrupt,
        lost,
        t.dup,
        t.macswapped,
        t.unchanged,
        t.foreign,
        unsent,
        stats.ierrors(),
        stats.oerrors(),
        secs
    );
    if a.json {
        println!(
            "{{\"sent\":{},\"received\":{},\"intact\":{},\"corrupt\":{},\"lost\":{},\"dup\":{},\"macswapped\":{},\"unchanged\":{},\"seconds\":{:.3}}}",
            t.sent - unsent,
            t.received,
            t.intact,
            t.corrupt,
            lost,
            t.dup,
            t.macswapped,
            t.unchanged,
            secs
        );
    }
    drop(rxs);
    drop(txs);
    drop(pending);
    drop(port);
    let ok = t.corrupt == 0 && t.dup == 0 && lost <= a.max_loss;
    std::process::exit(if ok { 0 } else { 1 });
}
