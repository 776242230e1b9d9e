//! Packet buffer pools.
//!
//! A pool owns `count` mbufs. Their data buffers live in one shared region (memfd by default) so
//! a vhost-user peer can read and write them; their headers live in private memory, so a hostile
//! peer can never corrupt the pointers this process follows. Free mbufs sit in a lock-free
//! [`ObjRing`]; each polling thread keeps an [`MbufCache`] in front of it (in its
//! [`LcoreCaches`](crate::LcoreCaches), passed to every burst) and moves mbufs in bulk, first to
//! and from a stash shared by the caches of the pool on the same thread (`lcore_stash`), then the
//! ring. Nothing is allocated per packet after the pool is created.

use std::io;
use std::ptr::NonNull;

use crate::mbuf::Mbuf;
use crate::pool_core::{MbufHdr, PoolInner};
use crate::region::SharedRegion;
use crate::registry;
use crate::ring::ObjRing;
use crate::sync::{AtomicBool, AtomicUsize, Ordering};

pub use crate::pool_core::{DEFAULT_DATA_ROOM, DEFAULT_HEADROOM, MempoolConfig};

/// A handle to a packet buffer pool. Cloning is cheap; the pool's memory is released when the
/// last handle is dropped and every mbuf has come back.
pub struct Mempool {
    inner: NonNull<PoolInner>,
}

// SAFETY: PoolInner is only mutated through atomics and the lock-free ring.
unsafe impl Send for Mempool {}
// SAFETY: as above.
unsafe impl Sync for Mempool {}

impl std::fmt::Debug for Mempool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mempool")
            .field("name", &self.config().name)
            .field("count", &self.config().count)
            .field("available", &self.available())
            .finish()
    }
}

impl Clone for Mempool {
    fn clone(&self) -> Self {
        self.inner().handles.fetch_add(1, Ordering::Relaxed);
        Mempool { inner: self.inner }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        if self.inner().handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            PoolInner::maybe_free(self.inner.as_ptr());
        }
    }
}

