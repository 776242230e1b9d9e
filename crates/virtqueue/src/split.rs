//! Raw access to a split ring laid out in memory (ours or the peer's).
//!
//! This is the only module that dereferences ring pointers. Every accessor masks its slot index
//! with `size - 1`, so no value read from the peer can make it reach outside the ring. Index
//! fields are accessed as atomics (acquire on the consumer side, release on the producer
//! side); descriptors and ring entries with volatile reads and writes, since the peer may change
//! them at any time.

use std::sync::atomic::{AtomicU16, Ordering};

use crate::layout::{Desc, UsedElem, avail_ring_size, desc_table_size, used_ring_size};

/// Pointers to the three parts of one split ring.
#[derive(Debug, Clone, Copy)]
pub struct SplitRing {
    desc: *mut Desc,
    avail: *mut u16,
    used: *mut u16,
    mask: u16,
}

// SAFETY: the ring is shared memory; concurrent access by the peer is expected and every access
// here is an atomic or volatile operation on a location checked at construction.
unsafe impl Send for SplitRing {}
// SAFETY: as above.
unsafe impl Sync for SplitRing {}

/// Why ring addresses were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingAddrError {
    /// Size is not a power of two in 1..=32768.
    BadSize,
    /// A part is not aligned as virtio requires (desc 16, avail 2, used 4).
    Misaligned,
}

impl std::fmt::Display for RingAddrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RingAddrError::BadSize => "the size must be a power of two from 1 to 32768",
            RingAddrError::Misaligned => {
                "a ring part is misaligned (descriptors need 16 bytes, avail 2, used 4)"
            }
        })
    }
}

impl SplitRing {
    /// Builds a ring view.
    ///
    /// # Safety
    /// `desc`, `avail` and `used` must point to mapped, writable memory of at least
    /// [`desc_table_size`], [`avail_ring_size`] and [`used_ring_size`] bytes for `size`, which
    /// stays mapped for as long as this value (or a copy) is used.
    pub unsafe fn new(
        desc: *mut u8,
        avail: *mut u8,
        used: *mut u8,
        size: u16,
    ) -> Result<SplitRing, RingAddrError> {
        if !crate::layout::valid_queue_size(size as u32) {
            return Err(RingAddrError::BadSize);
        }
        if !(desc as usize).is_multiple_of(16)
            || !(avail as usize).is_multiple_of(2)
            || !(used as usize).is_multiple_of(4)
        {
            return Err(RingAddrError::Misaligned);
        }
        let _ = (
            desc_table_size(size),
            avail_ring_size(size),
            used_ring_size(size),
        );
        Ok(SplitRing {
            desc: desc.cast(),
            avail: avail.cast(),
            used: used.cast(),
            mask: size - 1,
        })
    }

    /// Ring size.
    #[inline]
    pub fn size(&self) -> u16 {
        self.mask.wrapping_add(1)
    }

