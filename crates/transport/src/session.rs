//! One vhost-user backend session, driven by the [`reactor`](crate::reactor) without blocking.
//!
//! rust-vmm's `BackendReqHandler` reads a message with blocking calls and writes its reply the
//! same way. [`BackendSession::service`] therefore hands it a message only when the whole
//! message is already in the socket's receive queue (`FIONREAD`), and only when the socket's
//! send queue has room for any reply (`SIOCOUTQ` against `SO_SNDBUF`). Otherwise it returns
//! [`Service::Partial`] or [`Service::Stalled`] and the caller sets a deadline: a peer that
//! sends half a message, or stops reading our replies, loses its session when the deadline
//! passes, and nobody else waits for it.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use vhost::vhost_user::BackendReqHandler;
use vhost::vhost_user::Error as VuError;

use crate::backend::{BackendHandler, DeviceShared};

/// Largest message body we let rust-vmm read (its own limit is 4096 bytes plus the header).
const MAX_BODY: usize = 4096 + 64;
/// Room the send queue must have before a request is handled (replies are far smaller).
const REPLY_ROOM: usize = 4096;
/// Most messages handled per readiness event, so one busy peer cannot hog the loop.
const MESSAGES_PER_EVENT: usize = 64;

/// What one call to [`BackendSession::service`] ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum Service {
    /// Nothing more to read now.
    Idle,
    /// Part of a message is queued; wait for the rest (with a deadline).
    Partial,
    /// The peer is not reading our replies; wait until it does (with a deadline).
    Stalled,
    /// More complete messages may be queued than one event handles; call again soon.
    Busy,
    /// The peer hung up.
    Closed,
    /// The session must end because of a protocol error (already logged and counted).
    Failed(String),
}

/// A vhost-user backend session on one connected stream.
pub struct BackendSession {
    name: String,
    stream: UnixStream,
    handler: Arc<Mutex<BackendHandler>>,
    req: BackendReqHandler<Mutex<BackendHandler>>,
    shared: Arc<DeviceShared>,
}

impl std::fmt::Debug for BackendSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendSession")
            .field("name", &self.name)
            .finish()
    }
}

fn ioctl_int(fd: RawFd, req: libc::c_ulong) -> usize {
    let mut v: libc::c_int = 0;
    // SAFETY: FIONREAD/SIOCOUTQ write one int into `v`, which outlives the call.
    let r = unsafe { libc::ioctl(fd, req, &mut v) };
    if r < 0 { 0 } else { v.max(0) as usize }
}

fn sndbuf(fd: RawFd) -> usize {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_SNDBUF writes one int into `v`; `len` says how big it is.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 { 0 } else { v.max(0) as usize }
}

