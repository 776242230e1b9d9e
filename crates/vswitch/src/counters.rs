//! Counters written by PMD threads and summed by the control thread.
//!
//! Each PMD thread owns one [`PmdCounters`] (its per-port and its own counters) and is the
//! only writer of it, so an update is a relaxed load and store, never an atomic
//! read-modify-write. Readers sum over the PMD threads.

use std::sync::atomic::{AtomicU64, Ordering};

/// Most port slots a switch has.
pub const MAX_PORTS: usize = 1024;

/// Why the switch dropped a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum DropCause {
    /// Shorter than an Ethernet header.
    Runt,
    /// Longer than the ingress port's MTU.
    Oversize,
    /// Stacked VLAN tags (QinQ).
    StackedVlan,
    /// A multicast source address.
    MulticastSource,
    /// The ingress port does not carry the frame's VLAN.
    VlanIngress,
    /// The learned egress port does not carry the frame's VLAN.
    VlanEgress,
    /// The destination was learned on the ingress port.
    Hairpin,
    /// The egress port was removed while the frame was in flight.
    PortGone,
    /// The egress queue (or the peer's ring) was full.
    TxFull,
    /// No mbuf for a flooded copy.
    NoMbuf,
    /// No route to the destination.
    NoRoute,
    /// TTL reached zero at the router.
    TtlExpired,
    /// The next hop's MAC address is not resolved yet (an ARP request went out).
    ArpMiss,
    /// A malformed IPv4 or ARP packet addressed to the router.
    BadL3,
    /// A frame addressed to the router that it does not handle.
    RouterUnhandled,
}

impl DropCause {
    /// Every cause, in counter order.
    pub const ALL: [DropCause; 15] = [
        DropCause::Runt,
        DropCause::Oversize,
        DropCause::StackedVlan,
        DropCause::MulticastSource,
        DropCause::VlanIngress,
        DropCause::VlanEgress,
        DropCause::Hairpin,
        DropCause::PortGone,
        DropCause::TxFull,
        DropCause::NoMbuf,
        DropCause::NoRoute,
        DropCause::TtlExpired,
        DropCause::ArpMiss,
        DropCause::BadL3,
        DropCause::RouterUnhandled,
    ];

    /// The counter's name.
    pub fn name(self) -> &'static str {
        match self {
            DropCause::Runt => "runt",
            DropCause::Oversize => "oversize",
            DropCause::StackedVlan => "stacked_vlan",
            DropCause::MulticastSource => "multicast_source",
            DropCause::VlanIngress => "vlan_ingress",
            DropCause::VlanEgress => "vlan_egress",
            DropCause::Hairpin => "hairpin",
            DropCause::PortGone => "port_gone",
            DropCause::TxFull => "tx_full",
            DropCause::NoMbuf => "no_mbuf",
            DropCause::NoRoute => "no_route",
            DropCause::TtlExpired => "ttl_expired",
            DropCause::ArpMiss => "arp_miss",
            DropCause::BadL3 => "bad_l3",
            DropCause::RouterUnhandled => "router_unhandled",
        }
    }
}

const NCAUSES: usize = DropCause::ALL.len();

/// A single-writer counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n` (only the owning thread calls this).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
    /// The current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One PMD thread's counters for one port.
#[derive(Debug, Default)]
pub struct PortCounters {
    /// Frames received.
    pub rx_packets: Counter,
    /// Bytes received.
    pub rx_bytes: Counter,
    /// Frames sent.
    pub tx_packets: Counter,
    /// Bytes sent.
    pub tx_bytes: Counter,
    /// Frames received that were flooded (unknown unicast, broadcast, multicast).
    pub rx_flooded: Counter,
    /// Drops, by cause, charged to the ingress port (or the egress port for
    /// [`DropCause::TxFull`], [`DropCause::VlanEgress`] and [`DropCause::PortGone`]).
    pub drops: [Counter; NCAUSES],
}

impl PortCounters {
    /// Counts a drop.
    #[inline]
    pub fn drop(&self, cause: DropCause, n: u64) {
        self.drops[cause as usize].add(n);
    }
}

/// One PMD thread's own counters.
#[derive(Debug, Default)]
pub struct PmdOwn {
    /// Loop iterations.
    pub iterations: Counter,
    /// TSC cycles spent in iterations that moved packets.
    pub busy_cycles: Counter,
    /// TSC cycles spent in iterations that moved none.
    pub idle_cycles: Counter,
    /// Frames received.
    pub packets: Counter,
    /// Flow-cache hits.
    pub emc_hits: Counter,
    /// Flow-cache misses.
    pub emc_misses: Counter,
    /// Learning requests dropped because the queue to the control thread was full.
    pub learn_queue_full: Counter,
    /// Frames handed to another PMD thread's mailbox (ports whose Tx queue it owns).
    pub mailbox_tx: Counter,
}

/// Everything one PMD thread counts.
#[derive(Debug)]
pub struct PmdCounters {
    /// Per port slot.
    pub ports: Box<[PortCounters]>,
    /// The thread's own.
    pub own: PmdOwn,
}

impl Default for PmdCounters {
    fn default() -> PmdCounters {
        PmdCounters {
            ports: (0..MAX_PORTS).map(|_| PortCounters::default()).collect(),
            own: PmdOwn::default(),
        }
    }
}

/// A port's counters summed over PMD threads, as shown to users.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortTotals {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames received that were flooded.
    pub rx_flooded: u64,
    /// Drops by cause name (only causes that occurred).
    pub drops: std::collections::BTreeMap<String, u64>,
}

impl PortTotals {
    /// Sums one port slot over `pmds`, minus `base` (the values when the slot was last reset).
    pub fn sum<'a>(
        pmds: impl IntoIterator<Item = &'a PmdCounters>,
        slot: u16,
        base: &PortTotals,
    ) -> PortTotals {
        let mut t = PortTotals::default();
        let mut drops = [0u64; NCAUSES];
        for p in pmds {
            let c = &p.ports[slot as usize];
            t.rx_packets += c.rx_packets.get();
            t.rx_bytes += c.rx_bytes.get();
            t.tx_packets += c.tx_packets.get();
            t.tx_bytes += c.tx_bytes.get();
            t.rx_flooded += c.rx_flooded.get();
            for (d, c) in drops.iter_mut().zip(&c.drops) {
                *d += c.get();
            }
        }
        t.rx_packets -= base.rx_packets.min(t.rx_packets);
        t.rx_bytes -= base.rx_bytes.min(t.rx_bytes);
        t.tx_packets -= base.tx_packets.min(t.tx_packets);
        t.tx_bytes -= base.tx_bytes.min(t.tx_bytes);
        t.rx_flooded -= base.rx_flooded.min(t.rx_flooded);
        for (cause, n) in DropCause::ALL.iter().zip(drops) {
            let b = base.drops.get(cause.name()).copied().unwrap_or(0);
            if n > b {
                t.drops.insert(cause.name().to_string(), n - b);
            }
        }
        t
    }

    /// Total drops over every cause.
    pub fn dropped(&self) -> u64 {
        self.drops.values().sum()
    }
}
