//! `macswap`: swap the source and destination MAC addresses.

use ferrovia_memory::LcoreCaches;

use crate::{Engine, Stream};

/// The macswap engine.
#[derive(Debug, Default)]
pub struct MacSwap;

impl Engine for MacSwap {
    fn name(&self) -> &'static str {
        "macswap"
    }
    #[inline]
    fn forward(&mut self, caches: &mut LcoreCaches, s: &mut Stream) {
        if s.receive(caches) == 0 {
            return;
        }
        for m in s.burst.iter_mut() {
            crate::pkt::swap_macs(m.data_mut());
        }
        s.send(caches);
    }
}
