//! `ferrovia-cni`: a Kubernetes CNI plugin (spec 1.0 and 1.1) that attaches each pod
//! interface to ferrovia-switch through a vhost-user socket in a directory shared with the
//! pod (userspace CNI's `sharedDir` model, sockets named `<containerID[:12]>-<ifname>`),
//! writes a Network Plumbing WG device-info file (spec 1.1, type `vhost-user`) so the pod
//! knows its socket, and delegates addresses to an IPAM plugin.
//!
//! See `docs/cni.md` for the configuration keys and an example.

pub mod conf;
pub mod devinfo;
pub mod env;
pub mod error;
pub mod ipam;
pub mod plugin;
pub mod state;
pub mod switch;
