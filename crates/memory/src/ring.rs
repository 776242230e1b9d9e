//! A bounded lock-free multi-producer/multi-consumer ring of machine words, with bulk
//! operations that reserve a whole batch with a single compare-and-swap.
//!
//! The design follows the classic head/tail scheme: a producer reserves slots by moving
//! `prod_head`, writes them, then publishes by moving `prod_tail` once every earlier producer
//! has published. Consumers do the same with the `cons_*` pair. Slots are atomics accessed with
//! relaxed ordering; the head/tail pairs carry the acquire/release edges.

use crate::sync::{AtomicUsize, Ordering, spin_hint};

#[repr(align(64))]
struct Padded(AtomicUsize);

/// Bounded MPMC ring of `usize` values (typically pointers).
pub struct ObjRing {
    prod_head: Padded,
    prod_tail: Padded,
    cons_head: Padded,
    cons_tail: Padded,
    mask: usize,
    slots: Box<[AtomicUsize]>,
}

impl std::fmt::Debug for ObjRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjRing")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

impl ObjRing {
    /// Creates a ring that can hold at least `min_capacity` values (rounded up to a power of two).
    pub fn new(min_capacity: usize) -> Self {
        let cap = min_capacity.max(2).next_power_of_two();
        let slots = (0..cap).map(|_| AtomicUsize::new(0)).collect();
        ObjRing {
            prod_head: Padded(AtomicUsize::new(0)),
            prod_tail: Padded(AtomicUsize::new(0)),
            cons_head: Padded(AtomicUsize::new(0)),
            cons_tail: Padded(AtomicUsize::new(0)),
            mask: cap - 1,
            slots,
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Values currently published and not yet taken (a snapshot).
    pub fn len(&self) -> usize {
        let tail = self.prod_tail.0.load(Ordering::Acquire);
        let head = self.cons_tail.0.load(Ordering::Acquire);
        tail.wrapping_sub(head).min(self.capacity())
    }

    /// True when no value is published (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds all of `objs`, or none if there is not room for all of them.
    pub fn enqueue_bulk(&self, objs: &[usize]) -> bool {
        self.enqueue(objs, false) == objs.len()
    }

    /// Adds as many of `objs` as fit; returns how many.
    pub fn enqueue_burst(&self, objs: &[usize]) -> usize {
        self.enqueue(objs, true)
    }

    /// Takes exactly `out.len()` values, or none.
    pub fn dequeue_bulk(&self, out: &mut [usize]) -> bool {
        let n = out.len();
        self.dequeue(out, false) == n
    }

    /// Takes up to `out.len()` values; returns how many.
    pub fn dequeue_burst(&self, out: &mut [usize]) -> usize {
        self.dequeue(out, true)
    }

    fn enqueue(&self, objs: &[usize], partial: bool) -> usize {
        let cap = self.capacity();
        let (head, n) = loop {
            // Acquire on the head pairs with the AcqRel CAS of the producers before us: having
            // seen their reservation we also see the consumer tail they saw, so a stale
            // `cons_tail` cannot make the ring look fuller than it is (which made a bulk
            // enqueue fail spuriously and a cache flush drop mbufs; found by loom).
            let head = self.prod_head.0.load(Ordering::Acquire);
            let cons_tail = self.cons_tail.0.load(Ordering::Acquire);
            let used = head.wrapping_sub(cons_tail);
            if used > cap {
                // Consumers moved on after we read `head`: it is stale, read it again.
                spin_hint();
                continue;
            }
            let free = cap - used;
            let n = if objs.len() <= free {
                objs.len()
            } else if partial {
                free
            } else {
                0
            };
            if n == 0 {
                return 0;
            }
            if self
                .prod_head
                .0
                .compare_exchange_weak(
                    head,
                    head.wrapping_add(n),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                break (head, n);
            }
            spin_hint();
        };
        for (i, &o) in objs[..n].iter().enumerate() {
            self.slots[head.wrapping_add(i) & self.mask].store(o, Ordering::Relaxed);
        }
        // Acquire: we publish the earlier producers' slots along with ours, so our release
        // store below must carry theirs (a relaxed wait broke that chain and let a consumer
        // read a stale slot, handing one mbuf out twice; found by loom).
        while self.prod_tail.0.load(Ordering::Acquire) != head {
            spin_hint();
        }
        self.prod_tail
            .0
            .store(head.wrapping_add(n), Ordering::Release);
        n
    }

    fn dequeue(&self, out: &mut [usize], partial: bool) -> usize {
        let cap = self.capacity();
        let (head, n) = loop {
            // As in `enqueue`: a consumer that has seen an earlier consumer's reservation also
            // sees the producer tail it saw, so the ring never looks emptier than it is.
            let head = self.cons_head.0.load(Ordering::Acquire);
            let prod_tail = self.prod_tail.0.load(Ordering::Acquire);
            let avail = prod_tail.wrapping_sub(head);
            if avail > cap {
                // `head` is stale (consumers moved on after we read it): read it again.
                spin_hint();
                continue;
            }
            let n = if out.len() <= avail {
                out.len()
            } else if partial {
                avail
            } else {
                0
            };
            if n == 0 {
                return 0;
            }
            if self
                .cons_head
                .0
                .compare_exchange_weak(
                    head,
                    head.wrapping_add(n),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                break (head, n);
            }
            spin_hint();
        };
        for (i, o) in out[..n].iter_mut().enumerate() {
            *o = self.slots[head.wrapping_add(i) & self.mask].load(Ordering::Relaxed);
        }
        // Acquire, as in `enqueue`: producers that see our tail must also see that the
        // earlier consumers have read their slots.
        while self.cons_tail.0.load(Ordering::Acquire) != head {
            spin_hint();
        }
        self.cons_tail
            .0
            .store(head.wrapping_add(n), Ordering::Release);
        n
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;

    #[test]
    fn bulk_is_all_or_nothing() {
        let r = ObjRing::new(4);
        assert!(r.enqueue_bulk(&[1, 2, 3]));
        assert!(!r.enqueue_bulk(&[4, 5]));
        assert_eq!(r.enqueue_burst(&[4, 5]), 1);
        let mut out = [0; 5];
        assert!(!r.dequeue_bulk(&mut out));
        assert_eq!(r.dequeue_burst(&mut out), 4);
        assert_eq!(&out[..4], &[1, 2, 3, 4]);
        assert!(r.is_empty());
    }

    #[test]
    fn threads_lose_nothing() {
        let r = Arc::new(ObjRing::new(1024));
        let per = 20_000usize;
        let mut hs = vec![];
        for t in 0..2 {
            let r = r.clone();
            hs.push(std::thread::spawn(move || {
                let mut got = 0usize;
                let mut sum = 0usize;
                let mut next = 0;
                let mut buf = [0usize; 8];
                while got < per {
                    if next < per {
                        let batch: Vec<usize> =
                            (next..(next + 8).min(per)).map(|v| v * 2 + t).collect();
                        next += r.enqueue_burst(&batch);
                    }
                    let n = r.dequeue_burst(&mut buf);
                    sum += buf[..n].iter().sum::<usize>();
                    got += n;
                }
                sum
            }));
        }
        let total: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
        let expect: usize = (0..per).map(|v| v * 2).sum::<usize>() * 2 + per;
        assert_eq!(total, expect);
    }

    proptest! {
        #[test]
        fn behaves_like_a_fifo(ops in proptest::collection::vec((any::<bool>(), 1usize..10), 1..200)) {
            let r = ObjRing::new(16);
            let mut model = std::collections::VecDeque::new();
            let mut seq = 0usize;
            for (push, n) in ops {
                if push {
                    let v: Vec<usize> = (seq..seq + n).collect();
                    let k = r.enqueue_burst(&v);
                    prop_assert_eq!(k, n.min(16 - model.len()));
                    model.extend(&v[..k]);
                    seq += k;
                } else {
                    let mut out = vec![0; n];
                    let k = r.dequeue_burst(&mut out);
                    prop_assert_eq!(k, n.min(model.len()));
                    for v in &out[..k] {
                        prop_assert_eq!(Some(*v), model.pop_front());
                    }
                }
                prop_assert_eq!(r.len(), model.len());
            }
        }
    }
}
