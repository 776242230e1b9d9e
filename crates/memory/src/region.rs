//! Shared memory regions backed by a file descriptor (memfd by default, hugetlbfs optional).
//!
//! A region is mapped `MAP_SHARED` so that a vhost-user backend that receives its fd can map the
//! same pages. Guest addresses handed to the peer are this process's virtual addresses.
//!
//! Every region is **sealed** once sized (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`): a peer
//! that receives the fd can write the bytes (it must, to move packets) but can neither truncate
//! the file, which would make our own accesses beyond the new end fault with SIGBUS and kill the
//! process, nor grow it, nor remove the seals. Hole punching (`FALLOC_FL_PUNCH_HOLE`, used by
//! the ring arena) stays allowed: a punched page reads back as zero, it does not fault.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::ptr::NonNull;

/// Which kind of memory backs a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RegionBacking {
    /// `memfd_create` with ordinary 4 KiB pages: no root, no hugepages (the default).
    #[default]
    Memfd,
    /// `memfd_create(MFD_HUGETLB)`: 2 MiB hugepages from the kernel's pool.
    HugetlbMemfd,
    /// Hugetlb memfd pages arranged to be physically contiguous, for a device that uses
    /// physical addresses (`net_virtio_pci`); needs root (see [`crate::dma`]).
    HugetlbDma,
}

impl std::fmt::Display for RegionBacking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RegionBacking::Memfd => "memfd",
            RegionBacking::HugetlbMemfd => "hugetlb memfd",
            RegionBacking::HugetlbDma => "physically contiguous hugepages",
        })
    }
}

/// Memfd regions at least this large (pools) are not populated when mapped (see
/// [`SharedRegion::new`]).
const LAZY_POPULATE_MIN: usize = 4 << 20;

/// One mapped, shareable memory region.
#[derive(Debug)]
pub struct SharedRegion {
    file: File,
    base: NonNull<u8>,
    len: usize,
    backing: RegionBacking,
    iova_delta: Option<u64>,
    /// Byte `i` of the mapping is byte `i` of the file (false for a DMA region whose pages
    /// were reordered).
    file_linear: bool,
}

// SAFETY: the region is plain shared memory; the mapping itself may be used from any thread.
// Synchronisation of the bytes inside is the job of the structures laid over it.
unsafe impl Send for SharedRegion {}
// SAFETY: as above: `&SharedRegion` only exposes the base address, length and fd.
unsafe impl Sync for SharedRegion {}

use crate::dma::HUGE_PAGE;

/// What to do when hugepages run out.
const HUGE_HINT: &str = "no free hugepages? echo 64 > /proc/sys/vm/nr_hugepages";

