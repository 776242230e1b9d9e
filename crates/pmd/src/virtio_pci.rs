//! `net_virtio_pci`: a userspace driver for a virtio-net PCI device (virtio 1.x "modern"
//! interface), in polling mode, for a guest that runs our testpmd on its virtio-net-pci
//! devices (the VM side of the PVP benchmark), as DPDK's virtio PMD does with igb_uio or
//! uio_pci_generic.
//!
//! Devargs: `addr` (required: the PCI address, `0000:00:04.0`), `queue_size` (0, the default:
//! the device's maximum; otherwise a power of two up to it), `mrg_rxbuf` (default 1),
//! `in_order` (default 1), `mac` (default: the device's). testpmd turns `-a 0000:00:04.0` into
//! `net_virtio_pciN,addr=0000:00:04.0`.
//!
//! How the device is reached, without vfio (no IOMMU, none in the guest kernel either):
//! * The function must be bound to `uio_pci_generic` or to no driver: uio_pci_generic claims
//!   no BAR, so sysfs lets root map them (`/sys/bus/pci/devices/ADDR/resourceN`, see
//!   [`bar`]). Bus mastering is turned on through the configuration space file ([`sysfs`]).
//! * The virtio structures (common configuration, notification area, device configuration)
//!   are found by walking the capability list ([`caps`]).
//! * The device reads and writes our memory by physical address. The rings are one 2 MiB
//!   hugepage and the mbuf pool must be in physically contiguous hugepages
//!   ([`RegionBacking::HugetlbDma`](ferrovia_memory::RegionBacking::HugetlbDma)): each is
//!   then its virtual address plus one constant, which the split ring code adds to every
//!   descriptor address ([`DriverQueue::set_device_access`]). Physical addresses come from
//!   `/proc/self/pagemap`, so this needs root. Like igb_uio, this gives no DMA isolation: the
//!   device (QEMU and its vhost-user backend) can reach all guest memory.
//!
//! One queue pair (virtqueues 0 and 1), split ring, no control queue, no interrupts (MSI-X
//! vectors set to NO_VECTOR, INTx disabled). Kicks are 16-bit writes to the queue's
//! notification register, at most one per burst, skipped when the device asks for none
//! (`VIRTQ_USED_F_NO_NOTIFY` or the event index). Stopping the port (and dropping it) resets
//! the device (`device_status = 0`) before any posted buffer is freed; starting it again
//! negotiates afresh. Everything the device writes back is checked by the ring code.

use std::cell::UnsafeCell;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrovia_ethdev::{
    Burst, Devargs, DriverSpec, Error, KeyKind, KeySpec, Link, MacAddr, Offloads, Port, PortConf,
    PortInfo, PortStats, QueueStats, Result, RxOffloads, RxQueue, TxQueue, VirtioFeatures,
};
use ferrovia_memory::{LcoreCaches, Mempool, RegionBacking, SharedRegion};
use ferrovia_virtqueue::driver::{DriverOptions, DriverQueue};
use ferrovia_virtqueue::layout::{bit, feature, net_hdr_len, valid_queue_size};
use ferrovia_virtqueue::net_hdr::{HdrAccept, RxPolicy};
use ferrovia_virtqueue::notify::Kick;
use ferrovia_virtqueue::quiesce::{Entered, Quiesce, QuiesceReader};

use crate::offload;
use crate::shared::{RunState, Taken, TakenGuard};
use crate::sink::StatsSink;
use bar::{Bar, Mmio};
use sysfs::{PciAddr, PciDev};

pub mod bar;
pub mod caps;
pub mod sysfs;

/// The devargs keys of `net_virtio_pci`.
const KEYS: &[KeySpec] = &[
    KeySpec::new(
        "addr",
        KeyKind::Text,
        "the PCI address of the virtio-net device, e.g. 0000:00:04.0 (bound to uio_pci_generic or to no driver)",
    )
    .required(),
    KeySpec::number(
        "queue_size",
        0,
        32768,
        "ring size, a power of two up to the device's maximum; 0: the device's maximum",
    )
    .default_value("0"),
    KeySpec::flag("mrg_rxbuf", "offer mergeable Rx buffers").default_value("1"),
    KeySpec::flag("in_order", "offer VIRTIO_F_IN_ORDER").default_value("1"),
    KeySpec::new(
        "mac",
        KeyKind::Mac,
        "the port's MAC address (default: the device's, from its configuration space)",
    ),
];

