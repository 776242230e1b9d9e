//! Physically contiguous hugepage memory, for a device that reads and writes our memory by
//! physical address (a virtio-pci device driven from userspace with no IOMMU:
//! `net_virtio_pci`).
//!
//! A region of [`RegionBacking::HugetlbDma`](crate::RegionBacking::HugetlbDma) is a hugetlb
//! memfd whose 2 MiB pages are looked up in `/proc/self/pagemap` (root only: without
//! `CAP_SYS_ADMIN` the kernel reports every frame as 0), then mapped again, page by page, in
//! the order of their physical addresses, as DPDK's legacy memory mode does. When the pages
//! then form one physically contiguous run, a device address is the virtual address plus one
//! constant ([`SharedRegion::iova_delta`](crate::SharedRegion::iova_delta)), which is all the
//! ring code adds per descriptor. Hugetlb pages are never swapped or moved while mapped.
//! When they do not form one run, creating the region fails and says so.

use std::fs::File;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::FileExt;

/// Size of the hugepages DMA regions are made of.
pub const HUGE_PAGE: usize = 2 << 20;
/// The base page size pagemap is indexed by.
const PAGE: u64 = 4096;

/// Why a pagemap entry gives no physical address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagemapError {
    /// The page is not in memory.
    NotPresent,
    /// The page is swapped out.
    Swapped,
    /// The page is present but the kernel hid its frame number (PFN 0): not root.
    Hidden,
}

impl std::fmt::Display for PagemapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PagemapError::NotPresent => "the page is not present in memory",
            PagemapError::Swapped => "the page is swapped out",
            PagemapError::Hidden => {
                "/proc/self/pagemap gives frame number 0: physical addresses need root (CAP_SYS_ADMIN)"
            }
        })
    }
}

/// Decodes one 64-bit `/proc/PID/pagemap` entry (Documentation/admin-guide/mm/pagemap.rst):
/// bit 63 present, bit 62 swapped, bits 0-54 the page frame number.
pub fn pagemap_pfn(entry: u64) -> Result<u64, PagemapError> {
    if entry & (1 << 62) != 0 {
        return Err(PagemapError::Swapped);
    }
    if entry & (1 << 63) == 0 {
        return Err(PagemapError::NotPresent);
    }
    let pfn = entry & ((1 << 55) - 1);
    if pfn == 0 {
        return Err(PagemapError::Hidden);
    }
    Ok(pfn)
}

/// This process's page table, read through `/proc/self/pagemap`.
#[derive(Debug)]
pub struct Pagemap(File);

impl Pagemap {
    /// Opens `/proc/self/pagemap`.
    pub fn open() -> io::Result<Pagemap> {
        File::open("/proc/self/pagemap")
            .map(Pagemap)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot open /proc/self/pagemap: {e}")))
    }

    /// The physical address of virtual address `va` (which must be mapped and resident).
    pub fn phys(&self, va: usize) -> io::Result<u64> {
        let mut b = [0u8; 8];
        self.0
            .read_exact_at(&mut b, (va as u64 / PAGE) * 8)
            .map_err(|e| io::Error::new(e.kind(), format!("reading /proc/self/pagemap: {e}")))?;
        let pfn = pagemap_pfn(u64::from_ne_bytes(b)).map_err(|e| {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("no physical address for {va:#x}: {e}"),
            )
        })?;
        Ok(pfn * PAGE + (va as u64 % PAGE))
    }
}

/// Given the physical addresses of a region's pages in virtual order, the delta
/// `physical - virtual` that holds for every byte of the region, or an error naming the first
/// page that breaks the run. `base` is the region's virtual address, `page` its page size.
pub fn contiguous_delta(base: u64, phys: &[u64], page: u64) -> Result<u64, String> {
    let Some(&first) = phys.first() else {
        return Err("an empty region has no physical address".into());
    };
    for (k, &pa) in phys.iter().enumerate() {
        let want = first.wrapping_add(k as u64 * page);
        if pa != want {
            return Err(format!(
                "its {} hugepages are not physically contiguous: page {k} is at {pa:#x}, not {want:#x} (longest run from the start: {k} pages)",
                phys.len()
            ));
        }
    }
    Ok(first.wrapping_sub(base))
}

/// The error kind of "the hugepages do not form one physically contiguous run" (the region
/// code then retries with more pages).
pub const NOT_CONTIGUOUS: io::ErrorKind = io::ErrorKind::AddrNotAvailable;

