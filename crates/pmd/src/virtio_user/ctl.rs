//! The virtio-user port's control side, served by the process's reactor: listening or
//! connecting (and reconnecting), the non-blocking vhost-user handshake with a deadline per
//! reply, and pausing and resuming the rings when the backend comes and goes.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use ferrovia_ethdev::{EventSink, PortEventKind};
use ferrovia_memory::registry;
use ferrovia_transport::frontend::{
    FrontendError, Handshake, Progress, Session, SessionEvent, VringSpec,
};
use ferrovia_transport::reactor::{Ctx, Reactor, Source, SourceId};
use ferrovia_virtqueue::driver::DriverQueue;
use vmm_sys_util::eventfd::EventFd;

use super::backend::{Backend, BackendKind};
use super::{LinkCfg, Opts, VringShared};
use crate::shared::{RECONNECT_EVERY, Retry};

/// How long the backend may take to answer one handshake request.
pub(crate) const REPLY_LIMIT: Duration = Duration::from_secs(3);

const EV_READ: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;

enum State {
    /// Server mode, waiting for a backend; or a client that gave up after its first attempt.
    Idle,
    /// Client mode, waiting to retry.
    Reconnect,
    Handshake(Box<Handshake>),
    Up(Box<Session>),
}

/// The vhost-user backend of a port: its source on the process's control loop, which owns
/// the socket, the handshake and reconnections.
pub(crate) struct UserBackend {
    source: Option<SourceId>,
    link_up: Arc<AtomicBool>,
    bad_messages: Arc<AtomicU64>,
}

impl UserBackend {
    /// Registers `source` on the control loop.
    pub(crate) fn add(source: VirtioUserSource) -> UserBackend {
        let link_up = source.link_up.clone();
        let bad_messages = source.bad_messages.clone();
        UserBackend {
            source: Some(Reactor::global().add(Box::new(source))),
            link_up,
            bad_messages,
        }
    }
}

impl Backend for UserBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::VhostUser
    }

    fn link_up(&self) -> bool {
        self.link_up.load(Ordering::Acquire)
    }

    fn bad_messages(&self) -> u64 {
        self.bad_messages.load(Ordering::Relaxed)
    }

    fn shutdown(&mut self) {
        if let Some(id) = self.source.take() {
            // Returns once the control loop has stopped the source, which pauses every vring.
            Reactor::global().remove(id);
        }
    }
}

/// One virtio-user port's socket and rings, as the control loop sees them.
pub(crate) struct VirtioUserSource {
    pub(crate) name: String,
    pub(crate) opts: Opts,
    pub(crate) pool: ferrovia_memory::Mempool,
    pub(crate) qbytes: usize,
    pub(crate) area_base: u64,
    pub(crate) queue_size: u16,
    pub(crate) vrings: Arc<Vec<Arc<VringShared>>>,
    pub(crate) kicks: Vec<EventFd>,
    pub(crate) calls: Vec<EventFd>,
    pub(crate) link_up: Arc<AtomicBool>,
    pub(crate) negotiated: Arc<Mutex<Option<u64>>>,
    pub(crate) listener: Option<UnixListener>,
    /// The first connection (client mode): the opener waits for its outcome.
    pub(crate) first: Option<(UnixStream, mpsc::Sender<Result<(), String>>)>,
    pub(crate) first_reply: Option<mpsc::Sender<Result<(), String>>>,
    pub(crate) events: Option<(EventSink, u16)>,
    /// Messages from the backend that were refused (bad GET_CONFIG replies, bad backend
    /// channel messages).
    pub(crate) bad_messages: Arc<AtomicU64>,
    /// The link last reported to `events`.
    reported_link: bool,
    /// The backend channel's fd being watched.
    channel_fd: Option<RawFd>,
    state: State,
    retry: Retry,
    /// The control queue (`cq=1`), sent as vring `2 * queues` when the backend agreed to
    /// `CTRL_VQ`.
    pub(crate) ctrl: Option<Arc<super::CtrlVq>>,
}

