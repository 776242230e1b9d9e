//! The transport layer: how a port reaches its peer.
//!
//! * [`backend`]: the vhost-user device side. Messages are parsed and validated by rust-vmm's
//!   `vhost` crate; our [`backend::BackendHandler`] turns them into vring configurations and
//!   hands them to polling threads through the [`quiesce`](ferrovia_virtqueue::quiesce)
//!   handshake.
//! * [`frontend`]: the vhost-user driver side used by virtio-user: feature negotiation, memory
//!   table and vring set-up over `vhost::vhost_user::Frontend`.
//! * [`socket`]: listening, connecting and reconnecting on unix sockets, with errors that say
//!   what to do.

pub mod backend;
pub mod frontend;
pub mod socket;
