//! `flowgen`: like txonly, but cycles the destination IPv4 address over 1024 flows.

use crate::pkt::{FrameTemplate, fill_burst};
use crate::txonly::frame_len;
use ferrovia_memory::LcoreCaches;

use crate::{Engine, Stream};

/// Number of flows generated.
pub const FLOWS: u32 = 1024;

/// The flowgen engine.
#[derive(Debug, Default)]
pub struct FlowGen {
    tpls: Vec<FrameTemplate>,
    next: usize,
}

impl Engine for FlowGen {
    fn name(&self) -> &'static str {
        "flowgen"
    }
    #[inline]
    fn forward(&mut self, caches: &mut LcoreCaches, s: &mut Stream) {
        if self.tpls.is_empty() {
            let len = frame_len(s);
            self.tpls = (0..FLOWS)
                .map(|f| FrameTemplate::udp4(&s.params.tx_mac.0, &s.params.peer_mac.0, len, f))
                .collect();
        }
        let tpl = &self.tpls[self.next];
        self.next = (self.next + 1) % self.tpls.len();
        fill_burst(caches, s, tpl);
        s.send(caches);
    }
}
