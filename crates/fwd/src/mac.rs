//! `mac`: rewrite the source MAC to the Tx port's and the destination to its peer.

use ferrovia_memory::LcoreCaches;

use crate::{Engine, Stream};

/// The mac engine.
#[derive(Debug, Default)]
pub struct Mac;

impl Engine for Mac {
    fn name(&self) -> &'static str {
        "mac"
    }
    #[inline]
    fn forward(&mut self, caches: &mut LcoreCaches, s: &mut Stream) {
        if s.receive(caches) == 0 {
            return;
        }
        let (src, dst) = (s.params.tx_mac.0, s.params.peer_mac.0);
        for m in s.burst.iter_mut() {
            crate::pkt::set_macs(m.data_mut(), &dst, &src);
        }
        s.send(caches);
    }
}
