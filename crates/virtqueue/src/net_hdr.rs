//! Writing virtio-net headers without needless stores.
//!
//! The 12-byte header of a packet sits in the cache line just before its data, in a buffer
//! both sides touch: the device writes it on receive, the driver on transmit. A store pulls
//! the line into the writer's cache in exclusive state and invalidates the peer's copy, so a
//! header written on every pass costs a cross-core miss per packet in each direction. Both
//! helpers here compare first and store only the bytes' new value when it differs; a header
//! that already holds the right value leaves the line shared. (DPDK's virtio and vhost do the
//! same, field by field.) On transmit the driver leaves `num_buffers` as it is: it is
//! meaningful on receive only, and every device (ours, DPDK's vhost, QEMU, vhost-net) ignores
//! it on transmit; DPDK's driver behaves the same way. Clearing it would force the device to
//! write it back to 1 on the next receive into that buffer, which is the bounce this avoids.

use crate::layout::NET_HDR_NUM_BUFFERS_OFF;

/// Makes the `hdr_len` (10 or 12) bytes at `dst` a receive header carrying `num_buffers`
/// (when the header has that field), storing only if they differ.
///
/// # Safety
/// `dst` must be valid for reads and writes of `hdr_len` bytes (guest memory the device
/// translated as part of a writable buffer).
#[inline]
pub unsafe fn write_rx_hdr(dst: *mut u8, hdr_len: usize, num_buffers: u16) {
    // Fixed-size loads and stores rather than a variable-length copy and compare: the
    // header line is often a cache miss, and the libc calls wrapped around that miss showed
    // as half of the device's samples (perf, enqueue into DPDK's virtio-user).
    // SAFETY: the caller guarantees hdr_len (10 or 12) readable and writable bytes at dst;
    // the peer may change them concurrently, which at worst makes us store when we need not.
    unsafe {
        store_if_differs(dst, [0u8; 8]);
        if hdr_len >= 12 {
            // csum_offset (0) and num_buffers, little-endian.
            store_if_differs(dst.add(8), (u32::from(num_buffers) << 16).to_le_bytes());
        } else {
            // The 10-byte header ends with csum_offset and has no num_buffers.
            store_if_differs(dst.add(8), [0u8; 2]);
        }
    }
}

/// Stores `want` at `p` (unaligned) unless the bytes there already equal it.
///
/// # Safety
/// `p` must be valid for reads and writes of `N` bytes.
#[inline(always)]
unsafe fn store_if_differs<const N: usize>(p: *mut u8, want: [u8; N]) {
    let p = p.cast::<[u8; N]>();
    // SAFETY: the caller guarantees N readable and writable bytes at p.
    unsafe {
        if p.read_unaligned() != want {
            p.write_unaligned(want);
        }
    }
}

/// Clears the offload part of a transmit header (its first 10 bytes: no checksum or
/// segmentation requested), storing only if some byte is not zero already.
#[inline]
pub fn clear_tx_hdr(hdr: &mut [u8]) {
    if let Some(h) = hdr.first_chunk_mut::<NET_HDR_NUM_BUFFERS_OFF>() {
        // Two loads and a compare instead of a byte loop (callgrind: ~40 instructions per
        // packet less on transmit).
        let (lo, hi) = h.split_at_mut(8);
        let lo: &mut [u8; 8] = lo.try_into().expect("8 bytes");
        let hi: &mut [u8; 2] = hi.try_into().expect("2 bytes");
        if u64::from_ne_bytes(*lo) | u64::from(u16::from_ne_bytes(*hi)) != 0 {
            *lo = [0; 8];
            *hi = [0; 2];
        }
        return;
    }
    let n = hdr.len().min(NET_HDR_NUM_BUFFERS_OFF);
    if hdr[..n].iter().any(|&b| b != 0) {
        hdr[..n].fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rx_header_gets_its_value_whatever_was_there() {
        for start in [[0u8; 12], [0xff; 12], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]] {
            let mut b = start;
            // SAFETY: 12 bytes of a local array.
            unsafe { write_rx_hdr(b.as_mut_ptr(), 12, 3) };
            assert_eq!(b, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0]);
            let mut b = start;
            // SAFETY: as above; a 10-byte header has no num_buffers.
            unsafe { write_rx_hdr(b.as_mut_ptr(), 10, 3) };
            assert_eq!(&b[..10], &[0; 10]);
            assert_eq!(&b[10..], &start[10..]);
        }
    }

    #[test]
    fn tx_header_offloads_cleared_num_buffers_kept() {
        let mut h = [7u8; 12];
        clear_tx_hdr(&mut h);
        assert_eq!(h, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 7]);
        let mut h = [9u8; 10];
        clear_tx_hdr(&mut h);
        assert_eq!(h, [0; 10]);
    }
}
