//! Wrong, missing and extra fds, oversized fields and a peer that stops reading, against our
//! vhost port. Its own test binary: it compares this process's fd count.

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use ferrovia_ethdev::{Burst, Port, PortConf, RxQueue};
use ferrovia_memory::{Mempool, MempoolConfig, RegionBacking, SharedRegion};

fn xstat(p: &dyn Port, name: &str) -> u64 {
    p.xstats()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no xstat {name}"))
}

fn wait<F: FnMut() -> bool>(what: &str, mut f: F) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn serve_good_client(sock: &str, pool: &Mempool, rx: &mut dyn RxQueue) {
    let mut vu = ferrovia_pmd::open(
        &format!("net_virtio_user0,path={sock}"),
        &PortConf::new(1, pool.clone()),
    )
    .unwrap();
    vu.start().unwrap();
    let mut tx = vu.tx_queue(0).unwrap();
    let mut b = Burst::new();
    for i in 0..8u8 {
        let mut m = pool.alloc().unwrap();
        m.append(100).unwrap().fill(i);
        b.push(m);
    }
    wait("good client traffic", || {
        tx.tx_burst(&mut b);
        b.is_empty()
    });
    let mut got = Burst::new();
    wait("8 packets", || {
        rx.rx_burst(&mut got, 32);
        got.len() >= 8
    });
    for (i, m) in got.iter().enumerate() {
        assert!(m.data().iter().all(|&x| x == i as u8) && m.data_len() == 100);
    }
}

/// Sends one raw vhost-user message with `fds` attached (SCM_RIGHTS).
fn send_raw(s: &UnixStream, req: u32, payload: &[u8], fds: &[i32]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut buf = Vec::new();
    buf.extend(req.to_le_bytes());
    buf.extend(1u32.to_le_bytes());
    buf.extend((payload.len() as u32).to_le_bytes());
    buf.extend(payload);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let space = if fds.is_empty() {
        0
    } else {
        // SAFETY: CMSG_SPACE is a pure computation.
        unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) as usize }
    };
    let mut cbuf = vec![0u8; space];
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer has room for one cmsg carrying `fds`.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c) as *mut i32, fds.len());
        }
    }
    // SAFETY: msg describes valid buffers.
    let n = unsafe { libc::sendmsg(s.as_raw_fd(), &msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Wrong, missing and extra fds end the session and are all closed; a peer that stops reading
/// our replies cannot block the backend; the next client is served.
#[test]
fn fd_abuse_and_a_peer_that_stops_reading() {
    let dir = std::env::temp_dir().join(format!("ferrovia-evil-fd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("f.sock").display().to_string();
    let pool = Mempool::new(MempoolConfig {
        name: "evil-fd".into(),
        count: 1024,
        ..Default::default()
    })
    .unwrap();
    let mut port = ferrovia_pmd::open(
        &format!("net_vhost0,iface={sock}"),
        &PortConf::new(0, pool.clone()),
    )
    .unwrap();
    port.start().unwrap();
    let mut rx = port.rx_queue(0).unwrap();
    let fds_before = std::fs::read_dir("/proc/self/fd").unwrap().count();
    let mem = SharedRegion::new("evil-fd", 65536, RegionBacking::Memfd).unwrap();
    // One SET_MEM_TABLE region description (num_regions=1, padding, gpa, size, uva, offset).
    let mut table = Vec::new();
    table.extend(1u32.to_le_bytes());
    table.extend(0u32.to_le_bytes());
    for v in [0u64, 65536, mem.base() as u64, 0] {
        table.extend(v.to_le_bytes());
    }
    let cases: Vec<(&str, u32, Vec<u8>, Vec<i32>)> = vec![
        ("SET_MEM_TABLE without its fd", 5, table.clone(), vec![]),
        (
            "SET_MEM_TABLE with two fds for one region",
            5,
            table.clone(),
            vec![mem.fd(), mem.fd()],
        ),
        (
            "SET_MEM_TABLE with a pipe as region fd",
            5,
            table.clone(),
            vec![0],
        ),
        (
            "GET_FEATURES carrying fds",
            1,
            vec![],
            vec![mem.fd(), mem.fd(), mem.fd()],
        ),
        (
            "SET_OWNER with an oversized size field",
            3,
            vec![0u8; 300],
            vec![],
        ),
    ];
    let count = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    // After a good client has been served once, the fd count is in its steady state (the
    // backend keeps its listening socket and the last session's state); every attack must
    // leave it exactly there.
    let mut steady = None;
    for (name, req, payload, fds) in cases {
        let f0 = xstat(&*port, "vhost_sessions_failed");
        let s = UnixStream::connect(&sock).unwrap();
        send_raw(&s, req, &payload, &fds).unwrap();
        wait(name, || xstat(&*port, "vhost_sessions_failed") > f0);
        drop(s);
        serve_good_client(&sock, &pool, &mut *rx);
        let n = count();
        match steady {
            None => steady = Some(n),
            Some(st) => wait(&format!("{name}: fd count back to {st}"), || count() == st),
        }
    }
    // A peer that floods requests needing replies and never reads them.
    let f0 = xstat(&*port, "vhost_sessions_failed");
    let s = UnixStream::connect(&sock).unwrap();
    s.set_nonblocking(true).unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(4) {
        // GET_FEATURES: each one makes the backend write a 20-byte reply we never read.
        let _ = send_raw(&s, 1, &[], &[]);
    }
    wait("session ended for the peer that stops reading", || {
        xstat(&*port, "vhost_sessions_failed") > f0
    });
    drop(s);
    serve_good_client(&sock, &pool, &mut *rx);
    let st = steady.unwrap();
    wait("no fd leaked by the flooding peer", || count() == st);
    assert!(st >= fds_before);
    drop(mem);
    drop(rx);
    drop(port); // must not hang
    let _ = std::fs::remove_dir_all(&dir);
}
