//! Interop tests against real peers: DPDK 22.11's dpdk-testpmd and our own testpmd, with
//! every frame's count and payload checked by ferrovia-pktcheck.
//!
//! Matrix: mergeable Rx buffers on/off × in-order on/off × 1 and 2 queue pairs, each run
//! mixing 64, 1518 and 9000-byte frames; plus the packed ring.

mod harness;

use std::time::Duration;

use harness::*;

const COUNT: u64 = 6000;

fn variants() -> Vec<(String, u16)> {
    let mut v = Vec::new();
    for mrg in [1, 0] {
        for ino in [1, 0] {
            for q in [1u16, 2] {
                v.push((format!("mrg_rxbuf={mrg},in_order={ino}"), q));
            }
        }
    }
    v.push(("packed_vq=1".into(), 1));
    v.push(("packed_vq=1,mrg_rxbuf=0".into(), 2));
    v
}

fn assert_clean(tag: &str, rc: Option<i32>, c: Check, out: &str) {
    assert_eq!(
        (rc, c.sent, c.intact, c.corrupt, c.lost, c.dup),
        (Some(0), COUNT, COUNT, 0, 0, 0),
        "{tag}: every frame must come back intact; pktcheck said:\n{out}"
    );
    assert_eq!(c.macswapped, COUNT, "{tag}: the reflector swaps MACs");
}

/// DPDK's virtio-user (the container side, macswap) against our vhost port.
#[test]
fn dpdk_virtio_user_with_our_vhost() {
    let _g = serial();
    if !dpdk_ready("dpdk_virtio_user_with_our_vhost") {
        return;
    }
    let dir = workdir("dvu");
    for (i, (v, q)) in variants().into_iter().enumerate() {
        let tag = format!("dvu{i} [{v} queues={q}]");
        let sock = dir.join(format!("s{i}"));
        let ours = format!("net_vhost0,iface={},queues={q}", sock.display());
        let mut c = std::process::Command::new(PKTCHECK);
        c.args([
            "--vdev",
            &ours,
            "--count",
            &COUNT.to_string(),
            "--sizes",
            "64,1518,9000",
        ])
        .args([
            "--window",
            "32",
            "--queues",
            &q.to_string(),
            "--timeout",
            "5",
            "--max-pkt-len",
            "9018",
        ]);
        let mut pk = Proc::spawn("pktcheck", c, &dir.join(format!("pk{i}.log")), None);
        assert!(
            wait_for_path(&sock, Duration::from_secs(10)),
            "{tag}: our vhost socket never appeared"
        );
        let qs = format!("--rxq={q}");
        let qt = format!("--txq={q}");
        let dpdk = Proc::spawn(
            "dpdk-testpmd",
            dpdk_cmd(
                &format!("dvu{i}"),
                &format!("net_virtio_user0,path={},queues={q},{v}", sock.display()),
                &["--forward-mode=macswap", "--stats-period", "100", &qs, &qt],
            ),
            &dir.join(format!("dpdk{i}.log")),
            None,
        );
        let rc = pk.wait(Duration::from_secs(90));
        let out = pk.output();
        let chk = parse_check(&out).unwrap_or_else(|| {
            panic!(
                "{tag}: pktcheck printed no summary:\n{out}\nDPDK:\n{}",
                dpdk.output()
            )
        });
        assert_clean(&tag, rc, chk, &out);
        drop(dpdk);
    }
}

/// Our virtio-user against DPDK's vhost port (macswap).
#[test]
fn our_virtio_user_with_dpdk_vhost() {
    let _g = serial();
    if !dpdk_ready("our_virtio_user_with_dpdk_vhost") {
        return;
    }
    let dir = workdir("ovu");
    for q in [1u16, 2] {
        let sock = dir.join(format!("vh{q}"));
        let qs = format!("--rxq={q}");
        let qt = format!("--txq={q}");
        let dpdk = Proc::spawn(
            "dpdk-testpmd",
            dpdk_cmd(
                &format!("ovh{q}"),
                &format!("net_vhost0,iface={},queues={q}", sock.display()),
                &["--forward-mode=macswap", "--stats-period", "100", &qs, &qt],
            ),
            &dir.join(format!("dpdk{q}.log")),
            None,
        );
        assert!(
            wait_for_path(&sock, Duration::from_secs(30)),
            "DPDK vhost socket never appeared:\n{}",
            dpdk.output()
        );
        for (i, (v, vq)) in variants().into_iter().enumerate() {
            if vq != q {
                continue;
            }
            let tag = format!("ovu{i} [{v} queues={q}]");
            let vdev = format!("net_virtio_user0,path={},queues={q},{v}", sock.display());
            let (rc, chk, out) = pktcheck(&dir, &format!("ovu{i}"), &vdev, q, COUNT);
            assert_clean(&tag, rc, chk, &format!("{out}\nDPDK:\n{}", dpdk.output()));
        }
        drop(dpdk);
    }
}

