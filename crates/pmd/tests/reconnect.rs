//! Reconnection without restarting the survivor, 20 times in each direction the how-tos use,
//! with traffic checked after every relaunch; afterwards no mbuf and no fd has leaked.
//!
//! One test function on purpose: it measures this process's fd count.

use std::time::{Duration, Instant};

use ferrovia_ethdev::{Burst, Port, PortConf, RxQueue, TxQueue};
use ferrovia_memory::{LcoreCaches, Mbuf, Mempool, MempoolConfig};

const CYCLES: usize = 20;

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn pool(name: &str) -> Mempool {
    Mempool::new(MempoolConfig {
        name: name.into(),
        count: 4096,
        cache_size: 64,
        ..Default::default()
    })
    .unwrap()
}

fn frame(pool: &Mempool, seq: usize, len: usize) -> Mbuf {
    let mut m = pool.alloc().expect("pool has room");
    let d = m.append(len).unwrap();
    for (i, b) in d.iter_mut().enumerate() {
        *b = (i * 7 + seq) as u8;
    }
    m
}

fn wait_up(p: &dyn Port, what: &str) {
    let t = Instant::now();
    while !p.link().up {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{what}: link never came up"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Sends 64 frames from `tx` and checks all arrive on `rx` intact.
fn traffic(
    caches: &mut LcoreCaches,
    pool: &Mempool,
    tx: &mut dyn TxQueue,
    rx: &mut dyn RxQueue,
    seq0: usize,
    what: &str,
) {
    let mut out = Burst::new();
    for i in 0..64 {
        out.push(frame(pool, seq0 + i, 60 + (i * 37) % 1400));
    }
    let mut got: Vec<Vec<u8>> = Vec::new();
    let t = Instant::now();
    let mut r = Burst::new();
    while got.len() < 64 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{what}: {} of 64 arrived",
            got.len()
        );
        tx.tx_burst(caches, &mut out);
        rx.rx_burst(caches, &mut r, 32);
        // Frames left in flight when the previous peer died may legitimately arrive now
        // (a split ring resumes where the old device stopped): they are not lost, skip them.
        got.extend(
            r.drain(..)
                .map(|m| m.to_vec())
                .filter(|f| !is_in_flight_marker(f)),
        );
    }
    for (i, g) in got.iter().enumerate() {
        let len = 60 + (i * 37) % 1400;
        let want: Vec<u8> = (0..len).map(|k| (k * 7 + seq0 + i) as u8).collect();
        assert!(*g == want, "{what}: frame {i} corrupted");
    }
}

/// Pushes a burst into `tx` without waiting (traffic in flight when the peer dies).
fn in_flight(caches: &mut LcoreCaches, pool: &Mempool, tx: &mut dyn TxQueue) {
    let mut out = Burst::new();
    for _ in 0..32 {
        let mut m = pool.alloc().expect("pool has room");
        m.append(200).unwrap().fill(0xee);
        out.push(m);
    }
    tx.tx_burst(caches, &mut out);
}

fn is_in_flight_marker(f: &[u8]) -> bool {
    f.len() == 200 && f.iter().all(|&b| b == 0xee)
}

