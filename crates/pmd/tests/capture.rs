//! Run-time capture on registry-opened ports: a known traffic pattern through a `net_ring`
//! loopback, captured in both directions and read back (with our pcapng reader, and with
//! tshark when it is installed); snap length; FIFOs; the error cases; capture switched on and
//! off while traffic runs with every mbuf back in its pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ferrovia_ethdev::capture::pcapng::{self, Block};
use ferrovia_ethdev::{Burst, CaptureSpec, Captures, Port, PortConf};
use ferrovia_memory::{LcoreCaches, Mempool, MempoolConfig};

fn pool(name: &str, count: usize) -> Mempool {
    Mempool::new(MempoolConfig {
        name: name.into(),
        count,
        ..Default::default()
    })
    .unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ferrovia-capture-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Frame `i`: an Ethernet header and a payload whose length and bytes depend on `i`.
fn frame(i: u32) -> Vec<u8> {
    let len = 60 + (i as usize * 37) % 1400;
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14..18].copy_from_slice(&i.to_be_bytes());
    for (k, b) in f[18..].iter_mut().enumerate() {
        *b = (i as usize + k) as u8;
    }
    f
}

/// Sends `frames` through queue 0 of a ring port and receives them back, in bursts of 32.
fn loop_traffic(
    pool: &Mempool,
    port: &mut Box<dyn Port>,
    caches: &mut LcoreCaches,
    frames: impl Iterator<Item = Vec<u8>>,
) -> usize {
    let mut tx = port.tx_queue(0).unwrap();
    let mut rx = port.rx_queue(0).unwrap();
    let mut b = Burst::new();
    let mut got = 0;
    let mut rb = Burst::new();
    let frames: Vec<Vec<u8>> = frames.collect();
    for chunk in frames.chunks(32) {
        for f in chunk {
            let mut m = caches.for_pool(pool).alloc().unwrap();
            m.append(f.len()).unwrap().copy_from_slice(f);
            b.push(m);
        }
        while !b.is_empty() {
            tx.tx_burst(caches, &mut b);
        }
        while rx.rx_burst(caches, &mut rb, 32) > 0 {
            got += rb.len();
            caches.free_all(rb.drain(..));
        }
    }
    got
}

fn open_ring(name: &str, pool: &Mempool) -> Box<dyn Port> {
    let mut p = ferrovia_pmd::open(name, &PortConf::new(0, pool.clone())).unwrap();
    p.start().unwrap();
    p
}

fn packets(blocks: &[Block]) -> Vec<(u32, Vec<u8>, u32)> {
    blocks
        .iter()
        .filter_map(|b| match b {
            Block::Packet {
                orig_len,
                data,
                flags,
                ..
            } => Some((*orig_len, data.clone(), flags.unwrap_or(0))),
            _ => None,
        })
        .collect()
}

fn tshark_count(path: &Path, filter: &str) -> Option<usize> {
    let out = std::process::Command::new("tshark")
        .args(["-r"])
        .arg(path)
        .args(["-Y", filter, "-T", "fields", "-e", "frame.number"])
        .output();
    match out {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).lines().count()),
        Ok(o) => panic!(
            "tshark failed on {}: {}",
            path.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => {
            eprintln!(
                "SKIP tshark check: tshark is not installed (scripts/setup-peers.sh installs it)"
            );
            None
        }
    }
}

#[test]
fn both_directions_are_captured_byte_for_byte() {
    let pool = pool("cap-both", 1024);
    let mut port = open_ring("net_ring0", &pool);
    let tap = port
        .capture_point()
        .expect("registry ports wear the capture wrapper");
    let caps = Captures::new();
    let path = tmp("both.pcapng");
    let st = caps.start(&tap, CaptureSpec::new(&path)).unwrap();
    assert_eq!(st.state, "writing");
    let mut caches = LcoreCaches::new();
    let n = 500u32;
    assert_eq!(
        loop_traffic(&pool, &mut port, &mut caches, (0..n).map(frame)),
        n as usize
    );
    let list = caps.list();
    assert_eq!(list.len(), 1);
    let fin = caps.stop(st.id).unwrap();
    assert_eq!(
        (fin.captured, fin.drops, fin.written),
        (2 * n as u64, 0, 2 * n as u64)
    );
    assert_eq!(fin.state, "stopped");
    assert!(caps.list().is_empty());

    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(fin.bytes, bytes.len() as u64);
    let blocks = pcapng::read(&bytes).unwrap();
    assert!(matches!(blocks[0], Block::Section { .. }));
    assert_eq!(
        blocks[1],
        Block::Interface {
            linktype: 1,
            snaplen: 262_144,
            name: Some("net_ring0".into()),
            tsresol: Some(9)
        }
    );
    let pk = packets(&blocks);
    let out: Vec<_> = pk.iter().filter(|p| p.2 == 2).collect();
    let inb: Vec<_> = pk.iter().filter(|p| p.2 == 1).collect();
    assert_eq!((out.len(), inb.len()), (n as usize, n as usize));
    for (i, (o, r)) in out.iter().zip(&inb).enumerate() {
        let f = frame(i as u32);
        assert_eq!((o.0 as usize, &o.1), (f.len(), &f), "tx frame {i}");
        assert_eq!((r.0 as usize, &r.1), (f.len(), &f), "rx frame {i}");
    }
    assert!(blocks.iter().any(|b| matches!(
        b,
        Block::Statistics { dropped: Some(0), received: Some(r), .. } if *r == 2 * n as u64
    )));
    if let Some(all) = tshark_count(&path, "frame") {
        assert_eq!(all, 2 * n as usize);
        assert_eq!(
            tshark_count(&path, "frame.p2p_dir == 1").unwrap(),
            n as usize
        );
        assert_eq!(
            tshark_count(&path, "frame.p2p_dir == 0").unwrap(),
            n as usize
        );
    }
    drop(port);
    drop(caches);
    assert_eq!(pool.available(), pool.count());
}

