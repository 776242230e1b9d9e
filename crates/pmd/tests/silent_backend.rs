//! A vhost-user backend that accepts the connection and then never answers (or answers half a
//! reply) must not hang our virtio-user: `open` fails within the handshake's deadline with an
//! error naming the request that went unanswered, nothing leaks, and a vhost port served by
//! the same control loop keeps forwarding meanwhile.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use ferrovia_ethdev::{Burst, PortConf};
use ferrovia_memory::{LcoreCaches, Mempool, MempoolConfig};

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn fd_names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| {
            let t = std::fs::read_link(e.path())
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            format!("{}={t}", e.file_name().to_string_lossy())
        })
        .collect();
    v.sort();
    v
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

#[test]
fn a_backend_that_never_answers_fails_open_and_stalls_nobody() {
    ferrovia_pmd::start_control_plane().unwrap();
    let dir = std::env::temp_dir().join(format!("ferrovia-silent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (vu_pool, vh_pool) = (pool("silent-vu"), pool("silent-vh"));

    // A healthy pair on the same control loop, forwarding in another thread throughout.
    let good = dir.join("good.sock").display().to_string();
    let mut vh = ferrovia_pmd::open(
        &format!("net_vhost0,iface={good}"),
        &PortConf::new(0, vh_pool.clone()),
    )
    .unwrap();
    vh.start().unwrap();
    let mut vu = ferrovia_pmd::open(
        &format!("net_virtio_user0,path={good}"),
        &PortConf::new(1, vu_pool.clone()),
    )
    .unwrap();
    vu.start().unwrap();
    let (mut vtx, mut hrx) = (vu.tx_queue(0).unwrap(), vh.rx_queue(0).unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let moved = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let fwd = {
        let (stop, moved, p) = (stop.clone(), moved.clone(), vu_pool.clone());
        std::thread::spawn(move || {
            let mut caches = LcoreCaches::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut b = Burst::new();
                for _ in 0..16 {
                    let Some(mut m) = caches.for_pool(&p).alloc() else {
                        break;
                    };
                    m.append(64).unwrap().fill(0x5a);
                    b.push(m);
                }
                vtx.tx_burst(&mut caches, &mut b);
                caches.free_all(b.drain(..));
                let mut r = Burst::new();
                let n = hrx.rx_burst(&mut caches, &mut r, 32);
                for m in r.drain(..) {
                    assert!(m.data().iter().all(|&x| x == 0x5a), "frame intact");
                    caches.free(m);
                }
                moved.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            }
            drop((vtx, hrx, caches));
        })
    };

    // The forwarding queues take their kick fd on their first burst: start counting after it.
    let t = Instant::now();
    while moved.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the healthy pair never forwarded"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let fds0 = fds();
    let names0 = fd_names();
    for (what, reply) in [
        ("silence", &[][..]),
        ("half a reply to GET_FEATURES", &[1u8, 0, 0, 0, 5, 0][..]),
    ] {
        let sock = dir.join("silent.sock");
        let _ = std::fs::remove_file(&sock);
        let l = UnixListener::bind(&sock).unwrap();
        let reply = reply.to_vec();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(&reply).unwrap();
            // Read whatever comes and never answer, until our side gives up and hangs up.
            let mut b = [0u8; 256];
            while let Ok(n) = std::io::Read::read(&mut s, &mut b) {
                if n == 0 {
                    break;
                }
            }
        });
        let before = moved.load(std::sync::atomic::Ordering::Relaxed);
        let t = Instant::now();
        let r = ferrovia_pmd::open(
            &format!("net_virtio_user1,path={}", sock.display()),
            &PortConf::new(2, vu_pool.clone()),
        );
        let took = t.elapsed();
        let e = r
            .err()
            .expect("open must fail against a silent backend")
            .to_string();
        assert!(e.contains("did not answer GET_FEATURES"), "{what}: {e}");
        assert!(took < Duration::from_secs(30), "{what}: bounded ({took:?})");
        peer.join().unwrap();
        assert!(
            moved.load(std::sync::atomic::Ordering::Relaxed) > before,
            "{what}: the healthy pair kept forwarding while the handshake waited"
        );
        eprintln!("silent backend ({what}): open failed after {took:?}: {e}");
    }
    let t = Instant::now();
    while fds() != fds0 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "fds {} != {fds0}: before {names0:?} after {:?}",
            fds(),
            fd_names()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    fwd.join().unwrap();
    drop((vu, vh));
    assert_eq!(vu_pool.available(), vu_pool.count(), "no mbuf leaked");
    assert_eq!(vh_pool.available(), vh_pool.count(), "no mbuf leaked");
    let _ = std::fs::remove_dir_all(&dir);
}
