//! Split virtqueues (virtio 1.0): both sides.
//!
//! * [`driver`]: [`SplitDriver`], the driver side (virtio-user): posts buffers, reaps used ones.
//! * [`device`]: [`SplitDevice`], the device side (the vhost backend): walks the descriptor
//!   chains the peer wrote and copies packets in and out of guest memory.
//!
//! Both build on the raw ring in [`crate::ring::split`] (re-exported here as [`SplitRing`]) and
//! on the shared modules; nothing here uses the packed side.

pub mod ctrl_driver;
pub mod device;
pub mod driver;

pub use crate::ring::split::SplitRing;
pub use ctrl_driver::{CTRL_BUF_LEN, CtrlDriver, CtrlPostError};
pub use device::{CtrlChain, SplitDevice};
pub use driver::{SplitDriver, SplitLayout, resume_base};
