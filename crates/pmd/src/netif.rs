//! Kernel network interface helpers shared by the kernel-interface drivers (`net_af_packet`,
//! `net_tap`): interface names, index, flags, MTU and hardware address through `ioctl`, and
//! error messages that name the thing and the fix.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use ferrovia_ethdev::{Error, MacAddr, Result};
use ferrovia_memory::{Mbuf, MbufCache};

/// Checks that `name` can be a Linux interface name: 1 to 15 bytes, no `/`, `:` or white
/// space, not `.` or `..`.
pub(crate) fn check_ifname(port: &str, name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() >= libc::IFNAMSIZ
        || name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0 || b > 0x7e);
    if bad {
        return Err(Error::Config(format!(
            "{port}: '{name}' is not a valid interface name (1 to {} printable characters without '/', ':' or spaces, e.g. veth0)",
            libc::IFNAMSIZ - 1
        )));
    }
    Ok(())
}

/// An `ifreq` with `name` filled in (the name must have passed [`check_ifname`]).
pub(crate) fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data (arrays, integers, a union of such); all zeros is valid.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    r
}

/// Runs an interface `ioctl` with `req` on `fd`.
fn ifioctl(fd: RawFd, op: libc::Ioctl, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: every request passed here (SIOCGIF*/SIOCSIFFLAGS/TUNSET*) reads and writes at
    // most one `struct ifreq`, and `req` is a valid, exclusive one for the call.
    let r = unsafe { libc::ioctl(fd, op, req as *mut libc::ifreq) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A datagram socket for interface ioctls.
pub(crate) fn ctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The interface's flags (`IFF_*`).
pub(crate) fn flags(fd: &impl AsRawFd, name: &str) -> io::Result<i32> {
    let mut r = ifreq(name);
    ifioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS as libc::Ioctl, &mut r)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    Ok(unsafe { r.ifr_ifru.ifru_flags } as u16 as i32)
}

/// Sets or clears `bits` in the interface's flags.
pub(crate) fn set_flags(fd: &impl AsRawFd, name: &str, bits: i32, on: bool) -> io::Result<()> {
    let cur = flags(fd, name)?;
    let new = if on { cur | bits } else { cur & !bits };
    if new == cur {
        return Ok(());
    }
    let mut r = ifreq(name);
    r.ifr_ifru.ifru_flags = new as u16 as libc::c_short;
    ifioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS as libc::Ioctl, &mut r)
}

/// The interface's MTU.
pub(crate) fn mtu(fd: &impl AsRawFd, name: &str) -> io::Result<u32> {
    let mut r = ifreq(name);
    ifioctl(fd.as_raw_fd(), libc::SIOCGIFMTU as libc::Ioctl, &mut r)?;
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    Ok(unsafe { r.ifr_ifru.ifru_mtu }.max(0) as u32)
}

/// The interface's hardware address, if it is an Ethernet one.
pub(crate) fn hwaddr(fd: &impl AsRawFd, name: &str) -> io::Result<Option<MacAddr>> {
    let mut r = ifreq(name);
    ifioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR as libc::Ioctl, &mut r)?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let sa = unsafe { r.ifr_ifru.ifru_hwaddr };
    if sa.sa_family != libc::ARPHRD_ETHER {
        return Ok(None);
    }
    let mut m = [0u8; 6];
    for (d, s) in m.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    let m = MacAddr(m);
    Ok((m.is_unicast() && !m.is_zero()).then_some(m))
}

/// The interface's index, or an error that says how to create it.
pub(crate) fn ifindex(port: &str, name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| Error::Config(format!("{port}: interface name '{name}' contains a NUL")))?;
    // SAFETY: c is a valid NUL-terminated string for the duration of the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(Error::Config(format!(
            "{port}: interface {name} does not exist (create it first, e.g. `ip link add {name} type veth peer name {name}p`, or pick one from `ip link`)"
        )));
    }
    Ok(i)
}

/// Sets an integer socket option; `what` names it in the error.
pub(crate) fn setsockopt_int(fd: &impl AsRawFd, level: i32, opt: i32, val: i32) -> io::Result<()> {
    setsockopt(fd, level, opt, &val)
}

