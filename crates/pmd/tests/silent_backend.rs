//! A vhost-user backend that accepts the connection and then never answers (or answers half a
//! reply) must not hang our virtio-user: `open` fails within the handshake's deadline with an
//! error naming the request that went unanswered, nothing leaks, and a vhost port served by
//! the same control loop keeps forwarding meanwhile.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use ferrovia_ethdev::PortConf;

mod support;
use support::{Bystander, fd_count as fds, pool, temp_dir};

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

#[test]
fn a_backend_that_never_answers_fails_open_and_stalls_nobody() {
    ferrovia_pmd::start_control_plane().unwrap();
    let dir = temp_dir("silent");
    // A healthy pair on the same control loop, forwarding in another thread throughout.
    let by = Bystander::start(&dir);
    let vu_pool = pool("silent-vu");
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
        let before = by.moved();
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
        by.assert_forwarded_since(before, &format!("{what}: the healthy pair meanwhile"));
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
    by.finish();
    assert_eq!(vu_pool.available(), vu_pool.count(), "no mbuf leaked");
    let _ = std::fs::remove_dir_all(&dir);
}
