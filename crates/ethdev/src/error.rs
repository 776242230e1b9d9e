//! Errors of the ethdev layer and its drivers.

/// What went wrong, with enough context to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A devargs string could not be understood.
    #[error("{0}")]
    Devargs(String),
    /// A devargs name selects no registered driver.
    #[error(
        "unknown virtual device '{name}': no driver named '{driver}' is registered; registered drivers: {registered}"
    )]
    UnknownDriver {
        /// The device name (`net_tap0`).
        name: String,
        /// The driver part of it (`net_tap`).
        driver: String,
        /// The registered driver names, comma-separated.
        registered: String,
    },
    /// A devargs key the driver does not declare.
    #[error("{device}: unknown devargs key '{key}' (valid keys: {valid})")]
    UnknownKey {
        /// The device name (`net_vhost0`).
        device: String,
        /// The key given.
        key: String,
        /// The driver's keys with their types and docs.
        valid: String,
    },
    /// A devargs value of the wrong type or out of range.
    #[error("{device}: bad value '{value}' for '{key}': expected {expected}")]
    BadValue {
        /// The device name (`net_vhost0`).
        device: String,
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// A configuration value is not acceptable.
    #[error("{0}")]
    Config(String),
    /// The operation is not valid in the port's current state.
    #[error("{0}")]
    State(String),
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The peer broke the protocol.
    #[error("{0}")]
    Protocol(String),
    /// The feature exists in DPDK but not (yet) here.
    #[error("{0}")]
    Unsupported(String),
}

impl Error {
    /// Wraps an I/O error with what we were doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
