//! loom models of the mempool's per-thread caches in front of the shared ring. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p ferrovia-memory --release --test loom_mempool`
//! (scripts/loom.sh); without `--cfg loom` this file compiles to nothing.
#![cfg(loom)]

use ferrovia_memory::{Mbuf, Mempool, MempoolConfig};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

/// A pool of `count` mbufs whose caches hold one mbuf and flush above one.
fn pool(count: usize) -> Mempool {
    Mempool::new(MempoolConfig {
        name: "loom".into(),
        count,
        cache_size: 1,
        ..Default::default()
    })
    .unwrap()
}

/// Marks `m` as owned by `who`.
fn claim(m: &mut Mbuf, who: u8) {
    m.append(1).expect("room for one byte")[0] = who;
}

/// Two threads, each with its own cache, allocate (refilling from the ring in bulk), hold,
/// and free (flushing back in bulk) at the same time: no mbuf is ever held by both threads at
/// once, and afterwards every mbuf is back in the ring exactly once.
#[test]
fn two_caches_refill_and_flush_concurrently() {
    loom::model(|| {
        let p = pool(4);
        // An atomic touched between claiming and checking: a point where loom may switch
        // threads while both mbufs are held.
        let step = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (1..=2u8)
            .map(|who| {
                let (p, step) = (p.clone(), step.clone());
                thread::spawn(move || {
                    let mut c = p.cache();
                    let mut a = c.alloc().expect("4 mbufs for 2 threads x 2");
                    let mut b = c.alloc().expect("4 mbufs for 2 threads x 2");
                    claim(&mut a, who);
                    claim(&mut b, who);
                    step.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(a.data(), [who], "mbuf also handed to the other thread");
                    assert_eq!(b.data(), [who], "mbuf also handed to the other thread");
                    c.free(a);
                    c.free(b); // above the cache size: flushes to the ring
                    drop(c); // flushes the rest
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(p.available(), 4, "every mbuf back in the ring");
        // Exactly once each: four distinct buffers come out, then none.
        let all: Vec<Mbuf> = (0..4).map(|_| p.alloc().unwrap()).collect();
        assert!(p.alloc().is_none());
        let mut seen: Vec<u64> = all.iter().map(|m| m.buf_addr()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 4, "an mbuf was in the ring twice");
    });
}

/// One thread allocates from its cache and hands the mbufs to another, which frees them into
/// its own cache (the receive-then-free path of a forwarding pair) while the first allocates
/// again: nothing is lost or duplicated.
#[test]
fn mbufs_freed_by_another_threads_cache() {
    loom::model(|| {
        let p = pool(3);
        let mut c = p.cache();
        let a = c.alloc().unwrap();
        let b = c.alloc().unwrap();
        let consumer = {
            let p = p.clone();
            thread::spawn(move || {
                let mut c2 = p.cache();
                c2.free(a);
                c2.free(b); // flushes one to the ring
                drop(c2);
            })
        };
        // Meanwhile the producer's cache drains and refills from the ring.
        let mut held = Vec::new();
        while let Some(m) = c.alloc() {
            held.push(m.buf_addr());
            drop(m);
            if held.len() == 2 {
                break;
            }
        }
        consumer.join().unwrap();
        drop(c);
        assert_eq!(p.available(), 3, "every mbuf back in the ring");
        let all: Vec<Mbuf> = (0..3).map(|_| p.alloc().unwrap()).collect();
        assert!(p.alloc().is_none());
        let mut seen: Vec<u64> = all.iter().map(|m| m.buf_addr()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 3, "an mbuf was in the ring twice");
    });
}
