//! The virtio 1.x PCI capabilities (virtio spec 4.1.4), parsed from a copy of the device's
//! configuration space. The bytes come from the device: every pointer, length and BAR number
//! is checked, the capability walk is bounded, and nothing here panics on any input.

/// Red Hat / virtio PCI vendor id.
pub const VIRTIO_VENDOR: u16 = 0x1af4;
/// Transitional virtio-net device id (legacy and modern interfaces).
pub const NET_TRANSITIONAL: u16 = 0x1000;
/// Modern-only virtio-net device id (0x1040 + device type 1).
pub const NET_MODERN: u16 = 0x1041;

/// PCI capability id of a vendor-specific capability (the virtio ones).
const CAP_VENDOR: u8 = 0x09;
/// `cfg_type` values.
const COMMON_CFG: u8 = 1;
const NOTIFY_CFG: u8 = 2;
const ISR_CFG: u8 = 3;
const DEVICE_CFG: u8 = 4;

/// Smallest common configuration structure we use (up to `queue_device`, 0x38 bytes).
pub const COMMON_CFG_LEN: u32 = 0x38;
/// Smallest virtio-net device configuration we read (`mac` and `status`).
pub const NET_CFG_LEN: u32 = 8;

/// One virtio structure: a window of a BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapRef {
    /// BAR index (0..=5).
    pub bar: u8,
    /// Offset of the structure in the BAR.
    pub offset: u32,
    /// Length of the structure.
    pub length: u32,
}

/// Where a modern virtio device's structures are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioCaps {
    /// Common configuration (features, status, queue setup).
    pub common: CapRef,
    /// Queue notification area.
    pub notify: CapRef,
    /// Bytes between the notification addresses of two consecutive `queue_notify_off`s.
    pub notify_off_multiplier: u32,
    /// Interrupt status (unused in polling mode; recorded for completeness).
    pub isr: Option<CapRef>,
    /// Device-specific configuration (virtio-net: MAC, status).
    pub device: CapRef,
}

/// The identity of a PCI function, from the first bytes of its configuration space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciId {
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
}

