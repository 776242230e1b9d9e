//! `ferrovia-vfd`: the VF daemon of the software SR-IOV NIC (AT&T VFd's role).
//!
//! ```text
//! ferrovia-vfd [--uplink DEVARGS] [--num-vfs N] [--sock-dir DIR] [--config-dir DIR]
//!              [--ctl PATH] [--telemetry] [--file-prefix PREFIX]
//! ```
//!
//! It opens the uplink and N VF ports (vhost-user sockets `DIR/vf<N>.sock`), applies every
//! `*.json` of the configuration directory (a bad file is reported and skipped), answers `iplex`
//! on the control socket, and runs in the foreground until SIGINT or SIGTERM, when it removes
//! its sockets. SIGHUP re-reads the configuration directory (`iplex reload`). Logs go to
//! stderr (`RUST_LOG`, default `info`; `iplex verbose N` changes the level at run time).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Arg, ArgAction, Command};
use ferrovia_telemetry::{TelemetryConfig, TelemetryServer};
use ferrovia_vfd::{Options, Vfd, paths, telemetry};
use ferrovia_vswitch::rpc::RpcServer;

fn cli() -> Command {
    Command::new("ferrovia-vfd")
        .about("The VF daemon of Ferrovia's software SR-IOV NIC: per-VF policies in AT&T VFd's JSON, iplex on a control socket")
        .version(env!("CARGO_PKG_VERSION"))
        .arg(
            Arg::new("uplink")
                .long("uplink")
                .value_name("DEVARGS")
                .default_value(paths::DEFAULT_UPLINK)
                .help("the uplink port (any driver: net_af_packet0,iface=eth0, net_vhost0,iface=..., net_null0)"),
        )
        .arg(
            Arg::new("num-vfs")
                .long("num-vfs")
                .value_name("N")
                .default_value("4")
                .value_parser(clap::value_parser!(u32))
                .help("VFs on the PF (1 to 64)"),
        )
        .arg(
            Arg::new("sock-dir")
                .long("sock-dir")
                .value_name("DIR")
                .help("directory of the VF sockets DIR/vf<N>.sock [default: $XDG_RUNTIME_DIR/ferrovia-vfd, else /tmp/ferrovia-vfd-$UID]"),
        )
        .arg(
            Arg::new("config-dir")
                .long("config-dir")
                .value_name("DIR")
                .default_value(paths::DEFAULT_CONFIG_DIR)
                .help("VFd's directory of per-VF JSON files (<name>.json); absent: none"),
        )
        .arg(
            Arg::new("ctl")
                .long("ctl")
                .value_name("PATH")
                .help("the control socket iplex talks to [default: $FERROVIA_VFD_CTL, else <run dir>/vfd.ctl]"),
        )
        .arg(
            Arg::new("telemetry")
                .long("telemetry")
                .action(ArgAction::SetTrue)
                .help("serve DPDK telemetry v2 on <runtime dir>/dpdk/<file-prefix>/dpdk_telemetry.v2"),
        )
        .arg(
            Arg::new("file-prefix")
                .long("file-prefix")
                .value_name("PREFIX")
                .default_value(paths::DEFAULT_FILE_PREFIX)
                .help("the telemetry file prefix (dpdk-telemetry.py -f PREFIX)"),
        )
}

/// Blocks SIGTERM, SIGINT and SIGHUP in this thread and every thread started after it, so that
/// only [`wait_for_signal`] receives them.
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset below.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t and the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    set
}

/// Waits for SIGTERM, SIGINT or SIGHUP; returns which.
fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is initialised and `sig` is a valid out pointer.
    while unsafe { libc::sigwait(set, &mut sig) } != 0 {}
    sig
}

