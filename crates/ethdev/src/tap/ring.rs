//! The capture ring: a bounded single-producer, single-consumer queue of fixed-size slots,
//! preallocated when a capture starts.
//!
//! One ring serves one queue in one direction. A queue handle is owned by one polling thread,
//! so each ring has exactly one producer (the thread bursting on that queue) and one consumer
//! (the capture's writer thread): the producer never contends with another producer (no
//! compare-and-swap, unlike an MPSC ring shared by all the queues of a capture), and the
//! writer drains the rings of a capture one after the other.
//!
//! Slots are arrays of `AtomicU64` written and read with relaxed ordering (plain moves on the
//! machine); `head` (producer) and `tail` (consumer) carry the release/acquire edges that
//! hand a slot over. This keeps the ring free of `unsafe`.
//!
//! Slot layout, in 64-bit words: `[timestamp_ns, orig_len | cap_len << 32, data...]`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use ferrovia_memory::Mbuf;

#[repr(align(64))]
struct Padded<T>(T);

/// Words of a slot before its data.
const HDR_WORDS: usize = 2;

/// A bounded SPSC ring of captured packets (see the module documentation).
pub struct CaptureRing {
    head: Padded<AtomicUsize>,
    tail: Padded<AtomicUsize>,
    /// Packets published by the producer (written only by it).
    captured: Padded<AtomicU64>,
    /// Packets that found the ring full (written only by the producer).
    drops: AtomicU64,
    mask: usize,
    slot_words: usize,
    slot_bytes: usize,
    words: Box<[AtomicU64]>,
}

impl std::fmt::Debug for CaptureRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureRing")
            .field("slots", &self.slots())
            .field("slot_bytes", &self.slot_bytes)
            .field("captured", &self.captured())
            .field("drops", &self.drops())
            .finish()
    }
}

/// One packet taken from a ring by its consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Captured {
    /// When the burst that carried it was seen, in ns since the Unix epoch.
    pub ts_ns: u64,
    /// The packet's length on the wire.
    pub orig_len: u32,
    /// How many of its bytes were kept (at most the slot size).
    pub cap_len: u32,
}

impl CaptureRing {
    /// A ring of at least `slots` slots (rounded up to a power of two, at least 2), each
    /// holding up to `slot_bytes` bytes of a packet (at least 1).
    pub fn new(slots: usize, slot_bytes: usize) -> CaptureRing {
        let cap = slots.max(2).next_power_of_two();
        let slot_bytes = slot_bytes.max(1);
        let slot_words = HDR_WORDS + slot_bytes.div_ceil(8);
        let words = (0..cap * slot_words).map(|_| AtomicU64::new(0)).collect();
        CaptureRing {
            head: Padded(AtomicUsize::new(0)),
            tail: Padded(AtomicUsize::new(0)),
            captured: Padded(AtomicU64::new(0)),
            drops: AtomicU64::new(0),
            mask: cap - 1,
            slot_words,
            slot_bytes,
            words,
        }
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.mask + 1
    }

    /// Most bytes of a packet a slot keeps.
    pub fn slot_bytes(&self) -> usize {
        self.slot_bytes
    }

    /// Packets published so far.
    pub fn captured(&self) -> u64 {
        self.captured.0.load(Ordering::Relaxed)
    }

    /// Packets that did not fit so far (capture drops).
    pub fn drops(&self) -> u64 {
        self.drops.load(Ordering::Relaxed)
    }

    /// Packets published and not yet taken (a snapshot).
    pub fn len(&self) -> usize {
        let h = self.head.0.load(Ordering::Acquire);
        let t = self.tail.0.load(Ordering::Acquire);
        h.wrapping_sub(t).min(self.slots())
    }

