//! testpmd's VF commands on a PF port (`net_eswitch`): each `set vf ...` proven on traffic
//! between containers on the VFs' sockets and a peer on the uplink, and the bad inputs.

mod harness;

use std::time::Duration;

use ferrovia_testkit::{Container, Interactive, TempDir};
use harness::{TESTPMD, serial};

const MAC0: [u8; 6] = [2, 0, 0, 0, 0xf0, 0];
const MAC1: [u8; 6] = [2, 0, 0, 0, 0xf0, 1];
const SPOOF: [u8; 6] = [2, 0, 0, 0, 0x66, 6];
const REMOTE: [u8; 6] = [2, 0, 0, 0, 0xee, 1];
const BCAST: [u8; 6] = [0xff; 6];
/// How long a check waits for a frame that must not come.
const QUIET: Duration = Duration::from_millis(300);

fn frame(dst: [u8; 6], src: [u8; 6], vid: Option<u16>, seq: u8) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(dst);
    f.extend(src);
    if let Some(v) = vid {
        f.extend(0x8100u16.to_be_bytes());
        f.extend(v.to_be_bytes());
    }
    f.extend(0x88b5u16.to_be_bytes());
    f.push(seq);
    f.resize(if vid.is_some() { 100 } else { 96 }, seq);
    f
}

struct Pf {
    tp: Interactive,
    prompts: usize,
}

impl Pf {
    /// Runs one command and returns what it printed.
    fn cmd(&mut self, line: &str) -> String {
        let before = self.tp.output().len();
        self.tp.send(line);
        self.prompts += 1;
        let out = self.tp.wait_for("testpmd> ", self.prompts);
        out[before..].to_string()
    }
}

