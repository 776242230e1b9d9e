//! The handshake between a control thread and a polling thread, without a lock per burst.
//!
//! The control thread owns a configuration (for example a vring's addresses and the memory
//! table) and may replace it at any time. The polling thread uses it burst by burst. Protocol:
//!
//! * the poller marks itself busy (`in_burst = true`), issues a sequentially consistent fence,
//!   then reads the epoch. Only when the epoch changed does it take the mutex and clone the new configuration;
//! * the control thread stores the new configuration, bumps the epoch, issues a sequentially
//!   consistent fence, then waits until the poller is not busy.
//!
//! Because both sides write their flag, fence, then read the other's (Dekker's pattern), either the poller sees the new epoch before using the old
//! configuration, or the control thread sees the poller busy and waits for the burst to end.
//! When [`Quiesce::publish`] returns, no burst is using the old configuration any more. The old
//! value itself is freed when the last `Arc` to it is dropped.
//!
//! The poller runs this once per burst, so its fence matters: a full fence drains the store
//! buffer, which on the hot path is full of stores to ring cache lines the peer holds. Where
//! the kernel offers `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` (Linux 4.14+) the fence is
//! made asymmetric, as in RCU: the poller only stops the compiler from reordering, and the
//! control thread, which publishes rarely, makes the kernel run a full barrier on every CPU
//! running this process. Either the barrier lands before the poller's epoch load (which then
//! sees the new epoch) or after its `in_burst` store (which the control thread then sees).

#[cfg(loom)]
use loom::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicUsize, Ordering, fence},
};
#[cfg(not(loom))]
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicUsize, Ordering, fence},
};

/// A configuration slot shared by one control thread and one polling thread.
#[derive(Debug)]
pub struct Quiesce<T> {
    in_burst: AtomicBool,
    epoch: AtomicUsize,
    slot: Mutex<Option<Arc<T>>>,
}

impl<T> Default for Quiesce<T> {
    fn default() -> Self {
        barrier::init();
        Quiesce {
            in_burst: AtomicBool::new(false),
            epoch: AtomicUsize::new(0),
            slot: Mutex::new(None),
        }
    }
}

impl<T> Quiesce<T> {
    /// Replaces the configuration (None pauses the poller) and returns once no burst can still
    /// be using the previous one.
    pub fn publish(&self, cfg: Option<Arc<T>>) {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = cfg;
        self.epoch.fetch_add(1, Ordering::SeqCst);
        // Pairs with the fence in `enter`: either the poller sees the new epoch, or we see it
        // busy (Dekker's pattern; the fences make it hold under the C++/Rust memory model).
        fence(Ordering::SeqCst);
        barrier::heavy();
        self.wait_idle();
    }

    /// As [`Quiesce::publish`], but when the poller stays inside its burst for longer than
    /// 10 ms, calls `unstick` every 10 ms until it leaves (the control plane uses it to
    /// interrupt a poller that a hostile peer made sleep in a call write).
    #[cfg(not(loom))]
    pub fn publish_with(&self, cfg: Option<Arc<T>>, mut unstick: impl FnMut()) {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = cfg;
        self.epoch.fetch_add(1, Ordering::SeqCst);
        // As in `publish`.
        fence(Ordering::SeqCst);
        barrier::heavy();
        let mut next = std::time::Instant::now() + std::time::Duration::from_millis(10);
        while self.in_burst.load(Ordering::SeqCst) {
            std::thread::yield_now();
            if std::time::Instant::now() >= next {
                unstick();
                next += std::time::Duration::from_millis(10);
            }
        }
    }

    /// Waits until the poller is between bursts.
    pub fn wait_idle(&self) {
        while self.in_burst.load(Ordering::SeqCst) {
            #[cfg(loom)]
            loom::thread::yield_now();
            #[cfg(not(loom))]
            std::thread::yield_now();
        }
    }

    /// The configuration now in the slot (control side).
    pub fn current(&self) -> Option<Arc<T>> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The poller's side: caches the configuration between epochs.
#[derive(Debug)]
pub struct QuiesceReader<T> {
    seen: usize,
    cur: Option<Arc<T>>,
}

impl<T> Default for QuiesceReader<T> {
    fn default() -> Self {
        QuiesceReader {
            seen: usize::MAX,
            cur: None,
        }
    }
}

/// What [`QuiesceReader::enter`] found.
#[derive(Debug)]
pub enum Entered<'a, T> {
    /// Same configuration as the previous burst.
    Same(&'a Arc<T>),
    /// A new configuration: reset per-ring state from it.
    Changed(&'a Arc<T>),
    /// Paused: do nothing this burst (still call [`QuiesceReader::exit`]).
    Paused,
}

impl<T> QuiesceReader<T> {
    /// Starts a burst. Must be paired with [`QuiesceReader::exit`].
    #[inline]
    pub fn enter<'a>(&'a mut self, q: &Quiesce<T>) -> Entered<'a, T> {
        q.in_burst.store(true, Ordering::Relaxed);
        barrier::light();
        let e = q.epoch.load(Ordering::Acquire);
        let changed = e != self.seen;
        if changed {
            self.seen = e;
            self.cur = q.slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
        }
        match &self.cur {
            None => Entered::Paused,
            Some(c) if changed => Entered::Changed(c),
            Some(c) => Entered::Same(c),
        }
    }

