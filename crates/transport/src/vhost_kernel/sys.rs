//! The kernel's side of vhost-net and tun: request numbers, the `repr(C)` argument structs of
//! `<linux/vhost.h>`, and one thin wrapper per request. This is the only module of the
//! vhost-kernel transport with `unsafe`; every wrapper passes an argument of exactly the type
//! and size its request number encodes.

use std::io;
use std::os::fd::RawFd;

const IOC_NONE: u32 = 0;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// An ioctl request number, as the kernel's `_IOC(dir, type, nr, size)` builds it.
pub const fn ioc(dir: u32, ty: u32, nr: u32, size: usize) -> libc::Ioctl {
    ((dir << 30) | ((size as u32) << 16) | (ty << 8) | nr) as libc::Ioctl
}

/// The vhost ioctl type byte (`VHOST_VIRTIO`).
pub const VHOST_VIRTIO: u32 = 0xAF;
/// The tun ioctl type byte.
const TUN_TYPE: u32 = b'T' as u32;

/// `VHOST_GET_FEATURES`: `_IOR(0xAF, 0x00, __u64)`.
pub const VHOST_GET_FEATURES: libc::Ioctl = ioc(IOC_READ, VHOST_VIRTIO, 0x00, 8);
/// `VHOST_SET_FEATURES`: `_IOW(0xAF, 0x00, __u64)`.
pub const VHOST_SET_FEATURES: libc::Ioctl = ioc(IOC_WRITE, VHOST_VIRTIO, 0x00, 8);
/// `VHOST_SET_OWNER`: `_IO(0xAF, 0x01)`.
pub const VHOST_SET_OWNER: libc::Ioctl = ioc(IOC_NONE, VHOST_VIRTIO, 0x01, 0);
/// `VHOST_SET_MEM_TABLE`: `_IOW(0xAF, 0x03, struct vhost_memory)` (the header's size, 8).
pub const VHOST_SET_MEM_TABLE: libc::Ioctl = ioc(IOC_WRITE, VHOST_VIRTIO, 0x03, 8);
/// `VHOST_SET_VRING_NUM`: `_IOW(0xAF, 0x10, struct vhost_vring_state)`.
pub const VHOST_SET_VRING_NUM: libc::Ioctl =
    ioc(IOC_WRITE, VHOST_VIRTIO, 0x10, size_of::<VringState>());
/// `VHOST_SET_VRING_ADDR`: `_IOW(0xAF, 0x11, struct vhost_vring_addr)`.
pub const VHOST_SET_VRING_ADDR: libc::Ioctl =
    ioc(IOC_WRITE, VHOST_VIRTIO, 0x11, size_of::<VringAddr>());
/// `VHOST_SET_VRING_BASE`: `_IOW(0xAF, 0x12, struct vhost_vring_state)`.
pub const VHOST_SET_VRING_BASE: libc::Ioctl =
    ioc(IOC_WRITE, VHOST_VIRTIO, 0x12, size_of::<VringState>());
/// `VHOST_GET_VRING_BASE`: `_IOWR(0xAF, 0x12, struct vhost_vring_state)`.
pub const VHOST_GET_VRING_BASE: libc::Ioctl = ioc(
    IOC_READ | IOC_WRITE,
    VHOST_VIRTIO,
    0x12,
    size_of::<VringState>(),
);
/// `VHOST_SET_VRING_KICK`: `_IOW(0xAF, 0x20, struct vhost_vring_file)`.
pub const VHOST_SET_VRING_KICK: libc::Ioctl =
    ioc(IOC_WRITE, VHOST_VIRTIO, 0x20, size_of::<VringFile>());
/// `VHOST_SET_VRING_CALL`: `_IOW(0xAF, 0x21, struct vhost_vring_file)`.
pub const VHOST_SET_VRING_CALL: libc::Ioctl =
    ioc(IOC_WRITE, VHOST_VIRTIO, 0x21, size_of::<VringFile>());
/// `VHOST_NET_SET_BACKEND`: `_IOW(0xAF, 0x30, struct vhost_vring_file)`.
pub const VHOST_NET_SET_BACKEND: libc::Ioctl =
    ioc(IOC_WRITE, VHOST_VIRTIO, 0x30, size_of::<VringFile>());

