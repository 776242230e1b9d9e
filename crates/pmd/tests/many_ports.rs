//! 256 vhost-user ports and 256 virtio-user ports in one process, connected pairwise, traffic
//! on every pair from two polling threads, and 32 pairs removed and re-added while the traffic
//! runs: every frame intact and in order, and no thread beyond the control loop and the two
//! pollers (read from /proc/self/task).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use ferrovia_ethdev::{Burst, Port, PortConf, PortEventKind, RxQueue, TxQueue, events};
use ferrovia_memory::{LcoreCaches, Mempool, MempoolConfig};

const PAIRS: usize = 256;
const CHURN: usize = 32;
const FRAME: usize = 64;
/// Frames a direction may have in flight before its sender waits.
const WINDOW: u32 = 48;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn raise_fd_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
    }
}

/// A frame of pair `pair`, direction `dir`, sequence `seq`: header plus a pattern of all three.
fn frame(pair: usize, dir: u8, seq: u32) -> [u8; FRAME] {
    let mut f = [0u8; FRAME];
    f[0..2].copy_from_slice(&(pair as u16).to_le_bytes());
    f[2] = dir;
    f[3..7].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in f.iter_mut().enumerate().skip(7) {
        *b = (i as u32 ^ seq ^ (pair as u32 * 131) ^ (dir as u32 * 7)) as u8;
    }
    f
}

struct Pair {
    vu: Box<dyn Port>,
    vh: Box<dyn Port>,
}

/// Queue handles of one pair, owned by a poller.
struct Handles {
    vu_tx: Box<dyn TxQueue>,
    vu_rx: Box<dyn RxQueue>,
    vh_tx: Box<dyn TxQueue>,
    vh_rx: Box<dyn RxQueue>,
    /// Per direction (0: virtio-user -> vhost, 1: back): next to send, next expected.
    sent: [u32; 2],
    expect: [u32; 2],
}

enum Cmd {
    Attach(usize, Box<Handles>),
    Release(usize, mpsc::Sender<u64>),
}

fn open_pair(dir: &std::path::Path, i: usize, vu_pool: &Mempool, vh_pool: &Mempool) -> Pair {
    let sock = dir.join(format!("p{i}.sock")).display().to_string();
    let mut vh = ferrovia_pmd::open(
        &format!("net_vhost{i},iface={sock}"),
        &PortConf::new(i as u16, vh_pool.clone()),
    )
    .unwrap();
    vh.start().unwrap();
    let mut vu = ferrovia_pmd::open(
        &format!("net_virtio_user{i},path={sock},queue_size=64"),
        &PortConf::new((PAIRS + i) as u16, vu_pool.clone()),
    )
    .unwrap();
    vu.start().unwrap();
    Pair { vu, vh }
}

fn handles(p: &mut Pair) -> Box<Handles> {
    Box::new(Handles {
        vu_tx: p.vu.tx_queue(0).unwrap(),
        vu_rx: p.vu.rx_queue(0).unwrap(),
        vh_tx: p.vh.tx_queue(0).unwrap(),
        vh_rx: p.vh.rx_queue(0).unwrap(),
        sent: [0; 2],
        expect: [0; 2],
    })
}

