//! Process handling for the interop tests: spawning peers, waiting, killing, parsing.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Our testpmd.
pub const TESTPMD: &str = env!("CARGO_BIN_EXE_testpmd");
/// Our traffic checker.
pub const PKTCHECK: &str = env!("CARGO_BIN_EXE_ferrovia-pktcheck");

static SERIAL: Mutex<()> = Mutex::new(());

/// Tests that use DPDK or pinned processes run one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

// Not every test file uses all of them.
#[allow(unused_imports)]
pub use ferrovia_testkit::dpdk::{dpdk_cmd, dpdk_ready};
#[allow(unused_imports)]
pub use ferrovia_testkit::{Proc, wait_for_path};

/// A fresh private directory for sockets and logs.
pub fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ferrovia-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Our testpmd.
pub fn ours_cmd(vdev: &str, app: &[&str]) -> Command {
    let mut c = Command::new(TESTPMD);
    c.args(["-l", "0-1", "--no-pci"])
        .arg(format!("--vdev={vdev}"))
        .arg("--")
        .args(["--max-pkt-len=9018"])
        .args(app);
    c
}

/// The parsed `PKTCHECK` summary line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Check {
    /// Frames sent.
    pub sent: u64,
    /// Frames of ours that came back.
    pub received: u64,
    /// Frames back intact.
    pub intact: u64,
    /// Frames back corrupted.
    pub corrupt: u64,
    /// Frames that never came back.
    pub lost: u64,
    /// Frames that came back more than once.
    pub dup: u64,
    /// Frames back with MACs swapped.
    pub macswapped: u64,
}

/// Finds and parses the summary line.
pub fn parse_check(out: &str) -> Option<Check> {
    let line = out.lines().find(|l| l.starts_with("PKTCHECK "))?;
    let get = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(Check {
        sent: get("sent"),
        received: get("received"),
        intact: get("intact"),
        corrupt: get("corrupt"),
        lost: get("lost"),
        dup: get("dup"),
        macswapped: get("macswapped"),
    })
}

/// Runs pktcheck on `vdev` and returns its summary, asserting it ran to completion.
pub fn pktcheck(
    dir: &Path,
    tag: &str,
    vdev: &str,
    queues: u16,
    count: u64,
) -> (Option<i32>, Check, String) {
    let mut c = Command::new(PKTCHECK);
    c.args([
        "--vdev",
        vdev,
        "--count",
        &count.to_string(),
        "--sizes",
        "64,1518,9000",
        "--window",
        "32",
    ])
    .args([
        "--queues",
        &queues.to_string(),
        "--max-pkt-len",
        "9018",
        "--timeout",
        "5",
    ]);
    let mut p = Proc::spawn(
        "ferrovia-pktcheck",
        c,
        &dir.join(format!("{tag}.pktcheck.log")),
        None,
    );
    let rc = p.wait(Duration::from_secs(60));
    let out = p.output();
    let chk =
        parse_check(&out).unwrap_or_else(|| panic!("{tag}: no PKTCHECK line; output:\n{out}"));
    (rc, chk, out)
}

/// Sum of `RX-packets`/`TX-packets` in the accumulated forward statistics of a testpmd log.
pub fn fwd_totals(out: &str) -> Option<(u64, u64)> {
    let i = out.rfind("Accumulated forward statistics")?;
    let block = &out[i..];
    let num = |k: &str| -> Option<u64> {
        let j = block.find(k)? + k.len();
        block[j..].split_whitespace().next()?.parse().ok()
    };
    Some((num("RX-packets:")?, num("TX-packets:")?))
}
