//! Maps ring errors to port counters.

use ferrovia_ethdev::{ErrorCause, QueueStats};
use ferrovia_virtqueue::{ErrorSink, RingError};

/// Adapter: ring code reports into a queue's counters.
pub(crate) struct StatsSink<'a>(pub(crate) &'a QueueStats);

impl ErrorSink for StatsSink<'_> {
    #[inline]
    fn ring_error(&self, e: RingError, n: u64) {
        let c = match e {
            RingError::NoMbuf => ErrorCause::NoMbuf,
            RingError::DescAddr => ErrorCause::DescAddr,
            RingError::DescLoop => ErrorCause::DescLoop,
            RingError::DescIndex => ErrorCause::DescIndex,
            RingError::DescLen => ErrorCause::DescLen,
            RingError::ChainShort => ErrorCause::ChainShort,
            RingError::AvailIdx => ErrorCause::AvailIdx,
            RingError::UsedId => ErrorCause::UsedId,
            RingError::UsedLen => ErrorCause::UsedLen,
            RingError::TooLong => ErrorCause::TooLong,
            RingError::RingFull => ErrorCause::RingFull,
            RingError::Indirect => ErrorCause::Indirect,
            RingError::CallSkipped => ErrorCause::CallSkipped,
            RingError::BadNetHdr => ErrorCause::BadNetHdr,
            RingError::OffloadUnsupported => ErrorCause::OffloadUnsupported,
        };
        self.0.error(c, n);
    }
}
