//! Child processes of a test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process whose output goes to a log file; interrupted (then killed) when dropped.
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
        let f = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        cmd.stdout(f.try_clone().expect("a log file handle"))
            .stderr(f);
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

    /// Sends SIGINT and waits up to `grace` for exit; kills after that. Returns the exit
    /// code (None when killed or already waited for).
    pub fn interrupt(&mut self, grace: Duration) -> Option<i32> {
        let c = self.child.as_ref()?;
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGINT);
        }
        self.wait(grace)
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

/// Waits until `path` exists (a socket being created); false after `limit`.
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
