//! `csum`: verify IPv4, UDP and TCP checksums in software, count bad ones, and forward.

use std::sync::atomic::Ordering;

use crate::pkt::check_l3_l4;
use ferrovia_memory::LcoreCaches;

use crate::{Engine, Stream};

/// The csum engine.
#[derive(Debug, Default)]
pub struct Csum;

impl Engine for Csum {
    fn name(&self) -> &'static str {
        "csum"
    }
    #[inline]
    fn forward(&mut self, caches: &mut LcoreCaches, s: &mut Stream) {
        if s.receive(caches) == 0 {
            return;
        }
        let mut bad = 0;
        for m in s.burst.iter() {
            if m.nb_segs() == 1 && !check_l3_l4(m.data()) {
                bad += 1;
            }
        }
        if bad > 0 {
            let c = &s.counters.bad_csum;
            c.store(c.load(Ordering::Relaxed) + bad, Ordering::Relaxed);
        }
        s.send(caches);
    }
}
