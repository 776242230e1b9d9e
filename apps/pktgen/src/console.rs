//! The prompt of `ferrovia-pktgen -i` and the commands of `--script FILE`, in the manner of
//! pktgen-dpdk's and TRex's consoles: change the settings, send continuously between `start`
//! and `stop`, run measured trials, look at and save the results.
//!
//! Traffic runs on the main thread, which owns the ports. A reader thread reads the script,
//! then standard input (with `-i`), and hands each line over a channel. `stop` must reach a
//! trial while the main thread is busy sending, so the reader also raises the stop flag the
//! trial polls; the main thread lowers it when it takes the `stop` line off the channel, so a
//! `stop` ends exactly the `start` or `run` queued before it (or nothing, if none was).
//! End of input raises the flag too, so a piped `start` with no `stop` still ends.
//!
//! A script runs in step with the traffic: the reader waits for each script command to be
//! done before it reads the next (`start` counts as done once sending began), so
//! `start`, `sleep 2`, `stop` sends for two seconds. Lines typed at the prompt are read at once,
//! so `stop` can end a `run` before its time.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use ferrovia_pktgen::frame::SizePattern;
use ferrovia_pktgen::rate::Rate;
use ferrovia_pktgen::trial::TrialReport;

use super::{Args, Session, check, print_table, run_trials, set_option, write_json};

const HELP: &str = "\
commands
  show                      the settings
  set KEY VALUE             change a setting: rate RATE, size N, sizes N,N,.., flows N,
                            burst N, duration S, count N|off, warmup S, drain S,
                            when-full retry|drop,
                            line-rate RATE, dst-mac MAC, imix on, verify on|off,
                            bidir on|off, quiet on|off (as the command-line options)
  run                       one measured trial per size (duration or count), then its table
  start                     send continuously at the settings (first size) until stop
  stop                      end the running start or run; its table follows
  results                   the table of every trial so far
  clear                     forget them
  save FILE                 write them as JSON (- for standard output)
  sleep S                   wait S seconds before the next command (for scripts)
  help                      this text
  quit | exit               leave";

/// A line from the script or the terminal.
enum Line {
    /// A command, and whether to echo it (it came from the script, not the keyboard).
    Command(String, bool),
    /// A script's `sleep`, which the reader carries out itself: shown, not run.
    Slept(String),
    /// No more input.
    End,
}

