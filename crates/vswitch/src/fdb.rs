//! The forwarding database: (MAC, VLAN) → port, one table per bridge.
//!
//! One writer (the switch's control thread, which applies the learning requests the PMD
//! threads queue) and any number of lock-free readers (the PMD threads). The table is open
//! addressing with linear probing over three arrays of atomics:
//!
//! - `keys[i]`: the MAC and VLAN, or EMPTY, or TOMBSTONE (a deleted entry; probes go on past it);
//! - `vals[i]`: the port slot plus one, with a 48-bit tag derived from the key in the upper
//!   bits. A reader that finds its key checks the tag of the value it then reads, so a value
//!   written for another key (the slot was freed and reused between the two loads) is never
//!   taken for its own: it reads as a miss and the frame is flooded, never misdelivered;
//! - `seen[i]`: the coarse second the source was last seen, stored by the PMD threads (a
//!   relaxed store, only when the second changed) and read by the ager.
//!
//! Entries never move while they live, so a probe is never fooled by a relocation. Deletion
//! leaves a tombstone; the writer reuses tombstones and clears the ones that end a probe chain.
//! The table holds four slots per allowed entry, so probes stay short at the limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const EMPTY: u64 = 0;
const TOMBSTONE: u64 = u64::MAX;
const PRESENT: u64 = 1 << 62;

/// A (MAC, VLAN) key, packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FdbKey(u64);

impl FdbKey {
    /// The key of `mac` on `vlan`.
    #[inline]
    pub fn new(mac: &[u8; 6], vlan: u16) -> FdbKey {
        let m = u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]);
        FdbKey(PRESENT | ((vlan as u64 & 0xfff) << 48) | m)
    }
    /// The MAC address.
    pub fn mac(self) -> [u8; 6] {
        let b = self.0.to_be_bytes();
        [b[2], b[3], b[4], b[5], b[6], b[7]]
    }
    /// The VLAN id.
    pub fn vlan(self) -> u16 {
        ((self.0 >> 48) & 0xfff) as u16
    }
    /// The packed form (for flow-cache keys).
    #[inline]
    pub fn raw(self) -> u64 {
        self.0
    }
    #[inline]
    fn hash(self) -> u64 {
        let x = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^ (x >> 29)
    }
    #[inline]
    fn tag(self) -> u64 {
        // 48 bits derived from the key by a second multiplier (0 is fine: the port part is
        // never 0 in a live value).
        (self.0.wrapping_mul(0xc2b2_ae3d_27d4_eb4f) >> 16) << 16
    }
}

/// The shared table: readers use it through `&self` from any thread.
pub struct FdbTable {
    keys: Box<[AtomicU64]>,
    vals: Box<[AtomicU64]>,
    seen: Box<[AtomicU32]>,
    mask: usize,
}

impl std::fmt::Debug for FdbTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdbTable")
            .field("slots", &(self.mask + 1))
            .finish()
    }
}

/// Where a lookup found its key: the port and the slot (for [`FdbTable::touch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdbHit {
    /// Port slot the address was learned on.
    pub port: u16,
    /// Table slot of the entry.
    pub slot: u32,
}

impl FdbTable {
    fn with_slots(slots: usize) -> FdbTable {
        let slots = slots.next_power_of_two().max(64);
        FdbTable {
            keys: (0..slots).map(|_| AtomicU64::new(EMPTY)).collect(),
            vals: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            seen: (0..slots).map(|_| AtomicU32::new(0)).collect(),
            mask: slots - 1,
        }
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.mask + 1
    }

