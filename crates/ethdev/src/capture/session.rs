//! Running captures: what a capture was asked for ([`CaptureSpec`]), the set of running ones
//! ([`Captures`]), and each one's writer thread, which drains the queue rings into a pcapng
//! file or FIFO.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::pcapng::{self, Direction, IfStats, MAX_SNAPLEN};
use crate::tap::{CaptureRing, PortTap, QueueTap, now_ns};

/// What to capture on one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureSpec {
    /// One queue, or every queue (`None`).
    pub queue: Option<u16>,
    /// Capture received packets.
    pub rx: bool,
    /// Capture transmitted packets.
    pub tx: bool,
    /// Most bytes kept of each packet, 1 to [`MAX_SNAPLEN`].
    pub snaplen: u32,
    /// The pcapng file or FIFO to write.
    pub path: PathBuf,
    /// Slots of each queue's capture ring (`None`: as many as 16 MiB hold, 256 to 4096).
    pub ring_size: Option<usize>,
}

impl CaptureSpec {
    /// Every queue, both directions, whole packets, into `path`.
    pub fn new(path: impl Into<PathBuf>) -> CaptureSpec {
        CaptureSpec {
            queue: None,
            rx: true,
            tx: true,
            snaplen: MAX_SNAPLEN,
            path: path.into(),
            ring_size: None,
        }
    }

    /// `rx`, `tx` or `both`, as the direction was asked for.
    pub fn dir_name(&self) -> &'static str {
        match (self.rx, self.tx) {
            (true, true) => "both",
            (true, false) => "rx",
            (false, true) => "tx",
            (false, false) => "none",
        }
    }
}

/// Why a capture could not be started or stopped; the text names the thing and the fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CaptureError(pub String);

/// A capture's state and counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureStatus {
    /// The capture's id (what `stop` takes).
    pub id: u32,
    /// Port id.
    pub port: u16,
    /// Port name (the pcapng interface name).
    pub port_name: String,
    /// What was asked.
    pub spec: CaptureSpec,
    /// `waiting for a reader on the FIFO`, `writing`, `stopped`, or `failed: <why>`.
    pub state: String,
    /// Packets copied into the capture rings.
    pub captured: u64,
    /// Packets that found a capture ring full (the data path never waits for the writer).
    pub drops: u64,
    /// Packets written to the file.
    pub written: u64,
    /// Bytes written to the file.
    pub bytes: u64,
}

struct RingRef {
    queue: u16,
    dir: Direction,
    ring: Arc<CaptureRing>,
}

struct Shared {
    stop: AtomicBool,
    state: Mutex<String>,
    written: AtomicU64,
    bytes: AtomicU64,
    rings: Vec<RingRef>,
}

impl Shared {
    fn set_state(&self, s: impl Into<String>) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = s.into();
    }
    fn state(&self) -> String {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn counts(&self) -> (u64, u64) {
        self.rings.iter().fold((0, 0), |(c, d), r| {
            (c + r.ring.captured(), d + r.ring.drops())
        })
    }
}

struct Session {
    id: u32,
    port: u16,
    port_name: String,
    spec: CaptureSpec,
    taps: Vec<Arc<QueueTap>>,
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

impl Session {
    fn status(&self) -> CaptureStatus {
        let (captured, drops) = self.shared.counts();
        CaptureStatus {
            id: self.id,
            port: self.port,
            port_name: self.port_name.clone(),
            spec: self.spec.clone(),
            state: self.shared.state(),
            captured,
            drops,
            written: self.shared.written.load(Ordering::Relaxed),
            bytes: self.shared.bytes.load(Ordering::Relaxed),
        }
    }

    /// Disarms every queue, then lets the writer drain what is left, write the statistics
    /// block and close the file.
    fn finish(mut self) -> CaptureStatus {
        for t in &self.taps {
            t.remove(self.id);
        }
        self.shared.stop.store(true, Ordering::Release);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        self.status()
    }
}

/// The captures of a process: start, stop, list. Dropping it stops them all.
#[derive(Default)]
pub struct Captures {
    sessions: Mutex<Vec<Session>>,
    next_id: AtomicU32,
}

impl std::fmt::Debug for Captures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.list()).finish()
    }
}

fn bad(msg: impl Into<String>) -> CaptureError {
    CaptureError(msg.into())
}

