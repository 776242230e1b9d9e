//! `ferrovia-pktgen`: a software traffic generator on any Ferrovia port (the role of
//! MoonGen, pktgen-dpdk or TRex stateless in a benchmark), and the pieces PVP builds on.
//!
//! It sends paced UDP/IPv4 streams with many flows, fixed sizes or IMIX; each frame carries a
//! stream number, a sequence number and a send timestamp, so the receive side counts loss,
//! reordering and duplicates exactly and measures latency into an HDR histogram.

pub mod clock;
pub mod frame;
pub mod rate;
pub mod search;
pub mod track;
pub mod trial;
