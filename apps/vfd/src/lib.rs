//! `ferrovia-vfd`, the VF daemon of the software SR-IOV NIC (AT&T VFd's role), and `iplex`, its
//! CLI.
//!
//! The daemon runs a [`ferrovia_eswitch::veb::Eswitch`] with an uplink and N VF ports (one
//! vhost-user socket each, `DIR/vf<N>.sock`), reads a directory of per-VF JSON files in VFd's
//! keys, and answers `iplex` on a control socket (JSON-RPC 2.0, one request per line, served by
//! [`ferrovia_vswitch::rpc`]). Its telemetry v2 socket lists the uplink and the VFs as ethdev
//! ports ([`telemetry`]).
//!
//! - [`daemon`]: the VF table and the methods `add`, `update`, `delete`, `show`, `status`,
//!   `ping`.
//! - [`paths`]: where the sockets live by default.

pub mod daemon;
pub mod paths;
pub mod telemetry;

pub use daemon::{Options, Vfd};
