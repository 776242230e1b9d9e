//! Ring memory for many ports from a few shared regions.
//!
//! virtio-user sends every registered region to its backend, and backends accept a limited
//! number of regions (8 with `SET_MEM_TABLE`, 32 slots with our backend's
//! `CONFIGURE_MEM_SLOTS`). With one region per port's rings, a process could hold at most a
//! few dozen virtio-user ports. Instead, ring areas are page-aligned slices carved out of
//! large memfd chunks (64 MiB, sparse: only pages in use cost memory), registered once each,
//! so 256 ports' rings need one region. A slice given back has its pages punched out of the
//! memfd (`FALLOC_FL_PUNCH_HOLE`), which returns the memory and leaves it zero for the next
//! port.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use crate::region::{RegionBacking, SharedRegion};
use crate::registry::Registration;

/// Size of one arena chunk (larger requests get a chunk of their own size).
const CHUNK: usize = 64 << 20;
const PAGE: usize = 4096;

struct Chunk {
    // Declared (and so dropped) before the region it describes.
    _registration: Registration,
    region: SharedRegion,
    /// Free ranges (offset, length), sorted by offset, coalesced.
    free: Mutex<Vec<(usize, usize)>>,
}

static CHUNKS: Mutex<Vec<Arc<Chunk>>> = Mutex::new(Vec::new());

/// A page-aligned, zero-filled slice of shared, registered memory; given back when dropped.
pub struct ArenaSlice {
    chunk: Arc<Chunk>,
    offset: usize,
    len: usize,
}

impl std::fmt::Debug for ArenaSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArenaSlice")
            .field("base", &self.base())
            .field("len", &self.len)
            .finish()
    }
}

impl ArenaSlice {
    /// First byte of the slice.
    pub fn base(&self) -> *mut u8 {
        self.chunk.region.base().wrapping_add(self.offset)
    }

    /// Length in bytes (a multiple of 4 KiB).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: slices are at least one page.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for ArenaSlice {
    fn drop(&mut self) {
        // Return the pages to the system; they read as zero when handed out again.
        // SAFETY: plain syscall on the chunk's memfd, over this slice's own range.
        unsafe {
            libc::fallocate(
                self.chunk.region.fd().as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                self.offset as libc::off_t,
                self.len as libc::off_t,
            )
        };
        let mut free = self.chunk.free.lock().unwrap_or_else(|p| p.into_inner());
        let at = free.partition_point(|&(o, _)| o < self.offset);
        free.insert(at, (self.offset, self.len));
        // Coalesce with the neighbours.
        if at + 1 < free.len() && free[at].0 + free[at].1 == free[at + 1].0 {
            free[at].1 += free[at + 1].1;
            free.remove(at + 1);
        }
        if at > 0 && free[at - 1].0 + free[at - 1].1 == free[at].0 {
            free[at - 1].1 += free[at].1;
            free.remove(at);
        }
    }
}

fn take(chunk: &Arc<Chunk>, len: usize) -> Option<ArenaSlice> {
    let mut free = chunk.free.lock().unwrap_or_else(|p| p.into_inner());
    let i = free.iter().position(|&(_, l)| l >= len)?;
    let (off, l) = free[i];
    if l == len {
        free.remove(i);
    } else {
        free[i] = (off + len, l - len);
    }
    Some(ArenaSlice {
        chunk: chunk.clone(),
        offset: off,
        len,
    })
}

/// Takes a zero-filled slice of at least `len` bytes (rounded up to 4 KiB), registered so
/// that every vhost-user backend of the process can map it.
pub fn alloc(len: usize) -> io::Result<ArenaSlice> {
    let len = len.max(1).div_ceil(PAGE) * PAGE;
    let mut chunks = CHUNKS.lock().unwrap_or_else(|p| p.into_inner());
    for c in chunks.iter() {
        if let Some(s) = take(c, len) {
            return Ok(s);
        }
    }
    let size = len.max(CHUNK);
    let region = SharedRegion::new(
        &format!("ring-arena{}", chunks.len()),
        size,
        RegionBacking::Memfd,
    )?;
    let registration = Registration::new(region.base() as u64, region.len() as u64, region.fd());
    let chunk = Arc::new(Chunk {
        _registration: registration,
        free: Mutex::new(vec![(0, region.len())]),
        region,
    });
    let s = take(&chunk, len).expect("a fresh chunk fits the request");
    chunks.push(chunk);
    Ok(s)
}

/// Regions the arena has registered so far (a test and telemetry aid).
pub fn chunks() -> usize {
    CHUNKS.lock().unwrap_or_else(|p| p.into_inner()).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_slices_share_one_chunk_and_come_back_zeroed() {
        let before = chunks();
        let slices: Vec<_> = (0..300).map(|_| alloc(20_000).unwrap()).collect();
        assert!(chunks() <= before + 1, "300 ring areas fit one chunk");
        let mut bases: Vec<_> = slices.iter().map(|s| s.base() as usize).collect();
        bases.sort();
        for w in bases.windows(2) {
            assert!(w[1] - w[0] >= 20_480, "slices do not overlap");
        }
        let s = &slices[7];
        // SAFETY: the slice is ours and `len` bytes long.
        let bytes = unsafe { std::slice::from_raw_parts_mut(s.base(), s.len()) };
        bytes.fill(0xab);
        let base = s.base();
        drop(slices);
        // Taking the same size again reuses freed space, zero-filled.
        let again: Vec<_> = (0..300).map(|_| alloc(20_000).unwrap()).collect();
        let reused = again
            .iter()
            .find(|s| s.base() == base)
            .expect("space reused");
        // SAFETY: as above.
        let bytes = unsafe { std::slice::from_raw_parts(reused.base(), reused.len()) };
        assert!(bytes.iter().all(|&b| b == 0));
    }
}
