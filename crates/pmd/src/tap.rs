//! `net_tap`: a port that is a kernel tap interface, as DPDK's `net_tap`. What the port
//! transmits, the kernel receives on the interface; what the kernel sends out of the
//! interface, the port receives.
//!
//! The port opens `/dev/net/tun` once per queue (`TUNSETIFF` with `IFF_TAP | IFF_NO_PI`, plus
//! `IFF_MULTI_QUEUE` when there is more than one queue), non-blocking, and brings the
//! interface up on start (down on stop).
//!
//! **Cost: one system call per packet.** A plain tap fd moves one frame per `read` or
//! `write`, so Rx makes one `read` per frame (until `EAGAIN` or the burst is full) and Tx one
//! `write` per frame (`writev` for a chain). That is the price of the tap interface itself;
//! `net_af_packet` on a veth pair (mapped rings, one system call per Tx burst and none on Rx)
//! is the faster way into the kernel.
//!
//! Rx reads each frame into a fresh mbuf, spilling into a per-queue scratch buffer (made when
//! the queue is taken, never per packet) when the frame is longer than one mbuf; such a frame
//! becomes an mbuf chain. A frame longer than `max_rx_pktlen` is dropped and counted. Tx
//! drops and counts frames shorter than an Ethernet header or longer than 65535 bytes, and
//! frames the kernel refuses; `EAGAIN` leaves the rest of the burst to the caller.
//!
//! **Offloads.** When the application enables checksum, TSO or LRO offloads
//! (`PortConf::rx_offloads`/`tx_offloads`), each fd is opened with `IFF_VNET_HDR` and every
//! frame carries a 10-byte virtio-net header, translated as on the virtio ports
//! (`virtqueue::net_hdr`): Tx requests become `NEEDS_CSUM`/GSO headers the kernel completes
//! or segments; `TUNSETOFFLOAD` tells the kernel what we take on Rx (`TUN_F_CSUM` with Rx
//! checksum offload or LRO, `TUN_F_TSO4/6` with LRO), and its headers become Rx flags (or a
//! checksum completed in software); a malformed one is dropped and counted
//! (`bad_virtio_net_hdr`). Without offloads nothing changes (no header).
//!
//! On close the interface is removed unless `persist=1` (`TUNSETPERSIST`), whoever created it.
//! Devargs: `iface` (default `dtap<N>`, N the instance number), `persist`, `mac` (see
//! [`DRIVER`]). Opening needs `CAP_NET_ADMIN`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use ferrovia_ethdev::{
    Burst, Devargs, DriverSpec, Error, ErrorCause, KeyKind, KeySpec, Link, MacAddr, Offloads, Port,
    PortConf, PortInfo, PortStats, QueueStats, Result, RxOffloads, RxQueue, TxQueue,
};
use ferrovia_memory::{LcoreCaches, Mempool};

use ferrovia_virtqueue::net_hdr::{HdrAccept, NetHdr, RxPolicy, rx_apply, tx_hdr};

use crate::netif;
use crate::offload;
use crate::shared::{RunState, Taken, TakenGuard};

/// The devargs keys of `net_tap`.
const KEYS: &[KeySpec] = &[
    KeySpec::new(
        "iface",
        KeyKind::Text,
        "the tap interface to create or attach to",
    )
    .default_value("dtapN, N the instance number"),
    KeySpec::flag(
        "persist",
        "1: keep the interface after the port closes (TUNSETPERSIST)",
    )
    .default_value("0"),
    KeySpec::MAC,
];

/// The `net_tap` driver, for the registry.
pub static DRIVER: DriverSpec = DriverSpec {
    name: "net_tap",
    aliases: &["eth_tap"],
    summary: "a kernel tap interface (one read or write system call per packet)",
    keys: KEYS,
    open: |d, c| Ok(Box::new(TapPort::open(d, c)?)),
};

