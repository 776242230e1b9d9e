//! The vhost-kernel backend of a virtio-user port: one `/dev/vhost-net` fd and one tap queue
//! per queue pair, set up synchronously when the port opens.
//!
//! The sequence, per queue pair: open the vhost-net device and take ownership, create or
//! attach the tap queue (`IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, multi-queue when the kernel
//! and the interface allow), set its header length, send buffer and offloads, acknowledge the
//! features, send the memory table (every shareable region, guest address = our address),
//! set up both vrings (size, base, addresses, kick, call) and attach both to the tap. Then
//! every vring's configuration is published and the queues run, on the same ring code as
//! with vhost-user.
//!
//! The tap's virtio-net header is handled by the tap (vhost-net's own header support,
//! `VHOST_NET_F_VIRTIO_NET_HDR`, is not acknowledged), so the header length follows the
//! negotiated features: 12 bytes with `VERSION_1` or mergeable buffers, else 10.
//!
//! Offloads: vhost-net itself knows no virtio-net offload bit; the tap does them (its
//! virtio-net header carries partial checksums and GSO both ways). So the offload features
//! ([`vhost_kernel::TAP_OFFLOAD_FEATURES`]) are offered on top of what vhost-net lists, asked
//! for only when the application enables the offloads (`--enable-rx-cksum`, `--enable-lro`,
//! `--tx-offloads`), kept out of `VHOST_SET_FEATURES`, and turned into the tap's
//! `TUNSETOFFLOAD` flags ([`vhost_kernel::tap_offloads`]: what the tap may hand us). With
//! none enabled, the tap gets `TUNSETOFFLOAD` 0 and the kernel finishes checksums and
//! segments before frames reach us.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ferrovia_ethdev::{Error, EventSink, PortEventKind, Result};
use ferrovia_memory::{Mempool, registry};
use ferrovia_transport::vhost_kernel::{self, KernelError, KernelVring, Tap, VhostNet};
use ferrovia_virtqueue::driver::DriverQueue;
use ferrovia_virtqueue::layout::{bit, feature, net_hdr_len};
use vmm_sys_util::eventfd::EventFd;

use super::backend::{Backend, BackendKind};
use super::{LinkCfg, VringShared};

/// The virtio features this driver may agree with a vhost-net device and its tap: what the
/// data path handles and vhost-net knows (it has neither `IN_ORDER` nor the packed ring),
/// and the offloads the tap does.
pub(crate) const OFFERED: u64 = bit(feature::F_VERSION_1)
    | bit(feature::NET_F_MRG_RXBUF)
    | bit(feature::RING_F_EVENT_IDX)
    | vhost_kernel::TAP_OFFLOAD_FEATURES;

/// Vring indexes of one vhost-net device.
const RX: u32 = 0;
const TX: u32 = 1;

/// What the port hands the backend to start: its rings and eventfds.
pub(crate) struct Rings<'a> {
    pub(crate) vrings: &'a [Arc<VringShared>],
    pub(crate) kicks: &'a [EventFd],
    pub(crate) calls: &'a [EventFd],
    pub(crate) area_base: u64,
    pub(crate) qbytes: usize,
    pub(crate) queue_size: u16,
    pub(crate) pool: &'a Mempool,
}

/// One queue pair's device and tap.
struct Pair {
    dev: VhostNet,
    tap: Tap,
}

/// The vhost-kernel backend of one port.
pub(crate) struct KernelBackend {
    name: String,
    pairs: Vec<Pair>,
    features: u64,
    vrings: Vec<Arc<VringShared>>,
    running: Arc<AtomicBool>,
}

fn cfg_err(port: &str, e: KernelError) -> Error {
    match e {
        KernelError::Missing { .. } => Error::Unsupported(format!("{port}: {e}")),
        _ => Error::Config(format!("{port}: {e}")),
    }
}

