//! A PCI function seen through sysfs (`/sys/bus/pci/devices/DDDD:BB:DD.F`): its address, its
//! identity, which kernel driver holds it, its configuration space, and bus mastering.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Where sysfs lists PCI functions.
pub const SYSFS_PCI: &str = "/sys/bus/pci/devices";

/// The PCI command register's offset in configuration space and the bits we set: memory
/// space, bus master (the device may DMA), INTx disable (polling mode takes no interrupts).
const COMMAND: u64 = 4;
const CMD_MEMORY: u16 = 1 << 1;
const CMD_BUS_MASTER: u16 = 1 << 2;
const CMD_INTX_DISABLE: u16 = 1 << 10;

/// A PCI address, `domain:bus:device.function`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciAddr {
    /// PCI domain (segment).
    pub domain: u32,
    /// Bus number.
    pub bus: u8,
    /// Device number (0..32).
    pub dev: u8,
    /// Function number (0..8).
    pub func: u8,
}

impl std::fmt::Display for PciAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.dev, self.func
        )
    }
}

impl std::str::FromStr for PciAddr {
    type Err = String;

    /// `0000:00:03.0`, or `00:03.0` (domain 0), as DPDK accepts them.
    fn from_str(s: &str) -> Result<PciAddr, String> {
        let bad =
            || format!("'{s}' is not a PCI address (expected DDDD:BB:DD.F, e.g. 0000:00:03.0)");
        let (rest, func) = s.rsplit_once('.').ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (domain, bus, dev) = match parts.as_slice() {
            [d, b, v] => (*d, *b, *v),
            [b, v] => ("0", *b, *v),
            _ => return Err(bad()),
        };
        let hex = |t: &str, max: u32| {
            if t.is_empty() || t.len() > 8 {
                return None;
            }
            u32::from_str_radix(t, 16).ok().filter(|&v| v <= max)
        };
        Ok(PciAddr {
            domain: hex(domain, 0xffff).ok_or_else(bad)?,
            bus: hex(bus, 0xff).ok_or_else(bad)? as u8,
            dev: hex(dev, 0x1f).ok_or_else(bad)? as u8,
            func: hex(func, 7).ok_or_else(bad)? as u8,
        })
    }
}

/// One PCI function's sysfs directory.
#[derive(Debug, Clone)]
pub struct PciDev {
    /// Its address.
    pub addr: PciAddr,
    /// `/sys/bus/pci/devices/<addr>`.
    pub dir: PathBuf,
}

/// The explanation for a device held by a kernel driver other than the ones we can work
/// beside (none, or `uio_pci_generic`, which claims no BAR and leaves the device alone).
pub fn driver_conflict(addr: PciAddr, driver: Option<&str>) -> Option<String> {
    match driver {
        None | Some("uio_pci_generic") => None,
        Some(d @ ("virtio-pci" | "virtio_pci")) => Some(format!(
            "{addr} is bound to {d}; unbind it or bind it to uio_pci_generic (see docs/user-guide.md, \"net_virtio_pci\"): echo {addr} > /sys/bus/pci/devices/{addr}/driver/unbind"
        )),
        Some(d) => Some(format!(
            "{addr} is bound to {d}, which this driver cannot share the device with; bind it to uio_pci_generic or unbind it (see docs/user-guide.md, \"net_virtio_pci\")"
        )),
    }
}

impl PciDev {
    /// The function at `addr` under `root` (normally [`SYSFS_PCI`]).
    pub fn open(root: &Path, addr: PciAddr) -> Result<PciDev, String> {
        let dir = root.join(addr.to_string());
        if !dir.exists() {
            return Err(format!(
                "{addr}: no such PCI device (ls {}; is the address right?)",
                root.display()
            ));
        }
        Ok(PciDev { addr, dir })
    }

