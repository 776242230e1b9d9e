//! The vhost-user backend (device side) request handler.
//!
//! rust-vmm's `BackendReqHandler` reads and validates each message (sizes, fd counts, feature
//! gating); this handler keeps the device state, validates the values inside (queue indexes,
//! ring sizes, addresses) and publishes a ready vring to its polling thread through
//! [`Quiesce`]. Any error it returns ends the session (as DPDK does); the reason is logged and
//! counted in [`DeviceShared`].

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};

use ferrovia_virtqueue::call_fd::CallFd;
use ferrovia_virtqueue::device::{ActiveVring, RingView, prepare_call_fd};
use ferrovia_virtqueue::guest_mem::{GuestMemory, RegionSpec};
use ferrovia_virtqueue::layout::{
    avail_ring_size, bit, desc_table_size, feature, used_ring_size, valid_queue_size,
};
use ferrovia_virtqueue::net_hdr::OFFLOAD_FEATURES;
use ferrovia_virtqueue::packed::{EVENT_AREA_SIZE, PackedRing, Pos, packed_ring_size};
use ferrovia_virtqueue::peer_fault::FaultWatch;
use ferrovia_virtqueue::quiesce::Quiesce;
use ferrovia_virtqueue::split::SplitRing;
use vhost::VhostUserMemoryRegionBase;
use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserConfigFlags, VhostUserInflight,
    VhostUserLog, VhostUserMemoryRegion, VhostUserProtocolFeatures, VhostUserShMemConfig,
    VhostUserSharedMsg, VhostUserSingleMemoryRegion, VhostUserVringAddrFlags, VhostUserVringState,
};
use vhost::vhost_user::{
    Backend, Error as VuError, GpuBackend, Result as VuResult, VhostUserBackendReqHandlerMut,
};

/// One vring as the polling thread sees it.
#[derive(Debug, Default)]
pub struct VringCtl {
    /// The configuration handshake.
    pub cfg: Quiesce<ActiveVring>,
    /// The avail index the poller will process next (written by the poller after each burst).
    pub last_avail: AtomicU16,
    /// The used index the poller will write next (written by the poller after each burst).
    pub used_idx: AtomicU16,
}

/// A change of the device's state, reported to the port's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceEvent {
    /// Queue pair 0 became usable in both directions (`true`) or stopped being usable.
    Link(bool),
    /// Vring `index` became usable (`true`: the frontend set it up and enabled it) or not.
    Vring {
        /// Vring index: even = guest Rx (our Tx queue index/2), odd = guest Tx (our Rx).
        index: u16,
        /// Usable now.
        ready: bool,
    },
}

/// The callback that receives [`DeviceEvent`]s (on the control thread).
pub type Notify = Arc<dyn Fn(DeviceEvent) + Send + Sync>;

/// Where events go, and what was last reported (so each change is reported once).
#[derive(Default)]
pub struct EventState {
    notify: Option<Notify>,
    reported: std::sync::Mutex<(bool, Vec<bool>)>,
}

impl std::fmt::Debug for EventState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventState")
            .field("notify", &self.notify.is_some())
            .finish()
    }
}

/// State shared by the control thread, the polling threads and the port.
#[derive(Debug)]
pub struct DeviceShared {
    /// Two vrings per queue pair: even = guest Rx (we enqueue), odd = guest Tx (we dequeue);
    /// then, with [`DeviceShared::ctrl_vq`], the control queue.
    pub vrings: Vec<Arc<VringCtl>>,
    /// The device has a control queue: the last vring, index `2 * queue pairs`; the features
    /// [`CTRL_FEATURES`] are offered.
    pub ctrl_vq: bool,
    /// Queue pair 0 is ready in both directions.
    pub link_up: AtomicBool,
    /// Sessions accepted or connected.
    pub sessions: AtomicU64,
    /// Sessions ended by a protocol error.
    pub sessions_failed: AtomicU64,
    /// Messages refused (each also ends its session).
    pub bad_messages: AtomicU64,
    /// Most bytes a session may have mapped from the peer's memory table (each region's file
    /// offset plus its size, summed); larger tables are refused. [`DEFAULT_MAX_MEM`] unless
    /// the port sets it (`max-mem`).
    pub max_mem: AtomicU64,
    /// Event delivery.
    pub events: EventState,
    /// Features the current frontend acked with SET_FEATURES (0 between sessions).
    pub acked_features: AtomicU64,
    /// Offload feature bits (`CSUM`, `GUEST_CSUM`, `HOST_TSO4/6`, `GUEST_TSO4/6`) offered on
    /// top of [`offered_features`]; set by the port from its application's offload
    /// configuration before any session starts (0: none, the default).
    pub offload_features: AtomicU64,
    /// Faults in the peer's memory (a region truncated after we mapped it), recovered by
    /// zero pages; its eventfd wakes the control loop, which ends the session.
    pub memory_faults: FaultWatch,
    /// The link's administrative state ([`DeviceShared::set_admin_link`]; true by default):
    /// the status the config space reports, and part of [`DeviceShared::link_effective`].
    pub admin_up: AtomicBool,
    /// The MAC address the config space reports (the low 48 bits, first byte lowest).
    pub config_mac: AtomicU64,
    /// Offer what carries the link status to frontends: `VIRTIO_NET_F_STATUS` and the
    /// protocol features `CONFIG` and `BACKEND_REQ` (true by default; set before any session).
    pub link_events: AtomicBool,
    /// The current frontend acked `CONFIG` and `BACKEND_REQ` (so it reads GET_CONFIG and
    /// takes config-change messages on the backend channel).
    pub config_acked: AtomicBool,
    /// The backend channel the current frontend gave with SET_BACKEND_REQ_FD (non-blocking).
    pub backend_channel: std::sync::Mutex<Option<UnixStream>>,
    /// Config-change messages sent to frontends.
    pub config_notified: AtomicU64,
    /// Config-change messages that could not be sent (the frontend did not read its backend
    /// channel, or closed it); the channel is then dropped.
    pub config_notify_failed: AtomicU64,
}

