//! The `ferrovia-pktgen` command line. See `docs/pktgen.md`.

mod console;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use ferrovia_ethdev::PortConf;
use ferrovia_memory::{LcoreCaches, Mempool, MempoolConfig};
use ferrovia_pktgen::clock::Clock;
use ferrovia_pktgen::frame::{MIN_FRAME, SizePattern};
use ferrovia_pktgen::rate::Rate;
use ferrovia_pktgen::trial::{
    GenPort, Progress, StreamSpec, TrialReport, TrialSpec, WhenFull, run_trial,
};

const USAGE: &str = "\
usage: ferrovia-pktgen --port DEVARGS [--port DEVARGS] [options]

ports
  --port DEVARGS        a port (repeat for a second): one port expects its frames back (a
                        reflector such as testpmd macswap); with two, port 0 sends to port 1
  --bidir               with two ports, port 1 sends to port 0 as well
  --dst-mac MAC         destination MAC of every stream (default: the receiving port's MAC,
                        or 02:00:00:00:00:02 with one port)
  --link-timeout SECS   wait this long for links to come up (default 30)
traffic
  --rate RATE           per stream: 2Mpps, 500kpps, 10Gbps, 40% (of --line-rate), or max
                        (default max)
  --line-rate RATE      the line rate percentages refer to and rates may not exceed (10Gbps)
  --size N              frame size in bytes without FCS (60..; default 60)
  --sizes N,N,..        a sweep: one trial per size
  --imix                simple IMIX 7:4:1 of 60, 590 and 1514 bytes
  --flows N             UDP flows per stream (1..1000000, default 1)
  --burst N             frames per burst (1..32, default 32)
  --when-full retry|drop
                        frames a port refuses (ring full): send them again (retry, default:
                        the port slows the generator down) or count them lost (drop: a NIC's
                        wire, the rate holds whatever the device does)
trial
  --duration SECS       measured seconds per trial (default 10; with --count, the limit)
  --count N             exactly N measured frames per stream
  --warmup SECS         sent before measuring, not counted (default 1)
  --drain SECS          keep receiving after the last frame (default 0.2)
control
  -i, --interactive     a prompt instead of one run: set options, start/stop continuous
                        traffic, run trials, show results (type help there)
  --script FILE         run the prompt's commands from FILE (pktgen-dpdk's -f), then exit, or
                        go on at the prompt with -i
output
  --json FILE           write the results as JSON (- for stdout)
  --verify              fill payloads with a pattern and check every received byte
                        (reports corrupt frames; costs generator speed)
  --quiet               no live progress
  -h, --help            this text";

