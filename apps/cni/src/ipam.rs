//! Delegating to an IPAM plugin: find it in `CNI_PATH`, run it with the same environment
//! (but our command) and the network configuration on stdin, and read its result or error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Proc, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::env::CniEnv;
use crate::error::{CniError, CniResult, Code};

/// How long an IPAM plugin may take (host-local takes milliseconds; DHCP can take seconds).
const IPAM_TIMEOUT: Duration = Duration::from_secs(30);

/// Finds the IPAM plugin `name` in `CNI_PATH`.
pub fn find_plugin(env: &CniEnv, name: &str) -> CniResult<PathBuf> {
    for dir in &env.path {
        let p = dir.join(name);
        if is_executable(&p) {
            return Ok(p);
        }
    }
    let dirs: Vec<String> = env.path.iter().map(|p| p.display().to_string()).collect();
    Err(CniError::new(
        Code::InvalidConfig,
        format!(
            "IPAM plugin {name:?} not found in CNI_PATH [{}] (install it, e.g. Debian's containernetworking-plugins puts host-local in /usr/lib/cni, or fix \"ipam\".\"type\")",
            dirs.join(", ")
        ),
    ))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs the IPAM plugin for `command` ("ADD", "DEL", "CHECK") with `conf` on stdin.
/// Returns its result (ADD) or `Value::Null`.
pub fn exec(env: &CniEnv, ipam_type: &str, command: &str, conf: &[u8]) -> CniResult<Value> {
    let plugin = find_plugin(env, ipam_type)?;
    let path = std::env::join_paths(&env.path).unwrap_or_default();
    let mut child = Proc::new(&plugin)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &env.container_id)
        .env(
            "CNI_NETNS",
            env.netns.as_deref().unwrap_or_else(|| Path::new("")),
        )
        .env("CNI_IFNAME", &env.ifname)
        .env(
            "CNI_ARGS",
            env.args
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(";"),
        )
        .env("CNI_PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            CniError::new(
                Code::Io,
                format!("cannot run IPAM plugin {}", plugin.display()),
            )
            .details(e)
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that exits before reading all of stdin is judged by its exit status.
        let _ = stdin.write_all(conf);
    }
    let t0 = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if t0.elapsed() > IPAM_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CniError::new(
                    Code::TryAgain,
                    format!(
                        "IPAM plugin {} did not answer {command} within {} s",
                        plugin.display(),
                        IPAM_TIMEOUT.as_secs()
                    ),
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => {
                return Err(CniError::new(Code::Io, "cannot wait for the IPAM plugin").details(e));
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::new(Code::Io, "cannot read the IPAM plugin's output").details(e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // The spec's error object on stdout, else stderr.
        let msg = serde_json::from_str::<Value>(&stdout)
            .ok()
            .and_then(|v| {
                let m = v.get("msg")?.as_str()?.to_string();
                let d = v.get("details").and_then(Value::as_str).unwrap_or("");
                Some(if d.is_empty() { m } else { format!("{m}: {d}") })
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
        return Err(CniError::new(
            Code::Io,
            format!(
                "IPAM plugin {ipam_type} failed on {command}: {msg} (check the \"ipam\" section of the network configuration)"
            ),
        ));
    }
    if command != "ADD" || stdout.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&stdout).map_err(|e| {
        CniError::new(
            Code::Decode,
            format!("IPAM plugin {ipam_type} printed a result that is not JSON"),
        )
        .details(e)
    })
}