#[test]
fn snaplen_truncates_and_queue_and_direction_filter() {
    let pool = pool("cap-snap", 1024);
    let mut port = ferrovia_pmd::open("net_ring1", &{
        let mut c = PortConf::new(1, pool.clone());
        c.nb_rxq = 2;
        c.nb_txq = 2;
        c
    })
    .unwrap();
    port.start().unwrap();
    let tap = port.capture_point().unwrap();
    let caps = Captures::new();
    let path = tmp("snap.pcapng");
    let spec = CaptureSpec {
        queue: Some(0),
        rx: true,
        tx: false,
        snaplen: 64,
        ..CaptureSpec::new(&path)
    };
    let st = caps.start(&tap, spec).unwrap();
    let mut caches = LcoreCaches::new();
    loop_traffic(&pool, &mut port, &mut caches, (0..100).map(frame));
    let fin = caps.stop(st.id).unwrap();
    assert_eq!((fin.captured, fin.drops), (100, 0));
    let blocks = pcapng::read(&std::fs::read(&path).unwrap()).unwrap();
    assert!(matches!(blocks[1], Block::Interface { snaplen: 64, .. }));
    let pk = packets(&blocks);
    assert_eq!(pk.len(), 100);
    for (i, p) in pk.iter().enumerate() {
        let f = frame(i as u32);
        assert_eq!(p.0 as usize, f.len());
        assert_eq!(p.1, f[..64.min(f.len())]);
        assert_eq!(p.2, 1);
    }
    if let Some(c) = tshark_count(&path, "frame.cap_len == 64") {
        // Frame 0 is 60 bytes long, every other one longer than 64.
        assert_eq!(c, 99);
        assert_eq!(
            tshark_count(&path, "frame.cap_len < frame.len").unwrap(),
            99
        );
    }
}

