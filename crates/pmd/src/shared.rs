//! Small pieces shared by drivers: start/stop state and queue handle bookkeeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ferrovia_ethdev::{Error, Result};

/// Port run state shared between the control side and the queue handles.
#[derive(Debug, Default)]
pub(crate) struct RunState {
    started: AtomicBool,
}

impl RunState {
    pub(crate) fn set(&self, on: bool) {
        self.started.store(on, Ordering::Release);
    }
    #[inline]
    pub(crate) fn started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }
}

/// Tracks which queue handles have been handed out, so each is owned once.
#[derive(Debug)]
pub(crate) struct Taken {
    taken: Vec<Arc<AtomicBool>>,
}

impl Taken {
    pub(crate) fn new(n: u16) -> Taken {
        Taken {
            taken: (0..n).map(|_| Arc::new(AtomicBool::new(false))).collect(),
        }
    }
    /// Marks queue `q` of `port` taken; the returned guard gives it back when dropped.
    pub(crate) fn take(&self, port: &str, dir: &str, q: u16) -> Result<TakenGuard> {
        let flag = self.taken.get(q as usize).ok_or_else(|| {
            Error::Config(format!(
                "{port}: {dir} queue {q} does not exist (the port has {} {dir} queues)",
                self.taken.len()
            ))
        })?;
        if flag.swap(true, Ordering::AcqRel) {
            return Err(Error::State(format!(
                "{port}: {dir} queue {q} is already owned by another handle"
            )));
        }
        Ok(TakenGuard(flag.clone()))
    }
}

/// Releases a queue handle's ownership when dropped.
#[derive(Debug)]
pub(crate) struct TakenGuard(Arc<AtomicBool>);

impl Drop for TakenGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
