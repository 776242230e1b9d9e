//! IPv4 longest-prefix match in DIR-24-8 form, with one writer and lock-free readers.
//!
//! Two levels, as DPDK's `rte_lpm`:
//! * **tbl24**: 2^24 entries, one per /24, indexed by the top 24 bits of the address. An entry
//!   holds the next hop of the longest route of length ≤ 24 covering the /24, or points to a
//!   tbl8 group when routes longer than /24 exist inside it.
//! * **tbl8 groups**: 256 entries each, indexed by the last byte of the address; their number
//!   is fixed when the table is made ([`new`]).
//!
//! An entry is one `u32`: bit 31 valid, bit 30 "extended" (points to a tbl8 group), bits 24..30
//! the depth (prefix length) of the route it comes from, bits 0..24 the next hop id (or the
//! group index). A lookup is one load of tbl24 and, for an extended entry, one load of tbl8.
//!
//! Both tables are allocated zeroed (`alloc_zeroed`, i.e. fresh anonymous pages for the 64 MiB
//! tbl24), so pages that no route touches are never faulted in: a /16–/24 route touches one
//! 4 KiB page (or two), so a few hundred of them cost about a megabyte of resident memory, not
//! 64 MiB. A route of length L ≤ 24 writes 2^(24-L) entries (4 bytes each): a /8 touches
//! 256 KiB, a /0 (default route) all 64 MiB. The bench example prints the resident memory of
//! its tables.
//!
//! See the [crate documentation](crate) for the reader/writer contract and
//! [`LpmWriter::reclaim`].
//!
//! ```
//! use std::net::Ipv4Addr;
//! use ferrovia_route::lpm;
//!
//! let ip = |s: &str| u32::from(s.parse::<Ipv4Addr>().unwrap());
//! let (mut w, r) = lpm::new(lpm::DEFAULT_TBL8_GROUPS)?;
//! w.add(ip("10.0.0.0"), 8, 1)?;
//! w.add(ip("10.1.2.128"), 25, 2)?;
//! let fwd = r.clone();
//! let t = std::thread::spawn(move || (fwd.lookup(ip("10.1.2.200")), fwd.lookup(ip("10.1.2.1"))));
//! assert_eq!(t.join().unwrap(), (Some(2), Some(1)));
//! w.del(ip("10.1.2.128"), 25)?;
//! assert_eq!(r.lookup(ip("10.1.2.200")), Some(1));
//! // The /24's tbl8 group waits for the readers: reclaim once each passed a quiescent point.
//! assert_eq!(w.pending_reclaim(), 1);
//! assert!(w.add(ip("10.1.2.3"), 16, 1).unwrap_err().to_string().contains("did you mean 10.1.0.0/16?"));
//! # Ok::<(), lpm::LpmError>(())
//! ```

use std::alloc::{self, Layout};
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

const VALID: u32 = 1 << 31;
const EXT: u32 = 1 << 30;
const DEPTH_SHIFT: u32 = 24;
const DEPTH_MASK: u32 = 0x3f;
const VALUE_MASK: u32 = 0x00ff_ffff;
const TBL24_LEN: usize = 1 << 24;
const GROUP_LEN: usize = 256;

/// The largest next hop id: ids are 24 bits wide.
pub const MAX_NEXT_HOP: u32 = VALUE_MASK;
/// The largest number of tbl8 groups (group indices are 24 bits wide; each group is 1 KiB of
/// address space, faulted in only when used).
pub const MAX_TBL8_GROUPS: u32 = 1 << 24;
/// A reasonable number of tbl8 groups: 1024 /24s may hold routes longer than /24 (1 MiB).
pub const DEFAULT_TBL8_GROUPS: u32 = 1024;

