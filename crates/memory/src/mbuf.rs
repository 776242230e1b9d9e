//! Packet buffers.
//!
//! An [`Mbuf`] owns one segment of a packet, and through `next` the rest of the chain. Its header
//! sits in private memory; its data buffer sits in the pool's shared region, laid out as
//! `[headroom | data | tailroom]`. Dropping an mbuf returns the whole chain to its pool(s); the
//! hot path frees in bulk through an [`MbufCache`](crate::MbufCache) instead.

use std::ptr::NonNull;

pub use crate::pool_core::MbufHdr;
use crate::pool_core::PoolInner;

// Offload flags (`ol_flags`), with DPDK's names (`RTE_MBUF_F_*`) and bit values, so that
// masks mean the same as in a DPDK application.

/// Rx: the L4 checksum is bad (with [`OL_RX_L4_CKSUM_GOOD`] as well: [`OL_RX_L4_CKSUM_NONE`]).
pub const OL_RX_L4_CKSUM_BAD: u64 = 1 << 3;
/// Rx: the IP header checksum is bad.
pub const OL_RX_IP_CKSUM_BAD: u64 = 1 << 4;
/// Rx: the IP header checksum is good.
pub const OL_RX_IP_CKSUM_GOOD: u64 = 1 << 7;
/// Rx: the L4 checksum is good.
pub const OL_RX_L4_CKSUM_GOOD: u64 = 1 << 8;
/// Rx: the L4 checksum field does not hold a full checksum (only the pseudo-header sum),
/// but the data is known to be intact (a partial checksum from a virtio peer).
pub const OL_RX_L4_CKSUM_NONE: u64 = OL_RX_L4_CKSUM_BAD | OL_RX_L4_CKSUM_GOOD;
/// Rx: mask of the two L4 checksum bits (0 in them: unknown).
pub const OL_RX_L4_CKSUM_MASK: u64 = OL_RX_L4_CKSUM_NONE;
/// Rx: the IP header checksum was not checked but the data is intact.
pub const OL_RX_IP_CKSUM_NONE: u64 = OL_RX_IP_CKSUM_BAD | OL_RX_IP_CKSUM_GOOD;
/// Rx: mask of the two IP checksum bits (0 in them: unknown).
pub const OL_RX_IP_CKSUM_MASK: u64 = OL_RX_IP_CKSUM_NONE;
/// Rx: the packet is a coalesced (large receive) TCP packet; `tso_segsz` is the size of the
/// segments it was made of.
pub const OL_RX_LRO: u64 = 1 << 16;

/// Tx: segment this TCP packet into `tso_segsz`-byte segments (needs `l2_len`, `l3_len`,
/// `l4_len`, one of [`OL_TX_IPV4`]/[`OL_TX_IPV6`], and the pseudo-header checksum, without
/// the length, in the TCP checksum field).
pub const OL_TX_TCP_SEG: u64 = 1 << 50;
/// Tx: compute the TCP checksum (the field must hold the pseudo-header checksum).
pub const OL_TX_TCP_CKSUM: u64 = 1 << 52;
/// Tx: compute the UDP checksum (the field must hold the pseudo-header checksum).
pub const OL_TX_UDP_CKSUM: u64 = 3 << 52;
/// Tx: mask of the L4 checksum request (0: none, or TCP, SCTP (`2 << 52`), UDP).
pub const OL_TX_L4_MASK: u64 = 3 << 52;
/// Tx: compute the IPv4 header checksum.
pub const OL_TX_IP_CKSUM: u64 = 1 << 54;
/// Tx: the packet is IPv4 (for checksum and segmentation offloads).
pub const OL_TX_IPV4: u64 = 1 << 55;
/// Tx: the packet is IPv6 (for checksum and segmentation offloads).
pub const OL_TX_IPV6: u64 = 1 << 56;
/// Tx: every flag that asks the transmitting port to do work on the packet.
pub const OL_TX_OFFLOAD_MASK: u64 = OL_TX_TCP_SEG | OL_TX_L4_MASK | OL_TX_IP_CKSUM;

/// An owned packet buffer (one segment plus its chain).
pub struct Mbuf(NonNull<MbufHdr>);

