//! The process's one control thread: an epoll loop that serves every vhost-user and
//! virtio-user socket (accept, connect, reconnect, messages and timeouts).
//!
//! A port registers a [`Source`]; the reactor calls it when one of the fds it watches is ready
//! or when its deadline passes. Sources never block: a peer that sends half a message, stops
//! reading our replies or never answers is noticed by the source's own deadline and its session
//! is ended, while every other source keeps being served. This replaces one control thread per
//! port (plus a watchdog per session) with one thread for the whole process, like DPDK's fdset
//! thread, but with a timeout per session.
//!
//! Ports are added and removed at run time with [`Reactor::add`] and [`Reactor::remove`];
//! `remove` returns once the source has been stopped and dropped on the reactor thread, so a
//! port's `Drop` can free what the source used.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// Identifies a registered source.
pub type SourceId = u64;

/// Something the reactor serves: one port's sockets and timers.
pub trait Source: Send {
    /// Called once on the reactor thread after [`Reactor::add`]: watch fds, set a deadline.
    fn start(&mut self, cx: &mut Ctx<'_>);
    /// A watched fd is ready (`events` are epoll bits).
    fn ready(&mut self, cx: &mut Ctx<'_>, fd: RawFd, events: u32);
    /// The deadline set with [`Ctx::set_deadline`] has passed (it is cleared first).
    fn timeout(&mut self, cx: &mut Ctx<'_>);
    /// The source is being removed: end sessions, pause rings. Every fd it watched has already
    /// been taken out of the epoll set.
    fn stop(&mut self);
}

/// What a source may do from its callbacks.
pub struct Ctx<'a> {
    epfd: RawFd,
    id: SourceId,
    fds: &'a mut Vec<RawFd>,
    deadline: &'a mut Option<Instant>,
}

impl Ctx<'_> {
    /// Watches `fd` for `events` (epoll bits; `EPOLLET` allowed). Watching a watched fd
    /// changes its events.
    pub fn watch(&mut self, fd: RawFd, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events,
            u64: (self.id << 32) | fd as u32 as u64,
        };
        let op = if self.fds.contains(&fd) {
            libc::EPOLL_CTL_MOD
        } else {
            libc::EPOLL_CTL_ADD
        };
        // SAFETY: epfd is the reactor's epoll fd, alive for the reactor's life; `ev` is a valid
        // event for the duration of the call.
        if unsafe { libc::epoll_ctl(self.epfd, op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        if op == libc::EPOLL_CTL_ADD {
            self.fds.push(fd);
        }
        Ok(())
    }

    /// Stops watching `fd`. Call it before closing a watched fd.
    pub fn unwatch(&mut self, fd: RawFd) {
        if let Some(i) = self.fds.iter().position(|&f| f == fd) {
            self.fds.swap_remove(i);
            epoll_del(self.epfd, fd);
        }
    }

    /// Sets (or with None clears) the one deadline of this source.
    pub fn set_deadline(&mut self, at: Option<Instant>) {
        *self.deadline = at;
    }

    /// The current deadline.
    pub fn deadline(&self) -> Option<Instant> {
        *self.deadline
    }

    /// Sets the deadline to `d` from now, or keeps an earlier one.
    pub fn wake_within(&mut self, d: Duration) {
        let at = Instant::now() + d;
        if self.deadline.is_none_or(|t| at < t) {
            *self.deadline = Some(at);
        }
    }
}

fn epoll_del(epfd: RawFd, fd: RawFd) {
    // SAFETY: removing an fd from our epoll set; a null event is allowed for EPOLL_CTL_DEL.
    unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
}

enum Command {
    Add(SourceId, Box<dyn Source>),
    Remove(SourceId, Option<mpsc::Sender<()>>),
}

struct Entry {
    source: Box<dyn Source>,
    fds: Vec<RawFd>,
    deadline: Option<Instant>,
}

/// The process-wide control loop. Get it with [`Reactor::global`].
pub struct Reactor {
    epfd: OwnedFd,
    wake: OwnedFd,
    commands: Mutex<Vec<Command>>,
    next_id: AtomicU64,
    thread: OnceLock<ThreadId>,
    counters: ReactorCounters,
}

/// What the reactor has done, for telemetry and tests.
#[derive(Debug, Default)]
pub struct ReactorCounters {
    /// Times the loop woke (events, deadlines or commands).
    pub wakeups: AtomicU64,
    /// Sources registered now.
    pub sources: AtomicU64,
    /// Sources taken out of the loop because a callback panicked (a bug).
    pub panics: AtomicU64,
}

/// Runs `f`; true if it panicked (the panic is contained).
fn caught(f: impl FnOnce()) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err()
}

/// The token of the reactor's own wake-up eventfd.
const WAKE_TOKEN: u64 = u64::MAX;

impl Reactor {
    /// The reactor of this process, started on first use (thread `ferrovia-ctl`).
    pub fn global() -> &'static Reactor {
        static GLOBAL: OnceLock<&'static Reactor> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let r: &'static Reactor = Box::leak(Box::new(
                Reactor::new().expect("cannot create the control loop's epoll and eventfd"),
            ));
            let t = std::thread::Builder::new()
                .name("ferrovia-ctl".into())
                .spawn(move || r.run())
                .expect("cannot start the control thread");
            let _ = r.thread.set(t.thread().id());
            r
        })
    }

    fn new() -> io::Result<Reactor> {
        // SAFETY: plain syscalls; the returned fds are checked and owned below.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `ep` is a fresh fd we own.
        let epfd = unsafe { OwnedFd::from_raw_fd(ep) };
        // SAFETY: plain syscall.
        let w = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if w < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `w` is a fresh fd we own.
        let wake = unsafe { OwnedFd::from_raw_fd(w) };
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: WAKE_TOKEN,
        };
        // SAFETY: both fds are valid; `ev` lives across the call.
        if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, w, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Reactor {
            epfd,
            wake,
            commands: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            thread: OnceLock::new(),
            counters: ReactorCounters::default(),
        })
    }

    /// Counters of the loop.
    pub fn counters(&self) -> &ReactorCounters {
        &self.counters
    }

    /// Registers a source; its `start` runs on the reactor thread shortly after.
    pub fn add(&self, source: Box<dyn Source>) -> SourceId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.push(Command::Add(id, source));
        id
    }

    /// Removes a source: `stop` runs and the source is dropped on the reactor thread. Waits
    /// for that, except when called from the reactor thread itself.
    pub fn remove(&self, id: SourceId) {
        if self.thread.get() == Some(&std::thread::current().id()) {
            self.push(Command::Remove(id, None));
            return;
        }
        let (tx, rx) = mpsc::channel();
        self.push(Command::Remove(id, Some(tx)));
        let _ = rx.recv();
    }

    fn push(&self, c: Command) {
        self.commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(c);
        let one = 1u64.to_ne_bytes();
        // SAFETY: writing 8 bytes from a live buffer to our eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), 8) };
    }

    /// Runs one callback of source `id` with its context; true if it panicked.
    fn call(
        &self,
        id: SourceId,
        e: &mut Entry,
        f: impl FnOnce(&mut dyn Source, &mut Ctx<'_>),
    ) -> bool {
        let mut cx = Ctx {
            epfd: self.epfd.as_raw_fd(),
            id,
            fds: &mut e.fds,
            deadline: &mut e.deadline,
        };
        let src = &mut *e.source;
        caught(|| f(src, &mut cx))
    }

    /// Takes a source whose callback panicked (a bug) out of the loop, so that every other
    /// port goes on being served; its port's `remove` later finds nothing and returns.
    fn detach_broken(&self, sources: &mut HashMap<SourceId, Entry>, id: SourceId) {
        if let Some(mut e) = sources.remove(&id) {
            for fd in e.fds.drain(..) {
                epoll_del(self.epfd.as_raw_fd(), fd);
            }
            self.counters.panics.fetch_add(1, Ordering::Relaxed);
            log::error!(
                "control loop: the handler of source {id} panicked (a bug, please report it); that port is no longer served, the others are"
            );
            let src = &mut e.source;
            caught(|| src.stop());
            caught(move || drop(e));
        }
    }

    fn run(&self) {
        let mut sources: HashMap<SourceId, Entry> = HashMap::new();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
        let mut broken: Vec<SourceId> = Vec::new();
        loop {
            let now = Instant::now();
            let next = sources.values().filter_map(|e| e.deadline).min();
            let timeout_ms = match next {
                None => -1,
                Some(t) if t <= now => 0,
                // Round up so a deadline is never woken for just before it.
                Some(t) => (t - now).as_millis().min(60_000) as i32 + 1,
            };
            // SAFETY: `events` is a live buffer of `len` entries.
            let n = unsafe {
                libc::epoll_wait(
                    self.epfd.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as i32,
                    timeout_ms,
                )
            };
            self.counters.wakeups.fetch_add(1, Ordering::Relaxed);
            let n = if n < 0 { 0 } else { n as usize };
            for ev in &events[..n] {
                let token = ev.u64;
                if token == WAKE_TOKEN {
                    let mut b = [0u8; 8];
                    // SAFETY: reading 8 bytes into a live buffer from our eventfd.
                    unsafe { libc::read(self.wake.as_raw_fd(), b.as_mut_ptr().cast(), 8) };
                    continue;
                }
                let (id, fd) = (token >> 32, (token & 0xffff_ffff) as u32 as RawFd);
                if let Some(e) = sources.get_mut(&id) {
                    // An event for an fd the source has since unwatched is stale.
                    if !e.fds.contains(&fd) {
                        continue;
                    }
                    if self.call(id, e, |src, cx| src.ready(cx, fd, ev.events)) {
                        broken.push(id);
                    }
                }
            }
            let now = Instant::now();
            for (&id, e) in sources.iter_mut() {
                if e.deadline.is_some_and(|t| t <= now) {
                    e.deadline = None;
                    if self.call(id, e, |src, cx| src.timeout(cx)) {
                        broken.push(id);
                    }
                }
            }
            for id in broken.drain(..) {
                self.detach_broken(&mut sources, id);
            }
            let cmds =
                std::mem::take(&mut *self.commands.lock().unwrap_or_else(|p| p.into_inner()));
            for c in cmds {
                match c {
                    Command::Add(id, source) => {
                        let mut e = Entry {
                            source,
                            fds: Vec::new(),
                            deadline: None,
                        };
                        let failed = self.call(id, &mut e, |src, cx| src.start(cx));
                        sources.insert(id, e);
                        if failed {
                            self.detach_broken(&mut sources, id);
                        }
                    }
                    Command::Remove(id, done) => {
                        if let Some(mut e) = sources.remove(&id) {
                            for fd in e.fds.drain(..) {
                                epoll_del(self.epfd.as_raw_fd(), fd);
                            }
                            let src = &mut e.source;
                            caught(|| src.stop());
                            caught(move || drop(e));
                        }
                        if let Some(d) = done {
                            let _ = d.send(());
                        }
                    }
                }
            }
            self.counters
                .sources
                .store(sources.len() as u64, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    struct Counting {
        fd: OwnedFd,
        hits: Arc<AtomicUsize>,
        timeouts: Arc<AtomicUsize>,
        stopped: Arc<AtomicUsize>,
    }

    impl Source for Counting {
        fn start(&mut self, cx: &mut Ctx<'_>) {
            cx.watch(self.fd.as_raw_fd(), libc::EPOLLIN as u32).unwrap();
            cx.set_deadline(Some(Instant::now() + Duration::from_millis(20)));
        }
        fn ready(&mut self, _cx: &mut Ctx<'_>, _fd: RawFd, _events: u32) {
            let mut b = [0u8; 8];
            // SAFETY: reading 8 bytes into a live buffer from our eventfd.
            unsafe { libc::read(self.fd.as_raw_fd(), b.as_mut_ptr().cast(), 8) };
            self.hits.fetch_add(1, Ordering::SeqCst);
        }
        fn timeout(&mut self, _cx: &mut Ctx<'_>) {
            self.timeouts.fetch_add(1, Ordering::SeqCst);
        }
        fn stop(&mut self) {
            self.stopped.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn serves_fds_deadlines_and_removal() {
        let r = Reactor::global();
        // SAFETY: plain syscall; the fd is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
        assert!(fd >= 0);
        // SAFETY: fresh fd.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        let (hits, timeouts, stopped) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let id = r.add(Box::new(Counting {
            fd,
            hits: hits.clone(),
            timeouts: timeouts.clone(),
            stopped: stopped.clone(),
        }));
        let deadline = Instant::now() + Duration::from_secs(10);
        while timeouts.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(timeouts.load(Ordering::SeqCst), 1, "deadline fired once");
        let one = 1u64.to_ne_bytes();
        // SAFETY: the source still owns `raw` (not removed yet); 8-byte write from a live buffer.
        unsafe { libc::write(raw, one.as_ptr().cast(), 8) };
        while hits.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1, "readable fd served");
        r.remove(id);
        assert_eq!(
            stopped.load(Ordering::SeqCst),
            1,
            "stop ran before remove returned"
        );
    }

    struct Panicking {
        fd: OwnedFd,
    }

    impl Source for Panicking {
        fn start(&mut self, cx: &mut Ctx<'_>) {
            cx.watch(self.fd.as_raw_fd(), libc::EPOLLIN as u32).unwrap();
        }
        fn ready(&mut self, _cx: &mut Ctx<'_>, _fd: RawFd, _events: u32) {
            panic!("a bug in one port's handler");
        }
        fn timeout(&mut self, _cx: &mut Ctx<'_>) {}
        fn stop(&mut self) {}
    }

    fn eventfd() -> OwnedFd {
        // SAFETY: plain syscall; the fd is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
        assert!(fd >= 0);
        // SAFETY: fresh fd.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    fn poke(fd: RawFd) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: 8-byte write from a live buffer to an eventfd.
        unsafe { libc::write(fd, one.as_ptr().cast(), 8) };
    }

    #[test]
    fn a_panicking_source_is_detached_and_the_others_are_served() {
        let r = Reactor::global();
        let bad = eventfd();
        let bad_raw = bad.as_raw_fd();
        let bad_id = r.add(Box::new(Panicking { fd: bad }));
        let good = eventfd();
        let good_raw = good.as_raw_fd();
        let hits = Arc::new(AtomicUsize::new(0));
        let good_id = r.add(Box::new(Counting {
            fd: good,
            hits: hits.clone(),
            timeouts: Arc::new(AtomicUsize::new(0)),
            stopped: Arc::new(AtomicUsize::new(0)),
        }));
        let p0 = r.counters().panics.load(Ordering::SeqCst);
        poke(bad_raw);
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.counters().panics.load(Ordering::SeqCst) == p0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(r.counters().panics.load(Ordering::SeqCst), p0 + 1);
        poke(good_raw);
        while hits.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "the other source is still served"
        );
        r.remove(bad_id); // returns although the source is gone
        r.remove(good_id);
    }
}
