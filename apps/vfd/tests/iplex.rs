//! `iplex` against a running `ferrovia-vfd`: the add/update/show/delete cycle proven on traffic
//! between two containers, and every bad input refused with its reason and a non-zero exit,
//! leaving the other VFs as they were.

mod common;

use std::time::Duration;

use common::{Container, DEADLINE, dropped, frame, iplex, start, wait_until};
use serde_json::Value;

const MAC0: [u8; 6] = [2, 0, 0, 0, 0xf0, 0];
const MAC1: [u8; 6] = [2, 0, 0, 0, 0xf0, 1];
const SPOOFED: [u8; 6] = [2, 0, 0, 0, 0x99, 0x99];

const C0_STRICT: &str =
    r#"{"name":"c0","vfid":0,"macs":["02:00:00:00:f0:00"],"mac_anti_spoof":true}"#;
const C0_LOOSE: &str =
    r#"{"name":"c0","vfid":0,"macs":["02:00:00:00:f0:00"],"mac_anti_spoof":false}"#;
const C1: &str = r#"{"name":"c1","vfid":1,"macs":["02:00:00:00:f0:01"]}"#;

#[test]
fn add_update_show_delete_on_traffic() {
    let _s = common::serial();
    // c1 is in the directory at start: the daemon applies it. c0 comes later with iplex.
    let d = start("cycle", &[("c1", C1)], &[]);
    let vf1 = d.show(1);
    assert_eq!(vf1["name"], "c1", "{vf1}");
    assert_eq!(vf1["enabled"]["rx"], true);
    let vf0 = d.show(0);
    assert_eq!(vf0["name"], Value::Null);
    assert_eq!(
        vf0["enabled"]["tx"], false,
        "a VF no file configures is off"
    );

    let mut c0 = Container::attach(&d.vf_sock(0));
    let mut c1 = Container::attach(&d.vf_sock(1));

    // Not added yet: VF 0 is disabled, its frames are dropped as such.
    c0.send_one(&frame(MAC1, MAC0, 1));
    wait_until("a drop for a disabled VF", || {
        dropped(&d.show(0), "tx", "disabled") >= 1
    });
    assert_eq!(c1.recv_one(Duration::from_millis(200)), None);

    // Added with mac_anti_spoof: its own MAC passes to VF 1, a spoofed one is dropped.
    d.write_config("c0", C0_STRICT);
    let o = d.iplex(&["add", "c0"]);
    assert!(o.ok, "{o:?}");
    assert!(o.stdout.contains("c0: added to VF 0"), "{o:?}");
    let vf0 = d.show(0);
    assert_eq!(vf0["name"], "c0");
    assert_eq!(vf0["policy"]["mac_anti_spoof"], true);
    assert_eq!(vf0["enabled"]["tx"], true);
    let good = frame(MAC1, MAC0, 2);
    c0.send_one(&good);
    assert_eq!(c1.recv_one(DEADLINE), Some(good));
    c0.send_one(&frame(MAC1, SPOOFED, 3));
    wait_until("the spoofed frame counted", || {
        dropped(&d.show(0), "tx", "mac_spoof") == 1
    });
    assert_eq!(c1.recv_one(Duration::from_millis(200)), None);
    // The human form shows the drop by cause.
    let o = d.iplex(&["show", "0"]);
    assert!(o.ok && o.stdout.contains("tx drops:") && o.stdout.contains("mac_spoof 1"));

    // Updated with anti-spoofing off: the same spoofed frame passes.
    d.write_config("c0", C0_LOOSE);
    let o = d.iplex(&["update", "c0"]);
    assert!(o.ok, "{o:?}");
    assert_eq!(d.show(0)["policy"]["mac_anti_spoof"], false);
    let spoofed = frame(MAC1, SPOOFED, 4);
    c0.send_one(&spoofed);
    assert_eq!(c1.recv_one(DEADLINE), Some(spoofed));
    assert_eq!(dropped(&d.show(0), "tx", "mac_spoof"), 1);
    let tx = d.show(0)["counters"]["tx_packets"].as_u64().unwrap();
    assert_eq!(tx, 2, "the good frame and the spoofed one after the update");

    // show all and status list both.
    let all = d.show_all();
    assert_eq!(all.as_array().unwrap().len(), 4);
    let o = d.iplex(&["status"]);
    assert!(o.ok, "{o:?}");
    assert!(
        o.stdout.contains("VF 0 = c0") && o.stdout.contains("VF 1 = c1"),
        "{}",
        o.stdout
    );

    // Deleted: disabled and reset; its frames are dropped again.
    let o = d.iplex(&["delete", "c0"]);
    assert!(o.ok, "{o:?}");
    let vf0 = d.show(0);
    assert_eq!(vf0["name"], Value::Null);
    assert_eq!(vf0["enabled"]["tx"], false);
    assert_eq!(vf0["policy"]["macs"], serde_json::json!([]));
    let before = dropped(&vf0, "tx", "disabled");
    c0.send_one(&frame(MAC1, MAC0, 5));
    wait_until("a drop after delete", || {
        dropped(&d.show(0), "tx", "disabled") > before
    });
    assert_eq!(c1.recv_one(Duration::from_millis(200)), None);
    // VF 1 was never touched.
    assert_eq!(d.show(1)["name"], "c1");
}

