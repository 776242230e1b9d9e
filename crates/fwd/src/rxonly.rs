//! `rxonly`: receive and free.

use ferrovia_memory::LcoreCaches;

use crate::{Engine, Stream};

/// The rxonly engine.
#[derive(Debug, Default)]
pub struct RxOnly;

impl Engine for RxOnly {
    fn name(&self) -> &'static str {
        "rxonly"
    }
    #[inline]
    fn forward(&mut self, caches: &mut LcoreCaches, s: &mut Stream) {
        if s.receive(caches) > 0 {
            caches.free_all(s.burst.drain(..));
        }
    }
}
