//! `io`: forward packets unchanged.

use ferrovia_memory::LcoreCaches;

use crate::{Engine, Stream};

/// The io engine.
#[derive(Debug, Default)]
pub struct Io;

impl Engine for Io {
    fn name(&self) -> &'static str {
        "io"
    }
    #[inline]
    fn forward(&mut self, caches: &mut LcoreCaches, s: &mut Stream) {
        if s.receive(caches) > 0 {
            s.send(caches);
        }
    }
}
