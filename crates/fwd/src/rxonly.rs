//! `rxonly`: receive and free.

use crate::{Engine, Stream};

/// The rxonly engine.
#[derive(Debug, Default)]
pub struct RxOnly;

impl Engine for RxOnly {
    fn name(&self) -> &'static str {
        "rxonly"
    }
    #[inline]
    fn forward(&mut self, s: &mut Stream) {
        if s.receive() > 0 {
            s.cache.free_all(s.burst.drain(..));
        }
    }
}