fn wait_up(p: &Pair, i: usize) {
    let t = Instant::now();
    while !(p.vu.link().up && p.vh.link().up) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "pair {i}: link never came up"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends up to a window's worth in one direction and checks what arrives at the other end.
#[allow(clippy::too_many_arguments)]
fn step(
    pair: usize,
    d: usize,
    caches: &mut LcoreCaches,
    pool: &Mempool,
    tx: &mut dyn TxQueue,
    rx: &mut dyn RxQueue,
    sent: &mut u32,
    expect: &mut u32,
    delivered: &AtomicU64,
) {
    let mut b = Burst::new();
    while *sent - *expect < WINDOW && b.len() < 16 {
        let Some(mut m) = caches.for_pool(pool).alloc() else {
            break;
        };
        m.append(FRAME)
            .unwrap()
            .copy_from_slice(&frame(pair, d as u8, *sent + b.len() as u32));
        b.push(m);
    }
    let n = tx.tx_burst(caches, &mut b);
    *sent += n as u32;
    // Unsent ones go back to the pool; they are sent again with the same numbers.
    caches.free_all(b.drain(..));
    let mut r = Burst::new();
    rx.rx_burst(caches, &mut r, 32);
    for m in r.drain(..) {
        let got = m.to_vec();
        assert_eq!(
            got[..],
            frame(pair, d as u8, *expect)[..],
            "pair {pair} direction {d}: frame {} corrupt, lost or out of order",
            *expect
        );
        *expect += 1;
        caches.free(m);
        delivered.fetch_add(1, Ordering::Relaxed);
    }
}

fn poller(
    rx_cmd: mpsc::Receiver<Cmd>,
    vu_pool: Mempool,
    vh_pool: Mempool,
    stop: Arc<AtomicBool>,
    delivered: Arc<AtomicU64>,
) {
    let mut mine: HashMap<usize, Box<Handles>> = HashMap::new();
    // One set of mbuf caches for every queue this thread polls.
    let mut caches = LcoreCaches::new();
    while !stop.load(Ordering::Relaxed) {
        while let Ok(c) = rx_cmd.try_recv() {
            match c {
                Cmd::Attach(i, h) => {
                    mine.insert(i, h);
                }
                Cmd::Release(i, done) => {
                    let n = mine.remove(&i).map(|h| h.expect[0] + h.expect[1]);
                    let _ = done.send(n.unwrap_or(0) as u64);
                }
            }
        }
        for (&i, h) in mine.iter_mut() {
            let h = &mut **h;
            step(
                i,
                0,
                &mut caches,
                &vu_pool,
                &mut *h.vu_tx,
                &mut *h.vh_rx,
                &mut h.sent[0],
                &mut h.expect[0],
                &delivered,
            );
            step(
                i,
                1,
                &mut caches,
                &vh_pool,
                &mut *h.vh_tx,
                &mut *h.vu_rx,
                &mut h.sent[1],
                &mut h.expect[1],
                &delivered,
            );
        }
    }
}

#[test]
fn many_ports_two_pollers_churn_while_forwarding() {
    raise_fd_limit();
    let dir = std::env::temp_dir().join(format!("ferrovia-many-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let vu_pool = Mempool::new(MempoolConfig {
        name: "many-vu".into(),
        count: 65536,
        cache_size: 64,
        ..Default::default()
    })
    .unwrap();
    let vh_pool = Mempool::new(MempoolConfig {
        name: "many-vh".into(),
        count: 32768,
        cache_size: 64,
        ..Default::default()
    })
    .unwrap();
    ferrovia_transport::reactor::Reactor::global();
    let threads0 = threads();

    // Events: every vhost port reports link up (sink shared by all ports of the test).
    let (sink, events) = events::channel();
    let mut pairs: Vec<Option<Pair>> = Vec::with_capacity(PAIRS);
    for i in 0..PAIRS {
        let sock = dir.join(format!("p{i}.sock")).display().to_string();
        let mut conf = PortConf::new(i as u16, vh_pool.clone());
        conf.events = Some(sink.clone());
        let mut vh = ferrovia_pmd::open(&format!("net_vhost{i},iface={sock}"), &conf).unwrap();
        vh.start().unwrap();
        let mut vu = ferrovia_pmd::open(
            &format!("net_virtio_user{i},path={sock},queue_size=64"),
            &PortConf::new((PAIRS + i) as u16, vu_pool.clone()),
        )
        .unwrap();
        vu.start().unwrap();
        pairs.push(Some(Pair { vu, vh }));
    }
    for (i, p) in pairs.iter().enumerate() {
        wait_up(p.as_ref().unwrap(), i);
    }
    // Both ends report the same negotiated virtio features.
    for p in pairs.iter().flatten().take(4) {
        let (a, b) = (p.vh.info().virtio_features, p.vu.info().virtio_features);
        assert!(a.is_some(), "the vhost port shows what its frontend acked");
        assert_eq!(a, b, "both ends agree on the negotiated features");
    }
    let mut ups = std::collections::HashSet::new();
    while let Ok(e) = events.recv_timeout(Duration::from_millis(500)) {
        if e.kind == PortEventKind::LinkUp {
            ups.insert(e.port_id);
        }
        if ups.len() == PAIRS {
            break;
        }
    }
    assert_eq!(ups.len(), PAIRS, "a link-up event from every vhost port");
    assert_eq!(
        threads(),
        threads0,
        "512 ports and no thread of their own: one control loop serves them all"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let mut cmds = Vec::new();
    let mut joins = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = mpsc::channel();
        let (a, b, s, d) = (
            vu_pool.clone(),
            vh_pool.clone(),
            stop.clone(),
            delivered.clone(),
        );
        joins.push(std::thread::spawn(move || poller(rx, a, b, s, d)));
        cmds.push(tx);
    }
    for (i, p) in pairs.iter_mut().enumerate() {
        let h = handles(p.as_mut().unwrap());
        cmds[i % 2].send(Cmd::Attach(i, h)).unwrap();
    }
    let wait_delivered = |n: u64, what: &str| {
        let t = Instant::now();
        let start = delivered.load(Ordering::Relaxed);
        while delivered.load(Ordering::Relaxed) < start + n {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "{what}: traffic stalled"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_delivered(200_000, "all pairs");
    assert_eq!(
        threads(),
        threads0 + 2,
        "the control loop and two pollers only"
    );

    // Remove and re-add 32 pairs (every 8th) while the others keep forwarding.
    for i in (0..PAIRS).step_by(PAIRS / CHURN) {
        let (tx, rx) = mpsc::channel();
        cmds[i % 2].send(Cmd::Release(i, tx)).unwrap();
        let moved = rx.recv().unwrap();
        assert!(moved > 0, "pair {i} forwarded before its removal");
        drop(pairs[i].take());
        let mut p = open_pair(&dir, i, &vu_pool, &vh_pool);
        wait_up(&p, i);
        cmds[i % 2].send(Cmd::Attach(i, handles(&mut p))).unwrap();
        pairs[i] = Some(p);
        assert_eq!(
            threads(),
            threads0 + 2,
            "no thread growth while ports churn"
        );
    }
    wait_delivered(200_000, "after the churn");
    // Every pair, re-added ones included, forwards in both directions.
    let mut per_pair = vec![0u64; PAIRS];
    for i in 0..PAIRS {
        let (tx, rx) = mpsc::channel();
        cmds[i % 2].send(Cmd::Release(i, tx)).unwrap();
        per_pair[i] = rx.recv().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for j in joins {
        j.join().unwrap();
    }
    for (i, n) in per_pair.iter().enumerate() {
        assert!(*n > 0, "pair {i} forwarded nothing");
    }
    let total = delivered.load(Ordering::Relaxed);
    eprintln!(
        "many_ports: {PAIRS} pairs, {CHURN} removed and re-added, {total} frames checked, {} threads",
        threads()
    );
    drop(pairs);
    assert_eq!(
        vu_pool.available(),
        vu_pool.count(),
        "virtio-user pool leaked mbufs"
    );
    assert_eq!(
        vh_pool.available(),
        vh_pool.count(),
        "vhost pool leaked mbufs"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
