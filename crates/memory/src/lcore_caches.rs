//! The mbuf caches of one polling thread: one [`MbufCache`] per pool the thread has met.
//!
//! A polling thread owns one [`LcoreCaches`] and passes it to every burst it makes, on every
//! queue of every port it polls (as DPDK's per-lcore mempool cache). Queues own no cache of
//! their own, so a thread polling N queues of one pool keeps one cache's worth of free mbufs
//! out of the pool, not N: with 256 ports and two forwarding threads that is the difference
//! between two caches and most of a pool.
//!
//! Pools are told apart by identity. A thread meets few pools (one to four), so the caches sit
//! in a small vector searched linearly, the first one checked before anything else:
//! [`LcoreCaches::for_pool`] costs a compare and a branch per burst in the common case.
//! Dropping an `LcoreCaches` returns every cached mbuf to its pool.

use crate::mbuf::Mbuf;
use crate::mempool::{MbufCache, Mempool};
use crate::pool_core::PoolInner;

/// The mbuf caches of one polling thread, one per pool, passed to every Rx and Tx burst the
/// thread makes. It is `Send` (it may be built on one thread and moved to the polling thread)
/// but is used by one thread at a time, like each [`MbufCache`] in it.
#[derive(Debug, Default)]
pub struct LcoreCaches {
    caches: Vec<MbufCache>,
}

impl LcoreCaches {
    /// An empty set: caches are made the first time each pool is met.
    pub fn new() -> LcoreCaches {
        LcoreCaches::default()
    }

    /// The cache of `pool`, made on first use (the only time this allocates). The set keeps a
    /// handle to every pool it has met until it is dropped or cleared.
    #[inline]
    pub fn for_pool(&mut self, pool: &Mempool) -> &mut MbufCache {
        let want = pool.as_ptr();
        // The first pool met is the one nearly every burst of a thread uses.
        if self
            .caches
            .first()
            .is_some_and(|c| c.pool().as_ptr() == want)
        {
            return &mut self.caches[0];
        }
        let i = match self.position(want) {
            Some(i) => i,
            None => self.add(pool),
        };
        &mut self.caches[i]
    }

    /// Adds a cache for `pool` (met for the first time); returns its index.
    #[cold]
    #[inline(never)]
    fn add(&mut self, pool: &Mempool) -> usize {
        self.caches.push(pool.cache());
        self.caches.len() - 1
    }

    #[inline]
    fn position(&self, pool: *const PoolInner) -> Option<usize> {
        self.caches.iter().position(|c| c.pool().as_ptr() == pool)
    }

    /// Returns an mbuf (and every segment chained to it) to its own pool, through this
    /// thread's cache of that pool. A pool met here for the first time gets a cache, unless
    /// every handle to it is gone (then the mbuf goes straight to the pool's ring).
    #[inline]
    pub fn free(&mut self, m: Mbuf) {
        self.free_hinted(m, 0);
    }

    /// Frees every mbuf yielded by `it`, each to its own pool (see [`LcoreCaches::free`]).
    /// Each mbuf is first tried against the cache the previous one went to, so a burst from
    /// one pool costs one compare per mbuf wherever that pool's cache sits.
    #[inline]
    pub fn free_all(&mut self, it: impl IntoIterator<Item = Mbuf>) {
        let mut hint = 0;
        for m in it {
            hint = self.free_hinted(m, hint);
        }
    }

    /// `free`, trying the cache at `hint` first; returns the index of the cache used.
    #[inline]
    fn free_hinted(&mut self, m: Mbuf, hint: usize) -> usize {
        let raw = m.into_raw();
        // SAFETY: we own the mbuf, so its header is valid; the pool pointer is set when the
        // pool is made and never changes.
        let pool = unsafe { (*raw.as_ptr()).pool };
        // SAFETY: `raw` came from `into_raw` just above and is taken back once.
        let m = unsafe { Mbuf::from_raw(raw) };
        if let Some(c) = self.caches.get_mut(hint)
            && c.pool().as_ptr() == pool
        {
            c.free(m);
            return hint;
        }
        self.free_slow(m, pool)
    }

