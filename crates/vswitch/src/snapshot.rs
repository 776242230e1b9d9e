//! The configuration the PMD threads switch by: an immutable snapshot, replaced whole.
//!
//! The control thread builds a new [`Snapshot`] for every configuration change and sends it to
//! each PMD thread, which swaps it in between bursts. The packet path reads it without locks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::fdb::FdbTable;
use crate::router::RouterView;
use crate::vlan::VlanMode;

/// The data-path view of one port.
#[derive(Debug)]
pub struct PortView {
    /// The port's slot (its index in [`Snapshot::ports`]).
    pub slot: u16,
    /// The bridge it belongs to.
    pub bridge: u16,
    /// Its VLAN mode.
    pub vlan: VlanMode,
    /// Largest frame accepted on ingress (bytes, without the 4-byte CRC).
    pub max_frame: u32,
}

/// The data-path view of one bridge.
#[derive(Debug)]
pub struct BridgeView {
    /// The bridge id (its index in [`Snapshot::bridges`]).
    pub id: u16,
    /// Its FDB.
    pub fdb: Arc<FdbTable>,
    /// Port slots on the bridge, for flooding.
    pub members: Vec<u16>,
    /// Its router interfaces, if it has any.
    pub router: Option<Arc<RouterView>>,
}

/// One version of the whole configuration.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Port views by slot.
    pub ports: Vec<Option<PortView>>,
    /// Bridge views by id.
    pub bridges: Vec<Option<BridgeView>>,
}

impl Snapshot {
    /// The port in `slot`, if there is one.
    #[inline]
    pub fn port(&self, slot: u16) -> Option<&PortView> {
        self.ports.get(slot as usize).and_then(Option::as_ref)
    }
    /// The bridge `id`, if there is one.
    #[inline]
    pub fn bridge(&self, id: u16) -> Option<&BridgeView> {
        self.bridges.get(id as usize).and_then(Option::as_ref)
    }
}

/// State shared by the control thread and every PMD thread.
#[derive(Debug, Default)]
pub struct Shared {
    /// Bumped whenever a flow-cache entry could become wrong: an FDB entry added, moved or
    /// removed, or a new snapshot. PMD threads read it once per burst.
    pub generation: AtomicU64,
    /// Seconds since the switch started, kept by the control thread (the FDB's clock).
    pub now: AtomicU32,
}

impl Shared {
    /// Invalidates every flow-cache entry.
    pub fn bump(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }
}
