//! vhost-kernel: the control plane of virtio-user's exception path, through the kernel's
//! vhost-net device and a tap interface.
//!
//! As DPDK's virtio-user does it, each queue pair has its own `/dev/vhost-net` fd and its own
//! tap queue fd (a multi-queue tap when there are several pairs). The rings stay in this
//! process's memory: the kernel's vhost worker reads and writes them through the memory
//! table, which maps every shareable region one to one (guest address = our address). The
//! data path is the same ring code as with a vhost-user backend; only the set-up differs.
//!
//! [`VhostNet`] wraps one vhost-net fd and [`Tap`] one tap queue fd, each call a single
//! ioctl whose failure names the ioctl, the errno and, where it is known, the fix.
//! [`is_vhost_kernel_path`] tells a vhost-net device from a vhost-user socket. The raw
//! request numbers and structs are in `sys` (the only `unsafe` here).

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

mod sys;

pub use sys::MemRegion;

/// Where the vhost-net device usually is.
pub const VHOST_NET_PATH: &str = "/dev/vhost-net";
/// The tun/tap clone device.
pub const TUN_PATH: &str = "/dev/net/tun";
/// The default tap name: the kernel picks the first free `tapN`.
pub const DEFAULT_TAP_NAME: &str = "tap%d";
/// Where the vhost module says how many memory regions a table may have.
pub const MAX_MEM_REGIONS_PATH: &str = "/sys/module/vhost/parameters/max_mem_regions";
/// The vhost module's default `max_mem_regions`.
pub const DEFAULT_MAX_MEM_REGIONS: usize = 64;

/// `TUN_F_CSUM`: the tap takes frames whose checksum is left to it.
pub const TUN_F_CSUM: u32 = 0x01;
/// `TUN_F_TSO4`.
pub const TUN_F_TSO4: u32 = 0x02;
/// `TUN_F_TSO6`.
pub const TUN_F_TSO6: u32 = 0x04;
/// `TUN_F_TSO_ECN`.
pub const TUN_F_TSO_ECN: u32 = 0x08;
/// `TUN_F_UFO`.
pub const TUN_F_UFO: u32 = 0x10;

/// A vhost-kernel set-up step that failed, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The vhost-net (or tun) device node does not exist.
    #[error("{path}: no such file (load the {module} module: modprobe {module})")]
    Missing {
        /// The device path.
        path: String,
        /// The kernel module that provides it.
        module: &'static str,
    },
    /// Opening the device was refused.
    #[error(
        "{path}: permission denied ({source}); run as root, or give this user read-write access to {path} (and CAP_NET_ADMIN for the tap)"
    )]
    Permission {
        /// The device path.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// Opening the device failed otherwise.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The device path.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// The path exists but is not a character device.
    #[error(
        "{path} is not a character device; path= must be a vhost-user socket or the vhost-net device (/dev/vhost-net)"
    )]
    NotCharDevice {
        /// The path.
        path: String,
    },
    /// The kernel refused an ioctl.
    #[error("{ioctl} on {on} failed: {errno} ({source}){hint}")]
    Ioctl {
        /// The ioctl's name (`VHOST_SET_MEM_TABLE`).
        ioctl: &'static str,
        /// What it was made on (`/dev/vhost-net (queue pair 0)`, `tap tap0`).
        on: String,
        /// The errno's symbolic name (`EINVAL`).
        errno: &'static str,
        /// The OS error.
        source: io::Error,
        /// A hint, starting with "; ", or empty.
        hint: String,
    },
    /// A tap name the kernel cannot take.
    #[error(
        "iface={name}: {why}; a tap name has 1 to {max} characters without '/', ':' or spaces (e.g. tap0, or tap%d to let the kernel choose)",
        max = libc::IFNAMSIZ - 1
    )]
    BadTapName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Our memory has more regions than vhost-net accepts.
    #[error(
        "this process has {have} shared memory regions but vhost-net accepts at most {max} ({MAX_MEM_REGIONS_PATH}); use fewer mempools, or load the vhost module with a higher limit (modprobe -r vhost_net vhost; modprobe vhost max_mem_regions={have}; modprobe vhost_net)"
    )]
    TooManyRegions {
        /// Regions we would send.
        have: usize,
        /// The module's limit.
        max: usize,
    },
}

