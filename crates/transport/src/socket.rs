//! Unix socket helpers with actionable errors.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

/// Connects to `path`, explaining the likely cause and fix on failure. `role` names the
/// peer we expect there, `server_hint` the option that would make us listen instead.
pub fn connect(path: &str, role: &str, server_hint: &str) -> io::Result<UnixStream> {
    UnixStream::connect(path).map_err(|e| {
        let why = match e.kind() {
            io::ErrorKind::NotFound => "no such file",
            io::ErrorKind::ConnectionRefused => "connection refused (stale socket file?)",
            io::ErrorKind::PermissionDenied => "permission denied",
            _ => "",
        };
        let why = if why.is_empty() { e.to_string() } else { why.to_string() };
        io::Error::new(
            e.kind(),
            format!(
                "cannot connect to {path}: {why} (is the {role} running? use {server_hint} to listen instead)"
            ),
        )
    })
}

/// Listens on `path`. A stale socket file (nobody listening) is removed first; a live one or a
/// non-socket file is an error.
pub fn listen(path: &str) -> io::Result<UnixListener> {
    let p = Path::new(path);
    if let Ok(meta) = std::fs::symlink_metadata(p) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "cannot listen on {path}: a file that is not a socket is in the way; remove it or choose another path"
                ),
            ));
        }
        if UnixStream::connect(p).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("cannot listen on {path}: another process is already listening there"),
            ));
        }
        std::fs::remove_file(p).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot remove stale socket {path}: {e}"))
        })?;
    }
    if let Some(dir) = p.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "cannot listen on {path}: directory {} does not exist",
                dir.display()
            ),
        ));
    }
    UnixListener::bind(p)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {path}: {e}")))
}

/// Waits until `fd` is readable, hung up or `timeout` passes. Returns (readable, hung_up).
pub fn poll_fd(fd: &impl AsRawFd, timeout: Duration) -> (bool, bool) {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
    if n <= 0 {
        return (false, false);
    }
    let hup = p.revents & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR | libc::POLLNVAL) != 0;
    (p.revents & libc::POLLIN != 0, hup)
}

/// Connects to `path` without ever blocking (a unix socket's `connect` waits while the
/// listener's backlog is full; this one fails with `WouldBlock` instead). The stream is
/// returned in blocking mode. Errors explain like [`connect`].
pub fn connect_nonblocking(path: &str, role: &str, server_hint: &str) -> io::Result<UnixStream> {
    use std::os::fd::FromRawFd;
    let bytes = path.as_bytes();
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot connect to {path}: the path is longer than {} bytes; use a shorter socket path",
                addr.sun_path.len() - 1
            ),
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: plain syscall; the fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket we own.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    // SAFETY: `addr` is a valid sockaddr_un that outlives the call.
    let r = unsafe {
        libc::connect(
            fd,
            (&addr as *const libc::sockaddr_un).cast(),
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        let why = match e.kind() {
            io::ErrorKind::NotFound => "no such file".to_string(),
            io::ErrorKind::ConnectionRefused => "connection refused (stale socket file?)".into(),
            io::ErrorKind::PermissionDenied => "permission denied".into(),
            io::ErrorKind::WouldBlock => "the listener's backlog is full".into(),
            _ => e.to_string(),
        };
        return Err(io::Error::new(
            e.kind(),
            format!(
                "cannot connect to {path}: {why} (is the {role} running? use {server_hint} to listen instead)"
            ),
        ));
    }
    stream.set_nonblocking(false)?;
    Ok(stream)
}
