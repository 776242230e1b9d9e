//! Burst-size spread (`--record-burst-stats`): how many bursts carried 0, 1, … packets, shown
//! at `stop` as DPDK testpmd shows it.

use std::sync::atomic::{AtomicU64, Ordering};

use ferrovia_ethdev::MAX_BURST;

/// Count of bursts per size, `0..=MAX_BURST`, written by one forwarding thread only (so a
/// plain load and store per count, as for the other stream counters).
#[derive(Debug)]
pub struct BurstSpread {
    counts: Box<[AtomicU64]>,
}

impl Default for BurstSpread {
    fn default() -> Self {
        BurstSpread {
            counts: (0..=MAX_BURST).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl BurstSpread {
    /// Counts one burst of `n` packets (sizes above [`MAX_BURST`] count as `MAX_BURST`).
    #[inline]
    pub fn record(&self, n: usize) {
        crate::StreamCounters::bump(&self.counts[n.min(MAX_BURST)], 1);
    }

    /// Bursts of each size, index = packets in the burst.
    pub fn snapshot(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

/// Formats a spread as DPDK testpmd does: the total, the share of empty bursts, the two most
/// frequent non-empty sizes and the rest, e.g.
/// `RX-bursts : 1200 [50% of 0 pkts + 40% of 32 pkts + 10% of 4 pkts + 0% of other]`.
/// None when no burst was counted.
pub fn format_spread(label: &str, counts: &[u64]) -> Option<String> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let pct = |n: u64| (n as u128 * 100 / total as u128) as u64;
    let empty = counts.first().copied().unwrap_or(0);
    // The two most frequent non-empty sizes, the larger count first (ties: smaller size).
    let mut top: [(u64, usize); 2] = [(0, 0); 2];
    for (size, &n) in counts.iter().enumerate().skip(1) {
        if n > top[0].0 {
            top[1] = top[0];
            top[0] = (n, size);
        } else if n > top[1].0 {
            top[1] = (n, size);
        }
    }
    let mut s = format!("  {label}-bursts : {total} [{}% of 0 pkts", pct(empty));
    let mut shown = empty;
    for &(n, size) in top.iter().filter(|(n, _)| *n > 0) {
        s += &format!(" + {}% of {size} pkts", pct(n));
        shown += n;
    }
    s += &format!(" + {}% of other]", pct(total - shown));
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpdk_shape() {
        let s = BurstSpread::default();
        for _ in 0..5 {
            s.record(0);
        }
        for _ in 0..4 {
            s.record(32);
        }
        s.record(4);
        let c = s.snapshot();
        assert_eq!(c.len(), MAX_BURST + 1);
        assert_eq!(
            format_spread("RX", &c).unwrap(),
            "  RX-bursts : 10 [50% of 0 pkts + 40% of 32 pkts + 10% of 4 pkts + 0% of other]"
        );
    }

    #[test]
    fn rest_is_other_and_empty_is_none() {
        let mut c = vec![0u64; MAX_BURST + 1];
        assert_eq!(format_spread("TX", &c), None);
        c[1] = 2;
        c[2] = 1;
        c[3] = 1;
        assert_eq!(
            format_spread("TX", &c).unwrap(),
            "  TX-bursts : 4 [0% of 0 pkts + 50% of 1 pkts + 25% of 2 pkts + 25% of other]"
        );
        let s = BurstSpread::default();
        s.record(10_000);
        assert_eq!(s.snapshot()[MAX_BURST], 1);
    }
}
