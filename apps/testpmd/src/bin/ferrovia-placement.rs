//! Placement probe for benchmarks: the round-trip time of one cache line bounced between two
//! CPUs.
//!
//! On a virtual machine the host decides which physical cores the vCPUs run on, and moves
//! them. Two vCPUs that share a last-level cache bounce a line in well under 100 ns; two that
//! do not take several times longer, and every cross-core packet path slows with them (2-3x on
//! the loopback benchmark).
//!
//! The host places busy vCPUs differently from idle ones, so a probe taken between two
//! measurements says little about the placement during them. `--rt` runs the probe at
//! real-time priority (`SCHED_FIFO`, needs root or CAP_SYS_NICE), so that it preempts two busy
//! forwarding loops for the fraction of a millisecond it takes: `scripts/bench-loopback.py`
//! runs it that way inside each measurement window and classifies the window by it.
//!
//!     ferrovia-placement [--rt] [CPU_A CPU_B [ROUND_TRIPS]]   # prints nanoseconds per round trip

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

const USAGE: &str = "usage: ferrovia-placement [--rt] [CPU_A CPU_B [ROUND_TRIPS]]";

/// Round trips before the timed ones: both threads settle on their CPUs and the line is warm.
const WARM_UP: u32 = 64;

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

/// Makes the calling thread (and the threads it spawns later) SCHED_FIFO at the top priority.
fn go_real_time() -> std::io::Result<()> {
    // SAFETY: sched_param is plain data; sched_setscheduler only reads it.
    let rc = unsafe {
        let mut p: libc::sched_param = std::mem::zeroed();
        p.sched_priority = libc::sched_get_priority_max(libc::SCHED_FIFO);
        libc::sched_setscheduler(0, libc::SCHED_FIFO, &p)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Gives the CPU to another runnable thread of the same priority, if there is one. At
/// real-time priority the two probe threads can share a CPU while they settle (a thread
/// starts on its parent's CPU), and a spinning one would never let the other run.
fn yield_cpu() {
    // SAFETY: sched_yield has no preconditions.
    unsafe { libc::sched_yield() };
}

/// One cache line to itself, so nothing else shares it.
#[repr(align(128))]
struct Line(AtomicU32);

/// Exit status for bad arguments (or a refused real-time priority).
const EXIT_USAGE: i32 = 2;
/// Exit status when a CPU named cannot be used.
const EXIT_CPU: i32 = 1;

fn fail(code: i32, msg: String) -> ! {
    eprintln!("ferrovia-placement: {msg}");
    std::process::exit(code)
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let rt = if let Some(i) = args.iter().position(|a| a == "--rt") {
        args.remove(i);
        true
    } else {
        false
    };
    let arg = |i: usize, default: usize| -> usize {
        match args.get(i) {
            None => default,
            Some(s) => s
                .parse()
                .unwrap_or_else(|_| fail(EXIT_USAGE, format!("'{s}' is not a number ({USAGE})"))),
        }
    };
    let (a, b, n) = (arg(0, 0), arg(1, 1), arg(2, 200_000) as u32);
    if rt && a == b {
        // Two real-time spinners on one CPU: the one waiting would never let the other run.
        fail(
            EXIT_USAGE,
            format!("--rt needs two different CPUs, got {a} twice (drop --rt to probe on one CPU)"),
        );
    }
    if rt && let Err(e) = go_real_time() {
        fail(
            EXIT_USAGE,
            format!(
                "cannot run at real-time priority: {e} (run as root, or drop --rt to probe without it)"
            ),
        );
    }
    let line = Arc::new(Line(AtomicU32::new(0)));
    let ready = Arc::new(AtomicBool::new(false));
    let total = n + WARM_UP;
    // The peer pins itself and only then announces it is ready; until the first round trip
    // it yields, so that a main thread still sharing its CPU can move to CPU_A.
    let peer = {
        let (line, ready) = (line.clone(), ready.clone());
        std::thread::spawn(move || {
            if !pin(b) {
                fail(
                    EXIT_CPU,
                    format!("cannot run on CPU {b} (see nproc / taskset -p $$)"),
                );
            }
            ready.store(true, Ordering::Release);
            while line.0.load(Ordering::Acquire) != 1 {
                yield_cpu();
            }
            line.0.store(2, Ordering::Release);
            for i in 1..total {
                while line.0.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                line.0.store(2 * i + 2, Ordering::Release);
            }
        })
    };
    while !ready.load(Ordering::Acquire) {
        yield_cpu();
    }
    if !pin(a) {
        fail(
            EXIT_CPU,
            format!("cannot run on CPU {a} (see nproc / taskset -p $$)"),
        );
    }
    let mut start = Instant::now();
    for i in 0..total {
        if i == WARM_UP {
            start = Instant::now();
        }
        line.0.store(2 * i + 1, Ordering::Release);
        while line.0.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(n.max(1));
    let _ = peer.join();
    println!("{ns:.1}");
}
