//! The vSwitch/vRouter behind `ferrovia-switch`: bridges with MAC learning and VLANs, a
//! router with static routes, PMD threads that poll the ports, and the control plane that
//! changes all of it at run time.
//!
//! Layers, each in its own module:
//!
//! - [`frame`]: Ethernet/802.1Q parsing and tag edits;
//! - [`vlan`]: access and trunk ports;
//! - [`fdb`]: the MAC table, one writer and lock-free readers;
//! - [`learn`]: learning requests from the PMD threads;
//! - [`emc`]: the per-thread exact-match flow cache;
//! - [`pipeline`]: the switching decision for each frame;
//! - [`router`]: router interfaces, routes, ARP and ICMP echo;
//! - [`pmd`]: the polling threads;
//! - [`control`]: the [`Switch`] that owns it all;
//! - [`config`]: the TOML file;
//! - [`rpc`]: the JSON-RPC control socket.

pub mod config;
pub mod control;
pub mod counters;
pub mod emc;
pub mod error;
pub mod fdb;
pub mod frame;
pub mod learn;
pub mod pipeline;
pub mod pmd;
pub mod router;
pub mod rpc;
pub mod snapshot;
pub mod vlan;

pub use config::SwitchConfig;
pub use control::Switch;
pub use error::{SwitchError, SwitchResult};
