//! The daemon and its CLI as an operator uses them: start from a TOML file, change it with
//! ferrovia-ctl, read errors, stop with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fsw-daemon-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn start(config: &Path, socket: &Path) -> Daemon {
    let child = Command::new(env!("CARGO_BIN_EXE_ferrovia-switch"))
        .args(["--config", config.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !socket.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the control socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Daemon {
        child,
        socket: socket.into(),
    }
}

fn ctl(d: &Daemon, args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_ferrovia-ctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn configure_show_change_and_stop() {
    let dir = tmp("a");
    let socket = dir.join("ctl.sock");
    let config = dir.join("switch.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[switch]
control_socket = "{s}"
mbufs = 4096

[[bridge]]
name = "br0"

[[port]]
name = "c1"
bridge = "br0"
devargs = "net_vhost0,iface={d}/c1.sock"
tag = 10

[[port]]
name = "c2"
bridge = "br0"
devargs = "net_vhost1,iface={d}/c2.sock"
trunks = [10, 20]
"#,
            s = socket.display(),
            d = dir.display()
        ),
    )
    .unwrap();
    let d = start(&config, &socket);
    let (ok, out, _) = ctl(&d, &["show"]);
    assert!(ok);
    assert!(out.contains("c1") && out.contains("access 10"), "{out}");
    assert!(out.contains("c2") && out.contains("trunk 10,20"), "{out}");
    let (ok, _, err) = ctl(&d, &["add-br", "br1", "fdb_limit=100"]);
    assert!(ok, "{err}");
    let (ok, _, err) = ctl(&d, &["add-port", "br1", "n0", "net_null0", "tag=5"]);
    assert!(ok, "{err}");
    let (ok, out, _) = ctl(&d, &["show", "bridges"]);
    assert!(
        ok && out.contains("br1: ports n0; fdb ") && out.contains("/100 (aging 300 s)"),
        "{out}"
    );
    let (ok, _, err) = ctl(&d, &["set-port", "n0", "trunks=1,2,3"]);
    assert!(ok, "{err}");
    let (ok, out, _) = ctl(&d, &["--json", "show", "ports"]);
    assert!(ok && out.contains("\"trunks\""), "{out}");
    let (ok, out, _) = ctl(&d, &["show", "stats"]);
    assert!(
        ok && out.contains("br1: ports n0") && out.contains("PORT"),
        "{out}"
    );
    let (ok, out, _) = ctl(&d, &["show", "pmd-stats"]);
    assert!(ok && out.contains("pmd 0"), "{out}");
    // Errors go to stderr with a non-zero exit, and name the fix.
    let (ok, _, err) = ctl(&d, &["del-port", "nope"]);
    assert!(!ok && err.contains("no port named nope"), "{err}");
    let (ok, _, err) = ctl(&d, &["add-port", "br0", "x"]);
    assert!(!ok && err.contains("usage: ferrovia-ctl add-port"), "{err}");
    let (ok, _, err) = ctl(&d, &["set-port", "n0", "colour=red"]);
    assert!(!ok && err.contains("unknown option \"colour\""), "{err}");
    let (ok, _, err) = ctl(&d, &["del-br", "br1"]);
    assert!(!ok && err.contains("still has ports (n0)"), "{err}");
    // SIGTERM: a clean exit, the control socket removed.
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc_kill(d.child.id() as i32, 15) };
    let mut d = d;
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "SIGTERM did not stop the switch"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists());
    let (ok, _, err) = ctl(&d, &["show"]);
    assert!(!ok && err.contains("is ferrovia-switch running?"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_config_files_are_refused_with_the_line() {
    let dir = tmp("b");
    let config = dir.join("bad.toml");
    std::fs::write(&config, "[[bridge]]\nname = \"br0\"\n[[port]]\nname = \"p\"\nbridge = \"br0\"\ndevargs = \"net_null0\"\ntag = \"ten\"\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ferrovia-switch"))
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("bad.toml") && err.contains("line 7"), "{err}");
    let o = Command::new(env!("CARGO_BIN_EXE_ferrovia-switch"))
        .args(["--config", "/nonexistent/x.toml"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read /nonexistent/x.toml"));
    let o = Command::new(env!("CARGO_BIN_EXE_ferrovia-switch"))
        .arg("--print-config")
        .env("FERROVIA_RUN_DIR", &dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("name = \"br0\"") && text.contains("vhu1.sock"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn capture_commands() {
    let dir = tmp("cap");
    let socket = dir.join("ctl.sock");
    let config = dir.join("switch.toml");
    std::fs::write(
        &config,
        format!(
            "[switch]\ncontrol_socket = \"{}\"\nmbufs = 4096\n\n[[bridge]]\nname = \"br0\"\n\n[[port]]\nname = \"n0\"\nbridge = \"br0\"\ndevargs = \"net_null0,size=100\"\n",
            socket.display()
        ),
    )
    .unwrap();
    let d = start(&config, &socket);
    let file = dir.join("n0.pcapng");
    let f = file.to_str().unwrap();
    let (ok, out, err) = ctl(
        &d,
        &[
            "capture",
            "start",
            "n0",
            "--dir",
            "rx",
            "--snaplen",
            "64",
            f,
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.starts_with("capture 1: port 0 (net_null0) queue * rx snaplen 64 -> "),
        "{out}"
    );
    let t0 = Instant::now();
    loop {
        let (ok, out, _) = ctl(&d, &["--json", "capture", "list"]);
        assert!(ok);
        let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        if v[0]["written"].as_u64().unwrap() > 100 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{out}");
        std::thread::sleep(Duration::from_millis(20));
    }
    for (args, want) in [
        (
            vec!["capture", "start", "n0", "--dir", "rx", "/tmp/x.pcapng"],
            "rx queue 0 is captured already by capture 1",
        ),
        (
            vec!["capture", "start", "nope", "/tmp/x.pcapng"],
            "no port nope on the switch (ports: n0",
        ),
        (
            vec!["capture", "start", "n0", "--snaplen", "0", "/tmp/x.pcapng"],
            "bad snaplen 0",
        ),
        (
            vec!["capture", "start", "n0", "--dir", "up", "/tmp/x.pcapng"],
            "expected rx, tx or both",
        ),
        (
            vec!["capture", "start", "n0", "--queue", "3", "/tmp/x.pcapng"],
            "there is no rx queue 3",
        ),
        (
            vec![
                "capture",
                "start",
                "n0",
                "--dir",
                "tx",
                "/nonexistent-ferrovia/d/x.pcapng",
            ],
            "cannot write capture file /nonexistent-ferrovia/d/x.pcapng: no such directory (create it or choose another path)",
        ),
        (vec!["capture", "stop", "9"], "no capture 9 is running"),
        (
            vec!["capture", "start", "n0"],
            "usage: ferrovia-ctl capture start",
        ),
    ] {
        let (ok, _, err) = ctl(&d, &args);
        assert!(!ok && err.contains(want), "{args:?}: {err}");
    }
    let (ok, out, err) = ctl(&d, &["capture", "stop"]);
    assert!(ok && out.contains("[stopped]"), "{out}{err}");
    let (ok, out, _) = ctl(&d, &["capture", "list"]);
    assert!(ok && out.contains("no capture running"), "{out}");
    let bytes = std::fs::read(&file).unwrap();
    let blocks = ferrovia_ethdev::capture::pcapng::read(&bytes).unwrap();
    let n = blocks
        .iter()
        .filter(|b| matches!(b, ferrovia_ethdev::capture::pcapng::Block::Packet { orig_len: 100, flags: Some(1), data, .. } if data.len() == 64))
        .count();
    assert!(n > 100, "{n}");
    let _ = std::fs::remove_dir_all(&dir);
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
