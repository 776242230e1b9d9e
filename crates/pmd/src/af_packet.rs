//! `net_af_packet`: a port on a kernel network interface through `AF_PACKET` sockets with
//! memory-mapped TPACKET_V2 rings, as DPDK's `net_af_packet`.
//!
//! Each queue pair is one `SOCK_RAW` socket bound to the interface (`ETH_P_ALL`) with a
//! `PACKET_RX_RING` and a `PACKET_TX_RING` mapped into the process. With `qpairs` > 1 the
//! sockets join one `PACKET_FANOUT_HASH` group, so the kernel spreads flows over the queues.
//! `PACKET_IGNORE_OUTGOING` keeps our own Tx out of our Rx; `qdisc_bypass=1` sets
//! `PACKET_QDISC_BYPASS`.
//!
//! - Rx walks the ring from where it left off, takes each frame the kernel marked
//!   `TP_STATUS_USER`, checks the header the kernel wrote (`tp_mac`, `tp_snaplen`, `tp_len`
//!   inside the frame; a bad one is counted, never read past), copies the frame into an mbuf
//!   (a chain if it is longer than one mbuf) and hands the frame back (`TP_STATUS_KERNEL`): no
//!   system call, no allocation, no lock per packet.
//! - Tx copies each mbuf (chains too) into the next free Tx frame, marks it
//!   `TP_STATUS_SEND_REQUEST`, and makes one `sendto(fd, NULL, 0, MSG_DONTWAIT)` per burst.
//!   Packets the ring has no room for stay in the burst. A frame longer than the interface's
//!   MTU plus its Ethernet header (four bytes more when VLAN-tagged) or than a ring frame, or
//!   shorter than an Ethernet header, is dropped and counted (`oversize_frames`,
//!   `bad_desc_len`). `PACKET_LOSS` is set, so a frame the kernel refuses is dropped by it
//!   rather than stalling the ring.
//!
//! Devargs: `iface` (required), `qpairs`, `blocksz`, `framesz`, `framecnt`, `qdisc_bypass`,
//! `mac` (see [`DRIVER`]). Opening needs `CAP_NET_RAW`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use ferrovia_ethdev::{
    Burst, Devargs, DriverSpec, Error, ErrorCause, KeyKind, KeySpec, Link, MacAddr, Offloads, Port,
    PortConf, PortInfo, PortStats, QueueStats, Result, RxOffloads, RxQueue, TxOffloads, TxQueue,
};
use ferrovia_memory::{LcoreCaches, Mempool};

use crate::netif;
use crate::shared::{RunState, Taken, TakenGuard};

/// The devargs keys of `net_af_packet`.
const KEYS: &[KeySpec] = &[
    KeySpec::text(
        "iface",
        "the kernel network interface to attach to (e.g. veth0)",
    )
    .required(),
    KeySpec::number(
        "qpairs",
        1,
        16,
        "queue pairs: one socket each, in one PACKET_FANOUT_HASH group",
    )
    .default_value("1"),
    KeySpec::number(
        "blocksz",
        4096,
        1 << 26,
        "ring block size in bytes, a multiple of the page size",
    )
    .default_value("4096"),
    KeySpec::number(
        "framesz",
        128,
        1 << 26,
        "ring frame size in bytes, a multiple of 16 and at most blocksz",
    )
    .default_value("2048"),
    KeySpec::number(
        "framecnt",
        1,
        1 << 20,
        "frames in each Rx and each Tx ring, a multiple of blocksz/framesz",
    )
    .default_value("512"),
    KeySpec::flag(
        "qdisc_bypass",
        "1: Tx skips the kernel's queueing discipline (PACKET_QDISC_BYPASS)",
    )
    .default_value("0"),
    KeySpec::new(
        "mac",
        KeyKind::Mac,
        "the port's MAC address (unicast, not all zeros)",
    )
    .default_value("the interface's address"),
];

/// The `net_af_packet` driver, for the registry.
pub static DRIVER: DriverSpec = DriverSpec {
    name: "net_af_packet",
    aliases: &["eth_af_packet"],
    summary: "a kernel network interface through AF_PACKET sockets with mmap'd TPACKET_V2 rings",
    keys: KEYS,
    open: |d, c| Ok(Box::new(AfPacketPort::open(d, c)?)),
};

