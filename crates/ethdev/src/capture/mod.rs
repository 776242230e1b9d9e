//! Packet capture at run time, like dpdk-pdump: any port, any queue, either direction, into a
//! pcapng file or FIFO.
//!
//! - [`wrap`] puts the capture points ([`crate::tap`]) on a driver's port; the registry wraps
//!   every port it opens, so every driver and every application has them.
//! - [`Captures`] starts and stops captures: each one preallocates a single-producer ring per
//!   captured queue and direction, installs it on the queue's capture point, and runs a
//!   writer thread that drains the rings into pcapng ([`pcapng`]).
//! - [`params`] parses what users type: dpdk-pdump's `port=0,queue=*,rx-dev=...` form and
//!   plain `key=value` lists.

pub mod params;
pub mod pcapng;
mod session;
mod wrap;

pub use session::{CaptureError, CaptureSpec, CaptureStatus, Captures, check_snaplen};
pub use wrap::wrap;
