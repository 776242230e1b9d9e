//! testpmd: DPDK's packet forwarding test application, on Ferrovia ports.
//!
//! `testpmd [EAL options] -- [app options]`. See docs/testpmd.md.

mod app;
mod eal;
mod lcore;
mod opts;
mod prompt;
mod signal;
mod stats;

use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn main() {
    let started = Instant::now();
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    init_logger(&level);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (eal_args, app_args) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (&args[..], &[][..]),
    };
    let eal = match eal::parse(eal_args) {
        Ok(e) => e,
        Err(e) => fail(&format!("EAL: {e}")),
    };
    let opts = match opts::parse(app_args) {
        Ok(o) => o,
        Err(e) => fail(&e),
    };
    for i in eal.ignored.iter().chain(&opts.ignored) {
        println!("Note: option {i} has no effect here (ignored)");
    }
    signal::install();
    let mut app = match app::App::new(eal, opts) {
        Ok(a) => a,
        Err(e) => fail(&e),
    };
    if app.opts.interactive {
        println!("Interactive-mode selected");
        if app.opts.auto_start {
            println!("Auto-start selected");
            report(app.start(0));
        }
        interactive(&mut app, started);
    } else {
        report(app.start(if app.opts.tx_first { 1 } else { 0 }));
        report_first_packet(&app, started);
        match app.opts.stats_period {
            Some(p) => periodic(&mut app, Duration::from_secs(p)),
            None => {
                println!("Press enter to exit");
                let rx = stdin_lines();
                wait_line(&mut app, &rx);
            }
        }
    }
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

fn fail(msg: &str) -> ! {
    eprintln!("EAL: Error - exiting with code: 1\n  Cause: {msg}");
    std::process::exit(1);
}

fn report(r: Result<(), String>) {
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

fn wait_line(app: &mut app::App, rx: &mpsc::Receiver<Option<String>>) {
    loop {
        if signal::quit_requested() {
            println!("\nSignal received, preparing to exit...");
            return;
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(_) => return,
            Err(mpsc::RecvTimeoutError::Timeout) => app.poll_link_events(),
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn interactive(app: &mut app::App, started: Instant) {
    let rx = stdin_lines();
    let mut first_reported = false;
    loop {
        print!("testpmd> ");
        let _ = std::io::stdout().flush();
        let line = loop {
            if signal::quit_requested() {
                println!("\nSignal received, preparing to exit...");
                return;
            }
            // While forwarding waits for its first packet, look every 0.2 ms (as
            // `report_first_packet` does); otherwise every 100 ms.
            let watching = !first_reported && app.forwarding();
            if watching && app.total_rx_packets() > 0 {
                first_reported = true;
                // An event line under the prompt, as DPDK prints link events.
                print!(
                    "\nFirst packet received {:.1} ms after start\ntestpmd> ",
                    started.elapsed().as_secs_f64() * 1e3
                );
                let _ = std::io::stdout().flush();
            }
            let wait = if watching {
                Duration::from_micros(200)
            } else {
                Duration::from_millis(100)
            };
            match rx.recv_timeout(wait) {
                Ok(l) => break l,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if !watching {
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

/// Prints how long after the process started the first packet arrived on any port: the
/// start-up time users see. The main thread polls the port counters every 0.2 ms for at most
/// 10 s, before settling into its usual loop; the forwarding threads do nothing extra. Ends
/// early on a signal.
fn report_first_packet(app: &app::App, started: Instant) {
    let give_up = Instant::now() + Duration::from_secs(10);
    while Instant::now() < give_up {
        if signal::quit_requested() {
            return;
        }
        if app.total_rx_packets() > 0 {
            println!(
                "First packet received {:.1} ms after start",
                started.elapsed().as_secs_f64() * 1e3
            );
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    println!("No packet received in the first 10 s of forwarding");
}

fn periodic(app: &mut app::App, period: Duration) {
    let mut next = Instant::now() + period;
    loop {
        if signal::quit_requested() {
            println!("\nSignal received, preparing to exit...");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
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