/// Why a route operation was refused. The table is unchanged after any error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LpmError {
    /// The prefix length is above 32.
    #[error("prefix length /{len} is out of range: IPv4 prefix lengths are 0..=32")]
    BadPrefixLen {
        /// The length given.
        len: u8,
    },
    /// The prefix has bits set beyond its length. Rejected rather than masked, since it is
    /// usually a typo or a host address given by mistake.
    #[error(
        "{}/{len} has host bits set (did you mean {}/{len}?)",
        Ipv4Addr::from(*prefix),
        Ipv4Addr::from(prefix & mask(*len))
    )]
    HostBitsSet {
        /// The prefix given.
        prefix: u32,
        /// Its length.
        len: u8,
    },
    /// The next hop id does not fit in 24 bits.
    #[error("next hop id {next_hop} is out of range: ids are 24-bit (0..={MAX_NEXT_HOP})")]
    NextHopOutOfRange {
        /// The id given.
        next_hop: u32,
    },
    /// A route longer than /24 needs a tbl8 group for its /24 and none is free.
    #[error(
        "all {max} tbl8 groups are in use ({pending} awaiting reclaim): a route longer than /24 \
         in a new /24 needs one; call reclaim() once readers passed a quiescent point, or \
         raise max_tbl8_groups"
    )]
    Tbl8Exhausted {
        /// The number of groups the table was made with.
        max: u32,
        /// Groups released by deletions that wait for [`LpmWriter::reclaim`].
        pending: u32,
    },
    /// `del` of a route that is not in the table.
    #[error("no route {}/{len} to delete", Ipv4Addr::from(*prefix))]
    NoSuchRoute {
        /// The prefix given.
        prefix: u32,
        /// Its length.
        len: u8,
    },
    /// [`new`] was asked for more tbl8 groups than group indices can address.
    #[error("{requested} tbl8 groups requested: at most {MAX_TBL8_GROUPS} are addressable")]
    TooManyTbl8Groups {
        /// The number asked for.
        requested: u32,
    },
}

/// One route of the table, as listed by [`LpmWriter::rules`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    /// The network address (host bits clear).
    pub prefix: u32,
    /// The prefix length, 0..=32.
    pub len: u8,
    /// The next hop id.
    pub next_hop: u32,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} via {}",
            Ipv4Addr::from(self.prefix),
            self.len,
            self.next_hop
        )
    }
}

/// The network mask of a prefix length (`len` ≤ 32).
#[inline]
pub fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

#[inline]
fn leaf(depth: u8, next_hop: u32) -> u32 {
    VALID | (u32::from(depth) << DEPTH_SHIFT) | next_hop
}

#[inline]
fn depth(e: u32) -> u8 {
    ((e >> DEPTH_SHIFT) & DEPTH_MASK) as u8
}

/// A boxed slice of `n` zeroed atomics, allocated with `alloc_zeroed` so that the pages are
/// only faulted in when written (large allocations are fresh anonymous mappings).
fn zeroed_atomics(n: usize) -> Box<[AtomicU32]> {
    if n == 0 {
        return Box::new([]);
    }
    let layout = Layout::array::<AtomicU32>(n).expect("LPM table size overflows");
    // SAFETY: `layout` has a non-zero size (n > 0).
    let p = unsafe { alloc::alloc_zeroed(layout) }.cast::<AtomicU32>();
    if p.is_null() {
        alloc::handle_alloc_error(layout);
    }
    // SAFETY: `p` is a live allocation of the global allocator with the layout of
    // `[AtomicU32; n]` (what `Box<[AtomicU32]>` frees with), owned by nobody else; all-zero
    // bytes are a valid `AtomicU32` (value 0), so all `n` elements are initialised.
    unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n)) }
}

/// The tables, shared by the writer and all readers.
struct Tables {
    tbl24: Box<[AtomicU32]>,
    tbl8: Box<[AtomicU32]>,
}

