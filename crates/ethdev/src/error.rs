//! Errors of the ethdev layer and its drivers.

/// What went wrong, with enough context to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A devargs string could not be understood.
    #[error("{0}")]
    Devargs(String),
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
