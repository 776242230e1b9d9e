//! Network Plumbing WG device-info files (spec 1.1): how a pod learns where its vhost-user
//! socket is and which side it plays.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::conf::VhostMode;
use crate::error::{CniResult, io_error};

/// The device-info spec version written.
pub const VERSION: &str = "1.1.0";

/// The device-info document for a vhost-user socket.
pub fn vhost_user(mode: VhostMode, socket: &Path) -> Value {
    json!({
        "type": "vhost-user",
        "version": VERSION,
        "vhost-user": {
            "mode": mode.pod_mode(),
            "path": socket.display().to_string(),
        }
    })
}

/// The file for an attachment: the runtime's `CNIDeviceInfoFile` when it gave one, else
/// `<dir>/<network>-<containerID>-<ifname>-device-info.json` (unique per attachment).
pub fn file_for(
    given: Option<&Path>,
    dir: &Path,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> PathBuf {
    match given {
        Some(p) => p.to_path_buf(),
        None => dir.join(format!(
            "{network}-{container_id}-{ifname}-device-info.json"
        )),
    }
}

/// Writes the file, creating its directory.
pub fn write(path: &Path, doc: &Value) -> CniResult<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| {
            io_error(
                format!("cannot create device-info directory {}", d.display()),
                &e,
                "run as root or set \"deviceInfoDir\"",
            )
        })?;
    }
    let body = serde_json::to_vec_pretty(doc).expect("device-info serialises");
    std::fs::write(path, body).map_err(|e| {
        io_error(
            format!("cannot write device-info file {}", path.display()),
            &e,
            "check the directory's permissions",
        )
    })
}

/// Removes the file (no error if absent).
pub fn remove(path: &Path) -> CniResult<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(
            format!("cannot remove device-info file {}", path.display()),
            &e,
            "remove it by hand",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_and_name() {
        let d = vhost_user(VhostMode::Server, Path::new("/s/abc-net1"));
        assert_eq!(d["type"], "vhost-user");
        assert_eq!(d["version"], "1.1.0");
        assert_eq!(d["vhost-user"]["mode"], "client");
        assert_eq!(d["vhost-user"]["path"], "/s/abc-net1");
        let f = file_for(None, Path::new("/d"), "net", "cid", "net1");
        assert_eq!(f, PathBuf::from("/d/net-cid-net1-device-info.json"));
        let g = file_for(Some(Path::new("/x.json")), Path::new("/d"), "n", "c", "i");
        assert_eq!(g, PathBuf::from("/x.json"));
    }
}
