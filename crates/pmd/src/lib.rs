//! Port drivers, the [`registry`] that holds them, and [`open`], which picks one from a devargs
//! string.
//!
//! | devargs prefix | driver |
//! |---|---|
//! | `net_virtio_user`, `virtio_user` | [`virtio_user`]: virtio-net driver over vhost-user |
//! | `net_vhost`, `eth_vhost` | [`vhost`]: vhost-user backend (device side) |
//! | `net_ring`, `eth_ring` | [`ring`]: in-memory loopback |
//! | `net_null`, `eth_null` | [`null`]: packet source and sink |
//! | `net_af_packet`, `eth_af_packet` | [`af_packet`]: a kernel interface through mmap'd AF_PACKET rings |
//! | `net_tap`, `eth_tap` | [`tap`]: a kernel tap interface |
//! | `net_virtio_pci`, `virtio_pci` (testpmd: `-a ADDR`) | [`virtio_pci`]: a virtio-net PCI device driven from userspace (uio_pci_generic, hugepages, root) |
//!
//! Each driver declares its names and devargs keys in a `DRIVER` static; [`registry::usage`]
//! describes them all, and applications add their own with [`registry::register`].

pub mod af_packet;
mod netif;
pub mod null;
mod offload;
pub mod registry;
pub mod ring;
mod shared;
mod sink;
pub mod tap;
pub mod vhost;
pub mod virtio_pci;
pub mod virtio_user;

use ferrovia_ethdev::{Port, PortConf, Result};

/// Opens a port from a devargs string such as `net_vhost0,iface=/tmp/sock0` (see
/// [`registry::open`]).
pub fn open(devargs: &str, conf: &PortConf) -> Result<Box<dyn Port>> {
    registry::open(devargs, conf)
}

/// Makes the process-wide resources that the first vhost or virtio-user port would otherwise
/// make: the control loop (thread `ferrovia-ctl`, an epoll fd and an eventfd) and the first
/// ring-arena chunk (one memfd). They live as long as the process; call this before taking a
/// baseline of threads or file descriptors.
pub fn start_control_plane() -> std::io::Result<()> {
    ferrovia_transport::reactor::Reactor::global();
    drop(ferrovia_memory::arena::alloc(4096)?);
    Ok(())
}
