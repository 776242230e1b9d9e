//! The CNI commands: ADD, DEL, CHECK, VERSION, GC and STATUS.

use std::path::Path;

use serde_json::{Value, json};

use crate::conf::{NetConf, SUPPORTED_VERSIONS, VhostMode};
use crate::devinfo;
use crate::env::{CniEnv, Command, attachment_key};
use crate::error::{CniError, CniResult, Code, io_error};
use crate::ipam;
use crate::state::{Attachment, StateDir};
use crate::switch::SwitchConn;

/// Runs one invocation: `stdin` is the network configuration. Returns what to print on
/// stdout (nothing for DEL, GC and STATUS) or the error.
pub fn run(env: &CniEnv, stdin: &[u8]) -> Result<Option<Value>, (String, CniError)> {
    if env.command == Command::Version {
        return Ok(Some(version(stdin)));
    }
    let conf = NetConf::parse(stdin).map_err(|e| (request_version(stdin), e))?;
    let v = conf.cni_version.clone();
    let r = match env.command {
        Command::Add => add(env, &conf, stdin).map(Some),
        Command::Del => del(env, &conf, stdin).map(|()| None),
        Command::Check => check(env, &conf, stdin).map(|()| None),
        Command::Gc => gc(env, &conf).map(|()| None),
        Command::Status => status(&conf).map(|()| None),
        Command::Version => unreachable!("handled above"),
    };
    r.map_err(|e| (v, e))
}

/// The version a failed request asked for, for its error object.
fn request_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.len() - 1].to_string())
}

fn version(stdin: &[u8]) -> Value {
    json!({
        "cniVersion": request_version(stdin),
        "supportedVersions": SUPPORTED_VERSIONS,
    })
}

fn ipam_type(conf: &NetConf) -> Option<&str> {
    conf.ipam.as_ref()?.get("type")?.as_str()
}

fn add(env: &CniEnv, conf: &NetConf, raw: &[u8]) -> CniResult<Value> {
    let netns = env.netns.as_deref().expect("checked for ADD");
    if !netns.exists() {
        return Err(CniError::new(
            Code::UnknownContainer,
            format!(
                "network namespace {} does not exist (the runtime creates the pod's namespace before ADD)",
                netns.display()
            ),
        ));
    }
    let state = StateDir::lock(&conf.state_dir())?;
    let key = env.key();
    if let Some(a) = state.get(&key)? {
        return Err(CniError::new(
            Code::AlreadyAttached,
            format!(
                "container {} interface {} is attached already (port {} on bridge {}, socket {}); DEL it first, or CHECK it",
                env.container_id,
                env.ifname,
                a.port,
                a.bridge,
                a.socket.display()
            ),
        ));
    }
    let shared = conf.shared_dir();
    std::fs::create_dir_all(&shared).map_err(|e| {
        io_error(
            format!("cannot create shared socket directory {}", shared.display()),
            &e,
            "set \"sharedDir\" to a directory the plugin can write",
        )
    })?;
    let socket = shared.join(&key);
    if socket.to_string_lossy().len() >= 108 {
        return Err(CniError::new(
            Code::InvalidConfig,
            format!(
                "socket path {} is longer than a unix socket allows (107 bytes); use a shorter \"sharedDir\"",
                socket.display()
            ),
        ));
    }
    let mut sw = SwitchConn::connect(&conf.control_socket(), Code::TryAgain)?;
    if !sw.has_bridge(&conf.bridge)? {
        return Err(CniError::new(
            Code::InvalidConfig,
            format!(
                "ferrovia-switch has no bridge {:?} (create it: ferrovia-ctl add-br {}, or fix \"bridge\")",
                conf.bridge, conf.bridge
            ),
        ));
    }
    // Address first: if IPAM fails nothing was created.
    let ipam_result = match ipam_type(conf) {
        Some(t) => Some(ipam::exec(env, t, "ADD", raw)?),
        None => None,
    };
    let release_ipam = || {
        if let Some(t) = ipam_type(conf)
            && let Err(e) = ipam::exec(env, t, "DEL", raw)
        {
            eprintln!("ferrovia-cni: releasing the address after a failed ADD: {e}");
        }
    };
    if let Err(e) = sw.add_port(
        &key,
        &conf.bridge,
        &socket,
        conf.vhost_mode,
        conf.queues,
        conf.vlan,
    ) {
        release_ipam();
        return Err(e);
    }
    let dev_file = devinfo::file_for(
        conf.runtime_config.device_info_file.as_deref(),
        &conf.device_info_dir(),
        &conf.name,
        &env.container_id,
        &env.ifname,
    );
    let undo_port = |sw: &mut SwitchConn| {
        if let Err(e) = sw.del_port(&key) {
            eprintln!("ferrovia-cni: removing port {key} after a failed ADD: {e}");
        }
        release_ipam();
    };
    if let Err(e) = devinfo::write(&dev_file, &devinfo::vhost_user(conf.vhost_mode, &socket)) {
        undo_port(&mut sw);
        return Err(e);
    }
    let result = build_result(conf, env, netns, &socket, ipam_result.as_ref());
    let rec = Attachment {
        network: conf.name.clone(),
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        port: key.clone(),
        bridge: conf.bridge.clone(),
        socket,
        mode: conf.vhost_mode,
        control_socket: conf.control_socket(),
        device_info: dev_file.clone(),
        ipam: conf.ipam.clone(),
        conf: serde_json::from_slice(raw).unwrap_or(Value::Null),
        result: result.clone(),
    };
    if let Err(e) = state.put(&key, &rec) {
        let _ = devinfo::remove(&dev_file);
        undo_port(&mut sw);
        return Err(e);
    }
    Ok(result)
}

