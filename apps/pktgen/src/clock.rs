//! A cheap monotonic tick counter for pacing and timestamps: the TSC on x86_64 (calibrated
//! against the monotonic clock at start), the monotonic clock in nanoseconds elsewhere.

use std::time::{Duration, Instant};

/// Ticks and their frequency.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    hz: f64,
}

/// Reads the tick counter.
#[inline(always)]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions; it reads the time-stamp counter.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        use std::sync::OnceLock;
        static T0: OnceLock<Instant> = OnceLock::new();
        T0.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

impl Clock {
    /// Measures the tick frequency over `over` (50 ms is plenty for 0.1 % accuracy). Each end
    /// of the interval is the pair (ticks, monotonic time) read closest together out of many
    /// tries, so a preemption between the two reads (a busy machine) cannot skew the result.
    pub fn calibrate(over: Duration) -> Clock {
        fn pair() -> (u64, Instant) {
            let mut best = (u64::MAX, 0u64, Instant::now());
            for _ in 0..64 {
                let a = ticks();
                let i = Instant::now();
                let b = ticks();
                let gap = b.wrapping_sub(a);
                if gap < best.0 {
                    best = (gap, a / 2 + b / 2, i);
                }
            }
            (best.1, best.2)
        }
        let (t0, i0) = pair();
        while i0.elapsed() < over {
            std::hint::spin_loop();
        }
        let (t1, i1) = pair();
        let secs = (i1 - i0).as_secs_f64();
        Clock {
            hz: (t1.wrapping_sub(t0)) as f64 / secs,
        }
    }

    /// Ticks per second.
    pub fn hz(&self) -> f64 {
        self.hz
    }

    /// Ticks to nanoseconds.
    pub fn ns(&self, ticks: u64) -> f64 {
        ticks as f64 * 1e9 / self.hz
    }

    /// Seconds to ticks.
    pub fn ticks_of(&self, secs: f64) -> u64 {
        (secs * self.hz) as u64
    }
}

/// A pacer: how many packets may go now to hold `pps` since `start`. After a stall (the thread
/// was descheduled) it catches up at full speed, one burst per call, for at most 2 ms worth
/// of packets (or one burst, if that is more): short stalls do not lower the average rate,
/// and a long one does not turn into a flood.
#[derive(Debug)]
pub struct Pacer {
    ticks_per_pkt: f64,
    next: f64,
    max_lag: f64,
}

impl Pacer {
    /// A pacer for `pps` packets per second, bursts of at most `burst`.
    pub fn new(clock: &Clock, pps: f64, burst: usize, start: u64) -> Pacer {
        let ticks_per_pkt = clock.hz() / pps;
        Pacer {
            ticks_per_pkt,
            next: start as f64,
            max_lag: (ticks_per_pkt * burst as f64).max(clock.hz() * 0.002),
        }
    }

    /// Packets due at tick `now`, at most `max`; they are counted as sent.
    #[inline]
    pub fn due(&mut self, now: u64, max: usize) -> usize {
        let now = now as f64;
        if self.next < now - self.max_lag {
            self.next = now - self.max_lag;
        }
        if now < self.next {
            return 0;
        }
        let n = (((now - self.next) / self.ticks_per_pkt) as usize + 1).min(max);
        self.next += n as f64 * self.ticks_per_pkt;
        n
    }

    /// Gives back `n` packets that were due but not sent (the port was full).
    #[inline]
    pub fn unsend(&mut self, n: usize) {
        self.next -= n as f64 * self.ticks_per_pkt;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_holds_the_rate_in_virtual_time() {
        let clock = Clock { hz: 1e9 };
        let mut p = Pacer::new(&clock, 1e6, 32, 0); // one packet per 1000 ticks
        let mut sent = 0;
        let mut now = 0u64;
        while now < 1_000_000_000 {
            sent += p.due(now, 32);
            now += 7_919; // an odd polling period
        }
        assert!((sent as i64 - 1_000_000).abs() <= 33, "{sent}");
        // A long stall (10 ms) catches up 2 ms worth (2000 packets), a burst per call.
        let mut p = Pacer::new(&clock, 1e6, 32, 0);
        let mut caught = 0;
        loop {
            let n = p.due(10_000_000, 32);
            assert!(n <= 32);
            if n == 0 {
                break;
            }
            caught += n;
        }
        assert_eq!(caught, 2001);
    }
}