#[derive(Clone)]
struct Args {
    ports: Vec<String>,
    bidir: bool,
    dst_mac: Option<[u8; 6]>,
    link_timeout: f64,
    rate: Rate,
    line_rate: Option<f64>,
    sizes: Vec<SizePattern>,
    flows: u32,
    burst: usize,
    duration: f64,
    count: Option<u64>,
    warmup: f64,
    drain: f64,
    json: Option<String>,
    quiet: bool,
    verify: bool,
    when_full: WhenFull,
    interactive: bool,
    script: Option<String>,
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut m = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!(
            "--dst-mac {s:?}: expected six hex bytes like 02:00:00:00:00:02"
        ));
    }
    for (i, p) in parts.iter().enumerate() {
        m[i] = u8::from_str_radix(p, 16)
            .map_err(|_| format!("--dst-mac {s:?}: {p:?} is not a hex byte"))?;
    }
    Ok(m)
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut a = Args {
        ports: Vec::new(),
        bidir: false,
        dst_mac: None,
        link_timeout: 30.0,
        rate: Rate::Max,
        line_rate: None,
        sizes: Vec::new(),
        flows: 1,
        burst: 32,
        duration: 10.0,
        count: None,
        warmup: 1.0,
        drain: 0.2,
        json: None,
        quiet: false,
        verify: false,
        when_full: WhenFull::Retry,
        interactive: false,
        script: None,
    };
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut val = || -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{key} needs a value (see --help)"))
        };
        match key {
            "--port" => a.ports.push(val()?),
            "--bidir" => a.bidir = true,
            "--imix" => a.sizes = vec![SizePattern::imix()],
            "--quiet" => a.quiet = true,
            "--verify" => a.verify = true,
            "-i" | "--interactive" => a.interactive = true,
            "--script" => a.script = Some(val()?),
            "--json" => a.json = Some(val()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            k if VALUE_OPTIONS.contains(&k) => set_option(&mut a, k, &val()?)?,
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    if a.ports.is_empty() {
        return Err(
            "give at least one --port DEVARGS (e.g. --port net_virtio_user0,path=/tmp/sock0)"
                .into(),
        );
    }
    if a.ports.len() > 2 {
        return Err("at most two ports (one with a reflector, or two facing each other)".into());
    }
    check(&a)?;
    if a.sizes.is_empty() {
        a.sizes.push(SizePattern::fixed(MIN_FRAME as u16));
    }
    Ok(a)
}

/// The options that take a value and that the prompt's `set` can change too.
const VALUE_OPTIONS: &[&str] = &[
    "--dst-mac",
    "--link-timeout",
    "--rate",
    "--line-rate",
    "--size",
    "--sizes",
    "--flows",
    "--burst",
    "--duration",
    "--count",
    "--warmup",
    "--drain",
    "--when-full",
];

/// Sets one option that takes a value (the command line's `--KEY VALUE`, the prompt's
/// `set KEY VALUE`).
fn set_option(a: &mut Args, key: &str, v: &str) -> Result<(), String> {
    let v = v.to_string();
    let num = |k: &str, v: String| -> Result<f64, String> {
        v.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| format!("{k} {v:?} is not a non-negative number"))
    };
    let int = |k: &str, v: String| -> Result<u64, String> {
        v.parse::<u64>()
            .map_err(|_| format!("{k} {v:?} is not a whole number"))
    };
    match key {
        "--dst-mac" => a.dst_mac = Some(parse_mac(&v)?),
        "--link-timeout" => a.link_timeout = num(key, v)?,
        "--rate" => a.rate = Rate::parse(&v)?,
        "--line-rate" => match Rate::parse(&v)? {
            Rate::Bps(b) => a.line_rate = Some(b),
            _ => return Err("--line-rate takes a bit rate such as 10Gbps".into()),
        },
        "--size" => a.sizes = vec![size(&v)?],
        "--sizes" => {
            a.sizes = v.split(',').map(size).collect::<Result<_, _>>()?;
        }
        "--flows" => {
            let f = int(key, v)?;
            if !(1..=1_000_000).contains(&f) {
                return Err(format!("--flows {f} is out of range (1..1000000)"));
            }
            a.flows = f as u32;
        }
        "--burst" => {
            let b = int(key, v)?;
            if !(1..=32).contains(&b) {
                return Err(format!("--burst {b} is out of range (1..32)"));
            }
            a.burst = b as usize;
        }
        "--duration" => a.duration = num(key, v)?,
        "--count" if v == "off" => a.count = None,
        "--count" => a.count = Some(int(key, v)?),
        "--warmup" => a.warmup = num(key, v)?,
        "--drain" => a.drain = num(key, v)?,
        "--when-full" => {
            a.when_full = match v.as_str() {
                "retry" => WhenFull::Retry,
                "drop" => WhenFull::Drop,
                other => {
                    return Err(format!(
                        "--when-full {other:?}: use retry (send again) or drop (count lost)"
                    ));
                }
            }
        }
        other => return Err(format!("unknown option {other:?} (see --help)")),
    }
    Ok(())
}

/// The checks that involve more than one option.
fn check(a: &Args) -> Result<(), String> {
    if a.bidir && a.ports.len() != 2 {
        return Err("--bidir needs two ports".into());
    }
    if a.duration <= 0.0 {
        return Err("--duration must be above 0".into());
    }
    Ok(())
}

fn size(s: &str) -> Result<SizePattern, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("frame size {s:?} is not a number"))?;
    if n < MIN_FRAME {
        return Err(format!(
            "frame size {n} is below {MIN_FRAME} bytes, the Ethernet minimum without FCS (64 on the wire)"
        ));
    }
    if n > 9728 {
        return Err(format!("frame size {n} is above 9728 bytes"));
    }
    Ok(SizePattern::fixed(n as u16))
}