/// Makes an empty table with room for `max_tbl8_groups` /24s that hold routes longer than /24
/// ([`DEFAULT_TBL8_GROUPS`] is a good start), and returns its only writer and a first reader
/// (clone it, or ask [`LpmWriter::reader`], for more).
pub fn new(max_tbl8_groups: u32) -> Result<(LpmWriter, LpmReader), LpmError> {
    if max_tbl8_groups > MAX_TBL8_GROUPS {
        return Err(LpmError::TooManyTbl8Groups {
            requested: max_tbl8_groups,
        });
    }
    let t = Arc::new(Tables {
        tbl24: zeroed_atomics(TBL24_LEN),
        tbl8: zeroed_atomics(max_tbl8_groups as usize * GROUP_LEN),
    });
    let r = LpmReader { t: t.clone() };
    let w = LpmWriter {
        t,
        rules: BTreeMap::new(),
        max_groups: max_tbl8_groups,
        next_unused: 0,
        free: Vec::new(),
        pending: Vec::new(),
    };
    Ok((w, r))
}

/// The lookup side: cheap to clone, `Send + Sync`, never blocks.
#[derive(Clone)]
pub struct LpmReader {
    t: Arc<Tables>,
}

impl fmt::Debug for LpmReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LpmReader")
            .field("tbl8_groups", &(self.t.tbl8.len() / GROUP_LEN))
            .finish()
    }
}

impl LpmReader {
    /// The next hop id of the longest route containing `ip` (host byte order, e.g.
    /// `u32::from(Ipv4Addr)`), or `None` when no route does. At most two atomic loads.
    #[inline]
    pub fn lookup(&self, ip: u32) -> Option<u32> {
        self.t.lookup(ip)
    }

    /// Looks up every address of `ips` into the same position of `out` (as many as the
    /// shorter of the two holds).
    #[inline]
    pub fn lookup_bulk(&self, ips: &[u32], out: &mut [Option<u32>]) {
        for (o, &ip) in out.iter_mut().zip(ips) {
            *o = self.t.lookup(ip);
        }
    }
}

impl Tables {
    #[inline]
    fn lookup(&self, ip: u32) -> Option<u32> {
        // Acquire: pairs with the writer's Release store of an extended entry, so the group's
        // contents written before it are seen.
        let e = self.tbl24[(ip >> 8) as usize].load(Ordering::Acquire);
        let e = if e & EXT != 0 {
            let i = ((e & VALUE_MASK) as usize) * GROUP_LEN + (ip & 0xff) as usize;
            self.tbl8[i].load(Ordering::Relaxed)
        } else {
            e
        };
        if e & VALID != 0 {
            Some(e & VALUE_MASK)
        } else {
            None
        }
    }
}

/// The only writer of a table: keeps the routes and updates the tables in place. Not `Clone`.
pub struct LpmWriter {
    t: Arc<Tables>,
    /// Routes by (prefix, length).
    rules: BTreeMap<(u32, u8), u32>,
    max_groups: u32,
    /// Groups `next_unused..max_groups` were never used.
    next_unused: u32,
    /// Groups free for reuse (reclaimed).
    free: Vec<u32>,
    /// Groups folded back into tbl24 that readers may still read.
    pending: Vec<u32>,
}

impl fmt::Debug for LpmWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LpmWriter")
            .field("routes", &self.rules.len())
            .field("tbl8_groups", &self.max_groups)
            .field("tbl8_groups_in_use", &self.tbl8_groups_in_use())
            .field("pending_reclaim", &self.pending.len())
            .finish()
    }
}

impl LpmWriter {
    /// Another reader of this table.
    pub fn reader(&self) -> LpmReader {
        LpmReader { t: self.t.clone() }
    }