/// The symbolic name of an errno, for messages.
pub fn errno_name(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM",
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::EBADF) => "EBADF",
        Some(libc::ENOMEM) => "ENOMEM",
        Some(libc::EACCES) => "EACCES",
        Some(libc::EFAULT) => "EFAULT",
        Some(libc::EBUSY) => "EBUSY",
        Some(libc::EEXIST) => "EEXIST",
        Some(libc::ENODEV) => "ENODEV",
        Some(libc::ENXIO) => "ENXIO",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::ENOTTY) => "ENOTTY",
        Some(libc::E2BIG) => "E2BIG",
        Some(libc::ENOSPC) => "ENOSPC",
        Some(libc::EOPNOTSUPP) => "EOPNOTSUPP",
        _ => "errno",
    }
}

fn ioctl_err(ioctl: &'static str, on: &str, source: io::Error, hint: &str) -> KernelError {
    KernelError::Ioctl {
        ioctl,
        on: on.to_string(),
        errno: errno_name(&source),
        source,
        hint: if hint.is_empty() {
            String::new()
        } else {
            format!("; {hint}")
        },
    }
}

/// Whether `path` names a vhost-kernel device rather than a vhost-user socket: an existing
/// character device, or a path under `/dev/` starting with `vhost-` (so that a missing
/// `/dev/vhost-net` gets the "load the module" error rather than a socket error). Anything
/// else, existing or not, is a vhost-user socket path.
pub fn is_vhost_kernel_path(path: &str) -> bool {
    match std::fs::metadata(path) {
        Ok(m) => m.file_type().is_char_device(),
        Err(_) => path
            .strip_prefix("/dev/")
            .is_some_and(|rest| rest.starts_with("vhost-")),
    }
}

/// Opens a character device read-write, close-on-exec, with the errors this module gives.
fn open_dev(path: &str, module: &'static str, nonblock: bool) -> Result<OwnedFd, KernelError> {
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    o.custom_flags(libc::O_CLOEXEC | if nonblock { libc::O_NONBLOCK } else { 0 });
    match o.open(path) {
        Ok(f) => {
            let is_chr = f.metadata().map(|m| m.file_type().is_char_device());
            if let Ok(false) = is_chr {
                return Err(KernelError::NotCharDevice {
                    path: path.to_string(),
                });
            }
            Ok(OwnedFd::from(f))
        }
        Err(e) => Err(match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => KernelError::Missing {
                path: path.to_string(),
                module,
            },
            Some(libc::EACCES) | Some(libc::EPERM) => KernelError::Permission {
                path: path.to_string(),
                source: e,
            },
            _ => KernelError::Open {
                path: path.to_string(),
                source: e,
            },
        }),
    }
}

/// The vhost module's limit on memory regions: `max_mem_regions`, or 64 when it cannot be
/// read (the module's default).
pub fn max_mem_regions() -> usize {
    std::fs::read_to_string(MAX_MEM_REGIONS_PATH)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(DEFAULT_MAX_MEM_REGIONS)
}

/// Builds an identity-mapped memory table (guest address = user address) from regions given
/// as `(address, length)`, checking the count against `max`.
pub fn identity_table(
    regions: impl IntoIterator<Item = (u64, u64)>,
    max: usize,
) -> Result<Vec<MemRegion>, KernelError> {
    let t: Vec<MemRegion> = regions
        .into_iter()
        .filter(|&(_, len)| len > 0)
        .map(|(addr, len)| MemRegion {
            guest_phys_addr: addr,
            memory_size: len,
            userspace_addr: addr,
            flags_padding: 0,
        })
        .collect();
    if t.len() > max {
        return Err(KernelError::TooManyRegions { have: t.len(), max });
    }
    Ok(t)
}

/// One split ring's set-up for the kernel: size, base index and addresses (our addresses,
/// which are also the guest addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelVring {
    /// Ring size.
    pub size: u16,
    /// Where the device starts (`VHOST_SET_VRING_BASE`).
    pub base: u16,
    /// Descriptor table.
    pub desc: u64,
    /// Avail ring.
    pub avail: u64,
    /// Used ring.
    pub used: u64,
}

/// One `/dev/vhost-net` fd: one vhost-net device with one Rx (0) and one Tx (1) vring.
#[derive(Debug)]
pub struct VhostNet {
    fd: OwnedFd,
    /// For messages: the path and queue pair.
    what: String,
}