impl DeviceShared {
    /// State for a device with `queue_pairs` queue pairs.
    pub fn new(queue_pairs: u16) -> Arc<DeviceShared> {
        Self::with_notify(queue_pairs, None)
    }

    /// State for a device with `queue_pairs` queue pairs whose changes go to `notify`.
    pub fn with_notify(queue_pairs: u16, notify: Option<Notify>) -> Arc<DeviceShared> {
        Self::with_ctrl(queue_pairs, notify, false)
    }

    /// State for a device with `queue_pairs` queue pairs and, with `ctrl`, a control queue
    /// (vring `2 * queue_pairs`; [`CTRL_FEATURES`] are then offered).
    pub fn with_ctrl(queue_pairs: u16, notify: Option<Notify>, ctrl: bool) -> Arc<DeviceShared> {
        let nvr = queue_pairs as usize * 2 + ctrl as usize;
        Arc::new(DeviceShared {
            ctrl_vq: ctrl,
            vrings: (0..nvr).map(|_| Arc::default()).collect(),
            link_up: AtomicBool::new(false),
            sessions: AtomicU64::new(0),
            sessions_failed: AtomicU64::new(0),
            bad_messages: AtomicU64::new(0),
            acked_features: AtomicU64::new(0),
            offload_features: AtomicU64::new(0),
            max_mem: AtomicU64::new(DEFAULT_MAX_MEM),
            events: EventState {
                notify,
                reported: std::sync::Mutex::new((false, vec![false; nvr])),
            },
            memory_faults: FaultWatch::new().unwrap_or_else(|e| {
                log::error!(
                    "cannot watch peer memory faults ({e}); a truncated region will read as \
                     zeros without ending its session"
                );
                FaultWatch::disabled()
            }),
            admin_up: AtomicBool::new(true),
            config_mac: AtomicU64::new(0),
            link_events: AtomicBool::new(true),
            config_acked: AtomicBool::new(false),
            backend_channel: std::sync::Mutex::new(None),
            config_notified: AtomicU64::new(0),
            config_notify_failed: AtomicU64::new(0),
        })
    }

    /// The link as the port reports it: a frontend has queue pair 0 ready, and the link is
    /// administratively up.
    pub fn link_effective(&self) -> bool {
        self.link_up.load(Ordering::Acquire) && self.admin_up.load(Ordering::Acquire)
    }

    /// The virtio-net config space (virtio 1.x, 5.1.4): `mac` (6 bytes), `status` (LE16,
    /// [`VIRTIO_NET_S_LINK_UP`] while administratively up), `max_virtqueue_pairs` (LE16),
    /// `mtu` (LE16, 1500; `VIRTIO_NET_F_MTU` is not offered).
    pub fn net_config(&self) -> [u8; NET_CONFIG_LEN] {
        let mut c = [0u8; NET_CONFIG_LEN];
        let mac = self.config_mac.load(Ordering::Relaxed).to_le_bytes();
        c[..6].copy_from_slice(&mac[..6]);
        let status = if self.admin_up.load(Ordering::Acquire) {
            VIRTIO_NET_S_LINK_UP
        } else {
            0
        };
        c[6..8].copy_from_slice(&status.to_le_bytes());
        c[8..10].copy_from_slice(&((self.vrings.len() / 2) as u16).to_le_bytes());
        c[10..12].copy_from_slice(&1500u16.to_le_bytes());
        c
    }

    /// Sets the link administratively up or down: the config space's status follows, the
    /// port's link event is reported if the effective link changed, and a frontend that acked
    /// `CONFIG` and `BACKEND_REQ` gets `CONFIG_CHANGE_MSG` on its backend channel (sent
    /// without waiting: a frontend that does not read its channel loses it, never blocks us).
    /// Returns true if a frontend was told.
    pub fn set_admin_link(&self, up: bool) -> bool {
        let was = self.admin_up.swap(up, Ordering::AcqRel);
        let told = was != up && self.notify_config_change();
        self.report_link();
        told
    }

