//! Placement probe for benchmarks: the round-trip time of one cache line bounced between two
//! CPUs.
//!
//! On a virtual machine the host decides which physical cores the vCPUs run on, and moves
//! them. Two vCPUs that share a last-level cache bounce a line in well under 100 ns; two that
//! do not take several times longer, and every cross-core packet path slows with them (2-3x on
//! the loopback benchmark). `scripts/bench-loopback.py` runs this probe before and after each
//! measurement window so that cells are compared in the same placement.
//!
//!     ferrovia-placement [CPU_A CPU_B [ROUND_TRIPS]]     # prints nanoseconds per round trip

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// Pins the calling thread to `cpu`; false if that CPU cannot be used.
fn pin(cpu: usize) -> bool {
    if cpu >= libc::CPU_SETSIZE as usize {
        return false;
    }
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it (cpu < CPU_SETSIZE).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// One cache line to itself, so nothing else shares it.
#[repr(align(128))]
struct Line(AtomicU32);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: usize| -> usize {
        match args.get(i) {
            None => default,
            Some(s) => s.parse().unwrap_or_else(|_| {
                eprintln!("ferrovia-placement: '{s}' is not a number (usage: ferrovia-placement [CPU_A CPU_B [ROUND_TRIPS]])");
                std::process::exit(2)
            }),
        }
    };
    let (a, b, n) = (arg(0, 0), arg(1, 1), arg(2, 200_000) as u32);
    if !pin(a) {
        eprintln!("ferrovia-placement: cannot run on CPU {a} (see nproc / taskset -p $$)");
        std::process::exit(1);
    }
    let line = Arc::new(Line(AtomicU32::new(0)));
    let peer = {
        let line = line.clone();
        std::thread::spawn(move || {
            if !pin(b) {
                eprintln!("ferrovia-placement: cannot run on CPU {b} (see nproc / taskset -p $$)");
                std::process::exit(1);
            }
            for i in 0..n {
                while line.0.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                line.0.store(2 * i + 2, Ordering::Release);
            }
        })
    };
    let start = Instant::now();
    for i in 0..n {
        line.0.store(2 * i + 1, Ordering::Release);
        while line.0.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(n.max(1));
    let _ = peer.join();
    println!("{ns:.1}");
}