impl KernelBackend {
    /// Opens the devices and taps of `queues` pairs and agrees features with the kernel:
    /// returns the backend and the features the rings must be built for.
    pub(crate) fn open(
        port: &str,
        path: &str,
        iface: &str,
        queues: u16,
        want: u64,
    ) -> Result<KernelBackend> {
        vhost_kernel::check_tap_name(iface).map_err(|e| cfg_err(port, e))?;
        let devs = (0..queues)
            .map(|q| VhostNet::open(path, q))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| cfg_err(port, e))?;
        // The taps are opened with a virtio-net header, so they do the offloads.
        let offered =
            devs[0].features().map_err(|e| cfg_err(port, e))? | vhost_kernel::TAP_OFFLOAD_FEATURES;
        let features = want & OFFERED & offered;
        if features & bit(feature::F_VERSION_1) == 0 && want & bit(feature::F_VERSION_1) != 0 {
            log::warn!(
                "{port}: {path} does not offer VIRTIO_F_VERSION_1 (features {offered:#x}); running as a legacy device"
            );
        }
        let taps = vhost_kernel::open_taps(iface, queues).map_err(|e| cfg_err(port, e))?;
        let hdr = net_hdr_len(features);
        let mut tap_flags = 0;
        for t in &taps {
            t.set_vnet_hdr_len(hdr).map_err(|e| cfg_err(port, e))?;
            t.set_sndbuf(i32::MAX).map_err(|e| cfg_err(port, e))?;
            let asked = vhost_kernel::tap_offloads(features);
            let set = t.set_offload(asked).map_err(|e| cfg_err(port, e))?;
            tap_flags = set;
            if set != asked {
                log::warn!(
                    "{port}: tap {} took offload flags {set:#x} of {asked:#x}",
                    t.name()
                );
            }
        }
        log::info!(
            "{port}: vhost-kernel on {path}: tap {} ({} queue pair{}{}), virtio-net header {hdr} bytes, features {features:#x}, tap offloads {tap_flags:#x}",
            taps[0].name(),
            queues,
            if queues == 1 { "" } else { "s" },
            if taps[0].is_multi_queue() {
                ", multi-queue tap"
            } else {
                ""
            },
        );
        Ok(KernelBackend {
            name: port.to_string(),
            pairs: devs
                .into_iter()
                .zip(taps)
                .map(|(dev, tap)| Pair { dev, tap })
                .collect(),
            features,
            vrings: Vec::new(),
            running: Arc::default(),
        })
    }

    /// The features agreed with the kernel.
    pub(crate) fn features(&self) -> u64 {
        self.features
    }

    /// The tap's name, as the kernel chose it.
    pub(crate) fn tap_name(&self) -> &str {
        self.pairs[0].tap.name()
    }

    /// Sends the memory table and the rings to every device, attaches them to the taps and
    /// lets the queues run. The vrings must be paused and have no queue handle yet. Emits
    /// `LinkUp` and every queue enabled to `events`, if given.
    pub(crate) fn start(
        &mut self,
        rings: Rings<'_>,
        negotiated: &Mutex<Option<u64>>,
        events: Option<&(EventSink, u16)>,
    ) -> Result<()> {
        let port = self.name.clone();
        let regions = registry::snapshot();
        let table = vhost_kernel::identity_table(
            regions.iter().map(|r| (r.addr, r.len)),
            vhost_kernel::max_mem_regions(),
        )
        .map_err(|e| cfg_err(&port, e))?;
        let mut cache = rings.pool.cache();
        for (q, p) in self.pairs.iter().enumerate() {
            // vhost-net refuses the offload bits: the tap does them.
            p.dev
                .set_features(self.features & !vhost_kernel::TAP_OFFLOAD_FEATURES)
                .map_err(|e| cfg_err(&port, e))?;
            p.dev.set_mem_table(&table).map_err(|e| cfg_err(&port, e))?;
            for (index, vr) in [(RX, 2 * q), (TX, 2 * q + 1)] {
                let v = &rings.vrings[vr];
                // SAFETY: the vrings are paused and no queue handle exists yet (the port is
                // being opened), so nothing else touches the queue.
                let base = unsafe { v.queue() }.prepare_connect(
                    &mut cache,
                    index == RX,
                    &ferrovia_virtqueue::NoSink,
                );
                let a = DriverQueue::addrs(
                    rings.area_base + (vr * rings.qbytes) as u64,
                    rings.queue_size,
                    false,
                );
                let ring = KernelVring {
                    size: rings.queue_size,
                    base,
                    desc: a.desc,
                    avail: a.avail,
                    used: a.used,
                };
                p.dev
                    .set_vring(
                        index,
                        &ring,
                        rings.kicks[vr].as_raw_fd(),
                        rings.calls[vr].as_raw_fd(),
                    )
                    .map_err(|e| cfg_err(&port, e))?;
            }
            for index in [RX, TX] {
                p.dev
                    .set_backend(index, Some(&p.tap))
                    .map_err(|e| cfg_err(&port, e))?;
            }
        }
        *negotiated.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.features);
        for (i, v) in rings.vrings.iter().enumerate() {
            let kick = rings.kicks[i]
                .try_clone()
                .map_err(|e| Error::io(format!("{port}: duplicating a kick eventfd"), e))?;
            // SAFETY: into_raw_fd hands over the only owner of a fresh duplicate.
            let kick = unsafe { File::from_raw_fd(kick.into_raw_fd()) };
            v.cfg.publish(Some(Arc::new(LinkCfg {
                features: self.features,
                kick: Some(kick),
            })));
        }
        self.vrings = rings.vrings.to_vec();
        self.running.store(true, Ordering::Release);
        if let Some((sink, port)) = events {
            // The devices run from here on; later changes of the tap's state are seen by
            // `Port::link` only (nothing watches the tap).
            sink.emit(*port, PortEventKind::LinkUp);
            for queue in 0..self.pairs.len() as u16 {
                for rx in [true, false] {
                    sink.emit(
                        *port,
                        PortEventKind::QueueState {
                            queue,
                            rx,
                            enabled: true,
                        },
                    );
                }
            }
        }
        Ok(())
    }
}

impl Backend for KernelBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::VhostKernel
    }

    fn link_up(&self) -> bool {
        // Up while the devices run and the tap is administratively up; a tap moved to another
        // network namespace cannot be seen from here and counts as up.
        self.running.load(Ordering::Acquire) && self.pairs[0].tap.is_up().unwrap_or(true)
    }

    fn shutdown(&mut self) {
        self.running.store(false, Ordering::Release);
        for v in &self.vrings {
            v.cfg.publish(None);
        }
        for p in &self.pairs {
            for index in [RX, TX] {
                if let Err(e) = p.dev.set_backend(index, None) {
                    log::warn!("{}: {e}", self.name);
                }
            }
        }
        // Closing the vhost-net fds stops the kernel's workers before `close` returns; the
        // tap goes away with its last queue fd (unless someone made it persistent).
        self.pairs.clear();
    }
}
