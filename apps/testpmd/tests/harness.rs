//! Process handling for the interop tests: spawning peers, waiting, killing, parsing.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Our testpmd.
pub const TESTPMD: &str = env!("CARGO_BIN_EXE_testpmd");
/// Our traffic checker.
pub const PKTCHECK: &str = env!("CARGO_BIN_EXE_ferrovia-pktcheck");

static SERIAL: Mutex<()> = Mutex::new(());

/// Tests that use DPDK or pinned processes run one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

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

/// A fresh private directory for sockets and logs.
pub fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ferrovia-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A child process that is interrupted (then killed) when dropped.
pub struct Proc {
    /// The running child (None once waited for).
    pub child: Option<Child>,
    /// Where its output goes.
    pub log: PathBuf,
    /// What it is, for messages.
    pub what: String,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr into `log`; stdin from `stdin` if given.
    pub fn spawn(what: &str, mut cmd: Command, log: &Path, stdin: Option<Stdio>) -> Proc {
        let f = std::fs::File::create(log).unwrap();
        cmd.stdout(f.try_clone().unwrap()).stderr(f);
        cmd.stdin(stdin.unwrap_or(Stdio::null()));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Proc {
            child: Some(child),
            log: log.to_path_buf(),
            what: what.into(),
        }
    }

    /// Sends SIGINT and waits up to `grace` for exit; kills after that.
    pub fn interrupt(&mut self, grace: Duration) -> Option<i32> {
        let mut c = self.child.take()?;
        // SAFETY: signalling a child we own.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGINT);
        }
        let t = Instant::now();
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s.code();
            }
            if t.elapsed() > grace {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for exit (up to `limit`, then kills); returns the exit code.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let mut c = self.child.take()?;
        let t = Instant::now();
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s.code();
            }
            if t.elapsed() > limit {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.interrupt(Duration::from_secs(3));
        }
    }
}

/// Waits until `path` exists (a socket being created).
pub fn wait_for_path(path: &Path, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// DPDK testpmd with the options every test needs.
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