impl PciId {
    /// True for a virtio-net device (transitional or modern).
    pub fn is_virtio_net(self) -> bool {
        self.vendor == VIRTIO_VENDOR
            && (self.device == NET_TRANSITIONAL || self.device == NET_MODERN)
    }
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Vendor and device id from configuration space bytes.
pub fn pci_id(cfg: &[u8]) -> Result<PciId, String> {
    match (le16(cfg, 0), le16(cfg, 2)) {
        (Some(vendor), Some(device)) => Ok(PciId { vendor, device }),
        _ => Err(format!(
            "configuration space too short ({} bytes)",
            cfg.len()
        )),
    }
}

/// True when BAR `bar`'s register in `cfg` describes I/O space (bit 0 set) rather than
/// memory.
pub fn bar_is_io(cfg: &[u8], bar: u8) -> bool {
    le32(cfg, 0x10 + 4 * bar as usize).is_some_and(|v| v & 1 == 1)
}

/// Walks the capability list of `cfg` (the whole 256-byte configuration space: a non-root
/// reader of sysfs gets only the first 64 bytes, without the capabilities) and returns the
/// virtio structures. The first capability of each type is used, as the spec asks.
pub fn parse(cfg: &[u8]) -> Result<VirtioCaps, String> {
    if cfg.len() < 256 {
        return Err(format!(
            "only {} bytes of configuration space could be read (the capabilities need 256: run as root)",
            cfg.len()
        ));
    }
    let status = le16(cfg, 6).unwrap_or(0);
    if status & 0x10 == 0 {
        return Err("the device has no PCI capability list (a legacy-only virtio device?)".into());
    }
    let (mut common, mut notify, mut isr, mut device) = (None, None, None, None);
    let mut ptr = cfg[0x34] as usize & 0xfc;
    // At most 48 capabilities fit in 192 bytes; a longer walk is a loop.
    let mut steps = 0;
    while ptr != 0 {
        steps += 1;
        if steps > 48 {
            return Err("the PCI capability list loops".into());
        }
        if ptr < 0x40 || ptr + 2 > cfg.len() {
            return Err(format!(
                "a PCI capability pointer ({ptr:#x}) is out of range"
            ));
        }
        let (id, next, len) = (cfg[ptr], cfg[ptr + 1] as usize & 0xfc, cfg.get(ptr + 2));
        if id == CAP_VENDOR {
            let len = *len.ok_or("a virtio capability is cut short")? as usize;
            if len >= 16 && ptr + 16 <= cfg.len() && ptr + len <= cfg.len() {
                let ty = cfg[ptr + 3];
                let bar = cfg[ptr + 4];
                let offset = le32(cfg, ptr + 8).unwrap_or(0);
                let length = le32(cfg, ptr + 12).unwrap_or(0);
                let r = CapRef {
                    bar,
                    offset,
                    length,
                };
                // BARs 0..=5 only; others (reserved) are skipped, as the spec asks.
                if bar <= 5 {
                    match ty {
                        COMMON_CFG if common.is_none() => common = Some(r),
                        NOTIFY_CFG if notify.is_none() && len >= 20 => {
                            notify = Some((r, le32(cfg, ptr + 16).unwrap_or(0)))
                        }
                        ISR_CFG if isr.is_none() => isr = Some(r),
                        DEVICE_CFG if device.is_none() => device = Some(r),
                        _ => {}
                    }
                }
            }
        }
        ptr = next;
    }
    let missing = |what: &str| {
        format!(
            "no virtio 1.0 {what} capability: a legacy-only device (QEMU: disable-modern=on?) is not supported"
        )
    };
    let common = common.ok_or_else(|| missing("common configuration"))?;
    let (notify, notify_off_multiplier) = notify.ok_or_else(|| missing("notification"))?;
    let device = device.ok_or_else(|| missing("device configuration"))?;
    if common.length < COMMON_CFG_LEN {
        return Err(format!(
            "the common configuration is {} bytes, less than the {COMMON_CFG_LEN} of virtio 1.0",
            common.length
        ));
    }
    if device.length < NET_CFG_LEN {
        return Err(format!(
            "the device configuration is {} bytes, less than virtio-net's {NET_CFG_LEN}",
            device.length
        ));
    }
    Ok(VirtioCaps {
        common,
        notify,
        notify_off_multiplier,
        isr,
        device,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `od -An -tx1 -v /sys/bus/pci/devices/0000:00:04.0/config` in the QEMU 7.2 guest of
    /// tests/qemu (virtio-net-pci, vectors=0, transitional: legacy I/O BAR 0, modern BAR 4).
    pub(crate) const QEMU_VIRTIO_NET: &str = "
 f4 1a 00 10 07 01 10 00 00 00 00 02 00 00 00 00
 01 c0 00 00 00 00 00 00 00 00 00 00 00 00 00 00
 0c c0 bf fe 00 00 00 00 00 00 00 00 f4 1a 01 00
 00 00 b8 fe 84 00 00 00 00 00 00 00 0b 01 00 00
 09 00 10 01 04 00 00 00 00 00 00 00 00 10 00 00
 09 40 10 03 04 00 00 00 00 10 00 00 00 10 00 00
 09 50 10 04 04 00 00 00 00 20 00 00 00 10 00 00
 09 60 14 02 04 00 00 00 00 30 00 00 00 10 00 00
 04 00 00 00 09 70 14 05 00 00 00 00 00 00 00 00
 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00";

    pub(crate) fn qemu_config() -> Vec<u8> {
        QEMU_VIRTIO_NET
            .split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect()
    }

    #[test]
    fn parses_the_qemu_dump() {
        let cfg = qemu_config();
        assert_eq!(cfg.len(), 256);
        let id = pci_id(&cfg).unwrap();
        assert!(id.is_virtio_net());
        assert_eq!(id.device, NET_TRANSITIONAL);
        let c = parse(&cfg).unwrap();
        let bar4 = |offset| CapRef {
            bar: 4,
            offset,
            length: 0x1000,
        };
        assert_eq!(c.common, bar4(0));
        assert_eq!(c.isr, Some(bar4(0x1000)));
        assert_eq!(c.device, bar4(0x2000));
        assert_eq!(c.notify, bar4(0x3000));
        assert_eq!(c.notify_off_multiplier, 4);
        assert!(bar_is_io(&cfg, 0));
        assert!(!bar_is_io(&cfg, 4));
    }

    #[test]
    fn clear_errors() {
        let cfg = qemu_config();
        assert!(parse(&cfg[..64]).unwrap_err().contains("run as root"));
        let mut no_list = cfg.clone();
        no_list[6] = 0;
        assert!(
            parse(&no_list)
                .unwrap_err()
                .contains("no PCI capability list")
        );
        // Drop the notify capability from the chain (0x70 -> skip to 0x60).
        let mut no_notify = cfg.clone();
        no_notify[0x85] = 0x60;
        assert!(parse(&no_notify).unwrap_err().contains("notification"));
        let mut looped = cfg.clone();
        looped[0x41] = 0x84;
        assert!(parse(&looped).unwrap_err().contains("loops"));
        let mut low = cfg.clone();
        low[0x34] = 0x10;
        assert!(parse(&low).unwrap_err().contains("out of range"));
        let mut short_common = cfg;
        short_common[0x4c] = 0x10;
        short_common[0x4d] = 0;
        assert!(
            parse(&short_common)
                .unwrap_err()
                .contains("common configuration is 16")
        );
        assert!(pci_id(&[0xf4, 0x1a, 0x00, 0x10]).unwrap().is_virtio_net());
        assert!(pci_id(&[0xf4, 0x1a]).unwrap_err().contains("too short"));
        assert!(
            !PciId {
                vendor: 0x8086,
                device: 0x100e
            }
            .is_virtio_net()
        );
    }

    proptest! {
        /// Any configuration space bytes: no panic, and whatever is returned points inside
        /// BARs 0..=5 with the minimum lengths.
        #[test]
        fn any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(c) = parse(&bytes) {
                prop_assert!(c.common.bar <= 5 && c.notify.bar <= 5 && c.device.bar <= 5);
                prop_assert!(c.common.length >= COMMON_CFG_LEN);
            }
            let _ = pci_id(&bytes);
        }

        /// The recorded dump with a few bytes of its capability area changed: no panic.
        #[test]
        fn mutated_dump(edits in proptest::collection::vec((0x34usize..0xa0, any::<u8>()), 1..8)) {
            let mut cfg = qemu_config();
            for (at, v) in edits {
                cfg[at] = v;
            }
            let _ = parse(&cfg);
        }
    }
}
