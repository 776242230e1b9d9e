//! Raw rings in memory, both layouts, and the vring a device poller runs on.
//!
//! * [`split`]: raw, bounds-safe access to a split ring (virtio 1.0).
//! * [`packed`]: raw, bounds-safe access to a packed ring (virtio 1.1).
//!
//! These two are the only modules that dereference ring pointers. Both the driver sides
//! ([`crate::split::driver`], [`crate::packed::driver`]) and the device sides build on them;
//! [`ActiveVring`] names both layouts, so it lives here, below every queue.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use crate::call_fd::CallFd;
pub use crate::error::RingAddrError;
use crate::guest_mem::GuestMemory;
use crate::layout::{VRING_USED_F_NO_NOTIFY, bit, feature};

pub mod packed;
pub mod split;

use packed::{EVENT_FLAGS_DISABLE, PackedRing};
use split::SplitRing;

/// Checks that `call`, a driver's call fd, is an eventfd and makes it non-blocking; the
/// control plane calls it when the fd arrives (`SET_VRING_CALL`).
///
/// Anything else (a pipe, a socket, a file) is refused: a pipe's writer blocks once the reader
/// stops reading, and only an eventfd is what virtio drivers (QEMU, DPDK) send. The kernel
/// names the file `anon_inode:[eventfd]` in `/proc/self/fd`.
pub fn prepare_call_fd(call: &File) -> Result<(), String> {
    let fd = call.as_raw_fd();
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map_err(|e| format!("cannot inspect the call fd: {e}"))?;
    if target.as_os_str() != "anon_inode:[eventfd]" {
        return Err(format!(
            "the call fd is {}, not an eventfd; send an eventfd (eventfd(2), as QEMU and DPDK do)",
            target.display()
        ));
    }
    // SAFETY: fcntl on an fd we hold open; F_GETFL takes no argument.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(format!(
            "cannot read the call fd's flags: {}",
            std::io::Error::last_os_error()
        ));
    }
    if flags & libc::O_NONBLOCK != 0 {
        return Ok(());
    }
    // SAFETY: as above; F_SETFL with an int argument.
    let r = unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) };
    if r < 0 {
        return Err(format!(
            "cannot make the call fd non-blocking: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Which ring layout a vring uses, with its pointers.
#[derive(Debug, Clone, Copy)]
pub enum RingView {
    /// Split ring (virtio 1.0).
    Split(SplitRing),
    /// Packed ring (virtio 1.1).
    Packed(PackedRing),
}

/// A vring as configured by the control plane, ready for a poller.
#[derive(Debug)]
pub struct ActiveVring {
    /// Ring pointers (into `mem`).
    pub ring: RingView,
    /// The memory the ring and its buffers live in; kept alive while in use.
    pub mem: Arc<GuestMemory>,
    /// Negotiated virtio features.
    pub features: u64,
    /// Where to resume: the avail index to process next (also the used index).
    pub base: u16,
    /// Eventfd to signal the driver, if any.
    pub call: Option<Arc<CallFd>>,
}

impl ActiveVring {
    /// Prepares the ring for polling: tells the driver not to kick us (we poll).
    pub fn init_notifications(&self) {
        match self.ring {
            RingView::Split(r) => {
                if self.features & bit(feature::RING_F_EVENT_IDX) == 0 {
                    r.set_used_flags(VRING_USED_F_NO_NOTIFY);
                } else {
                    r.set_avail_event(self.base.wrapping_add(0x8000));
                }
            }
            RingView::Packed(r) => r.set_device_event(0, EVENT_FLAGS_DISABLE),
        }
    }

    /// Signals the driver through its call eventfd, if it gave one; never blocks.
    ///
    /// Returns false when the signal could not be delivered and was skipped (the caller counts
    /// it): the eventfd's counter is at its limit (`u64::MAX - 1`, where a write would wait
    /// for the driver to read it), or the write failed. `poll` with a zero timeout tells first
    /// whether a write can proceed, so a write is attempted only when it cannot wait, whatever
    /// `O_NONBLOCK` says ([`prepare_call_fd`] sets it too). A driver that both clears
    /// `O_NONBLOCK` on the shared file description and fills the counter between the `poll`
    /// and the `write` can make the write sleep; the control thread then interrupts it when a
    /// quiesce waits too long ([`CallFd::interrupt_writer`]), and the call counts as skipped.
    /// (`pwritev2(RWF_NOWAIT)` would need one syscall, but eventfds refuse it: `EOPNOTSUPP`
    /// on Linux 6.18.)
    #[cold]
    pub fn signal_call(&self) -> bool {
        self.call.as_ref().is_none_or(|c| c.signal())
    }

    /// The split ring view; panics for packed rings (callers dispatch on [`RingView`] first).
    pub(crate) fn split(&self) -> SplitRing {
        match self.ring {
            RingView::Split(r) => r,
            RingView::Packed(_) => unreachable!("split queue built on a packed ring"),
        }
    }
}
