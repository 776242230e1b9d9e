//! A telemetry v2 client: connects to a process's socket, reads the greeting, sends requests.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// A connection to a telemetry v2 socket.
#[derive(Debug)]
pub struct TelemetryClient {
    fd: OwnedFd,
    greeting: String,
}

impl TelemetryClient {
    /// Connects to the socket at `path` and reads the greeting.
    pub fn connect(path: &Path) -> io::Result<TelemetryClient> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_os_str().as_bytes();
        // SAFETY: a zeroed sockaddr_un is a valid value.
        let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        if bytes.len() >= sun.sun_path.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("socket path {} is too long", path.display()),
            ));
        }
        sun.sun_family = libc::AF_UNIX as _;
        for (d, s) in sun.sun_path.iter_mut().zip(bytes) {
            *d = *s as _;
        }
        // SAFETY: a plain socket call.
        let fd =
            unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is new and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sun is a valid address of the size given.
        let r = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&raw const sun).cast(),
                std::mem::size_of_val(&sun) as _,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut c = TelemetryClient {
            fd,
            greeting: String::new(),
        };
        c.greeting = c.recv()?;
        Ok(c)
    }

    /// The greeting the server sent.
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    fn recv(&self) -> io::Result<String> {
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: buf is valid for its length; one message is read.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the telemetry server closed the connection",
                ));
            }
            return Ok(String::from_utf8_lossy(&buf[..n as usize]).into_owned());
        }
    }

    /// Sends one request (`/cmd` or `/cmd,params`) and returns the reply's text.
    pub fn ask(&self, request: &str) -> io::Result<String> {
        loop {
            // SAFETY: request is valid for its length.
            let n = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    request.as_ptr().cast(),
                    request.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            break;
        }
        self.recv()
    }
}
