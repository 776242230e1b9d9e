//! Building blocks of the vRouter: IPv4 route lookup and the few in-place packet rewrites a
//! router does itself. Everything works on plain byte slices (a frame starting with its
//! Ethernet header) and on `u32` addresses; nothing here knows about ports, mbufs or threads.
//!
//! * [`lpm`]: IPv4 longest-prefix match in DIR-24-8 form (as DPDK's `rte_lpm`): one lookup is
//!   at most two atomic loads, with no lock, so forwarding threads look up while the control
//!   thread changes routes.
//! * [`ipv4`]: header validation ([`ipv4::Ipv4Header`]), checksums, TTL decrement with the
//!   incremental checksum update of RFC 1624, ICMP echo request → reply in place.
//! * [`arp`]: ARP parsing, request → reply in place, request and gratuitous ARP frames.
//! * [`eth`]: where the L3 header starts (802.1Q / 802.1ad tags) and the ethertypes.
//!
//! Functions that look at a frame take the offset of its L3 header (`l3`: 14 untagged, 18 with
//! one VLAN tag; see [`eth::l3_offset`]), so tagged frames need no copying.
//!
//! # The LPM reader/writer contract
//!
//! [`lpm::new`] returns one [`lpm::LpmWriter`] and one [`lpm::LpmReader`]. The writer is the
//! only thing that changes the tables (it needs `&mut self`; keep it on the control thread).
//! Readers are `Clone + Send + Sync`: give each forwarding thread one (or share one); their
//! [`lookup`](lpm::LpmReader::lookup) never blocks, never allocates and may run while the
//! writer adds or deletes routes. A lookup racing with a change sees the route table either
//! before or after each single table entry changed, never a value that was not installed.
//!
//! The one thing the writer cannot do on its own is know when a **tbl8 group** (the 256-entry
//! second-level table of a /24 that holds routes longer than /24) is no longer being read:
//! when the last route longer than /24 of a /24 is deleted, the group is folded back into the
//! first-level table and put on a *pending* list. A reader that loaded the old first-level
//! entry just before may still read the group, so it must not be reused yet. The caller
//! calls [`LpmWriter::reclaim`](lpm::LpmWriter::reclaim) once **every reader has passed a
//! quiescent point (a moment when it holds no lookup in progress) after the last `add`/`del`**;
//! then pending groups become free. A typical scheme (as DPDK's QSBR): the control thread bumps
//! a shared token after its changes, each forwarding thread copies the token into its own
//! "seen" counter between bursts, and the control thread calls `reclaim` once every "seen"
//! counter reached the token. Calling `reclaim` too early cannot cause memory unsafety (the
//! tables are atomics and are never freed while a reader exists) but may make an in-flight
//! lookup return another route's next hop. Never calling it only costs groups:
//! [`lpm::LpmError::Tbl8Exhausted`] says when they run out.

pub mod arp;
pub mod eth;
pub mod ipv4;
pub mod lpm;
