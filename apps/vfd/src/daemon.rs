//! The VF table: which configuration file owns which VF, and the methods `iplex` calls.
//!
//! A VF's configuration is the file `<config dir>/<name>.json` (VFd's form, read by
//! [`VfConfig::parse`]); `<name>` is how `iplex` names it. A VF no file configures runs the
//! default policy (its default MAC only, anti-spoofing on) with receive and transmit disabled.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use ferrovia_eswitch::veb::{CAUSE_NAMES, Eswitch, EswitchConfig, VfSpec};
use ferrovia_eswitch::vfconfig::{Limits, VfConfig};
use ferrovia_vswitch::rpc::RpcError;
use serde_json::{Map, Value, json};

/// Most VFs a PF has here (the eswitch's limit).
pub const MAX_VFS: u32 = 64;

/// Line rate assumed when the uplink does not report a speed, Mbit/s.
const DEFAULT_LINE_RATE: f64 = 10_000.0;

/// The control methods, with their parameters.
pub const METHODS: &[(&str, &str)] = &[
    ("add", "name"),
    ("update", "name"),
    ("delete", "name"),
    ("show", "[vfid]"),
    ("pfs", ""),
    ("status", ""),
    ("reload", ""),
    ("verbose", "[level]"),
    ("dump", ""),
    ("ping", ""),
];

/// The log levels `verbose` takes, by number (AT&T VFd's `iplex verbose` takes a number too).
pub const LOG_LEVELS: [log::LevelFilter; 6] = [
    log::LevelFilter::Off,
    log::LevelFilter::Error,
    log::LevelFilter::Warn,
    log::LevelFilter::Info,
    log::LevelFilter::Debug,
    log::LevelFilter::Trace,
];

/// How the daemon runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The uplink port's devargs.
    pub uplink: String,
    /// VFs on the PF.
    pub num_vfs: u32,
    /// Where the VF sockets go (`vf<N>.sock`).
    pub sock_dir: PathBuf,
    /// VFd's directory of per-VF JSON files (it may not exist: then no VF is configured).
    pub config_dir: PathBuf,
    /// The control socket (reported by `status`).
    pub ctl: PathBuf,
    /// The telemetry socket, when served (reported by `status`).
    pub telemetry: Option<PathBuf>,
}

/// The running daemon: the eswitch and its VF table.
pub struct Vfd {
    sw: Eswitch,
    opts: Options,
    limits: Limits,
    /// The file name that configured each VF, by vfid.
    owners: Mutex<Vec<Option<String>>>,
}

fn refused(m: impl Into<String>) -> RpcError {
    RpcError {
        code: -32000,
        message: m.into(),
    }
}

impl Vfd {
    /// Opens the uplink and the VF ports (all disabled, default policy) and starts the switch.
    /// The configuration directory is not read yet: see [`Vfd::load_config_dir`].
    pub fn start(opts: Options) -> Result<Vfd, String> {
        if !(1..=MAX_VFS).contains(&opts.num_vfs) {
            return Err(format!(
                "--num-vfs {}: a PF has 1 to {MAX_VFS} VFs here",
                opts.num_vfs
            ));
        }
        std::fs::create_dir_all(&opts.sock_dir).map_err(|e| {
            format!(
                "cannot create the socket directory {}: {e} (choose another with --sock-dir)",
                opts.sock_dir.display()
            )
        })?;
        // The first parse only needs the VF count; the line rate follows the uplink.
        let first = Limits {
            max_vfs: opts.num_vfs,
            line_rate_mbps: DEFAULT_LINE_RATE,
        };
        let vfs = (0..opts.num_vfs)
            .map(|i| {
                Ok(VfSpec {
                    devargs: format!(
                        "net_vhost{},iface={},ctrl-vq=1",
                        i + 1,
                        sock_path(&opts.sock_dir, i).display()
                    ),
                    config: default_config(i, &first)?,
                    enabled: false,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let sw = Eswitch::start(&EswitchConfig {
            uplink: opts.uplink.clone(),
            vfs,
            tx_loopback: true,
            mbufs: 8192,
        })
        .map_err(|e| format!("cannot start the eswitch: {e}"))?;
        let speed = sw.port_report(0).map_or(0, |r| r.link.speed_mbps);
        let limits = Limits {
            max_vfs: opts.num_vfs,
            line_rate_mbps: if speed > 0 {
                f64::from(speed)
            } else {
                DEFAULT_LINE_RATE
            },
        };
        Ok(Vfd {
            sw,
            owners: Mutex::new(vec![None; opts.num_vfs as usize]),
            opts,
            limits,
        })
    }

    /// The switch.
    pub fn eswitch(&self) -> &Eswitch {
        &self.sw
    }

    /// How it runs.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// VF `vfid`'s vhost-user socket.
    pub fn vf_socket(&self, vfid: u32) -> PathBuf {
        sock_path(&self.opts.sock_dir, vfid)
    }

    fn owners(&self) -> MutexGuard<'_, Vec<Option<String>>> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds every `*.json` of the configuration directory, in name order. Returns one entry
    /// per file: the VF it configured, or why it was skipped (naming the file and field).
    /// A missing directory configures nothing.
    pub fn load_config_dir(&self) -> Vec<(String, Result<u32, String>)> {
        let dir = &self.opts.config_dir;
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                return vec![(
                    dir.display().to_string(),
                    Err(format!("cannot read {}: {e}", dir.display())),
                )];
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(str::to_string)
            })
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let r = self.add(&n);
                (n, r)
            })
            .collect()
    }

