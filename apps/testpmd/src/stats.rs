//! Statistics output in DPDK testpmd's shape.

use std::time::Instant;

use ferrovia_ethdev::PortStats;

/// Forward statistics of one port (or the total).
#[derive(Debug, Default, Clone, Copy)]
pub struct FwdStats {
    /// Packets received by forwarding streams.
    pub rx: u64,
    /// Packets the port dropped on receive.
    pub rx_dropped: u64,
    /// Packets sent.
    pub tx: u64,
    /// Packets that could not be sent.
    pub tx_dropped: u64,
    /// csum mode: packets received with a bad IP and a bad L4 checksum.
    pub bad_csum: Option<(u64, u64)>,
}

/// Prints one port's forward statistics block, with `extra` lines (burst spreads) inside it.
pub fn print_fwd_port(port: u16, s: &FwdStats, extra: &[String]) {
    println!();
    println!("  ---------------------- Forward statistics for port {port}  ----------------------");
    print_fwd_lines(s);
    for line in extra {
        println!("{line}");
    }
    println!("  ----------------------------------------------------------------------------");
}

fn print_fwd_lines(s: &FwdStats) {
    println!(
        "  RX-packets: {:<14} RX-dropped: {:<14}RX-total: {}",
        s.rx,
        s.rx_dropped,
        s.rx + s.rx_dropped
    );
    if let Some((ip, l4)) = s.bad_csum {
        println!(
            "  Bad-ipcsum: {ip:<14} Bad-l4csum: {l4:<14}Bad-outer-l4csum: {:<14}",
            0
        );
        println!("  Bad-outer-ipcsum: {:<14}", 0);
    }
    println!(
        "  TX-packets: {:<14} TX-dropped: {:<14}TX-total: {}",
        s.tx,
        s.tx_dropped,
        s.tx + s.tx_dropped
    );
}

/// Prints the accumulated block.
pub fn print_fwd_total(s: &FwdStats) {
    println!();
    println!("  +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++");
    print_fwd_lines(s);
    println!("  ++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++");
}

/// What the previous `show port stats` saw, for the throughput lines.
#[derive(Debug, Clone, Copy)]
pub struct LastShow {
    at: Instant,
    ipackets: u64,
    opackets: u64,
    ibytes: u64,
    obytes: u64,
}

/// Prints the NIC statistics block and returns what to remember for the next one.
pub fn print_nic(port: u16, s: &PortStats, last: Option<LastShow>) -> LastShow {
    let now = LastShow {
        at: Instant::now(),
        ipackets: s.ipackets(),
        opackets: s.opackets(),
        ibytes: s.ibytes(),
        obytes: s.obytes(),
    };
    let (rpps, rbps, tpps, tbps) = match last {
        Some(l) => {
            let dt = now.at.duration_since(l.at).as_secs_f64().max(1e-9);
            let r = |a: u64, b: u64| (a.saturating_sub(b) as f64 / dt) as u64;
            (
                r(now.ipackets, l.ipackets),
                r(now.ibytes, l.ibytes) * 8,
                r(now.opackets, l.opackets),
                r(now.obytes, l.obytes) * 8,
            )
        }
        None => (0, 0, 0, 0),
    };
    println!();
    println!("  ######################## NIC statistics for port {port}  ########################");
    println!(
        "  RX-packets: {:<10} RX-missed: {:<10} RX-bytes:  {}",
        s.ipackets(),
        0,
        s.ibytes()
    );
    println!("  RX-errors: {}", s.ierrors());
    println!("  RX-nombuf:  {:<10}", s.rx_nombuf());
    println!(
        "  TX-packets: {:<10} TX-errors: {:<10} TX-bytes:  {}",
        s.opackets(),
        s.oerrors(),
        s.obytes()
    );
    println!();
    println!("  Throughput (since last show)");
    println!("  Rx-pps: {rpps:>12}          Rx-bps: {rbps:>12}");
    println!("  Tx-pps: {tpps:>12}          Tx-bps: {tbps:>12}");
    println!("  ############################################################################");
    now
}