    /// Ends a burst.
    #[inline]
    pub fn exit(&self, q: &Quiesce<T>) {
        q.in_burst.store(false, Ordering::Release);
    }

    /// Drops the cached configuration (when the poller goes away).
    pub fn release(&mut self) {
        self.cur = None;
        self.seen = usize::MAX;
    }
}

/// The two halves of the poller/control fence (see the module documentation).
mod barrier {
    #[cfg(not(loom))]
    use std::sync::atomic::{AtomicU8, Ordering, compiler_fence, fence};

    /// 0: not tried yet, 1: membarrier registered, 2: unavailable (full fences on both sides).
    #[cfg(not(loom))]
    static STATE: AtomicU8 = AtomicU8::new(0);

    #[cfg(not(loom))]
    const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
    #[cfg(not(loom))]
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

    #[cfg(not(loom))]
    fn membarrier(cmd: libc::c_int) -> bool {
        // SAFETY: membarrier takes two integers and touches no user memory.
        unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0, 0) == 0 }
    }

    /// Registers the process for expedited membarriers, once. Must run before any poller can
    /// enter (it runs when a [`super::Quiesce`] is created, before any reader can see it).
    #[cfg(not(loom))]
    pub(super) fn init() {
        if STATE.load(Ordering::Acquire) != 0 {
            return;
        }
        let ok = membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
        let _ = STATE.compare_exchange(
            0,
            if ok { 1 } else { 2 },
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// The poller's half.
    #[cfg(not(loom))]
    #[inline]
    pub(super) fn light() {
        if STATE.load(Ordering::Relaxed) == 1 {
            compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
    }

    /// The control thread's half.
    #[cfg(not(loom))]
    pub(super) fn heavy() {
        // Once registered, the expedited command cannot fail (it returns EPERM only for an
        // unregistered process), and the state never goes back to unregistered.
        if STATE.load(Ordering::Acquire) == 1 {
            let _ = membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
        }
    }

    // loom models the C++ memory model, not membarrier: model checks use full fences.
    #[cfg(loom)]
    pub(super) fn init() {}
    #[cfg(loom)]
    pub(super) fn light() {
        loom::sync::atomic::fence(loom::sync::atomic::Ordering::SeqCst);
    }
    #[cfg(loom)]
    pub(super) fn heavy() {}
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn poller_sees_changes_and_pauses() {
        let q = Quiesce::<u32>::default();
        let mut r = QuiesceReader::default();
        assert!(matches!(r.enter(&q), Entered::Paused));
        r.exit(&q);
        q.publish(Some(Arc::new(5)));
        assert!(matches!(r.enter(&q), Entered::Changed(v) if **v == 5));
        r.exit(&q);
        assert!(matches!(r.enter(&q), Entered::Same(v) if **v == 5));
        r.exit(&q);
        q.publish(None);
        assert!(matches!(r.enter(&q), Entered::Paused));
        r.exit(&q);
    }

    #[test]
    fn old_config_never_used_after_publish_returns() {
        use std::sync::atomic::AtomicU64;
        let q = Arc::new(Quiesce::<AtomicU64>::default());
        q.publish(Some(Arc::new(AtomicU64::new(0))));
        let stop = Arc::new(AtomicBool::new(false));
        let (q2, stop2) = (q.clone(), stop.clone());
        let poller = std::thread::spawn(move || {
            let mut r = QuiesceReader::default();
            while !stop2.load(Ordering::Relaxed) {
                if let Entered::Same(c) | Entered::Changed(c) = r.enter(&q2) {
                    // A retired config is marked u64::MAX; using one is the bug we test for.
                    assert_ne!(c.load(Ordering::SeqCst), u64::MAX);
                    c.fetch_add(1, Ordering::SeqCst);
                }
                r.exit(&q2);
            }
        });
        for _ in 0..2000 {
            let old = q.current().unwrap();
            q.publish(Some(Arc::new(AtomicU64::new(0))));
            old.store(u64::MAX, Ordering::SeqCst);
        }
        stop.store(true, Ordering::Relaxed);
        poller.join().unwrap();
    }
}
