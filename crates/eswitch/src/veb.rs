//! The embedded switch (a NIC's VEB) in software: an uplink port and N VF ports, one polling
//! thread, each VF's policy applied to what it sends and what it receives.
//!
//! Forwarding is by configured MAC, not by learning, as a NIC's VEB does it:
//! - A frame from a VF, once its policy passes it, goes to the VF that owns the destination
//!   MAC (with `tx_loopback` on). If no VF owns it, it goes to the uplink.
//! - A frame from the uplink goes to the VF that owns the destination.
//! - Broadcast and multicast go to every other VF whose policy accepts them, and to the
//!   uplink when they came from a VF.
//! - Unknown unicast from the uplink goes to VFs with promiscuous unicast.
//!
//! The receiving VF's policy always has the last word (VLAN filter, receive modes).
//!
//! A VF's `mirror` copies its frames to another VF: those it sends (as switched: after its
//! policy, with any VLAN inserted), those delivered to it (as delivered), or both. The copy
//! bypasses the target's filters but not its receive enable, and is counted on the mirrored
//! VF (`mirrored`, or `mirror_dropped` when it could not be made or delivered).
//!
//! Policy changes are published as a new snapshot. The thread notices the generation change
//! with one relaxed load per loop and only then takes the lock, to pick the snapshot up. Frames
//! never wait on a lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferrovia_ethdev::{
    Burst, EventSink, Link, LinkAdmin, MacAddr, Port, PortConf, PortEventKind, PortInfo, PortStats,
    RxQueue, TxQueue,
};
use ferrovia_memory::{LcoreCaches, Mbuf, Mempool, MempoolConfig};
use ferrovia_vswitch::frame::{copy_mbuf, pop_vlan, push_vlan};

use ferrovia_ethdev::ctrl::{CtrlInput, CtrlQueue};

use crate::mailbox::{Bucket, IDLE_SLEEP, PER_ROUND, requested};
use crate::policy::{DropCause, TagAction, VfPolicy};
use crate::ratelimit::TokenBucket;
use crate::vfconfig::{LinkStatus, MirrorDirection, RequestPolicy, VfConfig};

/// One VF: its port and its policy.
#[derive(Clone, Debug)]
pub struct VfSpec {
    /// The port the VF's user drives (a vhost-user socket: `net_vhost0,iface=/run/vf0.sock`).
    pub devargs: String,
    /// Its policy.
    pub config: VfConfig,
    /// Whether the VF starts with receive and transmit enabled (a VF nobody configured yet
    /// starts disabled: `false`).
    pub enabled: bool,
}

/// The switch's configuration.
#[derive(Clone, Debug)]
pub struct EswitchConfig {
    /// The uplink port (any devargs: af_packet on a veth, vhost-user, ring).
    pub uplink: String,
    /// The VFs, vfid = index.
    pub vfs: Vec<VfSpec>,
    /// Frames between two VFs stay inside the switch (on) or go out of the uplink (off).
    pub tx_loopback: bool,
    /// Mbufs in the switch's pool.
    pub mbufs: usize,
}

/// Counters of one VF, written by the switch thread only.
#[derive(Debug, Default)]
pub struct VfCounters {
    /// Frames the VF sent that the switch forwarded.
    pub tx_packets: AtomicU64,
    /// Their bytes.
    pub tx_bytes: AtomicU64,
    /// Frames delivered to the VF.
    pub rx_packets: AtomicU64,
    /// Their bytes.
    pub rx_bytes: AtomicU64,
    /// Drops of frames from the VF, by cause.
    pub tx_dropped: [AtomicU64; DROP_CAUSES],
    /// Drops of frames to the VF, by cause.
    pub rx_dropped: [AtomicU64; DROP_CAUSES],
    /// Copies of this VF's frames sent to its mirror target.
    pub mirrored: AtomicU64,
    /// Copies of this VF's frames its mirror could not take (no mbuf, target disabled).
    pub mirror_dropped: AtomicU64,
    /// Requests the VF sent over its control queue (written by the mailbox thread, as the
    /// four below).
    pub requests: AtomicU64,
    /// Requests granted (`vf_requests` allow or log) and applied.
    pub req_allowed: AtomicU64,
    /// Requests refused by `vf_requests: deny`, or that the VF's policy cannot grant.
    pub req_denied: AtomicU64,
    /// Requests refused because the VF exceeded `vf_request_rate`.
    pub req_rate_limited: AtomicU64,
    /// Chains that were not a request (unknown class or command, bad length, unreadable).
    pub req_malformed: AtomicU64,
}

/// Drop causes counted per direction: the policy's, then rate limit and a full port.
pub const DROP_CAUSES: usize = 11;

/// A counted drop cause's index and name.
pub fn cause_index(c: DropCause) -> usize {
    c as usize
}
/// Rate limit exceeded.
pub const RATE_LIMITED: usize = 9;
/// The destination port's queue was full.
pub const QUEUE_FULL: usize = 10;

/// The names of the drop counters, by index.
pub const CAUSE_NAMES: [&str; DROP_CAUSES] = [
    "runt",
    "mac_spoof",
    "vlan_spoof",
    "untagged",
    "vlan_filter",
    "broadcast",
    "multicast",
    "unknown_unicast",
    "disabled",
    "rate_limited",
    "queue_full",
];

fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// A VF's mirror, compiled: the target VF and which directions it copies.
#[derive(Clone, Copy, Debug)]
struct MirrorTo {
    target: usize,
    /// Frames delivered to the VF.
    rx: bool,
    /// Frames the VF sent (as switched, after its policy).
    tx: bool,
}

/// One traffic class of a VF: a transmit queue, its strict priority (0 first) and its
/// guaranteed share of the VF's rate.
#[derive(Clone, Copy, Debug)]
struct TrafficClass {
    queue: usize,
    priority: u8,
    share: f64,
}

#[derive(Clone)]
struct Snapshot {
    /// Each VF's receive and transmit enable as [`Eswitch::set_enabled`] last set them (the
    /// policies' own flags are these and the VF's link).
    enabled: Vec<(bool, bool)>,
    /// Each VF's link: the switch thread sets the VF ports' links to it once it runs with
    /// the snapshot (so a user told "up" finds its traffic flowing).
    link_up: Vec<bool>,
    policies: Vec<VfPolicy>,
    rates: Vec<Option<f64>>,
    /// Per VF, its traffic classes in polling order (priority, then queue).
    classes: Vec<Vec<TrafficClass>>,
    mirrors: Vec<Option<MirrorTo>>,
    tx_loopback: bool,
}

pub(crate) struct Shared {
    snapshot: Mutex<Arc<Snapshot>>,
    generation: AtomicU64,
    /// The generation the switch thread runs with.
    applied: AtomicU64,
    pub(crate) stop: AtomicBool,
    pub(crate) counters: Vec<VfCounters>,
    uplink_tx: AtomicU64,
    uplink_rx: AtomicU64,
    uplink_dropped: AtomicU64,
    /// The VFs' links; held while a snapshot is built and published.
    links: Mutex<VfLinks>,
    /// Each VF port's link control (`None`: its driver cannot tell its user), used by the
    /// switch thread when it takes a snapshot whose VF links changed.
    admins: Vec<Option<Arc<dyn LinkAdmin>>>,
    /// Each VF's policy, as configured.
    pub(crate) configs: Mutex<Vec<VfConfig>>,
    /// The ports' control sides (index 0: the uplink, 1 + vfid: the VFs), for their facts and
    /// counters; the switch thread holds only their queues.
    ports: Vec<Mutex<Box<dyn Port>>>,
    /// The switch thread has ended.
    thread_done: AtomicBool,
}