#[test]
fn set_vf_commands_on_traffic() {
    let _g = serial();
    let dir = TempDir::new("vfcmd");
    let pf = format!(
        "net_eswitch0,vfs=2,vf_queues=2,sock_dir={},uplink=vhost:{}",
        dir.path().display(),
        dir.sock("wire").display()
    );
    let tp = Interactive::start(
        TESTPMD,
        &[
            "-l",
            "0-1",
            "--no-pci",
            "--vdev",
            &pf,
            "--vdev",
            "net_null0",
            "--",
            "-i",
        ],
    );
    let mut pf = Pf { tp, prompts: 0 };
    pf.tp.wait_for("testpmd> ", 1);
    pf.prompts = 1;
    let mut wire = Container::attach(&dir.sock("wire"));
    let mut vf0 = Container::attach(&dir.sock("vf0"));
    let mut vf1 = Container::attach(&dir.sock("vf1"));

    // MACs, then VF0 -> VF1 inside the NIC.
    pf.cmd("set vf mac addr 0 0 02:00:00:00:f0:00");
    pf.cmd("set vf mac addr 0 1 02:00:00:00:f0:01");
    let f = frame(MAC1, MAC0, None, 1);
    vf0.send_one(&f);
    assert_eq!(vf1.expect(1), vec![f.clone()]);

    // MAC anti-spoof: a frame from another source is dropped and counted; off, it passes.
    pf.cmd("set vf mac anti-spoof 0 0 on");
    pf.cmd("clear vf stats 0 0");
    vf0.send_one(&frame(MAC1, SPOOF, None, 2));
    assert!(vf1.recv_for(QUIET).is_empty());
    let s = pf.cmd("show vf stats 0 0");
    assert!(s.contains("TX-dropped: 1 "), "{s}");
    pf.cmd("set vf mac anti-spoof 0 0 off");
    let spoofed = frame(MAC1, SPOOF, None, 3);
    vf0.send_one(&spoofed);
    assert_eq!(vf1.expect(1), vec![spoofed]);
    pf.cmd("set vf mac anti-spoof 0 0 on");

    // VLAN insert: what VF0 sends to the wire carries VLAN 10; the wire's VLAN 10 reaches
    // VF0 untagged.
    pf.cmd("set vf vlan insert 0 0 10");
    vf0.send_one(&frame(REMOTE, MAC0, None, 4));
    assert_eq!(wire.expect(1), vec![frame(REMOTE, MAC0, Some(10), 4)]);
    wire.send_one(&frame(MAC0, REMOTE, Some(10), 5));
    assert_eq!(vf0.expect(1), vec![frame(MAC0, REMOTE, None, 5)]);
    pf.cmd("set vf vlan insert 0 0 0");

    // Broadcast off then on for VF1.
    pf.cmd("set vf broadcast 0 1 off");
    let b = frame(BCAST, REMOTE, None, 6);
    wire.send_one(&b);
    assert!(vf1.recv_for(QUIET).is_empty());
    pf.cmd("set port 0 vf 1 rxmode BAM on");
    wire.send_one(&b);
    assert_eq!(vf1.recv_n(1, Duration::from_secs(5)), vec![b]);

    // Receive disabled: nothing reaches VF1; enabled again, it does.
    pf.cmd("set port 0 vf 1 rx off");
    let u = frame(MAC1, REMOTE, None, 7);
    wire.send_one(&u);
    assert!(vf1.recv_for(QUIET).is_empty());
    pf.cmd("set port 0 vf 1 rx on");
    wire.send_one(&u);
    assert_eq!(vf1.recv_n(1, Duration::from_secs(5)), vec![u]);

    // tx loopback off: VF0 -> VF1 goes out of the uplink instead.
    pf.cmd("set tx loopback 0 off");
    let l = frame(MAC1, MAC0, None, 8);
    vf0.send_one(&l);
    assert_eq!(wire.expect(1), vec![l]);
    assert!(vf1.recv_for(QUIET).is_empty());
    pf.cmd("set tx loopback 0 on");

    // VLAN filter (a VF with no VLAN takes any): with VLAN 30 admitted, VLAN 20 is dropped;
    // added, it passes (its tag kept); removed, it is dropped again.
    let t = frame(MAC1, REMOTE, Some(20), 10);
    pf.cmd("rx_vlan add 30 port 0 vf 0x2");
    wire.send_one(&t);
    assert!(vf1.recv_for(QUIET).is_empty());
    pf.cmd("rx_vlan add 20 port 0 vf 0x2");
    wire.send_one(&t);
    assert_eq!(vf1.recv_n(1, Duration::from_secs(5)), vec![t.clone()]);
    pf.cmd("rx_vlan rm 20 port 0 vf 0x2");
    wire.send_one(&t);
    assert!(vf1.recv_for(QUIET).is_empty());
    pf.cmd("rx_vlan rm 30 port 0 vf 0x2");

    // Counters: what VF1 received is counted, and cleared.
    let s = pf.cmd("show vf stats 0 1");
    assert!(s.contains("NIC statistics for port 0 VF 1"), "{s}");
    assert!(!s.contains("RX-packets: 0 "), "{s}");
    pf.cmd("clear vf stats 0 1");
    let s = pf.cmd("show vf stats 0 1");
    assert!(s.contains("RX-packets: 0 "), "{s}");

    // Traffic classes (their scheduling is proven in crates/eswitch/tests/veb.rs).
    let out = pf.cmd("set vf tc tx min-bandwidth 0 1 (30,70)");
    assert!(!out.contains("Bad") && !out.contains("VF 1:"), "{out}");

    // Bad input: each a clear message, nothing changed.
    for (line, want) in [
        (
            "set vf tc tx min-bandwidth 0 1 (30,50)",
            "add up to 80 %, not 100 %",
        ),
        (
            "set vf tc tx min-bandwidth 0 1 (10,10,10,10,10,10,10,10,20)",
            "at most 8 traffic classes",
        ),
        (
            "set vf mac addr 0 9 02:00:00:00:f0:09",
            "VF 9 does not exist: this PF has VFs 0..1",
        ),
        (
            "set vf vlan insert 0 0 5000",
            "VLAN 5000 is outside 1..4094",
        ),
        (
            "set vf tx max-bandwidth 0 1 99999",
            "above the line rate (10000 Mbit/s)",
        ),
        ("set vf mac addr 0 0 not-a-mac", "is not a MAC address"),
        (
            "set port 0 vf 0 rxmode XYZ on",
            "is not AUPE, ROPE, BAM or MPE",
        ),
        ("rx_vlan add 20 port 0 vf 0x8", "beyond this PF's 2 VFs"),
        ("show vf stats 1 0", "port 1 (net_null) has no VFs"),
        ("show vf stats 5 0", "5"),
    ] {
        let out = pf.cmd(line);
        assert!(out.contains(want), "{line}: {out}");
    }
    // VF0 still forwards to VF1 with its MAC and anti-spoof as set.
    let f = frame(MAC1, MAC0, None, 9);
    vf0.send_one(&f);
    assert_eq!(vf1.expect(1), vec![f]);
    pf.tp.send("quit");
    let (_, out) = pf.tp.wait();
    assert!(out.contains("Bye"), "{out}");
}