/// Ours on both sides: our testpmd as the reflector, in both roles.
#[test]
fn ours_with_ours() {
    let _g = serial();
    let dir = workdir("oo");
    for (i, (v, q)) in variants().into_iter().enumerate() {
        let qs = format!("--rxq={q}");
        let qt = format!("--txq={q}");
        // (a) our testpmd is the vhost side; pktcheck drives virtio-user.
        let sock = dir.join(format!("a{i}"));
        let tp = Proc::spawn(
            "testpmd",
            ours_cmd(
                &format!("net_vhost0,iface={},queues={q}", sock.display()),
                &["--forward-mode=macswap", "--stats-period", "100", &qs, &qt],
            ),
            &dir.join(format!("tpa{i}.log")),
            None,
        );
        assert!(
            wait_for_path(&sock, Duration::from_secs(10)),
            "our vhost socket never appeared"
        );
        let vdev = format!("net_virtio_user0,path={},queues={q},{v}", sock.display());
        let (rc, chk, out) = pktcheck(&dir, &format!("ooa{i}"), &vdev, q, COUNT);
        assert_clean(
            &format!("ours/vhost [{v} queues={q}]"),
            rc,
            chk,
            &format!("{out}\ntestpmd:\n{}", tp.output()),
        );
        drop(tp);
        // (b) our testpmd is the virtio-user side; pktcheck runs the vhost port.
        let sock = dir.join(format!("b{i}"));
        let ours = format!("net_vhost0,iface={},queues={q}", sock.display());
        let mut c = std::process::Command::new(PKTCHECK);
        c.args([
            "--vdev",
            &ours,
            "--count",
            &COUNT.to_string(),
            "--sizes",
            "64,1518,9000",
        ])
        .args([
            "--window",
            "32",
            "--queues",
            &q.to_string(),
            "--timeout",
            "5",
        ]);
        let mut pk = Proc::spawn("pktcheck", c, &dir.join(format!("pkb{i}.log")), None);
        assert!(wait_for_path(&sock, Duration::from_secs(10)));
        let tp = Proc::spawn(
            "testpmd",
            ours_cmd(
                &format!("net_virtio_user0,path={},queues={q},{v}", sock.display()),
                &["--forward-mode=macswap", "--stats-period", "100", &qs, &qt],
            ),
            &dir.join(format!("tpb{i}.log")),
            None,
        );
        let rc = pk.wait(Duration::from_secs(90));
        let out = pk.output();
        let chk =
            parse_check(&out).unwrap_or_else(|| panic!("no summary:\n{out}\n{}", tp.output()));
        assert_clean(
            &format!("ours/virtio-user [{v} queues={q}]"),
            rc,
            chk,
            &format!("{out}\ntestpmd:\n{}", tp.output()),
        );
        drop(tp);
    }
}

