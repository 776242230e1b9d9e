//! `ferrovia-ctl`: the control client of `ferrovia-switch` (the `ovs-vsctl`/`ovs-appctl`
//! role). Each command is one JSON-RPC call on the switch's control socket.

use std::path::PathBuf;
use std::process::ExitCode;

use ferrovia_vswitch::rpc::RpcClient;
use serde_json::{Value, json};

const USAGE: &str = "\
usage: ferrovia-ctl [--socket PATH] [--json] COMMAND [ARGS]

bridges and ports
  add-br NAME [fdb_limit=N] [aging=SECS]
  del-br NAME
  add-port BRIDGE NAME DEVARGS [tag=N] [trunks=A,B,..] [native=N] [max_frame=N]
  del-port NAME
  set-port NAME [tag=N] [trunks=A,B,..] [native=N]   (no VLAN option: trunk of all VLANs)
router
  add-ri NAME BRIDGE ADDRESS/LEN [vlan=N] [mac=MAC]  (a router interface)
  del-ri NAME
  add-route PREFIX/LEN VIA
  del-route PREFIX/LEN
show
  show                 bridges and ports
  show ports | bridges | stats | fdb BRIDGE | routes | pmd-stats
  dump-flows           the PMD threads' flow caches
operations
  fdb-flush BRIDGE
  pmd-rxq-rebalance    spread Rx queues over PMD threads by measured cycles
  set-rxq-assign roundrobin|cycles
  reset-stats
capture (pcapng; FILE may be a FIFO: mkfifo F; tshark -i F)
  capture start PORT [--queue Q] [--dir rx|tx|both] [--snaplen N] [--ring-size N] FILE
  capture stop [ID]    (no ID: every capture)
  capture list
other
  call METHOD [JSON]   any JSON-RPC method with raw params
  help                 the switch's method list

--socket defaults to $FERROVIA_RUN_DIR/switch.sock (else $XDG_RUNTIME_DIR/ferrovia/switch.sock,
else /tmp/ferrovia-$UID/switch.sock). --json prints the raw result.";

fn kv(args: &[String], allowed: &[&str]) -> Result<serde_json::Map<String, Value>, String> {
    let mut m = serde_json::Map::new();
    for a in args {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| format!("expected key=value, got {a:?}"))?;
        if !allowed.contains(&k) {
            return Err(format!(
                "unknown option {k:?} (options: {})",
                allowed.join(", ")
            ));
        }
        let num = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("{k}={s}: {s:?} is not a number"))
        };
        let val = match k {
            "trunks" => Value::Array(
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| num(s).map(Value::from))
                    .collect::<Result<_, _>>()?,
            ),
            "mac" | "devargs" => Value::from(v),
            _ => Value::from(num(v)?),
        };
        let key = if k == "aging" { "aging_secs" } else { k };
        m.insert(key.to_string(), val);
    }
    Ok(m)
}

fn need<'a>(args: &'a [String], n: usize, usage: &str) -> Result<&'a [String], String> {
    if args.len() < n {
        Err(format!("usage: ferrovia-ctl {usage}"))
    } else {
        Ok(args)
    }
}

