//! `ferrovia-pdump`: dpdk-pdump's command line over the telemetry socket of a running testpmd
//! or ferrovia-switch. It starts the captures, prints their counters every second, and stops
//! them on SIGINT/SIGTERM, after `--duration SECS`, or once `--count N` packets are written.
//!
//! ```text
//! ferrovia-pdump --file-prefix=P -- --pdump 'port=0,queue=*,rx-dev=/tmp/rx.pcapng,tx-dev=/tmp/tx.pcapng,snaplen=128'
//! ```
//!
//! Keys of `--pdump`: `port=N` or `device_id=NAME`, `queue=N|*`, `rx-dev=FILE`, `tx-dev=FILE`
//! (equal: one file with both directions), or `dev=FILE` with `dir=rx|tx|both`, `snaplen=N`,
//! `ring-size=N`. Files are written by the target process; relative paths are made absolute
//! here first. A FIFO works: `mkfifo /tmp/f; tshark -i /tmp/f` (or `-r`).

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrovia_ethdev::capture::params::parse_pdump;
use ferrovia_telemetry::{TelemetryClient, TelemetryConfig};
use serde_json::Value;

static QUIT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    QUIT.store(true, Ordering::SeqCst);
}

const USAGE: &str = "\
Usage: ferrovia-pdump [--file-prefix=PREFIX] -- --pdump '<params>' [--pdump '<params>' ...]
                      [--duration SECS] [--count N] [--interval SECS]

Captures packets of a running testpmd or ferrovia-switch (over its telemetry socket,
<runtime dir>/dpdk/PREFIX/dpdk_telemetry.v2; PREFIX defaults to rte) into pcapng files.

<params>: port=N | device_id=NAME        the port
          queue=N | queue=*              one queue or all (default: all)
          rx-dev=FILE, tx-dev=FILE       received / sent packets (the same FILE: both in one)
          dev=FILE [,dir=rx|tx|both]     one file (default: both directions)
          snaplen=N                      bytes kept per packet, 1..262144 (default 262144)
          ring-size=N                    capture ring slots per queue
--duration SECS   stop after SECS seconds        --count N   stop once N packets are written
--interval SECS   print counters every SECS (default 1; 0: only at the end)
Stops on Ctrl-C. FILE may be a FIFO read by tshark -i FILE.";

struct Args {
    prefix: String,
    pdumps: Vec<String>,
    duration: Option<Duration>,
    count: Option<u64>,
    interval: Duration,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        prefix: "rte".into(),
        pdumps: Vec::new(),
        duration: None,
        count: None,
        interval: Duration::from_secs(1),
    };
    let mut it = args.iter();
    let value = |it: &mut std::slice::Iter<String>, k: &str, inline: Option<&str>| {
        inline
            .map(str::to_string)
            .or_else(|| it.next().cloned())
            .ok_or_else(|| format!("{k} needs a value (see --help)"))
    };
    while let Some(arg) = it.next() {
        let (k, inline) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k, Some(v)),
            _ => (arg.as_str(), None),
        };
        match k {
            "--" => {}
            "-h" | "--help" => return Err(String::new()),
            "--file-prefix" => {
                let v = value(&mut it, k, inline)?;
                if v.is_empty() || v.contains('/') {
                    return Err(format!(
                        "invalid --file-prefix '{v}': it must be non-empty and have no '/'"
                    ));
                }
                a.prefix = v;
            }
            "--pdump" => a.pdumps.push(value(&mut it, k, inline)?),
            "--duration" => {
                let v = value(&mut it, k, inline)?;
                let s: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0 && s.is_finite())
                    .ok_or_else(|| format!("bad --duration '{v}': give seconds, > 0"))?;
                a.duration = Some(Duration::from_secs_f64(s));
            }
            "--count" => {
                let v = value(&mut it, k, inline)?;
                a.count = Some(
                    v.parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("bad --count '{v}': give a packet count, > 0"))?,
                );
            }
            "--interval" => {
                let v = value(&mut it, k, inline)?;
                let s: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s >= 0.0 && s.is_finite())
                    .ok_or_else(|| format!("bad --interval '{v}': give seconds, >= 0"))?;
                a.interval = Duration::from_secs_f64(s);
            }
            // dpdk-pdump's EAL options that mean nothing here.
            "-l" | "-c" | "-n" | "--lcores" | "--proc-type" | "--log-level" => {
                if inline.is_none() {
                    it.next();
                }
            }
            "--no-pci" | "--in-memory" | "--no-huge" => {}
            other => {
                return Err(format!("unknown option '{other}' (see --help)"));
            }
        }
    }
    if a.pdumps.is_empty() {
        return Err(
            "no --pdump given: add --pdump 'port=0,queue=*,dev=/tmp/x.pcapng' (see --help)".into(),
        );
    }
    Ok(a)
}