/// The `net_virtio_pci` driver, for the registry.
pub static DRIVER: DriverSpec = DriverSpec {
    name: "net_virtio_pci",
    aliases: &["virtio_pci"],
    summary: "virtio-net PCI device (virtio 1.x) driven from userspace through uio_pci_generic and sysfs, polling; root and hugepages",
    keys: KEYS,
    open: |d, c| Ok(Box::new(VirtioPciPort::open(d, c)?)),
};

/// Offsets in the common configuration structure (virtio 1.x, 4.1.4.3).
mod reg {
    pub const DEVICE_FEATURE_SELECT: usize = 0x00;
    pub const DEVICE_FEATURE: usize = 0x04;
    pub const DRIVER_FEATURE_SELECT: usize = 0x08;
    pub const DRIVER_FEATURE: usize = 0x0c;
    pub const MSIX_CONFIG: usize = 0x10;
    pub const NUM_QUEUES: usize = 0x12;
    pub const DEVICE_STATUS: usize = 0x14;
    pub const QUEUE_SELECT: usize = 0x16;
    pub const QUEUE_SIZE: usize = 0x18;
    pub const QUEUE_MSIX_VECTOR: usize = 0x1a;
    pub const QUEUE_ENABLE: usize = 0x1c;
    pub const QUEUE_NOTIFY_OFF: usize = 0x1e;
    pub const QUEUE_DESC: usize = 0x20;
    pub const QUEUE_DRIVER: usize = 0x28;
    pub const QUEUE_DEVICE: usize = 0x30;
}

/// Device status bits.
mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const NEEDS_RESET: u8 = 0x40;
    pub const FAILED: u8 = 0x80;
}

/// "No MSI-X vector": the device raises no interrupt for the queue or configuration changes.
const NO_VECTOR: u16 = 0xffff;
/// The virtio-net config's `status` field: link up.
const NET_S_LINK_UP: u16 = 1;
/// Offset of `status` in the virtio-net device configuration.
const NET_CFG_STATUS: usize = 6;
/// How long a reset may take before we give up.
const RESET_TIMEOUT: Duration = Duration::from_secs(1);

/// One virtqueue: the driver queue, reached by the polling thread inside a burst entered
/// with a live configuration, and by the control side only while paused (`live.publish(None)`
/// returned) or before any queue handle exists: the quiesce protocol makes accesses exclusive.
struct Vring {
    /// The negotiated features while the device is live; None while stopped.
    live: Quiesce<u64>,
    queue: UnsafeCell<Option<DriverQueue>>,
}

// SAFETY: see the type's documentation: access to `queue` is serialised by the quiesce
// protocol; the rest is Sync.
unsafe impl Sync for Vring {}

impl Vring {
    /// # Safety
    /// Exclusive access per the quiesce protocol (see the type's docs).
    #[allow(clippy::mut_from_ref)]
    unsafe fn queue(&self) -> &mut Option<DriverQueue> {
        // SAFETY: exclusivity is the caller's obligation.
        unsafe { &mut *self.queue.get() }
    }
}

/// What the port and its queue handles share: the device's registers, the ring memory and
/// the vrings. Dropped with the last of them; the port resets the device first.
struct Dev {
    pci: PciDev,
    common: Mmio,
    notify: Mmio,
    notify_mult: u32,
    devcfg: Mmio,
    /// Rx (0) and Tx (1).
    vrings: [Vring; 2],
    /// The rings (one hugepage, physically contiguous).
    area: SharedRegion,
}

