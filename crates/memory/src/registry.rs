//! Process-wide registry of shareable memory regions.
//!
//! virtio-user sends every registered region to its vhost-user backend, so that any mbuf the
//! application hands to a port is addressable by the peer. Regions register themselves when a
//! mempool or a ring area is created and unregister when dropped.

use std::os::fd::RawFd;
use std::sync::Mutex;

/// A region as the peer must see it: address, length and fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    /// Start address in this process (also the guest physical address given to the peer).
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// File descriptor to send.
    pub fd: RawFd,
    /// Registration id, for removal.
    pub id: u64,
}

static REGIONS: Mutex<(u64, Vec<RegionInfo>)> = Mutex::new((0, Vec::new()));

/// Registers a region and returns its registration id.
pub fn register(addr: u64, len: u64, fd: RawFd) -> u64 {
    let mut g = REGIONS.lock().unwrap_or_else(|p| p.into_inner());
    g.0 += 1;
    let id = g.0;
    g.1.push(RegionInfo { addr, len, fd, id });
    id
}

/// A registration that is removed when dropped.
#[derive(Debug)]
pub struct Registration(u64);

impl Registration {
    /// Registers a region for as long as the returned value lives.
    pub fn new(addr: u64, len: u64, fd: RawFd) -> Registration {
        Registration(register(addr, len, fd))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        unregister(self.0);
    }
}

/// Removes a registration.
pub fn unregister(id: u64) {
    let mut g = REGIONS.lock().unwrap_or_else(|p| p.into_inner());
    g.1.retain(|r| r.id != id);
}

/// All regions registered now, each with its own duplicate of the fd (so that a region
/// dropped by another thread meanwhile cannot make the fd number point at something else).
/// The `fd` field of each [`RegionInfo`] is the duplicate's number, valid while the
/// [`std::os::fd::OwnedFd`] lives.
pub fn snapshot_owned() -> std::io::Result<Vec<(RegionInfo, std::os::fd::OwnedFd)>> {
    use std::os::fd::{AsRawFd, BorrowedFd};
    let g = REGIONS.lock().unwrap_or_else(|p| p.into_inner());
    g.1.iter()
        .map(|r| {
            // SAFETY: registered fds stay open until unregistered, which needs this lock.
            let fd = unsafe { BorrowedFd::borrow_raw(r.fd) }.try_clone_to_owned()?;
            Ok((
                RegionInfo {
                    fd: fd.as_raw_fd(),
                    ..*r
                },
                fd,
            ))
        })
        .collect()
}

/// All regions registered now, in registration order.
pub fn snapshot() -> Vec<RegionInfo> {
    REGIONS.lock().unwrap_or_else(|p| p.into_inner()).1.clone()
}