/// Checks a snap length: 1 to [`MAX_SNAPLEN`].
pub fn check_snaplen(snaplen: u64) -> Result<u32, CaptureError> {
    if snaplen == 0 || snaplen > MAX_SNAPLEN as u64 {
        return Err(bad(format!(
            "bad snaplen {snaplen}: give 1 to {MAX_SNAPLEN} bytes"
        )));
    }
    Ok(snaplen as u32)
}

/// The text of an error opening `path` for writing, naming the path and the fix.
fn file_error(path: &Path, e: &std::io::Error) -> CaptureError {
    let why = match e.kind() {
        ErrorKind::NotFound => "no such directory (create it or choose another path)".to_string(),
        ErrorKind::PermissionDenied => {
            "permission denied (choose a path this process may write)".to_string()
        }
        ErrorKind::ReadOnlyFilesystem => "read-only file system (choose another path)".to_string(),
        ErrorKind::NotADirectory => {
            "a part of the path is not a directory (choose another path)".to_string()
        }
        ErrorKind::IsADirectory => "it is a directory (give a file name)".to_string(),
        _ => e.to_string(),
    };
    bad(format!(
        "cannot write capture file {}: {why}",
        path.display()
    ))
}

enum Output {
    File(File),
    Fifo(PathBuf),
}

fn open_output(path: &Path) -> Result<Output, CaptureError> {
    if path.as_os_str().is_empty() {
        return Err(bad("no capture file given: name a pcapng file or FIFO"));
    }
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_fifo() => return Ok(Output::Fifo(path.to_path_buf())),
        Ok(m) if m.is_dir() => {
            return Err(file_error(
                path,
                &std::io::Error::from(ErrorKind::IsADirectory),
            ));
        }
        _ => {}
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map(Output::File)
        .map_err(|e| file_error(path, &e))
}

/// Default ring slots when `rings` rings are made: as many as 16 MiB hold (less when there
/// are more than 16 rings: 256 MiB shared among them), from 64 (256 with up to 16 rings) to
/// 4096.
fn default_slots(slot_bytes: usize, rings: usize) -> usize {
    let budget = (16usize << 20).min((256usize << 20) / rings.max(1));
    let n = budget / (slot_bytes + 16);
    let n = if n.is_power_of_two() {
        n
    } else {
        n.next_power_of_two() / 2
    };
    n.clamp(if rings <= 16 { 256 } else { 64 }, 4096)
}

/// Most memory the rings of one capture may take.
const MAX_RING_MEMORY: usize = 2 << 30;