impl Dev {
    /// Writes 0 to `device_status` and waits for the device to read back 0: it then no
    /// longer uses any ring or buffer.
    fn reset(&self) -> std::result::Result<(), String> {
        self.common.write8(reg::DEVICE_STATUS, 0);
        let t = Instant::now();
        while self.common.read8(reg::DEVICE_STATUS) != 0 {
            if t.elapsed() > RESET_TIMEOUT {
                return Err(format!(
                    "{}: the device did not complete its reset within {RESET_TIMEOUT:?}",
                    self.pci.addr
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    fn add_status(&self, bits: u8) {
        let s = self.common.read8(reg::DEVICE_STATUS);
        self.common.write8(reg::DEVICE_STATUS, s | bits);
    }

    fn device_features(&self) -> u64 {
        self.common.write32(reg::DEVICE_FEATURE_SELECT, 0);
        let lo = self.common.read32(reg::DEVICE_FEATURE) as u64;
        self.common.write32(reg::DEVICE_FEATURE_SELECT, 1);
        let hi = self.common.read32(reg::DEVICE_FEATURE) as u64;
        lo | hi << 32
    }

    fn set_driver_features(&self, f: u64) {
        self.common.write32(reg::DRIVER_FEATURE_SELECT, 0);
        self.common.write32(reg::DRIVER_FEATURE, f as u32);
        self.common.write32(reg::DRIVER_FEATURE_SELECT, 1);
        self.common.write32(reg::DRIVER_FEATURE, (f >> 32) as u32);
    }

    /// The MAC address in the device configuration (read until the config generation is
    /// stable).
    fn mac(&self) -> MacAddr {
        loop {
            let g = self.common.read8(0x15);
            let mut m = [0u8; 6];
            for (i, b) in m.iter_mut().enumerate() {
                *b = self.devcfg.read8(i);
            }
            if self.common.read8(0x15) == g {
                return MacAddr(m);
            }
        }
    }
}

/// The virtio-pci port.
pub struct VirtioPciPort {
    name: String,
    dev: Arc<Dev>,
    conf: PortConf,
    /// Ring size asked for (0: the device's maximum) and the size in use.
    want_size: u16,
    queue_size: u16,
    want: u64,
    offered: u64,
    features: u64,
    mrg: bool,
    max_rx_pkt: usize,
    mac: MacAddr,
    /// The pool's physical minus virtual address.
    pool_iova: u64,
    /// The device is set up and DRIVER_OK.
    live: bool,
    state: Arc<RunState>,
    rx_stats: Arc<QueueStats>,
    tx_stats: Arc<QueueStats>,
    rx_taken: Taken,
    tx_taken: Taken,
}

impl std::fmt::Debug for VirtioPciPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioPciPort")
            .field("name", &self.name)
            .field("addr", &self.dev.pci.addr.to_string())
            .field("live", &self.live)
            .finish()
    }
}

/// `Error::Config` with the device name in front.
fn cfg_err(name: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("{name}: {e}"))
}

impl VirtioPciPort {
    /// Opens the device at `addr`: checks it, maps it, negotiates and brings it up (the port
    /// can move packets once started).
    pub fn open(d: &Devargs, conf: &PortConf) -> Result<VirtioPciPort> {
        d.check_keys(KEYS)?;
        let addr_s = d.required("addr", "the PCI address, e.g. 0000:00:04.0")?;
        let addr: PciAddr = addr_s
            .parse()
            .map_err(|e| Error::Devargs(format!("{}: {e}", d.name)))?;
        let want_size = d.number("queue_size", 0, 0, 32768)? as u16;
        if want_size != 0 && !valid_queue_size(want_size as u32) {
            return Err(Error::Devargs(format!(
                "{}: queue_size={want_size} must be a power of two (e.g. 256, 1024), or 0 for the device's maximum",
                d.name
            )));
        }
        let mrg = d.flag("mrg_rxbuf", true)?;
        let in_order = d.flag("in_order", true)?;
        if conf.nb_rxq > 1 || conf.nb_txq > 1 {
            return Err(Error::Unsupported(format!(
                "{}: {} Rx / {} Tx queues asked for; net_virtio_pci drives one queue pair",
                d.name, conf.nb_rxq, conf.nb_txq
            )));
        }
        let pool_iova = conf.pool.iova_delta().ok_or_else(|| {
            cfg_err(
                &d.name,
                "the mbuf pool is not in physically contiguous hugepages (RegionBacking::HugetlbDma); the device could not reach it (testpmd does this for PCI ports)",
            )
        })?;

        let pci = PciDev::open(Path::new(sysfs::SYSFS_PCI), addr).map_err(Error::Config)?;
        let cfg = pci.config().map_err(|e| {
            Error::io(
                format!("{}: reading {addr}'s configuration space", d.name),
                e,
            )
        })?;
        let id = caps::pci_id(&cfg).map_err(|e| cfg_err(&d.name, format!("{addr}: {e}")))?;
        if !id.is_virtio_net() {
            return Err(Error::Config(format!(
                "{addr}: not a virtio-net device (vendor {:#06x} device {:#06x})",
                id.vendor, id.device
            )));
        }
        if let Some(e) = sysfs::driver_conflict(addr, pci.driver().as_deref()) {
            return Err(Error::Config(e));
        }
        let c = caps::parse(&cfg).map_err(|e| Error::Config(format!("{addr}: {e}")))?;
        // Map each BAR the structures live in once.
        let mut bars: Vec<(u8, Arc<Bar>)> = Vec::new();
        let mut window = |r: caps::CapRef, what: &str| -> Result<Mmio> {
            if caps::bar_is_io(&cfg, r.bar) {
                return Err(Error::Unsupported(format!(
                    "{addr}: the {what} is in I/O BAR {}; only memory BARs are supported",
                    r.bar
                )));
            }
            let bar = match bars.iter().find(|(i, _)| *i == r.bar) {
                Some((_, b)) => b.clone(),
                None => {
                    let b = Arc::new(Bar::map(&pci.resource(r.bar)).map_err(|e| {
                        Error::io(
                            format!("{addr}: mapping BAR {} (as root, device bound to uio_pci_generic or to none)", r.bar),
                            e,
                        )
                    })?);
                    bars.push((r.bar, b.clone()));
                    b
                }
            };
            Mmio::new(bar, r.offset, r.length).ok_or_else(|| {
                Error::Config(format!(
                    "{addr}: the {what} ({:#x}+{:#x}) lies outside BAR {}",
                    r.offset, r.length, r.bar
                ))
            })
        };
        let common = window(c.common, "common configuration")?;
        let notify = window(c.notify, "notification area")?;
        let devcfg = window(c.device, "device configuration")?;

        let mut want = bit(feature::F_VERSION_1)
            | bit(feature::NET_F_MAC)
            | bit(feature::NET_F_STATUS)
            | bit(feature::RING_F_EVENT_IDX);
        if mrg {
            want |= bit(feature::NET_F_MRG_RXBUF);
        }
        if in_order {
            want |= bit(feature::F_IN_ORDER);
        }
        want |= offload::driver_features(
            conf.rx_offloads & offload::RX_CAPA,
            conf.tx_offloads & offload::TX_CAPA,
        );
        let lro = conf.rx_offloads.contains(RxOffloads::TCP_LRO);
        let max_rx_pkt = if lro {
            (conf.max_rx_pktlen as usize).max(65535 + 14 + 8)
        } else {
            conf.max_rx_pktlen as usize
        };

        // The rings: both in one hugepage (2 MiB holds two 32768-entry split rings' worth
        // of the sizes the device allows in practice; checked below).
        let area = SharedRegion::new(&format!("{}-rings", d.name), 1, RegionBacking::HugetlbDma)
            .map_err(|e| Error::io(format!("{}: ring memory", d.name), e))?;
        pci.set_bus_master(true)
            .map_err(|e| Error::io(format!("{addr}: enabling bus mastering"), e))?;
        let dev = Arc::new(Dev {
            pci,
            common,
            notify,
            notify_mult: c.notify_off_multiplier,
            devcfg,
            vrings: [0, 1].map(|_| Vring {
                live: Quiesce::default(),
                queue: UnsafeCell::new(None),
            }),
            area,
        });
        let mut port = VirtioPciPort {
            name: d.name.clone(),
            dev,
            conf: conf.clone(),
            want_size,
            queue_size: 0,
            want,
            offered: 0,
            features: 0,
            mrg,
            max_rx_pkt,
            mac: MacAddr([0; 6]),
            pool_iova,
            live: false,
            state: Arc::default(),
            rx_stats: Arc::default(),
            tx_stats: Arc::default(),
            rx_taken: Taken::new(1),
            tx_taken: Taken::new(1),
        };
        if let Err(e) = port.bring_up() {
            port.bring_down();
            return Err(e);
        }
        port.mac = if d.get("mac").is_some() || port.features & bit(feature::NET_F_MAC) == 0 {
            d.mac_or_derived(conf.port_id)?
        } else {
            port.dev.mac()
        };
        log::info!(
            "{}: {addr} up, features {:#x}, {} descriptors per ring, mac {}",
            d.name,
            port.features,
            port.queue_size,
            port.mac
        );
        Ok(port)
    }

    /// Resets the device and sets it up: features, both virtqueues, DRIVER_OK, Rx buffers.
    fn bring_up(&mut self) -> Result<()> {
        let dev = self.dev.clone();
        let addr = dev.pci.addr;
        let c = &dev.common;
        dev.reset().map_err(Error::Config)?;
        dev.add_status(status::ACKNOWLEDGE);
        dev.add_status(status::DRIVER);
        self.offered = dev.device_features();
        if self.offered & bit(feature::F_VERSION_1) == 0 {
            return Err(Error::Unsupported(format!(
                "{addr}: the device does not offer VIRTIO_F_VERSION_1 (features {:#x}); legacy devices are not supported",
                self.offered
            )));
        }
        let f = self.offered & self.want;
        dev.set_driver_features(f);
        dev.add_status(status::FEATURES_OK);
        if c.read8(reg::DEVICE_STATUS) & status::FEATURES_OK == 0 {
            dev.add_status(status::FAILED);
            return Err(Error::Protocol(format!(
                "{addr}: the device refused features {f:#x} (FEATURES_OK not kept)"
            )));
        }
        self.features = f;
        c.write16(reg::MSIX_CONFIG, NO_VECTOR);
        let nq = c.read16(reg::NUM_QUEUES);
        if nq < 2 {
            return Err(Error::Protocol(format!(
                "{addr}: the device has {nq} virtqueues; virtio-net needs at least 2"
            )));
        }
        let opts = DriverOptions {
            features: f,
            max_rx_pkt: self.max_rx_pkt,
        };
        let area_base = dev.area.base();
        let area_iova = dev
            .area
            .iova_delta()
            .expect("a HugetlbDma region has a delta");
        for (i, vr) in dev.vrings.iter().enumerate() {
            c.write16(reg::QUEUE_SELECT, i as u16);
            let max = c.read16(reg::QUEUE_SIZE);
            if max == 0 {
                return Err(Error::Protocol(format!(
                    "{addr}: virtqueue {i} is not available"
                )));
            }
            let size = if self.want_size == 0 {
                // The largest power of two the device allows.
                1u16 << (15 - max.leading_zeros().min(15))
            } else if self.want_size <= max {
                self.want_size
            } else {
                return Err(Error::Config(format!(
                    "{}: queue_size={} is more than the device's maximum {max}",
                    self.name, self.want_size
                )));
            };
            let qbytes = DriverQueue::area_size(size, false);
            if 2 * qbytes > dev.area.len() {
                return Err(Error::Config(format!(
                    "{}: {size}-entry rings do not fit in one hugepage; set a smaller queue_size",
                    self.name
                )));
            }
            self.queue_size = size;
            c.write16(reg::QUEUE_SIZE, size);
            c.write16(reg::QUEUE_MSIX_VECTOR, NO_VECTOR);
            // SAFETY: vring i gets its own qbytes of the ring hugepage, which the Dev (held
            // by the port and every queue handle) keeps mapped.
            let qbase = unsafe { area_base.add(i * qbytes) };
            // SAFETY: as above; 4096-aligned (hugepage base plus a multiple of 4096).
            let mut q = unsafe { DriverQueue::new(qbase, size, false, opts) }
                .map_err(|e| cfg_err(&self.name, e))?;
            let noff = c.read16(reg::QUEUE_NOTIFY_OFF) as usize;
            let (kick, _bar) = noff
                .checked_mul(dev.notify_mult as usize)
                .and_then(|off| dev.notify.notifier(off, i as u16))
                .ok_or_else(|| {
                    Error::Protocol(format!(
                        "{addr}: virtqueue {i}'s notification register (offset {noff} x {}) is outside the notification area",
                        dev.notify_mult
                    ))
                })?;
            let ok = q.set_device_access(Kick::Mmio(kick), self.pool_iova, area_iova);
            debug_assert!(ok, "a split queue takes device access");
            if i == 0 {
                let room = self.conf.pool.config().data_room as usize;
                q.set_rx_chain_for(if self.mrg { 0 } else { self.max_rx_pkt }, room);
            }
            let a = DriverQueue::addrs((qbase as u64).wrapping_add(area_iova), size, false);
            c.write64(reg::QUEUE_DESC, a.desc);
            c.write64(reg::QUEUE_DRIVER, a.avail);
            c.write64(reg::QUEUE_DEVICE, a.used);
            c.write16(reg::QUEUE_ENABLE, 1);
            // SAFETY: the vring is paused (never published, or paused by bring_down).
            *unsafe { vr.queue() } = Some(q);
        }
        dev.add_status(status::DRIVER_OK);
        let s = c.read8(reg::DEVICE_STATUS);
        if s & (status::NEEDS_RESET | status::FAILED) != 0 || s & status::DRIVER_OK == 0 {
            return Err(Error::Protocol(format!(
                "{addr}: the device did not accept DRIVER_OK (status {s:#x})"
            )));
        }
        // Rx buffers, now that notifications are allowed.
        let mut cache = self.conf.pool.cache();
        // SAFETY: still paused.
        if let Some(q) = unsafe { dev.vrings[0].queue() } {
            q.refill(&mut cache, &StatsSink(&self.rx_stats));
        }
        drop(cache);
        for vr in &dev.vrings {
            vr.live.publish(Some(Arc::new(f)));
        }
        self.live = true;
        Ok(())
    }

    /// Pauses the queues, resets the device (it stops using the rings and buffers) and
    /// frees every buffer that was posted.
    fn bring_down(&mut self) {
        let dev = self.dev.clone();
        for vr in &dev.vrings {
            vr.live.publish(None);
        }
        if let Err(e) = dev.reset() {
            // Buffers the device may still write are leaked rather than reused.
            log::error!("{}: {e}; posted buffers are not freed", self.name);
            self.live = false;
            return;
        }
        let mut cache = self.conf.pool.cache();
        for vr in &dev.vrings {
            // SAFETY: paused just above; the device is reset.
            if let Some(mut q) = unsafe { vr.queue() }.take() {
                q.drain(&mut cache);
            }
        }
        self.live = false;
    }
}

impl Drop for VirtioPciPort {
    fn drop(&mut self) {
        self.bring_down();
        let _ = self.dev.pci.set_bus_master(false);
    }
}

impl Port for VirtioPciPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "net_virtio_pci",
            name: self.name.clone(),
            mac: self.mac,
            nb_rx_queues: 1,
            nb_tx_queues: 1,
            max_queues: 1,
            nb_rxd: self.queue_size,
            nb_txd: self.queue_size,
            max_frame_size: self.max_rx_pkt as u32,
            offloads: Offloads {
                rx: offload::RX_CAPA,
                tx: offload::TX_CAPA,
            },
            virtio_features: self
                .live
                .then(|| VirtioFeatures::from_bits_retain(self.features)),
            virtio_offered: Some(VirtioFeatures::from_bits_retain(self.offered)),
            switch_domain: None,
        }
    }
    fn start(&mut self) -> Result<()> {
        if !self.live
            && let Err(e) = self.bring_up()
        {
            self.bring_down();
            return Err(e);
        }
        self.state.set(true);
        Ok(())
    }
    fn stop(&mut self) -> Result<()> {
        self.state.set(false);
        self.bring_down();
        Ok(())
    }
    fn link(&self) -> Link {
        let up = self.live
            && (self.features & bit(feature::NET_F_STATUS) == 0
                || self.dev.devcfg.read16(NET_CFG_STATUS) & NET_S_LINK_UP != 0);
        Link {
            up,
            speed_mbps: 10_000,
            full_duplex: true,
        }
    }
    fn stats(&self) -> PortStats {
        PortStats::collect(
            std::iter::once(&*self.rx_stats),
            std::iter::once(&*self.tx_stats),
        )
    }
    fn reset_stats(&self) {
        self.rx_stats.reset();
        self.tx_stats.reset();
    }
    fn rx_queue(&mut self, q: u16) -> Result<Box<dyn RxQueue>> {
        let guard = self.rx_taken.take(&self.name, "rx", q)?;
        Ok(Box::new(self.queue(guard, 0, self.rx_stats.clone())))
    }
    fn tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>> {
        let guard = self.tx_taken.take(&self.name, "tx", q)?;
        Ok(Box::new(self.queue(guard, 1, self.tx_stats.clone())))
    }
}

