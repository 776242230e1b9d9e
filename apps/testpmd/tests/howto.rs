//! The container-networking how-to command lines, with our testpmd on both sides, driven
//! through piped stdin as a user would type them; and the same pair as an unprivileged user
//! without hugepages.

mod harness;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::*;

/// Runs the host line and the container line, `start tx_first` on the container, and
/// returns both logs.
fn run_pair(
    dir: &std::path::Path,
    sock: &str,
    wrap: &dyn Fn(Command) -> Command,
) -> (String, String, Vec<String>) {
    let host_args = format!(
        "-l 0-1 -n 4 --socket-mem 1024,1024 --vdev eth_vhost0,iface={sock} --file-prefix=host --no-pci -- -i"
    );
    let cont_args = format!(
        "-l 6-7 -n 4 -m 1024 --no-pci --vdev=virtio_user0,path={sock} --file-prefix=container -- -i"
    );
    let mut host_cmd = Command::new(TESTPMD);
    host_cmd.args(host_args.split_whitespace());
    let mut host = Proc::spawn(
        "host testpmd",
        wrap(host_cmd),
        &dir.join("host.log"),
        Some(Stdio::piped()),
    );
    let mut host_in = host.child.as_mut().unwrap().stdin.take().unwrap();
    writeln!(host_in, "start").unwrap();
    assert!(
        wait_for_path(std::path::Path::new(sock), Duration::from_secs(10)),
        "host socket never appeared:\n{}",
        host.output()
    );
    let mut cont_cmd = Command::new(TESTPMD);
    cont_cmd.args(cont_args.split_whitespace());
    let mut cont = Proc::spawn(
        "container testpmd",
        wrap(cont_cmd),
        &dir.join("container.log"),
        Some(Stdio::piped()),
    );
    let mut cont_in = cont.child.as_mut().unwrap().stdin.take().unwrap();
    writeln!(cont_in, "start tx_first").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // While both forward: what the kernel says about each process.
    let status: Vec<String> = [&host, &cont]
        .iter()
        .map(|p| {
            let pid = p.child.as_ref().unwrap().id();
            std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
        })
        .collect();
    // Stop both forwarders before either side goes away: the container first (it stops
    // sending), then the host (it has echoed what was in flight), then quit. A container that
    // quit while the host still forwarded would make the host's last bursts fail.
    writeln!(cont_in, "show port stats all").unwrap();
    writeln!(cont_in, "stop").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    writeln!(host_in, "show port stats all").unwrap();
    writeln!(host_in, "stop").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    writeln!(cont_in, "quit").unwrap();
    assert_eq!(
        cont.wait(Duration::from_secs(20)),
        Some(0),
        "container testpmd failed:\n{}",
        cont.output()
    );
    writeln!(host_in, "quit").unwrap();
    assert_eq!(
        host.wait(Duration::from_secs(20)),
        Some(0),
        "host testpmd failed:\n{}",
        host.output()
    );
    (host.output(), cont.output(), status)
}

fn check_forwarded(host: &str, cont: &str) {
    let (hrx, htx) =
        fwd_totals(host).unwrap_or_else(|| panic!("no forward statistics from the host:\n{host}"));
    let (crx, ctx) = fwd_totals(cont)
        .unwrap_or_else(|| panic!("no forward statistics from the container:\n{cont}"));
    assert!(
        hrx > 1000 && htx > 1000,
        "host forwarded too little: rx {hrx} tx {htx}\n{host}"
    );
    assert!(
        crx > 1000 && ctx > 1000,
        "container forwarded too little: rx {crx} tx {ctx}\n{cont}"
    );
    // The container sent its tx_first burst, then everything it received; the host echoed
    // everything it received.
    assert_eq!(hrx, htx, "host io forwarding lost packets\n{host}");
    assert!(
        cont.contains("NIC statistics for port 0"),
        "show port stats printed nothing:\n{cont}"
    );
    assert!(cont.contains("Rx-pps:"));
    // Both sides report their start-up time (the figure itself is a benchmark, not asserted).
    for (side, out) in [("host", host), ("container", cont)] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("First packet received ") && l.ends_with(" ms after start")),
            "the {side} did not report when its first packet arrived:\n{out}"
        );
    }
}

#[test]
fn container_howto_lines_with_our_testpmd_on_both_sides() {
    let _g = serial();
    let dir = workdir("howto");
    let sock = dir.join("sock0").display().to_string();
    let (host, cont, _) = run_pair(&dir, &sock, &|c| c);
    check_forwarded(&host, &cont);
    assert!(
        host.contains("Note: option -n 4 has no effect here"),
        "ignored EAL options are named:\n{host}"
    );
    assert!(
        cont.contains("Warning: lcore 7 maps to CPU"),
        "missing CPUs are explained:\n{cont}"
    );
}

