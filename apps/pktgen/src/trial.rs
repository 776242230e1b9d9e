//! One trial: send paced streams on the transmit ports for a duration or a count, receive on
//! every port, then drain what is still in flight, and report.
//!
//! Everything runs on the calling thread (a 2-core machine has no core to spare for a second
//! generator thread). Each stream has its own pacer; each loop reads the tick counter once.
//! Frames of the warm-up carry sequence numbers below the stream's measured range, so late
//! warm-up frames never count as measured ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ferrovia_ethdev::{Burst, Port, RxQueue, TxQueue};
use ferrovia_memory::{LcoreCaches, Mempool};
use serde::Serialize;

use crate::clock::{Clock, Pacer, ticks};
use crate::frame::{SizePattern, Template, parse};
use crate::track::{LatencySummary, Tracker, summarize};

/// A port the generator drives.
pub struct GenPort {
    /// The port (kept open for the trial).
    pub port: Box<dyn Port>,
    /// Its queue 0 for receiving.
    pub rx: Box<dyn RxQueue>,
    /// Its queue 0 for sending.
    pub tx: Box<dyn TxQueue>,
    /// Its name, for reports.
    pub name: String,
}

/// A stream: what one port sends.
#[derive(Clone, Debug)]
pub struct StreamSpec {
    /// The index of the sending port.
    pub port: usize,
    /// Source and destination MACs.
    pub src: [u8; 6],
    /// Destination MAC.
    pub dst: [u8; 6],
}

/// What a trial does.
#[derive(Clone, Debug)]
pub struct TrialSpec {
    /// The streams (at most 255).
    pub streams: Vec<StreamSpec>,
    /// Frame sizes.
    pub sizes: SizePattern,
    /// Packets per second per stream; `None`: as fast as the ports take them.
    pub pps: Option<f64>,
    /// Flows per stream.
    pub flows: u32,
    /// Warm-up seconds (sent, not counted).
    pub warmup: f64,
    /// Measured seconds; with `count`, the longest the trial may take.
    pub duration: f64,
    /// Exactly this many measured frames per stream (overrides `duration`).
    pub count: Option<u64>,
    /// Seconds to keep receiving after the last frame went.
    pub drain: f64,
    /// Packets per burst (1..=32).
    pub burst: usize,
    /// Fill every frame's payload with a pattern and check every received byte (costs the
    /// generator a write and a compare per byte).
    pub verify: bool,
    /// What a frame the port refuses (its ring is full) becomes.
    pub when_full: WhenFull,
    /// Ends the measured phase early when set (the interactive `stop`); the drain follows as
    /// usual. Set during the warm-up, nothing is measured.
    pub stop: Option<Arc<AtomicBool>>,
}

/// What the generator does with frames a port refuses because its ring is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhenFull {
    /// Keep them and send them again on the next loop: the port's back-pressure slows the
    /// generator down, and nothing is lost on the way in.
    #[default]
    Retry,
    /// Count them as sent and lost, as a NIC's wire does when the device behind it cannot
    /// take a frame: the generator keeps its rate whatever the device does (PVP's model of a
    /// hardware generator on a NIC).
    Drop,
}

/// One stream's results.
#[derive(Clone, Debug, Serialize)]
pub struct StreamReport {
    /// The sending port.
    pub tx_port: String,
    /// Frames sent in the measured phase.
    pub sent: u64,
    /// Bytes sent in the measured phase.
    pub sent_bytes: u64,
    /// Distinct measured frames received.
    pub received: u64,
    /// Measured frames never received.
    pub lost: u64,
    /// `lost / sent`.
    pub loss_ratio: f64,
    /// Frames received twice or more (counted once in `received`).
    pub duplicates: u64,
    /// Frames received after a later-numbered one.
    pub reordered: u64,
    /// Frames received with a byte changed (with `verify`; counted in `received` too).
    pub corrupt: u64,
    /// Latency of the measured frames.
    pub latency: LatencySummary,
}

/// A trial's results.
#[derive(Clone, Debug, Serialize)]
pub struct TrialReport {
    /// Frame size, or `imix`.
    pub size: String,
    /// Mean frame size in bytes (FCS excluded).
    pub mean_size: f64,
    /// The requested rate per stream, if paced.
    pub requested_pps: Option<f64>,
    /// Seconds of the measured phase.
    pub seconds: f64,
    /// Measured frames sent per second, all streams.
    pub tx_pps: f64,
    /// Measured frames received per second, all streams.
    pub rx_pps: f64,
    /// Frames sent over the measured phase, all streams.
    pub sent: u64,
    /// Distinct measured frames received, all streams.
    pub received: u64,
    /// Measured frames lost, all streams.
    pub lost: u64,
    /// `lost / sent`, all streams.
    pub loss_ratio: f64,
    /// Frames received with a byte changed, all streams (with `verify`).
    pub corrupt: u64,
    /// Frames a port refused and the pacer retried ([`WhenFull::Retry`]; not loss).
    pub tx_full_retries: u64,
    /// Measured frames a port refused and that count as lost ([`WhenFull::Drop`]).
    pub tx_full_dropped: u64,
    /// Frames received that were not ours, or were warm-up frames.
    pub foreign: u64,
    /// Per stream.
    pub streams: Vec<StreamReport>,
    /// Latency over all streams.
    pub latency: LatencySummary,
}

