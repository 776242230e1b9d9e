//! PMD threads: each polls its share of the Rx queues, switches what arrives and sends it in
//! per-port batches.
//!
//! A thread owns its Rx queue handles and, for each port, either a Tx queue of its own or the
//! port's *mailbox*: a lock-free queue drained by the port's home thread (the one that owns
//! the port's Tx queue), for ports with fewer Tx queues than there are PMD threads. The control
//! thread changes what a thread owns only through [`PmdCommand`]s, which the thread applies
//! between bursts; the packet path takes no lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};

use crossbeam_queue::ArrayQueue;
use ferrovia_ethdev::{Burst, RxQueue, TxQueue};
use ferrovia_memory::{LcoreCaches, Mbuf};

use crate::counters::{DropCause, PmdCounters};
use crate::emc::FlowDump;
use crate::pipeline::{BurstCtx, OutBatch, Pipeline};
use crate::snapshot::{Shared, Snapshot};

/// Rx burst size.
pub const RX_BURST: usize = 32;

/// Cycles an Rx queue cost, for `pmd-rxq-assign=cycles`.
#[derive(Debug, Default)]
pub struct RxqCycles {
    /// TSC cycles spent receiving and switching this queue's frames.
    pub cycles: AtomicU64,
    /// Frames received on it.
    pub packets: AtomicU64,
}

/// An Rx queue handed to a PMD thread.
pub struct RxqHandle {
    /// Port slot.
    pub slot: u16,
    /// Queue id.
    pub queue: u16,
    /// The queue.
    pub rxq: Box<dyn RxQueue>,
    /// Its cycle counters.
    pub cycles: Arc<RxqCycles>,
}

/// How a PMD thread sends to one port.
pub struct TxHandle {
    /// The thread's own Tx queue on the port, if it has one.
    pub txq: Option<Box<dyn TxQueue>>,
    /// The port's mailbox: where threads without a queue of their own put frames, and which
    /// the thread owning `txq` with `drains_mailbox` empties.
    pub mailbox: Arc<ArrayQueue<Mbuf>>,
    /// True on the port's home thread when other threads send through the mailbox (the port
    /// has fewer Tx queues than there are PMD threads).
    pub drains_mailbox: bool,
}

/// What the control thread asks of a PMD thread.
pub enum PmdCommand {
    /// Switch by this configuration from now on.
    Snapshot(Arc<Snapshot>),
    /// Start sending to a port.
    AddTx {
        /// Port slot.
        slot: u16,
        /// How.
        tx: TxHandle,
    },
    /// Start polling an Rx queue.
    AddRxq(RxqHandle),
    /// Give back an Rx queue (to move it to another thread).
    TakeRxq {
        /// Port slot.
        slot: u16,
        /// Queue id.
        queue: u16,
        /// Where the handle goes.
        reply: Sender<Option<RxqHandle>>,
    },
    /// Forget a port: drop its Rx and Tx queues and free what is queued for it.
    RemovePort {
        /// Port slot.
        slot: u16,
        /// Answered when done.
        done: Sender<()>,
    },
    /// Copy the flow cache out.
    DumpFlows(Sender<Vec<FlowDump>>),
    /// Answer when every earlier command is applied.
    Barrier(Sender<()>),
    /// Leave the loop.
    Stop,
}

/// The control side of a PMD thread's command queue.
#[derive(Clone)]
pub struct PmdControl {
    tx: Sender<PmdCommand>,
    pending: Arc<AtomicBool>,
}

impl PmdControl {
    /// Queues a command (applied at the thread's next loop iteration).
    pub fn send(&self, c: PmdCommand) -> bool {
        let ok = self.tx.send(c).is_ok();
        self.pending.store(true, Ordering::Release);
        ok
    }
}

/// Makes a command queue: the control end and the thread's end.
pub fn command_queue() -> (PmdControl, Receiver<PmdCommand>, Arc<AtomicBool>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let pending = Arc::new(AtomicBool::new(false));
    (
        PmdControl {
            tx,
            pending: pending.clone(),
        },
        rx,
        pending,
    )
}

#[inline]
fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions on x86_64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        use std::time::Instant;
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// One PMD thread's state.
pub struct Pmd {
    rxqs: Vec<RxqHandle>,
    tx: Vec<Option<TxHandle>>,
    /// Slots whose mailbox this thread drains (only ports with fewer Tx queues than threads).
    mailbox_slots: Vec<u16>,
    pipeline: Pipeline,
    snap: Arc<Snapshot>,
    shared: Arc<Shared>,
    counters: Arc<PmdCounters>,
    commands: Receiver<PmdCommand>,
    pending: Arc<AtomicBool>,
    caches: LcoreCaches,
}

