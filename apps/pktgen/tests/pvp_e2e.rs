//! A short PVP run end to end with the container VNF: our testpmd as the host forwarder (io,
//! four vhost-user ports), the generator's two virtio-user "NIC" ports, and the in-process
//! macswap VNF on two more. Tiny trial durations and a wide search width keep it short; the
//! figures are not judged (that is the benchmark's job), only that every stage ran and the
//! frames went round.

use std::path::PathBuf;
use std::process::Command;

/// Our testpmd beside ferrovia-pvp (`cargo test --workspace` builds it; a test of this
/// package alone builds it here).
fn testpmd() -> Option<PathBuf> {
    sibling("ferrovia-testpmd", "testpmd")
}

/// A binary of another package of the workspace beside ferrovia-pvp, built if missing.
fn sibling(package: &str, bin: &str) -> Option<PathBuf> {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_ferrovia-pvp"));
    let p = exe.parent()?.join(bin);
    if !p.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut c = Command::new(cargo);
        c.args(["build", "-q", "-p", package, "--bin", bin]);
        if !cfg!(debug_assertions) {
            c.arg("--release");
        }
        let _ = c.status();
    }
    p.exists().then_some(p)
}

#[test]
fn pvp_runs_end_to_end() {
    let Some(tp) = testpmd() else {
        panic!(
            "target/<profile>/testpmd is missing: build the workspace (cargo test --workspace builds it)"
        );
    };
    let dir = std::env::temp_dir().join(format!("pvp-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("pvp.json");
    let html = dir.join("pvp.html");
    let out = Command::new(env!("CARGO_BIN_EXE_ferrovia-pvp"))
        .args([
            "--sizes",
            "60",
            "--initial-duration",
            "0.2",
            "--final-duration",
            "0.4",
        ])
        .args([
            "--phases",
            "2",
            "--width",
            "0.2",
            "--latency-duration",
            "0.3",
        ])
        .arg("--testpmd")
        .arg(&tp)
        .arg("--json")
        .arg(&json)
        .arg("--report")
        .arg(&html)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Traffic Generator: ferrovia-pktgen"),
        "{stdout}"
    );
    assert!(stdout.contains("Result: "), "{stdout}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let r = &v["results"][0];
    assert_eq!(r["host"], "ours");
    assert_eq!(r["goals"][0]["goal"]["name"], "NDR");
    assert_eq!(r["goals"][1]["goal"]["name"], "PDR");
    let trials = r["trials"].as_array().unwrap();
    assert!(trials.len() >= 3, "{trials:?}");
    let mut got = 0;
    for t in trials {
        assert!(
            t["received"].as_u64().unwrap() <= t["sent"].as_u64().unwrap(),
            "{t}"
        );
        got += t["received"].as_u64().unwrap();
    }
    assert!(got > 0, "no frame went round the PVP loop: {trials:?}");
    let lat = r["latency"].as_array().unwrap();
    assert_eq!(lat.len(), 3);
    for l in lat {
        let s = &l["latency"];
        assert!(s["min_ns"].as_u64() <= s["p50_ns"].as_u64(), "{l}");
        assert!(s["p50_ns"].as_u64() <= s["max_ns"].as_u64(), "{l}");
    }
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("NDR"), "{page}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pvp_runs_with_the_vswitch_as_host() {
    let Some(sw) = sibling("ferrovia-switch", "ferrovia-switch") else {
        panic!("target/<profile>/ferrovia-switch is missing: build the workspace");
    };
    let dir = std::env::temp_dir().join(format!("pvp-e2e-sw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("pvp.json");
    let out = Command::new(env!("CARGO_BIN_EXE_ferrovia-pvp"))
        .args([
            "--host",
            "switch",
            "--sizes",
            "60",
            "--initial-duration",
            "0.2",
        ])
        .args(["--final-duration", "0.2", "--phases", "1", "--width", "0.3"])
        .args(["--latency-duration", "0.2", "--max-load", "200kpps"])
        .arg("--switch")
        .arg(&sw)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Ferrovia vSwitch ferrovia-switch"),
        "{stdout}"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let r = &v["results"][0];
    assert_eq!(r["host"], "switch");
    let got: u64 = r["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["received"].as_u64().unwrap())
        .sum();
    assert!(got > 0, "no frame went round the vSwitch: {r}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Several runs in one process: each closes its ports and pool (the process checks that no
/// memory region stays registered), and each host forwarder gets its own CPU back, not the
/// CPU the previous run pinned the generator to.
#[test]
fn pvp_runs_rounds_in_one_process() {
    let Some(tp) = testpmd() else {
        panic!("target/<profile>/testpmd is missing: build the workspace");
    };
    let out = Command::new(env!("CARGO_BIN_EXE_ferrovia-pvp"))
        .args([
            "--sizes",
            "1514",
            "--rounds",
            "3",
            "--initial-duration",
            "0.2",
        ])
        .args(["--final-duration", "0.2", "--phases", "1", "--width", "0.5"])
        .args(["--latency-duration", "0.1", "--max-load", "100kpps"])
        .arg("--testpmd")
        .arg(&tp)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("medians over 3 rounds"), "{stdout}");
    assert!(!stderr.contains("memory regions more"), "{stderr}");
}

#[test]
fn bad_arguments_are_refused() {
    for (args, word) in [
        (vec!["--sizes", "40"], "outside 60"),
        (vec!["--host", "ovs"], "use ours, dpdk or switch"),
        (
            vec!["--host", "switch", "--switch", "/nonexistent/sw"],
            "/nonexistent/sw",
        ),
        (vec!["--exceed-ratio", "1"], "[0, 1)"),
        (vec!["--rounds", "0"], "from 1 to 100"),
        (vec!["--queue-size", "1000"], "power of two"),
        (
            vec!["--final-duration", "4", "--duration-sum", "2"],
            "below --final-duration",
        ),
        (vec!["--vnf", "kvm"], "inproc, ours, dpdk or vm"),
        (
            vec!["--vnf", "vm", "--vm-script", "/nonexistent/pvp-vm.sh"],
            "/nonexistent/pvp-vm.sh",
        ),
        (
            vec!["--min-load", "2kpps", "--max-load", "1kpps"],
            "not below",
        ),
        (vec!["--max-load", "10Gbps"], "frame rate"),
        (
            vec!["--testpmd", "/nonexistent/testpmd"],
            "/nonexistent/testpmd",
        ),
        (vec!["--width", "-1"], "positive"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ferrovia-pvp"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(word), "{args:?}: {err}");
    }
}