// SAFETY: an Mbuf is the unique owner of its header and buffer, like a Box.
unsafe impl Send for Mbuf {}
// SAFETY: shared access only reads through `&self`.
unsafe impl Sync for Mbuf {}

impl std::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mbuf")
            .field("data_len", &self.data_len())
            .field("pkt_len", &self.pkt_len())
            .field("nb_segs", &self.nb_segs())
            .finish()
    }
}

impl Mbuf {
    /// Wraps a header just taken from a pool's free list and resets it.
    ///
    /// # Safety
    /// `h` must be a valid header of a live pool that nobody else owns.
    #[inline]
    pub(crate) unsafe fn from_free_hdr(h: *mut MbufHdr) -> Mbuf {
        // SAFETY: caller guarantees `h` is valid and exclusively ours.
        let hdr = unsafe { &mut *h };
        hdr.next = std::ptr::null_mut();
        hdr.data_off = hdr.headroom;
        hdr.data_len = 0;
        hdr.pkt_len = 0;
        hdr.nb_segs = 1;
        hdr.ol_flags = 0;
        // `tx_offload` is left as it was: its fields mean something only with the `ol_flags`
        // that use them (as DPDK's drivers leave them), and resetting them cost a store on
        // every allocation.
        // SAFETY: non-null by the caller's contract.
        Mbuf(unsafe { NonNull::new_unchecked(h) })
    }

    /// Gives up ownership without freeing; pair with [`Mbuf::from_raw`].
    #[inline]
    pub fn into_raw(self) -> NonNull<MbufHdr> {
        let p = self.0;
        std::mem::forget(self);
        p
    }

    /// Takes back ownership of a pointer from [`Mbuf::into_raw`].
    ///
    /// # Safety
    /// `p` must come from `into_raw` and not have been reclaimed since.
    #[inline]
    pub unsafe fn from_raw(p: NonNull<MbufHdr>) -> Mbuf {
        Mbuf(p)
    }

    #[inline]
    fn hdr(&self) -> &MbufHdr {
        // SAFETY: we own a valid header.
        unsafe { self.0.as_ref() }
    }

    #[inline]
    fn hdr_mut(&mut self) -> &mut MbufHdr {
        // SAFETY: we own a valid header exclusively.
        unsafe { self.0.as_mut() }
    }

    /// Bytes of data in this segment.
    #[inline]
    pub fn data_len(&self) -> usize {
        self.hdr().data_len as usize
    }

    /// Bytes of data in the whole chain (valid on the first segment).
    #[inline]
    pub fn pkt_len(&self) -> usize {
        self.hdr().pkt_len as usize
    }

    /// Number of segments in the chain (valid on the first segment).
    #[inline]
    pub fn nb_segs(&self) -> usize {
        self.hdr().nb_segs as usize
    }