impl Pmd {
    /// A thread's state, before its loop runs.
    pub fn new(
        pipeline: Pipeline,
        shared: Arc<Shared>,
        counters: Arc<PmdCounters>,
        commands: Receiver<PmdCommand>,
        pending: Arc<AtomicBool>,
    ) -> Pmd {
        Pmd {
            rxqs: Vec::new(),
            tx: (0..crate::counters::MAX_PORTS).map(|_| None).collect(),
            mailbox_slots: Vec::with_capacity(crate::counters::MAX_PORTS),
            pipeline,
            snap: Arc::new(Snapshot::default()),
            shared,
            counters,
            commands,
            pending,
            caches: LcoreCaches::new(),
        }
    }

    /// Runs until told to stop.
    pub fn run(mut self) {
        let mut burst = Burst::new();
        let mut t0 = tsc();
        loop {
            if self.pending.load(Ordering::Acquire) && !self.apply_commands() {
                break;
            }
            let (moved, t_last) = self.iterate(&mut burst, t0);
            // The last busy queue's reading ends the iteration (one TSC read fewer).
            let t1 = t_last.unwrap_or_else(tsc);
            let own = &self.counters.own;
            own.iterations.add(1);
            if moved > 0 {
                own.busy_cycles.add(t1.wrapping_sub(t0));
            } else {
                own.idle_cycles.add(t1.wrapping_sub(t0));
                std::hint::spin_loop();
            }
            t0 = t1;
        }
        self.shutdown();
    }

    /// One pass over every Rx queue and owned mailbox; returns frames moved.
    /// `t_start` is the TSC at the start of the pass; returns the frames moved and the last
    /// TSC reading taken, if any.
    fn iterate(&mut self, burst: &mut Burst, t_start: u64) -> (usize, Option<u64>) {
        let cx = BurstCtx {
            snap: &self.snap,
            generation: self.shared.generation.load(Ordering::Acquire),
            now: self.shared.now.load(Ordering::Relaxed),
            counters: &self.counters,
        };
        let mut moved = 0;
        let tx = &mut self.tx;
        // One TSC read per busy queue: a queue is charged the cycles since the previous read,
        // which includes the empty polls of the queues before it (cheap next to a burst).
        let mut t_prev = t_start;
        let mut t_last = None;
        for q in self.rxqs.iter_mut() {
            let n = q.rxq.rx_burst(&mut self.caches, burst, RX_BURST);
            if n == 0 {
                continue;
            }
            moved += n;
            self.pipeline.process(
                cx,
                &mut self.caches,
                q.slot,
                burst,
                &mut |p, caches, slot| flush_slot(p, caches, tx, cx.counters, slot),
            );
            while let Some(slot) = self.pipeline.dirty.pop() {
                if let Some(b) = self
                    .pipeline
                    .out
                    .get_mut(slot as usize)
                    .and_then(Option::as_mut)
                {
                    b.listed = false;
                }
                flush_slot(&mut self.pipeline, &mut self.caches, tx, cx.counters, slot);
            }
            let t = tsc();
            let c = &q.cycles;
            c.cycles.store(
                c.cycles.load(Ordering::Relaxed) + t.wrapping_sub(t_prev),
                Ordering::Relaxed,
            );
            c.packets.store(
                c.packets.load(Ordering::Relaxed) + n as u64,
                Ordering::Relaxed,
            );
            t_prev = t;
            t_last = Some(t);
        }
        self.counters.own.packets.add(moved as u64);
        // Frames other threads left for the ports this thread sends for.
        for &slot in &self.mailbox_slots {
            let Some(h) = tx.get_mut(slot as usize).and_then(Option::as_mut) else {
                continue;
            };
            if h.mailbox.is_empty() {
                continue;
            }
            let Some(txq) = h.txq.as_mut() else { continue };
            while !burst.is_full() && burst.len() < RX_BURST {
                match h.mailbox.pop() {
                    Some(m) => burst.push(m),
                    None => break,
                }
            }
            moved += burst.len();
            let bytes = burst.iter().map(|m| m.pkt_len() as u64).sum();
            send(txq, &mut self.caches, burst, bytes, &self.counters, slot);
        }
        (moved, t_last)
    }

