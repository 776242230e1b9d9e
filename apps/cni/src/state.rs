//! One record per attachment in the state directory, so that DEL, CHECK and GC know what
//! ADD created even when the runtime's configuration has changed since; and a lock that
//! serialises concurrent invocations (a runtime may attach several pods at once).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conf::VhostMode;
use crate::error::{CniError, CniResult, io_error};

/// What ADD created for one attachment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Attachment {
    /// The network's name.
    pub network: String,
    /// The container ID.
    pub container_id: String,
    /// The interface name.
    pub ifname: String,
    /// The switch port's name (the attachment key).
    pub port: String,
    /// The bridge.
    pub bridge: String,
    /// The vhost-user socket.
    pub socket: PathBuf,
    /// Which side listens.
    pub mode: VhostMode,
    /// The switch's control socket.
    pub control_socket: PathBuf,
    /// The device-info file written.
    pub device_info: PathBuf,
    /// The delegated IPAM configuration (to release the address on DEL/GC).
    pub ipam: Option<Value>,
    /// The full network configuration ADD ran with (IPAM DEL needs it).
    pub conf: Value,
    /// The result ADD returned.
    pub result: Value,
}

/// The state directory.
pub struct StateDir {
    dir: PathBuf,
    _lock: File,
}

impl StateDir {
    /// Opens (creating) the directory and takes its lock (blocks while another invocation
    /// holds it).
    pub fn lock(dir: &Path) -> CniResult<StateDir> {
        std::fs::create_dir_all(dir).map_err(|e| {
            io_error(
                format!("cannot create state directory {}", dir.display()),
                &e,
                "ferrovia-cni runs as root under the runtime; or set \"stateDir\"",
            )
        })?;
        let lock_path = dir.join(".lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| {
                io_error(
                    format!("cannot open lock file {}", lock_path.display()),
                    &e,
                    "check the state directory's permissions",
                )
            })?;
        // SAFETY: flock on a descriptor we own; it is released when the file closes.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if r != 0 {
            return Err(io_error(
                format!("cannot lock {}", lock_path.display()),
                &std::io::Error::last_os_error(),
                "another ferrovia-cni may be stuck holding it",
            ));
        }
        Ok(StateDir {
            dir: dir.to_path_buf(),
            _lock: f,
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The record of `key`, if any.
    pub fn get(&self, key: &str) -> CniResult<Option<Attachment>> {
        let p = self.path(key);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                CniError::new(
                    crate::error::Code::Decode,
                    format!(
                        "state file {} is corrupt (remove it and the switch port by hand)",
                        p.display()
                    ),
                )
                .details(e)
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(
                format!("cannot read {}", p.display()),
                &e,
                "check the state directory",
            )),
        }
    }

    /// Stores a record (written to a temporary file and renamed, so a crash leaves the old
    /// record or the new one).
    pub fn put(&self, key: &str, a: &Attachment) -> CniResult<()> {
        let p = self.path(key);
        let tmp = self.dir.join(format!(".{key}.tmp"));
        let body = serde_json::to_vec_pretty(a).expect("a record serialises");
        std::fs::write(&tmp, body)
            .and_then(|()| std::fs::rename(&tmp, &p))
            .map_err(|e| {
                io_error(
                    format!("cannot write {}", p.display()),
                    &e,
                    "check the state directory",
                )
            })
    }

    /// Removes a record (no error if absent).
    pub fn remove(&self, key: &str) -> CniResult<()> {
        match std::fs::remove_file(self.path(key)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(
                format!("cannot remove {}", self.path(key).display()),
                &e,
                "check the state directory",
            )),
        }
    }

    /// Every record (unreadable ones are skipped and named on stderr).
    pub fn all(&self) -> CniResult<Vec<(String, Attachment)>> {
        let rd = std::fs::read_dir(&self.dir).map_err(|e| {
            io_error(
                format!("cannot list {}", self.dir.display()),
                &e,
                "check the state directory",
            )
        })?;
        let mut out = Vec::new();
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            let Some(key) = name.strip_suffix(".json") else {
                continue;
            };
            if key.starts_with('.') {
                continue;
            }
            match self.get(key) {
                Ok(Some(a)) => out.push((key.to_string(), a)),
                Ok(None) => {}
                Err(e) => eprintln!("ferrovia-cni: skipping {name}: {e}"),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}