    /// Free bytes in front of the data.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.hdr().data_off as usize
    }

    /// Free bytes after the data in this segment.
    #[inline]
    pub fn tailroom(&self) -> usize {
        let h = self.hdr();
        h.buf_len as usize - h.data_off as usize - h.data_len as usize
    }

    /// Size of the whole buffer (headroom + data room).
    #[inline]
    pub fn buf_len(&self) -> usize {
        self.hdr().buf_len as usize
    }

    /// Address of the first data byte (an address the vhost-user peer can also resolve).
    #[inline]
    pub fn data_addr(&self) -> u64 {
        let h = self.hdr();
        h.buf as u64 + h.data_off as u64
    }

    /// Address of the buffer start (beginning of the headroom).
    #[inline]
    pub fn buf_addr(&self) -> u64 {
        self.hdr().buf as u64
    }

    /// Raw pointer to the first data byte.
    #[inline]
    pub fn data_ptr(&mut self) -> *mut u8 {
        let h = self.hdr();
        // SAFETY: data_off <= buf_len, so the pointer stays inside the buffer.
        unsafe { h.buf.add(h.data_off as usize) }
    }

    /// The data of this segment.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let h = self.hdr();
        // SAFETY: [data_off, data_off+data_len) lies inside the buffer we own.
        unsafe { std::slice::from_raw_parts(h.buf.add(h.data_off as usize), h.data_len as usize) }
    }

    /// The data of this segment, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let h = self.hdr();
        // SAFETY: as in `data`, and we own the buffer exclusively.
        unsafe {
            std::slice::from_raw_parts_mut(h.buf.add(h.data_off as usize), h.data_len as usize)
        }
    }

    /// Grows this (single-segment or last) segment by `n` bytes at the end and returns them.
    /// Also grows `pkt_len`. None if the tailroom is too small.
    #[inline]
    pub fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.tailroom() {
            return None;
        }
        let h = self.hdr_mut();
        let off = h.data_off as usize + h.data_len as usize;
        h.data_len += n as u32;
        h.pkt_len += n as u32;
        // SAFETY: [off, off+n) is inside the buffer since n <= tailroom.
        Some(unsafe { std::slice::from_raw_parts_mut(h.buf.add(off), n) })
    }

    /// Grows the data by `n` bytes at the front and returns them. None if the headroom is too
    /// small.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.headroom() {
            return None;
        }
        let h = self.hdr_mut();
        h.data_off -= n as u16;
        h.data_len += n as u32;
        h.pkt_len += n as u32;
        // SAFETY: the new range starts at the new data_off and stays inside the buffer.
        Some(unsafe { std::slice::from_raw_parts_mut(h.buf.add(h.data_off as usize), n) })
    }

    /// Removes `n` bytes from the front of this segment. False if it holds fewer.
    #[inline]
    pub fn adj(&mut self, n: usize) -> bool {
        if n > self.data_len() {
            return false;
        }
        let h = self.hdr_mut();
        h.data_off += n as u16;
        h.data_len -= n as u32;
        h.pkt_len -= n as u32;
        true
    }

    /// Sets this segment's data length directly (used by drivers after the device wrote the
    /// buffer). Returns false, changing nothing, if `len` exceeds the room after data_off.
    #[inline]
    pub fn set_data_len(&mut self, len: usize) -> bool {
        let h = self.hdr_mut();
        if len > h.buf_len as usize - h.data_off as usize {
            return false;
        }
        h.data_len = len as u32;
        true
    }

    /// Sets `pkt_len` on the first segment (drivers building chains).
    #[inline]
    pub fn set_pkt_len(&mut self, len: usize) {
        self.hdr_mut().pkt_len = len as u32;
    }

    /// Sets the data offset from the buffer start. False if it does not fit.
    #[inline]
    pub fn set_data_off(&mut self, off: usize) -> bool {
        let h = self.hdr_mut();
        if off > h.buf_len as usize || off > u16::MAX as usize {
            return false;
        }
        h.data_off = off as u16;
        true
    }

    /// Appends `tail` (a whole chain) after the last segment of this chain.
    pub fn chain(&mut self, tail: Mbuf) {
        let add_len = tail.pkt_len() as u32;
        let add_segs = tail.nb_segs() as u16;
        let tail = tail.into_raw().as_ptr();
        let mut last = self.0.as_ptr();
        // SAFETY: we own every segment of the chain.
        unsafe {
            while !(*last).next.is_null() {
                last = (*last).next;
            }
            (*last).next = tail;
        }
        let h = self.hdr_mut();
        h.pkt_len += add_len;
        h.nb_segs += add_segs;
    }

    /// Iterates over the data of every segment of the chain.
    pub fn segments(&self) -> Segments<'_> {
        Segments {
            cur: self.0.as_ptr(),
            _m: std::marker::PhantomData,
        }
    }

    /// Mutable access to the second segment onwards, one at a time: returns the next segment's
    /// handle view. Used by drivers that fill chains.
    pub fn last_segment_mut(&mut self) -> MbufSegMut<'_> {
        let mut last = self.0.as_ptr();
        // SAFETY: we own the chain.
        unsafe {
            while !(*last).next.is_null() {
                last = (*last).next;
            }
        }
        MbufSegMut {
            // SAFETY: last is a valid, owned header.
            h: unsafe { &mut *last },
        }
    }

    /// Copies the whole chain's data into a vector (tests and slow paths).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.pkt_len());
        for s in self.segments() {
            v.extend_from_slice(s);
        }
        v
    }

    /// Input port (set by the receiving driver).
    #[inline]
    pub fn port(&self) -> u16 {
        self.hdr().port
    }

    /// Sets the input port.
    #[inline]
    pub fn set_port(&mut self, port: u16) {
        self.hdr_mut().port = port;
    }

    /// Offload flags (`OL_*`).
    #[inline]
    pub fn ol_flags(&self) -> u64 {
        self.hdr().ol_flags
    }

    /// Sets offload flags.
    #[inline]
    pub fn set_ol_flags(&mut self, f: u64) {
        self.hdr_mut().ol_flags = f;
    }

    /// L2 header length in bytes (offload metadata; 0..=127). The offload lengths and
    /// `tso_segsz` are meaningful only with the `ol_flags` that use them: a fresh mbuf
    /// clears `ol_flags` but may hold a previous packet's lengths.
    #[inline]
    pub fn l2_len(&self) -> usize {
        (self.hdr().tx_offload & 0x7f) as usize
    }

    /// L3 header length in bytes (offload metadata; 0..=511).
    #[inline]
    pub fn l3_len(&self) -> usize {
        ((self.hdr().tx_offload >> 7) & 0x1ff) as usize
    }

    /// L4 header length in bytes (offload metadata; 0..=255).
    #[inline]
    pub fn l4_len(&self) -> usize {
        ((self.hdr().tx_offload >> 16) & 0xff) as usize
    }

    /// TCP segment size for [`OL_TX_TCP_SEG`], or the coalesced segments' size with
    /// [`OL_RX_LRO`].
    #[inline]
    pub fn tso_segsz(&self) -> u16 {
        (self.hdr().tx_offload >> 24) as u16
    }

    /// Sets the header lengths of the offload metadata. Values beyond a field's width
    /// (127, 511, 255) are refused, changing nothing.
    #[inline]
    pub fn set_header_lens(&mut self, l2: usize, l3: usize, l4: usize) -> bool {
        if l2 > 0x7f || l3 > 0x1ff || l4 > 0xff {
            return false;
        }
        let h = self.hdr_mut();
        h.tx_offload =
            (h.tx_offload & !0xff_ffff) | l2 as u64 | ((l3 as u64) << 7) | ((l4 as u64) << 16);
        true
    }

    /// Sets the TCP segment size of the offload metadata.
    #[inline]
    pub fn set_tso_segsz(&mut self, segsz: u16) {
        let h = self.hdr_mut();
        h.tx_offload = (h.tx_offload & !(0xffff << 24)) | (u64::from(segsz) << 24);
    }

    /// Copies the `N` bytes that start `back` bytes before this segment's data (inside its
    /// headroom, where virtio drivers keep the net header), or None when the headroom is
    /// shorter than `back` or `N > back`. Read with volatile loads: a peer may still write
    /// the buffer.
    #[inline]
    pub fn read_before_data<const N: usize>(&self, back: usize) -> Option<[u8; N]> {
        let h = self.hdr();
        if back > h.data_off as usize || N > back {
            return None;
        }
        // SAFETY: [data_off - back, data_off - back + N) lies inside the buffer's headroom.
        Some(unsafe {
            h.buf
                .add(h.data_off as usize - back)
                .cast::<[u8; N]>()
                .read_volatile()
        })
    }

    /// Bytes `[off, off + len)` of the data, as a mutable slice, when they lie inside the
    /// first segment.
    #[inline]
    pub fn first_seg_range_mut(&mut self, off: usize, len: usize) -> Option<&mut [u8]> {
        let end = off.checked_add(len)?;
        self.data_mut().get_mut(off..end)
    }

    /// Detaches and returns the chain after this segment, fixing up lengths.
    pub fn split_off_next(&mut self) -> Option<Mbuf> {
        let next = self.hdr().next;
        if next.is_null() {
            return None;
        }
        let h = self.hdr_mut();
        h.next = std::ptr::null_mut();
        let rest_len = h.pkt_len - h.data_len;
        let rest_segs = h.nb_segs - 1;
        h.pkt_len = h.data_len;
        h.nb_segs = 1;
        // SAFETY: `next` was owned by this chain and is now detached.
        let mut m = Mbuf(unsafe { NonNull::new_unchecked(next) });
        let nh = m.hdr_mut();
        nh.pkt_len = rest_len;
        nh.nb_segs = rest_segs;
        Some(m)
    }
}