/// A second's progress, for live display.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Seconds since the measured phase began (negative in the warm-up).
    pub t: f64,
    /// Frames sent per second over the last interval.
    pub tx_pps: f64,
    /// Frames received per second over the last interval.
    pub rx_pps: f64,
    /// Measured frames sent so far, minus distinct ones received (in flight or lost).
    pub outstanding: i64,
}

struct StreamState {
    tmpl: Template,
    pacer: Option<Pacer>,
    seq: u64,
    /// First sequence number of the measured phase.
    start_seq: u64,
    sent: u64,
    sent_bytes: u64,
    corrupt: u64,
    tracker: Tracker,
}

/// Runs one trial. `progress` is called about once a second; `side` on every loop, for work
/// that shares the thread (the VNF's forwarding in PVP's single-thread mode).
pub fn run_trial(
    ports: &mut [GenPort],
    pool: &Mempool,
    caches: &mut LcoreCaches,
    clock: &Clock,
    spec: &TrialSpec,
    mut progress: impl FnMut(&Progress),
    side: &mut dyn FnMut(&mut LcoreCaches),
) -> TrialReport {
    let burst = spec.burst.clamp(1, 32);
    let t_start = ticks();
    let mut streams: Vec<StreamState> = spec
        .streams
        .iter()
        .enumerate()
        .map(|(i, s)| StreamState {
            tmpl: Template::new(i as u8, s.src, s.dst, spec.flows),
            pacer: spec.pps.map(|p| Pacer::new(clock, p, burst, t_start)),
            seq: 0,
            start_seq: u64::MAX,
            sent: 0,
            sent_bytes: 0,
            corrupt: 0,
            tracker: Tracker::new(),
        })
        .collect();
    let warm_end = t_start + clock.ticks_of(spec.warmup);
    let mut measure_start = None;
    let mut measure_end = u64::MAX;
    let mut foreign = 0u64;
    let mut full_retries = 0u64;
    let mut full_dropped = 0u64;
    let mut tx = Burst::new();
    let mut rx = Burst::new();
    let mut last_print = t_start;
    let (mut tx_mark, mut rx_mark) = (0u64, 0u64);
    let (mut tx_total, mut rx_total) = (0u64, 0u64);
    let mut drain_until = None;
    let mut scratch = vec![0u8; if spec.verify { 10_000 } else { 0 }];
    loop {
        side(caches);
        let now = ticks();
        let stopped = spec
            .stop
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed));
        if stopped && measure_start.is_none() {
            // Stopped in the warm-up: an empty measured phase.
            measure_start = Some(now);
            for s in &mut streams {
                s.start_seq = s.seq;
            }
            measure_end = now;
        }
        // Phases: warm-up, measured, drain.
        if measure_start.is_none() && now >= warm_end {
            measure_start = Some(now);
            for s in &mut streams {
                s.start_seq = s.seq;
            }
            // With a count, the duration bounds the trial (a port that never takes the
            // frames must not hang it).
            measure_end = now + clock.ticks_of(spec.duration);
        }
        let done_sending = stopped
            || match (measure_start, spec.count) {
                (Some(_), Some(n)) => {
                    now >= measure_end || streams.iter().all(|s| s.seq - s.start_seq >= n)
                }
                (Some(_), None) => now >= measure_end,
                _ => false,
            };
        if done_sending && drain_until.is_none() {
            measure_end = measure_end.min(now);
            drain_until = Some(now + clock.ticks_of(spec.drain));
        }
        if let Some(d) = drain_until
            && now >= d
        {
            break;
        }
        // Send.
        if drain_until.is_none() {
            for (si, s) in streams.iter_mut().enumerate() {
                let mut n = match &mut s.pacer {
                    Some(p) => p.due(now, burst),
                    None => burst,
                };
                if let (Some(c), true) = (spec.count, s.start_seq != u64::MAX) {
                    let left = (s.start_seq + c).saturating_sub(s.seq);
                    if (left as usize) < n {
                        if let Some(p) = &mut s.pacer {
                            p.unsend(n - left as usize);
                        }
                        n = left as usize;
                    }
                }
                if n == 0 {
                    continue;
                }
                let cache = caches.for_pool(pool);
                for k in 0..n {
                    let seq = s.seq + k as u64;
                    let Some(mut m) = cache.alloc() else { break };
                    let len = spec.sizes.size(seq);
                    match m.append(len) {
                        Some(buf) if spec.verify => s.tmpl.write_patterned(buf, seq, now),
                        Some(buf) => s.tmpl.write(buf, seq, now),
                        None => break,
                    }
                    tx.push(m);
                }
                let made = tx.len();
                let port = &mut ports[spec.streams[si].port];
                let mut went = port.tx.tx_burst(caches, &mut tx);
                tx_total += went as u64;
                if spec.when_full == WhenFull::Drop && went < made {
                    // The refused frames left the generator and died at the device's door:
                    // their sequence numbers go by, and the tracker counts them lost.
                    for k in went..made {
                        if s.start_seq != u64::MAX && s.seq + k as u64 >= s.start_seq {
                            full_dropped += 1;
                        }
                    }
                    for m in tx.drain(..) {
                        caches.free(m);
                    }
                    went = made;
                }
                for k in 0..went {
                    let seq = s.seq + k as u64;
                    if s.start_seq != u64::MAX && seq >= s.start_seq {
                        s.sent += 1;
                        s.sent_bytes += spec.sizes.size(seq) as u64;
                    }
                }
                s.seq += went as u64;
                let unsent = n - went;
                if unsent > 0 {
                    if went < made {
                        full_retries += (made - went) as u64;
                    }
                    for m in tx.drain(..) {
                        caches.free(m);
                    }
                    if let Some(p) = &mut s.pacer {
                        p.unsend(unsent);
                    }
                }
            }
        }
        // Receive.
        for p in ports.iter_mut() {
            if p.rx.rx_burst(caches, &mut rx, 32) == 0 {
                continue;
            }
            let rx_tick = ticks();
            for m in rx.drain(..) {
                match parse(m.data()) {
                    Some(st) if usize::from(st.stream) < streams.len() => {
                        let s = &mut streams[usize::from(st.stream)];
                        if st.seq >= s.start_seq && st.seq < s.seq {
                            if spec.verify
                                && (m.nb_segs() != 1
                                    || m.data_len() != spec.sizes.size(st.seq)
                                    || !s.tmpl.verify(m.data(), st.seq, st.tick, &mut scratch))
                            {
                                s.corrupt += 1;
                            }
                            let lat = rx_tick.checked_sub(st.tick).map(|d| clock.ns(d) as u64);
                            s.tracker.record(st.seq - s.start_seq, m.pkt_len(), lat);
                            rx_total += 1;
                        } else {
                            foreign += 1;
                        }
                    }
                    _ => foreign += 1,
                }
                caches.free(m);
            }
        }
        if now.wrapping_sub(last_print) >= clock.ticks_of(1.0) {
            let dt = clock.ns(now - last_print) / 1e9;
            let sent: u64 = streams.iter().map(|s| s.sent).sum();
            let got: u64 = streams.iter().map(|s| s.tracker.unique()).sum();
            progress(&Progress {
                t: measure_start.map_or(-clock.ns(warm_end.saturating_sub(now)) / 1e9, |m| {
                    clock.ns(now - m) / 1e9
                }),
                tx_pps: (tx_total - tx_mark) as f64 / dt,
                rx_pps: (rx_total - rx_mark) as f64 / dt,
                outstanding: sent as i64 - got as i64,
            });
            (tx_mark, rx_mark, last_print) = (tx_total, rx_total, now);
        }
    }
    let ms = measure_start.unwrap_or(t_start);
    let seconds = clock.ns(measure_end.min(ticks()).saturating_sub(ms)) / 1e9;
    let mut all = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 3)
        .expect("valid bounds");
    let stream_reports: Vec<StreamReport> = streams
        .iter()
        .zip(&spec.streams)
        .map(|(s, sp)| {
            let _ = all.add(&s.tracker.latency);
            let received = s.tracker.unique().min(s.sent);
            StreamReport {
                tx_port: ports[sp.port].name.clone(),
                sent: s.sent,
                sent_bytes: s.sent_bytes,
                received,
                lost: s.sent - received,
                loss_ratio: if s.sent == 0 {
                    0.0
                } else {
                    (s.sent - received) as f64 / s.sent as f64
                },
                duplicates: s.tracker.duplicates,
                reordered: s.tracker.reordered,
                corrupt: s.corrupt,
                latency: summarize(&s.tracker.latency),
            }
        })
        .collect();
    let sent: u64 = stream_reports.iter().map(|s| s.sent).sum();
    let received: u64 = stream_reports.iter().map(|s| s.received).sum();
    TrialReport {
        size: spec.sizes.label(),
        mean_size: spec.sizes.mean(),
        requested_pps: spec.pps,
        seconds,
        tx_pps: if seconds > 0.0 {
            sent as f64 / seconds
        } else {
            0.0
        },
        rx_pps: if seconds > 0.0 {
            received as f64 / seconds
        } else {
            0.0
        },
        sent,
        received,
        lost: sent - received,
        loss_ratio: if sent == 0 {
            0.0
        } else {
            (sent - received) as f64 / sent as f64
        },
        corrupt: stream_reports.iter().map(|s| s.corrupt).sum(),
        tx_full_retries: full_retries,
        tx_full_dropped: full_dropped,
        foreign,
        streams: stream_reports,
        latency: summarize(&all),
    }
}
