//! loom models of the lock-free pieces of the memory layer. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p ferrovia-memory --release --test loom_ring`
//! (scripts/loom.sh); without `--cfg loom` this file compiles to nothing.
#![cfg(loom)]

use ferrovia_memory::ObjRing;
use loom::sync::Arc;
use loom::thread;

/// Two producers enqueue in bulk at once (racing on the head CAS and the ordered tail
/// publication): afterwards every value is there exactly once.
#[test]
fn racing_producers_publish_everything_once() {
    loom::model(|| {
        let r = Arc::new(ObjRing::new(4));
        let p: Vec<_> = (0..2)
            .map(|t| {
                let r = r.clone();
                thread::spawn(move || assert!(r.enqueue_bulk(&[10 * t + 1, 10 * t + 2])))
            })
            .collect();
        for h in p {
            h.join().unwrap();
        }
        let mut got = [0usize; 4];
        assert!(r.dequeue_bulk(&mut got));
        let mut got = got.to_vec();
        got.sort();
        assert_eq!(got, vec![1, 2, 11, 12]);
        assert!(r.is_empty());
    });
}

/// A producer and a consumer at once: the consumer sees either nothing or a whole published
/// batch (never a slot before its value is written), and nothing is lost or duplicated.
#[test]
fn consumer_never_sees_unpublished_slots() {
    loom::model(|| {
        let r = Arc::new(ObjRing::new(4));
        let p = {
            let r = r.clone();
            thread::spawn(move || assert!(r.enqueue_bulk(&[7, 8])))
        };
        let mut first = [0usize; 2];
        let n = r.dequeue_burst(&mut first);
        assert!(
            n == 0 || (n == 2 && first == [7, 8]),
            "saw {n} values: {first:?}"
        );
        p.join().unwrap();
        let mut rest = [0usize; 2];
        let m = r.dequeue_burst(&mut rest);
        assert_eq!(n + m, 2);
        if m == 2 {
            assert_eq!(rest, [7, 8]);
        }
    });
}

/// Two consumers race for the same values: each value is taken by exactly one of them.
#[test]
fn competing_consumers_take_each_value_once() {
    loom::model(|| {
        let r = Arc::new(ObjRing::new(4));
        assert!(r.enqueue_bulk(&[1, 2, 3]));
        let c: Vec<_> = (0..2)
            .map(|_| {
                let r = r.clone();
                thread::spawn(move || {
                    let mut out = [0usize; 2];
                    let n = r.dequeue_burst(&mut out);
                    out[..n].to_vec()
                })
            })
            .collect();
        let mut all: Vec<usize> = c.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let mut rest = [0usize; 3];
        let n = r.dequeue_burst(&mut rest);
        all.extend_from_slice(&rest[..n]);
        all.sort();
        assert_eq!(all, vec![1, 2, 3]);
    });
}

/// Two threads each take two values from a full ring and put them back, twice (what two
/// mempool caches do): a bulk enqueue of values a thread holds must never fail (the ring has
/// room for them by construction), and every value is there exactly once at the end. Found
/// two ordering bugs: a stale consumer tail made the ring look full (the enqueue failed and a
/// cache flush lost mbufs), and relaxed waits for earlier tails let a consumer read a stale
/// slot (one value handed out twice).
#[test]
fn two_threads_cycle_values_through_a_full_ring() {
    loom::model(|| {
        let r = Arc::new(ObjRing::new(4));
        assert!(r.enqueue_bulk(&[1, 2, 3, 4]));
        let w: Vec<_> = (0..2)
            .map(|_| {
                let r = r.clone();
                thread::spawn(move || {
                    for _ in 0..2 {
                        let mut o = [0usize; 2];
                        let n = r.dequeue_burst(&mut o);
                        assert!(r.enqueue_bulk(&o[..n]), "no room for {n} values we held");
                    }
                })
            })
            .collect();
        for h in w {
            h.join().unwrap();
        }
        let mut all = [0usize; 4];
        assert!(r.dequeue_bulk(&mut all));
        all.sort();
        assert_eq!(all, [1, 2, 3, 4]);
    });
}
