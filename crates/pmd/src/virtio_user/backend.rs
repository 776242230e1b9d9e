//! The backend operations of a virtio-user port: what differs between a vhost-user backend
//! (a unix socket, `ctl.rs`) and vhost-kernel (`/dev/vhost-net` plus a tap, `kernel.rs`).
//!
//! Both drive the same rings in the same memory; a backend only decides how the device learns
//! where they are, and when they may be used: it publishes each vring's configuration
//! (negotiated features and kick fd) through the vring's quiesce slot, and pauses them when the
//! device goes away. The queues never know which backend they run on.
//!
//! DPDK's backend operations are one call per vhost message; ours are coarser because the
//! vhost-user side is an asynchronous state machine on the control loop (a handshake that may
//! take seconds and a backend that may come and go), while vhost-kernel is set up in a few
//! synchronous ioctls when the port opens.

use ferrovia_transport::vhost_kernel;

/// Which kind of backend a `path=` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BackendKind {
    /// A vhost-user unix socket.
    VhostUser,
    /// The kernel's vhost-net device (a character device such as `/dev/vhost-net`).
    VhostKernel,
}

impl BackendKind {
    /// The kind for `path`: a character device, or a missing `/dev/vhost-*` path, is
    /// vhost-kernel; anything else is a vhost-user socket (which may not exist yet).
    pub(crate) fn of(path: &str) -> BackendKind {
        if vhost_kernel::is_vhost_kernel_path(path) {
            BackendKind::VhostKernel
        } else {
            BackendKind::VhostUser
        }
    }

    /// The name used in messages.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BackendKind::VhostUser => "vhost-user",
            BackendKind::VhostKernel => "vhost-kernel",
        }
    }
}

/// The control side of one virtio-user port's connection to its device.
pub(crate) trait Backend: Send {
    /// Which kind this is.
    fn kind(&self) -> BackendKind;
    /// Whether the link is up now (not on the data path: `Port::link` only).
    fn link_up(&self) -> bool;
    /// Messages from the device that were refused (checked, counted, dropped).
    fn bad_messages(&self) -> u64 {
        0
    }
    /// Stops the device: when this returns, every vring is paused and the device no longer
    /// reads or writes the rings or buffers, so the port may reclaim them.
    fn shutdown(&mut self);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_picks_the_backend() {
        assert_eq!(BackendKind::of("/dev/vhost-net"), BackendKind::VhostKernel);
        assert_eq!(BackendKind::of("/dev/null"), BackendKind::VhostKernel);
        assert_eq!(BackendKind::of("/tmp/sock0"), BackendKind::VhostUser);
        assert_eq!(BackendKind::of("/var/run/usvhost"), BackendKind::VhostUser);
        assert_eq!(BackendKind::VhostKernel.as_str(), "vhost-kernel");
    }
}