    /// True when no packet waits (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Producer: copies up to `snaplen` bytes of as many of `pkts` as there are free slots
    /// into the slots after the head, without publishing them. Returns how many were copied.
    pub fn stage(&self, ts_ns: u64, snaplen: usize, pkts: &[Mbuf]) -> usize {
        let head = self.head.0.load(Ordering::Relaxed);
        let tail = self.tail.0.load(Ordering::Acquire);
        let free = self.slots() - head.wrapping_sub(tail);
        let n = pkts.len().min(free);
        let limit = snaplen.min(self.slot_bytes);
        for (i, m) in pkts[..n].iter().enumerate() {
            let base = (head.wrapping_add(i) & self.mask) * self.slot_words;
            let slot = &self.words[base..base + self.slot_words];
            let orig = m.pkt_len();
            let cap = orig.min(limit);
            slot[0].store(ts_ns, Ordering::Relaxed);
            slot[1].store(
                (orig.min(u32::MAX as usize) as u64) | ((cap as u64) << 32),
                Ordering::Relaxed,
            );
            let mut w = WordWriter::new(&slot[HDR_WORDS..]);
            let mut left = cap;
            for seg in m.segments() {
                if left == 0 {
                    break;
                }
                let take = seg.len().min(left);
                w.put(&seg[..take]);
                left -= take;
            }
            w.finish();
        }
        n
    }

    /// Producer: publishes the first `min(staged, done)` staged slots and counts the packets
    /// of the `done` ones that were not staged as drops. (On receive, `done` is the burst; on
    /// transmit, the packets the driver took, which are the first ones offered.)
    pub fn commit(&self, staged: usize, done: usize) {
        let k = staged.min(done);
        if k > 0 {
            let head = self.head.0.load(Ordering::Relaxed);
            self.head.0.store(head.wrapping_add(k), Ordering::Release);
            let c = self.captured.0.load(Ordering::Relaxed);
            self.captured.0.store(c + k as u64, Ordering::Relaxed);
        }
        if done > k {
            let d = self.drops.load(Ordering::Relaxed);
            self.drops.store(d + (done - k) as u64, Ordering::Relaxed);
        }
    }

    /// Consumer: takes the oldest packet, writing its kept bytes to the end of `out`.
    pub fn pop(&self, out: &mut Vec<u8>) -> Option<Captured> {
        let mut got = None;
        self.pop_batch(1, &mut Vec::new(), |c, data| {
            out.extend_from_slice(data);
            got = Some(c);
        });
        got
    }

    /// Consumer: takes up to `max` of the oldest packets, handing each with its kept bytes to
    /// `f` (`scratch` holds the bytes; the slots are released once, after the last one).
    /// Returns how many were taken.
    pub fn pop_batch(
        &self,
        max: usize,
        scratch: &mut Vec<u8>,
        mut f: impl FnMut(Captured, &[u8]),
    ) -> usize {
        let tail = self.tail.0.load(Ordering::Relaxed);
        let head = self.head.0.load(Ordering::Acquire);
        let n = head.wrapping_sub(tail).min(max);
        for i in 0..n {
            let base = (tail.wrapping_add(i) & self.mask) * self.slot_words;
            let slot = &self.words[base..base + self.slot_words];
            let ts_ns = slot[0].load(Ordering::Relaxed);
            let lens = slot[1].load(Ordering::Relaxed);
            let (orig_len, cap_len) = (lens as u32, (lens >> 32) as u32);
            let words = (cap_len as usize).div_ceil(8);
            scratch.resize(words * 8, 0);
            for (dst, w) in scratch
                .chunks_exact_mut(8)
                .zip(&slot[HDR_WORDS..HDR_WORDS + words])
            {
                dst.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
            }
            f(
                Captured {
                    ts_ns,
                    orig_len,
                    cap_len,
                },
                &scratch[..cap_len as usize],
            );
        }
        if n > 0 {
            self.tail.0.store(tail.wrapping_add(n), Ordering::Release);
        }
        n
    }
}

/// Packs bytes into consecutive words of a slot.
struct WordWriter<'a> {
    words: &'a [AtomicU64],
    at: usize,
    acc: [u8; 8],
    fill: usize,
}

impl<'a> WordWriter<'a> {
    fn new(words: &'a [AtomicU64]) -> Self {
        WordWriter {
            words,
            at: 0,
            acc: [0; 8],
            fill: 0,
        }
    }

    fn put(&mut self, mut s: &[u8]) {
        if self.fill > 0 {
            let take = (8 - self.fill).min(s.len());
            self.acc[self.fill..self.fill + take].copy_from_slice(&s[..take]);
            self.fill += take;
            s = &s[take..];
            if self.fill < 8 {
                return;
            }
            self.flush_acc();
        }
        let mut chunks = s.chunks_exact(8);
        for c in &mut chunks {
            let v = u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
            self.words[self.at].store(v, Ordering::Relaxed);
            self.at += 1;
        }
        let r = chunks.remainder();
        self.acc[..r.len()].copy_from_slice(r);
        self.fill = r.len();
    }

