//! A peer's memory, as described by a vhost-user memory table, mapped into this process.
//!
//! Every region is validated before mapping (non-zero size, no overflow of
//! `guest_phys_addr + size`, `user_addr + size` or `mmap_offset + size`, the backing file at
//! least as large as the region, no overlapping guest ranges). Translation checks that the whole
//! range `[addr, addr + len)` lies inside one region; anything else is refused.
//!
//! A region whose file the peer could still shrink (not sealed with `F_SEAL_SHRINK`) is
//! registered with [`peer_fault`](crate::peer_fault), so that an access after a truncation is
//! recovered (zero pages, the session's [`FaultWatch`] signalled) instead of killing the
//! process with SIGBUS.

use std::fs::File;
use std::os::fd::AsRawFd;

use crate::error::MemError;
use crate::peer_fault::{self, FaultWatch, PeerRange};

/// One region as the peer describes it.
#[derive(Debug)]
pub struct RegionSpec {
    /// Guest physical address of the region start (descriptor addresses use this space).
    pub guest_phys_addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// The frontend's virtual address of the region start (ring addresses use this space).
    pub user_addr: u64,
    /// Offset of the region inside the file.
    pub mmap_offset: u64,
    /// The backing file.
    pub file: File,
}

#[derive(Debug)]
struct Mapped {
    gpa: u64,
    uva: u64,
    size: u64,
    host: *mut u8,
    map_base: *mut libc::c_void,
    map_len: usize,
    /// Registered with the SIGBUS handler (None when the file is sealed against shrinking).
    guard: Option<PeerRange>,
    _file: File,
}

/// Mapped guest memory. Dropping it unmaps every region, so holders keep it in an `Arc` for as
/// long as they may touch it.
#[derive(Debug, Default)]
pub struct GuestMemory {
    regions: Vec<Mapped>,
}

// SAFETY: the mappings are plain shared memory owned by this value; access goes through checked
// translation and the ring accessors.
unsafe impl Send for GuestMemory {}
// SAFETY: as above.
unsafe impl Sync for GuestMemory {}

/// Most regions accepted in one table (vhost-user's CONFIGURE_MEM_SLOTS limit we advertise).
pub const MAX_REGIONS: usize = 32;

impl GuestMemory {
    /// Validates and maps `specs`. On error nothing stays mapped.
    pub fn map(specs: Vec<RegionSpec>) -> Result<GuestMemory, MemError> {
        if specs.len() > MAX_REGIONS {
            return Err(MemError::TooManyRegions {
                count: specs.len(),
                limit: MAX_REGIONS,
            });
        }
        let mut mem = GuestMemory {
            regions: Vec::with_capacity(specs.len()),
        };
        for s in specs {
            mem.add(s)?;
        }
        Ok(mem)
    }

