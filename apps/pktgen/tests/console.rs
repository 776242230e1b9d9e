//! The prompt and scripts of `ferrovia-pktgen` (`-i`, `--script FILE`) on a ring port, whose
//! loop returns every frame: settings change between trials, `start`/`sleep`/`stop` sends
//! for the pause and is measured exactly, bad commands are refused with their reason and leave
//! the settings as they were, and `save` writes every trial.

use std::io::Write;
use std::process::{Command, Stdio};

fn dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("pktgen-console-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_script_runs_in_step_with_the_traffic() {
    let d = dir("script");
    let json = d.join("out.json");
    let script = d.join("s.pkt");
    std::fs::write(
        &script,
        format!(
            "# two measured trials and a continuous run\n\
             set rate 100kpps\n\
             set warmup 0.1\n\
             set count 5000\n\
             run\n\
             set count off\n\
             set size 1514\n\
             start\n\
             sleep 1\n\
             stop\n\
             set size 40\n\
             set flows 0\n\
             set port net_ring1\n\
             show\n\
             save {}\n",
            json.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferrovia-pktgen"))
        .args(["--port", "net_ring0,size=4096", "--quiet", "--script"])
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Three commands failed: the script's exit says so.
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("3 command(s) of the script failed"),
        "{stderr}"
    );
    assert!(
        stdout.contains("below 60 bytes") && stdout.contains("settings are unchanged"),
        "{stdout}"
    );
    assert!(stdout.contains("--flows 0 is out of range"), "{stdout}");
    assert!(stdout.contains("port is fixed for the session"), "{stdout}");
    // The refused size left 1514 in place.
    assert!(stdout.contains("sizes     1514"), "{stdout}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let t = v["trials"].as_array().unwrap();
    assert_eq!(t.len(), 2, "{v}");
    // The counted trial: exactly 5000 sent and back.
    assert_eq!(t[0]["size"], "60");
    assert_eq!(t[0]["sent"], 5000);
    assert_eq!(t[0]["received"], 5000);
    // The continuous one: it sent for the pause (about 1 s at 100 kpps, less the warm-up),
    // and the loop lost nothing.
    assert_eq!(t[1]["size"], "1514");
    let sent = t[1]["sent"].as_u64().unwrap();
    assert!(sent > 10_000, "{}", t[1]);
    assert_eq!(t[1]["lost"], 0, "{}", t[1]);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn the_prompt_reads_standard_input() {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferrovia-pktgen"))
        .args(["--port", "net_ring0", "--quiet", "-i"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"help\nset rate 50kpps\nset duration 0.3\nset warmup 0\nrun\nlaunch\nquit\n")
        .unwrap();
    let out = c.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // At the prompt a bad command is an error line, not a failed exit.
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("pktgen> ") && stdout.contains("start  "),
        "{stdout}"
    );
    assert!(stdout.contains("unknown command \"launch\""), "{stdout}");
    // The trial ran (a table row for 60 B); with lines read as typed, it may have been cut
    // short by the end of input, never lost frames.
    let row = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("60 "))
        .unwrap_or_else(|| panic!("no result row: {stdout}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[5], "0", "lost: {row}");
}