    fn flush_acc(&mut self) {
        self.words[self.at].store(u64::from_ne_bytes(self.acc), Ordering::Relaxed);
        self.at += 1;
        self.fill = 0;
        self.acc = [0; 8];
    }

    fn finish(mut self) {
        if self.fill > 0 {
            self.flush_acc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrovia_memory::{Mempool, MempoolConfig};

    fn pool(name: &str) -> Mempool {
        Mempool::new(MempoolConfig {
            name: name.into(),
            count: 64,
            ..Default::default()
        })
        .unwrap()
    }

    fn pkt(p: &Mempool, bytes: &[u8]) -> Mbuf {
        let mut m = p.alloc().unwrap();
        m.append(bytes.len()).unwrap().copy_from_slice(bytes);
        m
    }

    #[test]
    fn packets_go_through_truncated_to_snaplen_and_full_ring_drops() {
        let p = pool("capring1");
        let r = CaptureRing::new(4, 64);
        let a: Vec<u8> = (0..100u8).collect();
        let b: Vec<u8> = (0..13u8).collect();
        let pkts = vec![pkt(&p, &a), pkt(&p, &b)];
        assert_eq!(r.stage(7, 50, &pkts), 2);
        r.commit(2, 2);
        let mut out = Vec::new();
        let c = r.pop(&mut out).unwrap();
        assert_eq!((c.ts_ns, c.orig_len, c.cap_len), (7, 100, 50));
        assert_eq!(out, &a[..50]);
        out.clear();
        let c = r.pop(&mut out).unwrap();
        assert_eq!((c.orig_len, c.cap_len), (13, 13));
        assert_eq!(out, b);
        assert!(r.pop(&mut out).is_none());
        // 6 packets into 4 slots: 2 drops.
        let six: Vec<Mbuf> = (0..6).map(|i| pkt(&p, &[i; 9])).collect();
        let s = r.stage(8, 64, &six);
        assert_eq!(s, 4);
        r.commit(s, 6);
        assert_eq!((r.captured(), r.drops()), (6, 2));
        // Transmit: 4 staged, the driver took 1: one published, no drop.
        out.clear();
        while r.pop(&mut out).is_some() {}
        let s = r.stage(9, 64, &six);
        r.commit(s, 1);
        assert_eq!(r.len(), 1);
        assert_eq!((r.captured(), r.drops()), (7, 2));
    }

    #[test]
    fn chained_mbufs_are_copied_across_segments() {
        let p = pool("capring2");
        let mut m = pkt(&p, &[1, 2, 3]);
        m.chain(pkt(&p, &[4, 5, 6, 7, 8, 9, 10, 11, 12, 13]));
        m.chain(pkt(&p, &[14]));
        let r = CaptureRing::new(2, 64);
        let s = r.stage(1, 12, std::slice::from_ref(&m));
        r.commit(s, 1);
        let mut out = Vec::new();
        let c = r.pop(&mut out).unwrap();
        assert_eq!((c.orig_len, c.cap_len), (14, 12));
        assert_eq!(out, (1..=12).collect::<Vec<u8>>());
    }

    #[test]
    fn producer_and_consumer_threads_see_every_packet_in_order() {
        let p = pool("capring3");
        let r = std::sync::Arc::new(CaptureRing::new(8, 16));
        let r2 = r.clone();
        let consumer = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut out = Vec::new();
            while seen.len() < 2000 {
                out.clear();
                match r2.pop(&mut out) {
                    Some(c) => seen.push((c.ts_ns, out.clone())),
                    None => std::thread::yield_now(),
                }
            }
            seen
        });
        let mut i = 0u64;
        while i < 2000 {
            let m = pkt(&p, &i.to_le_bytes());
            let s = r.stage(i, 16, std::slice::from_ref(&m));
            r.commit(s, s);
            i += s as u64;
        }
        let seen = consumer.join().unwrap();
        for (k, (ts, data)) in seen.iter().enumerate() {
            assert_eq!(*ts, k as u64);
            assert_eq!(data, &(k as u64).to_le_bytes());
        }
    }
}