/// Largest frame a tap fd takes.
const TAP_MAX_FRAME: usize = 65535;
/// The shortest frame: an Ethernet header.
const ETH_HLEN: usize = 14;
/// Most queues a tap interface can have (the kernel's `MAX_TAP_QUEUES`).
const MAX_QUEUES: u16 = 256;

/// The checked options of a tap port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapConfig {
    /// Interface name.
    pub iface: String,
    /// Keep the interface after close.
    pub persist: bool,
}

impl TapConfig {
    /// Reads and checks the devargs (without touching the system).
    pub fn from_devargs(d: &Devargs) -> Result<TapConfig> {
        d.check_keys(KEYS)?;
        let iface = match d.get("iface") {
            Some(i) => i.to_string(),
            None => format!("dtap{}", d.index.unwrap_or(0)),
        };
        netif::check_ifname(&d.name, &iface)?;
        Ok(TapConfig {
            iface,
            persist: d.flag("persist", false)?,
        })
    }
}

/// One tap queue fd.
#[derive(Debug)]
struct TapFd(OwnedFd);

/// `TUNSETOFFLOAD` flags (linux/if_tun.h): what the reader of the fd takes.
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;

/// Bytes of the virtio-net header in front of each frame with `IFF_VNET_HDR` (the kernel's
/// default size: no `num_buffers`).
const VNET_HDR_LEN: usize = 10;

/// The offloads of a tap port opened with `IFF_VNET_HDR`.
#[derive(Debug, Clone, Copy)]
struct Vnet {
    /// What the kernel may ask of us on Rx (as set with `TUNSETOFFLOAD`).
    rx_acc: HdrAccept,
    /// The application's Rx choices.
    rx_pol: RxPolicy,
}

impl Vnet {
    /// From the application's offloads; None when it enabled none a tap can do.
    fn from_conf(conf: &PortConf) -> Option<Vnet> {
        let rx = conf.rx_offloads & offload::RX_CAPA;
        let rx_csum = rx.intersects(RxOffloads::TCP_CKSUM | RxOffloads::UDP_CKSUM);
        let lro = rx.contains(RxOffloads::TCP_LRO);
        if !rx_csum && !lro && !offload::tx_enabled(conf) {
            return None;
        }
        Some(Vnet {
            rx_acc: HdrAccept {
                csum: rx_csum || lro,
                tso4: lro,
                tso6: lro,
            },
            rx_pol: offload::rx_policy(conf),
        })
    }

    /// The `TUNSETOFFLOAD` argument.
    fn tun_flags(&self) -> libc::c_uint {
        let mut f = 0;
        if self.rx_acc.csum {
            f |= TUN_F_CSUM;
        }
        if self.rx_acc.tso4 {
            f |= TUN_F_TSO4;
        }
        if self.rx_acc.tso6 {
            f |= TUN_F_TSO6;
        }
        f
    }
}