    #[inline(never)]
    fn free_slow(&mut self, m: Mbuf, pool: *const PoolInner) -> usize {
        if let Some(i) = self.position(pool) {
            self.caches[i].free(m);
            i
        } else if let Some(p) = Mempool::upgrade(pool) {
            let i = self.add(&p);
            self.caches[i].free(m);
            i
        } else {
            // No handle is left to make a cache with: dropping returns it to its ring.
            drop(m);
            0
        }
    }

    /// Free mbufs held in these caches now, all pools together.
    pub fn cached(&self) -> usize {
        self.caches.iter().map(MbufCache::cached).sum()
    }

    /// Number of pools met (one cache each).
    pub fn len(&self) -> usize {
        self.caches.len()
    }

    /// True when no pool has been met yet.
    pub fn is_empty(&self) -> bool {
        self.caches.is_empty()
    }

    /// The caches, in the order their pools were met.
    pub fn iter(&self) -> impl Iterator<Item = &MbufCache> {
        self.caches.iter()
    }

    /// Returns every cached mbuf to its pool and forgets the pools (as dropping does).
    pub fn clear(&mut self) {
        self.caches.clear();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{Burst, MempoolConfig};
    use proptest::prelude::*;

    fn pool(name: &str, count: usize, cache_size: usize) -> Mempool {
        Mempool::new(MempoolConfig {
            name: name.into(),
            count,
            cache_size,
            ..Default::default()
        })
        .unwrap()
    }

    /// Most mbufs one cache of `p` holds between bursts (a free spills above 1.5 × size).
    fn one_cache(p: &Mempool) -> usize {
        let s = p.config().cache_size;
        s + s / 2
    }

    /// Mbufs of `p` held in `c`.
    fn held(c: &LcoreCaches, p: &Mempool) -> usize {
        c.iter()
            .filter(|k| k.pool().as_ptr() == p.as_ptr())
            .map(MbufCache::cached)
            .sum()
    }

    #[test]
    fn the_first_pool_s_cache_is_found_and_others_are_added_once() {
        let a = pool("a", 64, 8);
        let b = pool("b", 64, 8);
        let mut c = LcoreCaches::new();
        assert!(c.is_empty());
        assert!(std::ptr::eq(c.for_pool(&a).pool().as_ptr(), a.as_ptr()));
        assert!(std::ptr::eq(c.for_pool(&b).pool().as_ptr(), b.as_ptr()));
        assert!(std::ptr::eq(
            c.for_pool(&a.clone()).pool().as_ptr(),
            a.as_ptr()
        ));
        assert!(std::ptr::eq(c.for_pool(&b).pool().as_ptr(), b.as_ptr()));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn mbufs_go_back_to_their_own_pool_whoever_met_first() {
        let a = pool("a", 100, 8);
        let b = pool("b", 100, 8);
        let mut caches = LcoreCaches::new();
        // Meet B first, then free 50 mbufs of A (taken straight from A's ring) through it.
        let mut from_b = Vec::new();
        assert!(caches.for_pool(&b).alloc_bulk(10, &mut from_b));
        let from_a: Vec<Mbuf> = (0..50).map(|_| a.alloc().unwrap()).collect();
        assert_eq!(a.available(), 50);
        caches.free_all(from_a);
        caches.free_all(from_b);
        assert_eq!(caches.len(), 2, "A got a cache of its own");
        let held_a = held(&caches, &a);
        assert_eq!(a.available() + held_a, 100);
        assert!(held_a <= one_cache(&a));
        drop(caches);
        assert_eq!(a.available(), 100);
        assert_eq!(b.available(), 100);
    }

    #[test]
    fn chains_across_pools_are_split_back() {
        let a = pool("a", 16, 4);
        let b = pool("b", 16, 4);
        let mut caches = LcoreCaches::new();
        let mut m = caches.for_pool(&a).alloc().unwrap();
        m.chain(caches.for_pool(&b).alloc().unwrap());
        m.chain(caches.for_pool(&a).alloc().unwrap());
        caches.free(m);
        drop(caches);
        assert_eq!(a.available(), 16);
        assert_eq!(b.available(), 16);
    }

    #[test]
    fn an_mbuf_of_a_pool_without_handles_goes_back_to_its_ring() {
        let a = pool("a", 8, 4);
        let m = a.alloc().unwrap();
        drop(a); // the mbuf keeps the pool alive; nobody can make a cache of it any more
        let mut caches = LcoreCaches::new();
        caches.free(m); // frees the pool
        assert!(caches.is_empty());
    }

    #[test]
    fn one_thread_polling_many_queues_strands_one_cache_per_pool() {
        // A forwarding thread with 64 "queues" on each of 2 pools: every queue allocates a
        // burst (Rx) and frees it (Tx) through the thread's one LcoreCaches.
        let pools = [pool("p0", 4096, 64), pool("p1", 4096, 64)];
        let before: Vec<usize> = pools.iter().map(Mempool::available).collect();
        let mut caches = LcoreCaches::new();
        let mut burst = Burst::new();
        for round in 0..20 {
            for q in 0..128 {
                let p = &pools[q % 2];
                assert!(
                    caches.for_pool(p).alloc_bulk(32, &mut burst),
                    "round {round} q {q}"
                );
                caches.free_all(burst.drain(..));
            }
            // Idle between rounds: what is out of each pool is its one cache.
            for p in &pools {
                let out = p.count() - p.available();
                assert!(out <= one_cache(p), "{out} mbufs stranded");
            }
        }
        assert_eq!(caches.len(), 2);
        assert_eq!(
            pools
                .iter()
                .map(|p| p.count() - p.available())
                .sum::<usize>(),
            caches.cached()
        );
        drop(caches);
        let after: Vec<usize> = pools.iter().map(Mempool::available).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn caches_move_to_another_thread_and_give_everything_back() {
        let a = pool("a", 256, 16);
        let mut caches = LcoreCaches::new();
        let mut b = Burst::new();
        assert!(caches.for_pool(&a).alloc_bulk(40, &mut b));
        let (caches, b) = std::thread::spawn(move || {
            caches.free_all(b);
            (caches, Burst::new())
        })
        .join()
        .unwrap();
        drop(b);
        assert_eq!(a.available() + caches.cached(), 256);
        drop(caches);
        assert_eq!(a.available(), 256);
    }

    proptest! {
        /// Random allocations and frees over three pools, through one LcoreCaches and in any
        /// pool order: each pool's `available()` plus what its cache holds plus what is out is
        /// exactly its count, at every step and after the caches are dropped.
        #[test]
        fn available_stays_exact(ops in proptest::collection::vec((0u8..5, 0usize..3, 1usize..40), 1..200)) {
            let pools = [pool("q0", 200, 8), pool("q1", 150, 16), pool("q2", 64, 4)];
            let mut caches = LcoreCaches::new();
            let mut out: Vec<Vec<Mbuf>> = vec![Vec::new(), Vec::new(), Vec::new()];
            for (op, p, n) in ops {
                match op {
                    0 => {
                        // Bulk allocation: all or nothing.
                        let mut got = Vec::new();
                        if caches.for_pool(&pools[p]).alloc_bulk(n, &mut got) {
                            prop_assert_eq!(got.len(), n);
                        } else {
                            prop_assert!(got.is_empty());
                        }
                        out[p].extend(got);
                    }
                    1 => {
                        for _ in 0..n {
                            match caches.for_pool(&pools[p]).alloc() {
                                Some(m) => out[p].push(m),
                                None => break,
                            }
                        }
                    }
                    2 => {
                        // Free the newest n of pool p, via the set (routing by the mbuf).
                        let k = out[p].len().saturating_sub(n);
                        caches.free_all(out[p].drain(k..));
                    }
                    3 => {
                        // Up to n of every pool, interleaved, in one free_all: the hint
                        // (the previous mbuf's cache) misses at every step.
                        let mut mixed = Vec::new();
                        for _ in 0..n {
                            for o in out.iter_mut() {
                                mixed.extend(o.pop());
                            }
                        }
                        caches.free_all(mixed);
                    }
                    _ => {
                        // Free the oldest n of pool p through another pool's cache: an
                        // MbufCache given a foreign mbuf must send it home too.
                        let k = n.min(out[p].len());
                        let other = &pools[(p + 1) % 3];
                        let c = caches.for_pool(other);
                        for m in out[p].drain(..k) {
                            c.free(m);
                        }
                    }
                }
                for (i, pl) in pools.iter().enumerate() {
                    prop_assert_eq!(pl.available() + held(&caches, pl) + out[i].len(), pl.count());
                }
            }
            drop(out);
            drop(caches);
            for pl in &pools {
                prop_assert_eq!(pl.available(), pl.count());
            }
        }
    }
}