    /// Sends `CONFIG_CHANGE_MSG` on the backend channel, if the frontend gave one and acked
    /// `CONFIG`. Never blocks; a failed or short send drops the channel and is counted.
    pub fn notify_config_change(&self) -> bool {
        if !self.config_acked.load(Ordering::Acquire) {
            return false;
        }
        let mut g = self
            .backend_channel
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some(ch) = g.as_ref() else {
            return false;
        };
        let mut msg = [0u8; 20];
        msg[0..4].copy_from_slice(&BACKEND_CONFIG_CHANGE_MSG.to_le_bytes());
        msg[4..8].copy_from_slice(&1u32.to_le_bytes()); // version 1, no NEED_REPLY
        msg[8..12].copy_from_slice(&8u32.to_le_bytes());
        // SAFETY: sends 20 bytes from a buffer we own on a socket we own; never blocks.
        let n = unsafe {
            libc::send(
                ch.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n == msg.len() as isize {
            self.config_notified.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            self.config_notify_failed.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "cannot send CONFIG_CHANGE_MSG to the vhost-user frontend ({}); it will not \
                 hear of link changes until it reconnects (does it read its backend channel?)",
                if n < 0 {
                    std::io::Error::last_os_error().to_string()
                } else {
                    format!("{n} of 20 bytes sent")
                }
            );
            *g = None;
            false
        }
    }

    /// Reports the effective link ([`Self::link_effective`]) to the [`Notify`] callback if it
    /// changed since the last report.
    pub fn report_link(&self) {
        let Some(notify) = &self.events.notify else {
            return;
        };
        let up = self.link_effective();
        let changed = {
            let mut r = self
                .events
                .reported
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let c = r.0 != up;
            r.0 = up;
            c
        };
        if changed {
            notify(DeviceEvent::Link(up));
        }
    }
}

/// Bytes of the virtio-net config space [`DeviceShared::net_config`] serves (mac, status,
/// max_virtqueue_pairs, mtu).
pub const NET_CONFIG_LEN: usize = 12;

/// `VIRTIO_NET_S_LINK_UP`, the status bit of the virtio-net config space.
pub const VIRTIO_NET_S_LINK_UP: u16 = 1;

/// `VHOST_USER_BACKEND_CONFIG_CHANGE_MSG`, on the backend channel.
pub const BACKEND_CONFIG_CHANGE_MSG: u32 = 2;

/// Default cap on the bytes a session may map from its peer: 64 GiB, a large VM's memory.
pub const DEFAULT_MAX_MEM: u64 = 64 << 30;

/// Bytes a region of the peer's table maps (file offset plus size); None on overflow.
fn region_map_len(offset: u64, size: u64) -> Option<u64> {
    offset.checked_add(size)
}

/// Virtio features our backend offers.
pub fn offered_features(queue_pairs: u16) -> u64 {
    let mut f = bit(feature::F_VERSION_1)
        | bit(feature::NET_F_MRG_RXBUF)
        | bit(feature::F_IN_ORDER)
        | bit(feature::RING_F_EVENT_IDX)
        | bit(feature::RING_F_INDIRECT_DESC)
        | bit(feature::F_RING_PACKED)
        | bit(feature::VHOST_USER_F_PROTOCOL_FEATURES)
        | bit(feature::NET_F_STATUS);
    if queue_pairs > 1 {
        f |= bit(feature::NET_F_MQ);
    }
    f
}

/// The control-queue features a device with a control queue offers: `CTRL_VQ`, `CTRL_RX`,
/// `CTRL_VLAN`, `CTRL_RX_EXTRA` and `CTRL_MAC_ADDR`.
pub const CTRL_FEATURES: u64 = 1 << 17 | 1 << 18 | 1 << 19 | 1 << 20 | 1 << 23;

/// Protocol features our backend offers. `CONFIG` and `BACKEND_REQ` carry the link status
/// (GET_CONFIG, and CONFIG_CHANGE_MSG when it changes); frontends that do not know them
/// (DPDK 22.11's virtio-user) or do not use them for a net device (QEMU) leave them unacked.
pub fn offered_protocol_features() -> VhostUserProtocolFeatures {
    VhostUserProtocolFeatures::MQ
        | VhostUserProtocolFeatures::REPLY_ACK
        | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
        | VhostUserProtocolFeatures::CONFIG
        | VhostUserProtocolFeatures::BACKEND_REQ
}

#[derive(Debug, Default)]
struct VringSetup {
    num: Option<u16>,
    addr: Option<(u64, u64, u64)>,
    base: u16,
    used: u16,
    kicked: bool,
    enabled: bool,
    call: Option<Arc<CallFd>>,
    published: bool,
}

/// Handles one vhost-user session.
#[derive(Debug)]
pub struct BackendHandler {
    shared: Arc<DeviceShared>,
    name: String,
    offered: u64,
    acked: u64,
    protocol: u64,
    mem: Option<Arc<GuestMemory>>,
    /// Regions added with ADD_MEM_REG, with how many times each identical one was added
    /// (QEMU adds the same region once per queue pair's vhost device).
    added: Vec<((u64, u64, u64, u64), u32)>,
    vrings: Vec<VringSetup>,
}

fn refuse(shared: &DeviceShared, name: &str, what: String) -> VuError {
    shared.bad_messages.fetch_add(1, Ordering::Relaxed);
    log::error!("{name}: {what}; ending the vhost-user session");
    VuError::InvalidParam
}

impl BackendHandler {
    /// A handler for a new session of the device whose state is `shared`.
    pub fn new(name: &str, shared: Arc<DeviceShared>) -> BackendHandler {
        let n = shared.vrings.len();
        let qp = (n / 2) as u16;
        let mut offered = offered_features(qp)
            | (shared.offload_features.load(Ordering::Relaxed) & OFFLOAD_FEATURES);
        if !shared.link_events.load(Ordering::Relaxed) {
            offered &= !bit(feature::NET_F_STATUS);
        }
        if shared.ctrl_vq {
            offered |= CTRL_FEATURES;
        }
        BackendHandler {
            shared,
            name: name.to_string(),
            offered,
            acked: 0,
            protocol: 0,
            mem: None,
            added: Vec::new(),
            vrings: (0..n).map(|_| VringSetup::default()).collect(),
        }
    }