/// Size of `struct tpacket2_hdr`: where a Tx frame's data starts (the kernel puts it at
/// `TPACKET2_HDRLEN - sizeof(struct sockaddr_ll)`, which is this).
const TX_DATA_OFF: usize = std::mem::size_of::<libc::tpacket2_hdr>();
/// Where the kernel puts an Rx frame's Ethernet header: `TPACKET_ALIGN(TPACKET2_HDRLEN + 16)`
/// minus the 14-byte header. Used only to report the largest frame Rx can hold.
const RX_MAC_OFF: usize = ((libc::TPACKET2_HDRLEN + 16 + 15) & !15) - 14;
/// An Ethernet header: the shortest frame the kernel sends.
const ETH_HLEN: usize = 14;

/// The checked geometry and options of an af_packet port (what the devargs ask for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfPacketConfig {
    /// Interface name.
    pub iface: String,
    /// Queue pairs (sockets).
    pub qpairs: u16,
    /// Ring block size in bytes.
    pub blocksz: u32,
    /// Ring frame size in bytes.
    pub framesz: u32,
    /// Frames per ring.
    pub framecnt: u32,
    /// Whether Tx bypasses the qdisc.
    pub qdisc_bypass: bool,
}

impl AfPacketConfig {
    /// Reads and checks the devargs (without touching the system): key types and ranges, the
    /// interface name, and the ring geometry the kernel will accept. Errors name the key and
    /// a value that works.
    pub fn from_devargs(d: &Devargs) -> Result<AfPacketConfig> {
        d.check_keys(KEYS)?;
        let iface = d.required("iface", "the kernel interface to attach to")?;
        netif::check_ifname(&d.name, &iface)?;
        let c = AfPacketConfig {
            iface,
            qpairs: d.number("qpairs", 1, 1, 16)? as u16,
            blocksz: d.number("blocksz", 4096, 4096, 1 << 26)? as u32,
            framesz: d.number("framesz", 2048, 128, 1 << 26)? as u32,
            framecnt: d.number("framecnt", 512, 1, 1 << 20)? as u32,
            qdisc_bypass: d.flag("qdisc_bypass", false)?,
        };
        c.check(&d.name)?;
        Ok(c)
    }

    fn check(&self, port: &str) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("{port}: {m}")));
        let (b, f, n) = (self.blocksz, self.framesz, self.framecnt);
        // SAFETY: sysconf has no memory effects.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u32;
        if f % 16 != 0 {
            return bad(format!(
                "framesz={f} must be a multiple of 16 (TPACKET_ALIGNMENT), e.g. framesz={}",
                f.next_multiple_of(16)
            ));
        }
        if b % page != 0 {
            return bad(format!(
                "blocksz={b} must be a multiple of the page size ({page}), e.g. blocksz={}",
                b.next_multiple_of(page)
            ));
        }
        if f > b {
            return bad(format!(
                "framesz={f} is larger than blocksz={b}: a frame must fit in a block (e.g. blocksz={})",
                f.next_multiple_of(page)
            ));
        }
        let per_block = b / f;
        if n % per_block != 0 {
            return bad(format!(
                "framecnt={n} must be a multiple of blocksz/framesz = {per_block} (a ring is whole blocks), e.g. framecnt={}",
                n.next_multiple_of(per_block)
            ));
        }
        if (n as u64) * (b as u64 / per_block as u64) > 1 << 30 {
            return bad(format!(
                "a ring of framecnt={n} frames of blocksz/framesz={b}/{f} is over 1 GiB; lower framecnt"
            ));
        }
        Ok(())
    }

    /// Bytes of one ring (Rx or Tx).
    fn ring_len(&self) -> usize {
        (self.framecnt / (self.blocksz / self.framesz)) as usize * self.blocksz as usize
    }

    /// Offset of every frame in a ring (frames do not span blocks; a block's tail may be
    /// unused when blocksz is not a multiple of framesz).
    fn frame_offsets(&self) -> Vec<usize> {
        let per_block = (self.blocksz / self.framesz) as usize;
        (0..self.framecnt as usize)
            .map(|i| {
                (i / per_block) * self.blocksz as usize + (i % per_block) * self.framesz as usize
            })
            .collect()
    }
}

/// One queue pair: a socket and its two mapped rings (Rx first, then Tx).
struct QueuePair {
    fd: OwnedFd,
    map: *mut u8,
    map_len: usize,
    ring_len: usize,
    framesz: usize,
    frames: Vec<usize>,
    /// Where the next Rx (Tx) handle starts: the kernel's position, kept when a handle is
    /// dropped and taken again.
    rx_next: AtomicUsize,
    tx_next: AtomicUsize,
}

