//! Port drivers, and [`open`], which picks one from a devargs string.
//!
//! | devargs prefix | driver |
//! |---|---|
//! | `net_virtio_user`, `virtio_user` | [`virtio_user`]: virtio-net driver over vhost-user |
//! | `net_vhost`, `eth_vhost` | [`vhost`]: vhost-user backend (device side) |
//! | `net_ring` | [`ring`]: in-memory loopback |
//! | `net_null` | [`null`]: packet source and sink |

pub mod null;
pub mod ring;
mod shared;
mod sink;
pub mod vhost;
pub mod virtio_user;

use ferrovia_ethdev::{Devargs, DriverKind, Error, Port, PortConf, Result};

/// Opens a port from a devargs string such as `net_vhost0,iface=/tmp/sock0`.
pub fn open(devargs: &str, conf: &PortConf) -> Result<Box<dyn Port>> {
    let d = Devargs::parse(devargs)?;
    match d.kind {
        DriverKind::Null => Ok(Box::new(null::NullPort::open(&d, conf)?)),
        DriverKind::Ring => Ok(Box::new(ring::RingPort::open(&d, conf)?)),
        DriverKind::VirtioUser => Ok(Box::new(virtio_user::VirtioUserPort::open(&d, conf)?)),
        DriverKind::Vhost => Ok(Box::new(vhost::VhostPort::open(&d, conf)?)),
        other => Err(Error::Unsupported(format!(
            "{}: driver {} is not available in this build",
            d.name,
            other.driver_name()
        ))),
    }
}