/// The first run of `n` physically consecutive pages in `sorted` (physical addresses in
/// ascending order): its start index, or Err with the longest run found.
pub fn find_run(sorted: &[u64], n: usize, page: u64) -> Result<usize, usize> {
    let mut start = 0;
    let mut best = 0;
    for i in 0..sorted.len() {
        if i > start && sorted[i] != sorted[i - 1].wrapping_add(page) {
            start = i;
        }
        best = best.max(i + 1 - start);
        if i + 1 - start == n {
            return Ok(start);
        }
    }
    Err(best)
}

/// Remaps the hugetlb memfd `fd` (`map_len` bytes, mapped populated at `base`) so that `len`
/// bytes of it, one physically contiguous run of its pages, lie in virtual memory in the order
/// of their physical addresses; the file's other pages are given back to the kernel (punched
/// out). Returns the new base, the delta `physical - virtual`, and whether page `k` of the
/// result is still page `k` of the file (false when pages were reordered or skipped: a
/// vhost-user peer mapping the fd from offset 0 would then see other pages).
///
/// On error every mapping of the region made here or at `base` is gone; a run that cannot be
/// found is an error of kind [`NOT_CONTIGUOUS`].
///
/// # Safety
/// `base` must be the caller's own `MAP_SHARED` mapping of `fd`'s `map_len` bytes (a multiple
/// of [`HUGE_PAGE`], at least `len`) that nothing references yet; it is unmapped (or
/// replaced) here.
pub(crate) unsafe fn make_contiguous(
    fd: RawFd,
    base: *mut u8,
    map_len: usize,
    len: usize,
) -> io::Result<(*mut u8, u64, bool)> {
    let unmap = |p: *mut u8, l: usize| {
        // SAFETY: p/l is a mapping made by or handed to this function, unreferenced.
        unsafe { libc::munmap(p.cast(), l) };
    };
    let total = map_len / HUGE_PAGE;
    let n = len / HUGE_PAGE;
    let phys = match page_phys(base, total) {
        Ok(p) => p,
        Err(e) => {
            unmap(base, map_len);
            return Err(e);
        }
    };
    let mut order: Vec<usize> = (0..total).collect();
    order.sort_by_key(|&k| phys[k]);
    let sorted: Vec<u64> = order.iter().map(|&k| phys[k]).collect();
    let start = match find_run(&sorted, n, HUGE_PAGE as u64) {
        Ok(s) => s,
        Err(best) => {
            unmap(base, map_len);
            let first_gap = (1..n.min(total))
                .find(|&k| phys[k] != phys[0].wrapping_add((k * HUGE_PAGE) as u64))
                .unwrap_or(0);
            return Err(io::Error::new(
                NOT_CONTIGUOUS,
                format!(
                    "its {n} hugepages are not physically contiguous (page {first_gap} is at {:#x}, not {:#x}; the longest run among {total} pages is {best}): reserve hugepages early after boot or use fewer mbufs",
                    phys[first_gap],
                    phys[0].wrapping_add((first_gap * HUGE_PAGE) as u64)
                ),
            ));
        }
    };
    let run = &order[start..start + n];
    let linear = total == n && run.iter().enumerate().all(|(i, &k)| i == k);
    let mut new_base = base;
    if !linear {
        // Reserve an aligned range, then map each page of the run at its rank.
        // SAFETY: an anonymous PROT_NONE reservation at an address the kernel picks.
        let r = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len + HUGE_PAGE,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if r == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            unmap(base, map_len);
            return Err(io::Error::new(
                e.kind(),
                format!("cannot reserve {len} bytes of address space: {e}"),
            ));
        }
        let r = r.cast::<u8>();
        let head = (HUGE_PAGE - (r as usize % HUGE_PAGE)) % HUGE_PAGE;
        // SAFETY: head < HUGE_PAGE, inside the reservation.
        let aligned = unsafe { r.add(head) };
        for (i, &k) in run.iter().enumerate() {
            // SAFETY: replaces one hugepage of our own reservation with page k of fd.
            let p = unsafe {
                libc::mmap(
                    aligned.add(i * HUGE_PAGE).cast(),
                    HUGE_PAGE,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_FIXED | libc::MAP_POPULATE,
                    fd,
                    (k * HUGE_PAGE) as libc::off_t,
                )
            };
            if p == libc::MAP_FAILED {
                let e = io::Error::last_os_error();
                unmap(r, len + HUGE_PAGE);
                unmap(base, map_len);
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot remap hugepage {k}: {e}"),
                ));
            }
        }
        // Trim the reservation's ends and drop the first mapping.
        if head > 0 {
            unmap(r, head);
        }
        // SAFETY: inside the reservation, after the remapped pages.
        let tail = unsafe { aligned.add(len) };
        if HUGE_PAGE - head > 0 {
            unmap(tail, HUGE_PAGE - head);
        }
        unmap(base, map_len);
        new_base = aligned;
        // Give the pages outside the run back to the kernel.
        for &k in order[..start].iter().chain(&order[start + n..]) {
            // SAFETY: a plain syscall on our own fd, over a page nothing maps any more.
            unsafe {
                libc::fallocate(
                    fd,
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    (k * HUGE_PAGE) as libc::off_t,
                    HUGE_PAGE as libc::off_t,
                )
            };
        }
    }
    let delta = sorted[start].wrapping_sub(new_base as u64);
    Ok((new_base, delta, linear))
}

