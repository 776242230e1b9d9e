//! The pool's core, below both [`mbuf`](crate::mbuf) and [`mempool`](crate::mempool): the
//! mbuf header, the pool state every header points back to, and the primitive that returns
//! headers to the pool. Both modules build on it; it uses neither, so a freed [`Mbuf`] goes
//! back to its pool without the mbuf module depending on the mempool module.
//!
//! [`Mbuf`]: crate::Mbuf

use crate::region::{RegionBacking, SharedRegion};
use crate::registry;
use crate::ring::ObjRing;
use crate::sync::{AtomicBool, AtomicUsize, Ordering};

/// Default bytes of headroom in front of packet data (as DPDK's `RTE_PKTMBUF_HEADROOM`).
pub const DEFAULT_HEADROOM: u16 = 128;
/// Default data room after the headroom (as DPDK's default mbuf size).
pub const DEFAULT_DATA_ROOM: u16 = 2048;

/// How to build a pool.
#[derive(Clone, Debug)]
pub struct MempoolConfig {
    /// Name, used in region names and error messages.
    pub name: String,
    /// Number of mbufs.
    pub count: usize,
    /// Headroom in bytes in front of the data of a fresh mbuf.
    pub headroom: u16,
    /// Bytes available for packet data after the headroom.
    pub data_room: u16,
    /// Size of each per-thread cache.
    pub cache_size: usize,
    /// Memory backing the data buffers.
    pub backing: RegionBacking,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            name: "mbuf_pool".into(),
            count: 8192,
            headroom: DEFAULT_HEADROOM,
            data_room: DEFAULT_DATA_ROOM,
            cache_size: 256,
            backing: RegionBacking::Memfd,
        }
    }
}

/// The header of one mbuf segment.
///
/// One 64-byte cache line: the offload lengths (`tx_offload`) fill the 8 bytes that were
/// padding, so offload metadata costs no extra line (a test pins the size).
#[repr(C, align(64))]
#[derive(Debug)]
pub struct MbufHdr {
    pub(crate) buf: *mut u8,
    pub(crate) next: *mut MbufHdr,
    pub(crate) pool: *const PoolInner,
    pub(crate) ol_flags: u64,
    /// Offload lengths packed as DPDK packs `tx_offload`: `l2_len` bits 0..7, `l3_len`
    /// 7..16, `l4_len` 16..24, `tso_segsz` 24..40 (see `Mbuf::l2_len` and its siblings).
    pub(crate) tx_offload: u64,
    pub(crate) buf_len: u32,
    pub(crate) data_len: u32,
    pub(crate) pkt_len: u32,
    pub(crate) index: u32,
    pub(crate) data_off: u16,
    pub(crate) nb_segs: u16,
    pub(crate) port: u16,
    pub(crate) headroom: u16,
}

impl MbufHdr {
    pub(crate) fn new(buf: *mut u8, buf_len: u32, headroom: u16, index: u32) -> MbufHdr {
        MbufHdr {
            buf,
            next: std::ptr::null_mut(),
            pool: std::ptr::null(),
            ol_flags: 0,
            tx_offload: 0,
            buf_len,
            data_len: 0,
            pkt_len: 0,
            index,
            data_off: headroom,
            nb_segs: 1,
            port: u16::MAX,
            headroom,
        }
    }
}

/// The shared state of one pool, owned jointly by its [`Mempool`](crate::Mempool) handles
/// and its outstanding mbufs: freed when the last of either is gone.
pub(crate) struct PoolInner {
    pub(crate) cfg: MempoolConfig,
    pub(crate) region: SharedRegion,
    pub(crate) reg_id: u64,
    /// Headers, allocated by `Box<[MbufHdr]>` and leaked into a raw pointer so that mbuf handles
    /// may mutate them without aliasing a Rust reference; reclaimed in `Drop`.
    pub(crate) hdrs: *mut [MbufHdr],
    pub(crate) ring: ObjRing,
    pub(crate) handles: AtomicUsize,
    pub(crate) freed: AtomicBool,
    /// Free mbufs held in threads' stashes (`lcore_stash`), not in `ring`.
    pub(crate) stashed: AtomicUsize,
}

impl PoolInner {
    /// Returns a single mbuf header to the shared ring; frees the pool if this was the last
    /// outstanding mbuf of a pool whose handles are all gone.
    pub(crate) fn put_raw(this: *const PoolInner, objs: &[usize]) {
        // SAFETY: `this` stays valid while any mbuf of the pool is outstanding (see `maybe_free`).
        let inner = unsafe { &*this };
        let ok = inner.ring.enqueue_bulk(objs);
        debug_assert!(ok, "mempool ring overflow: an mbuf was freed twice");
        if inner.handles.load(Ordering::Acquire) == 0 {
            PoolInner::maybe_free(this);
        }
    }

    pub(crate) fn maybe_free(this: *const PoolInner) {
        // SAFETY: see put_raw.
        let inner = unsafe { &*this };
        if inner.handles.load(Ordering::Acquire) == 0
            && inner.ring.len() == inner.cfg.count
            && !inner.freed.swap(true, Ordering::AcqRel)
        {
            registry::unregister(inner.reg_id);
            // SAFETY: no handle and no outstanding mbuf refer to the pool any more, and the
            // `freed` flag makes this the only caller to reclaim the allocation from Box::into_raw.
            drop(unsafe { Box::from_raw(this as *mut PoolInner) });
        }
    }
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // SAFETY: `hdrs` came from Box::into_raw in Mempool::new and every mbuf is back.
        drop(unsafe { Box::from_raw(self.hdrs) });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mbuf_header_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<super::MbufHdr>(), 64);
        assert_eq!(std::mem::align_of::<super::MbufHdr>(), 64);
    }
}
