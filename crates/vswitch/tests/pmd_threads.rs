//! Two PMD threads: Rx queues spread over both, ports with one Tx queue fed through their
//! home thread's mailbox, queues moved between threads while traffic runs (pmd-rxq-rebalance),
//! and the cycles-based placement.

mod support;

use std::time::Duration;

use ferrovia_vswitch::config::RxqAssign;
use support::*;

const W: Duration = Duration::from_millis(400);

#[test]
fn two_pmds_mailboxes_and_rebalance() {
    let dir = TempDir::new("pmds");
    let sw = switch(
        (0..4)
            .map(|i| vhost_port(&dir, "br0", &format!("p{i}"), i))
            .collect(),
        |c| c.switch.pmd_threads = 2,
    );
    let ports = sw.ports();
    let pmds: Vec<usize> = ports.iter().map(|p| p.rxqs[0].1).collect();
    assert!(
        pmds.contains(&0) && pmds.contains(&1),
        "round-robin uses both threads: {pmds:?}"
    );
    let mut c: Vec<Container> = (0..4)
        .map(|i| Container::attach(&dir.sock(&format!("p{i}"))))
        .collect();
    wait_links(&sw);
    // Everyone announces itself (a broadcast each), then every pair exchanges unicast.
    for (i, ci) in c.iter_mut().enumerate() {
        ci.send(&[frame(BCAST, mac(i as u8 + 1), None, 60, i as u32)]);
    }
    for ci in c.iter_mut() {
        assert_eq!(ci.recv_n(3, W).len(), 3);
    }
    std::thread::sleep(Duration::from_millis(30));
    for round in 0..3u32 {
        for s in 0..4usize {
            for d in 0..4usize {
                if s == d {
                    continue;
                }
                let f: Vec<Vec<u8>> = (0..16)
                    .map(|k| {
                        frame(
                            mac(d as u8 + 1),
                            mac(s as u8 + 1),
                            None,
                            60 + k,
                            round * 1000 + k as u32,
                        )
                    })
                    .collect();
                c[s].send(&f);
                assert_eq!(c[d].recv_n(16, W), f, "p{s} → p{d}, round {round}");
            }
        }
        if round == 0 {
            // Move queues by measured cycles while the ports stay up.
            sw.set_rxq_assign(RxqAssign::Cycles);
            sw.rebalance().unwrap();
        }
    }
    let st = sw.pmd_stats();
    assert_eq!(st.len(), 2);
    assert!(
        st.iter().all(|p| p.packets > 0),
        "both threads received: {st:?}"
    );
    assert!(
        st.iter().map(|p| p.mailbox_tx).sum::<u64>() > 0,
        "one-queue ports are fed through their home thread's mailbox: {st:?}"
    );
    // Nothing was lost or dropped on the way.
    for p in sw.ports() {
        assert_eq!(p.stats.dropped(), 0, "{}: {:?}", p.name, p.stats.drops);
    }
    // A port added now gets its queue on the thread with less load.
    sw.add_port(&vhost_port(&dir, "br0", "p9", 9)).unwrap();
    assert_eq!(sw.ports().len(), 5);
    sw.shutdown();
}