/// The VFs' names, policies and enable bits (not counters).
fn state(all: &Value) -> Vec<(Value, Value, Value)> {
    all.as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].clone(), v["policy"].clone(), v["enabled"].clone()))
        .collect()
}

#[test]
fn bad_input_is_refused_with_its_reason() {
    let _s = common::serial();
    let a = r#"{"name":"a","vfid":0,"macs":["02:00:00:00:00:0a"]}"#;
    let d = start("bad", &[("a", a)], &[]);
    let cfg = d.config_dir();
    d.write_config("b", r#"{"name":"b","vfid":2}"#);
    assert!(d.iplex(&["add", "b"]).ok);
    let before = state(&d.show_all());

    let file = |n: &str| cfg.join(format!("{n}.json")).display().to_string();
    d.write_config("broken", r#"{"name":"x","vfid":1,"#);
    d.write_config("badvlan", r#"{"name":"x","vfid":1,"vlans":[5000]}"#);
    d.write_config("colour", r#"{"name":"x","vfid":1,"colour":"red"}"#);
    d.write_config("novf", r#"{"name":"x","vfid":9}"#);
    d.write_config("clash", r#"{"name":"x","vfid":0}"#);
    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        (
            vec!["add", "nosuch"],
            vec![
                "unknown name \"nosuch\"".into(),
                format!("there is no {}", file("nosuch")),
            ],
        ),
        (
            vec!["add", "broken"],
            vec![file("broken"), "not a valid VF configuration".into()],
        ),
        (
            vec!["add", "badvlan"],
            vec![file("badvlan"), "VLAN 5000 is outside 1..4094".into()],
        ),
        (
            vec!["add", "colour"],
            vec![file("colour"), "unknown field `colour`".into()],
        ),
        (
            vec!["add", "novf"],
            vec![
                file("novf"),
                "vfid 9 does not exist (this PF has VFs 0..3)".into(),
            ],
        ),
        (
            vec!["add", "a"],
            vec!["a is already added (VF 0)".into(), "iplex update a".into()],
        ),
        (
            vec!["add", "clash"],
            vec![
                "VF 0 is already configured by a".into(),
                "iplex delete a".into(),
            ],
        ),
        (
            vec!["delete", "nosuch"],
            vec!["nosuch was never added".into(), "added: a, b".into()],
        ),
        (
            vec!["update", "broken"],
            vec!["broken is not added".into(), "iplex add broken".into()],
        ),
        (vec!["add", "../etc/passwd"], vec!["invalid name".into()]),
        (
            vec!["show", "9"],
            vec!["no VF 9: this PF has VFs 0..3".into()],
        ),
        (
            vec!["show", "some"],
            vec!["expected all, pfs or a VF number".into()],
        ),
    ];
    for (args, words) in &cases {
        let o = d.iplex(args);
        assert!(!o.ok, "{args:?} succeeded: {o:?}");
        assert!(o.stderr.starts_with("iplex: "), "{args:?}: {o:?}");
        for w in words {
            assert!(o.stderr.contains(w.as_str()), "{args:?}: no {w:?} in {o:?}");
        }
    }
    // An added file broken later: update refuses, the VF keeps its policy.
    d.write_config("a", r#"{"name":"a","vfid":0,"macs":["zz"]}"#);
    let o = d.iplex(&["update", "a"]);
    assert!(
        !o.ok && o.stderr.contains(&file("a")) && o.stderr.contains("\"zz\""),
        "{o:?}"
    );
    // A missing subcommand or argument is a usage error.
    assert!(!d.iplex(&[]).ok);
    assert!(!d.iplex(&["add"]).ok);

    assert_eq!(state(&d.show_all()), before, "a refusal changed a VF");
}

#[test]
fn no_daemon_says_how_to_start_it() {
    let dir = common::TempDir::new("nodaemon");
    let ctl = dir.join("nothing.ctl");
    let o = iplex(&ctl, &["ping"]);
    assert!(!o.ok);
    for w in [
        format!("cannot connect to {}", ctl.display()),
        "is ferrovia-vfd running?".into(),
        format!("ferrovia-vfd --ctl {}", ctl.display()),
    ] {
        assert!(o.stderr.contains(&w), "no {w:?} in {o:?}");
    }
}