#[test]
fn survivors_recover_twenty_times_without_leaks() {
    let dir = std::env::temp_dir().join(format!("ferrovia-rc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Process-wide resources that live as long as the process (the control loop's epoll fd and
    // eventfd, the ring arena's first chunk) are made before counting.
    ferrovia_pmd::start_control_plane().unwrap();
    let fds0 = fds();
    {
        let survivor_pool = pool("survivor");
        let peer_pool = pool("peer");
        // The test thread's mbuf caches, used on every port and across every reconnection.
        let mut caches = LcoreCaches::new();

        // (a) our vhost (client=1) survives restarts of our virtio-user (server=1).
        let sock = dir.join("a.sock").display().to_string();
        let mut vhost = ferrovia_pmd::open(
            &format!("net_vhost0,iface={sock},client=1"),
            &PortConf::new(0, survivor_pool.clone()),
        )
        .unwrap();
        vhost.start().unwrap();
        let mut hrx = vhost.rx_queue(0).unwrap();
        let mut htx = vhost.tx_queue(0).unwrap();
        for c in 0..CYCLES {
            let mut vu = ferrovia_pmd::open(
                &format!("net_virtio_user0,path={sock},server=1"),
                &PortConf::new(1, peer_pool.clone()),
            )
            .unwrap();
            vu.start().unwrap();
            wait_up(&*vu, "a: virtio-user");
            wait_up(&*vhost, "a: vhost");
            let mut vtx = vu.tx_queue(0).unwrap();
            let mut vrx = vu.rx_queue(0).unwrap();
            traffic(
                &mut caches,
                &peer_pool,
                &mut *vtx,
                &mut *hrx,
                c,
                "a: virtio-user -> vhost",
            );
            traffic(
                &mut caches,
                &survivor_pool,
                &mut *htx,
                &mut *vrx,
                c,
                "a: vhost -> virtio-user",
            );
            in_flight(&mut caches, &peer_pool, &mut *vtx);
            drop((vtx, vrx, vu));
        }
        drop((hrx, htx, vhost));

        // (b) our virtio-user (server=1) survives restarts of our vhost (client=1).
        let sock = dir.join("b.sock").display().to_string();
        let mut vu = ferrovia_pmd::open(
            &format!("net_virtio_user0,path={sock},server=1"),
            &PortConf::new(0, survivor_pool.clone()),
        )
        .unwrap();
        vu.start().unwrap();
        let mut vtx = vu.tx_queue(0).unwrap();
        let mut vrx = vu.rx_queue(0).unwrap();
        for c in 0..CYCLES {
            let mut vhost = ferrovia_pmd::open(
                &format!("net_vhost0,iface={sock},client=1"),
                &PortConf::new(1, peer_pool.clone()),
            )
            .unwrap();
            vhost.start().unwrap();
            wait_up(&*vhost, "b: vhost");
            wait_up(&*vu, "b: virtio-user");
            let mut hrx = vhost.rx_queue(0).unwrap();
            let mut htx = vhost.tx_queue(0).unwrap();
            traffic(
                &mut caches,
                &survivor_pool,
                &mut *vtx,
                &mut *hrx,
                c,
                "b: virtio-user -> vhost",
            );
            traffic(
                &mut caches,
                &peer_pool,
                &mut *htx,
                &mut *vrx,
                c,
                "b: vhost -> virtio-user",
            );
            in_flight(&mut caches, &survivor_pool, &mut *vtx);
            drop((hrx, htx, vhost));
            let t = Instant::now();
            while vu.link().up {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "b: link never went down"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        drop((vtx, vrx, vu));

        // (c) our virtio-user (client) reconnects when our vhost server restarts.
        let sock = dir.join("c.sock").display().to_string();
        let mut vhost = ferrovia_pmd::open(
            &format!("net_vhost0,iface={sock}"),
            &PortConf::new(1, peer_pool.clone()),
        )
        .unwrap();
        vhost.start().unwrap();
        let mut vu = ferrovia_pmd::open(
            &format!("net_virtio_user0,path={sock}"),
            &PortConf::new(0, survivor_pool.clone()),
        )
        .unwrap();
        vu.start().unwrap();
        let mut vtx = vu.tx_queue(0).unwrap();
        let mut vrx = vu.rx_queue(0).unwrap();
        for c in 0..CYCLES {
            wait_up(&*vu, "c: virtio-user");
            let mut hrx = vhost.rx_queue(0).unwrap();
            let mut htx = vhost.tx_queue(0).unwrap();
            traffic(
                &mut caches,
                &survivor_pool,
                &mut *vtx,
                &mut *hrx,
                c,
                "c: virtio-user -> vhost",
            );
            traffic(
                &mut caches,
                &peer_pool,
                &mut *htx,
                &mut *vrx,
                c,
                "c: vhost -> virtio-user",
            );
            in_flight(&mut caches, &survivor_pool, &mut *vtx);
            drop((hrx, htx));
            drop(vhost);
            let t = Instant::now();
            while vu.link().up {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "c: link never went down"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
            vhost = ferrovia_pmd::open(
                &format!("net_vhost0,iface={sock}"),
                &PortConf::new(1, peer_pool.clone()),
            )
            .unwrap();
            vhost.start().unwrap();
        }
        drop((vtx, vrx, vu, vhost));
        drop(caches);

        // Every mbuf is back in its pool.
        assert_eq!(
            survivor_pool.available(),
            survivor_pool.count(),
            "survivor pool leaked mbufs"
        );
        assert_eq!(
            peer_pool.available(),
            peer_pool.count(),
            "peer pool leaked mbufs"
        );
    }
    // Every fd (sockets, eventfds, memfds, dup'ed region fds) is closed again.
    let t = Instant::now();
    while fds() != fds0 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "fd count {} != {fds0} at start",
            fds()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