/// `TUNSETIFF`: `_IOW('T', 202, int)`.
pub const TUNSETIFF: libc::Ioctl = ioc(IOC_WRITE, TUN_TYPE, 202, 4);
/// `TUNSETOFFLOAD`: `_IOW('T', 208, unsigned int)`.
pub const TUNSETOFFLOAD: libc::Ioctl = ioc(IOC_WRITE, TUN_TYPE, 208, 4);
/// `TUNSETSNDBUF`: `_IOW('T', 212, int)`.
pub const TUNSETSNDBUF: libc::Ioctl = ioc(IOC_WRITE, TUN_TYPE, 212, 4);
/// `TUNSETVNETHDRSZ`: `_IOW('T', 216, int)`.
pub const TUNSETVNETHDRSZ: libc::Ioctl = ioc(IOC_WRITE, TUN_TYPE, 216, 4);

/// `struct vhost_vring_state`: a vring index and a number (size or base).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VringState {
    /// Vring index (0: Rx, 1: Tx of the device's one queue pair).
    pub index: u32,
    /// Ring size or base index.
    pub num: u32,
}

/// `struct vhost_vring_file`: a vring index and an fd (-1 unbinds).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VringFile {
    /// Vring index.
    pub index: u32,
    /// The fd, or -1.
    pub fd: i32,
}

/// `struct vhost_vring_addr`: where a split ring's three parts are, as user addresses.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VringAddr {
    /// Vring index.
    pub index: u32,
    /// `VHOST_VRING_F_LOG` or 0.
    pub flags: u32,
    /// Descriptor table.
    pub desc_user_addr: u64,
    /// Used ring.
    pub used_user_addr: u64,
    /// Avail ring.
    pub avail_user_addr: u64,
    /// Dirty-log address (unused: no logging).
    pub log_guest_addr: u64,
}

/// `struct vhost_memory_region`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemRegion {
    /// Guest physical address; equal to `userspace_addr` here (identity map).
    pub guest_phys_addr: u64,
    /// Length in bytes.
    pub memory_size: u64,
    /// Address in this process.
    pub userspace_addr: u64,
    /// Must be 0.
    pub flags_padding: u64,
}

/// `struct vhost_memory` followed by its regions, as one 8-byte aligned buffer.
struct MemTable(Vec<MemRegion>);

impl MemTable {
    fn new(regions: &[MemRegion]) -> MemTable {
        // The header (nregions: u32, padding: u32) goes in the last 8 bytes of a leading
        // element, so the regions follow it directly, as the flexible array does.
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&(regions.len() as u32).to_ne_bytes());
        let mut v = Vec::with_capacity(regions.len() + 1);
        v.push(MemRegion {
            flags_padding: u64::from_ne_bytes(header),
            ..MemRegion::default()
        });
        v.extend_from_slice(regions);
        MemTable(v)
    }
    fn as_ptr(&self) -> *const u8 {
        // The kernel reads nregions at offset 0 and the regions from offset 8: start 8 bytes
        // before element 1.
        (self.0.as_ptr() as *const u8).wrapping_add(size_of::<MemRegion>() - 8)
    }
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A request without argument (`VHOST_SET_OWNER`).
pub fn ioctl_none(fd: RawFd, req: libc::Ioctl) -> io::Result<()> {
    // SAFETY: the request takes no argument; the kernel reads and writes nothing of ours.
    check(unsafe { libc::ioctl(fd, req) })
}

/// `VHOST_GET_FEATURES`.
pub fn get_features(fd: RawFd) -> io::Result<u64> {
    let mut v = 0u64;
    // SAFETY: the request writes one u64 into `v`, which is valid and exclusive.
    check(unsafe { libc::ioctl(fd, VHOST_GET_FEATURES, &mut v as *mut u64) })?;
    Ok(v)
}

/// `VHOST_SET_FEATURES`.
pub fn set_features(fd: RawFd, features: u64) -> io::Result<()> {
    // SAFETY: the request reads one u64 from a valid pointer.
    check(unsafe { libc::ioctl(fd, VHOST_SET_FEATURES, &features as *const u64) })
}

/// `VHOST_SET_MEM_TABLE` with `regions`.
pub fn set_mem_table(fd: RawFd, regions: &[MemRegion]) -> io::Result<()> {
    let t = MemTable::new(regions);
    // SAFETY: `t.as_ptr()` is a valid, 8-byte aligned `struct vhost_memory` header followed by
    // `nregions` regions, all inside `t`, which lives until the call returns; the kernel only
    // reads it.
    check(unsafe { libc::ioctl(fd, VHOST_SET_MEM_TABLE, t.as_ptr()) })
}

