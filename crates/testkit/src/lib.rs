//! Helpers shared by the integration tests of the workspace, so that each test file keeps
//! only what is particular to it:
//! - [`TempDir`]: a private directory for sockets and logs, removed on drop;
//! - [`Container`]: a "container", a virtio-user port in the test's process on a vhost-user
//!   socket, that sends and receives whole frames;
//! - [`Proc`] and [`wait_for_path`]: child processes that are interrupted when dropped;
//! - [`Interactive`]: a child driven through its stdin, its output collected;
//! - [`dpdk`]: whether DPDK's testpmd can run here, and its command line.

mod container;
pub mod dpdk;
mod interactive;
mod process;
mod tempdir;

pub use container::Container;
pub use interactive::Interactive;
pub use process::{Proc, wait_for_path};
pub use tempdir::TempDir;
