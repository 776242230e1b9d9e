//! `macswap`: swap the source and destination MAC addresses.

use crate::{Engine, Stream};

/// The macswap engine.
#[derive(Debug, Default)]
pub struct MacSwap;

impl Engine for MacSwap {
    fn name(&self) -> &'static str {
        "macswap"
    }
    #[inline]
    fn forward(&mut self, s: &mut Stream) {
        if s.receive() == 0 {
            return;
        }
        for m in s.burst.iter_mut() {
            crate::pkt::swap_macs(m.data_mut());
        }
        s.send();
    }
}