// SAFETY: the mapping is owned by the pair and lives until Drop. The Rx half is read and
// written only by the one Rx handle (Taken enforces a single owner), the Tx half only by the
// one Tx handle; the kernel's side of each frame is synchronized through the frame's status
// word with acquire/release atomics. The fd is only used in system calls, which are
// thread-safe.
unsafe impl Send for QueuePair {}
// SAFETY: as above.
unsafe impl Sync for QueuePair {}

impl Drop for QueuePair {
    fn drop(&mut self) {
        // SAFETY: map/map_len are the mapping made in `open`, unmapped once, here; no handle
        // outlives the pair (they hold an Arc to it).
        unsafe { libc::munmap(self.map.cast(), self.map_len) };
    }
}

/// Which ring of a pair.
#[derive(Clone, Copy)]
enum Dir {
    Rx = 0,
    Tx = 1,
}

impl QueuePair {
    /// The start of frame `i` of ring `dir`.
    #[inline]
    fn frame(&self, dir: Dir, i: usize) -> *mut u8 {
        debug_assert!(i < self.frames.len());
        // SAFETY: frames[i] + framesz <= ring_len (frame_offsets), and the mapping holds two
        // rings of ring_len bytes: the pointer stays inside the mapping.
        unsafe { self.map.add(dir as usize * self.ring_len + self.frames[i]) }
    }

    /// The status word of frame `i`, shared with the kernel.
    #[inline]
    fn status(&self, dir: Dir, i: usize) -> &AtomicU32 {
        // SAFETY: tp_status is the first u32 of a frame; frames are 16-byte aligned inside a
        // page-aligned mapping that lives as long as &self; the kernel accesses it atomically
        // (smp_store_release / smp_load_acquire) too.
        unsafe { AtomicU32::from_ptr(self.frame(dir, i).cast::<u32>()) }
    }
}

/// Opens, configures and maps one socket. `fanout`: the group to join (its id) or, for the
/// first socket of a multi-queue port, `Some(None)` to have the kernel pick a unique id.
fn open_pair(
    port: &str,
    cfg: &AfPacketConfig,
    ifindex: u32,
    fanout: Option<Option<u16>>,
) -> Result<(QueuePair, Option<u16>)> {
    let iface = &cfg.iface;
    let ctx = |what: &str| format!("{port}: {what} on interface {iface}");
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if raw < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => Error::Config(format!(
                "{port}: opening an AF_PACKET socket on {iface} needs CAP_NET_RAW (run as root or grant cap_net_raw)"
            )),
            Some(libc::EAFNOSUPPORT) => Error::Unsupported(format!(
                "{port}: this kernel has no AF_PACKET sockets (build it with CONFIG_PACKET or load af_packet)"
            )),
            _ => Error::io(ctx("socket(AF_PACKET)"), e),
        });
    }
    // SAFETY: raw is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let sol = libc::SOL_PACKET;
    netif::setsockopt_int(
        &fd,
        sol,
        libc::PACKET_VERSION,
        libc::tpacket_versions::TPACKET_V2 as i32,
    )
    .map_err(|e| Error::io(ctx("PACKET_VERSION TPACKET_V2"), e))?;
    // A Tx frame the kernel refuses is dropped instead of stopping the ring.
    netif::setsockopt_int(&fd, sol, libc::PACKET_LOSS, 1)
        .map_err(|e| Error::io(ctx("PACKET_LOSS"), e))?;
    if cfg.qdisc_bypass {
        netif::setsockopt_int(&fd, sol, libc::PACKET_QDISC_BYPASS, 1)
            .map_err(|e| Error::io(ctx("PACKET_QDISC_BYPASS (needs Linux 3.14)"), e))?;
    }
    if let Err(e) = netif::setsockopt_int(&fd, sol, libc::PACKET_IGNORE_OUTGOING, 1) {
        log::warn!(
            "{port}: PACKET_IGNORE_OUTGOING failed ({e}; it needs Linux 4.20): Rx will also see what this port sends"
        );
    }
    let req = libc::tpacket_req {
        tp_block_size: cfg.blocksz,
        tp_block_nr: cfg.framecnt / (cfg.blocksz / cfg.framesz),
        tp_frame_size: cfg.framesz,
        tp_frame_nr: cfg.framecnt,
    };
    let ring_len = cfg.ring_len();
    for (opt, name) in [
        (libc::PACKET_RX_RING, "PACKET_RX_RING"),
        (libc::PACKET_TX_RING, "PACKET_TX_RING"),
    ] {
        netif::setsockopt(&fd, sol, opt, &req).map_err(|e| {
            Error::io(
                ctx(&format!(
                    "{name} of {} frames of {} bytes ({ring_len} bytes; lower framecnt or framesz if memory is short)",
                    cfg.framecnt, cfg.framesz
                )),
                e,
            )
        })?;
    }
    let map_len = 2 * ring_len;
    // SAFETY: mapping the socket's rings, as packet(7) describes: a fresh shared mapping of
    // exactly the two rings' size, checked for MAP_FAILED below.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd.as_raw_fd(),
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return Err(Error::io(
            ctx(&format!("mmap of the rings ({map_len} bytes)")),
            io::Error::last_os_error(),
        ));
    }
    let qp = QueuePair {
        fd,
        map: map.cast(),
        map_len,
        ring_len,
        framesz: cfg.framesz as usize,
        frames: cfg.frame_offsets(),
        rx_next: AtomicUsize::new(0),
        tx_next: AtomicUsize::new(0),
    };
    // SAFETY: sockaddr_ll is plain old data; all zeros is valid.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sa.sll_ifindex = ifindex as i32;
    // SAFETY: sa is a valid sockaddr_ll and its size is passed.
    let r = unsafe {
        libc::bind(
            qp.fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(Error::io(ctx("bind"), io::Error::last_os_error()));
    }
    let group = match fanout {
        None => None,
        Some(id) => Some(join_fanout(&qp.fd, id).map_err(|e| {
            Error::io(
                ctx("PACKET_FANOUT (PACKET_FANOUT_HASH, needs Linux 3.1)"),
                e,
            )
        })?),
    };
    Ok((qp, group))
}

