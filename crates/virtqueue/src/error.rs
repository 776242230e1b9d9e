//! The crate's errors, at the bottom of the module graph (it uses no other module):
//!
//! * [`RingError`]: a problem found in what the peer put on a ring, counted through an
//!   [`ErrorSink`] on the data path (never returned).
//! * Returned by the control path, each with one variant per failure and the values involved:
//!   * [`RingAddrError`]: ring size or addresses refused (re-exported as
//!     [`crate::ring::RingAddrError`]);
//!   * [`QueueError`]: a driver queue could not be created;
//!   * [`MemError`]: a memory table or region could not be mapped, extended or shrunk.
//!
//! The messages of the returned errors include their cause, because callers print them with
//! `{e}` alone (refusal log lines, port configuration errors).

/// A problem found in what the peer put on a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// No mbuf could be allocated.
    NoMbuf,
    /// A descriptor (or ring) address is outside the peer's memory or straddles regions.
    DescAddr,
    /// A chain is longer than the ring or loops.
    DescLoop,
    /// A head or `next` index is out of range.
    DescIndex,
    /// A length overflows or is inconsistent.
    DescLen,
    /// A chain is too short for the header or the packet.
    ChainShort,
    /// The avail index moved by more than the ring size.
    AvailIdx,
    /// A used id is out of range or not in flight.
    UsedId,
    /// A used length is larger than the buffer posted.
    UsedLen,
    /// A frame is longer than the configured maximum.
    TooLong,
    /// The peer's ring had no room.
    RingFull,
    /// An indirect table is malformed or not negotiated.
    Indirect,
    /// A call (interrupt) to the driver was skipped: its eventfd could not take it without
    /// waiting.
    CallSkipped,
    /// A virtio-net header was malformed or asked for an offload not negotiated (see
    /// [`crate::net_hdr::HdrError`]); the packet was dropped.
    BadNetHdr,
    /// A packet asked for an offload neither the peer nor this side can do; dropped.
    OffloadUnsupported,
}

/// Receives error reports from ring code (implemented by the port's counters).
pub trait ErrorSink {
    /// Records `n` occurrences of `e`.
    fn ring_error(&self, e: RingError, n: u64);
}

/// A sink that drops reports (tests, fuzzing).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSink;

impl ErrorSink for NoSink {
    fn ring_error(&self, _e: RingError, _n: u64) {}
}

/// A sink that counts reports per kind (tests).
#[derive(Debug, Default)]
pub struct CountingSink {
    counts: std::sync::Mutex<Vec<(RingError, u64)>>,
}

impl CountingSink {
    /// How many of `e` were reported.
    pub fn count(&self, e: RingError) -> u64 {
        self.counts
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k == e)
            .map(|(_, n)| n)
            .sum()
    }
    /// Total reports.
    pub fn total(&self) -> u64 {
        self.counts.lock().unwrap().iter().map(|(_, n)| n).sum()
    }
}

impl ErrorSink for CountingSink {
    fn ring_error(&self, e: RingError, n: u64) {
        self.counts.lock().unwrap().push((e, n));
    }
}

/// Why ring addresses were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RingAddrError {
    /// Size is not a power of two in 1..=32768.
    #[error("the size must be a power of two from 1 to 32768")]
    BadSize,
    /// A part is not aligned as virtio requires (desc 16, avail 2, used 4).
    #[error("a ring part is misaligned (descriptors need 16 bytes, avail 2, used 4)")]
    Misaligned,
}

/// Why a driver queue ([`crate::split::SplitDriver`], [`crate::packed::PackedDriver`] or the
/// [`crate::driver::DriverQueue`] over both) could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The split ring refused the queue size or the addresses laid out for it.
    #[error("bad ring size {size}: {source}")]
    SplitRing {
        /// The queue size asked for.
        size: u16,
        /// What the ring refused.
        source: RingAddrError,
    },
    /// The packed ring refused the queue size or the addresses laid out for it.
    #[error("bad packed ring size {size}: {source}")]
    PackedRing {
        /// The queue size asked for.
        size: u16,
        /// What the ring refused.
        source: RingAddrError,
    },
}