#[test]
fn errors_are_clear_and_leave_the_data_path_alone() {
    let pool = pool("cap-err", 256);
    let mut port = open_ring("net_ring2", &pool);
    let tap = port.capture_point().unwrap();
    let caps = Captures::new();
    let e = caps
        .start(&tap, CaptureSpec::new("/nonexistent-dir/x/y.pcapng"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "cannot write capture file /nonexistent-dir/x/y.pcapng: no such directory (create it or choose another path)"
    );
    let e = caps
        .start(&tap, CaptureSpec::new(std::env::temp_dir()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("it is a directory"), "{e}");
    let e = caps
        .start(
            &tap,
            CaptureSpec {
                queue: Some(3),
                ..CaptureSpec::new(tmp("q3.pcapng"))
            },
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("there is no rx queue 3"), "{e}");
    for bad in [0, 262_145] {
        let e = caps
            .start(
                &tap,
                CaptureSpec {
                    snaplen: bad,
                    ..CaptureSpec::new(tmp("s.pcapng"))
                },
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("bad snaplen {bad}")), "{e}");
    }
    let e = caps
        .start(
            &tap,
            CaptureSpec {
                ring_size: Some(1 << 20),
                ..CaptureSpec::new(tmp("big.pcapng"))
            },
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("more than the 2048 MiB a capture may use"),
        "{e}"
    );
    assert!(!tmp("big.pcapng").exists());
    assert!(!tap.rx(0).unwrap().armed() && !tap.tx(0).unwrap().armed());
    // A second capture on the same port and direction is refused; the other direction is not.
    let a = caps
        .start(
            &tap,
            CaptureSpec {
                tx: false,
                ..CaptureSpec::new(tmp("a.pcapng"))
            },
        )
        .unwrap();
    let e = caps
        .start(&tap, CaptureSpec::new(tmp("b.pcapng")))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rx queue 0 is captured already by capture") && e.contains("a.pcapng"),
        "{e}"
    );
    let b = caps
        .start(
            &tap,
            CaptureSpec {
                rx: false,
                ..CaptureSpec::new(tmp("b.pcapng"))
            },
        )
        .unwrap();
    let e = caps
        .start(&tap, CaptureSpec::new(tmp("a.pcapng")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("captured already"), "{e}");
    assert!(
        caps.stop(999)
            .unwrap_err()
            .to_string()
            .contains("no capture 999")
    );
    let mut caches = LcoreCaches::new();
    assert_eq!(
        loop_traffic(&pool, &mut port, &mut caches, (0..10).map(frame)),
        10
    );
    caps.stop(a.id).unwrap();
    caps.stop(b.id).unwrap();
}

#[test]
fn a_fifo_is_opened_when_a_reader_comes() {
    let pool = pool("cap-fifo", 512);
    let mut port = open_ring("net_ring3", &pool);
    let tap = port.capture_point().unwrap();
    let caps = Captures::new();
    let path = tmp("cap.fifo");
    let _ = std::fs::remove_file(&path);
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let st = caps.start(&tap, CaptureSpec::new(&path)).unwrap();
    assert_eq!(st.state, "waiting for a reader on the FIFO");
    // Stop with no reader: nothing blocks.
    let fin = caps.stop(st.id).unwrap();
    assert!(fin.state.contains("no reader"), "{}", fin.state);
    // With a reader.
    let st = caps.start(&tap, CaptureSpec::new(&path)).unwrap();
    let p2 = path.clone();
    let reader = std::thread::spawn(move || std::fs::read(p2).unwrap());
    while caps.list()[0].state != "writing" {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut caches = LcoreCaches::new();
    loop_traffic(&pool, &mut port, &mut caches, (0..50).map(frame));
    let fin = caps.stop(st.id).unwrap();
    assert_eq!(fin.written, 100, "{fin:?}");
    let blocks = pcapng::read(&reader.join().unwrap()).unwrap();
    assert_eq!(packets(&blocks).len(), 100);
}

#[test]
fn capture_on_and_off_under_traffic_returns_every_mbuf() {
    let pool = pool("cap-onoff", 2048);
    let mut port = open_ring("net_ring4,size=512", &pool);
    let tap = port.capture_point().unwrap();
    let mut tx = port.tx_queue(0).unwrap();
    let mut rx = port.rx_queue(0).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let p2 = pool.clone();
    let fwd = std::thread::spawn(move || {
        let mut caches = LcoreCaches::new();
        let (mut b, mut rb) = (Burst::new(), Burst::new());
        let mut i = 0u32;
        let mut moved = 0u64;
        while !s2.load(Ordering::Relaxed) {
            while b.len() < 32 {
                let f = frame(i);
                i += 1;
                let mut m = caches.for_pool(&p2).alloc().unwrap();
                m.append(f.len()).unwrap().copy_from_slice(&f);
                b.push(m);
            }
            tx.tx_burst(&mut caches, &mut b);
            let n = rx.rx_burst(&mut caches, &mut rb, 64);
            moved += n as u64;
            caches.free_all(rb.drain(..));
        }
        caches.free_all(b.drain(..));
        while rx.rx_burst(&mut caches, &mut rb, 64) > 0 {
            caches.free_all(rb.drain(..));
        }
        moved
    });
    let caps = Captures::new();
    for k in 0..20 {
        let path = tmp(&format!("onoff{}.pcapng", k % 2));
        let spec = CaptureSpec {
            snaplen: 96,
            ring_size: Some(if k % 2 == 0 { 64 } else { 4096 }),
            ..CaptureSpec::new(&path)
        };
        let st = caps.start(&tap, spec).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let fin = caps.stop(st.id).unwrap();
        let blocks = pcapng::read(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(packets(&blocks).len() as u64, fin.written);
        assert_eq!(fin.written, fin.captured);
    }
    stop.store(true, Ordering::Relaxed);
    assert!(fwd.join().unwrap() > 0);
    drop(port);
    assert_eq!(pool.available(), pool.count());
}

#[test]
fn tshark_reads_a_fifo_live() {
    if std::process::Command::new("tshark")
        .arg("-v")
        .output()
        .is_err()
    {
        eprintln!(
            "SKIP tshark FIFO check: tshark is not installed (scripts/setup-peers.sh installs it)"
        );
        return;
    }
    let pool = pool("cap-fifo-tshark", 512);
    let mut port = open_ring("net_ring5", &pool);
    let tap = port.capture_point().unwrap();
    let caps = Captures::new();
    let path = tmp("tshark.fifo");
    let _ = std::fs::remove_file(&path);
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let st = caps.start(&tap, CaptureSpec::new(&path)).unwrap();
    let reader = std::process::Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-T", "fields", "-e", "frame.len"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while caps.list()[0].state != "writing" {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "tshark never opened the FIFO"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut caches = LcoreCaches::new();
    loop_traffic(&pool, &mut port, &mut caches, (0..40).map(frame));
    let fin = caps.stop(st.id).unwrap();
    assert_eq!(fin.written, 80);
    let out = reader.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lens: Vec<usize> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(lens.len(), 80);
    for i in 0..40 {
        assert_eq!(lens.iter().filter(|&&l| l == frame(i).len()).count() % 2, 0);
    }
}