impl Shared {
    /// Publishes `snap`; returns the generation the switch thread must reach to run with it.
    fn store(&self, snap: Snapshot) -> u64 {
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(snap);
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Waits until the switch thread runs with `target` or later, so that the next frame
    /// meets the new policy.
    fn wait_applied(&self, target: u64) -> Result<(), String> {
        let t0 = Instant::now();
        while self.applied.load(Ordering::Acquire) < target {
            if self.thread_done.load(Ordering::Acquire) {
                return Err("the eswitch thread has stopped; restart the daemon".into());
            }
            if t0.elapsed() > APPLY_TIMEOUT {
                return Err(format!(
                    "the eswitch thread did not pick up the change within {} s (is the machine overloaded?); it will apply it when it gets to run",
                    APPLY_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }

    fn publish(
        &self,
        configs: &[VfConfig],
        enabled: Option<(u32, bool, bool)>,
    ) -> Result<(), String> {
        self.publish_with(configs, enabled, None)
    }

    fn publish_with(
        &self,
        configs: &[VfConfig],
        enabled: Option<(u32, bool, bool)>,
        tx_loopback: Option<bool>,
    ) -> Result<(), String> {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let old = self
            .snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut snap = snapshot(configs.iter(), tx_loopback.unwrap_or(old.tx_loopback))?;
        snap.enabled = old.enabled.clone();
        if let Some((vf, rx, tx)) = enabled {
            snap.enabled[vf as usize] = (rx, tx);
        }
        gate(&mut snap, &links.up);
        let generation = self.store(snap);
        drop(links);
        self.wait_applied(generation)
    }

    /// Replaces a VF's policy (its vfid says which).
    pub(crate) fn set_policy(&self, c: VfConfig) -> Result<(), String> {
        self.set_policy_checked(c, None)
    }

    /// Replaces VF `vf`'s policy `old` with `new` (a VF request granted), unless the PF
    /// changed it meanwhile.
    pub(crate) fn set_policy_if(
        &self,
        vf: usize,
        old: &VfConfig,
        new: VfConfig,
    ) -> Result<(), String> {
        debug_assert_eq!(new.vfid as usize, vf);
        self.set_policy_checked(new, Some(old))
    }

    fn set_policy_checked(&self, c: VfConfig, expect: Option<&VfConfig>) -> Result<(), String> {
        let mut cfgs = self.configs.lock().unwrap_or_else(|p| p.into_inner());
        let i = c.vfid as usize;
        if i >= cfgs.len() {
            return Err(format!(
                "no VF {i} (this eswitch has VFs 0..{})",
                cfgs.len() - 1
            ));
        }
        if let Some(old) = expect
            && cfgs[i] != *old
        {
            return Err("the PF changed the VF's policy meanwhile (ask again)".into());
        }
        classes_fit(
            &**self.ports[1 + i].lock().unwrap_or_else(|p| p.into_inner()),
            &c,
        )?;
        let mut next = cfgs.clone();
        let status = c.link_status;
        next[i] = c;
        // Checked first (a refused policy changes nothing), then the link, then the policy.
        snapshot(next.iter(), false)?;
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .apply(i, status);
        self.publish(&next, None)?;
        *cfgs = next;
        Ok(())
    }

    /// The uplink's link changed: VFs with `link_status: auto` follow it.
    fn uplink_changed(&self, up: bool) {
        let mut l = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if l.uplink_up == up {
            return;
        }
        l.uplink_up = up;
        for vf in 0..l.status.len() {
            if l.status[vf] == LinkStatus::Auto {
                l.apply(vf, LinkStatus::Auto);
            }
        }
        let old = self
            .snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut snap = (*old).clone();
        gate(&mut snap, &l.up);
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(snap);
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// How long a control call waits for the switch thread to pick up a new policy.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running software NIC.
pub struct Eswitch {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// The VF mailbox thread (VF requests over the control queues), when a VF port has one.
    mailbox: Option<JoinHandle<()>>,
}

/// What a port reports about itself, read off the data path.
#[derive(Clone, Debug)]
pub struct PortReport {
    /// Static facts.
    pub info: PortInfo,
    /// Link state.
    pub link: Link,
    /// The driver's counters.
    pub stats: PortStats,
    /// The driver's extended counters.
    pub xstats: Vec<(String, u64)>,
}

/// The VFs' links (see [`Eswitch::set_link`]).
struct VfLinks {
    /// Each VF's link as last applied.
    up: Vec<bool>,
    /// Each VF's `link_status` as last applied.
    status: Vec<LinkStatus>,
    /// The uplink's link (what `link_status: auto` follows): its state when the switch
    /// started, then its link events.
    uplink_up: bool,
}

impl VfLinks {
    /// Applies VF `vf`'s `link_status`. The next snapshot carries it ([`gate`]): its
    /// traffic stops (down) or flows (up), and the switch thread, once it runs with that
    /// snapshot, sets the VF port's link so that its user is told (a VF port that cannot,
    /// not being a vhost port, only has its traffic stopped).
    fn apply(&mut self, vf: usize, status: LinkStatus) {
        self.up[vf] = match status {
            LinkStatus::On => true,
            LinkStatus::Off => false,
            LinkStatus::Auto => self.uplink_up,
        };
        self.status[vf] = status;
    }
}

struct PortQ {
    /// Every receive queue of the port (a VF's transmit queues: its traffic classes).
    rxs: Vec<Box<dyn RxQueue>>,
    tx: Box<dyn TxQueue>,
    out: Burst,
}

fn open(
    devargs: &str,
    id: u16,
    pool: &Mempool,
    events: Option<EventSink>,
) -> Result<(Box<dyn Port>, PortQ), String> {
    let mut conf = PortConf::new(id, pool.clone());
    conf.events = events;
    let mut p = ferrovia_pmd::open(devargs, &conf).map_err(|e| format!("{devargs}: {e}"))?;
    p.start().map_err(|e| format!("{devargs}: {e}"))?;
    let rxs = (0..p.info().nb_rx_queues.max(1))
        .map(|q| p.rx_queue(q))
        .collect::<ferrovia_ethdev::Result<Vec<_>>>()
        .map_err(|e| format!("{devargs}: {e}"))?;
    let tx = p.tx_queue(0).map_err(|e| format!("{devargs}: {e}"))?;
    Ok((
        p,
        PortQ {
            rxs,
            tx,
            out: Burst::new(),
        },
    ))
}

impl Eswitch {
    /// Opens the ports and starts the switch thread.
    pub fn start(cfg: &EswitchConfig) -> Result<Eswitch, String> {
        if cfg.vfs.is_empty() || cfg.vfs.len() > 64 {
            return Err(format!(
                "an eswitch has 1 to 64 VFs ({} given)",
                cfg.vfs.len()
            ));
        }
        for (i, v) in cfg.vfs.iter().enumerate() {
            if v.config.vfid as usize != i {
                return Err(format!(
                    "VF at position {i} has vfid {} (list the VFs in vfid order from 0)",
                    v.config.vfid
                ));
            }
        }
        let pool = Mempool::new(MempoolConfig {
            name: "eswitch".into(),
            count: cfg.mbufs.max(4096),
            ..Default::default()
        })
        .map_err(|e| format!("cannot create the eswitch's pool: {e}"))?;
        // The uplink's link events drive the VFs whose link_status is auto (on the control
        // thread; the switch, set up below, is reached through `cell`).
        let uplink_up = Arc::new(AtomicBool::new(false));
        let cell: Arc<std::sync::OnceLock<std::sync::Weak<Shared>>> = Arc::default();
        let (u, c) = (uplink_up.clone(), cell.clone());
        let sink = EventSink::callback(move |e| {
            let up = match e.kind {
                PortEventKind::LinkUp => true,
                PortEventKind::LinkDown => false,
                PortEventKind::QueueState { .. } => return,
            };
            u.store(up, Ordering::Release);
            if let Some(sh) = c.get().and_then(std::sync::Weak::upgrade) {
                sh.uplink_changed(up);
            }
        });
        let mut controls = Vec::new();
        let mut ports = Vec::new();
        let (c0, q0) = open(&cfg.uplink, 0, &pool, Some(sink))?;
        uplink_up.store(c0.link().up, Ordering::Release);
        controls.push(Mutex::new(c0));
        ports.push(q0);
        for (i, v) in cfg.vfs.iter().enumerate() {
            let (c, q) = open(&v.devargs, 1 + i as u16, &pool, None)?;
            controls.push(Mutex::new(c));
            ports.push(q);
        }
        for (v, c) in cfg.vfs.iter().zip(&controls[1..]) {
            classes_fit(&**c.lock().unwrap_or_else(|p| p.into_inner()), &v.config)?;
        }
        let ctrl_queues: Vec<Option<Box<dyn CtrlQueue>>> = controls[1..]
            .iter()
            .map(|c| c.lock().unwrap_or_else(|p| p.into_inner()).ctrl_queue())
            .collect();
        let admins = controls[1..]
            .iter()
            .map(|c| c.lock().unwrap_or_else(|p| p.into_inner()).link_admin())
            .collect();
        let links = VfLinks {
            up: vec![true; cfg.vfs.len()],
            status: cfg.vfs.iter().map(|v| v.config.link_status).collect(),
            uplink_up: false,
        };
        let mut snap = snapshot(cfg.vfs.iter().map(|v| &v.config), cfg.tx_loopback)?;
        for (e, v) in snap.enabled.iter_mut().zip(&cfg.vfs) {
            *e = (v.enabled, v.enabled);
        }
        let shared = Arc::new(Shared {
            snapshot: Mutex::new(Arc::new(snap)),
            generation: AtomicU64::new(1),
            applied: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            counters: (0..cfg.vfs.len()).map(|_| VfCounters::default()).collect(),
            uplink_tx: AtomicU64::new(0),
            uplink_rx: AtomicU64::new(0),
            uplink_dropped: AtomicU64::new(0),
            links: Mutex::new(links),
            admins,
            configs: Mutex::new(cfg.vfs.iter().map(|v| v.config.clone()).collect()),
            ports: controls,
            thread_done: AtomicBool::new(false),
        });
        let _ = cell.set(Arc::downgrade(&shared));
        {
            // Every VF's link_status applied, with the uplink's link as it is now (events
            // from here on go through `cell`).
            let mut l = shared.links.lock().unwrap_or_else(|p| p.into_inner());
            l.uplink_up = uplink_up.load(Ordering::Acquire);
            for (i, v) in cfg.vfs.iter().enumerate() {
                l.apply(i, v.config.link_status);
            }
            let mut s = shared.snapshot.lock().unwrap_or_else(|p| p.into_inner());
            let mut snap = (**s).clone();
            gate(&mut snap, &l.up);
            *s = Arc::new(snap);
        }
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("eswitch".into())
            .spawn(move || {
                run(&sh, ports, pool);
                sh.thread_done.store(true, Ordering::Release);
            })
            .map_err(|e| format!("cannot start the eswitch thread: {e}"))?;
        let mailbox = if ctrl_queues.iter().any(Option::is_some) {
            let sh = shared.clone();
            Some(
                std::thread::Builder::new()
                    .name("eswitch-mbox".into())
                    .spawn(move || mailbox(sh, ctrl_queues))
                    .map_err(|e| format!("cannot start the eswitch mailbox thread: {e}"))?,
            )
        } else {
            None
        };
        Ok(Eswitch {
            shared,
            thread: Some(thread),
            mailbox,
        })
    }

    /// Replaces a VF's policy (its vfid says which).
    pub fn set_policy(&self, c: VfConfig) -> Result<(), String> {
        self.shared.set_policy(c)
    }

    /// Sets VF `vfid`'s link up or down, as the PF does (`ip link set PF vf N state
    /// enable|disable`): its `link_status` becomes `on` or `off`. Down, the VF's user sees its
    /// link go down (a container's virtio-user port: its link and its link-state event) and
    /// no frame is delivered to or taken from the VF (counted as `disabled` drops); up again,
    /// traffic flows. A later [`Eswitch::set_policy`] applies its own `link_status`.
    pub fn set_link(&self, vfid: u32, up: bool) -> Result<(), String> {
        let mut cfgs = self
            .shared
            .configs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let i = vfid as usize;
        if i >= cfgs.len() {
            return Err(format!(
                "no VF {vfid} (this eswitch has VFs 0..{})",
                cfgs.len() - 1
            ));
        }
        cfgs[i].link_status = if up { LinkStatus::On } else { LinkStatus::Off };
        self.shared
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .apply(i, cfgs[i].link_status);
        self.shared.publish(&cfgs, None)
    }

    /// Whether VF `vfid`'s link is up (as its `link_status` and [`Eswitch::set_link`] made
    /// it); `None` for a VF this switch does not have.
    pub fn link_up(&self, vfid: u32) -> Option<bool> {
        self.shared
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .up
            .get(vfid as usize)
            .copied()
    }

    /// Enables or disables a VF's receive and transmit.
    pub fn set_enabled(&self, vfid: u32, rx: bool, tx: bool) -> Result<(), String> {
        let cfgs = self
            .shared
            .configs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if vfid as usize >= cfgs.len() {
            return Err(format!("no VF {vfid}"));
        }
        self.shared.publish(&cfgs, Some((vfid, rx, tx)))
    }

    /// Frames between two VFs stay inside the switch (on) or go out of the uplink (off).
    pub fn set_tx_loopback(&self, on: bool) -> Result<(), String> {
        let cfgs = self
            .shared
            .configs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.shared.publish_with(&cfgs, None, Some(on))
    }

    /// How many VFs the switch has (vfids `0..num_vfs()`).
    pub fn num_vfs(&self) -> u32 {
        self.shared.counters.len() as u32
    }

    /// A VF's current policy, as configured.
    pub fn config(&self, vfid: u32) -> Option<VfConfig> {
        self.shared
            .configs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(vfid as usize)
            .cloned()
    }

    /// Whether a VF's receive and transmit are enabled: `(rx, tx)`.
    pub fn enabled(&self, vfid: u32) -> Option<(bool, bool)> {
        let snap = self
            .shared
            .snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // As set_enabled set them (the policies' flags also carry the VF's link).
        snap.enabled.get(vfid as usize).copied()
    }

    /// What a port reports: `index` 0 is the uplink, `1 + vfid` a VF. `None` past the last.
    pub fn port_report(&self, index: usize) -> Option<PortReport> {
        let p = self
            .shared
            .ports
            .get(index)?
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Some(PortReport {
            info: p.info(),
            link: p.link(),
            stats: p.stats(),
            xstats: p.xstats(),
        })
    }

    /// A VF's counters.
    pub fn counters(&self, vfid: u32) -> Option<&VfCounters> {
        self.shared.counters.get(vfid as usize)
    }

    /// Frames sent out of the uplink, received from it, and dropped because its queue was
    /// full.
    pub fn uplink_counts(&self) -> (u64, u64, u64) {
        (
            self.shared.uplink_tx.load(Ordering::Relaxed),
            self.shared.uplink_rx.load(Ordering::Relaxed),
            self.shared.uplink_dropped.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Eswitch {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.mailbox.take() {
            let _ = t.join();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn snapshot<'a>(
    configs: impl Iterator<Item = &'a VfConfig>,
    tx_loopback: bool,
) -> Result<Snapshot, String> {
    let mut policies = Vec::new();
    let mut rates = Vec::new();
    let mut mirrors = Vec::new();
    let mut classes = Vec::new();
    for c in configs {
        let mut tcs: Vec<TrafficClass> = c
            .queues
            .iter()
            .enumerate()
            .map(|(queue, q)| {
                Ok(TrafficClass {
                    queue,
                    priority: q.priority,
                    share: q.share.percent()? / 100.0,
                })
            })
            .collect::<Result<_, String>>()?;
        tcs.sort_by_key(|t| (t.priority, t.queue));
        classes.push(tcs);
        let default = MacAddr([0x02, 0xfe, 0, 0, (c.vfid >> 8) as u8, c.vfid as u8]);
        policies.push(VfPolicy::compile(c, default)?);
        rates.push(c.rate_mbps);
        mirrors.push(c.mirror.as_ref().and_then(|m| {
            let (rx, tx) = match m.direction {
                MirrorDirection::In => (true, false),
                MirrorDirection::Out => (false, true),
                MirrorDirection::All => (true, true),
                MirrorDirection::Off => return None,
            };
            Some(MirrorTo {
                target: m.target as usize,
                rx,
                tx,
            })
        }));
    }
    // A target the switch does not have is refused (the JSON check knows only the PF's
    // limit, not how many VFs this switch runs).
    if let Some((vf, m)) = mirrors
        .iter()
        .enumerate()
        .find_map(|(i, m)| m.filter(|m| m.target >= policies.len()).map(|m| (i, m)))
    {
        return Err(format!(
            "VF {vf}: mirror target VF {} does not exist (this eswitch has VFs 0..{})",
            m.target,
            policies.len() - 1
        ));
    }
    Ok(Snapshot {
        enabled: policies
            .iter()
            .map(|p| (p.rx_enabled, p.tx_enabled))
            .collect(),
        link_up: vec![true; policies.len()],
        policies,
        rates,
        classes,
        mirrors,
        tx_loopback,
    })
}

/// Sets each policy's receive and transmit enable from the snapshot's `enabled` and the VF's
/// link (a VF whose link is down neither sends nor receives).
fn gate(snap: &mut Snapshot, link_up: &[bool]) {
    snap.link_up = link_up.to_vec();
    for (i, p) in snap.policies.iter_mut().enumerate() {
        let (rx, tx) = snap.enabled[i];
        let up = link_up.get(i).copied().unwrap_or(true);
        p.rx_enabled = rx && up;
        p.tx_enabled = tx && up;
    }
}

fn ticks() -> u64 {
    use std::sync::OnceLock;
    static T0: OnceLock<std::time::Instant> = OnceLock::new();
    T0.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
}

/// Applies a tag action; false if it could not be done (no headroom).
fn apply(m: &mut Mbuf, a: TagAction) -> bool {
    match a {
        TagAction::Keep => true,
        TagAction::Insert(v) => push_vlan(m, v),
        TagAction::Strip { and_inner } => {
            let ok = pop_vlan(m);
            if ok && and_inner {
                let d = m.data();
                if d.len() >= 18 && u16::from_be_bytes([d[12], d[13]]) == 0x8100 {
                    return pop_vlan(m);
                }
            }
            ok
        }
    }
}

/// The switch thread.
fn run(sh: &Shared, mut ports: Vec<PortQ>, pool: Mempool) {
    let mut caches = LcoreCaches::new();
    let mut gen_seen = 0;
    let mut snap = sh
        .snapshot
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let nvf = ports.len() - 1;
    let mut sched: Vec<VfSched> = Vec::new();
    let mut rx = Burst::new();
    while !sh.stop.load(Ordering::Relaxed) {
        let g = sh.generation.load(Ordering::Acquire);
        if g != gen_seen {
            snap = sh
                .snapshot
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let now = ticks();
            sched = (0..nvf)
                .map(|vf| VfSched::new(&snap, vf, ports[1 + vf].rxs.len(), now))
                .collect();
            // VF links: set on their ports now that the snapshot gates their traffic (a
            // control-path call, only when a link changed).
            for (a, &up) in sh.admins.iter().zip(&snap.link_up) {
                if let Some(a) = a
                    && a.admin_up() != up
                {
                    // A vhost port's link control does not fail.
                    let _ = a.set_link(up);
                }
            }
            gen_seen = g;
            sh.applied.store(g, Ordering::Release);
        }
        let mut idle = true;
        for src in 0..ports.len() {
            // A VF's queues in its traffic classes' order; the uplink's in index order.
            let nq = match src.checked_sub(1) {
                Some(vf) => sched[vf].order.len(),
                None => ports[0].rxs.len(),
            };
            for k in 0..nq {
                let q = match src.checked_sub(1) {
                    Some(vf) => sched[vf].order[k],
                    None => k,
                };
                if ports[src].rxs[q].rx_burst(&mut caches, &mut rx, 32) == 0 {
                    continue;
                }
                idle = false;
                let now = ticks();
                for mut m in rx.drain(..) {
                    let from_vf = src.checked_sub(1);
                    // Egress policy of the sending VF.
                    if let Some(vf) = from_vf {
                        let c = &sh.counters[vf];
                        let act = match snap.policies[vf].egress(m.data()) {
                            Ok(a) => a,
                            Err(cause) => {
                                bump(&c.tx_dropped[cause_index(cause)], 1);
                                caches.free(m);
                                continue;
                            }
                        };
                        if !sched[vf].admit(q, m.pkt_len(), now) {
                            bump(&c.tx_dropped[RATE_LIMITED], 1);
                            caches.free(m);
                            continue;
                        }
                        if !apply(&mut m, act) {
                            bump(&c.tx_dropped[cause_index(DropCause::Runt)], 1);
                            caches.free(m);
                            continue;
                        }
                        bump(&c.tx_packets, 1);
                        bump(&c.tx_bytes, m.pkt_len() as u64);
                        if let Some(mt) = snap.mirrors[vf].filter(|mt| mt.tx) {
                            mirror(&mut ports, &mut caches, &pool, sh, &snap, vf, mt, &m);
                        }
                    } else {
                        bump(&sh.uplink_rx, 1);
                    }
                    // Destinations.
                    let dst: [u8; 6] = m.data()[0..6].try_into().expect("checked 14 bytes");
                    let group = dst[0] & 1 != 0;
                    let owner =
                        (0..nvf).find(|&j| Some(j) != from_vf && snap.policies[j].owns_mac(&dst));
                    let to_uplink =
                        from_vf.is_some() && (group || owner.is_none() || !snap.tx_loopback);
                    let mut targets: [bool; 64] = [false; 64];
                    for (j, t) in targets.iter_mut().enumerate().take(nvf) {
                        *t = Some(j) != from_vf
                            && if group {
                                true
                            } else if let Some(o) = owner {
                                o == j && (from_vf.is_none() || snap.tx_loopback)
                            } else {
                                from_vf.is_none()
                            };
                    }
                    let mut original = Some(m);
                    for j in 0..nvf.min(64) {
                        if !targets[j] {
                            continue;
                        }
                        let view = original.as_ref().expect("kept until the last target");
                        let act = match snap.policies[j].ingress(view.data()) {
                            Ok(a) => a,
                            Err(cause) => {
                                if !group {
                                    bump(&sh.counters[j].rx_dropped[cause_index(cause)], 1);
                                }
                                continue;
                            }
                        };
                        let last = sent_one_is_last(&targets, j, to_uplink);
                        let mut copy = if last {
                            original.take().expect("present")
                        } else {
                            match copy_mbuf(&mut caches, &pool, view) {
                                Some(c) => c,
                                None => continue,
                            }
                        };
                        if !apply(&mut copy, act) {
                            caches.free(copy);
                            continue;
                        }
                        if let Some(mt) = snap.mirrors[j].filter(|mt| mt.rx) {
                            mirror(&mut ports, &mut caches, &pool, sh, &snap, j, mt, &copy);
                        }
                        flush_if_full(&mut ports[1 + j], &mut caches, Some(&sh.counters[j]));
                        let _ = ports[1 + j].out.try_push(copy);
                    }
                    if to_uplink && let Some(m) = original.take() {
                        flush_if_full(&mut ports[0], &mut caches, None);
                        let _ = ports[0].out.try_push(m);
                        bump(&sh.uplink_tx, 1);
                    }
                    if let Some(m) = original.take() {
                        caches.free(m);
                    }
                }
                // Flush every port's batch after each receive burst.
                for (i, p) in ports.iter_mut().enumerate() {
                    let c = i.checked_sub(1).map(|vf| &sh.counters[vf]);
                    let left = flush(p, &mut caches, c);
                    if i == 0 && left > 0 {
                        bump(&sh.uplink_dropped, left);
                    }
                }
            }
        }
        if idle {
            std::hint::spin_loop();
        }
    }
}

/// Refuses traffic classes on more queues than the VF's port has.
fn classes_fit(port: &dyn Port, c: &VfConfig) -> Result<(), String> {
    let info = port.info();
    if c.queues.len() > info.nb_rx_queues as usize {
        return Err(format!(
            "VF {}: {} traffic classes (queues) but its port {} has {} queue pair{} (open it with queues={})",
            c.vfid,
            c.queues.len(),
            info.name,
            info.nb_rx_queues,
            if info.nb_rx_queues == 1 { "" } else { "s" },
            c.queues.len()
        ));
    }
    Ok(())
}

/// A VF's transmit scheduler: its rate limit and, with traffic classes, each queue's
/// guaranteed share of it and its strict priority. A frame within its queue's share passes
/// (and is charged to the VF's rate). Beyond it, a frame needs room in the VF's rate, and no
/// class of higher priority may have been refused room within the last 10 ms: the room
/// beyond the guarantees goes to the highest class that wants it. (Frames are policed, not
/// queued: a class refused within that window counts as backlogged.)
struct VfSched {
    /// The VF's rate (None: unlimited, the classes do nothing).
    rate: Option<TokenBucket>,
    /// Guaranteed share of each queue, by queue index.
    min: Vec<Option<TokenBucket>>,
    /// Each queue's priority (0 first; queues without a class come last, at [`LOWEST`]).
    prio: Vec<u8>,
    /// When a class of each priority was last refused room beyond its share.
    refused_at: [Option<u64>; LOWEST as usize + 1],
    /// The queues in polling order: the classes by priority, then any queue without one.
    order: Vec<usize>,
}

/// The priority of a queue that has no traffic class.
const LOWEST: u8 = 8;
/// How long a refused higher class keeps the room beyond the guarantees from lower ones.
const BACKLOG_NS: u64 = 10_000_000;

impl VfSched {
    fn new(snap: &Snapshot, vf: usize, queues: usize, now: u64) -> VfSched {
        let rate = snap.rates[vf];
        let classes = &snap.classes[vf];
        let mut order: Vec<usize> = classes
            .iter()
            .map(|t| t.queue)
            .filter(|&q| q < queues)
            .collect();
        let rest: Vec<usize> = (0..queues).filter(|q| !order.contains(q)).collect();
        order.extend(rest);
        let mut min = vec![None; queues];
        let mut prio = vec![LOWEST; queues];
        for t in classes.iter().filter(|t| t.queue < queues) {
            prio[t.queue] = t.priority.min(LOWEST - 1);
            if let Some(mbps) = rate
                && t.share > 0.0
            {
                min[t.queue] = Some(TokenBucket::new(mbps * t.share, 1e9, 16 * 1024, now));
            }
        }
        VfSched {
            rate: rate.map(|mbps| TokenBucket::new(mbps, 1e9, 32 * 1024, now)),
            min,
            prio,
            refused_at: [None; LOWEST as usize + 1],
            order,
        }
    }

    /// Whether a frame of `len` bytes from queue `q` may go now.
    #[inline]
    fn admit(&mut self, q: usize, len: usize, now: u64) -> bool {
        let Some(rate) = self.rate.as_mut() else {
            return true;
        };
        if let Some(Some(g)) = self.min.get_mut(q)
            && g.allow(len, now)
        {
            rate.take(len, now);
            return true;
        }
        let p = self.prio.get(q).copied().unwrap_or(LOWEST) as usize;
        let higher_waiting = self.refused_at[..p]
            .iter()
            .any(|t| t.is_some_and(|t| now.saturating_sub(t) < BACKLOG_NS));
        if !higher_waiting && rate.allow(len, now) {
            return true;
        }
        self.refused_at[p] = Some(now);
        false
    }
}

/// Queues a copy of `m`, a frame of VF `vf`, for its mirror target (which takes it whatever
/// its own filters say, unless its receive is disabled). Copies are counted on `vf`.
#[allow(clippy::too_many_arguments)]
fn mirror(
    ports: &mut [PortQ],
    caches: &mut LcoreCaches,
    pool: &Mempool,
    sh: &Shared,
    snap: &Snapshot,
    vf: usize,
    mt: MirrorTo,
    m: &Mbuf,
) {
    let c = &sh.counters[vf];
    if !snap.policies[mt.target].rx_enabled {
        bump(&c.mirror_dropped, 1);
        return;
    }
    let Some(copy) = copy_mbuf(caches, pool, m) else {
        bump(&c.mirror_dropped, 1);
        return;
    };
    let p = &mut ports[1 + mt.target];
    flush_if_full(p, caches, Some(&sh.counters[mt.target]));
    let _ = p.out.try_push(copy);
    bump(&c.mirrored, 1);
}

/// Sends a port's batch; what the port does not take is dropped and counted (to a VF:
/// `queue_full`), what it takes is counted as delivered.
fn flush(p: &mut PortQ, caches: &mut LcoreCaches, c: Option<&VfCounters>) -> u64 {
    if p.out.is_empty() {
        return 0;
    }
    let (n, bytes) = (
        p.out.len() as u64,
        p.out.iter().map(|m| m.pkt_len() as u64).sum::<u64>(),
    );
    p.tx.tx_burst(caches, &mut p.out);
    let (left, left_bytes) = (
        p.out.len() as u64,
        p.out.iter().map(|m| m.pkt_len() as u64).sum::<u64>(),
    );
    for m in p.out.drain(..) {
        caches.free(m);
    }
    if let Some(c) = c {
        bump(&c.rx_packets, n - left);
        bump(&c.rx_bytes, bytes - left_bytes);
        if left > 0 {
            bump(&c.rx_dropped[QUEUE_FULL], left);
        }
    }
    left
}

fn flush_if_full(p: &mut PortQ, caches: &mut LcoreCaches, c: Option<&VfCounters>) {
    if p.out.is_full() {
        flush(p, caches, c);
    }
}

/// Whether `j` is the last delivery target (then the original mbuf goes, not a copy).
fn sent_one_is_last(targets: &[bool; 64], j: usize, to_uplink: bool) -> bool {
    !to_uplink && !targets[j + 1..].iter().any(|&t| t)
}

/// The mailbox thread: serves every VF's control queue until the switch stops (see
/// [`crate::mailbox`]).
fn mailbox(sh: Arc<Shared>, mut queues: Vec<Option<Box<dyn CtrlQueue>>>) {
    let now = Instant::now();
    let mut buckets: Vec<Bucket> = (0..queues.len()).map(|_| Bucket::new(now)).collect();
    while !sh.stop.load(Ordering::Relaxed) {
        let mut served = 0;
        for (vf, q) in queues.iter_mut().enumerate() {
            let Some(q) = q else { continue };
            let bucket = &mut buckets[vf];
            served += q.serve(PER_ROUND, &mut |input| {
                judge_request(&sh, vf, bucket, input)
            });
        }
        if served == 0 {
            std::thread::sleep(IDLE_SLEEP);
        } else {
            // Leave the switch thread its core on a small machine.
            std::thread::yield_now();
        }
    }
}

/// Judges one request of VF `vf`; true acks OK.
fn judge_request(sh: &Shared, vf: usize, bucket: &mut Bucket, input: CtrlInput) -> bool {
    let c = &sh.counters[vf];
    c.requests.fetch_add(1, Ordering::Relaxed);
    let cfg = {
        let cfgs = sh.configs.lock().unwrap_or_else(|p| p.into_inner());
        cfgs[vf].clone()
    };
    if !bucket.take(cfg.vf_request_rate, Instant::now()) {
        c.req_rate_limited.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    let req = match input {
        CtrlInput::Request(r) => r,
        CtrlInput::Malformed(e) => {
            c.req_malformed.fetch_add(1, Ordering::Relaxed);
            log::info!("VF {vf}: malformed control-queue request: {e}; refused");
            return false;
        }
        CtrlInput::BadChain(why) => {
            c.req_malformed.fetch_add(1, Ordering::Relaxed);
            log::info!("VF {vf}: unreadable control-queue chain: {why}; refused");
            return false;
        }
    };
    let what = req.describe();
    if cfg.vf_requests == RequestPolicy::Deny {
        c.req_denied.fetch_add(1, Ordering::Relaxed);
        log::info!("VF {vf}: request {what} denied (vf_requests: deny)");
        return false;
    }
    let result = requested(&cfg, &req).and_then(|next| {
        if next == cfg {
            return Ok(next);
        }
        sh.set_policy_if(vf, &cfg, next.clone()).map(|()| next)
    });
    match result {
        Ok(next) => {
            c.req_allowed.fetch_add(1, Ordering::Relaxed);
            if cfg.vf_requests == RequestPolicy::Log {
                log::warn!(
                    "VF {vf}: request {what} applied (vf_requests: log); policy now: macs {:?}, vlans {:?}, allow_bcast {}, allow_mcast {}, allow_un_ucast {}",
                    next.macs.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
                    next.vlans,
                    next.allow_bcast,
                    next.allow_mcast,
                    next.allow_un_ucast
                );
            } else {
                log::debug!("VF {vf}: request {what} applied");
            }
            true
        }
        Err(e) => {
            c.req_denied.fetch_add(1, Ordering::Relaxed);
            log::info!("VF {vf}: request {what} refused: {e}");
            false
        }
    }
}
