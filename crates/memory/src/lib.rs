//! Memory layer of Ferrovia.
//!
//! * [`region`]: memfd-backed (optionally hugetlbfs) shared memory that can be handed to a
//!   vhost-user peer by file descriptor. No root and no hugepages are needed.
//! * [`registry`]: the process-wide list of shareable regions, which virtio-user sends to its
//!   backend as the memory table (guest address = process virtual address, as DPDK does).
//! * [`ring`]: a bounded lock-free multi-producer/multi-consumer ring of pointers with bulk
//!   operations, used as the mempool's shared free list.
//! * [`mempool`]: fixed-size packet buffer pools with per-thread caches and bulk get/put.
//! * [`mbuf`]: packet buffers with headroom, chaining and offload metadata.
//! * [`lcore_caches`]: the caches of one polling thread, one per pool, passed to every burst.
//! * [`cksum`]: Internet checksums and the header lengths offloads need.
//! * [`arena`]: ring areas for many ports carved from a few registered regions.
//!
//! Below both `mempool` and `mbuf` sits `pool_core`: the mbuf header, the pool state it points
//! back to and the primitive that returns a header to its pool, so neither of the two modules
//! depends on the other's internals in a cycle (scripts/check-module-cycles.py checks it).

pub mod arena;
pub mod burst;
pub mod cksum;
pub mod dma;
pub mod lcore_caches;
#[cfg(not(loom))]
mod lcore_stash;
pub mod mbuf;
pub mod mempool;
mod pool_core;
pub mod region;
pub mod registry;
pub mod ring;
mod sync;

pub use burst::{Burst, MAX_BURST};
pub use lcore_caches::LcoreCaches;
pub use mbuf::{Mbuf, MbufHdr};
pub use mempool::{MbufCache, Mempool, MempoolConfig};
pub use region::{RegionBacking, SharedRegion};
pub use ring::ObjRing;