impl VhostNet {
    /// Opens the vhost-net device at `path` for queue pair `qp` and makes this process its
    /// owner (`VHOST_SET_OWNER`: the kernel's worker then works in this address space).
    pub fn open(path: &str, qp: u16) -> Result<VhostNet, KernelError> {
        let fd = open_dev(path, "vhost_net", false)?;
        let v = VhostNet {
            fd,
            what: format!("{path} (queue pair {qp})"),
        };
        sys::ioctl_none(v.raw(), sys::VHOST_SET_OWNER).map_err(|e| {
            let hint = if e.raw_os_error() == Some(libc::ENOTTY) {
                "this is not a vhost device"
            } else {
                ""
            };
            ioctl_err("VHOST_SET_OWNER", &v.what, e, hint)
        })?;
        Ok(v)
    }

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The features the device offers (`VHOST_GET_FEATURES`).
    pub fn features(&self) -> Result<u64, KernelError> {
        sys::get_features(self.raw())
            .map_err(|e| ioctl_err("VHOST_GET_FEATURES", &self.what, e, ""))
    }

    /// Acknowledges `features` (`VHOST_SET_FEATURES`).
    pub fn set_features(&self, features: u64) -> Result<(), KernelError> {
        sys::set_features(self.raw(), features).map_err(|e| {
            ioctl_err(
                "VHOST_SET_FEATURES",
                &self.what,
                e,
                &format!("features {features:#x}"),
            )
        })
    }

    /// Sends the memory table (`VHOST_SET_MEM_TABLE`).
    pub fn set_mem_table(&self, table: &[MemRegion]) -> Result<(), KernelError> {
        sys::set_mem_table(self.raw(), table).map_err(|e| {
            let hint = match e.raw_os_error() {
                Some(libc::E2BIG) => format!(
                    "{} regions is more than the vhost module's max_mem_regions ({MAX_MEM_REGIONS_PATH})",
                    table.len()
                ),
                _ => format!("{} regions", table.len()),
            };
            ioctl_err("VHOST_SET_MEM_TABLE", &self.what, e, &hint)
        })
    }

    /// Sets up vring `index` (0: Rx, 1: Tx): size, base, addresses, kick and call eventfds
    /// (`VHOST_SET_VRING_NUM`, `_BASE`, `_ADDR`, `_KICK`, `_CALL`). The kernel takes its own
    /// reference to both eventfds; a bad fd is refused with `EBADF`.
    pub fn set_vring(
        &self,
        index: u32,
        ring: &KernelVring,
        kick: RawFd,
        call: RawFd,
    ) -> Result<(), KernelError> {
        let w = &self.what;
        sys::set_vring_state(
            self.raw(),
            sys::VHOST_SET_VRING_NUM,
            sys::VringState {
                index,
                num: ring.size as u32,
            },
        )
        .map_err(|e| {
            ioctl_err(
                "VHOST_SET_VRING_NUM",
                w,
                e,
                &format!("vring {index}, size {}", ring.size),
            )
        })?;
        sys::set_vring_state(
            self.raw(),
            sys::VHOST_SET_VRING_BASE,
            sys::VringState {
                index,
                num: ring.base as u32,
            },
        )
        .map_err(|e| ioctl_err("VHOST_SET_VRING_BASE", w, e, &format!("vring {index}")))?;
        sys::set_vring_addr(
            self.raw(),
            sys::VringAddr {
                index,
                flags: 0,
                desc_user_addr: ring.desc,
                used_user_addr: ring.used,
                avail_user_addr: ring.avail,
                log_guest_addr: 0,
            },
        )
        .map_err(|e| {
            ioctl_err(
                "VHOST_SET_VRING_ADDR",
                w,
                e,
                &format!(
                    "vring {index} at {:#x}/{:#x}/{:#x}, outside the memory table?",
                    ring.desc, ring.avail, ring.used
                ),
            )
        })?;
        let file = |fd: RawFd| sys::VringFile { index, fd };
        sys::set_vring_file(self.raw(), sys::VHOST_SET_VRING_KICK, file(kick))
            .map_err(|e| ioctl_err("VHOST_SET_VRING_KICK", w, e, &format!("vring {index}")))?;
        sys::set_vring_file(self.raw(), sys::VHOST_SET_VRING_CALL, file(call))
            .map_err(|e| ioctl_err("VHOST_SET_VRING_CALL", w, e, &format!("vring {index}")))?;
        Ok(())
    }