impl Mempool {
    /// Creates a pool: maps one shared region for all data buffers and registers it so that
    /// virtio-user ports can share it with their backend.
    pub fn new(cfg: MempoolConfig) -> io::Result<Mempool> {
        if cfg.count == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("mempool {}: count must be at least 1", cfg.name),
            ));
        }
        let buf_len = (cfg.headroom as usize + cfg.data_room as usize).div_ceil(64) * 64;
        let total = buf_len.checked_mul(cfg.count).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "mempool size overflows usize")
        })?;
        let region = SharedRegion::new(&cfg.name, total, cfg.backing)?;
        // A region a peer cannot map from offset 0 (reordered hugepages) is not shared: id 0 is
        // never registered.
        let reg_id = if region.file_linear() {
            registry::register(region.base() as u64, region.len() as u64, region.fd())
        } else {
            0
        };
        let hdrs: Box<[MbufHdr]> = (0..cfg.count)
            .map(|i| {
                // SAFETY: i * buf_len + buf_len <= total <= region.len().
                let buf = unsafe { region.base().add(i * buf_len) };
                MbufHdr::new(buf, buf_len as u32, cfg.headroom, i as u32)
            })
            .collect();
        let ring = ObjRing::new(cfg.count);
        let inner = Box::new(PoolInner {
            cfg,
            region,
            reg_id,
            hdrs: Box::into_raw(hdrs),
            ring,
            handles: AtomicUsize::new(1),
            freed: AtomicBool::new(false),
            stashed: AtomicUsize::new(0),
        });
        let ptr = Box::into_raw(inner);
        // SAFETY: ptr was just leaked from a Box and is valid; we set each header's back pointer
        // to the pool before any mbuf is handed out.
        let inner = unsafe { &mut *ptr };
        let first = inner.hdrs as *mut MbufHdr;
        let objs: Vec<usize> = (0..inner.cfg.count)
            .map(|i| {
                // SAFETY: i < count, the length of the header array; no mbuf exists yet.
                let h = unsafe { first.add(i) };
                // SAFETY: as above.
                unsafe { (*h).pool = ptr };
                h as usize
            })
            .collect();
        assert!(inner.ring.enqueue_bulk(&objs));
        Ok(Mempool {
            inner: NonNull::new(ptr).expect("Box::into_raw is never null"),
        })
    }

    fn inner(&self) -> &PoolInner {
        // SAFETY: a live handle keeps the pool allocated.
        unsafe { self.inner.as_ref() }
    }

    pub(crate) fn as_ptr(&self) -> *const PoolInner {
        self.inner.as_ptr()
    }

    /// Physical minus virtual address of the data buffers, when the pool is in physically
    /// contiguous hugepages ([`RegionBacking::HugetlbDma`](crate::RegionBacking::HugetlbDma));
    /// None otherwise.
    pub fn iova_delta(&self) -> Option<u64> {
        self.inner().region.iova_delta()
    }

    /// True when the pool's buffers are registered for vhost-user backends (virtio-user ports
    /// can use it): always, except for physically contiguous hugepages that had to be
    /// reordered in virtual memory.
    pub fn shareable(&self) -> bool {
        self.inner().region.file_linear()
    }

    /// The configuration the pool was made with.
    pub fn config(&self) -> &MempoolConfig {
        &self.inner().cfg
    }

    /// Free mbufs in the shared ring and in the per-thread stashes now (not counting those
    /// held in [`MbufCache`]s).
    pub fn available(&self) -> usize {
        self.inner().ring.len() + self.inner().stashed.load(Ordering::Relaxed)
    }

    /// Total mbufs in the pool.
    pub fn count(&self) -> usize {
        self.inner().cfg.count
    }

    /// Address and length of the shared data region.
    pub fn region(&self) -> (*mut u8, usize) {
        (self.inner().region.base(), self.inner().region.len())
    }

    /// Takes one mbuf straight from the shared ring (slow path; prefer an [`MbufCache`]).
    pub fn alloc(&self) -> Option<Mbuf> {
        let mut o = [0usize];
        if self.inner().ring.dequeue_bulk(&mut o) {
            // SAFETY: the ring only holds headers of this pool that nobody else owns.
            Some(unsafe { Mbuf::from_free_hdr(o[0] as *mut MbufHdr) })
        } else {
            None
        }
    }

    /// A new handle to the pool at `inner` (the pool of an mbuf the caller owns), or None when
    /// every handle is gone: a pool nobody holds is not brought back.
    pub(crate) fn upgrade(inner: *const PoolInner) -> Option<Mempool> {
        let ptr = NonNull::new(inner as *mut PoolInner)?;
        // SAFETY: the caller owns an mbuf of the pool, which keeps it allocated (`maybe_free`).
        let handles = unsafe { &ptr.as_ref().handles };
        let mut n = handles.load(Ordering::Relaxed);
        while n != 0 {
            match handles.compare_exchange_weak(n, n + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(Mempool { inner: ptr }),
                Err(now) => n = now,
            }
        }
        None
    }

    /// Makes a per-thread cache in front of this pool.
    pub fn cache(&self) -> MbufCache {
        let size = self.config().cache_size.max(1);
        MbufCache {
            pool: self.clone(),
            objs: Vec::with_capacity(size * 2 + 64),
            size,
        }
    }
}

/// A per-thread cache of free mbufs in front of a [`Mempool`]. It is owned by exactly one thread
/// (it is `Send` but not `Sync`) and touches the shared ring only in bulk.
pub struct MbufCache {
    pool: Mempool,
    objs: Vec<usize>,
    size: usize,
}

impl std::fmt::Debug for MbufCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MbufCache")
            .field("pool", &self.pool.config().name)
            .field("cached", &self.objs.len())
            .finish()
    }
}

impl MbufCache {
    /// The pool behind this cache.
    pub fn pool(&self) -> &Mempool {
        &self.pool
    }

    /// Mbufs held in this cache now.
    pub fn cached(&self) -> usize {
        self.objs.len()
    }

    fn refill(&mut self, want: usize) {
        let have = self.objs.len();
        let target = (want + self.size).min(self.objs.capacity());
        if target <= have {
            return;
        }
        // This thread's stash first: if it has enough for `want`, the ring is left alone, so a
        // thread whose queues free as much as they allocate never goes round the whole pool.
        let have = have + self.stash_take(target - have);
        if have >= want {
            return;
        }
        self.objs.resize(target, 0);
        let got = self.pool.inner().ring.dequeue_burst(&mut self.objs[have..]);
        self.objs.truncate(have + got);
    }