impl Captures {
    /// No capture running.
    pub fn new() -> Captures {
        Captures::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts capturing on `tap`'s port as `spec` says. A regular file is created (or
    /// truncated) now, so an unwritable path fails here; a FIFO is opened by the writer
    /// thread once a reader appears (the state says it waits). Nothing on the data path
    /// changes when this fails.
    pub fn start(&self, tap: &PortTap, spec: CaptureSpec) -> Result<CaptureStatus, CaptureError> {
        let snaplen = check_snaplen(spec.snaplen as u64)?;
        if !spec.rx && !spec.tx {
            return Err(bad("no direction to capture: choose rx, tx or both"));
        }
        if let Some(n) = spec.ring_size
            && !(2..=1 << 20).contains(&n)
        {
            return Err(bad(format!("bad ring size {n}: give 2 to 1048576 slots")));
        }
        let name = &tap.name;
        let mut wanted: Vec<(u16, Direction, Arc<QueueTap>)> = Vec::new();
        for (on, dir, nb, label) in [
            (spec.rx, Direction::Inbound, tap.nb_rx(), "rx"),
            (spec.tx, Direction::Outbound, tap.nb_tx(), "tx"),
        ] {
            if !on {
                continue;
            }
            let queues: Vec<u16> = match spec.queue {
                Some(q) if q >= nb => {
                    return Err(bad(format!(
                        "port {} ({name}) has {nb} {label} queue(s); there is no {label} queue {q} (choose 0 to {}, or queue=*)",
                        tap.port_id,
                        nb.saturating_sub(1)
                    )));
                }
                Some(q) => vec![q],
                None => (0..nb).collect(),
            };
            for q in queues {
                let t = match dir {
                    Direction::Inbound => tap.rx(q),
                    Direction::Outbound => tap.tx(q),
                };
                if let Some(t) = t {
                    wanted.push((q, dir, t.clone()));
                }
            }
        }
        if wanted.is_empty() {
            return Err(bad(format!(
                "port {} ({name}) has no {} queue to capture",
                tap.port_id,
                spec.dir_name()
            )));
        }
        let mut sessions = self.lock();
        for (q, dir, t) in &wanted {
            if let Some(owner) = t.owner() {
                let path = sessions
                    .iter()
                    .find(|s| s.id == owner)
                    .map(|s| format!(" (to {})", s.spec.path.display()))
                    .unwrap_or_default();
                let d = if *dir == Direction::Inbound {
                    "rx"
                } else {
                    "tx"
                };
                return Err(bad(format!(
                    "port {} ({name}) {d} queue {q} is captured already by capture {owner}{path}: stop that one first",
                    tap.port_id
                )));
            }
        }
        if let Some(s) = sessions.iter().find(|s| s.spec.path == spec.path) {
            return Err(bad(format!(
                "capture {} writes to {} already: choose another file",
                s.id,
                spec.path.display()
            )));
        }
        let slot_bytes = (snaplen as usize).min((tap.max_frame_size as usize).max(1518));
        let slots = spec
            .ring_size
            .unwrap_or_else(|| default_slots(slot_bytes, wanted.len()))
            .max(2)
            .next_power_of_two();
        let memory = slots * (slot_bytes.div_ceil(8) + 2) * 8 * wanted.len();
        if memory > MAX_RING_MEMORY {
            return Err(bad(format!(
                "{} ring(s) of {slots} slots of {slot_bytes} bytes would take {} MiB, more than the {} MiB a capture may use: capture fewer queues, or lower ring-size or snaplen",
                wanted.len(),
                memory >> 20,
                MAX_RING_MEMORY >> 20
            )));
        }
        let output = open_output(&spec.path)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let rings: Vec<RingRef> = wanted
            .iter()
            .map(|(q, dir, _)| RingRef {
                queue: *q,
                dir: *dir,
                ring: Arc::new(CaptureRing::new(slots, slot_bytes)),
            })
            .collect();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            state: Mutex::new(match output {
                Output::File(_) => "writing".into(),
                Output::Fifo(_) => "waiting for a reader on the FIFO".into(),
            }),
            written: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            rings,
        });
        let mut taps = Vec::new();
        for ((_, _, t), r) in wanted.iter().zip(&shared.rings) {
            if t.install(id, snaplen as usize, r.ring.clone()).is_err() {
                // Another manager took it meanwhile: undo.
                for t in &taps {
                    let t: &Arc<QueueTap> = t;
                    t.remove(id);
                }
                return Err(bad(format!(
                    "port {} ({name}) queue {} is captured already by another capture: stop that one first",
                    tap.port_id, r.queue
                )));
            }
            taps.push(t.clone());
        }
        let w = Writer {
            shared: shared.clone(),
            name: tap.name.clone(),
            snaplen,
            start_ns: now_ns(),
        };
        let writer = std::thread::Builder::new()
            .name(format!("ferrovia-cap{id}"))
            .spawn(move || w.run(output))
            .map_err(|e| {
                for t in &taps {
                    t.remove(id);
                }
                bad(format!("cannot start the capture writer thread: {e}"))
            })?;
        let s = Session {
            id,
            port: tap.port_id,
            port_name: tap.name.clone(),
            spec,
            taps,
            shared,
            writer: Some(writer),
        };
        let st = s.status();
        sessions.push(s);
        Ok(st)
    }

    /// Stops capture `id`: disarms its queues, writes what is left and the statistics block,
    /// closes the file, and returns the final counters.
    pub fn stop(&self, id: u32) -> Result<CaptureStatus, CaptureError> {
        let s = {
            let mut sessions = self.lock();
            let i = sessions.iter().position(|s| s.id == id).ok_or_else(|| {
                bad(format!(
                    "no capture {id} is running (list shows the running ones)"
                ))
            })?;
            sessions.remove(i)
        };
        Ok(s.finish())
    }

    /// Stops every capture (see [`Captures::stop`]).
    pub fn stop_all(&self) -> Vec<CaptureStatus> {
        let all: Vec<Session> = std::mem::take(&mut *self.lock());
        all.into_iter().map(Session::finish).collect()
    }

    /// Stops the captures on port `port`.
    pub fn stop_port(&self, port: u16) -> Vec<CaptureStatus> {
        let mine: Vec<Session> = {
            let mut sessions = self.lock();
            let (m, rest) = std::mem::take(&mut *sessions)
                .into_iter()
                .partition(|s| s.port == port);
            *sessions = rest;
            m
        };
        mine.into_iter().map(Session::finish).collect()
    }

    /// The running captures with their counters.
    pub fn list(&self) -> Vec<CaptureStatus> {
        self.lock().iter().map(Session::status).collect()
    }
}

