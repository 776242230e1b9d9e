//! The interactive prompt: commands as DPDK's testpmd names them.

use crate::app::{App, AppError};
use crate::opts::Topology;

/// What the caller should do after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Keep reading commands.
    Continue,
    /// Quit.
    Quit,
}

const HELP: &str = "\
Commands:
  start | start tx_first [n] | stop | quit
  show port stats all|N | clear port stats all|N | show port info all|N | show port xstats all|N
  show config fwd
  set fwd <io|mac|macswap|rxonly|txonly|flowgen|csum> | set portlist <list> | set nbcore N
  set txpkts <len[,len...]> | set burst N
  port stop|start all|N | set link-up|link-down port N
  set promisc|allmulti all|N on|off | mac_addr set N MAC | rx_vlan add|rm VLAN N
    (on a virtio-user port with cq=1: asked of its device over the control queue)
  port config N rx_offload|tx_offload <name> on|off (port stopped; applied at port start)
  csum set ip|udp|tcp hw|sw N | csum show N | tso set <segsz> N | tso show N
  capture start port=N,queue=N|*,rx-dev=FILE,tx-dev=FILE|dev=FILE,dir=rx|tx|both,snaplen=N
  capture stop [ID] | capture list
VF commands (on a PF port such as net_eswitch):
";

fn ports(app: &App, arg: Option<&str>) -> Result<Vec<u16>, String> {
    match arg {
        Some("all") => Ok((0..app.nb_ports() as u16).collect()),
        Some(n) => n
            .parse::<u16>()
            .map(|p| vec![p])
            .map_err(|_| format!("Bad arguments: '{n}' is not a port number or 'all'")),
        None => Err("Bad arguments: give a port number or 'all'".into()),
    }
}