    /// Most mbufs this thread's stash for the pool holds.
    #[cfg(not(loom))]
    fn stash_cap(&self) -> usize {
        self.size * 2
    }

    #[cfg(not(loom))]
    fn stash_take(&mut self, want: usize) -> usize {
        let cap = self.stash_cap();
        crate::lcore_stash::take(self.pool.inner(), &mut self.objs, want, cap)
    }

    #[cfg(loom)]
    fn stash_take(&mut self, _want: usize) -> usize {
        0
    }

    #[cfg(not(loom))]
    fn stash_put(&mut self, keep: usize) {
        let cap = self.stash_cap();
        crate::lcore_stash::put(self.pool.inner(), &mut self.objs, keep, cap);
    }

    #[cfg(loom)]
    fn stash_put(&mut self, _keep: usize) {}

    /// Takes one fresh mbuf (data_off = headroom, length 0), or None if the pool is empty.
    #[inline]
    pub fn alloc(&mut self) -> Option<Mbuf> {
        if self.objs.is_empty() {
            self.refill(1);
        }
        let o = self.objs.pop()?;
        // SAFETY: cached objects are free headers of this cache's pool.
        Some(unsafe { Mbuf::from_free_hdr(o as *mut MbufHdr) })
    }

    /// Takes `n` mbufs into `out`, all or none; returns false when the pool cannot supply `n`.
    #[inline]
    pub fn alloc_bulk(&mut self, n: usize, out: &mut impl Extend<Mbuf>) -> bool {
        if self.objs.len() < n {
            self.refill(n);
            if self.objs.len() < n {
                return false;
            }
        }
        let start = self.objs.len() - n;
        out.extend(self.objs.drain(start..).map(|o| {
            // SAFETY: cached objects are free headers of this cache's pool.
            unsafe { Mbuf::from_free_hdr(o as *mut MbufHdr) }
        }));
        true
    }

    /// Returns an mbuf (and every segment chained to it) to its pool.
    #[inline]
    pub fn free(&mut self, m: Mbuf) {
        let seg = m.into_raw().as_ptr();
        // SAFETY: we own the mbuf; its header is valid until returned.
        let (next, pool) = unsafe { ((*seg).next, (*seg).pool) };
        if next.is_null() && pool == self.pool.as_ptr() && self.objs.len() < self.objs.capacity() {
            // One segment of this cache's pool (the common case): no walk.
            self.objs.push(seg as usize);
            if self.objs.len() > self.size + self.size / 2 {
                self.spill();
            }
            return;
        }
        self.free_chain(seg);
    }

    /// `free` of a chain, or of an mbuf of another pool, or with the cache full.
    #[inline(never)]
    fn free_chain(&mut self, mut seg: *mut MbufHdr) {
        let me = self.pool.as_ptr();
        while !seg.is_null() {
            // SAFETY: we own the chain; each segment header is valid until returned.
            let next = unsafe { (*seg).next };
            // SAFETY: as above.
            let pool = unsafe { (*seg).pool };
            if pool == me && self.objs.len() < self.objs.capacity() {
                self.objs.push(seg as usize);
            } else {
                PoolInner::put_raw(pool, &[seg as usize]);
            }
            seg = next;
        }
        if self.objs.len() > self.size + self.size / 2 {
            self.spill();
        }
    }

    /// Brings an overfull cache back to its size: to this thread's stash first (another
    /// queue of this thread will want them), the rest to the shared ring.
    #[inline(never)]
    fn spill(&mut self) {
        self.stash_put(self.size);
        self.flush_to(self.size);
    }

    /// Frees every mbuf yielded by `it`.
    #[inline]
    pub fn free_all(&mut self, it: impl IntoIterator<Item = Mbuf>) {
        for m in it {
            self.free(m);
        }
    }

    fn flush_to(&mut self, keep: usize) {
        if self.objs.len() > keep {
            let ok = self.pool.inner().ring.enqueue_bulk(&self.objs[keep..]);
            debug_assert!(ok, "mempool ring overflow: an mbuf was freed twice");
            self.objs.truncate(keep);
        }
    }
}

