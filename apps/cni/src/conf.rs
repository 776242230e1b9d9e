//! The network configuration the runtime passes on stdin, with our plugin's keys.
//!
//! ```json
//! {
//!   "cniVersion": "1.0.0", "name": "userspace-net", "type": "ferrovia-cni",
//!   "bridge": "br0",
//!   "controlSocket": "/run/ferrovia/switch.sock",
//!   "sharedDir": "/var/lib/ferrovia/sockets",
//!   "vhostMode": "server",
//!   "queues": 1, "vlan": 10,
//!   "ipam": { "type": "host-local", "subnet": "10.56.0.0/24" }
//! }
//! ```

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{CniError, CniResult, Code};

/// CNI versions this plugin speaks. Results and errors carry the request's version.
pub const SUPPORTED_VERSIONS: &[&str] = &["1.0.0", "1.1.0"];

/// Where the Network Plumbing WG device-info files go (spec 1.1, section 4.2).
pub const DEFAULT_DEVINFO_DIR: &str = "/var/run/k8s.cni.cncf.io/devinfo/cni";
/// Where the vhost-user sockets go unless `sharedDir` says otherwise.
pub const DEFAULT_SHARED_DIR: &str = "/var/lib/ferrovia/sockets";
/// Where the plugin keeps one record per attachment (for DEL, CHECK and GC).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cni/ferrovia";

/// Which side of the vhost-user socket the switch takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VhostMode {
    /// The switch creates and listens on the socket; the pod's virtio-user connects
    /// (device-info mode `client`). The default.
    Server,
    /// The pod's application listens (virtio-user `server=1`); the switch connects and
    /// reconnects (device-info mode `server`).
    Client,
}

impl VhostMode {
    /// The mode the pod's application uses, as device-info writes it.
    pub fn pod_mode(self) -> &'static str {
        match self {
            VhostMode::Server => "client",
            VhostMode::Client => "server",
        }
    }
}

/// The runtime's `runtimeConfig` keys we use (capabilities).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RuntimeConfig {
    /// Device-info capability: the file to write (spec 1.1 section 5.1).
    #[serde(rename = "CNIDeviceInfoFile", default)]
    pub device_info_file: Option<PathBuf>,
}

/// One network attachment named by GC's `cni.dev/valid-attachments`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ValidAttachment {
    /// The container ID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The interface name.
    pub ifname: String,
}

/// The network configuration (one plugin of a list, as the runtime passes it).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    /// The CNI version of the request.
    pub cni_version: String,
    /// The network's name.
    pub name: String,
    /// The plugin type (must be `ferrovia-cni`).
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// The switch bridge the ports join (default `br0`).
    #[serde(default = "default_bridge")]
    pub bridge: String,
    /// The switch's JSON-RPC control socket (default: the switch's default path for root,
    /// `/run/ferrovia/switch.sock`).
    #[serde(default)]
    pub control_socket: Option<PathBuf>,
    /// The host directory shared with pods, where the sockets go.
    #[serde(default)]
    pub shared_dir: Option<PathBuf>,
    /// Which side listens (default `server`: the switch).
    #[serde(default = "default_mode")]
    pub vhost_mode: VhostMode,
    /// Queue pairs per port (1..=16, default 1).
    #[serde(default = "default_queues")]
    pub queues: u16,
    /// Access VLAN of the port (1..=4094); untagged when absent.
    #[serde(default)]
    pub vlan: Option<u16>,
    /// Device-info directory (default [`DEFAULT_DEVINFO_DIR`]) when the runtime gives no
    /// `CNIDeviceInfoFile`.
    #[serde(default)]
    pub device_info_dir: Option<PathBuf>,
    /// State directory (default [`DEFAULT_STATE_DIR`]).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// The delegated IPAM plugin's configuration (`type` names the plugin).
    #[serde(default)]
    pub ipam: Option<Value>,
    /// DNS settings passed through to the result.
    #[serde(default)]
    pub dns: Option<Value>,
    /// Runtime capabilities.
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    /// A previous plugin's result (in a chain).
    #[serde(default)]
    pub prev_result: Option<Value>,
    /// GC only: the attachments to keep.
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<ValidAttachment>>,
}

fn default_bridge() -> String {
    "br0".into()
}
fn default_mode() -> VhostMode {
    VhostMode::Server
}
fn default_queues() -> u16 {
    1
}