/// Sets a socket option from a plain-data value.
pub(crate) fn setsockopt<T: Copy>(
    fd: &impl AsRawFd,
    level: i32,
    opt: i32,
    val: &T,
) -> io::Result<()> {
    // SAFETY: `val` points to a live T of the size passed; the kernel only reads it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The hint for a permission error: which capability is missing.
pub(crate) fn perm_hint(e: &io::Error, cap: &str) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            format!(
                " (needs {cap}: run as root or grant {})",
                cap.to_lowercase()
            )
        }
        _ => String::new(),
    }
}

/// Copies a received frame into a fresh mbuf from `cache`, chaining more mbufs when it is
/// longer than one mbuf's room. None (nothing kept) when the pool runs dry.
#[inline]
pub(crate) fn copy_in(cache: &mut MbufCache, src: &[u8]) -> Option<Mbuf> {
    let mut head = cache.alloc()?;
    let first = src.len().min(head.tailroom());
    head.append(first)?.copy_from_slice(&src[..first]);
    let mut rest = &src[first..];
    while !rest.is_empty() {
        let Some(mut seg) = cache.alloc() else {
            cache.free(head);
            return None;
        };
        let n = rest.len().min(seg.tailroom());
        match seg.append(n) {
            Some(d) if n > 0 => d.copy_from_slice(&rest[..n]),
            _ => {
                // A pool whose mbufs have no room at all: never completes.
                cache.free(seg);
                cache.free(head);
                return None;
            }
        }
        head.chain(seg);
        rest = &rest[n..];
    }
    Some(head)
}

/// Copies every segment of `m` to the front of `dst`, which must hold `m.pkt_len()` bytes;
/// returns the bytes written (never more than `dst.len()`).
#[inline]
pub(crate) fn copy_out(m: &Mbuf, dst: &mut [u8]) -> usize {
    let mut at = 0;
    for s in m.segments() {
        let n = s.len().min(dst.len() - at);
        dst[at..at + n].copy_from_slice(&s[..n]);
        at += n;
    }
    at
}

/// True when the frame in `m` carries an 802.1Q or 802.1ad tag (the kernel allows such frames
/// four bytes more than the MTU).
#[inline]
pub(crate) fn vlan_tagged(m: &Mbuf) -> bool {
    let d = m.data();
    d.len() >= 14 && matches!(u16::from_be_bytes([d[12], d[13]]), 0x8100 | 0x88a8)
}

/// Inserts an 802.1Q-style tag (`tpid`, `tci`) after the MAC addresses of `m`'s first
/// segment. False, changing nothing, without 4 bytes of headroom or 12 bytes of data.
pub(crate) fn insert_vlan(m: &mut ferrovia_memory::Mbuf, tpid: u16, tci: u16) -> bool {
    if m.data_len() < 12 || m.headroom() < 4 {
        return false;
    }
    let Some(_) = m.prepend(4) else {
        return false;
    };
    let d = m.data_mut();
    d.copy_within(4..16, 0);
    d[12..14].copy_from_slice(&tpid.to_be_bytes());
    d[14..16].copy_from_slice(&tci.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked() {
        for ok in ["veth0", "a", "dtap0", "fvtest1234a", "x-y_z.1"] {
            check_ifname("p0", ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b", "a:1", "sixteen_chars_xx", "é"] {
            let e = check_ifname("p0", bad).unwrap_err().to_string();
            assert!(
                e.starts_with("p0: ") && e.contains("not a valid interface name"),
                "{e}"
            );
        }
        let r = ifreq("eth0");
        assert_eq!(
            r.ifr_name[..5],
            [b'e' as _, b't' as _, b'h' as _, b'0' as _, 0]
        );
    }

    #[test]
    fn missing_interface_says_how_to_create_it() {
        let e = ifindex("net_af_packet0", "fvnoexist9")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("net_af_packet0: interface fvnoexist9 does not exist (create it first"),
            "{e}"
        );
    }

    #[test]
    fn permission_hint_names_the_capability() {
        let e = io::Error::from_raw_os_error(libc::EPERM);
        assert_eq!(
            perm_hint(&e, "CAP_NET_RAW"),
            " (needs CAP_NET_RAW: run as root or grant cap_net_raw)"
        );
        assert_eq!(
            perm_hint(&io::Error::from_raw_os_error(libc::ENOENT), "X"),
            ""
        );
    }
}
