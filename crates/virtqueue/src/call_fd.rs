//! A driver's call eventfd, written by a poller without ever staying blocked.
//!
//! The poller checks that the eventfd can take a write (`poll(POLLOUT)`, zero timeout) before
//! writing, and the control plane makes the fd non-blocking when it arrives. Neither is enough
//! against a hostile driver: `O_NONBLOCK` belongs to the file description the driver shares,
//! so the driver can clear it, and it can fill the counter between our `poll` and our `write`;
//! the write then sleeps until the driver reads its eventfd, and the poller's lcore hangs
//! (`pwritev2(RWF_NOWAIT)` would settle it, but eventfds refuse it).
//!
//! So the poller announces its thread while it writes ([`CallFd::signal`]), and the control
//! thread, when a quiesce has waited for that poller too long, interrupts the write with a
//! signal ([`CallFd::interrupt_writer`]): the handler does nothing and is installed without
//! `SA_RESTART`, so the write returns `EINTR`, the call is counted as skipped, and the burst
//! ends. In normal operation no signal is ever sent. The signal is `SIGRTMAX - 1`; if the
//! application already handles it, ours is not installed and the poll check alone remains.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

/// The signal used to interrupt a blocked call write.
fn interrupt_signal() -> libc::c_int {
    libc::SIGRTMAX() - 1
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Installs the no-op handler once per process. False if the application already handles the
/// signal (then writes are never interrupted).
fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        let sig = interrupt_signal();
        // SAFETY: sigaction is plain data; all-zero is a valid value to fill in.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: querying the current action into `old`, which outlives the call.
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
            return false;
        }
        if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN {
            return false;
        }
        // SAFETY: as above.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as usize;
        act.sa_flags = 0; // no SA_RESTART: a blocked write returns EINTR
        // SAFETY: `act.sa_mask` is a valid sigset inside `act`.
        unsafe { libc::sigemptyset(&mut act.sa_mask) };
        // SAFETY: installing a handler that does nothing (async-signal-safe) for a signal
        // nobody else handles.
        unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) == 0 }
    })
}

thread_local! {
    static TID: i32 = {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() }
    };
}

/// A driver's call eventfd, with the thread (if any) writing to it right now.
#[derive(Debug)]
pub struct CallFd {
    file: File,
    writer: AtomicI32,
    interruptible: bool,
}

impl CallFd {
    /// Wraps a call fd the control plane has checked (`prepare_call_fd`).
    pub fn new(file: File) -> CallFd {
        CallFd {
            file,
            writer: AtomicI32::new(0),
            interruptible: install(),
        }
    }

    /// The eventfd.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Signals the driver: adds 1 to its eventfd if it can take it now. Returns false when the
    /// signal was skipped (counter full, or the write was interrupted by the control thread).
    #[cold]
    pub fn signal(&self) -> bool {
        let fd = self.file.as_raw_fd();
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd on the stack, zero timeout; `fd` stays open (`self` holds it).
        let r = unsafe { libc::poll(&mut p, 1, 0) };
        if r != 1 || p.revents & libc::POLLOUT == 0 {
            return false;
        }
        let tid = TID.with(|t| *t);
        self.writer.store(tid, Ordering::SeqCst);
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live stack buffer to an fd we hold open.
        let n = unsafe { libc::write(fd, one.as_ptr().cast(), one.len()) };
        self.writer.store(0, Ordering::SeqCst);
        n == one.len() as isize
    }

    /// Interrupts a poller blocked in [`CallFd::signal`] (a hostile driver filled its counter
    /// and cleared `O_NONBLOCK`). Does nothing when no poller is writing. Returns true if a
    /// signal was sent.
    pub fn interrupt_writer(&self) -> bool {
        let tid = self.writer.load(Ordering::SeqCst);
        if tid == 0 || !self.interruptible {
            return false;
        }
        // SAFETY: tgkill to a thread of this process; the handler does nothing, so a stale tid
        // (the writer already left) costs at most one EINTR in that thread.
        unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, interrupt_signal()) };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn a_write_blocked_on_a_full_eventfd_is_interrupted() {
        // A blocking eventfd whose counter is one below its limit: a write of 1 would block.
        // SAFETY: plain syscall; the fd is owned below.
        let fd = unsafe { libc::eventfd(0, 0) };
        assert!(fd >= 0);
        // SAFETY: fresh fd.
        let file = unsafe { File::from_raw_fd(fd) };
        let c = Arc::new(CallFd::new(file));
        assert!(c.interruptible, "the handler is installed");
        let full = (u64::MAX - 1).to_ne_bytes();
        // SAFETY: 8-byte write from a live buffer.
        assert_eq!(unsafe { libc::write(fd, full.as_ptr().cast(), 8) }, 8);
        // The poll check says no: nothing is written, nothing blocks.
        assert!(!c.signal(), "a full counter is skipped");
        // Force the race the poll cannot close: write as `signal` does after the poll.
        let w = {
            let c = c.clone();
            std::thread::spawn(move || {
                let tid = TID.with(|t| *t);
                c.writer.store(tid, Ordering::SeqCst);
                let one = 1u64.to_ne_bytes();
                // SAFETY: 8-byte write from a live buffer to an fd `c` holds open.
                let n = unsafe { libc::write(c.file.as_raw_fd(), one.as_ptr().cast(), 8) };
                let err = std::io::Error::last_os_error();
                c.writer.store(0, Ordering::SeqCst);
                (n, err.raw_os_error())
            })
        };
        let t = Instant::now();
        while c.writer.load(Ordering::SeqCst) == 0 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "writer never started"
            );
            std::thread::yield_now();
        }
        // Let it block, then interrupt it (again, until it returns: the first signal may land
        // before the write sleeps).
        while !w.is_finished() {
            std::thread::sleep(Duration::from_millis(20));
            c.interrupt_writer();
            if t.elapsed() > Duration::from_secs(10) {
                // Unblock it ourselves so the test fails instead of hanging.
                let mut b = [0u8; 8];
                // SAFETY: 8-byte read into a live buffer.
                unsafe { libc::read(fd, b.as_mut_ptr().cast(), 8) };
                panic!("the blocked write was not interrupted");
            }
        }
        let (n, errno) = w.join().unwrap();
        assert_eq!(
            (n, errno),
            (-1, Some(libc::EINTR)),
            "the write returned EINTR"
        );
        assert!(
            !c.interrupt_writer(),
            "nobody is writing now: no signal sent"
        );
    }
}