impl NetConf {
    /// Parses and checks the configuration.
    pub fn parse(bytes: &[u8]) -> CniResult<NetConf> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(CniError::new(
                Code::Decode,
                "no network configuration on stdin (the runtime passes the network's JSON there)",
            ));
        }
        let c: NetConf = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(Code::Decode, "cannot decode the network configuration").details(e)
        })?;
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> CniResult<()> {
        if !SUPPORTED_VERSIONS.contains(&self.cni_version.as_str()) {
            return Err(CniError::new(
                Code::IncompatibleVersion,
                format!(
                    "cniVersion {:?} is not supported (ferrovia-cni speaks {})",
                    self.cni_version,
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        let bad = |m: String| Err(CniError::new(Code::InvalidConfig, m));
        if self.name.is_empty() {
            return bad("the network configuration has an empty \"name\"".into());
        }
        if self.plugin_type != "ferrovia-cni" {
            return bad(format!(
                "\"type\" is {:?}; this plugin is ferrovia-cni",
                self.plugin_type
            ));
        }
        if self.bridge.is_empty() || self.bridge.len() > 64 {
            return bad(format!(
                "\"bridge\" {:?} must be 1 to 64 characters",
                self.bridge
            ));
        }
        if !(1..=16).contains(&self.queues) {
            return bad(format!(
                "\"queues\" {} is out of range (use 1..16)",
                self.queues
            ));
        }
        if let Some(v) = self.vlan
            && !(1..=4094).contains(&v)
        {
            return bad(format!("\"vlan\" {v} is out of range (use 1..4094)"));
        }
        if let Some(ipam) = &self.ipam {
            match ipam.get("type").and_then(Value::as_str) {
                Some(t) if !t.is_empty() && !t.contains('/') => {}
                _ => {
                    return bad(
                        "\"ipam\" needs a \"type\" naming an IPAM plugin in CNI_PATH (host-local, static, dhcp, ...)"
                            .into(),
                    );
                }
            }
        }
        for (key, p) in [
            ("sharedDir", &self.shared_dir),
            ("controlSocket", &self.control_socket),
            ("deviceInfoDir", &self.device_info_dir),
            ("stateDir", &self.state_dir),
        ] {
            if let Some(p) = p
                && !p.is_absolute()
            {
                return bad(format!(
                    "\"{key}\" {:?} must be an absolute path",
                    p.display()
                ));
            }
        }
        Ok(())
    }

    /// The shared socket directory.
    pub fn shared_dir(&self) -> PathBuf {
        self.shared_dir
            .clone()
            .unwrap_or_else(|| DEFAULT_SHARED_DIR.into())
    }

    /// The switch's control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.control_socket
            .clone()
            .unwrap_or_else(|| "/run/ferrovia/switch.sock".into())
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| DEFAULT_STATE_DIR.into())
    }

    /// The device-info directory.
    pub fn device_info_dir(&self) -> PathBuf {
        self.device_info_dir
            .clone()
            .unwrap_or_else(|| DEFAULT_DEVINFO_DIR.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> CniResult<NetConf> {
        NetConf::parse(s.as_bytes())
    }

    #[test]
    fn defaults_and_keys() {
        let c = parse(r#"{"cniVersion":"1.0.0","name":"n","type":"ferrovia-cni"}"#).unwrap();
        assert_eq!(c.bridge, "br0");
        assert_eq!(c.vhost_mode, VhostMode::Server);
        assert_eq!(c.vhost_mode.pod_mode(), "client");
        assert_eq!(c.queues, 1);
        let c = parse(
            r#"{"cniVersion":"1.1.0","name":"n","type":"ferrovia-cni","vhostMode":"client",
                "runtimeConfig":{"CNIDeviceInfoFile":"/x/y.json"},
                "cni.dev/valid-attachments":[{"containerID":"a","ifname":"net1"}]}"#,
        )
        .unwrap();
        assert_eq!(c.vhost_mode.pod_mode(), "server");
        assert_eq!(
            c.runtime_config.device_info_file.unwrap(),
            PathBuf::from("/x/y.json")
        );
        assert_eq!(c.valid_attachments.unwrap().len(), 1);
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse("").unwrap_err();
        assert_eq!(e.code, Code::Decode);
        let e = parse("{").unwrap_err();
        assert_eq!(e.code, Code::Decode);
        let e = parse(r#"{"cniVersion":"0.2.0","name":"n","type":"ferrovia-cni"}"#).unwrap_err();
        assert_eq!(e.code, Code::IncompatibleVersion);
        assert!(e.msg.contains("1.0.0"), "{e}");
        let e = parse(r#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#).unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig);
        let e = parse(r#"{"cniVersion":"1.0.0","name":"n","type":"ferrovia-cni","vlan":4095}"#)
            .unwrap_err();
        assert!(e.msg.contains("4095"), "{e}");
        let e = parse(r#"{"cniVersion":"1.0.0","name":"n","type":"ferrovia-cni","queues":0}"#)
            .unwrap_err();
        assert!(e.msg.contains("queues"), "{e}");
        let e = parse(r#"{"cniVersion":"1.0.0","name":"n","type":"ferrovia-cni","ipam":{}}"#)
            .unwrap_err();
        assert!(e.msg.contains("ipam"), "{e}");
        let e = parse(
            r#"{"cniVersion":"1.0.0","name":"n","type":"ferrovia-cni","sharedDir":"rel/dir"}"#,
        )
        .unwrap_err();
        assert!(e.msg.contains("absolute"), "{e}");
        let e = parse(r#"{"cniVersion":"1.0.0","name":"n","type":"ferrovia-cni","vhostMode":"x"}"#)
            .unwrap_err();
        assert_eq!(e.code, Code::Decode);
    }
}
