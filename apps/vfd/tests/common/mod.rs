//! Helpers shared by the tests of `ferrovia-vfd` and `iplex`: a temp directory, the daemon as a
//! process, `iplex` runs, and a container (a virtio-user port on a VF's socket).
//!
//! The daemon's switch thread polls without pause; on a 2-core machine two daemons at once
//! starve each other, so every test that starts one holds [`serial`] first.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long any wait for the daemon or for traffic may take: generous, as the machine is busy.
pub const DEADLINE: Duration = Duration::from_secs(20);

static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the right to run a daemon in this test binary.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

// Not every test file uses both.
#[allow(unused_imports)]
pub use ferrovia_testkit::{Container, TempDir};

/// Waits until `f` holds, at most [`DEADLINE`]; panics with `what` otherwise.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `ferrovia-vfd` with its own directories; SIGTERM when dropped.
pub struct Daemon {
    /// The child process.
    pub child: Child,
    /// Its directories: `cfg/` (config dir), `socks/`, `ctl`, `vfd.log` (its stderr).
    pub dir: TempDir,
}

impl Daemon {
    /// The configuration directory.
    pub fn config_dir(&self) -> PathBuf {
        self.dir.join("cfg")
    }

    /// The control socket.
    pub fn ctl(&self) -> PathBuf {
        self.dir.join("ctl")
    }

    /// VF `n`'s socket.
    pub fn vf_sock(&self, n: u32) -> PathBuf {
        self.dir.join("socks").join(format!("vf{n}.sock"))
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("vfd.log")).unwrap_or_default()
    }

    /// Writes `cfg/<name>.json`.
    pub fn write_config(&self, name: &str, json: &str) {
        std::fs::write(self.config_dir().join(format!("{name}.json")), json).unwrap();
    }

    /// Runs `iplex --ctl <ctl> args...`.
    pub fn iplex(&self, args: &[&str]) -> Out {
        iplex(&self.ctl(), args)
    }

    /// `iplex --json show <vfid>`: that VF's JSON.
    pub fn show(&self, vfid: u32) -> Value {
        let o = self.iplex(&["--json", "show", &vfid.to_string()]);
        assert!(o.ok, "iplex show {vfid}: {}", o.stderr);
        let v: Value = serde_json::from_str(&o.stdout).unwrap();
        v[0].clone()
    }

    /// `iplex --json show all`.
    pub fn show_all(&self) -> Value {
        let o = self.iplex(&["--json", "show", "all"]);
        assert!(o.ok, "iplex show all: {}", o.stderr);
        serde_json::from_str(&o.stdout).unwrap()
    }

    /// Sends SIGTERM and waits for the exit (SIGKILL after [`DEADLINE`]).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t0 = Instant::now();
        while t0.elapsed() < DEADLINE {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// Starts `ferrovia-vfd --num-vfs 4` on a fresh directory, with `configs` (name, JSON) in its
/// configuration directory before it starts and `extra` arguments, and waits until it answers
/// `iplex ping`.
pub fn start(tag: &str, configs: &[(&str, &str)], extra: &[&str]) -> Daemon {
    let dir = TempDir::new(tag);
    std::fs::create_dir_all(dir.join("cfg")).unwrap();
    for (name, json) in configs {
        std::fs::write(dir.join("cfg").join(format!("{name}.json")), json).unwrap();
    }
    let log = std::fs::File::create(dir.join("vfd.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ferrovia-vfd"))
        .arg("--num-vfs")
        .arg("4")
        .arg("--sock-dir")
        .arg(dir.join("socks"))
        .arg("--config-dir")
        .arg(dir.join("cfg"))
        .arg("--ctl")
        .arg(dir.join("ctl"))
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut d = Daemon { child, dir };
    let t0 = Instant::now();
    while !d.iplex(&["ping"]).ok {
        if let Ok(Some(s)) = d.child.try_wait() {
            panic!("ferrovia-vfd exited ({s}): {}", d.log());
        }
        assert!(
            t0.elapsed() < DEADLINE,
            "ferrovia-vfd never answered: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d
}

/// What a run of `iplex` gave.
#[derive(Debug)]
pub struct Out {
    /// Exit status 0.
    pub ok: bool,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

/// Runs `iplex --ctl <ctl> args...`.
pub fn iplex(ctl: &Path, args: &[&str]) -> Out {
    let o = Command::new(env!("CARGO_BIN_EXE_iplex"))
        .arg("--ctl")
        .arg(ctl)
        .args(args)
        .output()
        .unwrap();
    Out {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// An Ethernet frame of 100 bytes, EtherType 0x88b5 (local experimental).
pub fn frame(dst: [u8; 6], src: [u8; 6], seq: u8) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(dst);
    f.extend(src);
    f.extend(0x88b5u16.to_be_bytes());
    f.push(seq);
    f.resize(100, seq);
    f
}

/// A VF's drop counter `cause` in direction `dir` (`tx` or `rx`) from its `show` JSON.
pub fn dropped(vf: &Value, dir: &str, cause: &str) -> u64 {
    vf["counters"][format!("{dir}_dropped")][cause]
        .as_u64()
        .unwrap()
}