impl VirtioPciPort {
    fn queue(&self, guard: TakenGuard, vr: usize, stats: Arc<QueueStats>) -> VpQueue {
        VpQueue {
            _guard: guard,
            dev: self.dev.clone(),
            vr,
            reader: QuiesceReader::default(),
            pool: self.conf.pool.clone(),
            stats,
            state: self.state.clone(),
            port_id: self.conf.port_id,
            rx_pol: offload::rx_policy(&self.conf),
            tx_ol: offload::tx_enabled(&self.conf),
            acc: HdrAccept::default(),
            hdr_len: 12,
        }
    }
}

/// The Rx or Tx virtqueue of a port, owned by a polling thread.
struct VpQueue {
    _guard: TakenGuard,
    dev: Arc<Dev>,
    /// 0: Rx, 1: Tx.
    vr: usize,
    reader: QuiesceReader<u64>,
    pool: Mempool,
    stats: Arc<QueueStats>,
    state: Arc<RunState>,
    port_id: u16,
    rx_pol: RxPolicy,
    tx_ol: bool,
    /// What the negotiated headers may carry in this queue's direction.
    acc: HdrAccept,
    hdr_len: usize,
}

impl VpQueue {
    /// Enters a burst: the queue while the device is live.
    #[inline]
    fn enter(&mut self) -> Option<&mut DriverQueue> {
        let vr = &self.dev.vrings[self.vr];
        match self.reader.enter(&vr.live) {
            Entered::Paused => {
                self.reader.exit(&vr.live);
                return None;
            }
            Entered::Changed(f) => {
                let f = **f;
                self.acc = if self.vr == 0 {
                    HdrAccept::driver_reads(f)
                } else {
                    HdrAccept::device_reads(f)
                };
                self.hdr_len = net_hdr_len(f);
            }
            Entered::Same(_) => {}
        }
        // SAFETY: inside a burst entered with a live configuration (the quiesce protocol).
        let q = unsafe { vr.queue() };
        if q.is_none() {
            // Never while live (the queue is set before the configuration is published), but
            // a burst that returns must not stay entered.
            self.reader.exit(&vr.live);
            return None;
        }
        q.as_mut()
    }