    /// The name of the kernel driver bound to it, if any.
    pub fn driver(&self) -> Option<String> {
        std::fs::read_link(self.dir.join("driver"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
    }

    /// Its configuration space as sysfs gives it (256 bytes for root, 64 otherwise).
    pub fn config(&self) -> io::Result<Vec<u8>> {
        let mut v = Vec::with_capacity(4096);
        File::open(self.dir.join("config"))?.read_to_end(&mut v)?;
        Ok(v)
    }

    /// The path of BAR `bar`'s resource file (mapped by `Bar::map`).
    pub fn resource(&self, bar: u8) -> PathBuf {
        self.dir.join(format!("resource{bar}"))
    }

    /// Sets memory space, bus mastering and INTx disable in the command register (a
    /// device left by its kernel driver has bus mastering off), or with `on == false` clears
    /// bus mastering again.
    pub fn set_bus_master(&self, on: bool) -> io::Result<()> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.dir.join("config"))?;
        let mut b = [0u8; 2];
        f.read_exact_at(&mut b, COMMAND)?;
        let cmd = u16::from_le_bytes(b);
        let new = if on {
            cmd | CMD_MEMORY | CMD_BUS_MASTER | CMD_INTX_DISABLE
        } else {
            cmd & !CMD_BUS_MASTER
        };
        if new != cmd {
            f.write_all_at(&new.to_le_bytes(), COMMAND)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn addresses() {
        let a: PciAddr = "0000:00:03.0".parse().unwrap();
        assert_eq!((a.domain, a.bus, a.dev, a.func), (0, 0, 3, 0));
        assert_eq!(a.to_string(), "0000:00:03.0");
        assert_eq!(
            "00:1f.7".parse::<PciAddr>().unwrap().to_string(),
            "0000:00:1f.7"
        );
        assert_eq!(
            "ABCD:ff:1F.1".parse::<PciAddr>().unwrap().to_string(),
            "abcd:ff:1f.1"
        );
        for bad in [
            "",
            "0000:00:03",
            "0000:00:20.0",
            "0000:00:03.8",
            "1:2:3:4.0",
            "x:00:03.0",
            "0000:100:03.0",
        ] {
            let e = bad.parse::<PciAddr>().unwrap_err();
            assert!(e.contains("not a PCI address"), "{bad}: {e}");
        }
    }

    #[test]
    fn driver_messages() {
        let a: PciAddr = "0000:00:03.0".parse().unwrap();
        assert_eq!(driver_conflict(a, None), None);
        assert_eq!(driver_conflict(a, Some("uio_pci_generic")), None);
        let e = driver_conflict(a, Some("virtio-pci")).unwrap();
        assert!(
            e.starts_with(
                "0000:00:03.0 is bound to virtio-pci; unbind it or bind it to uio_pci_generic"
            ),
            "{e}"
        );
        assert!(
            driver_conflict(a, Some("vfio-pci"))
                .unwrap()
                .contains("vfio-pci")
        );
    }

    #[test]
    fn missing_device() {
        let e =
            PciDev::open(Path::new("/nonexistent"), "0000:00:03.0".parse().unwrap()).unwrap_err();
        assert!(e.contains("no such PCI device"), "{e}");
    }

    /// A fake sysfs directory: bus mastering is set in the copy of the command register.
    #[test]
    fn bus_master_bits() {
        let root = std::env::temp_dir().join(format!("vpci-sysfs-{}", std::process::id()));
        let addr: PciAddr = "0000:00:05.0".parse().unwrap();
        std::fs::create_dir_all(root.join(addr.to_string())).unwrap();
        let mut cfg = super::super::caps::tests::qemu_config();
        cfg[4] = 0x03;
        cfg[5] = 0;
        std::fs::write(root.join(addr.to_string()).join("config"), &cfg).unwrap();
        let d = PciDev::open(&root, addr).unwrap();
        assert_eq!(d.driver(), None);
        d.set_bus_master(true).unwrap();
        let c = d.config().unwrap();
        assert_eq!(u16::from_le_bytes([c[4], c[5]]), 0x0407);
        d.set_bus_master(false).unwrap();
        let c = d.config().unwrap();
        assert_eq!(u16::from_le_bytes([c[4], c[5]]), 0x0403);
        std::fs::remove_dir_all(&root).unwrap();
    }

    proptest! {
        #[test]
        fn parse_any(s in "\\PC{0,20}") {
            if let Ok(a) = s.parse::<PciAddr>() {
                prop_assert_eq!(a.to_string().parse::<PciAddr>().unwrap(), a);
            }
        }
    }
}
