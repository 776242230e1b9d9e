//! Fixed-capacity packet bursts.

use arrayvec::ArrayVec;

use crate::Mbuf;

/// Largest burst any queue accepts (testpmd's `--burst` maximum).
pub const MAX_BURST: usize = 512;

/// A burst of packets: a fixed-capacity vector that never allocates.
pub type Burst = ArrayVec<Mbuf, MAX_BURST>;