    fn err(&self, what: String) -> VuError {
        refuse(&self.shared, &self.name, what)
    }

    /// Refuses a memory table that would map more than the port's `max-mem` (`total`: the
    /// bytes the session would then have mapped; None when that overflowed).
    fn check_mem_cap(&self, msg: &str, total: Option<u64>) -> VuResult<()> {
        let cap = self.shared.max_mem.load(Ordering::Relaxed);
        match total {
            Some(t) if t <= cap => Ok(()),
            _ => Err(self.err(format!(
                "{msg}: the memory table would map {} MiB, more than this port's limit of {} MiB; raise the port's max-mem devarg",
                total.map_or("over 2^64 bytes".to_string(), |t| t.div_ceil(1 << 20).to_string()),
                cap >> 20
            ))),
        }
    }

    fn check_index(&self, index: u32, msg: &str) -> VuResult<usize> {
        if (index as usize) < self.vrings.len() {
            Ok(index as usize)
        } else {
            Err(self.err(format!(
                "{msg}: vring index {index} out of range (the port has {} vrings)",
                self.vrings.len()
            )))
        }
    }

    /// Stops the poller of vring `i` and records where it stopped.
    fn pause(&mut self, i: usize) {
        let ctl = &self.shared.vrings[i];
        if self.vrings[i].published {
            // A poller that a hostile driver made sleep in its call write is interrupted
            // (the call counts as skipped), so this wait always ends.
            let call = self.vrings[i].call.clone();
            ctl.cfg.publish_with(None, || {
                if let Some(c) = &call {
                    c.interrupt_writer();
                }
            });
            self.vrings[i].base = ctl.last_avail.load(Ordering::Acquire);
            self.vrings[i].used = ctl.used_idx.load(Ordering::Acquire);
            self.vrings[i].published = false;
        }
    }

