//! testpmd application options: the part of the command line after `--`.

use ferrovia_ethdev::MacAddr;

use crate::eal::split_eq;

/// How ports are paired into streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// 0<->1, 2<->3, ...
    Paired,
    /// 0->1->2->...->0
    Chained,
    /// each port to itself
    Loop,
}

/// Application options.
#[derive(Debug, Clone, PartialEq)]
pub struct AppOpts {
    /// `-i`
    pub interactive: bool,
    /// `-a` / `--auto-start`
    pub auto_start: bool,
    /// `--forward-mode`
    pub mode: String,
    /// `--nb-cores`
    pub nb_cores: Option<u32>,
    /// `--portmask`
    pub portmask: Option<u64>,
    /// `--port-topology`
    pub topology: Topology,
    /// `--rxq`
    pub rxq: u16,
    /// `--txq`
    pub txq: u16,
    /// `--rxd`
    pub rxd: u16,
    /// `--txd`
    pub txd: u16,
    /// `--burst`
    pub burst: usize,
    /// `--txpkts`
    pub txpkts: Vec<u16>,
    /// `--tx-first`
    pub tx_first: bool,
    /// `--stats-period`
    pub stats_period: Option<u64>,
    /// `--total-num-mbufs`
    pub total_num_mbufs: Option<usize>,
    /// `--eth-peer`
    pub eth_peers: Vec<(u16, MacAddr)>,
    /// `--max-pkt-len`
    pub max_pkt_len: Option<u32>,
    /// `--mbuf-size` (buffer size including 128 bytes of headroom)
    pub mbuf_size: Option<u32>,
    /// `--record-burst-stats`: count burst sizes and show them at `stop`.
    pub record_burst_stats: bool,
    /// `--record-core-cycles`: count the cycles of bursts that moved packets.
    pub record_core_cycles: bool,
    /// Options accepted with no effect here.
    pub ignored: Vec<String>,
    /// `-h` / `--help`: print the usage and exit.
    pub help: bool,
}

impl Default for AppOpts {
    fn default() -> Self {
        AppOpts {
            interactive: false,
            auto_start: false,
            mode: "io".into(),
            nb_cores: None,
            portmask: None,
            topology: Topology::Paired,
            rxq: 1,
            txq: 1,
            rxd: 0,
            txd: 0,
            burst: 32,
            txpkts: vec![64],
            tx_first: false,
            stats_period: None,
            total_num_mbufs: None,
            eth_peers: Vec::new(),
            max_pkt_len: None,
            mbuf_size: None,
            record_burst_stats: false,
            record_core_cycles: false,
            ignored: Vec::new(),
            help: false,
        }
    }
}

/// Application flags accepted with no effect here.
pub const IGNORED_FLAGS: &[&str] = &[
    "--disable-rss",
    "--enable-lro",
    "--enable-rx-cksum",
    "--enable-scatter",
    "--no-flush-rx",
    "--no-lsc-interrupt",
    "--no-rmv-interrupt",
    "--rss-ip",
    "--rss-udp",
    "--disable-crc-strip",
    "--enable-drop-en",
    "--no-numa",
    "--numa",
];

/// Application options that take a value, accepted with no effect here.
pub const IGNORED_WITH_VALUE: &[&str] = &[
    "--tx-offloads",
    "--rx-offloads",
    "--mp-alloc",
    "--rxfreet",
    "--txfreet",
    "--rxpt",
    "--rxht",
    "--rxwt",
    "--txpt",
    "--txht",
    "--txwt",
    "--txrst",
    "--coremask",
    "--nb-ports",
    "--rss-queues",
    "--port-numa-config",
    "--ring-numa-config",
    "--socket-num",
    "--flow-isolate-all",
];

