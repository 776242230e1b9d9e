//! The transport layer: how a port reaches its peer.
//!
//! * [`backend`]: the vhost-user device side. Messages are parsed and validated by rust-vmm's
//!   `vhost` crate; our [`backend::BackendHandler`] turns them into vring configurations and
//!   hands them to polling threads through the [`quiesce`](ferrovia_virtqueue::quiesce)
//!   handshake.
//! * [`frontend`]: the vhost-user driver side used by virtio-user: feature negotiation, memory
//!   table and vring set-up, as a state machine that never blocks.
//! * [`reactor`]: the process's one control thread, an epoll loop serving every socket of
//!   every port, with a deadline per source.
//! * [`session`]: a vhost-user backend session driven by the reactor: it hands rust-vmm's
//!   parser only complete messages, so a slow or stalled peer never blocks the loop.
//! * [`vhost_kernel`]: the vhost-kernel exception path: `/dev/vhost-net` and tap fds, one of
//!   each per queue pair, set up with ioctls (the only kernel-facing `unsafe` is in its `sys`
//!   module).
//! * [`socket`]: listening, connecting and reconnecting on unix sockets, with errors that say
//!   what to do.

pub mod backend;
pub mod frontend;
pub mod reactor;
pub mod session;
pub mod socket;
pub mod vhost_kernel;
