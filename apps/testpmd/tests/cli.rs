//! The command line a newcomer meets first: `--help`, `--vdev help`, errors for unknown
//! drivers and keys, and lcore pinning checked against the process's CPU affinity mask.

mod harness;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use harness::TESTPMD;

fn run(args: &[&str]) -> Output {
    Command::new(TESTPMD)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run testpmd")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn help_prints_the_usage_and_exits_0() {
    for args in [&["--help"][..], &["-h"], &["-l", "0-1", "--", "--help"]] {
        let o = run(args);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
        for opt in [
            "Usage: testpmd [EAL options] -- [testpmd options]",
            "--lcores",
            "--vdev",
            "--forward-mode",
            "--nb-cores",
            "--stats-period",
            "--eth-peer",
            "--vdev help",
            "net_virtio_user | virtio_user:",
            "net_vhost | eth_vhost:",
        ] {
            assert!(out.contains(opt), "{args:?}: '{opt}' missing:\n{out}");
        }
    }
}

#[test]
fn vdev_help_lists_the_registered_drivers_and_their_keys() {
    for args in [&["--vdev", "help"][..], &["--vdev=help"]] {
        let o = run(args);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        for want in [
            "net_vhost | eth_vhost:",
            "iface=<path> the vhost-user socket path (required)",
            "queues=<1..128> queue pairs (default 1)",
            "client=<0|1>",
            "net_virtio_user | virtio_user:",
            "path=<path>",
            "queue_size=<2..32768>",
            "packed_vq=<0|1>",
            "mac=<mac>",
            "net_ring | eth_ring:",
            "net_null | eth_null:",
            "net_af_packet | eth_af_packet:",
            "qpairs=<1..16>",
            "net_tap | eth_tap:",
            "persist=<0|1>",
        ] {
            assert!(out.contains(want), "'{want}' missing:\n{out}");
        }
        for absent in ["net_pcap", "net_memif"] {
            assert!(!out.contains(absent), "'{absent}' is not built:\n{out}");
        }
    }
}

#[test]
fn unknown_drivers_and_keys_are_explained() {
    let o = run(&["-l", "0", "--vdev", "net_pcap0,iface=tap0"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("no driver named 'net_pcap' is registered")
            && out.contains("net_vhost (eth_vhost)")
            && out.contains("--vdev help"),
        "{out}"
    );
    let o = run(&["-l", "0", "--vdev", "net_vhost0,ifase=/tmp/x"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("net_vhost0: unknown devargs key 'ifase' (valid keys: iface=<path> the vhost-user socket path (required)"),
        "{out}"
    );
    let o = run(&["-l", "0", "--vdev", "net_null0,mac=01:00:5e:00:00:01"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("'mac'") && out.contains("unicast"), "{out}");
}

/// The CPUs this test process may run on.
fn allowed() -> Vec<u32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string();
    let mut v = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => v.extend(a.parse::<u32>().unwrap()..=b.parse::<u32>().unwrap()),
            None => v.push(part.parse().unwrap()),
        }
    }
    v
}

fn have_taskset() -> bool {
    let ok = Command::new("taskset")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: taskset (util-linux) is not installed");
    }
    ok
}

/// The `Cpus_allowed_list` of the thread named `name` of process `pid`: polled until it is
/// `want` (the thread pins itself just after it starts) or 10 s passed; the last value seen.
fn thread_cpus(pid: u32, name: &str, want: &str) -> Option<String> {
    let t = Instant::now();
    let mut seen = None;
    while t.elapsed() < Duration::from_secs(10) {
        for e in std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .flatten()
        {
            let p = e.path();
            let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            if comm.trim() == name {
                let status = std::fs::read_to_string(p.join("status")).unwrap_or_default();
                seen = status
                    .lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .map(|s| s.trim().to_string());
            }
        }
        if seen.as_deref() == Some(want) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    seen
}

/// Runs testpmd under `taskset -c MASK` with `--lcores 0@CPU,1@CPU` until Enter; returns its
/// output and the CPU list the forwarding lcore's thread was allowed while it ran.
fn pinned_run(mask: &str, cpu: u32) -> (String, Option<String>) {
    let lcores = format!("0@{cpu},1@{cpu}");
    let mut child = Command::new("taskset")
        .args(["-c", mask, TESTPMD, "--lcores", &lcores])
        .args(["--vdev", "net_null0", "--", "--forward-mode=rxonly"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("taskset testpmd");
    let pinned = thread_cpus(child.id(), "lcore-1", &cpu.to_string());
    let _ = child.stdin.take().unwrap().write_all(b"\n");
    let o = child.wait_with_output().unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    (out, pinned)
}

/// Under `taskset -c C`, `--lcores 0@C,1@C` pins the forwarding lcore to C without a warning,
/// even when C is not below the number of CPUs the process may use (it used to say "which this
/// machine does not have (1 CPUs)"). With a wider mask, the thread really is pinned to C.
#[test]
fn lcores_on_an_allowed_cpu_are_pinned_without_warning() {
    if !have_taskset() {
        return;
    }
    let _g = harness::serial();
    let mine = allowed();
    let cpu = *mine.last().unwrap();
    let (out, pinned) = pinned_run(&cpu.to_string(), cpu);
    assert!(!out.contains("Warning: lcore"), "{out}");
    assert!(!out.contains("Some("), "{out}");
    assert_eq!(pinned.as_deref(), Some(cpu.to_string().as_str()), "{out}");
    if mine.len() >= 2 {
        let all = mine
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let (out, pinned) = pinned_run(&all, cpu);
        assert!(!out.contains("Warning: lcore"), "{out}");
        assert_eq!(
            pinned.as_deref(),
            Some(cpu.to_string().as_str()),
            "the forwarding thread was not pinned to CPU {cpu} within mask {all}:\n{out}"
        );
    }
}

/// A CPU outside the affinity mask is named with the allowed list, and testpmd still runs.
#[test]
fn lcores_outside_the_affinity_mask_are_explained() {
    if !have_taskset() {
        return;
    }
    let _g = harness::serial();
    let mine = allowed();
    let cpu = mine[0];
    let outside = (0..).find(|c| *c != cpu).unwrap();
    let o = Command::new("taskset")
        .args(["-c", &cpu.to_string(), TESTPMD])
        .args(["--lcores", &format!("0@{cpu},1@{outside}")])
        .args(["--vdev", "net_null0", "--", "--forward-mode=rxonly"])
        .stdin(Stdio::null())
        .output()
        .expect("taskset testpmd");
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "Warning: lcore 1 maps to CPU {outside}, which is not in this process's CPU affinity mask (allowed CPUs: {cpu})"
        )),
        "{out}"
    );
    assert!(!out.contains("Some("), "{out}");
}
