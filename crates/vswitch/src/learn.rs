//! What the PMD threads ask of the control thread: addresses to learn.

use crate::fdb::FdbKey;

/// A learning request from a PMD thread to the control thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LearnRequest {
    /// A source MAC seen on a port.
    Mac {
        /// The bridge.
        bridge: u16,
        /// The source MAC and VLAN.
        key: FdbKey,
        /// The port it was seen on.
        port: u16,
    },
    /// A neighbour of the router (from ARP, or the source of a routed packet).
    Neighbour {
        /// IPv4 address, host order.
        ip: u32,
        /// Its MAC.
        mac: [u8; 6],
    },
}