impl VirtioUserSource {
    /// A source for a port whose rings and fds are ready.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: String,
        opts: Opts,
        pool: ferrovia_memory::Mempool,
        qbytes: usize,
        area_base: u64,
        queue_size: u16,
        vrings: Arc<Vec<Arc<VringShared>>>,
        kicks: Vec<EventFd>,
        calls: Vec<EventFd>,
        link_up: Arc<AtomicBool>,
        negotiated: Arc<Mutex<Option<u64>>>,
        listener: Option<UnixListener>,
        first: Option<(UnixStream, mpsc::Sender<Result<(), String>>)>,
        events: Option<(EventSink, u16)>,
    ) -> VirtioUserSource {
        if let Some(l) = &listener {
            let _ = l.set_nonblocking(true);
        }
        VirtioUserSource {
            name,
            opts,
            pool,
            qbytes,
            area_base,
            queue_size,
            vrings,
            kicks,
            calls,
            link_up,
            negotiated,
            listener,
            first,
            first_reply: None,
            events,
            bad_messages: Arc::default(),
            reported_link: false,
            channel_fd: None,
            state: State::Idle,
            retry: Retry::default(),
            ctrl: None,
        }
    }

    /// Sets the link the port reports, emitting its event when it changes.
    fn set_link(&mut self, up: bool) {
        self.link_up.store(up, Ordering::Release);
        if self.reported_link == up {
            return;
        }
        self.reported_link = up;
        if let Some((sink, port)) = &self.events {
            sink.emit(
                *port,
                if up {
                    PortEventKind::LinkUp
                } else {
                    PortEventKind::LinkDown
                },
            );
        }
    }

    fn emit_queues(&self, up: bool) {
        let Some((sink, port)) = &self.events else {
            return;
        };
        for q in 0..self.opts.queues {
            for rx in [true, false] {
                sink.emit(
                    *port,
                    PortEventKind::QueueState {
                        queue: q,
                        rx,
                        enabled: up,
                    },
                );
            }
        }
    }

    fn pause_all(&self) {
        self.link_up.store(false, Ordering::Release);
        for v in self.vrings.iter() {
            v.cfg.publish(None);
        }
    }

    fn stream_fd(&self) -> Option<RawFd> {
        match &self.state {
            State::Handshake(h) => Some(h.raw_fd()),
            State::Up(s) => Some(s.raw_fd()),
            _ => None,
        }
    }

    /// Moves the session's refusals into the port's counter.
    fn count_bad(&mut self) {
        if let State::Up(s) = &mut self.state {
            let n = std::mem::take(&mut s.bad_messages);
            if n > 0 {
                self.bad_messages.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Stops watching the backend channel if the session closed it.
    fn sync_channel(&mut self, cx: &mut Ctx<'_>) {
        let now = match &self.state {
            State::Up(s) => s.channel_fd(),
            _ => None,
        };
        if self.channel_fd != now {
            if let Some(fd) = self.channel_fd.take() {
                cx.unwatch(fd);
            }
            if let Some(fd) = now {
                match cx.watch(fd, EV_READ) {
                    Ok(()) => self.channel_fd = Some(fd),
                    Err(e) => log::error!(
                        "{}: cannot watch the backend channel ({e}); link changes will not be seen",
                        self.name
                    ),
                }
            }
        }
    }

    /// What the session saw on either of its sockets.
    fn on_session_event(&mut self, cx: &mut Ctx<'_>, ev: SessionEvent) {
        self.count_bad();
        match ev {
            SessionEvent::Link(up) => {
                log::info!(
                    "{}: the vhost-user backend at {} says link {}",
                    self.name,
                    self.opts.path,
                    if up { "up" } else { "down" }
                );
                self.set_link(up);
            }
            SessionEvent::Asked => {}
            SessionEvent::Nothing => {}
        }
        let pending = matches!(&self.state, State::Up(s) if s.config_pending());
        cx.set_deadline(pending.then(|| Instant::now() + REPLY_LIMIT));
        self.sync_channel(cx);
    }

    fn begin(&mut self, cx: &mut Ctx<'_>, stream: UnixStream) {
        match Handshake::start(stream, &self.opts.path, self.opts.want, self.opts.queues) {
            Ok(h) => {
                if let Err(e) = cx.watch(h.raw_fd(), EV_READ) {
                    self.failed(cx, format!("{}: cannot watch the socket: {e}", self.name));
                    return;
                }
                if let Some(l) = &self.listener {
                    cx.unwatch(l.as_raw_fd());
                }
                cx.set_deadline(Some(Instant::now() + REPLY_LIMIT));
                self.state = State::Handshake(Box::new(h));
            }
            Err(e) => self.failed(cx, e.to_string()),
        }
    }

    /// Ends the current connection and goes back to waiting.
    fn drop_connection(&mut self, cx: &mut Ctx<'_>) {
        if let Some(fd) = self.stream_fd() {
            cx.unwatch(fd);
        }
        if let Some(fd) = self.channel_fd.take() {
            cx.unwatch(fd);
        }
        let was_up = matches!(self.state, State::Up(_));
        self.state = State::Idle;
        self.pause_all();
        if was_up {
            self.set_link(false);
            self.emit_queues(false);
        }
        cx.set_deadline(None);
        if let Some(l) = &self.listener {
            if let Err(e) = cx.watch(l.as_raw_fd(), libc::EPOLLIN as u32) {
                log::error!("{}: cannot watch the listening socket: {e}", self.name);
            }
        } else {
            self.state = State::Reconnect;
            cx.set_deadline(Some(Instant::now() + RECONNECT_EVERY));
        }
    }

    fn failed(&mut self, cx: &mut Ctx<'_>, why: String) {
        log::error!("{}: {why}", self.name);
        if let Some(tx) = self.first_reply.take() {
            // The opener reports this and drops the port; stay idle until then.
            let _ = tx.send(Err(why));
            if let Some(fd) = self.stream_fd() {
                cx.unwatch(fd);
            }
            self.state = State::Idle;
            self.pause_all();
            cx.set_deadline(None);
            return;
        }
        self.drop_connection(cx);
    }

    fn on_handshake(&mut self, cx: &mut Ctx<'_>) {
        let State::Handshake(h) = &mut self.state else {
            return;
        };
        let r = h.on_readable();
        let r = match r {
            Ok(Progress::Negotiated { features }) => self.set_up_rings(features),
            other => other,
        };
        match r {
            Ok(Progress::Ready) => self.go_up(cx),
            Ok(_) => cx.set_deadline(Some(Instant::now() + REPLY_LIMIT)),
            Err(e) => self.failed(cx, e.to_string()),
        }
    }

    /// Features are agreed: prepares every ring and sends the memory table and vrings.
    fn set_up_rings(&mut self, features: u64) -> Result<Progress, FrontendError> {
        let proto = |what: String| FrontendError::Protocol {
            path: self.opts.path.clone(),
            what,
        };
        {
            let mut n = self.negotiated.lock().unwrap_or_else(|p| p.into_inner());
            match *n {
                Some(prev) if prev != features => {
                    return Err(proto(format!(
                        "the backend now negotiates features {features:#x}, but buffers in flight were set up for {prev:#x}; restart this port"
                    )));
                }
                _ => *n = Some(features),
            }
        }
        self.pause_all();
        let mut specs = Vec::with_capacity(self.vrings.len());
        let mut cache = self.pool.cache();
        for (i, v) in self.vrings.iter().enumerate() {
            // SAFETY: every vring was paused by pause_all just above.
            let q = unsafe { v.queue() };
            let base = q.prepare_connect(&mut cache, i % 2 == 0, &ferrovia_virtqueue::NoSink);
            let start = self.area_base + (i * self.qbytes) as u64;
            let a = DriverQueue::addrs(start, self.queue_size, self.opts.packed);
            specs.push(VringSpec {
                size: self.queue_size,
                desc: a.desc,
                avail: a.avail,
                used: a.used,
                base,
            });
        }
        drop(cache);
        if let Some(c) = &self.ctrl
            && features & (1 << ferrovia_ethdev::ctrl::F_CTRL_VQ) != 0
        {
            let drv = c.drv.lock().unwrap_or_else(|p| p.into_inner());
            specs.push(VringSpec {
                size: super::CTRL_QUEUE_SIZE,
                desc: c.addrs.desc,
                avail: c.addrs.avail,
                used: c.addrs.used,
                base: drv.next_avail(),
            });
        }
        let regions = registry::snapshot_owned()
            .map_err(|e| proto(format!("cannot duplicate memory region fds: {e}")))?;
        let (infos, fds): (Vec<_>, Vec<OwnedFd>) = regions.into_iter().unzip();
        let kicks: Vec<RawFd> = self.kicks.iter().map(|k| k.as_raw_fd()).collect();
        let calls: Vec<RawFd> = self.calls.iter().map(|c| c.as_raw_fd()).collect();
        let State::Handshake(h) = &mut self.state else {
            unreachable!("set-up runs during a handshake");
        };
        h.setup(&infos, fds, &specs, &kicks, &calls)
    }

    fn go_up(&mut self, cx: &mut Ctx<'_>) {
        let State::Handshake(h) = std::mem::replace(&mut self.state, State::Idle) else {
            return;
        };
        let features = h.features;
        cx.set_deadline(None);
        for (i, v) in self.vrings.iter().enumerate() {
            // SAFETY: dup of our own eventfd; the File owns the duplicate.
            let kick = unsafe { libc::dup(self.kicks[i].as_raw_fd()) };
            let kick = (kick >= 0).then(|| {
                // SAFETY: kick is a fresh fd from dup.
                unsafe { File::from_raw_fd(kick) }
            });
            v.cfg.publish(Some(Arc::new(LinkCfg { features, kick })));
        }
        let session = h.into_session();
        let link = session.link();
        log::info!(
            "{}: connected to vhost-user backend at {} (features {features:#x}){}",
            self.name,
            self.opts.path,
            if link {
                ""
            } else {
                "; its config space says link down"
            }
        );
        self.state = State::Up(Box::new(session));
        self.sync_channel(cx);
        self.set_link(link);
        self.emit_queues(true);
        if let Some(tx) = self.first_reply.take() {
            let _ = tx.send(Ok(()));
        }
    }

    fn connect(&mut self, cx: &mut Ctx<'_>) {
        let (name, path) = (&self.name, &self.opts.path);
        match self
            .retry
            .attempt(cx, name, path, "vhost-user backend", "server=1")
        {
            Some(s) => self.begin(cx, s),
            None => self.state = State::Reconnect,
        }
    }
}

impl Source for VirtioUserSource {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        if let Some((stream, tx)) = self.first.take() {
            self.first_reply = Some(tx);
            self.begin(cx, stream);
        } else if let Some(l) = &self.listener {
            if let Err(e) = cx.watch(l.as_raw_fd(), libc::EPOLLIN as u32) {
                log::error!("{}: cannot watch the listening socket: {e}", self.name);
            }
        } else {
            self.connect(cx);
        }
    }

    fn ready(&mut self, cx: &mut Ctx<'_>, fd: RawFd, _events: u32) {
        if self.listener.as_ref().is_some_and(|l| l.as_raw_fd() == fd) {
            if !matches!(self.state, State::Idle) {
                return;
            }
            let accepted = self.listener.as_ref().map(|l| l.accept());
            if let Some(Ok((s, _))) = accepted {
                self.begin(cx, s);
            }
            return;
        }
        if self.channel_fd == Some(fd) {
            if let State::Up(s) = &mut self.state {
                let ev = s.on_channel_readable();
                self.on_session_event(cx, ev);
            }
            return;
        }
        if self.stream_fd() != Some(fd) {
            return;
        }
        match &mut self.state {
            State::Handshake(_) => self.on_handshake(cx),
            State::Up(s) => match s.on_stream_readable() {
                Ok(ev) => self.on_session_event(cx, ev),
                Err(e) => {
                    self.count_bad();
                    log::warn!(
                        "{}: vhost-user backend at {} went away ({e}); link down, waiting for it to come back",
                        self.name,
                        self.opts.path
                    );
                    self.drop_connection(cx);
                }
            },
            _ => {}
        }
    }

    fn timeout(&mut self, cx: &mut Ctx<'_>) {
        match &self.state {
            State::Reconnect => self.connect(cx),
            State::Handshake(h) => {
                let why = format!(
                    "{}: the vhost-user backend did not answer {} within {} s; is it a vhost-user net backend, and is it alive?",
                    self.opts.path,
                    h.waiting_for(),
                    REPLY_LIMIT.as_secs()
                );
                self.failed(cx, why);
            }
            State::Up(_) => {
                if let State::Up(s) = &mut self.state {
                    s.config_timed_out();
                }
                self.on_session_event(cx, SessionEvent::Nothing);
            }
            _ => {}
        }
    }

    fn stop(&mut self) {
        self.state = State::Idle;
        self.pause_all();
        if let Some(tx) = self.first_reply.take() {
            let _ = tx.send(Err(format!("{}: the port was closed", self.name)));
        }
    }
}
