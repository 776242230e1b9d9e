//! The telemetry v2 socket: where it lives, the listener thread and one thread per client.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use crate::{Commands, TelemetryError};

/// The socket's file name (DPDK's `dpdk_telemetry.v2`).
pub const SOCKET_NAME: &str = "dpdk_telemetry.v2";
/// Most clients served at once (DPDK's `MAX_CONNECTIONS`); more are told so and closed.
pub const MAX_CLIENTS: usize = 10;
/// Longest request read (DPDK reads 1024 bytes).
const REQUEST_LEN: usize = 1024;
/// How often blocked threads look at the stop flag, in ms.
const POLL_MS: i32 = 100;

/// DPDK's runtime directory for `file_prefix` (`eal_create_runtime_dir`): `/var/run/dpdk/<prefix>`
/// for root, else `$XDG_RUNTIME_DIR/dpdk/<prefix>`, else `/tmp/dpdk/<prefix>`. This is where
/// `dpdk-telemetry.py -f <prefix>` looks.
pub fn runtime_dir(file_prefix: &str) -> PathBuf {
    // SAFETY: getuid has no preconditions and cannot fail.
    let base = if unsafe { libc::getuid() } == 0 {
        PathBuf::from("/var/run")
    } else {
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"))
    };
    base.join("dpdk").join(file_prefix)
}

/// Where and how to serve.
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    /// DPDK's `--file-prefix` (DPDK's default is `rte`).
    pub file_prefix: String,
    /// The directory of the socket; `None`: [`runtime_dir`] of the prefix.
    pub dir: Option<PathBuf>,
    /// Most clients at once.
    pub max_clients: usize,
    /// How to fix a prefix in use, in the application's words (ends the error message).
    pub in_use_hint: String,
}

impl TelemetryConfig {
    /// The socket for `file_prefix` in DPDK's runtime directory, [`MAX_CLIENTS`] clients.
    pub fn new(file_prefix: impl Into<String>) -> TelemetryConfig {
        TelemetryConfig {
            file_prefix: file_prefix.into(),
            dir: None,
            max_clients: MAX_CLIENTS,
            in_use_hint: "choose another --file-prefix, or --no-telemetry".into(),
        }
    }

    /// The socket path this configuration serves on.
    pub fn socket_path(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| runtime_dir(&self.file_prefix))
            .join(SOCKET_NAME)
    }
}

/// A running telemetry server. Dropping it stops its threads and removes the socket.
#[derive(Debug)]
pub struct TelemetryServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn io_err(what: &'static str, path: &Path) -> TelemetryError {
    TelemetryError::Io {
        what,
        path: path.to_path_buf(),
        source: std::io::Error::last_os_error(),
    }
}

fn sockaddr(path: &Path) -> Result<(libc::sockaddr_un, libc::socklen_t), TelemetryError> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: sockaddr_un is plain data; all zeroes is valid.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= sun.sun_path.len() {
        return Err(TelemetryError::PathTooLong {
            path: path.to_path_buf(),
        });
    }
    for (d, s) in sun.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok((
        sun,
        std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
    ))
}

fn seqpacket(path: &Path) -> Result<OwnedFd, TelemetryError> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io_err("create a socket for", path));
    }
    // SAFETY: fd is a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether a live process accepts connections on `path`.
fn in_use(path: &Path) -> bool {
    let Ok((sun, len)) = sockaddr(path) else {
        return false;
    };
    let Ok(fd) = seqpacket(path) else {
        return false;
    };
    // SAFETY: sun is a valid sockaddr_un of `len` bytes; fd is open.
    unsafe { libc::connect(fd.as_raw_fd(), (&raw const sun).cast(), len) == 0 }
}

fn bind_listen(path: &Path, cfg: &TelemetryConfig) -> Result<OwnedFd, TelemetryError> {
    let (sun, len) = sockaddr(path)?;
    let fd = seqpacket(path)?;
    // SAFETY: sun is a valid sockaddr_un of `len` bytes; fd is open.
    let bind = || unsafe { libc::bind(fd.as_raw_fd(), (&raw const sun).cast(), len) };
    if bind() < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EADDRINUSE) {
            return Err(TelemetryError::Io {
                what: "bind",
                path: path.into(),
                source: e,
            });
        }
        // As DPDK: a socket someone answers on is in use; a stale one is removed.
        if in_use(path) {
            return Err(TelemetryError::InUse {
                path: path.into(),
                prefix: cfg.file_prefix.clone(),
                hint: cfg.in_use_hint.clone(),
            });
        }
        let _ = std::fs::remove_file(path);
        if bind() < 0 {
            return Err(io_err("bind", path));
        }
    }
    // SAFETY: fd is a bound socket.
    if unsafe { libc::listen(fd.as_raw_fd(), 16) } < 0 {
        let e = io_err("listen on", path);
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(fd)
}