    /// Attaches vring `index` to `tap` (`VHOST_NET_SET_BACKEND`), or detaches it with None.
    pub fn set_backend(&self, index: u32, tap: Option<&Tap>) -> Result<(), KernelError> {
        let fd = tap.map_or(-1, |t| t.fd.as_raw_fd());
        sys::set_vring_file(
            self.raw(),
            sys::VHOST_NET_SET_BACKEND,
            sys::VringFile { index, fd },
        )
        .map_err(|e| {
            let hint = match (tap, e.raw_os_error()) {
                (Some(t), Some(libc::ENOTSOCK)) => {
                    format!("{} is not a tap or macvtap fd", t.name)
                }
                (Some(t), _) => format!("vring {index}, tap {}", t.name),
                (None, _) => format!("vring {index}, detaching"),
            };
            ioctl_err("VHOST_NET_SET_BACKEND", &self.what, e, &hint)
        })
    }

    /// Where the device stopped on vring `index` (`VHOST_GET_VRING_BASE`, which stops it).
    pub fn vring_base(&self, index: u32) -> Result<u16, KernelError> {
        sys::get_vring_base(self.raw(), index)
            .map(|n| n as u16)
            .map_err(|e| ioctl_err("VHOST_GET_VRING_BASE", &self.what, e, ""))
    }
}