impl Drop for MbufCache {
    fn drop(&mut self) {
        self.flush_to(0);
        #[cfg(not(loom))]
        crate::lcore_stash::drain(self.pool.inner());
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn small(count: usize) -> Mempool {
        Mempool::new(MempoolConfig {
            name: "t".into(),
            count,
            cache_size: 8,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn alloc_until_empty_then_everything_comes_back() {
        let p = small(100);
        let mut c = p.cache();
        let mut v = Vec::new();
        while let Some(m) = c.alloc() {
            v.push(m);
        }
        assert_eq!(v.len(), 100);
        assert_eq!(p.available(), 0);
        for m in v {
            c.free(m);
        }
        drop(c);
        assert_eq!(p.available(), 100);
    }

    #[test]
    fn bulk_alloc_is_all_or_nothing() {
        let p = small(10);
        let mut c = p.cache();
        let mut v = Vec::new();
        assert!(!c.alloc_bulk(11, &mut v));
        assert!(v.is_empty());
        assert!(c.alloc_bulk(10, &mut v));
        assert_eq!(v.len(), 10);
    }

    /// Addresses of the buffers of `ms`.
    fn addrs(ms: &[Mbuf]) -> std::collections::HashSet<usize> {
        ms.iter().map(|m| m.data_addr() as usize).collect()
    }

    #[test]
    fn a_freeing_cache_feeds_an_allocating_cache_on_the_same_thread() {
        // An Rx queue's cache only allocates, a Tx queue's only frees: the mbufs the Tx side
        // flushes must be the next ones the Rx side takes (warm), not the ring's oldest.
        let p = Mempool::new(MempoolConfig {
            name: "t".into(),
            count: 2000,
            cache_size: 32,
            ..Default::default()
        })
        .unwrap();
        let mut rx = p.cache();
        let mut tx = p.cache();
        let mut seen = std::collections::HashSet::new();
        for round in 0..300 {
            let mut got = Vec::new();
            assert!(rx.alloc_bulk(32, &mut got));
            seen.extend(addrs(&got));
            tx.free_all(got);
            assert_eq!(
                p.available() + rx.cached() + tx.cached(),
                2000,
                "round {round}"
            );
        }
        // 9600 allocations cycle through a few hundred buffers (the caches, the stash and one
        // burst), not through all 2000 as they would if every flush went to the FIFO ring.
        assert!(
            seen.len() <= 64 + 48 + 64 + 32,
            "{} distinct buffers in use",
            seen.len()
        );
        drop(rx);
        drop(tx);
        assert_eq!(p.available(), 2000);
        assert_eq!(
            p.inner().ring.len(),
            2000,
            "dropping the caches empties the stash"
        );
    }

    #[test]
    fn a_thread_s_stash_goes_back_to_the_ring_when_the_thread_exits() {
        let p = small(500);
        let q = p.clone();
        // The caches leave the thread alive; the thread's stash is returned at its exit.
        let (rx, tx) = std::thread::spawn(move || {
            let mut rx = q.cache();
            let mut tx = q.cache();
            for _ in 0..20 {
                let mut got = Vec::new();
                assert!(rx.alloc_bulk(40, &mut got));
                tx.free_all(got);
            }
            assert!(q.inner().stashed.load(Ordering::Relaxed) > 0);
            (rx, tx)
        })
        .join()
        .unwrap();
        assert_eq!(p.inner().stashed.load(Ordering::Relaxed), 0);
        assert_eq!(p.inner().ring.len() + rx.cached() + tx.cached(), 500);
        drop((rx, tx));
        assert_eq!(p.available(), 500);
    }

    #[test]
    fn mbufs_outliving_the_pool_handle_are_safe() {
        let p = small(4);
        let m = p.alloc().unwrap();
        drop(p);
        drop(m); // frees the pool now
    }

    #[test]
    fn data_region_is_registered_for_sharing() {
        let p = small(4);
        let (base, len) = p.region();
        assert!(
            registry::snapshot()
                .iter()
                .any(|r| r.addr == base as u64 && r.len == len as u64)
        );
    }
}
