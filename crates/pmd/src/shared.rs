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

/// How often a client-mode port retries its connection.
pub(crate) const RECONNECT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Connection attempts of a client-mode port, warning once per outage.
#[derive(Debug, Default)]
pub(crate) struct Retry {
    warned: bool,
}

impl Retry {
    /// Tries to connect to `path` (never blocks). On failure it logs the reason once per
    /// outage and sets the source's deadline to the next attempt.
    pub(crate) fn attempt(
        &mut self,
        cx: &mut ferrovia_transport::reactor::Ctx<'_>,
        name: &str,
        path: &str,
        role: &str,
        listen_hint: &str,
    ) -> Option<std::os::unix::net::UnixStream> {
        match ferrovia_transport::socket::connect_nonblocking(path, role, listen_hint) {
            Ok(s) => {
                self.warned = false;
                Some(s)
            }
            Err(e) => {
                if !self.warned {
                    log::warn!("{name}: {e}; retrying every 500 ms");
                    self.warned = true;
                }
                cx.set_deadline(Some(std::time::Instant::now() + RECONNECT_EVERY));
                None
            }
        }
    }
}
