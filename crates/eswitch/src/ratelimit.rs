//! A token bucket on bytes: a VF's maximum transmit rate.
//!
//! Tokens accrue at the rate, up to a burst, and a frame passes if enough tokens are there
//! for its bytes on the wire (the frame, FCS, preamble and inter-frame gap: 24 bytes more),
//! so a rate in Mbit/s means what it means on a link.

/// Bytes a frame costs on the wire beyond its length.
pub const WIRE_OVERHEAD: u64 = 24;

/// A token bucket driven by a tick counter.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    tokens: f64,
    per_tick: f64,
    burst: f64,
    last: u64,
}

impl TokenBucket {
    /// A bucket for `mbps` Mbit/s on a clock of `hz` ticks per second, holding at most
    /// `burst_bytes` (at least one maximum frame), full at tick `now`.
    pub fn new(mbps: f64, hz: f64, burst_bytes: u64, now: u64) -> TokenBucket {
        let burst = burst_bytes.max(9728 + WIRE_OVERHEAD) as f64;
        TokenBucket {
            tokens: burst,
            per_tick: mbps * 1e6 / 8.0 / hz,
            burst,
            last: now,
        }
    }

    /// Takes the cost of `len` bytes whatever the bucket holds (traffic already admitted by
    /// a guaranteed share); the bucket may go into debt, down to minus one burst, which later
    /// traffic pays back before it passes.
    #[inline]
    pub fn take(&mut self, len: usize, now: u64) {
        self.refill(now);
        let cost = (len as u64 + WIRE_OVERHEAD) as f64;
        self.tokens = (self.tokens - cost).max(-self.burst);
    }

    /// Adds the tokens earned since the last call, up to one burst.
    #[inline]
    fn refill(&mut self, now: u64) {
        let dt = now.saturating_sub(self.last);
        self.last = self.last.max(now);
        self.tokens = (self.tokens + dt as f64 * self.per_tick).min(self.burst);
    }

    /// Whether a frame of `len` bytes may go at tick `now`; if so its tokens are spent.
    #[inline]
    pub fn allow(&mut self, len: usize, now: u64) -> bool {
        self.refill(now);
        let cost = (len as u64 + WIRE_OVERHEAD) as f64;
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_rate_over_time() {
        // 100 Mbit/s, 1 GHz ticks, offered 4x the rate in 1000-byte frames for 2 s.
        let hz = 1e9;
        let mut b = TokenBucket::new(100.0, hz, 16_000, 0);
        let mut passed_bytes = 0u64;
        let frame = 1000usize;
        let gap = ((frame as u64 + WIRE_OVERHEAD) * 8) as f64 / 400e6 * hz;
        let mut t = 0.0;
        while t < 2.0 * hz {
            if b.allow(frame, t as u64) {
                passed_bytes += frame as u64 + WIRE_OVERHEAD;
            }
            t += gap;
        }
        let mbps = passed_bytes as f64 * 8.0 / 2.0 / 1e6;
        assert!((mbps - 100.0).abs() / 100.0 < 0.01, "{mbps}");
    }

    #[test]
    fn a_clock_going_backwards_adds_nothing() {
        let mut b = TokenBucket::new(1.0, 1e9, 0, 1_000_000);
        while b.allow(60, 1_000_000) {}
        assert!(!b.allow(60, 10));
    }
}