/// `VHOST_SET_VRING_NUM`, `VHOST_SET_VRING_BASE` (requests taking a `VringState`).
pub fn set_vring_state(fd: RawFd, req: libc::Ioctl, s: VringState) -> io::Result<()> {
    debug_assert!(req == VHOST_SET_VRING_NUM || req == VHOST_SET_VRING_BASE);
    // SAFETY: both requests read one `struct vhost_vring_state` from a valid pointer.
    check(unsafe { libc::ioctl(fd, req, &s as *const VringState) })
}

/// `VHOST_GET_VRING_BASE`: stops the vring and returns where the device stopped.
pub fn get_vring_base(fd: RawFd, index: u32) -> io::Result<u32> {
    let mut s = VringState { index, num: 0 };
    // SAFETY: the request reads and writes one `struct vhost_vring_state`, valid and exclusive.
    check(unsafe { libc::ioctl(fd, VHOST_GET_VRING_BASE, &mut s as *mut VringState) })?;
    Ok(s.num)
}

/// `VHOST_SET_VRING_ADDR`.
pub fn set_vring_addr(fd: RawFd, a: VringAddr) -> io::Result<()> {
    // SAFETY: the request reads one `struct vhost_vring_addr` from a valid pointer.
    check(unsafe { libc::ioctl(fd, VHOST_SET_VRING_ADDR, &a as *const VringAddr) })
}

/// `VHOST_SET_VRING_KICK`, `VHOST_SET_VRING_CALL`, `VHOST_NET_SET_BACKEND` (requests taking a
/// `VringFile`). The kernel takes its own reference to the file; ours stays ours.
pub fn set_vring_file(fd: RawFd, req: libc::Ioctl, f: VringFile) -> io::Result<()> {
    debug_assert!(
        req == VHOST_SET_VRING_KICK || req == VHOST_SET_VRING_CALL || req == VHOST_NET_SET_BACKEND
    );
    // SAFETY: the three requests read one `struct vhost_vring_file` from a valid pointer.
    check(unsafe { libc::ioctl(fd, req, &f as *const VringFile) })
}

/// `TUNSETIFF` with `req`; the kernel writes the chosen name back into it.
pub fn tun_set_iff(fd: RawFd, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: the request reads and writes one `struct ifreq`, valid and exclusive.
    check(unsafe { libc::ioctl(fd, TUNSETIFF, req as *mut libc::ifreq) })
}

/// `TUNSETSNDBUF`, `TUNSETVNETHDRSZ` (requests reading an int through a pointer).
pub fn tun_set_int(fd: RawFd, req: libc::Ioctl, v: libc::c_int) -> io::Result<()> {
    debug_assert!(req == TUNSETSNDBUF || req == TUNSETVNETHDRSZ);
    // SAFETY: both requests read one int from a valid pointer.
    check(unsafe { libc::ioctl(fd, req, &v as *const libc::c_int) })
}

/// `TUNSETOFFLOAD`: the `TUN_F_*` flags, passed by value.
pub fn tun_set_offload(fd: RawFd, flags: u32) -> io::Result<()> {
    // SAFETY: the request takes its argument by value; no memory of ours is accessed.
    check(unsafe { libc::ioctl(fd, TUNSETOFFLOAD, flags as libc::c_ulong) })
}

/// An `ifreq` with `name` (at most `IFNAMSIZ - 1` bytes, checked by the caller) and `flags`.
pub fn ifreq(name: &str, flags: libc::c_short) -> libc::ifreq {
    // SAFETY: ifreq is plain old data (arrays, integers, a union of such); all zeros is valid.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    r.ifr_ifru.ifru_flags = flags;
    r
}

/// The interface name in an `ifreq` (up to its NUL).
pub fn ifreq_name(r: &libc::ifreq) -> String {
    let b: Vec<u8> = r
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&b).into_owned()
}

