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
        interactive(&mut app);
    } else {
        report(app.start(if app.opts.tx_first { 1 } else { 0 }));
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

fn interactive(app: &mut app::App) {
    let rx = stdin_lines();
    loop {
        print!("testpmd> ");
        let _ = std::io::stdout().flush();
        let line = loop {
            if signal::quit_requested() {
                println!("\nSignal received, preparing to exit...");
                return;
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => break l,
                Err(mpsc::RecvTimeoutError::Timeout) => app.poll_link_events(),
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
