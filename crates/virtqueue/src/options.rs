//! What a driver queue follows, whichever its ring layout: the negotiated options and the
//! policy constants both driver sides share.

/// Negotiated options a driver queue follows.
#[derive(Debug, Clone, Copy)]
pub struct DriverOptions {
    /// Negotiated virtio features.
    pub features: u64,
    /// Largest frame to accept on Rx (larger ones are dropped and counted).
    pub max_rx_pkt: usize,
}

/// Tx: completed transmissions are freed once this many buffers are in flight (split: avail
/// entries, packed: descriptors), not only when the ring runs short: sent mbufs go back to the
/// cache a burst or two after the device has copied them, still warm (the per-thread stash
/// hands them to the Rx refill next), and the mbufs in circulation stay few.
pub(crate) const TX_RECLAIM_AT: u16 = 64;
