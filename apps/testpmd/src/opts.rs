//! testpmd application options: the part of the command line after `--`.

use ferrovia_ethdev::{MacAddr, MacParseError};

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
    /// `--metrics ADDR:PORT`: serve Prometheus metrics there (not a DPDK option).
    pub metrics: Option<String>,
    /// Rx offloads enabled on every port (`--rx-offloads`, `--enable-rx-cksum`,
    /// `--enable-lro`; DPDK's `RTE_ETH_RX_OFFLOAD_*` bits).
    pub rx_offloads: u64,
    /// Tx offloads enabled on every port (`--tx-offloads`; `RTE_ETH_TX_OFFLOAD_*` bits).
    pub tx_offloads: u64,
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
            metrics: None,
            rx_offloads: 0,
            tx_offloads: 0,
            ignored: Vec::new(),
            help: false,
        }
    }
}

/// Application flags accepted with no effect here.
pub const IGNORED_FLAGS: &[&str] = &[
    "--disable-rss",
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

/// Most bytes in one `--txpkts` frame.
const MAX_TXPKTS_FRAME: u32 = 9728;

/// Why the options after `--` were refused.
#[derive(Debug, thiserror::Error)]
pub enum OptsError {
    /// An option that takes a value came last.
    #[error("option {option} needs a value")]
    MissingValue {
        /// The option.
        option: String,
    },
    /// A number that does not parse or is out of range.
    #[error("invalid value '{value}' for {option}: expected a number from {min} to {max}")]
    BadNumber {
        /// The option.
        option: String,
        /// The value given.
        value: String,
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// A value in range that the option's type still cannot hold.
    #[error("invalid value '{value}' for {option}")]
    BadValue {
        /// The option.
        option: String,
        /// The value given.
        value: String,
    },
    /// `--forward-mode` names no engine.
    #[error("invalid forward mode '{mode}': available modes are {}", ferrovia_fwd::MODES.join(", "))]
    BadForwardMode {
        /// The mode given.
        mode: String,
    },
    /// `--portmask` is not hexadecimal.
    #[error("invalid --portmask '{value}': expected a hex mask such as 0x3")]
    BadPortmask {
        /// The value given.
        value: String,
    },
    /// `--portmask 0`.
    #[error("invalid --portmask 0: select at least one port")]
    EmptyPortmask,
    /// `--port-topology` is none of the three.
    #[error("invalid --port-topology '{value}': use paired, chained or loop")]
    BadTopology {
        /// The value given.
        value: String,
    },
    /// `--txpkts` segments add up to a frame that is too long.
    #[error("invalid --txpkts '{value}': frame of {total} bytes exceeds {MAX_TXPKTS_FRAME}")]
    TxpktsTooLong {
        /// The value given.
        value: String,
        /// Bytes in the frame.
        total: u32,
    },
    /// `--eth-peer` is not `PORT,MAC`.
    #[error("invalid --eth-peer '{value}': expected PORT,MAC")]
    BadEthPeer {
        /// The value given.
        value: String,
    },
    /// `--eth-peer`'s MAC address does not parse.
    #[error("invalid --eth-peer: {source}")]
    BadEthPeerMac {
        /// Why.
        source: MacParseError,
    },
    /// An option testpmd does not know.
    #[error(
        "unknown option '{option}'; see --help. Supported: -i, -a/--auto-start, --forward-mode, --nb-cores, --portmask, --port-topology, --rxq, --txq, --rxd, --txd, --burst, --txpkts, --tx-first, --stats-period, --total-num-mbufs, --eth-peer, --max-pkt-len, --mbuf-size, --record-burst-stats, --record-core-cycles, --metrics, --rx-offloads, --tx-offloads, --enable-rx-cksum, --enable-lro (and, with no effect: {} {})",
        IGNORED_FLAGS.join(" "),
        IGNORED_WITH_VALUE.join(" ")
    )]
    UnknownOption {
        /// The option given.
        option: String,
    },
    /// `--metrics` is not ADDR:PORT.
    #[error("invalid --metrics '{value}': give ADDR:PORT, e.g. --metrics 127.0.0.1:9464")]
    BadMetrics {
        /// The value given.
        value: String,
    },
    /// `--tx-offloads`/`--rx-offloads` is not a number.
    #[error("invalid value '{value}' for {option}: expected a mask such as 0x2c (hex) or 44")]
    BadMask {
        /// The option.
        option: String,
        /// The value given.
        value: String,
    },
    /// `--tx-first` with `-i`.
    #[error("--tx-first cannot be used in interactive mode; use 'start tx_first' at the prompt")]
    TxFirstInteractive,
}

fn num<T: std::str::FromStr>(k: &str, v: &str, min: u64, max: u64) -> Result<T, OptsError> {
    let bad = || OptsError::BadNumber {
        option: k.to_string(),
        value: v.to_string(),
        min,
        max,
    };
    let n: u64 = v.parse().map_err(|_| bad())?;
    if n < min || n > max {
        return Err(bad());
    }
    v.parse::<T>().map_err(|_| OptsError::BadValue {
        option: k.to_string(),
        value: v.to_string(),
    })
}

/// `--enable-rx-cksum`: DPDK's `RTE_ETH_RX_OFFLOAD_CHECKSUM` (IPv4, UDP and TCP).
const RX_CHECKSUM: u64 = 0x2 | 0x4 | 0x8;
/// `--enable-lro`: `RTE_ETH_RX_OFFLOAD_TCP_LRO`.
const RX_TCP_LRO: u64 = 0x10;

