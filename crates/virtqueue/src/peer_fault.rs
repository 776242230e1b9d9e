//! Surviving a peer that truncates memory it shared with us.
//!
//! A vhost-user frontend sends memfds (or hugetlbfs files) that we map `MAP_SHARED`. If it
//! shrinks such a file afterwards, our next access to a page beyond the new end raises SIGBUS,
//! whose default action kills the whole process, every port with it. QEMU and DPDK do not seal
//! their memory, so we cannot refuse unsealed files; instead:
//!
//! * At map time [`protect`] reads the file's seals. A file sealed against shrinking
//!   (`F_SEAL_SHRINK`, as our own regions are) cannot fault and is left alone (hugetlbfs files
//!   are always protected: a punched hugepage can fault when the pool is empty).
//! * Any other mapping is entered in a fixed, lock-free table of ranges (`RANGES`: atomics
//!   only, written by the thread that maps or unmaps, read by the handler under a sequence
//!   count), and a SIGBUS handler is installed once per process (`SA_SIGINFO | SA_ONSTACK`).
//! * The handler looks the fault address up in the table. When it lies in a registered range,
//!   it maps anonymous zero pages over the *whole* range (`MAP_FIXED | MAP_PRIVATE |
//!   MAP_ANONYMOUS`), so the faulting access and every later one read zeros and write to
//!   private memory; it marks the range broken, counts the fault in the range's
//!   [`FaultWatch`] and writes to the watch's eventfd, then returns, and the access is retried.
//!   Any other SIGBUS goes to the handler that was installed before ours (or the default
//!   action), so real bugs still crash.
//! * The control plane watches the eventfd and ends the session whose memory broke.
//!
//! The handler is async-signal-safe: atomics, `mmap` and `write` (plain system calls), no
//! allocation, no lock, no logging, no panic; it saves and restores `errno`. Unregistering a
//! range (before its `munmap`) and releasing a watch (before closing its eventfd) wait until no
//! handler is running, so a handler never maps over an address that was reused, nor writes to
//! an fd number that was reused.

use crate::error::MemError;
use std::cell::UnsafeCell;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering, fence};

/// Most unsealed peer mappings protected at once in a process (each a region of a memory
/// table: 32 per vhost-user session at most).
pub const MAX_RANGES: usize = 8192;
/// Most [`FaultWatch`]es (one per vhost port) alive at once in a process.
pub const MAX_WATCHES: usize = 4096;

const HUGETLBFS_MAGIC: libc::c_long = 0x9584_58f6;

struct RangeSlot {
    claimed: AtomicBool,
    /// Odd while `start`/`len`/`watch` are being written.
    seq: AtomicU64,
    start: AtomicUsize,
    /// 0 when the slot describes no mapping.
    len: AtomicUsize,
    /// `(generation << 16) | (watch index + 1)`, 0 for none.
    watch: AtomicU64,
    /// The handler has zeroed this range.
    hit: AtomicBool,
}

impl RangeSlot {
    const fn new() -> RangeSlot {
        RangeSlot {
            claimed: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            start: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            watch: AtomicU64::new(0),
            hit: AtomicBool::new(false),
        }
    }
}

struct WatchSlot {
    claimed: AtomicBool,
    /// Bumped on every claim and release; a range's token names one generation.
    generation: AtomicU64,
    efd: AtomicI32,
    faults: AtomicU64,
}

impl WatchSlot {
    const fn new() -> WatchSlot {
        WatchSlot {
            claimed: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            efd: AtomicI32::new(-1),
            faults: AtomicU64::new(0),
        }
    }
}

