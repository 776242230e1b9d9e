//! Capture through testpmd: `ferrovia-pdump` over the telemetry socket and the prompt's
//! `capture` commands, files read back with our pcapng reader (and tshark when installed),
//! and the error cases.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferrovia_ethdev::capture::pcapng::{self, Block};
use ferrovia_testkit::Interactive;

const TESTPMD: &str = env!("CARGO_BIN_EXE_testpmd");
const PDUMP: &str = env!("CARGO_BIN_EXE_ferrovia-pdump");

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ferrovia-tpcap-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pdump(prefix: &str, args: &[&str]) -> (bool, String) {
    let mut a = vec!["--file-prefix", prefix, "--"];
    a.extend_from_slice(args);
    Interactive::start(PDUMP, &a).wait()
}

fn tshark_fields(path: &Path, fields: &[&str]) -> Option<Vec<String>> {
    let mut c = Command::new("tshark");
    c.arg("-r").arg(path).args(["-T", "fields"]);
    for f in fields {
        c.args(["-e", f]);
    }
    match c.output() {
        Ok(o) => {
            assert!(
                o.status.success(),
                "tshark: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            Some(
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(String::from)
                    .collect(),
            )
        }
        Err(_) => {
            eprintln!(
                "SKIP tshark check: tshark is not installed (scripts/setup-peers.sh installs it)"
            );
            None
        }
    }
}

#[test]
fn pdump_captures_testpmd_traffic_and_errors_are_clear() {
    let d = dir("pdump");
    let prefix = format!("tpcap{}", std::process::id());
    let mut tp = Interactive::start(
        TESTPMD,
        &[
            "-l",
            "0-1",
            "--vdev",
            "net_null0,size=100",
            "--vdev",
            "net_null1,size=100",
            "--file-prefix",
            &prefix,
            "--",
            "-i",
        ],
    );
    tp.wait_for("testpmd> ", 1);
    let file = d.join("both.pcapng");
    let f = file.to_str().unwrap();
    let params = format!("port=0,queue=*,rx-dev={f},tx-dev={f},snaplen=64");
    let pd = Interactive::start(
        PDUMP,
        &[
            "--file-prefix",
            &prefix,
            "--",
            "--pdump",
            &params,
            "--count",
            "3000",
        ],
    );
    pd.wait_for("started capture", 1);
    tp.send("start");
    let (ok, out) = pd.wait();
    assert!(ok, "{out}");
    assert!(
        out.contains("stopped capture 1: port 0 (net_null0) queue * both"),
        "{out}"
    );
    tp.send("stop");

    let blocks = pcapng::read(&std::fs::read(&file).unwrap()).unwrap();
    assert!(matches!(
        &blocks[1],
        Block::Interface { snaplen: 64, name: Some(n), tsresol: Some(9), .. } if n == "net_null0"
    ));
    let (mut rx, mut tx) = (0u64, 0u64);
    for b in &blocks {
        if let Block::Packet {
            orig_len,
            data,
            flags,
            ..
        } = b
        {
            assert_eq!((*orig_len, data.len()), (100, 64));
            match flags {
                Some(1) => rx += 1,
                Some(2) => tx += 1,
                f => panic!("bad direction flags {f:?}"),
            }
        }
    }
    assert!(rx > 0 && tx > 0 && rx + tx >= 3000, "rx {rx} tx {tx}");
    let Some(Block::Statistics {
        received: Some(recv),
        dropped: Some(drop),
        delivered: Some(del),
        ..
    }) = blocks.last().cloned()
    else {
        panic!("no statistics block at the end")
    };
    assert_eq!(del, rx + tx);
    assert_eq!(recv, del + drop);
    if let Some(lines) = tshark_fields(
        &file,
        &["frame.len", "frame.cap_len", "frame.interface_name"],
    ) {
        assert_eq!(lines.len() as u64, rx + tx);
        assert!(
            lines.iter().all(|l| l == "100\t64\tnet_null0"),
            "{:?}",
            &lines[..3]
        );
    }

    // Errors: unknown port, unwritable path, bad snaplen, bad key; nothing starts.
    for (args, want) in [
        (
            "port=9,dev=/tmp/x.pcapng",
            "no port 9: there are 2 ports (0..1)",
        ),
        (
            "port=0,dev=/nonexistent-ferrovia/x/y.pcapng",
            "cannot write capture file /nonexistent-ferrovia/x/y.pcapng: no such directory (create it or choose another path)",
        ),
        ("port=0,queue=5,dev=/tmp/x.pcapng", "there is no rx queue 5"),
        (
            "port=0,dev=/tmp/x.pcapng,snaplen=300000",
            "bad snaplen 300000",
        ),
        (
            "port=0,dev=/tmp/x.pcapng,color=1",
            "unknown capture parameter 'color'",
        ),
        (
            "device_id=net_nope0,dev=/tmp/x.pcapng",
            "no port named net_nope0 (ports: net_null0, net_null1)",
        ),
    ] {
        let (ok, out) = pdump(&prefix, &["--pdump", args, "--duration", "0.1"]);
        assert!(!ok && out.contains(want), "{args}: {out}");
    }
    // The prompt's commands, and a second capture on the same port and direction.
    let pf = d.join("prompt.pcapng");
    tp.send(&format!(
        "capture start device_id=net_null1,dev={},dir=rx",
        pf.display()
    ));
    tp.wait_for("capture 2: port 1 (net_null1) queue * rx", 1);
    let (ok, out) = pdump(
        &prefix,
        &[
            "--pdump",
            &format!("port=1,queue=0,dev={}/other.pcapng,dir=both", d.display()),
        ],
    );
    assert!(
        !ok && out.contains("rx queue 0 is captured already by capture 2"),
        "{out}"
    );
    tp.send("capture list");
    tp.wait_for("capture 2: port 1 (net_null1)", 2);
    tp.send("capture stop 2");
    tp.wait_for("stopped; captured 0", 1);
    tp.send("capture list");
    tp.wait_for("No capture running", 1);
    let (ok, out) = pdump(&prefix, &["--pdump", "port=0,dev=/tmp/x.pcapng,snaplen=0"]);
    assert!(
        !ok && out.contains("bad snaplen 0: give 1 to 262144 bytes"),
        "{out}"
    );
    tp.send("quit");
    tp.wait_for("Bye", 1);
}
