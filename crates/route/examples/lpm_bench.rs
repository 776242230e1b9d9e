//! LPM lookup rate on one thread, random addresses, batches of 32.
//!
//! `cargo run --release -p ferrovia-route --example lpm_bench [SECONDS_PER_CASE]`
//!
//! Cases: (a) 1000 random /8–/24 routes; (b) 10000 random routes of /8–/32 (a third longer
//! than /24, so lookups go through tbl8 groups). Addresses are uniformly random (most miss
//! (a)'s routes) and, second line of each case, drawn inside the installed routes (every
//! lookup hits, and in (b) many take the tbl8 path).

use std::hint::black_box;
use std::time::{Duration, Instant};

use ferrovia_route::lpm::{self, LpmReader, mask};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }
}

const BATCH: usize = 32;

fn run(name: &str, r: &LpmReader, addrs: &[u32], secs: f64) {
    let mut out = [None; BATCH];
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let (mut n, mut hits) = (0u64, 0u64);
    while Instant::now() < deadline {
        for batch in addrs.chunks_exact(BATCH) {
            r.lookup_bulk(black_box(batch), &mut out);
            hits += out.iter().filter(|o| o.is_some()).count() as u64;
        }
        n += (addrs.len() / BATCH * BATCH) as u64;
    }
    let dt = start.elapsed().as_secs_f64();
    println!(
        "{name:<52} {:>7.1} M lookups/s  ({:.2} ns/lookup, {:.0}% hit)",
        n as f64 / dt / 1e6,
        dt * 1e9 / n as f64,
        100.0 * hits as f64 / n as f64
    );
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // 1 Mi addresses (4 MiB): beyond L2, like real traffic over many flows.
    let random: Vec<u32> = (0..1 << 20).map(|_| rng.u32()).collect();

    for (case, count, max_len) in [
        ("(a) 1000 routes /8-/24", 1000, 24u8),
        ("(b) 10000 routes /8-/32", 10_000, 32),
    ] {
        let rss0 = rss_kib();
        let (mut w, r) = lpm::new(8192).expect("lpm");
        let mut routes = Vec::new();
        while w.len() < count {
            let len = if max_len > 24 && rng.next().is_multiple_of(3) {
                25 + (rng.next() % 8) as u8
            } else {
                8 + (rng.next() % 17) as u8
            };
            let prefix = rng.u32() & mask(len);
            w.add(prefix, len, (rng.next() % 1000) as u32).expect("add");
            routes.push((prefix, len));
        }
        let inside: Vec<u32> = (0..1 << 20)
            .map(|_| {
                let (p, l) = routes[(rng.next() % routes.len() as u64) as usize];
                p | (rng.u32() & !mask(l))
            })
            .collect();
        println!(
            "{case}: {} tbl8 groups in use, RSS +{} KiB",
            w.tbl8_groups_in_use(),
            rss_kib().saturating_sub(rss0)
        );
        run(&format!("{case}, random addresses"), &r, &random, secs);
        run(
            &format!("{case}, addresses inside routes"),
            &r,
            &inside,
            secs,
        );
    }
}