/// Joins fanout group `id`, or makes a new group with a kernel-chosen unique id (falling back
/// to one derived from the process id on kernels older than 4.15); returns the group id.
fn join_fanout(fd: &OwnedFd, id: Option<u16>) -> io::Result<u16> {
    let mode = libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_DEFRAG;
    if let Some(id) = id {
        netif::setsockopt_int(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_FANOUT,
            (id as u32 | (mode << 16)) as i32,
        )?;
        return Ok(id);
    }
    let unique = (mode | libc::PACKET_FANOUT_FLAG_UNIQUEID) << 16;
    if netif::setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, unique as i32).is_ok() {
        let mut v: u32 = 0;
        let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
        // SAFETY: v and len are valid for writes of the sizes given.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_FANOUT,
                (&mut v as *mut u32).cast(),
                &mut len,
            )
        };
        if r == 0 {
            return Ok(v as u16);
        }
    }
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let id = (std::process::id() ^ (NEXT.fetch_add(1, Ordering::Relaxed) << 10)) as u16;
    join_fanout(fd, Some(id))
}

/// The af_packet port.
pub struct AfPacketPort {
    name: String,
    mac: MacAddr,
    conf: PortConf,
    cfg: AfPacketConfig,
    ifindex: u32,
    pairs: Vec<Arc<QueuePair>>,
    /// The interface's MTU, read at open and at each start.
    mtu: Arc<AtomicU32>,
    promisc: AtomicBool,
    state: Arc<RunState>,
    rx_stats: Vec<Arc<QueueStats>>,
    tx_stats: Vec<Arc<QueueStats>>,
    rx_taken: Taken,
    tx_taken: Taken,
}

impl std::fmt::Debug for AfPacketPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacketPort")
            .field("name", &self.name)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl AfPacketPort {
    /// Opens an af_packet port: one socket with mapped rings per queue pair, bound to the
    /// interface.
    pub fn open(d: &Devargs, conf: &PortConf) -> Result<AfPacketPort> {
        let cfg = AfPacketConfig::from_devargs(d)?;
        let name = d.name.clone();
        let want = conf.nb_rxq.max(conf.nb_txq);
        if want > cfg.qpairs {
            return Err(Error::Config(format!(
                "{name}: {want} queues asked for but the port has qpairs={} (add qpairs={want} to its devargs)",
                cfg.qpairs
            )));
        }
        let ifindex = netif::ifindex(&name, &cfg.iface)?;
        let mut pairs = Vec::with_capacity(cfg.qpairs as usize);
        let mut group = if cfg.qpairs > 1 { Some(None) } else { None };
        for _ in 0..cfg.qpairs {
            let (qp, g) = open_pair(&name, &cfg, ifindex, group)?;
            if let Some(g) = g {
                group = Some(Some(g));
            }
            pairs.push(Arc::new(qp));
        }
        let fd = &pairs[0].fd;
        let mtu = netif::mtu(fd, &cfg.iface)
            .map_err(|e| Error::io(format!("{name}: reading the MTU of {}", cfg.iface), e))?;
        let mac = match d.get("mac") {
            Some(_) => d.mac_or_derived(conf.port_id)?,
            None => netif::hwaddr(fd, &cfg.iface)
                .ok()
                .flatten()
                .unwrap_or_else(|| MacAddr::for_port(conf.port_id)),
        };
        let nq = cfg.qpairs;
        log::info!(
            "{name}: on {} (ifindex {ifindex}, MTU {mtu}), {nq} queue pair(s), rings of {} frames of {} bytes",
            cfg.iface,
            cfg.framecnt,
            cfg.framesz
        );
        Ok(AfPacketPort {
            name,
            mac,
            conf: conf.clone(),
            cfg,
            ifindex,
            pairs,
            mtu: Arc::new(AtomicU32::new(mtu)),
            promisc: AtomicBool::new(false),
            state: Arc::default(),
            rx_stats: (0..nq).map(|_| Arc::default()).collect(),
            tx_stats: (0..nq).map(|_| Arc::default()).collect(),
            rx_taken: Taken::new(nq),
            tx_taken: Taken::new(nq),
        })
    }

    /// The interface the port is attached to.
    pub fn iface(&self) -> &str {
        &self.cfg.iface
    }

    /// The largest frame Rx can take whole (longer ones are truncated by the kernel, then
    /// dropped and counted).
    fn rx_frame_max(&self) -> usize {
        self.cfg.framesz as usize - RX_MAC_OFF
    }
}

