//! The 30-second soak run in CI: full-rate traffic, backend restarted every 5 s; the soak
//! example itself fails on leaked mbufs or fds, RSS growth, or no traffic.

#[test]
fn soak_30_seconds_with_reconnects() {
    let st = std::process::Command::new(env!("CARGO"))
        .args([
            "run",
            "--release",
            "-q",
            "-p",
            "ferrovia",
            "--example",
            "soak",
            "--",
        ])
        .args([
            "--seconds",
            "30",
            "--reconnect-every",
            "5",
            "--report-every",
            "5",
        ])
        .status()
        .expect("cargo run");
    assert!(st.success(), "soak failed (see its output above)");
}