static RANGES: [RangeSlot; MAX_RANGES] = [const { RangeSlot::new() }; MAX_RANGES];
static WATCHES: [WatchSlot; MAX_WATCHES] = [const { WatchSlot::new() }; MAX_WATCHES];
/// Handlers running now (any thread).
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// The SIGBUS action found before ours, written once before ours is installed.
struct OldAction(UnsafeCell<std::mem::MaybeUninit<libc::sigaction>>);
// SAFETY: written once, inside `INSTALL.call_once`, before `OLD_READY` is set (Release) and
// before our handler is installed; only read after `OLD_READY` is seen (Acquire).
unsafe impl Sync for OldAction {}
static OLD: OldAction = OldAction(UnsafeCell::new(std::mem::MaybeUninit::uninit()));
static OLD_READY: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Claims the first free slot of a table (control side, any thread); its index.
fn claim<'a>(mut flags: impl Iterator<Item = &'a AtomicBool>) -> Option<usize> {
    flags.position(|c| {
        c.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

/// Waits until no SIGBUS handler is running. Called after a slot was cleared (SeqCst): a
/// handler that started later cannot see the old contents.
fn wait_handlers() {
    while ACTIVE.load(Ordering::SeqCst) != 0 {
        std::thread::yield_now();
    }
}

/// Installs the process's SIGBUS handler (once). Called before the first range is registered.
fn install() -> Result<(), String> {
    INSTALL.call_once(|| {
        // SAFETY: querying the current action into the static, which nobody reads before
        // OLD_READY is set; sigaction with a null new action changes nothing.
        let r =
            unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), (*OLD.0.get()).as_mut_ptr()) };
        if r != 0 {
            return;
        }
        OLD_READY.store(true, Ordering::Release);
        // SAFETY: a zeroed sigaction is a valid value; we fill in the handler, flags and an
        // empty mask below.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: sa_mask is a plain sigset_t owned by `sa`.
        unsafe { libc::sigemptyset(&mut sa.sa_mask) };
        // SAFETY: installing a handler that is async-signal-safe (see `on_sigbus`).
        let r = unsafe { libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()) };
        INSTALLED.store(r == 0, Ordering::Release);
    });
    if INSTALLED.load(Ordering::Acquire) {
        Ok(())
    } else {
        Err("cannot install the SIGBUS handler that protects unsealed peer memory".into())
    }
}

/// True when a mapping of `file` can never fault: it is sealed against shrinking and is not on
/// hugetlbfs.
fn cannot_shrink(file: &File) -> bool {
    // SAFETY: F_GET_SEALS only reads the seals of an fd we own (EINVAL if not a memfd).
    let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
    if seals < 0 || seals & libc::F_SEAL_SHRINK == 0 {
        return false;
    }
    // SAFETY: a zeroed statfs is valid; fstatfs fills it for an fd we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `st` outlives the call.
    let r = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
    r == 0 && st.f_type as libc::c_long != HUGETLBFS_MAGIC
}

/// A registered peer mapping. Drop it before unmapping the range: dropping waits until no
/// handler can still be working on it.
#[derive(Debug)]
pub struct PeerRange {
    slot: usize,
}

/// Registers the mapping `[base, base + len)` of `file` if the file can be shrunk by its
/// owner; returns `None` when it is sealed against shrinking (nothing to protect).
pub fn protect(
    base: *mut libc::c_void,
    len: usize,
    file: &File,
) -> Result<Option<PeerRange>, MemError> {
    if cannot_shrink(file) {
        return Ok(None);
    }
    install().map_err(|_| MemError::FaultHandler)?;
    let Some(slot) = claim(RANGES.iter().map(|s| &s.claimed)) else {
        return Err(MemError::TooManyUnsealed { limit: MAX_RANGES });
    };
    let s = &RANGES[slot];
    s.seq.fetch_add(1, Ordering::SeqCst);
    s.start.store(base as usize, Ordering::Relaxed);
    s.watch.store(0, Ordering::Relaxed);
    s.hit.store(false, Ordering::Relaxed);
    s.len.store(len, Ordering::Relaxed);
    s.seq.fetch_add(1, Ordering::SeqCst);
    Ok(Some(PeerRange { slot }))
}