/// Checks a tap name: 1 to 15 bytes, no `/`, `:`, white space or control characters, not `.`
/// or `..`. A `%d` is allowed: the kernel replaces it with the first free number.
pub fn check_tap_name(name: &str) -> Result<(), KernelError> {
    let bad = |why| {
        Err(KernelError::BadTapName {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("the name is empty");
    }
    if name.len() >= libc::IFNAMSIZ {
        return bad("the name is too long");
    }
    if name == "." || name == ".." {
        return bad("the name cannot be . or ..");
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || !(0x20..=0x7e).contains(&b))
    {
        return bad("the name has a character interfaces cannot have");
    }
    if name.matches('%').count() > 1 || (name.contains('%') && !name.contains("%d")) {
        return bad("the only pattern a name may hold is one %d");
    }
    Ok(())
}

/// The virtio-net offload features a vhost-net device's driver may negotiate although
/// `VHOST_GET_FEATURES` does not list them: the tap implements them (its `IFF_VNET_HDR`
/// header carries them), so they are offered when the tap has a virtio-net header, and are
/// masked out of `VHOST_SET_FEATURES` (vhost-net refuses bits it does not know). `CSUM`,
/// `HOST_TSO4/6` (we send partial checksums and large packets: the tap's writer side
/// always takes them) and `GUEST_CSUM`, `GUEST_TSO4/6` (the tap may hand us those, as
/// [`tap_offloads`] tells it with `TUNSETOFFLOAD`).
pub const TAP_OFFLOAD_FEATURES: u64 = 1 << CSUM
    | 1 << GUEST_CSUM
    | 1 << GUEST_TSO4
    | 1 << GUEST_TSO6
    | 1 << HOST_TSO4
    | 1 << HOST_TSO6;

const CSUM: u32 = 0;
const GUEST_CSUM: u32 = 1;
const GUEST_TSO4: u32 = 7;
const GUEST_TSO6: u32 = 8;
const GUEST_ECN: u32 = 9;
const GUEST_UFO: u32 = 10;
const HOST_TSO4: u32 = 11;
const HOST_TSO6: u32 = 12;

/// The `TUN_F_*` flags for a set of negotiated virtio-net features: what the tap may hand the
/// driver on its receive side, so the driver-receive features (`GUEST_CSUM`, and under it
/// `GUEST_TSO4/6`, `GUEST_ECN`, `GUEST_UFO`), as QEMU and DPDK set them. The transmit side
/// (`CSUM`, `HOST_TSO*`) needs no flag: a tap always takes the header's requests.
pub fn tap_offloads(features: u64) -> u32 {
    let has = |b: u32| features & (1u64 << b) != 0;
    let mut f = 0;
    if has(GUEST_CSUM) {
        f |= TUN_F_CSUM;
        if has(GUEST_TSO4) {
            f |= TUN_F_TSO4;
        }
        if has(GUEST_TSO6) {
            f |= TUN_F_TSO6;
        }
        if has(GUEST_ECN) && f & (TUN_F_TSO4 | TUN_F_TSO6) != 0 {
            f |= TUN_F_TSO_ECN;
        }
        if has(GUEST_UFO) {
            f |= TUN_F_UFO;
        }
    }
    f
}

/// One queue of a tap interface, set up for vhost-net: `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
    multi_queue: bool,
}

impl Tap {
    /// Creates (or attaches to) tap `name` (`%d` lets the kernel choose the number), as a
    /// multi-queue tap when `multi_queue`.
    pub fn open(name: &str, multi_queue: bool) -> Result<Tap, KernelError> {
        check_tap_name(name)?;
        let fd = open_dev(TUN_PATH, "tun", true)?;
        let mut flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
        if multi_queue {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        let mut req = sys::ifreq(name, flags as libc::c_short);
        sys::tun_set_iff(fd.as_raw_fd(), &mut req).map_err(|e| {
            let kind = if multi_queue { "multi-queue " } else { "single-queue " };
            let hint = match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    "creating a tap needs CAP_NET_ADMIN: run as root, or create it beforehand for this user (ip tuntap add mode tap multi_queue vnet_hdr user <you> name <tap>)".to_string()
                }
                Some(libc::EBUSY) => format!(
                    "{name} is already in use (another process or port holds it, or it is a {kind}tap only partly open); pick another iface="
                ),
                Some(libc::EINVAL) => format!(
                    "{name} exists but is not a {kind}tap with these flags (tun, or other flags); pick another iface= or delete it (ip link del {name})"
                ),
                _ => String::new(),
            };
            ioctl_err("TUNSETIFF", &format!("{TUN_PATH} (tap {name})"), e, &hint)
        })?;
        Ok(Tap {
            fd,
            name: sys::ifreq_name(&req),
            multi_queue,
        })
    }

    /// The interface's name, as the kernel chose it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is a queue of a multi-queue tap.
    pub fn is_multi_queue(&self) -> bool {
        self.multi_queue
    }

    fn on(&self) -> String {
        format!("tap {}", self.name)
    }

    /// Sets the virtio-net header length the tap reads and writes (`TUNSETVNETHDRSZ`): 12
    /// with mergeable buffers or VERSION_1, else 10.
    pub fn set_vnet_hdr_len(&self, len: usize) -> Result<(), KernelError> {
        sys::tun_set_int(
            self.fd.as_raw_fd(),
            sys::TUNSETVNETHDRSZ,
            len as libc::c_int,
        )
        .map_err(|e| ioctl_err("TUNSETVNETHDRSZ", &self.on(), e, &format!("{len} bytes")))
    }

    /// Sets the socket's send buffer (`TUNSETSNDBUF`); `i32::MAX` lets vhost-net send without
    /// the tap's default limit.
    pub fn set_sndbuf(&self, bytes: i32) -> Result<(), KernelError> {
        sys::tun_set_int(self.fd.as_raw_fd(), sys::TUNSETSNDBUF, bytes)
            .map_err(|e| ioctl_err("TUNSETSNDBUF", &self.on(), e, ""))
    }

    /// Sets the offloads the tap may hand us and take from us (`TUNSETOFFLOAD`, `TUN_F_*`).
    /// If the kernel refuses UFO (removed in Linux 4.14, back since 6.2 as USO), retries
    /// without it and returns the flags in force.
    pub fn set_offload(&self, flags: u32) -> Result<u32, KernelError> {
        match sys::tun_set_offload(self.fd.as_raw_fd(), flags) {
            Ok(()) => Ok(flags),
            Err(e) if flags & TUN_F_UFO != 0 && e.raw_os_error() == Some(libc::EINVAL) => {
                let f = flags & !TUN_F_UFO;
                sys::tun_set_offload(self.fd.as_raw_fd(), f)
                    .map(|()| f)
                    .map_err(|e| ioctl_err("TUNSETOFFLOAD", &self.on(), e, &offload_hint(f)))
            }
            Err(e) => Err(ioctl_err(
                "TUNSETOFFLOAD",
                &self.on(),
                e,
                &offload_hint(flags),
            )),
        }
    }

    /// Whether the interface is administratively up, as seen from this process's network
    /// namespace. None when it is not visible here (moved to another namespace).
    pub fn is_up(&self) -> Option<bool> {
        sys::if_flags(&self.name)
            .ok()
            .map(|f| f & libc::IFF_UP as libc::c_short != 0)
    }
}