/// Why a peer's memory table (or one region of it) could not be mapped, extended or shrunk.
/// Addresses are guest physical addresses (`gpa`) as the peer's table gives them.
#[derive(Debug, thiserror::Error)]
pub enum MemError {
    /// A whole table (SET_MEM_TABLE) has more regions than we accept.
    #[error("memory table has {count} regions; at most {limit} are supported")]
    TooManyRegions {
        /// Regions in the table.
        count: usize,
        /// Most regions accepted ([`crate::guest_mem::MAX_REGIONS`]).
        limit: usize,
    },
    /// One more region (ADD_MEM_REG) would exceed the region limit.
    #[error("too many memory regions (limit {limit})")]
    RegionLimit {
        /// Most regions accepted ([`crate::guest_mem::MAX_REGIONS`]).
        limit: usize,
    },
    /// A region of size 0.
    #[error("memory region at gpa {gpa:#x} has size 0")]
    ZeroSize {
        /// Where the region starts.
        gpa: u64,
    },
    /// `gpa + size`, `user_addr + size` or `mmap_offset + size` overflows 64 bits.
    #[error(
        "memory region gpa {gpa:#x} size {size:#x} offset {offset:#x} overflows the address space"
    )]
    Overflow {
        /// Where the region starts.
        gpa: u64,
        /// Its size in bytes.
        size: u64,
        /// Its offset in the backing file.
        offset: u64,
    },
    /// The mapping (`mmap_offset + size` bytes of the file) is larger than `isize::MAX`.
    #[error("memory region of {bytes:#x} bytes is too large to map")]
    TooLarge {
        /// Bytes that would have to be mapped.
        bytes: u64,
    },
    /// The region's guest range overlaps a region already in the table.
    #[error(
        "memory region gpa {gpa:#x}+{size:#x} overlaps region gpa {other_gpa:#x}+{other_size:#x}"
    )]
    Overlap {
        /// Where the new region starts.
        gpa: u64,
        /// Its size in bytes.
        size: u64,
        /// Where the region it overlaps starts.
        other_gpa: u64,
        /// That region's size in bytes.
        other_size: u64,
    },
    /// The region's file descriptor could not be examined (fstat).
    #[error("cannot stat memory region fd: {source}")]
    Stat {
        /// The OS error.
        source: std::io::Error,
    },
    /// The backing file is shorter than `mmap_offset + size`.
    #[error(
        "memory region fd holds {file_len} bytes but the table needs {needed} (offset {offset:#x} + size {size:#x})"
    )]
    FileTooSmall {
        /// Bytes in the file.
        file_len: u64,
        /// Bytes the region needs (`offset + size`).
        needed: u64,
        /// The region's offset in the file.
        offset: u64,
        /// The region's size.
        size: u64,
    },
    /// mmap failed.
    #[error("cannot map memory region ({len} bytes): {source}")]
    Map {
        /// Bytes we tried to map.
        len: usize,
        /// The OS error.
        source: std::io::Error,
    },
    /// A region's fd could not be duplicated while rebuilding the table.
    #[error("cannot duplicate region fd: {source}")]
    DupFd {
        /// The OS error.
        source: std::io::Error,
    },
    /// REM_MEM_REG names a region that is not in the table.
    #[error("no memory region at gpa {gpa:#x} with size {size:#x}")]
    NoSuchRegion {
        /// Start asked for.
        gpa: u64,
        /// Size asked for.
        size: u64,
    },
    /// The SIGBUS handler that protects unsealed peer memory could not be installed.
    #[error("cannot install the SIGBUS handler that protects unsealed peer memory")]
    FaultHandler,
    /// Every slot of the process's table of unsealed peer regions is taken.
    #[error("too many unsealed peer memory regions mapped in this process (limit {limit})")]
    TooManyUnsealed {
        /// The table's size.
        limit: usize,
    },
}
