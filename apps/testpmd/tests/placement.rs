//! The benchmark's placement probe: prints one positive round-trip time, and refuses bad input
//! with a message that names it.

use std::process::Command;

const PROBE: &str = env!("CARGO_BIN_EXE_ferrovia-placement");

#[test]
fn prints_a_positive_round_trip_time() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let other = if cpus > 1 { "1" } else { "0" };
    // Few round trips: on a single CPU each one waits for the scheduler.
    let rounds = if cpus > 1 { "2000" } else { "20" };
    let out = Command::new(PROBE)
        .args(["0", other, rounds])
        .output()
        .expect("run probe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ns: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a number");
    assert!(ns > 0.0 && ns.is_finite(), "round trip {ns} ns");
}

#[test]
fn rejects_a_non_numeric_cpu_and_an_absent_cpu() {
    let out = Command::new(PROBE)
        .args(["zero", "1"])
        .output()
        .expect("run probe");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'zero' is not a number"));
    let out = Command::new(PROBE)
        .args(["100000", "0", "10"])
        .output()
        .expect("run probe");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot run on CPU 100000"));
}

/// Whether this process runs as root (the only way these tests get real-time priority).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn real_time_probe_measures_as_root_and_says_why_not_otherwise() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        // Two real-time spinners cannot share one CPU.
        return;
    }
    let out = Command::new(PROBE)
        .args(["--rt", "0", "1", "2000"])
        .output()
        .expect("run probe");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if is_root() {
        assert!(out.status.success(), "{stderr}");
        let ns: f64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a number");
        assert!(ns > 0.0 && ns.is_finite(), "round trip {ns} ns");
    } else if !out.status.success() {
        // Without root (or CAP_SYS_NICE) the probe must say why and how to go on.
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("cannot run at real-time priority"),
            "{stderr}"
        );
        assert!(stderr.contains("drop --rt"), "{stderr}");
    }
}

#[test]
fn real_time_probe_refuses_one_cpu_twice() {
    let out = Command::new(PROBE)
        .args(["--rt", "0", "0", "10"])
        .output()
        .expect("run probe");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--rt needs two different CPUs"), "{stderr}");
    assert!(stderr.contains("drop --rt"), "{stderr}");
}