impl PeerRange {
    /// Sends this range's faults to `watch` (counted there and signalled on its eventfd).
    pub fn watch(&self, watch: &FaultWatch) {
        RANGES[self.slot].watch.store(watch.token, Ordering::SeqCst);
    }

    /// True once the handler has replaced this range with zero pages.
    pub fn faulted(&self) -> bool {
        RANGES[self.slot].hit.load(Ordering::Acquire)
    }
}

impl Drop for PeerRange {
    fn drop(&mut self) {
        let s = &RANGES[self.slot];
        s.seq.fetch_add(1, Ordering::SeqCst);
        s.len.store(0, Ordering::SeqCst);
        s.start.store(0, Ordering::SeqCst);
        s.watch.store(0, Ordering::SeqCst);
        s.seq.fetch_add(1, Ordering::SeqCst);
        wait_handlers();
        s.hit.store(false, Ordering::Relaxed);
        s.claimed.store(false, Ordering::Release);
    }
}

/// Where the faults of a device's peer memory are reported: a counter and an eventfd the
/// control plane watches. One per vhost port.
#[derive(Debug)]
pub struct FaultWatch {
    slot: Option<usize>,
    token: u64,
    efd: Option<OwnedFd>,
    seen: AtomicU64,
}

impl FaultWatch {
    /// A watch with its own non-blocking eventfd.
    pub fn new() -> io::Result<FaultWatch> {
        // SAFETY: plain syscall; the returned fd is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is fresh and ours.
        let efd = unsafe { OwnedFd::from_raw_fd(fd) };
        let Some(slot) = claim(WATCHES.iter().map(|s| &s.claimed)) else {
            return Err(io::Error::other(format!(
                "too many peer-memory fault watches in this process (limit {MAX_WATCHES})"
            )));
        };
        let w = &WATCHES[slot];
        w.faults.store(0, Ordering::SeqCst);
        w.efd.store(fd, Ordering::SeqCst);
        let generation = w.generation.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(FaultWatch {
            slot: Some(slot),
            token: (generation << 16) | (slot as u64 + 1),
            efd: Some(efd),
            seen: AtomicU64::new(0),
        })
    }

    /// A watch that reports nothing (ranges watched by it are still zeroed on a fault): the
    /// fallback when [`FaultWatch::new`] fails.
    pub fn disabled() -> FaultWatch {
        FaultWatch {
            slot: None,
            token: 0,
            efd: None,
            seen: AtomicU64::new(0),
        }
    }

    /// The eventfd that becomes readable on a fault, to watch.
    pub fn fd(&self) -> Option<RawFd> {
        self.efd.as_ref().map(|f| f.as_raw_fd())
    }

    /// Faults recovered so far in memory watched by this watch (one per region).
    pub fn faults(&self) -> u64 {
        self.slot
            .map_or(0, |i| WATCHES[i].faults.load(Ordering::Acquire))
    }

    /// Faults since the last call (drains the eventfd).
    pub fn take(&self) -> u64 {
        if let Some(fd) = self.fd() {
            let mut v = 0u64;
            // SAFETY: reading 8 bytes into `v` from our own non-blocking eventfd.
            let _ = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
        }
        let now = self.faults();
        now - self.seen.swap(now, Ordering::AcqRel)
    }
}

impl Drop for FaultWatch {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let w = &WATCHES[i];
            w.efd.store(-1, Ordering::SeqCst);
            w.generation.fetch_add(1, Ordering::SeqCst);
            // No handler still holds the eventfd number once this returns; it is closed
            // after this body, when `efd` drops.
            wait_handlers();
            w.claimed.store(false, Ordering::Release);
        }
    }
}

/// The handler. Async-signal-safe: atomics, `mmap`, `write`, `sigaction` only.
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: errno's location is valid for the current thread.
    let errno = unsafe { *libc::__errno_location() };
    ACTIVE.fetch_add(1, Ordering::SeqCst);
    let handled = !info.is_null() && {
        // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO; si_addr is meaningful for
        // faults (si_code > 0), the only case we look at.
        let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
        code > 0 && recover(addr)
    };
    ACTIVE.fetch_sub(1, Ordering::SeqCst);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
    if !handled {
        chain(sig, info, ctx);
    }
}

