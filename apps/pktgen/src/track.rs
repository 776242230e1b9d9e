//! Receive-side accounting per stream: packets, duplicates, reordering (a sliding window of
//! seen sequence numbers) and latency (an HDR histogram in nanoseconds).

use hdrhistogram::Histogram;
use serde::Serialize;

/// Sequence numbers remembered behind the highest one seen.
const WINDOW: u64 = 1 << 16;

/// One stream's receive state.
pub struct Tracker {
    seen: Vec<u64>,
    max_seq: Option<u64>,
    /// Frames received (duplicates included).
    pub received: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Frames seen twice or more.
    pub duplicates: u64,
    /// Frames that came after a later-numbered frame.
    pub reordered: u64,
    /// Frames older than the window: reordered, but not checked for duplication.
    pub late: u64,
    /// Latency in nanoseconds.
    pub latency: Histogram<u64>,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new()
    }
}

impl Tracker {
    /// An empty tracker.
    pub fn new() -> Tracker {
        Tracker {
            seen: vec![0; (WINDOW / 64) as usize],
            max_seq: None,
            received: 0,
            bytes: 0,
            duplicates: 0,
            reordered: 0,
            late: 0,
            // 1 ns to 100 s, 3 significant digits.
            latency: Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds"),
        }
    }

    #[inline]
    fn bit(&mut self, seq: u64) -> (&mut u64, u64) {
        let i = (seq % WINDOW) as usize;
        (&mut self.seen[i / 64], 1u64 << (i % 64))
    }

    /// Counts frame `seq` of `len` bytes with latency `ns` (None: not measured).
    #[inline]
    pub fn record(&mut self, seq: u64, len: usize, ns: Option<u64>) {
        self.received += 1;
        self.bytes += len as u64;
        match self.max_seq {
            Some(max) if seq <= max => {
                if max - seq >= WINDOW {
                    self.late += 1;
                    self.reordered += 1;
                } else {
                    let (w, b) = self.bit(seq);
                    if *w & b != 0 {
                        self.duplicates += 1;
                        return;
                    }
                    *w |= b;
                    self.reordered += 1;
                }
            }
            prev => {
                // Forget the window slots between the old maximum and this one.
                let from = prev.map_or(0, |m| m + 1);
                if seq - from >= WINDOW {
                    self.seen.fill(0);
                } else {
                    for s in from..seq {
                        let (w, b) = self.bit(s);
                        *w &= !b;
                    }
                }
                let (w, b) = self.bit(seq);
                *w |= b;
                self.max_seq = Some(seq);
            }
        }
        if let Some(ns) = ns {
            let _ = self.latency.record(ns.max(1));
        }
    }

    /// Distinct frames received.
    pub fn unique(&self) -> u64 {
        self.received - self.duplicates
    }
}

/// The latency summary of a report.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Frames measured.
    pub count: u64,
    /// Minimum, ns.
    pub min_ns: u64,
    /// Mean, ns.
    pub avg_ns: f64,
    /// Median, ns.
    pub p50_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// 99.9th percentile, ns.
    pub p999_ns: u64,
    /// Maximum, ns.
    pub max_ns: u64,
}

/// Summarises a histogram.
pub fn summarize(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary {
            count: 0,
            min_ns: 0,
            avg_ns: 0.0,
            p50_ns: 0,
            p99_ns: 0,
            p999_ns: 0,
            max_ns: 0,
        };
    }
    LatencySummary {
        count: h.len(),
        min_ns: h.min(),
        avg_ns: h.mean(),
        p50_ns: h.value_at_quantile(0.5),
        p99_ns: h.value_at_quantile(0.99),
        p999_ns: h.value_at_quantile(0.999),
        max_ns: h.max(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_lossy_reordered_duplicated() {
        let mut t = Tracker::new();
        for s in [0, 1, 2, 4, 3, 3, 5, 9, 9, 6] {
            t.record(s, 60, Some(1000 + s));
        }
        assert_eq!(t.received, 10);
        assert_eq!(t.duplicates, 2);
        assert_eq!(t.reordered, 2); // 3 after 4, 6 after 9
        assert_eq!(t.unique(), 8); // 7 and 8 lost
        let l = summarize(&t.latency);
        assert_eq!(l.count, 8);
        assert!(l.min_ns <= l.p50_ns && l.p50_ns <= l.p99_ns && l.p99_ns <= l.max_ns);
    }

    #[test]
    fn window_slides() {
        let mut t = Tracker::new();
        t.record(0, 60, None);
        t.record(WINDOW * 3, 60, None); // a jump beyond the window
        t.record(WINDOW * 3, 60, None);
        assert_eq!(t.duplicates, 1);
        t.record(5, 60, None); // far behind: late, not a duplicate check
        assert_eq!(t.late, 1);
        for s in WINDOW * 3 + 1..WINDOW * 5 {
            t.record(s, 60, None);
        }
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.reordered, 1);
        assert_eq!(t.unique(), 2 + 2 * WINDOW);
    }
}
