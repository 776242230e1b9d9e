//! The per-thread stash: free mbufs shared by every [`MbufCache`](crate::MbufCache) of one pool
//! on one thread.
//!
//! Bursts use the polling thread's one cache per pool ([`LcoreCaches`](crate::LcoreCaches)),
//! but a thread may still keep several caches of one pool, one that only allocates (Rx: fresh
//! buffers for the ring) and another that only frees (Tx: sent mbufs). Without a level in
//! between, the Rx cache refills from the head of the pool's FIFO ring and the Tx cache flushes
//! to its tail, so every mbuf of the pool goes round: a 16384-mbuf pool of 2 KiB buffers is a
//! 36 MiB working set, and each 1518 B copy misses the caches. DPDK avoids this with one mempool
//! cache per lcore, shared by all queues on it. Here, caches flush into and refill from a stack
//! kept per thread and per pool (last in, first out), so the mbufs a Tx queue has just freed are
//! the ones the Rx queue takes next, still warm. Only whole flushes and refills (every ~100
//! packets) come here; `alloc` and `free` never do.
//!
//! Mbufs in a stash are free but not in the pool's ring; the pool counts them (`stashed`) so
//! that [`Mempool::available`](crate::Mempool::available) stays exact. A stash is bounded, is
//! emptied into the ring when a cache of its pool is dropped on the thread, and when the
//! thread exits. While a stash holds mbufs of a pool the pool cannot be freed (it is freed only
//! once every mbuf is back in its ring), so the pool pointer a non-empty stash keeps is valid.

use std::cell::RefCell;

use crate::pool_core::PoolInner;
use crate::sync::Ordering;

/// Free mbufs of one pool on this thread.
struct Stash {
    pool: *const PoolInner,
    objs: Vec<usize>,
}

/// All stashes of this thread; returned to their pools when the thread exits.
struct ThreadStashes(Vec<Stash>);

impl Drop for ThreadStashes {
    fn drop(&mut self) {
        for s in &mut self.0 {
            give_back(s);
        }
    }
}

thread_local! {
    static STASHES: RefCell<ThreadStashes> = const { RefCell::new(ThreadStashes(Vec::new())) };
}

/// Moves every mbuf of `s` to its pool's ring.
fn give_back(s: &mut Stash) {
    if s.objs.is_empty() {
        return;
    }
    // SAFETY: the stash holds mbufs of the pool, which keeps the pool allocated (module doc).
    let inner = unsafe { &*s.pool };
    inner.stashed.fetch_sub(s.objs.len(), Ordering::Relaxed);
    PoolInner::put_raw(s.pool, &s.objs);
    s.objs.clear();
}

/// Runs `f` on this thread's stash for `pool` (made on first use, holding at most `cap`).
/// Returns None when the thread is exiting and its stashes are gone.
fn with_stash<R>(pool: *const PoolInner, cap: usize, f: impl FnOnce(&mut Stash) -> R) -> Option<R> {
    STASHES
        .try_with(|cell| {
            // Never re-entered; if it were, the caller falls back to the ring.
            let mut all = cell.try_borrow_mut().ok()?;
            let list = &mut all.0;
            let i = match list.iter().position(|s| s.pool == pool) {
                Some(i) => i,
                None => match list.iter().position(|s| s.objs.is_empty()) {
                    // An empty stash of a pool that may be gone: reuse it.
                    Some(i) => {
                        list[i].pool = pool;
                        i
                    }
                    None => {
                        list.push(Stash {
                            pool,
                            objs: Vec::with_capacity(cap),
                        });
                        list.len() - 1
                    }
                },
            };
            let s = &mut list[i];
            if s.objs.capacity() < cap {
                s.objs.reserve_exact(cap - s.objs.len());
            }
            Some(f(s))
        })
        .ok()
        .flatten()
}

/// Puts the mbufs at the end of `objs` into this thread's stash for `pool`, as many as fit
/// under `cap`; returns how many it took (they are removed from the end of `objs`).
pub(crate) fn put(inner: &PoolInner, objs: &mut Vec<usize>, keep: usize, cap: usize) -> usize {
    let pool = inner as *const PoolInner;
    with_stash(pool, cap, |s| {
        let room = cap.saturating_sub(s.objs.len());
        let n = room.min(objs.len().saturating_sub(keep));
        let from = objs.len() - n;
        s.objs.extend_from_slice(&objs[from..]);
        objs.truncate(from);
        inner.stashed.fetch_add(n, Ordering::Relaxed);
        n
    })
    .unwrap_or(0)
}

/// Moves up to `want` mbufs from this thread's stash for `pool` onto the end of `objs`, most
/// recently stashed first; returns how many.
pub(crate) fn take(inner: &PoolInner, objs: &mut Vec<usize>, want: usize, cap: usize) -> usize {
    let pool = inner as *const PoolInner;
    with_stash(pool, cap, |s| {
        let n = want.min(s.objs.len());
        let from = s.objs.len() - n;
        objs.extend(s.objs.drain(from..));
        inner.stashed.fetch_sub(n, Ordering::Relaxed);
        n
    })
    .unwrap_or(0)
}

/// Returns this thread's stash for `pool` to the pool's ring.
pub(crate) fn drain(inner: &PoolInner) {
    let pool = inner as *const PoolInner;
    let _ = STASHES.try_with(|cell| {
        if let Ok(mut all) = cell.try_borrow_mut()
            && let Some(s) = all.0.iter_mut().find(|s| s.pool == pool)
        {
            give_back(s);
        }
    });
}
