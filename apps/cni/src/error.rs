//! CNI errors: the spec's error codes and the JSON error object a plugin prints on failure.

use serde_json::{Value, json};

/// The error codes of the CNI spec (0–99 are reserved for it) and ours (100 and up).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Code {
    /// 1: the runtime asked for a CNI version the plugin does not speak.
    IncompatibleVersion = 1,
    /// 2: a field of the network configuration is not supported.
    UnsupportedField = 2,
    /// 3: the container (its network namespace or attachment) is unknown.
    UnknownContainer = 3,
    /// 4: a required environment variable is missing or invalid.
    InvalidEnv = 4,
    /// 5: an I/O failure (a file that cannot be written, a plugin that cannot be run).
    Io = 5,
    /// 6: the configuration or a delegated plugin's output could not be decoded.
    Decode = 6,
    /// 7: the network configuration is invalid.
    InvalidConfig = 7,
    /// 11: try again later (the switch is busy or restarting).
    TryAgain = 11,
    /// 50: the plugin is not available (STATUS: the switch cannot be reached).
    NotAvailable = 50,
    /// 100: the switch refused a request.
    Switch = 100,
    /// 101: the attachment exists already (a repeated ADD).
    AlreadyAttached = 101,
    /// 102: CHECK found the attachment not as ADD left it.
    CheckFailed = 102,
}

/// A plugin failure: a code, a one-line message that names the thing and the fix, and
/// optional details.
#[derive(Debug, Clone)]
pub struct CniError {
    /// The error code.
    pub code: Code,
    /// What went wrong and what to do about it.
    pub msg: String,
    /// More context (the underlying error), possibly empty.
    pub details: String,
}

impl CniError {
    /// An error with no details.
    pub fn new(code: Code, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Adds details.
    pub fn details(mut self, d: impl std::fmt::Display) -> CniError {
        self.details = d.to_string();
        self
    }

    /// The error object of the spec, as printed on stdout.
    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut v = json!({
            "cniVersion": cni_version,
            "code": self.code as u32,
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            v["details"] = Value::from(self.details.clone());
        }
        v
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.msg)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

/// A plugin result.
pub type CniResult<T> = Result<T, CniError>;

/// An I/O error on `what`, with a hint.
pub fn io_error(what: impl std::fmt::Display, e: &std::io::Error, hint: &str) -> CniError {
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    };
    CniError::new(Code::Io, format!("{what}: {why} ({hint})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form() {
        let e = CniError::new(Code::InvalidConfig, "bad").details("x");
        let v = e.to_json("1.0.0");
        assert_eq!(v["code"], 7);
        assert_eq!(v["msg"], "bad");
        assert_eq!(v["details"], "x");
        assert_eq!(v["cniVersion"], "1.0.0");
        assert!(
            CniError::new(Code::Io, "m")
                .to_json("1.0.0")
                .get("details")
                .is_none()
        );
    }
}