/// Waits up to [`POLL_MS`] for `fd` to be readable; true when it is (or has hung up).
fn readable(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, POLL_MS) > 0 }
}

fn send(fd: RawFd, msg: &str) -> bool {
    // SAFETY: msg is valid for msg.len() bytes; MSG_NOSIGNAL: no SIGPIPE on a closed peer.
    unsafe { libc::send(fd, msg.as_ptr().cast(), msg.len(), libc::MSG_NOSIGNAL) >= 0 }
}

impl TelemetryServer {
    /// Creates the socket (and its directory, mode 0700 as DPDK makes it) and starts serving
    /// `commands`. Fails when another live process serves the same socket.
    pub fn start(
        cfg: &TelemetryConfig,
        commands: Arc<Commands>,
    ) -> Result<TelemetryServer, TelemetryError> {
        if cfg.file_prefix.is_empty() || cfg.file_prefix.contains('/') {
            return Err(TelemetryError::BadPrefix {
                prefix: cfg.file_prefix.clone(),
            });
        }
        let path = cfg.socket_path();
        if let Some(dir) = path.parent() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| TelemetryError::Io {
                    what: "create directory",
                    path: dir.into(),
                    source,
                })?;
        }
        let listener = bind_listen(&path, cfg)?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let max = cfg.max_clients;
        let thread = std::thread::Builder::new()
            .name("telemetry".into())
            .spawn(move || listen(listener, commands, st, max))
            .map_err(|source| TelemetryError::Io {
                what: "start the thread serving",
                path: path.clone(),
                source,
            })?;
        log::debug!("telemetry: serving DPDK telemetry v2 on {}", path.display());
        Ok(TelemetryServer {
            path,
            stop,
            thread: Some(thread),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TelemetryServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn listen(listener: OwnedFd, commands: Arc<Commands>, stop: Arc<AtomicBool>, max: usize) {
    let clients = Arc::new(AtomicUsize::new(0));
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        threads.retain(|t| !t.is_finished());
        if !readable(listener.as_raw_fd()) {
            continue;
        }
        // SAFETY: accept on our listening socket; null address pointers are allowed.
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            continue;
        }
        // SAFETY: a new descriptor we own.
        let client = unsafe { OwnedFd::from_raw_fd(fd) };
        if clients.load(Ordering::Relaxed) >= max {
            log::warn!("telemetry: refused a client: {max} clients are connected already");
            send(
                client.as_raw_fd(),
                &format!(
                    "{{\"error\": \"too many telemetry clients: {max} are connected, the most this process serves; close one and retry\"}}"
                ),
            );
            continue;
        }
        clients.fetch_add(1, Ordering::Relaxed);
        let (c, s, n) = (commands.clone(), stop.clone(), clients.clone());
        let spawned = std::thread::Builder::new()
            .name("telemetry-client".into())
            .spawn(move || {
                serve(&client, &c, &s);
                n.fetch_sub(1, Ordering::Relaxed);
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                clients.fetch_sub(1, Ordering::Relaxed);
                log::warn!("telemetry: cannot start a client thread: {e}");
            }
        }
    }
    for t in threads {
        let _ = t.join();
    }
}

fn serve(client: &OwnedFd, commands: &Commands, stop: &AtomicBool) {
    let fd = client.as_raw_fd();
    if !send(fd, &commands.greeting()) {
        return;
    }
    let mut buf = [0u8; REQUEST_LEN];
    while !stop.load(Ordering::Relaxed) {
        if !readable(fd) {
            continue;
        }
        // SAFETY: buf is valid for its length; one SEQPACKET message at most is read.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len() - 1, 0) };
        if n <= 0 {
            return;
        }
        let req = String::from_utf8_lossy(&buf[..n as usize]);
        let reply = commands.handle(&req);
        if !send(fd, &reply) {
            return;
        }
    }
}