    /// Looks `key` up; lock-free, safe against a concurrent writer.
    #[inline]
    pub fn lookup(&self, key: FdbKey) -> Option<FdbHit> {
        let mut i = key.hash() as usize & self.mask;
        for _ in 0..=self.mask {
            let k = self.keys[i].load(Ordering::Acquire);
            if k == key.0 {
                let v = self.vals[i].load(Ordering::Acquire);
                if v & !0xffff != key.tag() || v & 0xffff == 0 {
                    return None;
                }
                return Some(FdbHit {
                    port: (v & 0xffff) as u16 - 1,
                    slot: i as u32,
                });
            }
            if k == EMPTY {
                return None;
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Records that the entry in `slot` was seen at second `now` (a store only when the
    /// second changed, so a busy source costs no cache-line traffic between threads).
    #[inline]
    pub fn touch(&self, slot: u32, now: u32) {
        if let Some(s) = self.seen.get(slot as usize)
            && s.load(Ordering::Relaxed) != now
        {
            s.store(now, Ordering::Relaxed);
        }
    }
}

/// What learning an address did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// A new entry.
    New,
    /// The address moved from another port (a MAC move).
    Moved {
        /// The port it was on.
        from: u16,
    },
    /// Already there on that port; its time was refreshed.
    Refreshed,
    /// The bridge's FDB limit is reached: not learned.
    Full,
}

/// One FDB entry, for display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdbEntry {
    /// The address and VLAN.
    pub key: FdbKey,
    /// Port slot.
    pub port: u16,
    /// Second it was last seen.
    pub seen: u32,
}

/// The single writer of a table.
#[derive(Debug)]
pub struct FdbWriter {
    table: Arc<FdbTable>,
    len: usize,
    tombstones: usize,
    limit: usize,
}

impl FdbWriter {
    /// A table that holds up to `limit` entries.
    pub fn new(limit: usize) -> FdbWriter {
        let limit = limit.max(1);
        FdbWriter {
            table: Arc::new(FdbTable::with_slots(limit.saturating_mul(4))),
            len: 0,
            tombstones: 0,
            limit,
        }
    }

    /// The table, for readers.
    pub fn table(&self) -> Arc<FdbTable> {
        self.table.clone()
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entry limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Learns that `key` is behind `port`, at second `now`.
    pub fn learn(&mut self, key: FdbKey, port: u16, now: u32) -> Learned {
        let t = &*self.table;
        let val = key.tag() | (port as u64 + 1);
        if let Some(hit) = t.lookup(key) {
            t.seen[hit.slot as usize].store(now, Ordering::Relaxed);
            if hit.port == port {
                return Learned::Refreshed;
            }
            t.vals[hit.slot as usize].store(val, Ordering::Release);
            return Learned::Moved { from: hit.port };
        }
        if self.len >= self.limit || self.len + self.tombstones >= t.slots() - t.slots() / 8 {
            return Learned::Full;
        }
        let mut i = key.hash() as usize & t.mask;
        loop {
            let k = t.keys[i].load(Ordering::Relaxed);
            if k == EMPTY || k == TOMBSTONE {
                if k == TOMBSTONE {
                    self.tombstones -= 1;
                }
                // Value first (zero: readers that find the key see a miss until the real
                // value lands), then the key, then the value.
                t.vals[i].store(0, Ordering::Release);
                t.seen[i].store(now, Ordering::Relaxed);
                t.keys[i].store(key.0, Ordering::Release);
                t.vals[i].store(val, Ordering::Release);
                self.len += 1;
                return Learned::New;
            }
            i = (i + 1) & t.mask;
        }
    }

    /// Removes `key`; true when it was there.
    pub fn remove(&mut self, key: FdbKey) -> bool {
        match self.table.lookup(key) {
            Some(hit) => {
                self.remove_slot(hit.slot as usize);
                true
            }
            None => false,
        }
    }

    fn remove_slot(&mut self, i: usize) {
        let t = &*self.table;
        t.vals[i].store(0, Ordering::Release);
        t.keys[i].store(TOMBSTONE, Ordering::Release);
        self.len -= 1;
        self.tombstones += 1;
        // A tombstone followed by an empty slot ends a probe chain: clear it and the
        // tombstones just before it (no probe can need to pass them).
        let mut j = i;
        if t.keys[(j + 1) & t.mask].load(Ordering::Relaxed) == EMPTY {
            while t.keys[j].load(Ordering::Relaxed) == TOMBSTONE {
                t.keys[j].store(EMPTY, Ordering::Release);
                self.tombstones -= 1;
                j = (j + t.mask) & t.mask;
            }
        }
    }

    /// Removes every entry not seen for more than `aging` seconds at second `now`; returns
    /// how many went.
    pub fn age(&mut self, now: u32, aging: u32) -> usize {
        self.remove_where(|_, _, seen| now.wrapping_sub(seen) > aging)
    }

    /// Removes every entry on `port`; returns how many went.
    pub fn flush_port(&mut self, port: u16) -> usize {
        self.remove_where(|_, p, _| p == port)
    }

    /// Removes every entry; returns how many went.
    pub fn flush(&mut self) -> usize {
        self.remove_where(|_, _, _| true)
    }

    fn remove_where(&mut self, mut f: impl FnMut(FdbKey, u16, u32) -> bool) -> usize {
        let mut gone = 0;
        for e in self.entries() {
            if f(e.key, e.port, e.seen) && self.remove(e.key) {
                gone += 1;
            }
        }
        gone
    }

    /// Every entry.
    pub fn entries(&self) -> Vec<FdbEntry> {
        let t = &*self.table;
        (0..t.slots())
            .filter_map(|i| {
                let k = t.keys[i].load(Ordering::Acquire);
                let v = t.vals[i].load(Ordering::Acquire);
                (k != EMPTY && k != TOMBSTONE && v & 0xffff != 0).then(|| FdbEntry {
                    key: FdbKey(k),
                    port: (v & 0xffff) as u16 - 1,
                    seen: t.seen[i].load(Ordering::Relaxed),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn mac(n: u32) -> [u8; 6] {
        let b = n.to_be_bytes();
        [2, 0, b[0], b[1], b[2], b[3]]
    }

    #[test]
    fn learn_lookup_move_age() {
        let mut w = FdbWriter::new(16);
        let t = w.table();
        let k = FdbKey::new(&mac(1), 10);
        assert_eq!(k.mac(), mac(1));
        assert_eq!(k.vlan(), 10);
        assert_eq!(t.lookup(k), None);
        assert_eq!(w.learn(k, 3, 100), Learned::New);
        assert_eq!(t.lookup(k).unwrap().port, 3);
        assert_eq!(
            t.lookup(FdbKey::new(&mac(1), 11)),
            None,
            "VLANs are separate"
        );
        assert_eq!(w.learn(k, 3, 101), Learned::Refreshed);
        assert_eq!(w.learn(k, 4, 102), Learned::Moved { from: 3 });
        assert_eq!(t.lookup(k).unwrap().port, 4);
        assert_eq!(w.age(150, 60), 0);
        assert_eq!(w.age(200, 60), 1);
        assert_eq!(t.lookup(k), None);
        assert!(w.is_empty());
    }

    #[test]
    fn limit_holds() {
        let mut w = FdbWriter::new(100);
        let learned = (0..1000)
            .filter(|&n| w.learn(FdbKey::new(&mac(n), 0), 1, 0) == Learned::New)
            .count();
        assert_eq!(learned, 100);
        assert_eq!(w.len(), 100);
        assert_eq!(w.flush_port(1), 100);
        assert_eq!(w.learn(FdbKey::new(&mac(5000), 0), 1, 0), Learned::New);
    }

    #[test]
    fn touch_refreshes_aging() {
        let mut w = FdbWriter::new(4);
        let k = FdbKey::new(&mac(7), 0);
        w.learn(k, 0, 10);
        let hit = w.table().lookup(k).unwrap();
        w.table().touch(hit.slot, 70);
        assert_eq!(w.age(100, 60), 0);
        assert_eq!(w.age(131, 60), 1);
    }

    proptest::proptest! {
        /// Random learn/remove/age sequences agree with a HashMap model, and churn never
        /// fills the table with tombstones.
        #[test]
        fn matches_model(ops in proptest::collection::vec((0u8..4, 0u32..200, 0u16..4), 1..600)) {
            let mut w = FdbWriter::new(64);
            let t = w.table();
            let mut model: HashMap<FdbKey, u16> = HashMap::new();
            for (op, n, port) in ops {
                let k = FdbKey::new(&mac(n), (n % 3) as u16);
                match op {
                    0 | 1 => {
                        let r = w.learn(k, port, 0);
                        if model.len() >= 64 && !model.contains_key(&k) {
                            proptest::prop_assert_eq!(r, Learned::Full);
                        } else {
                            model.insert(k, port);
                        }
                    }
                    2 => {
                        proptest::prop_assert_eq!(w.remove(k), model.remove(&k).is_some());
                    }
                    _ => {
                        let gone = w.flush_port(port);
                        let before = model.len();
                        model.retain(|_, p| *p != port);
                        proptest::prop_assert_eq!(gone, before - model.len());
                    }
                }
                proptest::prop_assert_eq!(w.len(), model.len());
            }
            for n in 0..200 {
                let k = FdbKey::new(&mac(n), (n % 3) as u16);
                proptest::prop_assert_eq!(t.lookup(k).map(|h| h.port), model.get(&k).copied());
            }
        }
    }

    /// A reader racing a writer that learns, moves and deletes never sees a port that was
    /// not the key's port at some point.
    #[test]
    fn concurrent_reader_never_misdelivers() {
        use std::sync::atomic::AtomicBool;
        let mut w = FdbWriter::new(64);
        let t = w.table();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (t, stop) = (t.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut checked = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for n in 0..128u32 {
                        let k = FdbKey::new(&mac(n), 0);
                        if let Some(h) = t.lookup(k) {
                            // Key n only ever lives on ports n % 4 and n % 4 + 4.
                            assert_eq!(h.port % 4, (n % 4) as u16, "key {n} on port {}", h.port);
                            checked += 1;
                        }
                    }
                }
                checked
            })
        };
        let t0 = std::time::Instant::now();
        let mut round = 0u32;
        while t0.elapsed() < std::time::Duration::from_millis(300) {
            round = round.wrapping_add(1);
            let n = round.wrapping_mul(2_654_435_761) % 128;
            let k = FdbKey::new(&mac(n), 0);
            match round % 3 {
                0 => {
                    w.learn(k, (n % 4) as u16, 0);
                }
                1 => {
                    w.learn(k, (n % 4) as u16 + 4, 0);
                }
                _ => {
                    w.remove(k);
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    }
}