/// Opens `/dev/net/tun` and attaches it to (or creates) tap `iface`; with `vnet`, with a
/// virtio-net header in front of every frame and the kernel told what we take on Rx.
fn open_tap(port: &str, iface: &str, multi: bool, vnet: Option<&Vnet>) -> Result<TapFd> {
    const PATH: &std::ffi::CStr = c"/dev/net/tun";
    // SAFETY: PATH is a valid C string; the result is checked before use.
    let raw = unsafe {
        libc::open(
            PATH.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
                Error::Unsupported(format!(
                    "{port}: /dev/net/tun is missing ({e}); load the tun module (`modprobe tun`) or, in a container, pass the device in (--device /dev/net/tun)"
                ))
            }
            Some(libc::EPERM) | Some(libc::EACCES) => Error::Config(format!(
                "{port}: cannot open /dev/net/tun ({e}); tap ports need CAP_NET_ADMIN (run as root or grant cap_net_admin)"
            )),
            _ => Error::io(format!("{port}: opening /dev/net/tun"), e),
        });
    }
    // SAFETY: raw is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = netif::ifreq(iface);
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if multi {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    if vnet.is_some() {
        flags |= libc::IFF_VNET_HDR;
    }
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one struct ifreq; req is a valid exclusive one.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETIFF,
            &mut req as *mut libc::ifreq,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        let why = match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => {
                " (tap ports need CAP_NET_ADMIN: run as root or grant cap_net_admin, or create the tap beforehand for this user with `ip tuntap add mode tap user <you>`)".to_string()
            }
            Some(libc::EBUSY) => format!(
                " ({iface} is already open by another process or port, or is not a {}tap; pick another iface= or close the other user)",
                if multi { "multi-queue " } else { "single-queue " }
            ),
            Some(libc::EINVAL) => format!(
                " ({iface} exists but is not a {}tap interface; pick another iface= name or delete it with `ip link del {iface}`)",
                if multi { "multi-queue " } else { "" }
            ),
            _ => String::new(),
        };
        return Err(Error::Config(format!(
            "{port}: TUNSETIFF for tap {iface} failed: {e}{why}"
        )));
    }
    if let Some(v) = vnet {
        let f = v.tun_flags();
        // SAFETY: TUNSETOFFLOAD takes its argument by value; the fd is a tun fd.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, f as libc::c_ulong) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return Err(Error::Config(format!(
                "{port}: the kernel refused TUNSETOFFLOAD {f:#x} on tap {iface} ({e}); turn off the Rx checksum/LRO offloads of this port"
            )));
        }
    }
    Ok(TapFd(fd))
}

/// The tap port.
#[derive(Debug)]
pub struct TapPort {
    name: String,
    mac: MacAddr,
    conf: PortConf,
    /// Offloads through a virtio-net header (None: plain frames).
    vnet: Option<Vnet>,
    cfg: TapConfig,
    nq: u16,
    fds: Vec<Arc<TapFd>>,
    ctl: OwnedFd,
    state: Arc<RunState>,
    rx_stats: Vec<Arc<QueueStats>>,
    tx_stats: Vec<Arc<QueueStats>>,
    rx_taken: Taken,
    tx_taken: Taken,
}

impl TapPort {
    /// Opens a tap port: one `/dev/net/tun` fd per queue, attached to `iface` (created if it
    /// does not exist).
    pub fn open(d: &Devargs, conf: &PortConf) -> Result<TapPort> {
        let cfg = TapConfig::from_devargs(d)?;
        let name = d.name.clone();
        let mac = d.mac_or_derived(conf.port_id)?;
        let nq = conf.nb_rxq.max(conf.nb_txq).max(1);
        if nq > MAX_QUEUES {
            return Err(Error::Config(format!(
                "{name}: {nq} queues asked for; a tap interface has at most {MAX_QUEUES}"
            )));
        }
        let ctl = netif::ctl_socket()
            .map_err(|e| Error::io(format!("{name}: control socket for {}", cfg.iface), e))?;
        let vnet = Vnet::from_conf(conf);
        let mut fds = Vec::with_capacity(nq as usize);
        for _ in 0..nq {
            fds.push(Arc::new(open_tap(
                &name,
                &cfg.iface,
                nq > 1,
                vnet.as_ref(),
            )?));
        }
        let persist = cfg.persist as libc::c_ulong;
        // SAFETY: TUNSETPERSIST takes its argument by value; the fd is a tun fd.
        let r = unsafe { libc::ioctl(fds[0].0.as_raw_fd(), libc::TUNSETPERSIST, persist) };
        if r < 0 {
            return Err(Error::io(
                format!("{name}: TUNSETPERSIST {persist} on {}", cfg.iface),
                io::Error::last_os_error(),
            ));
        }
        log::info!(
            "{name}: tap {} with {nq} queue(s){}",
            cfg.iface,
            if cfg.persist { ", persistent" } else { "" }
        );
        Ok(TapPort {
            name,
            mac,
            conf: conf.clone(),
            vnet,
            cfg,
            nq,
            fds,
            ctl,
            state: Arc::default(),
            rx_stats: (0..nq).map(|_| Arc::default()).collect(),
            tx_stats: (0..nq).map(|_| Arc::default()).collect(),
            rx_taken: Taken::new(nq),
            tx_taken: Taken::new(nq),
        })
    }