impl Port for AfPacketPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "net_af_packet",
            name: self.name.clone(),
            mac: self.mac,
            nb_rx_queues: self.cfg.qpairs,
            nb_tx_queues: self.cfg.qpairs,
            max_queues: 16,
            nb_rxd: self.cfg.framecnt.min(u16::MAX as u32) as u16,
            nb_txd: self.cfg.framecnt.min(u16::MAX as u32) as u16,
            max_frame_size: self.conf.max_rx_pktlen.min(self.rx_frame_max() as u32),
            offloads: Offloads {
                rx: RxOffloads::SCATTER,
                tx: TxOffloads::MULTI_SEGS,
            },
            virtio_features: None,
            virtio_offered: None,
            switch_domain: None,
        }
    }
    fn start(&mut self) -> Result<()> {
        let fd = &self.pairs[0].fd;
        let iface = &self.cfg.iface;
        match netif::mtu(fd, iface) {
            Ok(m) => self.mtu.store(m, Ordering::Relaxed),
            Err(e) => log::warn!("{}: reading the MTU of {iface}: {e}", self.name),
        }
        match netif::flags(fd, iface) {
            Ok(f) if f & libc::IFF_UP == 0 => {
                if let Err(e) = netif::set_flags(fd, iface, libc::IFF_UP, true) {
                    log::warn!(
                        "{}: interface {iface} is down and could not be brought up ({e}{}); the link stays down until `ip link set {iface} up`",
                        self.name,
                        netif::perm_hint(&e, "CAP_NET_ADMIN")
                    );
                }
            }
            Ok(_) => {}
            Err(e) => {
                return Err(Error::io(
                    format!(
                        "{}: reading the flags of {iface} (was it deleted?)",
                        self.name
                    ),
                    e,
                ));
            }
        }
        self.state.set(true);
        Ok(())
    }
    fn stop(&mut self) -> Result<()> {
        self.state.set(false);
        Ok(())
    }
    fn link(&self) -> Link {
        let flags = netif::flags(&self.pairs[0].fd, &self.cfg.iface).unwrap_or(0);
        let want = libc::IFF_UP | libc::IFF_RUNNING;
        Link {
            up: self.state.started() && flags & want == want,
            speed_mbps: 10_000,
            full_duplex: true,
        }
    }
    fn stats(&self) -> PortStats {
        PortStats::collect(
            self.rx_stats.iter().map(|s| &**s),
            self.tx_stats.iter().map(|s| &**s),
        )
    }
    fn reset_stats(&self) {
        self.rx_stats
            .iter()
            .chain(&self.tx_stats)
            .for_each(|s| s.reset());
    }
    fn rx_queue(&mut self, q: u16) -> Result<Box<dyn RxQueue>> {
        let guard = self.rx_taken.take(&self.name, "rx", q)?;
        let qp = self.pairs[q as usize].clone();
        Ok(Box::new(AfRx {
            _guard: guard,
            next: qp.rx_next.load(Ordering::Relaxed),
            qp,
            pool: self.conf.pool.clone(),
            max_len: self.conf.max_rx_pktlen as usize,
            port_id: self.conf.port_id,
            state: self.state.clone(),
            stats: self.rx_stats[q as usize].clone(),
        }))
    }
    fn tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>> {
        let guard = self.tx_taken.take(&self.name, "tx", q)?;
        let qp = self.pairs[q as usize].clone();
        Ok(Box::new(AfTx {
            _guard: guard,
            next: qp.tx_next.load(Ordering::Relaxed),
            qp,
            mtu: self.mtu.clone(),
            state: self.state.clone(),
            stats: self.tx_stats[q as usize].clone(),
        }))
    }
    fn set_promisc(&mut self, on: bool) -> Result<()> {
        if self.promisc.load(Ordering::Relaxed) == on {
            return Ok(());
        }
        // SAFETY: packet_mreq is plain old data; all zeros is valid.
        let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mr.mr_ifindex = self.ifindex as i32;
        mr.mr_type = libc::PACKET_MR_PROMISC as u16;
        let opt = if on {
            libc::PACKET_ADD_MEMBERSHIP
        } else {
            libc::PACKET_DROP_MEMBERSHIP
        };
        netif::setsockopt(&self.pairs[0].fd, libc::SOL_PACKET, opt, &mr).map_err(|e| {
            Error::io(
                format!(
                    "{}: setting promiscuous mode {} on {}",
                    self.name,
                    if on { "on" } else { "off" },
                    self.cfg.iface
                ),
                e,
            )
        })?;
        self.promisc.store(on, Ordering::Relaxed);
        Ok(())
    }
}

