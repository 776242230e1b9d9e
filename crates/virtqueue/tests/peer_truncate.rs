//! A peer truncates a memfd it shared with us after we mapped it: the SIGBUS handler of
//! `peer_fault` replaces the region with zero pages, reports the fault, and the process lives.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};

use ferrovia_memory::{RegionBacking, SharedRegion};
use ferrovia_virtqueue::guest_mem::{GuestMemory, RegionSpec};
use ferrovia_virtqueue::peer_fault::{self, FaultWatch};

/// An unsealed memfd of `len` bytes (as QEMU and DPDK send), mapped here too.
fn peer_memfd(len: usize) -> File {
    // SAFETY: plain syscall with a valid name; the fd is owned below.
    let fd = unsafe { libc::memfd_create(c"peer".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: fresh fd, ours.
    let f = unsafe { File::from_raw_fd(fd) };
    f.set_len(len as u64).unwrap();
    f
}

fn dup(f: &File) -> File {
    f.try_clone().unwrap()
}

/// The byte `off` bytes after `p`.
fn read(p: *mut u8, off: usize) -> u8 {
    // SAFETY: the callers pass a pointer translated for at least `off + 1` bytes of a
    // GuestMemory that is alive.
    unsafe { p.add(off).read_volatile() }
}

// One test: the handler, the range table and the fd count are process-wide.
#[test]
fn truncated_region_reads_zeros_and_is_reported() {
    let peer = peer_memfd(3 * 4096);
    let mem = GuestMemory::map(vec![RegionSpec {
        guest_phys_addr: 0x10000,
        size: 2 * 4096,
        user_addr: 0x7000_0000,
        mmap_offset: 4096,
        file: dup(&peer),
    }])
    .unwrap();
    assert_eq!(peer_fault::registered_ranges(), 1, "unsealed: protected");
    let watch = FaultWatch::new().unwrap();
    mem.watch_faults(&watch);
    let p = mem.translate(0x10000, 2 * 4096).unwrap();
    // SAFETY: inside the region (translated for its whole size).
    unsafe { p.add(100).write_volatile(0x5a) };
    assert_eq!(read(p, 100), 0x5a);
    assert!(!mem.faulted());
    assert_eq!(watch.take(), 0);

    // The peer truncates its file to nothing while we have it mapped.
    peer.set_len(0).unwrap();
    // Without the handler this read kills the process with SIGBUS.
    assert_eq!(read(p, 100), 0, "zero page after the fault");
    assert_eq!(read(p, 2 * 4096 - 1), 0);
    assert!(mem.faulted());
    assert_eq!(watch.faults(), 1);
    // The eventfd is readable and take() drains it.
    let mut pfd = libc::pollfd {
        fd: watch.fd().unwrap(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 1);
    assert_eq!(watch.take(), 1);
    assert_eq!(watch.take(), 0);
    // Writes go to private memory now, and later accesses do not fault again.
    // SAFETY: inside the region.
    unsafe { p.add(7).write_volatile(3) };
    assert_eq!(read(p, 7), 3);
    assert_eq!(watch.faults(), 1, "one fault per region");
    // The peer's file is untouched by our private writes.
    assert_eq!(peer.metadata().unwrap().len(), 0);
    drop(mem);
    assert_eq!(peer_fault::registered_ranges(), 0, "unregistered on unmap");

    // Our own regions are sealed: nothing to protect.
    let ours = SharedRegion::new("sealed-peer", 8192, RegionBacking::Memfd).unwrap();
    // SAFETY: dup of a valid fd, owned by the File.
    let f = unsafe { File::from_raw_fd(libc::dup(ours.fd())) };
    let mem = GuestMemory::map(vec![RegionSpec {
        guest_phys_addr: 0,
        size: 8192,
        user_addr: 0,
        mmap_offset: 0,
        file: f,
    }])
    .unwrap();
    assert_eq!(peer_fault::registered_ranges(), 0, "sealed: not registered");
    drop(mem);

    // A watch that is gone is not notified by a range that outlived it; the range is still
    // zeroed.
    let peer = peer_memfd(4096);
    let mem = GuestMemory::map(vec![RegionSpec {
        guest_phys_addr: 0,
        size: 4096,
        user_addr: 0,
        mmap_offset: 0,
        file: dup(&peer),
    }])
    .unwrap();
    let w1 = FaultWatch::new().unwrap();
    mem.watch_faults(&w1);
    drop(w1);
    let w2 = FaultWatch::new().unwrap();
    peer.set_len(0).unwrap();
    assert_eq!(read(mem.translate(0, 1).unwrap(), 0), 0);
    assert!(mem.faulted());
    assert_eq!(
        w2.faults(),
        0,
        "a later watch in the same slot is not blamed"
    );
    drop(mem);

    // A SIGBUS outside every registered range still kills (in a child process): the handler
    // chains to the previous action.
    let other = peer_memfd(4096);
    // SAFETY: mapping a file of 4096 bytes that we own.
    let q = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_SHARED,
            other.as_raw_fd(),
            0,
        )
    };
    assert_ne!(q, libc::MAP_FAILED);
    other.set_len(0).unwrap();
    // SAFETY: fork; the child only reads memory (faulting) and calls _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: a read of the unregistered, truncated mapping: SIGBUS.
        unsafe {
            (q as *const u8).read_volatile();
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS,
        "a fault outside peer memory must still kill: status {status:#x}"
    );
    // SAFETY: unmapping our own mapping, never touched here.
    unsafe { libc::munmap(q, 4096) };
}