impl Drop for Captures {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// A capture's writer thread.
struct Writer {
    shared: Arc<Shared>,
    name: String,
    snaplen: u32,
    start_ns: u64,
}

/// How long the writer sleeps when every ring is empty: short enough that a 256-slot ring
/// does not fill between two looks at 1 Mpps.
const IDLE_SLEEP: Duration = Duration::from_micros(200);

/// Bytes gathered before a write.
const FLUSH_AT: usize = 256 * 1024;

impl Writer {
    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }

    /// Opens a FIFO without blocking: retries every 50 ms until a reader appears or the
    /// capture is stopped.
    fn open_fifo(&self, path: &Path) -> Option<File> {
        loop {
            match OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
            {
                Ok(f) => return Some(f),
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                    if self.stopping() {
                        self.shared
                            .set_state("stopped (no reader ever opened the FIFO)");
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    self.shared
                        .set_state(format!("failed: {}", file_error(path, &e)));
                    return None;
                }
            }
        }
    }

    /// Writes all of `buf`; on a non-blocking FIFO whose reader is slow, waits for room (for
    /// at most 2 s once the capture is stopping).
    fn write_all(&self, f: &mut File, mut buf: &[u8]) -> std::io::Result<()> {
        let mut stuck_since: Option<Instant> = None;
        while !buf.is_empty() {
            match f.write(buf) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    buf = &buf[n..];
                    stuck_since = None;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let t = *stuck_since.get_or_insert_with(Instant::now);
                    if self.stopping() && t.elapsed() > Duration::from_secs(2) {
                        return Err(std::io::Error::new(
                            ErrorKind::TimedOut,
                            "the FIFO's reader stopped reading",
                        ));
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn run(self, output: Output) {
        let mut file = match output {
            Output::File(f) => Some(f),
            Output::Fifo(p) => {
                let f = self.open_fifo(&p);
                if f.is_some() {
                    self.shared.set_state("writing");
                }
                f
            }
        };
        let mut buf = Vec::with_capacity(FLUSH_AT + 65536);
        pcapng::section_header(&mut buf, concat!("ferrovia ", env!("CARGO_PKG_VERSION")));
        pcapng::interface_description(&mut buf, &self.name, self.snaplen);
        let mut pkt = Vec::with_capacity(MAX_SNAPLEN as usize);
        let mut pending = 0u64;
        loop {
            // Read the flag before draining: after it is seen set, one more pass takes what
            // the (already disarmed) queues left.
            let last = self.stopping();
            let mut got = 0usize;
            for r in &self.shared.rings {
                let n = r.ring.pop_batch(1024, &mut pkt, |c, data| {
                    pcapng::enhanced_packet(
                        &mut buf,
                        0,
                        c.ts_ns,
                        c.orig_len,
                        data,
                        r.dir,
                        r.queue as u32,
                    );
                });
                got += n;
                pending += n as u64;
            }
            if last && got > 0 && buf.len() < FLUSH_AT {
                // Stopping: keep draining until every ring is empty.
                continue;
            }
            if last && got == 0 {
                let (captured, drops) = self.shared.counts();
                let written = self.shared.written.load(Ordering::Relaxed) + pending;
                pcapng::interface_statistics(
                    &mut buf,
                    0,
                    &IfStats {
                        start_ns: self.start_ns,
                        end_ns: now_ns(),
                        received: captured + drops,
                        dropped: drops,
                        delivered: written,
                    },
                );
            }
            let done = last && got == 0;
            if buf.len() >= FLUSH_AT || (got == 0 && !buf.is_empty()) || done {
                if let Some(f) = file.as_mut() {
                    match self.write_all(f, &buf) {
                        Ok(()) => {
                            self.shared.written.fetch_add(pending, Ordering::Relaxed);
                            self.shared
                                .bytes
                                .fetch_add(buf.len() as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            let why = if e.kind() == ErrorKind::BrokenPipe {
                                "the FIFO's reader closed it".to_string()
                            } else {
                                e.to_string()
                            };
                            self.shared.set_state(format!("failed: {why}"));
                            file = None;
                        }
                    }
                }
                buf.clear();
                pending = 0;
            }
            if done {
                break;
            }
            if got == 0 && !last {
                std::thread::sleep(IDLE_SLEEP);
            }
        }
        if let Some(f) = file {
            let _ = f.sync_data();
            let st = self.shared.state();
            if !st.starts_with("failed") {
                self.shared.set_state("stopped");
            }
        }
    }
}