struct AfRx {
    _guard: TakenGuard,
    qp: Arc<QueuePair>,
    next: usize,
    pool: Mempool,
    max_len: usize,
    port_id: u16,
    state: Arc<RunState>,
    stats: Arc<QueueStats>,
}

impl Drop for AfRx {
    fn drop(&mut self) {
        self.qp.rx_next.store(self.next, Ordering::Relaxed);
    }
}

/// Where a received frame's data lies in its ring frame, or why it cannot be used.
#[inline]
fn rx_frame_data(
    h: &libc::tpacket2_hdr,
    framesz: usize,
) -> std::result::Result<(usize, usize), ErrorCause> {
    let (mac, snap, len) = (h.tp_mac as usize, h.tp_snaplen as usize, h.tp_len as usize);
    if mac < std::mem::size_of::<libc::tpacket2_hdr>() || mac + snap > framesz {
        return Err(ErrorCause::DescAddr);
    }
    if snap > len || snap < ETH_HLEN {
        return Err(ErrorCause::DescLen);
    }
    if snap < len {
        // The frame did not fit in a ring frame: the kernel kept only its head.
        return Err(ErrorCause::TooLong);
    }
    Ok((mac, snap))
}

impl RxQueue for AfRx {
    fn rx_burst(&mut self, caches: &mut LcoreCaches, pkts: &mut Burst, max: usize) -> usize {
        if !self.state.started() {
            return 0;
        }
        let want = max.min(pkts.remaining_capacity());
        let cache = caches.for_pool(&self.pool);
        let nframes = self.qp.frames.len();
        let (mut got, mut bytes) = (0, 0);
        while got < want {
            let i = self.next;
            let status = self.qp.status(Dir::Rx, i);
            let st = status.load(Ordering::Acquire);
            if st & libc::TP_STATUS_USER == 0 {
                break;
            }
            let f = self.qp.frame(Dir::Rx, i);
            // SAFETY: the frame starts with a tpacket2_hdr inside the mapping (framesz >= 128);
            // the kernel wrote it before setting TP_STATUS_USER, which we acquired, and does
            // not touch the frame until we hand it back. Volatile: the memory is shared.
            let h = unsafe { std::ptr::read_volatile(f.cast::<libc::tpacket2_hdr>()) };
            match rx_frame_data(&h, self.qp.framesz) {
                Err(cause) => self.stats.error(cause, 1),
                Ok((_, len)) if len > self.max_len => self.stats.error(ErrorCause::TooLong, 1),
                Ok((off, len)) => {
                    // SAFETY: off + len <= framesz was checked, so the range lies in this
                    // frame, which is ours (TP_STATUS_USER) until we store TP_STATUS_KERNEL.
                    let data = unsafe { std::slice::from_raw_parts(f.add(off), len) };
                    let Some(mut m) = crate::netif::copy_in(cache, data) else {
                        // Leave the frame for the next burst.
                        self.stats.error(ErrorCause::NoMbuf, 1);
                        break;
                    };
                    // A tag the kernel took off into metadata (VLAN offload on the
                    // interface) goes back into the frame, as DPDK's af_packet does: a
                    // trunk port must see the VLAN the frame was sent on.
                    let len = if st & libc::TP_STATUS_VLAN_VALID != 0 {
                        let tpid = if st & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                            h.tp_vlan_tpid
                        } else {
                            0x8100
                        };
                        if !crate::netif::insert_vlan(&mut m, tpid, h.tp_vlan_tci) {
                            self.stats.error(ErrorCause::NoMbuf, 1);
                            cache.free(m);
                            status.store(libc::TP_STATUS_KERNEL, Ordering::Release);
                            self.next = if i + 1 == nframes { 0 } else { i + 1 };
                            continue;
                        }
                        len + 4
                    } else {
                        len
                    };
                    m.set_port(self.port_id);
                    pkts.push(m);
                    got += 1;
                    bytes += len;
                }
            }
            status.store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.next = if i + 1 == nframes { 0 } else { i + 1 };
        }
        self.stats.add(got as u64, bytes as u64);
        got
    }
}

