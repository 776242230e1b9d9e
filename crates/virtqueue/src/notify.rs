//! How a driver queue notifies ("kicks") its device: an eventfd write (virtio-user: the
//! vhost backend or vhost-net polls the fd) or a 16-bit store to a virtio-pci notification
//! register (a userspace virtio-pci driver). Only [`MmioNotify`] touches device memory; its
//! constructor is where the caller vouches for the mapping.

use std::fs::File;
use std::io::Write;
use std::ptr::NonNull;

/// A virtio-pci queue notification register: writing the queue's index there kicks the device
/// (virtio 1.x, 4.1.4.4, without `VIRTIO_F_NOTIFICATION_DATA`).
#[derive(Debug)]
pub struct MmioNotify {
    addr: NonNull<u16>,
    value: u16,
}

// SAFETY: the register is device memory mapped for the whole process; a store to it is a
// single volatile write with no Rust-visible aliasing, valid from any thread.
unsafe impl Send for MmioNotify {}

impl MmioNotify {
    /// A notifier writing `value` (the queue index) to `addr`.
    ///
    /// # Safety
    /// `addr` must be a 2-byte aligned, writable mapping of the device's notification
    /// register that stays mapped as long as the returned value (and every queue holding it)
    /// lives.
    pub unsafe fn new(addr: *mut u16, value: u16) -> Option<MmioNotify> {
        Some(MmioNotify {
            addr: NonNull::new(addr)?,
            value,
        })
    }

    /// Kicks the device.
    #[inline]
    pub fn notify(&self) {
        // SAFETY: the constructor's contract: a live, aligned mapping of the register.
        unsafe { self.addr.as_ptr().write_volatile(self.value) };
    }
}

/// Where a driver queue's kicks go.
#[derive(Debug)]
pub enum Kick {
    /// An eventfd (vhost-user, vhost-net).
    Fd(File),
    /// A virtio-pci notification register.
    Mmio(MmioNotify),
}

impl Kick {
    /// Kicks the device. Errors of an eventfd write are ignored (a full counter still wakes
    /// the reader).
    #[inline]
    pub fn notify(&self) {
        match self {
            Kick::Fd(f) => {
                let _ = (&*f).write(&1u64.to_ne_bytes());
            }
            Kick::Mmio(m) => m.notify(),
        }
    }
}

impl From<File> for Kick {
    fn from(f: File) -> Kick {
        Kick::Fd(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmio_notify_writes_the_queue_index() {
        let mut reg = 0u16;
        // SAFETY: `reg` outlives the notifier and is aligned.
        let n = unsafe { MmioNotify::new(&mut reg, 7) }.unwrap();
        Kick::Mmio(n).notify();
        assert_eq!(reg, 7);
        // SAFETY: null is refused before any use.
        assert!(unsafe { MmioNotify::new(std::ptr::null_mut(), 1) }.is_none());
    }
}
