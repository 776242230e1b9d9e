//! The vhost port's control side, served by the process's reactor: accepting (or connecting
//! to) the frontend, handing complete messages to the backend handler, and ending a session
//! whose peer stalls or truncates memory it shared with us (the SIGBUS handler of
//! `ferrovia_virtqueue::peer_fault` signals the device's fault eventfd, watched here).

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrovia_transport::backend::DeviceShared;
use ferrovia_transport::reactor::{Ctx, Source};
use ferrovia_transport::session::{BackendSession, Service};

use crate::shared::{RECONNECT_EVERY, Retry};

/// How long a peer may take to finish a message it started, or to make room for our reply.
pub(crate) const MESSAGE_LIMIT: Duration = Duration::from_secs(2);

const EV_SESSION: u32 = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;

/// What the source's deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Nothing,
    Reconnect,
    Partial,
    Stalled,
    Busy,
}

/// One vhost port's sockets.
pub(crate) struct VhostSource {
    pub(crate) name: String,
    pub(crate) iface: String,
    pub(crate) listener: Option<UnixListener>,
    pub(crate) shared: Arc<DeviceShared>,
    pub(crate) session: Option<BackendSession>,
    wait: Wait,
    retry: Retry,
}

impl VhostSource {
    /// A source listening on `listener`, or (None) connecting to `iface` as a client.
    pub(crate) fn new(
        name: String,
        iface: String,
        listener: Option<UnixListener>,
        shared: Arc<DeviceShared>,
    ) -> VhostSource {
        if let Some(l) = &listener {
            let _ = l.set_nonblocking(true);
        }
        VhostSource {
            name,
            iface,
            listener,
            shared,
            session: None,
            wait: Wait::Nothing,
            retry: Retry::default(),
        }
    }

    fn listener_fd(&self) -> Option<RawFd> {
        self.listener.as_ref().map(|l| l.as_raw_fd())
    }

    /// The peer's memory faulted (a region truncated after we mapped it): the handler has
    /// zeroed it; end the session so the peer has to set up again.
    fn memory_fault(&mut self, cx: &mut Ctx<'_>) {
        if self.shared.memory_faults.take() == 0 {
            return;
        }
        if let Some(s) = &self.session {
            s.memory_fault();
            self.end(cx);
        }
    }

    fn begin(&mut self, cx: &mut Ctx<'_>, stream: UnixStream) {
        let s = match BackendSession::new(&self.name, stream, self.shared.clone()) {
            Ok(s) => s,
            Err(e) => {
                log::error!("{}: cannot start a vhost-user session: {e}", self.name);
                return;
            }
        };
        if let Err(e) = cx.watch(s.raw_fd(), EV_SESSION) {
            log::error!("{}: cannot watch the session socket: {e}", self.name);
            return;
        }
        if let Some(l) = self.listener_fd() {
            // One frontend at a time; the next waits in the backlog.
            cx.unwatch(l);
        }
        log::info!(
            "{}: vhost-user frontend connected on {}",
            self.name,
            self.iface
        );
        self.session = Some(s);
        self.wait = Wait::Nothing;
        cx.set_deadline(None);
        self.service(cx);
    }

    fn end(&mut self, cx: &mut Ctx<'_>) {
        if let Some(s) = self.session.take() {
            cx.unwatch(s.raw_fd());
            drop(s);
            log::info!(
                "{}: vhost-user session on {} ended; link down",
                self.name,
                self.iface
            );
        }
        cx.set_deadline(None);
        self.wait = Wait::Nothing;
        match self.listener_fd() {
            Some(l) => {
                if let Err(e) = cx.watch(l, libc::EPOLLIN as u32) {
                    log::error!("{}: cannot watch the listening socket: {e}", self.name);
                }
            }
            None => {
                self.wait = Wait::Reconnect;
                cx.set_deadline(Some(Instant::now() + RECONNECT_EVERY));
            }
        }
    }

    fn service(&mut self, cx: &mut Ctx<'_>) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let r = s.service();
        match r {
            Service::Idle => {
                self.wait = Wait::Nothing;
                cx.set_deadline(None);
            }
            Service::Partial | Service::Stalled => {
                let w = if r == Service::Partial {
                    Wait::Partial
                } else {
                    Wait::Stalled
                };
                if self.wait != w {
                    self.wait = w;
                    cx.set_deadline(Some(Instant::now() + MESSAGE_LIMIT));
                }
            }
            Service::Busy => {
                self.wait = Wait::Busy;
                cx.set_deadline(Some(Instant::now()));
            }
            Service::Closed | Service::Failed(_) => self.end(cx),
        }
    }

    fn connect(&mut self, cx: &mut Ctx<'_>) {
        let role = "vhost-user frontend (QEMU or virtio-user server=1)";
        match self
            .retry
            .attempt(cx, &self.name, &self.iface, role, "client=0")
        {
            Some(s) => self.begin(cx, s),
            None => self.wait = Wait::Reconnect,
        }
    }
}

impl Source for VhostSource {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        if let Some(fd) = self.shared.memory_faults.fd()
            && let Err(e) = cx.watch(fd, libc::EPOLLIN as u32)
        {
            log::error!("{}: cannot watch peer memory faults: {e}", self.name);
        }
        match self.listener_fd() {
            Some(l) => {
                if let Err(e) = cx.watch(l, libc::EPOLLIN as u32) {
                    log::error!("{}: cannot watch the listening socket: {e}", self.name);
                }
            }
            None => self.connect(cx),
        }
    }

    fn ready(&mut self, cx: &mut Ctx<'_>, fd: RawFd, _events: u32) {
        if Some(fd) == self.shared.memory_faults.fd() {
            self.memory_fault(cx);
        } else if Some(fd) == self.listener_fd() {
            if self.session.is_some() {
                return;
            }
            let accepted = self.listener.as_ref().map(|l| l.accept());
            match accepted {
                Some(Ok((s, _))) => self.begin(cx, s),
                Some(Err(e)) if e.kind() != std::io::ErrorKind::WouldBlock => {
                    log::warn!("{}: accept on {} failed: {e}", self.name, self.iface);
                }
                _ => {}
            }
        } else if self.session.as_ref().is_some_and(|s| s.raw_fd() == fd) {
            self.service(cx);
        }
    }

    fn timeout(&mut self, cx: &mut Ctx<'_>) {
        match self.wait {
            Wait::Reconnect => self.connect(cx),
            Wait::Partial | Wait::Stalled => {
                if let Some(s) = &self.session {
                    s.timed_out(if self.wait == Wait::Partial {
                        "left a message half-sent"
                    } else {
                        "did not read our replies"
                    });
                }
                self.end(cx);
            }
            Wait::Busy => self.service(cx),
            Wait::Nothing => {}
        }
    }

    fn stop(&mut self) {
        self.session = None;
    }
}
