//! The CNI environment variables (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`,
//! `CNI_IFNAME`, `CNI_ARGS`, `CNI_PATH`) and the checks each command needs.

use std::path::PathBuf;

use crate::error::{CniError, CniResult, Code};

/// A CNI command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Attach a container to the network.
    Add,
    /// Detach it (idempotent).
    Del,
    /// Check the attachment is as ADD left it.
    Check,
    /// Report the supported versions.
    Version,
    /// Remove attachments not in `cni.dev/valid-attachments` (CNI 1.1).
    Gc,
    /// Is the plugin ready to serve ADDs (CNI 1.1)?
    Status,
}

impl Command {
    /// Parses `CNI_COMMAND`.
    pub fn parse(s: &str) -> CniResult<Command> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            _ => {
                return Err(CniError::new(
                    Code::InvalidEnv,
                    format!(
                        "CNI_COMMAND {s:?} is not a CNI command (use ADD, DEL, CHECK, VERSION, GC or STATUS)"
                    ),
                ));
            }
        })
    }
}

/// The environment of one invocation.
#[derive(Clone, Debug)]
pub struct CniEnv {
    /// The command.
    pub command: Command,
    /// `CNI_CONTAINERID` (ADD, DEL, CHECK).
    pub container_id: String,
    /// `CNI_NETNS` (ADD, CHECK; optional on DEL).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME` (ADD, DEL, CHECK).
    pub ifname: String,
    /// `CNI_ARGS`, split into pairs.
    pub args: Vec<(String, String)>,
    /// `CNI_PATH`, split.
    pub path: Vec<PathBuf>,
}

impl CniEnv {
    /// Reads and checks the environment through `get` (the process environment in the
    /// binary, a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> CniResult<CniEnv> {
        let cmd = get("CNI_COMMAND").ok_or_else(|| {
            CniError::new(
                Code::InvalidEnv,
                "CNI_COMMAND is not set (ferrovia-cni is run by a container runtime, or by hand with CNI_COMMAND=VERSION)",
            )
        })?;
        let command = Command::parse(&cmd)?;
        let needs_attachment = matches!(command, Command::Add | Command::Del | Command::Check);
        let container_id = get("CNI_CONTAINERID").unwrap_or_default();
        let ifname = get("CNI_IFNAME").unwrap_or_default();
        let netns = get("CNI_NETNS")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        if needs_attachment {
            check_container_id(&container_id)?;
            check_ifname(&ifname)?;
            if command != Command::Del && netns.is_none() {
                return Err(CniError::new(
                    Code::InvalidEnv,
                    format!(
                        "CNI_NETNS is not set (the pod's network namespace path is required for {cmd})"
                    ),
                ));
            }
        }
        let args = parse_args(&get("CNI_ARGS").unwrap_or_default())?;
        let path = get("CNI_PATH")
            .unwrap_or_default()
            .split(':')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
        Ok(CniEnv {
            command,
            container_id,
            netns,
            ifname,
            args,
            path,
        })
    }

    /// The attachment's key: `<containerID[:12]>-<ifname>`, the socket's and the switch
    /// port's name (userspace CNI's naming).
    pub fn key(&self) -> String {
        attachment_key(&self.container_id, &self.ifname)
    }
}

/// `<containerID[:12]>-<ifname>`.
pub fn attachment_key(container_id: &str, ifname: &str) -> String {
    let short: String = container_id.chars().take(12).collect();
    format!("{short}-{ifname}")
}

fn check_container_id(id: &str) -> CniResult<()> {
    if id.is_empty() {
        return Err(CniError::new(
            Code::InvalidEnv,
            "CNI_CONTAINERID is not set (the runtime names the container there)",
        ));
    }
    let ok = id.len() <= 256
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(CniError::new(
            Code::InvalidEnv,
            format!(
                "CNI_CONTAINERID {id:?} is invalid (letters, digits, '_', '.', '-', at most 256)"
            ),
        ));
    }
    Ok(())
}

fn check_ifname(name: &str) -> CniResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.contains(['/', ':'])
        && !name.chars().any(char::is_whitespace);
    if !ok {
        return Err(CniError::new(
            Code::InvalidEnv,
            format!(
                "CNI_IFNAME {name:?} is invalid (1 to 15 characters, no '/', ':' or spaces, as a Linux interface name)"
            ),
        ));
    }
    Ok(())
}

fn parse_args(s: &str) -> CniResult<Vec<(String, String)>> {
    s.split(';')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| {
                    CniError::new(
                        Code::InvalidEnv,
                        format!(
                            "CNI_ARGS item {p:?} is not KEY=VALUE (items are separated by ';')"
                        ),
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> CniResult<CniEnv> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CniEnv::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn add_needs_everything() {
        let e = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "0123456789abcdef"),
            ("CNI_NETNS", "/var/run/netns/p"),
            ("CNI_IFNAME", "net1"),
            ("CNI_ARGS", "K8S_POD_NAME=a;IgnoreUnknown=1"),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ])
        .unwrap();
        assert_eq!(e.key(), "0123456789ab-net1");
        assert_eq!(e.args.len(), 2);
        assert_eq!(e.path.len(), 2);
        for (missing, word) in [
            ("CNI_CONTAINERID", "CNI_CONTAINERID"),
            ("CNI_NETNS", "CNI_NETNS"),
            ("CNI_IFNAME", "CNI_IFNAME"),
        ] {
            let pairs: Vec<_> = [
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_NETNS", "/n"),
                ("CNI_IFNAME", "net1"),
            ]
            .into_iter()
            .filter(|(k, _)| *k != missing)
            .collect();
            let err = env(&pairs).unwrap_err();
            assert_eq!(err.code, Code::InvalidEnv);
            assert!(err.msg.contains(word), "{err}");
        }
    }

    #[test]
    fn bad_values() {
        assert!(env(&[]).unwrap_err().msg.contains("CNI_COMMAND"));
        assert!(
            env(&[("CNI_COMMAND", "FROB")])
                .unwrap_err()
                .msg
                .contains("FROB")
        );
        let base = [("CNI_COMMAND", "DEL"), ("CNI_IFNAME", "net1")];
        let bad_id = [base[0], base[1], ("CNI_CONTAINERID", "../../etc")];
        assert!(env(&bad_id).unwrap_err().msg.contains("CNI_CONTAINERID"));
        let bad_if = [base[0], ("CNI_IFNAME", "a/b"), ("CNI_CONTAINERID", "c")];
        assert!(env(&bad_if).unwrap_err().msg.contains("CNI_IFNAME"));
        let long_if = [
            base[0],
            ("CNI_IFNAME", "sixteen-chars-xx"),
            ("CNI_CONTAINERID", "c"),
        ];
        assert!(env(&long_if).is_err());
        let bad_args = [
            base[0],
            base[1],
            ("CNI_CONTAINERID", "c"),
            ("CNI_ARGS", "novalue"),
        ];
        assert!(env(&bad_args).unwrap_err().msg.contains("CNI_ARGS"));
        // DEL without a netns is fine (the pod may be gone).
        assert!(env(&[base[0], base[1], ("CNI_CONTAINERID", "c")]).is_ok());
        // VERSION needs nothing else.
        assert!(env(&[("CNI_COMMAND", "VERSION")]).is_ok());
    }
}