fn on_off(s: &str) -> Option<bool> {
    match s {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// The prompt prints every error as one line: an [`App`] error becomes its message.
fn msg(e: AppError) -> String {
    e.to_string()
}

/// Runs `f` on each port `arg` names (a number or `all`), stopping at the first error.
fn each_port(
    app: &mut App,
    arg: &str,
    mut f: impl FnMut(&mut App, u16) -> Result<(), AppError>,
) -> Result<(), String> {
    ports(app, Some(arg))?
        .into_iter()
        .try_for_each(|p| f(app, p).map_err(msg))
}

/// Runs one command line.
pub fn run(app: &mut App, line: &str) -> Next {
    let w: Vec<&str> = line.split_whitespace().collect();
    let r: Result<(), String> = match w.as_slice() {
        [] => Ok(()),
        ["quit"] | ["exit"] => return Next::Quit,
        ["help", ..] => {
            println!("{HELP}{}", crate::vfcmd::HELP);
            Ok(())
        }
        ["start"] => app.start(0).map_err(msg),
        ["start", "tx_first"] => app.start(1).map_err(msg),
        ["start", "tx_first", n] => match n.parse::<usize>() {
            Ok(k) if k >= 1 => app.start(k).map_err(msg),
            _ => Err(format!(
                "Bad arguments: tx_first count '{n}' must be a positive number"
            )),
        },
        ["stop"] => app.stop().map_err(msg),
        ["show", "port", "stats", p] => each_port(app, p, App::show_port_stats),
        ["clear", "port", "stats", p] => each_port(app, p, App::clear_port_stats),
        ["show", "port", "info", p] => each_port(app, p, App::show_port_info),
        ["show", "port", "xstats", p] => each_port(app, p, App::show_port_xstats),
        ["show", "config", "fwd"] => {
            app.show_config_fwd();
            Ok(())
        }
        ["set", "fwd", m, ..] => {
            if ferrovia_fwd::engine(m).is_some() {
                app.opts.mode = m.to_string();
                println!("Set {m} packet forwarding mode");
                Ok(())
            } else {
                Err(format!(
                    "Bad arguments: unknown forwarding mode '{m}'; use one of {}",
                    ferrovia_fwd::MODES.join(", ")
                ))
            }
        }
        ["set", dir @ ("link-up" | "link-down"), "port", p] => match p.parse::<u16>() {
            Ok(p) => app.set_link(p, *dir == "link-up"),
            Err(_) => Err(format!("Bad arguments: '{p}' is not a port number")),
        },
        ["set", "portlist", list] => {
            let parsed: Result<Vec<u16>, _> =
                list.split(',').map(|p| p.trim().parse::<u16>()).collect();
            match parsed {
                Ok(v) if !v.is_empty() && v.iter().all(|&p| (p as usize) < app.nb_ports()) => {
                    app.portlist = v;
                    Ok(())
                }
                _ => Err(format!(
                    "Bad arguments: portlist '{list}' must list existing ports (0..{})",
                    app.nb_ports().saturating_sub(1)
                )),
            }
        }
        ["set", "nbcore", n] => match n.parse::<u32>() {
            Ok(k) if k >= 1 => {
                app.opts.nb_cores = Some(k);
                println!("Number of forwarding cores set to {k}");
                Ok(())
            }
            _ => Err(format!(
                "Bad arguments: nbcore '{n}' must be a positive number"
            )),
        },
        ["set", "burst", n] => match n.parse::<usize>() {
            Ok(k) if (1..=512).contains(&k) => {
                app.opts.burst = k;
                Ok(())
            }
            _ => Err(format!("Bad arguments: burst '{n}' must be 1..=512")),
        },
        ["set", "txpkts", list] => {
            let parsed: Result<Vec<u16>, _> =
                list.split(',').map(|p| p.trim().parse::<u16>()).collect();
            match parsed {
                Ok(v) if !v.is_empty() && v.iter().map(|&x| x as u32).sum::<u32>() <= 9728 => {
                    app.opts.txpkts = v;
                    Ok(())
                }
                _ => Err(format!(
                    "Bad arguments: txpkts '{list}' must be segment lengths summing to at most 9728"
                )),
            }
        }
        ["set", "port-topology", t] => match *t {
            "paired" => {
                let _: () = app.opts.topology = Topology::Paired;
                Ok(())
            }
            "chained" => {
                let _: () = app.opts.topology = Topology::Chained;
                Ok(())
            }
            "loop" => {
                let _: () = app.opts.topology = Topology::Loop;
                Ok(())
            }
            _ => Err("Bad arguments: topology must be paired, chained or loop".into()),
        },
        ["port", "stop", p] => each_port(app, p, App::stop_port),
        ["port", "start", p] => each_port(app, p, App::start_port),
        [
            "port",
            "config",
            p,
            dir @ ("rx_offload" | "tx_offload"),
            name,
            onoff,
        ] => match (p.parse::<u16>(), on_off(onoff)) {
            (Ok(p), Some(on)) => app
                .config_offload(p, *dir == "rx_offload", name, on)
                .map_err(msg),
            _ => Err(format!(
                "Bad arguments: port config <port> {dir} <name> on|off"
            )),
        },
        ["csum", "set", what, mode @ ("hw" | "sw"), p] => match p.parse::<u16>() {
            Ok(p) => app
                .csum_set(p, what, *mode == "hw")
                .and_then(|()| app.csum_show(p))
                .map_err(msg),
            Err(_) => Err(format!("Bad arguments: '{p}' is not a port number")),
        },
        ["csum", "show", p] | ["tso", "show", p] => match p.parse::<u16>() {
            Ok(p) => app.csum_show(p).map_err(msg),
            Err(_) => Err(format!("Bad arguments: '{p}' is not a port number")),
        },
        ["tso", "set", size, p] => match (size.parse::<u16>(), p.parse::<u16>()) {
            (Ok(size), Ok(p)) => app
                .tso_set(p, size)
                .and_then(|()| app.csum_show(p))
                .map_err(msg),
            _ => Err("Bad arguments: tso set <segment size> <port>".into()),
        },
        ["capture", rest @ ..] => capture(app, rest),
        [
            "set",
            mode @ ("promisc" | "allmulti"),
            p @ ("all" | _),
            o @ ("on" | "off"),
        ] => ports(app, Some(p)).and_then(|list| {
            let on = *o == "on";
            list.into_iter().try_for_each(|p| {
                app.port_control(p, |port| {
                    if *mode == "promisc" {
                        port.set_promisc(on)
                    } else {
                        port.set_allmulti(on)
                    }
                })
            })
        }),
        ["mac_addr", "set", p, m] => {
            match (p.parse::<u16>(), m.parse::<ferrovia_ethdev::MacAddr>()) {
                (Ok(p), Ok(m)) => app.port_control(p, |port| port.set_mac(m)),
                (Err(_), _) => Err(format!("Bad arguments: '{p}' is not a port number")),
                (_, Err(_)) => Err(format!(
                    "Bad arguments: '{m}' is not a MAC address (aa:bb:cc:dd:ee:ff)"
                )),
            }
        }
        ["rx_vlan", op @ ("add" | "rm"), vlan, p] => {
            match (vlan.parse::<u16>(), p.parse::<u16>()) {
                (Ok(v), Ok(p)) if v <= 4095 => {
                    app.port_control(p, |port| port.vlan_filter(v, *op == "add"))
                }
                (Ok(v), Ok(_)) => Err(format!("Bad arguments: VLAN {v} is outside 0..4095")),
                _ => Err("Bad arguments: rx_vlan add|rm VLAN PORT".into()),
            }
        }
        _ => match crate::vfcmd::run(app, &w) {
            Some(r) => r,
            None => Err(format!("Command not found: '{line}' (type 'help')")),
        },
    };
    if let Err(e) = r {
        println!("{e}");
    }
    Next::Continue
}

fn show_capture(s: &ferrovia_ethdev::CaptureStatus) {
    println!(
        "capture {}: port {} ({}) queue {} {} snaplen {} -> {}: {}; captured {}, drops {}, written {} ({} bytes)",
        s.id,
        s.port,
        s.port_name,
        s.spec.queue.map_or("*".to_string(), |q| q.to_string()),
        s.spec.dir_name(),
        s.spec.snaplen,
        s.spec.path.display(),
        s.state,
        s.captured,
        s.drops,
        s.written,
        s.bytes
    );
}

/// `capture start PARAMS`, `capture stop [ID]`, `capture list`.
fn capture(app: &mut App, w: &[&str]) -> Result<(), String> {
    let Some((c, ports)) = app.capture.clone() else {
        return Err("Capture is not available".into());
    };
    let list = match w {
        ["start", params @ ..] if !params.is_empty() => c.start(&*ports, &params.join(""))?,
        ["stop"] => c.stop(None)?,
        ["stop", id] => {
            let id = id.parse::<u32>().map_err(|_| {
                format!(
                    "Bad arguments: capture id '{id}' must be a number (capture list shows them)"
                )
            })?;
            c.stop(Some(id))?
        }
        ["list"] => {
            let l = c.list();
            if l.is_empty() {
                println!("No capture running");
            }
            l
        }
        _ => {
            return Err(
                "Bad arguments: capture start <params> | capture stop [id] | capture list".into(),
            );
        }
    };
    list.iter().for_each(show_capture);
    Ok(())
}