    #[inline]
    fn atomic(p: *mut u16) -> &'static AtomicU16 {
        // SAFETY: callers pass pointers inside the ring checked at construction, 2-byte aligned.
        unsafe { &*(p as *const AtomicU16) }
    }

    /// Reads descriptor `i` (masked).
    #[inline]
    pub fn desc(&self, i: u16) -> Desc {
        // SAFETY: (i & mask) < size and the table holds `size` descriptors.
        unsafe { self.desc.add((i & self.mask) as usize).read_volatile() }
    }

    /// Writes descriptor `i` (masked).
    #[inline]
    pub fn set_desc(&self, i: u16, d: Desc) {
        // Two 8-byte stores (a struct write goes through the stack field by field: ~10
        // instructions per descriptor more, callgrind). Little-endian layout of the second
        // word: len, flags, next.
        let rest = d.len as u64 | (d.flags as u64) << 32 | (d.next as u64) << 48;
        // SAFETY: as in `desc`; a descriptor is 16 bytes at a 16-aligned address (checked at
        // construction), so both 8-byte words are aligned and inside it.
        unsafe {
            let p = self.desc.add((i & self.mask) as usize).cast::<u64>();
            p.write_volatile(d.addr.to_le());
            p.add(1).write_volatile(rest.to_le());
        }
    }

    /// avail.flags.
    #[inline]
    pub fn avail_flags(&self) -> u16 {
        Self::atomic(self.avail).load(Ordering::Relaxed)
    }
    /// Sets avail.flags.
    #[inline]
    pub fn set_avail_flags(&self, v: u16) {
        Self::atomic(self.avail).store(v, Ordering::Relaxed)
    }
    /// avail.idx, with acquire ordering (entries below it are visible).
    #[inline]
    pub fn avail_idx(&self) -> u16 {
        // SAFETY: offset 1 (bytes 2..4) is inside the avail ring.
        Self::atomic(unsafe { self.avail.add(1) }).load(Ordering::Acquire)
    }
    /// Publishes avail.idx with release ordering.
    #[inline]
    pub fn set_avail_idx(&self, v: u16) {
        // SAFETY: as in `avail_idx`.
        Self::atomic(unsafe { self.avail.add(1) }).store(v, Ordering::Release)
    }
    /// avail.ring[slot & mask].
    #[inline]
    pub fn avail_ring(&self, slot: u16) -> u16 {
        // SAFETY: 2 + (slot & mask) < 2 + size entries of u16.
        unsafe {
            self.avail
                .add(2 + (slot & self.mask) as usize)
                .read_volatile()
        }
    }
    /// Writes avail.ring[slot & mask].
    #[inline]
    pub fn set_avail_ring(&self, slot: u16, v: u16) {
        // SAFETY: as in `avail_ring`.
        unsafe {
            self.avail
                .add(2 + (slot & self.mask) as usize)
                .write_volatile(v)
        }
    }
    /// used_event (after the avail ring entries).
    #[inline]
    pub fn used_event(&self) -> u16 {
        // SAFETY: index 2 + size is the last u16 of the avail ring.
        Self::atomic(unsafe { self.avail.add(2 + self.size() as usize) }).load(Ordering::Relaxed)
    }
    /// Writes used_event.
    #[inline]
    pub fn set_used_event(&self, v: u16) {
        // SAFETY: as in `used_event`.
        Self::atomic(unsafe { self.avail.add(2 + self.size() as usize) })
            .store(v, Ordering::Relaxed)
    }

    /// used.flags.
    #[inline]
    pub fn used_flags(&self) -> u16 {
        Self::atomic(self.used).load(Ordering::Relaxed)
    }
    /// Sets used.flags.
    #[inline]
    pub fn set_used_flags(&self, v: u16) {
        Self::atomic(self.used).store(v, Ordering::Relaxed)
    }
    /// used.idx with acquire ordering.
    #[inline]
    pub fn used_idx(&self) -> u16 {
        // SAFETY: bytes 2..4 of the used ring.
        Self::atomic(unsafe { self.used.add(1) }).load(Ordering::Acquire)
    }
    /// Publishes used.idx with release ordering.
    #[inline]
    pub fn set_used_idx(&self, v: u16) {
        // SAFETY: as in `used_idx`.
        Self::atomic(unsafe { self.used.add(1) }).store(v, Ordering::Release)
    }
    #[inline]
    fn used_elem_ptr(&self, slot: u16) -> *mut UsedElem {
        // SAFETY: the elements start at byte 4 (4-byte aligned) and there are `size` of them.
        unsafe { (self.used.add(2) as *mut UsedElem).add((slot & self.mask) as usize) }
    }
    /// used.ring[slot & mask].
    #[inline]
    pub fn used_elem(&self, slot: u16) -> UsedElem {
        // SAFETY: see used_elem_ptr.
        unsafe { self.used_elem_ptr(slot).read_volatile() }
    }
    /// Writes used.ring[slot & mask].
    #[inline]
    pub fn set_used_elem(&self, slot: u16, e: UsedElem) {
        // SAFETY: see used_elem_ptr.
        unsafe { self.used_elem_ptr(slot).write_volatile(e) }
    }
    /// avail_event (after the used elements).
    #[inline]
    pub fn avail_event(&self) -> u16 {
        // SAFETY: u16 index 2 + 4*size is the last u16 of the used ring.
        Self::atomic(unsafe { self.used.add(2 + 4 * self.size() as usize) }).load(Ordering::Relaxed)
    }
    /// Writes avail_event.
    #[inline]
    pub fn set_avail_event(&self, v: u16) {
        // SAFETY: as in `avail_event`.
        Self::atomic(unsafe { self.used.add(2 + 4 * self.size() as usize) })
            .store(v, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_mask_and_roundtrip() {
        let mut mem = vec![0u64; 4096];
        let base = mem.as_mut_ptr() as *mut u8;
        // SAFETY: 32 KiB buffer; desc at 0 (256 B), avail at 4096, used at 8192 for size 16.
        let r = unsafe { SplitRing::new(base, base.add(4096), base.add(8192), 16) }.unwrap();
        r.set_desc(
            17,
            Desc {
                addr: 5,
                len: 6,
                flags: 1,
                next: 2,
            },
        );
        assert_eq!(r.desc(1).addr, 5);
        r.set_avail_ring(16, 9);
        assert_eq!(r.avail_ring(0), 9);
        r.set_avail_idx(3);
        assert_eq!(r.avail_idx(), 3);
        r.set_used_event(77);
        assert_eq!(r.used_event(), 77);
        r.set_used_elem(31, UsedElem { id: 4, len: 8 });
        assert_eq!(r.used_elem(15), UsedElem { id: 4, len: 8 });
        r.set_avail_event(12);
        assert_eq!(r.avail_event(), 12);
        r.set_used_idx(65535);
        assert_eq!(r.used_idx(), 65535);
        // SAFETY: same buffer, bad sizes and alignment must be refused.
        unsafe {
            assert_eq!(
                SplitRing::new(base, base, base, 15).unwrap_err(),
                RingAddrError::BadSize
            );
            assert_eq!(
                SplitRing::new(base.add(8), base, base, 16).unwrap_err(),
                RingAddrError::Misaligned
            );
        }
    }
}