impl SharedRegion {
    /// Creates and maps a zero-filled region of at least `len` bytes (rounded up to the page
    /// size of `backing`). `name` shows up in `/proc/<pid>/maps` to help debugging.
    pub fn new(name: &str, len: usize, backing: RegionBacking) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot create a shared region of 0 bytes",
            ));
        }
        let page = match backing {
            RegionBacking::Memfd => 4096,
            RegionBacking::HugetlbMemfd | RegionBacking::HugetlbDma => HUGE_PAGE,
        };
        let len = len.div_ceil(page) * page;
        if backing != RegionBacking::HugetlbDma {
            return Self::create(name, len, len, backing);
        }
        // Physically contiguous hugepages: the exact number first; when they do not form one
        // run, two and four times as many, keeping one run of them (the rest go back to the
        // kernel), as long as the kernel has that many free.
        let mut last_err = None;
        for f in [1, 2, 4] {
            match Self::create(name, len, len * f, backing) {
                Ok(r) => {
                    if f > 1 {
                        log::info!(
                            "region {name}: a physically contiguous run found among {f} times the hugepages needed"
                        );
                    }
                    return Ok(r);
                }
                // Keep the widest search's report.
                Err(e) if e.kind() == crate::dma::NOT_CONTIGUOUS => last_err = Some(e),
                Err(e) => return Err(last_err.unwrap_or(e)),
            }
        }
        Err(last_err.expect("the loop ran"))
    }

    /// Creates a region of `len` bytes (a multiple of the page size) over a file of
    /// `file_len` bytes (`len` except for a DMA region's retries).
    fn create(name: &str, len: usize, file_len: usize, backing: RegionBacking) -> io::Result<Self> {
        let huge = backing != RegionBacking::Memfd;
        let cname = std::ffi::CString::new(format!("ferrovia-{name}"))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "region name contains NUL"))?;
        let mut flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        if huge {
            flags |= libc::MFD_HUGETLB;
        }
        // SAFETY: cname is a valid NUL-terminated string; the call has no memory side effects.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), flags) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("cannot create memfd for region {name} ({len} bytes, {backing}): {e}"),
            ));
        }
        // SAFETY: fd was just returned by memfd_create and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(file_len as u64).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot size region {name} to {len} bytes: {e}{}",
                    if huge {
                        format!(" ({HUGE_HINT})")
                    } else {
                        String::new()
                    }
                ),
            )
        })?;
        seal(&file, name, backing)?;
        // Small regions (rings) and hugepages are populated at once. Large memfd regions
        // (pools) are faulted in page by page on first use: populating a 35 MB pool took
        // 15–30 ms of start-up (and a background populate held the address-space lock against
        // every other mmap), while first-use faults happen once per page, only for pages
        // actually used; a peer that maps our memory faults its own page tables anyway.
        let lazy = backing == RegionBacking::Memfd && len >= LAZY_POPULATE_MIN;
        let map_len = file_len;
        let populate = if lazy { 0 } else { libc::MAP_POPULATE };
        // SAFETY: mapping a fresh fd of `map_len` bytes at an address chosen by the kernel.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | populate,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot map region {name} ({len} bytes, {backing}): {e}{}",
                    if huge {
                        format!(" ({HUGE_HINT})")
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        let mut ptr = ptr.cast::<u8>();
        let mut iova_delta = None;
        let mut file_linear = true;
        if backing == RegionBacking::HugetlbDma {
            // SAFETY: ptr is our fresh mapping of the whole fd, referenced by nobody.
            let (p, d, lin) =
                unsafe { crate::dma::make_contiguous(file.as_raw_fd(), ptr, map_len, len) }
                    .map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("region {name} ({len} bytes, {backing}): {e}"),
                        )
                    })?;
            ptr = p;
            iova_delta = Some(d);
            file_linear = lin;
        }
        Ok(SharedRegion {
            file,
            base: NonNull::new(ptr).expect("mmap returned NULL without MAP_FAILED"),
            len,
            backing,
            iova_delta,
            file_linear,
        })
    }

    /// First byte of the mapping.
    pub fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Mapped length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: regions are never empty.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The backing fd, to be sent to a vhost-user peer.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// For [`RegionBacking::HugetlbDma`]: physical minus virtual address, the same for every
    /// byte of the region (wrapping arithmetic). None for the other backings.
    pub fn iova_delta(&self) -> Option<u64> {
        self.iova_delta
    }

    /// True when the mapping shows the file's bytes in file order, so that a peer mapping the
    /// fd from offset 0 sees the same bytes at the same offsets (always, except for a
    /// [`RegionBacking::HugetlbDma`] region whose hugepages had to be reordered).
    pub fn file_linear(&self) -> bool {
        self.file_linear
    }

    /// Kind of backing.
    pub fn backing(&self) -> RegionBacking {
        self.backing
    }

    /// The seals on the backing file (`F_GET_SEALS`): `F_SEAL_SHRINK | F_SEAL_GROW |
    /// F_SEAL_SEAL` once [`SharedRegion::new`] returned.
    pub fn seals(&self) -> io::Result<i32> {
        // SAFETY: F_GET_SEALS only reads the seals of an fd we own.
        let r = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_GET_SEALS) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    /// True when `[addr, addr+len)` lies inside this region.
    pub fn contains(&self, addr: usize, len: usize) -> bool {
        let base = self.base.as_ptr() as usize;
        addr >= base && len <= self.len && addr - base <= self.len - len
    }
}

/// The seals every region gets once sized: whoever holds the fd (a vhost-user backend) cannot
/// change its size, so our accesses inside it can never fault, nor remove the seals.
pub const REGION_SEALS: i32 = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// Seals a sized region's file. Hugetlb memfds accept seals since Linux 4.16, shmem memfds
/// since 3.17.
fn seal(file: &File, name: &str, backing: RegionBacking) -> io::Result<()> {
    // SAFETY: F_ADD_SEALS on an fd we own, created with MFD_ALLOW_SEALING; no memory effects.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, REGION_SEALS) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("cannot seal region {name} ({backing}) against resizing: {e}"),
        ));
    }
    Ok(())
}

