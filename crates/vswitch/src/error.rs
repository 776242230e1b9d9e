//! The switch's control-plane errors.

/// Why a control request failed. Every message names the object and, where there is one, the
/// fix.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// No such bridge, port, interface or route.
    #[error("no {kind} named {name} ({hint})")]
    NotFound {
        /// bridge, port, ...
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// What exists, or how to list it.
        hint: String,
    },
    /// The name is taken.
    #[error("{kind} {name} already exists (delete it first, or choose another name)")]
    Exists {
        /// bridge, port, ...
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{0}")]
    Invalid(String),
    /// The port driver refused.
    #[error("port {name}: {source}")]
    Port {
        /// The port.
        name: String,
        /// The driver's error.
        source: ferrovia_ethdev::Error,
    },
    /// The switch cannot take more of something.
    #[error("{0}")]
    Full(String),
    /// A system resource failed (threads, memory, sockets).
    #[error("{0}")]
    System(String),
}

/// Control-plane result.
pub type SwitchResult<T> = Result<T, SwitchError>;
