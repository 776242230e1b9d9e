//! The LPM against a naive model (every route checked for every address), with random
//! sequences of adds, deletes and reclaims; and readers racing the writer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferrovia_route::lpm::{self, LpmError, mask};
use proptest::prelude::*;

/// The naive model: the longest route containing `ip`.
fn model_lookup(rules: &BTreeMap<(u32, u8), u32>, ip: u32) -> Option<u32> {
    rules
        .iter()
        .filter(|&(&(p, l), _)| ip & mask(l) == p)
        .max_by_key(|&(&(_, l), _)| l)
        .map(|(_, &nh)| nh)
}

#[derive(Debug, Clone)]
enum Op {
    Add {
        addr: u32,
        len: u8,
        nh: u32,
    },
    /// Deletes the `n % len`-th route, or a route that is not there when the model is empty.
    Del {
        n: usize,
        addr: u32,
        len: u8,
    },
    Reclaim,
}

fn len_strategy(short: bool) -> impl Strategy<Value = u8> {
    // Short prefixes write up to 2^24 entries each (slow in a debug build): only in a test of
    // their own, with few cases.
    let s = u32::from(short);
    prop_oneof![
        s => Just(0u8),
        s => 1u8..=7,
        3 => 8u8..=15,
        6 => 16u8..=24,
        9 => 25u8..=32,
    ]
}

fn addr_strategy() -> impl Strategy<Value = u32> {
    // A few bases with random low bits, so that routes nest and share /24s.
    (
        prop::sample::select(vec![
            0x0a00_0000u32,
            0x0a01_0200,
            0xc0a8_0000,
            0xffff_ff00,
            0x0000_0000,
            0x8000_0000,
        ]),
        any::<u32>(),
        0u32..=32,
    )
        .prop_map(|(base, r, bits)| {
            // Mostly a few random low bits (close to the base); sometimes a random first byte.
            let low = r & 0x0000_0fff & (u32::MAX >> (32 - bits.max(1)));
            let high = if bits >= 31 { r & 0xff00_0000 } else { 0 };
            base ^ low ^ high
        })
}

fn op_strategy(short: bool) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (addr_strategy(), len_strategy(short), 0u32..1000)
            .prop_map(|(addr, len, nh)| Op::Add { addr, len, nh }),
        3 => (any::<usize>(), addr_strategy(), len_strategy(short))
            .prop_map(|(n, addr, len)| Op::Del { n, addr, len }),
        1 => Just(Op::Reclaim),
    ]
}

/// Addresses worth checking: both ends of every route and their neighbours.
fn boundaries(rules: &BTreeMap<(u32, u8), u32>) -> Vec<u32> {
    let mut v = Vec::new();
    for &(p, l) in rules.keys() {
        let last = p | !mask(l);
        v.extend([p, last, p.wrapping_sub(1), last.wrapping_add(1)]);
    }
    v
}

const GROUPS: u32 = 4;

