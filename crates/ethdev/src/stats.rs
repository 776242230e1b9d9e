//! Per-queue counters, written by the owning thread and summed when read.
//!
//! Each counter has one writer, so an update is a relaxed load plus a relaxed store (no atomic
//! read-modify-write on the hot path). A reset records a baseline instead of writing the
//! counters, so it never races with the writer.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a packet or descriptor was dropped or rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum ErrorCause {
    /// No mbuf could be allocated.
    NoMbuf,
    /// A descriptor address (or address + length) falls outside the peer's memory regions.
    DescAddr,
    /// A descriptor chain is longer than the ring (a loop) or revisits a descriptor.
    DescLoop,
    /// A descriptor index or `next` field is out of range.
    DescIndex,
    /// A length field overflows or is inconsistent.
    DescLen,
    /// A chain is too short to hold the virtio-net header or the packet.
    ChainShort,
    /// The avail index jumped by more than the ring size.
    AvailIdx,
    /// A used-ring id is out of range or not in flight.
    UsedId,
    /// A used-ring length is larger than the buffer posted.
    UsedLen,
    /// A frame is longer than the configured maximum.
    TooLong,
    /// The peer's buffers were not enough (guest Rx ring full).
    RingFull,
    /// An indirect descriptor table is malformed or not negotiated.
    Indirect,
    /// A call (interrupt) to the peer was skipped because its eventfd could not take it
    /// without waiting (not a packet error: the packets were delivered).
    CallSkipped,
    /// A virtio-net header asked for an offload that was not negotiated, or described a
    /// checksum or segmentation the packet cannot have (checksum field beyond the packet,
    /// segment size 0, unknown segmentation type, header length beyond the packet): the
    /// packet was dropped.
    BadNetHdr,
    /// A packet asked for an offload (TCP segmentation) that neither the peer nor the port
    /// can do: the packet was dropped.
    OffloadUnsupported,
}

impl ErrorCause {
    /// Every cause, in counter order.
    pub const ALL: [ErrorCause; 15] = [
        ErrorCause::NoMbuf,
        ErrorCause::DescAddr,
        ErrorCause::DescLoop,
        ErrorCause::DescIndex,
        ErrorCause::DescLen,
        ErrorCause::ChainShort,
        ErrorCause::AvailIdx,
        ErrorCause::UsedId,
        ErrorCause::UsedLen,
        ErrorCause::TooLong,
        ErrorCause::RingFull,
        ErrorCause::Indirect,
        ErrorCause::CallSkipped,
        ErrorCause::BadNetHdr,
        ErrorCause::OffloadUnsupported,
    ];

    /// Counter name suffix used in xstats.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCause::NoMbuf => "mbuf_allocation_errors",
            ErrorCause::DescAddr => "bad_desc_addr",
            ErrorCause::DescLoop => "desc_chain_loop",
            ErrorCause::DescIndex => "bad_desc_index",
            ErrorCause::DescLen => "bad_desc_len",
            ErrorCause::ChainShort => "desc_chain_too_short",
            ErrorCause::AvailIdx => "bad_avail_idx",
            ErrorCause::UsedId => "bad_used_id",
            ErrorCause::UsedLen => "bad_used_len",
            ErrorCause::TooLong => "oversize_frames",
            ErrorCause::RingFull => "peer_ring_full",
            ErrorCause::Indirect => "bad_indirect_desc",
            ErrorCause::CallSkipped => "call_skipped",
            ErrorCause::BadNetHdr => "bad_virtio_net_hdr",
            ErrorCause::OffloadUnsupported => "offload_unsupported",
        }
    }
}

const NCAUSE: usize = ErrorCause::ALL.len();

/// Counters of one queue direction.
#[derive(Debug, Default)]
pub struct QueueStats {
    packets: AtomicU64,
    bytes: AtomicU64,
    errors: [AtomicU64; NCAUSE],
    baseline: Mutex<QueueStatsSnapshot>,
}

/// A copy of one queue's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStatsSnapshot {
    /// Packets moved.
    pub packets: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Errors by cause, indexed like [`ErrorCause::ALL`].
    pub errors: [u64; NCAUSE],
}

impl QueueStatsSnapshot {
    /// Sum of the packet error counters (every cause but [`ErrorCause::CallSkipped`], which
    /// counts notifications, not packets).
    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum::<u64>() - self.errors[ErrorCause::CallSkipped as usize]
    }
    /// One error counter.
    pub fn error(&self, c: ErrorCause) -> u64 {
        self.errors[c as usize]
    }
    fn minus(&self, b: &QueueStatsSnapshot) -> QueueStatsSnapshot {
        let mut r = QueueStatsSnapshot {
            packets: self.packets.wrapping_sub(b.packets),
            bytes: self.bytes.wrapping_sub(b.bytes),
            errors: [0; NCAUSE],
        };
        for i in 0..NCAUSE {
            r.errors[i] = self.errors[i].wrapping_sub(b.errors[i]);
        }
        r
    }
}