fn main() -> ExitCode {
    // Without RUST_LOG, the logger lets every level through and the global maximum (info)
    // decides, so that `iplex verbose` can raise it at run time.
    let env_set = std::env::var_os("RUST_LOG").is_some();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("trace"))
        .format_timestamp_millis()
        .init();
    if !env_set {
        log::set_max_level(log::LevelFilter::Info);
    }
    let m = cli().get_matches();
    let s = |k: &str| m.get_one::<String>(k).cloned();
    let prefix = s("file-prefix").unwrap_or_default();
    let tcfg = m.get_flag("telemetry").then(|| {
        let mut c = TelemetryConfig::new(prefix.as_str());
        c.in_use_hint = "choose another --file-prefix, or leave out --telemetry".into();
        c
    });
    let opts = Options {
        uplink: s("uplink").unwrap_or_default(),
        num_vfs: m.get_one::<u32>("num-vfs").copied().unwrap_or(4),
        sock_dir: s("sock-dir")
            .map(PathBuf::from)
            .unwrap_or_else(paths::default_sock_dir),
        config_dir: PathBuf::from(s("config-dir").unwrap_or_default()),
        ctl: s("ctl")
            .map(PathBuf::from)
            .unwrap_or_else(paths::default_ctl),
        telemetry: tcfg.as_ref().map(TelemetryConfig::socket_path),
    };
    // Before opening any VF socket: a live daemon on the same control socket keeps its VFs.
    if std::os::unix::net::UnixStream::connect(&opts.ctl).is_ok() {
        eprintln!(
            "ferrovia-vfd: another ferrovia-vfd is listening on {} (stop it, or give this one another --ctl and --sock-dir)",
            opts.ctl.display()
        );
        return ExitCode::FAILURE;
    }
    let set = block_stop_signals();
    let vfd = match Vfd::start(opts.clone()) {
        Ok(v) => Arc::new(v),
        Err(e) => {
            eprintln!("ferrovia-vfd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sockets: Vec<PathBuf> = (0..opts.num_vfs).map(|v| vfd.vf_socket(v)).collect();
    let remove_sockets = || {
        for p in &sockets {
            let _ = std::fs::remove_file(p);
        }
    };
    let mut loaded = 0;
    for (name, r) in vfd.load_config_dir() {
        match r {
            Ok(v) => {
                loaded += 1;
                log::info!("{name}: configured VF {v}");
            }
            Err(e) => log::error!("skipped {name}: {e}"),
        }
    }
    let handler = {
        let v = vfd.clone();
        Arc::new(move |method: &str, p: serde_json::Value| v.call(method, p))
    };
    let rpc = match RpcServer::start_with(
        handler,
        &opts.ctl,
        "another ferrovia-vfd is listening on {path} (stop it, or give this one another --ctl)",
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferrovia-vfd: control socket: {e}");
            drop(vfd);
            remove_sockets();
            return ExitCode::FAILURE;
        }
    };
    let tele = match &tcfg {
        Some(c) => match TelemetryServer::start(c, Arc::new(telemetry::commands(&vfd))) {
            Ok(t) => {
                log::info!(
                    "telemetry on {} (dpdk-telemetry.py -f {prefix})",
                    t.path().display()
                );
                Some(t)
            }
            Err(e) => {
                log::warn!("telemetry disabled: {e}");
                None
            }
        },
        None => None,
    };
    log::info!(
        "ready: uplink {}, {} VFs (sockets {}/vf<N>.sock), {loaded} configured from {}; control socket {}",
        opts.uplink,
        opts.num_vfs,
        opts.sock_dir.display(),
        opts.config_dir.display(),
        rpc.path().display()
    );
    let sig = loop {
        let sig = wait_for_signal(&set);
        if sig != libc::SIGHUP {
            break sig;
        }
        log::info!("SIGHUP: re-reading {}", opts.config_dir.display());
        for (name, r) in vfd.reload() {
            match r {
                Ok(done) => log::info!("{name}: {done}"),
                Err(e) => log::error!("{name}: {e}"),
            }
        }
    };
    log::info!("signal {sig}: stopping");
    drop(tele);
    drop(rpc);
    drop(vfd);
    remove_sockets();
    log::info!("stopped");
    ExitCode::SUCCESS
}