struct AfTx {
    _guard: TakenGuard,
    qp: Arc<QueuePair>,
    next: usize,
    mtu: Arc<AtomicU32>,
    state: Arc<RunState>,
    stats: Arc<QueueStats>,
}

impl Drop for AfTx {
    fn drop(&mut self) {
        self.qp.tx_next.store(self.next, Ordering::Relaxed);
    }
}

impl AfTx {
    /// Asks the kernel to send every frame marked `TP_STATUS_SEND_REQUEST`, without waiting.
    fn kick(&self) {
        // SAFETY: a zero-length sendto with no buffer and no address; the kernel reads the
        // Tx ring, which stays mapped while self holds the pair.
        let r = unsafe {
            libc::sendto(
                self.qp.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            // EAGAIN/ENOBUFS: the frames stay marked and go with the next kick.
            if !matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOBUFS)) {
                log::debug!("af_packet tx: sendto: {e}");
            }
        }
    }
}

impl TxQueue for AfTx {
    fn tx_burst(&mut self, caches: &mut LcoreCaches, pkts: &mut Burst) -> usize {
        if !self.state.started() || pkts.is_empty() {
            return 0;
        }
        let room = self.qp.framesz - TX_DATA_OFF;
        let mtu_max = self.mtu.load(Ordering::Relaxed) as usize + ETH_HLEN;
        let nframes = self.qp.frames.len();
        let (mut done, mut sent, mut bytes, mut full) = (0, 0, 0, false);
        for m in pkts.iter() {
            let len = m.pkt_len();
            let limit = room.min(mtu_max + if netif::vlan_tagged(m) { 4 } else { 0 });
            if len > limit {
                self.stats.error(ErrorCause::TooLong, 1);
                done += 1;
                continue;
            }
            if len < ETH_HLEN {
                self.stats.error(ErrorCause::DescLen, 1);
                done += 1;
                continue;
            }
            let i = self.next;
            let status = self.qp.status(Dir::Tx, i);
            match status.load(Ordering::Acquire) {
                libc::TP_STATUS_AVAILABLE => {}
                // Refused by the kernel (should not happen with PACKET_LOSS): reuse it.
                libc::TP_STATUS_WRONG_FORMAT => self.stats.error(ErrorCause::DescLen, 1),
                _ => {
                    full = true;
                    break;
                }
            }
            let f = self.qp.frame(Dir::Tx, i);
            // SAFETY: the frame is ours (TP_STATUS_AVAILABLE, acquired); TX_DATA_OFF + len <=
            // framesz was checked above, so the slice stays inside this frame.
            let dst = unsafe { std::slice::from_raw_parts_mut(f.add(TX_DATA_OFF), len) };
            netif::copy_out(m, dst);
            // SAFETY: tp_len is a u32 at offset 4 of the frame's tpacket2_hdr, inside the
            // frame we own; the kernel reads it after it sees our release store below.
            unsafe {
                let h = f.cast::<libc::tpacket2_hdr>();
                std::ptr::write_volatile(std::ptr::addr_of_mut!((*h).tp_len), len as u32);
                std::ptr::write_volatile(std::ptr::addr_of_mut!((*h).tp_snaplen), len as u32);
            }
            status.store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.next = if i + 1 == nframes { 0 } else { i + 1 };
            done += 1;
            sent += 1;
            bytes += len;
        }
        caches.free_all(pkts.drain(..done));
        if sent > 0 || full {
            self.kick();
        }
        if sent == 0 && full {
            self.stats.error(ErrorCause::RingFull, 1);
        }
        self.stats.add(sent as u64, bytes as u64);
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(s: &str) -> Result<AfPacketConfig> {
        AfPacketConfig::from_devargs(&Devargs::parse(s).unwrap())
    }

    #[test]
    fn defaults_are_dpdks() {
        let c = cfg("net_af_packet0,iface=veth0").unwrap();
        assert_eq!(
            c,
            AfPacketConfig {
                iface: "veth0".into(),
                qpairs: 1,
                blocksz: 4096,
                framesz: 2048,
                framecnt: 512,
                qdisc_bypass: false,
            }
        );
        assert_eq!(c.ring_len(), 512 * 2048);
        let offs = c.frame_offsets();
        assert_eq!(
            (offs[0], offs[1], offs[2], offs[511]),
            (0, 2048, 4096, 511 * 2048)
        );
        let c = cfg("eth_af_packet1,iface=eth0,qpairs=4,blocksz=8192,framesz=3072,framecnt=64,qdisc_bypass=1")
            .unwrap();
        assert_eq!((c.qpairs, c.qdisc_bypass), (4, true));
        // Two 3072-byte frames per 8192-byte block: the block's tail is unused.
        let offs = c.frame_offsets();
        assert_eq!((offs[1], offs[2], offs[3]), (3072, 8192, 8192 + 3072));
        assert_eq!(c.ring_len(), 32 * 8192);
    }

    #[test]
    fn bad_devargs_name_the_key_and_the_fix() {
        for (args, want) in [
            ("net_af_packet0", "missing required argument 'iface'"),
            ("net_af_packet0,iface=", "non-empty"),
            ("net_af_packet0,iface=a/b", "not a valid interface name"),
            (
                "net_af_packet0,iface=waytoolonginterfacename",
                "not a valid interface name",
            ),
            ("net_af_packet0,iface=v,qpairs=0", "'qpairs'"),
            ("net_af_packet0,iface=v,qpairs=17", "from 1 to 16"),
            ("net_af_packet0,iface=v,framesz=2040", "e.g. framesz=2048"),
            (
                "net_af_packet0,iface=v,blocksz=5000",
                "multiple of the page size",
            ),
            (
                "net_af_packet0,iface=v,framesz=8192",
                "larger than blocksz=4096",
            ),
            (
                "net_af_packet0,iface=v,framecnt=511",
                "multiple of blocksz/framesz = 2",
            ),
            ("net_af_packet0,iface=v,framesz=64", "from 128"),
            ("net_af_packet0,iface=v,qdisc_bypass=2", "0 or 1"),
            ("net_af_packet0,iface=v,mac=01:00:00:00:00:01", "multicast"),
            (
                "net_af_packet0,iface=v,queues=2",
                "unknown devargs key 'queues'",
            ),
            (
                "net_af_packet0,iface=v,blocksz=0x4000000,framesz=0x4000000,framecnt=32",
                "over 1 GiB",
            ),
        ] {
            let e = cfg(args).unwrap_err().to_string();
            assert!(e.starts_with("net_af_packet0"), "{args}: {e}");
            assert!(e.contains(want), "{args}: {e}");
        }
        let e = cfg("net_af_packet0,iface=v,framecnt=511")
            .unwrap_err()
            .to_string();
        assert!(e.contains("e.g. framecnt=512"), "{e}");
    }

    #[test]
    fn kernel_frame_headers_are_checked() {
        // SAFETY: plain old data; all zeros is valid.
        let mut h: libc::tpacket2_hdr = unsafe { std::mem::zeroed() };
        let fs = 2048;
        let mut set = |mac: u16, snap: u32, len: u32| {
            h.tp_mac = mac;
            h.tp_snaplen = snap;
            h.tp_len = len;
            rx_frame_data(&h, fs)
        };
        assert_eq!(set(66, 60, 60), Ok((66, 60)));
        assert_eq!(set(66, 1982, 1982), Ok((66, 1982)));
        assert_eq!(set(66, 1983, 1983), Err(ErrorCause::DescAddr));
        assert_eq!(set(4, 60, 60), Err(ErrorCause::DescAddr));
        assert_eq!(set(u16::MAX, u32::MAX, u32::MAX), Err(ErrorCause::DescAddr));
        assert_eq!(set(66, 100, 60), Err(ErrorCause::DescLen));
        assert_eq!(set(66, 10, 10), Err(ErrorCause::DescLen));
        assert_eq!(set(66, 1000, 9000), Err(ErrorCause::TooLong));
        assert_eq!(RX_MAC_OFF, 66);
        assert_eq!(TX_DATA_OFF, 32);
    }
}