    /// Validates and maps one more region (ADD_MEM_REG).
    pub fn add(&mut self, s: RegionSpec) -> Result<(), MemError> {
        if self.regions.len() >= MAX_REGIONS {
            return Err(MemError::RegionLimit { limit: MAX_REGIONS });
        }
        if s.size == 0 {
            return Err(MemError::ZeroSize {
                gpa: s.guest_phys_addr,
            });
        }
        let gpa_end = s.guest_phys_addr.checked_add(s.size);
        let uva_end = s.user_addr.checked_add(s.size);
        let file_end = s.mmap_offset.checked_add(s.size);
        let (Some(gpa_end), Some(_), Some(file_end)) = (gpa_end, uva_end, file_end) else {
            return Err(MemError::Overflow {
                gpa: s.guest_phys_addr,
                size: s.size,
                offset: s.mmap_offset,
            });
        };
        if file_end > isize::MAX as u64 {
            return Err(MemError::TooLarge { bytes: file_end });
        }
        for r in &self.regions {
            if s.guest_phys_addr < r.gpa + r.size && r.gpa < gpa_end {
                return Err(MemError::Overlap {
                    gpa: s.guest_phys_addr,
                    size: s.size,
                    other_gpa: r.gpa,
                    other_size: r.size,
                });
            }
        }
        let meta = s
            .file
            .metadata()
            .map_err(|source| MemError::Stat { source })?;
        if meta.len() < file_end {
            return Err(MemError::FileTooSmall {
                file_len: meta.len(),
                needed: file_end,
                offset: s.mmap_offset,
                size: s.size,
            });
        }
        let map_len = file_end as usize;
        // SAFETY: mapping a file we own, length checked against its size; the kernel picks the
        // address. MAP_SHARED so that we see the peer's writes.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                s.file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(MemError::Map {
                len: map_len,
                source: std::io::Error::last_os_error(),
            });
        }
        let guard = match peer_fault::protect(p, map_len, &s.file) {
            Ok(g) => g,
            Err(e) => {
                // SAFETY: unmapping the mapping made just above, which nothing uses yet.
                unsafe { libc::munmap(p, map_len) };
                return Err(e);
            }
        };
        self.regions.push(Mapped {
            gpa: s.guest_phys_addr,
            uva: s.user_addr,
            size: s.size,
            // SAFETY: mmap_offset < map_len, inside the mapping.
            host: unsafe { (p as *mut u8).add(s.mmap_offset as usize) },
            map_base: p,
            map_len,
            guard,
            _file: s.file,
        });
        Ok(())
    }

    /// Reports faults in this table's unsealed regions to `watch` (the session's).
    pub fn watch_faults(&self, watch: &FaultWatch) {
        for r in &self.regions {
            if let Some(g) = &r.guard {
                g.watch(watch);
            }
        }
    }

    /// True when a region of this table was truncated by the peer and replaced by zero pages.
    pub fn faulted(&self) -> bool {
        self.regions
            .iter()
            .any(|r| r.guard.as_ref().is_some_and(|g| g.faulted()))
    }

    /// Bytes mapped for all regions (each region's file offset plus its size: what `mmap`
    /// maps).
    pub fn mapped_bytes(&self) -> u64 {
        self.regions.iter().map(|r| r.map_len as u64).sum()
    }

    /// Number of regions.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// True when no region is mapped.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// Translates a guest physical range to a host pointer; None unless the whole range lies in
    /// one region.
    #[inline]
    pub fn translate(&self, gpa: u64, len: u64) -> Option<*mut u8> {
        for r in &self.regions {
            let off = gpa.wrapping_sub(r.gpa);
            if gpa >= r.gpa && off < r.size && len <= r.size - off {
                // SAFETY: off + len <= size, so the pointer is inside the mapping.
                return Some(unsafe { r.host.add(off as usize) });
            }
        }
        None
    }

    /// Translates a frontend virtual range (ring addresses) to a host pointer.
    pub fn translate_uva(&self, uva: u64, len: u64) -> Option<*mut u8> {
        for r in &self.regions {
            let off = uva.wrapping_sub(r.uva);
            if uva >= r.uva && off < r.size && len <= r.size - off {
                // SAFETY: off + len <= size, inside the mapping.
                return Some(unsafe { r.host.add(off as usize) });
            }
        }
        None
    }

    /// Rebuilds this table without the region (gpa, size), duplicating the other fds: the old
    /// value stays valid for holders until dropped.
    pub fn without(&self, gpa: u64, size: u64) -> Result<GuestMemory, MemError> {
        let mut specs = Vec::new();
        let mut found = false;
        for r in &self.regions {
            if r.gpa == gpa && r.size == size {
                found = true;
                continue;
            }
            specs.push(RegionSpec {
                guest_phys_addr: r.gpa,
                size: r.size,
                user_addr: r.uva,
                mmap_offset: (r.host as usize - r.map_base as usize) as u64,
                file: r
                    ._file
                    .try_clone()
                    .map_err(|source| MemError::DupFd { source })?,
            });
        }
        if !found {
            return Err(MemError::NoSuchRegion { gpa, size });
        }
        GuestMemory::map(specs)
    }

    /// A copy of this table plus one more region (fds duplicated).
    pub fn with(&self, extra: RegionSpec) -> Result<GuestMemory, MemError> {
        let mut m = self.without_none()?;
        m.add(extra)?;
        Ok(m)
    }

    fn without_none(&self) -> Result<GuestMemory, MemError> {
        let mut specs = Vec::new();
        for r in &self.regions {
            specs.push(RegionSpec {
                guest_phys_addr: r.gpa,
                size: r.size,
                user_addr: r.uva,
                mmap_offset: (r.host as usize - r.map_base as usize) as u64,
                file: r
                    ._file
                    .try_clone()
                    .map_err(|source| MemError::DupFd { source })?,
            });
        }
        GuestMemory::map(specs)
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        for r in &mut self.regions {
            // Unregistered before the unmap, so the SIGBUS handler never maps over an address
            // that a later mmap may reuse.
            drop(r.guard.take());
            // SAFETY: map_base/map_len are exactly what mmap returned; no holder of this value
            // remains (it is being dropped).
            unsafe {
                libc::munmap(r.map_base, r.map_len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrovia_memory::{RegionBacking, SharedRegion};

    fn memfd(len: usize) -> (SharedRegion, File) {
        let r = SharedRegion::new("gm", len, RegionBacking::Memfd).unwrap();
        // SAFETY: dup of a valid fd.
        let fd = unsafe { libc::dup(r.fd()) };
        // SAFETY: fresh fd from dup.
        (r, unsafe {
            <File as std::os::fd::FromRawFd>::from_raw_fd(fd)
        })
    }

    #[test]
    fn translate_checks_whole_range() {
        let (r, f) = memfd(8192);
        let m = GuestMemory::map(vec![RegionSpec {
            guest_phys_addr: 0x1000,
            size: 4096,
            user_addr: 0x7000_0000,
            mmap_offset: 4096,
            file: f,
        }])
        .unwrap();
        // SAFETY: writing inside our own region.
        unsafe { *r.base().add(4096 + 10) = 42 };
        let p = m.translate(0x1000 + 10, 1).unwrap();
        // SAFETY: translate guaranteed 1 byte.
        assert_eq!(unsafe { *p }, 42);
        assert!(m.translate(0x1000, 4096).is_some());
        assert!(m.translate(0x1000, 4097).is_none());
        assert!(m.translate(0xfff, 2).is_none());
        assert!(m.translate(u64::MAX, 2).is_none());
        assert!(m.translate(0x1fff, u64::MAX).is_none());
        assert!(m.translate_uva(0x7000_0000 + 4095, 1).is_some());
        assert!(m.translate_uva(0x7000_0000 + 4096, 1).is_none());
    }

    #[test]
    fn bad_tables_are_refused() {
        let (_r, f) = memfd(4096);
        let e = GuestMemory::map(vec![RegionSpec {
            guest_phys_addr: 0,
            size: 8192,
            user_addr: 0,
            mmap_offset: 0,
            file: f,
        }])
        .unwrap_err();
        assert!(
            matches!(
                e,
                MemError::FileTooSmall {
                    file_len: 4096,
                    needed: 8192,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("holds 4096 bytes"), "{e}");
        let (_r, f) = memfd(4096);
        let e = GuestMemory::map(vec![RegionSpec {
            guest_phys_addr: u64::MAX - 10,
            size: 4096,
            user_addr: 0,
            mmap_offset: 0,
            file: f,
        }])
        .unwrap_err();
        assert!(matches!(e, MemError::Overflow { .. }), "{e:?}");
        assert!(e.to_string().contains("overflows"), "{e}");
        let (_r, f) = memfd(4096);
        let (_r2, f2) = memfd(4096);
        let e = GuestMemory::map(vec![
            RegionSpec {
                guest_phys_addr: 0,
                size: 4096,
                user_addr: 0,
                mmap_offset: 0,
                file: f,
            },
            RegionSpec {
                guest_phys_addr: 100,
                size: 4096,
                user_addr: 0,
                mmap_offset: 0,
                file: f2,
            },
        ])
        .unwrap_err();
        assert!(
            matches!(
                e,
                MemError::Overlap {
                    gpa: 100,
                    other_gpa: 0,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("overlaps"), "{e}");
    }
}