/// What to do when the kernel refuses the offloads `flags`.
fn offload_hint(flags: u32) -> String {
    format!(
        "the kernel does not take offload flags {flags:#x}; turn off this port's Rx checksum and LRO offloads (no --enable-rx-cksum / --enable-lro)"
    )
}

/// Opens the taps of `queues` queue pairs under `name`: the first with `IFF_MULTI_QUEUE`
/// (retried without it when there is one pair and the kernel or an existing interface refuses
/// it), the others attached to the name the kernel gave the first.
pub fn open_taps(name: &str, queues: u16) -> Result<Vec<Tap>, KernelError> {
    check_tap_name(name)?;
    let first = match Tap::open(name, true) {
        Ok(t) => t,
        Err(KernelError::Ioctl { source, .. })
            if queues == 1 && source.raw_os_error() == Some(libc::EINVAL) =>
        {
            Tap::open(name, false)?
        }
        Err(e) => return Err(e),
    };
    let chosen = first.name.clone();
    let mut taps = vec![first];
    for _ in 1..queues {
        taps.push(Tap::open(&chosen, true)?);
    }
    Ok(taps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_told_apart() {
        assert!(is_vhost_kernel_path("/dev/vhost-net"));
        assert!(is_vhost_kernel_path("/dev/vhost-net-missing-here"));
        assert!(is_vhost_kernel_path("/dev/null"), "a char device");
        assert!(!is_vhost_kernel_path("/tmp/sock0"));
        assert!(!is_vhost_kernel_path("/var/run/usvhost"));
        assert!(!is_vhost_kernel_path("/dev/shm/vhost-sock"));
        assert!(!is_vhost_kernel_path("relative/path"));
        assert!(!is_vhost_kernel_path("/tmp"), "a directory");
    }

    #[test]
    fn a_missing_device_says_which_module_to_load() {
        let e = VhostNet::open("/dev/vhost-net-does-not-exist", 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/vhost-net-does-not-exist: no such file (load the vhost_net module: modprobe vhost_net)"
        );
    }

    #[test]
    fn a_file_that_is_not_a_char_device_is_refused() {
        let dir = std::env::temp_dir().join(format!("ferrovia-vk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("plain");
        std::fs::write(&f, b"x").unwrap();
        let e = VhostNet::open(f.to_str().unwrap(), 0).unwrap_err();
        assert!(e.to_string().contains("is not a character device"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_char_device_that_is_not_vhost_names_the_ioctl() {
        let e = VhostNet::open("/dev/null", 0).unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with("VHOST_SET_OWNER on /dev/null (queue pair 0) failed: ENOTTY"),
            "{s}"
        );
        assert!(s.contains("not a vhost device"), "{s}");
    }

    #[test]
    fn tap_names_are_checked() {
        for ok in ["tap0", "tap%d", "vk-0", "a", "fifteen_chars_x"] {
            check_tap_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, why) in [
            ("", "empty"),
            ("sixteen_chars_xx", "too long"),
            ("a/b", "character"),
            ("a b", "character"),
            ("a:1", "character"),
            ("..", "cannot be"),
            ("t%s", "pattern"),
            ("t%d%d", "pattern"),
        ] {
            let e = check_tap_name(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.starts_with(&format!("iface={bad}: ")), "{e}");
        }
        let e = Tap::open("this_name_is_too_long", true).unwrap_err();
        assert!(e.to_string().contains("too long"), "{e}");
    }

    #[test]
    fn a_permission_error_says_what_access_is_needed() {
        let e = KernelError::Permission {
            path: VHOST_NET_PATH.into(),
            source: io::Error::from_raw_os_error(libc::EACCES),
        }
        .to_string();
        assert!(e.starts_with("/dev/vhost-net: permission denied ("), "{e}");
        assert!(
            e.contains("run as root, or give this user read-write access to /dev/vhost-net"),
            "{e}"
        );
    }

    #[test]
    fn ioctl_errors_name_the_ioctl_and_errno() {
        let e = ioctl_err(
            "VHOST_SET_MEM_TABLE",
            "/dev/vhost-net (queue pair 1)",
            io::Error::from_raw_os_error(libc::E2BIG),
            "65 regions",
        );
        let s = e.to_string();
        assert!(
            s.starts_with("VHOST_SET_MEM_TABLE on /dev/vhost-net (queue pair 1) failed: E2BIG ("),
            "{s}"
        );
        assert!(s.ends_with("; 65 regions"), "{s}");
    }

    #[test]
    fn memory_tables_are_identity_maps_within_the_limit() {
        let t = identity_table([(0x1000, 0x2000), (0x8000, 0), (0x9000, 0x1000)], 64).unwrap();
        assert_eq!(t.len(), 2, "empty regions are left out");
        assert!(t.iter().all(|r| r.guest_phys_addr == r.userspace_addr));
        let many = (0..65u64).map(|i| (i << 20, 4096));
        let e = identity_table(many, 64).unwrap_err().to_string();
        assert!(e.contains("65 shared memory regions"), "{e}");
        assert!(e.contains("at most 64"), "{e}");
        assert!(e.contains("max_mem_regions"), "{e}");
    }

    #[test]
    fn max_mem_regions_defaults_to_64() {
        let n = max_mem_regions();
        if std::path::Path::new(MAX_MEM_REGIONS_PATH).exists() {
            assert!(n > 0);
        } else {
            assert_eq!(n, DEFAULT_MAX_MEM_REGIONS);
        }
    }

    #[test]
    fn offload_flags_follow_the_features() {
        assert_eq!(tap_offloads(0), 0);
        assert_eq!(
            tap_offloads(1 << 7),
            0,
            "GUEST_TSO4 without GUEST_CSUM is nothing"
        );
        assert_eq!(tap_offloads(1 << 1), TUN_F_CSUM);
        assert_eq!(
            tap_offloads(1 | 1 << 11 | 1 << 12),
            0,
            "the transmit side needs no flag"
        );
        assert_eq!(
            tap_offloads(1 << 1 | 1 << 7 | 1 << 8 | 1 << 9 | 1 << 10),
            TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_UFO
        );
        assert_eq!(
            tap_offloads(TAP_OFFLOAD_FEATURES),
            TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
        );
    }

    /// Where this machine lets us (root, /dev/net/tun): a two-queue tap for vhost-net, with the
    /// kernel choosing the name, and every tap ioctl the vhost-kernel set-up makes.
    #[test]
    fn taps_for_vhost_net_where_the_kernel_allows() {
        let taps = match open_taps("fvk%d", 2) {
            Ok(t) => t,
            Err(e @ (KernelError::Missing { .. } | KernelError::Permission { .. })) => {
                eprintln!("skipped: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert_eq!(taps.len(), 2);
        assert!(taps[0].name().starts_with("fvk"), "{}", taps[0].name());
        assert!(!taps[0].name().contains('%'));
        assert_eq!(taps[0].name(), taps[1].name());
        assert!(taps.iter().all(Tap::is_multi_queue));
        for t in &taps {
            t.set_vnet_hdr_len(12).unwrap();
            t.set_sndbuf(i32::MAX).unwrap();
            assert_eq!(t.set_offload(0).unwrap(), 0);
            let all = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
            assert_eq!(t.set_offload(all).unwrap(), all);
        }
        // a flag the kernel does not know: refused, and the error says what to turn off
        let e = taps[0].set_offload(0x8000_0000).unwrap_err().to_string();
        assert!(
            e.starts_with("TUNSETOFFLOAD on /dev/net/tun (tap fvk"),
            "{e}"
        );
        assert!(e.contains("EINVAL"), "{e}");
        assert!(e.contains("no --enable-rx-cksum / --enable-lro"), "{e}");
        assert_eq!(taps[0].is_up(), Some(false), "a new tap is down");
        // the name is taken by a multi-queue tap: a single-queue open is refused, clearly
        let e = Tap::open(taps[0].name(), false).unwrap_err().to_string();
        assert!(e.starts_with("TUNSETIFF on /dev/net/tun (tap fvk"), "{e}");
        assert!(e.contains("EINVAL"), "{e}");
        assert!(e.contains("pick another iface="), "{e}");
    }
}