/// The physical address of each of the `n` hugepages mapped from `base`.
fn page_phys(base: *mut u8, n: usize) -> io::Result<Vec<u64>> {
    let pm = Pagemap::open()?;
    (0..n)
        .map(|k| {
            let va = base as usize + k * HUGE_PAGE;
            // Make sure the page is faulted in (MAP_POPULATE already did, normally).
            // SAFETY: va is inside the caller's writable mapping.
            unsafe {
                let p = va as *mut u8;
                p.write_volatile(p.read_volatile());
            }
            pm.phys(va)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PRESENT: u64 = 1 << 63;

    #[test]
    fn pagemap_entries_decode() {
        assert_eq!(pagemap_pfn(PRESENT | 0x1234), Ok(0x1234));
        // Soft-dirty (55) and exclusive (56) bits are not part of the PFN.
        assert_eq!(pagemap_pfn(PRESENT | (1 << 55) | (1 << 56) | 7), Ok(7));
        assert_eq!(pagemap_pfn(0x1234), Err(PagemapError::NotPresent));
        assert_eq!(pagemap_pfn(PRESENT | (1 << 62)), Err(PagemapError::Swapped));
        assert_eq!(pagemap_pfn(PRESENT), Err(PagemapError::Hidden));
        assert!(PagemapError::Hidden.to_string().contains("root"));
    }

    #[test]
    fn contiguity_and_delta() {
        let hp = HUGE_PAGE as u64;
        let base = 0x7f00_0000_0000u64;
        let pa = [0x4000_0000, 0x4000_0000 + hp, 0x4000_0000 + 2 * hp];
        assert_eq!(
            contiguous_delta(base, &pa, hp),
            Ok(0x4000_0000u64.wrapping_sub(base))
        );
        // The delta translates every byte: va + delta == pa.
        let d = contiguous_delta(base, &pa, hp).unwrap();
        assert_eq!((base + hp + 5).wrapping_add(d), pa[1] + 5);
        let e = contiguous_delta(base, &[0x4000_0000, 0x4000_0000 + 2 * hp], hp).unwrap_err();
        assert!(
            e.contains("not physically contiguous") && e.contains("page 1"),
            "{e}"
        );
        assert!(contiguous_delta(base, &[], hp).is_err());
    }

    /// Reading our own pagemap: as root a resident page has a frame; otherwise the error says
    /// why.
    #[test]
    fn own_pagemap() {
        let v = vec![1u8; 4096];
        let pm = Pagemap::open().unwrap();
        match pm.phys(v.as_ptr() as usize) {
            Ok(pa) => assert_eq!(pa % PAGE, v.as_ptr() as u64 % PAGE),
            Err(e) => assert!(e.to_string().contains("root"), "{e}"),
        }
    }

    #[test]
    fn runs_among_more_pages() {
        let hp = HUGE_PAGE as u64;
        let pa = |v: &[u64]| v.iter().map(|x| x * hp).collect::<Vec<_>>();
        assert_eq!(find_run(&pa(&[1, 2, 3]), 3, hp), Ok(0));
        assert_eq!(find_run(&pa(&[1, 3, 4, 5, 9]), 3, hp), Ok(1));
        assert_eq!(find_run(&pa(&[1, 3, 4, 6, 9]), 3, hp), Err(2));
        assert_eq!(find_run(&pa(&[7]), 1, hp), Ok(0));
    }

    proptest! {
        /// Any entry decodes without panicking, and a decoded PFN fits in 55 bits.
        #[test]
        fn any_entry(e in any::<u64>()) {
            if let Ok(pfn) = pagemap_pfn(e) {
                prop_assert!(pfn > 0 && pfn < (1 << 55));
            }
        }

        /// A run of pages is accepted exactly when each follows the previous one.
        #[test]
        fn runs(start in 0u64..(1 << 40), gaps in proptest::collection::vec(0u64..3, 1..8)) {
            let hp = HUGE_PAGE as u64;
            let mut pa = vec![start * hp];
            for g in &gaps {
                let last = *pa.last().unwrap();
                pa.push(last + (1 + g) * hp);
            }
            let ok = gaps.iter().all(|&g| g == 0);
            prop_assert_eq!(contiguous_delta(0x1000_0000, &pa, hp).is_ok(), ok);
        }
    }
}