/// The same pair as `nobody`, with no hugepages involved (our memory is memfd).
#[test]
fn container_howto_lines_unprivileged_without_hugepages() {
    let _g = serial();
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let dir = workdir("howto-nobody");
    let sock = dir.join("sock0").display().to_string();
    let have_setpriv = Command::new("sh")
        .args(["-c", "command -v setpriv"])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let wrap: Box<dyn Fn(Command) -> Command> = if uid == 0 {
        assert!(
            have_setpriv,
            "setpriv (util-linux) is needed to drop privileges for this test"
        );
        // The sockets' directory must be writable by nobody.
        Command::new("chmod")
            .args(["0777", &dir.display().to_string()])
            .status()
            .unwrap();
        Box::new(|c: Command| {
            let mut w = Command::new("setpriv");
            w.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
            w.arg(c.get_program());
            w.args(c.get_args());
            w
        })
    } else {
        Box::new(|c| c)
    };
    let (host, cont, status) = run_pair(&dir, &sock, &*wrap);
    check_forwarded(&host, &cont);
    assert!(
        host.contains("no hugepages") && cont.contains("no hugepages"),
        "pools must be memfd-backed"
    );
    for st in &status {
        let field = |k: &str| {
            st.lines()
                .find(|l| l.starts_with(k))
                .unwrap_or("")
                .to_string()
        };
        // setpriv execs the program in place, so the pid is testpmd itself.
        if uid == 0 {
            assert!(
                field("Uid:").split_whitespace().nth(1) == Some("65534"),
                "not running as nobody: {}",
                field("Uid:")
            );
        }
        assert_eq!(
            field("HugetlbPages:").split_whitespace().nth(1),
            Some("0"),
            "hugepages used: {}",
            field("HugetlbPages:")
        );
    }
}

/// Runs our testpmd non-interactively on two ring ports (io forwarding, `--tx-first`,
/// `--stats-period 1`, plus `extra`) for `run`, interrupts it, checks it exited 0 after SIGINT
/// and returns its output.
fn ring_ports_until_sigint(name: &str, extra: &[&str], run: Duration) -> String {
    let dir = workdir(name);
    let mut c = Command::new(TESTPMD);
    c.args([
        "-l",
        "0-1",
        "--vdev",
        "net_ring0",
        "--vdev",
        "net_ring1",
        "--",
    ])
    .args(["--forward-mode=io", "--tx-first", "--stats-period", "1"])
    .args(extra);
    let mut p = Proc::spawn("testpmd", c, &dir.join("tp.log"), None);
    std::thread::sleep(run);
    assert_eq!(
        p.interrupt(Duration::from_secs(10)),
        Some(0),
        "exit status after SIGINT:\n{}",
        p.output()
    );
    p.output()
}

/// Non-interactive testpmd with `--stats-period`: SIGINT stops forwarding, prints the forward
/// statistics and exits 0.
#[test]
fn sigint_stops_cleanly_with_final_statistics() {
    let _g = serial();
    let out = ring_ports_until_sigint("sigint", &[], Duration::from_millis(1500));
    assert!(out.contains("Signal received, preparing to exit"), "{out}");
    let (rx, tx) = fwd_totals(&out).unwrap_or_else(|| panic!("no final statistics:\n{out}"));
    assert!(rx > 0 && tx > 0, "ring ports forwarded nothing:\n{out}");
    assert!(
        out.contains("Rx-pps:"),
        "periodic statistics missing:\n{out}"
    );
    assert!(out.contains("Bye..."), "{out}");
}

/// `--record-burst-stats` shows DPDK's burst-size lines inside each port's forward statistics
/// block; `--record-core-cycles` adds DPDK's cycles-per-packet line after the totals.
#[test]
fn record_burst_stats_and_core_cycles() {
    let _g = serial();
    let out = ring_ports_until_sigint(
        "burst-stats",
        &["--record-burst-stats", "--record-core-cycles"],
        Duration::from_millis(1200),
    );
    assert!(!out.contains("has no effect"), "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("-bursts : ")).collect();
    // Two ports, an RX and a TX line each.
    assert_eq!(lines.len(), 4, "{out}");
    for l in &lines {
        let (_, rest) = l.split_once(" : ").unwrap();
        let (total, spread) = rest.split_once(" [").unwrap();
        let total: u64 = total.trim().parse().unwrap();
        assert!(total > 0, "{l}");
        assert!(spread.starts_with(|c: char| c.is_ascii_digit()), "{l}");
        assert!(spread.ends_with("% of other]"), "{l}");
        let pct: u64 = spread
            .split(" + ")
            .map(|part| {
                part.split('%')
                    .next()
                    .unwrap()
                    .trim()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum();
        // Each share is rounded down, so the four add up to at most 100 and lose under 4.
        assert!((97..=100).contains(&pct), "{l}");
    }
    // The first TX line belongs to port 0's block, before its closing rule.
    let block = out.split("Forward statistics for port 0").nth(1).unwrap();
    let block = block
        .split("-------------------------------------")
        .next()
        .unwrap();
    assert!(block.contains("TX-bursts : "), "{out}");
    // CPU cycles/packet=X (total cycles=C / total io packets=P) at F MHz Clock, after the totals.
    let (rx, _) = fwd_totals(&out).unwrap();
    let line = out
        .lines()
        .find(|l| l.contains("CPU cycles/packet="))
        .unwrap_or_else(|| panic!("no cycles line:\n{out}"));
    let num = |key: &str, end: char| -> f64 {
        let rest = line.split(key).nth(1).unwrap();
        rest[..rest.find(end).unwrap()].trim().parse().unwrap()
    };
    let (per, cycles, pkts) = (
        num("cycles/packet=", ' '),
        num("total cycles=", ' '),
        num("total io packets=", ')'),
    );
    assert_eq!(pkts as u64, rx, "{line}");
    assert!(cycles > 0.0 && (per - cycles / pkts).abs() < 0.01, "{line}");
    assert!(line.ends_with("MHz Clock"), "{line}");
    assert!(
        out.find("Accumulated forward statistics").unwrap() < out.find(line).unwrap(),
        "{out}"
    );
}