    /// Reads and checks `<config dir>/<name>.json`.
    fn read(&self, name: &str) -> Result<VfConfig, String> {
        let path = self.opts.config_dir.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "unknown name {name:?}: there is no {} (write the VF's JSON there first)",
                    path.display()
                )
            } else {
                format!("cannot read {}: {e}", path.display())
            }
        })?;
        VfConfig::parse(&text, &path.display().to_string(), &self.limits)
    }

    /// Applies `cfg` to its VF and enables it.
    fn apply(&self, cfg: VfConfig) -> Result<u32, String> {
        let vfid = cfg.vfid;
        self.sw.set_policy(cfg)?;
        self.sw.set_enabled(vfid, true, true)?;
        Ok(vfid)
    }

    /// Disables a VF and gives it the default policy back.
    fn reset(&self, vfid: u32) -> Result<(), String> {
        self.sw.set_enabled(vfid, false, false)?;
        self.sw.set_policy(default_config(vfid, &self.limits)?)
    }

    /// `iplex add <name>`: reads `<config dir>/<name>.json`, applies it to its VF and enables
    /// the VF. Returns the vfid.
    pub fn add(&self, name: &str) -> Result<u32, String> {
        let name = check_name(name, &self.opts.config_dir)?;
        let mut owners = self.owners();
        if let Some(v) = owners.iter().position(|o| o.as_deref() == Some(name)) {
            return Err(format!(
                "{name} is already added (VF {v}): iplex update {name} re-reads its file, iplex delete {name} removes it"
            ));
        }
        let cfg = self.read(name)?;
        let vfid = cfg.vfid;
        if let Some(other) = &owners[vfid as usize] {
            return Err(format!(
                "VF {vfid} is already configured by {other} ({}): iplex delete {other} first, or give {name} another vfid",
                self.opts.config_dir.join(format!("{other}.json")).display()
            ));
        }
        self.apply(cfg)?;
        owners[vfid as usize] = Some(name.to_string());
        Ok(vfid)
    }

    /// `iplex update <name>`: re-reads the file of a VF added before and applies it. If the
    /// file now names another vfid, the old VF is disabled and reset. On any error the VF
    /// keeps the policy it had.
    pub fn update(&self, name: &str) -> Result<u32, String> {
        let name = check_name(name, &self.opts.config_dir)?;
        let mut owners = self.owners();
        let Some(old) = owners.iter().position(|o| o.as_deref() == Some(name)) else {
            return Err(format!(
                "{name} is not added, so there is nothing to update (iplex add {name} adds it)"
            ));
        };
        let cfg = self.read(name)?;
        let vfid = cfg.vfid as usize;
        if vfid != old {
            if let Some(other) = &owners[vfid] {
                return Err(format!(
                    "{name} now names VF {vfid}, which {other} configures: iplex delete {other} first, or keep vfid {old}"
                ));
            }
            self.reset(old as u32)?;
            owners[old] = None;
        }
        self.apply(cfg)?;
        owners[vfid] = Some(name.to_string());
        Ok(vfid as u32)
    }

    /// `iplex delete <name>`: disables the VF a file configured and resets its policy.
    pub fn delete(&self, name: &str) -> Result<u32, String> {
        let name = check_name(name, &self.opts.config_dir)?;
        let mut owners = self.owners();
        let Some(v) = owners.iter().position(|o| o.as_deref() == Some(name)) else {
            let added: Vec<&str> = owners.iter().flatten().map(String::as_str).collect();
            return Err(format!(
                "{name} was never added, so there is nothing to delete (added: {}; iplex show all lists them)",
                if added.is_empty() {
                    "none".to_string()
                } else {
                    added.join(", ")
                }
            ));
        };
        self.reset(v as u32)?;
        owners[v] = None;
        Ok(v as u32)
    }

    /// One VF's state: name, enable, socket, link, policy and counters (drops by cause).
    /// `None` when the PF has no VF `vfid`.
    pub fn vf_json(&self, vfid: u32) -> Option<Value> {
        let cfg = self.sw.config(vfid)?;
        let (rx_on, tx_on) = self.sw.enabled(vfid)?;
        let c = self.sw.counters(vfid)?;
        let owner = self.owners()[vfid as usize].clone();
        let link_up = self
            .sw
            .port_report(1 + vfid as usize)
            .is_some_and(|r| r.link.up);
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let causes = |v: &[std::sync::atomic::AtomicU64]| -> Map<String, Value> {
            CAUSE_NAMES
                .iter()
                .zip(v)
                .map(|(n, a)| (n.to_string(), json!(load(a))))
                .collect()
        };
        Some(json!({
            "vfid": vfid,
            "name": owner,
            "file": owner.as_ref().map(|n| self.opts.config_dir.join(format!("{n}.json")).display().to_string()),
            "enabled": { "rx": rx_on, "tx": tx_on },
            "socket": self.vf_socket(vfid).display().to_string(),
            "link_up": link_up,
            "policy": serde_json::to_value(&cfg).unwrap_or(Value::Null),
            "counters": {
                "tx_packets": load(&c.tx_packets),
                "tx_bytes": load(&c.tx_bytes),
                "rx_packets": load(&c.rx_packets),
                "rx_bytes": load(&c.rx_bytes),
                "tx_dropped": causes(&c.tx_dropped),
                "rx_dropped": causes(&c.rx_dropped),
                "requests": {
                    "total": load(&c.requests),
                    "allowed": load(&c.req_allowed),
                    "denied": load(&c.req_denied),
                    "rate_limited": load(&c.req_rate_limited),
                    "malformed": load(&c.req_malformed),
                },
            },
        }))
    }

    /// `iplex show all` (`vfid` `None`) or `iplex show <vfid>`: a list of [`Vfd::vf_json`].
    pub fn show(&self, vfid: Option<u32>) -> Result<Value, String> {
        let n = self.sw.num_vfs();
        match vfid {
            Some(v) if v >= n => Err(format!(
                "no VF {v}: this PF has VFs 0..{} (iplex show all lists them)",
                n - 1
            )),
            Some(v) => Ok(json!([self.vf_json(v)])),
            None => Ok(Value::Array(
                (0..n).filter_map(|v| self.vf_json(v)).collect(),
            )),
        }
    }

    /// `iplex status`: the daemon, its uplink and which VFs files configure.
    pub fn status(&self) -> Value {
        let (tx, rx, dropped) = self.sw.uplink_counts();
        let up = self.sw.port_report(0).is_some_and(|r| r.link.up);
        let configured: Vec<Value> = self
            .owners()
            .iter()
            .enumerate()
            .filter_map(|(v, o)| o.as_ref().map(|n| json!({"vfid": v, "name": n})))
            .collect();
        json!({
            "daemon": "running",
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "uplink": {
                "devargs": self.opts.uplink,
                "link_up": up,
                "tx_packets": tx,
                "rx_packets": rx,
                "dropped_queue_full": dropped,
            },
            "num_vfs": self.sw.num_vfs(),
            "configured": configured,
            "config_dir": self.opts.config_dir.display().to_string(),
            "sock_dir": self.opts.sock_dir.display().to_string(),
            "ctl": self.opts.ctl.display().to_string(),
            "telemetry": self.opts.telemetry.as_ref().map(|p| p.display().to_string()),
        })
    }

    /// `iplex reload`, and what SIGHUP does: brings the VFs in line with the configuration
    /// directory. A file not added yet is added; an added file still there is re-read and
    /// applied (a bad one keeps its VF's policy); an added file that is gone is deleted (its VF
    /// disabled and reset). Returns one entry per name: what was done, or why it failed.
    pub fn reload(&self) -> Vec<(String, Result<String, String>)> {
        let dir = &self.opts.config_dir;
        let mut on_disk: Vec<String> = match std::fs::read_dir(dir) {
            Ok(e) => e
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".json"))
                        .map(str::to_string)
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return vec![(
                    dir.display().to_string(),
                    Err(format!(
                        "cannot read {}: {e} (nothing was changed)",
                        dir.display()
                    )),
                )];
            }
        };
        on_disk.sort();
        let added: Vec<String> = self.owners().iter().flatten().cloned().collect();
        let mut out = Vec::new();
        // Deletions first: a file renamed to another name may take over the VF it held.
        for name in added.iter().filter(|n| !on_disk.contains(n)) {
            let r = self
                .delete(name)
                .map(|v| format!("file removed: deleted, VF {v} disabled and reset"));
            out.push((name.clone(), r));
        }
        for name in &on_disk {
            let r = if added.contains(name) {
                self.update(name).map(|v| format!("updated VF {v}"))
            } else {
                self.add(name).map(|v| format!("added to VF {v}"))
            };
            out.push((name.clone(), r));
        }
        out
    }

    /// `iplex show pfs`: the PF (the uplink port and the switch that stands for the NIC).
    pub fn pfs(&self) -> Value {
        let (tx, rx, dropped) = self.sw.uplink_counts();
        let report = self.sw.port_report(0);
        let configured = self.owners().iter().flatten().count();
        json!([{
            "pf": 0,
            "devargs": self.opts.uplink,
            "driver": report.as_ref().map(|r| r.info.driver.to_string()),
            "mac": report.as_ref().map(|r| r.info.mac.to_string()),
            "link_up": report.as_ref().is_some_and(|r| r.link.up),
            "speed_mbps": report.as_ref().map_or(0, |r| r.link.speed_mbps),
            "line_rate_mbps": self.limits.line_rate_mbps,
            "num_vfs": self.sw.num_vfs(),
            "configured_vfs": configured,
            "tx_packets": tx,
            "rx_packets": rx,
            "dropped_queue_full": dropped,
        }])
    }

    /// `iplex verbose [level]`: sets the daemon's log level (0 off, 1 error, 2 warn, 3 info,
    /// 4 debug, 5 trace) and returns the old and new levels; without a level, reports it.
    pub fn verbose(&self, level: Option<u64>) -> Result<Value, String> {
        let old = log::max_level();
        let number = |l: log::LevelFilter| LOG_LEVELS.iter().position(|x| *x == l).unwrap_or(0);
        if let Some(n) = level {
            let Some(&l) = LOG_LEVELS.get(n as usize) else {
                return Err(format!(
                    "log level {n} is out of range: 0 off, 1 error, 2 warn, 3 info, 4 debug, 5 trace"
                ));
            };
            log::set_max_level(l);
            log::warn!(
                "log level {} ({old}) -> {n} ({l}) by iplex verbose",
                number(old)
            );
        }
        let now = log::max_level();
        Ok(json!({
            "old": number(old),
            "level": number(now),
            "name": now.to_string().to_lowercase(),
        }))
    }

    /// `iplex dump`: the whole state (daemon, PF, every VF) written to the log at info level
    /// (whatever the log level is, short of off) and returned.
    pub fn dump(&self) -> Value {
        let v = json!({
            "status": self.status(),
            "pfs": self.pfs(),
            "vfs": self.show(None).unwrap_or(Value::Null),
        });
        let old = log::max_level();
        if old < log::LevelFilter::Info && old != log::LevelFilter::Off {
            log::set_max_level(log::LevelFilter::Info);
        }
        log::info!("dump: {v}");
        log::set_max_level(old);
        v
    }

    /// Runs one control method (the control socket's handler).
    pub fn call(&self, method: &str, p: Value) -> Result<Value, RpcError> {
        let bad = |m: String| RpcError {
            code: -32602,
            message: format!("invalid params for {method}: {m}"),
        };
        let name = || -> Result<String, RpcError> {
            p.get("name")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| bad("expected {\"name\": \"<file name without .json>\"}".into()))
        };
        let done = |vfid: u32| json!({ "vfid": vfid });
        match method {
            "add" => self.add(&name()?).map(done).map_err(refused),
            "update" => self.update(&name()?).map(done).map_err(refused),
            "delete" => self.delete(&name()?).map(done).map_err(refused),
            "show" => {
                let vfid = match p.get("vfid") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(
                        v.as_u64()
                            .and_then(|v| u32::try_from(v).ok())
                            .ok_or_else(|| bad(format!("vfid {v} is not a VF number")))?,
                    ),
                };
                self.show(vfid).map_err(refused)
            }
            "pfs" => Ok(self.pfs()),
            "status" => Ok(self.status()),
            "reload" => {
                let r: Vec<Value> = self
                    .reload()
                    .into_iter()
                    .map(|(name, r)| match r {
                        Ok(done) => json!({"name": name, "done": done}),
                        Err(e) => json!({"name": name, "error": e}),
                    })
                    .collect();
                Ok(Value::Array(r))
            }
            "verbose" => {
                let level = match p.get("level") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(
                        v.as_u64()
                            .ok_or_else(|| bad(format!("level {v} is not a number from 0 to 5")))?,
                    ),
                };
                self.verbose(level).map_err(refused)
            }
            "dump" => Ok(self.dump()),
            "ping" => Ok(json!("pong")),
            _ => Err(RpcError {
                code: -32601,
                message: format!(
                    "unknown method {method:?} (methods: {})",
                    METHODS.iter().map(|m| m.0).collect::<Vec<_>>().join(", ")
                ),
            }),
        }
    }
}

