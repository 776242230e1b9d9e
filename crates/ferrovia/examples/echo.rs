//! Echo every packet back out of the port it came in on, swapping MAC addresses.
//!
//! ```text
//! cargo run --release --example echo -- 'net_vhost0,iface=/tmp/sock0'
//! ```

use ferrovia::{Burst, LcoreCaches, Mempool, MempoolConfig, PortConf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let devargs = std::env::args()
        .nth(1)
        .ok_or("usage: echo <devargs>, e.g. echo 'net_vhost0,iface=/tmp/sock0'")?;
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let pool = Mempool::new(MempoolConfig::default())?;
    let mut port = ferrovia::open(&devargs, &PortConf::new(0, pool))?;
    port.start()?;
    let (mut rx, mut tx) = (port.rx_queue(0)?, port.tx_queue(0)?);
    // This thread's mbuf caches (one per pool), passed to every burst.
    let mut caches = LcoreCaches::new();
    let mut burst = Burst::new();
    let mut last = std::time::Instant::now();
    loop {
        if last.elapsed() > std::time::Duration::from_secs(1) {
            last = std::time::Instant::now();
            let s = port.stats();
            log::info!(
                "rx {} tx {} link {} errors [{}]",
                s.ipackets(),
                s.opackets(),
                if port.link().up { "up" } else { "down" },
                port.xstats()
                    .into_iter()
                    .filter(|(_, v)| *v != 0)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        if rx.rx_burst(&mut caches, &mut burst, 32) == 0 {
            continue;
        }
        for m in burst.iter_mut() {
            let d = m.data_mut();
            if d.len() >= 12 {
                let (dst, src) = d.split_at_mut(6);
                dst.swap_with_slice(&mut src[..6]);
            }
        }
        tx.tx_burst(&mut caches, &mut burst);
        caches.free_all(burst.drain(..)); // whatever the peer had no room for
    }
}
