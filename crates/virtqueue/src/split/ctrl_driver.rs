//! The driver side of a virtio-net control queue on a split ring: one command in flight at a
//! time, as a driver sends them (post, kick, wait for the device's ack).
//!
//! Each command is a chain of two descriptors: the command bytes (device-readable) and one
//! device-writable ack byte, both in a buffer of ours that the device can reach (shared
//! memory; its address is our virtual address, as for every virtio-user buffer).

use crate::layout::{Desc, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use crate::ring::split::SplitRing;

/// Where the ack byte sits in the command buffer; the command goes before it.
const ACK_AT: usize = 2048;

/// Bytes of command buffer a [`CtrlDriver`] needs: commands of up to 2048 bytes and the ack.
pub const CTRL_BUF_LEN: usize = ACK_AT + 64;

/// A control queue's driver side (see the module's docs).
#[derive(Debug)]
pub struct CtrlDriver {
    ring: SplitRing,
    buf: *mut u8,
    /// The avail index published next (commands posted so far).
    next: u16,
}

// SAFETY: the ring and the buffer are shared memory owned by the port; one owner at a time
// (the port keeps the driver behind a lock).
unsafe impl Send for CtrlDriver {}

/// A command could not be posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtrlPostError {
    /// The command is longer than the buffer takes.
    TooLong,
    /// An earlier command is still in flight (the device has not answered it yet).
    Busy,
}

impl CtrlDriver {
    /// A driver over the split ring at `desc`, `avail`, `used` of `size` entries (laid out by
    /// [`SplitLayout`](super::SplitLayout), zeroed) and the command buffer `buf`, resuming at
    /// avail index `next`.
    ///
    /// # Safety
    /// The ring pointers must satisfy [`SplitRing::new`]; `buf` must point to
    /// [`CTRL_BUF_LEN`] writable bytes that the device can reach at the address `buf as u64`;
    /// both stay mapped while this value is used.
    pub unsafe fn new(
        desc: *mut u8,
        avail: *mut u8,
        used: *mut u8,
        size: u16,
        buf: *mut u8,
        next: u16,
    ) -> Result<CtrlDriver, crate::RingAddrError> {
        // SAFETY: the caller's obligation.
        let ring = unsafe { SplitRing::new(desc, avail, used, size) }?;
        Ok(CtrlDriver { ring, buf, next })
    }

    /// The avail index the next command gets (what the device is told to start from).
    pub fn next_avail(&self) -> u16 {
        self.next
    }

    /// Whether the device has answered every command posted.
    pub fn idle(&self) -> bool {
        self.ring.used_idx() == self.next
    }

    /// Posts `cmd` (header and data) with an ack byte preset to `0xff`; kick the device after.
    pub fn post(&mut self, cmd: &[u8]) -> Result<(), CtrlPostError> {
        if cmd.len() > ACK_AT {
            return Err(CtrlPostError::TooLong);
        }
        if !self.idle() {
            return Err(CtrlPostError::Busy);
        }
        // SAFETY: cmd.len() <= ACK_AT < CTRL_BUF_LEN bytes of our buffer; the device reads it
        // only after the avail index below is published (release).
        unsafe {
            std::ptr::copy_nonoverlapping(cmd.as_ptr(), self.buf, cmd.len());
            self.buf.add(ACK_AT).write_volatile(0xff);
        }
        let base = self.buf as u64;
        self.ring.set_desc(
            0,
            Desc {
                addr: base,
                len: cmd.len() as u32,
                flags: VRING_DESC_F_NEXT,
                next: 1,
            },
        );
        self.ring.set_desc(
            1,
            Desc {
                addr: base + ACK_AT as u64,
                len: 1,
                flags: VRING_DESC_F_WRITE,
                next: 0,
            },
        );
        self.ring.set_avail_ring(self.next, 0);
        self.next = self.next.wrapping_add(1);
        self.ring.set_avail_idx(self.next);
        Ok(())
    }

    /// The ack of the last command once the device answered it (`None` while in flight).
    pub fn ack(&self) -> Option<u8> {
        if !self.idle() {
            return None;
        }
        // SAFETY: ACK_AT < CTRL_BUF_LEN; the used index was read with acquire ordering, so the
        // device's ack write is visible.
        Some(unsafe { self.buf.add(ACK_AT).read_volatile() })
    }
}