fn num<T: std::str::FromStr>(k: &str, v: &str, min: u64, max: u64) -> Result<T, String> {
    let n: u64 = v.parse().map_err(|_| {
        format!("invalid value '{v}' for {k}: expected a number from {min} to {max}")
    })?;
    if n < min || n > max {
        return Err(format!(
            "invalid value '{v}' for {k}: expected a number from {min} to {max}"
        ));
    }
    v.parse::<T>()
        .map_err(|_| format!("invalid value '{v}' for {k}"))
}

/// Parses the options after `--`.
pub fn parse(args: &[String]) -> Result<AppOpts, String> {
    let mut o = AppOpts::default();
    let mut i = 0;
    while i < args.len() {
        let (key, inline) = split_eq(&args[i]);
        let mut value = |name: &str| -> Result<String, String> {
            if let Some(v) = inline {
                return Ok(v.to_string());
            }
            i += 1;
            args.get(i)
                .cloned()
                .ok_or_else(|| format!("option {name} needs a value"))
        };
        match key {
            "-h" | "--help" if inline.is_none() => {
                o.help = true;
                return Ok(o);
            }
            "-i" | "--interactive" => o.interactive = true,
            "-a" | "--auto-start" => o.auto_start = true,
            "--tx-first" => o.tx_first = true,
            "--forward-mode" => {
                let v = value(key)?;
                if !ferrovia_fwd::MODES.contains(&v.as_str()) {
                    return Err(format!(
                        "invalid forward mode '{v}': available modes are {}",
                        ferrovia_fwd::MODES.join(", ")
                    ));
                }
                o.mode = v;
            }
            "--nb-cores" => o.nb_cores = Some(num(key, &value(key)?, 1, 1024)?),
            "--portmask" => {
                let v = value(key)?;
                let m = u64::from_str_radix(v.trim_start_matches("0x"), 16).map_err(|_| {
                    format!("invalid --portmask '{v}': expected a hex mask such as 0x3")
                })?;
                if m == 0 {
                    return Err("invalid --portmask 0: select at least one port".into());
                }
                o.portmask = Some(m);
            }
            "--port-topology" => {
                let v = value(key)?;
                o.topology = match v.as_str() {
                    "paired" => Topology::Paired,
                    "chained" => Topology::Chained,
                    "loop" => Topology::Loop,
                    _ => {
                        return Err(format!(
                            "invalid --port-topology '{v}': use paired, chained or loop"
                        ));
                    }
                };
            }
            "--rxq" => o.rxq = num(key, &value(key)?, 1, 128)?,
            "--txq" => o.txq = num(key, &value(key)?, 1, 128)?,
            "--rxd" => o.rxd = num(key, &value(key)?, 1, 32768)?,
            "--txd" => o.txd = num(key, &value(key)?, 1, 32768)?,
            "--burst" => o.burst = num(key, &value(key)?, 1, 512)?,
            "--record-burst-stats" if inline.is_none() => o.record_burst_stats = true,
            "--record-core-cycles" if inline.is_none() => o.record_core_cycles = true,
            "--txpkts" => {
                let v = value(key)?;
                let segs: Result<Vec<u16>, String> = v
                    .split(',')
                    .map(|s| num::<u16>(key, s.trim(), 1, 9728))
                    .collect();
                let segs = segs?;
                let total: u32 = segs.iter().map(|&s| s as u32).sum();
                if total > 9728 {
                    return Err(format!(
                        "invalid --txpkts '{v}': frame of {total} bytes exceeds 9728"
                    ));
                }
                o.txpkts = segs;
            }
            "--stats-period" => o.stats_period = Some(num(key, &value(key)?, 1, 86400)?),
            "--total-num-mbufs" => o.total_num_mbufs = Some(num(key, &value(key)?, 1025, 1 << 24)?),
            "--max-pkt-len" => o.max_pkt_len = Some(num(key, &value(key)?, 64, 65535)?),
            "--mbuf-size" => {
                let v = value(key)?;
                let first = v.split(',').next().unwrap_or("");
                o.mbuf_size = Some(num(key, first, 256, 65535)?);
            }
            "--eth-peer" => {
                let v = value(key)?;
                let (p, m) = v
                    .split_once(',')
                    .ok_or_else(|| format!("invalid --eth-peer '{v}': expected PORT,MAC"))?;
                let port = num(key, p, 0, 1023)?;
                let mac = m
                    .parse::<MacAddr>()
                    .map_err(|e| format!("invalid --eth-peer: {e}"))?;
                o.eth_peers.push((port, mac));
            }
            k if IGNORED_FLAGS.contains(&k) && inline.is_none() => o.ignored.push(k.to_string()),
            k if IGNORED_WITH_VALUE.contains(&k) => {
                let v = value(k)?;
                o.ignored.push(format!("{k}={v}"));
            }
            other => {
                return Err(format!(
                    "unknown option '{other}'; see --help. Supported: -i, -a/--auto-start, --forward-mode, --nb-cores, --portmask, --port-topology, --rxq, --txq, --rxd, --txd, --burst, --txpkts, --tx-first, --stats-period, --total-num-mbufs, --eth-peer, --max-pkt-len, --mbuf-size, --record-burst-stats, --record-core-cycles (and, with no effect: {} {})",
                    IGNORED_FLAGS.join(" "),
                    IGNORED_WITH_VALUE.join(" ")
                ));
            }
        }
        i += 1;
    }
    if o.tx_first && o.interactive {
        return Err(
            "--tx-first cannot be used in interactive mode; use 'start tx_first' at the prompt"
                .into(),
        );
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn how_to_app_lines() {
        assert!(parse(&v("-i")).unwrap().interactive);
        let o = parse(&v(
            "-i --tx-offloads=0x002c --enable-lro --txq=2 --rxq=2 --txd=1024 --rxd=1024",
        ))
        .unwrap();
        assert_eq!((o.rxq, o.txq, o.rxd, o.txd), (2, 2, 1024, 1024));
        let o = parse(&v(
            "--portmask=f -i --rxq=1 --txq=1 --nb-cores=4 --forward-mode=io",
        ))
        .unwrap();
        assert_eq!(o.portmask, Some(0xf));
        assert_eq!(o.nb_cores, Some(4));
        let o = parse(&v("--portmask=3 --forward-mode=macswap --port-topology=chained --disable-rss -i --rxq=1 --txq=1 --rxd=256 --txd=256 --nb-cores=2 --auto-start")).unwrap();
        assert_eq!(o.mode, "macswap");
        assert_eq!(o.topology, Topology::Chained);
        assert!(o.auto_start);
        let o = parse(&v(
            "--txpkts 64,64 --burst=64 --stats-period 1 --tx-first --eth-peer=0,02:00:00:00:00:09",
        ))
        .unwrap();
        assert_eq!(o.txpkts, vec![64, 64]);
        assert_eq!(o.eth_peers.len(), 1);
        assert!(!o.record_burst_stats);
        let o = parse(&v("--record-burst-stats -a")).unwrap();
        assert!(o.record_burst_stats && o.ignored.is_empty());
        assert!(parse(&v("--record-burst-stats=1")).is_err());
        let o = parse(&v("--record-core-cycles")).unwrap();
        assert!(o.record_core_cycles && o.ignored.is_empty());
    }

    #[test]
    fn bad_options_are_clear() {
        let e = parse(&v("--forward-mode=nope")).unwrap_err();
        assert!(e.contains("macswap"), "{e}");
        let e = parse(&v("--burst 0")).unwrap_err();
        assert!(e.contains("1 to 512"), "{e}");
        let e = parse(&v("--frobnicate")).unwrap_err();
        assert!(e.contains("'--frobnicate'"), "{e}");
        let e = parse(&v("-i --tx-first")).unwrap_err();
        assert!(e.contains("start tx_first"), "{e}");
        assert!(parse(&v("--portmask=zz")).is_err());
        assert!(parse(&v("--port-topology=ring")).is_err());
    }
}