fn check_against_model(ops: Vec<Op>, probes: Vec<u32>) -> Result<(), TestCaseError> {
    let (mut w, r) = lpm::new(GROUPS).unwrap();
    let mut model: BTreeMap<(u32, u8), u32> = BTreeMap::new();
    let mut pending = 0u32;
    for op in ops {
        match op {
            Op::Add { addr, len, nh } => {
                let prefix = addr & mask(len);
                let slash24 = prefix >> 8;
                let in_use: BTreeSet<u32> = model
                    .keys()
                    .filter(|&&(_, l)| l > 24)
                    .map(|&(p, _)| p >> 8)
                    .collect();
                let res = w.add(prefix, len, nh);
                if len > 24 && !in_use.contains(&slash24) && in_use.len() as u32 + pending == GROUPS
                {
                    prop_assert_eq!(
                        res,
                        Err(LpmError::Tbl8Exhausted {
                            max: GROUPS,
                            pending
                        })
                    );
                } else {
                    prop_assert_eq!(res, Ok(model.insert((prefix, len), nh)));
                }
            }
            Op::Del { n, addr, len } => {
                if model.is_empty() {
                    let prefix = addr & mask(len);
                    let res = w.del(prefix, len);
                    prop_assert_eq!(res, Err(LpmError::NoSuchRoute { prefix, len }));
                } else {
                    let (&(p, l), &nh) = model.iter().nth(n % model.len()).unwrap();
                    prop_assert_eq!(w.del(p, l), Ok(nh));
                    model.remove(&(p, l));
                    if l > 24 && !model.keys().any(|&(q, m)| m > 24 && q >> 8 == p >> 8) {
                        pending += 1;
                    }
                }
            }
            Op::Reclaim => {
                prop_assert_eq!(w.reclaim(), pending);
                pending = 0;
            }
        }
        let in_use = model
            .keys()
            .filter(|&&(_, l)| l > 24)
            .map(|&(p, _)| p >> 8)
            .collect::<BTreeSet<_>>()
            .len() as u32;
        prop_assert_eq!(w.tbl8_groups_in_use(), in_use);
        prop_assert_eq!(w.pending_reclaim(), pending);
        for ip in boundaries(&model).into_iter().chain(probes.iter().copied()) {
            prop_assert_eq!(r.lookup(ip), model_lookup(&model, ip), "ip {:#010x}", ip);
        }
    }
    let listed: Vec<_> = w.rules().map(|r| ((r.prefix, r.len), r.next_hop)).collect();
    let expected: Vec<_> = model.iter().map(|(&k, &v)| (k, v)).collect();
    prop_assert_eq!(listed, expected);
    // Deleting everything leaves an empty table with every group pending or free.
    let all: Vec<_> = model.keys().copied().collect();
    for (p, l) in all {
        w.del(p, l).unwrap();
    }
    w.reclaim();
    prop_assert_eq!(w.tbl8_groups_in_use(), 0);
    for ip in probes {
        prop_assert_eq!(r.lookup(ip), None);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Prefixes of /8 to /32.
    #[test]
    fn lpm_matches_the_model(
        ops in prop::collection::vec(op_strategy(false), 1..80),
        probes in prop::collection::vec(any::<u32>(), 16),
    ) {
        check_against_model(ops, probes)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    /// With /0 to /7 too (each writes up to the whole tbl24).
    #[test]
    fn lpm_matches_the_model_with_short_prefixes(
        ops in prop::collection::vec(op_strategy(true), 1..40),
        probes in prop::collection::vec(any::<u32>(), 16),
    ) {
        check_against_model(ops, probes)?;
    }
}

proptest! {

    #[test]
    fn host_bits_are_refused_with_the_masked_prefix(addr in any::<u32>(), len in 8u8..=32) {
        let (mut w, _r) = lpm::new(1).unwrap();
        let res = w.add(addr, len, 1);
        if addr & !mask(len) == 0 {
            prop_assert_eq!(res, Ok(None));
        } else {
            let e = res.unwrap_err();
            prop_assert_eq!(&e, &LpmError::HostBitsSet { prefix: addr, len });
            let masked = std::net::Ipv4Addr::from(addr & mask(len));
            let suggestion = format!("(did you mean {masked}/{len}?)");
            prop_assert!(e.to_string().ends_with(&suggestion), "{}", e);
            prop_assert!(w.is_empty());
        }
    }
}

/// A reader looks up continuously while the writer adds and deletes routes (and reclaims
/// tbl8 groups after a grace period, DPDK QSBR style): every next hop it sees is the id of a
/// route that contains the address looked up.
#[test]
fn concurrent_reader_sees_only_installed_routes() {
    // Route k has next hop k. Lengths 21..=32 inside 10.0.0.0/18: 64 /24s for 8 tbl8 groups,
    // so groups run out, are released and are reused.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let routes: Vec<(u32, u8)> = (0..300)
        .map(|_| {
            let len = 21 + (rnd() % 12) as u8;
            let addr = 0x0a00_0000 | (rnd() as u32 & 0x0000_3fff);
            (addr & mask(len), len)
        })
        .collect();
    let routes = Arc::new(routes);
    let (mut w, r) = lpm::new(8).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // The grace-period token: bumped by the writer; each reader copies it into `seen` at its
    // quiescent points (between batches of lookups).
    let token = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(AtomicU64::new(0));
    let reader = {
        let (routes, stop, token, seen) =
            (routes.clone(), stop.clone(), token.clone(), seen.clone());
        std::thread::spawn(move || {
            let mut y = 0x9e37_79b9_7f4a_7c15u64;
            let (mut lookups, mut hits) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    y ^= y << 13;
                    y ^= y >> 7;
                    y ^= y << 17;
                    let ip = 0x0a00_0000 | (y as u32 & 0x0000_3fff);
                    lookups += 1;
                    if let Some(nh) = r.lookup(ip) {
                        hits += 1;
                        let &(p, l) = routes
                            .get(nh as usize)
                            .unwrap_or_else(|| panic!("next hop {nh} was never installed"));
                        assert_eq!(ip & mask(l), p, "{ip:#x} got route {nh} of another prefix");
                    }
                }
                // Quiescent point.
                seen.store(token.load(Ordering::Acquire), Ordering::Release);
            }
            (lookups, hits)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    let (mut ops, mut exhausted, mut reclaimed) = (0u64, 0u64, 0u32);
    while Instant::now() < deadline {
        for _ in 0..50 {
            let k = (rnd() % routes.len() as u64) as usize;
            let (p, l) = routes[k];
            if w.get(p, l).is_some() {
                w.del(p, l).unwrap();
            } else {
                match w.add(p, l, k as u32) {
                    Ok(_) => {}
                    Err(LpmError::Tbl8Exhausted { .. }) => exhausted += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            ops += 1;
        }
        if w.pending_reclaim() > 0 {
            // Grace period: wait until the reader copied a token bumped after the changes.
            let t = token.fetch_add(1, Ordering::AcqRel) + 1;
            let wait = Instant::now();
            while seen.load(Ordering::Acquire) < t {
                assert!(!reader.is_finished(), "reader died");
                assert!(wait.elapsed() < Duration::from_secs(10), "reader stuck");
                std::thread::yield_now();
            }
            reclaimed += w.reclaim();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (lookups, hits) = reader.join().expect("reader saw a wrong next hop");
    eprintln!(
        "{ops} writer ops ({exhausted} refused for want of tbl8 groups, {reclaimed} groups \
         reclaimed), {lookups} lookups ({hits} hits)"
    );
    assert!(reclaimed > 0 && hits > 0 && lookups > 1000);
    // And the final table agrees with its own rule list.
    let rules: BTreeMap<(u32, u8), u32> =
        w.rules().map(|r| ((r.prefix, r.len), r.next_hop)).collect();
    for _ in 0..10_000 {
        let ip = 0x0a00_0000 | (rnd() as u32 & 0x0000_3fff);
        assert_eq!(w.lookup(ip), model_lookup(&rules, ip));
    }
}