/// Mutable view of one segment inside a chain.
#[derive(Debug)]
pub struct MbufSegMut<'a> {
    h: &'a mut MbufHdr,
}

impl MbufSegMut<'_> {
    /// Free bytes after the data.
    pub fn tailroom(&self) -> usize {
        self.h.buf_len as usize - self.h.data_off as usize - self.h.data_len as usize
    }
}

/// Iterator over segment data of a chain.
pub struct Segments<'a> {
    cur: *mut MbufHdr,
    _m: std::marker::PhantomData<&'a Mbuf>,
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.cur.is_null() {
            return None;
        }
        // SAFETY: the chain is borrowed for 'a and each header is valid.
        let h = unsafe { &*self.cur };
        self.cur = h.next;
        // SAFETY: [data_off, data_off+data_len) is inside the segment's buffer.
        Some(unsafe {
            std::slice::from_raw_parts(h.buf.add(h.data_off as usize), h.data_len as usize)
        })
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        let mut seg = self.0.as_ptr();
        while !seg.is_null() {
            // SAFETY: we own the chain; read next and pool before giving the segment back.
            let (next, pool) = unsafe { ((*seg).next, (*seg).pool) };
            PoolInner::put_raw(pool, &[seg as usize]);
            seg = next;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::{Mempool, MempoolConfig};

    #[test]
    fn append_prepend_adj_and_chain() {
        let p = Mempool::new(MempoolConfig {
            count: 8,
            ..Default::default()
        })
        .unwrap();
        let mut a = p.alloc().unwrap();
        assert_eq!(a.headroom(), 128);
        a.append(100).unwrap().fill(1);
        a.prepend(12).unwrap().fill(2);
        assert_eq!(a.data_len(), 112);
        assert!(a.prepend(1000).is_none());
        assert!(a.append(5000).is_none());
        let mut b = p.alloc().unwrap();
        b.append(50).unwrap().fill(3);
        a.chain(b);
        assert_eq!(a.pkt_len(), 162);
        assert_eq!(a.nb_segs(), 2);
        let v = a.to_vec();
        assert_eq!(&v[..12], &[2; 12]);
        assert_eq!(&v[112..], &[3; 50]);
        assert!(a.adj(12));
        assert_eq!(a.pkt_len(), 150);
        let rest = a.split_off_next().unwrap();
        assert_eq!(rest.pkt_len(), 50);
        assert_eq!(a.pkt_len(), 100);
        drop(a);
        drop(rest);
        assert_eq!(p.available(), 8);
    }

    #[test]
    fn offload_lengths_pack_and_flags_reset() {
        let p = Mempool::new(MempoolConfig {
            count: 2,
            ..Default::default()
        })
        .unwrap();
        let mut a = p.alloc().unwrap();
        assert!(a.set_header_lens(14, 20, 32));
        a.set_tso_segsz(1448);
        assert_eq!((a.l2_len(), a.l3_len(), a.l4_len()), (14, 20, 32));
        assert_eq!(a.tso_segsz(), 1448);
        assert!(a.set_header_lens(127, 511, 255));
        assert_eq!((a.l2_len(), a.l3_len(), a.l4_len()), (127, 511, 255));
        assert_eq!(a.tso_segsz(), 1448);
        assert!(!a.set_header_lens(128, 0, 0));
        assert_eq!(a.l2_len(), 127);
        a.set_ol_flags(super::OL_TX_TCP_CKSUM);
        drop(a);
        let a = p.alloc().unwrap();
        let b = p.alloc().unwrap();
        for m in [&a, &b] {
            assert_eq!(
                m.ol_flags(),
                0,
                "flags are cleared; the lengths may be stale"
            );
        }
    }
}
