//! The prompt's VF commands, as DPDK's testpmd names them, on a PF port (one whose
//! [`VfControl`](ferrovia_ethdev::VfControl) the port offers: `net_eswitch`).

use ferrovia_ethdev::{MacAddr, RxModeFlag, VfRequestPolicy, VfSetting, VfStats};

use crate::app::App;

/// The VF commands, for `help`.
pub const HELP: &str = "\
  set vf mac addr P V MAC | mac_addr add port P vf V MAC
  set vf mac anti-spoof P V on|off | set vf vlan anti-spoof P V on|off
  set vf vlan insert P V VLAN (0: off) | set vf vlan stripq P V on|off
  rx_vlan add|rm VLAN port P vf MASK
  set vf broadcast|allmulti|promisc P V on|off
  set vf request P V allow|deny|log (the VF's own requests over its control queue)
  set port P vf V rxmode AUPE|ROPE|BAM|MPE[,...] on|off | set port P vf V rx|tx on|off
  set vf tx max-bandwidth P V MBPS (0: none) | set port P vf V rate MBPS queue_mask MASK
  set vf tc tx min-bandwidth P V (BW0,BW1,...) (percent per class, 100 in all; TC i = queue i, priority i)
  set tx loopback P on|off | show vf stats P V | clear vf stats P V";

fn num<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("Bad arguments: {what} '{s}' is not a number"))
}

fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("Bad arguments: '{s}' is not on or off")),
    }
}

fn mac(s: &str) -> Result<MacAddr, String> {
    s.parse()
        .map_err(|_| format!("Bad arguments: '{s}' is not a MAC address (aa:bb:cc:dd:ee:ff)"))
}

/// Runs a VF command if `w` is one: None when it is not a VF command at all.
pub fn run(app: &mut App, w: &[&str]) -> Option<Result<(), String>> {
    let (port, vfs, what): (&str, Vec<&str>, Work) = match w {
        ["set", "vf", "mac", "addr", p, v, m] => {
            (p, vec![v], Work::Set(mac(m).map(VfSetting::Mac)))
        }
        ["mac_addr", "add", "port", p, "vf", v, m] => {
            (p, vec![v], Work::Set(mac(m).map(VfSetting::AddMac)))
        }
        ["set", "vf", "mac", "anti-spoof", p, v, o] => (
            p,
            vec![v],
            Work::Set(on_off(o).map(VfSetting::MacAntiSpoof)),
        ),
        ["set", "vf", "vlan", "anti-spoof", p, v, o] => (
            p,
            vec![v],
            Work::Set(on_off(o).map(VfSetting::VlanAntiSpoof)),
        ),
        ["set", "vf", "vlan", "insert", p, v, vlan] => (
            p,
            vec![v],
            Work::Set(
                num::<u16>(vlan, "VLAN").map(|n| VfSetting::VlanInsert((n != 0).then_some(n))),
            ),
        ),
        ["set", "vf", "vlan", "stripq", p, v, o] => {
            (p, vec![v], Work::Set(on_off(o).map(VfSetting::VlanStrip)))
        }
        [
            "set",
            "vf",
            mode @ ("broadcast" | "allmulti" | "promisc"),
            p,
            v,
            o,
        ] => {
            let flag = match *mode {
                "broadcast" => RxModeFlag::Bam,
                "allmulti" => RxModeFlag::Mpe,
                _ => RxModeFlag::Rope,
            };
            (
                p,
                vec![v],
                Work::Set(on_off(o).map(|on| VfSetting::RxMode(flag, on))),
            )
        }
        ["set", "port", p, "vf", v, "rxmode", flags, o] => {
            let on = match on_off(o) {
                Ok(on) => on,
                Err(e) => return Some(Err(e)),
            };
            let mut list = Vec::new();
            for f in flags.split(',') {
                match RxModeFlag::parse(f) {
                    Some(flag) => list.push(VfSetting::RxMode(flag, on)),
                    None => {
                        return Some(Err(format!(
                            "Bad arguments: rxmode '{f}' is not AUPE, ROPE, BAM or MPE"
                        )));
                    }
                }
            }
            (p, vec![v], Work::Many(list))
        }
        ["set", "port", p, "vf", v, dir @ ("rx" | "tx"), o] => (
            p,
            vec![v],
            Work::Set(on_off(o).map(|on| {
                if *dir == "rx" {
                    VfSetting::Rx(on)
                } else {
                    VfSetting::Tx(on)
                }
            })),
        ),
        ["set", "vf", "tx", "max-bandwidth", p, v, r] => (
            p,
            vec![v],
            Work::Set(num::<u32>(r, "bandwidth").map(VfSetting::MaxBandwidthMbps)),
        ),
        ["set", "port", p, "vf", v, "rate", r, "queue_mask", _] => (
            p,
            vec![v],
            Work::Set(num::<u32>(r, "rate").map(VfSetting::MaxBandwidthMbps)),
        ),
        ["set", "vf", "tc", "tx", "min-bandwidth", p, v, list] => {
            (p, vec![v], Work::Set(tc_shares(list)))
        }
        ["rx_vlan", op @ ("add" | "rm"), vlan, "port", p, "vf", mask] => {
            let vlan = match num::<u16>(vlan, "VLAN") {
                Ok(v) => v,
                Err(e) => return Some(Err(e)),
            };
            let m = mask.trim_start_matches("0x");
            let Ok(bits) = u64::from_str_radix(m, 16) else {
                return Some(Err(format!(
                    "Bad arguments: VF mask '{mask}' is not a hexadecimal number"
                )));
            };
            let on = *op == "add";
            return Some(each_vf_in_mask(
                app,
                p,
                bits,
                VfSetting::VlanFilter { vlan, on },
            ));
        }
        ["set", "vf", "request", p, v, pol] => (
            p,
            vec![v],
            Work::Set(
                VfRequestPolicy::parse(pol)
                    .map(VfSetting::Requests)
                    .ok_or_else(|| {
                        format!(
                            "Bad arguments: VF request policy '{pol}' is not allow, deny or log"
                        )
                    }),
            ),
        ),
        ["set", "tx", "loopback", p, o] => (p, vec![], Work::Loopback(on_off(o))),
        ["show", "vf", "stats", p, v] => (p, vec![v], Work::Show),
        ["clear", "vf", "stats", p, v] => (p, vec![v], Work::Clear),
        _ => return None,
    };
    Some(apply(app, port, &vfs, what))
}

