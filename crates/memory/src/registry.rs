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

/// Removes a registration.
pub fn unregister(id: u64) {
    let mut g = REGIONS.lock().unwrap_or_else(|p| p.into_inner());
    g.1.retain(|r| r.id != id);
}

/// All regions registered now, in registration order.
pub fn snapshot() -> Vec<RegionInfo> {
    REGIONS.lock().unwrap_or_else(|p| p.into_inner()).1.clone()
}
