//! What users type to start a capture: dpdk-pdump's `--pdump` form
//! (`port=0,queue=*,rx-dev=/tmp/rx.pcapng,tx-dev=/tmp/tx.pcapng,snaplen=128`, or
//! `device_id=net_vhost0` in place of `port=`), with `dev=FILE` for one file holding both
//! directions and `dir=rx|tx|both` to choose them.

use std::path::PathBuf;

use super::session::{CaptureError, CaptureSpec, check_snaplen};

/// How the port was named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRef {
    /// `port=N`.
    Id(u16),
    /// `device_id=NAME` (the devargs name, `net_vhost0`).
    Name(String),
}

impl std::fmt::Display for PortRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortRef::Id(i) => write!(f, "port {i}"),
            PortRef::Name(n) => write!(f, "device {n}"),
        }
    }
}

/// One `--pdump` argument: a port and the captures to start on it (two when `rx-dev` and
/// `tx-dev` differ, one otherwise).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PdumpRequest {
    /// The port.
    pub port: PortRef,
    /// The captures.
    pub captures: Vec<CaptureSpec>,
}

const KEYS: &str = "port, device_id, queue, rx-dev, tx-dev, dev, dir, snaplen, ring-size";

fn bad(msg: String) -> CaptureError {
    CaptureError(msg)
}

/// Parses `key=value` pairs separated by commas (see the module documentation). The
/// `mbuf-size` and `total-num-mbufs` keys of dpdk-pdump are accepted and ignored (captures
/// copy packets into their own rings).
pub fn parse_pdump(s: &str) -> Result<PdumpRequest, CaptureError> {
    let (mut port, mut queue, mut snaplen, mut ring_size) = (None, None, None, None);
    let (mut rx_dev, mut tx_dev, mut dev, mut dir) = (None, None, None, None);
    for kv in s.split(',').map(str::trim).filter(|kv| !kv.is_empty()) {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(bad(format!(
                "capture parameter '{kv}' has no value: write key=value (keys: {KEYS})"
            )));
        };
        let (k, v) = (k.trim(), v.trim());
        let num = |what: &str| {
            v.parse::<u64>()
                .map_err(|_| bad(format!("bad {what} '{v}': expected a number")))
        };
        match k {
            "port" => {
                let n = num("port")?;
                let id = u16::try_from(n)
                    .map_err(|_| bad(format!("bad port '{v}': port ids are 0 to 65535")))?;
                port = Some(PortRef::Id(id));
            }
            "device_id" => port = Some(PortRef::Name(v.to_string())),
            "queue" => {
                queue = if v == "*" {
                    None
                } else {
                    Some(u16::try_from(num("queue")?).map_err(|_| {
                        bad(format!(
                            "bad queue '{v}': queues are 0 to 65535, or * for all"
                        ))
                    })?)
                };
            }
            "rx-dev" => rx_dev = Some(PathBuf::from(v)),
            "tx-dev" => tx_dev = Some(PathBuf::from(v)),
            "dev" => dev = Some(PathBuf::from(v)),
            "dir" => {
                dir = Some(match v {
                    "rx" => (true, false),
                    "tx" => (false, true),
                    "both" => (true, true),
                    _ => {
                        return Err(bad(format!("bad dir '{v}': expected rx, tx or both")));
                    }
                })
            }
            "snaplen" => snaplen = Some(check_snaplen(num("snaplen")?)?),
            "ring-size" | "ring_size" => {
                let n = num("ring-size")?;
                if !(2..=1 << 20).contains(&n) {
                    return Err(bad(format!("bad ring-size {n}: give 2 to 1048576 slots")));
                }
                ring_size = Some(n as usize);
            }
            "mbuf-size" | "total-num-mbufs" => {
                num(k)?;
            }
            _ => {
                return Err(bad(format!(
                    "unknown capture parameter '{k}' (valid: {KEYS})"
                )));
            }
        }
    }
    let port =
        port.ok_or_else(|| bad("no port given: add port=N or device_id=NAME".to_string()))?;
    let mk = |path: PathBuf, rx: bool, tx: bool| CaptureSpec {
        queue,
        rx,
        tx,
        snaplen: snaplen.unwrap_or(super::pcapng::MAX_SNAPLEN),
        path,
        ring_size,
    };
    let captures = match (dev, rx_dev, tx_dev) {
        (Some(d), None, None) => {
            let (rx, tx) = dir.unwrap_or((true, true));
            vec![mk(d, rx, tx)]
        }
        (Some(_), _, _) => {
            return Err(bad(
                "give dev= (one file) or rx-dev=/tx-dev=, not both".to_string()
            ));
        }
        (None, Some(r), Some(t)) if r == t => vec![mk(r, true, true)],
        (None, Some(r), Some(t)) => vec![mk(r, true, false), mk(t, false, true)],
        (None, Some(r), None) => vec![mk(r, true, false)],
        (None, None, Some(t)) => vec![mk(t, false, true)],
        (None, None, None) => {
            return Err(bad(
                "no capture file given: add rx-dev=FILE, tx-dev=FILE or dev=FILE".to_string(),
            ));
        }
    };
    if dir.is_some() && captures.len() > 1 {
        return Err(bad(
            "dir= goes with dev=, not with rx-dev=/tx-dev=".to_string()
        ));
    }
    Ok(PdumpRequest { port, captures })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdump_forms() {
        let r =
            parse_pdump("port=0,queue=*,rx-dev=/tmp/rx.pcapng,tx-dev=/tmp/tx.pcapng,snaplen=128")
                .unwrap();
        assert_eq!(r.port, PortRef::Id(0));
        assert_eq!(r.captures.len(), 2);
        assert!(r.captures[0].rx && !r.captures[0].tx && r.captures[0].snaplen == 128);
        assert!(!r.captures[1].rx && r.captures[1].tx && r.captures[1].queue.is_none());
        let r = parse_pdump("device_id=net_vhost0,queue=1,rx-dev=/tmp/a,tx-dev=/tmp/a").unwrap();
        assert_eq!(r.port, PortRef::Name("net_vhost0".into()));
        assert_eq!(r.captures.len(), 1);
        assert!(r.captures[0].rx && r.captures[0].tx && r.captures[0].queue == Some(1));
        let r = parse_pdump("port=2,dev=/tmp/x.pcapng,dir=tx,ring-size=128").unwrap();
        assert!(!r.captures[0].rx && r.captures[0].tx && r.captures[0].ring_size == Some(128));
        assert_eq!(r.captures[0].snaplen, 262_144);
    }

    #[test]
    fn bad_parameters_say_what_to_write() {
        for (s, want) in [
            ("queue=*,dev=/tmp/x", "no port given"),
            ("port=0", "no capture file given"),
            (
                "port=0,dev=/tmp/x,snaplen=0",
                "bad snaplen 0: give 1 to 262144",
            ),
            ("port=0,dev=/tmp/x,snaplen=262145", "bad snaplen 262145"),
            ("port=0,dev=/tmp/x,snaplen=abc", "bad snaplen 'abc'"),
            ("port=70000,dev=/tmp/x", "port ids are 0 to 65535"),
            (
                "port=0,dev=/tmp/x,colour=red",
                "unknown capture parameter 'colour'",
            ),
            ("port=0,dev=/tmp/x,dir=up", "bad dir 'up'"),
            ("port=0,dev", "has no value"),
            ("port=0,dev=/a,rx-dev=/b", "not both"),
            ("port=0,queue=x,dev=/a", "bad queue 'x'"),
        ] {
            let e = parse_pdump(s).unwrap_err().to_string();
            assert!(e.contains(want), "{s}: {e}");
        }
    }
}
