//! DPDK's testpmd as a test peer.

use std::io::Write;
use std::process::{Command, Stdio};

/// True when DPDK's testpmd and hugepages are ready. When `FERROVIA_REQUIRE_DPDK=1` (CI), a
/// missing DPDK is a failure with instructions; otherwise the test says it is skipped.
pub fn dpdk_ready(test: &str) -> bool {
    let have_bin = Command::new("sh")
        .args(["-c", "command -v dpdk-testpmd"])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let free_huge = meminfo
        .lines()
        .find(|l| l.starts_with("HugePages_Free:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let mounted = std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains("hugetlbfs"));
    let ok = have_bin && free_huge >= 256 && mounted;
    if !ok {
        let why = format!(
            "{test}: DPDK peer not ready (dpdk-testpmd: {have_bin}, free hugepages: {free_huge} (need 256), hugetlbfs mounted: {mounted}); \
             install with `apt-get install dpdk dpdk-dev`, then `echo 512 > /proc/sys/vm/nr_hugepages; mkdir -p /dev/hugepages; mount -t hugetlbfs none /dev/hugepages` (scripts/test-all.sh does this)"
        );
        if std::env::var("FERROVIA_REQUIRE_DPDK").as_deref() == Ok("1") {
            panic!("{why}");
        }
        eprintln!("SKIPPED: {why}");
    }
    ok
}

/// DPDK testpmd on cores 0-1 with no PCI, in memory, with file prefix `prefix`, one `vdev`
/// and the application options `app` (after 16384 mbufs of 10240 bytes, 9018-byte frames).
pub fn dpdk_cmd(prefix: &str, vdev: &str, app: &[&str]) -> Command {
    let mut c = Command::new("dpdk-testpmd");
    c.args([
        "-l",
        "0-1",
        "--no-pci",
        "--in-memory",
        "--single-file-segments",
    ])
    .arg(format!("--file-prefix={prefix}"))
    .arg(format!("--vdev={vdev}"))
    .arg("--")
    .args([
        "--total-num-mbufs=16384",
        "--mbuf-size=10240",
        "--max-pkt-len=9018",
    ])
    .args(app);
    c
}

/// DPDK's telemetry client `dpdk-telemetry.py` (Debian's `dpdk` package), or None: `test`
/// says it is skipped, unless `FERROVIA_REQUIRE_DPDK=1` (CI), where its absence fails.
pub fn telemetry_py(test: &str) -> Option<String> {
    let found = [
        "/usr/bin/dpdk-telemetry.py",
        "/usr/local/bin/dpdk-telemetry.py",
        "/usr/share/dpdk/usertools/dpdk-telemetry.py",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists());
    if found.is_none() {
        let why = format!("{test}: dpdk-telemetry.py is not installed (apt-get install -y dpdk)");
        if std::env::var("FERROVIA_REQUIRE_DPDK").as_deref() == Ok("1") {
            panic!("{why}");
        }
        eprintln!("SKIPPED: {why}");
    }
    found.map(str::to_string)
}

/// Runs `dpdk-telemetry.py -f <prefix>` with `cmds` on its stdin (not a terminal: it prints
/// one JSON line per command) and returns the replies, one per command.
pub fn telemetry_ask(py: &str, prefix: &str, cmds: &[&str]) -> Vec<serde_json::Value> {
    let mut c = Command::new("python3")
        .args([py, "-f", prefix])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 {py}: {e}"));
    c.stdin
        .take()
        .expect("piped stdin")
        .write_all((cmds.join("\n") + "\n").as_bytes())
        .expect("writing the commands");
    let o = c.wait_with_output().expect("dpdk-telemetry.py's output");
    let text = String::from_utf8_lossy(&o.stdout);
    let v: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(
        v.len(),
        cmds.len(),
        "dpdk-telemetry.py -f {prefix}: stdout {text} stderr {}",
        String::from_utf8_lossy(&o.stderr)
    );
    v
}