impl Drop for SharedRegion {
    fn drop(&mut self) {
        // SAFETY: base/len describe exactly the mapping made in `new`, and the owner of the
        // region guarantees no references into it outlive it.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memfd_region_is_zeroed_writable_and_shared() {
        let r = SharedRegion::new("test", 10000, RegionBacking::Memfd).unwrap();
        assert_eq!(r.len(), 12288);
        // SAFETY: the region is 12288 bytes long and exclusively ours.
        let s = unsafe { std::slice::from_raw_parts_mut(r.base(), r.len()) };
        assert!(s.iter().all(|&b| b == 0));
        s[100] = 7;
        // A second mapping of the same fd sees the write.
        // SAFETY: mapping the region's own fd read-only.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                r.len(),
                libc::PROT_READ,
                libc::MAP_SHARED,
                r.fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: p maps r.len() bytes.
        assert_eq!(unsafe { *(p as *const u8).add(100) }, 7);
        // SAFETY: unmapping our own second mapping.
        unsafe { libc::munmap(p, r.len()) };
        assert!(r.contains(r.base() as usize, r.len()));
        assert!(!r.contains(r.base() as usize + 1, r.len()));
        assert!(!r.contains(usize::MAX, 2));
    }

    /// A hostile backend that received the region's fd (a duplicate here) cannot shrink, grow
    /// or unseal it; the region stays usable.
    #[test]
    fn regions_are_sealed_against_resizing() {
        let r = SharedRegion::new("sealed", 8192, RegionBacking::Memfd).unwrap();
        assert_eq!(r.seals().unwrap() & REGION_SEALS, REGION_SEALS);
        // SAFETY: dup of the region's valid fd; the copy is owned by `peer`.
        let peer = unsafe { File::from_raw_fd(libc::dup(r.fd())) };
        for len in [0i64, 4096, 1 << 20] {
            // SAFETY: ftruncate on an fd we own.
            let rc = unsafe { libc::ftruncate(peer.as_raw_fd(), len) };
            assert_eq!(rc, -1, "ftruncate to {len} must fail");
            assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::EPERM));
        }
        // SAFETY: removing seals is refused by F_SEAL_SEAL; adding one is refused too.
        let rc = unsafe { libc::fcntl(peer.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_WRITE) };
        assert_eq!(rc, -1);
        assert_eq!(peer.metadata().unwrap().len(), 8192);
        // Still usable, to the last byte.
        // SAFETY: the region is 8192 bytes long and ours.
        let s = unsafe { std::slice::from_raw_parts_mut(r.base(), r.len()) };
        s[8191] = 9;
        s[0] = 1;
        assert_eq!((s[0], s[8191]), (1, 9));
    }

    /// Hugetlb memfds are sealed the same way, where the kernel has hugepages to give.
    #[test]
    fn hugetlb_regions_are_sealed_when_available() {
        match SharedRegion::new("sealed-huge", 1, RegionBacking::HugetlbMemfd) {
            Ok(r) => assert_eq!(r.seals().unwrap() & REGION_SEALS, REGION_SEALS),
            Err(e) => eprintln!("no hugepages here, not checked: {e}"),
        }
    }

    /// Physically contiguous hugepages where the kernel has them (and we are root): the delta
    /// translates to what pagemap says; otherwise the error says what is missing.
    #[test]
    fn dma_regions_are_contiguous_or_explain_why() {
        match SharedRegion::new("dma", 2 * HUGE_PAGE, RegionBacking::HugetlbDma) {
            Ok(r) => {
                let d = r.iova_delta().unwrap();
                let pm = crate::dma::Pagemap::open().unwrap();
                eprintln!("contiguous hugepages, delta {d:#x}");
                for off in [0, 4096, HUGE_PAGE + 123] {
                    let va = r.base() as usize + off;
                    assert_eq!(pm.phys(va).unwrap(), (va as u64).wrapping_add(d));
                }
            }
            Err(e) => {
                let m = e.to_string();
                assert!(m.contains("hugepages") || m.contains("root"), "{m}");
                eprintln!("no contiguous hugepages here, not checked: {m}");
            }
        }
        let r = SharedRegion::new("plain", 4096, RegionBacking::Memfd).unwrap();
        assert_eq!(r.iova_delta(), None);
    }

    #[test]
    fn zero_length_is_a_clear_error() {
        let e = SharedRegion::new("z", 0, RegionBacking::Memfd).unwrap_err();
        assert!(e.to_string().contains("0 bytes"));
    }
}
