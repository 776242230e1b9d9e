//! One thread polling many queues of many ports with one `LcoreCaches`: the free mbufs it
//! keeps out of each pool are one cache's worth, however many queues it polls.

use ferrovia_ethdev::{Burst, Port, PortConf, RxQueue, TxQueue};
use ferrovia_memory::{LcoreCaches, Mempool, MempoolConfig};

const CACHE: usize = 64;

fn pool(name: &str, count: usize) -> Mempool {
    Mempool::new(MempoolConfig {
        name: name.into(),
        count,
        cache_size: CACHE,
        ..Default::default()
    })
    .unwrap()
}

/// Most mbufs one cache holds between bursts (a free spills above 1.5 × its size).
const ONE_CACHE: usize = CACHE + CACHE / 2;

/// Mbufs of `p` not free in the pool now.
fn out(p: &Mempool) -> usize {
    p.count() - p.available()
}

struct Queues {
    rx: Vec<Box<dyn RxQueue>>,
    tx: Vec<Box<dyn TxQueue>>,
}

fn open_all(devargs: &[String], pools: &[&Mempool], nq: u16) -> (Vec<Box<dyn Port>>, Queues) {
    let mut ports = Vec::new();
    let mut q = Queues {
        rx: Vec::new(),
        tx: Vec::new(),
    };
    for (i, d) in devargs.iter().enumerate() {
        let mut conf = PortConf::new(i as u16, pools[i % pools.len()].clone());
        conf.nb_rxq = nq;
        conf.nb_txq = nq;
        let mut p = ferrovia_pmd::open(d, &conf).unwrap();
        p.start().unwrap();
        for k in 0..nq {
            q.rx.push(p.rx_queue(k).unwrap());
            q.tx.push(p.tx_queue(k).unwrap());
        }
        ports.push(p);
    }
    (ports, q)
}

#[test]
fn null_ports_on_two_pools_strand_one_cache_per_pool() {
    // 64 ports x 4 queues = 256 Rx and 256 Tx queues, ports alternating between two pools of
    // 2048 mbufs. With a cache per queue this would strand far more than the pools hold.
    let a = pool("many-a", 2048);
    let b = pool("many-b", 2048);
    let devargs: Vec<String> = (0..64).map(|i| format!("net_null{i},size=64")).collect();
    let (ports, mut q) = open_all(&devargs, &[&a, &b], 4);
    let mut caches = LcoreCaches::new();
    let mut burst = Burst::new();
    let n = q.rx.len();
    for round in 0..10 {
        for i in 0..n {
            // Receive on queue i (pool of its port) and send on the next port's queue, which
            // belongs to the other pool: the Tx side frees mbufs of a pool it was not given.
            let got = q.rx[i].rx_burst(&mut caches, &mut burst, 32);
            assert_eq!(got, 32, "round {round} queue {i}");
            let j = (i + 4) % n;
            assert_eq!(q.tx[j].tx_burst(&mut caches, &mut burst), 32);
            assert!(burst.is_empty());
        }
        // Idle between rounds: each pool misses at most one cache's worth.
        assert!(out(&a) <= ONE_CACHE, "pool a: {} out", out(&a));
        assert!(out(&b) <= ONE_CACHE, "pool b: {} out", out(&b));
        assert_eq!(out(&a) + out(&b), caches.cached());
    }
    assert_eq!(caches.len(), 2, "one cache per pool, not per queue");
    drop(caches);
    assert_eq!(a.available(), a.count());
    assert_eq!(b.available(), b.count());
    drop((q, ports));
}

#[test]
fn ring_ports_polled_by_one_thread_lose_nothing() {
    // Ring ports (Tx on queue k comes back on Rx queue k) filled by null ports: one thread,
    // 16 ports of each, one LcoreCaches; once the rings are drained every mbuf is back but
    // the one cache's worth.
    let p = pool("many-ring", 4096);
    let nulls: Vec<String> = (0..16).map(|i| format!("net_null{i},size=100")).collect();
    let rings: Vec<String> = (0..16).map(|i| format!("net_ring{i},size=256")).collect();
    let (np, mut nq) = open_all(&nulls, &[&p], 2);
    let (rp, mut rq) = open_all(&rings, &[&p], 2);
    let mut caches = LcoreCaches::new();
    let mut burst = Burst::new();
    for _ in 0..4 {
        for i in 0..nq.rx.len() {
            nq.rx[i].rx_burst(&mut caches, &mut burst, 32);
            rq.tx[i].tx_burst(&mut caches, &mut burst);
            caches.free_all(burst.drain(..));
        }
        assert_eq!(out(&p) - caches.cached(), 32 * nq.rx.len(), "in the rings");
        let mut back = 0;
        for i in 0..rq.rx.len() {
            while rq.rx[i].rx_burst(&mut caches, &mut burst, 32) > 0 {
                back += burst.len();
                assert!(burst.iter().all(|m| m.pkt_len() == 100));
                caches.free_all(burst.drain(..));
            }
        }
        assert_eq!(back, 32 * rq.rx.len());
        assert!(out(&p) <= ONE_CACHE, "{} out while idle", out(&p));
    }
    drop(caches);
    assert_eq!(p.available(), p.count());
    drop((nq, rq, np, rp));
}
