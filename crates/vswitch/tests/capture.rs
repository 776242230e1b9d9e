//! Capture on switch ports polled by PMD threads: frames from one container to another,
//! captured on the ingress port (rx) and the egress port (tx), read back byte for byte; a
//! second capture on the same direction refused; deleting a port ends its capture with a
//! complete file.

mod support;

use std::time::Duration;

use ferrovia_ethdev::CaptureSpec;
use ferrovia_ethdev::capture::pcapng::{self, Block};
use support::*;

const W: Duration = Duration::from_millis(500);

fn packets(path: &std::path::Path) -> Vec<(u32, Vec<u8>)> {
    pcapng::read(&std::fs::read(path).unwrap())
        .unwrap()
        .into_iter()
        .filter_map(|b| match b {
            Block::Packet { data, flags, .. } => Some((flags.unwrap_or(0), data)),
            _ => None,
        })
        .collect()
}

#[test]
fn pmd_ports_are_captured_in_both_directions() {
    let dir = TempDir::new("cap");
    let sw = switch(
        (0..2)
            .map(|i| vhost_port(&dir, "br0", &format!("p{i}"), i))
            .collect(),
        |_| {},
    );
    let mut c: Vec<Container> = (0..2)
        .map(|i| Container::attach(&dir.sock(&format!("p{i}"))))
        .collect();
    wait_links(&sw);
    // Learn both addresses first.
    c[1].send(&[frame(mac(1), mac(2), None, 60, 0)]);
    assert_eq!(c[0].recv_n(1, W).len(), 1);
    std::thread::sleep(Duration::from_millis(20));

    let rx_file = dir.0.join("p0-rx.pcapng");
    let tx_file = dir.0.join("p1-tx.pcapng");
    let a = sw
        .capture_start(
            "p0",
            CaptureSpec {
                tx: false,
                ..CaptureSpec::new(&rx_file)
            },
        )
        .unwrap();
    let b = sw
        .capture_start(
            "p1",
            CaptureSpec {
                rx: false,
                snaplen: 100,
                ..CaptureSpec::new(&tx_file)
            },
        )
        .unwrap();
    let e = sw
        .capture_start("p1", CaptureSpec::new(dir.0.join("other.pcapng")))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tx queue 0 is captured already by capture"),
        "{e}"
    );
    let e = sw
        .capture_start("p9", CaptureSpec::new(dir.0.join("other.pcapng")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no port p9 on the switch (ports: p0, p1"), "{e}");

    let frames: Vec<Vec<u8>> = (0..200)
        .map(|i| frame(mac(2), mac(1), None, 60 + (i * 7) % 1400, 1000 + i as u32))
        .collect();
    for chunk in frames.chunks(32) {
        c[0].send(chunk);
        assert_eq!(c[1].recv_n(chunk.len(), W), chunk);
    }
    let list = sw.capture_list();
    assert_eq!(list.len(), 2);
    let fa = sw.capture_stop(Some(a.id)).unwrap().remove(0);
    let fb = sw.capture_stop(Some(b.id)).unwrap().remove(0);
    assert_eq!((fa.written, fa.drops), (200, 0), "{fa:?}");
    assert_eq!((fb.written, fb.drops), (200, 0), "{fb:?}");
    let rx = packets(&rx_file);
    let tx = packets(&tx_file);
    assert_eq!(rx.len(), 200);
    assert_eq!(tx.len(), 200);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(rx[i], (1, f.clone()), "rx frame {i}");
        assert_eq!(tx[i], (2, f[..f.len().min(100)].to_vec()), "tx frame {i}");
    }

    // Deleting a port stops its capture and completes the file.
    let both = dir.0.join("p1-both.pcapng");
    sw.capture_start("p1", CaptureSpec::new(&both)).unwrap();
    c[0].send(&frames[..4]);
    assert_eq!(c[1].recv_n(4, W).len(), 4);
    sw.del_port("p1").unwrap();
    assert!(sw.capture_list().is_empty());
    let blocks = pcapng::read(&std::fs::read(&both).unwrap()).unwrap();
    assert!(
        matches!(
            blocks.last(),
            Some(Block::Statistics {
                delivered: Some(4),
                ..
            })
        ),
        "{:?}",
        blocks.last()
    );
    sw.shutdown();
}
