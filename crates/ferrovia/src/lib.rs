//! Ferrovia: a userspace virtual-networking data plane.
//!
//! Open a port from a DPDK-style devargs string, start it, take its queues and move bursts.
//! The polling thread owns one [`LcoreCaches`] (its mbuf caches, one per pool) and passes it to
//! every burst on every queue it polls:
//!
//! ```no_run
//! use ferrovia::{Burst, LcoreCaches, Mempool, MempoolConfig, PortConf};
//!
//! let pool = Mempool::new(MempoolConfig::default())?;
//! let mut port = ferrovia::open("net_virtio_user0,path=/tmp/sock0", &PortConf::new(0, pool))?;
//! port.start()?;
//! let (mut rx, mut tx) = (port.rx_queue(0)?, port.tx_queue(0)?);
//! let mut caches = LcoreCaches::new();
//! let mut burst = Burst::new();
//! loop {
//!     rx.rx_burst(&mut caches, &mut burst, 32);
//!     tx.tx_burst(&mut caches, &mut burst); // echo back
//!     caches.free_all(burst.drain(..)); // drop whatever did not fit
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The layers are separate crates, re-exported here: [`memory`] (shared regions, mempool,
//! mbufs), [`virtqueue`] (rings), [`transport`] (vhost-user), [`ethdev`] (the port API) and
//! [`pmd`] (the drivers).

pub use ferrovia_ethdev as ethdev;
pub use ferrovia_memory as memory;
pub use ferrovia_pmd as pmd;
pub use ferrovia_transport as transport;
pub use ferrovia_virtqueue as virtqueue;

pub use ferrovia_ethdev::{
    Burst, DriverSpec, Error, KeyKind, KeySpec, Link, MAX_BURST, MacAddr, Offloads, Port, PortConf,
    PortInfo, PortStats, Result, RxOffloads, RxQueue, TxOffloads, TxQueue, VirtioFeatures,
};
pub use ferrovia_memory::{LcoreCaches, Mbuf, MbufCache, Mempool, MempoolConfig};

/// Opens a port from a devargs string (see [`pmd`] for the drivers and their arguments, and
/// [`pmd::registry`] to add a driver of your own).
pub fn open(devargs: &str, conf: &PortConf) -> Result<Box<dyn Port>> {
    ferrovia_pmd::open(devargs, conf)
}
