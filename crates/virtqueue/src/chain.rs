//! What both device sides share: delimited chains turned into validated guest buffers, and
//! packets copied between those buffers and mbufs.
//!
//! Every buffer is translated through [`GuestMemory`] as a whole before it is touched; a
//! `Seg` is only ever built by `push_seg`, so the copies below stay inside guest memory.

use arrayvec::ArrayVec;
use ferrovia_memory::{Mbuf, MbufCache};

use crate::error::RingError;
use crate::guest_mem::GuestMemory;
use crate::layout::{NET_HDR_NUM_BUFFERS_OFF, VRING_DESC_F_WRITE};

/// Most buffers one packet may span (descriptors of one chain, or merged chains).
pub const MAX_SEGS: usize = 64;

/// Most descriptors one chain may have, zero-length ones and indirect table entries included
/// (both layouts). A zero-length descriptor holds no buffer, but walking it costs as much as
/// any other: without this cap a chain of zero-length descriptors (or one indirect table of
/// them) kept a burst walking for up to the size of the peer's memory. A chain that reaches
/// it is refused as too long (`bad_desc_len`); Linux's `UIO_MAXIOV` is the same number, and
/// no packet needs more than [`MAX_SEGS`] buffers.
pub const MAX_CHAIN_DESCS: u32 = 1024;

/// Most entries an indirect descriptor table may have (both layouts; the spec allows at most
/// 65536 as indexes inside it are 16-bit). Larger tables are refused (`bad_indirect_desc`).
pub const MAX_INDIRECT_DESCS: u32 = 65536;

/// Result of a burst.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BurstResult {
    /// Packets moved.
    pub packets: usize,
    /// Bytes moved (packet data, without virtio headers).
    pub bytes: usize,
}

/// One validated guest buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seg {
    pub(crate) ptr: *mut u8,
    pub(crate) len: u32,
}

/// Validates and translates one buffer of a chain and appends it to `segs`.
#[inline]
pub(crate) fn push_seg(
    mem: &GuestMemory,
    addr: u64,
    len: u32,
    flags: u16,
    writable: bool,
    segs: &mut ArrayVec<Seg, MAX_SEGS>,
) -> Result<(), RingError> {
    if writable && flags & VRING_DESC_F_WRITE == 0 {
        return Err(RingError::DescLen);
    }
    if len == 0 {
        return Ok(());
    }
    let ptr = mem.translate(addr, len as u64).ok_or(RingError::DescAddr)?;
    segs.try_push(Seg { ptr, len })
        .map_err(|_| RingError::DescLen)
}

/// Copies a chain's bytes (after the `hdr`-byte header) into a fresh mbuf chain; the last
/// `keep` bytes of the header (all of it, or none) are copied too and left just in front of
/// the first segment's data.
pub(crate) fn copy_into_mbufs(
    cache: &mut MbufCache,
    segs: &[Seg],
    hdr: usize,
    keep: usize,
    port: u16,
) -> Option<Mbuf> {
    let mut head = copy_from(cache, segs, hdr - keep)?;
    if keep != 0 {
        // The first mbuf has room for far more than a header, so it holds all `keep` bytes.
        head.adj(keep);
    }
    head.set_port(port);
    Some(head)
}

fn copy_from(cache: &mut MbufCache, segs: &[Seg], skip: usize) -> Option<Mbuf> {
    let mut head = cache.alloc()?;
    let mut skip = skip;
    // The tail segment being filled, detached from `head` until full.
    let mut tail: Option<Mbuf> = None;
    for s in segs {
        let mut off = 0usize;
        let len = s.len as usize;
        if skip >= len {
            skip -= len;
            continue;
        }
        off += skip;
        skip = 0;
        while off < len {
            let cur = tail.as_mut().unwrap_or(&mut head);
            let room = cur.tailroom();
            if room == 0 {
                let Some(next) = cache.alloc() else {
                    if let Some(t) = tail {
                        cache.free(t);
                    }
                    cache.free(head);
                    return None;
                };
                if let Some(t) = tail.replace(next) {
                    head.chain(t);
                }
                continue;
            }
            let k = room.min(len - off);
            let dst = cur.append(k).expect("k <= tailroom");
            // SAFETY: [ptr+off, ptr+off+k) lies inside a segment translated as a whole.
            unsafe {
                std::ptr::copy_nonoverlapping(s.ptr.add(off), dst.as_mut_ptr(), k);
            }
            off += k;
        }
    }
    if let Some(t) = tail {
        head.chain(t);
    }
    Some(head)
}

/// Sequential writer over validated guest segments.
pub(crate) struct SegWriter<'a> {
    segs: &'a [Seg],
    i: usize,
    off: usize,
}

impl<'a> SegWriter<'a> {
    pub(crate) fn new(segs: &'a [Seg]) -> Self {
        SegWriter { segs, i: 0, off: 0 }
    }

    /// Writes `src`; the caller reserved enough room, extra bytes are silently cut.
    #[inline]
    pub(crate) fn write(&mut self, mut src: &[u8]) {
        while !src.is_empty() && self.i < self.segs.len() {
            let s = self.segs[self.i];
            let room = s.len as usize - self.off;
            let k = room.min(src.len());
            // SAFETY: off + k <= s.len and the segment was translated as a whole.
            unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), s.ptr.add(self.off), k);
            }
            src = &src[k..];
            self.off += k;
            if self.off == s.len as usize {
                self.i += 1;
                self.off = 0;
            }
        }
    }
}

/// The write step of the multi-buffer device → driver path of both layouts, once the buffers
/// for packet `m` are reserved: copies the virtio-net header (`num_buffers` = the number of
/// reserved buffers when the header has 12 bytes; with `ol`, the offload fields from the
/// mbuf's Tx flags) and the packet across `segs`, then hands
/// each reserved buffer in `bufs`, in order, to `put_used` with the bytes it received (`cap`
/// gives a buffer's capacity; `need` is header plus packet).
#[inline]
// The two layouts' callers differ in every argument but the header's; a struct for them would
// only move the list.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_merged<B: Copy>(
    segs: &[Seg],
    hdr_len: usize,
    ol: bool,
    m: &Mbuf,
    need: u64,
    bufs: &[B],
    cap: impl Fn(B) -> u64,
    mut put_used: impl FnMut(B, u32),
) {
    let nbufs = bufs.len() as u16;
    let mut w = SegWriter::new(segs);
    let mut hdr = [0u8; 12];
    if ol {
        hdr[..10].copy_from_slice(&crate::net_hdr::tx_hdr(m).to_bytes());
    }
    if hdr_len == 12 {
        hdr[NET_HDR_NUM_BUFFERS_OFF..12].copy_from_slice(&nbufs.to_le_bytes());
    }
    w.write(&hdr[..hdr_len]);
    for s in m.segments() {
        w.write(s);
    }
    let mut left = need;
    for &b in bufs {
        let wrote = left.min(cap(b));
        left -= wrote;
        put_used(b, wrote as u32);
    }
}
