//! `ferrovia-switch`: the vSwitch/vRouter daemon.
//!
//! ```text
//! ferrovia-switch [--config FILE] [--socket PATH] [--print-config]
//! ```
//!
//! Without `--config` it runs the built-in default: bridge `br0` with two vhost-user server
//! ports whose sockets are in the run directory (`$FERROVIA_RUN_DIR`, else
//! `$XDG_RUNTIME_DIR/ferrovia`, else `/tmp/ferrovia-$UID`). It runs in the foreground, logs to
//! stderr (`RUST_LOG` sets the level, default `info`), and stops cleanly on SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use ferrovia_vswitch::rpc::RpcServer;
use ferrovia_vswitch::{Switch, SwitchConfig};

mod telemetry;

const USAGE: &str = "\
usage: ferrovia-switch [--config FILE] [--socket PATH] [--print-config]

  --config FILE    the TOML configuration (default: built in: bridge br0 with vhost-user
                   server ports vhu0 and vhu1 in the run directory)
  --socket PATH    the JSON-RPC control socket (overrides [switch] control_socket)
  --print-config   print the configuration that would run, as TOML, and exit
  -h, --help       this help

Change it at run time with ferrovia-ctl (ferrovia-ctl help). SIGTERM or SIGINT stops it.
Log level: RUST_LOG=debug|info|warn (default info).";

struct Args {
    config: Option<PathBuf>,
    socket: Option<PathBuf>,
    print: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        config: None,
        socket: None,
        print: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                a.config = Some(it.next().ok_or("--config needs a file")?.into());
            }
            "--socket" | "-s" => {
                a.socket = Some(it.next().ok_or("--socket needs a path")?.into());
            }
            "--print-config" => a.print = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    Ok(a)
}

/// Blocks SIGTERM, SIGINT and SIGHUP in this thread (and so in every thread started after),
/// so that `wait_for_signal` receives them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    set
}

fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    loop {
        // SAFETY: `set` is initialised and `sig` is a valid out pointer.
        if unsafe { libc::sigwait(set, &mut sig) } == 0 {
            return sig;
        }
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ferrovia-switch: {e}");
            return ExitCode::from(2);
        }
    };
    let mut cfg = match &args.config {
        Some(p) => match SwitchConfig::load(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ferrovia-switch: {e}");
                return ExitCode::from(2);
            }
        },
        None => SwitchConfig::builtin(),
    };
    if let Some(s) = args.socket {
        cfg.switch.control_socket = s;
    }
    if args.print {
        match ferrovia_vswitch::config::to_toml(&cfg) {
            Ok(t) => {
                print!("{t}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("ferrovia-switch: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let set = block_signals();
    let t0 = Instant::now();
    for p in &cfg.port {
        // Sockets of the default configuration live in the run directory: make it.
        if let Some(dir) = ferrovia_vswitch::config::socket_dir_of(&p.devargs) {
            let _ = std::fs::create_dir_all(dir);
        }
    }
    let sw = match Switch::start(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ferrovia-switch: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rpc = match RpcServer::start(sw.clone(), &cfg.switch.control_socket) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferrovia-switch: control socket: {e}");
            sw.shutdown();
            return ExitCode::FAILURE;
        }
    };
    let telemetry = match telemetry::start(&sw, &cfg.telemetry) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ferrovia-switch: {e}");
            drop(rpc);
            sw.shutdown();
            return ExitCode::FAILURE;
        }
    };
    let ports: Vec<String> = sw
        .ports()
        .iter()
        .map(|p| format!("{} ({})", p.name, p.devargs))
        .collect();
    log::info!(
        "ready in {:.1} ms: {} PMD thread(s), ports: {}; control socket {}",
        t0.elapsed().as_secs_f64() * 1e3,
        sw.pmd_threads(),
        if ports.is_empty() {
            "none".into()
        } else {
            ports.join(", ")
        },
        rpc.path().display()
    );
    let sig = wait_for_signal(&set);
    log::info!("signal {sig}: stopping");
    drop(telemetry);
    drop(rpc);
    sw.shutdown();
    log::info!("stopped");
    ExitCode::SUCCESS
}