    /// Applies queued commands; false on Stop.
    fn apply_commands(&mut self) -> bool {
        self.pending.store(false, Ordering::Release);
        while let Ok(c) = self.commands.try_recv() {
            match c {
                PmdCommand::Snapshot(s) => self.snap = s,
                PmdCommand::AddTx { slot, tx } => {
                    if let Some(t) = self.tx.get_mut(slot as usize) {
                        self.mailbox_slots.retain(|&s| s != slot);
                        if tx.drains_mailbox {
                            self.mailbox_slots.push(slot);
                        }
                        *t = Some(tx);
                        self.pipeline.out[slot as usize] = Some(Box::default());
                    }
                }
                PmdCommand::AddRxq(h) => self.rxqs.push(h),
                PmdCommand::TakeRxq { slot, queue, reply } => {
                    let i = self
                        .rxqs
                        .iter()
                        .position(|h| h.slot == slot && h.queue == queue);
                    let _ = reply.send(i.map(|i| self.rxqs.remove(i)));
                }
                PmdCommand::RemovePort { slot, done } => {
                    self.rxqs.retain(|h| h.slot != slot);
                    if let Some(b) = self
                        .pipeline
                        .out
                        .get_mut(slot as usize)
                        .and_then(Option::take)
                    {
                        let OutBatch { mut pkts, .. } = *b;
                        self.caches.free_all(pkts.drain(..));
                    }
                    self.pipeline.dirty.retain(|&s| s != slot);
                    self.mailbox_slots.retain(|&s| s != slot);
                    if let Some(h) = self.tx.get_mut(slot as usize).and_then(Option::take)
                        && h.drains_mailbox
                    {
                        while let Some(m) = h.mailbox.pop() {
                            self.caches.free(m);
                        }
                    }
                    let _ = done.send(());
                }
                PmdCommand::DumpFlows(reply) => {
                    let g = self.shared.generation.load(Ordering::Acquire);
                    let _ = reply.send(self.pipeline.emc.dump(g));
                }
                PmdCommand::Barrier(done) => {
                    let _ = done.send(());
                }
                PmdCommand::Stop => return false,
            }
        }
        true
    }

    fn shutdown(&mut self) {
        for b in self.pipeline.out.iter_mut().filter_map(Option::take) {
            let OutBatch { mut pkts, .. } = *b;
            self.caches.free_all(pkts.drain(..));
        }
        for h in self.tx.iter_mut().filter_map(Option::take) {
            while let Some(m) = h.mailbox.pop() {
                self.caches.free(m);
            }
        }
        self.rxqs.clear();
        self.caches.clear();
    }
}

/// Sends `slot`'s batch: through the thread's own Tx queue, or into the port's mailbox.
fn flush_slot(
    p: &mut Pipeline,
    caches: &mut LcoreCaches,
    tx: &mut [Option<TxHandle>],
    counters: &PmdCounters,
    slot: u16,
) {
    let Some(batch) = p.out.get_mut(slot as usize).and_then(Option::as_mut) else {
        return;
    };
    if batch.pkts.is_empty() {
        return;
    }
    let bytes = std::mem::take(&mut batch.bytes);
    match tx.get_mut(slot as usize).and_then(Option::as_mut) {
        Some(TxHandle { txq: Some(q), .. }) => {
            send(q, caches, &mut batch.pkts, bytes, counters, slot)
        }
        Some(TxHandle { mailbox, .. }) => {
            let n = batch.pkts.len() as u64;
            for m in batch.pkts.drain(..) {
                if let Err(m) = mailbox.push(m) {
                    counters.ports[slot as usize].drop(DropCause::TxFull, 1);
                    caches.free(m);
                }
            }
            counters.own.mailbox_tx.add(n);
        }
        None => {
            counters.ports[slot as usize].drop(DropCause::PortGone, batch.pkts.len() as u64);
            caches.free_all(batch.pkts.drain(..));
        }
    }
}

/// One Tx burst; what does not fit is dropped and counted (a switch does not hold frames).
#[inline]
fn send(
    q: &mut Box<dyn TxQueue>,
    caches: &mut LcoreCaches,
    pkts: &mut Burst,
    bytes: u64,
    counters: &PmdCounters,
    slot: u16,
) {
    let n = pkts.len();
    let sent = q.tx_burst(caches, pkts);
    let pc = &counters.ports[slot as usize];
    pc.tx_packets.add(sent as u64);
    if sent == n {
        pc.tx_bytes.add(bytes);
    } else {
        let left: u64 = pkts.iter().map(|m| m.pkt_len() as u64).sum();
        pc.tx_bytes.add(bytes - left);
        pc.drop(DropCause::TxFull, (n - sent) as u64);
        caches.free_all(pkts.drain(..));
    }
}