/// Maps a command line to (method, params).
fn request(cmd: &str, a: &[String]) -> Result<(String, Value), String> {
    let r = |m: &str, p: Value| Ok((m.to_string(), p));
    match cmd {
        "add-br" => {
            let a = need(a, 1, "add-br NAME [fdb_limit=N] [aging=SECS]")?;
            let mut m = kv(&a[1..], &["fdb_limit", "aging"])?;
            m.insert("name".into(), a[0].clone().into());
            r("add-br", Value::Object(m))
        }
        "del-br" => r("del-br", json!({"name": need(a, 1, "del-br NAME")?[0]})),
        "add-port" => {
            let a = need(
                a,
                3,
                "add-port BRIDGE NAME DEVARGS [tag=N] [trunks=A,B] [native=N]",
            )?;
            let mut m = kv(&a[3..], &["tag", "trunks", "native", "max_frame"])?;
            m.insert("bridge".into(), a[0].clone().into());
            m.insert("name".into(), a[1].clone().into());
            m.insert("devargs".into(), a[2].clone().into());
            r("add-port", Value::Object(m))
        }
        "del-port" => r("del-port", json!({"name": need(a, 1, "del-port NAME")?[0]})),
        "set-port" => {
            let a = need(a, 1, "set-port NAME [tag=N] [trunks=A,B] [native=N]")?;
            let mut m = kv(&a[1..], &["tag", "trunks", "native"])?;
            m.insert("name".into(), a[0].clone().into());
            r("set-port-vlan", Value::Object(m))
        }
        "add-ri" => {
            let a = need(a, 3, "add-ri NAME BRIDGE ADDRESS/LEN [vlan=N] [mac=MAC]")?;
            let mut m = kv(&a[3..], &["vlan", "mac"])?;
            m.insert("name".into(), a[0].clone().into());
            m.insert("bridge".into(), a[1].clone().into());
            m.insert("address".into(), a[2].clone().into());
            r("add-router-interface", Value::Object(m))
        }
        "del-ri" => r(
            "del-router-interface",
            json!({"name": need(a, 1, "del-ri NAME")?[0]}),
        ),
        "add-route" => {
            let a = need(a, 2, "add-route PREFIX/LEN VIA")?;
            r("add-route", json!({"prefix": a[0], "via": a[1]}))
        }
        "del-route" => r(
            "del-route",
            json!({"prefix": need(a, 1, "del-route PREFIX/LEN")?[0]}),
        ),
        "show" => match a.first().map(String::as_str) {
            None => r("show-ports", Value::Null),
            Some("ports") => r("show-ports", Value::Null),
            Some("bridges") => r("show-bridges", Value::Null),
            Some("stats") => r("show-stats", Value::Null),
            Some("fdb") => r(
                "show-fdb",
                json!({"bridge": need(a, 2, "show fdb BRIDGE")?[1]}),
            ),
            Some("routes") => r("show-routes", Value::Null),
            Some("pmd-stats") => r("show-pmd-stats", Value::Null),
            Some(o) => Err(format!(
                "show {o}: unknown (show ports | bridges | stats | fdb BRIDGE | routes | pmd-stats)"
            )),
        },
        "dump-flows" => r("dump-flows", Value::Null),
        "fdb-flush" => r(
            "fdb-flush",
            json!({"bridge": need(a, 1, "fdb-flush BRIDGE")?[0]}),
        ),
        "pmd-rxq-rebalance" => r("pmd-rxq-rebalance", Value::Null),
        "set-rxq-assign" => r(
            "set-rxq-assign",
            json!({"mode": need(a, 1, "set-rxq-assign roundrobin|cycles")?[0]}),
        ),
        "reset-stats" => r("reset-stats", Value::Null),
        "capture" => capture_request(a),
        "help" => r("help", Value::Null),
        "call" => {
            let a = need(a, 1, "call METHOD [JSON]")?;
            let p = match a.get(1) {
                Some(j) => serde_json::from_str(j).map_err(|e| format!("params {j:?}: {e}"))?,
                None => Value::Null,
            };
            r(&a[0], p)
        }
        other => Err(format!("unknown command {other:?}\n\n{USAGE}")),
    }
}

const CAPTURE_USAGE: &str = "capture start PORT [--queue Q] [--dir rx|tx|both] [--snaplen N] [--ring-size N] FILE | capture stop [ID] | capture list";

fn capture_request(a: &[String]) -> Result<(String, Value), String> {
    match a.first().map(String::as_str) {
        Some("start") => {
            let mut m = serde_json::Map::new();
            let mut pos = Vec::new();
            let mut it = a[1..].iter();
            while let Some(x) = it.next() {
                let (k, inline) = match x.split_once('=') {
                    Some((k, v)) if k.starts_with("--") => (k, Some(v.to_string())),
                    _ => (x.as_str(), None),
                };
                let key = match k {
                    "--queue" => "queue",
                    "--dir" => "dir",
                    "--snaplen" => "snaplen",
                    "--ring-size" => "ring_size",
                    o if o.starts_with("--") => {
                        return Err(format!(
                            "unknown option {o:?}\nusage: ferrovia-ctl {CAPTURE_USAGE}"
                        ));
                    }
                    _ => {
                        pos.push(x.clone());
                        continue;
                    }
                };
                let v = inline
                    .or_else(|| it.next().cloned())
                    .ok_or_else(|| format!("{k} needs a value"))?;
                let val = if key == "dir" {
                    Value::from(v)
                } else {
                    Value::from(
                        v.parse::<u64>()
                            .map_err(|_| format!("{k} {v}: {v:?} is not a number"))?,
                    )
                };
                m.insert(key.into(), val);
            }
            let [port, file] = pos.as_slice() else {
                return Err(format!("usage: ferrovia-ctl {CAPTURE_USAGE}"));
            };
            // The switch opens the file from its own directory: send an absolute path.
            let file = std::path::Path::new(file);
            let file = if file.is_absolute() {
                file.to_path_buf()
            } else {
                std::env::current_dir().unwrap_or_default().join(file)
            };
            m.insert("port".into(), port.clone().into());
            m.insert("file".into(), file.display().to_string().into());
            Ok(("capture-start".into(), Value::Object(m)))
        }
        Some("stop") => match a.get(1) {
            None => Ok(("capture-stop".into(), Value::Null)),
            Some(id) => {
                let id: u32 = id.parse().map_err(|_| {
                    format!("capture stop {id}: the id is a number (capture list shows them)")
                })?;
                Ok(("capture-stop".into(), json!({ "id": id })))
            }
        },
        Some("list") => Ok(("capture-list".into(), Value::Null)),
        _ => Err(format!("usage: ferrovia-ctl {CAPTURE_USAGE}")),
    }
}