    /// Adds the route `prefix/len` via `next_hop`, or replaces the next hop of that exact
    /// route. Returns the next hop it replaced. `prefix` is in host byte order and must have no
    /// bits set beyond `len` ([`LpmError::HostBitsSet`]).
    pub fn add(&mut self, prefix: u32, len: u8, next_hop: u32) -> Result<Option<u32>, LpmError> {
        check(prefix, len)?;
        if next_hop > MAX_NEXT_HOP {
            return Err(LpmError::NextHopOutOfRange { next_hop });
        }
        let e = leaf(len, next_hop);
        // A handle of our own, so that `self.alloc_group()` can borrow `self` meanwhile.
        let t = Arc::clone(&self.t);
        if len <= 24 {
            let start = (prefix >> 8) as usize;
            for slot in &t.tbl24[start..start + (1usize << (24 - len))] {
                let cur = slot.load(Ordering::Relaxed);
                if cur & EXT != 0 {
                    for s in group(&t.tbl8, cur & VALUE_MASK) {
                        if depth(s.load(Ordering::Relaxed)) <= len {
                            s.store(e, Ordering::Relaxed);
                        }
                    }
                } else if depth(cur) <= len {
                    slot.store(e, Ordering::Release);
                }
            }
        } else {
            let slot = &t.tbl24[(prefix >> 8) as usize];
            let cur = slot.load(Ordering::Relaxed);
            let lo = (prefix & 0xff) as usize;
            let range = lo..lo + (1usize << (32 - len));
            if cur & EXT != 0 {
                for s in &group(&t.tbl8, cur & VALUE_MASK)[range] {
                    if depth(s.load(Ordering::Relaxed)) <= len {
                        s.store(e, Ordering::Relaxed);
                    }
                }
            } else {
                let g = self.alloc_group()?;
                // The group is unreachable until the Release store below publishes it.
                for (i, s) in group(&t.tbl8, g).iter().enumerate() {
                    s.store(if range.contains(&i) { e } else { cur }, Ordering::Relaxed);
                }
                slot.store(VALID | EXT | g, Ordering::Release);
            }
        }
        Ok(self.rules.insert((prefix, len), next_hop))
    }

    /// Deletes the route `prefix/len` and returns its next hop. Addresses it covered now use
    /// the longest shorter route covering them, or no route. When this removes the last route
    /// longer than /24 of a /24, that /24's tbl8 group goes to the pending list (see
    /// [`reclaim`](Self::reclaim)).
    pub fn del(&mut self, prefix: u32, len: u8) -> Result<u32, LpmError> {
        check(prefix, len)?;
        let Some(next_hop) = self.rules.remove(&(prefix, len)) else {
            return Err(LpmError::NoSuchRoute { prefix, len });
        };
        // The covering route: the longest shorter route containing the prefix.
        let repl = (0..len)
            .rev()
            .find_map(|l| {
                self.rules
                    .get(&(prefix & mask(l), l))
                    .map(|&nh| leaf(l, nh))
            })
            .unwrap_or(0);
        let t = &*self.t;
        if len <= 24 {
            let start = (prefix >> 8) as usize;
            for slot in &t.tbl24[start..start + (1usize << (24 - len))] {
                let cur = slot.load(Ordering::Relaxed);
                if cur & EXT != 0 {
                    for s in group(&t.tbl8, cur & VALUE_MASK) {
                        if depth(s.load(Ordering::Relaxed)) <= len {
                            s.store(repl, Ordering::Relaxed);
                        }
                    }
                } else if depth(cur) <= len {
                    slot.store(repl, Ordering::Release);
                }
            }
        } else {
            let slot = &t.tbl24[(prefix >> 8) as usize];
            let cur = slot.load(Ordering::Relaxed);
            debug_assert!(
                cur & EXT != 0,
                "a route longer than /24 without its tbl8 group"
            );
            let g = cur & VALUE_MASK;
            let entries = group(&t.tbl8, g);
            let lo = (prefix & 0xff) as usize;
            for s in &entries[lo..lo + (1usize << (32 - len))] {
                if depth(s.load(Ordering::Relaxed)) <= len {
                    s.store(repl, Ordering::Relaxed);
                }
            }
            // Fold the group back when no route longer than /24 is left in it: then all its
            // entries come from the same route of length <= 24 (or none).
            let first = entries[0].load(Ordering::Relaxed);
            if (first & VALID == 0 || depth(first) <= 24)
                && entries.iter().all(|s| s.load(Ordering::Relaxed) == first)
            {
                slot.store(first, Ordering::Release);
                self.pending.push(g);
            }
        }
        Ok(next_hop)
    }

    /// The next hop of the exact route `prefix/len`, if present.
    pub fn get(&self, prefix: u32, len: u8) -> Option<u32> {
        self.rules.get(&(prefix, len)).copied()
    }

