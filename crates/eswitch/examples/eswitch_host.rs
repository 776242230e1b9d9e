//! Runs one software NIC from the command line until it is killed: the host side of
//! `scripts/bench-vswitch.sh`'s eswitch candidates.
//!
//! ```text
//! eswitch_host --uplink DEVARGS (--vf DEVARGS --vf-config FILE.json)... \
//!              [--tx-loopback on|off] [--line-rate-mbps N]
//! ```
//! VFs get vfids 0, 1, ... in the order given; each `--vf-config` is one VF's policy in VFd's
//! JSON keys, its `vfid` matching its position. Pin it with `taskset`.

use ferrovia_eswitch::veb::{Eswitch, EswitchConfig, VfSpec};
use ferrovia_eswitch::vfconfig::{Limits, VfConfig};

fn usage(why: &str) -> ! {
    eprintln!(
        "eswitch_host: {why}\nusage: eswitch_host --uplink DEVARGS (--vf DEVARGS --vf-config FILE.json)... [--tx-loopback on|off] [--line-rate-mbps N]"
    );
    std::process::exit(2);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut uplink = None;
    let mut vf_devargs = Vec::new();
    let mut vf_files = Vec::new();
    let mut tx_loopback = true;
    let mut line_rate_mbps = 100_000.0;
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--uplink" => uplink = Some(val()),
            "--vf" => vf_devargs.push(val()),
            "--vf-config" => vf_files.push(val()),
            "--tx-loopback" => {
                tx_loopback = match val().as_str() {
                    "on" => true,
                    "off" => false,
                    v => usage(&format!("--tx-loopback takes on or off, not {v}")),
                }
            }
            "--line-rate-mbps" => {
                let v = val();
                line_rate_mbps = v
                    .parse()
                    .unwrap_or_else(|_| usage(&format!("--line-rate-mbps {v}: not a number")));
            }
            "-h" | "--help" => usage("help"),
            _ => usage(&format!("unknown option {a}")),
        }
    }
    let uplink = uplink.unwrap_or_else(|| usage("--uplink is required"));
    if vf_devargs.is_empty() || vf_devargs.len() != vf_files.len() {
        usage("give each --vf its --vf-config");
    }
    let limits = Limits {
        max_vfs: vf_devargs.len() as u32,
        line_rate_mbps,
    };
    let vfs = vf_devargs
        .into_iter()
        .zip(&vf_files)
        .map(|(devargs, file)| {
            let text = std::fs::read_to_string(file)
                .unwrap_or_else(|e| usage(&format!("cannot read {file}: {e}")));
            let config = VfConfig::parse(&text, file, &limits).unwrap_or_else(|e| usage(&e));
            VfSpec {
                devargs,
                config,
                enabled: true,
            }
        })
        .collect();
    let sw = Eswitch::start(&EswitchConfig {
        uplink,
        vfs,
        tx_loopback,
        mbufs: 8192,
    })
    .unwrap_or_else(|e| usage(&e));
    eprintln!("eswitch_host: running; stop it with a signal");
    loop {
        std::thread::park();
        let _ = &sw;
    }
}