/// Reads the script, then (with `interactive`) standard input, onto the channel. Raises
/// `stop` for each `stop` line and at the end of input; sleeps for `sleep` lines after
/// passing them on.
fn reader(
    script: Option<Vec<String>>,
    interactive: bool,
    tx: mpsc::Sender<Line>,
    done: mpsc::Receiver<()>,
    stop: Arc<AtomicBool>,
) {
    let handle = |line: String, echo: bool| -> bool {
        let t = line.trim().to_string();
        if t.is_empty() || t.starts_with('#') {
            return true;
        }
        let word = t.split_whitespace().next().unwrap_or("");
        if word == "stop" {
            stop.store(true, Ordering::Relaxed);
        }
        let pause = if word == "sleep" {
            t.split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
        } else {
            None
        };
        if let (Some(s), true) = (pause, echo) {
            // The script's pause happens here, while a `start` before it sends.
            if tx.send(Line::Slept(t)).is_err() {
                return false;
            }
            std::thread::sleep(Duration::from_secs_f64(s.min(86_400.0)));
            return true;
        }
        if tx.send(Line::Command(t, echo)).is_err() {
            return false;
        }
        // A script command: wait until the main thread is done with it.
        if echo && done.recv().is_err() {
            return false;
        }
        true
    };
    if let Some(lines) = script {
        for l in lines {
            if !handle(l, true) {
                return;
            }
        }
    }
    if interactive {
        for l in std::io::stdin().lock().lines() {
            match l {
                Ok(l) => {
                    if !handle(l, false) {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = tx.send(Line::End);
}

/// What one command asks of the session.
#[derive(Debug, PartialEq)]
enum Command {
    Help,
    Show,
    Set(String, String),
    Run,
    Start,
    Stop,
    Results,
    Clear,
    Save(String),
    Sleep,
    Quit,
}

/// Parses one command line.
fn parse(line: &str) -> Result<Command, String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    Ok(match w.as_slice() {
        ["help"] | ["?"] => Command::Help,
        ["show"] => Command::Show,
        ["set", k, v] => Command::Set(k.to_string(), v.to_string()),
        ["set", ..] => {
            return Err(
                "set takes a key and a value, e.g. set rate 1Mpps (help lists the keys)".into(),
            );
        }
        ["run"] => Command::Run,
        ["start"] => Command::Start,
        ["stop"] => Command::Stop,
        ["results"] => Command::Results,
        ["clear"] => Command::Clear,
        ["save", f] => Command::Save(f.to_string()),
        ["save"] => return Err("save takes a file name (- for standard output)".into()),
        ["sleep", s] if s.parse::<f64>().is_ok_and(|x| x.is_finite() && x >= 0.0) => Command::Sleep,
        ["sleep", ..] => return Err("sleep takes a number of seconds".into()),
        ["quit"] | ["exit"] => Command::Quit,
        _ => {
            return Err(format!(
                "unknown command {line:?} (help lists the commands)"
            ));
        }
    })
}

fn on_off(k: &str, v: &str) -> Result<bool, String> {
    match v {
        "on" | "1" | "true" | "yes" => Ok(true),
        "off" | "0" | "false" | "no" => Ok(false),
        _ => Err(format!("set {k} takes on or off, not {v:?}")),
    }
}

/// Applies `set KEY VALUE` to a copy of the settings, checked as the command line is.
fn set(a: &Args, k: &str, v: &str) -> Result<Args, String> {
    let mut n = a.clone();
    match k {
        "imix" => {
            if on_off(k, v)? {
                n.sizes = vec![SizePattern::imix()];
            }
        }
        "verify" => n.verify = on_off(k, v)?,
        "bidir" => n.bidir = on_off(k, v)?,
        "quiet" => n.quiet = on_off(k, v)?,
        "port" | "ports" | "json" | "interactive" | "script" => {
            return Err(format!(
                "{k} is fixed for the session (give it on the command line)"
            ));
        }
        _ => set_option(&mut n, &format!("--{k}"), v).map_err(|e| {
            if e.starts_with("unknown option") {
                format!("set: unknown key {k:?} (help lists the keys)")
            } else {
                e
            }
        })?,
    }
    check(&n)?;
    Ok(n)
}

fn rate_text(a: &Args) -> String {
    match a.rate {
        Rate::Pps(p) => format!("{:.3} Mpps", p / 1e6),
        Rate::Bps(b) => format!("{:.3} Gbit/s", b / 1e9),
        Rate::Percent(p) => format!("{p} % of the line rate"),
        Rate::Max => "max".into(),
    }
}

fn show(a: &Args) {
    let sizes: Vec<String> = a.sizes.iter().map(SizePattern::label).collect();
    println!("ports     {}", a.ports.join("  "));
    println!(
        "rate      {} per stream{}",
        rate_text(a),
        a.line_rate.map_or(String::new(), |l| format!(
            " (line rate {:.3} Gbit/s)",
            l / 1e9
        ))
    );
    println!("sizes     {}", sizes.join(","));
    println!(
        "flows {}  burst {}  bidir {}  verify {}  when-full {}",
        a.flows,
        a.burst,
        a.bidir,
        a.verify,
        if a.when_full == ferrovia_pktgen::trial::WhenFull::Drop {
            "drop"
        } else {
            "retry"
        }
    );
    println!(
        "duration {} s  count {}  warmup {} s  drain {} s",
        a.duration,
        a.count.map_or("off".to_string(), |c| c.to_string()),
        a.warmup,
        a.drain
    );
}

/// Runs the prompt (and the script) until `quit` or the end of input.
pub fn run(sess: &mut Session, mut a: Args) -> Result<(), String> {
    let script = match &a.script {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the script {path}: {e}"))?
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>(),
        ),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    {
        let stop = stop.clone();
        let interactive = a.interactive;
        std::thread::Builder::new()
            .name("pktgen-input".into())
            .spawn(move || reader(script, interactive, tx, done_rx, stop))
            .map_err(|e| format!("cannot start the input thread: {e}"))?;
    }
    let mut results: Vec<TrialReport> = Vec::new();
    let mut failed = 0u32;
    let prompt = || {
        print!("pktgen> ");
        let _ = std::io::stdout().flush();
    };
    if a.interactive {
        println!(
            "ferrovia-pktgen: {} port(s) up; type help for the commands",
            sess.ports.len()
        );
    }
    loop {
        if a.interactive {
            prompt();
        }
        let (line, echo) = match rx.recv() {
            Ok(Line::Command(l, echo)) => {
                if echo {
                    if !a.interactive {
                        print!("pktgen> ");
                    }
                    println!("{l}");
                }
                (l, echo)
            }
            Ok(Line::Slept(l)) => {
                if !a.interactive {
                    print!("pktgen> ");
                }
                println!("{l}");
                continue;
            }
            Ok(Line::End) | Err(_) => {
                if a.interactive {
                    println!();
                }
                break;
            }
        };
        // Tells a script's reader this command is done (or, for start, under way).
        let ack = || {
            if echo {
                let _ = done_tx.send(());
            }
        };
        let cmd = match parse(&line) {
            Ok(c) => c,
            Err(e) => {
                println!("error: {e}");
                failed += 1;
                ack();
                continue;
            }
        };
        let mut acked = false;
        match cmd {
            Command::Help => println!("{HELP}"),
            Command::Show => show(&a),
            Command::Set(k, v) => match set(&a, &k, &v) {
                Ok(n) => a = n,
                Err(e) => {
                    println!("error: {e} (the settings are unchanged)");
                    failed += 1;
                }
            },
            Command::Run | Command::Start => {
                let continuous = cmd == Command::Start;
                if continuous && a.sizes[0].max() <= sess.max_frame {
                    println!(
                        "sending {} B at {} per stream until stop",
                        a.sizes[0].label(),
                        rate_text(&a)
                    );
                }
                if continuous {
                    ack();
                    acked = true;
                }
                match run_trials(sess, &a, Some(stop.clone()), continuous) {
                    Ok(r) => {
                        print_table(&r);
                        results.extend(r);
                    }
                    Err(e) => {
                        println!("error: {e}");
                        failed += 1;
                    }
                }
            }
            Command::Stop => {
                // The reader raised the flag; whatever it ended has reported already.
                stop.store(false, Ordering::Relaxed);
            }
            Command::Results => print_table(&results),
            Command::Clear => results.clear(),
            Command::Save(f) => match write_json(&f, &results) {
                Ok(()) => {
                    if f != "-" {
                        println!("{} trial(s) written to {f}", results.len());
                    }
                }
                Err(e) => {
                    println!("error: {e}");
                    failed += 1;
                }
            },
            Command::Sleep => {}
            Command::Quit => break,
        }
        if !acked {
            ack();
        }
    }
    if let Some(path) = &a.json {
        write_json(path, &results)?;
    }
    if failed > 0 && !a.interactive {
        return Err(format!(
            "{failed} command(s) of the script failed (see the error lines above)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(parse("start").unwrap(), Command::Start);
        assert_eq!(
            parse("set  rate 2Mpps").unwrap(),
            Command::Set("rate".into(), "2Mpps".into())
        );
        assert_eq!(parse("save -").unwrap(), Command::Save("-".into()));
        assert_eq!(parse("sleep 0.5").unwrap(), Command::Sleep);
        assert!(parse("sleep soon").unwrap_err().contains("seconds"));
        assert!(parse("set rate").unwrap_err().contains("key and a value"));
        assert!(parse("launch").unwrap_err().contains("unknown command"));
    }

    #[test]
    fn on_off_values() {
        assert_eq!(on_off("verify", "on"), Ok(true));
        assert_eq!(on_off("verify", "0"), Ok(false));
        assert!(on_off("verify", "maybe").unwrap_err().contains("on or off"));
    }
}
