//! VF → PF requests between two testpmds: the PF's (`net_eswitch`) `set vf request` decides,
//! the VF application's (virtio-user with `cq=1` on VF 0's socket) `mac_addr set`, `set
//! promisc` and `rx_vlan add` ask over the control queue; what arrives at the VF, the VF's
//! error text and the PF's `show vf stats` tell what happened.

mod harness;

use std::time::Duration;

use ferrovia_testkit::{Container, Interactive, TempDir};
use harness::{TESTPMD, serial};

const NEW: &str = "02:00:00:00:f0:99";
const NEW_B: [u8; 6] = [2, 0, 0, 0, 0xf0, 0x99];
const REMOTE: [u8; 6] = [2, 0, 0, 0, 0xee, 1];

fn frame(dst: [u8; 6], seq: u8) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(dst);
    f.extend(REMOTE);
    f.extend(0x88b5u16.to_be_bytes());
    f.push(seq);
    f.resize(96, seq);
    f
}

struct Tp {
    tp: Interactive,
    prompts: usize,
}

impl Tp {
    fn start(args: &[&str]) -> Tp {
        let tp = Interactive::start(TESTPMD, args);
        tp.wait_for("testpmd> ", 1);
        Tp { tp, prompts: 1 }
    }
    /// Runs one command and returns what it printed.
    fn cmd(&mut self, line: &str) -> String {
        let before = self.tp.output().len();
        self.tp.send(line);
        self.prompts += 1;
        self.tp.wait_for("testpmd> ", self.prompts);
        // The prompt and a command's output come on two pipes: let the output catch up.
        std::thread::sleep(Duration::from_millis(200));
        self.tp.output()[before..].to_string()
    }
    /// RX-packets of `show port stats 0` (the prompt and the output come on two pipes, so
    /// the count is waited for, not the prompt).
    fn rx_packets(&mut self) -> u64 {
        let before = self.tp.output().len();
        self.tp.send("show port stats 0");
        self.prompts += 1;
        let t0 = std::time::Instant::now();
        loop {
            let o = self.tp.output();
            if let Some(at) = o[before..].find("RX-packets:") {
                let rest = &o[before + at + "RX-packets:".len()..];
                if let Some(n) = rest.split_whitespace().next().and_then(|n| n.parse().ok())
                    && rest.contains('\n')
                {
                    return n;
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "no stats in {o}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn vf_requests_judged_by_the_pf() {
    let _g = serial();
    let dir = TempDir::new("vfreq");
    let pf_dev = format!(
        "net_eswitch0,vfs=2,sock_dir={},uplink=vhost:{}",
        dir.path().display(),
        dir.sock("wire").display()
    );
    let mut pf = Tp::start(&["-l", "0-1", "--no-pci", "--vdev", &pf_dev, "--", "-i"]);
    let mut wire = Container::attach(&dir.sock("wire"));
    let vf_dev = format!("net_virtio_user0,path={},cq=1", dir.sock("vf0").display());
    let mut vf = Tp::start(&[
        "-l",
        "0-1",
        "--no-pci",
        "--file-prefix",
        "vfreq-vf",
        "--vdev",
        &vf_dev,
        "--",
        "-i",
    ]);
    vf.cmd("set fwd rxonly");
    vf.cmd("start");

    // Denied by default: the VF's testpmd prints the device's refusal, the PF's policy and
    // counters say so, and frames to the requested MAC do not arrive.
    let out = vf.cmd(&format!("mac_addr set 0 {NEW}"));
    assert!(
        out.contains("refused the request (VIRTIO_NET_ERR)") && out.contains("MAC_ADDR_SET"),
        "{out}"
    );
    let s = pf.cmd("show vf stats 0 0");
    assert!(
        s.contains("VF-requests: 1 ") && s.contains("denied: 1 "),
        "{s}"
    );
    wire.send_one(&frame(NEW_B, 1));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(vf.rx_packets(), 0);

    // Allowed: the MAC moves, frames to it arrive.
    let out = pf.cmd("set vf request 0 0 allow");
    assert!(!out.contains("Bad"), "{out}");
    let out = vf.cmd(&format!("mac_addr set 0 {NEW}"));
    assert!(!out.contains("VIRTIO_NET_ERR"), "{out}");
    assert!(vf.cmd("show port info 0").contains(&NEW.to_uppercase()));
    wire.send_one(&frame(NEW_B, 2));
    let t0 = std::time::Instant::now();
    while vf.rx_packets() != 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "frame to {NEW} never came"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = vf.cmd("set promisc 0 on");
    assert!(!out.contains("ERR"), "{out}");
    let out = vf.cmd("rx_vlan add 10 0");
    assert!(!out.contains("ERR"), "{out}");
    let s = pf.cmd("show vf stats 0 0");
    assert!(
        s.contains("VF-requests: 4 ") && s.contains("allowed: 3 "),
        "{s}"
    );

    // Denied again: promisc off is refused, the VF stays promiscuous at the PF.
    pf.cmd("set vf request 0 0 deny");
    let out = vf.cmd("set promisc 0 off");
    assert!(out.contains("VIRTIO_NET_ERR"), "{out}");
    wire.send_one(&frame([2, 0, 0, 0, 0xdd, 1], 3));
    let t0 = std::time::Instant::now();
    while vf.rx_packets() != 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "promisc frame never came"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A bad policy word is refused at the PF.
    let out = pf.cmd("set vf request 0 0 maybe");
    assert!(out.contains("not allow, deny or log"), "{out}");
    vf.tp.send("quit");
    pf.tp.send("quit");
}

/// DPDK 22.11's virtio-user, even with `cq=1`, answers its control queue itself: its MAC and
/// receive-mode changes never reach the PF (whose counters stay at 0), and the PF's policy is
/// not asked. (docs/eswitch.md says so; this shows it.)
#[test]
fn dpdk_virtio_user_answers_its_control_queue_itself() {
    let _g = serial();
    if !harness::dpdk_ready("dpdk_virtio_user_answers_its_control_queue_itself") {
        return;
    }
    let dir = TempDir::new("vfreq-dpdk");
    let pf_dev = format!(
        "net_eswitch0,vfs=2,sock_dir={},uplink=vhost:{}",
        dir.path().display(),
        dir.sock("wire").display()
    );
    let mut pf = Tp::start(&["-l", "0-1", "--no-pci", "--vdev", &pf_dev, "--", "-i"]);
    let _wire = Container::attach(&dir.sock("wire"));
    let vdev = format!(
        "--vdev=net_virtio_user0,path={},cq=1",
        dir.sock("vf0").display()
    );
    let tp = Interactive::start(
        "dpdk-testpmd",
        &[
            "-l",
            "0-1",
            "--no-pci",
            "--in-memory",
            "--single-file-segments",
            "--file-prefix=vfreq-dpdk",
            &vdev,
            "--",
            "-i",
        ],
    );
    tp.wait_for("testpmd> ", 1);
    let mut vf = Tp { tp, prompts: 1 };
    vf.cmd(&format!("mac_addr set 0 {NEW}"));
    vf.cmd("set promisc 0 off");
    vf.cmd("show port info 0");
    let s = pf.cmd("show vf stats 0 0");
    // DPDK's output is block-buffered on a pipe: read all of it once it quits.
    vf.tp.send("quit");
    let (_, out) = vf.tp.wait();
    assert!(
        out.contains(&format!("MAC address: {}", NEW.to_uppercase())),
        "DPDK's MAC moved locally: {out}"
    );
    assert!(s.contains("VF-requests: 0 "), "{s}\nDPDK said: {out}");
    pf.tp.send("quit");
}