/// The ADD result: our interface, and the addresses from IPAM (or a previous plugin).
fn build_result(
    conf: &NetConf,
    env: &CniEnv,
    netns: &Path,
    socket: &Path,
    ipam: Option<&Value>,
) -> Value {
    let mut iface = json!({
        "name": env.ifname,
        "sandbox": netns.display().to_string(),
    });
    if conf.cni_version != "1.0.0" {
        // CNI 1.1 added socketPath for interfaces that are sockets.
        iface["socketPath"] = Value::from(socket.display().to_string());
    }
    let src = ipam.or(conf.prev_result.as_ref());
    let mut ips: Vec<Value> = src
        .and_then(|r| r.get("ips"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for ip in &mut ips {
        ip["interface"] = Value::from(0);
    }
    let mut r = json!({
        "cniVersion": conf.cni_version,
        "interfaces": [iface],
        "ips": ips,
    });
    if let Some(routes) = src.and_then(|r| r.get("routes")) {
        r["routes"] = routes.clone();
    }
    let dns = conf
        .dns
        .clone()
        .or_else(|| src.and_then(|r| r.get("dns")).cloned());
    if let Some(d) = dns {
        r["dns"] = d;
    }
    r
}

/// Removes what ADD created for `rec`; every step tolerates its object being gone already.
fn teardown(env: &CniEnv, rec: &Attachment) -> CniResult<()> {
    match SwitchConn::connect(&rec.control_socket, Code::TryAgain) {
        Ok(mut sw) => {
            if !sw.del_port(&rec.port)? {
                eprintln!(
                    "ferrovia-cni: port {} was not on the switch (removed already)",
                    rec.port
                );
            }
        }
        // A switch that is not running has no port to remove; a restarted one only has
        // the ports of its configuration file.
        Err(e) => eprintln!("ferrovia-cni: {e}; nothing to remove on the switch"),
    }
    if rec.mode == VhostMode::Server {
        match std::fs::remove_file(&rec.socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io_error(
                    format!("cannot remove socket {}", rec.socket.display()),
                    &e,
                    "remove it by hand",
                ));
            }
        }
    }
    devinfo::remove(&rec.device_info)?;
    if let Some(t) = rec
        .ipam
        .as_ref()
        .and_then(|i| i.get("type"))
        .and_then(Value::as_str)
    {
        let conf = serde_json::to_vec(&rec.conf).expect("stored conf serialises");
        let env = CniEnv {
            command: Command::Del,
            container_id: rec.container_id.clone(),
            ifname: rec.ifname.clone(),
            ..env.clone()
        };
        ipam::exec(&env, t, "DEL", &conf)?;
    }
    Ok(())
}