    /// Publishes vring `i` to its poller if everything it needs is known.
    fn refresh(&mut self, i: usize) -> VuResult<()> {
        self.pause(i);
        let v = &self.vrings[i];
        log::debug!(
            "{}: vring {i}: num={:?} addr={} kicked={} enabled={} mem={}",
            self.name,
            v.num,
            v.addr.is_some(),
            v.kicked,
            v.enabled,
            self.mem.is_some()
        );
        let protocol = self.acked & bit(feature::VHOST_USER_F_PROTOCOL_FEATURES) != 0;
        let enabled = if protocol { v.enabled } else { true };
        let (Some(mem), Some(num), Some((d, u, a)), true, true) =
            (&self.mem, v.num, v.addr, v.kicked, enabled)
        else {
            self.update_link();
            return Ok(());
        };
        let t = |addr: u64, len: usize| mem.translate_uva(addr, len as u64);
        let packed = self.acked & bit(feature::F_RING_PACKED) != 0;
        let parts = if packed {
            (
                t(d, packed_ring_size(num)),
                t(a, EVENT_AREA_SIZE),
                t(u, EVENT_AREA_SIZE),
            )
        } else {
            (
                t(d, desc_table_size(num)),
                t(a, avail_ring_size(num)),
                t(u, used_ring_size(num)),
            )
        };
        let (Some(dp), Some(ap), Some(up)) = parts else {
            return Err(self.err(format!(
                "vring {i}: ring addresses desc {d:#x} avail {a:#x} used {u:#x} (size {num}) are outside the memory table"
            )));
        };
        let ring = if packed {
            if Pos::decode(v.base, num).is_none() || Pos::decode(v.used, num).is_none() {
                return Err(self.err(format!(
                    "vring {i}: packed ring base {:#x} is outside a ring of {num}",
                    v.base
                )));
            }
            // SAFETY: each part was translated with its full size inside `mem`, which the
            // ActiveVring keeps alive.
            unsafe { PackedRing::new(dp, ap, up, num) }.map(RingView::Packed)
        } else {
            // SAFETY: as above.
            unsafe { SplitRing::new(dp, ap, up, num) }.map(RingView::Split)
        };
        let ring = match ring {
            Ok(r) => r,
            Err(e) => return Err(self.err(format!("vring {i}: bad ring ({e:?})"))),
        };
        // A split ring's driver that reconnects may send SET_VRING_BASE 0 while its ring is
        // further on (DPDK's virtio-user in server mode does): as DPDK's vhost library does,
        // resume at the used index the ring holds, so both sides agree again. Frames that
        // were in flight at the disconnect are lost or sent twice, never corrupted; the
        // index is only a starting point (an avail index further than a ring away from it
        // is still refused).
        let (base, used) = match &ring {
            RingView::Split(r) if r.used_idx() != v.used => {
                let u = r.used_idx();
                log::info!(
                    "{}: vring {i}: the ring's used index is {u}, the base sent {}: resuming at {u}",
                    self.name,
                    v.base
                );
                (u, u)
            }
            _ => (v.base, v.used),
        };
        self.vrings[i].base = base;
        self.vrings[i].used = used;
        let v = &self.vrings[i];
        let active = Arc::new(ActiveVring {
            ring,
            mem: mem.clone(),
            features: self.acked,
            base: v.base,
            call: v.call.clone(),
        });
        active.init_notifications();
        let ctl = &self.shared.vrings[i];
        ctl.last_avail.store(v.base, Ordering::Release);
        ctl.used_idx.store(v.used, Ordering::Release);
        ctl.cfg.publish(Some(active));
        self.vrings[i].published = true;
        self.update_link();
        Ok(())
    }

    fn refresh_all(&mut self) -> VuResult<()> {
        for i in 0..self.vrings.len() {
            self.refresh(i)?;
        }
        Ok(())
    }

    fn update_link(&self) {
        let up = self.vrings.len() >= 2 && self.vrings[0].published && self.vrings[1].published;
        self.shared.link_up.store(up, Ordering::Release);
    }

    /// Reports every vring and link change since the last report to the device's
    /// [`Notify`] callback. The session calls it after each message, so the transient pauses
    /// inside one message (a memory table swap) are not reported.
    pub fn report_events(&self) {
        let ev = &self.shared.events;
        let Some(notify) = &ev.notify else { return };
        let mut changes = Vec::new();
        {
            let mut r = ev.reported.lock().unwrap_or_else(|p| p.into_inner());
            for (i, v) in self.vrings.iter().enumerate() {
                if r.1[i] != v.published {
                    r.1[i] = v.published;
                    changes.push(DeviceEvent::Vring {
                        index: i as u16,
                        ready: v.published,
                    });
                }
            }
        }
        for c in changes {
            notify(c);
        }
        self.shared.report_link();
    }

    /// The protocol features this session offers ([`offered_protocol_features`], less
    /// `CONFIG` and `BACKEND_REQ` when the port does not offer link events).
    fn protocol_offered(&self) -> VhostUserProtocolFeatures {
        let mut p = offered_protocol_features();
        if !self.shared.link_events.load(Ordering::Relaxed) {
            p -= VhostUserProtocolFeatures::CONFIG | VhostUserProtocolFeatures::BACKEND_REQ;
        }
        p
    }

    /// Whether the frontend acked `BACKEND_REQ` (so SET_BACKEND_REQ_FD is allowed).
    pub fn backend_req_acked(&self) -> bool {
        self.protocol & VhostUserProtocolFeatures::BACKEND_REQ.bits() != 0
    }

    /// Keeps the backend channel the frontend sent with SET_BACKEND_REQ_FD (made
    /// non-blocking here), replacing any earlier one.
    pub fn set_backend_channel(&mut self, ch: UnixStream) -> VuResult<()> {
        ch.set_nonblocking(true).map_err(|e| {
            self.err(format!(
                "SET_BACKEND_REQ_FD: cannot make the backend channel non-blocking: {e}"
            ))
        })?;
        log::debug!("{}: backend channel set", self.name);
        *self
            .shared
            .backend_channel
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(ch);
        Ok(())
    }

    /// True while `SET_VRING_ENABLE` would be refused by rust-vmm's request handler (it wants
    /// `VHOST_USER_F_PROTOCOL_FEATURES` acked by `SET_FEATURES`, but QEMU enables rings after
    /// `SET_PROTOCOL_FEATURES` and before `SET_FEATURES`). The serving loop then hands such a
    /// message to [`Self::early_vring_enable`] instead.
    pub fn enable_needs_bypass(&self) -> bool {
        self.acked & bit(feature::VHOST_USER_F_PROTOCOL_FEATURES) == 0
            && self.offered & bit(feature::VHOST_USER_F_PROTOCOL_FEATURES) != 0
    }

