//! Default paths: the run directory, the VF sockets' directory and the control socket.

use std::path::PathBuf;

/// The daemon's run directory: `$XDG_RUNTIME_DIR/ferrovia-vfd`, else `/tmp/ferrovia-vfd-$UID`.
pub fn run_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("ferrovia-vfd"),
        // SAFETY: getuid has no preconditions and cannot fail.
        _ => PathBuf::from(format!("/tmp/ferrovia-vfd-{}", unsafe { libc::getuid() })),
    }
}

/// Where the VF sockets go by default: the run directory.
pub fn default_sock_dir() -> PathBuf {
    run_dir()
}

/// The control socket by default: `$FERROVIA_VFD_CTL`, else `<run dir>/vfd.ctl`. Both
/// `ferrovia-vfd` and `iplex` use it, so they meet without options.
pub fn default_ctl() -> PathBuf {
    match std::env::var_os("FERROVIA_VFD_CTL") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => run_dir().join("vfd.ctl"),
    }
}

/// VFd's directory of per-VF JSON files.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/vfd/vf.d";

/// The uplink by default: a `net_null` sink, which needs no privilege and no peer.
pub const DEFAULT_UPLINK: &str = "net_null0,no-rx=1";

/// The telemetry file prefix by default (`dpdk-telemetry.py -f ferrovia-vfd`).
pub const DEFAULT_FILE_PREFIX: &str = "ferrovia-vfd";
