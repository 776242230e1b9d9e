//! The ethdev layer: what every port driver implements and what forwarding engines use.
//!
//! A port is opened from a devargs string (see [`devargs`]), started, and then split into queue
//! handles ([`RxQueue`], [`TxQueue`]). Each handle is owned by one polling thread and moves
//! bursts of [`Mbuf`](ferrovia_memory::Mbuf)s without locks. Statistics are kept per queue by
//! the owning thread and summed when read ([`stats`]).

pub mod burst;
pub mod devargs;
pub mod error;
pub mod events;
pub mod port;
pub mod stats;

pub use burst::{Burst, MAX_BURST};
pub use devargs::{Devargs, DriverKind};
pub use error::{Error, Result};
pub use events::{EventSink, PortEvent, PortEventKind};
pub use port::{Link, MacAddr, Port, PortConf, PortInfo, RxQueue, TxQueue};
pub use stats::{ErrorCause, PortStats, QueueStats, QueueStatsSnapshot};
