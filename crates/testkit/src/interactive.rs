//! An interactive child process: commands on its stdin, its output collected as it comes.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A child with piped stdin whose stdout (and stderr, when asked) is gathered by reader
/// threads; killed when dropped.
pub struct Interactive {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl Interactive {
    /// Starts `bin args`, collecting stdout and stderr.
    pub fn start(bin: &str, args: &[&str]) -> Interactive {
        Interactive::spawn(bin, args, true)
    }

    /// Starts `bin args`, collecting stdout; stderr goes to the test's stderr.
    pub fn start_stdout(bin: &str, args: &[&str]) -> Interactive {
        Interactive::spawn(bin, args, false)
    }

    fn spawn(bin: &str, args: &[&str], stderr: bool) -> Interactive {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if stderr {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let out = Arc::new(Mutex::new(String::new()));
        let mut streams: Vec<Box<dyn Read + Send>> =
            vec![Box::new(child.stdout.take().expect("piped stdout"))];
        if let Some(e) = child.stderr.take() {
            streams.push(Box::new(e));
        }
        for mut s in streams {
            let o = out.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    o.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Interactive { child, out }
    }

    /// Writes `line` and a newline to its stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("piped stdin");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("writing {line:?} to the child: {e}"));
    }

    /// The output so far.
    pub fn output(&self) -> String {
        self.out.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits (up to 30 s) until the output holds `what` `count` times; returns the output.
    pub fn wait_for(&self, what: &str, count: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let o = self.output();
            if o.matches(what).count() >= count {
                return o;
            }
            assert!(Instant::now() < deadline, "no {what:?} in:\n{o}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (up to 30 s) for the process to end; returns (success, output).
    pub fn wait(mut self) -> (bool, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                // Let the reader threads take the last output.
                std::thread::sleep(Duration::from_millis(50));
                return (st.success(), self.output());
            }
            assert!(Instant::now() < deadline, "process did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Interactive {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