fn fmt_us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e3)
}

fn print_table(trials: &[TrialReport]) {
    println!(
        "{:>6} {:>9} {:>9} {:>11} {:>11} {:>9} {:>8} {:>6} {:>6}   latency us: {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "size",
        "tx Mpps",
        "rx Mpps",
        "sent",
        "received",
        "lost",
        "loss %",
        "reord",
        "dup",
        "min",
        "avg",
        "p50",
        "p99",
        "p99.9",
        "max"
    );
    for t in trials {
        let reord: u64 = t.streams.iter().map(|s| s.reordered).sum();
        let dup: u64 = t.streams.iter().map(|s| s.duplicates).sum();
        let l = &t.latency;
        println!(
            "{:>6} {:>9.3} {:>9.3} {:>11} {:>11} {:>9} {:>8.4} {:>6} {:>6}               {:>7} {:>7.1} {:>7} {:>7} {:>7} {:>7}",
            t.size,
            t.tx_pps / 1e6,
            t.rx_pps / 1e6,
            t.sent,
            t.received,
            t.lost,
            t.loss_ratio * 100.0,
            reord,
            dup,
            fmt_us(l.min_ns),
            l.avg_ns / 1e3,
            fmt_us(l.p50_ns),
            fmt_us(l.p99_ns),
            fmt_us(l.p999_ns),
            fmt_us(l.max_ns),
        );
        if t.corrupt > 0 {
            println!("       {} frames arrived corrupt", t.corrupt);
        }
    }
}

/// The open ports and what trials on them need.
struct Session {
    ports: Vec<GenPort>,
    pool: Mempool,
    caches: LcoreCaches,
    clock: Clock,
    macs: Vec<[u8; 6]>,
    /// The largest frame the pool's buffers and every port take.
    max_frame: usize,
}

