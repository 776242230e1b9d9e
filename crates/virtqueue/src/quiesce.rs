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
        self.wait_idle();
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
        fence(Ordering::SeqCst);
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
