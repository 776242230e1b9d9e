//! `ferrovia-vfd` as a process: it runs with no options and no privilege, skips a bad file at
//! start with its reason while loading the others, and removes its sockets on SIGTERM.

mod common;

use std::process::{Command, Stdio};

use common::{TempDir, start, wait_until};

#[test]
fn bad_files_at_start_are_reported_and_skipped() {
    let _s = common::serial();
    let d = start(
        "startup",
        &[
            ("a", r#"{"name":"a","vfid":0}"#),
            ("b", r#"{"name":"b","vfid":1,"rate":0}"#),
            ("c", r#"{"name":"c","vfid":2,"allow_bcast":true}"#),
            ("d", r#"{"name":"d","vfid":7}"#),
        ],
        &[],
    );
    assert_eq!(d.show(0)["name"], "a");
    assert_eq!(d.show(1)["name"], serde_json::Value::Null);
    assert_eq!(d.show(1)["enabled"]["rx"], false);
    assert_eq!(d.show(2)["policy"]["allow_bcast"], true);
    let log = d.log();
    let b = d.config_dir().join("b.json");
    assert!(
        log.contains(&format!("skipped b: {}: rate 0", b.display())),
        "{log}"
    );
    assert!(
        log.contains("skipped d: ") && log.contains("vfid 7 does not exist"),
        "{log}"
    );
    assert!(log.contains("2 configured from"), "{log}");
}

#[test]
fn sigterm_removes_the_sockets() {
    let _s = common::serial();
    let mut d = start("sigterm", &[], &[]);
    let socks: Vec<_> = (0..4).map(|v| d.vf_sock(v)).chain([d.ctl()]).collect();
    for s in &socks {
        assert!(s.exists(), "{} missing", s.display());
    }
    let st = d.stop().expect("ferrovia-vfd stops on SIGTERM");
    assert!(st.success(), "{st}: {}", d.log());
    for s in &socks {
        assert!(!s.exists(), "{} left behind", s.display());
    }
}

#[test]
fn runs_with_no_options_and_iplex_finds_it() {
    let _s = common::serial();
    // The defaults live under $XDG_RUNTIME_DIR: a temp one keeps the test to itself.
    let run = TempDir::new("defaults");
    let vfd = Command::new(env!("CARGO_BIN_EXE_ferrovia-vfd"))
        .env("XDG_RUNTIME_DIR", &run.0)
        .env_remove("FERROVIA_VFD_CTL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut d = common::Daemon {
        child: vfd,
        dir: TempDir::new("defaults-unused"),
    };
    let iplex = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_iplex"))
            .env("XDG_RUNTIME_DIR", &run.0)
            .env_remove("FERROVIA_VFD_CTL")
            .args(args)
            .output()
            .unwrap()
    };
    wait_until("ferrovia-vfd with no options", || {
        iplex(&["ping"]).status.success()
    });
    let o = iplex(&["status"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{o:?}");
    assert!(text.contains("uplink net_null0"), "{text}");
    assert!(text.contains("VFs: 4, configured: none"), "{text}");
    assert!(run.join("ferrovia-vfd/vf3.sock").exists());
    assert!(d.stop().is_some_and(|s| s.success()));
}

#[test]
fn a_second_daemon_on_the_same_control_socket_is_refused() {
    let _s = common::serial();
    let d = start("twice", &[("a", r#"{"name":"a","vfid":0}"#)], &[]);
    let o = Command::new(env!("CARGO_BIN_EXE_ferrovia-vfd"))
        .arg("--sock-dir")
        .arg(d.dir.join("socks"))
        .arg("--ctl")
        .arg(d.ctl())
        .arg("--config-dir")
        .arg(d.config_dir())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "another ferrovia-vfd is listening on {}",
            d.ctl().display()
        )),
        "{err}"
    );
    // The first one runs on, its sockets in place.
    assert_eq!(d.show(0)["name"], "a");
    assert!(d.vf_sock(0).exists());
}

#[test]
fn sighup_and_iplex_reload_follow_the_config_directory() {
    let _s = common::serial();
    let d = start(
        "reload",
        &[
            ("a", r#"{"name":"a","vfid":0,"allow_bcast":false}"#),
            ("b", r#"{"name":"b","vfid":1}"#),
        ],
        &[],
    );
    assert_eq!(d.show(0)["policy"]["allow_bcast"], false);
    // a changes, b goes, c comes: SIGHUP applies all three.
    d.write_config("a", r#"{"name":"a","vfid":0,"allow_bcast":true}"#);
    std::fs::remove_file(d.config_dir().join("b.json")).unwrap();
    d.write_config("c", r#"{"name":"c","vfid":2,"vlans":[10]}"#);
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
    wait_until("SIGHUP's reload", || d.show(2)["name"] == "c");
    assert_eq!(d.show(0)["policy"]["allow_bcast"], true);
    let b = d.show(1);
    assert_eq!(b["name"], serde_json::Value::Null, "{b}");
    assert_eq!(b["enabled"]["rx"], false, "{b}");
    let log = d.log();
    assert!(log.contains("SIGHUP: re-reading"), "{log}");
    assert!(
        log.contains("b: file removed: deleted, VF 1 disabled"),
        "{log}"
    );
    assert!(log.contains("c: added to VF 2"), "{log}");
    // A bad file: iplex reload fails with the file's reason, and its VF keeps its policy.
    d.write_config("a", r#"{"name":"a","vfid":0,"allow_bcast":true,"rate":0}"#);
    let o = d.iplex(&["reload"]);
    assert!(!o.ok, "{o:?}");
    assert!(
        o.stdout.contains("a: FAILED: ") && o.stdout.contains("rate 0"),
        "{o:?}"
    );
    assert!(o.stdout.contains("c: updated VF 2"), "{o:?}");
    assert!(
        o.stderr.contains("kept their VF's previous policy: a"),
        "{o:?}"
    );
    assert_eq!(d.show(0)["policy"]["allow_bcast"], true);
    assert_eq!(d.show(0)["name"], "a");
}

#[test]
fn show_pfs_verbose_and_dump() {
    let _s = common::serial();
    let d = start("pfs", &[("a", r#"{"name":"a","vfid":0}"#)], &[]);
    let o = d.iplex(&["show", "pfs"]);
    assert!(o.ok, "{o:?}");
    assert!(
        o.stdout.contains("PF 0") && o.stdout.contains("VFs 4 (configured 1)"),
        "{o:?}"
    );
    let o = d.iplex(&["--json", "show", "pfs"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v[0]["num_vfs"], 4, "{v}");
    assert!(v[0]["line_rate_mbps"].as_f64().unwrap() > 0.0, "{v}");
    // The level: reported, set, refused out of range.
    let o = d.iplex(&["verbose"]);
    assert!(o.ok && o.stdout.contains("log level 3 (info)"), "{o:?}");
    let o = d.iplex(&["verbose", "1"]);
    assert!(
        o.ok && o.stdout.contains("log level 1 (error); was 3"),
        "{o:?}"
    );
    let o = d.iplex(&["dump"]);
    assert!(o.ok && o.stdout.contains("\"vfs\""), "{o:?}");
    let o = d.iplex(&["verbose", "9"]);
    assert!(!o.ok && o.stderr.contains("out of range"), "{o:?}");
    let o = d.iplex(&["verbose", "3"]);
    assert!(o.ok, "{o:?}");
    // At level 1 the dump still went to the log (it raises the level for itself).
    wait_until("the dump in the log", || d.log().contains("dump: {"));
    assert!(
        d.log().contains("-> 3 (INFO) by iplex verbose"),
        "{}",
        d.log()
    );
}
