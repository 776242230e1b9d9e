//! A hostile vhost-user backend against our virtio-user: used-ring ids out of range or not in
//! flight, lengths larger than the buffers posted, a used index that jumps. Our driver must
//! count them, never crash or hand out corrupt packets, and work again with a good backend.

mod support;

use ferrovia_ethdev::{Burst, PortConf};
use ferrovia_memory::{LcoreCaches, Mempool, MempoolConfig};
use ferrovia_virtqueue::device::RingView;
use ferrovia_virtqueue::layout::UsedElem;
use support::evil_backend::{active, evil_backend, recover};
use support::xstat;

#[test]
fn bad_used_entries_are_counted_and_the_driver_recovers() {
    let dir = std::env::temp_dir().join(format!("ferrovia-evil-be-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("be.sock").display().to_string();
    let pool = Mempool::new(MempoolConfig {
        name: "evil-be".into(),
        count: 2048,
        ..Default::default()
    })
    .unwrap();
    let (shared, conn, h) = evil_backend(&sock);
    let mut vu = ferrovia_pmd::open(
        &format!("net_virtio_user0,path={sock},in_order=0"),
        &PortConf::new(0, pool.clone()),
    )
    .unwrap();
    vu.start().unwrap();
    let mut tx = vu.tx_queue(0).unwrap();
    let mut rx = vu.rx_queue(0).unwrap();
    let mut caches = LcoreCaches::new();
    let txv = active(&shared, 1);
    let rxv = active(&shared, 0);
    let (RingView::Split(txr), RingView::Split(rxr)) = (txv.ring, rxv.ring) else {
        panic!("split rings expected");
    };
    // Post 4 packets so there is something in flight.
    let mut b = Burst::new();
    for _ in 0..4 {
        let mut m = pool.alloc().unwrap();
        m.append(100).unwrap().fill(7);
        b.push(m);
    }
    assert_eq!(tx.tx_burst(&mut caches, &mut b), 4);
    // 1. A used id out of range, then an id that is not in flight (the same head twice).
    txr.set_used_elem(0, UsedElem { id: 9999, len: 0 });
    txr.set_used_elem(
        1,
        UsedElem {
            id: txr.avail_ring(0) as u32,
            len: 0,
        },
    );
    txr.set_used_elem(
        2,
        UsedElem {
            id: txr.avail_ring(0) as u32,
            len: 0,
        },
    );
    txr.set_used_idx(3);
    let before = xstat(&*vu, "tx_q0_bad_used_id");
    // The driver reclaims lazily: fill the ring (the backend consumes nothing) to make it look.
    let fill = |tx: &mut Box<dyn ferrovia_ethdev::TxQueue>, caches: &mut LcoreCaches| {
        for _ in 0..20 {
            let mut more = Burst::new();
            for _ in 0..32 {
                let mut m = pool.alloc().unwrap();
                m.append(60).unwrap();
                more.push(m);
            }
            tx.tx_burst(caches, &mut more);
        }
    };
    fill(&mut tx, &mut caches);
    assert_eq!(
        xstat(&*vu, "tx_q0_bad_used_id"),
        before + 2,
        "out of range + not in flight"
    );
    // 2. A used index that jumps far beyond what was posted stops the queue, counted once.
    txr.set_used_idx(3000);
    fill(&mut tx, &mut caches);
    fill(&mut tx, &mut caches);
    assert_eq!(xstat(&*vu, "tx_q0_bad_used_id"), before + 3);
    // 3. Rx: a used length larger than the buffer posted, and one shorter than the header.
    let head0 = rxr.avail_ring(0) as u32;
    let head1 = rxr.avail_ring(1) as u32;
    rxr.set_used_elem(
        0,
        UsedElem {
            id: head0,
            len: 1 << 20,
        },
    );
    rxr.set_used_elem(1, UsedElem { id: head1, len: 3 });
    rxr.set_used_idx(2);
    let mut got = Burst::new();
    rx.rx_burst(&mut caches, &mut got, 32);
    assert!(
        got.is_empty(),
        "no packet may come out of bogus used entries"
    );
    assert_eq!(xstat(&*vu, "rx_q0_bad_used_len"), 2);
    // The hostile backend goes away; a good one (our vhost port) takes over.
    if let Some(c) = conn.lock().unwrap().take() {
        c.shutdown(std::net::Shutdown::Both).unwrap();
    }
    h.join().unwrap();
    let _ = std::fs::remove_file(&sock);
    recover(&sock, &pool, &*vu, &mut tx, &mut rx, &mut caches, 16);
    drop((tx, rx, vu));
    let _ = std::fs::remove_dir_all(&dir);
}
