//! `io`: forward packets unchanged.

use crate::{Engine, Stream};

/// The io engine.
#[derive(Debug, Default)]
pub struct Io;

impl Engine for Io {
    fn name(&self) -> &'static str {
        "io"
    }
    #[inline]
    fn forward(&mut self, s: &mut Stream) {
        if s.receive() > 0 {
            s.send();
        }
    }
}