    /// The tap interface's name.
    pub fn iface(&self) -> &str {
        &self.cfg.iface
    }

    fn set_up(&self, up: bool) -> Result<()> {
        netif::set_flags(&self.ctl, &self.cfg.iface, libc::IFF_UP, up).map_err(|e| {
            Error::io(
                format!(
                    "{}: bringing {} {}{}",
                    self.name,
                    self.cfg.iface,
                    if up { "up" } else { "down" },
                    netif::perm_hint(&e, "CAP_NET_ADMIN")
                ),
                e,
            )
        })
    }
}

impl Port for TapPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "net_tap",
            name: self.name.clone(),
            mac: self.mac,
            nb_rx_queues: self.nq,
            nb_tx_queues: self.nq,
            max_queues: MAX_QUEUES,
            nb_rxd: self.conf.nb_rxd,
            nb_txd: self.conf.nb_txd,
            max_frame_size: self.conf.max_rx_pktlen.min(TAP_MAX_FRAME as u32),
            offloads: Offloads {
                rx: offload::RX_CAPA,
                tx: offload::TX_CAPA,
            },
            virtio_features: None,
            virtio_offered: None,
            switch_domain: None,
        }
    }
    fn start(&mut self) -> Result<()> {
        self.set_up(true)?;
        self.state.set(true);
        Ok(())
    }
    fn stop(&mut self) -> Result<()> {
        self.state.set(false);
        self.set_up(false)
    }
    fn link(&self) -> Link {
        let flags = netif::flags(&self.ctl, &self.cfg.iface).unwrap_or(0);
        Link {
            up: self.state.started() && flags & libc::IFF_UP != 0,
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
        Ok(Box::new(TapRx {
            _guard: guard,
            fd: self.fds[q as usize].clone(),
            pool: self.conf.pool.clone(),
            scratch: vec![0; TAP_MAX_FRAME + 1].into_boxed_slice(),
            max_len: if self.conf.rx_offloads.contains(RxOffloads::TCP_LRO) {
                // A 64 KiB GSO packet plus its Ethernet header and VLAN tags.
                TAP_MAX_FRAME + 14 + 8
            } else {
                self.conf.max_rx_pktlen as usize
            },
            vnet: self.vnet,
            port_id: self.conf.port_id,
            state: self.state.clone(),
            stats: self.rx_stats[q as usize].clone(),
        }))
    }
    fn tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>> {
        let guard = self.tx_taken.take(&self.name, "tx", q)?;
        Ok(Box::new(TapTx {
            _guard: guard,
            vnet: self.vnet.is_some(),
            fd: self.fds[q as usize].clone(),
            state: self.state.clone(),
            stats: self.tx_stats[q as usize].clone(),
        }))
    }
    fn set_promisc(&mut self, _on: bool) -> Result<()> {
        // The port sees every frame the kernel sends out of the tap.
        Ok(())
    }
}

struct TapRx {
    _guard: TakenGuard,
    fd: Arc<TapFd>,
    pool: Mempool,
    /// Where the part of a frame that does not fit in the first mbuf lands.
    scratch: Box<[u8]>,
    max_len: usize,
    /// Frames come with a virtio-net header in front.
    vnet: Option<Vnet>,
    port_id: u16,
    state: Arc<RunState>,
    stats: Arc<QueueStats>,
}

