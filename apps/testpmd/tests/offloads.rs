//! testpmd's offload options and commands, end to end: one testpmd holding a vhost port and a
//! virtio-user port connected to it, forwarding in csum mode with checksum offloads on.

mod harness;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::{Proc, TESTPMD, workdir};

/// Runs testpmd with `app` options and the prompt `script` (one command a line, with a pause
/// after `start tx_first` so that some packets move); returns its output.
fn run(tag: &str, app: &[&str], script: &[&str]) -> String {
    let dir = workdir(tag);
    let sock = dir.join("s.sock");
    let mut cmd = Command::new(TESTPMD);
    cmd.args(["-l", "0-1", "--no-pci", "--no-telemetry"])
        .arg(format!("--vdev=net_vhost0,iface={}", sock.display()))
        .arg(format!("--vdev=net_virtio_user0,path={}", sock.display()))
        .arg("--")
        .arg("-i")
        .args(app);
    let mut p = Proc::spawn("testpmd", cmd, &dir.join("log"), Some(Stdio::piped()));
    {
        let stdin = p.child.as_mut().unwrap().stdin.as_mut().unwrap();
        for line in script {
            writeln!(stdin, "{line}").unwrap();
            stdin.flush().unwrap();
            std::thread::sleep(Duration::from_millis(if line.starts_with("start") {
                500
            } else {
                100
            }));
        }
    }
    let code = p.wait(Duration::from_secs(30));
    let out = p.output();
    assert_eq!(code, Some(0), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// The options configure the ports: the virtio features negotiated carry the offloads, and
/// csum mode forwards with hardware checksums and no bad checksum counted.
#[test]
fn offload_options_negotiate_and_csum_mode_forwards() {
    let out = run(
        "ol-opts",
        &[
            "--enable-rx-cksum",
            "--tx-offloads=0xe",
            "--forward-mode=csum",
        ],
        &[
            "show port info 1",
            "csum show 0",
            "start tx_first",
            "stop",
            "quit",
        ],
    );
    assert!(
        out.contains("Virtio features negotiated: NET_CSUM NET_GUEST_CSUM"),
        "{out}"
    );
    assert!(out.contains("UDP checksum offload is hw"), "{out}");
    assert!(out.contains("Bad-ipcsum: 0"), "{out}");
    assert!(out.contains("Bad-l4csum: 0"), "{out}");
    let rx: Vec<u64> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("RX-packets: "))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(
        rx.iter().any(|&n| n > 0),
        "some packets were forwarded:\n{out}"
    );
    for o in ["--enable-rx-cksum", "--tx-offloads"] {
        assert!(
            !out.contains(&format!("option {o}")),
            "{o} takes effect:\n{out}"
        );
    }
}

/// `port config` changes the offloads of a stopped port, which is opened again at
/// `port start`; `csum set`/`tso set` need the port's capability; a started port refuses.
#[test]
fn port_config_and_csum_commands() {
    let out = run(
        "ol-cmds",
        &[],
        &[
            "show port info 1",
            "port config 1 tx_offload tcp_cksum on",
            "port stop 0",
            "port stop 1",
            "port config 1 tx_offload tcp_cksum on",
            "port config 1 rx_offload tcp_cksum on",
            "port config 0 rx_offload tcp_cksum on",
            "port config 0 tx_offload tcp_cksum on",
            "port config 0 rx_offload tcp_lro on",
            "port config 1 tx_offload frobnicate on",
            "tso set 1448 1",
            "csum set udp hw 1",
            "port start 0",
            "port start 1",
            "show port info 1",
            "csum show 1",
            "quit",
        ],
    );
    assert!(out.contains("Please stop port 1 first"), "{out}");
    assert!(out.contains("unknown offload 'frobnicate'"), "{out}");
    assert!(
        out.contains("TSO segment size for non-tunneled packets is 1448"),
        "{out}"
    );
    let negotiated: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("Virtio features negotiated"))
        .collect();
    assert_eq!(negotiated.len(), 2, "{out}");
    assert!(!negotiated[0].contains("NET_CSUM"), "{out}");
    assert!(
        negotiated[1].contains("NET_CSUM")
            && negotiated[1].contains("NET_GUEST_CSUM")
            && negotiated[1].contains("NET_HOST_TSO4"),
        "{out}"
    );
}