fn capture_line(c: &Value) -> String {
    format!(
        "capture {}: port {} ({}) queue {} {} snaplen {} -> {} [{}] captured {} drops {} written {} ({} bytes)\n",
        u(c, "id"),
        u(c, "port"),
        s(c, "name"),
        match &c["queue"] {
            Value::String(q) => q.clone(),
            q => q.to_string(),
        },
        s(c, "dir"),
        u(c, "snaplen"),
        s(c, "file"),
        s(c, "state"),
        u(c, "captured"),
        u(c, "drops"),
        u(c, "written"),
        u(c, "bytes")
    )
}

fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}
fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn vlan_text(v: &Value) -> String {
    if let Some(t) = v.get("tag").and_then(Value::as_u64) {
        return format!("access {t}");
    }
    let trunks = v.get("trunks").and_then(Value::as_array);
    let native = v.get("native").and_then(Value::as_u64);
    let mut out = match trunks {
        Some(t) if !t.is_empty() => format!(
            "trunk {}",
            t.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        _ => "trunk all".into(),
    };
    if let Some(n) = native {
        out += &format!(" native {n}");
    }
    out
}

fn drops_text(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect::<Vec<_>>()
            .join(" "),
        _ => "-".into(),
    }
}

/// Human-readable output for the show commands; None prints JSON.
fn pretty(method: &str, v: &Value) -> Option<String> {
    let mut o = String::new();
    match method {
        "show-ports" => {
            o += &format!(
                "{:<12} {:<8} {:>4} {:<5} {:<20} {:>12} {:>12} {:>10}  {}\n",
                "PORT", "BRIDGE", "NO", "LINK", "VLAN", "RX", "TX", "FLOODED", "DROPS"
            );
            for p in v.as_array()? {
                let st = &p["stats"];
                o += &format!(
                    "{:<12} {:<8} {:>4} {:<5} {:<20} {:>12} {:>12} {:>10}  {}\n",
                    s(p, "name"),
                    s(p, "bridge"),
                    u(p, "slot"),
                    if p["link_up"].as_bool() == Some(true) {
                        "up"
                    } else {
                        "down"
                    },
                    vlan_text(&p["vlan"]),
                    u(st, "rx_packets"),
                    u(st, "tx_packets"),
                    u(st, "rx_flooded"),
                    drops_text(&st["drops"]),
                );
            }
        }
        "show-stats" => {
            o += &pretty("show-bridges", &v["bridges"])?;
            o += &pretty("show-ports", &v["ports"])?;
        }
        "show-bridges" => {
            for b in v.as_array()? {
                let c = &b["counters"];
                o += &format!(
                    "{}: ports {}; fdb {}/{} (aging {} s); learned {} moved {} aged {} fdb_full {}; rx {} tx {} drops {}\n",
                    s(b, "name"),
                    b["ports"]
                        .as_array()
                        .map(|a| a
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(","))
                        .unwrap_or_default(),
                    u(b, "fdb_entries"),
                    u(b, "fdb_limit"),
                    u(b, "aging_secs"),
                    u(c, "learned"),
                    u(c, "moved"),
                    u(c, "aged"),
                    u(c, "fdb_full"),
                    u(&b["stats"], "rx_packets"),
                    u(&b["stats"], "tx_packets"),
                    drops_text(&b["stats"]["drops"]),
                );
            }
        }
        "show-fdb" => {
            o += &format!("{:<12} {:>5} {:<18} {:>5}\n", "PORT", "VLAN", "MAC", "AGE");
            for e in v.as_array()? {
                o += &format!(
                    "{:<12} {:>5} {:<18} {:>5}\n",
                    s(e, "port"),
                    u(e, "vlan"),
                    s(e, "mac"),
                    u(e, "age")
                );
            }
        }
        "show-pmd-stats" => {
            for p in v.as_array()? {
                o += &format!(
                    "pmd {} (cpu {}): packets {} busy {:.1}% cycles/pkt {:.0} emc hits {} misses {} learn_queue_full {} mailbox_tx {}\n",
                    u(p, "id"),
                    p["cpu"].as_u64().map_or("-".into(), |c| c.to_string()),
                    u(p, "packets"),
                    p["busy_pct"].as_f64().unwrap_or(0.0),
                    p["cycles_per_packet"].as_f64().unwrap_or(0.0),
                    u(p, "emc_hits"),
                    u(p, "emc_misses"),
                    u(p, "learn_queue_full"),
                    u(p, "mailbox_tx"),
                );
                for q in p["rxqs"].as_array()? {
                    o += &format!(
                        "  rxq {} queue {}: {:.1}% of busy cycles\n",
                        q[0].as_str().unwrap_or(""),
                        q[1],
                        q[2].as_f64().unwrap_or(0.0)
                    );
                }
            }
        }
        "dump-flows" => {
            for p in v.as_array()? {
                for f in p["flows"].as_array()? {
                    o += &format!(
                        "pmd={} in_port={} vlan={} src={} dst={} hits={} actions={}\n",
                        u(p, "pmd"),
                        u(f, "in_port"),
                        u(f, "vlan"),
                        s(f, "src"),
                        s(f, "dst"),
                        u(f, "hits"),
                        s(f, "action")
                    );
                }
            }
        }
        "show-routes" => {
            for i in v["interfaces"].as_array()? {
                o += &format!(
                    "interface {:<10} {:<18} on {} vlan {} mac {}\n",
                    s(i, "name"),
                    s(i, "address"),
                    s(i, "bridge"),
                    u(i, "vlan"),
                    s(i, "mac")
                );
            }
            for r in v["routes"].as_array()? {
                o += &format!(
                    "route {:<18} via {:<15} dev {}\n",
                    s(r, "prefix"),
                    s(r, "via"),
                    r["interface"].as_str().unwrap_or("-")
                );
            }
            if let Some(n) = v["neighbours"].as_array() {
                for e in n {
                    o += &format!("neighbour {:<15} {}\n", s(e, "ip"), s(e, "mac"));
                }
            }
        }
        "capture-start" => o += &capture_line(v),
        "capture-stop" | "capture-list" => {
            let l = v.as_array()?;
            if l.is_empty() {
                o += "no capture running\n";
            }
            l.iter().for_each(|c| o += &capture_line(c));
        }
        _ => return None,
    }
    Some(o)
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut socket: Option<PathBuf> = None;
    let mut raw = false;
    while let Some(a) = args.first() {
        match a.as_str() {
            "--socket" | "-s" => {
                if args.len() < 2 {
                    eprintln!("ferrovia-ctl: --socket needs a path");
                    return ExitCode::from(2);
                }
                socket = Some(args[1].clone().into());
                args.drain(..2);
            }
            "--json" => {
                raw = true;
                args.remove(0);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => break,
        }
    }
    let Some(cmd) = args.first().cloned() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let (method, params) = match request(&cmd, &args[1..]) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("ferrovia-ctl: {e}");
            return ExitCode::from(2);
        }
    };
    let socket = socket.unwrap_or_else(|| ferrovia_vswitch::config::run_dir().join("switch.sock"));
    let mut client = match RpcClient::connect(&socket) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferrovia-ctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match client.call(&method, params) {
        Ok(Ok(v)) => {
            if v.is_null() {
                return ExitCode::SUCCESS;
            }
            match (raw, pretty(&method, &v)) {
                (false, Some(t)) => print!("{t}"),
                _ => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
            }
            ExitCode::SUCCESS
        }
        Ok(Err((_, msg))) => {
            eprintln!("ferrovia-ctl: {msg}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("ferrovia-ctl: {e}");
            ExitCode::FAILURE
        }
    }
}
