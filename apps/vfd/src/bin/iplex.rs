//! `iplex`: the CLI of `ferrovia-vfd`, with AT&T VFd's command set. Each command is one
//! JSON-RPC call on the daemon's control socket.
//!
//! ```text
//! iplex [--ctl PATH] [--json] add <name> | update <name> | delete <name>
//!                             | show all | show <vfid> | show pfs | status | reload
//!                             | verbose [level] | dump | ping
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgAction, Command};
use ferrovia_vfd::paths;
use ferrovia_vswitch::rpc::RpcClient;
use serde_json::{Value, json};

fn cli() -> Command {
    let name = || {
        Arg::new("name")
            .required(true)
            .value_name("NAME")
            .help("the file <config dir>/NAME.json")
    };
    Command::new("iplex")
        .about("Configures the VFs of ferrovia-vfd (AT&T VFd's iplex commands)")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .arg(
            Arg::new("ctl")
                .long("ctl")
                .global(true)
                .value_name("PATH")
                .help("the daemon's control socket [default: $FERROVIA_VFD_CTL, else <run dir>/vfd.ctl]"),
        )
        .arg(
            Arg::new("json")
                .long("json")
                .global(true)
                .action(ArgAction::SetTrue)
                .help("print the daemon's JSON answer"),
        )
        .subcommand(
            Command::new("add")
                .about("read <config dir>/NAME.json, apply it to its VF, enable the VF")
                .arg(name()),
        )
        .subcommand(
            Command::new("update")
                .about("re-read the file of an added VF and apply it")
                .arg(name()),
        )
        .subcommand(
            Command::new("delete")
                .about("disable the VF and reset its policy")
                .arg(name()),
        )
        .subcommand(
            Command::new("show")
                .about("policy and counters (drops by cause) of every VF, or of one; or the PF")
                .arg(
                    Arg::new("what")
                        .required(true)
                        .value_name("all|VFID|pfs")
                        .help("all, a VF number, or pfs (the PF: uplink, link, speed, VFs)"),
                ),
        )
        .subcommand(Command::new("status").about("the daemon, its uplink and its configured VFs"))
        .subcommand(
            Command::new("reload")
                .about("bring the VFs in line with the configuration directory (what SIGHUP does)"),
        )
        .subcommand(
            Command::new("verbose")
                .about("set the daemon's log level: 0 off, 1 error, 2 warn, 3 info, 4 debug, 5 trace; without a level, print it")
                .arg(
                    Arg::new("level")
                        .value_name("LEVEL")
                        .value_parser(clap::value_parser!(u64))
                        .help("0 to 5"),
                ),
        )
        .subcommand(Command::new("dump").about("write the daemon's whole state to its log (and print it)"))
        .subcommand(Command::new("ping").about("check that the daemon answers"))
}

/// One VF of `show`, as text.
fn print_vf(v: &Value) {
    let p = &v["policy"];
    let c = &v["counters"];
    let on = |b: &Value| {
        if b.as_bool() == Some(true) {
            "on"
        } else {
            "off"
        }
    };
    println!(
        "VF {}  name {}  rx {}  tx {}  link {}  socket {}",
        v["vfid"],
        v["name"].as_str().unwrap_or("-"),
        on(&v["enabled"]["rx"]),
        on(&v["enabled"]["tx"]),
        if v["link_up"].as_bool() == Some(true) {
            "up"
        } else {
            "down"
        },
        v["socket"].as_str().unwrap_or("?"),
    );
    let list = |x: &Value| {
        let items: Vec<String> = x
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| i.as_str().map_or(i.to_string(), str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(",")
        }
    };
    println!(
        "  macs {}  vlans {}  strip_stag {}  strip_ctag {}  allow_untagged {}",
        list(&p["macs"]),
        list(&p["vlans"]),
        on(&p["strip_stag"]),
        on(&p["strip_ctag"]),
        on(&p["allow_untagged"]),
    );
    println!(
        "  allow_bcast {}  allow_mcast {}  allow_un_ucast {}  mac_anti_spoof {}  vlan_anti_spoof {}  rate {}",
        on(&p["allow_bcast"]),
        on(&p["allow_mcast"]),
        on(&p["allow_un_ucast"]),
        on(&p["mac_anti_spoof"]),
        on(&p["vlan_anti_spoof"]),
        p["rate_mbps"]
            .as_f64()
            .map_or("unlimited".to_string(), |r| format!("{r} Mbit/s")),
    );
    println!(
        "  tx {} packets {} bytes   rx {} packets {} bytes",
        c["tx_packets"], c["tx_bytes"], c["rx_packets"], c["rx_bytes"]
    );
    let r = &c["requests"];
    println!(
        "  vf_requests {} ({} per s)  requests {}  allowed {}  denied {}  rate_limited {}  malformed {}",
        p["vf_requests"].as_str().unwrap_or("?"),
        p["vf_request_rate"],
        r["total"],
        r["allowed"],
        r["denied"],
        r["rate_limited"],
        r["malformed"],
    );
    for dir in ["tx", "rx"] {
        let drops: Vec<String> = c[format!("{dir}_dropped")]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "  {dir} drops: {}",
            if drops.is_empty() {
                "none".to_string()
            } else {
                drops.join(", ")
            }
        );
    }
}