/// Makes the file paths of a `--pdump` value absolute (the target process writes them, from
/// its own working directory).
fn absolute_paths(params: &str) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    params
        .split(',')
        .map(|kv| match kv.split_once('=') {
            Some((k @ ("rx-dev" | "tx-dev" | "dev"), v)) if !v.trim().starts_with('/') => {
                format!("{k}={}", cwd.join(v.trim()).display())
            }
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Sends `/cmd,params` and returns the reply's `captures`, or its error.
fn ask(c: &TelemetryClient, cmd: &str, params: &str) -> Result<Vec<Value>, String> {
    let req = if params.is_empty() {
        cmd.to_string()
    } else {
        format!("{cmd},{params}")
    };
    let text = c
        .ask(&req)
        .map_err(|e| format!("telemetry request {cmd} failed: {e}"))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| format!("telemetry reply to {cmd} is not JSON ({e}): {text}"))?;
    let d = &v[cmd];
    if d.is_null() {
        return Err(format!(
            "the target does not know {cmd} (is it a ferrovia testpmd or ferrovia-switch?)"
        ));
    }
    if let Some(e) = d["error"].as_str() {
        return Err(e.to_string());
    }
    Ok(d["captures"].as_array().cloned().unwrap_or_default())
}

fn line(c: &Value) -> String {
    format!(
        "capture {}: port {} ({}) queue {} {} -> {} [{}] captured {} drops {} written {} ({} bytes)",
        c["id"],
        c["port"],
        c["name"].as_str().unwrap_or(""),
        match &c["queue"] {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        },
        c["dir"].as_str().unwrap_or(""),
        c["file"].as_str().unwrap_or(""),
        c["state"].as_str().unwrap_or(""),
        c["captured"],
        c["drops"],
        c["written"],
        c["bytes"]
    )
}

fn run(a: Args) -> Result<(), String> {
    for p in &a.pdumps {
        parse_pdump(p).map_err(|e| format!("bad --pdump '{p}': {e}"))?;
    }
    let path = TelemetryConfig::new(a.prefix.clone()).socket_path();
    let c = TelemetryClient::connect(&path).map_err(|e| {
        format!(
            "cannot connect to the telemetry socket {}: {e} (is testpmd or ferrovia-switch running with --file-prefix {} and telemetry on?)",
            path.display(),
            a.prefix
        )
    })?;
    let mut ids = Vec::new();
    let stop_all = |ids: &[u64]| {
        for id in ids {
            match ask(&c, "/ferrovia/capture/stop", &id.to_string()) {
                Ok(v) => v.iter().for_each(|s| println!("stopped {}", line(s))),
                Err(e) => eprintln!("ferrovia-pdump: stopping capture {id}: {e}"),
            }
        }
    };
    for p in &a.pdumps {
        match ask(&c, "/ferrovia/capture/start", &absolute_paths(p)) {
            Ok(v) => {
                for s in v {
                    println!("started {}", line(&s));
                    ids.extend(s["id"].as_u64());
                }
            }
            Err(e) => {
                stop_all(&ids);
                return Err(format!("cannot start --pdump '{p}': {e}"));
            }
        }
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let started = Instant::now();
    let mut next_print = started + a.interval;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let list = ask(&c, "/ferrovia/capture/list", "")?;
        let mine: Vec<&Value> = list
            .iter()
            .filter(|s| s["id"].as_u64().is_some_and(|i| ids.contains(&i)))
            .collect();
        if mine.len() < ids.len() {
            println!("a capture was stopped by the target; stopping the others");
            break;
        }
        let written: u64 = mine.iter().filter_map(|s| s["written"].as_u64()).sum();
        if !a.interval.is_zero() && Instant::now() >= next_print {
            next_print += a.interval;
            mine.iter().for_each(|s| println!("{}", line(s)));
        }
        if QUIT.load(Ordering::SeqCst) {
            println!("signal received, stopping");
            break;
        }
        if a.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        if a.count.is_some_and(|n| written >= n) {
            break;
        }
    }
    stop_all(&ids);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = match parse_args(&args) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ferrovia-pdump: {e}");
            return ExitCode::from(2);
        }
    };
    match run(a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrovia-pdump: {e}");
            ExitCode::FAILURE
        }
    }
}
