//! virtio-user and vhost ports of this library talking to each other over a real unix socket
//! (in one process), with payloads checked end to end.

use std::time::{Duration, Instant};

use ferrovia_ethdev::{Burst, Port, PortConf, RxQueue, TxQueue};
use ferrovia_memory::{LcoreCaches, Mbuf, Mempool, MempoolConfig};

fn pool(name: &str) -> Mempool {
    Mempool::new(MempoolConfig {
        name: name.into(),
        count: 8192,
        ..Default::default()
    })
    .unwrap()
}

fn payload(seq: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + seq * 7 + 1) as u8).collect()
}

fn make(pool: &Mempool, data: &[u8]) -> Mbuf {
    let mut head = pool.alloc().unwrap();
    let mut rest = data;
    let k = rest.len().min(head.tailroom());
    head.append(k).unwrap().copy_from_slice(&rest[..k]);
    rest = &rest[k..];
    while !rest.is_empty() {
        let mut m = pool.alloc().unwrap();
        let k = rest.len().min(m.tailroom());
        m.append(k).unwrap().copy_from_slice(&rest[..k]);
        rest = &rest[k..];
        head.chain(m);
    }
    head
}

fn wait_up(p: &dyn Port) {
    let t = Instant::now();
    while !p.link().up {
        assert!(t.elapsed() < Duration::from_secs(10), "link never came up");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `sizes` through `tx`, receives them on `rx`, checks every byte.
fn pass(
    caches: &mut LcoreCaches,
    pool: &Mempool,
    tx: &mut dyn TxQueue,
    rx: &mut dyn RxQueue,
    sizes: &[usize],
    seq0: usize,
) {
    let mut sent = 0;
    let mut got: Vec<Vec<u8>> = Vec::new();
    let t = Instant::now();
    let mut b = Burst::new();
    while got.len() < sizes.len() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "only {} of {} arrived",
            got.len(),
            sizes.len()
        );
        while sent < sizes.len() && b.len() < 32 {
            b.push(make(pool, &payload(seq0 + sent, sizes[sent])));
            sent += 1;
        }
        tx.tx_burst(caches, &mut b);
        // Unsent packets stay in `b` and are retried.
        let mut r = Burst::new();
        rx.rx_burst(caches, &mut r, 32);
        for m in r.drain(..) {
            got.push(m.to_vec());
        }
    }
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.len(), sizes[i], "packet {i} length");
        assert!(
            *g == payload(seq0 + i, sizes[i]),
            "packet {i} payload corrupted"
        );
    }
}

fn run(tag: &str, vu_extra: &str, queues: u16) {
    let _ = env_logger::builder().is_test(true).try_init();
    let dir = std::env::temp_dir().join(format!("ferrovia-lb-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("sock");
    let pool = pool(tag);
    let mut conf = PortConf::new(0, pool.clone());
    conf.max_rx_pktlen = 9018;
    let mut vhost = ferrovia_pmd::open(
        &format!("net_vhost0,iface={},queues={queues}", sock.display()),
        &conf,
    )
    .unwrap();
    conf.port_id = 1;
    let mut vu = ferrovia_pmd::open(
        &format!(
            "net_virtio_user0,path={},queues={queues}{vu_extra}",
            sock.display()
        ),
        &conf,
    )
    .unwrap();
    vhost.start().unwrap();
    vu.start().unwrap();
    wait_up(&*vu);
    wait_up(&*vhost);
    let mut caches = LcoreCaches::new();
    let sizes = [64, 1518, 9000, 60, 128, 4096, 1514];
    for q in 0..queues {
        let mut vtx = vu.tx_queue(q).unwrap();
        let mut vrx = vu.rx_queue(q).unwrap();
        let mut htx = vhost.tx_queue(q).unwrap();
        let mut hrx = vhost.rx_queue(q).unwrap();
        for round in 0..20 {
            pass(
                &mut caches,
                &pool,
                &mut *vtx,
                &mut *hrx,
                &sizes,
                round * 100,
            );
            pass(
                &mut caches,
                &pool,
                &mut *htx,
                &mut *vrx,
                &sizes,
                round * 100 + 50,
            );
        }
    }
    let vs = vu.stats();
    let hs = vhost.stats();
    let n = (sizes.len() * 20 * queues as usize) as u64;
    assert_eq!(vs.opackets(), n);
    assert_eq!(hs.ipackets(), n);
    assert_eq!(hs.opackets(), n);
    assert_eq!(vs.ipackets(), n);
    assert_eq!(vs.ierrors() + vs.oerrors() + hs.ierrors() + hs.oerrors(), 0);
    drop(vu);
    drop(vhost);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mrg_on_in_order_on() {
    run("a", "", 1);
}

#[test]
fn mrg_off_in_order_on() {
    run("b", ",mrg_rxbuf=0", 1);
}

#[test]
fn mrg_on_in_order_off() {
    run("c", ",in_order=0", 1);
}

#[test]
fn mrg_off_in_order_off_two_queues() {
    run("d", ",mrg_rxbuf=0,in_order=0", 2);
}

#[test]
fn two_queues_mrg_on() {
    run("e", "", 2);
}

#[test]
fn client_error_names_the_fix() {
    let p = pool("err");
    let conf = PortConf::new(0, p);
    let e = ferrovia_pmd::open("net_virtio_user0,path=/nonexistent/sock0", &conf)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("cannot connect to /nonexistent/sock0") && e.contains("server=1"),
        "{e}"
    );
    // The control queue is on split rings only.
    let e = ferrovia_pmd::open("net_virtio_user0,path=/tmp/x,cq=1,packed_vq=1", &conf)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("cq=1") && e.contains("packed_vq"), "{e}");
    let e = ferrovia_pmd::open("net_vhost0,iface=/tmp/x,queues=0", &conf)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("'queues'"), "{e}");
}

