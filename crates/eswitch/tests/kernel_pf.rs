//! The kernel PF backend against this machine's real kernel, through a real `NETLINK_ROUTE`
//! socket. There is no SR-IOV device here (and no netdevsim), so what is tested is the error
//! path: a dummy (or veth) interface is a link without VFs, and the kernel must refuse a VF
//! setting with EOPNOTSUPP, which we turn into the "no SR-IOV" message; an interface that does
//! not exist gives ENODEV; without CAP_NET_ADMIN, EPERM. Skipped, with the reason printed, when
//! not root or without `ip`.

use std::process::Command;

use ferrovia_eswitch::kernel_pf::{KernelLinkState, KernelPf, OnUnsupported, VfSettings};
use ferrovia_eswitch::vfconfig::{Limits, VfConfig};

/// Why the test cannot run here, if it cannot.
fn cannot_run() -> Option<String> {
    // SAFETY: geteuid has no memory effects.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (the test makes an interface)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("the `ip` tool (iproute2) is not installed".into()),
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// An interface without SR-IOV, removed on drop: a dummy, or a veth pair where the dummy
/// driver is missing.
struct NoSriovLink(String);

impl NoSriovLink {
    fn new(name: &str) -> Result<NoSriovLink, String> {
        let _ = ip(&["link", "del", name]);
        match ip(&["link", "add", name, "type", "dummy"]) {
            Ok(()) => println!("{name}: a dummy interface"),
            Err(dummy) => {
                let peer = format!("{name}p");
                ip(&["link", "add", name, "type", "veth", "peer", "name", &peer])
                    .map_err(|veth| format!("{dummy}; {veth}"))?;
                println!("{name}: a veth interface (no dummy driver here: {dummy})");
            }
        }
        Ok(NoSriovLink(name.into()))
    }
}

impl Drop for NoSriovLink {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.0]);
    }
}

const LIMITS: Limits = Limits {
    max_vfs: 8,
    line_rate_mbps: 10_000.0,
};

#[test]
fn a_link_without_sriov_gives_the_no_sriov_error() {
    if let Some(why) = cannot_run() {
        println!("skipped: {why}");
        return;
    }
    let name = format!("fvpf{}", std::process::id() % 100_000);
    let link = match NoSriovLink::new(&name) {
        Ok(l) => l,
        Err(e) => {
            println!("skipped: cannot make a dummy or veth interface: {e}");
            return;
        }
    };
    let pf = KernelPf::open(&link.0).unwrap();
    assert!(pf.ifindex() > 0);
    // The read-back works on any link: no VFs.
    let l = pf.vfs().unwrap();
    assert_eq!(l.ifindex, pf.ifindex());
    assert_eq!(l.name.as_deref(), Some(name.as_str()));
    assert!(l.vfs.is_empty() && l.num_vf.unwrap_or(0) == 0, "{l:?}");
    let e = pf.vf(0).unwrap_err();
    assert!(e.message.starts_with(&format!("{name} has no VF 0")), "{e}");

    // A whole policy, through the translation.
    let cfg = VfConfig::parse(
        r#"{"name":"vnf1","vfid":0,"vlans":[10],"strip_stag":true,"allow_bcast":true,
            "macs":["02:00:00:00:03:01"],"rate":1000,"link_status":"auto"}"#,
        "vf0.json",
        &LIMITS,
    )
    .unwrap();
    let e = pf.apply(&cfg, OnUnsupported::Refuse).unwrap_err();
    println!("{e}");
    assert_eq!(e.errno, Some(libc::EOPNOTSUPP));
    assert!(
        e.message.starts_with(&format!(
            "cannot set VF 0 of {name}: the kernel says EOPNOTSUPP"
        )),
        "{e}"
    );
    assert!(
        e.message.ends_with(
            "(the device has no SR-IOV VF configuration; is it a PF with sriov_numvfs > 0?)"
        ),
        "{e}"
    );
    // Without a MAC the first attribute is the VLAN list: the same answer.
    let e = pf
        .set_vf(&VfSettings {
            vf: 3,
            mac: None,
            vlan: 0,
            spoofchk: false,
            trust: true,
            link_state: KernelLinkState::Disable,
            min_tx_rate: 0,
            max_tx_rate: 0,
        })
        .unwrap_err();
    assert_eq!(e.errno, Some(libc::EOPNOTSUPP), "{e}");
    assert!(e.message.contains("VF 3 of"), "{e}");
    // A policy the kernel cannot express is refused before anything is sent.
    let cfg = VfConfig::parse(
        r#"{"name":"vnf1","vfid":0,"vlans":[10,20],"allow_bcast":true}"#,
        "vf0.json",
        &LIMITS,
    )
    .unwrap();
    let e = pf.apply(&cfg, OnUnsupported::Warn).unwrap_err();
    assert_eq!(e.errno, None);
    assert!(
        e.message
            .starts_with(&format!("{name}: VF 0: vlans lists 2 VLANs")),
        "{e}"
    );
}

#[test]
fn an_unknown_interface_gives_enodev() {
    if let Some(why) = cannot_run() {
        println!("skipped: {why}");
        return;
    }
    let e = KernelPf::open("fvnl-none0").unwrap_err();
    println!("{e}");
    assert_eq!(e.errno, Some(libc::ENODEV));
    assert!(
        e.message
            .starts_with("cannot read interface fvnl-none0: the kernel says ENODEV"),
        "{e}"
    );
    assert!(
        e.message.contains("(there is no interface fvnl-none0;"),
        "{e}"
    );
}

/// Without CAP_NET_ADMIN the kernel refuses `RTM_SETLINK` with EPERM before looking at the
/// device. One thread gives up root with the raw `setresuid` system call, which (unlike
/// glibc's wrapper) changes only the calling thread's credentials, and so its capabilities.
#[test]
fn without_cap_net_admin_gives_eperm() {
    if let Some(why) = cannot_run() {
        println!("skipped: {why}");
        return;
    }
    let e = std::thread::spawn(|| {
        // SAFETY: a raw system call on this thread's own credentials, with plain integers;
        // no memory is passed. The thread ends right after, unprivileged.
        let r = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        assert_eq!(r, 0, "setresuid: {}", std::io::Error::last_os_error());
        // Reading a link needs no privilege; setting a VF does.
        let pf = KernelPf::open("lo").unwrap();
        pf.set_vf(&VfSettings {
            vf: 0,
            mac: None,
            vlan: 0,
            spoofchk: true,
            trust: false,
            link_state: KernelLinkState::Auto,
            min_tx_rate: 0,
            max_tx_rate: 0,
        })
        .unwrap_err()
    })
    .join()
    .unwrap();
    println!("{e}");
    assert_eq!(e.errno, Some(libc::EPERM), "{e}");
    assert_eq!(
        e.message,
        "cannot set VF 0 of lo: the kernel says EPERM (this needs CAP_NET_ADMIN: run as root or \
         grant the capability)"
    );
    // SAFETY: geteuid has no memory effects.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the other threads stay root");
}