impl RxQueue for TapRx {
    fn rx_burst(&mut self, caches: &mut LcoreCaches, pkts: &mut Burst, max: usize) -> usize {
        if !self.state.started() {
            return 0;
        }
        let want = max.min(pkts.remaining_capacity());
        let cache = caches.for_pool(&self.pool);
        let (mut got, mut bytes) = (0, 0);
        while got < want {
            let Some(mut m) = cache.alloc() else {
                self.stats.error(ErrorCause::NoMbuf, 1);
                break;
            };
            let room = m.tailroom();
            let head = m.data_ptr();
            let mut vh = [0u8; VNET_HDR_LEN];
            let hlen = if self.vnet.is_some() { VNET_HDR_LEN } else { 0 };
            let iov = [
                libc::iovec {
                    iov_base: vh.as_mut_ptr().cast(),
                    iov_len: hlen,
                },
                libc::iovec {
                    // SAFETY: data_ptr + data_len (0 for a fresh mbuf) starts the tailroom.
                    iov_base: unsafe { head.add(m.data_len()) }.cast(),
                    iov_len: room,
                },
                libc::iovec {
                    iov_base: self.scratch.as_mut_ptr().cast(),
                    iov_len: self.scratch.len(),
                },
            ];
            // Without a virtio-net header the first iovec is left out.
            let (first_iov, count) = if hlen == 0 { (1, 2) } else { (0, 3) };
            // SAFETY: the iovecs describe writable memory we own exclusively (the header
            // array, the mbuf's tailroom, the scratch buffer) for their whole length.
            let n = unsafe { libc::readv(self.fd.0.as_raw_fd(), iov[first_iov..].as_ptr(), count) };
            if n < 0 {
                cache.free(m);
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EAGAIN) {
                    log::debug!("tap rx: read: {e}");
                }
                break;
            }
            let Some(n) = (n as usize).checked_sub(hlen) else {
                cache.free(m);
                self.stats.error(ErrorCause::DescLen, 1);
                continue;
            };
            if n > self.max_len || n >= self.scratch.len() + room {
                cache.free(m);
                self.stats.error(ErrorCause::TooLong, 1);
                continue;
            }
            if n < ETH_HLEN {
                cache.free(m);
                self.stats.error(ErrorCause::DescLen, 1);
                continue;
            }
            let first = n.min(room);
            let _ = m.append(first);
            if n > room {
                let Some(tail) = netif::copy_in(cache, &self.scratch[..n - room]) else {
                    cache.free(m);
                    self.stats.error(ErrorCause::NoMbuf, 1);
                    break;
                };
                m.chain(tail);
            }
            if let Some(v) = &self.vnet
                && rx_apply(&mut m, &NetHdr::from_bytes(&vh), v.rx_acc, v.rx_pol).is_err()
            {
                cache.free(m);
                self.stats.error(ErrorCause::BadNetHdr, 1);
                continue;
            }
            m.set_port(self.port_id);
            pkts.push(m);
            got += 1;
            bytes += n;
        }
        self.stats.add(got as u64, bytes as u64);
        got
    }
}

struct TapTx {
    _guard: TakenGuard,
    /// Frames go out with a virtio-net header in front.
    vnet: bool,
    fd: Arc<TapFd>,
    state: Arc<RunState>,
    stats: Arc<QueueStats>,
}

/// Most segments a chain may have to go out in one `writev` (longer chains are refused).
const MAX_IOV: usize = 64;