fn print_status(s: &Value) {
    let up = &s["uplink"];
    println!(
        "ferrovia-vfd {} running, pid {}",
        s["version"].as_str().unwrap_or("?"),
        s["pid"]
    );
    println!(
        "uplink {}  link {}  tx {} rx {} dropped {}",
        up["devargs"].as_str().unwrap_or("?"),
        if up["link_up"].as_bool() == Some(true) {
            "up"
        } else {
            "down"
        },
        up["tx_packets"],
        up["rx_packets"],
        up["dropped_queue_full"],
    );
    let configured: Vec<String> = s["configured"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| format!("VF {} = {}", c["vfid"], c["name"].as_str().unwrap_or("?")))
                .collect()
        })
        .unwrap_or_default();
    println!(
        "VFs: {}, configured: {}",
        s["num_vfs"],
        if configured.is_empty() {
            "none".to_string()
        } else {
            configured.join(", ")
        }
    );
    println!(
        "config dir {}  sockets {}  control {}",
        s["config_dir"].as_str().unwrap_or("?"),
        s["sock_dir"].as_str().unwrap_or("?"),
        s["ctl"].as_str().unwrap_or("?"),
    );
    if let Some(t) = s["telemetry"].as_str() {
        println!("telemetry {t}");
    }
}

fn run() -> Result<(), String> {
    let m = cli().get_matches();
    let ctl = m
        .get_one::<String>("ctl")
        .map(PathBuf::from)
        .unwrap_or_else(paths::default_ctl);
    let raw = m.get_flag("json");
    let (cmd, sub) = m.subcommand().ok_or("a command is needed (iplex --help)")?;
    let arg = |k: &str| sub.get_one::<String>(k).cloned().unwrap_or_default();
    let (method, params) = match cmd {
        "add" | "update" | "delete" => (cmd, json!({ "name": arg("name") })),
        "show" => {
            let what = arg("what");
            if what == "all" {
                ("show", json!({}))
            } else if what == "pfs" {
                ("pfs", json!({}))
            } else {
                let v: u32 = what.parse().map_err(|_| {
                    format!("show {what:?}: expected all, pfs or a VF number (iplex show all)")
                })?;
                ("show", json!({ "vfid": v }))
            }
        }
        "verbose" => (
            "verbose",
            json!({ "level": sub.get_one::<u64>("level").copied() }),
        ),
        other => (other, Value::Null),
    };
    let hint = format!(
        "is ferrovia-vfd running? start it with: ferrovia-vfd --ctl {} (or pass iplex --ctl PATH, or set FERROVIA_VFD_CTL)",
        ctl.display()
    );
    let mut c = RpcClient::connect_with_hint(&ctl, &hint).map_err(|e| e.to_string())?;
    let result = c
        .call(method, params)
        .map_err(|e| format!("{}: {e}", ctl.display()))?
        .map_err(|(_, message)| message)?;
    if raw {
        println!("{result}");
        return Ok(());
    }
    match cmd {
        "add" => println!("{}: added to VF {}", arg("name"), result["vfid"]),
        "update" => println!("{}: updated VF {}", arg("name"), result["vfid"]),
        "delete" => println!(
            "{}: deleted, VF {} disabled and reset",
            arg("name"),
            result["vfid"]
        ),
        "show" if method == "pfs" => {
            for p in result.as_array().into_iter().flatten() {
                println!(
                    "PF {}  {}  driver {}  mac {}  link {}  speed {} Mbit/s (policing against {} Mbit/s)",
                    p["pf"],
                    p["devargs"].as_str().unwrap_or("?"),
                    p["driver"].as_str().unwrap_or("?"),
                    p["mac"].as_str().unwrap_or("?"),
                    if p["link_up"].as_bool() == Some(true) {
                        "up"
                    } else {
                        "down"
                    },
                    p["speed_mbps"],
                    p["line_rate_mbps"],
                );
                println!(
                    "  VFs {} (configured {})  tx {} rx {} dropped {}",
                    p["num_vfs"],
                    p["configured_vfs"],
                    p["tx_packets"],
                    p["rx_packets"],
                    p["dropped_queue_full"]
                );
            }
        }
        "show" => {
            for v in result.as_array().into_iter().flatten() {
                print_vf(v);
            }
        }
        "status" => print_status(&result),
        "reload" => {
            let mut failed = Vec::new();
            for r in result.as_array().into_iter().flatten() {
                let name = r["name"].as_str().unwrap_or("?");
                match (r["done"].as_str(), r["error"].as_str()) {
                    (Some(d), _) => println!("{name}: {d}"),
                    (_, Some(e)) => {
                        println!("{name}: FAILED: {e}");
                        failed.push(name.to_string());
                    }
                    _ => println!("{name}: {r}"),
                }
            }
            if result.as_array().is_none_or(|a| a.is_empty()) {
                println!("nothing to do: no VF file is added and the directory has none");
            }
            if !failed.is_empty() {
                return Err(format!(
                    "reload: {} file(s) failed and kept their VF's previous policy: {}",
                    failed.len(),
                    failed.join(", ")
                ));
            }
        }
        "verbose" => println!(
            "log level {} ({}); was {}",
            result["level"],
            result["name"].as_str().unwrap_or("?"),
            result["old"]
        ),
        "dump" => println!(
            "{}",
            serde_json::to_string_pretty(&result).unwrap_or_else(|_| result.to_string())
        ),
        _ => println!("{}", result.as_str().unwrap_or(&result.to_string())),
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iplex: {e}");
            ExitCode::FAILURE
        }
    }
}
