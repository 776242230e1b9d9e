//! `txonly`: generate UDP/IPv4 frames (198.18.0.1:9 → 198.18.0.2:9, as DPDK's testpmd) of the
//! `--txpkts` length and send them; received packets are not read.

use crate::pkt::{FrameTemplate, fill_burst};
use ferrovia_memory::LcoreCaches;

use crate::{Engine, Stream};

/// The txonly engine.
#[derive(Debug, Default)]
pub struct TxOnly {
    tpl: Option<FrameTemplate>,
}

impl Engine for TxOnly {
    fn name(&self) -> &'static str {
        "txonly"
    }
    #[inline]
    fn forward(&mut self, caches: &mut LcoreCaches, s: &mut Stream) {
        let tpl = self.tpl.get_or_insert_with(|| {
            FrameTemplate::udp4(&s.params.tx_mac.0, &s.params.peer_mac.0, frame_len(s), 0)
        });
        fill_burst(caches, s, tpl);
        s.send(caches);
    }
}

/// The frame length from `--txpkts` (sum of segment lengths, at least 60).
pub fn frame_len(s: &Stream) -> usize {
    (s.params.txpkts.iter().map(|&l| l as usize).sum::<usize>()).max(60)
}