/// The flags (`IFF_*`) of interface `name` in this process's network namespace, through a
/// datagram socket; `Err(ENODEV)` when no such interface is visible here.
pub fn if_flags(name: &str) -> io::Result<libc::c_short> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: s is a fresh descriptor nobody else owns.
    let s = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(s) };
    let mut r = ifreq(name, 0);
    // SAFETY: SIOCGIFFLAGS reads and writes one `struct ifreq`, valid and exclusive.
    check(unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            libc::SIOCGIFFLAGS as libc::Ioctl,
            &mut r as *mut libc::ifreq,
        )
    })?;
    // SAFETY: after SIOCGIFFLAGS the flags member of the union is the one written.
    Ok(unsafe { r.ifr_ifru.ifru_flags })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request numbers as `<linux/vhost.h>` and `<linux/if_tun.h>` expand them on x86_64
    /// (and every architecture using the generic `_IOC` layout).
    #[test]
    fn request_numbers_match_the_kernel_headers() {
        assert_eq!(VHOST_GET_FEATURES, 0x8008_af00u32 as libc::Ioctl);
        assert_eq!(VHOST_SET_FEATURES, 0x4008_af00u32 as libc::Ioctl);
        assert_eq!(VHOST_SET_OWNER, 0xaf01u32 as libc::Ioctl);
        assert_eq!(VHOST_SET_MEM_TABLE, 0x4008_af03u32 as libc::Ioctl);
        assert_eq!(VHOST_SET_VRING_NUM, 0x4008_af10u32 as libc::Ioctl);
        assert_eq!(VHOST_SET_VRING_ADDR, 0x4028_af11u32 as libc::Ioctl);
        assert_eq!(VHOST_SET_VRING_BASE, 0x4008_af12u32 as libc::Ioctl);
        assert_eq!(VHOST_GET_VRING_BASE, 0xc008_af12u32 as libc::Ioctl);
        assert_eq!(VHOST_SET_VRING_KICK, 0x4008_af20u32 as libc::Ioctl);
        assert_eq!(VHOST_SET_VRING_CALL, 0x4008_af21u32 as libc::Ioctl);
        assert_eq!(VHOST_NET_SET_BACKEND, 0x4008_af30u32 as libc::Ioctl);
        assert_eq!(TUNSETIFF, 0x4004_54cau32 as libc::Ioctl);
        assert_eq!(TUNSETOFFLOAD, 0x4004_54d0u32 as libc::Ioctl);
        assert_eq!(TUNSETSNDBUF, 0x4004_54d4u32 as libc::Ioctl);
        assert_eq!(TUNSETVNETHDRSZ, 0x4004_54d8u32 as libc::Ioctl);
        // and the libc crate agrees on the tun ones
        assert_eq!(TUNSETIFF, libc::TUNSETIFF);
        assert_eq!(TUNSETOFFLOAD, libc::TUNSETOFFLOAD);
        assert_eq!(TUNSETSNDBUF, libc::TUNSETSNDBUF);
        assert_eq!(TUNSETVNETHDRSZ, libc::TUNSETVNETHDRSZ);
    }

    #[test]
    fn structs_have_the_kernel_layout() {
        assert_eq!(size_of::<VringState>(), 8);
        assert_eq!(size_of::<VringFile>(), 8);
        assert_eq!(size_of::<VringAddr>(), 40);
        assert_eq!(size_of::<MemRegion>(), 32);
        assert_eq!(std::mem::offset_of!(VringAddr, desc_user_addr), 8);
        assert_eq!(std::mem::offset_of!(VringAddr, used_user_addr), 16);
        assert_eq!(std::mem::offset_of!(VringAddr, avail_user_addr), 24);
    }

    #[test]
    fn mem_table_is_header_then_regions() {
        let r = [
            MemRegion {
                guest_phys_addr: 0x1000,
                memory_size: 0x2000,
                userspace_addr: 0x1000,
                flags_padding: 0,
            },
            MemRegion {
                guest_phys_addr: 0x9000,
                memory_size: 0x1000,
                userspace_addr: 0x9000,
                flags_padding: 0,
            },
        ];
        let t = MemTable::new(&r);
        let p = t.as_ptr();
        assert_eq!(p as usize % 8, 0);
        let word = |off: usize| {
            // SAFETY: reads inside `t` (header + 2 regions = 8 + 64 bytes from p).
            unsafe { (p.add(off) as *const u64).read_unaligned() }
        };
        // SAFETY: the header's two u32 at p and p + 4.
        let (n, pad) = unsafe { ((p as *const u32).read(), (p.add(4) as *const u32).read()) };
        assert_eq!((n, pad), (2, 0), "nregions, padding");
        assert_eq!(word(8), 0x1000);
        assert_eq!(word(16), 0x2000);
        assert_eq!(word(24), 0x1000);
        assert_eq!(word(40), 0x9000);
        assert_eq!(word(48), 0x1000);
    }
}
