//! `--record-core-cycles`: the CPU cycles a forwarding core spends in bursts that moved
//! packets, per packet, as DPDK testpmd reports them. Empty polls are not counted, so the
//! figure is what one packet costs the core, separate from how long it waits for traffic.

use std::time::Instant;

/// The time-stamp counter (x86-64), or nanoseconds since an arbitrary start elsewhere.
#[inline(always)]
pub fn now() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions and only reads the counter.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        use std::sync::OnceLock;
        static T0: OnceLock<Instant> = OnceLock::new();
        T0.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// A reading of the counter and the wall clock together, to learn the counter's rate.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    ticks: u64,
    at: Instant,
}

impl Mark {
    /// Reads both now.
    pub fn take() -> Mark {
        Mark {
            ticks: now(),
            at: Instant::now(),
        }
    }

    /// Counter ticks per second between `self` and `later` (None if too little time passed).
    pub fn hz_until(&self, later: &Mark) -> Option<f64> {
        let dt = later.at.duration_since(self.at).as_secs_f64();
        (dt >= 0.001).then(|| later.ticks.wrapping_sub(self.ticks) as f64 / dt)
    }
}

/// DPDK's line: `CPU cycles/packet=119.61 (total cycles=... / total io packets=...) at 2600
/// MHz Clock`, where `io` is the forwarding mode. None when no packet moved.
pub fn format_cycles(mode: &str, cycles: u64, packets: u64, hz: f64) -> Option<String> {
    (packets > 0).then(|| {
        format!(
            "  CPU cycles/packet={:.2} (total cycles={cycles} / total {mode} packets={packets}) at {:.0} MHz Clock",
            cycles as f64 / packets as f64,
            hz / 1e6
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_advances_and_rate_is_plausible() {
        let a = Mark::take();
        let spin = Instant::now();
        while spin.elapsed().as_millis() < 20 {
            std::hint::spin_loop();
        }
        let b = Mark::take();
        let hz = a.hz_until(&b).unwrap();
        // Any real counter runs between 100 MHz and 10 GHz (1 GHz for the fallback).
        assert!((1e8..1e10).contains(&hz), "{hz}");
        assert!(a.hz_until(&a).is_none());
    }

    #[test]
    fn dpdk_shape() {
        assert_eq!(
            format_cycles("io", 1200, 10, 2.6e9).unwrap(),
            "  CPU cycles/packet=120.00 (total cycles=1200 / total io packets=10) at 2600 MHz Clock"
        );
        assert_eq!(format_cycles("io", 5, 0, 2.6e9), None);
    }
}