/// An offload mask: hex with `0x`, or decimal (as DPDK's testpmd reads it).
fn mask(k: &str, v: &str) -> Result<u64, OptsError> {
    let r = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.parse(),
    };
    r.map_err(|_| OptsError::BadMask {
        option: k.to_string(),
        value: v.to_string(),
    })
}

/// Parses the options after `--`.
pub fn parse(args: &[String]) -> Result<AppOpts, OptsError> {
    let mut o = AppOpts::default();
    let mut i = 0;
    while i < args.len() {
        let (key, inline) = split_eq(&args[i]);
        let mut value = |name: &str| -> Result<String, OptsError> {
            if let Some(v) = inline {
                return Ok(v.to_string());
            }
            i += 1;
            args.get(i).cloned().ok_or_else(|| OptsError::MissingValue {
                option: name.to_string(),
            })
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
                    return Err(OptsError::BadForwardMode { mode: v });
                }
                o.mode = v;
            }
            "--nb-cores" => o.nb_cores = Some(num(key, &value(key)?, 1, 1024)?),
            "--portmask" => {
                let v = value(key)?;
                let Ok(m) = u64::from_str_radix(v.trim_start_matches("0x"), 16) else {
                    return Err(OptsError::BadPortmask { value: v });
                };
                if m == 0 {
                    return Err(OptsError::EmptyPortmask);
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
                        return Err(OptsError::BadTopology { value: v });
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
            "--metrics" => {
                let v = value(key)?;
                if v.parse::<std::net::SocketAddr>().is_err() {
                    return Err(OptsError::BadMetrics { value: v });
                }
                o.metrics = Some(v);
            }
            "--txpkts" => {
                let v = value(key)?;
                let segs: Result<Vec<u16>, OptsError> = v
                    .split(',')
                    .map(|s| num::<u16>(key, s.trim(), 1, 9728))
                    .collect();
                let segs = segs?;
                let total: u32 = segs.iter().map(|&s| s as u32).sum();
                if total > MAX_TXPKTS_FRAME {
                    return Err(OptsError::TxpktsTooLong { value: v, total });
                }
                o.txpkts = segs;
            }
            "--enable-rx-cksum" if inline.is_none() => o.rx_offloads |= RX_CHECKSUM,
            "--enable-lro" if inline.is_none() => o.rx_offloads |= RX_TCP_LRO,
            "--rx-offloads" => o.rx_offloads = mask(key, &value(key)?)?,
            "--tx-offloads" => o.tx_offloads = mask(key, &value(key)?)?,
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
                let Some((p, m)) = v.split_once(',') else {
                    return Err(OptsError::BadEthPeer { value: v });
                };
                let port = num(key, p, 0, 1023)?;
                let mac = m
                    .parse::<MacAddr>()
                    .map_err(|source| OptsError::BadEthPeerMac { source })?;
                o.eth_peers.push((port, mac));
            }
            k if IGNORED_FLAGS.contains(&k) && inline.is_none() => o.ignored.push(k.to_string()),
            k if IGNORED_WITH_VALUE.contains(&k) => {
                let v = value(k)?;
                o.ignored.push(format!("{k}={v}"));
            }
            other => {
                return Err(OptsError::UnknownOption {
                    option: other.to_string(),
                });
            }
        }
        i += 1;
    }
    if o.tx_first && o.interactive {
        return Err(OptsError::TxFirstInteractive);
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
        assert_eq!((o.tx_offloads, o.rx_offloads), (0x2c, 0x10));
        assert!(o.ignored.is_empty());
        let o = parse(&v("--enable-rx-cksum --rx-offloads 16 --tx-offloads=0X6")).unwrap();
        assert_eq!((o.rx_offloads, o.tx_offloads), (16, 6));
        let o = parse(&v("--enable-rx-cksum")).unwrap();
        assert_eq!(o.rx_offloads, 0xe);
        let e = parse(&v("--tx-offloads=0xzz")).unwrap_err();
        assert!(e.to_string().contains("0xzz"), "{e}");
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
        assert!(matches!(&e, OptsError::BadForwardMode { mode } if mode == "nope"));
        assert!(e.to_string().contains("macswap"), "{e}");
        let e = parse(&v("--burst 0")).unwrap_err();
        assert!(matches!(
            &e,
            OptsError::BadNumber {
                min: 1,
                max: 512,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "invalid value '0' for --burst: expected a number from 1 to 512"
        );
        let e = parse(&v("--frobnicate")).unwrap_err();
        assert!(e.to_string().contains("'--frobnicate'"), "{e}");
        let e = parse(&v("-i --tx-first")).unwrap_err();
        assert!(e.to_string().contains("start tx_first"), "{e}");
        assert!(matches!(
            parse(&v("--portmask=zz")),
            Err(OptsError::BadPortmask { .. })
        ));
        assert!(matches!(
            parse(&v("--portmask=0")),
            Err(OptsError::EmptyPortmask)
        ));
        assert!(matches!(
            parse(&v("--port-topology=ring")),
            Err(OptsError::BadTopology { .. })
        ));
        assert!(matches!(
            parse(&v("--txpkts 9000,1000")),
            Err(OptsError::TxpktsTooLong { total: 10000, .. })
        ));
        let e = parse(&v("--eth-peer=0,02:00")).unwrap_err();
        assert!(matches!(e, OptsError::BadEthPeerMac { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "invalid --eth-peer: bad MAC address '02:00': expected six hex bytes like 02:00:00:00:00:01"
        );
        let e = parse(&v("--rxq")).unwrap_err();
        assert_eq!(e.to_string(), "option --rxq needs a value");
    }
}