    /// Every route, ordered by prefix then length.
    pub fn rules(&self) -> impl ExactSizeIterator<Item = Route> + '_ {
        self.rules.iter().map(|(&(prefix, len), &next_hop)| Route {
            prefix,
            len,
            next_hop,
        })
    }

    /// The number of routes.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the table has no route.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// A lookup through the writer (same result as a reader's).
    pub fn lookup(&self, ip: u32) -> Option<u32> {
        self.t.lookup(ip)
    }

    /// The number of tbl8 groups the table was made with.
    pub fn max_tbl8_groups(&self) -> u32 {
        self.max_groups
    }

    /// The tbl8 groups in use by /24s holding routes longer than /24.
    pub fn tbl8_groups_in_use(&self) -> u32 {
        self.next_unused - self.free.len() as u32 - self.pending.len() as u32
    }

    /// The tbl8 groups released by deletions that wait for [`reclaim`](Self::reclaim).
    pub fn pending_reclaim(&self) -> u32 {
        self.pending.len() as u32
    }

    /// Makes the pending tbl8 groups (released by earlier deletions) free for reuse and
    /// returns how many there were.
    ///
    /// **Contract**: call it only once every reader has passed a quiescent point (held no
    /// lookup in progress) at some moment *after* the last [`del`](Self::del) that released
    /// a group; i.e. after a grace period that started once the changes were made. A lookup
    /// that loaded a released group's pointer before the deletion may still read the group
    /// until then. Breaking the contract is not memory-unsafe (the memory stays allocated
    /// as long as any reader exists), but such a lookup may return a next hop of a route
    /// added later in another /24.
    pub fn reclaim(&mut self) -> u32 {
        let n = self.pending.len() as u32;
        self.free.append(&mut self.pending);
        n
    }

    fn alloc_group(&mut self) -> Result<u32, LpmError> {
        if let Some(g) = self.free.pop() {
            Ok(g)
        } else if self.next_unused < self.max_groups {
            self.next_unused += 1;
            Ok(self.next_unused - 1)
        } else {
            Err(LpmError::Tbl8Exhausted {
                max: self.max_groups,
                pending: self.pending.len() as u32,
            })
        }
    }
}

fn check(prefix: u32, len: u8) -> Result<(), LpmError> {
    if len > 32 {
        return Err(LpmError::BadPrefixLen { len });
    }
    if prefix & !mask(len) != 0 {
        return Err(LpmError::HostBitsSet { prefix, len });
    }
    Ok(())
}

