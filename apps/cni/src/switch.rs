//! The plugin's side of ferrovia-switch's control socket: add, remove and look up a pod's
//! vhost-user port.

use std::path::Path;

use ferrovia_vswitch::rpc::RpcClient;
use serde_json::{Value, json};

use crate::conf::VhostMode;
use crate::error::{CniError, CniResult, Code};

/// A connection to the switch.
pub struct SwitchConn {
    client: RpcClient,
    path: String,
}

impl SwitchConn {
    /// Connects; `code` is what a failure reports (TryAgain for ADD, NotAvailable for
    /// STATUS).
    pub fn connect(path: &Path, code: Code) -> CniResult<SwitchConn> {
        let client = RpcClient::connect(path).map_err(|e| {
            CniError::new(
                code,
                format!(
                    "cannot reach ferrovia-switch at {} (is it running? set \"controlSocket\" in the network configuration to its control_socket)",
                    path.display()
                ),
            )
            .details(e)
        })?;
        Ok(SwitchConn {
            client,
            path: path.display().to_string(),
        })
    }

    fn call(&mut self, method: &str, params: Value) -> CniResult<Result<Value, String>> {
        match self.client.call(method, params) {
            Ok(Ok(v)) => Ok(Ok(v)),
            Ok(Err((_, msg))) => Ok(Err(msg)),
            Err(e) => Err(CniError::new(
                Code::TryAgain,
                format!(
                    "lost the connection to ferrovia-switch at {} during {method}",
                    self.path
                ),
            )
            .details(e)),
        }
    }

    /// Adds the pod's port.
    pub fn add_port(
        &mut self,
        name: &str,
        bridge: &str,
        socket: &Path,
        mode: VhostMode,
        queues: u16,
        vlan: Option<u16>,
    ) -> CniResult<()> {
        let mut devargs = format!(
            "net_vhost{},iface={}",
            instance_number(name),
            socket.display()
        );
        if mode == VhostMode::Client {
            devargs.push_str(",client=1");
        }
        if queues > 1 {
            devargs.push_str(&format!(",queues={queues}"));
        }
        let mut p = json!({"name": name, "bridge": bridge, "devargs": devargs});
        if let Some(v) = vlan {
            p["tag"] = Value::from(v);
        }
        self.call("add-port", p)?.map(|_| ()).map_err(|m| {
            CniError::new(
                Code::Switch,
                format!("ferrovia-switch refused port {name} on bridge {bridge}: {m}"),
            )
        })
    }

    /// Removes the port; `Ok(false)` when the switch has no such port.
    pub fn del_port(&mut self, name: &str) -> CniResult<bool> {
        match self.call("del-port", json!({"name": name}))? {
            Ok(_) => Ok(true),
            Err(m) if m.starts_with("no port named") => Ok(false),
            Err(m) => Err(CniError::new(
                Code::Switch,
                format!("ferrovia-switch could not remove port {name}: {m}"),
            )),
        }
    }

    /// The port's entry in `show-ports`, if it exists.
    pub fn port(&mut self, name: &str) -> CniResult<Option<Value>> {
        let ports = self
            .call("show-ports", Value::Null)?
            .map_err(|m| CniError::new(Code::Switch, format!("show-ports failed: {m}")))?;
        Ok(ports
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == name).cloned()))
    }

    /// Whether the bridge exists.
    pub fn has_bridge(&mut self, bridge: &str) -> CniResult<bool> {
        let br = self
            .call("show-bridges", Value::Null)?
            .map_err(|m| CniError::new(Code::Switch, format!("show-bridges failed: {m}")))?;
        Ok(br
            .as_array()
            .is_some_and(|a| a.iter().any(|b| b["name"] == bridge)))
    }
}

/// A stable instance number for the port's devargs name (`net_vhostN`), from its name.
fn instance_number(name: &str) -> u32 {
    // FNV-1a: stable across builds and runs (the standard hasher is not).
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % 1_000_000
}