/// Our virtio-user (client) survives 20 crashes (SIGKILL) and relaunches of DPDK's vhost server: after each relaunch
/// traffic resumes with payloads intact; afterwards no mbuf and no fd has leaked.
#[test]
fn our_virtio_user_reconnects_to_restarted_dpdk_vhost() {
    use ferrovia_ethdev::{Burst, PortConf};
    use ferrovia_memory::{LcoreCaches, Mempool, MempoolConfig};
    use std::time::Instant;

    let _g = serial();
    if !dpdk_ready("our_virtio_user_reconnects_to_restarted_dpdk_vhost") {
        return;
    }
    let dir = workdir("rc-dpdk");
    let sock = dir.join("vh.sock");
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let start_dpdk = |i: usize| {
        let _ = std::fs::remove_file(&sock);
        let p = Proc::spawn(
            "dpdk-testpmd",
            dpdk_cmd(
                &format!("rcd{i}"),
                &format!("net_vhost0,iface={}", sock.display()),
                &["--forward-mode=macswap", "--stats-period", "100"],
            ),
            &dir.join(format!("dpdk{i}.log")),
            None,
        );
        assert!(
            wait_for_path(&sock, Duration::from_secs(30)),
            "DPDK vhost socket never appeared:\n{}",
            p.output()
        );
        p
    };
    ferrovia_pmd::start_control_plane().unwrap();
    let fds0 = fds();
    {
        let pool = Mempool::new(MempoolConfig {
            name: "rc-dpdk".into(),
            count: 4096,
            ..Default::default()
        })
        .unwrap();
        let mut dpdk = start_dpdk(0);
        let mut port = ferrovia_pmd::open(
            &format!("net_virtio_user0,path={}", sock.display()),
            &PortConf::new(0, pool.clone()),
        )
        .unwrap();
        port.start().unwrap();
        let mut tx = port.tx_queue(0).unwrap();
        let mut rx = port.rx_queue(0).unwrap();
        let mut caches = LcoreCaches::new();
        for cycle in 0..20 {
            let t = Instant::now();
            while !port.link().up {
                assert!(
                    t.elapsed() < Duration::from_secs(20),
                    "cycle {cycle}: no reconnection"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(200)); // DPDK enables its rings
            let mut out = Burst::new();
            for i in 0..32u8 {
                let mut m = pool.alloc().unwrap();
                let d = m.append(64 + i as usize * 40).unwrap();
                d[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
                d[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
                d[12..].fill(cycle as u8 ^ i);
                out.push(m);
            }
            let mut got = Vec::new();
            let t = Instant::now();
            while got.len() < 32 {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "cycle {cycle}: {} of 32 back\n{}",
                    got.len(),
                    dpdk.output()
                );
                tx.tx_burst(&mut caches, &mut out);
                let mut r = Burst::new();
                rx.rx_burst(&mut caches, &mut r, 32);
                got.extend(r.drain(..).map(|m| m.to_vec()));
            }
            for (i, f) in got.iter().enumerate() {
                assert_eq!(f.len(), 64 + i * 40, "cycle {cycle} frame {i} length");
                assert_eq!(
                    &f[..12],
                    &[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2],
                    "macswapped"
                );
                assert!(
                    f[12..].iter().all(|&b| b == cycle as u8 ^ i as u8),
                    "cycle {cycle} frame {i} payload"
                );
            }
            // A crash, not a clean stop: SIGKILL.
            if let Some(mut c) = dpdk.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            let t = Instant::now();
            while port.link().up {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "cycle {cycle}: link never went down"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            dpdk = start_dpdk(cycle + 1);
        }
        drop((tx, rx, port, caches));
        drop(dpdk);
        assert_eq!(
            pool.available(),
            pool.count(),
            "mbufs leaked across reconnections"
        );
    }
    let t = Instant::now();
    while fds() != fds0 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "fds {} != {fds0} at start",
            fds()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `script` to our interactive testpmd, pausing `pause` after each `start` line.
fn drive(p: &mut Proc, script: &[&str], pause: Duration) {
    use std::io::Write;
    let stdin = p.child.as_mut().unwrap().stdin.as_mut().unwrap();
    for line in script {
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(if line.starts_with("start") || line.starts_with("show") {
            pause
        } else {
            Duration::from_millis(100)
        });
    }
}

/// The first number after `key` in `out`, for every occurrence.
fn numbers_after(out: &str, key: &str) -> Vec<u64> {
    out.match_indices(key)
        .filter_map(|(i, _)| out[i + key.len()..].split_whitespace().next()?.parse().ok())
        .collect()
}

/// Checksum offloads through the virtio-net header against DPDK 22.11, both ways: csum mode
/// on both sides with Tx checksum offload (each side's hardware mode writes `NEEDS_CSUM`
/// headers) and Rx checksum offload; CSUM and GUEST_CSUM are negotiated, packets go round,
/// and neither side counts a bad checksum or a malformed header.
#[test]
fn checksum_offloads_with_dpdk() {
    let _g = serial();
    if !dpdk_ready("checksum_offloads_with_dpdk") {
        return;
    }
    let dir = workdir("csum");
    let ours_app = [
        "-i",
        "--enable-rx-cksum",
        "--tx-offloads=0xe",
        "--forward-mode=csum",
    ];
    // DPDK's virtio ports take Rx TCP/UDP checksum (0xc), not IPv4.
    let dpdk_app = [
        "--forward-mode=csum",
        "--rx-offloads=0xc",
        "--tx-offloads=0xc",
        "--stats-period",
        "100",
    ];
    let check = |tag: &str, ours: &str, dpdk: &str| {
        assert!(
            ours.contains("Virtio features negotiated: NET_CSUM NET_GUEST_CSUM"),
            "{tag}: CSUM and GUEST_CSUM negotiated\nours:\n{ours}"
        );
        for (who, out) in [("ours", ours), ("DPDK", dpdk)] {
            let bad: u64 = numbers_after(out, "Bad-ipcsum:").iter().sum::<u64>()
                + numbers_after(out, "Bad-l4csum:").iter().sum::<u64>();
            assert!(
                out.contains("Bad-l4csum:"),
                "{tag}: {who} printed its csum statistics:\n{out}"
            );
            assert_eq!(bad, 0, "{tag}: {who} counted bad checksums:\n{out}");
        }
        assert!(
            numbers_after(ours, "RX-packets:").iter().any(|&n| n > 0),
            "{tag}: packets went round:\nours:\n{ours}\nDPDK:\n{dpdk}"
        );
        assert!(
            numbers_after(ours, "rx_q0_bad_virtio_net_hdr:")
                .iter()
                .all(|&n| n == 0),
            "{tag}: {ours}"
        );
    };

    // (a) our vhost, DPDK's virtio-user.
    let sock = dir.join("a.sock");
    let mut cmd = std::process::Command::new(TESTPMD);
    cmd.args(["-l", "0-1", "--no-pci", "--no-telemetry"])
        .arg(format!("--vdev=net_vhost0,iface={}", sock.display()))
        .arg("--")
        .args(ours_app);
    let mut ours = Proc::spawn(
        "testpmd",
        cmd,
        &dir.join("a-ours.log"),
        Some(std::process::Stdio::piped()),
    );
    assert!(wait_for_path(&sock, Duration::from_secs(10)));
    let mut dpdk_args = dpdk_app.to_vec();
    dpdk_args.push("--tx-first");
    let mut dpdk = Proc::spawn(
        "dpdk-testpmd",
        dpdk_cmd(
            "csa",
            &format!("net_virtio_user0,path={}", sock.display()),
            &dpdk_args,
        ),
        &dir.join("a-dpdk.log"),
        None,
    );
    drive(
        &mut ours,
        &["start", "show port info 0", "stop", "show port xstats 0"],
        Duration::from_secs(2),
    );
    dpdk.interrupt(Duration::from_secs(10));
    drive(&mut ours, &["quit"], Duration::ZERO);
    ours.wait(Duration::from_secs(20));
    check("our vhost", &ours.output(), &dpdk.output());
    drop((ours, dpdk));

    // (b) our virtio-user, DPDK's vhost.
    let sock = dir.join("b.sock");
    let mut dpdk = Proc::spawn(
        "dpdk-testpmd",
        dpdk_cmd(
            "csb",
            &format!("net_vhost0,iface={}", sock.display()),
            &dpdk_app,
        ),
        &dir.join("b-dpdk.log"),
        None,
    );
    assert!(wait_for_path(&sock, Duration::from_secs(10)));
    let mut cmd = std::process::Command::new(TESTPMD);
    cmd.args(["-l", "0-1", "--no-pci", "--no-telemetry"])
        .arg(format!("--vdev=net_virtio_user0,path={}", sock.display()))
        .arg("--")
        .args(ours_app);
    let mut ours = Proc::spawn(
        "testpmd",
        cmd,
        &dir.join("b-ours.log"),
        Some(std::process::Stdio::piped()),
    );
    drive(
        &mut ours,
        &[
            "show port info 0",
            "start tx_first",
            "stop",
            "show port xstats 0",
            "quit",
        ],
        Duration::from_secs(2),
    );
    ours.wait(Duration::from_secs(20));
    dpdk.interrupt(Duration::from_secs(10));
    check("our virtio-user", &ours.output(), &dpdk.output());
}
