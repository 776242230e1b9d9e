//! A flood of random source MACs: the FDB stops at its limit, forwarding goes on, and the
//! switch's memory stays flat (the table is sized at creation and never grows). Its own test
//! binary, so that no other test's allocations move the RSS reading.

mod support;

use std::time::Duration;

use support::*;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn random_source_flood_keeps_memory_flat() {
    let dir = TempDir::new("flood");
    let sw = switch(
        (0..2)
            .map(|i| vhost_port(&dir, "br0", &format!("p{i}"), i))
            .collect(),
        |c| c.bridge[0].fdb_limit = 4096,
    );
    let mut c0 = Container::attach(&dir.sock("p0"));
    let mut c1 = Container::attach(&dir.sock("p1"));
    wait_links(&sw);
    let mut sent = 0u32;
    let mut flood = |c0: &mut Container, c1: &mut Container, n: u32| {
        for chunk in 0..n / 64 {
            let f: Vec<Vec<u8>> = (0..64u32)
                .map(|i| {
                    let k = (sent + chunk * 64 + i)
                        .wrapping_mul(2_654_435_761)
                        .to_be_bytes();
                    frame(BCAST, [0x02, 0xcc, k[0], k[1], k[2], k[3]], None, 60, i)
                })
                .collect();
            c0.send(&f);
            c1.recv_for(Duration::from_micros(500));
        }
        sent += n;
    };
    // Warm up to the limit, then measure across 16 times as many new sources.
    flood(&mut c0, &mut c1, 8192);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(sw.bridges()[0].fdb_entries, 4096);
    let before = rss_kib();
    flood(&mut c0, &mut c1, 65536);
    std::thread::sleep(Duration::from_millis(50));
    let after = rss_kib();
    let br = &sw.bridges()[0];
    assert_eq!(br.fdb_entries, 4096, "the limit holds");
    assert!(br.counters.fdb_full >= 60_000, "{:?}", br.counters);
    assert!(
        after < before + 4096,
        "RSS grew from {before} KiB to {after} KiB under a random-source flood"
    );
    // And the switch still forwards.
    let f = frame(BCAST, mac(1), None, 60, 1);
    c0.send(std::slice::from_ref(&f));
    assert!(c1.recv_for(Duration::from_millis(200)).contains(&f));
    eprintln!(
        "random-source flood: {sent} sources, FDB {}/{}, fdb_full {}, RSS {before} → {after} KiB",
        br.fdb_entries, br.fdb_limit, br.counters.fdb_full
    );
    sw.shutdown();
}
