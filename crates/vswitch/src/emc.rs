//! The per-PMD exact-match flow cache, in front of the FDB and the router.
//!
//! A hit maps (ingress port, VLAN, source MAC, destination MAC) straight to the action taken
//! for the last such frame, skipping the FDB lookups. An entry is valid only for the
//! [`generation`](crate::snapshot::Shared::generation) it was made in: any FDB change or new
//! configuration bumps the generation and so empties the cache at once. An entry is only made
//! when the source is already learned on the ingress port, so a hit also means no learning is
//! needed; the entry keeps the source's FDB slot to refresh its age.

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send to this port slot.
    Output(u16),
    /// Flood to the bridge's ports that carry the VLAN.
    Flood,
    /// Hand to the bridge's router.
    Route,
    /// Drop, counted as hairpin (destination learned on the ingress port).
    Hairpin,
}

/// The cache key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowKey {
    /// Destination MAC and VLAN, packed like an FDB key.
    pub dst: u64,
    /// Source MAC (low 48 bits) and ingress port slot (high 16).
    pub src: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: FlowKey,
    generation: u64,
    action: Action,
    src_slot: u32,
    hits: u64,
}

/// Entries per PMD thread.
pub const EMC_ENTRIES: usize = 8192;

/// The cache of one PMD thread (not shared).
pub struct Emc {
    entries: Box<[Entry]>,
}

impl std::fmt::Debug for Emc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emc").finish_non_exhaustive()
    }
}

impl Default for Emc {
    fn default() -> Emc {
        Emc {
            entries: vec![
                Entry {
                    key: FlowKey::default(),
                    generation: u64::MAX,
                    action: Action::Flood,
                    src_slot: 0,
                    hits: 0,
                };
                EMC_ENTRIES
            ]
            .into_boxed_slice(),
        }
    }
}

/// One cached flow, for `dump-flows`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FlowDump {
    /// Ingress port slot.
    pub in_port: u16,
    /// VLAN.
    pub vlan: u16,
    /// Source MAC.
    pub src: String,
    /// Destination MAC.
    pub dst: String,
    /// The action, as text (`output:3`, `flood`, `route`, `drop(hairpin)`).
    pub action: String,
    /// Hits since the entry was made.
    pub hits: u64,
}

#[inline]
fn index(k: FlowKey) -> usize {
    let h = (k.dst ^ k.src.rotate_left(23)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> 51) as usize & (EMC_ENTRIES - 1)
}

impl Emc {
    /// The action cached for `key` in `generation`, with the source's FDB slot.
    #[inline]
    pub fn lookup(&mut self, key: FlowKey, generation: u64) -> Option<(Action, u32)> {
        let e = &mut self.entries[index(key)];
        if e.generation == generation && e.key == key {
            e.hits += 1;
            Some((e.action, e.src_slot))
        } else {
            None
        }
    }

    /// Adds `n` hits to the entry of `key` (frames the pipeline switched by the same decision
    /// without looking the cache up again), if it is still cached.
    #[inline]
    pub fn add_hits(&mut self, key: FlowKey, generation: u64, n: u64) {
        let e = &mut self.entries[index(key)];
        if n > 0 && e.generation == generation && e.key == key {
            e.hits += n;
        }
    }

    /// Caches `action` for `key` (replacing whatever shared its bucket).
    #[inline]
    pub fn insert(&mut self, key: FlowKey, generation: u64, action: Action, src_slot: u32) {
        self.entries[index(key)] = Entry {
            key,
            generation,
            action,
            src_slot,
            hits: 0,
        };
    }

    /// The entries valid in `generation`.
    pub fn dump(&self, generation: u64) -> Vec<FlowDump> {
        let mac = |v: u64| {
            let b = v.to_be_bytes();
            format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                b[2], b[3], b[4], b[5], b[6], b[7]
            )
        };
        self.entries
            .iter()
            .filter(|e| e.generation == generation)
            .map(|e| FlowDump {
                in_port: (e.key.src >> 48) as u16,
                vlan: ((e.key.dst >> 48) & 0xfff) as u16,
                src: mac(e.key.src),
                dst: mac(e.key.dst),
                action: match e.action {
                    Action::Output(p) => format!("output:{p}"),
                    Action::Flood => "flood".into(),
                    Action::Route => "route".into(),
                    Action::Hairpin => "drop(hairpin)".into(),
                },
                hits: e.hits,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_miss_and_generation() {
        let mut c = Emc::default();
        let k = FlowKey { dst: 1, src: 2 };
        assert_eq!(c.lookup(k, 0), None);
        c.insert(k, 0, Action::Output(3), 9);
        assert_eq!(c.lookup(k, 0), Some((Action::Output(3), 9)));
        assert_eq!(c.lookup(k, 1), None, "a new generation empties the cache");
        assert_eq!(c.lookup(FlowKey { dst: 1, src: 3 }, 0), None);
        let d = c.dump(0);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].action, "output:3");
        assert_eq!(d[0].hits, 1);
    }
}
