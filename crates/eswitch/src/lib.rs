//! The slicing model's software NIC: one PF, N VFs and an uplink behind an embedded switch.
//!
//! This crate holds the parts that do not depend on ports:
//! - [`vfconfig`] reads and checks one VF's policy in AT&T VFd's JSON form;
//! - [`policy`] applies a policy to frames leaving a VF and frames going to it;
//! - [`kernel_pf`] applies the same policy to a kernel SR-IOV PF through rtnetlink (the one
//!   module here that makes syscalls).
//!
//! `vfconfig` and `policy` are pure: nothing there allocates per frame, takes a lock or makes a
//! syscall.

pub mod kernel_pf;
pub mod mailbox;
pub mod pf;
pub mod policy;
pub mod ratelimit;
pub mod veb;
pub mod vfconfig;