/// More than 8 memory regions: virtio-user switches to ADD_MEM_REG (CONFIGURE_MEM_SLOTS), and
/// packets from the last pool still arrive intact.
#[test]
fn more_than_eight_memory_regions() {
    let _ = env_logger::builder().is_test(true).try_init();
    let extra: Vec<Mempool> = (0..10)
        .map(|i| {
            Mempool::new(MempoolConfig {
                name: format!("extra{i}"),
                count: 64,
                ..Default::default()
            })
            .unwrap()
        })
        .collect();
    assert!(ferrovia_memory::registry::snapshot().len() > 8);
    let dir = std::env::temp_dir().join(format!("ferrovia-lb-{}-slots", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("sock");
    let p = pool("slots");
    let conf = PortConf::new(0, p.clone());
    let mut vhost =
        ferrovia_pmd::open(&format!("net_vhost0,iface={}", sock.display()), &conf).unwrap();
    let mut vu =
        ferrovia_pmd::open(&format!("net_virtio_user0,path={}", sock.display()), &conf).unwrap();
    vhost.start().unwrap();
    vu.start().unwrap();
    wait_up(&*vu);
    wait_up(&*vhost);
    let mut caches = LcoreCaches::new();
    let last = extra.last().unwrap();
    let mut vtx = vu.tx_queue(0).unwrap();
    let mut hrx = vhost.rx_queue(0).unwrap();
    pass(
        &mut caches,
        last,
        &mut *vtx,
        &mut *hrx,
        &[64, 1518, 60, 1000],
        0,
    );
    drop((vtx, hrx, vu, vhost));
    let _ = std::fs::remove_dir_all(&dir);
}

/// virtio-user listens (server=1) and our vhost port connects to it (client=1).
#[test]
fn virtio_user_server_vhost_client() {
    let _ = env_logger::builder().is_test(true).try_init();
    let dir = std::env::temp_dir().join(format!("ferrovia-lb-{}-srv", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("sock");
    let p = pool("srv");
    let conf = PortConf::new(0, p.clone());
    let mut vu = ferrovia_pmd::open(
        &format!("net_virtio_user0,path={},server=1,queues=2", sock.display()),
        &conf,
    )
    .unwrap();
    assert!(!vu.link().up, "no backend yet");
    let mut vhost = ferrovia_pmd::open(
        &format!("net_vhost0,iface={},client=1,queues=2", sock.display()),
        &conf,
    )
    .unwrap();
    vhost.start().unwrap();
    vu.start().unwrap();
    wait_up(&*vu);
    wait_up(&*vhost);
    let mut caches = LcoreCaches::new();
    for q in 0..2 {
        let mut vtx = vu.tx_queue(q).unwrap();
        let mut hrx = vhost.rx_queue(q).unwrap();
        let mut htx = vhost.tx_queue(q).unwrap();
        let mut vrx = vu.rx_queue(q).unwrap();
        pass(&mut caches, &p, &mut *vtx, &mut *hrx, &[64, 1518, 9000], 0);
        pass(&mut caches, &p, &mut *htx, &mut *vrx, &[64, 1518, 9000], 10);
    }
    drop((vu, vhost));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn packed_mrg_on() {
    run("p1", ",packed_vq=1", 1);
}

#[test]
fn packed_mrg_off_in_order_off_two_queues() {
    run("p2", ",packed_vq=1,mrg_rxbuf=0,in_order=0", 2);
}

#[test]
fn packed_odd_queue_size_refused_for_split_only() {
    let p = pool("odd");
    let conf = PortConf::new(0, p);
    let e = ferrovia_pmd::open("net_virtio_user0,path=/tmp/x,queue_size=100", &conf)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("power of two"), "{e}");
}