#[inline]
fn group(tbl8: &[AtomicU32], g: u32) -> &[AtomicU32] {
    let base = g as usize * GROUP_LEN;
    &tbl8[base..base + GROUP_LEN]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    #[test]
    fn basic_longest_match() {
        let (mut w, r) = new(4).unwrap();
        assert_eq!(r.lookup(ip("10.1.2.3")), None);
        w.add(ip("10.0.0.0"), 8, 1).unwrap();
        w.add(ip("10.1.0.0"), 16, 2).unwrap();
        w.add(ip("10.1.2.0"), 24, 3).unwrap();
        w.add(ip("10.1.2.128"), 25, 4).unwrap();
        w.add(ip("10.1.2.200"), 32, 5).unwrap();
        assert_eq!(r.lookup(ip("10.9.9.9")), Some(1));
        assert_eq!(r.lookup(ip("10.1.9.9")), Some(2));
        assert_eq!(r.lookup(ip("10.1.2.3")), Some(3));
        assert_eq!(r.lookup(ip("10.1.2.129")), Some(4));
        assert_eq!(r.lookup(ip("10.1.2.200")), Some(5));
        assert_eq!(r.lookup(ip("11.0.0.0")), None);
        assert_eq!(w.tbl8_groups_in_use(), 1);
        // Replace.
        assert_eq!(w.add(ip("10.1.0.0"), 16, 7).unwrap(), Some(2));
        assert_eq!(r.lookup(ip("10.1.9.9")), Some(7));
        // Delete falls back to the covering route.
        assert_eq!(w.del(ip("10.1.2.0"), 24).unwrap(), 3);
        assert_eq!(r.lookup(ip("10.1.2.3")), Some(7));
        assert_eq!(r.lookup(ip("10.1.2.129")), Some(4));
        w.del(ip("10.1.2.128"), 25).unwrap();
        assert_eq!(w.pending_reclaim(), 0);
        w.del(ip("10.1.2.200"), 32).unwrap();
        assert_eq!(w.pending_reclaim(), 1);
        assert_eq!(w.tbl8_groups_in_use(), 0);
        assert_eq!(r.lookup(ip("10.1.2.200")), Some(7));
        assert_eq!(w.reclaim(), 1);
        let rules: Vec<String> = w.rules().map(|r| r.to_string()).collect();
        assert_eq!(rules, ["10.0.0.0/8 via 1", "10.1.0.0/16 via 7"]);
    }

    #[test]
    fn default_route_and_host_routes() {
        let (mut w, r) = new(2).unwrap();
        w.add(0, 0, 9).unwrap();
        w.add(ip("1.2.3.4"), 32, 1).unwrap();
        assert_eq!(r.lookup(ip("1.2.3.4")), Some(1));
        assert_eq!(r.lookup(ip("1.2.3.5")), Some(9));
        assert_eq!(r.lookup(u32::MAX), Some(9));
        w.del(0, 0).unwrap();
        assert_eq!(r.lookup(ip("1.2.3.5")), None);
        assert_eq!(r.lookup(ip("1.2.3.4")), Some(1));
        w.del(ip("1.2.3.4"), 32).unwrap();
        assert_eq!(r.lookup(ip("1.2.3.4")), None);
        assert_eq!(w.pending_reclaim(), 1);
    }

    #[test]
    fn errors_name_the_problem() {
        let (mut w, _r) = new(1).unwrap();
        let e = w.add(ip("10.1.2.3"), 16, 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "10.1.2.3/16 has host bits set (did you mean 10.1.0.0/16?)"
        );
        assert_eq!(
            w.add(0, 33, 1).unwrap_err(),
            LpmError::BadPrefixLen { len: 33 }
        );
        assert!(
            w.add(0, 8, 1 << 24)
                .unwrap_err()
                .to_string()
                .contains("24-bit")
        );
        assert!(matches!(
            w.del(ip("10.0.0.0"), 8),
            Err(LpmError::NoSuchRoute { .. })
        ));
        w.add(ip("10.0.0.1"), 32, 1).unwrap();
        // The same /24 needs no new group.
        w.add(ip("10.0.0.2"), 32, 2).unwrap();
        let e = w.add(ip("10.0.1.1"), 32, 3).unwrap_err();
        assert_eq!(e, LpmError::Tbl8Exhausted { max: 1, pending: 0 });
        assert!(e.to_string().contains("raise max_tbl8_groups"), "{e}");
        assert_eq!(w.get(ip("10.0.1.1"), 32), None);
        w.del(ip("10.0.0.1"), 32).unwrap();
        w.del(ip("10.0.0.2"), 32).unwrap();
        assert_eq!(
            w.add(ip("10.0.1.1"), 32, 3).unwrap_err(),
            LpmError::Tbl8Exhausted { max: 1, pending: 1 }
        );
        w.reclaim();
        w.add(ip("10.0.1.1"), 32, 3).unwrap();
        assert_eq!(w.lookup(ip("10.0.1.1")), Some(3));
        assert_eq!(w.lookup(ip("10.0.0.1")), None);
        assert!(matches!(
            new(MAX_TBL8_GROUPS + 1),
            Err(LpmError::TooManyTbl8Groups { .. })
        ));
    }

    #[test]
    fn reader_is_send_sync_clone() {
        fn ok<T: Send + Sync + Clone>() {}
        ok::<LpmReader>();
        fn send<T: Send>() {}
        send::<LpmWriter>();
    }
}