    #[inline]
    fn exit(&mut self) {
        self.reader.exit(&self.dev.vrings[self.vr].live);
    }
}

impl RxQueue for VpQueue {
    fn rx_burst(&mut self, caches: &mut LcoreCaches, pkts: &mut Burst, max: usize) -> usize {
        if !self.state.started() {
            return 0;
        }
        let start = pkts.len();
        let cache = caches.for_pool(&self.pool);
        let stats = self.stats.clone();
        let port = self.port_id;
        let (mut n, mut bytes) = match self.enter() {
            Some(q) => q.receive(cache, pkts, max, port, &StatsSink(&stats)),
            None => {
                return 0;
            }
        };
        self.exit();
        if self.acc.any() && n > 0 {
            let (k, b) = offload::rx_pass(
                pkts,
                start,
                self.hdr_len,
                self.acc,
                self.rx_pol,
                cache,
                &stats,
            );
            n -= k;
            bytes -= b;
        }
        stats.add(n as u64, bytes as u64);
        n
    }
}

impl TxQueue for VpQueue {
    fn tx_burst(&mut self, caches: &mut LcoreCaches, pkts: &mut Burst) -> usize {
        if !self.state.started() || pkts.is_empty() {
            return 0;
        }
        let cache = caches.for_pool(&self.pool);
        let stats = self.stats.clone();
        let (tx_ol, acc) = (self.tx_ol, self.acc);
        let (n, bytes) = match self.enter() {
            Some(q) => {
                if tx_ol {
                    offload::tx_pass(pkts, acc, cache, &stats);
                }
                q.transmit(cache, pkts, &StatsSink(&stats))
            }
            None => return 0,
        };
        self.exit();
        stats.add(n as u64, bytes as u64);
        n
    }
}

impl Drop for VpQueue {
    fn drop(&mut self) {
        self.reader.release();
    }
}