#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl QueueStats {
    /// Adds moved packets and bytes (owner thread only).
    #[inline]
    pub fn add(&self, packets: u64, bytes: u64) {
        if packets != 0 {
            bump(&self.packets, packets);
            bump(&self.bytes, bytes);
        }
    }

    /// Counts an error (owner thread only).
    #[inline]
    pub fn error(&self, cause: ErrorCause, n: u64) {
        bump(&self.errors[cause as usize], n);
    }

    fn raw(&self) -> QueueStatsSnapshot {
        let mut s = QueueStatsSnapshot {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            errors: [0; NCAUSE],
        };
        for (i, e) in self.errors.iter().enumerate() {
            s.errors[i] = e.load(Ordering::Relaxed);
        }
        s
    }

    /// Counters since the last reset.
    pub fn snapshot(&self) -> QueueStatsSnapshot {
        let base = *self.baseline.lock().unwrap_or_else(|p| p.into_inner());
        self.raw().minus(&base)
    }

    /// Makes the counters read zero from now on.
    pub fn reset(&self) {
        let now = self.raw();
        *self.baseline.lock().unwrap_or_else(|p| p.into_inner()) = now;
    }
}

/// Port statistics: per-queue snapshots and their sums, in DPDK's terms.
#[derive(Clone, Debug, Default)]
pub struct PortStats {
    /// Per Rx queue.
    pub rx_queues: Vec<QueueStatsSnapshot>,
    /// Per Tx queue.
    pub tx_queues: Vec<QueueStatsSnapshot>,
}

impl PortStats {
    /// Builds port statistics from queue counters.
    pub fn collect<'a>(
        rx: impl IntoIterator<Item = &'a QueueStats>,
        tx: impl IntoIterator<Item = &'a QueueStats>,
    ) -> PortStats {
        PortStats {
            rx_queues: rx.into_iter().map(|q| q.snapshot()).collect(),
            tx_queues: tx.into_iter().map(|q| q.snapshot()).collect(),
        }
    }
    /// Received packets (DPDK `ipackets`).
    pub fn ipackets(&self) -> u64 {
        self.rx_queues.iter().map(|q| q.packets).sum()
    }
    /// Sent packets (`opackets`).
    pub fn opackets(&self) -> u64 {
        self.tx_queues.iter().map(|q| q.packets).sum()
    }
    /// Received bytes (`ibytes`).
    pub fn ibytes(&self) -> u64 {
        self.rx_queues.iter().map(|q| q.bytes).sum()
    }
    /// Sent bytes (`obytes`).
    pub fn obytes(&self) -> u64 {
        self.tx_queues.iter().map(|q| q.bytes).sum()
    }
    /// Packets the port could not receive for lack of mbufs (`rx_nombuf`).
    pub fn rx_nombuf(&self) -> u64 {
        self.rx_queues
            .iter()
            .map(|q| q.error(ErrorCause::NoMbuf))
            .sum()
    }
    /// Receive errors other than mbuf shortage (`ierrors`).
    pub fn ierrors(&self) -> u64 {
        self.rx_queues
            .iter()
            .map(|q| q.total_errors() - q.error(ErrorCause::NoMbuf) - q.error(ErrorCause::RingFull))
            .sum()
    }
    /// Packets dropped because the peer had no room (`imissed` on the vhost side's Tx is
    /// reported as `oerrors` by DPDK; we report it as Tx errors too).
    pub fn oerrors(&self) -> u64 {
        self.tx_queues.iter().map(|q| q.total_errors()).sum()
    }
    /// Extended statistics with DPDK's names plus one counter per error cause and queue.
    pub fn xstats(&self) -> Vec<(String, u64)> {
        let mut v = vec![
            ("rx_good_packets".to_string(), self.ipackets()),
            ("tx_good_packets".to_string(), self.opackets()),
            ("rx_good_bytes".to_string(), self.ibytes()),
            ("tx_good_bytes".to_string(), self.obytes()),
            ("rx_missed_errors".to_string(), 0),
            ("rx_errors".to_string(), self.ierrors()),
            ("tx_errors".to_string(), self.oerrors()),
            ("rx_mbuf_allocation_errors".to_string(), self.rx_nombuf()),
        ];
        for (dir, qs) in [("rx", &self.rx_queues), ("tx", &self.tx_queues)] {
            for (i, q) in qs.iter().enumerate() {
                v.push((format!("{dir}_q{i}_packets"), q.packets));
                v.push((format!("{dir}_q{i}_bytes"), q.bytes));
                for c in ErrorCause::ALL {
                    v.push((format!("{dir}_q{i}_{}", c.name()), q.error(c)));
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_is_a_baseline() {
        let q = QueueStats::default();
        q.add(10, 640);
        q.error(ErrorCause::DescLoop, 2);
        assert_eq!(q.snapshot().packets, 10);
        q.reset();
        assert_eq!(q.snapshot(), QueueStatsSnapshot::default());
        q.add(1, 64);
        let s = PortStats::collect([&q], []);
        assert_eq!(s.ipackets(), 1);
        assert_eq!(s.ibytes(), 64);
        assert!(
            s.xstats()
                .iter()
                .any(|(n, v)| n == "rx_q0_desc_chain_loop" && *v == 0)
        );
    }
}