fn open_session(a: &Args) -> Result<Session, String> {
    let max_size = a
        .sizes
        .iter()
        .map(SizePattern::max)
        .max()
        .unwrap_or(MIN_FRAME);
    // At the prompt, sizes may grow later: room for a 1514-byte frame at least.
    let room_for = if a.interactive || a.script.is_some() {
        max_size.max(1514)
    } else {
        max_size
    };
    let data_room = (room_for + 128).max(2048).min(u16::MAX as usize) as u16;
    let pool = Mempool::new(MempoolConfig {
        name: "pktgen".into(),
        count: 16384,
        data_room,
        ..Default::default()
    })
    .map_err(|e| format!("cannot create the packet pool: {e}"))?;
    let mut ports = Vec::new();
    let mut max_frame = room_for;
    for (i, d) in a.ports.iter().enumerate() {
        let mut port = ferrovia_pmd::open(d, &PortConf::new(i as u16, pool.clone()))
            .map_err(|e| format!("port {i} ({d}): {e}"))?;
        port.start()
            .map_err(|e| format!("port {i} ({d}): cannot start: {e}"))?;
        let info = port.info();
        if max_size > info.max_frame_size as usize {
            return Err(format!(
                "frame size {max_size} is above port {i}'s limit of {} bytes ({d})",
                info.max_frame_size
            ));
        }
        max_frame = max_frame.min(info.max_frame_size as usize);
        let rx = port.rx_queue(0).map_err(|e| format!("port {i}: {e}"))?;
        let tx = port.tx_queue(0).map_err(|e| format!("port {i}: {e}"))?;
        ports.push(GenPort {
            port,
            rx,
            tx,
            name: d.clone(),
        });
    }
    let t0 = Instant::now();
    for (i, p) in ports.iter().enumerate() {
        while !p.port.link().up {
            if t0.elapsed() > Duration::from_secs_f64(a.link_timeout) {
                return Err(format!(
                    "the link of port {i} ({}) did not come up within {} s (is the peer running? --link-timeout waits longer)",
                    p.name, a.link_timeout
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let macs: Vec<[u8; 6]> = ports.iter().map(|p| p.port.info().mac.0).collect();
    let clock = Clock::calibrate(Duration::from_millis(100));
    if !a.quiet {
        eprintln!(
            "ferrovia-pktgen: tick counter at {:.1} MHz",
            clock.hz() / 1e6
        );
    }
    Ok(Session {
        ports,
        pool,
        caches: LcoreCaches::new(),
        clock,
        macs,
        max_frame,
    })
}

/// The streams `a` asks for on the session's ports.
fn streams(a: &Args, macs: &[[u8; 6]]) -> Vec<StreamSpec> {
    let mut streams = vec![StreamSpec {
        port: 0,
        src: macs[0],
        dst: a.dst_mac.unwrap_or(if macs.len() == 2 {
            macs[1]
        } else {
            [2, 0, 0, 0, 0, 2]
        }),
    }];
    if a.bidir {
        streams.push(StreamSpec {
            port: 1,
            src: macs[1],
            dst: a.dst_mac.unwrap_or(macs[0]),
        });
    }
    streams
}

/// One trial per size pattern of `a` (or, `continuous`, one trial of the first pattern that
/// runs until `stop` is set).
fn run_trials(
    sess: &mut Session,
    a: &Args,
    stop: Option<Arc<AtomicBool>>,
    continuous: bool,
) -> Result<Vec<TrialReport>, String> {
    let streams = streams(a, &sess.macs);
    let mut out = Vec::new();
    let patterns = if continuous {
        &a.sizes[..1]
    } else {
        &a.sizes[..]
    };
    for sizes in patterns {
        if sizes.max() > sess.max_frame {
            return Err(format!(
                "frame size {} is above {} bytes, the most these ports and buffers take (restart with a larger --size)",
                sizes.max(),
                sess.max_frame
            ));
        }
        let pps = a
            .rate
            .pps(sizes.mean().round() as usize, a.line_rate)
            .map_err(|e| format!("rate: {e}"))?;
        let spec = TrialSpec {
            streams: streams.clone(),
            sizes: sizes.clone(),
            pps,
            flows: a.flows,
            warmup: a.warmup,
            duration: if continuous {
                // Until stop: a day bounds it.
                86_400.0
            } else if a.count.is_some() && a.duration == 10.0 {
                3600.0
            } else {
                a.duration
            },
            count: if continuous { None } else { a.count },
            drain: a.drain,
            burst: a.burst,
            verify: a.verify,
            when_full: a.when_full,
            stop: stop.clone(),
        };
        let quiet = a.quiet;
        let label = sizes.label();
        let r = run_trial(
            &mut sess.ports,
            &sess.pool,
            &mut sess.caches,
            &sess.clock,
            &spec,
            |p: &Progress| {
                if !quiet {
                    eprintln!(
                        "[{label:>5} B] t={:>6.1}s  tx {:>8.3} Mpps  rx {:>8.3} Mpps  outstanding {}",
                        p.t,
                        p.tx_pps / 1e6,
                        p.rx_pps / 1e6,
                        p.outstanding
                    );
                }
            },
            &mut |_| {},
        );
        out.push(r);
        if stop
            .as_ref()
            .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
        {
            break;
        }
    }
    Ok(out)
}

fn write_json(path: &str, trials: &[TrialReport]) -> Result<(), String> {
    let v = serde_json::json!({ "trials": trials });
    let text = serde_json::to_string_pretty(&v).expect("serialises");
    let r = if path == "-" {
        writeln!(std::io::stdout(), "{text}")
    } else {
        std::fs::write(path, text + "\n")
    };
    r.map_err(|e| format!("cannot write {path}: {e}"))
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let a = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ferrovia-pktgen: {e}");
            return ExitCode::from(2);
        }
    };
    let mut sess = match open_session(&a) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ferrovia-pktgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    if a.interactive || a.script.is_some() {
        return match console::run(&mut sess, a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ferrovia-pktgen: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run_trials(&mut sess, &a, None, false) {
        Ok(trials) => {
            print_table(&trials);
            if let Some(path) = &a.json
                && let Err(e) = write_json(path, &trials)
            {
                eprintln!("ferrovia-pktgen: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferrovia-pktgen: {e}");
            ExitCode::FAILURE
        }
    }
}
