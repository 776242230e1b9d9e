//! Cost of the mbuf caches per burst of 32: allocating and freeing through an `MbufCache` held
//! directly (as queue handles did), and through a polling thread's `LcoreCaches` (the pool
//! looked up once per burst, each freed mbuf routed to its own pool's cache), with the burst's
//! pool met first or third. Run with `cargo bench -p ferrovia-memory --bench caches`.

use std::hint::black_box;
use std::time::Instant;

use ferrovia_memory::{Burst, LcoreCaches, Mempool, MempoolConfig};

const BURST: usize = 32;
const ITERS: usize = 2_000_000;

fn pool(name: &str) -> Mempool {
    Mempool::new(MempoolConfig {
        name: name.into(),
        count: 8192,
        cache_size: 256,
        ..Default::default()
    })
    .unwrap()
}

/// Best of five runs of `f` over ITERS bursts, in ns per burst.
fn time(name: &str, mut f: impl FnMut()) {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..ITERS {
            f();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / ITERS as f64);
    }
    println!(
        "{name:<58} {best:7.1} ns/burst  {:5.2} ns/mbuf",
        best / BURST as f64
    );
}

fn main() {
    let p = pool("bench-a");
    let others = [pool("bench-b"), pool("bench-c")];
    let mut b = Burst::new();

    let mut cache = p.cache();
    time("MbufCache: alloc_bulk + free_all", || {
        assert!(cache.alloc_bulk(BURST, &mut b));
        black_box(&mut b);
        cache.free_all(b.drain(..));
    });
    drop(cache);

    let mut caches = LcoreCaches::new();
    through_lcore_caches("LcoreCaches, pool met first", &mut caches, &p, &mut b);
    drop(caches);
    let mut caches = LcoreCaches::new();
    for o in &others {
        caches.for_pool(o);
    }
    through_lcore_caches("LcoreCaches, pool met third", &mut caches, &p, &mut b);
}

/// Bursts of `p` through `caches`, freed through the set (routed per mbuf) and through the
/// cache `for_pool` returned.
fn through_lcore_caches(name: &str, caches: &mut LcoreCaches, p: &Mempool, b: &mut Burst) {
    time(
        &format!("{name}: for_pool, alloc_bulk, set's free_all"),
        || {
            assert!(caches.for_pool(black_box(p)).alloc_bulk(BURST, b));
            black_box(&mut *b);
            caches.free_all(b.drain(..));
        },
    );
    time(
        &format!("{name}: for_pool, alloc_bulk, cache's free_all"),
        || {
            let c = caches.for_pool(black_box(p));
            assert!(c.alloc_bulk(BURST, b));
            black_box(&mut *b);
            c.free_all(b.drain(..));
        },
    );
}
