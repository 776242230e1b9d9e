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