    /// Whether the frontend acked `REPLY_ACK` (so a message flagged NEED_REPLY gets an answer).
    pub fn reply_ack(&self) -> bool {
        self.protocol & VhostUserProtocolFeatures::REPLY_ACK.bits() != 0
    }

    /// `SET_VRING_ENABLE` received before `SET_FEATURES` (see [`Self::enable_needs_bypass`]).
    pub fn early_vring_enable(&mut self, index: u32, num: u32) -> VuResult<()> {
        log::debug!(
            "{}: SET_VRING_ENABLE {index} {num} (before SET_FEATURES)",
            self.name
        );
        let enable = match num {
            0 => false,
            1 => true,
            _ => return Err(self.err(format!("SET_VRING_ENABLE: state {num} is neither 0 nor 1"))),
        };
        let i = self.check_index(index, "SET_VRING_ENABLE")?;
        self.vrings[i].enabled = enable;
        self.refresh(i)
    }

    /// Ends the session: every poller is paused and the link goes down.
    pub fn reset(&mut self) {
        for i in 0..self.vrings.len() {
            self.pause(i);
            self.vrings[i] = VringSetup::default();
        }
        self.mem = None;
        self.shared.acked_features.store(0, Ordering::Relaxed);
        self.shared.config_acked.store(false, Ordering::Release);
        *self
            .shared
            .backend_channel
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        self.update_link();
    }

    fn install_mem(&mut self, mem: GuestMemory) -> VuResult<()> {
        for i in 0..self.vrings.len() {
            self.pause(i);
        }
        mem.watch_faults(&self.shared.memory_faults);
        self.mem = Some(Arc::new(mem));
        self.refresh_all()
    }

