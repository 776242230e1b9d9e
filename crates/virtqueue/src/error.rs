//! Errors found on a ring, reported to counters.

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
