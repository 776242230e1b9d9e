//! Memory-mapped BARs (`/sys/bus/pci/devices/ADDR/resourceN`) and bounds-checked volatile
//! access to windows of them. The only module of `net_virtio_pci` that touches device
//! memory: every access goes through [`Mmio`], whose offsets are checked against the window.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

use ferrovia_virtqueue::notify::MmioNotify;

/// One BAR mapped into this process.
#[derive(Debug)]
pub struct Bar {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: device memory mapped for the process; the mapping itself may be used from any
// thread (accesses are volatile and synchronised by the device protocol).
unsafe impl Send for Bar {}
// SAFETY: as above; `&Bar` exposes no reference into the mapping.
unsafe impl Sync for Bar {}

impl Bar {
    /// Maps the whole of a sysfs resource file (`resourceN`) read-write and shared.
    pub fn map(path: &Path) -> io::Result<Bar> {
        let ctx = |e: io::Error, what: &str| {
            io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
        };
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| ctx(e, "cannot open"))?;
        let len = f.metadata().map_err(|e| ctx(e, "cannot stat"))?.len() as usize;
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is empty (an unassigned BAR?)", path.display()),
            ));
        }
        // SAFETY: mapping a device resource file at an address the kernel picks; the mapping
        // is owned by the returned Bar and unmapped when it drops.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(ctx(io::Error::last_os_error(), "cannot mmap"));
        }
        Ok(Bar {
            base: NonNull::new(p.cast()).expect("mmap returned NULL without MAP_FAILED"),
            len,
        })
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: an empty BAR is refused by [`Bar::map`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // SAFETY: base/len is our own mapping; every Mmio holds an Arc to the Bar, so none
        // is left.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// A window `[offset, offset + len)` of a mapped BAR.
#[derive(Debug, Clone)]
pub struct Mmio {
    bar: Arc<Bar>,
    offset: usize,
    len: usize,
}

impl Mmio {
    /// The window of `bar` at `offset`, `len` bytes; None if it does not fit in the BAR.
    pub fn new(bar: Arc<Bar>, offset: u32, len: u32) -> Option<Mmio> {
        let end = (offset as usize).checked_add(len as usize)?;
        (end <= bar.len).then_some(Mmio {
            bar,
            offset: offset as usize,
            len: len as usize,
        })
    }

    /// Pointer to `size` bytes at `off`, aligned to `size`; panics when outside the window
    /// (offsets are this driver's constants or checked by the caller).
    fn at(&self, off: usize, size: usize) -> *mut u8 {
        assert!(
            off.checked_add(size).is_some_and(|e| e <= self.len),
            "MMIO access at {off:#x}+{size} outside a window of {:#x} bytes",
            self.len
        );
        // SAFETY: offset + off + size <= offset + len <= bar.len: inside the mapping.
        let p = unsafe { self.bar.base.as_ptr().add(self.offset + off) };
        assert!(
            (p as usize).is_multiple_of(size),
            "unaligned MMIO access at {off:#x}"
        );
        p
    }

    /// Reads a byte.
    pub fn read8(&self, off: usize) -> u8 {
        // SAFETY: `at` checked the bounds and alignment within the live mapping.
        unsafe { self.at(off, 1).read_volatile() }
    }

    /// Reads a little-endian 16-bit register.
    pub fn read16(&self, off: usize) -> u16 {
        // SAFETY: as read8.
        u16::from_le(unsafe { self.at(off, 2).cast::<u16>().read_volatile() })
    }

    /// Reads a little-endian 32-bit register.
    pub fn read32(&self, off: usize) -> u32 {
        // SAFETY: as read8.
        u32::from_le(unsafe { self.at(off, 4).cast::<u32>().read_volatile() })
    }

    /// Writes a byte.
    pub fn write8(&self, off: usize, v: u8) {
        // SAFETY: as read8.
        unsafe { self.at(off, 1).write_volatile(v) }
    }

    /// Writes a little-endian 16-bit register.
    pub fn write16(&self, off: usize, v: u16) {
        // SAFETY: as read8.
        unsafe { self.at(off, 2).cast::<u16>().write_volatile(v.to_le()) }
    }

    /// Writes a little-endian 32-bit register.
    pub fn write32(&self, off: usize, v: u32) {
        // SAFETY: as read8.
        unsafe { self.at(off, 4).cast::<u32>().write_volatile(v.to_le()) }
    }

    /// Writes a 64-bit register as two 32-bit halves, low first (virtio 4.1.3.1 allows it).
    pub fn write64(&self, off: usize, v: u64) {
        self.write32(off, v as u32);
        self.write32(off + 4, (v >> 32) as u32);
    }

    /// A queue notifier writing `queue` to the 16-bit register at `off`, or None when the
    /// register is outside the window or unaligned (a hostile `queue_notify_off`).
    pub fn notifier(&self, off: usize, queue: u16) -> Option<(MmioNotify, Arc<Bar>)> {
        if off.checked_add(2).is_none_or(|e| e > self.len) || !(self.offset + off).is_multiple_of(2)
        {
            return None;
        }
        let p = self.at(off, 2).cast::<u16>();
        // SAFETY: an aligned register inside the mapping; the caller keeps the returned Arc
        // (and so the mapping) alive as long as the notifier.
        let n = unsafe { MmioNotify::new(p, queue) }?;
        Some((n, self.bar.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain file stands in for a BAR.
    #[test]
    fn windows_are_bounded() {
        let path = std::env::temp_dir().join(format!("vpci-bar-{}", std::process::id()));
        std::fs::write(&path, vec![0u8; 8192]).unwrap();
        let bar = Arc::new(Bar::map(&path).unwrap());
        assert_eq!(bar.len(), 8192);
        assert!(Mmio::new(bar.clone(), 4096, 4097).is_none());
        assert!(Mmio::new(bar.clone(), u32::MAX, 2).is_none());
        let w = Mmio::new(bar.clone(), 4096, 64).unwrap();
        w.write32(0, 0x1234_5678);
        assert_eq!(w.read16(0), 0x5678);
        assert_eq!(w.read8(3), 0x12);
        w.write64(8, 0x1_0000_0002);
        assert_eq!((w.read32(8), w.read32(12)), (2, 1));
        w.write16(16, 7);
        w.write8(18, 9);
        assert_eq!(w.read32(16), 0x0009_0007);
        assert!(w.notifier(63, 0).is_none());
        assert!(w.notifier(1, 0).is_none());
        let (n, _keep) = w.notifier(20, 5).unwrap();
        n.notify();
        assert_eq!(w.read16(20), 5);
        assert!(std::panic::catch_unwind(|| w.read32(62)).is_err());
        std::fs::remove_file(&path).unwrap();
        assert!(
            Bar::map(Path::new("/nonexistent/resource4"))
                .unwrap_err()
                .to_string()
                .contains("cannot open")
        );
    }
}