/// True when the peer has shut down its sending side (nothing more will arrive).
fn peer_hung_up(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

fn peek_header(fd: RawFd) -> Option<[u8; 12]> {
    let mut h = [0u8; 12];
    loop {
        // SAFETY: peeking into a 12-byte buffer we own.
        let r = unsafe {
            libc::recv(
                fd,
                h.as_mut_ptr().cast(),
                h.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return (r == 12).then_some(h);
    }
}

impl BackendSession {
    /// Starts serving a connected frontend for the device whose state is `shared`.
    pub fn new(name: &str, stream: UnixStream, shared: Arc<DeviceShared>) -> std::io::Result<Self> {
        // Blocking mode: rust-vmm's reads and writes happen only when they cannot block.
        stream.set_nonblocking(false)?;
        let handler = Arc::new(Mutex::new(BackendHandler::new(name, shared.clone())));
        let req = BackendReqHandler::from_stream(stream.try_clone()?, handler.clone());
        shared.sessions.fetch_add(1, Ordering::Relaxed);
        Ok(BackendSession {
            name: name.to_string(),
            stream,
            handler,
            req,
            shared,
        })
    }

    /// The connection's fd, to watch.
    pub fn raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// Handles every complete message queued now (up to a limit).
    pub fn service(&mut self) -> Service {
        let fd = self.stream.as_raw_fd();
        for _ in 0..MESSAGES_PER_EVENT {
            let queued = ioctl_int(fd, libc::FIONREAD);
            if queued == 0 {
                // Readable with nothing queued means the peer hung up.
                let mut b = [0u8; 1];
                // SAFETY: peeking one byte into a buffer we own.
                let r = unsafe {
                    libc::recv(
                        fd,
                        b.as_mut_ptr().cast(),
                        1,
                        libc::MSG_PEEK | libc::MSG_DONTWAIT,
                    )
                };
                return if r == 0 {
                    Service::Closed
                } else {
                    Service::Idle
                };
            }
            if queued < 12 {
                // Part of a header; if the peer has hung up it can never come whole.
                return if peer_hung_up(fd) {
                    Service::Closed
                } else {
                    Service::Partial
                };
            }
            let Some(h) = peek_header(fd) else {
                return Service::Partial;
            };
            let size = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes")) as usize;
            if size <= MAX_BODY && queued < 12 + size {
                if peer_hung_up(fd) {
                    return self.fail(format!(
                        "the frontend hung up {} bytes into a {}-byte message",
                        queued,
                        12 + size
                    ));
                }
                return Service::Partial;
            }
            let (outq, room) = (ioctl_int(fd, libc::TIOCOUTQ), sndbuf(fd));
            if outq + REPLY_ROOM > room {
                return Service::Stalled;
            }
            match self.handle_one() {
                Service::Idle => {}
                other => return other,
            }
        }
        Service::Busy
    }

    fn handle_one(&mut self) -> Service {
        match backend_req_fd(&self.name, &self.stream, &self.handler) {
            Ok(true) => return Service::Idle,
            Ok(false) => {}
            Err(e) => {
                self.shared.bad_messages.fetch_add(1, Ordering::Relaxed);
                return self.fail(e);
            }
        }
        match early_enable(&self.name, &self.stream, &self.handler) {
            Ok(true) => {
                self.handler
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .report_events();
                return Service::Idle;
            }
            Ok(false) => {}
            Err(e) => return self.fail(e),
        }
        let r = self.req.handle_request();
        self.handler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .report_events();
        match r {
            Ok(()) => Service::Idle,
            Err(VuError::Disconnected) | Err(VuError::PartialMessage) => Service::Closed,
            Err(VuError::SocketBroken(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Service::Closed
            }
            Err(e) => self.fail(e.to_string()),
        }
    }

    fn fail(&self, why: String) -> Service {
        self.shared.sessions_failed.fetch_add(1, Ordering::Relaxed);
        log::error!(
            "{}: vhost-user protocol error: {why}; closing the session",
            self.name
        );
        Service::Failed(why)
    }

    /// Ends the session whose peer truncated a shared memory region after we mapped it (the
    /// SIGBUS handler has already replaced the region with zero pages and counted the fault in
    /// [`DeviceShared::memory_faults`]); counted as a failed session.
    pub fn memory_fault(&self) {
        self.shared.sessions_failed.fetch_add(1, Ordering::Relaxed);
        log::error!(
            "{}: peer truncated a shared memory region; session ended (SIGBUS recovered with \
             zero pages; {} memory faults on this port so far)",
            self.name,
            self.shared.memory_faults.faults()
        );
    }

    /// Ends the session for a peer that missed its deadline; counted as a failed session.
    pub fn timed_out(&self, what: &str) {
        self.shared.sessions_failed.fetch_add(1, Ordering::Relaxed);
        log::error!(
            "{}: the vhost-user frontend {what} for too long; closing the session",
            self.name
        );
    }
}

impl Drop for BackendSession {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        let mut h = self.handler.lock().unwrap_or_else(|p| p.into_inner());
        h.reset();
        h.report_events();
    }
}

/// Header flags of a vhost-user message.
const HDR_FLAG_VERSION: u32 = 0x1;
const HDR_FLAG_REPLY: u32 = 0x4;
const HDR_FLAG_NEED_REPLY: u32 = 0x8;

/// The queued message's header as `(request, flags, size)`, without taking it.
fn peek_request(sock: &UnixStream) -> Option<(u32, u32, u32)> {
    let h = peek_header(sock.as_raw_fd())?;
    let word = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes"));
    Some((word(0), word(4), word(8)))
}

/// Answers request `req` with the u64 status reply (0: done, 1: failed) when its `flags` ask
/// for one and `REPLY_ACK` was negotiated.
fn ack_if_asked(
    sock: &UnixStream,
    req: u32,
    flags: u32,
    reply_ack: bool,
    failed: bool,
    what: &str,
) -> Result<(), String> {
    use std::io::Write;
    if flags & HDR_FLAG_NEED_REPLY == 0 || !reply_ack {
        return Ok(());
    }
    let mut reply = [0u8; 20];
    reply[..4].copy_from_slice(&req.to_le_bytes());
    reply[4..8].copy_from_slice(&(HDR_FLAG_VERSION | HDR_FLAG_REPLY).to_le_bytes());
    reply[8..12].copy_from_slice(&8u32.to_le_bytes());
    reply[12..].copy_from_slice(&u64::from(failed).to_le_bytes());
    let mut s = sock;
    s.write_all(&reply)
        .map_err(|e| format!("replying to {what}: {e}"))
}

/// QEMU sends `SET_VRING_ENABLE` before `SET_FEATURES`; rust-vmm's request handler refuses
/// that (it checks the acked features). When the next message is such a request, it is read
/// and applied here instead. Returns true if it consumed a message. Called only when the whole
/// message is queued and the send queue has room, so its reads and writes do not block.
fn early_enable(
    name: &str,
    sock: &UnixStream,
    handler: &Mutex<BackendHandler>,
) -> Result<bool, String> {
    use std::io::Read;
    const SET_VRING_ENABLE: u32 = 18;
    let Some((req, flags, size)) = peek_request(sock) else {
        return Ok(false);
    };
    let mut g = handler.lock().unwrap_or_else(|p| p.into_inner());
    if req != SET_VRING_ENABLE || size != 8 || !g.enable_needs_bypass() {
        return Ok(false);
    }
    let mut msg = [0u8; 20];
    let mut s = sock;
    s.read_exact(&mut msg)
        .map_err(|e| format!("reading SET_VRING_ENABLE: {e}"))?;
    let index = u32::from_le_bytes(msg[12..16].try_into().expect("4 bytes"));
    let num = u32::from_le_bytes(msg[16..20].try_into().expect("4 bytes"));
    let res = g.early_vring_enable(index, num);
    ack_if_asked(
        sock,
        req,
        flags,
        g.reply_ack(),
        res.is_err(),
        "SET_VRING_ENABLE",
    )?;
    log::debug!("{name}: early SET_VRING_ENABLE handled");
    res.map(|_| true).map_err(|e| e.to_string())
}

/// `SET_BACKEND_REQ_FD` is read here, not by rust-vmm, so that the channel's socket is ours
/// (rust-vmm wraps it in a `Backend` that waits for replies with blocking reads, and does not
/// give the socket back): the fd must be one connected unix stream socket; it is kept
/// non-blocking for [`DeviceShared::notify_config_change`]. Only taken when the frontend acked
/// `BACKEND_REQ` and the message has no body (as the protocol says); otherwise rust-vmm
/// refuses it. Returns true if it consumed a message.
fn backend_req_fd(
    name: &str,
    sock: &UnixStream,
    handler: &Mutex<BackendHandler>,
) -> Result<bool, String> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    use vmm_sys_util::sock_ctrl_msg::ScmSocket;
    const SET_BACKEND_REQ_FD: u32 = 21;
    let Some((req, flags, size)) = peek_request(sock) else {
        return Ok(false);
    };
    let mut g = handler.lock().unwrap_or_else(|p| p.into_inner());
    if req != SET_BACKEND_REQ_FD || size != 0 || !g.backend_req_acked() {
        return Ok(false);
    }
    let mut hdr = [0u8; 12];
    let (n, file) = sock
        .recv_with_fd(&mut hdr)
        .map_err(|e| format!("reading SET_BACKEND_REQ_FD: {e}"))?;
    if n != hdr.len() {
        return Err(format!(
            "SET_BACKEND_REQ_FD: read {n} of its 12 bytes; the frontend broke the message"
        ));
    }
    let Some(file) = file else {
        return Err(
            "SET_BACKEND_REQ_FD carries no fd; the frontend must send one end of a unix \
             socket pair"
                .into(),
        );
    };
    let fd = file.into_raw_fd();
    // SAFETY: `fd` is a fresh descriptor we received and own; the UnixStream owns it now
    // (and closes it if it is refused below).
    let ch = unsafe { UnixStream::from_raw_fd(fd) };
    if !is_unix_stream(ch.as_raw_fd()) {
        return Err(
            "SET_BACKEND_REQ_FD: the fd is not a unix stream socket; the frontend must send \
             one end of a unix socket pair"
                .into(),
        );
    }
    let res = g.set_backend_channel(ch);
    ack_if_asked(
        sock,
        req,
        flags,
        g.reply_ack(),
        res.is_err(),
        "SET_BACKEND_REQ_FD",
    )?;
    log::debug!("{name}: SET_BACKEND_REQ_FD handled");
    res.map(|_| true).map_err(|e| e.to_string())
}

/// True when `fd` is a unix-domain stream socket.
fn is_unix_stream(fd: RawFd) -> bool {
    let opt = |name: libc::c_int| {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the option writes one int into `v`; `len` says how big it is.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (r == 0).then_some(v)
    };
    opt(libc::SO_TYPE) == Some(libc::SOCK_STREAM) && opt(libc::SO_DOMAIN) == Some(libc::AF_UNIX)
}
