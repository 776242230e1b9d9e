//! The ethdev layer: what every port driver implements and what forwarding engines use.
//!
//! A port is opened from a devargs string (see [`devargs`]), started, and then split into queue
//! handles ([`RxQueue`], [`TxQueue`]). Each handle is owned by one polling thread and moves
//! bursts of [`Mbuf`](ferrovia_memory::Mbuf)s without locks. Statistics are kept per queue by
//! the owning thread and summed when read ([`stats`]). Drivers describe themselves with a
//! [`DriverSpec`] ([`driver`]); this crate knows none of them.

pub mod burst;
pub mod caps;
pub mod capture;
pub mod ctrl;
pub mod devargs;
pub mod driver;
pub mod error;
pub mod events;
pub mod mac;
pub mod port;
pub mod stats;
pub mod tap;
pub mod vf;

pub use burst::{Burst, MAX_BURST};
pub use caps::{Offloads, RxOffloads, TxOffloads, VirtioFeatures};
pub use capture::{CaptureError, CaptureSpec, CaptureStatus, Captures};
pub use devargs::{Devargs, KeyKind, KeySpec};
pub use driver::{DriverSpec, OpenFn};
pub use error::{Error, Result};
pub use events::{EventSink, PortEvent, PortEventKind};
pub use mac::{MacAddr, MacParseError};
pub use port::{Link, LinkAdmin, Port, PortConf, PortInfo, RxQueue, TxQueue};
pub use stats::{ErrorCause, PortStats, QueueStats, QueueStatsSnapshot};
pub use tap::{PortTap, QueueTap};
pub use vf::{RxModeFlag, VfControl, VfRequestPolicy, VfSetting, VfStats};
