//! Rates: packets per second, bits per second, or a percentage of a line rate, turned into a
//! packet rate for a given frame size.
//!
//! Frame sizes here exclude the 4-byte FCS (a 60-byte frame is the 64-byte minimum on the
//! wire). A bit rate counts what a link carries: the frame, its FCS, and 20 bytes of
//! preamble, start delimiter and inter-frame gap, so 10 Gbit/s of 60-byte frames is 14.88 Mpps.

/// Bytes a frame occupies on the wire beyond its bytes in memory: FCS 4, preamble and SFD 8,
/// inter-frame gap 12.
pub const WIRE_OVERHEAD: u64 = 24;

/// A requested rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    /// Packets per second.
    Pps(f64),
    /// Bits per second on the wire.
    Bps(f64),
    /// Percent of the line rate.
    Percent(f64),
    /// As fast as the port takes them.
    Max,
}

impl Rate {
    /// Parses `1.5Mpps`, `800kpps`, `1000pps`, `10Gbps`, `500Mbps`, `25%` or `max`.
    pub fn parse(s: &str) -> Result<Rate, String> {
        let t = s.trim().to_ascii_lowercase();
        if t == "max" {
            return Ok(Rate::Max);
        }
        let num = |v: &str, mult: f64| -> Result<f64, String> {
            let x: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("rate {s:?}: {v:?} is not a number"))?;
            if !x.is_finite() || x <= 0.0 {
                return Err(format!("rate {s:?} must be above 0"));
            }
            Ok(x * mult)
        };
        type Unit = (&'static str, fn(f64) -> Rate, f64);
        let units: [Unit; 10] = [
            ("gpps", Rate::Pps, 1e9),
            ("mpps", Rate::Pps, 1e6),
            ("kpps", Rate::Pps, 1e3),
            ("pps", Rate::Pps, 1.0),
            ("gbps", Rate::Bps, 1e9),
            ("mbps", Rate::Bps, 1e6),
            ("kbps", Rate::Bps, 1e3),
            ("bps", Rate::Bps, 1.0),
            ("%", Rate::Percent, 1.0),
            ("g", Rate::Bps, 1e9),
        ];
        for (suffix, make, mult) in units {
            if let Some(v) = t.strip_suffix(suffix) {
                let x = num(v, mult)?;
                if suffix == "%" && x > 100.0 {
                    return Err(format!(
                        "rate {s:?}: a percentage of line rate is at most 100%"
                    ));
                }
                return Ok(make(x));
            }
        }
        Err(format!(
            "rate {s:?}: give a unit: pps, kpps, Mpps, bps, kbps, Mbps, Gbps, a percentage (25%), or max"
        ))
    }

    /// Packets per second for frames of `size` bytes (FCS excluded) on a line of
    /// `line_bps` (needed for percentages), or `None` for [`Rate::Max`].
    pub fn pps(self, size: usize, line_bps: Option<f64>) -> Result<Option<f64>, String> {
        let wire_bits = ((size as u64 + WIRE_OVERHEAD) * 8) as f64;
        let pps = match self {
            Rate::Max => return Ok(None),
            Rate::Pps(p) => p,
            Rate::Bps(b) => b / wire_bits,
            Rate::Percent(pct) => {
                let line = line_bps.ok_or(
                    "a percentage rate needs the line rate: --line-rate 10Gbps (there is no NIC to ask)",
                )?;
                line * pct / 100.0 / wire_bits
            }
        };
        if let Some(line) = line_bps {
            let max = line / wire_bits;
            if pps > max * 1.000_001 {
                return Err(format!(
                    "{:.0} pps of {size}-byte frames is above the line rate ({:.0} pps at {:.3} Gbit/s)",
                    pps,
                    max,
                    line / 1e9
                ));
            }
        }
        Ok(Some(pps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(Rate::parse("1.5Mpps").unwrap(), Rate::Pps(1.5e6));
        assert_eq!(Rate::parse("800kpps").unwrap(), Rate::Pps(8e5));
        assert_eq!(Rate::parse("10Gbps").unwrap(), Rate::Bps(1e10));
        assert_eq!(Rate::parse("25%").unwrap(), Rate::Percent(25.0));
        assert_eq!(Rate::parse("max").unwrap(), Rate::Max);
        for bad in ["", "fast", "0pps", "-1Mpps", "150%", "1.5", "nanMpps"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn line_rate_arithmetic() {
        // 10 Gbit/s of minimum frames: 14.88 Mpps.
        let p = Rate::Percent(100.0).pps(60, Some(1e10)).unwrap().unwrap();
        assert!((p - 14_880_952.4).abs() < 1.0, "{p}");
        let p = Rate::Bps(1e10).pps(1514, None).unwrap().unwrap();
        assert!((p - 812_743.8).abs() < 1.0, "{p}");
        assert!(Rate::Percent(50.0).pps(60, None).is_err());
        let e = Rate::Pps(20e6).pps(60, Some(1e10)).unwrap_err();
        assert!(e.contains("above the line rate"), "{e}");
    }
}
