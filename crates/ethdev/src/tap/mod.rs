//! Capture points: where the data path hands packets to a running capture.
//!
//! Every port opened through the driver registry is wrapped (see
//! [`capture::wrap`](crate::capture::wrap)) so that each queue handle carries a [`QueueTap`].
//! After each burst the handle asks [`QueueTap::armed`], one relaxed load of a flag on a line
//! that only changes when a capture starts or stops; when it is false nothing else happens.
//! When a capture is armed on the queue the (cold, out-of-line) capture path copies the burst
//! into the queue's [`CaptureRing`].
//!
//! The ring sits behind a mutex that the data path only ever `try_lock`s, once per burst and
//! only while armed: the control thread takes it to install or remove a ring, so when it has
//! removed one no burst can still be writing to it. A burst that meets the lock held (a
//! capture starting or stopping on that very queue) is simply not captured.

mod ring;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use ferrovia_memory::Mbuf;
use ferrovia_memory::burst::Burst;

pub use ring::{CaptureRing, Captured};

/// The capture point of one queue in one direction. It has its cache line to itself, so
/// what the data path reads per burst shares the line with nothing that is written.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct QueueTap {
    armed: AtomicBool,
    slot: Mutex<Option<Armed>>,
}

/// A ring installed on a queue, with the capture that owns it.
#[derive(Clone, Debug)]
struct Armed {
    owner: u32,
    snaplen: usize,
    ring: Arc<CaptureRing>,
}

/// Nanoseconds since the Unix epoch (what the capture timestamps are).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl QueueTap {
    /// True while a capture is installed on this queue: the only question the data path asks
    /// per burst.
    #[inline(always)]
    pub fn armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Option<Armed>> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Installs `ring` for capture `owner`, keeping up to `snaplen` bytes of each packet.
    /// Fails with the current owner's id when another capture holds the queue.
    pub fn install(&self, owner: u32, snaplen: usize, ring: Arc<CaptureRing>) -> Result<(), u32> {
        let mut g = self.lock();
        if let Some(a) = g.as_ref() {
            return Err(a.owner);
        }
        *g = Some(Armed {
            owner,
            snaplen,
            ring,
        });
        self.armed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Removes capture `owner`'s ring, if it is the one installed. When this returns, no
    /// burst writes to it any more.
    pub fn remove(&self, owner: u32) -> bool {
        let mut g = self.lock();
        if g.as_ref().is_some_and(|a| a.owner == owner) {
            self.armed.store(false, Ordering::Relaxed);
            *g = None;
            true
        } else {
            false
        }
    }

    /// The capture that holds this queue, if any.
    pub fn owner(&self) -> Option<u32> {
        self.lock().as_ref().map(|a| a.owner)
    }

    /// Capture path of a receive burst: `pkts` are the packets the driver just added.
    #[cold]
    #[inline(never)]
    pub fn capture_rx(&self, pkts: &[Mbuf]) {
        let Ok(g) = self.slot.try_lock() else {
            return;
        };
        if let Some(a) = g.as_ref() {
            let staged = a.ring.stage(now_ns(), a.snaplen, pkts);
            a.ring.commit(staged, pkts.len());
        }
    }

    /// Capture path of a transmit burst: copies `pkts` (those offered) before `send` (the
    /// driver's transmit, which takes and frees the first packets and returns how many) runs,
    /// then publishes the copies of the packets taken.
    #[cold]
    #[inline(never)]
    pub fn capture_tx(&self, pkts: &mut Burst, send: impl FnOnce(&mut Burst) -> usize) -> usize {
        let g = self.slot.try_lock().ok();
        let armed = g.as_ref().and_then(|g| g.as_ref());
        let staged = armed.map_or(0, |a| a.ring.stage(now_ns(), a.snaplen, pkts));
        let sent = send(pkts);
        if let Some(a) = armed {
            a.ring.commit(staged, sent);
        }
        sent
    }
}

/// The capture points of one port: one [`QueueTap`] per queue and direction.
#[derive(Debug)]
pub struct PortTap {
    /// The port id (what the application calls the port).
    pub port_id: u16,
    /// The port's devargs name (`net_vhost0`), written as the pcapng interface name.
    pub name: String,
    /// Largest frame the port receives: the capture slots need no more bytes than this.
    pub max_frame_size: u32,
    rx: Box<[Arc<QueueTap>]>,
    tx: Box<[Arc<QueueTap>]>,
}

impl PortTap {
    /// Capture points for a port with `nb_rx` receive and `nb_tx` transmit queues.
    pub fn new(port_id: u16, name: &str, max_frame_size: u32, nb_rx: u16, nb_tx: u16) -> PortTap {
        let mk = |n: u16| (0..n).map(|_| Arc::new(QueueTap::default())).collect();
        PortTap {
            port_id,
            name: name.to_string(),
            max_frame_size,
            rx: mk(nb_rx),
            tx: mk(nb_tx),
        }
    }

    /// Receive queues with a capture point.
    pub fn nb_rx(&self) -> u16 {
        self.rx.len() as u16
    }

    /// Transmit queues with a capture point.
    pub fn nb_tx(&self) -> u16 {
        self.tx.len() as u16
    }

    /// The capture point of receive queue `q`.
    pub fn rx(&self, q: u16) -> Option<&Arc<QueueTap>> {
        self.rx.get(q as usize)
    }

    /// The capture point of transmit queue `q`.
    pub fn tx(&self, q: u16) -> Option<&Arc<QueueTap>> {
        self.tx.get(q as usize)
    }
}