/// `(bw1,bw2,...)`: up to 8 percentages.
fn tc_shares(list: &str) -> Result<VfSetting, String> {
    let inner = list.trim_start_matches('(').trim_end_matches(')');
    let mut shares = [0u8; 8];
    let mut count = 0u8;
    for part in inner.split(',').filter(|p| !p.is_empty()) {
        if count == 8 {
            return Err("Bad arguments: at most 8 traffic classes".into());
        }
        let b: u8 = num(part.trim(), "bandwidth")?;
        if b > 100 {
            return Err(format!("Bad arguments: bandwidth {b} % is above 100"));
        }
        shares[count as usize] = b;
        count += 1;
    }
    Ok(VfSetting::TcMinBandwidth { shares, count })
}

/// What a parsed command does.
enum Work {
    Set(Result<VfSetting, String>),
    Many(Vec<VfSetting>),
    Loopback(Result<bool, String>),
    Show,
    Clear,
}

fn apply(app: &mut App, port: &str, vfs: &[&str], what: Work) -> Result<(), String> {
    let p: u16 = num(port, "port")?;
    let c = app.vf_control(p)?;
    let vf = match vfs.first() {
        Some(v) => Some(num::<u16>(v, "VF")?),
        None => None,
    };
    let err = |e: ferrovia_ethdev::Error| e.to_string();
    match (what, vf) {
        (Work::Set(s), Some(vf)) => c.vf_set(vf, s?).map_err(err),
        (Work::Many(list), Some(vf)) => list
            .into_iter()
            .try_for_each(|s| c.vf_set(vf, s))
            .map_err(err),
        (Work::Loopback(on), _) => c.set_tx_loopback(on?).map_err(err),
        (Work::Show, Some(vf)) => {
            let s = c.vf_stats(vf).map_err(err)?;
            print_stats(p, vf, &s);
            Ok(())
        }
        (Work::Clear, Some(vf)) => c.vf_stats_reset(vf).map_err(err),
        _ => Err("Bad arguments: a VF number is missing".into()),
    }
}

/// `rx_vlan add|rm VLAN port P vf MASK`: the setting on every VF whose bit is set.
fn each_vf_in_mask(app: &mut App, port: &str, mask: u64, s: VfSetting) -> Result<(), String> {
    let p: u16 = num(port, "port")?;
    let c = app.vf_control(p)?;
    let n = c.num_vfs();
    if mask == 0 || (n < 64 && mask >> n != 0) {
        return Err(format!(
            "Bad arguments: VF mask {mask:#x} names no VF or one beyond this PF's {n} VFs"
        ));
    }
    (0..n.min(64))
        .filter(|v| mask >> v & 1 == 1)
        .try_for_each(|v| c.vf_set(v, s))
        .map_err(|e| e.to_string())
}

fn print_stats(p: u16, vf: u16, s: &VfStats) {
    let hdr = format!(
        "  ######################## NIC statistics for port {p} VF {vf} ########################"
    );
    println!();
    println!("{hdr}");
    println!(
        "  RX-packets: {:<12} RX-dropped: {:<12} RX-bytes:  {}",
        s.rx_packets, s.rx_dropped, s.rx_bytes
    );
    println!(
        "  TX-packets: {:<12} TX-dropped: {:<12} TX-bytes:  {}",
        s.tx_packets, s.tx_dropped, s.tx_bytes
    );
    println!(
        "  VF-requests: {:<11} allowed: {:<10} denied: {:<10} rate-limited: {:<10} malformed: {}",
        s.requests, s.req_allowed, s.req_denied, s.req_rate_limited, s.req_malformed
    );
    println!("  {}", "#".repeat(hdr.len() - 2));
}