/// `DIR/vf<vfid>.sock`.
fn sock_path(dir: &std::path::Path, vfid: u32) -> PathBuf {
    dir.join(format!("vf{vfid}.sock"))
}

/// The policy of a VF no file configures: its default MAC, anti-spoofing on.
fn default_config(vfid: u32, limits: &Limits) -> Result<VfConfig, String> {
    VfConfig::parse(
        &format!(r#"{{"name":"vf{vfid}","vfid":{vfid}}}"#),
        "the default VF policy",
        limits,
    )
}

/// A configuration name: a file name in the configuration directory, without `.json` (which
/// is accepted and removed).
fn check_name<'a>(name: &'a str, dir: &std::path::Path) -> Result<&'a str, String> {
    let n = name.strip_suffix(".json").unwrap_or(name);
    let ok = !n.is_empty()
        && !n.starts_with('.')
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@' | '+'));
    if ok {
        Ok(n)
    } else {
        Err(format!(
            "invalid name {name:?}: give the name of a file in {} without .json (letters, digits, '_', '-', '.', not starting with '.')",
            dir.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_file_names() {
        let d = std::path::Path::new("/etc/vfd/vf.d");
        assert_eq!(check_name("web", d), Ok("web"));
        assert_eq!(check_name("web.json", d), Ok("web"));
        assert_eq!(check_name("vnf-1_a.b", d), Ok("vnf-1_a.b"));
        for bad in ["", ".json", "../x", "a/b", ".hidden", "a b"] {
            let e = check_name(bad, d).unwrap_err();
            assert!(
                e.contains("invalid name") && e.contains("/etc/vfd/vf.d"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_default_policy_parses_for_every_vf() {
        let l = Limits {
            max_vfs: MAX_VFS,
            line_rate_mbps: DEFAULT_LINE_RATE,
        };
        for v in 0..MAX_VFS {
            let c = default_config(v, &l).unwrap();
            assert_eq!(c.vfid, v);
            assert!(c.macs.is_empty() && c.mac_anti_spoof);
        }
    }
}