/// Zeroes the registered range holding `addr`, if any; true if the access can be retried.
fn recover(addr: usize) -> bool {
    for s in RANGES.iter() {
        // SeqCst: pairs with the SeqCst increment of ACTIVE before it and the unregistering
        // thread's SeqCst seq bump then ACTIVE load (either it waits for us or we see the bump).
        let s1 = s.seq.load(Ordering::SeqCst);
        if s1 & 1 == 1 {
            continue;
        }
        let start = s.start.load(Ordering::Relaxed);
        let len = s.len.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if len == 0 || s.seq.load(Ordering::Relaxed) != s1 {
            continue;
        }
        if addr < start || addr - start >= len {
            continue;
        }
        // SAFETY: [start, start + len) is a live peer mapping: it was registered after its
        // mmap and is unregistered (waiting for running handlers, us included) before its
        // munmap. Replacing it with private zero pages keeps every pointer into it valid;
        // the owner's munmap later removes this mapping instead.
        let p = unsafe {
            libc::mmap(
                start as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return false;
        }
        if !s.hit.swap(true, Ordering::AcqRel) {
            notify(s.watch.load(Ordering::SeqCst));
        }
        return true;
    }
    false
}

/// Counts a fault for the watch named by `token` and wakes its eventfd.
fn notify(token: u64) {
    let idx = (token & 0xffff) as usize;
    if idx == 0 || idx > MAX_WATCHES {
        return;
    }
    let w = &WATCHES[idx - 1];
    if w.generation.load(Ordering::SeqCst) != token >> 16 {
        return; // that watch is gone
    }
    w.faults.fetch_add(1, Ordering::SeqCst);
    let fd = w.efd.load(Ordering::SeqCst);
    if fd >= 0 {
        let one = 1u64;
        // SAFETY: write(2) is async-signal-safe; `fd` is the watch's eventfd, which is not
        // closed while a handler runs (FaultWatch::drop waits for ACTIVE == 0).
        let _ = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

/// Hands a SIGBUS that is not ours to the action installed before ours.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let fault = !info.is_null() && {
        // SAFETY: valid siginfo from the kernel.
        unsafe { (*info).si_code > 0 }
    };
    if OLD_READY.load(Ordering::Acquire) {
        // SAFETY: OLD was written before OLD_READY was set and is never written again.
        let old = unsafe { (*OLD.0.get()).assume_init_ref() };
        let h = old.sa_sigaction;
        if h == libc::SIG_IGN && !fault {
            return;
        }
        if h != libc::SIG_DFL && h != libc::SIG_IGN {
            if old.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: with SA_SIGINFO the previous handler has this signature.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = unsafe {
                    std::mem::transmute::<
                        libc::sighandler_t,
                        extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void),
                    >(h)
                };
                f(sig, info, ctx);
            } else {
                // SAFETY: without SA_SIGINFO the previous handler takes the signal number.
                let f: extern "C" fn(libc::c_int) = unsafe {
                    std::mem::transmute::<libc::sighandler_t, extern "C" fn(libc::c_int)>(h)
                };
                f(sig);
            }
            return;
        }
    }
    // Default action: reset and return; the faulting access runs again and kills the process
    // as it would have without us (a sent SIGBUS is re-raised).
    // SAFETY: a zeroed sigaction with SIG_DFL is valid; sigaction and raise are
    // async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &sa, std::ptr::null_mut());
        if !fault {
            libc::raise(sig);
        }
    }
}

/// Unsealed peer ranges registered now (for tests).
#[doc(hidden)]
pub fn registered_ranges() -> usize {
    RANGES
        .iter()
        .filter(|s| s.len.load(Ordering::Acquire) != 0)
        .count()
}