fn del(env: &CniEnv, conf: &NetConf, raw: &[u8]) -> CniResult<()> {
    let state = StateDir::lock(&conf.state_dir())?;
    let key = env.key();
    match state.get(&key)? {
        Some(rec) => {
            teardown(env, &rec)?;
            state.remove(&key)
        }
        None => {
            // Nothing of ours exists; still release an address IPAM may hold (DEL must
            // clean up whatever it can, and may be repeated).
            let dev = devinfo::file_for(
                conf.runtime_config.device_info_file.as_deref(),
                &conf.device_info_dir(),
                &conf.name,
                &env.container_id,
                &env.ifname,
            );
            devinfo::remove(&dev)?;
            if let Some(t) = ipam_type(conf) {
                ipam::exec(env, t, "DEL", raw)?;
            }
            Ok(())
        }
    }
}

fn check(env: &CniEnv, conf: &NetConf, raw: &[u8]) -> CniResult<()> {
    let state = StateDir::lock(&conf.state_dir())?;
    let key = env.key();
    let rec = state.get(&key)?.ok_or_else(|| {
        CniError::new(
            Code::UnknownContainer,
            format!(
                "container {} interface {} is not attached (no ADD, or DEL ran)",
                env.container_id, env.ifname
            ),
        )
    })?;
    let fail = |m: String| Err(CniError::new(Code::CheckFailed, m));
    let mut sw = SwitchConn::connect(&rec.control_socket, Code::TryAgain)?;
    match sw.port(&rec.port)? {
        None => {
            return fail(format!(
                "port {} is missing from ferrovia-switch (was the switch restarted? DEL and ADD the pod again)",
                rec.port
            ));
        }
        Some(p) if p["bridge"] != rec.bridge.as_str() => {
            return fail(format!(
                "port {} is on bridge {} instead of {}",
                rec.port, p["bridge"], rec.bridge
            ));
        }
        Some(_) => {}
    }
    if rec.mode == VhostMode::Server && !rec.socket.exists() {
        return fail(format!(
            "socket {} is missing (the switch should have created it)",
            rec.socket.display()
        ));
    }
    if !rec.device_info.exists() {
        return fail(format!(
            "device-info file {} is missing",
            rec.device_info.display()
        ));
    }
    if let Some(prev) = &conf.prev_result {
        let want = rec.result.get("ips");
        if prev.get("ips") != want && want.is_some_and(|w| !w.as_array().is_some_and(Vec::is_empty))
        {
            return fail(format!(
                "prevResult's addresses {} differ from those ADD returned {}",
                prev.get("ips").unwrap_or(&Value::Null),
                want.unwrap_or(&Value::Null)
            ));
        }
    }
    if let Some(t) = ipam_type(conf) {
        ipam::exec(env, t, "CHECK", raw)?;
    }
    Ok(())
}

fn gc(env: &CniEnv, conf: &NetConf) -> CniResult<()> {
    if conf.cni_version == "1.0.0" {
        return Err(CniError::new(
            Code::IncompatibleVersion,
            "GC is a CNI 1.1 command; the configuration says cniVersion 1.0.0",
        ));
    }
    let keep: Vec<String> = conf
        .valid_attachments
        .iter()
        .flatten()
        .map(|a| attachment_key(&a.container_id, &a.ifname))
        .collect();
    let state = StateDir::lock(&conf.state_dir())?;
    let mut first_err = None;
    for (key, rec) in state.all()? {
        if rec.network != conf.name || keep.contains(&key) {
            continue;
        }
        match teardown(env, &rec).and_then(|()| state.remove(&key)) {
            Ok(()) => eprintln!("ferrovia-cni: GC removed stale attachment {key}"),
            Err(e) => {
                eprintln!("ferrovia-cni: GC could not remove {key}: {e}");
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

fn status(conf: &NetConf) -> CniResult<()> {
    let mut sw = SwitchConn::connect(&conf.control_socket(), Code::NotAvailable)?;
    if !sw.has_bridge(&conf.bridge)? {
        return Err(CniError::new(
            Code::NotAvailable,
            format!(
                "ferrovia-switch is running but has no bridge {:?} (ferrovia-ctl add-br {})",
                conf.bridge, conf.bridge
            ),
        ));
    }
    Ok(())
}