    fn specs(regions: &[VhostUserMemoryRegion], files: Vec<File>) -> Vec<RegionSpec> {
        regions
            .iter()
            .zip(files)
            .map(|(r, f)| RegionSpec {
                guest_phys_addr: r.guest_phys_addr,
                size: r.memory_size,
                user_addr: r.user_addr,
                mmap_offset: r.mmap_offset,
                file: f,
            })
            .collect()
    }
}

impl Drop for BackendHandler {
    fn drop(&mut self) {
        self.reset();
    }
}

fn unsupported<T>(what: &'static str) -> VuResult<T> {
    Err(VuError::InvalidOperation(what))
}

impl VhostUserBackendReqHandlerMut for BackendHandler {
    fn set_owner(&mut self) -> VuResult<()> {
        Ok(())
    }
    fn reset_owner(&mut self) -> VuResult<()> {
        log::debug!("{}: RESET_OWNER", self.name);
        self.reset();
        Ok(())
    }
    fn reset_device(&mut self) -> VuResult<()> {
        self.reset();
        Ok(())
    }
    fn get_features(&mut self) -> VuResult<u64> {
        Ok(self.offered)
    }
    fn set_features(&mut self, features: u64) -> VuResult<()> {
        log::debug!("{}: SET_FEATURES {:#x}", self.name, features);
        if features & !self.offered != 0 {
            return Err(self.err(format!(
                "SET_FEATURES {features:#x} asks for features we did not offer ({:#x})",
                features & !self.offered
            )));
        }
        if self.vrings.iter().any(|v| v.published) && features != self.acked {
            return Err(self.err("SET_FEATURES changed features while rings are running".into()));
        }
        self.acked = features;
        self.shared
            .acked_features
            .store(features, Ordering::Relaxed);
        Ok(())
    }
    fn set_mem_table(
        &mut self,
        regions: &[VhostUserMemoryRegion],
        files: Vec<File>,
        _postcopy: Option<bool>,
    ) -> VuResult<Option<Vec<VhostUserMemoryRegionBase>>> {
        log::debug!("{}: SET_MEM_TABLE {} regions", self.name, regions.len());
        let total = regions.iter().try_fold(0u64, |t, r| {
            region_map_len(r.mmap_offset, r.memory_size).and_then(|l| t.checked_add(l))
        });
        self.check_mem_cap("SET_MEM_TABLE", total)?;
        let mem = GuestMemory::map(Self::specs(regions, files))
            .map_err(|e| self.err(format!("SET_MEM_TABLE refused: {e}")))?;
        self.added.clear();
        self.install_mem(mem)?;
        Ok(None)
    }
    fn set_vring_num(&mut self, index: u32, num: u32) -> VuResult<()> {
        log::debug!("{}: SET_VRING_NUM {} {}", self.name, index, num);
        let i = self.check_index(index, "SET_VRING_NUM")?;
        let packed = self.acked & bit(feature::F_RING_PACKED) != 0;
        if !(valid_queue_size(num) || packed && (1..=32768).contains(&num)) {
            return Err(self.err(format!(
                "SET_VRING_NUM: size {num} for vring {i} is not {} in 1..=32768",
                if packed { "a number" } else { "a power of two" }
            )));
        }
        self.pause(i);
        self.vrings[i].num = Some(num as u16);
        self.refresh(i)
    }
    fn set_vring_addr(
        &mut self,
        index: u32,
        flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        _log: u64,
    ) -> VuResult<()> {
        log::debug!("{}: SET_VRING_ADDR {}", self.name, index);
        let i = self.check_index(index, "SET_VRING_ADDR")?;
        if !flags.is_empty() {
            log::warn!(
                "{}: vring {i}: dirty logging requested but not supported",
                self.name
            );
        }
        self.pause(i);
        self.vrings[i].addr = Some((descriptor, used, available));
        self.refresh(i)
    }
    fn set_vring_base(&mut self, index: u32, base: u32) -> VuResult<()> {
        log::debug!("{}: SET_VRING_BASE {} {}", self.name, index, base);
        let i = self.check_index(index, "SET_VRING_BASE")?;
        let packed = self.acked & bit(feature::F_RING_PACKED) != 0;
        // Packed rings: bits 0..15 = avail index | wrap << 15; QEMU also sends the used index
        // and wrap counter in bits 16..31 (zero there means "same as avail").
        let (avail, used) = match (packed, base >> 16) {
            (_, 0) => (base as u16, base as u16),
            (true, hi) => (base as u16, hi as u16),
            (false, _) => {
                return Err(self.err(format!(
                    "SET_VRING_BASE: base {base:#x} for split vring {i} exceeds 65535"
                )));
            }
        };
        self.pause(i);
        self.vrings[i].base = avail;
        self.vrings[i].used = used;
        self.refresh(i)
    }
    fn get_vring_base(&mut self, index: u32) -> VuResult<VhostUserVringState> {
        log::debug!("{}: GET_VRING_BASE {}", self.name, index);
        let i = self.check_index(index, "GET_VRING_BASE")?;
        // GET_VRING_BASE stops the ring until the next kick.
        self.pause(i);
        self.vrings[i].kicked = false;
        self.update_link();
        let v = &self.vrings[i];
        let num = if self.acked & bit(feature::F_RING_PACKED) != 0 {
            v.base as u32 | (v.used as u32) << 16
        } else {
            v.base as u32
        };
        Ok(VhostUserVringState::new(index, num))
    }
    fn set_vring_kick(&mut self, index: u8, _fd: Option<File>) -> VuResult<()> {
        log::debug!("{}: SET_VRING_KICK {}", self.name, index);
        // We poll; the kick fd (if any) is closed when dropped here.
        let i = self.check_index(index as u32, "SET_VRING_KICK")?;
        self.vrings[i].kicked = true;
        self.refresh(i)
    }
    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        log::debug!("{}: SET_VRING_CALL {}", self.name, index);
        let i = self.check_index(index as u32, "SET_VRING_CALL")?;
        if let Some(f) = &fd {
            prepare_call_fd(f).map_err(|e| self.err(format!("SET_VRING_CALL {index}: {e}")))?;
        }
        self.pause(i);
        self.vrings[i].call = fd.map(|f| Arc::new(CallFd::new(f)));
        self.refresh(i)
    }
    fn set_vring_err(&mut self, index: u8, _fd: Option<File>) -> VuResult<()> {
        self.check_index(index as u32, "SET_VRING_ERR")?;
        Ok(())
    }
    fn get_protocol_features(&mut self) -> VuResult<VhostUserProtocolFeatures> {
        Ok(self.protocol_offered())
    }
    fn set_protocol_features(&mut self, features: u64) -> VuResult<()> {
        log::debug!("{}: SET_PROTOCOL_FEATURES {:#x}", self.name, features);
        let offered = self.protocol_offered().bits();
        if features & !offered != 0 {
            return Err(self.err(format!(
                "SET_PROTOCOL_FEATURES {features:#x} includes features we did not offer"
            )));
        }
        self.protocol = features;
        let both =
            (VhostUserProtocolFeatures::CONFIG | VhostUserProtocolFeatures::BACKEND_REQ).bits();
        self.shared
            .config_acked
            .store(features & both == both, Ordering::Release);
        Ok(())
    }
    fn get_queue_num(&mut self) -> VuResult<u64> {
        Ok((self.vrings.len() / 2) as u64)
    }
    fn set_vring_enable(&mut self, index: u32, enable: bool) -> VuResult<()> {
        log::debug!("{}: SET_VRING_ENABLE {} {}", self.name, index, enable);
        let i = self.check_index(index, "SET_VRING_ENABLE")?;
        self.vrings[i].enabled = enable;
        self.refresh(i)
    }
    fn get_config(
        &mut self,
        offset: u32,
        size: u32,
        _flags: VhostUserConfigFlags,
    ) -> VuResult<Vec<u8>> {
        let c = self.shared.net_config();
        let (off, len) = (offset as usize, size as usize);
        match off.checked_add(len) {
            Some(end) if len > 0 && end <= c.len() => Ok(c[off..end].to_vec()),
            _ => {
                // Answered with an empty payload (the protocol's error); the session goes on.
                log::warn!(
                    "{}: GET_CONFIG offset {offset} size {size} is outside the {}-byte \
                     virtio-net config space",
                    self.name,
                    c.len()
                );
                Err(VuError::InvalidParam)
            }
        }
    }
    fn set_config(
        &mut self,
        _offset: u32,
        _buf: &[u8],
        _flags: VhostUserConfigFlags,
    ) -> VuResult<()> {
        unsupported("SET_CONFIG is not supported by this backend")
    }
    // The channel's socket is taken by the session before rust-vmm sees the message
    // (`session::backend_req_fd`): rust-vmm's `Backend` waits for replies with blocking reads.
    fn set_backend_req_fd(&mut self, _backend: Backend) {}
    fn set_gpu_socket(&mut self, _gpu_backend: GpuBackend) -> VuResult<()> {
        unsupported("GPU socket is not supported")
    }
    fn get_shared_object(&mut self, _uuid: VhostUserSharedMsg) -> VuResult<File> {
        unsupported("shared objects are not supported")
    }
    fn get_inflight_fd(
        &mut self,
        _inflight: &VhostUserInflight,
    ) -> VuResult<(VhostUserInflight, File)> {
        unsupported("inflight I/O tracking is not supported")
    }
    fn set_inflight_fd(&mut self, _inflight: &VhostUserInflight, _file: File) -> VuResult<()> {
        unsupported("inflight I/O tracking is not supported")
    }
    fn get_max_mem_slots(&mut self) -> VuResult<u64> {
        Ok(ferrovia_virtqueue::guest_mem::MAX_REGIONS as u64)
    }
    fn add_mem_region(
        &mut self,
        region: &VhostUserSingleMemoryRegion,
        fd: File,
        _postcopy: Option<bool>,
    ) -> VuResult<Option<VhostUserMemoryRegionBase>> {
        let key = (
            region.guest_phys_addr,
            region.memory_size,
            region.user_addr,
            region.mmap_offset,
        );
        if let Some(pos) = self.added.iter().position(|(k, _)| *k == key) {
            let Some(n) = self.added[pos].1.checked_add(1) else {
                return Err(self.err(format!(
                    "ADD_MEM_REG: region at {:#x} added {} times without REM_MEM_REG; remove it before adding it again",
                    key.0,
                    u32::MAX
                )));
            };
            self.added[pos].1 = n;
            return Ok(None); // the same region again: keep one mapping, close this fd
        }
        let total = region_map_len(region.mmap_offset, region.memory_size)
            .and_then(|l| l.checked_add(self.mem.as_ref().map_or(0, |m| m.mapped_bytes())));
        self.check_mem_cap("ADD_MEM_REG", total)?;
        let spec = RegionSpec {
            guest_phys_addr: region.guest_phys_addr,
            size: region.memory_size,
            user_addr: region.user_addr,
            mmap_offset: region.mmap_offset,
            file: fd,
        };
        let mem = match &self.mem {
            Some(m) => m.with(spec),
            None => GuestMemory::map(vec![spec]),
        }
        .map_err(|e| self.err(format!("ADD_MEM_REG refused: {e}")))?;
        self.install_mem(mem)?;
        self.added.push((key, 1));
        Ok(None)
    }
    fn remove_mem_region(&mut self, region: &VhostUserSingleMemoryRegion) -> VuResult<()> {
        let key = (
            region.guest_phys_addr,
            region.memory_size,
            region.user_addr,
            region.mmap_offset,
        );
        if let Some(pos) = self.added.iter().position(|(k, _)| *k == key) {
            self.added[pos].1 -= 1;
            if self.added[pos].1 > 0 {
                return Ok(()); // still added by another user
            }
            self.added.remove(pos);
        }
        let Some(m) = &self.mem else {
            return Err(self.err("REM_MEM_REG before any memory table".into()));
        };
        let mem = m
            .without(region.guest_phys_addr, region.memory_size)
            .map_err(|e| self.err(format!("REM_MEM_REG refused: {e}")))?;
        self.install_mem(mem)
    }
    fn set_device_state_fd(
        &mut self,
        _direction: VhostTransferStateDirection,
        _phase: VhostTransferStatePhase,
        _file: File,
    ) -> VuResult<Option<File>> {
        unsupported("device state transfer is not supported")
    }
    fn check_device_state(&mut self) -> VuResult<()> {
        unsupported("device state transfer is not supported")
    }
    fn get_shmem_config(&mut self) -> VuResult<VhostUserShMemConfig> {
        unsupported("shared memory regions are not supported")
    }
    fn set_log_base(&mut self, _log: &VhostUserLog, _file: File) -> VuResult<()> {
        unsupported("dirty page logging is not supported")
    }
}
