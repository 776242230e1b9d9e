//! testpmd: DPDK's packet forwarding test application, on Ferrovia ports.
//!
//! `testpmd [EAL options] -- [app options]`. See docs/testpmd.md.

mod app;
mod cycles;
mod eal;
mod lcore;
mod opts;
mod prompt;
mod signal;
mod stats;
mod telemetry;
mod usage;
mod vfcmd;

use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn main() {
    let started = Instant::now();
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    init_logger(&level);
    // The software NIC's PF port (`--vdev net_eswitch0,...`), whose VFs `set vf ...` sets.
    if let Err(e) = ferrovia_pmd::registry::register(ferrovia_eswitch::pf::DRIVER) {
        fail(format!("{e}"));
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (eal_args, app_args) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (&args[..], &[][..]),
    };
    let prog = std::env::args()
        .next()
        .and_then(|p| {
            std::path::Path::new(&p)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "testpmd".into());
    let eal = match eal::parse(eal_args) {
        Ok(e) => e,
        Err(e) => fail(format!("EAL: {e}")),
    };
    match eal.help {
        Some(eal::Help::Usage) => help(&usage::usage(&prog)),
        Some(eal::Help::Drivers) => help(&usage::drivers()),
        None => {}
    }
    let opts = match opts::parse(app_args) {
        Ok(o) => o,
        Err(e) => fail(e),
    };
    if opts.help {
        help(&usage::usage(&prog));
    }
    for i in eal.ignored.iter().chain(&opts.ignored) {
        println!("Note: option {i} has no effect here (ignored)");
    }
    signal::install();
    // As DPDK, the telemetry socket is made before the ports are opened; it answers with no
    // ports until they are.
    let ports = std::sync::Arc::new(telemetry::Ports::default());
    let file_prefix = eal.file_prefix.clone().unwrap_or_else(|| "rte".into());
    let capture = std::sync::Arc::new(ferrovia_telemetry::CaptureControl::new());
    let telemetry = match telemetry::start(
        &file_prefix,
        eal.no_telemetry,
        opts.metrics.as_deref(),
        ports.clone(),
        &capture,
    ) {
        Ok(t) => t,
        Err(e) => fail(e),
    };
    let mut app = match app::App::new(eal, opts) {
        Ok(a) => a,
        Err(e) => fail(e),
    };
    ports.set(app.shared_ports());
    app.capture = Some((capture.clone(), ports.clone()));
    if app.opts.interactive {
        println!("Interactive-mode selected");
        if app.opts.auto_start {
            println!("Auto-start selected");
            report(app.start(0));
        }
        interactive(&mut app, &mut FirstPacket::new(started));
    } else {
        report(app.start(if app.opts.tx_first { 1 } else { 0 }));
        let mut first = FirstPacket::new(started);
        match app.opts.stats_period {
            Some(p) => periodic(&mut app, Duration::from_secs(p), &mut first),
            None => {
                println!("Press enter to exit");
                let rx = stdin_lines();
                wait_line(&mut app, &rx, &mut first);
            }
        }
    }
    drop(telemetry);
    for c in capture.stop(None).unwrap_or_default() {
        println!(
            "Capture {} stopped: {} packets written to {}, {} dropped",
            c.id,
            c.written,
            c.spec.path.display(),
            c.drops
        );
    }
    app.capture = None;
    drop(capture);
    ports.clear();
    app.close();
    println!("\nBye...");
}

fn init_logger(level: &str) {
    struct L(log::LevelFilter);
    impl log::Log for L {
        fn enabled(&self, m: &log::Metadata) -> bool {
            m.level() <= self.0
        }
        fn log(&self, r: &log::Record) {
            if self.enabled(r.metadata()) {
                eprintln!("{}: {}", r.level(), r.args());
            }
        }
        fn flush(&self) {}
    }
    let f = level.parse().unwrap_or(log::LevelFilter::Info);
    let _ = log::set_boxed_logger(Box::new(L(f)));
    log::set_max_level(f);
}

/// Prints `text` on stdout and exits 0.
fn help(text: &str) -> ! {
    print!("{text}");
    let _ = std::io::stdout().flush();
    std::process::exit(0);
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("EAL: Error - exiting with code: 1\n  Cause: {msg}");
    std::process::exit(1);
}

fn report(r: Result<(), app::AppError>) {
    if let Err(e) = r {
        println!("{e}");
    }
}

/// Reads stdin lines on a thread so that the main loop can also watch signals and links.
fn stdin_lines() -> mpsc::Receiver<Option<String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            match line {
                Ok(l) => {
                    if tx.send(Some(l)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(None);
    });
    rx
}

/// The start-up measurement: once forwarding runs, the main thread looks at the port counters
/// every 0.2 ms (for the first 10 s, then at its usual pace) until a packet has arrived on any
/// port, and prints `First packet received N ms after start`, N counted from the start of
/// `main`. The forwarding threads do nothing extra.
struct FirstPacket {
    started: Instant,
    /// When forwarding was first seen running.
    watching_since: Option<Instant>,
    reported: bool,
}

impl FirstPacket {
    const LOOK_EVERY: Duration = Duration::from_micros(200);
    const FAST_FOR: Duration = Duration::from_secs(10);

    fn new(started: Instant) -> Self {
        FirstPacket {
            started,
            watching_since: None,
            reported: false,
        }
    }

    /// Looks once; returns the line to print when the first packet has just been seen.
    fn check(&mut self, app: &app::App) -> Option<String> {
        if self.reported || !app.forwarding() {
            return None;
        }
        self.watching_since.get_or_insert_with(Instant::now);
        if app.total_rx_packets() == 0 {
            return None;
        }
        self.reported = true;
        Some(format!(
            "First packet received {:.1} ms after start",
            self.started.elapsed().as_secs_f64() * 1e3
        ))
    }

    /// How long the main loop may wait before looking again: `usual`, or 0.2 ms while the
    /// first packet is awaited.
    fn wait(&self, usual: Duration) -> Duration {
        match self.watching_since {
            Some(t) if !self.reported && t.elapsed() < Self::FAST_FOR => Self::LOOK_EVERY,
            _ => usual,
        }
    }
}

/// Link events and the like are looked at every `every`, however often the loop turns.
struct Every {
    every: Duration,
    next: Instant,
}

impl Every {
    fn new(every: Duration) -> Self {
        Every {
            every,
            next: Instant::now() + every,
        }
    }

    /// Whether the period has come round (and starts the next one).
    fn due(&mut self) -> bool {
        let now = Instant::now();
        if now < self.next {
            return false;
        }
        self.next = now + self.every;
        true
    }
}

fn wait_line(app: &mut app::App, rx: &mpsc::Receiver<Option<String>>, first: &mut FirstPacket) {
    let mut links = Every::new(Duration::from_millis(100));
    loop {
        if signal::quit_requested() {
            println!("\nSignal received, preparing to exit...");
            return;
        }
        if let Some(l) = first.check(app) {
            println!("{l}");
        }
        match rx.recv_timeout(first.wait(Duration::from_millis(100))) {
            Ok(_) => return,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if links.due() {
                    app.poll_link_events()
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn interactive(app: &mut app::App, first: &mut FirstPacket) {
    let rx = stdin_lines();
    let mut links = Every::new(Duration::from_millis(100));
    loop {
        print!("testpmd> ");
        let _ = std::io::stdout().flush();
        let line = loop {
            if signal::quit_requested() {
                println!("\nSignal received, preparing to exit...");
                return;
            }
            if let Some(l) = first.check(app) {
                // An event line under the prompt, as DPDK prints link events.
                print!("\n{l}\ntestpmd> ");
                let _ = std::io::stdout().flush();
            }
            match rx.recv_timeout(first.wait(Duration::from_millis(100))) {
                Ok(l) => break l,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if links.due() {
                        app.poll_link_events()
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break None,
            }
        };
        let Some(line) = line else {
            println!();
            return;
        };
        if prompt::run(app, &line) == prompt::Next::Quit {
            return;
        }
    }
}

fn periodic(app: &mut app::App, period: Duration, first: &mut FirstPacket) {
    let mut next = Instant::now() + period;
    let mut links = Every::new(Duration::from_millis(50));
    loop {
        if signal::quit_requested() {
            println!("\nSignal received, preparing to exit...");
            return;
        }
        if let Some(l) = first.check(app) {
            println!("{l}");
        }
        std::thread::sleep(first.wait(Duration::from_millis(50)));
        if !links.due() {
            continue;
        }
        app.poll_link_events();
        if Instant::now() >= next {
            next += period;
            // Clear screen as DPDK does? No: keep a scrolling log that scripts can parse.
            println!("\nPort statistics ====================================");
            for p in 0..app.nb_ports() as u16 {
                let _ = app.show_port_stats(p);
            }
            let _ = std::io::stdout().flush();
        }
    }
}