impl TxQueue for TapTx {
    fn tx_burst(&mut self, caches: &mut LcoreCaches, pkts: &mut Burst) -> usize {
        if !self.state.started() {
            return 0;
        }
        if self.vnet {
            // The kernel completes checksums and segments whatever the header asks; only the
            // IPv4 header checksum is done here (the header has no field for it).
            let all = HdrAccept {
                csum: true,
                tso4: true,
                tso6: true,
            };
            offload::tx_pass_any_pool(pkts, all, caches, &self.stats);
        }
        let (mut done, mut sent, mut bytes) = (0, 0, 0);
        for m in pkts.iter() {
            let len = m.pkt_len();
            if len > TAP_MAX_FRAME {
                self.stats.error(ErrorCause::TooLong, 1);
                done += 1;
                continue;
            }
            if len < ETH_HLEN || m.nb_segs() > MAX_IOV {
                self.stats.error(ErrorCause::DescLen, 1);
                done += 1;
                continue;
            }
            let fd = self.fd.0.as_raw_fd();
            let r = if self.vnet {
                let vh = tx_hdr(m).to_bytes();
                let mut iov = [libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                }; MAX_IOV + 1];
                iov[0] = libc::iovec {
                    iov_base: vh.as_ptr() as *mut libc::c_void,
                    iov_len: VNET_HDR_LEN,
                };
                let mut k = 1;
                for s in m.segments() {
                    iov[k] = libc::iovec {
                        iov_base: s.as_ptr() as *mut libc::c_void,
                        iov_len: s.len(),
                    };
                    k += 1;
                }
                // SAFETY: the first k iovecs describe the header array and the chain's
                // segments, live while m is borrowed; writev only reads them.
                unsafe { libc::writev(fd, iov.as_ptr(), k as libc::c_int) }
            } else if m.nb_segs() == 1 {
                let d = m.data();
                // SAFETY: d is a live byte slice of d.len() bytes; write only reads it.
                unsafe { libc::write(fd, d.as_ptr().cast(), d.len()) }
            } else {
                let mut iov = [libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                }; MAX_IOV];
                let mut k = 0;
                for s in m.segments() {
                    iov[k] = libc::iovec {
                        iov_base: s.as_ptr() as *mut libc::c_void,
                        iov_len: s.len(),
                    };
                    k += 1;
                }
                // SAFETY: the first k iovecs describe the chain's segments, live while m is
                // borrowed; writev only reads them.
                unsafe { libc::writev(fd, iov.as_ptr(), k as libc::c_int) }
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EAGAIN) {
                    break;
                }
                // Refused (the interface went down, or a frame it will not take): drop it.
                log::debug!("tap tx: write: {e}");
                self.stats.error(
                    if e.raw_os_error() == Some(libc::EINVAL) {
                        ErrorCause::DescLen
                    } else {
                        ErrorCause::RingFull
                    },
                    1,
                );
                done += 1;
                continue;
            }
            done += 1;
            sent += 1;
            bytes += len;
        }
        caches.free_all(pkts.drain(..done));
        self.stats.add(sent as u64, bytes as u64);
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(s: &str) -> Result<TapConfig> {
        TapConfig::from_devargs(&Devargs::parse(s).unwrap())
    }

    #[test]
    fn iface_defaults_to_dtap_and_the_instance_number() {
        assert_eq!(cfg("net_tap0").unwrap().iface, "dtap0");
        assert_eq!(cfg("eth_tap7").unwrap().iface, "dtap7");
        assert_eq!(cfg("net_tap").unwrap().iface, "dtap0");
        let c = cfg("net_tap3,iface=mytap,persist=1").unwrap();
        assert_eq!(
            c,
            TapConfig {
                iface: "mytap".into(),
                persist: true
            }
        );
    }

    #[test]
    fn bad_devargs_name_the_key() {
        for (args, want) in [
            ("net_tap0,iface=a b", "not a valid interface name"),
            (
                "net_tap0,iface=0123456789abcdef",
                "not a valid interface name",
            ),
            ("net_tap0,iface=", "non-empty"),
            ("net_tap0,persist=yes", "0 or 1"),
            ("net_tap0,remote=eth0", "unknown devargs key 'remote'"),
            (
                "net_tap0,mac=00:00:00:00:00:00",
                "other than 00:00:00:00:00:00",
            ),
        ] {
            let e = cfg(args).unwrap_err().to_string();
            assert!(e.starts_with("net_tap0") && e.contains(want), "{args}: {e}");
        }
    }
}
